"""What the fake event socket reads from a client: command frames, event names, filters,
a connection's subscriptions (:class:`Subscriptions`), and the reply frames it writes
back (FreeSWITCH 1.10.12's texts, fs-captures).

Malformed input (a header block over ``MAX_HEADER_BYTES``, a bad or huge ``Content-Length``,
NUL bytes or invalid UTF-8 in a header block) is a :class:`BadInput`; the server closes that
connection only.
"""

from __future__ import annotations

import functools
import re

from ccd.core.esl_wire import MAX_HEADER_BYTES
from ccd.fakeswitch.fsevents import FsEvent

#: Largest command body accepted from a client (sendmsg/sendevent bodies are small).
MAX_COMMAND_BODY = 1024 * 1024

#: FreeSWITCH 1.10's event type names (switch_event_types_t), for `event`/`nixevent`.
EVENT_NAMES = frozenset(
    [
        "CUSTOM",
        "CLONE",
        "CHANNEL_CREATE",
        "CHANNEL_DESTROY",
        "CHANNEL_STATE",
        "CHANNEL_CALLSTATE",
        "CHANNEL_ANSWER",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HOLD",
        "CHANNEL_UNHOLD",
        "CHANNEL_BRIDGE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_OUTGOING",
        "CHANNEL_PARK",
        "CHANNEL_UNPARK",
        "CHANNEL_APPLICATION",
        "CHANNEL_ORIGINATE",
        "CHANNEL_UUID",
        "API",
        "LOG",
        "INBOUND_CHAN",
        "OUTBOUND_CHAN",
        "STARTUP",
        "SHUTDOWN",
        "PUBLISH",
        "UNPUBLISH",
        "TALK",
        "NOTALK",
        "SESSION_CRASH",
        "MODULE_LOAD",
        "MODULE_UNLOAD",
        "DTMF",
        "MESSAGE",
        "PRESENCE_IN",
        "NOTIFY_IN",
        "PRESENCE_OUT",
        "PRESENCE_PROBE",
        "MESSAGE_WAITING",
        "MESSAGE_QUERY",
        "ROSTER",
        "CODEC",
        "BACKGROUND_JOB",
        "DETECTED_SPEECH",
        "DETECTED_TONE",
        "PRIVATE_COMMAND",
        "HEARTBEAT",
        "TRAP",
        "ADD_SCHEDULE",
        "DEL_SCHEDULE",
        "EXE_SCHEDULE",
        "RE_SCHEDULE",
        "RELOADXML",
        "NOTIFY",
        "PHONE_FEATURE",
        "PHONE_FEATURE_SUBSCRIBE",
        "SEND_MESSAGE",
        "RECV_MESSAGE",
        "REQUEST_PARAMS",
        "CHANNEL_DATA",
        "GENERAL",
        "COMMAND",
        "SESSION_HEARTBEAT",
        "CLIENT_DISCONNECTED",
        "SERVER_DISCONNECTED",
        "SEND_INFO",
        "RECV_INFO",
        "RECV_RTCP_MESSAGE",
        "SEND_RTCP_MESSAGE",
        "CALL_SECURE",
        "NAT",
        "RECORD_START",
        "RECORD_STOP",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "CALL_UPDATE",
        "FAILURE",
        "SOCKET_DATA",
        "MEDIA_BUG_START",
        "MEDIA_BUG_STOP",
        "CONFERENCE_DATA_QUERY",
        "CONFERENCE_DATA",
        "CALL_SETUP_REQ",
        "CALL_SETUP_RESULT",
        "CALL_DETAIL",
        "DEVICE_STATE",
        "TEXT",
        "SHUTDOWN_REQUESTED",
        "ALL",
    ]
)
FORMATS = ("plain", "json", "xml")
END_OF_BLOCK = re.compile(rb"\n\r?\n")


def canonical_event_name(token: str) -> str | None:
    """FreeSWITCH's event type for a subscription word (case-insensitive), or None."""
    name = token.upper()
    if name.startswith("SWITCH_EVENT_"):
        name = name[len("SWITCH_EVENT_") :]
    return name if name in EVENT_NAMES else None


class Subscriptions:
    """A connection's ``event`` / ``nixevent`` / ``noevents`` / ``filter`` state and
    FreeSWITCH's rule for the events it lets through (sans-IO; the ESL connection
    mixes it in and is told of every change by :meth:`_subscriptions_changed`)."""

    def _init_subscriptions(self) -> None:
        self.events_on = False
        self.format = "plain"
        self.all_events = False
        self.event_types: set[str] = set()
        self.subclasses: set[str] = set()
        self.filters: list[tuple[str, str]] = []

    def _subscriptions_changed(self) -> None:
        """Which event names are listened to may have changed."""

    def _event(self, line: str) -> str:
        rest = line[5:]
        space = rest.find(" ")
        tokens = rest[space + 1 :].split(" ") if space >= 0 else []
        custom = False
        keys = 0
        for i, token in enumerate(tokens):
            if i == 0 and token.lower() in FORMATS:
                self.format = token.lower()
                continue
            if custom:
                if token:
                    self.subclasses.add(token)
                continue
            name = canonical_event_name(token)
            if name is None:
                continue
            keys += 1
            if name == "ALL":
                self.all_events = True
            else:
                self.event_types.add(name)
            if name == "CUSTOM":
                custom = True
        if not keys:
            return "-ERR no keywords supplied"
        self.events_on = True
        self._subscriptions_changed()
        return f"+OK event listener enabled {self.format}"

    def _nixevent(self, line: str) -> str:
        rest = line[8:]
        space = rest.find(" ")
        tokens = rest[space + 1 :].split(" ") if space >= 0 else []
        custom = False
        keys = 0
        for token in tokens:
            if custom:
                self.subclasses.discard(token)
                continue
            name = canonical_event_name(token)
            if name is None:
                continue
            keys += 1
            if name == "CUSTOM":
                custom = True
            elif name == "ALL":
                self.all_events = False
                self.event_types.clear()
            else:
                if self.all_events:
                    # Nixing one type out of ALL leaves every other type on.
                    self.all_events = False
                    self.event_types = set(EVENT_NAMES - {"ALL"})
                self.event_types.discard(name)
        if not keys:
            return "-ERR no keywords supplied"
        self.events_on = True
        self._subscriptions_changed()
        return "+OK events nixed"

    def _filter(self, rest: str) -> str:
        rest = rest.lstrip(" ")
        name, sep, value = rest.partition(" ")
        if name.lower() == "delete" and sep:
            target, sep2, target_value = value.partition(" ")
            if target.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [
                    (k, v)
                    for k, v in self.filters
                    if not (k.lower() == target.lower() and (not sep2 or v == target_value))
                ]
            return "+OK filter deleted. [{}][{}]".format(target, target_value if sep2 else "")
        if sep:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            self.filters.append((name, value))
            return f"+OK filter added. [{name}]=[{value}]"
        return "-ERR invalid syntax"

    def _wants(self, ev: FsEvent) -> bool:
        if self.all_events:
            send = True
        elif (name := ev.name) in self.event_types:
            if name == "CUSTOM":
                subclass = ev.subclass
                send = not subclass or subclass in self.subclasses
            else:
                send = True
        else:
            return False
        if send and self.filters:
            send = filters_pass(self.filters, ev)
        return send

    def _unsubscribe_all(self) -> str:
        if not self.events_on:
            return "-ERR not listening for events"
        self.events_on = False
        self.all_events = False
        self.event_types.clear()
        self.subclasses.clear()
        self._subscriptions_changed()
        return "+OK no longer listening for events"


class BadInput(Exception):
    """The client sent something that is not an ESL command frame."""


class Command:
    __slots__ = ("body", "headers", "line")

    def __init__(self, line: str, headers: list[tuple[str, str]], body: str | None) -> None:
        self.line = line
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


class CommandReader:
    """Sans-IO: bytes in, complete client command frames out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: tuple[str, list[tuple[str, str]]] | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_command(self) -> Command | None:
        if self._pending is None:
            # FreeSWITCH skips stray CR/LF between frames.
            start = 0
            while start < len(self._buf) and self._buf[start] in b"\r\n":
                start += 1
            if start:
                del self._buf[:start]
            match = END_OF_BLOCK.search(self._buf)
            if match is None:
                if len(self._buf) > MAX_HEADER_BYTES:
                    raise BadInput(f"header block longer than {MAX_HEADER_BYTES} bytes")
                return None
            block = bytes(self._buf[: match.start()])
            del self._buf[: match.end()]
            if len(block) > MAX_HEADER_BYTES:
                raise BadInput(f"header block longer than {MAX_HEADER_BYTES} bytes")
            line, headers = parse_block(block)
            length = 0
            for key, value in headers:
                if key.lower() == "content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        raise BadInput(f"bad Content-Length {value[:40]!r}") from None
                    if length < 0 or length > MAX_COMMAND_BODY:
                        raise BadInput(f"Content-Length {length} out of range")
            if length == 0:
                return Command(line, headers, None)
            self._pending, self._need = (line, headers), length
        if len(self._buf) < self._need:
            return None
        raw = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        (line, headers), self._pending, self._need = self._pending, None, 0
        return Command(line, headers, raw.decode("utf-8", errors="replace"))


def parse_block(block: bytes) -> tuple[str, list[tuple[str, str]]]:
    if b"\x00" in block:
        raise BadInput("NUL byte in command")
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("command is not UTF-8") from None
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    headers: list[tuple[str, str]] = []
    for ln in lines[1:]:
        name, sep, value = ln.partition(":")
        if sep and name:
            headers.append((name, value.lstrip(" ")))
    return lines[0], headers


def reply(text: str) -> bytes:
    return (f"Content-Type: command/reply\nReply-Text: {text}\n\n").encode()


def api_response(body: str) -> bytes:
    return _large_api_response(body) if len(body) >= _LARGE else _api_frame(body)


def _api_frame(body: str) -> bytes:
    data = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


#: Bodies this long are encoded once while they stay the same: ``show registrations`` of
#: 20,000 phones is 5 MB, encoded and copied in the fake's one loop (FreeSWITCH answers an
#: api on the connection's own thread), which held every call of the benchmark ~10 ms.
_LARGE = 65536
_large_api_response = functools.lru_cache(maxsize=2)(_api_frame)


def filters_pass(filters: list[tuple[str, str]], ev: FsEvent) -> bool:
    # FreeSWITCH's rule: with filters set, an event passes when a positive
    # filter matches and no negative ("-value") filter matches.
    send = False
    for name, raw in filters:
        value = ev.get(name)
        if value is None:
            continue
        positive = True
        i = 0
        while i < len(raw) and raw[i] in "+- ":
            if raw[i] == "+":
                positive = True
            elif raw[i] == "-":
                positive = False
            i += 1
        wanted = raw[i:]
        if send and positive:
            continue
        if raw.startswith("/"):
            pattern = wanted[1:-1] if wanted.endswith("/") and len(wanted) > 1 else wanted[1:]
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = False
        else:
            matched = value.lower() == wanted.lower()
        if matched:
            if not positive:
                return False
            send = True
    return send
