"""Live figures of the queues, as plain data: what a scrape of /metrics shows per queue.

The engine and the adapters never compute these on the dispatcher: a provider
(:class:`QueueGauges`) is asked at scrape time. Today that is :class:`ccd.store.stats.QueueStats`
(a few Redis commands per queue); the live-statistics work (issue 13) will feed the agent
states it cannot count yet from counters kept in Redis, behind the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["AGENT_STATES", "QueueFigures", "QueueGauges"]

#: The agent states a provider may report per queue (each one it can count cheaply).
AGENT_STATES = ("free", "ringing", "oncall", "wrapup", "break", "logged_out")


@dataclass(frozen=True)
class QueueFigures:
    """Per queue name: calls waiting, seconds the longest-waiting call has waited (0: none),
    and agents carrying the queue's tags by state (one of AGENT_STATES). A state the provider
    cannot count cheaply is absent, never reported as zero."""

    waiting: Mapping[str, int] = field(default_factory=dict)
    longest_wait: Mapping[str, float] = field(default_factory=dict)
    agents: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class QueueGauges(Protocol):
    """Live per-queue figures for a scrape. Called from the HTTP greenlet at every scrape, so
    it must be cheap at any size: a few Redis commands, counts kept by Redis, no decoding of
    O(agents) records. It may raise (Redis down): the scrape then leaves the figures out."""

    def figures(self, now: float) -> QueueFigures: ...
