"""The statistics as people and programs see them: the "now" snapshot, the /stats JSON and the
figures of a metrics scrape.

:class:`Snapshot` is what is true at one moment (calls waiting, the longest wait, agents by
status) as ccd.store.stats reads it cheaply from Redis; :func:`stats_json` puts it together
with the counters of today and of the sliding windows (:class:`ccd.core.stats.QueueCounts`)
into the one JSON document ``GET /stats``, the ``stats`` event of ``GET /events``, the
wallboard and ``ccd status --watch`` all read (shape: README, "Statistics").

:class:`QueueFigures` is the part of the snapshot a Prometheus scrape shows per queue, and
:class:`QueueGauges` the interface of what provides it (ccd.adapters.metrics asks it at scrape
time, never on the dispatcher; ccd.store.stats.QueueStats implements it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccd.core.stats import STATUSES, AgentDay, QueueCounts, StatsRules

__all__ = [
    "STATS_JSON_VERSION",
    "AgentNow",
    "QueueFigures",
    "QueueGauges",
    "QueueNow",
    "Snapshot",
    "WaitingCaller",
    "agents_by_status",
    "stats_json",
]

#: ``v`` of the /stats document; a change that removes or renames a field bumps it.
STATS_JSON_VERSION = 1


def agents_by_status(raw: Mapping[Any, Any]) -> dict[str, int]:
    """Every status of :data:`ccd.core.stats.STATUSES` with its count (0 when absent or
    negative: a count can only drift below 0 through a lost write, never show it)."""
    counts = {status: 0 for status in STATUSES}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in counts:
            with contextlib.suppress(TypeError, ValueError):
                counts[name] = max(0, int(value))
    return counts


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    """A caller waiting now: ``entered_at`` from the queue's order key (epoch seconds)."""

    call: str
    entered_at: float
    priority: int = 0
    number: str = ""

    def to_dict(self, at: float) -> dict[str, Any]:
        return {
            "call": self.call,
            "waited": round(max(0.0, at - self.entered_at), 1),
            "priority": self.priority,
            "number": self.number,
        }


@dataclass(frozen=True, slots=True)
class QueueNow:
    """One queue now: ``waiting`` callers, the oldest one's arrival (None: nobody waits),
    agents by status among those serving it, the first waiting callers in serving order."""

    queue: str
    waiting: int = 0
    oldest_entered_at: float | None = None
    agents: Mapping[str, int] = field(default_factory=lambda: agents_by_status({}))
    callers: tuple[WaitingCaller, ...] = ()

    def longest_wait(self, at: float) -> float | None:
        if self.oldest_entered_at is None or self.waiting <= 0:
            return None
        return max(0.0, at - self.oldest_entered_at)


@dataclass(frozen=True, slots=True)
class AgentNow:
    """One agent's status since when, and the counters of its day (occupancy)."""

    agent: str
    status: str | None
    since: float | None
    day: str
    counts: AgentDay

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "status": self.status,
            "since": self.since,
            "day": self.day,
            **self.counts.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    queues: tuple[QueueNow, ...]
    agents: Mapping[str, int] = field(default_factory=lambda: agents_by_status({}))


def _longest(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return max(found) if found else None


def stats_json(
    snapshot: Snapshot,
    rules: StatsRules,
    today: Mapping[str, tuple[str, QueueCounts]],
    windows: Mapping[str, Mapping[int, QueueCounts]],
    agents: Sequence[AgentNow] | None = None,
) -> dict[str, Any]:
    """The /stats document. ``today``: queue → (its day, counters); ``windows``: queue →
    minutes → counters of the last that many minutes; ``agents`` (optional, per agent)."""
    at = snapshot.at
    queues = []
    for now in snapshot.queues:
        queue_rules = rules.queue(now.queue)
        day, counts = today.get(now.queue, ("", QueueCounts()))
        longest = now.longest_wait(at)
        queues.append(
            {
                "queue": now.queue,
                "service_level_time": queue_rules.service_level_time,
                "short_abandon_time": queue_rules.short_abandon_time,
                "waiting": now.waiting,
                "longest_wait": None if longest is None else round(longest, 1),
                "agents": dict(now.agents),
                "callers": [c.to_dict(at) for c in now.callers],
                "today": {"day": day, **counts.to_dict()},
                "windows": {
                    str(minutes): counts_.to_dict()
                    for minutes, counts_ in sorted(windows.get(now.queue, {}).items())
                },
            }
        )
    longest_all = _longest([q["longest_wait"] for q in queues])
    out: dict[str, Any] = {
        "v": STATS_JSON_VERSION,
        "at": round(at, 3),
        "windows": list(rules.windows),
        "totals": {
            "waiting": sum(q.waiting for q in snapshot.queues),
            "longest_wait": longest_all,
            "agents": dict(snapshot.agents),
        },
        "queues": queues,
    }
    if agents is not None:
        out["agents"] = [a.to_dict() for a in agents]
    return out


# --- what a metrics scrape shows -------------------------------------------------------------


@dataclass(frozen=True)
class QueueFigures:
    """Per queue name: calls waiting, seconds the longest-waiting call has waited (0: none),
    agents carrying the queue's tags by status (of :data:`ccd.core.stats.STATUSES`; a
    status the provider does not count is absent, never reported as zero), and the day's
    counters."""

    waiting: Mapping[str, int] = field(default_factory=dict)
    longest_wait: Mapping[str, float] = field(default_factory=dict)
    agents: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: The queue's counters of its day so far (service level, ASA, AHT, abandonment).
    today: Mapping[str, QueueCounts] = field(default_factory=dict)


class QueueGauges(Protocol):
    """Live per-queue figures for a scrape. Called from the HTTP greenlet at every scrape, so
    it must be cheap at any size: a few Redis commands, counts kept by Redis, no decoding of
    O(agents) records. It may raise (Redis down): the scrape then leaves the figures out."""

    def figures(self, now: float) -> QueueFigures: ...
