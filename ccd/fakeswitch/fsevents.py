"""FreeSWITCH events for the fake switch: building them and putting them on the wire.

Theory of operation
-------------------
An :class:`FsEvent` is an ordered list of ``(name, value)`` headers plus an
optional body, exactly as FreeSWITCH keeps it: header order matters because the
fidelity tests compare it with the recordings in ``fs-captures/``.

:class:`EventFactory` stamps the standard header block every FreeSWITCH event
carries (recorded order, see ``fs-captures``)::

    Event-Name, Core-UUID, FreeSWITCH-Hostname, FreeSWITCH-Switchname,
    FreeSWITCH-IPv4, FreeSWITCH-IPv6, Event-Date-Local, Event-Date-GMT,
    Event-Date-Timestamp (microseconds), Event-Calling-File,
    Event-Calling-Function, Event-Calling-Line-Number, Event-Sequence

followed by the event's own headers. Three recorded variations:

* a module's CUSTOM event (``sofia::register``, ``callcenter::info``) puts
  ``Event-Subclass`` first, then ``Event-Name`` and the block;
* a CUSTOM event fired by the dialplan ``event`` application
  (``event_app=True``) puts ``Event-Subclass`` first and ``Event-Name`` *after*
  ``Event-Sequence`` (capture 14, README.txt);
* PRIVATE_COMMAND events start with the command's own headers (``leading``)
  before ``Event-Name`` (capture 11).

The factory reads time only through the injected ``clock`` and numbers events
with its own ``Event-Sequence`` counter, so tests are deterministic. The two
date texts change once a second and are kept for that second.

:func:`serialize_plain` / :func:`serialize_json` produce a whole outer frame
(``Content-Length`` first, then ``Content-Type``, as mod_event_socket writes
it). Plain values are URL-encoded with :func:`ccd.core.esl_wire.url_encode`; JSON is
compact (no spaces), keeps duplicate header names and puts an event body under
``Content-Length`` + ``_body`` at the end. It is what ``json.dumps(value,
ensure_ascii=False)`` writes per key and value, produced by ``orjson`` a whole
run of distinct names at a time (the two agree on every code point:
``tests/test_fakeswitch_equivalence.py`` checks it).

:class:`EventBus` is the switch-wide fan-out: the call model fires, the ESL
server (one subscriber per connection) filters and queues. Subscribers must not
block; one failing subscriber never stops the others. A subscriber may say
which event names it can want (``wants``); :meth:`EventBus.wanted` lets the call
model skip building an event nobody can want (it still takes its
``Event-Sequence`` number, :meth:`EventFactory.skip`), as FreeSWITCH numbers
every event whether or not a listener is bound.
"""

from __future__ import annotations

import itertools
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
import structlog

from ccd.core.esl_wire import url_encode

__all__ = [
    "EventBus",
    "EventFactory",
    "FsEvent",
    "serialize_json",
    "serialize_plain",
    "serialize_xml",
]

log = structlog.get_logger()

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class FsEvent:
    """One FreeSWITCH event: headers in FreeSWITCH's order and an optional body."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None

    @property
    def name(self) -> str:
        return self.get("Event-Name") or ""

    @property
    def subclass(self) -> str:
        return self.get("Event-Subclass") or ""

    def get(self, key: str) -> str | None:
        """First value of ``key``; names compare case-insensitively, as in FreeSWITCH."""
        for name, value in self.headers:
            if name == key:
                return value
        lowered = key.lower()
        for name, value in self.headers:
            if name.lower() == lowered:
                return value
        return None

    def add(self, name: str, value: str) -> None:
        """Append a header at the bottom (FreeSWITCH's SWITCH_STACK_BOTTOM)."""
        self.headers.append((name, value))


class EventFactory:
    """Builds events with FreeSWITCH's standard header block and sequence numbers."""

    def __init__(
        self,
        clock: Callable[[], float],
        hostname: str = "fakeswitch",
        core_uuid: str | None = None,
        ipv4: str = "127.0.0.1",
        ipv6: str = "::1",
        first_sequence: int = 1,
    ) -> None:
        self._clock = clock
        self.hostname = hostname
        self.core_uuid = core_uuid or str(uuidlib.uuid4())
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self._sequence = itertools.count(first_sequence)
        self._dates_at: int | None = None
        self._dates_text = ("", "")

    def next_sequence(self) -> int:
        return next(self._sequence)

    def skip(self) -> None:
        """An event nobody listens to: it takes its sequence number and is not built."""
        next(self._sequence)

    def _dates(self, seconds: int) -> tuple[str, str]:
        if seconds != self._dates_at:
            self._dates_at = seconds
            self._dates_text = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)),
                _rfc822_gmt(time.gmtime(seconds)),
            )
        return self._dates_text

    def make(
        self,
        name: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        subclass: str | None = None,
        body: str | None = None,
        calling_file: str = "switch_channel.c",
        calling_function: str = "",
        calling_line: int = 0,
        event_app: bool = False,
        leading: Iterable[tuple[str, str]] = (),
    ) -> FsEvent:
        """A new event; see the module docstring for where each header goes.

        ``subclass`` is only meaningful with ``name="CUSTOM"``. ``event_app``
        reproduces the dialplan ``event`` application's order; ``leading``
        headers come before everything (PRIVATE_COMMAND).
        """
        if subclass is not None and name != "CUSTOM":
            raise ValueError(f"a subclass needs name CUSTOM, got {name!r}")
        micros = round(self._clock() * 1_000_000)
        local, gmt = self._dates(micros // 1_000_000)
        out: list[tuple[str, str]] = list(leading)
        if subclass is not None:
            out.append(("Event-Subclass", subclass))
        if not event_app:
            out.append(("Event-Name", name))
        out += [
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6),
            ("Event-Date-Local", local),
            ("Event-Date-GMT", gmt),
            ("Event-Date-Timestamp", str(micros)),
            ("Event-Calling-File", calling_file),
            ("Event-Calling-Function", calling_function),
            ("Event-Calling-Line-Number", str(calling_line)),
            ("Event-Sequence", str(self.next_sequence())),
        ]
        if event_app:
            out.append(("Event-Name", name))
        out.extend(headers)
        return FsEvent(out, body)


def _rfc822_gmt(t: time.struct_time) -> str:
    # Written out by hand: strftime's %a/%b follow the process locale.
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _event_frame(payload: bytes, kind: str) -> bytes:
    # mod_event_socket writes Content-Length before Content-Type for events.
    head = f"Content-Length: {len(payload)}\nContent-Type: text/event-{kind}\n\n"
    return head.encode("ascii") + payload


#: Recently written plain header lines, ``"Name: url-encoded value\n"`` by (name, value): a
#: call's ~10 events repeat most of their headers, and the encoding goes byte by byte.
_PLAIN_LINES: dict[tuple[str, str], str] = {}
_PLAIN_LINES_MAX = 50_000


def _plain_line(header: tuple[str, str]) -> str:
    if len(_PLAIN_LINES) >= _PLAIN_LINES_MAX:
        _PLAIN_LINES.clear()
    line = _PLAIN_LINES[header] = f"{header[0]}: {url_encode(header[1])}\n"
    return line


def serialize_plain(ev: FsEvent) -> bytes:
    """The whole ``text/event-plain`` frame for ``ev`` (ccd.core.esl_wire's encoding)."""
    if not ev.headers and ev.body is None:
        return _event_frame(b"\n\n", "plain")
    known = _PLAIN_LINES.get
    text = "".join([known(header) or _plain_line(header) for header in ev.headers])
    if ev.body is not None:
        data = ev.body.encode("utf-8")
        payload = (text + "Content-Length: %d\n\n" % len(data)).encode("utf-8") + data
    else:
        payload = (text + "\n").encode("utf-8")
    return _event_frame(payload, "plain")


def _json_members(headers: list[tuple[str, str]]) -> bytes:
    """``"k":"v",...`` for every header, in order, duplicate names kept.

    A run of distinct names goes through one dict; a repeated name starts the next run."""
    members = dict(headers)
    if len(members) == len(headers):
        return orjson.dumps(members)[1:-1]
    seen: set[str] = set()
    for i, (name, _) in enumerate(headers):
        if name in seen:
            return orjson.dumps(dict(headers[:i]))[1:-1] + b"," + _json_members(headers[i:])
        seen.add(name)
    raise AssertionError("unreachable")  # pragma: no cover


def serialize_json(ev: FsEvent) -> bytes:
    """The whole ``text/event-json`` frame for ``ev`` (compact, duplicates kept)."""
    parts = [_json_members(ev.headers)] if ev.headers else []
    if ev.body is not None:
        size = str(len(ev.body.encode("utf-8")))
        parts.append(b'"Content-Length":' + orjson.dumps(size))
        parts.append(b'"_body":' + orjson.dumps(ev.body))
    return _event_frame(b"{" + b",".join(parts) + b"}", "json")


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def serialize_xml(ev: FsEvent) -> bytes:
    """The whole ``text/event-xml`` frame for ``ev`` (values URL-encoded, as recorded)."""
    lines = ["<event>", "  <headers>"]
    lines += [f"    <{k}>{url_encode(v)}</{k}>" for k, v in ev.headers]
    lines.append("  </headers>")
    if ev.body is not None:
        lines.append(f"  <Content-Length>{len(ev.body.encode('utf-8'))}</Content-Length>")
        lines.append(f"  <body>{_xml_text(ev.body)}  </body>")
    lines.append("</event>\n")
    return _event_frame("\n".join(lines).encode("utf-8"), "xml")


class EventBus:
    """Synchronous fan-out of fired events to subscribers, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: dict[int, Callable[[FsEvent], None]] = {}
        self._wants: dict[int, Callable[[str], bool] | None] = {}
        self._checks: tuple[Callable[[str], bool], ...] | None = ()
        self._tokens = itertools.count(1)

    def subscribe(
        self, cb: Callable[[FsEvent], None], wants: Callable[[str], bool] | None = None
    ) -> int:
        """Add ``cb``; ``wants(event_name)`` False promises ``cb`` ignores that event."""
        token = next(self._tokens)
        self._subscribers[token] = cb
        self._wants[token] = wants
        self._gather_checks()
        return token

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)
        self._wants.pop(token, None)
        self._gather_checks()

    def _gather_checks(self) -> None:
        wants = list(self._wants.values())
        self._checks = None if None in wants else tuple(w for w in wants if w is not None)

    def wanted(self, name: str) -> bool:
        """Whether some subscriber may want an event called ``name`` (else: no need to build)."""
        checks = self._checks
        if checks is None:
            return True
        if len(checks) == 1:
            return checks[0](name)
        return any(check(name) for check in checks)

    def fire(self, ev: FsEvent) -> None:
        for token, cb in list(self._subscribers.items()):
            try:
                cb(ev)
            except Exception:
                # One broken listener must not stop the switch or the others.
                log.exception("fakeswitch.bus.subscriber_failed", token=token, event_name=ev.name)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
