"""Hunting: drives each queued call's :class:`ccd.core.hunt.Hunt` to its end.

Theory of operation
-------------------
A hunt belongs to the daemon holding the call's lease (``lease:call.<uuid>``); events about
calls owned by another daemon are left to it. Each step of the pure hunt is applied here:
its facts logged, agents reserved (a Lua script) or released, its commands sent; then the
hunt is asked again until it needs an outside answer (a job result, an answer, a tick).
Waiting calls get a fresh candidate list whenever an agent may have become free (any
presence change, a finished call) and at least once a second, in queue order (priority,
then arrival), so the longest-waiting caller gets the next free agent.

Hunts are cached in memory for speed; the call record in Redis is the truth, rewritten after
every step, and :mod:`ccd.engine.resync` rebuilds the cache from it after a restart.
"""

from __future__ import annotations

from typing import Any

import structlog

from ccd.core import presence
from ccd.core.commands import Fact, Originate
from ccd.core.customer import Customer
from ccd.core.hunt import Hunt, Phase, Release, Step
from ccd.core.routing import candidates
from ccd.core.screenpop import offer_payload
from ccd.core.sticky import CustomerCall
from ccd.engine.disposition import DispositionService
from ccd.engine.io import CallIo
from ccd.store.agent import AgentRepository
from ccd.store.call import CallRecord, CallRepository
from ccd.store.customer import CustomerStore
from ccd.store.redis_store import RedisUnavailable

log = structlog.get_logger()


class Hunting:
    #: Free agents fetched per routing decision: enough to skip a few lost races.
    CANDIDATE_BATCH = 4

    def __init__(
        self,
        *,
        io: CallIo,
        agents: AgentRepository,
        calls: CallRepository,
        customers: CustomerStore | None = None,
        disposition: DispositionService | None = None,
        webhook: Any = None,
    ) -> None:
        self.io = io
        self.agents = agents
        self.calls = calls
        self.customers = customers
        self.disposition = disposition
        self.webhook = webhook
        self.hunts: dict[str, Hunt] = {}  # caller uuid -> hunt this daemon owns
        self.records: dict[str, CallRecord] = {}
        self.jobs: dict[str, str] = {}  # job uuid -> caller uuid
        self.legs: dict[str, str] = {}  # agent leg uuid -> caller uuid
        self._call_facts: dict[str, list[Fact]] = {}  # per live call, for dispositions
        self._unsent_jobs: list[str] = []
        self._last_pump = 0.0
        self._last_renew = 0.0

    def start(self, hunt: Hunt, record: CallRecord, now: float) -> None:
        """A call entered its queue (the record is stored): its hunt begins."""
        structlog.contextvars.bind_contextvars(call=record.uuid, queue=record.queue)
        try:
            self.hunts[record.uuid] = hunt
            self.records[record.uuid] = record
            self.drive(hunt, hunt.start(now), now)
        finally:
            structlog.contextvars.unbind_contextvars("call", "queue")

    def resume(self, hunt: Hunt, record: CallRecord) -> None:
        """A hunt read back from Redis is this daemon's again (see ccd.engine.resync)."""
        self.hunts[record.uuid], self.records[record.uuid] = hunt, record
        if hunt.job_uuid:
            self.jobs[hunt.job_uuid] = record.uuid
        if hunt.leg_uuid:
            self.legs[hunt.leg_uuid] = record.uuid

    # ------------------------------------------------------------------ events
    def on_job(self, job_uuid: str, ok: bool, value: str, now: float) -> None:
        call_uuid = self.jobs.pop(job_uuid, None)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is None:
            return
        self.drive(hunt, hunt.on_job_result(job_uuid, ok, value, now), now)

    def on_answered(self, uuid: str, variables: dict[str, str], now: float) -> None:
        call_uuid = variables.get("ccd_call") or self.legs.get(uuid)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is not None:
            self.drive(hunt, hunt.on_agent_answered(uuid, now), now)

    def on_bridged(self, uuid: str, other_uuid: str, now: float) -> None:
        for caller in (uuid, other_uuid):
            hunt = self.hunts.get(caller)
            if hunt is not None and hunt.phase is Phase.BRIDGING:
                self.drive(hunt, hunt.on_bridged(now), now)
                record = self.records[caller]
                record.status, record.bridged_at = "bridged", now
                if record.agent:  # they talk: type 1 and 2 bindings end here
                    self.io.sticky_event(CustomerCall(record.caller_number, now, record.agent), now)
                self.calls.leave_queue(record)
                self._save(hunt)
                # The dialplan's safety net (sched_transfer to voicemail for a caller
                # left parked with no daemon) must not cut a conversation short.
                self.io.send_api(f"sched_del {caller}")

    def on_hangup(self, uuid: str, cause: str, variables: dict[str, str], now: float) -> bool:
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
        if hunt is not None:
            self.drive(hunt, hunt.on_agent_leg_hangup(uuid, cause, now), now)
        agent_id = variables.get("ccd_agent")
        if agent_id:
            self.io.presence(agent_id, lambda s: presence.call_ended(s, uuid, now, self.io.rules))
        return True

    def on_job_failed(self, job_uuid: str, now: float) -> None:
        call_uuid = self.jobs.pop(job_uuid, None)
        hunt = self.hunts.get(call_uuid) if call_uuid else None
        if hunt is not None:
            step = hunt.on_job_result(job_uuid, False, "DESTINATION_OUT_OF_ORDER", now)
            self.drive(hunt, step, now)

    # ------------------------------------------------------------------ time
    def on_deadlines(self, now: float) -> None:
        for hunt in list(self.hunts.values()):
            deadline = hunt.next_deadline
            if deadline is not None and now >= deadline:
                self.drive(hunt, hunt.on_tick(now), now)

    def tick(self, now: float) -> None:
        if self.io.dirty or now - self._last_pump >= 1.0:
            self._pump(now)
        if now - self._last_renew >= 5.0:
            self._last_renew = now
            for call_uuid in list(self.hunts):
                self.io.renew(f"call.{call_uuid}")

    def _pump(self, now: float) -> None:
        """Offer free agents to waiting calls, best-placed call first."""
        changed, self.io.dirty = self.io.dirty, False
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
                self.drive(hunt, Step(wants_candidates=True), now)

    def release_all(self) -> None:
        """On a clean stop: hand every call back at once (another daemon, or this one
        restarted, resumes them from Redis without waiting for the leases to expire)."""
        for call_uuid in list(self.hunts):
            try:
                self.io.release(f"call.{call_uuid}")
            except RedisUnavailable:
                return
        log.info("call.released_all", calls=len(self.hunts))

    # ------------------------------------------------------------------ the engine
    def drive(self, hunt: Hunt, step: Step, now: float) -> None:
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
            self.on_job_failed(self._unsent_jobs.pop(0), now)

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
            self.io.fact(fact)
            if fact.name == "agent.answered":
                agent_id, leg = fact.data.get("agent"), fact.data.get("leg")
                if agent_id and leg:
                    self.io.presence(agent_id, lambda s, lg=leg: presence.answered(s, lg, now))
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
            if not self.io.send(command) and isinstance(command, Originate) and command.job_uuid:
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
        self.io.offer_leg_of(agent_id, hunt.call_uuid, command.leg_uuid)
        record = self.records.get(hunt.call_uuid)
        if record is not None:
            record.status, record.agent, record.agent_leg = "ringing", agent_id, command.leg_uuid

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
            self.io.history(record.caller_number),
            display_name=hunt.caller_display,
        )
        self.webhook.send(payload)

    def _release(self, release: Release, now: float) -> None:
        if release.outcome == "completed":
            if release.leg_uuid:
                leg = release.leg_uuid
                self.io.presence(
                    release.agent_id, lambda s: presence.call_ended(s, leg, now, self.io.rules)
                )
            return

        def failed(state: presence.AgentState) -> presence.Outcome:
            return presence.offer_failed(
                state,
                state.offer_leg if release.leg_uuid is None else release.leg_uuid,
                release.outcome,
                now,
                self.io.rules,
            )

        if self.agents.get(release.agent_id) is not None:
            self.io.presence(release.agent_id, failed)

    def _finish(self, hunt: Hunt, now: float) -> None:
        record = self.records.pop(hunt.call_uuid, None)
        self.hunts.pop(hunt.call_uuid, None)
        if record is None:
            return
        record.status = hunt.result or "done"
        record.ended_at = now
        record.hunt = hunt.to_dict()
        self.calls.finish(record)
        self.io.release(f"call.{hunt.call_uuid}")
        facts = self._call_facts.pop(hunt.call_uuid, [])
        if self.disposition is not None:  # automatic codes, contact history, reports
            self.disposition.call_finished(record, facts, now)
        elif self.customers is not None and record.customer is not None:
            self._remember_contact(record)
        self.io.dirty = True

    def _save(self, hunt: Hunt) -> None:
        record = self.records.get(hunt.call_uuid)
        if record is not None:
            record.hunt = hunt.to_dict()
            self.calls.save(record)

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
