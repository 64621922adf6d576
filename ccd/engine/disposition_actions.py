"""What disposition codes do (R-DISPO): the actions of the codes new on a call.

:func:`ccd.core.disposition.plan_actions` decides which actions the new codes carry; each
runs here on its own, so one failing does not stop the others (``disposition.action_failed``):

- ``dnc``: :meth:`ccd.store.dnc.DncList.add` for the code's period (a Redis TTL; scaled by
  ``daemon.time_scale``);
- ``callback``: a callback request due ``callback_delay`` seconds from now (daemon time) in
  the call's queue, else ``disposition.callback_queue``; the number must pass the callback
  number rules and the per-number limit (:meth:`ccd.store.callback.CallbackStore.create`);
  its id is derived from the call, so a repeated action cannot make a second request;
- ``webhook``: ``WebhookSender.send`` (a queue in memory: never blocks, retried and logged
  by the sender);
- ``final``: the number's open callback requests are cancelled (no further automatic
  dialing); the dialer itself skips numbers on the do-not-call list.
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

import structlog

from ccd.config import Config
from ccd.config.rules import open_limits_from_config
from ccd.core.callback import (
    CallbackError,
    NumberRefused,
    NumberRules,
    OpenLimitReached,
    check_number,
    new_request,
)
from ccd.core.disposition import CodeSet, Disposition
from ccd.core.disposition_actions import (
    AddToDnc,
    DispositionSettings,
    MarkFinal,
    PostWebhook,
    ScheduleCallback,
    Skipped,
    plan_actions,
)
from ccd.core.queue import queue_order_key
from ccd.store.batch import Batch
from ccd.store.callback import CallbackStore
from ccd.store.dnc import DncList
from ccd.store.redis_store import RedisUnavailable, Store, unavailable_as_domain_error
from ccd.store.report import ReportStore

log = structlog.get_logger()

_CALLBACK_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,60}$")


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of setting codes on a call: ``new`` were not on it before, ``carried`` is
    every code it carries now, ``actions`` one line per action done or skipped."""

    call_uuid: str
    codes: tuple[str, ...]
    new: tuple[str, ...]
    carried: tuple[str, ...]
    actions: tuple[str, ...]


class DispositionActions:
    def __init__(
        self,
        *,
        config: Config,
        codes: CodeSet,
        settings: DispositionSettings,
        store: Store,
        reports: ReportStore,
        dnc: DncList,
        callbacks: CallbackStore | None,
        webhook: Any,
        number_rules: NumberRules,
    ) -> None:
        self.config = config
        self.codes = codes
        self.settings = settings
        self.store = store
        self.reports = reports
        self.dnc = dnc
        self.callbacks = callbacks
        self.webhook = webhook
        self.number_rules = number_rules
        self.callback_queue = config.disposition.callback_queue or None

    def apply(self, disposition: Disposition, now: float) -> Applied:
        """Record the codes (idempotent) and run the actions of those that are new."""
        new = self.reports.record(disposition)
        carried = self.reports.codes_of(disposition.call_uuid)
        return self.act(disposition, new, carried, now)

    def apply_op(self, batch: Batch, disposition: Disposition, now: float) -> None:
        """:meth:`apply` for a call that just ended, its record in ``batch`` (the hangup's
        unit of work): it carries no other code yet, so the new ones are all it carries."""

        def recorded(new: tuple[str, ...]) -> None:
            self.act(disposition, new, new, now)

        self.reports.record_op(batch, disposition, recorded)

    def act(
        self, disposition: Disposition, new: tuple[str, ...], carried: tuple[str, ...], now: float
    ) -> Applied:
        """Run the actions of the codes ``new`` to the call (``carried``: all it has)."""
        if not new:
            return Applied(disposition.call_uuid, disposition.codes, (), carried, ())
        planned = plan_actions(disposition, self.codes, self.settings, new=new, all_codes=carried)
        lines = []
        for action in planned:
            try:
                lines.append(self._run(action, disposition, now))
            except (RedisUnavailable, CallbackError, ValueError) as exc:
                log.warning(
                    "disposition.action_failed",
                    call=disposition.call_uuid,
                    action=type(action).__name__,
                    error=str(exc),
                )
                lines.append(f"failed {type(action).__name__}: {exc}")
        return Applied(disposition.call_uuid, disposition.codes, new, carried, tuple(lines))

    def _run(self, action: Any, disposition: Disposition, now: float) -> str:
        call = disposition.call_uuid
        if isinstance(action, AddToDnc):
            self.dnc.add(action.number, action.ttl_seconds, action.reason, action.by)
            days = action.ttl_seconds / 86400
            return f"{action.number} put on the do-not-call list for {days:g} days"
        if isinstance(action, MarkFinal):
            cancelled = self._cancel_callbacks(action.number, now)
            log.info("disposition.final", call=call, number=action.number, cancelled=cancelled)
            return (
                f"{action.number}: no further automatic dialing "
                f"({len(cancelled)} open callbacks cancelled)"
            )
        if isinstance(action, ScheduleCallback):
            return self._schedule_callback(action, now)
        if isinstance(action, PostWebhook):
            if self.webhook is None:
                log.warning(
                    "disposition.action_skipped", call=call, action="webhook", why="no sender"
                )
                return "skipped webhook: no webhook sender"
            self.webhook.send(action.payload)
            return "webhook queued"
        assert isinstance(action, Skipped)
        log.info("disposition.action_skipped", call=call, action=action.action, code=action.code,
                 why=action.why)  # fmt: skip
        return f"skipped {action.action} of {action.code}: {action.why}"

    def _schedule_callback(self, action: ScheduleCallback, now: float) -> str:
        queue = action.queue or self.callback_queue
        why = None
        if self.callbacks is None:
            why = "no callback store"
        elif queue is None:
            why = "the call has no queue and disposition.callback_queue is not set"
        if why is not None:
            log.info(
                "disposition.action_skipped", call=action.call_uuid, action="callback", why=why
            )
            return f"skipped callback of {action.reason}: {why}"
        try:
            number = check_number(action.number, self.number_rules)
        except NumberRefused as exc:
            log.info("disposition.action_skipped", call=action.call_uuid, action="callback",
                     why=exc.reason)  # fmt: skip
            return f"skipped callback of {action.reason}: {exc}"
        q = self.config.queues.get(queue)
        due = now + action.delay
        # One request per call and code: an action run twice finds the first one.
        request_id = (
            f"fu-{action.call_uuid}"
            if _CALLBACK_ID_RE.match(action.call_uuid)
            else f"fu-{uuidlib.uuid5(uuidlib.NAMESPACE_URL, action.call_uuid)}"
        )
        request = new_request(
            request_id,
            number,
            queue,
            created_at=now,
            order_key=queue_order_key(q.priority if q else 0, due),
            caller_uuid=action.call_uuid,
            strategy=q.callback_strategy if q else "active",
        )
        request = dataclasses.replace(request, next_due_at=due)
        try:
            stored = self.callbacks.create(request, limits=open_limits_from_config(self.config))
        except OpenLimitReached as exc:
            log.info("disposition.action_skipped", call=action.call_uuid, action="callback",
                     why="open_limit")  # fmt: skip
            return f"skipped callback of {action.reason}: {exc}"
        log.info("disposition.callback", call=action.call_uuid, callback=stored.id, number=number,
                 queue=queue, due_at=stored.next_due_at)  # fmt: skip
        return f"callback {stored.id} to {number} due in {action.delay:g} s"

    def _cancel_callbacks(self, number: str, now: float) -> list[str]:
        """Cancel the open callback requests that would dial ``number``."""
        if self.callbacks is None:
            return []
        with unavailable_as_domain_error("disposition final"):
            ids = sorted(m.decode() for m in self.store.client.smembers(
                self.store.keys.callback_open(number)))  # fmt: skip
        cancelled = []
        for request_id in ids:
            request = self.callbacks.get(request_id)
            # The open set also holds requests this number asked for another number.
            if request is None or request.number != number or not request.is_open:
                continue
            try:
                self.callbacks.cancel(request_id, now)
            except CallbackError as exc:  # changed meanwhile (done, already cancelled)
                log.info("disposition.cancel_skipped", callback=request_id, error=str(exc))
                continue
            cancelled.append(request_id)
        return cancelled
