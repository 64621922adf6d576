"""Call control: what the dispatcher calls, wired to the parts that decide.

Theory of operation
-------------------
The dispatcher greenlet calls :meth:`CallControl.on_event`, :meth:`on_tick`,
:meth:`on_resync` and :meth:`on_job_failed`, one at a time. Each event is

1. decoded (:func:`ccd.core.events.from_esl`) and handed to the part that decides it:
   :mod:`~ccd.engine.entry` (the main number, a call entering its queue),
   :mod:`~ccd.engine.hunting` (offers, answers, bridges, hangups of queue calls),
   :mod:`~ccd.engine.overflow` (the callback offer), :mod:`~ccd.engine.feature_codes`
   (desk phones' codes), :mod:`~ccd.engine.presence` (registrations, agents' own calls),
   :mod:`~ccd.engine.dialer` (callback attempts), :mod:`~ccd.engine.recovery` (voicemail
   messages to call back); after a (re)connect
   :mod:`~ccd.engine.resync` reconciles;
2. the part asks the pure core what to do (:mod:`ccd.core.hunt`, :mod:`ccd.core.presence`,
   ...) from the daemon's copy of the state (Redis holds the truth; a copy that lost a race
   is read again),
3. every Redis read and write the step needs joins the event's unit of work (one round trip,
   sent once the event is handled, :mod:`ccd.store.batch`; agent reservations, presence
   compare-and-sets and the matching of calls and agents are one Lua script,
   :mod:`ccd.store.routing`), and
4. the commands go to FreeSWITCH and the facts to the log, through the one
   :class:`~ccd.engine.io.CallIo` all parts share.

An event several parts may own (a job result, an answer, a bridge, a hangup) is offered to
the callback dialer first (its legs are not queue calls), then to hunting, then to presence.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from ccd.adapters.snapshot import Snapshot
from ccd.config import Config
from ccd.config.live import LiveConfig
from ccd.core import events as ev
from ccd.core import presence
from ccd.engine.dialer import CallbackDialer
from ccd.engine.disposition import DispositionService
from ccd.engine.entry import Entry
from ccd.engine.feature_codes import FeatureCodes
from ccd.engine.feed import EventFeed
from ccd.engine.freshness import Freshness
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.engine.overflow import Overflow
from ccd.engine.presence import AgentPresence
from ccd.engine.reconfigure import Reconfigure
from ccd.engine.recovery import Recovery
from ccd.engine.resync import AGENT_SLICE as SEED_SLICE
from ccd.engine.resync import Resync
from ccd.engine.stats import StatsFeed
from ccd.store.agent import AgentError, AgentRepository
from ccd.store.call import CallRepository
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.feed import FeedStore
from ccd.store.redis_store import RedisUnavailable, Store
from ccd.store.routing import Routing
from ccd.store.sticky import StickyStore

log = structlog.get_logger()

#: Agents whose status the statistics are seeded with in one dispatcher step, the step's
#: flush included (each agent's counters are ~20 commands): 448 ms with all at once at
#: 20,000 agents, 12-13 ms of CPU with 64, under 8 with 16 (scripts/bench.py --agents 20000).
STATS_SEED_SLICE = 16
#: Agents written back per script call after Redis lost its data (~25 ms of Redis at 500).
RESTORE_SLICE = 500


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
        customers: CustomerStore | None = None,
        sticky: StickyStore | None = None,
        callbacks: CallbackStore | None = None,
        disposition: DispositionService | None = None,
        webhook: Any = None,
        metrics: Any = None,
        ask_snapshot: Callable[[str], None],
    ) -> None:
        # One holder every part reads through; a reload swaps what it holds (reconfigure).
        config = self.config = config if isinstance(config, LiveConfig) else LiveConfig(config)
        self.customers = customers
        self.sticky = sticky
        self.callbacks = callbacks if callbacks is not None else CallbackStore(store)
        self.disposition = disposition
        self.routing = Routing(store, node_id)
        self.fresh = Freshness()
        self._parked: list[ev.CallParked] = []  # callers entering in the unit of work
        self.agents = AgentRepository(store, self.routing)
        self.calls = CallRepository(store)
        routing = config.routing
        self.stats = StatsFeed(store, self.agents, config.current)
        self._stats_seeded = False
        max_len = config.current.feed.max_len  # 0: no event feed is written
        self.feed = EventFeed(FeedStore(store, max_len), node_id) if max_len else None
        self.io = CallIo(
            config=config,
            store=store,
            esl=esl,
            agents=self.agents,
            routing=self.routing,
            node_id=node_id,
            new_uuid=new_uuid,
            rules=presence.PresenceRules(
                wrapup_time=routing.wrapup_time, max_missed_offers=routing.max_missed_offers
            ),
            customers=customers,
            sticky=sticky,
            metrics=metrics,
            fresh=self.fresh,
            stats=self.stats,
            feed=self.feed,
        )
        self.recovery = Recovery(config=config, io=self.io, callbacks=self.callbacks)
        self.hunting = Hunting(
            io=self.io,
            agents=self.agents,
            calls=self.calls,
            disposition=disposition,
            webhook=webhook,
            recovery=self.recovery,
        )
        self.entry = Entry(
            config=config,
            io=self.io,
            agents=self.agents,
            calls=self.calls,
            hunting=self.hunting,
            customers=customers,
            sticky=sticky,
            dnc=disposition.dnc if disposition is not None else None,
            recovery=self.recovery,
        )
        self.dialer = CallbackDialer(
            config=config,
            io=self.io,
            agents=self.agents,
            callbacks=self.callbacks,
            enqueue=self.entry.enqueue_callback,
            agent_matched=self.hunting.agent_matched,
            disposition=disposition,
        )
        self.overflow = Overflow(
            config=config, io=self.io, hunting=self.hunting, callbacks=self.callbacks
        )
        self.presence = AgentPresence(io=self.io, disposition=disposition)
        self.feature_codes = FeatureCodes(
            io=self.io, next_callback=self.dialer.next_callback, disposition=disposition
        )
        self.resync = Resync(
            io=self.io,
            agents=self.agents,
            calls=self.calls,
            hunting=self.hunting,
            fresh=self.fresh,
            on_parked=self.entry.on_parked,
            on_feature_code=self.feature_codes.on_feature_code,
            seed_agents=self.seeding,
            ask_snapshot=ask_snapshot,
        )
        self.reconfigurer = Reconfigure(
            config=config,
            io=self.io,
            entry=self.entry,
            hunting=self.hunting,
            agents=self.agents,
            derived=[self.overflow, self.recovery, disposition, sticky, self.stats],
        )
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            ev.CallParked: self.entry.on_parked,
            ev.EntryParked: self.entry.on_entry,
            ev.PromptDone: self._on_prompt,
            ev.JobResult: self._on_job,
            ev.ChannelAnswered: self._on_answered,
            ev.LegParked: self._on_leg_parked,
            ev.ChannelBridged: self._on_bridged,
            ev.ChannelHangup: self._on_hangup,
            ev.ChannelCreated: self.presence.on_created,
            ev.FeatureCode: self.feature_codes.on_feature_code,
            ev.PhoneRegistered: self.presence.on_registered,
            ev.PhoneUnregistered: self.presence.on_unregistered,
            ev.VoicemailLeft: self.recovery.on_voicemail,
        }

    def seed_agents(self, now: float) -> None:
        """Agents named in the configuration exist in Redis (run-time changes win). The
        first time (and after Redis lost its data) every agent's status goes to the
        statistics, so agents by status count the ones that have not changed since."""
        for _ in self.seeding(now):
            pass

    def seeding(self, now: float) -> Iterator[None]:
        """:meth:`seed_agents` a slice at a time (each resync does it, between events): one
        read of SEED_SLICE records, and only an agent missing or on another extension is
        written. One GET per agent in one step held the dispatcher 2-4 s at 20,000."""
        configured = list(self.config.agents.items())
        for start in range(0, len(configured), SEED_SLICE):
            chunk = configured[start : start + SEED_SLICE]
            known = {p.id: p.extension for p in self.agents.phones(a for a, _ in chunk)}
            for agent_id, agent in chunk:
                if known.get(agent_id) == agent.extension:
                    continue
                try:
                    self.agents.ensure(agent_id, agent.extension, agent.tags, now)
                except AgentError as exc:
                    # One conflicting entry must not keep the daemon from serving calls.
                    log.error("agent.config_conflict", agent=agent_id, error=str(exc))
            yield
        if not self._stats_seeded:
            # A slice a step too (STATS_SEED_SLICE). An agent that changes meanwhile is read
            # as it is then; its statistics ignore a move stamped before the one recorded.
            for ids in self.agents.scan_ids(STATS_SEED_SLICE):
                self.stats.seed(self.agents.many(ids), now)
                yield
            self._stats_seeded = True

    # ------------------------------------------------------------------ the dispatcher's calls
    def on_event(
        self, decoded: ev.DomainEvent | None, now: float, job: tuple[str, str] | None = None
    ) -> None:
        """One event (ccd.core.events.from_esl of it; ``job``: a BACKGROUND_JOB's job uuid
        and reply); its Redis work joins the unit of work the dispatcher sends with
        :meth:`flush` once it has handled the events waiting together (one round trip for
        all of them under load), or sooner when this event needs an earlier one's answer."""
        if job is not None and job[0] and self.resync.on_job(job[0], job[1], now):
            return
        if decoded is None:
            return
        handler = self._handlers.get(type(decoded))
        if handler is None:
            return
        uuid = getattr(decoded, "uuid", None)
        self.fresh.touch(uuid)
        entering = self.entry.entering
        if entering and (uuid in entering or _call_of(decoded) in entering):
            self.flush()  # the call's entry must be answered before this event is decided
        try:
            handler(decoded, now)
        except RedisUnavailable:
            if isinstance(decoded, ev.CallParked):
                self.entry.defer(decoded)
            elif isinstance(decoded, ev.ChannelHangup):
                self.entry.forget(decoded.uuid)
            raise
        if isinstance(decoded, ev.CallParked):
            self._parked.append(decoded)

    def flush(self) -> None:
        """Send the unit of work: everything the events since the last flush wrote and
        asked. If Redis failed, what they asked is decided again: a caller who was entering
        their queue gets music now and is queued when Redis answers (Entry.defer)."""
        parked, self._parked = self._parked, []
        try:
            self.io.flush()
        except RedisUnavailable:
            self.io.discard()
            self.entry.entering.clear()
            for event in parked:
                self.entry.defer(event)
            raise

    def on_notified(self, call: str, agent: dict[str, Any], leg: str, job: str, now: float) -> None:
        """Another daemon reserved an agent for one of this daemon's calls."""
        self.hunting.on_notified(call, agent, leg, job, now)
        self.flush()

    def on_redis_lost(self, now: float) -> None:
        """Redis came back without its data (ccd.store.node): what this daemon knows goes
        back, agents first (their login, tags and calls), then the calls it hunts, then the
        configuration's agents; the resync that follows adds the phones' registrations."""
        known = self.agents.known()
        for start in range(0, len(known), RESTORE_SLICE):
            # A script call a slice: Redis, which other daemons share, is never held by all
            # of them at once (20,000 agents in one call: 930 ms).
            self.agents.restore_op(self.io.batch, known[start : start + RESTORE_SLICE], now)
            self.flush()
        self._stats_seeded = False  # the statistics went with the rest
        self.hunting.rebuild(now)
        self.flush()
        self.dialer.rebuild(now)
        # The configured agents and the statistics come back with the resync the daemon
        # asks next, a slice a step (in this step: 790 ms of no call moving at 20,000);
        # one under way may have seeded already, before the loss.
        self.resync.restart()
        log.warning("agent.rebuilt", agents=len(known))

    def index_tagsets(self) -> int:
        """The routing index by tag set, built before serving where an older ccd left none
        (ccd.store.agent.AgentRepository.index_tagsets): how many agents it took."""
        return self.agents.index_tagsets()

    def on_notify_gap(self, now: float) -> None:
        """The notification channel was (re)subscribed: reservations made for our calls
        while we were not listening are read from Redis instead."""
        self.hunting.recheck_offers(now)
        self.flush()

    def on_tick(self, now: float) -> None:
        """Deadlines and the periodic work; sent with the events' unit of work."""
        for parked in self.entry.take_deferred():
            self._parked.append(parked)  # deferred again if Redis still fails (flush)
            self.entry.on_parked(parked, now)
        self.dialer.tick(now)
        self.hunting.tick(now)
        self.stats.tick(now)
        if self.feed is not None:
            self.feed.tick(now)

    def on_snapshot(self, answer: Snapshot, now: float) -> None:
        """FreeSWITCH's live channels and registrations, read for the resync."""
        self.resync.on_snapshot(answer, now)
        self.flush()

    def resync_request(self) -> bool:
        """Ask FreeSWITCH what is live (ccd.engine.resync); False if a resync is under way."""
        return self.resync.request()

    @property
    def resync_has_work(self) -> bool:
        return self.resync.has_work

    def resync_step(self, now: float) -> bool:
        """The next slice of the reconciliation; False when it is done."""
        return self.resync.step(now, self.flush)

    def on_job_failed(self, job_uuid: str, reason: str, now: float) -> None:
        """A bgapi whose result will never come: FreeSWITCH refused it (``reason`` is its
        ``-ERR`` reply), or the connection went with it and its fate is unknown."""
        if self.io.fire_job_done(job_uuid, False, reason):
            return
        if not self.dialer.on_job(job_uuid, False, "DESTINATION_OUT_OF_ORDER", now):
            self.hunting.on_job_lost(job_uuid, reason, now)
        self.flush()

    def reconfigure(self, config: Config, now: float) -> list[str]:
        """A reload, on the dispatcher between two events: run with ``config`` from now on,
        without dropping a call or a callback (ccd.engine.reconfigure); returns what it did."""
        done = self.reconfigurer.apply(config, now)
        self.flush()
        return done

    def call_view(self, uuid: str) -> dict[str, Any] | None:
        record = self.hunting.records.get(uuid) or self.calls.get(uuid)
        if record is None:
            return None
        view = record.to_dict()
        live = self.hunting.hunts.get(uuid)
        hunt = live.to_dict() if live is not None else view.get("hunt") or {}
        view.pop("hunt", None)
        view["phase"] = hunt.get("phase")
        view["tried"] = hunt.get("tried", [])
        view["ringing_agent"] = hunt.get("agent_id")
        view["history"] = self.io.history(record.caller_number)
        return view

    def release_all(self) -> None:
        self.hunting.release_all()

    # ------------------------------------------------------------------ events several parts share
    def _on_prompt(self, e: ev.PromptDone, now: float) -> None:
        if e.stage == "customer_first":
            self.dialer.on_prompt(e.uuid, e.stage, dict(e.values), now)
        else:
            self.overflow.on_prompt(e, now)

    def _on_job(self, e: ev.JobResult, now: float) -> None:
        if self.dialer.on_job(e.job_uuid, e.ok, e.value, now):
            return
        if self.io.fire_job_done(e.job_uuid, e.ok, e.value):
            return
        self.hunting.on_job(e.job_uuid, e.ok, e.value, now)

    def _on_answered(self, e: ev.ChannelAnswered, now: float) -> None:
        if not self.dialer.on_agent_answered(e.uuid, now):
            self.hunting.on_answered(e.uuid, e.variables, now)

    def _on_leg_parked(self, e: ev.LegParked, now: float) -> None:
        self.hunting.on_leg_parked(e.uuid, e.variables, now)

    def _on_bridged(self, e: ev.ChannelBridged, now: float) -> None:
        if not self.dialer.on_bridged(e.uuid, e.other_uuid, now):
            self.hunting.on_bridged(e.uuid, e.other_uuid, now)

    def _on_hangup(self, e: ev.ChannelHangup, now: float) -> None:
        self.entry.forget(e.uuid)
        self.dialer.on_hangup(e.uuid, now)
        if not self.hunting.on_hangup(e.uuid, e.cause, e.variables, now):
            self.presence.on_hangup(e, now)


def _call_of(decoded: Any) -> str | None:
    """The queue call an event of an agent's leg belongs to (``ccd_call``), if any."""
    variables = getattr(decoded, "variables", None)
    return variables.get("ccd_call") if variables else None
