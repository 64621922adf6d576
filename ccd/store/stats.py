"""Live statistics in Redis (issue 13): counters every daemon adds to, and cheap readers.

Theory of operation
-------------------
* :func:`ccd.core.stats.fold` turns facts into operations; :meth:`StatsStore.apply` only
  APPENDS their commands to what the caller sends: the engine's unit of work
  (:class:`ccd.store.batch.Batch`, fed by ccd.engine.stats, sent with the events' other
  writes) or a redis-py pipeline (tools, tests). It never makes a round trip of its own.
* :class:`ccd.core.stats.Increment`: ``HINCRBY`` (counts) or ``HINCRBYFLOAT`` (seconds) on the
  counter's hash, then one ``EXPIREAT`` per hash. Hashes (names in :class:`ccd.store.keys.Keys`):

      stats:queue:<queue>:<day>            a queue's day (its zone), kept retention_days
      stats:queue_minute:<queue>:<minute>  a queue's minute (epoch minutes), kept the longest
                                           window; the windows add up the last N of them
      stats:agent:<agent>:<day>            an agent's seconds per status and counts (centre zone)

  Fields: :data:`ccd.core.stats.QUEUE_FIELDS`, :data:`ccd.core.stats.AGENT_TIME_FIELDS` and
  offered / answered / missed. Increments are atomic, so any number of daemons add to them.
* Everything one :meth:`StatsStore.apply` appends is ONE script call (``stats_apply``): the
  increments, their expiries, then the agent moves in order.
* :class:`ccd.core.stats.AgentMove`: one Lua step (a ``move`` in ``stats_apply``) per change of an
  agent's wallboard status. ``stats:agent_now:<agent>`` (a hash) keeps ``status``, ``since``,
  ``queues`` (the queues the agent is counted in, comma-separated) and ``q``/``qday``/``qexp``
  (the queue call the agent's talk and wrap-up count for). The step adds the seconds since
  ``since`` to the old status in the agent's day (split at midnight, the part before it to
  the day before), adds on-call/wrap-up seconds to ``talk``/``wrapup`` of the queue's day and
  minute, and moves the agent from the old status to the new one in ``stats:agents`` (the
  centre) and ``stats:agents:<queue>`` (each queue it serves; a hash status → count). So
  "agents by state" is one HGETALL per queue at 20,000 agents, and a change of the agent's
  queues (tags) moves it the next time its status is written. An agent ringing, on a call,
  in wrap-up or on break is also in ``stats:busy:<queue>`` of each queue it serves (agent →
  ``"<status> <from> <after>"``: ``from`` when the status began, ``after`` what it does once
  the call ends, also kept in ``stats:agent_now``): the estimated wait's input, read with the
  announcement, as big as the queue's busy agents.
* Waiting calls are not counted apart: ``queue:<name>`` (ccd.store.call) is the truth. ZCARD
  gives the count; the longest wait is the oldest arrival, found by walking the priority bands
  of the order key (:func:`ccd.core.queue.queue_order_key`: a few ZRANGEBYSCORE .. LIMIT 0 1,
  whatever the number of waiting calls) in one Lua step for every queue at once.
* :class:`QueueStats` is what a Prometheus scrape (:class:`ccd.core.stats_view.QueueGauges`)
  and the systemd status line read: the same snapshot, per configured queue. Its agents by
  status come from the ``stats:agents:<queue>`` counters (``agent_counters``: on in a daemon
  with the engine, which keeps them); without, only ``free`` is reported, counted by Redis
  from the free-agent index, and the other statuses are absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgpack
import redis
import structlog

from ccd.core.announce import BusySince, parse_busy
from ccd.core.queue import PRIORITY_STEP, order_key_parts
from ccd.core.stats import (
    FLOAT_FIELDS,
    AgentDay,
    AgentMove,
    Counter,
    Folded,
    Increment,
    QueueCounts,
    StatsRules,
    day_of,
    day_start,
    minute_of,
)
from ccd.core.stats_view import (
    AgentNow,
    QueueFigures,
    QueueNow,
    Snapshot,
    WaitingCaller,
    agents_by_status,
    stats_json,
)
from ccd.store.agent import AgentRepository
from ccd.store.batch import Batch
from ccd.store.redis_store import Store, unavailable_as_domain_error

__all__ = ["QueueStats", "StatsStore"]

log = structlog.get_logger()

_LUA_APPLY = r"""
-- One unit of work's statistics. ARGV[1] key prefix, ARGV[2] msgpack of
-- {increments, expiries, moves}:
--   increments  {key, field, amount as text, 1 = seconds (HINCRBYFLOAT) | 0 = count}
--   expiries    {key, expire_at (epoch seconds, or 0), ttl (seconds, or 0)}
--   moves       {stats:agent_now:<agent>, move}; move: agent, status (nil: keep), at, day,
--               day_exp, prev, prev_exp, since_day, minute, minute_ttl, queues (nil: keep),
--               queue, qday, qday_exp (nil: no queue call offered now), after (what the agent
--               does once its call ends; nil: keep), remove.
local prefix = ARGV[1]
local ops = cmsgpack.unpack(ARGV[2])
local SINCE = {ringing = true, oncall = true, wrapup = true, ["break"] = true}

local function add(key, exp, field, secs, ttl)
  redis.call("HINCRBYFLOAT", key, field, string.format("%.3f", secs))
  if ttl then redis.call("EXPIRE", key, ttl) else redis.call("EXPIREAT", key, exp) end
end

local function move(now_key, op)
  local cur = redis.call("HMGET", now_key, "status", "since", "queues", "q", "qday", "qexp",
                         "from", "after")
  local old, since, oldq = cur[1], tonumber(cur[2]), cur[3] or ""
  local q, qday, qexp = cur[4], cur[5], cur[6]
  local from, after = tonumber(cur[7]) or since, op.after or cur[8] or "ready"
  local at = tonumber(op.at)
  local new = op.status or old
  if op.remove then new = nil end
  if not old and not new then return end

  -- 1. the interval [since, at) spent in the old status
  if old and since and at > since then
    if old ~= "logged_out" then
      local split = tonumber(op.since_day)
      if since < split then
        add(op.prev, op.prev_exp, old, split - since)
        add(op.day, op.day_exp, old, at - split)
      else
        add(op.day, op.day_exp, old, at - since)
      end
    end
    if q and qday and (old == "oncall" or old == "wrapup") then
      local field = "talk"
      if old == "wrapup" then field = "wrapup" end
      add(qday, qexp, field, at - since)
      local bucket = prefix .. "stats:queue_minute:" .. q .. ":" .. op.minute
      add(bucket, nil, field, at - since, op.minute_ttl)
    end
  end
  -- 2. the queue call whose talk and wrap-up the agent's time counts for
  if op.queue then
    q, qday, qexp = op.queue, op.qday, op.qday_exp
  elseif new ~= "ringing" and new ~= "oncall" and new ~= "wrapup" then
    q = nil
  elseif new == "oncall" and old == "wrapup" then
    q = nil  -- a call of the agent's own during wrap-up: the queue call's wrap-up is over
  end
  -- 3. agents by status: out of the old status in the recorded queues, into the new ones
  local newq = oldq
  if op.queues then newq = table.concat(op.queues, ",") end
  if old ~= new or oldq ~= newq then
    if old then
      if old ~= new then redis.call("HINCRBY", prefix .. "stats:agents", old, -1) end
      for name in string.gmatch(oldq, "[^,]+") do
        redis.call("HINCRBY", prefix .. "stats:agents:" .. name, old, -1)
      end
    end
    if new then
      if old ~= new then redis.call("HINCRBY", prefix .. "stats:agents", new, 1) end
      for name in string.gmatch(newq, "[^,]+") do
        redis.call("HINCRBY", prefix .. "stats:agents:" .. name, new, 1)
      end
    end
  end
  -- 4. per queue, since when each agent is busy or on break and what it does next
  if since == nil or at > since then since = at end
  if old ~= new or from == nil then from = since end
  local entry = nil
  if new and SINCE[new] then entry = new .. " " .. string.format("%.3f", from) .. " " .. after end
  if old and SINCE[old] then
    for name in string.gmatch(oldq, "[^,]+") do
      if not entry or not string.find("," .. newq .. ",", "," .. name .. ",", 1, true) then
        redis.call("HDEL", prefix .. "stats:busy:" .. name, op.agent)
      end
    end
  end
  if entry then
    for name in string.gmatch(newq, "[^,]+") do
      redis.call("HSET", prefix .. "stats:busy:" .. name, op.agent, entry)
    end
  end
  -- 5. the record
  if not new then
    redis.call("DEL", now_key)
    return
  end
  redis.call("HSET", now_key, "status", new, "since", string.format("%.3f", since), "queues", newq,
             "from", string.format("%.3f", from), "after", after)
  if q then
    redis.call("HSET", now_key, "q", q, "qday", qday, "qexp", qexp)
  else
    redis.call("HDEL", now_key, "q", "qday", "qexp")
  end
end

for _, inc in ipairs(ops[1]) do
  if inc[4] == 1 then
    redis.call("HINCRBYFLOAT", inc[1], inc[2], inc[3])
  else
    redis.call("HINCRBY", inc[1], inc[2], inc[3])
  end
end
for _, e in ipairs(ops[2]) do
  if e[3] > 0 then redis.call("EXPIRE", e[1], e[3]) else redis.call("EXPIREAT", e[1], e[2]) end
end
for _, m in ipairs(ops[3]) do move(m[1], m[2]) end
return #ops[1] + #ops[3]
"""

_LUA_WAITING = r"""
-- KEYS: queue:<name> sorted sets; ARGV[1] the priority band width of the order key.
-- For each queue {count, oldest arrival as text or false}: the oldest arrival is the lowest
-- arrival among the first member of every priority band present (a handful of look-ups).
local step = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call("ZCARD", key)
  local oldest = nil
  local lo = "-inf"
  local guard = 0
  while n > 0 and guard < 200 do
    guard = guard + 1
    local first = redis.call("ZRANGEBYSCORE", key, lo, "+inf", "WITHSCORES", "LIMIT", 0, 1)
    if #first == 0 then break end
    local score = tonumber(first[2])
    local band = math.floor(score / step)
    local entered = score - band * step
    if oldest == nil or entered < oldest then oldest = entered end
    lo = string.format("%.0f", (band + 1) * step)
  end
  if oldest then out[i] = {n, string.format("%.3f", oldest)} else out[i] = {n, false} end
end
return out
"""


_LUA_ANNOUNCE = r"""
-- One position announcement's read. KEYS[1] queue:<name>, KEYS[2] stats:agents:<name>,
-- KEYS[3] stats:busy:<name>, KEYS[4] the queue's day, then its minute buckets of the window;
-- ARGV[1] the call. {rank in the queue (0: first) or false, then each hash (flat)}
local out = {redis.call("ZRANK", KEYS[1], ARGV[1]) or false}
for i = 2, #KEYS do out[#out + 1] = redis.call("HGETALL", KEYS[i]) end
return out
"""


class Announced(Protocol):
    """What an announcement's read answers: the position from 1 (None: not in the queue), the
    agents by status, those busy or on break since when, the queue's counters over the
    window and of its day, the window in seconds."""

    def __call__(
        self,
        position: int | None,
        agents: Mapping[str, int],
        busy: Sequence[BusySince],
        recent: QueueCounts,
        day: QueueCounts,
        window: float,
    ) -> None: ...


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StatsStore:
    """Statistics counters over one :class:`Store`; see the module docstring."""

    def __init__(self, store: Store, rules: StatsRules | None = None) -> None:
        self._store = store
        self._keys = store.keys
        self.rules = rules or StatsRules()  # the readers of now (snapshot) need none
        store.scripts.register("stats_apply", _LUA_APPLY, prelude=False)
        store.scripts.register("stats_waiting", _LUA_WAITING, prelude=False)
        store.scripts.register("stats_announce", _LUA_ANNOUNCE, prelude=False)
        self._apply_script = store.client.register_script(_LUA_APPLY)
        # Key names of counters seen lately: every fact of a queue names the same few.
        self._counter_keys: dict[Counter, str] = {}

    # --- writing: append to the caller's pipeline ---------------------------------------

    def counter_key(self, counter: Counter) -> str:
        key = self._counter_keys.get(counter)
        if key is None:
            if len(self._counter_keys) >= 10_000:  # new days and minutes keep coming
                self._counter_keys.clear()
            key = self._counter_keys[counter] = self._make_key(counter)
        return key

    def _make_key(self, counter: Counter) -> str:
        if counter.kind == "queue_day":
            return self._keys.stats_queue_day(counter.owner, counter.period)
        if counter.kind == "queue_minute":
            return self._keys.stats_queue_minute(counter.owner, counter.period)
        if counter.kind == "agent_day":
            return self._keys.stats_agent_day(counter.owner, counter.period)
        raise ValueError(f"unknown counter kind {counter.kind!r}")

    def apply(self, target: Any, ops: Folded | Iterable[Increment | AgentMove]) -> int:
        """Append ``ops`` to ``target`` as ONE script call (``stats_apply``: the increments,
        their expiries, then the agent moves in order): the engine's unit of work
        (:class:`ccd.store.batch.Batch`) or a redis-py pipeline (tools, tests); nothing is
        sent here. Answers how many operations were appended. An operation naming a queue or
        an agent no key may hold (a name from a caller) is left out and logged, never raised:
        statistics must not stop the unit of work they ride with."""
        if isinstance(ops, Folded):
            items: list[Increment | AgentMove] = [*ops.increments, *ops.moves]
        else:
            items = list(ops)
        increments: list[tuple[str, str, str, int]] = []
        moves: list[tuple[str, dict[str, Any]]] = []
        expiries: dict[str, Counter] = {}
        for op in items:
            try:
                if isinstance(op, AgentMove):
                    moves.append(self._move(op))
                    continue
                key = self.counter_key(op.counter)
            except ValueError as exc:
                log.warning("stats.skipped", error=str(exc)[:200])
                continue
            if op.field in FLOAT_FIELDS:
                increments.append((key, op.field, f"{float(op.amount):.3f}", 1))
            else:
                increments.append((key, op.field, str(int(op.amount)), 0))
            expiries[key] = op.counter
        if not increments and not moves:
            return 0
        expire = [(key, c.expire_at if not c.ttl else 0, c.ttl) for key, c in expiries.items()]
        self._append(target, increments, expire, moves)
        return len(increments) + len(moves)

    def _append(self, target: Any, *ops: list[Any]) -> None:
        """The ``stats_apply`` script call with (increments, expiries, moves), appended."""
        args = [self._keys.prefix, msgpack.packb(list(ops), use_bin_type=True)]
        if isinstance(target, Batch):
            target.script("stats_apply", [], args)
        else:
            self._apply_script(keys=[], args=args, client=target)

    def _move(self, move: AgentMove, *, remove: bool = False) -> tuple[str, dict[str, Any]]:
        """One agent move as the script takes it: (stats:agent_now key, its fields)."""
        keys = self._keys
        data: dict[str, Any] = {
            "agent": move.agent,
            "at": move.at,
            "day": self.counter_key(move.day),
            "day_exp": move.day.expire_at,
            "prev": self.counter_key(move.prev_day),
            "prev_exp": move.prev_day.expire_at,
            "since_day": move.since_day,
            "minute": str(move.minute),
            "minute_ttl": move.minute_ttl,
        }
        if remove:
            data["remove"] = True
        if move.status is not None:
            data["status"] = move.status
        if move.then is not None:
            data["after"] = move.then
        # The Lua builds stats:agents:<queue> from these names: check them as Keys does.
        if move.queues is not None:
            for name in move.queues:
                keys.stats_agents(name)
            data["queues"] = list(move.queues)
        if move.queue is not None and move.queue_day is not None:
            keys.stats_agents(move.queue)
            data["queue"] = move.queue
            data["qday"] = self.counter_key(move.queue_day)
            data["qday_exp"] = move.queue_day.expire_at
        return keys.stats_agent_now(move.agent), data

    def remove_agent(self, target: Any, agent_id: str, at: float) -> None:
        """Append: the agent was deleted. Its time so far is kept in its day; it leaves the
        agents-by-status counts."""
        day = day_of(at, self.rules.tz)
        prev = day_of(day_start(day, self.rules.tz) - 1, self.rules.tz)
        expire = int(at) + 86400 * (self.rules.retention_days + 1)
        move = AgentMove(
            agent_id,
            None,
            at,
            Counter("agent_day", agent_id, day, expire),
            Counter("agent_day", agent_id, prev, expire),
            day_start(day, self.rules.tz),
            minute_of(at),
            60 * (self.rules.bucket_minutes + 2),
        )
        self._append(target, [], [], [self._move(move, remove=True)])

    def record(self, ops: Folded | Iterable[Increment | AgentMove]) -> None:
        """Apply ``ops`` in a pipeline of their own (tests, tools; the engine uses apply)."""
        with unavailable_as_domain_error("stats record"):
            pipe = self._store.client.pipeline(transaction=True)
            self.apply(pipe, ops)
            pipe.execute()

    # --- reading ------------------------------------------------------------------------

    def announce(self, batch: Batch, queue: str, call: str, at: float, then: Announced) -> None:
        """Append one position announcement's read to the engine's unit of work (no round
        trip of its own): the call's rank in ``queue:<queue>``, the queue's agents by status,
        those busy or on break since when (``stats:busy:<queue>``), its counters of the day
        and over the shortest window (its minute buckets), in one script call whose cost
        grows with the agents busy in the queue, not with the waiting calls or the centre."""
        keys = self._keys
        minutes = min(self.rules.windows)
        last = minute_of(at)
        buckets = [
            keys.stats_queue_minute(queue, str(m)) for m in range(last - minutes + 1, last + 1)
        ]
        day = keys.stats_queue_day(queue, day_of(at, self.rules.queue(queue).tz))
        names = [keys.queue(queue), keys.stats_agents(queue), keys.stats_busy(queue), day]

        def read(reply: Any) -> None:
            rank, agents, busy, today, *counts = reply
            total = QueueCounts()
            for raw in counts:
                total = total + QueueCounts.from_fields(_pairs(raw))
            position = None if rank is None or rank is False else int(rank) + 1
            busy_since = parse_busy(_text(value) for value in busy[1::2])
            then(position, agents_by_status(_pairs(agents)), busy_since, total,
                 QueueCounts.from_fields(_pairs(today)), 60.0 * minutes)  # fmt: skip

        batch.script("stats_announce", [*names, *buckets], [call], read)

    def snapshot(self, queues: Sequence[str], at: float, *, callers: int = 0) -> Snapshot:
        """Now: per queue the calls waiting, the oldest arrival, agents by status and the
        first ``callers`` waiting callers; agents by status for the whole centre."""
        keys = self._keys
        queue_keys = [keys.queue(q) for q in queues]
        with unavailable_as_domain_error("stats snapshot"):
            pipe = self._store.client.pipeline(transaction=False)
            pipe.hgetall(keys.stats_agents())
            for q in queues:
                pipe.hgetall(keys.stats_agents(q))
            for key in queue_keys if callers > 0 else ():
                pipe.zrange(key, 0, callers - 1, withscores=True)
            replies = pipe.execute()
            waiting = (
                self._store.scripts.call("stats_waiting", keys=queue_keys, args=[PRIORITY_STEP])
                if queue_keys
                else []
            )
        centre, per_queue = replies[0], replies[1 : 1 + len(queues)]
        firsts = replies[1 + len(queues) :] if callers > 0 else [[] for _ in queues]
        now = []
        for name, agents, (count, oldest), first in zip(
            queues, per_queue, waiting, firsts, strict=True
        ):
            waiting_callers = []
            for member, score in first:
                priority, entered = order_key_parts(float(score))
                waiting_callers.append(WaitingCaller(_text(member), entered, priority))
            now.append(
                QueueNow(
                    name,
                    int(count),
                    float(oldest) if oldest else None,
                    agents_by_status(agents),
                    tuple(waiting_callers),
                )
            )
        return Snapshot(at, tuple(now), agents_by_status(centre))

    def today(self, queues: Sequence[str], at: float) -> dict[str, tuple[str, QueueCounts]]:
        """Each queue's counters of its day (in its zone) at ``at``."""
        days = [day_of(at, self.rules.queue(q).tz) for q in queues]
        with unavailable_as_domain_error("stats today"):
            pipe = self._store.client.pipeline(transaction=False)
            for q, day in zip(queues, days, strict=True):
                pipe.hgetall(self._keys.stats_queue_day(q, day))
            replies = pipe.execute()
        return {
            q: (day, QueueCounts.from_fields(raw))
            for q, day, raw in zip(queues, days, replies, strict=True)
        }

    def windows(self, queues: Sequence[str], at: float) -> dict[str, dict[int, QueueCounts]]:
        """Each queue's counters over each window: the last N minute buckets, the current
        (partial) minute included."""
        last = minute_of(at)
        span = self.rules.bucket_minutes
        with unavailable_as_domain_error("stats windows"):
            pipe = self._store.client.pipeline(transaction=False)
            for q in queues:
                for minute in range(last - span + 1, last + 1):
                    pipe.hgetall(self._keys.stats_queue_minute(q, str(minute)))
            replies = pipe.execute()
        out: dict[str, dict[int, QueueCounts]] = {}
        for i, q in enumerate(queues):
            buckets = [QueueCounts.from_fields(r) for r in replies[i * span : (i + 1) * span]]
            out[q] = {}
            for minutes in self.rules.windows:
                total = QueueCounts()
                for bucket in buckets[span - minutes :]:
                    total = total + bucket
                out[q][minutes] = total
        return out

    def agents(self, agent_ids: Sequence[str], at: float) -> list[AgentNow]:
        """Each agent's status and day so far (the status running now counted up to ``at``)."""
        day = day_of(at, self.rules.tz)
        start = day_start(day, self.rules.tz)
        with unavailable_as_domain_error("stats agents"):
            pipe = self._store.client.pipeline(transaction=False)
            for agent_id in agent_ids:
                pipe.hmget(self._keys.stats_agent_now(agent_id), "status", "since")
                pipe.hgetall(self._keys.stats_agent_day(agent_id, day))
            replies = pipe.execute()
        out = []
        for i, agent_id in enumerate(agent_ids):
            (status, since), raw = replies[2 * i], replies[2 * i + 1]
            counts = AgentDay.from_fields(raw)
            status_text = _text(status) if status else None
            since_at = float(since) if since else None
            if status_text and since_at is not None and status_text != "logged_out":
                running = max(0.0, at - max(since_at, start))
                attr = "break_" if status_text == "break" else status_text
                if hasattr(counts, attr):
                    counts = dataclasses.replace(counts, **{attr: getattr(counts, attr) + running})
            out.append(AgentNow(agent_id, status_text, since_at, day, counts))
        return out

    def read(
        self,
        queues: Sequence[str],
        at: float,
        *,
        callers: int = 0,
        agents: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The /stats document (ccd.core.stats_view.stats_json) for ``queues`` at ``at``."""
        snapshot = self.snapshot(queues, at, callers=callers)
        per_agent = None if agents is None else self.agents(agents, at)
        return stats_json(
            snapshot, self.rules, self.today(queues, at), self.windows(queues, at), per_agent
        )

    def agent_counts(self) -> Mapping[str, int]:
        """Agents by status of the whole centre."""
        with unavailable_as_domain_error("stats agents"):
            return agents_by_status(self._store.client.hgetall(self._keys.stats_agents()))


class QueueStats:
    """Live figures of the configured queues for metrics and the systemd status line: implements
    :class:`ccd.core.stats_view.QueueGauges` (``figures``) and gives the status line its two
    numbers (``totals``). A handful of Redis commands whatever the number of agents or calls.

    ``agent_counters``: report every agent status from the ``stats:agents:<queue>`` counters,
    which the engine keeps (ccd.engine.stats: every agent status change, every agent's status
    written once at start). Off (no engine): only ``free`` is reported, from the free-agent
    index (``ZINTERCARD`` with the queue's tag sets; Redis < 7 has none, and the
    queue then has no agent figures)."""

    def __init__(
        self,
        store: Store,
        queues: Callable[[], Mapping[str, object]],
        *,
        agent_counters: bool = False,
    ) -> None:
        self.store = store
        self.stats = StatsStore(store)
        self.agents = AgentRepository(store)
        self._queues = queues  # name -> its configuration (anything with .tags)
        self.agent_counters = agent_counters

    def figures(self, now: float) -> QueueFigures:
        queues = self._queues()
        snapshot = self.stats.snapshot(list(queues), now)
        waiting = {q.queue: q.waiting for q in snapshot.queues}
        longest = {q.queue: round(q.longest_wait(now) or 0.0, 3) for q in snapshot.queues}
        agents: dict[str, dict[str, int]] = {}
        if self.agent_counters:
            agents = {q.queue: dict(q.agents) for q in snapshot.queues}
        else:
            for name, queue in queues.items():
                with contextlib.suppress(redis.exceptions.ResponseError):
                    tags = getattr(queue, "tags", ())
                    agents[name] = {"free": self.agents.count_free(tags, now=now)}
        today = {q: counts for q, (_day, counts) in self.stats.today(list(queues), now).items()}
        return QueueFigures(waiting, longest, agents, today)

    def totals(self, now: float) -> tuple[int, int]:
        """(calls waiting in all configured queues, free agents at ``now``): the status
        line."""
        with unavailable_as_domain_error("stats.totals"):
            pipe = self.store.client.pipeline(transaction=False)
            for name in self._queues():
                pipe.zcard(self.store.keys.queue(name))
            waiting = sum(int(n) for n in pipe.execute())
        if self.agent_counters:
            return waiting, self.stats.agent_counts()["free"]
        return waiting, self.agents.count_free(now=now)
