"""Entry: a caller to the main number, and a call entering its queue.

The main number parks a moment for the direct-callback look-up (R-STICKY): a caller an agent
recently called goes to that agent first, everyone else on to the IVR menu. A call parked by
a queue extension gets music at once and enters its queue in ONE round trip: the customer and
the contact history (the screen-pop) are read, and the routing script takes the call's lease,
stores its record, applies the customer's VIP priority and language tag, and reserves the
first free agent or puts the call in its waiting list (:mod:`ccd.store.routing`). The
originate follows as soon as the answer comes. With Redis down a caller gets music at once
and is queued as soon as Redis answers again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from ccd.config import Config
from ccd.core import events as ev
from ccd.core.callback import CallbackRequest
from ccd.core.commands import sanitize_caller_name
from ccd.core.customer import LANGUAGE_TAG_PREFIX, VIP_PRIORITY_BOOST, Customer, implied_tags
from ccd.core.hunt import Hunt
from ccd.core.queue import QueueRules
from ccd.core.routing import split_tags
from ccd.core.screenpop import caller_id_name
from ccd.core.sticky import CustomerCall
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.engine.recovery import Recovery
from ccd.store.agent import AgentRepository
from ccd.store.call import CallRecord, CallRepository
from ccd.store.customer import CustomerStore
from ccd.store.dnc import DncList
from ccd.store.redis_store import RedisUnavailable
from ccd.store.routing import Routing
from ccd.store.sticky import StickyStore

log = structlog.get_logger()

#: Distinct refused ccd_tags values remembered (each is said once): a bound, not a cache.
MAX_TOLD = 256


class Entry:
    def __init__(
        self,
        *,
        config: Config,
        io: CallIo,
        agents: AgentRepository,
        calls: CallRepository,
        hunting: Hunting,
        customers: CustomerStore | None = None,
        sticky: StickyStore | None = None,
        dnc: DncList | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        self.config = config
        self.recovery = recovery
        self.io = io
        self.agents = agents
        self.calls = calls
        self.hunting = hunting
        self.customers = customers
        self.sticky = sticky
        self.dnc = dnc
        self._deferred: dict[str, ev.CallParked] = {}  # callers parked while Redis was down
        #: Calls whose entry waits for Redis's answer in the unit of work: an event about one
        #: of them has the unit of work sent first (ccd.engine.control).
        self.entering: set[str] = set()
        self._music: set[str] = set()  # deferred callers who already hear music
        self._told_outdated = False
        self._refused_told: set[tuple[str, tuple[str, ...]]] = set()

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
            no_agents=q.no_agents if q else "wait",
            announce_interval=q.announce_interval if q else 0.0,
        )

    # ------------------------------------------------------------------ Redis down
    def defer(self, parked: ev.CallParked) -> None:
        """Redis is down as a caller arrives: music now, queued as soon as Redis is back.

        The caller is never left in silence, and nothing is lost; the dialplan's
        sched_transfer to voicemail remains the last resort.
        """
        if parked.uuid in self._deferred:
            return
        self._deferred[parked.uuid] = parked
        if parked.uuid not in self._music and self.config.routing.moh:
            self._music.add(parked.uuid)
            self.io.send_api(f"uuid_broadcast {parked.uuid} {self.config.routing.moh} aleg")
        log.warning("call.queue_deferred", call=parked.uuid, queue=parked.queue)

    def forget(self, uuid: str) -> None:
        """The caller hung up: a deferred entry is dropped."""
        self._deferred.pop(uuid, None)
        self._music.discard(uuid)

    def take_deferred(self) -> list[ev.CallParked]:
        """The callers deferred so far, to enter again (deferred anew if Redis still fails)."""
        waiting = list(self._deferred.values())
        self._deferred.clear()
        return waiting

    # ------------------------------------------------------------------ the main number
    def on_entry(self, e: ev.EntryParked, now: float) -> None:
        """A caller to a main number: to the bound agent first (direct callback), else on
        to the menu. Both go through the dialplan (sendmsg runs them in order on the
        channel): the queue extension arms its own voicemail safety and sets ccd_queue."""
        if not self.io.lease(f"chan.{e.uuid}"):
            return
        if e.moves_on_after is None and not self._told_outdated:
            self._told_outdated = True  # once: every caller would say it again
            log.warning(
                "entry.dialplan_outdated",
                call=e.uuid,
                hint="the main number's park does not carry ccd_direct_check_s: install "
                "freeswitch_conf/ again, or a daemon late for a caller starts their menu again",
            )
        if ev.fell_through(e):
            # The dialplan sent the caller to the menu already: a transfer now would start
            # it again (the keys they pressed lost). Their call is still recorded.
            self._direct_agent(e, now, route=False)
            log.warning("call.entry_late", call=e.uuid, queue=e.queue, waited=round(e.waited, 3))
            return
        agent_id = self._direct_agent(e, now)
        self.io.execute(e.uuid, "sched_cancel", "")  # the dialplan's fall-through to the menu
        self.io.execute(e.uuid, "set", "ccd_direct_check=false")  # looked up once
        if agent_id is None:
            self.io.execute(e.uuid, "transfer", f"ccd_ivr XML {self.io.context}")
            return
        self.io.execute(e.uuid, "set", f"ccd_direct_agent={agent_id}")
        self.io.execute(e.uuid, "set", f"ccd_arrived={now:.3f}")
        self.io.execute(e.uuid, "transfer", f"ccd_queue_{e.queue} XML {self.io.context}")

    def _direct_agent(self, e: ev.EntryParked, now: float, *, route: bool = True) -> str | None:
        """The agent a live binding sends this caller to (R-STICKY); None: the menu.

        The customer's call is recorded first (type 4 bindings are renewed by it); only
        that when not ``route``."""
        if self.sticky is None:
            return None
        if self.dnc is not None and self.dnc.is_listed(e.caller_number):
            return None  # a do-not-contact customer is not routed by a binding (R-DISPO)
        try:
            self.sticky.record(CustomerCall(e.caller_number, now), now)
            agent_id = self.sticky.route(e.caller_number, now) if route else None
        except (RedisUnavailable, ValueError) as exc:
            log.warning("sticky.lookup_failed", call=e.uuid, error=str(exc))
            return None
        if agent_id is not None and self.agents.get(agent_id) is None:
            return None  # the agent was removed: the binding leads nowhere
        return agent_id

    # ------------------------------------------------------------------ the queue
    def on_parked(self, e: ev.CallParked, now: float) -> None:
        refused = split_tags(e.variables.get("ccd_tags", ""))[1]
        if refused:
            self._tags_refused(e, refused)
        # A direct callback (see on_entry): the bound agent first, and the waiting time
        # (the overflow clock) counts from the moment the call arrived, not from here.
        self.enqueue(
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

    def _tags_refused(self, e: ev.CallParked, refused: tuple[str, ...]) -> None:
        """The dialplan asked for tags no agent can carry (``lang:fr``, ``sales team``): the
        call would have waited for an agent who cannot exist. It is routed on its other
        tags, and the operator told, once per dialplan value (a mistake there is every
        call's)."""
        key = (e.queue, refused)
        if key in self._refused_told:
            return
        if len(self._refused_told) < MAX_TOLD:
            self._refused_told.add(key)
        log.warning("call.tags_refused", call=e.uuid, queue=e.queue,
                    refused=[t[:40] for t in refused[:8]],
                    hint="a tag is 1-32 of a-z 0-9 _ - (ccd_tags, comma-separated); the call "
                    "is routed without these")  # fmt: skip

    def enqueue_callback(self, uuid: str, request: CallbackRequest, boost: int, now: float) -> None:
        """A customer called back (customer-first) who pressed 1: into the queue, ahead."""
        q = self.config.queues.get(request.queue)
        tags = tuple(q.tags) if q else ()
        self.enqueue(uuid, request.queue, tags, request.number, "", "", now, boost=boost)

    def enqueue(
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
        if uuid in self.hunting.hunts:
            return  # parked again (after a bridge ended, a transfer): already ours
        rules = self.queue_rules(queue, tags)
        q = self.config.queues.get(queue)
        priority = (q.priority if q else 0) + boost
        entered = now if entered_at is None else entered_at
        hunt = Hunt(
            uuid,
            rules,
            caller_number=caller_number,
            priority=priority,
            entered_at=entered,
            preferred=preferred,
        )
        record = CallRecord(
            uuid=uuid,
            queue=queue,
            caller_number=caller_number,
            caller_name=caller_name,
            destination=destination,
            tags=list(rules.required_tags),
            entered_at=entered,
            priority=priority,
            node=self.io.node_id,
        )
        start = hunt.start(now)
        for command in start.commands:  # music at once, before Redis answers
            self.io.send(command)
        record.hunt = hunt.to_dict()
        batch = self.io.batch
        screen = _ScreenPop()
        number = self.customers.normalize(caller_number) if self.customers else None
        if self.recovery is not None:  # they called again: an abandoned request is closed
            self.recovery.returned(caller_number, uuid, queue, "called_again", batch)
        if number is not None:
            self.customers.lookup_op(batch, number, screen.found)
            if self.sticky is not None:
                batch.command("EXISTS", self.sticky_key(number), then=screen.bound)
        leg, job = self.io.new_uuid(), self.io.new_uuid()
        op = Routing.enter(
            uuid,
            self.calls.encode(record),
            queue,
            priority,
            entered,
            vip_boost=VIP_PRIORITY_BOOST,
            language_prefix=LANGUAGE_TAG_PREFIX,
            number=number or "",
            leg=leg,
            job=job,
            preferred=preferred or "",
            tags=rules.required_tags,
        )

        def entered_queue(result: Mapping[str, Any]) -> None:
            self.entering.discard(uuid)
            self._entered(hunt, record, screen, result, leg, job, now)

        self.entering.add(uuid)
        batch.route(op, now, entered_queue)

    def sticky_key(self, number: str) -> str:
        return self.calls.keys.sticky(number)

    def _entered(
        self,
        hunt: Hunt,
        record: CallRecord,
        screen: _ScreenPop,
        result: Mapping[str, Any],
        leg: str,
        job: str,
        now: float,
    ) -> None:
        state = result.get("s")
        if state == "taken":
            log.info("call.taken_elsewhere", call=record.uuid, queue=record.queue)
            return
        if state == "known":
            return  # a second park of a call already recorded: resync resumes it
        self._music.discard(record.uuid)
        customer, history = screen.customer, screen.history
        tags = list(result.get("tags") or ())
        wanted = implied_tags(customer) - set(record.tags)
        if wanted and not wanted <= set(tags):
            log.info("call.implied_tags_ignored", call=record.uuid, queue=record.queue,
                     tags=sorted(wanted))  # fmt: skip
        template = self.config.routing.caller_id_template
        args = (template, customer, record.caller_name, record.caller_number, record.queue)
        hunt.caller_display = sanitize_caller_name(caller_id_name(*args, history=history))
        if hunt.preferred:
            hunt.preferred_display = sanitize_caller_name(
                caller_id_name(*args, direct=True, history=history)
            )
        record.customer = None if customer is None else customer.to_dict()
        record.priority, record.tags, record.sticky = int(result["prio"]), tags, screen.sticky
        self.hunting.adopt(hunt, record, history)
        self.hunting.drive(hunt, hunt.on_entered(record.priority, tags), now)
        if result.get("fallback"):
            self.hunting.drive(hunt, hunt.on_sticky_fallback(), now)
        self.hunting.matched(hunt, leg, job, result, now)


class _ScreenPop:
    """What the entry step read about the caller, filled in as the batch answers."""

    __slots__ = ("customer", "history", "sticky")

    def __init__(self) -> None:
        self.customer: Customer | None = None
        self.history: list[dict[str, Any]] = []
        self.sticky = False

    def found(self, customer: Customer | None, history: list[dict[str, Any]]) -> None:
        self.customer, self.history = customer, history

    def bound(self, exists: int) -> None:
        self.sticky = bool(exists)


def _arrival(value: str | None, now: float) -> float:
    """The arrival time a channel variable carries, if it is a sane one, else ``now``."""
    try:
        arrived = float(value) if value else now
    except ValueError:
        return now
    return arrived if now - 3600 <= arrived <= now else now
