"""Dispositions in the call path (R-DISPO, issue 6): what happens when a call ends, when an
agent keys a code, and before an agent's own call goes out.

The pure rules are :mod:`ccd.core.disposition`; storage is :mod:`ccd.store.report` (codes, counters),
:mod:`ccd.store.dnc`, :mod:`ccd.store.callback` and :mod:`ccd.store.customer`. :class:`Dispositions` joins
them for the daemon's call path (``ccd.service`` calls it) and for ``ccd dispo set``.

Theory of operation
-------------------
* A finished call (:meth:`Dispositions.call_finished` for queue calls,
  :meth:`Dispositions.outside_call_finished` for an agent's own call) leaves three things:

  - its automatic codes (:func:`ccd.core.disposition.automatic_disposition`, ``set_by="system"``):
    abandoned (with the wait), left_voicemail, and no_answer / busy from the offers when nobody
    took the call, or from the customer leg of an agent's own call; recorded in the
    ReportStore and their actions run;
  - a contact history entry for the caller's number (direction, queue, agent, times, outcome,
    ``codes``), newest first (:class:`ccd.store.customer.CustomerStore`), for every usable number;
  - a call-info record ``dispo_info:<call>`` (number, agent, queue, direction, end) and, for
    the agent who talked (or dialled), the pointer ``dispo_last:<agent>`` = that call: the
    agent's most recent finished call. Both expire after ``CALL_INFO_TTL_MS`` (24 h, like the
    call records). The info key is written with ``SET NX``: a call finished twice (a daemon
    resuming a half-finished call) gets one history entry, and its codes are idempotent anyway.

* An agent's code (:meth:`Dispositions.agent_code`, the desk phone's ``*7 NN #``) applies to
  the call named, else to the agent's most recent finished call, during wrap-up and after it.
  Recorded with ``set_by="agent:<id>"`` and the time; a code the call already carries is
  accepted again without effect (ReportStore answers which codes are new, and only new codes
  run actions). The codes are added to the call's history entry. Unknown codes, letters,
  three digits, no call to apply it to and Redis down are refused with a one-line reason.

* Actions of new codes (:func:`ccd.core.disposition.plan_actions`), each on its own so one failing
  does not stop the others (``dispo.action_failed``):

  - ``dnc``: :meth:`ccd.store.dnc.DncList.add` for the code's period (a Redis TTL; scaled by
    ``daemon.time_scale``);
  - ``callback``: a callback request due ``callback_delay`` seconds from now (daemon time) in
    the call's queue, else ``dispositions.callback_queue``; the number must pass the callback
    number rules and the per-number limit (:meth:`ccd.store.callback.CallbackStore.create`); its
    id is derived from the call, so a repeated action cannot make a second request;
  - ``webhook``: ``WebhookSender.send`` (a queue in memory: never blocks, retried and logged
    by the sender);
  - ``final``: the number's open callback requests are cancelled (no further automatic
    dialing); the dialer itself skips numbers on the do-not-call list.

* The agents' own calls (dialplan ``ccd_agents.xml``) park with ``ccd_action=outbound_check``;
  :meth:`Dispositions.outbound_allowed` answers whether the number may be dialled. When the list
  cannot be read (Redis down) the call is allowed and ``dispo.dnc_check_failed`` logged: an
  agent's manual call is a person's decision, and the dialplan's own safety (no daemon at all)
  lets the call out after a moment too; see ``ccd_agents.xml``.

* Nothing here raises into the call path: ``call_finished`` / ``outside_call_finished`` log
  ``dispo.step_failed`` and go on; ``agent_code`` answers ``(False, reason)``.
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import structlog

from ccd.config.rules import number_rules_from_config
from ccd.core.callback import (
    CallbackError,
    NumberRefused,
    OpenLimitReached,
    check_number,
    new_request,
)
from ccd.core.commands import Fact
from ccd.core.disposition import (
    AddToDnc,
    CallFacts,
    Code,
    Disposition,
    DispositionError,
    DispositionSettings,
    MarkFinal,
    PostWebhook,
    ScheduleCallback,
    Skipped,
    automatic_disposition,
    parse_entry,
    plan_actions,
)
from ccd.core.hunt import queue_order_key
from ccd.core.numbers import try_normalize
from ccd.core.report import zone
from ccd.store.call import FINISHED_TTL_MS, CallRecord, CallRepository
from ccd.store.customer import CONTACT_SCHEMA_VERSION
from ccd.store.dnc import DncList
from ccd.store.redis_store import (
    Codec,
    RedisUnavailable,
    SchemaMismatch,
    Store,
    unavailable_as_domain_error,
)
from ccd.store.report import ReportStore

if TYPE_CHECKING:
    from ccd.config import Config
    from ccd.daemon import Daemon

__all__ = [
    "CALL_INFO_TTL_MS",
    "Applied",
    "CallInfo",
    "Dispositions",
    "NoCall",
    "build_dispositions",
]

log = structlog.get_logger()

#: How long a finished call can still be given codes by its agent (as the call records).
CALL_INFO_TTL_MS = FINISHED_TTL_MS
_CALLBACK_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,60}$")
_HISTORY_TRIES = 5


class NoCall(DispositionError):
    """There is no finished call to set the codes on."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a code set later needs of a finished call. ``number`` is normalised or None."""

    call_uuid: str
    number: str | None
    agent: str | None
    queue: str | None
    direction: str  # "inbound" (a queue call) or "outbound" (an agent's own call)
    ended_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "call": self.call_uuid,
            "number": self.number,
            "agent": self.agent,
            "queue": self.queue,
            "direction": self.direction,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallInfo:
        return cls(
            call_uuid=str(data["call"]),
            number=data.get("number"),
            agent=data.get("agent"),
            queue=data.get("queue"),
            direction=str(data.get("direction") or "inbound"),
            ended_at=float(data.get("ended_at") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of setting codes on a call: ``new`` were not on it before, ``carried`` is
    every code it carries now, ``actions`` one line per action done or skipped."""

    call_uuid: str
    codes: tuple[str, ...]
    new: tuple[str, ...]
    carried: tuple[str, ...]
    actions: tuple[str, ...]


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


def _result(status: str, facts: Sequence[Fact]) -> str:
    """The call's end as ccd.core.hunt names it; the facts are more specific than a status."""
    names = {fact.name for fact in facts}
    if "call.abandoned" in names:
        return "abandoned"
    if "call.voicemail" in names:
        return "voicemail"
    if "call.unanswered" in names:
        return "hangup"
    return status or "done"


def _agent_outcomes(facts: Sequence[Fact]) -> tuple[str, ...]:
    # agent.no_answer carries the release outcome (busy, rejected...); a ring timeout has none.
    return tuple(
        str(fact.data.get("outcome") or "no_answer")
        for fact in facts
        if fact.name == "agent.no_answer"
    )


class Dispositions:
    """The call path's side of R-DISPO over one Redis (see the module doc)."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        customers: Any,
        callbacks: Any,
        webhook: Any,
        new_uuid: Callable[[], str] = _new_uuid,
        now: Callable[[], float],
    ) -> None:
        section = config.dispositions
        self.config = config
        self.codes = section.codes
        self.settings = DispositionSettings(
            dnc_days=section.dnc_days,
            callback_delay=section.callback_delay,
            webhook_url=section.webhook_url or None,
        )
        self.callback_queue = section.callback_queue or None
        self.refuse_dnc_outbound = section.refuse_dnc_outbound
        self.store = store
        self.customers = customers
        self.callbacks = callbacks
        self.webhook = webhook
        self.new_uuid = new_uuid
        self.reports = ReportStore(
            store, tz=zone(section.timezone), retention_days=section.retention_days
        )
        self.dnc = DncList(store, time_scale=config.daemon.time_scale, clock=now)
        self._calls = CallRepository(store)
        self._keys = store.keys
        self._contact_codec = Codec(CONTACT_SCHEMA_VERSION)
        self._number_rules = number_rules_from_config(config)

    # ------------------------------------------------------------------ finished calls
    def call_finished(self, record: CallRecord, facts: Sequence[Fact], now: float) -> None:
        """A queue call ended (``ccd.service._finish``). ``facts``: the hunt's facts of the
        call (agent.no_answer, call.abandoned, call.voicemail...), as many as the caller kept;
        ``record.status`` is the hunt's result."""
        result = _result(record.status, facts)
        number = try_normalize(record.caller_number)
        agent = record.agent if result == "bridged" else None  # a ringing offer is not a talk
        queue = record.queue or None
        wait = None
        if result == "abandoned" and record.entered_at:
            wait = max(0.0, (record.ended_at or now) - record.entered_at)
        info = CallInfo(record.uuid, number, agent, queue, "inbound", now)
        first = self._guard("remember", record.uuid, self._remember, info)
        auto = automatic_disposition(
            CallFacts(result=result, agent_outcomes=_agent_outcomes(facts), wait=wait),
            self.codes,
            call_uuid=record.uuid,
            at=now,
            agent=agent,
            queue=queue,
            number=number,
        )
        if auto is not None:
            self._guard("record", record.uuid, self._apply, auto, now)
        if number is not None and first is not False:
            entry: dict[str, Any] = {
                "at": record.entered_at or now,
                "ended_at": now,
                "direction": "inbound",
                "queue": record.queue,
                "agent": agent,
                "outcome": result,
                "call": record.uuid,
                "codes": list(auto.codes) if auto else [],
            }
            if wait is not None:
                entry["wait"] = round(wait, 3)
            self._guard("history", record.uuid, self._add_contact, number, entry)

    def outside_call_finished(
        self,
        agent_id: str,
        number: str,
        answered: bool,
        billsec: int,
        now: float,
        *,
        call_uuid: str | None = None,
        cause: str | None = None,
    ) -> None:
        """An agent's own call ended (``ccd.service._outside_call_ended``). ``cause``: the
        agent leg's ``originate_disposition`` (USER_BUSY, NO_ANSWER...) when known; an
        unanswered call without one counts as no answer. ``call_uuid``: the agent leg's uuid
        (a fresh id when not given)."""
        normalized = try_normalize(number)
        uuid = call_uuid or self.new_uuid()
        customer_cause = None
        if not answered:
            customer_cause = cause if cause and cause.upper() != "SUCCESS" else "NO_ANSWER"
        info = CallInfo(uuid, normalized, agent_id, None, "outbound", now)
        first = self._guard("remember", uuid, self._remember, info)
        auto = automatic_disposition(
            CallFacts(
                result="bridged" if answered else "unanswered", customer_cause=customer_cause
            ),
            self.codes,
            call_uuid=uuid,
            at=now,
            agent=agent_id,
            number=normalized,
        )
        if auto is not None:
            self._guard("record", uuid, self._apply, auto, now)
        if normalized is not None and first is not False:
            outcome = "answered" if answered else (auto.codes[0] if auto else "unanswered")
            entry = {
                "at": now - max(0, int(billsec or 0)),
                "ended_at": now,
                "direction": "outbound",
                "queue": None,
                "agent": agent_id,
                "outcome": outcome,
                "call": uuid,
                "codes": list(auto.codes) if auto else [],
                "billsec": max(0, int(billsec or 0)),
            }
            self._guard("history", uuid, self._add_contact, normalized, entry)

    # ------------------------------------------------------------------ codes from people
    def agent_code(
        self, agent_id: str, digits: str, call_uuid: str | None, now: float
    ) -> tuple[bool, str]:
        """The desk phone's ``*7 NN #`` (or the API): (True, the code's label) or (False, a
        one-line reason). Applies to ``call_uuid``, else the agent's most recent finished
        call."""
        try:
            code = parse_entry(digits, self.codes)
            self.set_codes(
                [code], set_by=f"agent:{agent_id}", now=now, call_uuid=call_uuid, agent_id=agent_id
            )
        except DispositionError as exc:
            log.info("dispo.refused", agent=agent_id, call=call_uuid, reason=str(exc))
            return False, str(exc)
        except RedisUnavailable as exc:
            log.warning("dispo.refused", agent=agent_id, call=call_uuid, reason=str(exc))
            return False, "the code cannot be stored now (Redis unavailable)"
        return True, code.label

    def set_codes(
        self,
        codes: Sequence[Code],
        *,
        set_by: str,
        now: float,
        call_uuid: str | None = None,
        agent_id: str | None = None,
    ) -> Applied:
        """Set ``codes`` on ``call_uuid``, else on ``agent_id``'s most recent finished call,
        and run the actions of those that are new. Raises :class:`NoCall` /
        DispositionError for a request that cannot be done, RedisUnavailable."""
        info = self._target(call_uuid, agent_id)
        disposition = Disposition(
            info.call_uuid,
            tuple(code.name for code in codes),
            set_by,
            now,
            agent=info.agent or agent_id,
            queue=info.queue,
            number=info.number,
        )
        applied = self._apply(disposition, now)
        if applied.new and info.number is not None:
            self._guard(
                "history", info.call_uuid, self._add_codes, info.number, info.call_uuid, applied.new
            )
        log.info(
            "dispo.set",
            call=info.call_uuid,
            codes=list(disposition.codes),
            new=list(applied.new),
            set_by=set_by,
            agent=disposition.agent,
        )
        return applied

    def find_call(self, call_uuid: str) -> CallInfo | None:
        """A finished call that codes can be set on, or None. DispositionError when the text
        cannot be a call uuid."""
        try:
            key = self._keys.ref("dispo_info", call_uuid)
        except ValueError:
            raise DispositionError(f"not a call uuid: {call_uuid!r}"[:120]) from None
        stored = self.store.get(key)
        if stored is not None:
            return CallInfo.from_dict(stored)
        record = self._calls.get(call_uuid)  # a call finished before this module knew it
        if record is None:
            return None
        return CallInfo(
            record.uuid,
            try_normalize(record.caller_number),
            record.agent,
            record.queue or None,
            "inbound",
            record.ended_at or 0.0,
        )

    def last_call(self, agent_id: str) -> CallInfo | None:
        """The agent's most recent finished call (kept ``CALL_INFO_TTL_MS``), or None."""
        try:
            key = self._keys.ref("dispo_last", agent_id)
        except ValueError:
            return None
        with unavailable_as_domain_error("dispo last call"):
            raw = self.store.client.get(key)
        return None if raw is None else self.find_call(raw.decode())

    def set_api_codes(
        self, call_uuid: str, refs: Sequence[Any], by: str, now: float
    ) -> dict[str, Any]:
        """The HTTP API: codes (numbers or names) on a finished call. ValueError for a bad
        code (naming it), LookupError for an unknown call."""
        if not refs or len(refs) > 16:
            raise ValueError("codes: give 1 to 16 codes")
        codes = []
        for ref in refs:
            if not isinstance(ref, str) or not ref or len(ref) > 64:
                raise ValueError(f"codes: not a code: {str(ref)[:40]!r}")
            codes.append(self.codes.resolve(ref))  # BadEntry / UnknownCode: ValueErrors
        try:
            applied = self.set_codes(codes, set_by=f"api:{by}", now=now, call_uuid=call_uuid)
        except NoCall as exc:
            raise LookupError(str(exc)) from None
        return dataclasses.asdict(applied)

    def codes_view(self, call_uuid: str) -> dict[str, Any]:
        """The call's codes for the HTTP/JSON view: ``{"call", "codes": [{name, label}]}``."""
        names = self.reports.codes_of(call_uuid)
        return {
            "call": call_uuid,
            "codes": [{"name": name, "label": self.codes.label(name)} for name in names],
        }

    # ------------------------------------------------------------------ agents' own calls
    def outbound_allowed(self, number: str) -> bool:
        """May an agent dial ``number`` (the ``outbound_check`` park)? False only when it is
        on the do-not-call list and ``refuse_dnc_outbound`` is on; Redis down: allowed."""
        if not self.refuse_dnc_outbound:
            return True
        try:
            listed = self.dnc.is_listed(number)
        except RedisUnavailable as exc:
            log.warning("dispo.dnc_check_failed", number=try_normalize(number), error=str(exc))
            return True
        if listed:
            log.info("dispo.outbound_refused", number=try_normalize(number))
        return not listed

    # ------------------------------------------------------------------ internals
    def _guard(self, step: str, call_uuid: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)``; a Redis or data failure is logged and answered with False."""
        try:
            return func(*args)
        except (RedisUnavailable, ValueError, redis.exceptions.RedisError) as exc:
            log.warning("dispo.step_failed", step=step, call=call_uuid, error=str(exc))
            return False

    def _target(self, call_uuid: str | None, agent_id: str | None) -> CallInfo:
        if call_uuid:
            info = self.find_call(call_uuid)
            if info is None:
                raise NoCall(f"no stored call {call_uuid} (finished calls are kept 24 h)")
            return info
        if agent_id:
            info = self.last_call(agent_id)
            if info is None:
                raise NoCall(f"agent {agent_id} has no finished call to set a code on")
            return info
        raise NoCall("no call named")

    def _remember(self, info: CallInfo) -> bool:
        """Store the call's info (once) and point its agent at it; True the first time."""
        with unavailable_as_domain_error("dispo remember"):
            pipe = self.store.client.pipeline(transaction=True)
            pipe.set(
                self._keys.ref("dispo_info", info.call_uuid),
                self.store.codec.encode(info.to_dict()),
                nx=True,
                px=CALL_INFO_TTL_MS,
            )
            if info.agent:
                pipe.set(
                    self._keys.ref("dispo_last", info.agent), info.call_uuid, px=CALL_INFO_TTL_MS
                )
            first = pipe.execute()[0]
        return bool(first)

    def _apply(self, disposition: Disposition, now: float) -> Applied:
        new = self.reports.record(disposition)
        if not new:
            carried = self.reports.codes_of(disposition.call_uuid)
            return Applied(disposition.call_uuid, disposition.codes, (), carried, ())
        carried = self.reports.codes_of(disposition.call_uuid)
        planned = plan_actions(disposition, self.codes, self.settings, new=new, all_codes=carried)
        lines = []
        for action in planned:
            try:
                lines.append(self._run(action, disposition, now))
            except (RedisUnavailable, CallbackError, ValueError) as exc:
                log.warning(
                    "dispo.action_failed",
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
            log.info("dispo.final", call=call, number=action.number, cancelled=cancelled)
            return (
                f"{action.number}: no further automatic dialing "
                f"({len(cancelled)} open callbacks cancelled)"
            )
        if isinstance(action, ScheduleCallback):
            return self._schedule_callback(action, now)
        if isinstance(action, PostWebhook):
            if self.webhook is None:
                log.warning("dispo.action_skipped", call=call, action="webhook", why="no sender")
                return "skipped webhook: no webhook sender"
            self.webhook.send(action.payload)
            return "webhook queued"
        assert isinstance(action, Skipped)
        log.info("dispo.action_skipped", call=call, action=action.action, code=action.code,
                 why=action.why)  # fmt: skip
        return f"skipped {action.action} of {action.code}: {action.why}"

    def _schedule_callback(self, action: ScheduleCallback, now: float) -> str:
        queue = action.queue or self.callback_queue
        why = None
        if self.callbacks is None:
            why = "no callback store"
        elif queue is None:
            why = "the call has no queue and dispositions.callback_queue is not set"
        if why is not None:
            log.info("dispo.action_skipped", call=action.call_uuid, action="callback", why=why)
            return f"skipped callback of {action.reason}: {why}"
        try:
            number = check_number(action.number, self._number_rules)
        except NumberRefused as exc:
            log.info("dispo.action_skipped", call=action.call_uuid, action="callback",
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
            stored = self.callbacks.create(request, self.config.callbacks.max_open_per_caller)
        except OpenLimitReached as exc:
            log.info("dispo.action_skipped", call=action.call_uuid, action="callback",
                     why="open_limit")  # fmt: skip
            return f"skipped callback of {action.reason}: {exc}"
        log.info("dispo.callback", call=action.call_uuid, callback=stored.id, number=number,
                 queue=queue, due_at=stored.next_due_at)  # fmt: skip
        return f"callback {stored.id} to {number} due in {action.delay:g} s"

    def _cancel_callbacks(self, number: str, now: float) -> list[str]:
        """Cancel the open callback requests that would dial ``number``."""
        if self.callbacks is None:
            return []
        with unavailable_as_domain_error("dispo final"):
            ids = sorted(m.decode() for m in self.store.client.smembers(
                self._keys.callbacks_open(number)))  # fmt: skip
        cancelled = []
        for request_id in ids:
            request = self.callbacks.get(request_id)
            # The open set also holds requests this number asked for another number.
            if request is None or request.number != number or not request.is_open:
                continue
            try:
                self.callbacks.cancel(request_id, now)
            except CallbackError as exc:  # changed meanwhile (done, already cancelled)
                log.info("dispo.cancel_skipped", callback=request_id, error=str(exc))
                continue
            cancelled.append(request_id)
        return cancelled

    def _add_contact(self, number: str, entry: dict[str, Any]) -> None:
        if self.customers is not None:
            self.customers.add_contact(number, entry)

    def _add_codes(self, number: str, call_uuid: str, names: Sequence[str]) -> bool:
        """Add ``names`` to the call's entry in the number's contact history, if it is still
        there (the list is capped). Optimistic: WATCH, rewrite the one entry, retry."""
        if self.customers is None:
            return False
        key = self._keys.contacts(number)
        client = self.store.client
        with unavailable_as_domain_error("dispo history"):
            for _ in range(_HISTORY_TRIES):
                with client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        raws = pipe.lrange(key, 0, -1)
                        for index, raw in enumerate(raws):
                            try:
                                entry = self._contact_codec.decode(raw, key)
                            except SchemaMismatch:  # another schema: not ours to edit
                                continue
                            if entry.get("call") != call_uuid:
                                continue
                            codes = list(entry.get("codes") or [])
                            entry["codes"] = list(dict.fromkeys([*codes, *names]))
                            pipe.multi()
                            pipe.lset(key, index, self._contact_codec.encode(entry))
                            pipe.execute()
                            return True
                        return False
                    except redis.exceptions.WatchError:
                        continue
        log.warning("dispo.history_busy", call=call_uuid)
        return False


def build_dispositions(
    daemon: Daemon, *, customers: Any = None, callbacks: Any = None
) -> Dispositions:
    """The daemon's :class:`Dispositions`: its own webhook sender for
    ``dispositions.webhook_url`` (started, stopped with the daemon), the given or new
    customer and callback stores."""
    from ccd.adapters.webhook import WebhookSender
    from ccd.store.callback import CallbackStore
    from ccd.store.customer import CustomerStore

    section = daemon.config.dispositions
    webhook = None
    if section.webhook_url:
        webhook = WebhookSender(section.webhook_url, section.webhook_timeout)
        webhook.start()
        daemon.on_stop(webhook.stop)
    return Dispositions(
        config=daemon.config,
        store=daemon.store,
        customers=customers if customers is not None else CustomerStore(daemon.store),
        callbacks=callbacks if callbacks is not None else CallbackStore(daemon.store),
        webhook=webhook,
        now=daemon.now,
    )
