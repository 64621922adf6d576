"""The engine's shared I/O: commands to FreeSWITCH, facts to the log, presence and sticky
writes, leases, customer look-ups.

Every part of the engine goes through one :class:`CallIo`, so a command is escaped, sent
without waiting and its failure logged the same way whoever decided it, and a presence change
always records the agent's wrap-up deadline and wakes the waiting calls (``dirty``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import structlog

from ccd.adapters.esl_connection import EslError
from ccd.config import Config
from ccd.core import presence
from ccd.core.commands import Command, Fact, UnsafeValue, to_esl
from ccd.core.customer import Customer
from ccd.core.sticky import AgentAttempt, CustomerCall
from ccd.store.agent import Agent, AgentRepository
from ccd.store.customer import CustomerStore
from ccd.store.redis_store import RedisUnavailable, Store
from ccd.store.sticky import StickyStore

log = structlog.get_logger()

#: How long a daemon's claim on a call lasts without renewal (real milliseconds).
CALL_LEASE_MS = 30_000


class CallIo:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        esl: Any,
        agents: AgentRepository,
        node_id: str,
        new_uuid: Callable[[], str],
        rules: presence.PresenceRules,
        customers: CustomerStore | None = None,
        sticky: StickyStore | None = None,
        metrics: Any = None,
    ) -> None:
        self.config = config
        self.store = store
        self.esl = esl
        self.agents = agents
        self.node_id = node_id
        self.new_uuid = new_uuid
        self.rules = rules
        self.customers = customers
        self.sticky = sticky
        self.metrics = metrics
        self.wrapups: dict[str, float] = {}  # agent id -> wrap-up deadline
        #: Some agent may have become free: waiting calls look for one at the next tick.
        self.dirty = True
        self._fire_jobs: dict[str, str] = {}  # job uuid -> command, for commands not awaited

    @property
    def context(self) -> str:
        return self.config.daemon.dialplan_context

    # ------------------------------------------------------------------ leases
    def lease(self, name: str) -> bool:
        return self.store.lease(name, self.node_id, CALL_LEASE_MS)

    def renew(self, name: str) -> bool:
        return self.store.renew(name, self.node_id, CALL_LEASE_MS)

    def release(self, name: str) -> bool:
        return self.store.release(name, self.node_id)

    # ------------------------------------------------------------------ commands
    def send(self, command: Command) -> bool:
        try:
            kind, text = to_esl(command)
        except UnsafeValue as exc:
            log.error("esl.command_refused", command=type(command).__name__, error=str(exc))
            return False
        if kind == "execute":
            uuid, app, *rest = text.split(" ", 2)
            return self.execute(uuid, app, rest[0] if rest else "")
        return self.bgapi(text, getattr(command, "job_uuid", None))

    def send_api(self, text: str) -> None:
        self.bgapi(text)

    def bgapi(self, text: str, job_uuid: str | None = None) -> bool:
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

    def fire_job_done(self, job_uuid: str, ok: bool, reply: str) -> bool:
        """The result of a command nobody waits for (logged if it failed); False: not one."""
        command = self._fire_jobs.pop(job_uuid, None)
        if command is None:
            return False
        if not ok:
            log.warning("esl.command_failed", command=command, reply=reply)
        return True

    def execute(self, uuid: str, app: str, arg: str) -> bool:
        try:
            self.esl.execute(uuid, app, arg, wait=False)
        except EslError as exc:
            log.warning("esl.command_failed", command=app, error=str(exc))
            return False
        return True

    # ------------------------------------------------------------------ facts and presence
    def fact(self, fact: Fact) -> None:
        data = dict(fact.data)
        log.info(fact.name, **data)
        if self.metrics is not None:  # counters and histograms (ccd.adapters.metrics)
            self.metrics.fact(fact.name, data)

    def agent_for(self, extension: str) -> Agent | None:
        return self.agents.by_extension(extension) if extension else None

    def presence(
        self, agent_id: str, step: Callable[[presence.AgentState], presence.Outcome]
    ) -> None:
        agent, outcome = self.agents.transition(agent_id, step)
        for fact in outcome.facts:
            self.fact(fact)
        if agent.state.wrapup_until is not None:
            self.wrapups[agent_id] = agent.state.wrapup_until
        if outcome.facts:
            self.dirty = True

    def offer_leg_of(self, agent_id: str, call: str, leg: str) -> None:
        """The agent reserved for ``call`` is rung on ``leg`` (presence knows the leg)."""

        def set_leg(agent: Agent) -> Agent:
            if agent.call != call:
                return agent
            state = dataclasses.replace(agent.state, offer_leg=leg)
            return dataclasses.replace(agent, state=state)

        self.agents.update(agent_id, set_leg)

    def sticky_event(self, event: AgentAttempt | CustomerCall, now: float) -> None:
        if self.sticky is None:
            return
        try:
            self.sticky.record(event, now)
        except (RedisUnavailable, ValueError) as exc:
            log.warning("sticky.record_failed", number=event.number, error=str(exc))

    # ------------------------------------------------------------------ customers
    def customer(self, number: str) -> Customer | None:
        if self.customers is None or not number:
            return None
        try:
            return self.customers.get(number)
        except RedisUnavailable:
            return None  # screen-pop data is a nicety; the call is routed without it

    def history(self, number: str) -> list[dict[str, Any]]:
        if self.customers is None or not number:
            return []
        try:
            return self.customers.history(number)
        except RedisUnavailable:
            return []
