"""Callback requests (R-OVERFLOW, R-CALLBACK): the pure rules. No Redis, no clock, no sockets.

Theory of operation
-------------------
A caller who gives up waiting leaves a number; :func:`check_number` decides whether that number
may be dialed and returns it in the project's one normalised form (:mod:`ccd.core.numbers`,
``+`` and E.164 digits). A :class:`CallbackRequest` is then stored (``ccd.store.callback``) and
worked by a dialer until it reaches a final status. Every function here takes the time as an
argument.

Number policy, checked in this order (the first failing rule gives the reason)::

    empty          nothing typed (or only separators)
    not_digits     a letter, ``*``, ``#`` or any other character: DTMF garbage is refused,
                   never cleaned up into some other number
    emergency      the digits are an emergency number (112, 104, 105, 107 in Hungary; 911,
                   999...), also when written with the country code (+36 112)
    invalid        digits, but not a number of the plan (e.g. a country code starting with 0)
    too_short      fewer than ``min_digits`` digits with the country code
    too_long       more than ``max_digits`` digits with the country code (E.164: 15)
    (allowed)      a number starting with an ``allowed_prefixes`` entry is accepted here:
                   it overrides the three rules below, never the ones above
    international  another country code, unless ``allow_international``
    premium        a premium-rate prefix (``premium_prefixes``)
    blocked        any other refused prefix (``blocked_prefixes``)

Numbers without ``+`` are read as :func:`ccd.core.numbers.normalize` reads them: ``06…`` is
national, ``00…`` international, other digits are taken as a full international number (as SIP
trunks send caller numbers). So a caller typing a number should be prompted to start it with 06.

Premium rate, by default (Hungary): ``+3690`` and ``+3691`` ("emelt díjas" numbers; a callback
there would cost the center per minute and is the classic abuse of callback systems). Toll-free
(06-80) and shared-cost (06-40) numbers are allowed. Prefixes are written in normalised form.

Request lifecycle (``STATUS_TRANSITIONS`` is the table)::

    pending ──take──▶ working ──attempt failed, attempts left──▶ pending (due after min_interval)
       ▲                 │──connected / queued──▶ done
       │                 │──customer said no──▶ declined
       │                 │──last attempt failed──▶ unreached   (kept forever, never deleted)
       │                 └──give back (no attempt)──▶ pending
       └──operator retry── unreached | declined | cancelled
    pending | working | unreached | declined ──operator cancel──▶ cancelled

Only attempts since the last operator retry count against ``max_attempts`` (``counted_from``),
so a retried request gets a full set of attempts while its whole history stays on it.

Business hours (:mod:`ccd.core.business_hours`) are wall-clock windows in the configured time
zone; an empty list of windows means always open.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from ccd.core.business_hours import BusinessWindow, time_zone
from ccd.core.numbers import InvalidNumber, NumberPlan, normalize, plan_for_country

__all__ = [
    "COUNTED_OUTCOMES",
    "DEFAULT_EMERGENCY_NUMBERS",
    "DEFAULT_PREMIUM_PREFIXES",
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "REFUSAL_REASONS",
    "STATUS_TRANSITIONS",
    "Attempt",
    "CallbackError",
    "CallbackRequest",
    "CallbackRules",
    "IllegalStatusChange",
    "NumberRefused",
    "NumberRules",
    "OpenLimitReached",
    "OpenLimits",
    "Outcome",
    "Status",
    "Strategy",
    "after_attempt",
    "check_number",
    "check_open_limit",
    "counted_attempts",
    "is_due",
    "new_request",
    "with_status",
]

# --- errors ------------------------------------------------------------------------------------


class CallbackError(Exception):
    """A callback request cannot be made or changed as asked (a domain error, not a bug)."""


#: Stable machine reasons of :class:`NumberRefused` (logs, prompts, the API).
REFUSAL_REASONS = (
    "empty",
    "not_digits",
    "emergency",
    "invalid",
    "too_short",
    "too_long",
    "international",
    "premium",
    "blocked",
)


class NumberRefused(CallbackError):
    """The number may not be called back. ``reason`` is one of REFUSAL_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REFUSAL_REASONS, reason
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class OpenLimitReached(CallbackError):
    """A limit on open requests is reached: ``scope`` names which (an :class:`OpenLimits`
    field): the caller's, the queue's, the one in all, or the queue's anonymous callers'."""

    _WHOSE = {
        "per_caller": "per caller",
        "per_queue": "in this queue",
        "total": "in all queues",
        "anonymous": "from callers without a number in this queue",
    }

    def __init__(self, open_count: int, limit: int, scope: str = "per_caller") -> None:
        self.open_count = open_count
        self.limit = limit
        self.scope = scope
        whose = self._WHOSE.get(scope, scope)
        super().__init__(f"{open_count} open callback request(s); at most {limit} {whose}")


@dataclass(frozen=True, slots=True)
class OpenLimits:
    """Caps on OPEN (pending, working) callback requests, checked atomically when one is
    stored; None: no cap. ``per_caller``: one number (the calling one or the one to call);
    ``per_queue``; ``total``: every queue together; ``anonymous``: per queue, requests of callers
    without a usable number of their own (they typed the number to call)."""

    per_caller: int | None = None
    per_queue: int | None = None
    total: int | None = None
    anonymous: int | None = None

    def as_tuple(self) -> tuple[int | None, int | None, int | None, int | None]:
        return self.per_caller, self.per_queue, self.total, self.anonymous


class IllegalStatusChange(CallbackError):
    """The request's status does not allow this change (e.g. retry of a pending request)."""


# --- number policy -----------------------------------------------------------------------------

#: Emergency and police/fire/ambulance short codes: Hungary (104 ambulance, 105 fire, 107
#: police, 112), the EU/North America/UK style ones, and a few neighbours' (110, 118, 119).
DEFAULT_EMERGENCY_NUMBERS: tuple[str, ...] = (
    "112", "104", "105", "107", "911", "999", "110", "118", "119", "000",
)  # fmt: skip
#: Hungarian premium-rate ("emelt díjas") prefixes.
DEFAULT_PREMIUM_PREFIXES: tuple[str, ...] = ("+3690", "+3691")

_PREFIX_RE = re.compile(r"^\+[1-9][0-9]{0,14}$")
_SEPARATORS = frozenset(" -.()/")


@dataclass(frozen=True, slots=True)
class NumberRules:
    """What a callback number may be. Prefixes are normalised (``+3690``)."""

    default_country_code: str = "36"
    min_digits: int = 10
    max_digits: int = 15
    allowed_prefixes: tuple[str, ...] = ()
    blocked_prefixes: tuple[str, ...] = ()
    allow_international: bool = False
    premium_prefixes: tuple[str, ...] = DEFAULT_PREMIUM_PREFIXES
    emergency_numbers: tuple[str, ...] = DEFAULT_EMERGENCY_NUMBERS

    def __post_init__(self) -> None:
        plan_for_country(self.default_country_code)  # ValueError on a bad country code
        if not 1 <= self.min_digits <= self.max_digits <= 15:
            raise ValueError("need 1 <= min_digits <= max_digits <= 15 (E.164)")
        for name in ("allowed_prefixes", "blocked_prefixes", "premium_prefixes"):
            value = tuple(getattr(self, name))
            object.__setattr__(self, name, value)
            for prefix in value:
                if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
                    raise ValueError(f"{name}: {prefix!r} is not a prefix like +3690")
        emergency = tuple(self.emergency_numbers)
        object.__setattr__(self, "emergency_numbers", emergency)
        for number in emergency:
            if not (isinstance(number, str) and number.isascii() and number.isdigit()):
                raise ValueError(f"emergency_numbers: {number!r} is not digits")

    def plan(self) -> NumberPlan:
        # Length limits are this module's (with their own reasons), so the plan allows all.
        base = plan_for_country(self.default_country_code)
        return dataclasses.replace(base, min_digits=1, max_digits=15)


def check_number(raw: str, rules: NumberRules) -> str:
    """The normalised number (``+36…``), or :class:`NumberRefused` (see the module's rules)."""
    if not isinstance(raw, str):
        raise NumberRefused("not_digits", f"expected text, got {type(raw).__name__}")
    text = raw.strip()
    if not text or all(ch in _SEPARATORS for ch in text):
        raise NumberRefused("empty", "no number was given")
    for position, ch in enumerate(text, 1):
        if not (("0" <= ch <= "9") or ch in _SEPARATORS or (ch == "+" and position == 1)):
            shown = ch if ch.isprintable() else f"U+{ord(ch):04X}"
            raise NumberRefused(
                "not_digits", f"{shown!r} at position {position}: a number is digits only"
            )
    digits = "".join(ch for ch in text if "0" <= ch <= "9")
    if not digits:
        raise NumberRefused("empty", "no digits were given")
    if not text.startswith("+") and digits in rules.emergency_numbers:
        raise NumberRefused("emergency", f"{digits} is an emergency number")
    try:
        number = normalize(text, plan=rules.plan())
    except InvalidNumber as exc:
        if str(exc).startswith("too long"):
            raise NumberRefused("too_long", str(exc)) from None
        raise NumberRefused("invalid", str(exc)) from None
    home = "+" + rules.default_country_code
    if number.startswith(home) and number[len(home) :] in rules.emergency_numbers:
        raise NumberRefused("emergency", f"{number} is an emergency number")
    count = len(number) - 1
    if count < rules.min_digits:
        raise NumberRefused(
            "too_short", f"{count} digits with the country code, at least {rules.min_digits}"
        )
    if count > rules.max_digits:
        raise NumberRefused(
            "too_long", f"{count} digits with the country code, at most {rules.max_digits}"
        )
    if any(number.startswith(p) for p in rules.allowed_prefixes):
        return number
    if not number.startswith(home) and not rules.allow_international:
        raise NumberRefused("international", f"{number} is not a +{home[1:]} number")
    for prefix in rules.premium_prefixes:
        if number.startswith(prefix):
            raise NumberRefused("premium", f"{number} is a premium-rate number ({prefix})")
    for prefix in rules.blocked_prefixes:
        if number.startswith(prefix):
            raise NumberRefused("blocked", f"{number} starts with the blocked prefix {prefix}")
    return number


def check_open_limit(open_count: int, limit: int | None) -> None:
    """Raise :class:`OpenLimitReached` when a caller with ``open_count`` open requests may not
    open another one (``limit`` None: no limit)."""
    if limit is not None and open_count >= limit:
        raise OpenLimitReached(open_count, limit)


# --- requests ----------------------------------------------------------------------------------


class Strategy(StrEnum):
    ACTIVE = "active"
    PASSIVE = "passive"
    CUSTOMER_FIRST = "customer_first"


class Status(StrEnum):
    PENDING = "pending"
    WORKING = "working"
    DONE = "done"
    UNREACHED = "unreached"
    DECLINED = "declined"
    CANCELLED = "cancelled"


#: Statuses that count against the per-caller limit and may still be dialed.
OPEN_STATUSES = frozenset({Status.PENDING, Status.WORKING})
FINAL_STATUSES = frozenset({Status.DONE, Status.UNREACHED, Status.DECLINED, Status.CANCELLED})

#: Every status change there is; anything else raises IllegalStatusChange.
STATUS_TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.WORKING, Status.CANCELLED}),
    Status.WORKING: frozenset(
        {Status.PENDING, Status.DONE, Status.UNREACHED, Status.DECLINED, Status.CANCELLED}
    ),
    Status.UNREACHED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.DECLINED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.CANCELLED: frozenset({Status.PENDING}),
    Status.DONE: frozenset(),
}


class Outcome(StrEnum):
    """How one attempt ended."""

    CONNECTED = "connected"  # customer and agent talked: done
    QUEUED = "queued"  # customer_first: the customer pressed 1 and is in the queue: done
    DECLINED = "declined"  # customer_first: the customer did not want an agent any more
    NO_ANSWER = "no_answer"  # counted: the customer did not answer
    BUSY = "busy"  # counted
    REJECTED = "rejected"  # counted: the customer's phone refused the call
    FAILED = "failed"  # counted: the customer leg failed (bad number, network)
    ABORTED = "aborted"  # not counted: our side failed (agent gone, switch down); due at once
    DO_NOT_CALL = "do_not_call"  # not dialed: the number is on the do-not-call list: cancelled


#: Outcomes that use up one of ``max_attempts``.
COUNTED_OUTCOMES = frozenset({Outcome.NO_ANSWER, Outcome.BUSY, Outcome.REJECTED, Outcome.FAILED})

_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Attempt:
    at: float
    outcome: Outcome
    agent: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        object.__setattr__(self, "at", float(self.at))

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "outcome": str(self.outcome), "agent": self.agent,
                "detail": self.detail}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            at=float(data["at"]),
            outcome=Outcome(data["outcome"]),
            agent=data.get("agent"),
            detail=str(data.get("detail") or ""),
        )


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """One callback request. ``order_key`` is the original call's queue score
    (:func:`ccd.core.queue.queue_order_key`): lower is dialed first."""

    id: str
    number: str
    queue: str
    created_at: float
    order_key: float
    caller_uuid: str
    strategy: Strategy
    status: Status = Status.PENDING
    attempts: tuple[Attempt, ...] = ()
    next_due_at: float | None = None
    caller_number: str | None = None  # the calling number (normalised), for the caller limit
    counted_from: int = 0  # attempts before this index were before an operator retry

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValueError(f"bad callback id {self.id!r}: 1-64 of A-Z a-z 0-9 _ -")
        if not isinstance(self.number, str) or not _PREFIX_RE.match(self.number):
            raise ValueError(f"number must be normalised (+ and digits), got {self.number!r}")
        if self.caller_number is not None and not _PREFIX_RE.match(self.caller_number):
            raise ValueError(f"caller_number must be normalised or None: {self.caller_number!r}")
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "attempts", tuple(self.attempts))
        object.__setattr__(self, "created_at", float(self.created_at))
        object.__setattr__(self, "order_key", float(self.order_key))
        if self.next_due_at is not None:
            object.__setattr__(self, "next_due_at", float(self.next_due_at))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (msgpack, JSON)."""
        return {
            "id": self.id,
            "number": self.number,
            "queue": self.queue,
            "created_at": self.created_at,
            "order_key": self.order_key,
            "caller_uuid": self.caller_uuid,
            "strategy": str(self.strategy),
            "status": str(self.status),
            "attempts": [a.to_dict() for a in self.attempts],
            "next_due_at": self.next_due_at,
            "caller_number": self.caller_number,
            "counted_from": self.counted_from,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallbackRequest:
        """The request; KeyError/ValueError/TypeError on a record of the wrong shape."""
        return cls(
            id=data["id"],
            number=data["number"],
            queue=data["queue"],
            created_at=data["created_at"],
            order_key=data["order_key"],
            caller_uuid=data["caller_uuid"],
            strategy=data["strategy"],
            status=data["status"],
            attempts=tuple(Attempt.from_dict(a) for a in data.get("attempts") or ()),
            next_due_at=data.get("next_due_at"),
            caller_number=data.get("caller_number"),
            counted_from=int(data.get("counted_from") or 0),
        )


def new_request(
    request_id: str,
    number: str,
    queue: str,
    *,
    created_at: float,
    order_key: float,
    caller_uuid: str,
    strategy: Strategy | str,
    caller_number: str | None = None,
) -> CallbackRequest:
    """A fresh pending request, due at once."""
    return CallbackRequest(
        id=request_id,
        number=number,
        queue=queue,
        created_at=created_at,
        order_key=order_key,
        caller_uuid=caller_uuid,
        strategy=Strategy(strategy),
        next_due_at=created_at,
        caller_number=caller_number,
    )


def with_status(req: CallbackRequest, status: Status | str, now: float) -> CallbackRequest:
    """``req`` moved to ``status`` (IllegalStatusChange if the table forbids it).

    Back to pending after an operator retry: due at ``now`` with a fresh set of attempts.
    """
    status = Status(status)
    if status not in STATUS_TRANSITIONS[req.status]:
        raise IllegalStatusChange(f"callback {req.id} is {req.status}: cannot become {status}")
    if status is Status.PENDING and req.status is not Status.WORKING:  # operator retry
        return dataclasses.replace(
            req, status=status, next_due_at=now, counted_from=len(req.attempts)
        )
    if status is Status.PENDING:  # given back without an attempt: due as before
        return dataclasses.replace(req, status=status)
    if status is Status.WORKING:
        return dataclasses.replace(req, status=status)
    return dataclasses.replace(req, status=status, next_due_at=None)


def counted_attempts(req: CallbackRequest) -> int:
    """Attempts since the last operator retry that used up one of ``max_attempts``."""
    return sum(1 for a in req.attempts[req.counted_from :] if a.outcome in COUNTED_OUTCOMES)


def is_due(req: CallbackRequest, now: float) -> bool:
    """Pending and its time has come (business hours are the dialer's separate check)."""
    return req.status is Status.PENDING and req.next_due_at is not None and req.next_due_at <= now


# --- rules: attempts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallbackRules:
    """Retry and time rules of one queue's callbacks. No windows: always open."""

    max_attempts: int = 3
    min_interval: float = 600.0
    business_hours: tuple[BusinessWindow, ...] = ()
    timezone: str = "Europe/Budapest"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not (
            isinstance(self.max_attempts, int) and self.max_attempts >= 1
        ):
            raise ValueError(f"max_attempts must be a whole number >= 1, got {self.max_attempts!r}")
        if not self.min_interval >= 0:
            raise ValueError(f"min_interval must be >= 0, got {self.min_interval!r}")
        object.__setattr__(self, "business_hours", tuple(self.business_hours))
        object.__setattr__(self, "zone", time_zone(self.timezone))


def after_attempt(
    req: CallbackRequest, attempt: Attempt, now: float, rules: CallbackRules
) -> CallbackRequest:
    """``req`` (working) with ``attempt`` recorded and its next status:

    connected/queued → done; declined → declined; do_not_call → cancelled; aborted → pending,
    due at once; a counted failure → pending, due ``min_interval`` after ``now``, or unreached
    once ``max_attempts`` counted attempts have failed.
    """
    if req.status is not Status.WORKING:
        raise IllegalStatusChange(f"callback {req.id} is {req.status}: no attempt in progress")
    done = dataclasses.replace(req, attempts=(*req.attempts, attempt))
    outcome = attempt.outcome
    if outcome in (Outcome.CONNECTED, Outcome.QUEUED):
        return with_status(done, Status.DONE, now)
    if outcome is Outcome.DECLINED:
        return with_status(done, Status.DECLINED, now)
    if outcome is Outcome.DO_NOT_CALL:
        return with_status(done, Status.CANCELLED, now)
    if outcome is Outcome.ABORTED:
        return dataclasses.replace(done, status=Status.PENDING, next_due_at=now)
    if counted_attempts(done) >= rules.max_attempts:
        return with_status(done, Status.UNREACHED, now)
    return dataclasses.replace(done, status=Status.PENDING, next_due_at=now + rules.min_interval)
