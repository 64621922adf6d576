"""Direct callback (R-STICKY): the pure rules of caller→agent bindings.

Theory of operation
-------------------
When an agent calls a customer from the desk phone, the customer who calls back within an
expiry time is offered to that agent first. Whether the agent's call creates such a *binding*,
whether a later call restarts its expiry and whether talking ends it depends on the agent's
:class:`StickySetting` (seed 000):

========  ==================  ==================  =============  ==================  ============
type      failed attempt      answered attempt    new attempt    they talk           customer
                                                  (bound agent)  (either side)       calls in
========  ==================  ==================  =============  ==================  ============
disabled  nothing             nothing             nothing        nothing             nothing
type1     create              nothing             expiry kept    delete              nothing
type2     create              nothing             restart        delete              nothing
type3     create              create              restart        binding kept        nothing
type4     create              create              restart        binding kept        restart
========  ==================  ==================  =============  ==================  ============

:func:`decide` is the whole rule set: given the binding as stored now (or None), one event
(:class:`AgentAttempt` or :class:`CustomerCall`) and the settings, it returns one
:class:`Decision` — exactly one :class:`Action` and the facts to log. It reads no clock and
touches no store; ``ccd.store.sticky`` applies the decision to Redis atomically, where the expiry is
the key's TTL.

Rules beyond the table, and why
-------------------------------
* Whose setting applies: the attempting agent's for an attempt (it decides whether that agent
  creates a binding); the *bound* agent's current setting for a customer's call and for the
  bound agent's own talk. A setting changed at run time applies to existing bindings from then
  on; a binding whose agent is now disabled is left to lapse (an operator can delete it).
* Latest agent wins: an attempt that creates a binding replaces another agent's binding to the
  same number (fact ``sticky.replaced`` names the old agent). An attempt that creates nothing
  (a disabled agent, a type1/type2 agent's answered call) leaves another agent's binding alone.
* A type1/type2 agent's answered first call creates nothing: they talked, which is exactly what
  ends such a binding, so there is nothing to hold the customer for.
* The customer talking to a DIFFERENT agent than the bound one does not delete the binding (all
  types): the rule ends it when *that agent* and the customer have talked. This is what happens
  when the bound agent was busy and the call fell back to the queue: the bound agent's business
  with the customer is still open, and deleting would lose it because the agent was busy once.
  (type4 still restarts the expiry: every call of the customer does.)
* An expiry of 0 is the same as disabled. A binding whose ``expires_at`` has passed counts as
  absent, even if the store has not dropped it yet.
* The expiry of a type1 binding is never restarted by the agent; a type1 re-attempt only counts
  the attempt (:attr:`Action.KEEP_TTL_UPDATE`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "DISABLED",
    "Action",
    "AgentAttempt",
    "Binding",
    "CustomerCall",
    "Decision",
    "Fact",
    "StickySetting",
    "StickyType",
    "decide",
    "route",
]


class StickyType(StrEnum):
    DISABLED = "disabled"
    TYPE1 = "type1"
    TYPE2 = "type2"
    TYPE3 = "type3"
    TYPE4 = "type4"


@dataclass(frozen=True, slots=True)
class StickySetting:
    """An agent's direct-callback type and expiry in seconds (0 = disabled)."""

    type: StickyType
    expiry: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", StickyType(self.type))
        if (
            isinstance(self.expiry, bool)
            or not isinstance(self.expiry, int | float)
            or not math.isfinite(self.expiry)
            or self.expiry < 0
        ):
            raise ValueError(f"expiry must be a number of seconds >= 0, got {self.expiry!r}")

    @property
    def enabled(self) -> bool:
        return self.type is not StickyType.DISABLED and self.expiry > 0

    @property
    def deletes_on_talk(self) -> bool:
        """type1/type2: once agent and customer talk, the binding ends."""
        return self.type in (StickyType.TYPE1, StickyType.TYPE2)


DISABLED = StickySetting(StickyType.DISABLED, 0.0)


@dataclass(frozen=True, slots=True)
class Binding:
    """Calls from ``number`` go to ``agent_id`` first until ``expires_at``.

    ``type`` is the agent's type when the binding was last written; ``attempts`` counts the
    agent's calls to the number while it was bound.
    """

    number: str
    agent_id: str
    type: StickyType
    expires_at: float
    created_at: float
    attempts: int = 1

    def live(self, now: float) -> bool:
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class AgentAttempt:
    """An agent's outside call to ``number`` ended; ``answered``: the customer talked."""

    number: str
    agent_id: str
    answered: bool
    now: float


@dataclass(frozen=True, slots=True)
class CustomerCall:
    """The customer at ``number`` called in.

    ``talked_to`` is the agent the call was bridged to (known once bridged or ended), None
    while it is being routed or when nobody answered.
    """

    number: str
    now: float
    talked_to: str | None = None


Event = AgentAttempt | CustomerCall


class Action(StrEnum):
    KEEP = "keep"  # no change at all
    SET = "set"  # create, or replace another agent's binding: new record, TTL = expiry
    REFRESH = "refresh"  # same agent's binding, record updated, TTL restarted
    KEEP_TTL_UPDATE = "keep_ttl_update"  # same agent's binding, record updated, TTL unchanged
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Fact:
    """Something to log: a stable dotted name and its fields."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with the number's binding.

    ``previous`` is the binding the decision was made from, as stored (it may have expired
    by ``now``); the store applies the decision only while that is still what it holds.
    ``binding`` is the binding afterwards (None after DELETE, or KEEP of nothing). ``ttl`` is
    the expiry in seconds from now for SET and REFRESH, else None.
    """

    action: Action
    previous: Binding | None
    binding: Binding | None
    ttl: float | None = None
    facts: tuple[Fact, ...] = ()


def _keep(live: Binding | None) -> Decision:
    return Decision(Action.KEEP, live, live)


def _fields(binding: Binding, **extra: Any) -> dict[str, Any]:
    return {"number": binding.number, "agent": binding.agent_id, "type": str(binding.type), **extra}


def _set(live: Binding | None, number: str, agent: str, s: StickySetting, now: float) -> Decision:
    new = Binding(number, agent, s.type, now + s.expiry, now)
    if live is None:
        fact = Fact("sticky.bound", _fields(new, expiry=s.expiry))
    else:
        fact = Fact("sticky.replaced", _fields(new, old_agent=live.agent_id, expiry=s.expiry))
    return Decision(Action.SET, live, new, s.expiry, (fact,))


def _refresh(live: Binding, s: StickySetting, now: float, reason: str, attempts: int) -> Decision:
    new = dataclasses.replace(live, type=s.type, expires_at=now + s.expiry, attempts=attempts)
    fact = Fact("sticky.refreshed", _fields(new, expiry=s.expiry, reason=reason))
    return Decision(Action.REFRESH, live, new, s.expiry, (fact,))


def _delete(live: Binding, reason: str) -> Decision:
    return Decision(
        Action.DELETE, live, None, None, (Fact("sticky.deleted", _fields(live, reason=reason)),)
    )


def decide(
    current: Binding | None,
    event: Event,
    setting_of: Callable[[str], StickySetting],
    now: float,
) -> Decision:
    """The one change ``event`` makes to the number's binding ``current`` (module rules).

    ``now`` is the decision time: expiries count from it and ``current`` is taken as absent
    if it has expired by then. ``setting_of(agent_id)`` gives an agent's setting.
    """
    if current is not None and current.number != event.number:
        raise ValueError(f"binding of {current.number!r} given for an event of {event.number!r}")
    live = current if current is not None and current.live(now) else None
    if isinstance(event, AgentAttempt):
        decision = _on_attempt(live, event, setting_of(event.agent_id), now)
    elif isinstance(event, CustomerCall):
        decision = _on_customer_call(live, event, setting_of, now)
    else:
        raise TypeError(f"not a sticky event: {event!r}")
    # The store compares against what it holds, which may be a binding that has expired by
    # the clock but not yet lapsed in Redis.
    return dataclasses.replace(decision, previous=current)


def _on_attempt(live: Binding | None, e: AgentAttempt, s: StickySetting, now: float) -> Decision:
    if not s.enabled:
        return _keep(live)
    own = live is not None and live.agent_id == e.agent_id
    if e.answered and s.deletes_on_talk:
        # They talked: a type1/type2 binding of this agent ends; there is nothing to create.
        return _delete(live, "talked") if own else _keep(live)
    if not own:
        return _set(live, e.number, e.agent_id, s, now)
    assert live is not None
    if s.type is StickyType.TYPE1:
        new = dataclasses.replace(live, type=s.type, attempts=live.attempts + 1)
        fact = Fact("sticky.kept", _fields(new, attempts=new.attempts, expires_at=new.expires_at))
        return Decision(Action.KEEP_TTL_UPDATE, live, new, None, (fact,))
    return _refresh(live, s, now, "attempt", live.attempts + 1)


def _on_customer_call(
    live: Binding | None,
    e: CustomerCall,
    setting_of: Callable[[str], StickySetting],
    now: float,
) -> Decision:
    if live is None:
        return _keep(None)
    s = setting_of(live.agent_id)
    if not s.enabled:
        return _keep(live)
    if e.talked_to == live.agent_id and s.deletes_on_talk:
        return _delete(live, "talked")
    if s.type is StickyType.TYPE4:
        return _refresh(live, s, now, "customer_call", live.attempts)
    return _keep(live)


def route(binding: Binding | None, now: float) -> str | None:
    """The agent to offer a call from the binding's number to first (None: no live binding)."""
    if binding is None or not binding.live(now):
        return None
    return binding.agent_id
