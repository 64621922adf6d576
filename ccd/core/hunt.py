"""The hunt: ring one agent at a time for one queued call (R-ROUTE).

Theory of operation
-------------------
A :class:`Hunt` is the state machine of one caller waiting in a queue. The engine feeds it
what happened (with the time ``now`` from its clock) and gets back a :class:`Step`: ESL
commands to send, facts to log, offers to release, and whether to ask routing for an agent
(``match``). The hunt never reads a clock, opens a socket or talks to Redis; its state
round-trips through :meth:`Hunt.to_dict` / :meth:`Hunt.from_dict`, so a restarted daemon
resumes it from Redis.

Asking routing is one atomic step in Redis (:mod:`ccd.store.routing`): the first free agent
carrying the call's tags, in routing order, is reserved for the call (:meth:`on_matched`),
or the call waits in its list (:meth:`on_waiting`) until an agent becomes free and picks it
(:meth:`on_matched` again, whenever that happens). Nothing polls.

Phases: :class:`ccd.core.hunt_step.Phase` (its docstring draws them).

Rules worth knowing:

* The daemon times the ring (``ring_time``) and kills the leg itself; ``originate_timeout``
  is only a safety net, a few seconds longer.
* An answered agent leg is bridged only once the originate's ``&park()`` runs (its ``+OK``
  or the leg's CHANNEL_PARK, whichever comes first), never at CHANNEL_ANSWER: FreeSWITCH sets
  the leg to run ``park`` after the answer, and a ``uuid_bridge`` sent before that is undone.
* A leg the hunt killed is forgotten at once: its ``-ERR NORMAL_CLEARING`` and hangup no
  longer match the current leg and are never mistaken for the agent's no-answer.
* One phone rings at a time on the wire too: after the ring deadline the next agent is
  looked for once the killed leg's CHANNEL_HANGUP_COMPLETE is in (FreeSWITCH queues its
  CANCEL before that event, so the next INVITE follows it), or ``LEG_END_WAIT`` later.
* DESTINATION_OUT_OF_ORDER is FreeSWITCH's sessions-per-second limit, not the agent: released
  without blame, the call looks again after ``retry_delay`` (``max_retries`` in a row).
* An agent tried in this pass is not rung again. Nobody free: nobody logged in who could take
  the call means waiting (for an agent or the overflow offer) unless the queue says
  ``no_agents = "voicemail"``; everyone logged in tried means ``on_exhausted``.
* Every path that ends an offer releases the agent once, with an outcome (ccd.core.queue).
* Position announcements (``announce_interval``, ccd.core.announce) are made only while the
  call waits in its list: the first when routing first puts it there, then every interval;
  after a failed offer the next comes a full interval later. A caller whose estimate reaches
  the overflow time hears the callback offer instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ccd.core.announce import announcement
from ccd.core.commands import (
    Break,
    Bridge,
    Broadcast,
    Fact,
    Kill,
    Originate,
    Transfer,
    UnsafeValue,
    is_uuid,
    sanitize_caller_name,
    sanitize_number,
)
from ccd.core.estimate import QueueLoad, estimate_wait
from ccd.core.hunt_step import EMPTY as _EMPTY
from ccd.core.hunt_step import OFFER_PHASES as _OFFER_PHASES
from ccd.core.hunt_step import OVERFLOW_PHASES as _OVERFLOW_PHASES
from ccd.core.hunt_step import Acc as _Acc
from ccd.core.hunt_step import Phase, Release, Step
from ccd.core.queue import QueueRules, outcome_for_cause, queue_order_key

__all__ = ["Hunt", "Phase", "Release", "Step"]

#: Version of the hunt's stored form (:meth:`Hunt.to_dict`).
HUNT_VERSION = 2
#: A snapshot's live channels: uuid -> (application, application data).
Apps = Mapping[str, tuple[str, str]] | None
#: Seconds a killed leg's hangup is waited for before the next agent is rung regardless.
LEG_END_WAIT = 2.0


class Hunt:
    """One queued call's hunt for an agent; see the module docstring."""

    __slots__ = (
        "agent_ext", "agent_id", "announce_at", "announced", "answered", "call_uuid",
        "caller_display", "caller_number", "ending_leg", "ending_until", "entered_at",
        "job_uuid", "leg_uuid", "moh_on", "offered", "phase", "preferred",
        "preferred_display", "priority", "result", "retries", "retry_at", "ring_deadline",
        "rules", "tried",
    )  # fmt: skip

    def __init__(
        self,
        call_uuid: str,
        rules: QueueRules,
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
        self.agent_id: str | None = None
        self.agent_ext: str | None = None
        self.leg_uuid: str | None = None
        self.job_uuid: str | None = None
        self.answered = False  # the current leg answered (CHANNEL_ANSWER or +OK)
        self.ring_deadline: float | None = None
        self.retry_at: float | None = None
        self.ending_leg: str | None = None  # CANCELLING: the killed leg, and until when
        self.ending_until: float | None = None
        self.retries = 0
        self.moh_on = False
        self.result: str | None = None
        self.announce_at: float | None = None  # the next position announcement (WAITING)
        self.announced = 0  # announcements made

    # -- queries -----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def waiting(self) -> bool:
        """No agent yet: routing may hand this call one at any moment."""
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
        if self.phase is Phase.CANCELLING:
            deadlines.append(self.ending_until)
        if self.phase in _OVERFLOW_PHASES:
            deadlines.append(self.overflow_at)
        if self.phase is Phase.WAITING:
            deadlines.append(self.announce_at)
        found = [d for d in deadlines if d is not None]
        return min(found) if found else None

    @property
    def order_key(self) -> float:
        return queue_order_key(self.priority, self.entered_at)

    # -- inputs --------------------------------------------------------------

    def start(self, now: float) -> Step:
        """The call entered its queue: music, and ask routing (the entry step itself)."""
        if self.phase is not Phase.NEW:
            return _EMPTY
        acc = _Acc()
        self._moh(acc)
        self.phase = Phase.WAITING
        acc.match = True
        return acc.step()

    def on_entered(self, priority: int, tags: Iterable[str]) -> Step:
        """Routing placed the call: its priority and tags after the customer's (VIP, language)."""
        self.priority = priority
        wanted = tuple(sorted(set(tags)))
        if wanted != self.rules.required_tags:
            self.rules = QueueRules.from_dict({**self.rules.to_dict(), "required_tags": wanted})
        queued = self._fact("call.queued", priority=priority, tags=list(wanted),
                            number=self.caller_number)  # fmt: skip
        return Step(facts=(queued,))

    def on_matched(
        self, agent_id: str, extension: str, leg_uuid: str, job_uuid: str, now: float
    ) -> Step:
        """Routing reserved ``agent_id`` for this call, to be rung on ``leg_uuid``."""
        if self.phase is not Phase.WAITING or agent_id in self.tried:
            # The call moved on (caller left, offer under way): the reservation goes back.
            return Step(releases=(Release(agent_id, "cancelled", leg_uuid),))
        acc = _Acc()
        self.agent_id, self.agent_ext = agent_id, extension
        self.leg_uuid, self.job_uuid = leg_uuid, job_uuid
        self._ring(acc, now)
        return acc.step()

    def on_offer_resumed(
        self, agent_id: str, extension: str, leg_uuid: str, job_uuid: str, offered_at: float
    ) -> Step:
        """After a restart: routing had reserved this agent (the offer Redis kept), so the
        ring goes on from when it began; :meth:`on_resync` then sees if the leg still lives."""
        if self.phase is not Phase.WAITING:
            return _EMPTY
        self.agent_id, self.agent_ext = agent_id, extension
        self.leg_uuid, self.job_uuid = leg_uuid, job_uuid
        self.phase, self.answered = Phase.RINGING, False
        self.ring_deadline = offered_at + self.rules.ring_time
        return _EMPTY

    def on_waiting(self, ready: int, untried: int, now: float) -> Step:
        """Routing found nobody free. ``ready``: agents logged in (ready, registered) carrying
        the tags, busy or not; ``untried``: those this call has not been offered to."""
        if self.phase is not Phase.WAITING:
            return _EMPTY
        acc = _Acc()
        if ready == 0:
            if self.rules.no_agents == "voicemail":
                self._exhausted(acc, reason="nobody_logged_in")
        elif untried == 0:
            self._exhausted(acc, reason="all_tried")
        interval = self.rules.announce_interval
        if self.phase is Phase.WAITING and interval > 0 and self.announce_at is None:
            self.announce_at = now + interval if self.announced else now
        return acc.step()

    def on_announce(self, position: int, load: QueueLoad | None, now: float) -> Step:
        """The announcement's read: the caller is ``position`` in the queue (1: next), the
        queue's ``load`` (None: no history, the position alone is said)."""
        if self.phase is not Phase.WAITING or position < 1:
            return _EMPTY
        acc = _Acc()
        horizon = self.rules.overflow_time if self.overflow_at is not None else None
        waited = now - self.entered_at
        estimate = None if load is None else estimate_wait(load, position, waited=waited,
                                                           horizon=horizon)  # fmt: skip
        if estimate is not None and estimate.seconds is not None and estimate.beyond_horizon:
            self._overflow(acc, now, "estimate")  # they would reach the offer first: now
            return acc.step()
        acc.commands.extend(announcement(self.call_uuid, position, estimate, self.rules.moh))
        self.moh_on = True  # music or prompts still queued: the next step breaks either
        self.announced += 1
        seconds = None if estimate is None else estimate.seconds
        acc.facts.append(self._fact("call.announced", position=position, estimate=seconds))
        return acc.step()

    def on_sticky_fallback(self) -> Step:
        """The bound agent (direct callback) cannot take the call: the queue's order."""
        bound, self.preferred = self.preferred, None
        if bound is None:
            return _EMPTY
        return Step(facts=(self._fact("sticky.fallback", bound_agent=bound),))

    def on_job_result(self, job_uuid: str, ok: bool, cause: str, now: float) -> Step:
        """The BACKGROUND_JOB of an originate: ``+OK`` = answered, else ``cause``."""
        if job_uuid != self.job_uuid or self.phase not in (Phase.RINGING, Phase.ANSWERED):
            return _EMPTY
        acc = _Acc()
        if ok:  # sent once the leg runs its &park(): bridgeable (see the module doc)
            self._answered(acc)
            self._bridge(acc)
        elif self.phase is Phase.RINGING:
            self._offer_failed(acc, cause, now)
        return acc.step()

    def on_agent_answered(self, leg_uuid: str, now: float) -> Step:
        if self.phase is not Phase.RINGING or leg_uuid != self.leg_uuid:
            return _EMPTY
        acc = _Acc()
        self._answered(acc)
        return acc.step()

    def on_agent_parked(self, leg_uuid: str, now: float) -> Step:
        """The answered agent leg runs its ``&park()``: now it can be bridged."""
        if leg_uuid != self.leg_uuid or self.phase not in (Phase.RINGING, Phase.ANSWERED):
            return _EMPTY
        acc = _Acc()
        self._answered(acc)
        self._bridge(acc)
        return acc.step()

    def on_bridged(self, now: float) -> Step:
        if self.phase is not Phase.BRIDGING:
            return _EMPTY
        self.phase = Phase.BRIDGED
        return Step(facts=(self._fact("call.bridged", waited=round(now - self.entered_at, 3)),))

    def on_agent_leg_hangup(self, leg_uuid: str, cause: str, now: float) -> Step:
        acc = _Acc()
        if self.phase is Phase.CANCELLING and leg_uuid == self.ending_leg:
            self._next(acc)  # the killed leg is gone: the next agent may ring
            return acc.step()
        if leg_uuid != self.leg_uuid or self.leg_uuid is None:
            return _EMPTY
        if self.phase is Phase.RINGING:
            self._offer_failed(acc, cause, now)
        elif self.phase in (Phase.ANSWERED, Phase.BRIDGING):
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
        acc.facts.append(
            self._fact("call.abandoned", phase=str(phase), waited=round(now - self.entered_at, 3))
        )
        if phase in _OFFER_PHASES and self.leg_uuid:
            acc.commands.append(Kill(self.leg_uuid, "ORIGINATOR_CANCEL"))
        if phase in _OFFER_PHASES:
            self._release(acc, "cancelled", tried=False)
        self._finish("abandoned")
        return acc.step()

    def on_tick(self, now: float) -> Step:
        acc = _Acc()
        if self.phase is Phase.WAITING and self.announce_at is not None and now >= self.announce_at:
            self.announce_at = now + self.rules.announce_interval
            acc.announce = True  # the read comes back to on_announce
        self._deadlines(acc, now)
        overflow = self.overflow_at
        if self.phase in _OVERFLOW_PHASES and overflow is not None and now >= overflow:
            # After the ring deadline: an agent who rang the full ring time did not answer.
            acc.match = False
            self._overflow(acc, now)
        return acc.step()

    def _deadlines(self, acc: _Acc, now: float) -> None:
        if self.phase is Phase.RINGING and now >= (self.ring_deadline or math.inf):
            leg = self.leg_uuid
            if leg:
                acc.commands.append(Kill(leg, "ORIGINATOR_CANCEL"))
            acc.facts.append(self._fact("agent.no_answer", cause="RING_TIMEOUT"))
            self._release(acc, "no_answer", tried=True)
            if leg:
                self.phase = Phase.CANCELLING
                self.ending_leg, self.ending_until = leg, now + LEG_END_WAIT
            else:
                self._next(acc)
        elif self.phase is Phase.RETRY and self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self._next(acc)
        elif self.phase is Phase.CANCELLING and now >= (self.ending_until or 0.0):
            self._next(acc)  # the leg's end never came: do not keep the caller waiting

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

    def on_resync(self, live_uuids: Iterable[str], now: float, apps: Apps = None) -> Step:
        """After a restart or reconnect: ``live_uuids`` FreeSWITCH confirmed live (a uuid
        missing from a snapshot is confirmed gone before it gets here, see ccd.engine.resync);
        ``apps``: the application and its data each live channel runs (snapshot rows).

        A caller that is gone is an abandoned call; an agent leg that is gone ends its offer
        (not the agent's fault) or the bridged call; an agent leg that answered and parked
        (or was bridged) while nobody listened is bridged now (or known bridged); a waiting
        call asks routing again; one past its overflow time goes to the offer at once.
        """
        live = frozenset(live_uuids)
        if self.phase in (Phase.NEW, Phase.DONE):
            return _EMPTY
        if self.call_uuid not in live:
            return self.on_caller_hangup(now)
        if self.phase in _OFFER_PHASES and self.leg_uuid in live:
            # The +OK, CHANNEL_PARK or CHANNEL_BRIDGE came while nobody listened: without
            # this the agent who answered hears silence and the caller music, for ever.
            app, data = (apps or {}).get(self.leg_uuid, ("", ""))  # type: ignore[arg-type]
            if app == "park" or (app == "uuid_bridge" and data == self.call_uuid):
                acc = _Acc()
                self._answered(acc)
                if app == "park":  # the originate's &park(): bridgeable
                    self._bridge(acc)
                else:  # bridged already: the engine goes on as at CHANNEL_BRIDGE
                    self.phase, self.moh_on = Phase.BRIDGING, False
                return acc.step()
        overflow = self.overflow_at
        if self.phase in _OVERFLOW_PHASES and overflow is not None and now >= overflow:
            # Straight to the offer: nobody knows how a ring nobody watched went.
            if self.leg_uuid is not None and self.leg_uuid not in live:
                self.leg_uuid = None
            acc = _Acc()
            self._overflow(acc, now)
            return acc.step()
        if self.phase in (Phase.WAITING, Phase.CANCELLING):
            acc = _Acc()
            self._next(acc)
            return acc.step()
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
        assert self.leg_uuid is not None and self.job_uuid is not None
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
        self.announce_at = None  # re-armed by the next wait in the list (on_waiting)
        self.phase = Phase.RINGING
        self.answered = False
        self.ring_deadline = now + self.rules.ring_time
        waited = round(now - self.entered_at, 3)  # queue entry -> this offer (metrics)
        acc.facts.append(self._fact("agent.offered", extension=self.agent_ext, waited=waited))

    def _overflow(self, acc: _Acc, now: float, why: str = "overflow_time") -> None:
        """Nobody answered within the overflow time (or will not, by the estimate): stop
        ringing, make the offer. With no estimate (no history) the overflow time decides."""
        if self.phase is Phase.RINGING and self.leg_uuid:
            acc.commands.append(Kill(self.leg_uuid, "ORIGINATOR_CANCEL"))
        if self.phase is Phase.RINGING:
            self._release(acc, "cancelled", tried=False)  # not the agent's fault
        self.offered = True
        self.announce_at = None  # after the offer, a full interval before the next one
        self._stop_moh(acc)
        self.phase = Phase.OFFERING
        self.retry_at = None
        acc.unlist = True
        self.ending_leg = self.ending_until = None
        waited = round(now - self.entered_at, 3)
        acc.facts.append(self._fact("call.overflow", waited=waited, why=why))
        acc.facts.append(self._fact("callback.offered"))
        acc.commands.append(Transfer(self.call_uuid, "ccd_cb_offer", self.rules.context))

    def _answered(self, acc: _Acc) -> None:
        if self.answered:
            return
        self.answered = True
        self.phase = Phase.ANSWERED
        self.ring_deadline = None
        acc.facts.append(self._fact("agent.answered"))

    def _bridge(self, acc: _Acc) -> None:
        assert self.leg_uuid is not None
        self.phase = Phase.BRIDGING
        self._stop_moh(acc)
        acc.commands.append(Bridge(self.call_uuid, self.leg_uuid))

    def _offer_failed(self, acc: _Acc, cause: str, now: float) -> None:
        outcome = outcome_for_cause(cause)
        if outcome == "out_of_order" and self.retries < self.rules.max_retries:
            acc.facts.append(self._fact("agent.retry", cause=cause, attempt=self.retries + 1))
            retries = self.retries + 1
            self._release(acc, outcome, tried=False)
            self.retries = retries
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
            acc.releases.append(Release(self.agent_id, outcome, self.leg_uuid, tried))
            if tried and self.agent_id not in self.tried:
                self.tried.append(self.agent_id)
        self._clear_offer()

    def _clear_offer(self) -> None:
        self.agent_id = self.agent_ext = self.leg_uuid = self.job_uuid = None
        self.ring_deadline = self.retry_at = None
        self.answered = False
        if self.phase is not Phase.RETRY:
            self.retries = 0

    def _next(self, acc: _Acc) -> None:
        self.phase = Phase.WAITING
        self.ending_leg = self.ending_until = None
        acc.match = True

    def _exhausted(self, acc: _Acc, reason: str) -> None:
        self._stop_moh(acc)
        acc.unlist = True
        if self.rules.on_exhausted == "voicemail":
            box = self.rules.voicemail_box or self.rules.name
            acc.commands.append(
                Transfer(self.call_uuid, f"ccd_voicemail_{box}", self.rules.context)
            )
            acc.facts.append(
                self._fact("call.voicemail", box=box, tried=list(self.tried), reason=reason)
            )
            self._finish("voicemail")
        else:
            acc.commands.append(Kill(self.call_uuid, "NORMAL_CLEARING"))
            acc.facts.append(self._fact("call.unanswered", tried=list(self.tried), reason=reason))
            self._finish("hangup")

    def _finish(self, result: str) -> None:
        self._clear_offer()
        self.phase = Phase.DONE
        self.result = result

    # -- persistence -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data.update(v=HUNT_VERSION, phase=str(self.phase), rules=self.rules.to_dict())
        data["tried"] = list(self.tried)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hunt:
        if data.get("v") != HUNT_VERSION:
            raise ValueError(f"unknown hunt schema version {data.get('v')!r}")
        hunt = cls(data["call_uuid"], QueueRules.from_dict(data["rules"]))
        for name in cls.__slots__:
            if name in data and name not in ("call_uuid", "rules"):
                setattr(hunt, name, data[name])
        hunt.phase = Phase(data["phase"])
        hunt.tried = list(data.get("tried") or ())
        return hunt
