"""Live figures of the queues for metrics and the systemd status line, counted by Redis.

Everything here is a handful of Redis commands per queue whatever the number of agents or
calls: ``ZCARD`` of a queue's waiting set, a script that walks the set's priority bands
(at most one step per priority in use) for the longest wait, ``ZINTERCARD`` of the free-agent
index with the queue's tag sets. No record is decoded.

Agents ringing, on a call, in wrap-up, on break or logged out have no index to count from
yet: they are left out of :meth:`QueueStats.figures` (absent, not zero) until the
live-statistics work (issue 13) keeps counters for them in Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import redis

from ccd.core.queue import MAX_PRIORITY, queue_order_key
from ccd.core.stats import QueueFigures
from ccd.store.agent import AgentRepository
from ccd.store.redis_store import Store, unavailable_as_domain_error

__all__ = ["QueueStats"]

#: Distance between two priorities' scores in a queue's waiting set.
_BAND = queue_order_key(MAX_PRIORITY - 1, 0) - queue_order_key(MAX_PRIORITY, 0)

# KEYS: 1 the queue's waiting set. ARGV: 1 the band width.
# Returns {waiting calls, earliest entry time as text ("" when none)}.
_LUA_OLDEST = r"""
local band = tonumber(ARGV[1])
local oldest = nil
local low = "-inf"
for _ = 1, 128 do
  local head = redis.call("ZRANGEBYSCORE", KEYS[1], low, "+inf", "WITHSCORES", "LIMIT", 0, 1)
  if #head == 0 then break end
  local score = tonumber(head[2])
  local n = math.floor(score / band)
  local entered = score - n * band
  if oldest == nil or entered < oldest then oldest = entered end
  low = string.format("%.0f", (n + 1) * band)
end
local shown = ""
if oldest ~= nil then shown = string.format("%.3f", oldest) end
return {redis.call("ZCARD", KEYS[1]), shown}
"""


class QueueStats:
    """Implements :class:`ccd.core.stats.QueueGauges` (``figures``) and gives the
    systemd status line its two numbers (``totals``)."""

    def __init__(self, store: Store, queues: Callable[[], Mapping[str, object]]) -> None:
        self.store = store
        self.agents = AgentRepository(store)
        self._queues = queues  # name -> its configuration (anything with .tags)
        store.scripts.register("queue_oldest", _LUA_OLDEST, prelude=False)

    def _waiting(self, queue: str) -> tuple[int, float | None]:
        count, oldest = self.store.scripts.call(
            "queue_oldest", keys=[self.store.keys.queue(queue)], args=[repr(_BAND)]
        )
        return int(count), float(oldest) if oldest else None

    def figures(self, now: float) -> QueueFigures:
        waiting: dict[str, int] = {}
        longest: dict[str, float] = {}
        agents: dict[str, dict[str, int]] = {}
        for name, queue in self._queues().items():
            count, oldest = self._waiting(name)
            waiting[name] = count
            longest[name] = 0.0 if oldest is None else round(max(0.0, now - oldest), 3)
            with contextlib.suppress(redis.exceptions.ResponseError):  # Redis < 7: no ZINTERCARD
                free = self.agents.count_free(getattr(queue, "tags", ()), now=now)
                agents[name] = {"free": free}
        return QueueFigures(waiting, longest, agents)

    def totals(self, now: float) -> tuple[int, int]:
        """(calls waiting in all configured queues, free agents at ``now``): the status
        line."""
        with unavailable_as_domain_error("stats.totals"):
            pipe = self.store.client.pipeline(transaction=False)
            for name in self._queues():
                pipe.zcard(self.store.keys.queue(name))
            waiting = sum(int(n) for n in pipe.execute())
        return waiting, self.agents.count_free(now=now)
