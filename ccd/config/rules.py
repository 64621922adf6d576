"""The core's rules built from a :class:`Config`: the core takes plain values, never a Config."""

from __future__ import annotations

from collections.abc import Sequence

from ccd.config.loading import Config
from ccd.core.business_hours import parse_business_hours
from ccd.core.callback import CallbackRules, NumberRules, OpenLimits
from ccd.core.report import zone
from ccd.core.stats import QueueStatsRules, StatsRules

__all__ = [
    "number_rules_from_config",
    "open_limits_from_config",
    "rules_from_config",
    "stats_rules_from_config",
]


def open_limits_from_config(config: Config) -> OpenLimits:
    """The caps on open callback requests ([callback] max_open_*)."""
    cb = config.callback
    return OpenLimits(
        per_caller=cb.max_open_per_caller,
        per_queue=cb.max_open_per_queue,
        total=cb.max_open_total,
        anonymous=cb.max_open_anonymous,
    )


def number_rules_from_config(config: Config) -> NumberRules:
    cb = config.callback
    return NumberRules(
        default_country_code=cb.country_code,
        min_digits=cb.min_digits,
        max_digits=cb.max_digits,
        allowed_prefixes=tuple(cb.allowed_prefixes),
        blocked_prefixes=tuple(cb.blocked_prefixes),
        allow_international=cb.allow_international,
        premium_prefixes=tuple(cb.premium_prefixes),
        emergency_numbers=tuple(cb.emergency_numbers),
    )


def rules_from_config(config: Config, queue: str | None = None) -> CallbackRules:
    """The rules of ``queue`` (its own business hours if set), else the [callback] ones."""
    cb = config.callback
    hours: Sequence[str] = cb.business_hours
    queue_config = config.queues.get(queue) if queue is not None else None
    if queue_config is not None and queue_config.business_hours is not None:
        hours = queue_config.business_hours
    return CallbackRules(
        max_attempts=cb.max_attempts,
        min_interval=cb.min_interval,
        business_hours=parse_business_hours(hours),
        timezone=cb.timezone,
    )


def stats_rules_from_config(config: Config) -> StatsRules:
    """Statistics rules: each queue's service level time and zone (defaults: [stats] and
    disposition.timezone, the centre's zone, which is also the zone of agents' days)."""
    st, centre = config.stats, config.disposition.timezone

    def queue_rules(sl: float | None, tz: str | None) -> QueueStatsRules:
        return QueueStatsRules(
            service_level_time=st.service_level_time if sl is None else sl,
            short_abandon_time=st.short_abandon_time,
            tz=zone(tz or centre),
        )

    return StatsRules(
        queues={n: queue_rules(q.service_level_time, q.timezone) for n, q in config.queues.items()},
        default=queue_rules(None, None),
        tz=zone(centre),
        windows=tuple(st.windows),
        retention_days=config.disposition.retention_days,
    )
