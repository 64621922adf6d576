"""What the core asks FreeSWITCH to do, and the exact ESL text for it.

Theory of operation
-------------------
The core returns frozen command dataclasses; :func:`to_esl` turns one into
``(kind, text)`` and :func:`to_wire` into the bytes of a whole ESL frame:

* ``"api"``: ``text`` is what follows ``api`` (a short command, answered at once);
* ``"bgapi"``: ``text`` is what follows ``bgapi`` (originate: the answer comes as a
  BACKGROUND_JOB event; the command's ``job_uuid`` is sent as the ``Job-UUID``
  header, which FreeSWITCH honours, so the core knows the job before the reply);
* ``"execute"``: ``text`` is ``"<uuid> <app>"`` or ``"<uuid> <app> <arg>"``
  (uuid and app never contain a space, so ``text.split(" ", 2)`` is exact); it is
  sent as ``sendmsg <uuid>`` with ``call-command: execute`` headers.

Escaping. Anything placed in an ESL line or a dial string is validated here and
refused with :class:`UnsafeValue` when it could change the command's meaning.
An originate dial string is always sent as
``originate '{a=1,b=\\'x, y\\'}user/1001' &park()``: FreeSWITCH's API argument
splitter honours single quotes and turns ``\\'`` into ``'``, so the whole dial
string stays one argument; the ``{...}`` variable parser then sees
``b='x, y'`` and keeps the comma and spaces (fs-captures 14: a name quoted any
other way is cut at the comma). Inside a quoted value a ``'``, ``\\``, ``{``,
``}``, ``$`` (variable expansion) or control character cannot be expressed
safely, so :func:`quote_var_value` refuses them; caller-controlled text (names,
numbers) goes through :func:`sanitize_caller_name` / :func:`sanitize_number`
first, which replace or drop such characters instead of failing the call.

Caller-id names. ``origination_caller_id_name`` is written by :func:`sip_display_name`
because of what mod_sofia (FreeSWITCH 1.10.12, seen on the real switch by
tests/real/test_screenpop.py) does to it: creating the outbound leg it cuts the name at
``/``, ``:`` and ``@`` (``switch_sanitize_number``: ``Doe: John`` shows `` John``), and
writing the INVITE it URL-decodes a name that holds ``%`` and keeps only what stands
between the first and the last ``"`` (``check_decode``), then puts the result between
double quotes as it is. So those characters, and the ones a dial string cannot carry,
travel percent-encoded and are decoded once, by mod_sofia, into the INVITE; ``\\`` is
doubled (it is an escape inside the From header's quoted display name); ``"`` cannot
reach a phone at all and becomes ``”``. Every other printable character, and any
Unicode text, passes as it is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ccd.core.esl_wire import encode_command

__all__ = [
    "Break",
    "Bridge",
    "Broadcast",
    "Command",
    "Execute",
    "Fact",
    "Kill",
    "Originate",
    "Playback",
    "SayNumber",
    "SetVar",
    "Transfer",
    "UnsafeValue",
    "dial_string",
    "is_extension",
    "is_uuid",
    "quote_var_value",
    "sanitize_caller_name",
    "sanitize_number",
    "sip_display_name",
    "to_esl",
    "to_wire",
]


class UnsafeValue(ValueError):
    """A value would change the meaning of an ESL command or dial string."""


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
# Directory user ids / dialplan extensions: no space, quote, brace, comma, '@' or '/'.
_EXTENSION_RE = re.compile(r"^[A-Za-z0-9_.+*#-]{1,64}$")
_VAR_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_CAUSE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_APP_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CONTEXT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A variable value that needs no quotes inside {...}.
_BARE_VALUE_RE = re.compile(r"^[A-Za-z0-9_.+@:/*#-]*$")
# Never inside a quoted {...} value: see the module docstring.
_FORBIDDEN_IN_VALUE = frozenset("'\\{}$")
# Sound paths and similar config values used as one API argument.
_FORBIDDEN_IN_ARG = frozenset("'\"\\{}")

MAX_VALUE_LEN = 512


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def is_extension(value: object) -> bool:
    return isinstance(value, str) and bool(_EXTENSION_RE.match(value))


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise UnsafeValue(f"bad {what}: {value!r:.80}")
    return value


def _check_arg(value: object, what: str) -> str:
    """One space-free API argument from configuration (a sound path, a leg name)."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_VALUE_LEN
        or _has_control(value)
        or any(ch.isspace() for ch in value)
        or any(ch in _FORBIDDEN_IN_ARG for ch in value)
    ):
        raise UnsafeValue(f"bad {what}: {value!r:.80}")
    return value


def quote_var_value(value: object) -> str:
    """A channel-variable value as it must appear inside ``{...}`` of a dial string.

    Values made only of safe characters go bare; anything else is wrapped in
    ``\\'...\\'`` (the escaped quotes survive the outer single quotes). Raises
    :class:`UnsafeValue` for what cannot be expressed safely.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise UnsafeValue(f"variable value of type {type(value).__name__}")
    if len(text) > MAX_VALUE_LEN:
        raise UnsafeValue(f"variable value longer than {MAX_VALUE_LEN} characters")
    if (
        _has_control(text)
        or any(ch in _FORBIDDEN_IN_VALUE for ch in text)
        # ^^ redefines the list separator; :_: splits enterprise originates.
        or text.startswith("^^")
        or ":_:" in text
    ):
        raise UnsafeValue(f"unsafe variable value: {text!r:.80}")
    if _BARE_VALUE_RE.match(text):
        return text
    return "\\'" + text + "\\'"


#: What a ``"`` shows as on a phone: mod_sofia cuts a caller-id name at a double quote.
SIP_DQUOTE = "\u201d"
# Travel percent-encoded in origination_caller_id_name (see the module docstring): cut by
# mod_sofia ("/", ":", "@"), decoded by it ("%"), or not expressible in a dial string.
_SIP_NAME_ESCAPES = {ch: "%%%02X" % ord(ch) for ch in "%/:@'{}$^"} | {"\\": "%5C%5C"}


def sanitize_caller_name(text: object, max_len: int = 64) -> str:
    """Caller-controlled display text: one line a SIP phone can show.

    Control characters (newlines too) become spaces, runs of spaces collapse, a ``"``
    becomes ``”`` (no SIP display name can carry it through FreeSWITCH) and the
    result is cut to ``max_len`` characters. Never raises; a non-string gives ``""``.
    The dial string encodes the rest (:func:`sip_display_name`).
    """
    if not isinstance(text, str):
        return ""
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            ch = " "
        out.append(SIP_DQUOTE if ch == '"' else ch)
    return " ".join("".join(out).split())[:max_len].strip()


def sip_display_name(text: str) -> str:
    """The ``origination_caller_id_name`` value that makes a SIP phone show ``text``.

    mod_sofia decodes it once into the INVITE's From display name (module docstring).
    Control characters are left for :func:`quote_var_value` to refuse: decoded into a
    SIP header they would split it.
    """
    text = text.replace('"', SIP_DQUOTE)
    return "".join(_SIP_NAME_ESCAPES.get(ch, ch) for ch in text)


def sanitize_number(text: object, max_len: int = 32) -> str:
    """Caller-controlled number: a leading ``+`` and digits only, or ``""``."""
    if not isinstance(text, str):
        return ""
    text = text.strip()
    plus = text.startswith("+")
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    return (("+" if plus else "") + digits)[:max_len] if digits else ""


@dataclass(frozen=True, slots=True)
class Fact:
    """Something that happened, for the engine to log (``name`` is the log event)."""

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Originate:
    """``bgapi originate '{vars}user/<ext>' &park()``.

    ``ring_timeout`` becomes ``originate_timeout`` (whole seconds): only a safety
    net, the hunt times the ring itself. ``job_uuid`` is sent as the Job-UUID
    header so the BACKGROUND_JOB can be matched to this leg.
    """

    leg_uuid: str
    endpoint_ext: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    ring_timeout: int = 20
    job_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class Bridge:
    a: str
    b: str


@dataclass(frozen=True, slots=True)
class Kill:
    uuid: str
    cause: str = "NORMAL_CLEARING"


@dataclass(frozen=True, slots=True)
class Transfer:
    uuid: str
    extension: str
    context: str = "ccd"


@dataclass(frozen=True, slots=True)
class Broadcast:
    uuid: str
    path: str
    leg: str = "aleg"


@dataclass(frozen=True, slots=True)
class SayNumber:
    """mod_say reads a number the daemon computed to a channel, through ``uuid_broadcast``:
    ``uuid_broadcast <uuid> 'say::en number pronounced 3' aleg``. FreeSWITCH's API splitter
    honours single quotes (and strips them), so the application's arguments, which hold
    spaces, stay one argument; ``app::args`` is how uuid_broadcast runs an application.
    Only a non-negative integer reaches the text."""

    uuid: str
    number: int
    leg: str = "aleg"


@dataclass(frozen=True, slots=True)
class Break:
    """Stop what is playing on a channel (``uuid_break <uuid> all``)."""

    uuid: str


@dataclass(frozen=True, slots=True)
class SetVar:
    uuid: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a dialplan application on a channel (``sendmsg`` execute)."""

    uuid: str
    app: str
    arg: str = ""
    event_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class Playback:
    uuid: str
    path: str
    event_uuid: str | None = None


Command = (
    Originate
    | Bridge
    | Kill
    | Transfer
    | Broadcast
    | SayNumber
    | Break
    | SetVar
    | Execute
    | Playback
)

_BROADCAST_LEGS = frozenset({"aleg", "bleg", "both"})


def dial_string(
    endpoint_ext: str, variables: Mapping[str, Any], *, leg_uuid: str, ring_timeout: int
) -> str:
    """The quoted dial string: ``'{origination_uuid=…,…}user/<ext>'``."""
    _check(_UUID_RE, leg_uuid, "leg uuid")
    _check(_EXTENSION_RE, endpoint_ext, "extension")
    if isinstance(ring_timeout, bool) or not isinstance(ring_timeout, int) or ring_timeout < 1:
        raise UnsafeValue(f"bad ring timeout: {ring_timeout!r}")
    pairs = [("origination_uuid", leg_uuid), ("originate_timeout", ring_timeout)]
    for name, value in variables.items():
        _check(_VAR_NAME_RE, name, "variable name")
        if name in ("origination_uuid", "originate_timeout"):
            raise UnsafeValue(f"variable {name} is set by the command itself")
        if name == "origination_caller_id_name" and isinstance(value, str):
            value = sip_display_name(value)
        pairs.append((name, value))
    inner = ",".join(f"{name}={quote_var_value(value)}" for name, value in pairs)
    return "'{" + inner + "}user/" + endpoint_ext + "'"


def to_esl(cmd: Command) -> tuple[str, str]:
    """``(kind, text)`` for a command; raises :class:`UnsafeValue` on bad input."""
    if isinstance(cmd, Originate):
        if cmd.job_uuid is not None:
            _check(_UUID_RE, cmd.job_uuid, "job uuid")
        dial = dial_string(
            cmd.endpoint_ext, cmd.variables, leg_uuid=cmd.leg_uuid, ring_timeout=cmd.ring_timeout
        )
        return "bgapi", f"originate {dial} &park()"
    if isinstance(cmd, Bridge):
        a, b = _check(_UUID_RE, cmd.a, "uuid"), _check(_UUID_RE, cmd.b, "uuid")
        return "api", f"uuid_bridge {a} {b}"
    if isinstance(cmd, Kill):
        uuid, cause = _check(_UUID_RE, cmd.uuid, "uuid"), _check(_CAUSE_RE, cmd.cause, "cause")
        return "api", f"uuid_kill {uuid} {cause}"
    if isinstance(cmd, Transfer):
        uuid = _check(_UUID_RE, cmd.uuid, "uuid")
        ext = _check(_EXTENSION_RE, cmd.extension, "extension")
        context = _check(_CONTEXT_RE, cmd.context, "context")
        return "api", f"uuid_transfer {uuid} {ext} XML {context}"
    if isinstance(cmd, Broadcast):
        uuid = _check(_UUID_RE, cmd.uuid, "uuid")
        path = _check_arg(cmd.path, "sound path")
        if cmd.leg not in _BROADCAST_LEGS:
            raise UnsafeValue(f"bad broadcast leg: {cmd.leg!r:.20}")
        return "api", f"uuid_broadcast {uuid} {path} {cmd.leg}"
    if isinstance(cmd, SayNumber):
        uuid = _check(_UUID_RE, cmd.uuid, "uuid")
        number = cmd.number
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 10**9:
            raise UnsafeValue(f"bad number to say: {number!r:.20}")
        if cmd.leg not in _BROADCAST_LEGS:
            raise UnsafeValue(f"bad broadcast leg: {cmd.leg!r:.20}")
        return "api", f"uuid_broadcast {uuid} 'say::en number pronounced {number}' {cmd.leg}"
    if isinstance(cmd, Break):
        return "api", f"uuid_break {_check(_UUID_RE, cmd.uuid, 'uuid')} all"
    if isinstance(cmd, SetVar):
        uuid = _check(_UUID_RE, cmd.uuid, "uuid")
        name = _check(_VAR_NAME_RE, cmd.name, "variable name")
        value = _check_arg(cmd.value, "variable value")
        return "api", f"uuid_setvar {uuid} {name} {value}"
    if isinstance(cmd, Execute | Playback):
        app, arg = ("playback", cmd.path) if isinstance(cmd, Playback) else (cmd.app, cmd.arg)
        uuid = _check(_UUID_RE, cmd.uuid, "uuid")
        _check(_APP_RE, app, "application")
        if cmd.event_uuid is not None:
            _check(_UUID_RE, cmd.event_uuid, "event uuid")
        if not isinstance(arg, str) or len(arg) > MAX_VALUE_LEN or _has_control(arg):
            raise UnsafeValue(f"bad application argument: {arg!r:.80}")
        return "execute", f"{uuid} {app} {arg}" if arg else f"{uuid} {app}"
    raise TypeError(f"not a command: {cmd!r:.80}")


def to_wire(cmd: Command) -> bytes:
    """The whole ESL frame for a command, ready to write to the socket."""
    kind, text = to_esl(cmd)
    if kind == "bgapi":
        job = cmd.job_uuid if isinstance(cmd, Originate) else None
        return encode_command("bgapi " + text, [("Job-UUID", job)] if job else [])
    if kind == "api":
        return encode_command("api " + text)
    uuid, app, *rest = text.split(" ", 2)
    headers = [("call-command", "execute"), ("execute-app-name", app)]
    if rest:
        headers.append(("execute-app-arg", rest[0]))
    event_uuid = cmd.event_uuid if isinstance(cmd, Execute | Playback) else None
    if event_uuid:
        headers.append(("Event-UUID", event_uuid))
    return encode_command("sendmsg " + uuid, headers)
