"""Domain events decoded from FreeSWITCH events.

Theory of operation
-------------------
:func:`from_esl` maps one :class:`ccd.core.esl_wire.EslEvent` to at most one frozen
domain event, or ``None`` for everything the core does not use. It never
raises: an event whose identifying headers are missing or garbled (a uuid
that is not a uuid, an extension with a space, a non-numeric expiry) is
ignored, because the daemon must survive whatever arrives on the socket.

Which FreeSWITCH event becomes what (see fs-captures SEQUENCES.md):

* CHANNEL_PARK with ``variable_ccd_action`` -> :class:`FeatureCode` (desk phone
  feature code: the dialplan sets ``ccd_action``, ``ccd_agent_ext`` and, for
  codes with a number, ``ccd_digits``, then parks); CUSTOM ``ccd::agent``
  carrying the same variables is accepted too.
* CHANNEL_PARK with ``variable_ccd_direct_check=true`` -> :class:`EntryParked` (a
  caller to a main number, before the menu: the direct-callback look-up).
* CHANNEL_PARK with ``variable_ccd_call`` -> :class:`LegParked`: an agent leg the
  daemon originated runs its ``&park()`` (after the answer): it can be bridged now.
* CHANNEL_PARK with ``variable_ccd_queue`` -> :class:`CallParked`. Both legs of
  a loopback call park, but only the leg the dialplan ran on carries
  ``ccd_queue`` (capture 14). A call parks again after a transfer or with
  ``park_after_bridge``: the engine de-duplicates by uuid.
* CHANNEL_CREATE -> :class:`ChannelCreated`, CHANNEL_ANSWER -> :class:`ChannelAnswered`,
  CHANNEL_BRIDGE/UNBRIDGE -> :class:`ChannelBridged` / :class:`ChannelUnbridged`,
  CHANNEL_HANGUP_COMPLETE -> :class:`ChannelHangup` (it carries billsec).
* BACKGROUND_JOB -> :class:`JobResult` (body ``+OK <uuid>`` or ``-ERR <CAUSE>``).
* CHANNEL_EXECUTE_COMPLETE -> :class:`ExecuteComplete`.
* CUSTOM sofia::register -> :class:`PhoneRegistered`; sofia::unregister and
  sofia::expire -> :class:`PhoneUnregistered`.
* CUSTOM vm::maintenance with ``VM-Action: leave-message`` -> :class:`VoicemailLeft`
  (mod_voicemail.c ``deliver_vm``: ``VM-User`` is the box, ``VM-Caller-ID-Number`` the
  caller's effective number, ``VM-UUID`` the recording channel's uuid; the caller's channel
  data and variables follow, ``ccd_queue`` among them). Other VM-Actions are ignored.

Which phone a channel belongs to (``extension``): the dialplan's
``ccd_agent_ext`` when set, else the user part of a ``sofia/<profile>/<user>@``
channel name on one of the agent profiles (an agent's desk phone calling out is
``sofia/internal/1003@…``; a hunt leg to ``user/1001`` is
``sofia/internal/1001@…``). Caller-id numbers are not used to identify a phone:
the outside world chooses them, and in capture 16 the customer leg carries the
agent's number too. Caller-controlled strings are kept as data, never parsed.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ccd.core.commands import is_extension, is_uuid
from ccd.core.esl_wire import EslEvent
from ccd.core.routing import split_tags

__all__ = [
    "AGENT_PROFILES",
    "CallParked",
    "ChannelAnswered",
    "ChannelBridged",
    "ChannelCreated",
    "ChannelHangup",
    "ChannelUnbridged",
    "DomainEvent",
    "EntryParked",
    "ExecuteComplete",
    "FeatureCode",
    "JobResult",
    "LegParked",
    "PhoneRegistered",
    "PhoneUnregistered",
    "PromptDone",
    "VoicemailLeft",
    "extension_of_channel_name",
    "fell_through",
    "from_esl",
    "parse_tags",
]

#: SIP profiles whose users are agents' desk phones.
AGENT_PROFILES: tuple[str, ...] = ("internal",)

# Channel variables worth carrying into the core; the rest of an event's
# hundred-odd variables stay on the wire.
_KEPT_VARS = frozenset(
    {
        "originate_disposition",
        "DIALSTATUS",
        "billsec",
        "answersec",
        "duration",
        "hangup_cause",
        "last_bridge_hangup_cause",
        "bridge_uuid",
        "sip_term_status",
        "sip_hangup_disposition",
        "read_result",
        "transfer_history",
    }
)
MAX_VAR_LEN = 1024

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Keys from a desk phone, letters included (A-D, or what a soft phone sends): the
# daemon refuses bad entries out loud; dropping the event would leave the phone silent.
_DIGITS_RE = re.compile(r"^[0-9A-Za-z*#]{0,32}$")
_DIALED_RE = re.compile(r"^\+?[0-9]{6,15}$")
_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CAUSE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_SOFIA_USER_RE = re.compile(r"^sofia/([^/@]+)/([^/@]+)@")


@dataclass(frozen=True, slots=True)
class CallParked:
    """A caller parked by the dialplan for queue ``queue``."""

    uuid: str
    caller_number: str
    caller_name: str
    destination: str
    queue: str
    tags: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EntryParked:
    """A caller to a main number, parked for the direct-callback look-up (R-STICKY).

    ``queue``/``tags``: the number's normal queue, for a bound customer whose agent
    cannot take the call. The daemon sends everyone else on to the menu.
    """

    uuid: str
    caller_number: str
    caller_name: str
    destination: str
    queue: str
    tags: tuple[str, ...] = ()
    moves_on_after: float | None = None  # see fell_through
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class PromptDone:
    """A callback prompt of the dialplan finished and parked the caller (R-OVERFLOW).

    ``stage`` names the prompt (offer, which_number, entered_number, readback,
    store_failed, customer_first); ``values`` holds what the caller keyed, as the
    prompt set it (caller-controlled: validated by whoever uses it)."""

    uuid: str
    stage: str
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeatureCode:
    """An agent dialled a feature code: ``action`` is e.g. login/logout/break/ready."""

    uuid: str
    extension: str
    action: str
    digits: str = ""
    dialed: str = ""  # outbound_check: the outside number the agent dialled
    moves_on_after: float | None = None  # outbound_check: see fell_through
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    uuid: str
    direction: str
    channel_name: str
    extension: str
    caller_number: str
    caller_name: str
    callee_number: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LegParked:
    """An agent leg the daemon originated (``ccd_call`` set) runs its ``&park()``."""

    uuid: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelAnswered:
    uuid: str
    extension: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelBridged:
    uuid: str
    other_uuid: str


@dataclass(frozen=True, slots=True)
class ChannelUnbridged:
    uuid: str
    other_uuid: str


@dataclass(frozen=True, slots=True)
class ChannelHangup:
    uuid: str
    cause: str
    direction: str = ""
    extension: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobResult:
    """``ok`` with ``value`` = the output after ``+OK``, or ``value`` = the -ERR cause."""

    job_uuid: str
    ok: bool
    value: str
    command: str = ""


@dataclass(frozen=True, slots=True)
class ExecuteComplete:
    uuid: str
    app: str
    app_uuid: str
    response: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PhoneRegistered:
    extension: str
    contact: str
    expires: int


@dataclass(frozen=True, slots=True)
class PhoneUnregistered:
    """``reason`` is ``"unregister"`` (the phone said so) or ``"expire"``."""

    extension: str
    reason: str


@dataclass(frozen=True, slots=True)
class VoicemailLeft:
    """A caller left a message in voicemail box ``box`` (issue 13). ``uuid``: the caller's
    channel (the message's id); ``queue``: the call's ``ccd_queue`` ("" when not a queue
    call); ``caller_number`` is caller-controlled data, checked by whoever uses it."""

    uuid: str
    box: str
    caller_number: str
    caller_name: str = ""
    queue: str = ""
    length: int = 0  # seconds recorded


DomainEvent = (
    CallParked
    | EntryParked
    | PromptDone
    | FeatureCode
    | ChannelCreated
    | ChannelAnswered
    | LegParked
    | ChannelBridged
    | ChannelUnbridged
    | ChannelHangup
    | JobResult
    | ExecuteComplete
    | PhoneRegistered
    | PhoneUnregistered
    | VoicemailLeft
)

_Parked = TypeVar("_Parked", CallParked, EntryParked)


def parse_tags(text: str) -> tuple[str, ...]:
    """``"Sales, support"`` -> ``("sales", "support")``; what is no tag is dropped (the
    engine says so: ccd.core.routing.split_tags)."""
    return split_tags(text)[0]


def _kept_vars(ev: EslEvent) -> dict[str, str]:
    out = {}
    headers = ev.headers
    # Names only (a plain event decodes a value when it is read), filtered at C speed: an
    # event has a hundred-odd headers and the daemon reads this for most events it takes.
    for key in (*filter(_IS_CCD_VAR, headers), *_KEPT_HEADERS.intersection(headers)):
        value = headers[key]
        if len(value) <= MAX_VAR_LEN:
            out[key[9:]] = value
    return out


_IS_CCD_VAR = operator.methodcaller("startswith", "variable_ccd_")
_KEPT_HEADERS = frozenset("variable_" + name for name in _KEPT_VARS)


def channel_extension(ev: EslEvent, profiles: Iterable[str] = AGENT_PROFILES) -> str:
    """The desk-phone extension a channel belongs to, or ``""``."""
    ext = ev.var("ccd_agent_ext")
    if is_extension(ext):
        return ext
    return extension_of_channel_name(ev.get("Channel-Name"), profiles)


def extension_of_channel_name(name: str, profiles: Iterable[str] = AGENT_PROFILES) -> str:
    """``sofia/internal/1001@host`` -> ``1001`` on an agent profile, else ``""``.

    Also used on the ``name`` column of ``show channels as json`` at resync.
    """
    match = _SOFIA_USER_RE.match(name)
    if match and match.group(1) in tuple(profiles) and is_extension(match.group(2)):
        return match.group(2)
    return ""


_SHOW_HEAD_RE = re.compile(r'\s*\{\s*"row_count"\s*:\s*\d+\s*(,\s*"rows"\s*:\s*\[)?')
_SPACE_RE = re.compile(r"\s*")
_ROW_DECODER = json.JSONDecoder()


def show_rows(body: str) -> Iterator[dict[str, object]]:
    """The rows of a ``show ... as json`` answer (``{"row_count":N,"rows":[{..},..]}``;
    FreeSWITCH leaves "rows" out when there are none), one at a time, so a caller can
    pause between them: 20,000 registrations are 6 MB of JSON. ValueError when the answer
    is not such a document (an -ERR, a truncated body)."""
    head = _SHOW_HEAD_RE.match(body)
    if head is None:
        raise ValueError(f"not a show ... as json answer: {body[:80]!r}")
    at = head.end()
    if head.group(1):
        at = _SPACE_RE.match(body, at).end()  # type: ignore[union-attr]
        if body.startswith("]", at):
            at += 1
        else:
            while True:
                row, at = _ROW_DECODER.raw_decode(body, at)
                if isinstance(row, dict):
                    yield row
                at = _SPACE_RE.match(body, at).end()  # type: ignore[union-attr]
                if body.startswith(",", at):
                    at = _SPACE_RE.match(body, at + 1).end()  # type: ignore[union-attr]
                elif body.startswith("]", at):
                    at += 1
                    break
                else:
                    raise ValueError(f"bad separator at {at} in a show ... as json answer")
    if body[at:].strip() != "}":
        raise ValueError("a show ... as json answer that does not end where it should")


def _feature_code(ev: EslEvent, uuid: str, profiles: Iterable[str]) -> FeatureCode | None:
    action = ev.var("ccd_action") or ev.get("ccd_action")
    if not _ACTION_RE.match(action):
        return None
    ext = ev.var("ccd_agent_ext") or ev.get("ccd_agent_ext")
    if not is_extension(ext):
        ext = channel_extension(ev, profiles)
    digits = ev.var("ccd_digits") or ev.get("ccd_digits")
    if not ext or not _DIGITS_RE.match(digits):
        return None
    dialed = ev.var("ccd_dialed")
    return FeatureCode(
        uuid,
        ext,
        action,
        digits,
        dialed if _DIALED_RE.match(dialed) else "",
        moves_on_after=_moves_on_after(ev),
    )


def _moves_on_after(ev: EslEvent) -> float | None:
    """``ccd_direct_check_s``: the seconds after which the dialplan's own sched_transfer
    moves a parked call on when no daemon did (None: not said, or not a number)."""
    try:
        seconds = float(ev.var("ccd_direct_check_s"))
    except ValueError:
        return None
    return seconds if 0.0 < seconds <= 3600.0 else None


def fell_through(e: EntryParked | FeatureCode) -> bool:
    """Did the event wait so long that the dialplan may have moved the call on by itself
    (its sched_transfer)? Then the daemon must leave the call alone: a transfer now would
    start the caller's menu again, or dial an agent's customer twice. FreeSWITCH's
    scheduler counts whole seconds, so ``sched_transfer +N`` moves the call between N-1
    and N seconds after the park (+2 fired 1.52 s after it on 1.10.12): later than
    N - 1.25 s (0.25 s at least) is too late to act."""
    if e.moves_on_after is None:
        return False
    return e.waited >= max(0.25, e.moves_on_after - 1.25)


_PROMPT_RESULTS = (
    "ccd_offer_choice",
    "ccd_which",
    "ccd_cb_digits",
    "ccd_confirm",
    "ccd_cf_choice",
    "ccd_callback",  # the request a callback leg belongs to
)


def _prompt_done(ev: EslEvent, uuid: str) -> PromptDone | None:
    stage = ev.var("ccd_stage")
    if not _ACTION_RE.match(stage):
        return None
    values = {name: ev.var(name)[:64] for name in _PROMPT_RESULTS if ev.var(name)}
    return PromptDone(uuid, stage, values)


def _entry_parked(ev: EslEvent, uuid: str) -> EntryParked | None:
    return _parked_for_queue(
        EntryParked,
        ev,
        uuid,
        "ccd_direct_queue",
        "ccd_direct_tags",
        moves_on_after=_moves_on_after(ev),
    )


def _call_parked(ev: EslEvent, uuid: str) -> CallParked | None:
    if ev.var("ccd_call"):
        # An agent leg the daemon originated (`&park()`): it carries ccd_queue
        # too, but it is an offer, not a caller entering the queue.
        return None
    return _parked_for_queue(
        CallParked, ev, uuid, "ccd_queue", "ccd_tags", variables=_kept_vars(ev)
    )


def _parked_for_queue(
    cls: type[_Parked], ev: EslEvent, uuid: str, queue_var: str, tags_var: str, **more: Any
) -> _Parked | None:
    """A caller parked for the queue named by channel variable ``queue_var`` (None when it
    names none), with their caller id, the number they dialled and ``tags_var``'s tags."""
    queue = ev.var(queue_var)
    if not _QUEUE_RE.match(queue):
        return None
    return cls(
        uuid=uuid,
        caller_number=ev.get("Caller-Caller-ID-Number"),
        caller_name=ev.get("Caller-Caller-ID-Name"),
        destination=ev.get("Caller-Destination-Number"),
        queue=queue,
        tags=parse_tags(ev.var(tags_var)),
        **more,
    )


def _job_result(ev: EslEvent) -> JobResult | None:
    job = ev.get("Job-UUID")
    if not job or len(job) > 64 or ev.body is None:
        return None
    text = ev.body.strip()
    command = ev.get("Job-Command")
    if text.startswith("+OK"):
        return JobResult(job, True, text[3:].strip(), command)
    if text.startswith("-ERR"):
        cause = text[4:].strip()
        return JobResult(job, False, cause if _CAUSE_RE.match(cause) else cause[:200], command)
    # Anything else is a failure whose text is kept for the log.
    return JobResult(job, False, text[:200], command)


def _registration(ev: EslEvent) -> PhoneRegistered | PhoneUnregistered | None:
    sub = ev.subclass
    if sub not in ("sofia::register", "sofia::unregister", "sofia::expire"):
        return None
    ext = ""
    for key in ("to-user", "from-user", "user", "username"):
        if is_extension(ev.get(key)):
            ext = ev.get(key)
            break
    if not ext:
        return None
    if sub == "sofia::register":
        try:
            expires = int(ev.get("expires"))
        except ValueError:
            return None
        return PhoneRegistered(ext, ev.get("contact"), expires)
    return PhoneUnregistered(ext, "unregister" if sub == "sofia::unregister" else "expire")


def _voicemail_left(ev: EslEvent) -> VoicemailLeft | None:
    if ev.get("VM-Action") != "leave-message":
        return None
    uuid = ev.get("VM-UUID") or ev.uuid
    box = ev.get("VM-User")
    if not is_uuid(uuid) or not _QUEUE_RE.match(box):
        return None
    queue = ev.var("ccd_queue")
    length = ev.get("VM-Message-Len")
    return VoicemailLeft(
        uuid=uuid,
        box=box,
        caller_number=ev.get("VM-Caller-ID-Number")[:64],
        caller_name=ev.get("VM-Caller-ID-Name")[:64],
        queue=queue if _QUEUE_RE.match(queue) else "",
        length=int(length) if length.isdigit() else 0,
    )


def from_esl(ev: EslEvent, *, profiles: Iterable[str] = AGENT_PROFILES) -> DomainEvent | None:
    """The domain event for ``ev``, or ``None`` when the core has no use for it."""
    try:
        return _from_esl(ev, tuple(profiles))
    except Exception:  # a hostile event must never stop the daemon
        return None


def _from_esl(ev: EslEvent, profiles: tuple[str, ...]) -> DomainEvent | None:
    name = ev.name
    if name == "BACKGROUND_JOB":
        return _job_result(ev)
    if name == "CUSTOM":
        if ev.subclass == "ccd::agent" and is_uuid(ev.uuid):
            return _feature_code(ev, ev.uuid, profiles)
        if ev.subclass == "vm::maintenance":
            return _voicemail_left(ev)
        return _registration(ev)
    uuid = ev.uuid
    if not is_uuid(uuid):
        return None
    if name == "CHANNEL_PARK":
        if ev.var("ccd_call"):
            return LegParked(uuid, _kept_vars(ev))
        if ev.var("ccd_action"):
            return _feature_code(ev, uuid, profiles)
        if ev.var("ccd_stage"):  # a callback prompt finished (before the queue: still set)
            return _prompt_done(ev, uuid)
        if ev.var("ccd_queue"):  # a queue's park, also after a direct-callback entry
            return _call_parked(ev, uuid)
        if ev.var("ccd_direct_check") == "true":
            return _entry_parked(ev, uuid)
        return None
    if name == "CHANNEL_CREATE":
        return ChannelCreated(
            uuid=uuid,
            direction=ev.get("Call-Direction"),
            channel_name=ev.get("Channel-Name"),
            extension=channel_extension(ev, profiles),
            caller_number=ev.get("Caller-Caller-ID-Number"),
            caller_name=ev.get("Caller-Caller-ID-Name"),
            callee_number=ev.get("Caller-Destination-Number"),
            variables=_kept_vars(ev),
        )
    if name == "CHANNEL_ANSWER":
        return ChannelAnswered(uuid, channel_extension(ev, profiles), _kept_vars(ev))
    if name in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):
        other = ev.get("Other-Leg-Unique-ID")
        if other == uuid or not is_uuid(other):
            a, b = ev.get("Bridge-A-Unique-ID"), ev.get("Bridge-B-Unique-ID")
            other = b if a == uuid else a
        if not is_uuid(other):
            return None
        cls = ChannelBridged if name == "CHANNEL_BRIDGE" else ChannelUnbridged
        return cls(uuid, other)
    if name == "CHANNEL_HANGUP_COMPLETE":
        cause = ev.get("Hangup-Cause")
        if not _CAUSE_RE.match(cause):
            return None
        return ChannelHangup(
            uuid, cause, ev.get("Call-Direction"), channel_extension(ev, profiles), _kept_vars(ev)
        )
    if name == "CHANNEL_EXECUTE_COMPLETE":
        return ExecuteComplete(
            uuid,
            ev.get("Application"),
            ev.get("Application-UUID"),
            ev.get("Application-Response"),
            _kept_vars(ev),
        )
    return None
