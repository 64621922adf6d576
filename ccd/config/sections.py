"""The configuration's sections as frozen dataclasses; ccd.config.schema fills them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ccd.config.checks import _MASK, redact_url
from ccd.core.disposition import CodeSet


def _masked_repr(self: Any) -> str:
    parts = []
    for f in dataclasses.fields(self):
        value = getattr(self, f.name)
        if f.metadata.get("secret") == "value":
            shown = repr(_MASK)
        elif f.metadata.get("secret") == "url":
            shown = repr(redact_url(value))
        else:
            shown = repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(self).__name__}({', '.join(parts)})"


def _secret(kind: str = "value") -> Any:
    return dataclasses.field(metadata={"secret": kind})


@dataclass(frozen=True, repr=False)
class EslConfig:
    host: str
    port: int
    password: str = _secret()
    connect_timeout: float = 5.0
    command_timeout: float = 10.0
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    event_format: str = "json"

    __repr__ = _masked_repr


@dataclass(frozen=True, repr=False)
class RedisConfig:
    url: str = _secret("url")
    prefix: str = "ccd:"
    socket_timeout: float = 2.0

    __repr__ = _masked_repr


@dataclass(frozen=True, repr=False)
class HttpConfig:
    host: str
    port: int
    token: str = _secret()
    max_connections: int = 256
    read_timeout: float = 5.0

    __repr__ = _masked_repr


@dataclass(frozen=True)
class LogConfig:
    format: str
    level: str


@dataclass(frozen=True)
class DaemonConfig:
    node_id: str
    time_scale: float
    dialplan_context: str
    inbox_limit: int

    def scale(self, seconds: float) -> float:
        """A configured duration in real seconds (configured / time_scale)."""
        return seconds / self.time_scale


@dataclass(frozen=True)
class RoutingConfig:
    ring_time: float
    wrapup_time: float
    max_missed_offers: int
    moh: str
    caller_id_template: str
    webhook_url: str
    webhook_timeout: float
    originate_timeout_margin: float
    resync_interval: float


@dataclass(frozen=True)
class VoicemailConfig:
    profile: str
    domain: str
    boxes: tuple[str, ...]


@dataclass(frozen=True)
class StickyConfig:
    """Direct callback (R-STICKY, ccd.core.sticky): the default for agents without their own."""

    default_type: str
    default_expiry: float


@dataclass(frozen=True)
class CallbackConfig:
    """Callback requests (R-OVERFLOW, R-CALLBACK; ccd.core.callback, ccd.store.callback)."""

    max_attempts: int
    min_interval: float
    agent_poll_interval: float
    max_open_per_caller: int
    max_open_per_queue: int
    max_open_total: int
    max_open_anonymous: int
    offer_retries: int
    lease_time: float
    timezone: str
    business_hours: tuple[str, ...]
    country_code: str
    min_digits: int
    max_digits: int
    allowed_prefixes: tuple[str, ...]
    blocked_prefixes: tuple[str, ...]
    premium_prefixes: tuple[str, ...]
    emergency_numbers: tuple[str, ...]
    allow_international: bool
    gateway: str
    customer_ring_time: float
    caller_id: str


@dataclass(frozen=True)
class DispositionConfig:
    """Call dispositions (R-DISPO; ccd.core.disposition, ccd.engine.disposition)."""

    codes: CodeSet
    dnc_days: float
    callback_delay: float
    callback_queue: str
    webhook_url: str
    webhook_timeout: float
    timezone: str
    retention_days: int
    refuse_dnc_outbound: bool


@dataclass(frozen=True)
class StatsConfig:
    """Live statistics (issue 13; ccd.core.stats, ccd.store.stats)."""

    service_level_time: float
    short_abandon_time: float
    windows: tuple[int, ...]


@dataclass(frozen=True)
class FeedConfig:
    """The event feed, GET /events (issue 13; ccd.core.feed, ccd.store.feed)."""

    max_len: int
    max_clients: int
    keepalive: float


@dataclass(frozen=True)
class QueueConfig:
    name: str
    tags: tuple[str, ...]
    ring_time: float
    voicemail: str
    on_exhausted: str
    priority: int
    overflow_time: float
    callback_strategy: str
    business_hours: tuple[str, ...] | None = None  # None: callback.business_hours
    no_agents: str = "wait"
    abandoned_callback: bool = False  # issue 13: ccd.core.recovery
    abandoned_after: float = 20.0
    voicemail_callback: bool = False
    service_level_time: float | None = None  # None: stats.service_level_time
    timezone: str | None = None  # None: disposition.timezone
    announce_interval: float = 45.0  # position announcements: seconds between two; 0 = off


@dataclass(frozen=True)
class AgentConfig:
    id: str
    extension: str
    tags: tuple[str, ...]
    sticky_type: str | None = None  # None: sticky.default_type
    sticky_expiry: float | None = None  # None: sticky.default_expiry
