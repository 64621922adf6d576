"""The event feed's writer: the facts the engine says, appended to the shared stream in the
step's unit of work.

Theory of operation
-------------------
:meth:`ccd.engine.io.CallIo.count` hands every fact to :meth:`EventFeed.fact`; those that
are feed events (:data:`ccd.core.feed.EVENT_FIELDS`) are turned into their JSON at once (with
the moment they happened) and wait here until the dispatcher sends its unit of work
(:meth:`ccd.engine.io.CallIo.flush`), which carries them as XADDs (ccd.store.feed): the feed
makes no round trip of its own under load. A fact said while a batch is on its way (an
``agent.state`` once Redis took the compare-and-set) rides with the next one; on an idle
daemon it goes alone at the next tick after :data:`MAX_WAIT`, so a live client sees it
within a few tenths of a second. Events keep the order in which they were said; a batch lost
to a Redis failure loses the events it carried, as it loses the statistics.
"""

from __future__ import annotations

from ccd.core.commands import Fact
from ccd.core.feed import event_json
from ccd.store.batch import Batch
from ccd.store.feed import FeedStore

__all__ = ["EventFeed"]

#: Seconds (daemon time) an event waits at most for a unit of work to ride with.
MAX_WAIT = 0.1
#: Events that are sent however young they are.
MAX_PENDING = 5000


class EventFeed:
    def __init__(self, store: FeedStore, node_id: str = "") -> None:
        self.store = store
        self.node_id = node_id  # in each event: which daemon said it
        self._pending: list[bytes] = []
        self._oldest = 0.0
        self._overdue = False

    def fact(self, fact: Fact, now: float) -> None:
        data = event_json(fact, now, self.node_id)
        if data is None:
            return
        if not self._pending:
            self._oldest = now
        self._pending.append(data)

    def due(self, riding: bool) -> bool:
        """Whether to send what waits now: with a unit of work that goes anyway, else once
        the oldest waited MAX_WAIT (see :meth:`tick`) or MAX_PENDING wait."""
        if not self._pending:
            return False
        return riding or self._overdue or len(self._pending) >= MAX_PENDING

    def tick(self, now: float) -> None:
        if self._pending and now - self._oldest >= MAX_WAIT:
            self._overdue = True

    def into(self, batch: Batch) -> None:
        pending, self._pending = self._pending, []
        self._overdue = False
        self.store.append(batch, pending)
