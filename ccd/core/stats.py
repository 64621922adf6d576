"""Call-center statistics (issue 13): what is counted from which fact, and the figures.

Theory of operation
-------------------
The engine already says everything that happens as facts (``call.queued``, ``call.bridged``,
``agent.state``...; :class:`ccd.core.commands.Fact`). Statistics are a fold over them:
:func:`count` turns ONE fact and the time it happened into operations on counters, and
:func:`fold` merges the operations of many facts (one event's, or a whole day's) into as few as
possible. Nothing here reads a clock or a store; ccd.store.stats applies the operations to
Redis (counters shared by every daemon) and reads them back; the figures (service level, ASA,
AHT, abandonment, occupancy) are computed from counters by the pure functions below.

Two kinds of operations:

* :class:`Increment` ``(counter, field, amount)``: add to one field of one counter hash. A
  :class:`Counter` is a queue's day (in the queue's time zone), a queue's minute bucket (the
  sliding windows add up the last N minutes) or an agent's day (the centre's zone). Each
  event counts on the day and in the minute of its own time.
* :class:`AgentMove`: the agent's wallboard status changed (see :func:`agent_status`). Time in a
  status is only known once the status ends, and the moment it began may have been seen by
  another daemon, so the store keeps each agent's current status and its start in Redis and
  a Lua step closes the interval: seconds per status per agent day (occupancy), talk and
  wrap-up seconds of a queue call for that queue (AHT), and the per-queue "agents by state"
  counts, moved from the old status to the new one (cheap at 20,000 agents).

The definitions are written out in the README ("Statistics"); :data:`COUNTED` is the table of
what each fact adds.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ccd.core.commands import Fact

__all__ = [
    "AGENT_TIME_FIELDS",
    "COUNTED",
    "FLOAT_FIELDS",
    "QUEUE_FIELDS",
    "STATUSES",
    "AgentDay",
    "AgentMove",
    "Counter",
    "Folded",
    "Increment",
    "QueueCounts",
    "QueueStatsRules",
    "StatsRules",
    "agent_status",
    "count",
    "day_of",
    "day_start",
    "fold",
    "minute_of",
    "served_queues",
]

#: An agent's status on the wallboard, busiest first. ringing, oncall and wrapup win over the
#: login (an agent on break who makes a call is on a call); then break, logged_out; a logged-in
#: agent whose phone is not registered is ``unregistered``; else ``free``.
STATUSES = ("oncall", "ringing", "wrapup", "free", "break", "unregistered", "logged_out")
#: Statuses whose seconds are kept per agent day (logged-out time is not).
AGENT_TIME_FIELDS = ("free", "ringing", "oncall", "wrapup", "break", "unregistered")
#: Counts per agent day.
AGENT_COUNT_FIELDS = ("offered", "answered", "missed")

#: Fields of a queue's counters (day and minute buckets alike).
QUEUE_FIELDS = (
    "offered",  # calls that entered the queue
    "answered",  # calls connected to an agent (bridged)
    "answered_sl",  # ... after waiting at most the queue's service level time T
    "wait_answered",  # seconds waited by the answered calls, summed
    "abandoned",  # callers who hung up before reaching an agent (also during the offer)
    "abandoned_short",  # ... after waiting less than the short-abandon time
    "wait_abandoned",  # seconds waited by the abandoned calls, summed
    "overflowed",  # callers who reached overflow_time and heard the callback offer
    "callback_requested",  # ... who left a callback request there (their call ends)
    "voicemail",  # calls sent to the queue's voicemail (no agent left to try)
    "unanswered",  # calls hung up by the daemon (on_exhausted = hangup)
    "handled",  # answered calls whose conversation ended
    "talk",  # seconds agents spent on the queue's calls (agent side, from the answer)
    "wrapup",  # seconds of wrap-up after the queue's calls
    "callbacks_stored",  # callback requests stored for the queue (any origin)
    "callbacks_connected",  # callback attempts that connected customer and agent
    "callbacks_unreached",  # requests that ran out of attempts
)
#: Fields that hold seconds (HINCRBYFLOAT); all others are whole counts (HINCRBY).
FLOAT_FIELDS = frozenset({"wait_answered", "wait_abandoned", "talk", "wrapup", *AGENT_TIME_FIELDS})

#: What each fact adds (documentation and tests; :func:`count` is the code).
COUNTED: Mapping[str, str] = {
    "call.queued": "queue: offered +1",
    "call.bridged": "queue: answered +1, answered_sl +1 if waited <= T, wait_answered +waited;"
    " agent: answered +1",
    "call.abandoned": "queue: abandoned +1, abandoned_short +1 if waited < S,"
    " wait_abandoned +waited",
    "call.overflow": "queue: overflowed +1",
    "call.callback_requested": "queue: callback_requested +1",
    "call.voicemail": "queue: voicemail +1",
    "call.unanswered": "queue: unanswered +1",
    "call.ended": "queue: handled +1",
    "callback.stored": "queue: callbacks_stored +1",
    "callback.connected": "queue: callbacks_connected +1",
    "callback.unreached": "queue: callbacks_unreached +1",
    "agent.offered": "agent: offered +1; move to ringing, talk/wrap-up attributed to the queue",
    "agent.no_answer": "agent: missed +1",
    "agent.state": "move to agent_status(login, registered, activity); what the agent does"
    " after its call: break (login break), logged_out (logout pending) or ready",
    "agent.logout_pending": "what the agent does after its call: logged_out",
    "agent.logout_cancelled": "what the agent does after its call: ready",
}

_QUEUE_ONE = {
    "call.queued": "offered",
    "call.overflow": "overflowed",
    "call.callback_requested": "callback_requested",
    "call.voicemail": "voicemail",
    "call.unanswered": "unanswered",
    "call.ended": "handled",
    "callback.stored": "callbacks_stored",
    "callback.connected": "callbacks_connected",
    "callback.unreached": "callbacks_unreached",
}


# --- rules and time ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueStatsRules:
    """``service_level_time`` T: answered within T seconds counts for the service level;
    ``short_abandon_time`` S: a caller who hangs up after waiting less than S seconds is a
    short abandon (0: none is); ``tz``: the zone of the queue's days."""

    service_level_time: float = 20.0
    short_abandon_time: float = 5.0
    tz: dt.tzinfo = dt.UTC

    def __post_init__(self) -> None:
        if not self.service_level_time > 0 or self.short_abandon_time < 0:
            raise ValueError("service_level_time must be > 0 and short_abandon_time >= 0")


@dataclass(frozen=True, slots=True)
class StatsRules:
    """Per-queue rules (``default`` for a queue the configuration does not name), the centre's
    zone for agents' days, the sliding windows (minutes) and the days counters are kept."""

    queues: Mapping[str, QueueStatsRules] = field(default_factory=dict)
    default: QueueStatsRules = QueueStatsRules()
    tz: dt.tzinfo = dt.UTC
    windows: tuple[int, ...] = (15, 60)
    retention_days: int = 400

    def __post_init__(self) -> None:
        if not self.windows or any(not 1 <= w <= 1440 for w in self.windows):
            raise ValueError("windows must be 1..1440 minutes")
        if self.retention_days < 1:
            raise ValueError("retention_days must be >= 1")

    def queue(self, name: str) -> QueueStatsRules:
        return self.queues.get(name, self.default)

    @property
    def bucket_minutes(self) -> int:
        """How long a minute bucket must live: the longest window."""
        return max(self.windows)


def day_of(at: float, tz: dt.tzinfo) -> str:
    """The calendar day (``YYYY-MM-DD``) of epoch time ``at`` in ``tz``."""
    day = _day_of_block(int(at // _BLOCK), tz)
    return day if day is not None else dt.datetime.fromtimestamp(at, tz).date().isoformat()


#: Seconds in which a zone's day does not change: every offset and DST change of today's
#: zones falls on a quarter hour (a block that holds a change is not cached).
_BLOCK = 900


@functools.lru_cache(maxsize=1024)  # every fact counted asks, several times
def _day_of_block(block: int, tz: dt.tzinfo) -> str | None:
    first, last = (
        dt.datetime.fromtimestamp(t, tz).date().isoformat()
        for t in (block * _BLOCK, block * _BLOCK + _BLOCK - 0.001)
    )
    return first if first == last else None


@functools.lru_cache(maxsize=1024)  # a few days and zones: every fact asks again
def day_start(day: str, tz: dt.tzinfo) -> float:
    """Epoch time of the local midnight that starts ``day`` in ``tz``."""
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), tz).timestamp()


def minute_of(at: float) -> int:
    """The minute bucket of ``at``: whole minutes since the epoch (no zone needed)."""
    return int(at // 60)


@functools.lru_cache(maxsize=1024)
def _previous_day(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


# --- operations -------------------------------------------------------------------------------


class Counter(NamedTuple):
    """One counter hash: ``kind`` queue_day | queue_minute | agent_day, whose (queue or agent),
    ``period`` (a day, or a minute number as text) and its expiry: a day's counters expire at
    ``expire_at`` (epoch seconds, the retention after the day's end), a minute bucket ``ttl``
    seconds after its last write (the longest window and a little more)."""

    kind: str
    owner: str
    period: str
    expire_at: int = 0
    ttl: int = 0


class Increment(NamedTuple):
    counter: Counter
    field: str
    amount: int | float


@dataclass(frozen=True, slots=True)
class AgentMove:
    """The agent's status is ``status`` from ``at`` on (None: unchanged, only ``queues`` or the
    attribution change). ``queues``: the queues whose agents-by-state counts hold the agent
    (None: keep those recorded). ``queue``/``queue_day``: a queue call was offered; its talk
    and wrap-up seconds go to that counter. ``day``/``prev_day``/``since_day``: the agent's
    day counters (an interval that began before ``since_day`` is split at that midnight)."""

    agent: str
    status: str | None
    at: float
    day: Counter
    prev_day: Counter
    since_day: float
    minute: int
    minute_ttl: int
    queues: tuple[str, ...] | None = None
    queue: str | None = None
    queue_day: Counter | None = None
    then: str | None = None


class Folded(NamedTuple):
    increments: tuple[Increment, ...]
    moves: tuple[AgentMove, ...]


@functools.lru_cache(maxsize=1024)
def _expire_day(day: str, tz: dt.tzinfo, retention_days: int) -> int:
    end = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(), tz)
    return math.ceil(end.timestamp()) + retention_days * 86400


def _queue_counters(queue: str, at: float, rules: StatsRules) -> tuple[Counter, Counter]:
    tz = rules.queue(queue).tz
    day, minute = day_of(at, tz), minute_of(at)
    return (
        Counter("queue_day", queue, day, _expire_day(day, tz, rules.retention_days)),
        Counter("queue_minute", queue, str(minute), ttl=_minute_ttl(rules)),
    )


def _minute_ttl(rules: StatsRules) -> int:
    return (rules.bucket_minutes + 2) * 60


def _agent_day(agent: str, day: str, rules: StatsRules) -> Counter:
    return Counter("agent_day", agent, day, _expire_day(day, rules.tz, rules.retention_days))


def _waited(data: Mapping[str, Any]) -> float:
    """The ``waited`` seconds a fact carries; a missing or bad one counts as 0 (a fact of an
    older daemon during an upgrade)."""
    value = data.get("waited")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))


def agent_status(login: str, registered: bool, activity: str) -> str:
    """The wallboard status of an agent (see :data:`STATUSES`)."""
    if activity in ("ringing", "oncall", "wrapup"):
        return activity
    if login == "break":
        return "break"
    if login != "ready":
        return "logged_out"
    return "free" if registered else "unregistered"


def _then(data: Mapping[str, Any]) -> str:
    """What an agent does after its call, from an ``agent.state`` fact."""
    login = data.get("login")
    if data.get("logout_pending") or login == "logged_out":  # in wrap-up after a logout
        return "logged_out"
    return "break" if login == "break" else "ready"


def served_queues(tags: Iterable[str], queue_tags: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """The queues an agent with ``tags`` serves: those whose required tags it all carries."""
    have = set(tags)
    return tuple(sorted(q for q, need in queue_tags.items() if set(need) <= have))


def _move(
    agent: str,
    status: str | None,
    at: float,
    rules: StatsRules,
    **extra: Any,
) -> AgentMove:
    day = day_of(at, rules.tz)
    prev = _previous_day(day)
    minute = minute_of(at)
    return AgentMove(
        agent,
        status,
        at,
        _agent_day(agent, day, rules),
        _agent_day(agent, prev, rules),
        day_start(day, rules.tz),
        minute,
        _minute_ttl(rules),
        **extra,
    )


def count(
    fact: Fact,
    at: float,
    rules: StatsRules,
    served: Sequence[str] | None = None,
) -> list[Increment | AgentMove]:
    """What ``fact``, happened at epoch time ``at``, adds to the statistics (:data:`COUNTED`).

    ``served``: for ``agent.state``, the queues the agent serves now (:func:`served_queues`);
    None keeps the ones recorded. Facts that count nothing give [].
    """
    name, data = fact.name, fact.data
    queue = data.get("queue")
    agent = data.get("agent")
    out: list[Increment | AgentMove] = []

    def add(field_name: str, amount: int | float = 1) -> None:
        for counter in _queue_counters(queue, at, rules):
            out.append(Increment(counter, field_name, amount))

    def add_agent(field_name: str) -> None:
        out.append(Increment(_agent_day(agent, day_of(at, rules.tz), rules), field_name, 1))

    if name == "agent.state" and isinstance(agent, str) and agent:
        status = agent_status(
            str(data.get("login", "")), bool(data.get("registered")), str(data.get("activity", ""))
        )
        queues = None if served is None else tuple(served)
        return [_move(agent, status, at, rules, queues=queues, then=_then(data))]
    if name in ("agent.logout_pending", "agent.logout_cancelled") and isinstance(agent, str):
        then = "logged_out" if name == "agent.logout_pending" else "ready"
        return [_move(agent, None, at, rules, then=then)] if agent else []
    if name in ("agent.offered", "agent.no_answer") and isinstance(agent, str) and agent:
        add_agent("offered" if name == "agent.offered" else "missed")
        if name == "agent.offered" and isinstance(queue, str) and queue:
            qday = _queue_counters(queue, at, rules)[0]
            out.append(_move(agent, "ringing", at, rules, queue=queue, queue_day=qday))
        return out
    if not isinstance(queue, str) or not queue:
        return out
    if name in _QUEUE_ONE:
        add(_QUEUE_ONE[name])
    elif name == "call.bridged":
        waited = _waited(data)
        add("answered")
        if waited <= rules.queue(queue).service_level_time:
            add("answered_sl")
        add("wait_answered", waited)
        if isinstance(agent, str) and agent:
            add_agent("answered")
    elif name == "call.abandoned":
        waited = _waited(data)
        add("abandoned")
        if waited < rules.queue(queue).short_abandon_time:
            add("abandoned_short")
        add("wait_abandoned", waited)
    return out


def fold(
    facts: Iterable[tuple[Fact, float] | tuple[Fact, float, Sequence[str] | None]],
    rules: StatsRules,
) -> Folded:
    """:func:`count` over ``(fact, at[, served])`` in order; increments of one counter field
    are summed (one command each), agent moves kept in order (each one is a step in time)."""
    sums: dict[tuple[Counter, str], int | float] = {}
    moves: list[AgentMove] = []
    for item in facts:
        served = item[2] if len(item) > 2 else None  # type: ignore[misc]
        for op in count(item[0], item[1], rules, served):
            if isinstance(op, AgentMove):
                moves.append(op)
            else:
                key = (op.counter, op.field)
                sums[key] = sums.get(key, 0) + op.amount
    increments = tuple(Increment(c, f, a) for (c, f), a in sums.items())
    return Folded(increments, tuple(moves))


# --- figures ----------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return None if denominator <= 0 else numerator / denominator


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """A queue's counters over some period (a day, or the sum of minute buckets)."""

    offered: int = 0
    answered: int = 0
    answered_sl: int = 0
    wait_answered: float = 0.0
    abandoned: int = 0
    abandoned_short: int = 0
    wait_abandoned: float = 0.0
    overflowed: int = 0
    callback_requested: int = 0
    voicemail: int = 0
    unanswered: int = 0
    handled: int = 0
    talk: float = 0.0
    wrapup: float = 0.0
    callbacks_stored: int = 0
    callbacks_connected: int = 0
    callbacks_unreached: int = 0

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> QueueCounts:
        """From a counter hash as Redis returns it (bytes or str); unknown fields ignored,
        a negative or unreadable value counts as 0."""
        return cls(**_counters(raw, QUEUE_FIELDS))

    def __add__(self, other: QueueCounts) -> QueueCounts:
        return QueueCounts(**{f: getattr(self, f) + getattr(other, f) for f in QUEUE_FIELDS})

    @property
    def abandoned_long(self) -> int:
        """Abandons after the short-abandon time: the ones the SL and rate variants count."""
        return max(0, self.abandoned - self.abandoned_short)

    def service_level(self) -> float | None:
        """Answered within T / answered (None with no answered call)."""
        return _ratio(self.answered_sl, self.answered)

    def service_level_abandoned(self) -> float | None:
        """Answered within T / (answered + abandoned after the short-abandon time)."""
        return _ratio(self.answered_sl, self.answered + self.abandoned_long)

    def asa(self) -> float | None:
        """Average speed of answer: seconds waited by answered calls / answered."""
        return _ratio(self.wait_answered, self.answered)

    def aht(self) -> float | None:
        """Average handle time: (talk + wrap-up seconds) / handled calls."""
        return _ratio(self.talk + self.wrapup, self.handled)

    def abandon_rate(self) -> float | None:
        """Abandoned / offered."""
        return _ratio(self.abandoned, self.offered)

    def abandon_rate_long(self) -> float | None:
        """Short abandons left out of both: abandoned after S / (offered - short abandons)."""
        return _ratio(self.abandoned_long, self.offered - self.abandoned_short)

    def average_abandon_wait(self) -> float | None:
        return _ratio(self.wait_abandoned, self.abandoned)

    def to_dict(self) -> dict[str, Any]:
        """Counters and figures, as the /stats JSON carries them (figures None → null)."""
        out: dict[str, Any] = {f: _rounded(getattr(self, f)) for f in QUEUE_FIELDS}
        out.update(
            service_level=_rounded(self.service_level(), 4),
            service_level_abandoned=_rounded(self.service_level_abandoned(), 4),
            asa=_rounded(self.asa()),
            aht=_rounded(self.aht()),
            abandon_rate=_rounded(self.abandon_rate(), 4),
            abandon_rate_long=_rounded(self.abandon_rate_long(), 4),
            average_abandon_wait=_rounded(self.average_abandon_wait()),
        )
        return out


@dataclass(frozen=True, slots=True)
class AgentDay:
    """An agent's day: seconds per status (:data:`AGENT_TIME_FIELDS`) and counts."""

    free: float = 0.0
    ringing: float = 0.0
    oncall: float = 0.0
    wrapup: float = 0.0
    break_: float = 0.0
    unregistered: float = 0.0
    offered: int = 0
    answered: int = 0
    missed: int = 0

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> AgentDay:
        values = _counters(raw, (*AGENT_TIME_FIELDS, *AGENT_COUNT_FIELDS))
        if "break" in values:
            values["break_"] = values.pop("break")
        return cls(**values)

    @property
    def busy(self) -> float:
        """Seconds ringing, on a call or in wrap-up."""
        return self.ringing + self.oncall + self.wrapup

    @property
    def available(self) -> float:
        """Seconds logged in and either free or busy (break and an unregistered phone left out)."""
        return self.free + self.busy

    def occupancy(self) -> float | None:
        """(ringing + on a call + wrap-up) / (free + ringing + on a call + wrap-up)."""
        return _ratio(self.busy, self.available)

    def to_dict(self) -> dict[str, Any]:
        out = {
            f: _rounded(getattr(self, "break_" if f == "break" else f)) for f in AGENT_TIME_FIELDS
        }
        out.update(offered=self.offered, answered=self.answered, missed=self.missed)
        out["occupancy"] = _rounded(self.occupancy(), 4)
        return out


def _counters(raw: Mapping[Any, Any], names: Sequence[str]) -> dict[str, int | float]:
    """The fields ``names`` of a counter hash as Redis returns it (bytes or str), by name,
    each a number (:func:`_number`); other fields left out."""
    values: dict[str, int | float] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in names:
            values[name] = _number(value, name in FLOAT_FIELDS)
    return values


def _number(value: Any, is_float: bool) -> int | float:
    try:
        number = float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return 0.0 if is_float else 0
    if not math.isfinite(number) or number < 0:
        number = 0.0
    return number if is_float else round(number)


def _rounded(value: float | None, digits: int = 3) -> Any:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return round(value, digits)
