"""Agents in Redis: configuration (extension, tags) and live presence, kept atomic.

Theory of operation
-------------------
Each agent is one msgpack record ``agent:<id>`` holding its extension, tags and
the presence state of :mod:`ccd.core.presence` (login, registered, activity, the
live legs on the phone, wrap-up deadline), plus ``call`` (the caller uuid it
is reserved for) and ``rev``, a revision bumped by every write.

Every write goes through the routing script (:mod:`ccd.store.routing`), so several daemons
sharing one Redis stay right:

* a reservation makes a free agent ``ringing`` for one call (the fence against two calls or
  two daemons ringing one agent);
* a write is a compare-and-set of the whole record on ``rev``: presence transitions are
  computed in Python by the pure functions of :mod:`ccd.core.presence` and written only if
  nobody wrote in between (else the writer re-reads and recomputes).

Both keep the indexes in step with the records (the free-agent index in routing order,
``agents:ready``, ``agents:tag:<tag>``, ``agents`` and the extension map ``agents:ext``), so
the candidates for a call are the first members of one sorted set, however many agents there
are. ``call`` is set while the agent is reserved for or talking to a queue call and cleared
when that leg is gone; a wrap-up then ends by itself (:func:`ccd.core.presence.current`).
"""

from __future__ import annotations

import dataclasses
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ccd.config import EXTENSION_RE, NAME_RE
from ccd.core.presence import AgentState, Login, Outcome, current
from ccd.core.routing import TAG_RE, AgentView, normalize_tags
from ccd.store.batch import Batch, Then
from ccd.store.redis_store import Store, unavailable_as_domain_error
from ccd.store.routing import Routing

log = structlog.get_logger()

# One rule for names, shared with the configuration file's validation.
AGENT_ID_RE = NAME_RE

#: Fields of the record that may be nil; Lua's cmsgpack would drop them otherwise.
_NULLABLE = ("call", "offer_leg", "wrapup_until")


@dataclass(frozen=True, slots=True)
class AgentPhone:
    """What a resync compares with FreeSWITCH for one agent."""

    id: str
    extension: str
    registered: bool
    calls: tuple[str, ...]  # the queue leg and personal calls the record says are on the phone


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

    def at(self, now: float) -> Agent:
        """The agent as it stands at ``now``: a wrap-up whose time is up has ended (nobody
        writes that: :func:`ccd.core.presence.current`). For showing, not for writing."""
        state = current(self.state, now)
        return self if state is self.state else dataclasses.replace(self, state=state)

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

    def __init__(self, store: Store, routing: Routing | None = None) -> None:
        self.store = store
        self.prefix = store.keys.prefix
        self.routing = routing if routing is not None else Routing(store, "cli")
        self._cache: dict[str, Agent] = {}  # last record seen or written, per agent
        # Records a resync read and nobody decoded yet (20,000 agents a minute: decoding
        # each into an Agent would cost the dispatcher ~0.1 s); newer than _cache's copy
        # when both are held, decoded into it when first asked for.
        self._records: dict[str, dict[str, Any]] = {}

    # -- keys ----------------------------------------------------------------
    def _key(self, agent_id: str) -> str:
        return self.store.keys.agent(agent_id)

    def _set(self, name: str) -> str:
        return f"{self.prefix}agents{name}"

    # -- reads ---------------------------------------------------------------
    def get(self, agent_id: str) -> Agent | None:
        record = self.store.get(self._key(agent_id))
        if record is None:
            self.forget(agent_id)
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

    def scan_ids(self, count: int) -> Iterator[list[str]]:
        """Every agent id, about ``count`` per round trip (SSCAN): a caller that pauses
        between batches never holds Redis or itself for the whole set. An agent added or
        removed meanwhile may be left out or seen; none is given twice."""
        seen: set[str] = set()
        cursor = 0
        while True:
            with unavailable_as_domain_error("agents.ids"):
                cursor, raw = self.store.client.sscan(self._set(""), cursor, count=count)
            batch = [i for i in (x.decode() for x in raw) if i not in seen]
            seen.update(batch)
            if batch:
                yield batch
            if cursor == 0:
                return

    def all(self) -> list[Agent]:
        return self.many(self.ids())

    def many(self, ids: Iterable[str]) -> list[Agent]:
        """The agents with these ids that exist (one round trip)."""
        ids = list(ids)
        records = self.store.get_many([self._key(i) for i in ids])
        agents = [Agent.from_record(r) for r in records if r is not None]
        for agent in agents:  # the last copy seen: where a write starts, what Redis lost
            self._cache[agent.id] = agent
        return agents

    def phones(self, ids: Iterable[str]) -> list[AgentPhone]:
        """Extension, registration and calls of the agents with these ids that exist (one
        round trip); the records are kept, undecoded, as this process's last copy."""
        ids = list(ids)
        records = self.store.get_many([self._key(i) for i in ids])
        cache, kept = self._cache, self._records
        phones = []
        for record in records:
            if record is None:
                continue
            agent_id = str(record["id"])
            rev = int(record.get("rev", 0))
            known = cache.get(agent_id)
            held = kept.get(agent_id) if known is None else None
            # Only a newer copy is kept: an unchanged record is dropped at once instead of
            # joining the long-lived heap the garbage collector walks (a 50-90 ms pause
            # at 20,000 agents when every resync replaced every copy).
            if (known is None or known.rev < rev) and (held is None or held.get("rev", 0) < rev):
                cache.pop(agent_id, None)
                kept[agent_id] = record
            personal = record.get("personal")
            leg = record.get("offer_leg")
            calls = (leg,) if leg else ()
            if personal and isinstance(personal, list):
                calls += tuple(str(p) for p in personal)
            phones.append(
                AgentPhone(agent_id, str(record["ext"]), bool(record.get("registered")), calls)
            )
        return phones

    def id_for_extension(self, extension: str) -> str | None:
        with unavailable_as_domain_error("agents.by_ext"):
            raw = self.store.client.hget(self._set(":ext"), extension)
        return None if raw is None else raw.decode()

    def by_extension(self, extension: str) -> Agent | None:
        agent_id = self.id_for_extension(extension)
        return None if agent_id is None else self.get(agent_id)

    def available_with(
        self, tags: Iterable[str], *, limit: int = 0, now: float | None = None
    ) -> list[AgentView]:
        """Free agents carrying every tag at ``now`` (default: the wall clock), in routing
        order.

        ``limit`` > 0 returns only the first ones: Redis walks its sorted index and
        the daemon decodes a handful of records, however many agents there are.
        """
        at = time.time() if now is None else now
        ids = self.routing.one(Routing.candidates(tags, limit or 1_000_000), at)
        # As they stand at ``at``: nobody writes the end of a wrap-up, so a record can still
        # say "wrapup" after its time is up (ccd.core.routing.candidates wants them idle).
        return [a.at(at).view() for a in self.many(ids)]

    def count_with(self, tags: Iterable[str], *, logged_in: bool = True) -> list[Agent]:
        """Every agent with the tags (logged in ones only, by default)."""
        sets = [self._set("")] + [self._set(f":tag:{t}") for t in sorted(set(tags))]
        with unavailable_as_domain_error("agents.with_tags"):
            raw = self.store.client.sinter(sets)
        agents = self.many(sorted(x.decode() for x in raw))
        if logged_in:
            agents = [a for a in agents if a.state.login is not Login.LOGGED_OUT]
        return agents

    def count_free(self, tags: Iterable[str] = (), *, now: float | None = None) -> int:
        """Free agents carrying every tag at ``now`` (default: the wall clock), counted by
        Redis from the free index (metrics, the systemd status line): no record is decoded
        for a queue of one tag or none."""
        at = time.time() if now is None else now
        return int(self.routing.one(Routing.count_free(tags), at))

    def index_tagsets(self, slice_size: int = 500) -> int:
        """Build the index by tag set for agents an older ccd wrote, ``slice_size`` agents
        per script call (a few ms each at most), before any search needs it: the search
        would build it in one script, holding Redis ~0.3 s at 20,000 agents. Answers how
        many agents were indexed; 0 when the index was there."""
        with unavailable_as_domain_error("agents.index_tagsets"):
            if self.store.client.exists(self.store.keys.tagsets_built()):
                return 0
        count = 0
        for ids in self.scan_ids(slice_size):
            count += int(self.routing.one(Routing.index_tagsets(ids), 0.0))
        self.routing.one(Routing.mark_tagsets(), 0.0)
        return count

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
        self.forget(agent_id)
        return self.routing.one(Routing.delete(check_agent_id(agent_id)), 0.0) == 1

    def reserve(
        self, agent_id: str, call_uuid: str, now: float, *, leg: str = "", job: str = ""
    ) -> Agent | None:
        """Atomically make a free agent ``ringing`` for ``call_uuid`` (the offer on ``leg``):
        the agent as now stored, or None when it is not free."""
        self.forget(agent_id)
        record = self.routing.one(Routing.reserve(agent_id, call_uuid, leg, job), now)
        return self.remember(record) if record else None

    def hand_out(self, agent_id: str, now: float | None = None) -> Any:
        """The agent (free, say just logged in from the CLI) goes to the best waiting call at
        once: routing reserves it and tells the daemon hunting that call. Its answer, or
        False when nobody waits for this agent (or it is not free)."""
        at = time.time() if now is None else now
        leg, job = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        return self.routing.one(Routing.free(check_agent_id(agent_id), leg, job), at)

    def remember(self, record: Mapping[str, Any]) -> Agent:
        """A record a routing operation answered with: the next write starts from it."""
        agent = Agent.from_record(record)
        self._cache[agent.id] = agent
        return agent

    def remember_state(self, agent: Agent, state: AgentState) -> Agent:
        """The agent with a state nobody needs to write (a wrap-up that ended by itself)."""
        new = dataclasses.replace(agent, state=state)
        self._cache[agent.id] = new
        return new

    def cached(self, agent_id: str) -> Agent | None:
        """This process's last copy of the agent (no round trip; may be stale)."""
        agent = self._cache.get(agent_id)
        if agent is None:
            record = self._records.pop(agent_id, None)
            if record is not None:
                agent = self._cache[agent_id] = Agent.from_record(record)
        return agent

    def update(self, agent_id: str, change: Callable[[Agent], Agent]) -> Agent:
        """Apply ``change`` and compare-and-set; re-read and retry when another writer won.

        The first attempt starts from this process's last copy of the record when it
        has one: Redis refuses the write if the revision moved on, so a stale copy
        costs one retry, never a lost update, and the usual case is one round trip.
        """
        agent = self.cached(agent_id)
        for _ in range(self.MAX_CAS_RETRIES):
            if agent is None:
                agent = self.require(agent_id)
            new = change(agent)
            if new == agent:
                return agent
            if self._write(new, expected_rev=agent.rev):
                return self._cache[agent_id]
            agent = None
        raise AgentError(f"agent {agent_id!r}: too many concurrent writers")

    def transition(
        self, agent_id: str, step: Callable[[AgentState], Outcome]
    ) -> tuple[Agent, Outcome]:
        """Apply one :mod:`ccd.core.presence` function and write it now (compare-and-set)."""
        outcome: Outcome | None = None

        def change(agent: Agent) -> Agent:
            nonlocal outcome
            new, outcome = self.apply(agent, step)
            return new

        agent = self.update(agent_id, change)
        assert outcome is not None
        return agent, outcome

    @staticmethod
    def apply(agent: Agent, step: Callable[[AgentState], Outcome]) -> tuple[Agent, Outcome]:
        """The agent after one presence function; ``call`` is cleared with the queue leg."""
        outcome = step(agent.state)
        call = agent.call if outcome.state.offer_leg is not None else None
        return dataclasses.replace(agent, state=outcome.state, call=call), outcome

    def known(self) -> list[Agent]:
        """Every agent this process holds a copy of (login, tags, the call it is on)."""
        return [a for a in map(self.cached, {*self._cache, *self._records}) if a is not None]

    def restore_op(self, batch: Batch, agents: Iterable[Agent], now: float) -> None:
        """Redis lost its data: write ``agents`` (from :meth:`known`) back, each anew."""
        for agent in agents:
            batch.route(Routing.write(agent.id, -1, self._encode(agent)), now)

    def forget(self, agent_id: str) -> None:
        """Drop this process's copy (another writer won): the next use reads Redis."""
        self._cache.pop(agent_id, None)
        self._records.pop(agent_id, None)

    def write_op(
        self, batch: Batch, new: Agent, expected_rev: int, now: float, then: Then | None = None
    ) -> None:
        """Append the compare-and-set of ``new`` to ``batch`` (the engine's unit of work);
        ``then`` gets True when it was written (the cache follows), False when another
        writer won (the cache is dropped: re-read and decide again)."""

        def done(code: int) -> None:
            written = self._written(new, expected_rev, code)
            if then is not None:
                then(written)

        batch.route(Routing.write(new.id, expected_rev, self._encode(new)), now, done)

    def _encode(self, agent: Agent) -> bytes:
        return self.store.codec.encode(agent.to_record())

    def _write(self, agent: Agent, expected_rev: int) -> bool:
        code = self.routing.one(Routing.write(agent.id, expected_rev, self._encode(agent)), 0.0)
        return self._written(agent, expected_rev, code)

    def _written(self, agent: Agent, expected_rev: int, code: int) -> bool:
        if code == -2:
            raise AgentError(f"agent {agent.id!r} is stored in another schema version")
        if code == -3:
            owner = self.id_for_extension(agent.extension)
            raise AgentError(f"extension {agent.extension} already belongs to agent {owner!r}")
        if code == 1:
            self._cache[agent.id] = dataclasses.replace(agent, rev=max(expected_rev, 0) + 1)
            return True
        self.forget(agent.id)
        return False
