"""No call lost, caller side (issue 13): abandoned callers and voicemail messages become
callback requests, and a caller who comes back closes their abandoned one.

The rules are :mod:`ccd.core.recovery`; this part feeds them and stores what they decide,
all in the step's unit of work (:attr:`ccd.engine.io.CallIo.batch`):

* a queue call that ends abandoned (:meth:`Recovery.call_abandoned`, called by
  :mod:`ccd.engine.hunting` with the hunt's ``call.abandoned`` fact as the call is finished);
* a message left in a queue's voicemail (:meth:`Recovery.on_voicemail`, mod_voicemail's
  ``vm::maintenance`` / ``leave-message`` event; the box's queue is the call's ``ccd_queue``
  when that queue uses the box, else the first queue, by name, whose ``voicemail`` it is);
* a number entering a queue (:mod:`ccd.engine.entry`) or bridged to an agent
  (:mod:`ccd.engine.hunting`): :meth:`Recovery.returned` closes its pending abandoned
  requests, logged ``callback.abandoned_closed`` with ``why`` = ``called_again`` / ``served``.

A candidate the queue's settings and the number rules allow costs two reads (the number's
do-not-call entry and open requests) and one write, in follow-up rounds of the same unit of
work. The request's id comes from the call (``ab-<uuid>``) or the message (``vm-<uuid>``), so
two daemons receiving the same voicemail event store it once. Log lines: ``callback.stored``
(``reason=abandoned|voicemail``, from the store), ``callback.not_stored`` (``why``),
``callback.abandoned_closed``; each with the call uuid, the queue and the number.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from ccd.config import Config
from ccd.config.rules import number_rules_from_config, open_limits_from_config
from ccd.core import events as ev
from ccd.core.callback import CallbackRequest, OpenLimitReached, Reason, new_request
from ccd.core.commands import Fact
from ccd.core.queue import queue_order_key
from ccd.core.recovery import (
    Decision,
    RecoveryPolicy,
    abandoned_candidate,
    close,
    own_number,
    request_id,
    settle,
    to_close,
    voicemail_candidate,
)
from ccd.engine.io import CallIo
from ccd.store.batch import Batch
from ccd.store.call import CallRecord
from ccd.store.callback import CallbackStore

log = structlog.get_logger()


class Recovery:
    def __init__(self, *, config: Config, io: CallIo, callbacks: CallbackStore) -> None:
        self.io = io
        self.callbacks = callbacks
        self.keys = io.store.keys
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """At start and at a reload (ccd.engine.reconfigure)."""
        self.config = config
        self.number_rules = number_rules_from_config(config)
        # Never a second request for a number with an open one: a cap of one, checked in the
        # store's create script too, so a race between two daemons cannot make two.
        limits = open_limits_from_config(config)
        self.limits = dataclasses.replace(limits, per_caller=min(limits.per_caller or 1, 1))
        # Closing reads the number's open requests at every queue entry: only while some
        # queue makes abandoned requests (those left from before a reload are dialed).
        self.closing = any(q.abandoned_callback for q in config.queues.values())

    def policy(self, queue: str) -> RecoveryPolicy:
        q = self.config.queues.get(queue)
        if q is None:
            return RecoveryPolicy()
        return RecoveryPolicy(q.abandoned_callback, q.abandoned_after, q.voicemail_callback)

    # ------------------------------------------------------------------ abandoned
    def call_abandoned(self, record: CallRecord, fact: Fact, now: float, batch: Batch) -> None:
        """A queue call ended with the hunt's ``call.abandoned`` fact (phase, waited)."""
        candidate = abandoned_candidate(
            self.policy(record.queue),
            phase=str(fact.data.get("phase", "")),
            waited=float(fact.data.get("waited") or 0.0),
            caller_number=record.caller_number,
            rules=self.number_rules,
        )
        order_key = queue_order_key(record.priority, record.entered_at or now)
        self._store(Reason.ABANDONED, candidate, record.uuid, record.queue, order_key,
                    record.caller_number, now, batch)  # fmt: skip

    # ------------------------------------------------------------------ voicemail
    def box_queue(self, box: str, call_queue: str) -> str | None:
        """The queue a message in ``box`` belongs to (the call's own when it uses the box)."""
        queues = self.config.queues
        own = queues.get(call_queue)
        if own is not None and own.voicemail == box:
            return call_queue
        return next((name for name in sorted(queues) if queues[name].voicemail == box), None)

    def on_voicemail(self, e: ev.VoicemailLeft, now: float) -> None:
        queue = self.box_queue(e.box, e.queue)
        if queue is None:
            log.info("callback.not_stored", reason="voicemail", why="no_queue", box=e.box,
                     call_uuid=e.uuid, number=e.caller_number)  # fmt: skip
            return
        q = self.config.queues[queue]
        candidate = voicemail_candidate(
            self.policy(queue), caller_number=e.caller_number, rules=self.number_rules
        )
        order_key = queue_order_key(q.priority, now)
        self._store(Reason.VOICEMAIL, candidate, e.uuid, queue, order_key, e.caller_number, now,
                    self.io.batch)  # fmt: skip

    # ------------------------------------------------------------------ storing
    def _store(
        self,
        reason: Reason,
        candidate: Decision,
        call_uuid: str,
        queue: str,
        order_key: float,
        raw_number: str,
        now: float,
        batch: Batch,
    ) -> None:
        def skipped(why: str) -> None:
            log.info("callback.not_stored", reason=str(reason), why=why, call_uuid=call_uuid,
                     queue=queue, number=raw_number)  # fmt: skip

        number = candidate.number
        if number is None or not candidate.store:
            if candidate.why != "off":  # a queue without the feature stays quiet
                skipped(candidate.why)
            return
        listed: list[bool] = []

        def decide(open_requests: Any) -> None:
            final = settle(candidate, do_not_call=listed[0], open_requests=int(open_requests))
            if not final.store:
                return skipped(final.why)
            q = self.config.queues.get(queue)
            request = new_request(
                request_id(reason, call_uuid),
                number,
                queue,
                created_at=now,
                order_key=order_key,
                caller_uuid=call_uuid,
                strategy=q.callback_strategy if q else "active",
                caller_number=number,
                reason=reason,
            )
            self.callbacks.create_op(batch, request, limits=self.limits, then=stored)
            return None

        def stored(outcome: CallbackRequest | OpenLimitReached | None) -> None:
            if isinstance(outcome, CallbackRequest):  # the store logged it: count it here
                data = {"callback": outcome.id, "queue": outcome.queue, "reason": str(reason)}
                self.io.count(Fact("callback.stored", data), now)
            if isinstance(outcome, OpenLimitReached):
                # per_caller: an open request appeared since the read (another daemon's)
                skipped("open_request" if outcome.scope == "per_caller" else outcome.scope)

        batch.command("EXISTS", self.keys.dnc(number), then=lambda n: listed.append(bool(n)))
        batch.command("SCARD", self.keys.callback_open(number), then=decide)

    # ------------------------------------------------------------------ coming back
    def returned(self, raw_number: str, call_uuid: str, queue: str, why: str, batch: Batch) -> None:
        """The number entered a queue (``called_again``) or was bridged to an agent
        (``served``): its pending abandoned requests are closed."""
        if not self.closing:
            return
        number = own_number(raw_number, self.number_rules).number
        if number is None:
            return  # withheld or refused: no request can be this number's

        def closed(request: CallbackRequest) -> None:
            log.info("callback.abandoned_closed", callback=request.id, why=why,
                     call_uuid=call_uuid, queue=queue, number=number,
                     abandoned_call=request.caller_uuid)  # fmt: skip

        self.callbacks.close_op(
            batch, number, lambda found: to_close(found, number), lambda r: close(r, why), closed
        )
