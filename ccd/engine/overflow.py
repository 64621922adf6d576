"""Overflow (R-OVERFLOW): the callback offer and the capture of the number to call back.

A caller still waiting at the queue's overflow time hears the offer (the hunt's OFFERING
phase); each answer to a prompt (freeswitch_conf's ``ccd_cb_*``) arrives here as a
``PromptDone``. Every path either moves the caller to the next prompt, stores the request
(and only then plays "we will call you back"), or puts them back in the queue with their
original place: nobody is left in silence or dropped.
"""

from __future__ import annotations

import structlog

from ccd.config import Config
from ccd.config.rules import number_rules_from_config, open_limits_from_config
from ccd.core import events as ev
from ccd.core.callback import NumberRefused, OpenLimitReached, check_number, new_request
from ccd.core.commands import Fact
from ccd.core.hunt import Hunt, Phase
from ccd.core.numbers import try_normalize
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.store.call import CallRecord
from ccd.store.callback import CallbackStore
from ccd.store.redis_store import RedisUnavailable

log = structlog.get_logger()


class Overflow:
    #: Refused numbers a caller may type before they are kept waiting instead.
    MAX_NUMBER_REFUSALS = 3

    def __init__(
        self, *, config: Config, io: CallIo, hunting: Hunting, callbacks: CallbackStore
    ) -> None:
        self.config = config
        self.io = io
        self.hunting = hunting
        self.callbacks = callbacks
        self.number_rules = number_rules_from_config(config)

    def apply_config(self, config: Config) -> None:
        """A reload (ccd.engine.reconfigure): the callback number rules again."""
        self.number_rules = number_rules_from_config(config)

    def on_prompt(self, e: ev.PromptDone, now: float) -> None:
        """One step of the offer dialogue; the prompts are freeswitch_conf's ccd_cb_*."""
        hunt, record = self.hunting.hunts.get(e.uuid), self.hunting.records.get(e.uuid)
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
                self.io.execute(e.uuid, "set", f"ccd_cb_refusal={refused.reason}")
                return self._prompt(e.uuid, "ccd_cb_refused")
            # Read back what they typed (digits only: FreeSWITCH's say reads nothing else).
            self.io.execute(e.uuid, "set", "ccd_cb_number=" + "".join(filter(str.isdigit, typed)))
            return self._prompt(e.uuid, "ccd_cb_readback")
        if e.stage == "readback":
            if values.get("ccd_confirm") == "1" and capture.get("number"):
                return self._store_callback(hunt, record, capture["number"], now)
            return self._prompt(e.uuid, "ccd_cb_enter_number")
        if e.stage == "store_failed":
            return self._keep_waiting(hunt, now, "store_failed")
        return None

    def _prompt(self, uuid: str, extension: str) -> None:
        self.io.execute(uuid, "transfer", f"{extension} XML {self.io.context}")

    def _keep_waiting(self, hunt: Hunt, now: float, reason: str) -> None:
        self.hunting.drive(hunt, hunt.on_offer_declined(now, reason), now)

    def _store_callback(self, hunt: Hunt, record: CallRecord, number: str, now: float) -> None:
        """Durable first: the caller hears the confirmation only once Redis has it."""
        q = self.config.queues.get(record.queue)
        caller_number = try_normalize(record.caller_number, self.number_rules.default_country_code)
        request = new_request(
            self.io.new_uuid().replace("-", ""),
            number,
            record.queue,
            created_at=now,
            order_key=hunt.order_key,
            caller_uuid=record.uuid,
            strategy=q.callback_strategy if q else "active",
            caller_number=caller_number,
        )
        try:
            # A caller without a usable number of their own (withheld, anonymous) typed the
            # number: it counts against that number's limit and the queue's anonymous cap.
            stored = self.callbacks.create(
                request, limits=open_limits_from_config(self.config), anonymous=not caller_number
            )
        except OpenLimitReached as exc:
            # Never a silent caller: "please keep waiting", then back in the queue with their
            # place (the prompt parks as if they pressed 2; see _offer_step's "offer" stage).
            log.info("callback.refused_limit", call=record.uuid, scope=exc.scope)
            return self._prompt(record.uuid, "ccd_cb_keep_waiting")
        except RedisUnavailable as exc:
            log.error("callback.store_failed", call=record.uuid, error=str(exc))
            return self._prompt(record.uuid, "ccd_cb_store_failed")
        record.capture["request"] = stored.id
        self.io.count(Fact("callback.stored", {"callback": stored.id, "queue": stored.queue}), now)
        self.hunting.drive(hunt, hunt.on_callback_stored(stored.id, now), now)
        self._prompt(record.uuid, "ccd_cb_stored")
        return None
