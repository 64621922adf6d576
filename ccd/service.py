"""Call control: feeds the pure core from FreeSWITCH events and Redis, runs its commands.

Theory of operation
-------------------
The dispatcher greenlet calls :meth:`CallControl.on_event`, :meth:`on_tick` and
:meth:`on_resync`, one at a time. Each handler

1. decodes the event (:func:`ccd.core.events.from_esl`),
2. loads what it needs from Redis (the agent, the call and its hunt),
3. asks the pure core what to do (:mod:`ccd.core.hunt`, :mod:`ccd.core.presence`,
   :mod:`ccd.core.routing`),
4. writes the new state to Redis atomically (agent reservation and presence
   writes are Lua; the call record is rewritten after every hunt step), and
5. sends the commands to FreeSWITCH and logs the facts.

A hunt belongs to the daemon holding the call's lease (``lease:call.<uuid>``);
events about calls owned by another daemon are left to it. Waiting calls get
a fresh candidate list whenever an agent may have become free (any presence
change, a finished call) and at least once a second, in queue order (priority,
then arrival), so the longest-waiting caller gets the next free agent.

Hunts are cached in memory for speed; the call record in Redis is the truth,
and :meth:`on_resync` rebuilds the cache from it after a restart.
"""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog

from ccd.adapters.esl import EslError
from ccd.adapters.webhook import WebhookSender
from ccd.config import Config
from ccd.config.rules import number_rules_from_config
from ccd.core import events as ev
from ccd.core import presence
from ccd.core.callback import (
    CallbackRequest,
    NumberRefused,
    OpenLimitReached,
    check_number,
    new_request,
)
from ccd.core.commands import Command, Fact, Originate, UnsafeValue, is_uuid, to_esl
from ccd.core.customer import Customer, implied_tags
from ccd.core.esl_wire import EslEvent
from ccd.core.hunt import Hunt, Phase, QueueRules, Release, Step
from ccd.core.numbers import try_normalize
from ccd.core.routing import candidates
from ccd.core.screenpop import caller_id_name, offer_payload
from ccd.core.sticky import AgentAttempt, CustomerCall
from ccd.dialer import CallbackDialer
from ccd.dispo_service import Dispositions, build_dispositions
from ccd.store.agent import Agent, AgentError, AgentRepository
from ccd.store.call import CallRecord, CallRepository
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.redis_store import RedisUnavailable, Store
from ccd.store.sticky import BindingStore

if TYPE_CHECKING:
    from ccd.daemon import Daemon, LiveSnapshot

log = structlog.get_logger()

#: How long a daemon's claim on a call lasts without renewal (real milliseconds).
CALL_LEASE_MS = 30_000
#: Feature-code answers: two rising beeps = done, one low tone = refused.
TONE_OK = "tone_stream://%(120,60,880);%(180,0,1320)"
TONE_REFUSED = "tone_stream://%(600,0,330)"
#: Hunt phases in which the caller is still waiting for an agent.
_WAITING_PHASES = (Phase.WAITING, Phase.RESERVING, Phase.RINGING, Phase.RETRY)
#: Priority points a VIP customer's call gains in its queue.
VIP_PRIORITY_BOOST = 10


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


class CallControl:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        esl: Any,
        node_id: str,
        new_uuid: Callable[[], str] = _new_uuid,
        customers: Any = None,
        bindings: BindingStore | None = None,
        callbacks: CallbackStore | None = None,
        dispositions: Dispositions | None = None,
        webhook: Any = None,
        metrics: Any = None,
    ) -> None:
        self.config = config
        self.store = store
        self.esl = esl
        self.node_id = node_id
        self.new_uuid = new_uuid
        self.customers = customers
        self.bindings = bindings
        self.callbacks = callbacks if callbacks is not None else CallbackStore(store)
        self.dispositions = dispositions
        self.dialer = CallbackDialer(self)
        self._call_facts: dict[str, list[Fact]] = {}  # per live call, for dispositions
        self.number_rules = number_rules_from_config(config)
        self.webhook = webhook
        self.metrics = metrics
        self.agents = AgentRepository(store)
        self.calls = CallRepository(store)
        routing = config.routing
        self.rules = presence.PresenceRules(
            wrapup_time=routing.wrapup_time, max_missed_offers=routing.max_missed_offers
        )
        self.hunts: dict[str, Hunt] = {}  # caller uuid -> hunt this daemon owns
        self.records: dict[str, CallRecord] = {}
        self.jobs: dict[str, str] = {}  # job uuid -> caller uuid
        self.legs: dict[str, str] = {}  # agent leg uuid -> caller uuid
        self.wrapups: dict[str, float] = {}  # agent id -> wrap-up deadline
        self._unsent_jobs: list[str] = []
        self._fire_jobs: dict[str, str] = {}  # job uuid -> command, for commands not awaited
        self._deferred: dict[str, ev.CallParked] = {}  # callers parked while Redis was down
        self._dirty = True
        self._last_pump = 0.0
        self._last_renew = 0.0

    # ------------------------------------------------------------------ setup
    def seed_agents(self, now: float) -> None:
        """Agents named in the configuration exist in Redis (run-time changes win)."""
        for agent_id, agent in self.config.agents.items():
            try:
                self.agents.ensure(agent_id, agent.extension, agent.tags, now)
            except AgentError as exc:
                # One conflicting entry must not keep the daemon from serving calls.
                log.error("agent.config_conflict", agent=agent_id, error=str(exc))

    def queue_rules(self, queue: str, channel_tags: Iterable[str]) -> QueueRules:
        routing = self.config.routing
        q = self.config.queues.get(queue)
        tags = sorted({*(q.tags if q else ()), *channel_tags})
        return QueueRules(
            name=queue,
            required_tags=tuple(tags),
            ring_time=q.ring_time if q else routing.ring_time,
            ring_margin=max(1, int(routing.originate_timeout_margin)),
            on_exhausted=q.on_exhausted if q else "voicemail",
            voicemail_box=(q.voicemail if q else "") or queue,
            moh=routing.moh,
            context=self.config.daemon.dialplan_context,
            overflow_time=q.overflow_time if q else 0.0,
        )

    # ------------------------------------------------------------------ events
    def on_event(self, event: EslEvent, now: float) -> None:
        decoded = ev.from_esl(event)
        if decoded is None:
            return
        handler = self._handlers.get(type(decoded))
        if handler is None:
            return
        try:
            handler(self, decoded, now)
        except RedisUnavailable:
            if isinstance(decoded, ev.CallParked):
                self._defer(decoded)
            elif isinstance(decoded, ev.ChannelHangup):
                self._deferred.pop(decoded.uuid, None)
            raise

    def _defer(self, parked: ev.CallParked) -> None:
        """Redis is down as a caller arrives: music now, queued as soon as Redis is back.

        The caller is never left in silence, and nothing is lost; the dialplan's
        sched_transfer to voicemail remains the last resort.
        """
        if parked.uuid in self._deferred:
            return
        self._deferred[parked.uuid] = parked
        if self.config.routing.moh:
            self._send_api(f"uuid_broadcast {parked.uuid} {self.config.routing.moh} aleg")
        log.warning("call.queue_deferred", call=parked.uuid, queue=parked.queue)

    def _retry_deferred(self, now: float) -> None:
        for uuid, parked in list(self._deferred.items()):
            self._on_parked(parked, now)  # RedisUnavailable propagates: try next tick
            self._deferred.pop(uuid, None)

    def _on_entry(self, e: ev.EntryParked, now: float) -> None:
        """A caller to a main number: to the bound agent first (direct callback), else on
        to the menu. Both go through the dialplan (sendmsg runs them in order on the
        channel): the queue extension arms its own voicemail safety and sets ccd_queue."""
        if not self.store.lease(f"chan.{e.uuid}", self.node_id, CALL_LEASE_MS):
            return
        agent_id = self._direct_agent(e, now)
        self._execute(e.uuid, "sched_cancel", "")  # the dialplan's fall-through to the menu
        self._execute(e.uuid, "set", "ccd_direct_check=false")  # looked up once
        if agent_id is None:
            self._execute(e.uuid, "transfer", f"ccd_ivr XML {self._context}")
            return
        self._execute(e.uuid, "set", f"ccd_direct_agent={agent_id}")
        self._execute(e.uuid, "set", f"ccd_arrived={now:.3f}")
        self._execute(e.uuid, "transfer", f"ccd_queue_{e.queue} XML {self._context}")

    def _direct_agent(self, e: ev.EntryParked, now: float) -> str | None:
        """The agent a live binding sends this caller to (R-STICKY); None: the menu.

        The customer's call is recorded first (type 4 bindings are renewed by it)."""
        if self.bindings is None:
            return None
        if self.dispositions is not None and self.dispositions.dnc.is_listed(e.caller_number):
            return None  # a do-not-contact customer is not routed by a binding (R-DISPO)
        try:
            self.bindings.record(CustomerCall(e.caller_number, now), now)
            agent_id = self.bindings.route(e.caller_number, now)
        except (RedisUnavailable, ValueError) as exc:
            log.warning("sticky.lookup_failed", call=e.uuid, error=str(exc))
            return None
        if agent_id is not None and self.agents.get(agent_id) is None:
            return None  # the agent was removed: the binding leads nowhere
        return agent_id

    def _sticky(self, event: AgentAttempt | CustomerCall, now: float) -> None:
        if self.bindings is None:
            return
        try:
            self.bindings.record(event, now)
        except (RedisUnavailable, ValueError) as exc:
            log.warning("sticky.record_failed", number=event.number, error=str(exc))

    @property
    def _context(self) -> str:
        return self.config.daemon.dialplan_context

    def _on_parked(self, e: ev.CallParked, now: float) -> None:
        # A direct callback (see _on_entry): the bound agent first, and the waiting time
        # (the overflow clock) counts from the moment the call arrived, not from here.
        self._enqueue(
            e.uuid,
            e.queue,
            e.tags,
            e.caller_number,
            e.caller_name,
            e.destination,
            now,
            entered_at=_arrival(e.variables.get("ccd_arrived"), now),
            preferred=e.variables.get("ccd_direct_agent") or None,
        )

    def enqueue_callback(self, uuid: str, request: CallbackRequest, boost: int, now: float) -> None:
        """A customer called back (customer-first) who pressed 1: into the queue, ahead."""
        q = self.config.queues.get(request.queue)
        tags = tuple(q.tags) if q else ()
        self._enqueue(uuid, request.queue, tags, request.number, "", "", now, boost=boost)

    def _enqueue(
        self,
        uuid: str,
        queue: str,
        tags: Iterable[str],
        caller_number: str,
        caller_name: str,
        destination: str,
        now: float,
        *,
        entered_at: float | None = None,
        preferred: str | None = None,
        boost: int = 0,
    ) -> None:
        if uuid in self.hunts:
            return  # parked again (after a bridge ended, a transfer): already ours
        if not self.store.lease(f"call.{uuid}", self.node_id, CALL_LEASE_MS):
            return  # another daemon took this caller
        customer = self._customer(caller_number)
        # Contacts are recorded for known customers only (see _finish).
        history = self._history(caller_number) if customer is not None else []
        rules = self._with_implied_tags(self.queue_rules(queue, tags), customer)
        priority = self._priority(queue, customer) + boost
        template = self.config.routing.caller_id_template
        args = (template, customer, caller_name, caller_number, queue)
        display = caller_id_name(*args, history=history)
        entered = now if entered_at is None else entered_at
        record = CallRecord(
            uuid=uuid,
            queue=queue,
            caller_number=caller_number,
            caller_name=caller_name,
            destination=destination,
            tags=list(rules.required_tags),
            entered_at=entered,
            priority=priority,
            customer=None if customer is None else customer.to_dict(),
            node=self.node_id,
        )
        hunt = Hunt(
            uuid,
            rules,
            self.new_uuid,
            caller_number=caller_number,
            caller_display=display,
            priority=priority,
            entered_at=entered,
            preferred=preferred,
            preferred_display=caller_id_name(*args, direct=True, history=history)
            if preferred
            else "",
        )
        record.hunt = hunt.to_dict()
        if not self.calls.create(record, hunt.order_key):
            return  # known already (a second park of the same caller)
        structlog.contextvars.bind_contextvars(call=uuid, queue=queue)
        try:
            self.hunts[uuid] = hunt
            self.records[uuid] = record
            self._drive(hunt, hunt.start(now), now)
        finally:
            structlog.contextvars.unbind_contextvars("call", "queue")

    def _on_job(self, e: ev.JobResult, now: float) -> None:
        if self.dialer.on_job(e.job_uuid, e.ok, e.value, now):
            return
        command = self._fire_jobs.pop(e.job_uuid, None)
        if command is not None:
            if not e.ok:
                log.warning("esl.command_failed", command=command, reply=e.value)
            return
        call_uuid = self.jobs.pop(e.job_uuid, None)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is None:
            return
        self._drive(hunt, hunt.on_job_result(e.job_uuid, e.ok, e.value, now), now)

    def _on_answered(self, e: ev.ChannelAnswered, now: float) -> None:
        if self.dialer.on_agent_answered(e.uuid, now):
            return
        call_uuid = e.variables.get("ccd_call") or self.legs.get(e.uuid)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is not None:
            self._drive(hunt, hunt.on_agent_answered(e.uuid, now), now)

    def _on_bridged(self, e: ev.ChannelBridged, now: float) -> None:
        if self.dialer.on_bridged(e.uuid, e.other_uuid, now):
            return
        for caller in (e.uuid, e.other_uuid):
            hunt = self.hunts.get(caller)
            if hunt is not None and hunt.phase is Phase.BRIDGING:
                self._drive(hunt, hunt.on_bridged(now), now)
                record = self.records[caller]
                record.status, record.bridged_at = "bridged", now
                if record.agent:  # they talk: type 1 and 2 bindings end here
                    self._sticky(CustomerCall(record.caller_number, now, record.agent), now)
                self.calls.leave_queue(record)
                self._save(hunt)
                # The dialplan's safety net (sched_transfer to voicemail for a caller
                # left parked with no daemon) must not cut a conversation short.
                self._send_api(f"sched_del {caller}")

    def _on_hangup(self, e: ev.ChannelHangup, now: float) -> None:
        self._deferred.pop(e.uuid, None)
        self.dialer.on_hangup(e.uuid, now)
        hunt = self.hunts.get(e.uuid)
        if hunt is not None:
            self._drive(hunt, hunt.on_caller_hangup(now), now)
            return
        call_uuid = e.variables.get("ccd_call") or self.legs.get(e.uuid)
        if call_uuid:
            self.legs.pop(e.uuid, None)
            hunt = self.hunts.get(call_uuid)
            if hunt is not None:
                self._drive(hunt, hunt.on_agent_leg_hangup(e.uuid, e.cause, now), now)
            agent_id = e.variables.get("ccd_agent")
            if agent_id:
                self._presence(agent_id, lambda s: presence.call_ended(s, e.uuid, now, self.rules))
            return
        agent = self._agent_for(e.extension)
        if agent is not None:
            self._presence(agent.id, lambda s: presence.call_ended(s, e.uuid, now, self.rules))
            if e.variables.get("ccd_outbound") == "true":
                self._outside_call_ended(agent, e, now)

    def _outside_call_ended(self, agent: Agent, e: ev.ChannelHangup, now: float) -> None:
        """An agent's own call to a customer ended (marked by the dialplan, ccd_agents.xml).

        The agent's leg ends NORMAL_CLEARING either way (DESIGN.md wire facts): whether the
        customer answered is in originate_disposition, else in the talk time (billsec)."""
        number = e.variables.get("ccd_dialed", "")
        if not number:
            return
        disposition = e.variables.get("originate_disposition", "")
        try:
            billsec = int(e.variables.get("billsec", "0") or 0)
        except ValueError:
            billsec = 0
        answered = disposition == "SUCCESS" or (not disposition and billsec > 0)
        log.info("agent.outside_call", agent=agent.id, answered=answered, billsec=billsec)
        self._sticky(AgentAttempt(number, agent.id, answered, now), now)
        if self.dispositions is not None:
            self.dispositions.outside_call_finished(
                agent.id, number, answered, billsec, now, call_uuid=e.uuid,
                cause=disposition or None,
            )  # fmt: skip

    def _on_created(self, e: ev.ChannelCreated, now: float) -> None:
        if e.variables.get("ccd_call"):
            return  # our own offer leg; presence already knows it
        agent = self._agent_for(e.extension)
        if agent is not None:
            self._presence(agent.id, lambda s: presence.personal_call(s, e.uuid, now))

    def _on_feature_code(self, e: ev.FeatureCode, now: float) -> None:
        if not self.store.lease(f"chan.{e.uuid}", self.node_id, CALL_LEASE_MS):
            return
        agent = self._agent_for(e.extension)
        if e.action == "outbound_check":
            return self._outbound_check(e, agent)
        ok = False
        if agent is None:
            log.warning(
                "agent.feature_code_refused",
                extension=e.extension,
                action=e.action,
                reason="unknown_extension",
            )
        elif e.action == "next_callback":
            self.dialer.next_callback(agent, e.uuid, now)
            return None
        elif e.action == "dispo" and self.dispositions is not None:
            ok, said = self.dispositions.agent_code(agent.id, e.digits, None, now)
            event = "agent.disposition" if ok else "agent.feature_code_refused"
            log.info(event, agent=agent.id, action=e.action, result=said)
        elif e.action in ("login", "logout", "break", "ready"):
            try:
                self._presence(agent.id, lambda s: presence.set_login(s, e.action, now))
                ok = True
            except presence.IllegalTransition as exc:
                log.info(
                    "agent.feature_code_refused", agent=agent.id, action=e.action, reason=str(exc)
                )
        else:
            log.info(
                "agent.feature_code_refused",
                agent=agent.id,
                action=e.action,
                reason="not_supported",
            )
        if ok:
            log.info("agent.feature_code", agent=agent.id if agent else None, action=e.action)
        self._execute(e.uuid, "playback", TONE_OK if ok else TONE_REFUSED)
        self._execute(e.uuid, "hangup", "NORMAL_CLEARING")

    def _outbound_check(self, e: ev.FeatureCode, agent: Agent | None) -> None:
        """An agent's outside call waits parked for the do-not-call check (R-DISPO)."""
        allowed = bool(e.dialed) and (
            self.dispositions is None or self.dispositions.outbound_allowed(e.dialed)
        )
        if not allowed:
            reason = "do_not_call" if e.dialed else "bad_number"
            agent_id = agent.id if agent else None
            log.info("agent.outbound_refused", agent=agent_id, extension=e.extension, reason=reason)
        target = "ccd_outbound_go" if allowed else "ccd_outbound_refused"
        self._execute(e.uuid, "transfer", f"{target} XML ccd_agents")

    def _on_registered(self, e: ev.PhoneRegistered, now: float) -> None:
        agent = self._agent_for(e.extension)
        if agent is not None and not agent.state.registered:
            self._presence(agent.id, lambda s: presence.set_registered(s, True, now))

    def _on_unregistered(self, e: ev.PhoneUnregistered, now: float) -> None:
        agent = self._agent_for(e.extension)
        if agent is not None and agent.state.registered:
            self._presence(agent.id, lambda s: presence.set_registered(s, False, now))

    # -- the callback offer and number capture (R-OVERFLOW) -------------------------------
    #: Refused numbers a caller may type before they are kept waiting instead.
    MAX_NUMBER_REFUSALS = 3

    def _on_prompt(self, e: ev.PromptDone, now: float) -> None:
        """One step of the offer dialogue; the prompts are freeswitch_conf's ccd_cb_*.

        Every path either moves the caller to the next prompt, stores the request
        (and only then plays "we will call you back"), or puts them back in the queue
        with their original place: nobody is left in silence or dropped."""
        if e.stage == "customer_first":
            self.dialer.on_prompt(e.uuid, e.stage, dict(e.values), now)
            return None
        hunt, record = self.hunts.get(e.uuid), self.records.get(e.uuid)
        if hunt is None or record is None or hunt.phase is not Phase.OFFERING:
            return None
        try:
            return self._offer_step(hunt, record, e, now)
        except RedisUnavailable:
            raise
        except Exception:
            # A bug must not leave the caller parked at a prompt: back to the queue.
            log.exception("callback.offer_failed", call=e.uuid, stage=e.stage)
            return self._keep_waiting(hunt, now, "error")

    def _offer_step(self, hunt: Hunt, record: CallRecord, e: ev.PromptDone, now: float) -> None:
        capture, values = record.capture, e.values
        if e.stage == "offer":
            if values.get("ccd_offer_choice") != "1":
                return self._keep_waiting(hunt, now, "keep_waiting")
            try:
                capture["own"] = check_number(record.caller_number, self.number_rules)
            except NumberRefused:
                return self._prompt(e.uuid, "ccd_cb_enter_number")
            return self._prompt(e.uuid, "ccd_cb_which_number")
        if e.stage == "which_number":
            if values.get("ccd_which") == "1" and capture.get("own"):
                return self._store_callback(hunt, record, capture["own"], now)
            return self._prompt(e.uuid, "ccd_cb_enter_number")
        if e.stage == "entered_number":
            typed = values.get("ccd_cb_digits", "")
            try:
                capture["number"] = check_number(typed, self.number_rules)
            except NumberRefused as refused:
                capture["refusals"] = capture.get("refusals", 0) + 1
                log.info("callback.number_refused", call=e.uuid, reason=refused.reason)
                if capture["refusals"] >= self.MAX_NUMBER_REFUSALS:
                    return self._keep_waiting(hunt, now, "number_refused")
                self._execute(e.uuid, "set", f"ccd_cb_refusal={refused.reason}")
                return self._prompt(e.uuid, "ccd_cb_refused")
            # Read back what they typed (digits only: FreeSWITCH's say reads nothing else).
            self._execute(e.uuid, "set", "ccd_cb_number=" + "".join(filter(str.isdigit, typed)))
            return self._prompt(e.uuid, "ccd_cb_readback")
        if e.stage == "readback":
            if values.get("ccd_confirm") == "1" and capture.get("number"):
                return self._store_callback(hunt, record, capture["number"], now)
            return self._prompt(e.uuid, "ccd_cb_enter_number")
        if e.stage == "store_failed":
            return self._keep_waiting(hunt, now, "store_failed")
        return None

    def _prompt(self, uuid: str, extension: str) -> None:
        self._execute(uuid, "transfer", f"{extension} XML {self._context}")

    def _keep_waiting(self, hunt: Hunt, now: float, reason: str) -> None:
        self._drive(hunt, hunt.on_offer_declined(now, reason), now)

    def _store_callback(self, hunt: Hunt, record: CallRecord, number: str, now: float) -> None:
        """Durable first: the caller hears the confirmation only once Redis has it."""
        q = self.config.queues.get(record.queue)
        request = new_request(
            self.new_uuid().replace("-", ""),
            number,
            record.queue,
            created_at=now,
            order_key=hunt.order_key,
            caller_uuid=record.uuid,
            strategy=q.callback_strategy if q else "active",
            caller_number=try_normalize(
                record.caller_number, self.number_rules.default_country_code
            ),
        )
        try:
            stored = self.callbacks.create(request, self.config.callbacks.max_open_per_caller)
        except OpenLimitReached:
            return self._keep_waiting(hunt, now, "limit")
        except RedisUnavailable as exc:
            log.error("callback.store_failed", call=record.uuid, error=str(exc))
            return self._prompt(record.uuid, "ccd_cb_store_failed")
        record.capture["request"] = stored.id
        self._drive(hunt, hunt.on_callback_stored(stored.id, now), now)
        self._prompt(record.uuid, "ccd_cb_stored")
        return None

    _handlers: dict[type, Callable[[CallControl, Any, float], None]] = {
        ev.CallParked: _on_parked,
        ev.EntryParked: _on_entry,
        ev.PromptDone: _on_prompt,
        ev.JobResult: _on_job,
        ev.ChannelAnswered: _on_answered,
        ev.ChannelBridged: _on_bridged,
        ev.ChannelHangup: _on_hangup,
        ev.ChannelCreated: _on_created,
        ev.FeatureCode: _on_feature_code,
        ev.PhoneRegistered: _on_registered,
        ev.PhoneUnregistered: _on_unregistered,
    }

    def on_job_failed(self, job_uuid: str, reason: str, now: float) -> None:
        """A bgapi lost with the connection: the originate's fate is unknown.

        Treated like FreeSWITCH refusing the session: the agent is released
        without blame and tried again shortly; the resync after the reconnect
        tells whether a leg was left behind.
        """
        command = self._fire_jobs.pop(job_uuid, None)
        if command is not None:
            log.warning("esl.command_failed", command=command, reply=reason)
            return
        if self.dialer.on_job(job_uuid, False, "DESTINATION_OUT_OF_ORDER", now):
            return  # a callback attempt: given back (not counted), dialled again later
        call_uuid = self.jobs.pop(job_uuid, None)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is not None:
            step = hunt.on_job_result(job_uuid, False, "DESTINATION_OUT_OF_ORDER", now)
            self._drive(hunt, step, now)

    # ------------------------------------------------------------------ time
    def on_tick(self, now: float) -> None:
        if self._deferred:
            self._retry_deferred(now)
        self.dialer.tick(now)
        for hunt in list(self.hunts.values()):
            deadline = hunt.next_deadline
            if deadline is not None and now >= deadline:
                self._drive(hunt, hunt.on_tick(now), now)
        for agent_id, until in list(self.wrapups.items()):
            if now >= until:
                self.wrapups.pop(agent_id, None)
                self._presence(agent_id, lambda s: presence.tick(s, now))
        if self._dirty or now - self._last_pump >= 1.0:
            self._pump(now)
        if now - self._last_renew >= 5.0:
            self._last_renew = now
            for call_uuid in list(self.hunts):
                self.store.renew(f"call.{call_uuid}", self.node_id, CALL_LEASE_MS)

    def _pump(self, now: float) -> None:
        """Offer free agents to waiting calls, best-placed call first."""
        changed, self._dirty = self._dirty, False
        self._last_pump = now
        waiting = sorted(
            (h for h in self.hunts.values() if h.wants_candidates), key=lambda h: h.order_key
        )
        if waiting and not changed and not self.agents.any_free():
            # The periodic look with nobody free: only hunts that tried everyone
            # they could may have to give up; the others just keep waiting.
            waiting = [h for h in waiting if h.tried]
        for hunt in waiting:
            if hunt.wants_candidates:
                self._drive(hunt, Step(wants_candidates=True), now)

    # ------------------------------------------------------------------ resync
    def on_resync(self, snapshot: LiveSnapshot, now: float) -> None:
        """After (re)connecting: registrations, agents' live channels, orphaned hunts."""
        self.seed_agents(now)
        registered = {str(r.get("reg_user", "")) for r in snapshot.registrations}
        live = {str(row.get("uuid", "")) for row in snapshot.channels}
        per_ext: dict[str, list[str]] = {}
        for row in snapshot.channels:
            ext = ev.extension_of_channel_name(str(row.get("name", "")))
            if ext:
                per_ext.setdefault(ext, []).append(str(row.get("uuid", "")))
        for agent in self.agents.all():
            if agent.state.registered != (agent.extension in registered):
                self._presence(
                    agent.id,
                    lambda s, a=agent: presence.set_registered(s, a.extension in registered, now),
                )
            self._presence(
                agent.id,
                lambda s, a=agent: presence.reconcile(
                    s, per_ext.get(a.extension, []), now, self.rules
                ),
            )
        for call_uuid in self.calls.live():
            self._resume(call_uuid, live, now)
        for row in snapshot.channels:
            if row.get("application") == "park" and str(row.get("uuid")) not in self.hunts:
                self._adopt_parked(row, now)
        self._dirty = True

    def _adopt_parked(self, row: dict[str, Any], now: float) -> None:
        """A channel parked while no daemon listened (down, or FreeSWITCH reconnecting):
        a caller waiting for a queue, or a desk phone waiting for a feature code's answer.
        Its variables tell which; without this it would wait for the dialplan's timeouts."""
        uuid = str(row.get("uuid", ""))
        if not is_uuid(uuid) or self.calls.get(uuid) is not None:
            return
        if self._getvar(uuid, "ccd_call"):
            return  # one of our offer legs; its hunt (if any) was resumed from Redis
        queue, action = self._getvar(uuid, "ccd_queue"), self._getvar(uuid, "ccd_action")
        if action:
            ext = self._getvar(uuid, "ccd_agent_ext")
            decoded: Any = ev.FeatureCode(
                uuid,
                ext,
                action,
                self._getvar(uuid, "ccd_digits"),
                self._getvar(uuid, "ccd_dialed"),
            )
            handler = CallControl._on_feature_code
        elif queue:
            decoded = ev.CallParked(
                uuid=uuid,
                caller_number=str(row.get("cid_num", "")),
                caller_name=str(row.get("cid_name", "")),
                destination=str(row.get("dest", "")),
                queue=queue,
                tags=ev.parse_tags(self._getvar(uuid, "ccd_tags")),
            )
            handler = CallControl._on_parked
        else:
            return
        log.info("call.adopted", call=uuid, queue=queue or None, action=action or None)
        handler(self, decoded, now)

    def _getvar(self, uuid: str, name: str) -> str:
        """A channel variable, "" when unset (FreeSWITCH answers ``_undef_``) or unknown."""
        try:
            value = self.esl.api(f"uuid_getvar {uuid} {name}").strip()
        except EslError:
            return ""
        return "" if value == "_undef_" else value

    def _resume(self, call_uuid: str, live: set[str], now: float) -> None:
        hunt = self.hunts.get(call_uuid)
        if hunt is None:
            if not self.store.lease(f"call.{call_uuid}", self.node_id, CALL_LEASE_MS):
                return
            record = self.calls.get(call_uuid)
            if record is None or not record.hunt:
                return
            try:
                hunt = Hunt.from_dict(record.hunt, self.new_uuid)
            except (KeyError, ValueError) as exc:
                log.error("call.resume_failed", call=call_uuid, error=str(exc))
                return
            if hunt.done:
                self.calls.finish(record)
                return
            record.node = self.node_id
            self.hunts[call_uuid], self.records[call_uuid] = hunt, record
            if hunt.job_uuid:
                self.jobs[hunt.job_uuid] = call_uuid
            if hunt.leg_uuid:
                self.legs[hunt.leg_uuid] = call_uuid
            log.info("call.resumed", call=call_uuid, queue=record.queue, phase=str(hunt.phase))
            if hunt.phase is Phase.OFFERING and call_uuid in live:
                # The caller's answer to a callback prompt may have come while no daemon
                # followed the call: rather than leave them parked in silence, they wait
                # in the queue again (music, same place); the offer is not made twice.
                self._drive(hunt, hunt.on_offer_declined(now, "resumed"), now)
                return
        self._drive(hunt, hunt.on_resync(live, now), now)

    def release_all(self) -> None:
        """On a clean stop: hand every call back at once (another daemon, or this one
        restarted, resumes them from Redis without waiting for the leases to expire)."""
        for call_uuid in list(self.hunts):
            try:
                self.store.release(f"call.{call_uuid}", self.node_id)
            except RedisUnavailable:
                return
        log.info("calls.released", calls=len(self.hunts))

    # ------------------------------------------------------------------ views
    def call_view(self, uuid: str) -> dict[str, Any] | None:
        record = self.records.get(uuid) or self.calls.get(uuid)
        if record is None:
            return None
        view = record.to_dict()
        hunt = view.pop("hunt", {}) or {}
        view["phase"] = hunt.get("phase")
        view["tried"] = hunt.get("tried", [])
        view["ringing_agent"] = hunt.get("agent_id")
        view["history"] = self._history(record.caller_number)
        return view

    # ------------------------------------------------------------------ the engine
    def _drive(self, hunt: Hunt, step: Step, now: float) -> None:
        """Apply a step and follow its requests until the hunt needs an outside answer."""
        for _ in range(64):  # a bound, so a bug can never spin the dispatcher
            self._apply(hunt, step, now)
            if step.reserve:
                if self.agents.reserve(step.reserve, hunt.call_uuid, now):
                    step = hunt.on_reserved(step.reserve, now)
                else:
                    step = hunt.on_reserve_failed(step.reserve, now)
                continue
            if step.wants_candidates and hunt.wants_candidates:
                free, busy = self._candidates(hunt)
                step = hunt.on_candidates(free, now, busy=busy)
                if step == Step():
                    break
                continue
            break
        self._save(hunt)
        while self._unsent_jobs:
            self.on_job_failed(self._unsent_jobs.pop(0), "not sent", now)

    #: Free agents fetched per routing decision: enough to skip a few lost races.
    CANDIDATE_BATCH = 4

    def _candidates(self, hunt: Hunt) -> tuple[list, list[str] | None]:
        """The first free, untried agents in routing order, and (only when none is free,
        to decide between waiting and giving up) the busy ones who could take it later."""
        tags = hunt.rules.required_tags
        free = candidates(
            self.agents.available_with(
                tags, limit=self.CANDIDATE_BATCH + len(hunt.passed), exclude=hunt.tried
            ),
            tags,
        )
        if free:
            return free, None
        return free, sorted(self.agents.ready_with(tags))

    def _apply(self, hunt: Hunt, step: Step, now: float) -> None:
        self._call_facts.setdefault(hunt.call_uuid, []).extend(step.facts)
        for fact in step.facts:
            self._fact(fact)
            if fact.name == "agent.answered":
                agent_id, leg = fact.data.get("agent"), fact.data.get("leg")
                if agent_id and leg:
                    self._presence(agent_id, lambda s, lg=leg: presence.answered(s, lg, now))
                    record = self.records.get(hunt.call_uuid)
                    if record is not None:
                        record.agent, record.agent_leg = agent_id, leg
            elif fact.name == "agent.offered":
                self._offered(hunt, fact)
        for release in step.releases:
            self._release(release, now)
        for command in step.commands:
            if isinstance(command, Originate):
                self._offer_leg(hunt, command)
            if not self._send(command) and isinstance(command, Originate) and command.job_uuid:
                # Never reached FreeSWITCH: handled like a refused session, after this step.
                self._unsent_jobs.append(command.job_uuid)
        if hunt.done:
            self._finish(hunt, now)

    def _offer_leg(self, hunt: Hunt, command: Originate) -> None:
        self.legs[command.leg_uuid] = hunt.call_uuid
        if command.job_uuid:
            self.jobs[command.job_uuid] = hunt.call_uuid
        agent_id = hunt.agent_id
        if agent_id is None:
            return
        self._offer_leg_of(agent_id, hunt.call_uuid, command.leg_uuid)
        record = self.records.get(hunt.call_uuid)
        if record is not None:
            record.status, record.agent, record.agent_leg = "ringing", agent_id, command.leg_uuid

    def _offer_leg_of(self, agent_id: str, call: str, leg: str) -> None:
        """The agent reserved for ``call`` is rung on ``leg`` (presence knows the leg)."""

        def set_leg(agent: Agent) -> Agent:
            if agent.call != call:
                return agent
            state = dataclasses.replace(agent.state, offer_leg=leg)
            return dataclasses.replace(agent, state=state)

        self.agents.update(agent_id, set_leg)

    def _offered(self, hunt: Hunt, fact: Fact) -> None:
        """The screen-pop for a CRM: the offer as JSON, sent without waiting."""
        if self.webhook is None:
            return
        record = self.records.get(hunt.call_uuid)
        if record is None:
            return
        agent = self.agents.get(str(fact.data.get("agent", "")))
        customer = Customer(**record.customer) if record.customer else None
        payload = offer_payload(
            {**record.to_dict(), "tags": list(hunt.rules.required_tags)},
            {"id": agent.id, "ext": agent.extension, "tags": sorted(agent.tags)} if agent else {},
            customer,
            self._history(record.caller_number),
            display_name=hunt.caller_display,
        )
        self.webhook.send(payload)

    def _release(self, release: Release, now: float) -> None:
        if release.outcome == "completed":
            if release.leg_uuid:
                leg = release.leg_uuid
                self._presence(
                    release.agent_id, lambda s: presence.call_ended(s, leg, now, self.rules)
                )
            return

        def failed(state: presence.AgentState) -> presence.Outcome:
            return presence.offer_failed(
                state,
                state.offer_leg if release.leg_uuid is None else release.leg_uuid,
                release.outcome,
                now,
                self.rules,
            )

        if self.agents.get(release.agent_id) is not None:
            self._presence(release.agent_id, failed)

    def _finish(self, hunt: Hunt, now: float) -> None:
        record = self.records.pop(hunt.call_uuid, None)
        self.hunts.pop(hunt.call_uuid, None)
        if record is None:
            return
        record.status = hunt.result or "done"
        record.ended_at = now
        record.hunt = hunt.to_dict()
        self.calls.finish(record)
        self.store.release(f"call.{hunt.call_uuid}", self.node_id)
        facts = self._call_facts.pop(hunt.call_uuid, [])
        if self.dispositions is not None:  # automatic codes, contact history, reports
            self.dispositions.call_finished(record, facts, now)
        elif self.customers is not None and record.customer is not None:
            self._remember_contact(record)
        self._dirty = True

    def _save(self, hunt: Hunt) -> None:
        record = self.records.get(hunt.call_uuid)
        if record is not None:
            record.hunt = hunt.to_dict()
            self.calls.save(record)

    # ------------------------------------------------------------------ presence
    def _agent_for(self, extension: str) -> Agent | None:
        return self.agents.by_extension(extension) if extension else None

    def _presence(
        self, agent_id: str, step: Callable[[presence.AgentState], presence.Outcome]
    ) -> None:
        agent, outcome = self.agents.transition(agent_id, step)
        for fact in outcome.facts:
            self._fact(fact)
        if agent.state.wrapup_until is not None:
            self.wrapups[agent_id] = agent.state.wrapup_until
        if outcome.facts:
            self._dirty = True

    # ------------------------------------------------------------------ I/O
    def _fact(self, fact: Fact) -> None:
        data = dict(fact.data)
        log.info(fact.name, **data)
        if self.metrics is not None:
            self.metrics.inc('facts_total{name="%s"}' % fact.name)

    def _send(self, command: Command) -> bool:
        try:
            kind, text = to_esl(command)
        except UnsafeValue as exc:
            log.error("esl.command_refused", command=type(command).__name__, error=str(exc))
            return False
        if kind == "execute":
            uuid, app, *rest = text.split(" ", 2)
            return self._execute(uuid, app, rest[0] if rest else "")
        return self._bgapi(text, getattr(command, "job_uuid", None))

    def _send_api(self, text: str) -> None:
        self._bgapi(text)

    def _bgapi(self, text: str, job_uuid: str | None = None) -> bool:
        """Every command goes as bgapi: FreeSWITCH answers at once and runs it in the
        background, so one slow command never stalls the dispatcher (DESIGN.md). A
        command whose result nobody waits for is remembered until its BACKGROUND_JOB
        comes, to log it if it failed."""
        job = job_uuid or self.new_uuid()
        try:
            self.esl.bgapi(text, job_uuid=job, wait=False)
        except EslError as exc:
            log.warning("esl.command_failed", command=text.split(" ", 1)[0], error=str(exc))
            return False
        if job_uuid is None:
            if len(self._fire_jobs) >= 10_000:  # results that never came: forget the oldest
                self._fire_jobs.pop(next(iter(self._fire_jobs)))
            self._fire_jobs[job] = text
        return True

    def _execute(self, uuid: str, app: str, arg: str) -> bool:
        try:
            self.esl.execute(uuid, app, arg, wait=False)
        except EslError as exc:
            log.warning("esl.command_failed", command=app, error=str(exc))
            return False
        return True

    def _customer(self, number: str) -> Customer | None:
        if self.customers is None or not number:
            return None
        try:
            return self.customers.get(number)
        except RedisUnavailable:
            return None  # screen-pop data is a nicety; the call is routed without it

    def _history(self, number: str) -> list[dict[str, Any]]:
        if self.customers is None or not number:
            return []
        try:
            return self.customers.history(number)
        except RedisUnavailable:
            return []

    def _remember_contact(self, record: CallRecord) -> None:
        entry = {
            "at": record.entered_at,
            "direction": "inbound",
            "queue": record.queue,
            "agent": record.agent,
            "outcome": record.status,
            "call": record.uuid,
        }
        try:
            self.customers.add_contact(record.caller_number, entry)
        except (RedisUnavailable, ValueError) as exc:
            log.warning("customer.history_failed", call=record.uuid, error=str(exc))

    def _priority(self, queue: str, customer: Customer | None) -> int:
        """VIP customers wait ahead of others (DESIGN: priority first, then arrival)."""
        q = self.config.queues.get(queue)
        base = q.priority if q else 0
        return base + (VIP_PRIORITY_BOOST if customer is not None and customer.vip else 0)

    def _with_implied_tags(self, rules: QueueRules, customer: Customer | None) -> QueueRules:
        """Add the tags the customer implies (a language) when some agent carries them.

        Nobody carrying them would send the caller to voicemail at once; routing on
        the queue's own tags is the better service then, and it is logged.
        """
        extra = implied_tags(customer) - set(rules.required_tags)
        if not extra:
            return rules
        wanted = tuple(sorted({*rules.required_tags, *extra}))
        if not self.agents.count_with(wanted, logged_in=False):
            log.info("call.implied_tags_ignored", queue=rules.name, tags=sorted(extra))
            return rules
        return dataclasses.replace(rules, required_tags=wanted)


def _arrival(value: str | None, now: float) -> float:
    """The arrival time a channel variable carries, if it is a sane one, else ``now``."""
    try:
        arrived = float(value) if value else now
    except ValueError:
        return now
    return arrived if now - 3600 <= arrived <= now else now


def build_call_control(daemon: Daemon) -> CallControl:
    routing = daemon.config.routing
    webhook = None
    if routing.webhook_url:
        webhook = WebhookSender(routing.webhook_url, routing.webhook_timeout)
        webhook.start()
        daemon.on_stop(webhook.stop)
    customers = CustomerStore(daemon.store)
    control = CallControl(
        config=daemon.config,
        store=daemon.store,
        esl=daemon.esl,
        node_id=daemon.node_id,
        customers=customers,
        dispositions=build_dispositions(daemon, customers=customers),
        bindings=BindingStore.from_config(daemon.store, daemon.config),
        webhook=webhook,
        metrics=daemon.metrics,
    )
    daemon.on_stop(control.release_all)
    return control
