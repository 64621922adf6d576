"""The dispatcher's inbox: two lanes, bounded for what FreeSWITCH sends.

FreeSWITCH can send events faster than the dispatcher handles them (a burst of calls,
a resync of a large switch). Unbounded, the inbox grew to 288 MB in an overload test;
bounded, the ESL reader waits for room (:meth:`Inbox.put_event`), stops reading the
socket, and the backlog stays in the kernel's socket buffer and FreeSWITCH's own
per-listener queue (mod_event_socket holds up to 100,000 events a listener, and drops the
listener, which the daemon answers with a reconnect and a resync, only past that).

Why two lanes: work already started comes first. An agent who answered must be bridged
before a new caller is queued: in one arrival-order queue, a burst of new callers put every
answer seconds behind them, agents hung up on the silence, their callers were offered
again and the work per routed call multiplied, so an overloaded daemon routed fewer calls
the more it was offered. Items put ``urgent`` (the caller says which: the daemon's offer
legs, a caller from its bridge to one of them on, job results, ticks, agents another
daemon reserved for its calls: ccd.adapters.inbox_items.Lanes) are taken before the
others. Each lane keeps its own order; a leg's events are all urgent, a caller's turn
urgent at its bridge (Lanes says what may still wait behind). A lane full stops the
reader only for that lane: a burst of new callers filling theirs still lets answers
through until it is full.

A ``barrier`` item (the event socket connected or lost) closes the urgent lane until it
is taken: urgent items put after it wait behind it in the ordinary lane, so nothing heard
on a new connection is handled before the daemon learns of that connection.

The daemon's own items (ticks, tasks, resync slices, notifications, a job that failed)
never wait: the dispatcher puts some of them itself and must never block on its own
queue. They are few and bounded by their producers (one tick, one resync slice, one
heartbeat queued at a time).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import gevent.event
import gevent.queue

#: Events each lane holds at most. The daemon queues what ccd.core.events makes of an event,
#: about 0.5 KB (the decoded event is 7-19 KB): a full lane is some 25 MB.
DEFAULT_LIMIT = 50_000
#: The reader resumes once this many places are free again in a full lane, not at each one
#: (a quarter of a small limit).
RESUME_ROOM = 64


class Inbox:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"inbox limit must be at least 1, not {limit}")
        self.limit = limit
        self._resume_at = max(0, limit - max(1, min(RESUME_ROOM, limit // 4)))
        self._items: deque[Any] = deque()
        self._urgent: deque[Any] = deque()
        self._barriers: deque[Any] = deque()  # barriers waiting in the ordinary lane
        self._full: deque[Any] | None = None  # the lane the reader waits on
        self._waiting = gevent.event.Event()
        self._room = gevent.event.Event()
        self._room.set()
        #: Times the reader found a lane full, and the seconds it waited in all.
        self.stalls = 0
        self.stalled_seconds = 0.0
        #: The deepest the inbox has been (both lanes).
        self.peak = 0

    def put(self, item: Any, *, urgent: bool = False, barrier: bool = False) -> None:
        """Never waits: the daemon's own items."""
        if urgent and not self._barriers:
            self._urgent.append(item)
        else:
            self._items.append(item)
            if barrier:
                self._barriers.append(item)
        depth = len(self._items) + len(self._urgent)
        if depth > self.peak:
            self.peak = depth
        self._waiting.set()

    def put_event(self, item: Any, urgent: bool = False) -> None:
        """Waits while its lane is full: what the ESL reader receives."""
        lane = self._urgent if urgent and not self._barriers else self._items
        if len(lane) >= self.limit:
            self.stalls += 1
            started = time.monotonic()
            while len(lane) >= self.limit:
                self._full = lane
                self._room.clear()
                self._room.wait()
                lane = self._urgent if urgent and not self._barriers else self._items
            self._full = None
            self.stalled_seconds += time.monotonic() - started
        self.put(item, urgent=urgent)

    def get(self, timeout: float | None = None) -> Any:
        """The next item; waits for one (gevent.queue.Empty after ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self._items or self._urgent):
            self._waiting.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self._waiting.wait(left):
                raise gevent.queue.Empty
        return self.get_nowait()

    def get_nowait(self) -> Any:
        """The oldest urgent item, else the oldest other; IndexError when there is none."""
        if self._urgent:
            item = self._urgent.popleft()
        else:
            item = self._items.popleft()
            if self._barriers and item is self._barriers[0]:
                self._barriers.popleft()
        full = self._full
        if full is not None and len(full) <= self._resume_at and not self._room.is_set():
            self._room.set()
        return item

    def empty(self) -> bool:
        return not (self._items or self._urgent)

    def qsize(self) -> int:
        return len(self._items) + len(self._urgent)

    def urgent_size(self) -> int:
        return len(self._urgent)
