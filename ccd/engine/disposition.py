"""Dispositions in the call path (R-DISPO, issue 6): what happens when a call ends, when an
agent keys a code, and before an agent's own call goes out.

The pure rules are :mod:`ccd.core.disposition`; storage is :mod:`ccd.store.report` (codes,
counters), :mod:`ccd.store.dnc`, :mod:`ccd.store.callback` and :mod:`ccd.store.customer`;
what the codes do is :mod:`ccd.engine.disposition_actions`. :class:`DispositionService` joins
them for the daemon's call path (the engine calls it) and for ``ccd disposition set``.

Theory of operation
-------------------
* A finished call (:meth:`DispositionService.call_finished` for queue calls,
  :meth:`DispositionService.outside_call_finished` for an agent's own call) leaves three things:

  - its automatic codes (:func:`ccd.core.disposition.automatic_disposition`,
    ``set_by="system"``): abandoned (with the wait), left_voicemail, and no_answer / busy from the
    offers when nobody took the call, or from the customer leg of an agent's own call; recorded in
    the ReportStore and their actions run;
  - a contact history entry for the caller's number (direction, queue, agent, times, outcome,
    ``codes``), newest first (:class:`ccd.store.customer.CustomerStore`), for every usable
    number;
  - a call-info record ``disposition_info:<call>`` (number, agent, queue, direction, end) and, for
    the agent who talked (or dialled), the pointer ``disposition_last:<agent>`` = that call: the
    agent's most recent finished call. Both expire after ``CALL_INFO_TTL_MS`` (24 h, like the
    call records). The info key is written with ``SET NX``: a call finished twice (a daemon
    resuming a half-finished call) gets one history entry, and its codes are idempotent anyway.

* An agent's code (:meth:`DispositionService.agent_code`, the desk phone's ``*7 NN #``) applies to
  the call named, else to the agent's most recent finished call, during wrap-up and after it.
  Recorded with ``set_by="agent:<id>"`` and the time; a code the call already carries is
  accepted again without effect (ReportStore answers which codes are new, and only new codes
  run actions). The codes are added to the call's history entry. Unknown codes, letters,
  three digits, no call to apply it to and Redis down are refused with a one-line reason.

* Actions of new codes: :mod:`ccd.engine.disposition_actions`.

* The agents' own calls (dialplan ``ccd_agents.xml``) park with ``ccd_action=outbound_check``;
  :meth:`DispositionService.outbound_allowed` answers whether the number may be dialled. When the
  list cannot be read (Redis down) the call is allowed and ``disposition.dnc_check_failed`` logged:
  an agent's manual call is a person's decision, and the dialplan's own safety (no daemon at all)
  lets the call out after a moment too; see ``ccd_agents.xml``.

* Nothing here raises into the call path: ``call_finished`` / ``outside_call_finished`` log
  ``disposition.step_failed`` and go on; ``agent_code`` answers ``(False, reason)``.
"""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from ccd.config import Config
from ccd.config.rules import number_rules_from_config
from ccd.core.commands import Fact
from ccd.core.disposition import (
    CallFacts,
    Code,
    Disposition,
    DispositionError,
    automatic_disposition,
    parse_entry,
)
from ccd.core.disposition_actions import DispositionSettings
from ccd.core.numbers import try_normalize
from ccd.core.report import zone
from ccd.engine.disposition_actions import Applied, DispositionActions
from ccd.store.batch import Batch
from ccd.store.call import FINISHED_TTL_MS, CallRecord, CallRepository
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.dnc import DncList
from ccd.store.redis_store import RedisUnavailable, Store, unavailable_as_domain_error
from ccd.store.report import ReportStore

__all__ = ["CALL_INFO_TTL_MS", "Applied", "CallInfo", "DispositionService", "NoCall"]

log = structlog.get_logger()

#: How long a finished call can still be given codes by its agent (as the call records).
CALL_INFO_TTL_MS = FINISHED_TTL_MS


_LUA_REMEMBER = r"""
-- KEYS[1] the call's info, KEYS[2] its agent's last-call pointer ("" none),
-- KEYS[3] the number's contact history ("" none).
-- ARGV[1] info bytes, ARGV[2] ttl ms, ARGV[3] call uuid, ARGV[4] history entry bytes,
-- ARGV[5] history length kept. 1 the first time (the entry was added), else 0.
if not redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 0 end
if KEYS[2] ~= "" then redis.call("SET", KEYS[2], ARGV[3], "PX", ARGV[2]) end
if KEYS[3] ~= "" and ARGV[4] ~= "" then
  redis.call("LPUSH", KEYS[3], ARGV[4])
  redis.call("LTRIM", KEYS[3], 0, tonumber(ARGV[5]) - 1)
end
return 1
"""


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


class DispositionService:
    """The call path's side of R-DISPO over one Redis (see the module doc)."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        customers: CustomerStore | None,
        callbacks: CallbackStore | None,
        webhook: Any,
        new_uuid: Callable[[], str] = _new_uuid,
        now: Callable[[], float],
    ) -> None:
        self.store = store
        self.customers = customers
        self.callbacks = callbacks
        self.webhook = webhook
        self.new_uuid = new_uuid
        self.dnc = DncList(store, time_scale=config.daemon.time_scale, clock=now)
        self._calls = CallRepository(store)
        self._keys = store.keys
        store.scripts.register("disposition_remember", _LUA_REMEMBER, prelude=False)
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Codes, settings, report days and actions from ``config`` (at start and at a
        reload: ccd.engine.reconfigure)."""
        section = config.disposition
        self.config = config
        self.codes = section.codes
        self.settings = DispositionSettings(
            dnc_days=section.dnc_days,
            callback_delay=section.callback_delay,
            webhook_url=section.webhook_url or None,
        )
        self.refuse_dnc_outbound = section.refuse_dnc_outbound
        self.reports = ReportStore(
            self.store, tz=zone(section.timezone), retention_days=section.retention_days
        )
        self.actions = DispositionActions(
            config=config,
            codes=self.codes,
            settings=self.settings,
            store=self.store,
            reports=self.reports,
            dnc=self.dnc,
            callbacks=self.callbacks,
            webhook=self.webhook,
            number_rules=number_rules_from_config(config),
        )

    # ------------------------------------------------------------------ finished calls
    def call_finished(
        self, record: CallRecord, facts: Sequence[Fact], now: float, batch: Batch | None = None
    ) -> None:
        """A queue call ended (``ccd.engine.hunting``). ``facts``: the hunt's facts of the
        call (agent.no_answer, call.abandoned, call.voicemail...), as many as the caller kept;
        ``record.status`` is the hunt's result. Everything joins ``batch``, the hangup's
        unit of work (no round trip of its own); without one it is written at once."""
        if batch is None:
            own = self.store_batch()
            self.call_finished(record, facts, now, own)
            self._guard("write", record.uuid, own.execute)
            return
        result = _result(record.status, facts)
        number = try_normalize(record.caller_number)
        agent = record.agent if result == "bridged" else None  # a ringing offer is not a talk
        queue = record.queue or None
        wait = None
        if result == "abandoned" and record.entered_at:
            wait = max(0.0, (record.ended_at or now) - record.entered_at)
        info = CallInfo(record.uuid, number, agent, queue, "inbound", now)
        auto = automatic_disposition(
            CallFacts(result=result, agent_outcomes=_agent_outcomes(facts), wait=wait),
            self.codes,
            call_uuid=record.uuid,
            at=now,
            agent=agent,
            queue=queue,
            number=number,
        )
        entry: dict[str, Any] | None = None
        if number is not None:
            entry = {
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
        self._guard("remember", record.uuid, self._remember_op, batch, info, entry)
        if auto is not None:
            self._guard("record", record.uuid, self.actions.apply_op, batch, auto, now)

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
        """An agent's own call ended (``ccd.engine.presence``). ``cause``: the
        agent leg's ``originate_disposition`` (USER_BUSY, NO_ANSWER...) when known; an
        unanswered call without one counts as no answer. ``call_uuid``: the agent leg's uuid
        (a fresh id when not given)."""
        normalized = try_normalize(number)
        uuid = call_uuid or self.new_uuid()
        customer_cause = None
        if not answered:
            customer_cause = cause if cause and cause.upper() != "SUCCESS" else "NO_ANSWER"
        info = CallInfo(uuid, normalized, agent_id, None, "outbound", now)
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
        entry: dict[str, Any] | None = None
        if normalized is not None:
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
        batch = self.store_batch()
        self._guard("remember", uuid, self._remember_op, batch, info, entry)
        if auto is not None:
            self._guard("record", uuid, self.actions.apply_op, batch, auto, now)
        self._guard("write", uuid, batch.execute)

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
            log.info("disposition.refused", agent=agent_id, call=call_uuid, reason=str(exc))
            return False, str(exc)
        except RedisUnavailable as exc:
            log.warning("disposition.refused", agent=agent_id, call=call_uuid, reason=str(exc))
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
        applied = self.actions.apply(disposition, now)
        if applied.new and info.number is not None:
            self._guard(
                "history", info.call_uuid, self._add_codes, info.number, info.call_uuid, applied.new
            )
        log.info(
            "disposition.set",
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
            key = self._keys.disposition_info(call_uuid)
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
            key = self._keys.disposition_last(agent_id)
        except ValueError:
            return None
        with unavailable_as_domain_error("disposition last call"):
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
            log.warning(
                "disposition.dnc_check_failed", number=try_normalize(number), error=str(exc)
            )
            return True
        if listed:
            log.info("disposition.outbound_refused", number=try_normalize(number))
        return not listed

    # ------------------------------------------------------------------ internals
    def _guard(self, step: str, call_uuid: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)``; a Redis or data failure is logged and answered with False."""
        try:
            return func(*args)
        except (RedisUnavailable, ValueError, redis.exceptions.RedisError) as exc:
            log.warning("disposition.step_failed", step=step, call=call_uuid, error=str(exc))
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

    def store_batch(self) -> Batch:
        """A unit of work of this service's own (a code set from the CLI, the API, a phone)."""
        return Batch(self.store.client, self.store.scripts, None)

    def _remember_op(
        self,
        batch: Batch,
        info: CallInfo,
        entry: dict[str, Any] | None,
        then: Callable[[bool], None] | None = None,
    ) -> None:
        """Store the call's info once, point its agent at it and, the first time only, add
        ``entry`` to the number's contact history (a call finished twice, by a daemon
        resuming a half-finished one, is one contact)."""
        contacts, data = "", b""
        if entry is not None and info.number is not None and self.customers is not None:
            contacts = self._keys.contacts(info.number)
            data = self.customers.contact_bytes(entry)
        keys = [
            self._keys.disposition_info(info.call_uuid),
            self._keys.disposition_last(info.agent) if info.agent else "",
            contacts,
        ]
        args = [
            self.store.codec.encode(info.to_dict()),
            CALL_INFO_TTL_MS,
            info.call_uuid,
            data,
            self.customers.history_max if self.customers is not None else 1,
        ]

        def done(first: int) -> None:
            if then is not None:
                then(bool(first))

        batch.script("disposition_remember", keys, args, done)

    def _add_contact(self, number: str, entry: dict[str, Any]) -> None:
        if self.customers is not None:
            self.customers.add_contact(number, entry)

    def _add_codes(self, number: str, call_uuid: str, names: Sequence[str]) -> bool:
        if self.customers is None:
            return False
        return self.customers.add_codes(number, call_uuid, names)
