"""Agents in Redis: configuration (extension, tags) and live presence, kept atomic.

Theory of operation
-------------------
Each agent is one msgpack record ``agent:<id>`` holding its extension, tags and
the presence state of :mod:`ccd.core.presence` (login, registered, activity, the
live legs on the phone, wrap-up deadline), plus ``call`` (the caller uuid it
is reserved for) and ``rev``, a revision bumped by every write.

Every write is a Lua script, so several daemons sharing one Redis stay right:

* ``reserve``: a ready, registered, idle agent becomes ``ringing`` for one call
  (the fence against two calls or two daemons ringing one agent);
* ``write``: compare-and-set of a whole record on ``rev`` — presence
  transitions are computed in Python by the pure functions of
  :mod:`ccd.core.presence` and written only if nobody wrote in between (else the
  caller re-reads and recomputes).

Both scripts keep the index sets in step with the records: ``agents:available``
(a sorted set of who can be offered a call now, scored in routing order: fewest
tags, then longest idle), ``agents:ready`` and ``agents:tag:<tag>``. The
candidates for a call are then the first few members of the sorted set that
carry the tags (one Lua call), so routing decodes a handful of records however
many agents there are. ``agents`` lists every id and ``agents:ext`` maps
extensions to ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ccd.config import EXTENSION_RE, NAME_RE
from ccd.core.presence import Activity, AgentState, Login, Outcome
from ccd.core.routing import AgentView, normalize_tags
from ccd.store.redis_store import Store, unavailable_as_domain_error

log = structlog.get_logger()

# One rule for names, shared with the configuration file's validation.
AGENT_ID_RE = TAG_RE = NAME_RE

#: Fields of the record that may be nil; Lua's cmsgpack would drop them otherwise.
_NULLABLE = ("call", "offer_leg", "wrapup_until")

_LUA_INDEX = r"""
-- Keeps the index sets in step with one agent's record (old may be nil).
-- agents:available        sorted set of agents free now, scored in routing order:
--                         fewest tags first, then longest idle (ties: by id, Redis's order)
-- agents:available:<tag>  the same, per tag, so a search walks only agents with the tag
-- agents:ready            set of agents logged in (ready) with a registered phone
-- agents:tag:<tag>        set of agents carrying the tag
local function index(prefix, id, old, new)
  local avail = prefix .. "agents:available"
  local ready = prefix .. "agents:ready"
  local tags = new.tags or {}
  local free = new.login == "ready" and new.registered == true and new.activity == "idle"
  local score = #tags * 1e10 + (tonumber(new.idle_since) or 0)
  if new.login == "ready" and new.registered == true then
    redis.call("SADD", ready, id)
  else
    redis.call("SREM", ready, id)
  end
  if free then redis.call("ZADD", avail, score, id) else redis.call("ZREM", avail, id) end
  local keep = {}
  for _, t in ipairs(tags) do keep[t] = true end
  if old then
    for _, t in ipairs(old.tags or {}) do
      if not keep[t] then
        redis.call("SREM", prefix .. "agents:tag:" .. t, id)
        redis.call("ZREM", avail .. ":" .. t, id)
      end
    end
  end
  for t, _ in pairs(keep) do
    redis.call("SADD", prefix .. "agents:tag:" .. t, id)
    if free then
      redis.call("ZADD", avail .. ":" .. t, score, id)
    else
      redis.call("ZREM", avail .. ":" .. t, id)
    end
  end
end
"""

_LUA_CANDIDATES = r"""
-- ARGV prefix, k, number of tags, tags..., excluded ids...
-- The first k free agents (routing order) carrying every tag and not excluded. It walks
-- the free list of the rarest required tag and checks the others, so the work follows
-- the agents who could take the call, not all agents.
local prefix, k, ntags = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local avail = prefix .. "agents:available"
local walk, best = avail, nil
local tags, skip = {}, {}
for i = 1, ntags do
  local t = ARGV[3 + i]
  local size = redis.call("ZCARD", avail .. ":" .. t)
  if best == nil or size < best then best, walk = size, avail .. ":" .. t end
  tags[i] = prefix .. "agents:tag:" .. t
end
for i = 4 + ntags, #ARGV do skip[ARGV[i]] = true end
local found, start, chunk = {}, 0, 200
while #found < k do
  local ids = redis.call("ZRANGE", walk, start, start + chunk - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if not skip[id] then
      local ok = true
      for _, t in ipairs(tags) do
        if redis.call("SISMEMBER", t, id) == 0 then ok = false break end
      end
      if ok then
        found[#found + 1] = id
        if #found >= k then break end
      end
    end
  end
  start = start + chunk
end
return found
"""

_LUA_WRITE = r"""
-- KEYS[1] agent record; ARGV version, prefix, id, expected rev (-1: must not exist), record.
-- 1 written, 0 rev changed (or exists), -2 foreign schema, -3 extension owned by another agent.
local old = nil
local raw = redis.call("GET", KEYS[1])
if raw then
  local ok, rec = pcall(cmsgpack.unpack, raw)
  if not ok or type(rec) ~= "table" or rec["_v"] ~= tonumber(ARGV[1]) then return -2 end
  old = rec
end
local expected = tonumber(ARGV[4])
if expected < 0 then
  if old then return 0 end
elseif not old or tonumber(old.rev) ~= expected then
  return 0
end
local new = cmsgpack.unpack(ARGV[5])
local owner = redis.call("HGET", ARGV[2] .. "agents:ext", new.ext)
if owner and owner ~= ARGV[3] then return -3 end
new["_v"] = tonumber(ARGV[1])
new.rev = expected + 1
if expected < 0 then new.rev = 1 end
redis.call("SET", KEYS[1], pack_map(new, {"call", "offer_leg", "wrapup_until"}))
redis.call("SADD", ARGV[2] .. "agents", ARGV[3])
redis.call("HSET", ARGV[2] .. "agents:ext", new.ext, ARGV[3])
if old and old.ext ~= new.ext and redis.call("HGET", ARGV[2] .. "agents:ext", old.ext) == ARGV[3]
then
  redis.call("HDEL", ARGV[2] .. "agents:ext", old.ext)
end
index(ARGV[2], ARGV[3], old, new)
return 1
"""

_LUA_RESERVE = r"""
-- KEYS[1] agent record; ARGV version, prefix, id, call uuid, now.
-- The record as now stored when reserved (or already reserved for this call),
-- else 0 not available, -1 missing, -2 foreign.
local rec, code = load_record(KEYS[1], ARGV[1])
if not rec then return code end
if rec.activity == "ringing" and rec.call == ARGV[4] then return redis.call("GET", KEYS[1]) end
if rec.login ~= "ready" or rec.registered ~= true or rec.activity ~= "idle" then return 0 end
rec.activity = "ringing"
rec.call = ARGV[4]
rec.since = tonumber(ARGV[5])
rec.rev = (tonumber(rec.rev) or 0) + 1
save_record(KEYS[1], rec, {"call", "offer_leg", "wrapup_until"})
index(ARGV[2], ARGV[3], rec, rec)
return redis.call("GET", KEYS[1])
"""

_LUA_DELETE = r"""
-- KEYS[1] agent record; ARGV version, prefix, id. 1 deleted, -1 missing.
local rec, code = load_record(KEYS[1], ARGV[1])
if not rec then return code end
redis.call("DEL", KEYS[1])
redis.call("SREM", ARGV[2] .. "agents", ARGV[3])
redis.call("ZREM", ARGV[2] .. "agents:available", ARGV[3])
redis.call("SREM", ARGV[2] .. "agents:ready", ARGV[3])
if redis.call("HGET", ARGV[2] .. "agents:ext", rec.ext) == ARGV[3] then
  redis.call("HDEL", ARGV[2] .. "agents:ext", rec.ext)
end
for _, t in ipairs(rec.tags or {}) do
  redis.call("SREM", ARGV[2] .. "agents:tag:" .. t, ARGV[3])
  redis.call("ZREM", ARGV[2] .. "agents:available:" .. t, ARGV[3])
end
return 1
"""


class AgentError(Exception):
    """An operator asked for something about agents that cannot be done (stable name)."""


class UnknownAgent(AgentError):
    pass


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent as stored: who it is plus its presence."""

    id: str
    extension: str
    tags: frozenset[str]
    state: AgentState
    call: str | None = None  # the caller uuid it is reserved for / talking to
    rev: int = 0

    def view(self) -> AgentView:
        return AgentView(
            id=self.id,
            extension=self.extension,
            tags=self.tags,
            login=str(self.state.login),
            registered=self.state.registered,
            activity=str(self.state.activity),
            idle_since=self.state.idle_since,
        )

    def to_record(self) -> dict[str, Any]:
        state = self.state.to_dict()
        state.pop("v", None)
        state.pop("agent_id", None)
        return {
            **state,
            "id": self.id,
            "ext": self.extension,
            "tags": sorted(self.tags),
            "call": self.call,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Agent:
        data = dict(record)
        for name in _NULLABLE:
            data.setdefault(name, None)
        for name in ("since", "idle_since", "wrapup_until"):
            if isinstance(data.get(name), int):
                data[name] = float(data[name])
        if isinstance(data.get("personal"), dict):  # Lua writes an empty list as a map
            data["personal"] = []
        if isinstance(data.get("tags"), dict):
            data["tags"] = []
        state = AgentState.from_dict({**data, "agent_id": data["id"]})
        return cls(
            id=str(data["id"]),
            extension=str(data["ext"]),
            tags=frozenset(data.get("tags") or ()),
            state=state,
            call=data.get("call"),
            rev=int(data.get("rev", 0)),
        )


def check_agent_id(agent_id: str) -> str:
    if not isinstance(agent_id, str) or not AGENT_ID_RE.match(agent_id):
        raise AgentError(f"agent id {agent_id!r}: use 1-32 lower-case letters, digits, '-' or '_'")
    return agent_id


def check_extension(extension: str) -> str:
    if not isinstance(extension, str) or not EXTENSION_RE.match(extension):
        raise AgentError(f"extension {extension!r}: use 1-16 digits")
    return extension


def check_tags(tags: Iterable[str]) -> frozenset[str]:
    result = normalize_tags(tags)
    for tag in result:
        if not TAG_RE.match(tag):
            raise AgentError(f"tag {tag!r}: use 1-32 lower-case letters, digits, '-' or '_'")
    return result


class AgentRepository:
    """Agents over a :class:`Store`; every write atomic (see the module docstring)."""

    MAX_CAS_RETRIES = 20

    def __init__(self, store: Store) -> None:
        self.store = store
        self.prefix = store.keys.prefix
        self._cache: dict[str, Agent] = {}  # last record seen or written, per agent
        store.scripts.register("agent_write", _LUA_INDEX + _LUA_WRITE)
        store.scripts.register("agent_reserve", _LUA_INDEX + _LUA_RESERVE)
        store.scripts.register("agent_delete", _LUA_DELETE)
        store.scripts.register("agent_candidates", _LUA_CANDIDATES, prelude=False)

    # -- keys ----------------------------------------------------------------
    def _key(self, agent_id: str) -> str:
        return self.store.keys.agent(agent_id)

    def _set(self, name: str) -> str:
        return f"{self.prefix}agents{name}"

    # -- reads ---------------------------------------------------------------
    def get(self, agent_id: str) -> Agent | None:
        record = self.store.get(self._key(agent_id))
        if record is None:
            self._cache.pop(agent_id, None)
            return None
        agent = Agent.from_record(record)
        self._cache[agent_id] = agent
        return agent

    def require(self, agent_id: str) -> Agent:
        agent = self.get(check_agent_id(agent_id))
        if agent is None:
            raise UnknownAgent(f"no agent {agent_id!r}")
        return agent

    def ids(self) -> list[str]:
        with unavailable_as_domain_error("agents.ids"):
            raw = self.store.client.smembers(self._set(""))
        return sorted(x.decode() for x in raw)

    def all(self) -> list[Agent]:
        return self._many(self.ids())

    def _many(self, ids: Iterable[str]) -> list[Agent]:
        ids = list(ids)
        records = self.store.get_many([self._key(i) for i in ids])
        return [Agent.from_record(r) for r in records if r is not None]

    def id_for_extension(self, extension: str) -> str | None:
        with unavailable_as_domain_error("agents.by_ext"):
            raw = self.store.client.hget(self._set(":ext"), extension)
        return None if raw is None else raw.decode()

    def by_extension(self, extension: str) -> Agent | None:
        agent_id = self.id_for_extension(extension)
        return None if agent_id is None else self.get(agent_id)

    def available_with(
        self, tags: Iterable[str], *, limit: int = 0, exclude: Iterable[str] = ()
    ) -> list[AgentView]:
        """Free agents (ready, registered, idle) carrying every tag, in routing order.

        ``limit`` > 0 returns only the first ones: Redis walks its sorted index and
        the daemon decodes a handful of records, however many agents there are.
        """
        tag_list = sorted(set(tags))
        args = [self.prefix, limit or 1_000_000, len(tag_list), *tag_list, *exclude]
        ids = self.store.scripts.call("agent_candidates", keys=[], args=args)
        return [a.view() for a in self._many(x.decode() for x in ids)]

    def ready_with(self, tags: Iterable[str]) -> set[str]:
        """Ids of agents logged in with a registered phone carrying every tag (busy or free)."""
        sets = [self._set(":ready")] + [self._set(f":tag:{t}") for t in sorted(set(tags))]
        with unavailable_as_domain_error("agents.ready_with"):
            return {x.decode() for x in self.store.client.sinter(sets)}

    def count_with(self, tags: Iterable[str], *, logged_in: bool = True) -> list[Agent]:
        """Every agent with the tags (for 'is anyone left who could take it?')."""
        sets = [self._set("")] + [self._set(f":tag:{t}") for t in sorted(set(tags))]
        with unavailable_as_domain_error("agents.with_tags"):
            raw = self.store.client.sinter(sets)
        agents = self._many(sorted(x.decode() for x in raw))
        if logged_in:
            agents = [a for a in agents if a.state.login is not Login.LOGGED_OUT]
        return agents

    def count_free(self, tags: Iterable[str] = ()) -> int:
        """Free agents carrying every tag, counted by Redis from the indexes (metrics, the
        systemd status line): no agent record is read, whatever the number of agents."""
        keys = [self._set(":available")] + [self._set(f":tag:{t}") for t in sorted(set(tags))]
        with unavailable_as_domain_error("agents.count_free"):
            if len(keys) == 1:
                return int(self.store.client.zcard(keys[0]))
            return int(self.store.client.execute_command("ZINTERCARD", len(keys), *keys))

    def any_free(self) -> bool:
        with unavailable_as_domain_error("agents.any_free"):
            return bool(self.store.client.zcard(self._set(":available")))

    # -- writes --------------------------------------------------------------
    def create(self, agent_id: str, extension: str, tags: Iterable[str], now: float) -> Agent:
        """A new, logged-out agent. AgentError if the id or extension is taken."""
        check_agent_id(agent_id)
        check_extension(extension)
        tag_set = check_tags(tags)
        agent = Agent(
            agent_id,
            extension,
            tag_set,
            AgentState(agent_id, since=now, idle_since=now),
        )
        if not self._write(agent, expected_rev=-1):
            raise AgentError(f"agent {agent_id!r} exists already")
        log.info("agent.created", agent=agent_id, extension=extension, tags=sorted(tag_set))
        return dataclasses.replace(agent, rev=1)

    def ensure(self, agent_id: str, extension: str, tags: Iterable[str], now: float) -> Agent:
        """Create the agent from configuration unless it exists (run-time tags win).

        A configured extension that changed is applied; AgentError when another agent
        holds it (checked atomically in the write).
        """
        check_extension(extension)
        existing = self.get(agent_id)
        if existing is None:
            try:
                return self.create(agent_id, extension, tags, now)
            except AgentError:
                existing = self.get(agent_id)
                if existing is None:
                    raise  # the extension is someone else's: say so
        if existing.extension != extension:
            return self.update(agent_id, lambda a: dataclasses.replace(a, extension=extension))
        return existing

    def set_tags(self, agent_id: str, tags: Iterable[str]) -> Agent:
        tag_set = check_tags(tags)
        return self.update(agent_id, lambda a: dataclasses.replace(a, tags=tag_set))

    def delete(self, agent_id: str) -> bool:
        self._cache.pop(agent_id, None)
        code = self.store.scripts.call(
            "agent_delete",
            keys=[self._key(check_agent_id(agent_id))],
            args=[self.store.codec.schema_version, self.prefix, agent_id],
        )
        return code == 1

    def reserve(self, agent_id: str, call_uuid: str, now: float) -> bool:
        """Atomically make a ready, registered, idle agent ``ringing`` for ``call_uuid``."""
        self._cache.pop(agent_id, None)  # the script bumps the revision
        result = self.store.scripts.call(
            "agent_reserve",
            keys=[self._key(agent_id)],
            args=[self.store.codec.schema_version, self.prefix, agent_id, call_uuid, repr(now)],
        )
        if not isinstance(result, bytes):
            return False
        # The script hands back the record it wrote: the next write starts from it.
        self._cache[agent_id] = Agent.from_record(self.store.codec.decode(result))
        return True

    def update(self, agent_id: str, change: Callable[[Agent], Agent]) -> Agent:
        """Apply ``change`` and compare-and-set; re-read and retry when another writer won.

        The first attempt starts from this process's last copy of the record when it
        has one: Redis refuses the write if the revision moved on, so a stale copy
        costs one retry, never a lost update, and the usual case is one round trip.
        """
        agent = self._cache.get(agent_id)
        for _ in range(self.MAX_CAS_RETRIES):
            if agent is None:
                agent = self.require(agent_id)
            new = change(agent)
            if new == agent:
                return agent
            if self._write(new, expected_rev=agent.rev):
                written = dataclasses.replace(new, rev=agent.rev + 1)
                self._cache[agent_id] = written
                return written
            agent = None
        raise AgentError(f"agent {agent_id!r}: too many concurrent writers")

    def transition(
        self,
        agent_id: str,
        step: Callable[[AgentState], Outcome],
        *,
        call: Callable[[Agent, AgentState], str | None] | None = None,
    ) -> tuple[Agent, Outcome]:
        """Apply one :mod:`ccd.core.presence` function; ``call`` decides the new fence."""
        outcome: Outcome | None = None

        def change(agent: Agent) -> Agent:
            nonlocal outcome
            outcome = step(agent.state)
            new_call = agent.call if call is None else call(agent, outcome.state)
            if outcome.state.activity is Activity.IDLE and outcome.state.offer_leg is None:
                new_call = None
            return dataclasses.replace(agent, state=outcome.state, call=new_call)

        agent = self.update(agent_id, change)
        assert outcome is not None
        return agent, outcome

    def _write(self, agent: Agent, expected_rev: int) -> bool:
        code = self.store.scripts.call(
            "agent_write",
            keys=[self._key(agent.id)],
            args=[
                self.store.codec.schema_version,
                self.prefix,
                agent.id,
                expected_rev,
                self.store.codec.encode(agent.to_record()),
            ],
        )
        if code == -2:
            raise AgentError(f"agent {agent.id!r} is stored in another schema version")
        if code == -3:
            owner = self.id_for_extension(agent.extension)
            raise AgentError(f"extension {agent.extension} already belongs to agent {owner!r}")
        return code == 1
