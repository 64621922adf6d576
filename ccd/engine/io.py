"""The engine's shared I/O: commands to FreeSWITCH, facts to the log, and the unit of work
every Redis write of a step joins.

Every part of the engine goes through one :class:`CallIo`, so a command is escaped, sent
without waiting and its failure logged the same way whoever decided it, and a presence change
is computed by ccd.core.presence from the daemon's copy of the agent and written as a
compare-and-set in the step's :class:`~ccd.store.batch.Batch` (one round trip with everything
else the step writes; the dispatcher flushes it once the step is decided).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from ccd.adapters.esl_connection import EslError
from ccd.config import Config
from ccd.core import presence
from ccd.core.commands import Command, Fact, UnsafeValue, is_uuid, to_esl
from ccd.core.customer import Customer
from ccd.core.sticky import AgentAttempt, CustomerCall
from ccd.engine.feed import EventFeed
from ccd.engine.freshness import Freshness
from ccd.engine.stats import StatsFeed
from ccd.store.agent import Agent, AgentRepository
from ccd.store.batch import Batch, Lane
from ccd.store.customer import CustomerStore
from ccd.store.redis_store import RedisUnavailable, Store
from ccd.store.routing import Routing
from ccd.store.sticky import StickyStore

log = structlog.get_logger()

#: Compare-and-set retries of one presence change before it is given up (and logged).
MAX_PRESENCE_RETRIES = 5

PresenceStep = Callable[[presence.AgentState], presence.Outcome]


class CallIo:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        esl: Any,
        agents: AgentRepository,
        routing: Routing,
        node_id: str,
        new_uuid: Callable[[], str],
        rules: presence.PresenceRules,
        customers: CustomerStore | None = None,
        sticky: StickyStore | None = None,
        metrics: Any = None,
        fresh: Freshness | None = None,
        stats: StatsFeed | None = None,
        feed: EventFeed | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.esl = esl
        self.agents = agents
        self.routing = routing
        self.node_id = node_id
        self.new_uuid = new_uuid
        self.rules = rules
        self.customers = customers
        self.sticky = sticky
        self.metrics = metrics
        self.fresh = fresh if fresh is not None else Freshness()
        self.stats = stats  # the facts' statistics, sent with each unit of work
        self.feed = feed  # the facts as /events events, sent with each unit of work too
        #: Called with (agent, now) when a written change leaves an agent free now or later
        #: (wrap-up): hunting looks for a waiting call for it.
        self.on_agent_free: Callable[[Agent, float], None] | None = None
        self._batch: Batch | None = None
        # The dispatcher's own Redis connection for its batches (ccd.store.batch.Lane).
        self._lane = Lane(store.client)
        self._fire_jobs: dict[str, str] = {}  # job uuid -> command, for commands not awaited

    @property
    def context(self) -> str:
        return self.config.daemon.dialplan_context

    # ------------------------------------------------------------------ the unit of work
    @property
    def batch(self) -> Batch:
        if self._batch is None:
            self._batch = self.routing.batch(self._lane)
        return self._batch

    def flush(self) -> None:
        """Send what the step wrote and asked (one round trip); callbacks follow."""
        # Statistics and events ride with the step's writes; either may make a round trip
        # alone only on an idle daemon (due), and then the other goes along.
        riders = [r for r in (self.stats, self.feed) if r is not None]
        if any(r.due(riding=bool(self._batch)) for r in riders):
            for rider in riders:
                if rider.due(riding=True):
                    rider.into(self.batch)
        batch, self._batch = self._batch, None
        if batch:
            try:
                batch.execute()
            finally:
                if self.metrics is not None:
                    self.metrics.inc("redis_round_trips_total", batch.trips)

    def discard(self) -> None:
        """Forget what a failed step had queued (Redis was down: it is decided again)."""
        self._batch = None

    # ------------------------------------------------------------------ leases
    def lease(self, name: str) -> bool:
        return self.store.lease(name, self.node_id, 30_000)

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
        if kind == "bgapi":
            return self.bgapi(text, getattr(command, "job_uuid", None))
        return self.send_api(text)

    def send_api(self, text: str) -> bool:
        """A short command whose answer matters only if it is an error (bridge, kill,
        transfer, music, break, sched_del): ``api`` without waiting, on FreeSWITCH's side run
        in order on this connection, no BACKGROUND_JOB back; a refusal is logged."""
        name = text.split(" ", 1)[0]

        def failed(reply: str) -> None:
            # Which channel: "uuid_bridge -ERR Invalid uuid" alone tells an operator nothing.
            target = text.split(" ", 2)[1] if " " in text else ""
            log.warning(
                "esl.command_failed", command=name, uuid=target if is_uuid(target) else None,
                reply=reply,
            )  # fmt: skip

        try:
            self.esl.api_nowait(text, failed)
        except EslError as exc:
            log.warning("esl.command_failed", command=name, error=str(exc))
            return False
        return True

    def bgapi(self, text: str, job_uuid: str | None = None, *, track: bool = True) -> bool:
        """A command whose answer is waited for, or that may take time (an originate rings
        for seconds): FreeSWITCH runs it in the background and answers with a
        BACKGROUND_JOB, so the dispatcher never waits (DESIGN.md). Without ``job_uuid`` its
        result is remembered, to log it if it failed (``track``)."""
        job = job_uuid or self.new_uuid()
        try:
            self.esl.bgapi(text, job_uuid=job, wait=False)
        except EslError as exc:
            log.warning("esl.command_failed", command=text.split(" ", 1)[0], error=str(exc))
            return False
        if job_uuid is None and track:
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
    def fact(self, fact: Fact, now: float) -> None:
        """Say ``fact``, which happened at ``now``: the log, the metrics, the statistics,
        the event feed."""
        log.info(fact.name, **fact.data)
        if self.metrics is not None:  # counters and histograms (ccd.adapters.metrics)
            self.metrics.fact(fact.name, fact.data)
        self.count(fact, now)

    def count(self, fact: Fact, now: float) -> None:
        """Only the statistics and the event of ``fact``: for one a store has logged
        already."""
        if self.stats is not None:
            self.stats.fact(fact, now)
        if self.feed is not None:
            self.feed.fact(fact, now)

    def agent_for(self, extension: str) -> Agent | None:
        return self.agents.by_extension(extension) if extension else None

    def presence(self, agent_id: str, step: PresenceStep, now: float) -> None:
        """Apply one ccd.core.presence function to the agent and write it in this step's
        batch. ``step`` runs now, on the daemon's copy of the agent (read first when it has
        none), so an IllegalTransition reaches the caller at once; a write lost to another
        writer is decided again on a fresh read. An agent left free (now, or once its
        wrap-up ends) is handed to ``on_agent_free`` in the same step."""
        self._presence(agent_id, step, now, MAX_PRESENCE_RETRIES)

    def _presence(self, agent_id: str, step: PresenceStep, now: float, tries: int) -> None:
        agent = self.agents.cached(agent_id) or self.agents.get(agent_id)
        if agent is None:
            return
        new, outcome = self.agents.apply(agent, step)
        if new == agent:
            return

        def written(ok: bool) -> None:
            if ok:
                for fact in outcome.facts:
                    self.fact(fact, now)
                return
            if tries <= 1:
                log.error("agent.write_conflict", agent=agent_id)
                return
            try:
                self._presence(agent_id, step, now, tries - 1)
            except presence.IllegalTransition as exc:
                log.info("agent.transition_dropped", agent=agent_id, reason=str(exc))

        self.fresh.touch(agent_id)
        self.agents.write_op(self.batch, new, agent.rev, now, written)
        if self.on_agent_free is not None and _may_free(new.state):
            # In the same script call, right after the write: no extra round trip.
            self.on_agent_free(new, now)

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


def _may_free(state: presence.AgentState) -> bool:
    """Ready, registered, nothing on the phone: free now, or when its wrap-up ends."""
    return (
        state.login is presence.Login.READY
        and state.registered
        and state.offer_leg is None
        and not state.personal
        and state.activity in (presence.Activity.IDLE, presence.Activity.WRAPUP)
    )
