"""The hunt: ring one agent at a time for one queued call (R-ROUTE).

Theory of operation
-------------------
A :class:`Hunt` is the state machine of one caller waiting in a queue. The
engine feeds it what happened (with the time ``now`` from its clock) and gets
back a :class:`Step`: ESL commands to send, facts to log, agents to release,
and requests (reserve an agent, send a fresh candidate list). The hunt never
reads a clock, opens a socket or talks to Redis; its whole state round-trips
through :meth:`Hunt.to_dict` / :meth:`Hunt.from_dict` (plain msgpack-able
values), so a restarted daemon resumes it from Redis.

Phases::

    NEW --start--> WAITING --on_candidates--> RESERVING --on_reserved--> RINGING
    WAITING   (no untried candidate, someone tried)      -> DONE (on_exhausted)
    RESERVING --on_reserve_failed--> WAITING
    RINGING   --answer (CHANNEL_ANSWER or +OK job)-----> BRIDGING --on_bridged--> BRIDGED
    RINGING   --no answer/busy/rejected/ring deadline--> WAITING (agent tried)
    RINGING   --DESTINATION_OUT_OF_ORDER---------------> RETRY --deadline--> RESERVING
    BRIDGING  --agent leg gone before the bridge-------> WAITING (agent tried)
    BRIDGED   --either side hangs up-------------------> DONE
    any       --caller hangs up------------------------> DONE (ringing leg killed)

Rules worth knowing:

* The daemon times the ring (``ring_time``) and kills the leg itself;
  ``originate_timeout`` is only a safety net, a few seconds longer.
* When the hunt kills a leg it forgets it at once (agent released, next step
  taken), so the ``-ERR NORMAL_CLEARING`` job result and the hangup FreeSWITCH
  reports afterwards no longer match the current leg and are ignored: they
  are never mistaken for the agent's no-answer.
* DESTINATION_OUT_OF_ORDER is FreeSWITCH's sessions-per-second limit, not the
  agent: the agent is released without blame and reserved again for another
  try after ``retry_delay`` (at most ``max_retries`` times).
* An agent tried in this pass is not rung again; when no untried candidate is
  left the queue's ``on_exhausted`` applies (voicemail or hangup). While
  nobody has been tried and nobody is available, the caller keeps waiting
  (with music) until the engine offers candidates again.
* Every path that ends an offer releases the agent exactly once, with an
  outcome (see ``OUTCOMES``) the engine hands to ccd.core.presence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ccd.core.commands import (
    Break,
    Bridge,
    Broadcast,
    Command,
    Fact,
    Kill,
    Originate,
    Transfer,
    UnsafeValue,
    is_uuid,
    sanitize_caller_name,
    sanitize_number,
)
from ccd.core.queue import QueueRules, outcome_for_cause, queue_order_key
from ccd.core.routing import AgentView

__all__ = [
    "Hunt",
    "Phase",
    "Release",
    "Step",
]


class Phase(StrEnum):
    NEW = "new"
    WAITING = "waiting"
    RESERVING = "reserving"
    RINGING = "ringing"
    RETRY = "retry"
    OFFERING = "offering"  # overflow: the caller is in the callback offer / number capture
    BRIDGING = "bridging"
    BRIDGED = "bridged"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Release:
    """The offer to ``agent_id`` is over: free the agent, tell presence ``outcome``."""

    agent_id: str
    outcome: str
    leg_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """What the engine must do after feeding the hunt one input.

    ``reserve``: reserve this agent atomically, then call ``on_reserved`` or
    ``on_reserve_failed``. ``wants_candidates``: call ``on_candidates`` with a
    fresh ordered list now. Commands are sent in order.
    """

    commands: tuple[Command, ...] = ()
    facts: tuple[Fact, ...] = ()
    releases: tuple[Release, ...] = ()
    reserve: str | None = None
    wants_candidates: bool = False


_EMPTY = Step()
#: Phases in which the caller still waits for an agent, so the overflow clock runs.
_OVERFLOW_PHASES = frozenset({Phase.WAITING, Phase.RESERVING, Phase.RINGING, Phase.RETRY})


@dataclass
class _Acc:
    """Collects one step's output while a handler runs."""

    commands: list[Command] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    reserve: str | None = None
    wants_candidates: bool = False

    def step(self) -> Step:
        return Step(
            tuple(self.commands),
            tuple(self.facts),
            tuple(self.releases),
            self.reserve,
            self.wants_candidates,
        )


class Hunt:
    """One queued call's hunt for an agent; see the module docstring."""

    def __init__(
        self,
        call_uuid: str,
        rules: QueueRules,
        new_uuid: Callable[[], str],
        *,
        caller_number: str = "",
        caller_display: str = "",
        priority: int = 0,
        entered_at: float = 0.0,
        preferred: str | None = None,
        preferred_display: str = "",
    ) -> None:
        if not is_uuid(call_uuid):
            raise UnsafeValue(f"bad call uuid: {call_uuid!r:.80}")
        self.call_uuid = call_uuid
        self.rules = rules
        self._new_uuid = new_uuid
        self.caller_number = sanitize_number(caller_number)
        self.caller_display = sanitize_caller_name(caller_display)
        self.priority = priority
        self.entered_at = entered_at
        # A direct callback (ccd.core.sticky): this agent is offered the call first, with its
        # own screen-pop text; if they cannot take it, the queue's candidates follow.
        self.preferred = preferred
        self.preferred_display = sanitize_caller_name(preferred_display)
        self.offered = False  # the callback offer is made once per call
        self.phase = Phase.NEW
        self.tried: list[str] = []
        self.passed: list[str] = []  # lost a reservation race; skipped until the list drains
        self.agent_id: str | None = None
        self.agent_ext: str | None = None
        self.leg_uuid: str | None = None
        self.job_uuid: str | None = None
        self.ring_deadline: float | None = None
        self.retry_at: float | None = None
        self.retries = 0
        self.moh_on = False
        self.result: str | None = None

    # -- queries -----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def wants_candidates(self) -> bool:
        return self.phase is Phase.WAITING

    @property
    def overflow_at(self) -> float | None:
        """When the caller is offered a callback (R-OVERFLOW), counted from queue entry."""
        if self.offered or self.rules.overflow_time <= 0:
            return None
        return self.entered_at + self.rules.overflow_time

    @property
    def next_deadline(self) -> float | None:
        """When the engine must call :meth:`on_tick` next, if at all."""
        deadlines = []
        if self.phase is Phase.RINGING:
            deadlines.append(self.ring_deadline)
        if self.phase is Phase.RETRY:
            deadlines.append(self.retry_at)
        if self.phase in _OVERFLOW_PHASES:
            deadlines.append(self.overflow_at)
        found = [d for d in deadlines if d is not None]
        return min(found) if found else None

    @property
    def order_key(self) -> float:
        return queue_order_key(self.priority, self.entered_at)

    # -- inputs --------------------------------------------------------------

    def start(self, now: float) -> Step:
        if self.phase is not Phase.NEW:
            return _EMPTY
        acc = _Acc()
        acc.facts.append(self._fact("call.queued", priority=self.priority))
        self._moh(acc)
        self.phase = Phase.WAITING
        acc.wants_candidates = True
        return acc.step()

    def on_candidates(
        self, agents: Iterable[AgentView], now: float, *, busy: Iterable[str] | None = None
    ) -> Step:
        """``agents``: the agents free now, best first (ccd.core.routing.candidates).

        ``busy``: ids of the other agents who could take the call once free
        (logged in, ready, carrying the tags, but ringing or on a call). While
        one of them is untried the caller keeps waiting; when nobody is left
        to try, the queue's ``on_exhausted`` applies. ``None`` (unknown) keeps
        the caller waiting until someone has been tried.
        """
        if self.phase is not Phase.WAITING:
            return _EMPTY
        untried = [a for a in agents if a.id not in self.tried]
        fresh = [a for a in untried if a.id not in self.passed]
        acc = _Acc()
        if self.preferred is not None:
            bound = [a for a in fresh if a.id == self.preferred]
            if bound:
                fresh = bound  # the bound agent first
            else:
                acc.facts.append(self._fact("sticky.fallback", bound_agent=self.preferred))
                self.preferred = None
        if fresh:
            agent = fresh[0]
            self.phase = Phase.RESERVING
            self.agent_id, self.agent_ext = agent.id, agent.extension
            self.retries = 0
            acc.reserve = agent.id
        elif untried:
            # Only agents that just lost us a reservation race: wait for the
            # next change instead of spinning on them.
            self.passed.clear()
        elif busy is None:
            if self.tried:
                self._exhausted(acc)
        elif not any(agent_id not in self.tried for agent_id in busy):
            self._exhausted(acc)
        return acc.step()

    def on_reserved(self, agent_id: str, now: float) -> Step:
        if self.phase is not Phase.RESERVING or agent_id != self.agent_id:
            # The call moved on (caller left) while the reservation was made.
            return Step(releases=(Release(agent_id, "cancelled"),))
        self.passed.clear()
        acc = _Acc()
        self._ring(acc, now)
        return acc.step()

    def on_reserve_failed(self, agent_id: str, now: float) -> Step:
        if self.phase is not Phase.RESERVING or agent_id != self.agent_id:
            return _EMPTY
        self.passed.append(agent_id)
        self._clear_offer()
        self.phase = Phase.WAITING
        return Step(wants_candidates=True)

    def on_job_result(self, job_uuid: str, ok: bool, cause: str, now: float) -> Step:
        """The BACKGROUND_JOB of an originate: ``+OK`` = answered, else ``cause``."""
        if self.phase is not Phase.RINGING or job_uuid != self.job_uuid:
            return _EMPTY
        acc = _Acc()
        if ok:
            self._answered(acc)
        else:
            self._offer_failed(acc, cause, now)
        return acc.step()

    def on_agent_answered(self, leg_uuid: str, now: float) -> Step:
        if self.phase is not Phase.RINGING or leg_uuid != self.leg_uuid:
            return _EMPTY
        acc = _Acc()
        self._answered(acc)
        return acc.step()

    def on_bridged(self, now: float) -> Step:
        if self.phase is not Phase.BRIDGING:
            return _EMPTY
        self.phase = Phase.BRIDGED
        return Step(facts=(self._fact("call.bridged", waited=round(now - self.entered_at, 3)),))

    def on_agent_leg_hangup(self, leg_uuid: str, cause: str, now: float) -> Step:
        if leg_uuid != self.leg_uuid or self.leg_uuid is None:
            return _EMPTY
        acc = _Acc()
        if self.phase is Phase.RINGING:
            self._offer_failed(acc, cause, now)
        elif self.phase is Phase.BRIDGING:
            # Answered, then gone before the bridge: the caller keeps waiting.
            acc.facts.append(self._fact("agent.hangup_before_bridge", cause=cause))
            self._release(acc, "hangup", tried=True)
            self._moh(acc)
            self._next(acc)
        elif self.phase is Phase.BRIDGED:
            acc.facts.append(self._fact("call.ended", by="agent", cause=cause))
            self._release(acc, "completed", tried=False)
            self._finish("bridged")
        return acc.step()

    def on_caller_hangup(self, now: float) -> Step:
        acc = _Acc()
        phase = self.phase
        if phase is Phase.DONE:
            return _EMPTY
        if phase is Phase.BRIDGED:
            acc.facts.append(self._fact("call.ended", by="caller"))
            if self.leg_uuid:
                # FreeSWITCH normally ends the agent leg too; make sure of it.
                acc.commands.append(Kill(self.leg_uuid, "NORMAL_CLEARING"))
            self._release(acc, "completed", tried=False)
            self._finish("bridged")
            return acc.step()
        waited = round(now - self.entered_at, 3)
        acc.facts.append(self._fact("call.abandoned", phase=str(phase), waited=waited))
        if phase in (Phase.RINGING, Phase.BRIDGING) and self.leg_uuid:
            acc.commands.append(Kill(self.leg_uuid, "ORIGINATOR_CANCEL"))
        if phase in (Phase.RINGING, Phase.BRIDGING, Phase.RETRY):
            self._release(acc, "cancelled", tried=False)
        # RESERVING: the reservation may still succeed; on_reserved releases it.
        self._finish("abandoned")
        return acc.step()

    def on_tick(self, now: float) -> Step:
        acc = _Acc()
        self._deadlines(acc, now)
        overflow = self.overflow_at
        if self.phase in _OVERFLOW_PHASES and overflow is not None and now >= overflow:
            # After the ring deadline: an agent who rang the full ring time did not answer.
            acc.wants_candidates, acc.reserve = False, None
            self._overflow(acc, now)
        return acc.step()

    def _deadlines(self, acc: _Acc, now: float) -> None:
        if (
            self.phase is Phase.RINGING
            and self.ring_deadline is not None
            and now >= self.ring_deadline
        ):
            if self.leg_uuid:
                acc.commands.append(Kill(self.leg_uuid, "ORIGINATOR_CANCEL"))
            acc.facts.append(self._fact("agent.no_answer", cause="RING_TIMEOUT"))
            self._release(acc, "no_answer", tried=True)
            self._next(acc)
        elif self.phase is Phase.RETRY and self.retry_at is not None and now >= self.retry_at:
            self.phase = Phase.RESERVING
            self.retry_at = None
            acc.reserve = self.agent_id

    def on_offer_declined(self, now: float, reason: str = "keep_waiting") -> Step:
        """The caller keeps waiting (pressed 2, nothing, a wrong key, or the request could
        not be stored): back in the queue with the original place and priority."""
        if self.phase is not Phase.OFFERING:
            return _EMPTY
        acc = _Acc()
        acc.facts.append(self._fact("callback.declined_offer", reason=reason))
        self._moh(acc)
        self._next(acc)
        return acc.step()

    def on_callback_stored(self, request_id: str, now: float) -> Step:
        """The callback request is stored: the caller's call ends after the confirmation."""
        if self.phase is not Phase.OFFERING:
            return _EMPTY
        self._finish("callback")
        return Step(facts=(self._fact("call.callback_requested", request=request_id),))

    def on_resync(self, live_uuids: Iterable[str], now: float) -> Step:
        """After a restart or reconnect: ``live_uuids`` from ``show channels``.

        A caller that is gone is an abandoned call; an agent leg that is gone
        ends its offer (not the agent's fault) or the bridged call; a hunt that
        was reserving asks for the reservation again (the store's reserve must
        succeed when this call already holds the agent).
        """
        live = frozenset(live_uuids)
        if self.phase in (Phase.NEW, Phase.DONE):
            return _EMPTY
        if self.call_uuid not in live:
            return self.on_caller_hangup(now)
        if self.phase is Phase.RESERVING:
            return Step(reserve=self.agent_id)
        if self.phase is Phase.WAITING:
            return Step(wants_candidates=True)
        if self.leg_uuid is not None and self.leg_uuid not in live:
            if self.phase is Phase.RINGING:
                acc = _Acc()
                acc.facts.append(self._fact("agent.leg_lost"))
                self._release(acc, "failed", tried=True)
                self._next(acc)
                return acc.step()
            return self.on_agent_leg_hangup(self.leg_uuid, "LOST", now)
        return _EMPTY

    # -- internals -----------------------------------------------------------

    def _fact(self, name: str, **data: Any) -> Fact:
        base: dict[str, Any] = {"call": self.call_uuid, "queue": self.rules.name}
        if self.agent_id is not None:
            base["agent"] = self.agent_id
        if self.leg_uuid is not None:
            base["leg"] = self.leg_uuid
        base.update(data)
        return Fact(name, base)

    def _moh(self, acc: _Acc) -> None:
        if self.rules.moh and not self.moh_on:
            acc.commands.append(Broadcast(self.call_uuid, self.rules.moh, "aleg"))
            self.moh_on = True

    def _stop_moh(self, acc: _Acc) -> None:
        if self.moh_on:
            acc.commands.append(Break(self.call_uuid))
            self.moh_on = False

    def _ring(self, acc: _Acc, now: float) -> None:
        assert self.agent_id is not None and self.agent_ext is not None
        self.leg_uuid, self.job_uuid = self._new_uuid(), self._new_uuid()
        variables: dict[str, Any] = {
            "ccd_call": self.call_uuid,
            "ccd_agent": self.agent_id,
            "ccd_queue": self.rules.name,
        }
        display = self.caller_display
        if self.preferred is not None and self.agent_id == self.preferred:
            display = self.preferred_display or display
            acc.facts.append(self._fact("sticky.routed", bound_agent=self.preferred))
        if display:
            variables["origination_caller_id_name"] = display
        if self.caller_number:
            variables["origination_caller_id_number"] = self.caller_number
        timeout = math.ceil(self.rules.ring_time) + self.rules.ring_margin
        acc.commands.append(
            Originate(self.leg_uuid, self.agent_ext, variables, timeout, self.job_uuid)
        )
        self.phase = Phase.RINGING
        self.ring_deadline = now + self.rules.ring_time
        acc.facts.append(self._fact("agent.reserved"))
        waited = round(now - self.entered_at, 3)  # queue entry -> this offer (metrics)
        acc.facts.append(self._fact("agent.offered", extension=self.agent_ext, waited=waited))

    def _overflow(self, acc: _Acc, now: float) -> None:
        """Nobody answered within the queue's overflow time: stop ringing, make the offer."""
        if self.phase is Phase.RINGING and self.leg_uuid:
            acc.commands.append(Kill(self.leg_uuid, "ORIGINATOR_CANCEL"))
        if self.phase in (Phase.RINGING, Phase.RETRY, Phase.RESERVING):
            self._release(acc, "cancelled", tried=False)  # not the agent's fault
        self.offered = True
        self._stop_moh(acc)
        self.phase = Phase.OFFERING
        acc.facts.append(self._fact("call.overflow", waited=round(now - self.entered_at, 3)))
        acc.facts.append(self._fact("callback.offered"))
        acc.commands.append(Transfer(self.call_uuid, "ccd_cb_offer", self.rules.context))

    def _answered(self, acc: _Acc) -> None:
        assert self.leg_uuid is not None
        self.phase = Phase.BRIDGING
        self.ring_deadline = None
        acc.facts.append(self._fact("agent.answered"))
        self._stop_moh(acc)
        acc.commands.append(Bridge(self.call_uuid, self.leg_uuid))

    def _offer_failed(self, acc: _Acc, cause: str, now: float) -> None:
        outcome = outcome_for_cause(cause)
        if outcome == "out_of_order" and self.retries < self.rules.max_retries:
            acc.facts.append(self._fact("agent.retry", cause=cause, attempt=self.retries + 1))
            agent_id, agent_ext, retries = self.agent_id, self.agent_ext, self.retries + 1
            self._release(acc, outcome, tried=False)
            self.agent_id, self.agent_ext, self.retries = agent_id, agent_ext, retries
            self.phase = Phase.RETRY
            self.retry_at = now + self.rules.retry_delay
            return
        if outcome == "out_of_order":
            outcome = "failed"
        acc.facts.append(self._fact("agent.no_answer", cause=cause, outcome=outcome))
        self._release(acc, outcome, tried=True)
        self._next(acc)

    def _release(self, acc: _Acc, outcome: str, *, tried: bool) -> None:
        if self.agent_id is not None and self.agent_id == self.preferred and tried:
            # The bound agent could not take it: the normal queue from now on.
            acc.facts.append(self._fact("sticky.fallback", bound_agent=self.preferred))
            self.preferred = None
        if self.agent_id is not None:
            acc.releases.append(Release(self.agent_id, outcome, self.leg_uuid))
            if tried and self.agent_id not in self.tried:
                self.tried.append(self.agent_id)
        self._clear_offer()

    def _clear_offer(self) -> None:
        self.agent_id = self.agent_ext = self.leg_uuid = self.job_uuid = None
        self.ring_deadline = self.retry_at = None
        self.retries = 0

    def _next(self, acc: _Acc) -> None:
        self.phase = Phase.WAITING
        acc.wants_candidates = True

    def _exhausted(self, acc: _Acc) -> None:
        self._stop_moh(acc)
        if self.rules.on_exhausted == "voicemail":
            box = self.rules.voicemail_box or self.rules.name
            acc.commands.append(
                Transfer(self.call_uuid, f"ccd_voicemail_{box}", self.rules.context)
            )
            acc.facts.append(self._fact("call.voicemail", box=box, tried=list(self.tried)))
            self._finish("voicemail")
        else:
            acc.commands.append(Kill(self.call_uuid, "NORMAL_CLEARING"))
            acc.facts.append(self._fact("call.unanswered", tried=list(self.tried)))
            self._finish("hangup")

    def _finish(self, result: str) -> None:
        self._clear_offer()
        self.phase = Phase.DONE
        self.result = result

    # -- persistence -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "call_uuid": self.call_uuid,
            "rules": self.rules.to_dict(),
            "caller_number": self.caller_number,
            "caller_display": self.caller_display,
            "priority": self.priority,
            "entered_at": self.entered_at,
            "phase": str(self.phase),
            "tried": list(self.tried),
            "passed": list(self.passed),
            "agent_id": self.agent_id,
            "agent_ext": self.agent_ext,
            "leg_uuid": self.leg_uuid,
            "job_uuid": self.job_uuid,
            "ring_deadline": self.ring_deadline,
            "retry_at": self.retry_at,
            "retries": self.retries,
            "moh_on": self.moh_on,
            "result": self.result,
            "preferred": self.preferred,
            "preferred_display": self.preferred_display,
            "offered": self.offered,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], new_uuid: Callable[[], str]) -> Hunt:
        if data.get("v") != 1:
            raise ValueError(f"unknown hunt schema version {data.get('v')!r}")
        hunt = cls(
            data["call_uuid"],
            QueueRules.from_dict(data["rules"]),
            new_uuid,
            caller_number=data.get("caller_number", ""),
            caller_display=data.get("caller_display", ""),
            priority=int(data.get("priority", 0)),
            entered_at=float(data.get("entered_at", 0.0)),
            preferred=data.get("preferred"),
            preferred_display=data.get("preferred_display", ""),
        )
        hunt.phase = Phase(data["phase"])
        hunt.tried = list(data.get("tried", ()))
        hunt.passed = list(data.get("passed", ()))
        hunt.agent_id = data.get("agent_id")
        hunt.agent_ext = data.get("agent_ext")
        hunt.leg_uuid = data.get("leg_uuid")
        hunt.job_uuid = data.get("job_uuid")
        hunt.ring_deadline = data.get("ring_deadline")
        hunt.retry_at = data.get("retry_at")
        hunt.retries = int(data.get("retries", 0))
        hunt.moh_on = bool(data.get("moh_on", False))
        hunt.result = data.get("result")
        hunt.offered = bool(data.get("offered", False))
        return hunt
