"""Entry: a caller to the main number, and a call entering its queue.

The main number parks a moment for the direct-callback look-up (R-STICKY): a caller an agent
recently called goes to that agent first, everyone else on to the IVR menu. A call parked by
a queue extension then becomes a call record in Redis (the customer looked up for the
screen-pop, the queue's and the customer's tags, VIP priority) and its hunt starts. With
Redis down a caller gets music at once and is queued as soon as Redis answers again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import structlog

from ccd.config import Config
from ccd.core import events as ev
from ccd.core.callback import CallbackRequest
from ccd.core.customer import Customer, implied_tags
from ccd.core.hunt import Hunt
from ccd.core.queue import QueueRules
from ccd.core.screenpop import caller_id_name
from ccd.core.sticky import CustomerCall
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.store.agent import AgentRepository
from ccd.store.call import CallRecord, CallRepository
from ccd.store.dnc import DncList
from ccd.store.redis_store import RedisUnavailable
from ccd.store.sticky import StickyStore

log = structlog.get_logger()

#: Priority points a VIP customer's call gains in its queue.
VIP_PRIORITY_BOOST = 10


class Entry:
    def __init__(
        self,
        *,
        config: Config,
        io: CallIo,
        agents: AgentRepository,
        calls: CallRepository,
        hunting: Hunting,
        sticky: StickyStore | None = None,
        dnc: DncList | None = None,
    ) -> None:
        self.config = config
        self.io = io
        self.agents = agents
        self.calls = calls
        self.hunting = hunting
        self.sticky = sticky
        self.dnc = dnc
        self._deferred: dict[str, ev.CallParked] = {}  # callers parked while Redis was down

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

    # ------------------------------------------------------------------ Redis down
    def defer(self, parked: ev.CallParked) -> None:
        """Redis is down as a caller arrives: music now, queued as soon as Redis is back.

        The caller is never left in silence, and nothing is lost; the dialplan's
        sched_transfer to voicemail remains the last resort.
        """
        if parked.uuid in self._deferred:
            return
        self._deferred[parked.uuid] = parked
        if self.config.routing.moh:
            self.io.send_api(f"uuid_broadcast {parked.uuid} {self.config.routing.moh} aleg")
        log.warning("call.queue_deferred", call=parked.uuid, queue=parked.queue)

    def forget(self, uuid: str) -> None:
        """The caller hung up: a deferred entry is dropped."""
        self._deferred.pop(uuid, None)

    def retry_deferred(self, now: float) -> None:
        for uuid, parked in list(self._deferred.items()):
            self.on_parked(parked, now)  # RedisUnavailable propagates: try next tick
            self._deferred.pop(uuid, None)

    # ------------------------------------------------------------------ the main number
    def on_entry(self, e: ev.EntryParked, now: float) -> None:
        """A caller to a main number: to the bound agent first (direct callback), else on
        to the menu. Both go through the dialplan (sendmsg runs them in order on the
        channel): the queue extension arms its own voicemail safety and sets ccd_queue."""
        if not self.io.lease(f"chan.{e.uuid}"):
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

    def _direct_agent(self, e: ev.EntryParked, now: float) -> str | None:
        """The agent a live binding sends this caller to (R-STICKY); None: the menu.

        The customer's call is recorded first (type 4 bindings are renewed by it)."""
        if self.sticky is None:
            return None
        if self.dnc is not None and self.dnc.is_listed(e.caller_number):
            return None  # a do-not-contact customer is not routed by a binding (R-DISPO)
        try:
            self.sticky.record(CustomerCall(e.caller_number, now), now)
            agent_id = self.sticky.route(e.caller_number, now)
        except (RedisUnavailable, ValueError) as exc:
            log.warning("sticky.lookup_failed", call=e.uuid, error=str(exc))
            return None
        if agent_id is not None and self.agents.get(agent_id) is None:
            return None  # the agent was removed: the binding leads nowhere
        return agent_id

    # ------------------------------------------------------------------ the queue
    def on_parked(self, e: ev.CallParked, now: float) -> None:
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
        if not self.io.lease(f"call.{uuid}"):
            return  # another daemon took this caller
        customer = self.io.customer(caller_number)
        # Contacts are recorded for known customers only (see Hunting._finish).
        history = self.io.history(caller_number) if customer is not None else []
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
            node=self.io.node_id,
        )
        hunt = Hunt(
            uuid,
            rules,
            self.io.new_uuid,
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
        self.hunting.start(hunt, record, now)

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
