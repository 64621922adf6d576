"""When events last touched a call, a leg or an agent: what a resync must not overrule.

FreeSWITCH's ``show channels`` lags its events by 100-300 ms (its core database), so a
snapshot is older than the freshest events; :mod:`ccd.engine.resync` leaves alone whatever
events touched within ``FRESH`` seconds before the snapshot was asked. Events that came
before the event socket was lost are older than a snapshot asked ``SNAPSHOT_LAG`` after
that: what happened meanwhile was never heard, and the snapshot is all there is.
"""

from __future__ import annotations

import time

__all__ = ["FRESH", "Freshness"]

#: Real seconds before a snapshot was asked within which events are newer than it.
FRESH = 2.0
#: Real seconds FreeSWITCH's snapshot may lag its events, at most.
SNAPSHOT_LAG = 0.5


class Freshness:
    """When events last touched a call, a leg or an agent (monotonic seconds)."""

    __slots__ = ("_lost_at", "_seen")

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lost_at = -1e18

    def lost(self) -> None:
        """The event socket is gone: events may be missing from now on."""
        self._lost_at = time.monotonic()

    def touch(self, *keys: str | None) -> None:
        now = time.monotonic()
        for key in keys:
            if key:
                self._seen[key] = now

    def fresh(self, key: str | None, than: float) -> bool:
        """Touched after ``than - FRESH``: events know better than a snapshot asked at
        ``than``, and not before an outage the snapshot is newer than."""
        seen = self._seen.get(key, -1e18) if key else -1e18
        if seen < self._lost_at <= than - SNAPSHOT_LAG:
            return False
        return seen >= than - FRESH

    def prune(self, before: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if t >= before}
