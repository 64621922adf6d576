"""Deadlines the engine keeps: a heap, so a tick costs what is due, not what is waiting.

Each key (a call's hunt deadline, an agent's wrap-up end) has at most one live deadline;
setting it again replaces it (the old heap entry is skipped when it surfaces), and
``due(now)`` yields the keys whose deadline has come, each once.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator

__all__ = ["Timers"]


class Timers:
    __slots__ = ("_at", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._at: dict[Hashable, float] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._at)

    def set(self, key: Hashable, at: float | None) -> None:
        """``key`` is due at ``at`` (None: no deadline any more)."""
        if at is None:
            self._at.pop(key, None)
            return
        if self._at.get(key) == at:
            return
        self._at[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        if len(self._heap) > 4 * len(self._at) + 64:
            self._compact()

    def get(self, key: Hashable) -> float | None:
        return self._at.get(key)

    def due(self, now: float) -> Iterator[Hashable]:
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._at.get(key) == at:
                del self._at[key]
                yield key

    def _compact(self) -> None:
        self._heap = [(at, i, key) for i, (key, at) in enumerate(self._at.items())]
        heapq.heapify(self._heap)
        self._seq = len(self._heap)
