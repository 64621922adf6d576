"""Screen-pop: what the agent's phone shows while it rings, and the offer's JSON (R-IVR).

Theory of operation
-------------------
The caller-id name is the configured ``routing.caller_id_template`` (a ``str.format`` template)
rendered with these placeholders, each already sanitised:

==============  ==========================================================================
``{name}``      the customer's name; else the caller-id name the call came with; else the
                number
``{vip}``       ``"VIP "`` for a VIP customer, else ``""`` (so ``{vip}{name}`` reads well)
``{lang}``      the customer's language code (``hu``, ``en-gb``) or ``""``
``{queue}``     the queue's name
``{number}``    the caller's number, normalised when it can be (``+3612345678``)
``{last}``      the outcome of the newest contact in the history (``answered``...) or ``""``
``{direct}``    ``"DIRECT "`` when the call was routed to this agent by a sticky binding
==============  ==========================================================================

Format specs such as ``{name:.20}`` are allowed. :func:`validate_template` refuses unknown
placeholders, attribute or index access and conversions; config loading calls it, so a bad
template stops the daemon at start, never a call. The rendered text then goes through
:func:`ccd.core.commands.sanitize_caller_name`: no control characters (newlines become spaces), no
double quote (it cannot reach a phone through FreeSWITCH: it becomes U+201D, so
``Doe, John "VIP"`` still reads well), at most ``MAX_DISPLAY_LEN`` characters. Every other
printable character and Unicode (NFC) is kept: the dial string carries it to the phone
(:func:`ccd.core.commands.sip_display_name`). Rendering never raises.

:func:`offer_payload` builds the JSON document of an offer, shown by ``/calls/<uuid>`` and
POSTed to the CRM webhook. Pure: no I/O, no clock.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from ccd.core.commands import sanitize_caller_name, sanitize_number
from ccd.core.customer import Customer
from ccd.core.numbers import try_normalize

__all__ = [
    "MAX_DISPLAY_LEN",
    "OFFER_PAYLOAD_VERSION",
    "PLACEHOLDERS",
    "caller_id_name",
    "offer_payload",
    "validate_template",
]

MAX_DISPLAY_LEN = 48
OFFER_PAYLOAD_VERSION = 1
PLACEHOLDERS = ("name", "vip", "lang", "queue", "number", "last", "direct")
#: History entries carried in an offer payload.
PAYLOAD_HISTORY = 10

_SAMPLE = {name: "x" for name in PLACEHOLDERS}
_CALL_KEYS = (
    "uuid",
    "queue",
    "caller_number",
    "caller_name",
    "entered_at",
    "priority",
    "tags",
    "direct",
)
_AGENT_KEYS = ("id", "ext", "tags")


def validate_template(template: str) -> str:
    """``template`` if usable; ValueError naming the first bad placeholder otherwise."""
    if not isinstance(template, str):
        raise ValueError(f"caller-id template must be text, got {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"caller-id template is not valid ({exc})") from None
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{field_name}}} in caller-id template; "
                f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        if conversion or "{" in (spec or ""):
            raise ValueError(
                f"placeholder {{{field_name}}}: conversions and nested fields are not allowed"
            )
    try:
        template.format_map(_SAMPLE)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"caller-id template cannot be rendered ({exc})") from None
    return template


def _clean(text: object) -> str:
    if not isinstance(text, str):
        return ""
    return sanitize_caller_name(unicodedata.normalize("NFC", text))


def _last_outcome(history: Sequence[Mapping[str, Any]]) -> str:
    for entry in history[:1]:
        if isinstance(entry, Mapping):
            return _clean(entry.get("outcome"))
    return ""


def _display_number(caller_number: object) -> str:
    return try_normalize(caller_number) or sanitize_number(caller_number)


def caller_id_name(
    template: str,
    customer: Customer | None,
    caller_name: str,
    caller_number: str,
    queue: str,
    direct: bool = False,
    *,
    history: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The text for ``origination_caller_id_name`` (see the module docstring). Never raises."""
    number = _display_number(caller_number)
    name = (customer and _clean(customer.name)) or _clean(caller_name) or number
    values = {
        "name": name,
        "vip": "VIP " if customer is not None and customer.vip else "",
        "lang": _clean(customer.language) if customer is not None else "",
        "queue": _clean(queue),
        "number": number,
        "last": _last_outcome(history),
        "direct": "DIRECT " if direct else "",
    }
    try:
        text = template.format_map(values)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        # validate_template runs at config load; this is only a last line of defence.
        text = name
    return _clean(text)[:MAX_DISPLAY_LEN].strip() or name[:MAX_DISPLAY_LEN]


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` made of JSON types only (sets sorted, bytes decoded, others as text)."""
    if depth > 8:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


def offer_payload(
    call: Mapping[str, Any],
    agent: Mapping[str, Any],
    customer: Customer | None,
    history: Sequence[Mapping[str, Any]],
    *,
    display_name: str = "",
) -> dict[str, Any]:
    """The JSON document of an offer (webhook body, ``/calls/<uuid>``)::

        {"event": "agent.offered", "version": 1,
         "call": {"uuid", "queue", "caller_number", "caller_name", "number" (normalised or
                  null), "entered_at", "priority", "tags", "direct"} (keys the call has),
         "agent": {"id", "ext", "tags"},
         "customer": {"number", "name", "language", "vip", "fields"} | null,
         "history": [newest contact first, at most PAYLOAD_HISTORY],
         "display_name": what the phone shows}

    Caller-controlled texts are kept as received (JSON escapes them); only known keys of
    ``call`` and ``agent`` are copied, so internal state does not leak to a CRM.
    """
    call_view = {k: _jsonable(call[k]) for k in _CALL_KEYS if k in call}
    call_view["number"] = try_normalize(call.get("caller_number"))
    return {
        "event": "agent.offered",
        "version": OFFER_PAYLOAD_VERSION,
        "call": call_view,
        "agent": {k: _jsonable(agent[k]) for k in _AGENT_KEYS if k in agent},
        "customer": None if customer is None else _jsonable(customer.to_dict()),
        "history": [_jsonable(entry) for entry in list(history)[:PAYLOAD_HISTORY]],
        "display_name": display_name,
    }
