"""The callback dialer (R-CALLBACK, stages 2 and 3): works stored requests until each ends.

Theory of operation
-------------------
Requests live in Redis (:mod:`ccd.store.callback`); a request being worked is held under a
lease (``SET NX PX``, renewed while this daemon works it), so with several daemons each
attempt is made by exactly one of them, and a daemon that dies lets its lease lapse for
another to take the request over. This module keeps only the attempts in progress.

Per queue, by its ``callback_strategy`` and only inside its business hours:

* ``customer_first``: while the queue has free agents, the oldest due requests are dialled
  (one per free agent); the answered customer hears ``ccd_cb_customer_first``; 1 puts
  them into the queue ahead of new calls (a normal hunt with a priority boost), anything
  else closes the request as declined.
* ``active``: every ``agent_poll_interval`` a free agent of the queue is reserved and rung;
  when they answer, the customer is dialled and bridged to them.
* ``passive``: an agent dials ``*25``; the daemon dials the due requests of the agent's
  queues one after the other until one answers, bridged to the agent's parked call.

An unanswered customer is an attempt (:func:`ccd.core.callback.after_attempt` decides the next
try or ``unreached``); an agent not answering is no attempt: the request is given back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ccd.config import Config
from ccd.config.rules import rules_from_config
from ccd.core import presence
from ccd.core.business_hours import in_business_hours
from ccd.core.callback import Attempt, CallbackError, CallbackRequest, Outcome, Status
from ccd.core.commands import Bridge, Fact, Kill, Originate, quote_var_value
from ccd.core.routing import candidates
from ccd.engine.disposition import DispositionService
from ccd.engine.io import CallIo
from ccd.store.agent import AgentRepository
from ccd.store.callback import CallbackStore, LeaseLost
from ccd.store.redis_store import RedisUnavailable
from ccd.store.routing import Routing

log = structlog.get_logger()

#: How a failed customer leg counts (BACKGROUND_JOB ``-ERR <cause>``).
_CAUSES = {
    "NO_ANSWER": Outcome.NO_ANSWER,
    "NO_USER_RESPONSE": Outcome.NO_ANSWER,
    "ALLOTTED_TIMEOUT": Outcome.NO_ANSWER,
    "USER_BUSY": Outcome.BUSY,
    "CALL_REJECTED": Outcome.REJECTED,
    "DESTINATION_OUT_OF_ORDER": Outcome.ABORTED,  # our switch's rate limit: not the customer
}
#: Priority points a customer-first callback gains over new calls in its queue.
CALLBACK_PRIORITY = 50
TONE_NONE_LEFT = "tone_stream://%(300,100,440);%(300,0,440)"


@dataclass
class Work:
    """One attempt in progress on one request."""

    request: CallbackRequest
    strategy: str
    phase: str  # ringing_agent | dialing_customer | prompt | bridged
    agent_id: str | None = None
    agent_leg: str | None = None
    customer_leg: str | None = None
    jobs: dict[str, str] = field(default_factory=dict)  # job uuid -> "agent" | "customer"
    passive_queues: tuple[str, ...] = ()
    started: float = 0.0  # when the current step began (the watchdog's reference)


class CallbackDialer:
    def __init__(
        self,
        *,
        config: Config,
        io: CallIo,
        agents: AgentRepository,
        callbacks: CallbackStore,
        enqueue: Callable[[str, CallbackRequest, int, float], None],
        agent_matched: Callable[[str, Any, str, str, float], None],
        disposition: DispositionService | None = None,
    ) -> None:
        self.config = config
        self.io = io
        self.agents = agents
        self.callbacks = callbacks
        self.enqueue = enqueue  # a customer who pressed 1 joins the queue (ccd.engine.entry)
        # An agent routing gave to a waiting caller instead (ccd.engine.hunting).
        self.agent_matched = agent_matched
        self.disposition = disposition
        self.work: dict[str, Work] = {}  # request id -> attempt in progress
        self.by_job: dict[str, str] = {}
        self.by_leg: dict[str, str] = {}
        self._last_poll: dict[str, float] = {}
        self._last_renew = 0.0
        self._orphans: list[CallbackRequest] | None = None
        self._adopting: dict[str, tuple[str, dict[str, str]]] = {}  # request -> (leg, keys)

    def rebuild(self, now: float) -> None:
        """Redis lost its data: the requests this daemon is working on are stored again
        (the others are gone with it: run Redis with appendonly yes)."""
        kept = 0
        for work in self.work.values():
            try:
                self.callbacks.restore(work.request, self.io.node_id, self.lease_ms)
                kept += 1
            except (CallbackError, RedisUnavailable) as exc:
                log.error("callback.rebuild_failed", callback=work.request.id, error=str(exc))
        log.warning("callback.rebuilt", requests=kept)

    # -- time ----------------------------------------------------------------------------
    @property
    def lease_ms(self) -> float:
        return self.config.callback.lease_time / self.config.daemon.time_scale * 1000

    def tick(self, now: float) -> None:
        self._orphans = None  # expired leases, read at most once a tick
        self._watchdog(now)
        if not getattr(self.io.esl, "connected", True):
            return  # nothing can be dialled; requests stay due for when FreeSWITCH is back
        if self._adopting:
            self._try_adoptions(now)
        if now - self._last_renew >= self.config.callback.lease_time / 3:
            self._last_renew = now
            for request_id in list(self.work):
                if not self.callbacks.renew(request_id, self.io.node_id, self.lease_ms):
                    log.warning("callback.lease_lost", callback=request_id)
        for name, queue in self.config.queues.items():
            if queue.callback_strategy == "customer_first":
                self._customer_first(name, now)
            elif queue.callback_strategy == "active":
                self._active(name, now)

    def _watchdog(self, now: float) -> None:
        """A step whose answer never came (a lost event, a switch that hung) must not hold
        its request forever under a lease this daemon keeps renewing: give it back."""
        limit = (
            self.config.callback.customer_ring_time
            + self.config.routing.ring_time
            + 4 * self.config.routing.originate_timeout_margin
            + 60
        )
        for work in list(self.work.values()):
            if work.phase in ("ringing_agent", "dialing_customer", "bridging") and (
                now - work.started > limit
            ):
                log.warning("callback.attempt_timeout", callback=work.request.id, phase=work.phase)
                if work.customer_leg:
                    self.io.send(Kill(work.customer_leg, "NORMAL_CLEARING"))
                if work.phase == "ringing_agent":
                    if work.agent_leg:
                        self.io.send(Kill(work.agent_leg, "NORMAL_CLEARING"))
                    self._agent_missed(work, "timeout", now)  # frees the agent too
                else:
                    self._customer_missed(work, Outcome.ABORTED, "timeout", now)

    def _open(self, queue: str, now: float) -> bool:
        return in_business_hours(now, rules_from_config(self.config, queue))

    def _due(self, queue: str, now: float, limit: int) -> list[CallbackRequest]:
        """Due requests of ``queue``, after any whose daemon died mid-attempt (its lease
        lapsed): those are taken over first, they have waited longest."""
        if self._orphans is None:
            self._orphans = self.callbacks.expired_leases()
        orphans = [
            r
            for r in self._orphans
            if r.queue == queue and r.id not in self.work and r.id not in self._adopting
        ]
        return (orphans + self.callbacks.due(now, queue, limit=limit))[:limit]

    def _in_progress(self, queue: str) -> int:
        return sum(1 for w in self.work.values() if w.request.queue == queue)

    def _tags(self, queue: str) -> tuple[str, ...]:
        q = self.config.queues.get(queue)
        return tuple(q.tags) if q else ()

    # -- customer first ------------------------------------------------------------------
    def _customer_first(self, queue: str, now: float) -> None:
        free = len(self.agents.available_with(self._tags(queue), now=now))
        slots = free - self._in_progress(queue)
        if slots <= 0 or not self._open(queue, now):
            return
        for request in self._due(queue, now, slots):
            if request.id in self.work:
                continue
            if self.io.routing.one(Routing.ahead(request.order_key, self._tags(queue)), now):
                return  # a caller waiting ahead of it by queue order gets the free agent first
            if not self._take(request):
                continue
            work = Work(request, "customer_first", "dialing_customer", started=now)
            self.work[request.id] = work
            self._dial_customer(work, f"ccd_cb_customer_first XML {self.io.context}", now)

    def on_prompt(self, uuid: str, stage: str, values: dict[str, str], now: float) -> bool:
        request_id = self.by_leg.get(uuid)
        work = self.work.get(request_id) if request_id else None
        if work is None and stage == "customer_first" and values.get("ccd_callback"):
            # A customer answered a call whose daemon is gone. Until its lease lapses the
            # customer hears music; then the request is taken over here, not dialled again.
            self._adopting[values["ccd_callback"]] = (uuid, dict(values))
            self.io.send_api(f"uuid_broadcast {uuid} {self.config.routing.moh} aleg")
            self._try_adoptions(now)
            return True
        if work is None or stage != "customer_first":
            return False
        if values.get("ccd_cf_choice") == "1":
            self._record(work, Outcome.QUEUED, now, detail="pressed 1")
            self.enqueue(uuid, work.request, CALLBACK_PRIORITY, now)
        else:
            self._record(work, Outcome.DECLINED, now, detail=values.get("ccd_cf_choice", ""))
            self.io.execute(uuid, "hangup", "NORMAL_CLEARING")
        return True

    def _try_adoptions(self, now: float) -> None:
        for request_id, (uuid, values) in list(self._adopting.items()):
            request = self.callbacks.get(request_id)
            if request is None or request.status not in ("working", "pending"):
                self._adopting.pop(request_id, None)  # finished elsewhere
                continue
            if not self._take(request):
                continue  # the lease still runs: its daemon may be alive after all
            self._adopting.pop(request_id, None)
            log.info("callback.lease_taken_over", callback=request.id, leg=uuid)
            work = Work(request, "customer_first", "prompt", customer_leg=uuid)
            self.work[request.id] = work
            self.by_leg[uuid] = request.id
            self.on_prompt(uuid, "customer_first", values, now)

    # -- active ----------------------------------------------------------------------------
    def _active(self, queue: str, now: float) -> None:
        if now - self._last_poll.get(queue, -1e18) < self.config.callback.agent_poll_interval:
            return
        self._last_poll[queue] = now
        if self._in_progress(queue) or not self._open(queue, now):
            return
        due = self._due(queue, now, 1)
        free = candidates(self.agents.available_with(self._tags(queue), limit=4, now=now), ())
        if not due or not free:
            return
        request = due[0]
        for agent in free:
            leg, job = self.io.new_uuid(), self.io.new_uuid()
            op = Routing.claim(agent.id, request.id, request.order_key, leg, job)
            result = self.io.routing.one(op, now)
            if not result:
                continue  # no longer free
            if not result.get("request"):
                # A caller waiting ahead of the request by queue order got the agent.
                self.agent_matched(agent.id, result, leg, job, now)
                return
            self.agents.remember(result["agent"])
            if not self._take(request):
                self.io.presence(agent.id, lambda s, lg=leg: presence.offer_failed(
                    s, lg, "cancelled", now, self.io.rules), now)  # fmt: skip
                return
            work = Work(request, "active", "ringing_agent", agent_id=agent.id, started=now)
            self.work[request.id] = work
            self._ring_agent(work, agent.extension, now, leg, job)
            return

    def _ring_agent(self, work: Work, extension: str, now: float, leg: str, job: str) -> None:
        work.agent_leg = leg
        work.jobs[job] = "agent"
        self.by_job[job], self.by_leg[leg] = work.request.id, work.request.id
        ring = self.config.queues[work.request.queue].ring_time
        variables = {
            "ccd_callback": work.request.id,
            "ccd_agent": work.agent_id,
            "ccd_call": work.request.id,
            "origination_caller_id_name": f"Callback {work.request.number}",
            "origination_caller_id_number": work.request.number,
        }
        margin = int(self.config.routing.originate_timeout_margin)
        command = Originate(leg, extension, variables, int(ring) + max(1, margin), job)
        if not self.io.send(command):
            self._agent_missed(work, "not sent", now)  # frees the agent, gives the request back
            return
        log.info("callback.agent_offered", callback=work.request.id, agent=work.agent_id)

    # -- passive -----------------------------------------------------------------------------
    def next_callback(self, agent: Any, uuid: str, now: float) -> None:
        """An agent dialled *25: their queues' due requests, one after the other."""
        queues = tuple(
            name
            for name, q in self.config.queues.items()
            if q.callback_strategy == "passive" and set(q.tags) <= set(agent.tags)
        )
        self._passive_next(agent.id, uuid, queues, now)

    def _passive_next(self, agent_id: str, uuid: str, queues: tuple[str, ...], now: float) -> None:
        open_queues = [q for q in queues if self._open(q, now)]
        for request in self.callbacks.due(now, open_queues, limit=10) if open_queues else []:
            if request.id in self.work or not self._take(request):
                continue
            work = Work(request, "passive", "dialing_customer", agent_id=agent_id,
                        agent_leg=uuid, passive_queues=queues, started=now)  # fmt: skip
            self.work[request.id] = work
            self.by_leg[uuid] = request.id
            self._dial_customer(work, "&park()", now)
            return
        log.info("callback.none_due", agent=agent_id)
        self.io.execute(uuid, "playback", TONE_NONE_LEFT)
        self.io.execute(uuid, "hangup", "NORMAL_CLEARING")

    # -- dialling the customer ------------------------------------------------------------------
    def _dial_customer(self, work: Work, program: str, now: float) -> None:
        leg, job = self.io.new_uuid(), self.io.new_uuid()
        work.customer_leg = leg
        work.jobs[job] = "customer"
        self.by_job[job], self.by_leg[leg] = work.request.id, work.request.id
        gateway = self.config.callback.gateway
        variables = [
            f"origination_uuid={leg}",
            f"ccd_callback={work.request.id}",
            f"originate_timeout={int(self.config.callback.customer_ring_time)}",
            f"origination_caller_id_number={quote_var_value(self.config.callback.caller_id)}",
        ]
        text = f"originate {{{','.join(variables)}}}sofia/gateway/{gateway}/{work.request.number} "
        work.started = now
        if not self.io.bgapi(text + program, job):
            # Never reached FreeSWITCH: not the customer's attempt; due again at once.
            self._customer_missed(work, Outcome.ABORTED, "not sent", now)
            return
        dialing = {"callback": work.request.id, "strategy": work.strategy,
                   "queue": work.request.queue, "agent": work.agent_id}  # fmt: skip
        self.io.fact(Fact("callback.dialing", dialing), now)

    # -- events ----------------------------------------------------------------------------
    def on_job(self, job: str, ok: bool, value: str, now: float) -> bool:
        request_id = self.by_job.pop(job, None)
        work = self.work.get(request_id) if request_id else None
        if work is None:
            return False
        side = work.jobs.pop(job, "")
        if side == "agent":
            if ok:
                self._agent_answered(work, now)
            else:
                self._agent_missed(work, value, now)
        elif side == "customer":
            if ok:
                self._customer_answered(work, now)
            else:
                self._customer_missed(work, _CAUSES.get(value, Outcome.FAILED), value, now)
        return True

    def on_agent_answered(self, leg: str, now: float) -> bool:
        work = self.work.get(self.by_leg.get(leg, ""))
        if work is None or leg != work.agent_leg or work.phase != "ringing_agent":
            return False
        self._agent_answered(work, now)
        return True

    def on_hangup(self, uuid: str, now: float) -> bool:
        for request_id, (leg, _values) in list(self._adopting.items()):
            if leg == uuid:  # gone before anyone could take the request over: retried later
                self._adopting.pop(request_id, None)
        request_id = self.by_leg.pop(uuid, None)
        work = self.work.get(request_id) if request_id else None
        if work is None:
            return False
        if uuid == work.customer_leg and work.phase == "prompt":
            self._record(work, Outcome.FAILED, now, detail="hung up at the prompt")
        elif work.phase == "bridging":  # either side gone before the bridge: try again
            other = work.agent_leg if uuid == work.customer_leg else work.customer_leg
            if other and work.strategy == "active":
                self.io.send(Kill(other, "NORMAL_CLEARING"))
            self._record(work, Outcome.FAILED, now, detail="hung up before the bridge")
        elif uuid == work.agent_leg and work.phase == "dialing_customer":
            # The agent gave up while we dialled: the customer leg goes too; try later.
            if work.customer_leg:
                self.io.send(Kill(work.customer_leg, "ORIGINATOR_CANCEL"))
            self._give_back(work, now)
        elif uuid == work.agent_leg and work.phase == "ringing_agent":
            self._agent_missed(work, "hangup", now)
        return True

    # -- steps ------------------------------------------------------------------------------
    def _agent_answered(self, work: Work, now: float) -> None:
        if work.phase != "ringing_agent":
            return
        work.phase = "dialing_customer"
        if work.agent_id and work.agent_leg:
            leg = work.agent_leg
            self.io.presence(work.agent_id, lambda s: presence.answered(s, leg, now), now)
        self._dial_customer(work, "&park()", now)

    def _agent_missed(self, work: Work, cause: str, now: float) -> None:
        """The agent did not take it: no attempt on the customer; the request waits."""
        if work.agent_id:
            leg = work.agent_leg
            self.io.presence(work.agent_id, lambda s: presence.offer_failed(
                s, leg, "no_answer", now, self.io.rules), now)  # fmt: skip
        log.info("callback.agent_no_answer", callback=work.request.id, cause=cause)
        self._give_back(work, now)

    def _customer_answered(self, work: Work, now: float) -> None:
        if work.strategy == "customer_first":
            work.phase = "prompt"  # the leg runs ccd_cb_customer_first; on_prompt follows
            return
        work.phase = "bridging"  # connected once FreeSWITCH reports the bridge
        assert work.agent_leg is not None and work.customer_leg is not None
        self.io.send(Bridge(work.agent_leg, work.customer_leg))

    def on_bridged(self, uuid: str, other: str, now: float) -> bool:
        work = self.work.get(self.by_leg.get(uuid, "") or self.by_leg.get(other, ""))
        if work is None or work.phase != "bridging":
            return False
        self._record(work, Outcome.CONNECTED, now, detail="bridged")
        self.io.fact(
            Fact(
                "callback.connected",
                {"callback": work.request.id, "agent": work.agent_id, "queue": work.request.queue},
            ),
            now,
        )
        return True

    def _customer_missed(self, work: Work, outcome: Outcome, cause: str, now: float) -> None:
        self._record(work, outcome, now, detail=cause)
        if work.strategy == "active" and work.agent_leg:
            self.io.send(Kill(work.agent_leg, "NORMAL_CLEARING"))  # frees the agent
        elif work.strategy == "passive" and work.agent_leg and work.agent_id:
            if outcome is Outcome.ABORTED:  # our side failed: end the agent's session
                self.io.execute(work.agent_leg, "playback", TONE_NONE_LEFT)
                self.io.execute(work.agent_leg, "hangup", "NORMAL_CLEARING")
            else:
                self._passive_next(work.agent_id, work.agent_leg, work.passive_queues, now)

    def _record(self, work: Work, outcome: Outcome, now: float, detail: str = "") -> None:
        self._forget(work)
        attempt = Attempt(now, outcome, work.agent_id, detail[:120])
        if self.disposition is not None and outcome is not Outcome.ABORTED:
            self._coded(work, outcome, now, detail)
        rules = rules_from_config(self.config, work.request.queue)
        try:
            after = self.callbacks.record_attempt(
                work.request.id, self.io.node_id, attempt, rules, now
            )
        except (LeaseLost, RedisUnavailable) as exc:
            log.error("callback.record_failed", callback=work.request.id, error=str(exc))
            return
        if after.status is Status.UNREACHED:  # out of attempts: kept, visible, reported
            self.io.fact(
                Fact(
                    "callback.unreached",
                    {"callback": after.id, "number": after.number, "queue": after.queue},
                ),
                now,
            )

    def _coded(self, work: Work, outcome: Outcome, now: float, detail: str) -> None:
        """The customer leg's outcome as a call: automatic codes and contact history.
        Bookkeeping only: it must never keep the attempt from being recorded."""
        answered = outcome in (Outcome.CONNECTED, Outcome.QUEUED, Outcome.DECLINED)
        cause = None if answered else detail or str(outcome).upper()
        try:
            self.disposition.outside_call_finished(
                work.agent_id, work.request.number, answered, 0, now,
                call_uuid=work.customer_leg, cause=cause,
            )  # fmt: skip
        except Exception:
            log.exception("callback.disposition_failed", callback=work.request.id)

    def _give_back(self, work: Work, now: float) -> None:
        self._forget(work)
        try:
            self.callbacks.release(work.request.id, self.io.node_id)
        except (LeaseLost, RedisUnavailable) as exc:
            log.warning("callback.release_failed", callback=work.request.id, error=str(exc))

    def _forget(self, work: Work) -> None:
        self.work.pop(work.request.id, None)
        for job in work.jobs:
            self.by_job.pop(job, None)
        work.jobs.clear()

    def _take(self, request: CallbackRequest) -> bool:
        return self.callbacks.take(request.id, self.io.node_id, self.lease_ms)
