"""ccd.engine.freshness: what a resync must not overrule, and what an outage makes stale."""

from __future__ import annotations

import time

from ccd.engine.freshness import FRESH, SNAPSHOT_LAG, Freshness


def test_events_newer_than_the_snapshot_win_until_the_event_socket_is_lost():
    fresh = Freshness()
    fresh.touch("call", None)
    now = time.monotonic()
    assert fresh.fresh("call", now) and fresh.fresh("call", now + FRESH / 2)
    assert not fresh.fresh("leg", now) and not fresh.fresh(None, now)
    fresh.lost()
    lost_at = time.monotonic()
    # A snapshot asked right after the loss may still lag the last events it heard...
    assert fresh.fresh("call", lost_at)
    # ...one asked well after it is newer than anything heard before: it decides.
    assert not fresh.fresh("call", lost_at + SNAPSHOT_LAG + 0.01)
    fresh.touch("call")  # events again after the reconnect
    assert fresh.fresh("call", lost_at + SNAPSHOT_LAG + 0.01)
