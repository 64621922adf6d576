"""The dispatcher's inbox: one queue, in arrival order, bounded for what FreeSWITCH sends.

FreeSWITCH can send events faster than the dispatcher handles them (a burst of calls,
a resync of a large switch). Unbounded, the inbox grew to 288 MB in an overload test;
bounded, the ESL reader waits for room (:meth:`Inbox.put_event`), stops reading the
socket, and the backlog stays in the kernel's socket buffer and FreeSWITCH's own
per-listener queue (mod_event_socket holds up to 100,000 events a listener, and drops the
listener, which the daemon answers with a reconnect and a resync, only past that).

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

#: Events waiting at most; about 20 MB of decoded events at the most.
DEFAULT_LIMIT = 10_000


class Inbox:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"inbox limit must be at least 1, not {limit}")
        self.limit = limit
        # The reader resumes once a quarter of the room is free again, not at every item.
        self._resume_at = max(0, limit - max(1, limit // 4))
        self._items: deque[Any] = deque()
        self._waiting = gevent.event.Event()
        self._room = gevent.event.Event()
        self._room.set()
        #: Times the reader found the inbox full, and the seconds it waited in all.
        self.stalls = 0
        self.stalled_seconds = 0.0
        #: The deepest the inbox has been.
        self.peak = 0

    def put(self, item: Any) -> None:
        """Never waits: the daemon's own items."""
        items = self._items
        items.append(item)
        if len(items) > self.peak:
            self.peak = len(items)
        self._waiting.set()

    def put_event(self, item: Any) -> None:
        """Waits while the inbox is full: what the ESL reader receives."""
        if len(self._items) >= self.limit:
            self.stalls += 1
            started = time.monotonic()
            while len(self._items) >= self.limit:
                self._room.clear()
                self._room.wait()
            self.stalled_seconds += time.monotonic() - started
        self.put(item)

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; waits for one (gevent.queue.Empty after ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            self._waiting.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self._waiting.wait(left):
                raise gevent.queue.Empty
        return self.get_nowait()

    def get_nowait(self) -> Any:
        """The oldest item; IndexError when there is none."""
        item = self._items.popleft()
        if len(self._items) <= self._resume_at and not self._room.is_set():
            self._room.set()
        return item

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)
