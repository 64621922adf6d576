"""Agent presence as a state machine written as data.

Theory of operation
-------------------
An agent's presence has three independent parts:

* ``login``: logged_out / ready / break, changed by the agent (feature codes,
  CLI) and by the missed-offer rule; see ``LOGIN_TRANSITIONS``;
* ``registered``: whether the desk phone is registered (sofia events, a failed
  originate with USER_NOT_REGISTERED, ``show registrations`` on reconnect);
* ``activity``: idle / ringing / oncall / wrapup, driven by call events; see
  ``ACTIVITY_TRANSITIONS``.

Every function takes an :class:`AgentState` (frozen) and returns an
:class:`Outcome`: the new state and the facts to log (``agent.state`` when
something visible changed). A transition missing from the tables raises
:class:`IllegalTransition` and the caller keeps the old state. Events about a
leg the state does not know (a late or duplicate event) change nothing.

The table gives the nominal next activity; :func:`_settle` then applies the
rules that depend on what else is live on the phone, so no state can stick:

* a queue call that ends goes to wrapup for ``wrapup_time`` (0: straight to
  idle); a personal call (one the agent makes or receives outside the queue)
  that ends goes to idle, or back to a wrapup still running;
* while any channel is live on the phone the agent is at least oncall;
* a logout asked for while ringing or on a call takes effect when the phone
  has no call left.

The state keeps the uuids of the live channels (the queue leg apart from the
personal ones), so :func:`reconcile` can rebuild the right activity from what
FreeSWITCH says is live after a restart or reconnect.

A wrap-up ends by itself: no one needs to write that it did. :func:`current` gives the state
as it stands at a time (a wrap-up whose time is up is idle since its end), every transition
starts from it, and Redis's free-agent index ranks such an agent by the same end time. The
engine calls :func:`tick` when the clock reaches :attr:`AgentState.wrapup_until` only to log
the change (and look for a waiting call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from ccd.core.commands import Fact

__all__ = [
    "ACTIVITY_TRANSITIONS",
    "LOGIN_TRANSITIONS",
    "MISSED_OUTCOMES",
    "Activity",
    "AgentState",
    "IllegalTransition",
    "Login",
    "Outcome",
    "PresenceRules",
    "answered",
    "call_ended",
    "current",
    "is_free",
    "offer",
    "offer_failed",
    "personal_call",
    "reconcile",
    "set_login",
    "set_registered",
    "tick",
]


class Login(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    BREAK = "break"


class Activity(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    ONCALL = "oncall"
    WRAPUP = "wrapup"


class IllegalTransition(Exception):
    """The requested change is not allowed from the current state (state unchanged)."""


LOGIN_TRANSITIONS: Mapping[tuple[Login, str], Login] = {
    (Login.LOGGED_OUT, "login"): Login.READY,
    (Login.READY, "login"): Login.READY,
    (Login.READY, "break"): Login.BREAK,
    (Login.READY, "logout"): Login.LOGGED_OUT,
    (Login.BREAK, "login"): Login.READY,
    (Login.BREAK, "ready"): Login.READY,
    (Login.BREAK, "logout"): Login.LOGGED_OUT,
    # The missed-offer rule: only a ready agent is put on break.
    (Login.READY, "auto_break"): Login.BREAK,
}

ACTIVITY_TRANSITIONS: Mapping[tuple[Activity, str], Activity] = {
    (Activity.IDLE, "offer"): Activity.RINGING,
    (Activity.IDLE, "personal_call"): Activity.ONCALL,
    (Activity.RINGING, "answer"): Activity.ONCALL,
    (Activity.RINGING, "offer_failed"): Activity.IDLE,
    (Activity.RINGING, "personal_call"): Activity.RINGING,
    (Activity.RINGING, "personal_ended"): Activity.RINGING,
    (Activity.ONCALL, "call_ended"): Activity.WRAPUP,
    (Activity.ONCALL, "personal_call"): Activity.ONCALL,
    (Activity.ONCALL, "personal_ended"): Activity.IDLE,
    (Activity.WRAPUP, "personal_call"): Activity.ONCALL,
    (Activity.WRAPUP, "wrapup_done"): Activity.IDLE,
}

#: Offer outcomes that count as the agent not taking the call.
MISSED_OUTCOMES = frozenset({"no_answer", "busy", "rejected"})


@dataclass(frozen=True, slots=True)
class PresenceRules:
    wrapup_time: float = 0.0
    max_missed_offers: int = 0  # 0 = never put an agent on break for missed offers


@dataclass(frozen=True, slots=True)
class AgentState:
    agent_id: str
    login: Login = Login.LOGGED_OUT
    registered: bool = False
    activity: Activity = Activity.IDLE
    since: float = 0.0  # when the activity last changed
    idle_since: float = 0.0
    offer_leg: str | None = None  # the queue leg on the phone, ringing or answered
    personal: tuple[str, ...] = ()  # other live channels on the phone
    wrapup_until: float | None = None
    missed_offers: int = 0
    logout_pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "agent_id": self.agent_id,
            "login": str(self.login),
            "registered": self.registered,
            "activity": str(self.activity),
            "since": self.since,
            "idle_since": self.idle_since,
            "offer_leg": self.offer_leg,
            "personal": list(self.personal),
            "wrapup_until": self.wrapup_until,
            "missed_offers": self.missed_offers,
            "logout_pending": self.logout_pending,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentState:
        return cls(
            agent_id=str(data["agent_id"]),
            login=Login(data.get("login", "logged_out")),
            registered=bool(data.get("registered", False)),
            activity=Activity(data.get("activity", "idle")),
            since=float(data.get("since", 0.0)),
            idle_since=float(data.get("idle_since", 0.0)),
            offer_leg=data.get("offer_leg"),
            personal=tuple(data.get("personal", ())),
            wrapup_until=data.get("wrapup_until"),
            missed_offers=int(data.get("missed_offers", 0)),
            logout_pending=bool(data.get("logout_pending", False)),
        )

    @property
    def next_deadline(self) -> float | None:
        """When :func:`tick` must be called next (end of wrapup), if ever."""
        return self.wrapup_until if self.activity is Activity.WRAPUP else None


class Outcome(NamedTuple):
    state: AgentState
    facts: list[Fact]


def _activity(state: AgentState, event: str) -> Activity:
    try:
        return ACTIVITY_TRANSITIONS[(state.activity, event)]
    except KeyError:
        raise IllegalTransition(f"agent {state.agent_id}: {event} while {state.activity}") from None


def _state_fact(old: AgentState, new: AgentState, reason: str) -> list[Fact]:
    if (old.login, old.registered, old.activity) == (new.login, new.registered, new.activity):
        return []
    data = {
        "agent": new.agent_id,
        "login": str(new.login),
        "registered": new.registered,
        "activity": str(new.activity),
        "reason": reason,
    }
    if new.logout_pending:  # the statistics' estimate: it leaves after the call
        data["logout_pending"] = True
    if old.activity != new.activity:
        data["previous_activity"] = str(old.activity)
    if old.login != new.login:
        data["previous_login"] = str(old.login)
    return [Fact("agent.state", data)]


def _settle(
    old: AgentState, new: AgentState, now: float, reason: str, extra: Iterable[Fact] = ()
) -> Outcome:
    """Apply the rules that depend on what is live, then report the change."""
    busy = new.offer_leg is not None or bool(new.personal)
    activity = new.activity
    changes: dict[str, Any] = {}  # one replace at the end: it is the hot path of presence
    if busy and activity in (Activity.IDLE, Activity.WRAPUP):
        activity = Activity.ONCALL
    if not busy and activity is not Activity.WRAPUP:
        # Nothing live any more: a wrapup still running resumes, else idle.
        if new.wrapup_until is not None and now < new.wrapup_until:
            activity = Activity.WRAPUP
        else:
            activity = Activity.IDLE
    if activity is not new.activity:
        changes["activity"] = activity
    if activity is not Activity.WRAPUP and new.wrapup_until is not None and not busy:
        changes["wrapup_until"] = None
    if new.logout_pending and not busy:
        changes["login"], changes["logout_pending"] = Login.LOGGED_OUT, False
    if activity != old.activity:
        changes["since"] = now
        if activity is Activity.IDLE:
            changes["idle_since"] = now
    if changes:
        new = dataclasses.replace(new, **changes)
    return Outcome(new, [*extra, *_state_fact(old, new, reason)])


def set_login(state: AgentState, action: str, now: float) -> Outcome:
    """``action``: login, logout, break or ready (feature code or CLI)."""
    state = current(state, now)
    try:
        target = LOGIN_TRANSITIONS[(state.login, action)]
    except KeyError:
        raise IllegalTransition(f"agent {state.agent_id}: {action} while {state.login}") from None
    busy = state.offer_leg is not None or bool(state.personal)
    if action == "logout" and busy:
        new = dataclasses.replace(state, logout_pending=True)
        return _settle(
            state, new, now, action, [Fact("agent.logout_pending", {"agent": state.agent_id})]
        )
    changes: dict[str, Any] = {"login": target, "logout_pending": False}
    if target is Login.BREAK or state.login is Login.LOGGED_OUT:
        changes["missed_offers"] = 0
    extra = []
    if state.logout_pending:  # it stays after all (no visible change when it stays ready)
        extra.append(Fact("agent.logout_cancelled", {"agent": state.agent_id}))
    return _settle(state, dataclasses.replace(state, **changes), now, action, extra)


def set_registered(state: AgentState, registered: bool, now: float) -> Outcome:
    state = current(state, now)
    new = dataclasses.replace(state, registered=registered)
    return _settle(state, new, now, "registered" if registered else "unregistered")


def offer(state: AgentState, leg_uuid: str, now: float) -> Outcome:
    """The hunt rings the agent on ``leg_uuid``."""
    state = current(state, now)
    if state.offer_leg is not None:
        raise IllegalTransition(f"agent {state.agent_id}: offer while {state.offer_leg} is live")
    target = _activity(state, "offer")
    new = dataclasses.replace(state, activity=target, offer_leg=leg_uuid, wrapup_until=None)
    return _settle(state, new, now, "offer")


def answered(state: AgentState, leg_uuid: str, now: float) -> Outcome:
    state = current(state, now)
    if leg_uuid != state.offer_leg or state.activity is Activity.ONCALL:
        return Outcome(state, [])  # stale or duplicate (CHANNEL_ANSWER and +OK both report it)
    target = _activity(state, "answer")
    return _settle(
        state, dataclasses.replace(state, activity=target, missed_offers=0), now, "answer"
    )


def offer_failed(
    state: AgentState, leg_uuid: str, outcome: str, now: float, rules: PresenceRules
) -> Outcome:
    """The offer on ``leg_uuid`` ended unanswered; ``outcome`` as in ccd.core.queue."""
    state = current(state, now)
    if leg_uuid != state.offer_leg or state.activity is not Activity.RINGING:
        return Outcome(state, [])
    target = _activity(state, "offer_failed")
    missed = state.missed_offers + 1 if outcome in MISSED_OUTCOMES else state.missed_offers
    new = dataclasses.replace(state, activity=target, offer_leg=None, missed_offers=missed)
    extra: list[Fact] = []
    if outcome == "unregistered":
        new = dataclasses.replace(new, registered=False)
    limit = rules.max_missed_offers
    if limit > 0 and missed >= limit and (new.login, "auto_break") in LOGIN_TRANSITIONS:
        new = dataclasses.replace(new, login=Login.BREAK, missed_offers=0)
        extra.append(Fact("agent.auto_break", {"agent": state.agent_id, "missed_offers": missed}))
    return _settle(state, new, now, outcome, extra)


def call_ended(state: AgentState, leg_uuid: str, now: float, rules: PresenceRules) -> Outcome:
    """A channel on the agent's phone hung up (queue leg or personal call)."""
    state = current(state, now)
    if leg_uuid in state.personal:
        target = _activity(state, "personal_ended")
        personal = tuple(u for u in state.personal if u != leg_uuid)
        new = dataclasses.replace(state, activity=target, personal=personal)
        return _settle(state, new, now, "personal_call_ended")
    if leg_uuid != state.offer_leg:
        return Outcome(state, [])
    if state.activity is Activity.RINGING:
        # The leg ended before anyone said how the offer went: not the agent's miss.
        return offer_failed(state, leg_uuid, "ended", now, rules)
    target = _activity(state, "call_ended")
    until = now + rules.wrapup_time if rules.wrapup_time > 0 else None
    if until is None:
        target = Activity.IDLE
    new = dataclasses.replace(state, activity=target, offer_leg=None, wrapup_until=until)
    return _settle(state, new, now, "call_ended")


def personal_call(state: AgentState, uuid: str, now: float) -> Outcome:
    """A call on the agent's phone that is not a queue offer (made or received)."""
    state = current(state, now)
    if uuid in state.personal or uuid == state.offer_leg:
        return Outcome(state, [])
    target = _activity(state, "personal_call")
    new = dataclasses.replace(state, activity=target, personal=(*state.personal, uuid))
    return _settle(state, new, now, "personal_call")


def tick(state: AgentState, now: float) -> Outcome:
    """Ends wrapup once ``now`` reaches ``wrapup_until`` (idle since that moment)."""
    new = current(state, now)
    if new is state:
        return Outcome(state, [])
    return Outcome(new, _state_fact(state, new, "wrapup_done"))


def current(state: AgentState, now: float) -> AgentState:
    """The state at ``now``: a wrap-up whose time is up has ended, idle since its end."""
    until = state.wrapup_until
    if (
        state.activity is Activity.WRAPUP
        and until is not None
        and now >= until
        and state.offer_leg is None
        and not state.personal
    ):
        return dataclasses.replace(
            state, activity=Activity.IDLE, since=until, idle_since=until, wrapup_until=None
        )
    return state


def is_free(state: AgentState, now: float) -> bool:
    """Could be offered a call at ``now``: ready, registered, nothing on the phone."""
    state = current(state, now)
    return (
        state.login is Login.READY
        and state.registered
        and state.activity is Activity.IDLE
        and state.offer_leg is None
        and not state.personal
    )


def reconcile(
    state: AgentState, live_channels: Iterable[str], now: float, rules: PresenceRules
) -> Outcome:
    """Rebuild the activity from the uuids FreeSWITCH reports live on the phone.

    Used after a restart or reconnect, when events may have been missed. A
    queue leg that is gone ends (wrapup if it was answered); a live channel
    the state did not know becomes a personal call.
    """
    state = current(state, now)
    live = list(dict.fromkeys(live_channels))
    offer_leg = state.offer_leg if state.offer_leg in live else None
    personal = tuple(u for u in live if u != offer_leg)
    new = dataclasses.replace(state, offer_leg=offer_leg, personal=personal)
    if state.offer_leg is not None and offer_leg is None and state.activity is Activity.ONCALL:
        if rules.wrapup_time > 0:
            new = dataclasses.replace(
                new, activity=Activity.WRAPUP, wrapup_until=now + rules.wrapup_time
            )
        else:
            new = dataclasses.replace(new, activity=Activity.IDLE)
    if new.activity is Activity.WRAPUP and (new.wrapup_until is None or now >= new.wrapup_until):
        new = dataclasses.replace(new, activity=Activity.IDLE, wrapup_until=None)
    if offer_leg is None and new.activity is Activity.RINGING:
        new = dataclasses.replace(new, activity=Activity.IDLE)
    return _settle(state, new, now, "reconcile")
