"""Hunting: drives each queued call's :class:`ccd.core.hunt.Hunt` to its end.

Theory of operation
-------------------
A hunt belongs to the daemon holding the call's lease; events about calls another daemon
hunts are left to it. Each step of the pure hunt is applied here: its facts logged, its
commands sent, the offers it ends released (presence written as a compare-and-set, the agent
marked tried), and, when it asks for an agent, one routing operation added. All of a step's
Redis work joins the step's unit of work (:attr:`CallIo.batch`), one round trip, flushed by
the dispatcher once the event is handled; results come back as callbacks (``_matched``).

Nothing polls. A call looks for a free agent when it enters and after each failed offer; an
agent that becomes free (an offer failed, a call ended without wrap-up, a wrap-up ended,
a login) looks for the best waiting call in the same step (``agent_free``). Deadlines (ring
time, overflow, retries, wrap-ups) sit in a heap (:class:`~ccd.engine.timers.Timers`); a tick
costs what is due. Once a second ``sweep`` matches the head of every waiting list with a free
agent: the net for a wake-up lost between two daemons.

Hunts are cached in memory; the call record in Redis is the truth a restarted daemon resumes
from (:mod:`ccd.engine.resync`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from ccd.core import presence
from ccd.core.announce import queue_load
from ccd.core.commands import Fact, Originate
from ccd.core.customer import Customer
from ccd.core.hunt import Hunt, Phase, Release, Step
from ccd.core.screenpop import offer_payload
from ccd.core.sticky import CustomerCall
from ccd.engine.disposition import DispositionService
from ccd.engine.io import CallIo
from ccd.engine.recovery import Recovery
from ccd.engine.timers import Timers
from ccd.store.agent import Agent, AgentRepository
from ccd.store.call import FINISHED_TTL_MS, CallRecord, CallRepository
from ccd.store.routing import Routing

log = structlog.get_logger()

#: Seconds between two sweeps of the waiting lists' heads (the multi-daemon safety net).
SWEEP_INTERVAL = 1.0
#: Free agents matched per sweep at most (each needs a leg uuid made in advance).
SWEEP_BATCH = 16


class Hunting:
    def __init__(
        self,
        *,
        io: CallIo,
        agents: AgentRepository,
        calls: CallRepository,
        disposition: DispositionService | None = None,
        webhook: Any = None,
        recovery: Recovery | None = None,
    ) -> None:
        self.io = io
        self.agents = agents
        self.calls = calls
        self.disposition = disposition
        self.recovery = recovery
        self.webhook = webhook
        self.hunts: dict[str, Hunt] = {}  # caller uuid -> hunt this daemon owns
        self.records: dict[str, CallRecord] = {}
        self.jobs: dict[str, str] = {}  # originate job uuid -> caller uuid
        self.legs: dict[str, str] = {}  # agent leg uuid -> caller uuid
        self.timers = Timers()  # ("call", uuid) hunt deadlines, ("agent", id) wrap-up ends
        self._call_facts: dict[str, list[Fact]] = {}  # per live call, for dispositions
        self._history: dict[str, list[dict[str, Any]]] = {}  # per live call, for the webhook
        # The waiting lists ("<queue>:<tagset>") known to hold calls: from this daemon's own
        # routing answers, and all of them from each sweep. An agent freed while no list it
        # could serve holds a call costs no round trip; a call another daemon queued since
        # the last sweep is found by the next one (a second at most).
        self.lists: set[str] = set()
        self._last_sweep = 0.0
        io.on_agent_free = self.agent_free

    # ------------------------------------------------------------------ calls
    def adopt(
        self, hunt: Hunt, record: CallRecord, history: list[dict[str, Any]] | None = None
    ) -> None:
        """The hunt is this daemon's (a new call, or one resumed from Redis). ``history``:
        the caller's contacts read at entry, for the CRM's screen-pop."""
        self.hunts[record.uuid], self.records[record.uuid] = hunt, record
        self._call_facts.setdefault(record.uuid, [])
        if history:
            self._history[record.uuid] = history
        if hunt.job_uuid:
            self.jobs[hunt.job_uuid] = record.uuid
        if hunt.leg_uuid:
            self.legs[hunt.leg_uuid] = record.uuid

    def matched(
        self, hunt: Hunt, leg: str, job: str, result: Mapping[str, Any], now: float
    ) -> None:
        """Routing answered a call's ``enter`` or ``match``: an agent, or wait."""
        if result.get("s") == "reserved":
            agent = self.agents.remember(result["agent"])
            self.drive(hunt, hunt.on_matched(agent.id, agent.extension, leg, job, now), now)
        else:
            self.lists.add(list_name(hunt.rules.name, hunt.rules.required_tags))
            self.drive(hunt, hunt.on_waiting(result["ready"], result["untried"], now), now)

    # ------------------------------------------------------------------ events
    def on_job(self, job_uuid: str, ok: bool, value: str, now: float) -> None:
        call_uuid = self.jobs.pop(job_uuid, None)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is not None:
            self.drive(hunt, hunt.on_job_result(job_uuid, ok, value, now), now)

    def on_answered(self, uuid: str, variables: Mapping[str, str], now: float) -> None:
        hunt = self._hunt_of_leg(uuid, variables)
        if hunt is not None:
            self.drive(hunt, hunt.on_agent_answered(uuid, now), now)

    def on_leg_parked(self, uuid: str, variables: Mapping[str, str], now: float) -> None:
        """An agent leg we originated runs its ``&park()``: bridgeable now."""
        hunt = self._hunt_of_leg(uuid, variables)
        if hunt is not None:
            self.drive(hunt, hunt.on_agent_parked(uuid, now), now)

    def on_bridged(self, uuid: str, other_uuid: str, now: float) -> None:
        for caller in (uuid, other_uuid):
            hunt = self.hunts.get(caller)
            if hunt is None or hunt.phase is not Phase.BRIDGING:
                continue
            record = self.records[caller]
            self.drive(hunt, hunt.on_bridged(now), now)
            record.status, record.bridged_at = "bridged", now
            agent_id, leg = hunt.agent_id, hunt.leg_uuid
            if agent_id and leg:
                self.io.presence(agent_id, lambda s, lg=leg: presence.answered(s, lg, now), now)
                if record.sticky:  # they talk: type 1 and 2 bindings end here
                    self.io.sticky_event(CustomerCall(record.caller_number, now, agent_id), now)
            self.io.batch.route(Routing.leave(caller, record.queue), now)
            if self.recovery is not None:  # served: an abandoned request of theirs is closed
                self.recovery.returned(record.caller_number, caller, record.queue, "served",
                                       self.io.batch)  # fmt: skip
            self.save(record, hunt)
            # The dialplan's safety net (sched_transfer to voicemail for a caller
            # left parked with no daemon) must not cut a conversation short.
            self.io.send_api(f"sched_del {caller}")

    def on_hangup(self, uuid: str, cause: str, variables: Mapping[str, str], now: float) -> bool:
        """A caller or one of their agent legs hung up; False: neither (not a queue call)."""
        hunt = self.hunts.get(uuid)
        if hunt is not None:
            self.drive(hunt, hunt.on_caller_hangup(now), now)
            return True
        call_uuid = variables.get("ccd_call") or self.legs.get(uuid)
        if not call_uuid:
            return False
        self.legs.pop(uuid, None)
        hunt = self.hunts.get(call_uuid)
        current = hunt is not None and hunt.leg_uuid == uuid
        if hunt is not None:
            self.drive(hunt, hunt.on_agent_leg_hangup(uuid, cause, now), now)
        agent_id = variables.get("ccd_agent")
        if agent_id and not current:
            # A leg of an offer already released (or of a call gone): make sure presence
            # forgets it (a no-op without a write when it already has).
            self.io.presence(
                agent_id, lambda s: presence.call_ended(s, uuid, now, self.io.rules), now
            )
        return True

    def on_job_failed(self, job_uuid: str, now: float) -> None:
        """The originate never reached FreeSWITCH, or it refused it: like a refused session,
        the agent is released without blame and the call looks again shortly."""
        call_uuid = self.jobs.pop(job_uuid, None)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is not None:
            step = hunt.on_job_result(job_uuid, False, "DESTINATION_OUT_OF_ORDER", now)
            self.drive(hunt, step, now)

    def on_job_lost(self, job_uuid: str, reason: str, now: float) -> None:
        """An originate's result is lost: refused by FreeSWITCH (``-ERR``), or gone with the
        connection. In the second case the leg may well be ringing: the offer stands, and
        the ring deadline and the resync after the reconnect decide, so no agent is ever
        rung twice for one call."""
        if reason.startswith("-"):
            self.on_job_failed(job_uuid, now)
            return
        call_uuid = self.jobs.get(job_uuid)
        if call_uuid in self.hunts:
            log.info("agent.offer_unknown", call=call_uuid, job=job_uuid, reason=reason)

    def on_notified(
        self, call: str, record: Mapping[str, Any], leg: str, job: str, now: float
    ) -> None:
        """Another daemon reserved an agent, freed there, for one of this daemon's calls."""
        agent = self.agents.remember(record)
        hunt = self.hunts.get(call)
        if hunt is None:
            self._give_back(agent, call, leg, now)
            return
        self.drive(hunt, hunt.on_matched(agent.id, agent.extension, leg, job, now), now)

    def recheck_offers(self, now: float) -> None:
        """Reservations routing made for waiting calls while this daemon was not listening
        (its notification lost): each is picked up, or the agent goes back."""
        waiting = [h for h in self.hunts.values() if h.waiting]
        for hunt in waiting:
            offer = self.calls.offer(hunt.call_uuid)
            if not offer:
                continue
            agent = self.agents.get(str(offer.get("agent", "")))
            leg, job = str(offer.get("leg", "")), str(offer.get("job", ""))
            if agent is not None and agent.call == hunt.call_uuid and agent.state.offer_leg == leg:
                log.info("call.offer_recovered", call=hunt.call_uuid, agent=agent.id)
                self.drive(hunt, hunt.on_matched(agent.id, agent.extension, leg, job, now), now)

    # ------------------------------------------------------------------ agents
    def agent_free(self, agent: Agent, now: float) -> None:
        """The agent is free now, or once its wrap-up ends: the best waiting call for it."""
        until = agent.state.wrapup_until
        if agent.state.activity is presence.Activity.WRAPUP and until is not None and until > now:
            self.timers.set(("agent", agent.id), until)
            return
        if not any(_fits(name, agent.tags) for name in self.lists):
            return  # nobody waits for this agent (the sweep double-checks every second)
        leg, job = self.io.new_uuid(), self.io.new_uuid()

        def freed(result: Any) -> None:
            self.agent_matched(agent.id, result, leg, job, now)

        self.io.batch.route(Routing.free(agent.id, leg, job), now, freed)

    def agent_matched(self, agent_id: str, result: Any, leg: str, job: str, now: float) -> None:
        """Routing gave a free agent to a waiting call (``free`` or ``claim``): ours, rung
        now; another daemon's, told by routing."""
        if result and result.get("call") and result.get("agent"):
            self._reserved_for(result["call"], result["agent"], leg, job, now)
        elif result and result.get("node"):
            log.info("agent.matched_remote", agent=agent_id, call=result["call"],
                     node=result["node"])  # fmt: skip

    def _reserved_for(
        self, call: str, record: Mapping[str, Any], leg: str, job: str, now: float
    ) -> None:
        agent = self.agents.remember(record)
        hunt = self.hunts.get(call)
        if hunt is None:
            self._give_back(agent, call, leg, now)
            return
        self.drive(hunt, hunt.on_matched(agent.id, agent.extension, leg, job, now), now)

    def _give_back(self, agent: Agent, call: str, leg: str, now: float) -> None:
        """An agent reserved for a call this daemon no longer hunts goes free again."""
        log.info("agent.reservation_returned", agent=agent.id, call=call)
        self.io.presence(
            agent.id,
            lambda s: presence.offer_failed(s, leg, "cancelled", now, self.io.rules),
            now,
        )
        self.io.batch.route(Routing.unoffer(call), now)

    def _wrapup_ended(self, agent_id: str, now: float) -> None:
        agent = self.agents.cached(agent_id)
        if agent is None:
            return
        outcome = presence.tick(agent.state, now)
        for fact in outcome.facts:
            self.io.fact(fact, now)
        if outcome.facts:
            self.agent_free(self.agents.remember_state(agent, outcome.state), now)

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> None:
        for key in list(self.timers.due(now)):
            kind, ident = key
            if kind == "call":
                hunt = self.hunts.get(ident)
                if hunt is not None:
                    self.drive(hunt, hunt.on_tick(now), now)
            else:
                self._wrapup_ended(ident, now)
        if now - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = now
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        pairs = [(self.io.new_uuid(), self.io.new_uuid()) for _ in range(SWEEP_BATCH)]

        def swept(found: Any) -> None:
            legs = dict(pairs)
            self.lists = set(found["lists"])
            for item in found["matched"]:
                agent = item["agent"]
                leg = agent.get("offer_leg") or ""
                self._reserved_for(item["call"], agent, leg, legs.get(leg, ""), now)

        self.io.batch.route(Routing.sweep(pairs), now, swept)

    def rebuild(self, now: float) -> None:
        """Redis lost its data: every call this daemon hunts goes back (record, lease, its
        place in the queue); a waiting one asks routing again, so it keeps waiting (or gets
        an agent) instead of finding an empty queue. Agents first: ccd.engine.control."""
        batch = self.io.batch
        for call, hunt in self.hunts.items():
            record = self.records.get(call)
            if record is None:
                continue
            record.hunt = hunt.to_dict()
            op = Routing.restore(call, record.queue, self.calls.encode(record), hunt.order_key)
            batch.route(op, now)
            if hunt.waiting:
                self.drive(hunt, Step(match=True), now)
        log.warning("call.rebuilt", calls=len(self.hunts))

    def release_all(self) -> None:
        """On a clean stop: nothing to hand back. A lease is valid only while this daemon's
        heartbeat lives, so another daemon (or this one, restarted) takes the calls over as
        soon as it looks; logged for the operator."""
        log.info("call.released_all", calls=len(self.hunts))

    # ------------------------------------------------------------------ the engine
    def drive(self, hunt: Hunt, step: Step, now: float) -> None:
        """Apply one step of the hunt: facts, releases, commands, routing, deadlines."""
        call = hunt.call_uuid
        record = self.records.get(call)
        self.io.fresh.touch(call, hunt.leg_uuid)
        facts = self._call_facts.get(call)
        if facts is not None:
            facts.extend(step.facts)
        for fact in step.facts:
            self.io.fact(fact, now)
            if fact.name == "agent.offered":
                self._offered(hunt, fact)
            elif fact.name == "agent.answered" and record is not None:
                record.agent, record.agent_leg = hunt.agent_id, hunt.leg_uuid
        for release in step.releases:
            self._release(call, release, now)
        if hunt.ending_leg is not None:  # its hangup lets the next agent ring: keep knowing it
            self.legs[hunt.ending_leg] = call
        unsent: list[str] = []
        for command in step.commands:
            if isinstance(command, Originate):
                self.legs[command.leg_uuid] = call
                if command.job_uuid:
                    self.jobs[command.job_uuid] = call
                if record is not None:
                    record.status, record.agent = "ringing", hunt.agent_id
                    record.agent_leg = command.leg_uuid
            if not self.io.send(command) and isinstance(command, Originate) and command.job_uuid:
                unsent.append(command.job_uuid)  # never reached FreeSWITCH: see below
        batch = self.io.batch
        if step.unlist:
            batch.route(Routing.dequeue(call), now)
        if step.match and record is not None:
            leg, job = self.io.new_uuid(), self.io.new_uuid()
            op = Routing.match(
                call, hunt.rules.name, hunt.order_key, leg, job, hunt.rules.required_tags
            )
            batch.route(op, now, lambda result: self.matched(hunt, leg, job, result, now))
        if step.announce and record is not None and hunt.waiting:
            self._announce(hunt, now)
        if hunt.done:
            self._finish(hunt, now)
            return
        self.timers.set(("call", call), hunt.next_deadline)
        if record is not None and (step.releases or step.match or step.unlist):
            self.save(record, hunt)
        for job in unsent:
            # Handled like FreeSWITCH refusing the session: the agent is released without
            # blame and the call looks again shortly.
            self.on_job_failed(job, now)

    def _announce(self, hunt: Hunt, now: float) -> None:
        """A position announcement is due: its read joins the unit of work (ccd.core.announce)
        and its answer goes back to the hunt, if the call still waits by then."""
        stats = self.io.stats
        if stats is None:
            return
        call = hunt.call_uuid

        def read(
            position: int | None,
            agents: Mapping[str, int],
            busy: Any,
            recent: Any,
            day: Any,
            window: float,
        ) -> None:
            if position is None or self.hunts.get(call) is not hunt:
                return
            load = queue_load(agents, recent, window, busy, now, day)
            self.drive(hunt, hunt.on_announce(position, load, now), now)

        stats.store.announce(self.io.batch, hunt.rules.name, call, now, read)

    def _hunt_of_leg(self, uuid: str, variables: Mapping[str, str]) -> Hunt | None:
        call_uuid = variables.get("ccd_call") or self.legs.get(uuid)
        return self.hunts.get(call_uuid) if call_uuid else None

    def _offered(self, hunt: Hunt, fact: Fact) -> None:
        """The screen-pop for a CRM: the offer as JSON, sent without waiting."""
        if self.webhook is None:
            return
        record = self.records.get(hunt.call_uuid)
        if record is None:
            return
        agent = self.agents.cached(str(fact.data.get("agent", "")))
        customer = Customer(**record.customer) if record.customer else None
        payload = offer_payload(
            {**record.to_dict(), "tags": list(hunt.rules.required_tags)},
            {"id": agent.id, "ext": agent.extension, "tags": sorted(agent.tags)} if agent else {},
            customer,
            self._history.get(hunt.call_uuid, []),
            display_name=hunt.caller_display,
        )
        self.webhook.send(payload)

    def _release(self, call: str, release: Release, now: float) -> None:
        leg = release.leg_uuid
        if leg is not None:
            self.legs.pop(leg, None)
        if release.outcome == "completed":
            step = lambda s: presence.call_ended(s, leg, now, self.io.rules)  # noqa: E731
        else:
            step = lambda s: presence.offer_failed(  # noqa: E731
                s, s.offer_leg if leg is None else leg, release.outcome, now, self.io.rules
            )
        self.io.presence(release.agent_id, step, now)
        batch = self.io.batch
        # Routing marked the agent tried when it reserved it; a release without blame
        # (out of order, cancelled, the call gone) takes that back.
        if not release.tried:
            batch.route(Routing.untry(call, release.agent_id), now)
        batch.route(Routing.unoffer(call), now)

    def _finish(self, hunt: Hunt, now: float) -> None:
        call = hunt.call_uuid
        record = self.records.pop(call, None)
        self.hunts.pop(call, None)
        self.timers.set(("call", call), None)
        facts = self._call_facts.pop(call, [])
        self._history.pop(call, None)
        if record is None:
            return
        record.status = hunt.result or "done"
        record.ended_at = now
        record.hunt = hunt.to_dict()
        batch = self.io.batch
        batch.forget(("save", call))
        op = Routing.finish(call, record.queue, self.calls.encode(record), FINISHED_TTL_MS)
        batch.route(op, now)
        if self.disposition is not None:  # automatic codes, contact history, reports
            self.disposition.call_finished(record, facts, now, batch)
        abandoned = [f for f in facts if f.name == "call.abandoned"]
        if self.recovery is not None and abandoned:  # to be called back? (issue 13)
            self.recovery.call_abandoned(record, abandoned[-1], now, batch)

    def save(self, record: CallRecord, hunt: Hunt) -> None:
        """The record joins this step's batch, encoded when the batch is sent (so the last
        state of every step of the event is what Redis gets, once)."""

        def encode() -> tuple[Any, ...]:
            record.hunt = hunt.to_dict()
            return ("SET", self.calls.keys.call(record.uuid), self.calls.encode(record))

        self.io.batch.deferred(("save", record.uuid), encode)


def list_name(queue: str, tags: Any) -> str:
    """The waiting list a call with these tags joins (ccd/store/routing.lua's naming)."""
    return f"{queue}:{'+'.join(sorted(tags)) or '_'}"


def _fits(name: str, tags: frozenset[str]) -> bool:
    """Could an agent carrying ``tags`` take calls of waiting list ``name``?"""
    tagset = name.partition(":")[2]
    return tagset == "_" or set(tagset.split("+")) <= tags
