"""Call dispositions (R-DISPO): the codes, what an agent keys, what the system sees, what follows.

Pure: no I/O, no clock. The Redis side is :mod:`ccd.store.report` (storage, counters) and
:mod:`ccd.store.dnc` (the do-not-call list); the call path feeds these functions and carries out
the actions they plan.

Theory of operation
-------------------
* A :class:`Code` is configuration: ``number`` (the two digits an agent keys on the desk phone
  after ``*7``, ending with ``#``), ``name`` (the stable id stored with a call and shown in
  reports), ``label`` (for people) and ``actions``. A :class:`CodeSet` holds the configured
  codes and refuses duplicates. ``DEFAULT_CODES`` covers seed 001's list.
* A disposition names codes by ``name``: renumbering a desk-phone key keeps history and reports.
* Entry: :func:`parse_entry` reads the digits collected by the dialplan and answers the code or
  raises :class:`BadEntry` (not 1-2 ASCII digits) / :class:`UnknownCode` (no such code), each
  with a one-line message. ``CodeSet.resolve`` also takes a name (the CLI and the API).
* Automatic codes: :func:`automatic_codes` maps what the system saw of a call
  (:class:`CallFacts`) to codes found by the names in ``AUTO_NAMES``; a configuration without
  such a name simply gets no automatic code for that outcome. Offers that agents did not answer
  (no answer / busy) mark the call only when nobody took it: a call answered by the second agent
  was answered, and the missed offers are the agents' statistics (presence), not its outcome.
* One call carries several codes. Recording the same code twice is idempotent: the store
  (:meth:`ccd.store.report.ReportStore.record`) answers which codes were new for the call, and
  :func:`ccd.core.disposition_actions.plan_actions` plans actions only for those (``new=``), so a
  second ``*7 11 #`` does not schedule a second callback.
* Actions: :mod:`ccd.core.disposition_actions`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIONS",
    "AUTO_NAMES",
    "DEFAULT_CALLBACK_DELAY",
    "DEFAULT_CODES",
    "DEFAULT_DNC_DAYS",
    "MAX_CODES_PER_CALL",
    "SYSTEM",
    "BadEntry",
    "CallFacts",
    "Code",
    "CodeSet",
    "Disposition",
    "DispositionError",
    "UnknownCode",
    "automatic_codes",
    "automatic_disposition",
    "parse_entry",
]

#: What a code may do.
ACTIONS = ("dnc", "callback", "webhook", "final")
#: Days a ``dnc`` action lists the number, unless the code says otherwise.
DEFAULT_DNC_DAYS = 180.0
#: Seconds until a ``callback`` action's callback, unless the code says otherwise.
DEFAULT_CALLBACK_DELAY = 24 * 3600.0
#: ``set_by`` of codes the daemon sets itself.
SYSTEM = "system"
#: More codes than this on one call is a mistake (or an attack), not a disposition.
MAX_CODES_PER_CALL = 16
#: Desk-phone code numbers: one or two digits (``5`` is ``05``).
MAX_ENTRY_DIGITS = 2

#: The names :func:`automatic_codes` looks for, by what the system saw.
AUTO_NAMES = {
    "no_answer": "no_answer",
    "busy": "busy",
    "abandoned": "abandoned",
    "voicemail": "left_voicemail",
    "unreachable": "disconnected",
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_NUMBER_RE = re.compile(r"^[0-9]{2}$")
_UUID_RE = re.compile(r"^[A-Za-z0-9_.@+\-]{1,128}$")
_MAX_LABEL = 64

# Hangup causes of a customer leg (outbound, callbacks) and what they mean for the call.
_CUSTOMER_CAUSES = {
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "USER_BUSY": "busy",
    "UNALLOCATED_NUMBER": "unreachable",
    "NO_ROUTE_DESTINATION": "unreachable",
    "INVALID_NUMBER_FORMAT": "unreachable",
    "NUMBER_CHANGED": "unreachable",
}


class DispositionError(ValueError):
    """A disposition request that cannot be done as asked (the message is one line)."""


class BadEntry(DispositionError):
    """What was keyed is not a code number (letters, empty, too many digits)."""


class UnknownCode(DispositionError):
    """A well-formed code number or name that no configured code has."""


def _check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be non-empty text")
    if len(value) > limit:
        raise ValueError(f"{name} too long: {len(value)} characters (at most {limit})")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{name} must not contain control characters")
    return value


def positive_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Code:
    """A disposition code. ``dnc_days`` / ``callback_delay`` (seconds) override the settings."""

    number: str
    name: str
    label: str
    actions: tuple[str, ...] = ()
    dnc_days: float | None = None
    callback_delay: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.number, str) or not _NUMBER_RE.match(self.number):
            raise ValueError(f"code number must be two digits like '05', got {self.number!r}")
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"code name must be 1-32 of a-z 0-9 _ starting with a letter, got {self.name!r}"
            )
        _check_text(f"label of code {self.name}", self.label, _MAX_LABEL)
        actions = tuple(self.actions)
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown:
            raise ValueError(f"code {self.name}: unknown actions {unknown} (known: {ACTIONS})")
        if len(set(actions)) != len(actions):
            raise ValueError(f"code {self.name}: an action is listed twice")
        if "callback" in actions and ("final" in actions or "dnc" in actions):
            raise ValueError(f"code {self.name}: 'callback' contradicts 'final'/'dnc'")
        object.__setattr__(self, "actions", actions)
        if self.dnc_days is not None:
            object.__setattr__(self, "dnc_days", positive_number("dnc_days", self.dnc_days))
        if self.callback_delay is not None:
            delay = self.callback_delay
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise ValueError(f"callback_delay must be a number, got {delay!r}")
            if not math.isfinite(delay) or delay < 0:
                raise ValueError(f"callback_delay must be >= 0 and finite, got {delay!r}")
            object.__setattr__(self, "callback_delay", float(delay))

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "label": self.label,
            "actions": list(self.actions),
            "dnc_days": self.dnc_days,
            "callback_delay": self.callback_delay,
        }


class CodeSet:
    """The configured codes, unique by number and by name, in number order."""

    def __init__(self, codes: Iterable[Code]) -> None:
        by_number: dict[str, Code] = {}
        by_name: dict[str, Code] = {}
        for code in codes:
            if not isinstance(code, Code):
                raise TypeError(f"expected Code, got {type(code).__name__}")
            if code.number in by_number:
                raise ValueError(
                    f"code number {code.number} used by both {by_number[code.number].name} "
                    f"and {code.name}"
                )
            if code.name in by_name:
                raise ValueError(f"code name {code.name} defined twice")
            by_number[code.number] = code
            by_name[code.name] = code
        self._by_number = dict(sorted(by_number.items()))
        self._by_name = by_name

    @classmethod
    def from_mapping(cls, table: Mapping[str, Mapping[str, Any]]) -> CodeSet:
        """Codes from configuration: ``{name: {number, label, actions?, dnc_days?,
        callback_delay?}}`` (TOML ``[disposition.codes.<name>]``). ValueError names the code."""
        codes = []
        known = {"number", "label", "actions", "dnc_days", "callback_delay"}
        for name, spec in table.items():
            if not isinstance(spec, Mapping):
                raise ValueError(f"disposition.codes.{name} must be a table")
            extra = sorted(set(spec) - known)
            if extra:
                raise ValueError(f"disposition.codes.{name}: unknown keys {extra}")
            missing = sorted({"number", "label"} - set(spec))
            if missing:
                raise ValueError(f"disposition.codes.{name}: missing {missing}")
            actions = spec.get("actions", ())
            if isinstance(actions, str) or not isinstance(actions, list | tuple):
                raise ValueError(f"disposition.codes.{name}.actions must be a list")
            try:
                codes.append(
                    Code(
                        number=spec["number"],
                        name=name,
                        label=spec["label"],
                        actions=tuple(actions),
                        dnc_days=spec.get("dnc_days"),
                        callback_delay=spec.get("callback_delay"),
                    )
                )
            except ValueError as exc:
                raise ValueError(f"disposition.codes.{name}: {exc}") from None
        return cls(codes)

    def __iter__(self) -> Iterator[Code]:
        return iter(self._by_number.values())

    def __len__(self) -> int:
        return len(self._by_number)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def by_number(self, number: str) -> Code | None:
        return self._by_number.get(number)

    def by_name(self, name: str) -> Code | None:
        return self._by_name.get(name)

    def label(self, name: str) -> str:
        """The label of ``name``, or the name itself for a code no longer configured."""
        code = self._by_name.get(name)
        return code.label if code else name

    def resolve(self, text: str) -> Code:
        """A code by number (``05``, ``5``) or by name (``interested``); raises
        :class:`BadEntry` / :class:`UnknownCode`."""
        if isinstance(text, str) and text and text[0].isascii() and text[0].isalpha():
            if len(text) > 32 or not _NAME_RE.match(text):
                raise BadEntry(f"not a code name: {_shown(text)}")
            code = self._by_name.get(text)
            if code is None:
                raise UnknownCode(f"unknown code {text!r}; known: {', '.join(self._by_name)}")
            return code
        return parse_entry(text, self)


def _shown(text: object, limit: int = 24) -> str:
    """``text`` safe for one log/terminal line."""
    value = repr(text)
    return value if len(value) <= limit else value[:limit] + "…"


def parse_entry(digits: str, codes: CodeSet) -> Code:
    """The code an agent keyed: 1-2 ASCII digits (``5`` is ``05``); a ``#`` left at the end
    is dropped. :class:`BadEntry` for anything else, :class:`UnknownCode` for no such code."""
    if not isinstance(digits, str):
        raise BadEntry(f"expected the keyed digits as text, got {type(digits).__name__}")
    text = digits.strip()
    if text.endswith("#"):
        text = text[:-1]
    if not text:
        raise BadEntry("no digits keyed")
    if not all("0" <= ch <= "9" for ch in text):
        raise BadEntry(f"code numbers are digits only, got {_shown(digits)}")
    if len(text) > MAX_ENTRY_DIGITS:
        raise BadEntry(f"code numbers have at most {MAX_ENTRY_DIGITS} digits, got {len(text)}")
    number = text.rjust(2, "0")
    code = codes.by_number(number)
    if code is None:
        raise UnknownCode(f"unknown code {number}")
    return code


# --- default codes -------------------------------------------------------------------------

DEFAULT_CODES = CodeSet(
    [
        Code("01", "no_answer", "No answer"),
        Code("02", "busy", "Busy"),
        Code("03", "abandoned", "Abandoned in queue"),
        Code("04", "disconnected", "Disconnected"),
        Code("05", "left_voicemail", "Left voicemail"),
        Code("06", "interested", "Interested", ("webhook",)),
        Code("07", "not_interested", "Not interested", ("final",)),
        Code("08", "demo_booked", "Demo booked", ("webhook",)),
        Code("09", "appointment_set", "Appointment set", ("webhook",)),
        Code("10", "deal_closed", "Deal closed", ("webhook", "final")),
        Code("11", "needs_follow_up", "Needs follow-up", ("callback",)),
        Code("12", "do_not_contact", "Do not contact", ("dnc", "final")),
        Code("13", "wrong_number", "Wrong number", ("final",)),
    ]
)


# --- what the system sees ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the daemon saw of a finished call (or of a callback attempt).

    ``result``: the call's end as the hunt names it (``bridged``, ``abandoned``, ``voicemail``,
    ``hangup``...; :attr:`ccd.store.call.CallRecord.status`). ``agent_outcomes``: the Release
    outcomes of the offers to agents (``no_answer``, ``busy``...; ccd.core.queue.OUTCOMES).
    ``wait``: seconds the caller waited before leaving. ``customer_cause``: the hangup cause
    of an outbound/callback customer leg that was not answered (``NO_ANSWER``, ``USER_BUSY``...).
    """

    result: str
    agent_outcomes: tuple[str, ...] = ()
    wait: float | None = None
    customer_cause: str | None = None


def _auto_keys(facts: CallFacts) -> list[str]:
    keys: list[str] = []
    if facts.result == "abandoned":
        keys.append("abandoned")
    elif facts.result == "voicemail":
        keys.append("voicemail")
    if facts.customer_cause:
        meaning = _CUSTOMER_CAUSES.get(facts.customer_cause.upper())
        if meaning:
            keys.append(meaning)
    if facts.result != "bridged":
        # Only a call nobody took is "no answer"/"busy" because of its offers (module doc).
        for outcome in facts.agent_outcomes:
            if outcome in ("no_answer", "busy"):
                keys.append(outcome)
    return keys


def automatic_codes(facts: CallFacts, codes: CodeSet = DEFAULT_CODES) -> tuple[Code, ...]:
    """The configured codes for what the system saw, each once, in a stable order."""
    found: list[Code] = []
    for key in _auto_keys(facts):
        code = codes.by_name(AUTO_NAMES[key])
        if code is not None and code not in found:
            found.append(code)
    return tuple(found)


# --- dispositions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disposition:
    """Codes (by name) set on one call by ``set_by`` (``system``, ``agent:<id>``,
    ``operator``...) at ``set_at`` (epoch seconds). ``number``: the customer's normalised
    number, None when unknown. ``details``: facts worth keeping (``wait`` of an abandoned call).
    """

    call_uuid: str
    codes: tuple[str, ...]
    set_by: str
    set_at: float
    agent: str | None = None
    queue: str | None = None
    number: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.call_uuid, str) or not _UUID_RE.match(self.call_uuid):
            raise DispositionError(f"bad call uuid {_shown(self.call_uuid)}")
        codes = tuple(dict.fromkeys(self.codes))  # the same code twice is one code
        if not codes:
            raise DispositionError("a disposition needs at least one code")
        if len(codes) > MAX_CODES_PER_CALL:
            raise DispositionError(f"at most {MAX_CODES_PER_CALL} codes per call")
        for name in codes:
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise DispositionError(f"bad code name {_shown(name)}")
        object.__setattr__(self, "codes", codes)
        try:
            _check_text("set_by", self.set_by, 64)
        except ValueError as exc:
            raise DispositionError(str(exc)) from None
        at = self.set_at
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise DispositionError(f"set_at must be epoch seconds, got {at!r}")
        object.__setattr__(self, "set_at", float(at))
        for name in ("agent", "queue", "number"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _UUID_RE.match(value)):
                raise DispositionError(f"bad {name} {_shown(value)}")
        object.__setattr__(self, "details", dict(self.details))

    def to_dict(self) -> dict[str, Any]:
        return {
            "call": self.call_uuid,
            "codes": list(self.codes),
            "set_by": self.set_by,
            "set_at": self.set_at,
            "agent": self.agent,
            "queue": self.queue,
            "number": self.number,
            "details": dict(self.details),
        }


def automatic_disposition(
    facts: CallFacts,
    codes: CodeSet,
    *,
    call_uuid: str,
    at: float,
    agent: str | None = None,
    queue: str | None = None,
    number: str | None = None,
) -> Disposition | None:
    """The system's disposition of a call (``set_by="system"``), or None when it saw nothing
    that a configured code names. An abandoned call carries its ``wait``."""
    found = automatic_codes(facts, codes)
    if not found:
        return None
    details: dict[str, Any] = {}
    if facts.wait is not None:
        details["wait"] = round(float(facts.wait), 3)
    if facts.customer_cause:
        details["cause"] = facts.customer_cause
    return Disposition(
        call_uuid,
        tuple(c.name for c in found),
        SYSTEM,
        at,
        agent=agent,
        queue=queue,
        number=number,
        details=details,
    )
