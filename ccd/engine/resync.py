"""Resync: after every (re)connect, and periodically, reconcile with what FreeSWITCH has live.

Theory of operation
-------------------
FreeSWITCH's ``show channels`` and ``show registrations`` come from its core database, written
100-300 ms after the events (measured on a real 1.10.12): a snapshot is always older than the
freshest events. So a resync never overrules what events said more recently (issue 9,
defect 2):

* the snapshot is asked for beside the dispatcher (:mod:`ccd.adapters.snapshot`: a
  connection of its own, rows parsed a slice at a time), and the moment it was asked is
  kept;
* anything events touched within ``FRESH`` seconds before that moment (a call, a leg, an
  agent: :class:`Freshness`) is left out of the comparison: its events are newer;
* a disagreement left over is confirmed with FreeSWITCH's live session table
  (``uuid_exists``, no database lag) before it is acted on, and acted on only if no event
  touched the thing meanwhile.

The work is cut in slices (``SLICE`` agents, calls or rows at a time) that the dispatcher
runs between events, so 20,000 agents never stall it. What is reconciled:

* agents: the phone registered or not; a queue leg or personal call the agent record holds
  that FreeSWITCH no longer has (the call ended while nobody listened); a channel on the
  phone nobody knew of (a personal call);
* calls: every call this daemon hunts, and every live call record in Redis whose daemon has
  stopped beating (taken over: ccd.store.node), checked against the live channels; a call
  parked while no daemon listened (a caller, or a desk phone's feature code) is adopted, its
  variables read with ``eval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import structlog

from ccd.adapters.snapshot import Snapshot
from ccd.core import events as ev
from ccd.core import presence
from ccd.core.commands import is_uuid
from ccd.core.hunt import Hunt, Phase, Step
from ccd.engine.freshness import FRESH, Freshness
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.store.agent import AgentPhone, AgentRepository
from ccd.store.call import CallRepository
from ccd.store.routing import Routing

log = structlog.get_logger()

#: Agents, calls or channels reconciled per dispatcher step.
SLICE = 128
#: Registered users taken per dispatcher step (a set update: ~0.1 ms for 4,096).
USER_SLICE = 4096
#: Agent records read and decoded per dispatcher step (~100 us each at 20,000 agents, the
#: read and the checks included: 64 made steps of 4-6 ms).
AGENT_SLICE = 32
#: Agents whose state the reconciliation changes, at most, per dispatcher step (each a
#: compare-and-set, a log line and its statistics: 32 made start-up steps of 8-12 ms).
WORK_SLICE = 16
#: A snapshot whose answer has not come after this many real seconds is asked again.
STALE_REQUEST = 30.0
#: Channel variables read from a channel parked while nobody listened.
_ADOPT_VARS = ("ccd_call", "ccd_queue", "ccd_tags", "ccd_action", "ccd_agent_ext",
               "ccd_digits", "ccd_dialed", "ccd_arrived", "ccd_direct_agent")  # fmt: skip


@dataclass(slots=True)
class LiveSnapshot:
    """What FreeSWITCH said was live, and when it was asked (monotonic); ``live``,
    ``registered`` and ``per_ext`` are filled in slices by the reconciliation."""

    channels: list[dict[str, str]] = field(default_factory=list)
    registrations: list[str] = field(default_factory=list)
    asked: float = 0.0
    live: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)
    per_ext: dict[str, list[str]] = field(default_factory=dict)
    apps: dict[str, tuple[str, str]] = field(default_factory=dict)


class Resync:
    def __init__(
        self,
        *,
        io: CallIo,
        agents: AgentRepository,
        calls: CallRepository,
        hunting: Hunting,
        fresh: Freshness,
        on_parked: Callable[[ev.CallParked, float], None],
        on_feature_code: Callable[[ev.FeatureCode, float], None],
        seed_agents: Callable[[float], Iterator[None]],
        ask_snapshot: Callable[[str], None],
    ) -> None:
        self.io = io
        self.agents = agents
        self.calls = calls
        self.hunting = hunting
        self.fresh = fresh
        self.on_parked = on_parked
        self.on_feature_code = on_feature_code
        self.seed_agents = seed_agents
        self.ask_snapshot = ask_snapshot
        self._asked = ""  # the token of the snapshot asked for and not in yet
        self._asked_at = 0.0
        self._work: Iterator[None] | None = None
        self._checks: dict[str, Callable[[str], None]] = {}  # job -> what its answer decides
        self._resumed: set[str] = set()  # calls taken over in this reconciliation
        self._now = 0.0
        self._steps, self._longest = 0, 0.0  # of the reconciliation under way
        self._part = self._longest_in = ""  # the part it is in, and of its longest step
        self._longest_cpu = 0.0
        self.last: LiveSnapshot | None = None
        #: Called with the snapshot once a reconciliation is complete (the daemon is synced).
        self.on_done: Callable[[LiveSnapshot], None] | None = None

    # ------------------------------------------------------------------ asking
    @property
    def busy(self) -> bool:
        return bool(self._asked) or self._work is not None

    @property
    def has_work(self) -> bool:
        """A reconciliation is under way: the dispatcher runs its next slice soon."""
        return self._work is not None

    def request(self) -> bool:
        """Ask FreeSWITCH what is live (answers come as jobs); False if one is under way."""
        if self.busy and time.monotonic() - self._asked_at < STALE_REQUEST:
            return False
        self._work = None
        self._asked = self.io.new_uuid()
        self._asked_at = time.monotonic()
        self.fresh.prune(self._asked_at - 10 * FRESH)
        self.ask_snapshot(self._asked)
        return True

    def restart(self) -> None:
        """Drop the reconciliation under way or asked for (Redis lost what it read and
        wrote): the next :meth:`request` starts one anew, seeding the agents first."""
        self._work = None
        self._asked = ""

    def on_snapshot(self, answer: Snapshot, now: float) -> None:
        """FreeSWITCH's answer to :meth:`request` (an answer to an older request is late)."""
        if answer.token != self._asked:
            return
        self._asked = ""
        if answer.error:
            log.warning("daemon.resync_failed", error=answer.error[:200])
            return
        snapshot = LiveSnapshot(answer.channels, answer.registrations, self._asked_at)
        self.last = snapshot
        self._work = self._reconcile(snapshot, now)

    def on_job(self, job: str, body: str, now: float) -> bool:
        """A BACKGROUND_JOB: True if it answered one of the resync's confirmations."""
        check = self._checks.pop(job, None)
        if check is not None:
            check(body.strip())
            return True
        return False

    def step(self, now: float, send: Callable[[], None]) -> bool:
        """Run the next slice of the reconciliation and ``send`` what it wrote; False when
        it is done (or none). The step's time includes the sending: what a slice leaves
        to send (statistics, phone states) holds the dispatcher as much as the slice."""
        if self._work is None:
            return False
        self._now = now
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            try:
                next(self._work)
            finally:
                send()
        except StopIteration:
            self._work = None
            return False
        finally:
            self._steps += 1
            took = time.perf_counter() - started
            if took > self._longest:
                self._longest, self._longest_in = took, self._part
            # The CPU the step used: on a busy machine the wall time adds whatever ran
            # on the core meanwhile (the switch, Redis, other daemons).
            self._longest_cpu = max(self._longest_cpu, time.thread_time() - cpu)
        return True

    # ------------------------------------------------------------------ reconciling
    def _reconcile(self, snap: LiveSnapshot, now: float) -> Iterator[None]:
        self._now = now
        self._steps, self._longest, self._longest_cpu, self._part = 0, 0.0, 0.0, "seed"
        for _ in self.seed_agents(now):
            yield
        self._part = "registrations"
        registered, per_ext, live = snap.registered, snap.per_ext, snap.live
        for start in range(0, len(snap.registrations), USER_SLICE):
            registered.update(snap.registrations[start : start + USER_SLICE])
            yield
        self._part = "channels"
        for start in range(0, len(snap.channels), SLICE):
            for row in snap.channels[start : start + SLICE]:
                uuid = str(row.get("uuid", ""))
                live.add(uuid)
                app = row.get("application")
                if app == "park" or app == "uuid_bridge":  # an offer leg the hunt may bridge
                    snap.apps[uuid] = (app, str(row.get("application_data", "")))
                ext = ev.extension_of_channel_name(str(row.get("name", "")))
                if ext:
                    per_ext.setdefault(ext, []).append(uuid)
            yield
        agents, self._part = 0, "agents"
        for ids in self.agents.scan_ids(AGENT_SLICE):
            agents += len(ids)
            ours = self.hunting.legs.keys() | self.hunting.hunts.keys()
            work = 0
            for phone in self.agents.phones(ids):
                on_phone = per_ext.get(phone.extension, ())
                if phone.calls or on_phone or phone.registered != (phone.extension in registered):
                    self._agent(phone, registered, on_phone, snap, ours)
                    work += 1
                    if work % WORK_SLICE == 0:  # a phone's state to write costs ~50 us
                        yield
                        ours = self.hunting.legs.keys() | self.hunting.hunts.keys()
            yield
        self._part = "calls"
        known = set(self.hunting.hunts)
        orphans = [c for c in self.calls.live() if c not in known]
        for start in range(0, len(orphans), SLICE):
            for call in orphans[start : start + SLICE]:
                self._take_over(call)
            yield
        hunts = list(self.hunting.hunts.values())
        for start in range(0, len(hunts), SLICE):
            for hunt in hunts[start : start + SLICE]:
                self._call(hunt, live, snap)
            yield
        self._part = "parked"
        self._forget_legs(live, snap)
        parked = [row for row in snap.channels if row.get("application") == "park"]
        for start in range(0, len(parked), SLICE):
            for row in parked[start : start + SLICE]:
                self._parked(row, snap)
            yield
        self._resumed.clear()
        # The longest step is how long this resync held the dispatcher at once (the
        # last one is still running: it is counted when the next reconciliation starts).
        log.info("daemon.resynced", channels=len(snap.channels),
                 registrations=len(snap.registrations), agents=agents, steps=self._steps,
                 longest_step_ms=round(self._longest * 1000, 2),
                 longest_step_in=self._longest_in,
                 longest_step_cpu_ms=round(self._longest_cpu * 1000, 2))  # fmt: skip
        if self.on_done is not None:
            self.on_done(snap)

    def _forget_legs(self, live: set[str], snap: LiveSnapshot) -> None:
        """Offer legs whose hangup never came (killed while the event socket was down, or
        after the hunt stopped waiting for it): FreeSWITCH has none of them any more."""
        legs, hunts = self.hunting.legs, self.hunting.hunts
        for leg, call in list(legs.items()):
            hunt = hunts.get(call)
            if leg in live or self.fresh.fresh(leg, snap.asked):
                continue
            if hunt is not None and leg in (hunt.leg_uuid, hunt.ending_leg):
                continue  # the hunt's own: _call confirms it first
            del legs[leg]

    def _agent(
        self,
        phone: AgentPhone,
        registered: set[str],
        on_phone: Sequence[str],
        snap: LiveSnapshot,
        ours: Set[str],
    ) -> None:
        """One agent whose record and FreeSWITCH may disagree (most agents are skipped
        before this: nothing on the phone either way, registration as recorded)."""
        if self.fresh.fresh(phone.id, snap.asked):
            return
        now = self._now
        if phone.registered != (phone.extension in registered):
            is_on = phone.extension in registered
            self.io.presence(phone.id, lambda s: presence.set_registered(s, is_on, now), now)
        known = set(phone.calls)
        for uuid in known - set(on_phone):
            if uuid in ours or self.fresh.fresh(uuid, snap.asked):
                continue  # a hunt's leg: the hunt decides (below)
            self._confirm(uuid, False, phone.id, snap, lambda a, u=uuid: self._ended(a, u))
        for uuid in set(on_phone) - known:
            if uuid in ours or self.fresh.fresh(uuid, snap.asked):
                continue
            self._confirm(uuid, True, phone.id, snap, lambda a, u=uuid: self._personal(a, u))

    def _ended(self, agent_id: str, uuid: str) -> None:
        now = self._now
        log.info("agent.call_gone", agent=agent_id, leg=uuid)
        self.io.presence(agent_id, lambda s: presence.call_ended(s, uuid, now, self.io.rules), now)

    def _personal(self, agent_id: str, uuid: str) -> None:
        now = self._now
        self.io.presence(agent_id, lambda s: presence.personal_call(s, uuid, now), now)

    def _confirm(
        self,
        uuid: str,
        exists: bool,
        owner: str,
        snap: LiveSnapshot,
        then: Callable[[str], None],
    ) -> None:
        """Ask FreeSWITCH's session table whether ``uuid`` lives; act (``then(owner)``) only
        if it says what the snapshot said and no event touched the owner meanwhile."""
        if not is_uuid(uuid):
            return
        job = self.io.new_uuid()

        def answered(text: str) -> None:
            if text not in ("true", "false") or (text == "true") != exists:
                return
            asked = time.monotonic()
            if self.fresh.fresh(owner, asked) or self.fresh.fresh(uuid, asked):
                return
            then(owner)

        if self.io.bgapi(f"uuid_exists {uuid}", job, track=False):
            self._checks[job] = answered

    def _take_over(self, call: str) -> None:
        """A live call record no daemon hunts: ours if its daemon stopped beating."""
        if not self.io.routing.one(Routing.lease(call), self._now):
            return
        record = self.calls.get(call)
        if record is None or not record.hunt:
            return
        try:
            hunt = Hunt.from_dict(record.hunt)
        except (KeyError, ValueError) as exc:
            log.error("call.resume_failed", call=call, error=str(exc))
            return
        record.node = self.io.node_id
        self.hunting.adopt(hunt, record)
        log.info("call.resumed", call=call, queue=record.queue, phase=str(hunt.phase))
        self._resumed.add(call)
        if hunt.done:
            self.hunting.drive(hunt, Step(), self._now)
        elif hunt.waiting:
            self._resume_offer(hunt)

    def _resume_offer(self, hunt: Hunt) -> None:
        """The record says waiting, but routing may have reserved an agent and the ring
        begun (a ring is not saved: the offer routing keeps tells): it goes on."""
        offer = self.calls.offer(hunt.call_uuid)
        if not offer:
            return
        agent = self.agents.get(str(offer.get("agent", "")))
        leg = str(offer.get("leg", ""))
        if agent is None or agent.call != hunt.call_uuid or agent.state.offer_leg != leg:
            return
        at = float(offer.get("at") or 0.0)
        hunt.on_offer_resumed(agent.id, agent.extension, leg, str(offer.get("job", "")), at)
        self.hunting.adopt(hunt, self.hunting.records[hunt.call_uuid])

    def _call(self, hunt: Hunt, live: set[str], snap: LiveSnapshot) -> None:
        call = hunt.call_uuid
        if self.fresh.fresh(call, snap.asked) or self.fresh.fresh(hunt.leg_uuid, snap.asked):
            return
        if hunt.phase is Phase.OFFERING and call in live:
            # The caller's answer to a callback prompt may have come while no daemon followed
            # the call: rather than leave them parked in silence, they wait in the queue
            # again (music, same place); the offer is not made twice.
            if call in self._resumed:
                self.hunting.drive(hunt, hunt.on_offer_declined(self._now, "resumed"), self._now)
            return
        missing = [u for u in (call, hunt.leg_uuid) if u and u not in live]
        if not missing:
            leg = hunt.leg_uuid
            self.hunting.drive(hunt, hunt.on_resync(live, self._now, snap.apps), self._now)
            if leg and hunt.phase is Phase.BRIDGING and snap.apps.get(leg) == ("uuid_bridge", call):
                self.hunting.on_bridged(call, leg, self._now)  # its CHANNEL_BRIDGE was lost
            return
        gone: set[str] = set()

        def confirmed(uuid: str) -> Callable[[str], None]:
            def apply(_owner: str) -> None:
                gone.add(uuid)
                if hunt.done or self.hunting.hunts.get(call) is not hunt:
                    return
                still = (live | {call, *(u for u in (hunt.leg_uuid,) if u)}) - gone
                self.hunting.drive(hunt, hunt.on_resync(still, self._now), self._now)

            return apply

        for uuid in missing:
            self._confirm(uuid, False, call, snap, confirmed(uuid))

    def _parked(self, row: dict[str, Any], snap: LiveSnapshot) -> None:
        """A channel parked while no daemon listened: a caller waiting for a queue, or a
        desk phone waiting for a feature code's answer. Its variables tell which; without
        this it would wait for the dialplan's timeouts."""
        uuid = str(row.get("uuid", ""))
        if not is_uuid(uuid) or uuid in self.hunting.hunts or uuid in self.hunting.legs:
            return
        if self.fresh.fresh(uuid, snap.asked):
            return  # its CHANNEL_PARK is being handled
        job = self.io.new_uuid()
        expression = "|".join("${%s}" % name for name in _ADOPT_VARS)
        if self.io.bgapi(f"eval uuid:{uuid} {expression}", job, track=False):
            self._checks[job] = lambda text, r=row: self._adopt(r, text)

    def _adopt(self, row: dict[str, Any], text: str) -> None:
        uuid = str(row.get("uuid", ""))
        values = dict(zip(_ADOPT_VARS, text.split("|"), strict=False))
        if (
            values.get("ccd_call")
            or uuid in self.hunting.hunts
            or self.fresh.fresh(uuid, time.monotonic())
        ):
            return  # one of our offer legs, or its events came meanwhile
        if self.calls.get(uuid) is not None:
            return  # recorded already: resumed above
        queue, action = values.get("ccd_queue", ""), values.get("ccd_action", "")
        now = self._now
        if action:
            decoded: Any = ev.FeatureCode(
                uuid, values.get("ccd_agent_ext", ""), action, values.get("ccd_digits", ""),
                values.get("ccd_dialed", ""),
            )  # fmt: skip
            handler: Callable[[Any, float], None] = self.on_feature_code
        elif queue:
            variables = {k: v for k in ("ccd_arrived", "ccd_direct_agent") if (v := values.get(k))}
            decoded = ev.CallParked(
                uuid=uuid,
                caller_number=str(row.get("cid_num", "")),
                caller_name=str(row.get("cid_name", "")),
                destination=str(row.get("dest", "")),
                queue=queue,
                tags=ev.parse_tags(values.get("ccd_tags", "")),
                variables=variables,
            )
            handler = self.on_parked
        else:
            return
        log.info("call.adopted", call=uuid, queue=queue or None, action=action or None)
        handler(decoded, now)
