"""The Event Socket wire format, sans I/O.

Theory of operation
-------------------
FreeSWITCH's event socket speaks in frames: a block of ``Name: value`` header
lines ended by an empty line, then, only when a ``Content-Length`` header is
present, a body of exactly that many bytes. Nothing else delimits frames: an
``api/response`` body often ends in ``\\n`` and the next frame starts right
after it, so the parser frames by Content-Length alone.

Outer frame headers are sent as they are. Event bodies come in three formats:

* ``text/event-plain``: another header block whose values are URL-encoded;
  some events (BACKGROUND_JOB, a CUSTOM event fired with a body) carry an
  inner ``Content-Length`` and a body after the blank line.
* ``text/event-json``: a JSON object; the body, if any, is under ``_body``.
* ``text/event-xml``: not used by ccd.

``FrameParser`` turns bytes (cut anywhere) into :class:`Frame` objects;
:func:`decode_event` turns an event frame into an :class:`EslEvent`. The
encoders are used by the fake FreeSWITCH and by the client to write commands.
The module opens no socket and reads no clock.

Speed (every event of the daemon passes here; ``scripts/bench_esl.py`` measures
it): the parser finds frame ends with ``bytes.find`` and copies each body once;
a plain event's header block is split into names and still-encoded values, and
a value is URL-decoded only when it is read (:class:`PlainHeaders`: most of an
event's hundred-odd values are never read); a JSON event is parsed once (orjson
when installed) and its dict is the headers, converted only when FreeSWITCH
sent a value that is not a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from urllib.parse import unquote

try:  # ~2-3x faster than json.loads on FreeSWITCH's events (scripts/bench_esl.py)
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is in install_requires
    _fast_loads = json.loads

__all__ = [
    "EslEvent",
    "Frame",
    "FrameParser",
    "PlainHeaders",
    "ProtocolError",
    "content_length",
    "decode_event",
    "encode_command",
    "encode_event_plain",
    "encode_frame",
    "parse_header_block",
    "url_encode",
]

#: Largest header block accepted before the stream is declared broken.
MAX_HEADER_BYTES = 64 * 1024
#: Largest body accepted (a `show channels as json` of thousands of calls fits).
MAX_BODY_BYTES = 64 * 1024 * 1024

EVENT_CONTENT_TYPES = frozenset({"text/event-plain", "text/event-json", "text/event-xml"})


class ProtocolError(Exception):
    """The other side broke the framing; the stream cannot be trusted further."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One ESL frame: outer headers in arrival order and the raw body."""

    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def body_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class EslEvent:
    """A decoded FreeSWITCH event: headers (decoded values) and optional body."""

    headers: Mapping[str, str]
    body: str | None = None
    raw_size: int = field(default=0, compare=False)

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def uuid(self) -> str:
        return self.headers.get("Unique-ID", "")

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)

    def var(self, name: str, default: str = "") -> str:
        """A channel variable as the event carries it (``variable_<name>``)."""
        return self.headers.get("variable_" + name, default)


def parse_header_block(block: bytes | bytearray, *, decode_values: bool = False) -> dict[str, str]:
    """Parse ``Name: value`` lines. Lines without a colon are skipped.

    FreeSWITCH writes ``Name: value``; a bare ``Name:`` (empty value) is legal.
    Duplicate names keep the last value, as FreeSWITCH's own parser does.
    """
    headers: dict[str, str] = {}
    text = block.decode("utf-8", errors="replace")
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name:
            continue
        value = value[1:] if value.startswith(" ") else value
        # unquote() is the costly part of decoding an event; most values need none.
        headers[name] = unquote(value) if decode_values and "%" in value else value
    return headers


class FrameParser:
    """Incremental frame parser: ``feed(bytes)`` then iterate complete frames.

    A frame split across any number of reads parses the same as one read.
    Raises :class:`ProtocolError` for a Content-Length that is not a
    non-negative integer within limits, or a header block that never ends.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: dict[str, str] | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> Frame | None:
        buf = self._buf
        if self._pending is None:
            # Tolerate stray blank lines between frames.
            if buf[:1] == b"\n":
                skip = 1
                while buf[skip : skip + 1] == b"\n":
                    skip += 1
                del buf[:skip]
            end = buf.find(b"\n\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise ProtocolError("header block longer than %d bytes" % MAX_HEADER_BYTES)
                return None
            headers = parse_header_block(buf[:end])
            del buf[: end + 2]  # O(1): CPython moves a bytearray's start
            length_text = headers.get("Content-Length")
            if length_text is None:
                return Frame(headers)
            self._pending, self._need = headers, content_length(length_text)
        need = self._need
        if len(buf) < need:
            return None
        with memoryview(buf) as view:  # one copy of the body, released before buf changes
            body = bytes(view[:need])
        del buf[:need]
        headers, self._pending, self._need = self._pending, None, 0
        return Frame(headers, body)


def content_length(text: str, which: str = "") -> int:
    """A ``Content-Length`` value: ASCII digits only (``int()`` would also take ``+5``, `` 5``,
    ``5_0`` or other scripts' digits), at most ``MAX_BODY_BYTES``; else :class:`ProtocolError`."""
    if not _DIGITS.fullmatch(text):
        raise ProtocolError("bad %sContent-Length %r" % (which, text[:40]))
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise ProtocolError("%sContent-Length %d out of range" % (which, length))
    return length


_DIGITS = re.compile(r"[0-9]{1,12}")


def decode_event(frame: Frame) -> EslEvent:
    """Decode a ``text/event-plain`` or ``text/event-json`` frame.

    Raises :class:`ProtocolError` when the body is not a valid event.
    """
    ctype = frame.content_type
    if ctype == "text/event-plain":
        return _decode_plain(frame.body)
    if ctype == "text/event-json":
        return _decode_json(frame.body)
    raise ProtocolError("not an event frame: %r" % ctype)


class PlainHeaders(Mapping[str, str]):
    """An event-plain header block, values URL-decoded when read.

    Holds the names and the values as FreeSWITCH sent them; ``h[name]`` and
    ``h.get(name)`` decode one value. Iterating names costs nothing; ``items()``
    decodes every value. Equal to the eagerly decoded dict of the same block."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, str]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        value = self._raw[name]
        return unquote(value) if "%" in value else value

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._raw.get(name)
        if value is None:
            return default
        return unquote(value) if "%" in value else value

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"PlainHeaders({dict(self.items())!r})"


def _split_block(text: str) -> dict[str, str]:
    """``parse_header_block`` without the URL decoding (same names, same raw values).

    FreeSWITCH writes ``Name: value`` lines whose values are URL-encoded (no newline,
    no colon, no space): each line is cut at its first ``": "`` by C code, and the
    result is checked for whatever the careful loop below would treat differently
    (a line without ``": "``, a name with a space or a colon, an empty name, a CR);
    any of those and the loop decides instead."""
    try:
        fast = dict(map(str.split, text.split("\n"), repeat(": "), repeat(1)))
    except ValueError:  # a line without ": " (a blank line, "Name:value")
        fast = None
    if fast is not None:
        names = "\n".join(fast)
        if " " not in names and ":" not in names and "" not in fast and "\r" not in text:
            return fast
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name:
            continue
        if value[-1:] == "\r":
            value = value[:-1]
        headers[name] = value[1:] if value[:1] == " " else value
    return headers


def _decode_plain(body: bytes) -> EslEvent:
    end = body.find(b"\n\n")
    block, rest = (body, b"") if end < 0 else (body[:end], body[end + 2 :])
    raw = _split_block(block.decode("utf-8", errors="replace"))
    if "Event-Name" not in raw:
        raise ProtocolError("event without Event-Name")
    headers = PlainHeaders(raw)
    inner: str | None = None
    length_text = headers.get("Content-Length")
    if length_text is not None:
        inner = rest[: content_length(length_text, "inner ")].decode("utf-8", errors="replace")
    return EslEvent(headers, inner, len(body))


#: The one type FreeSWITCH's event headers have. The values' types are checked as a set
#: (``set(map(type, ...))``, C-level: 1.5 us an event where a regex over the body took 10).
_ONLY_STR = frozenset({str})


def _decode_json(body: bytes) -> EslEvent:
    try:
        data = _fast_loads(body)
    except ValueError as exc:
        try:  # what orjson refuses but json takes (a lone surrogate escape, a huge int)
            data = json.loads(body)
        except ValueError:
            raise ProtocolError("bad event JSON: %s" % exc) from None
        except RecursionError:
            # json recurses once per nesting level: a deep frame is a bad frame, skipped.
            raise ProtocolError("bad event JSON: nested too deeply") from None
    except RecursionError:
        raise ProtocolError("bad event JSON: nested too deeply") from None
    if not isinstance(data, dict) or "Event-Name" not in data:
        raise ProtocolError("event JSON without Event-Name")
    inner = data.pop("_body", None)
    if not set(map(type, data.values())) <= _ONLY_STR:
        # FreeSWITCH's event headers are strings; anything else is kept as short text only.
        data = {str(k): v if isinstance(v, str) else _scalar_text(v) for k, v in data.items()}
    return EslEvent(data, inner if isinstance(inner, str) else None, len(body))


def _scalar_text(value: object) -> str:
    """A non-string JSON header value as text; a list or object (never sent by FreeSWITCH,
    possibly nested deep) is not rendered, so its depth costs nothing."""
    if isinstance(value, list | dict):
        return ""
    return str(value)


# FreeSWITCH's URL encoder (used for event-plain values) leaves printable ASCII
# alone except this set; a comma, quote ' or parenthesis stays as it is.
_URL_UNSAFE = frozenset('\r\n #%&+:;<=>?@[\\]^`{|}"')


def url_encode(value: str) -> str:
    out = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if byte < 0x20 or byte > 0x7E or ch in _URL_UNSAFE:
            out.append("%%%02X" % byte)
        else:
            out.append(ch)
    return "".join(out)


def encode_frame(headers: Iterable[tuple[str, str]], body: bytes | str = b"") -> bytes:
    """An outer frame; a ``Content-Length`` header is added for a non-empty body."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body


def encode_event_plain(headers: Iterable[tuple[str, str]], body: str | None = None) -> bytes:
    """The body of a ``text/event-plain`` frame, values URL-encoded."""
    lines = [f"{k}: {url_encode(v)}" for k, v in headers]
    if body is not None:
        data = body.encode("utf-8")
        lines.append("Content-Length: %d" % len(data))
        return ("\n".join(lines) + "\n\n").encode("utf-8") + data
    return ("\n".join(lines) + "\n\n").encode("utf-8")


_HEADER_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def encode_command(
    line: str, headers: Iterable[tuple[str, str]] = (), body: str | None = None
) -> bytes:
    """A client command frame. Refuses anything that could split the frame."""
    if "\n" in line or "\r" in line:
        raise ValueError("command line contains a newline")
    parts = [line]
    for name, value in headers:
        if not _HEADER_NAME.match(name):
            raise ValueError("bad header name %r" % name)
        if "\n" in value or "\r" in value:
            raise ValueError("header %s contains a newline" % name)
        parts.append(f"{name}: {value}")
    if body is not None:
        data = body.encode("utf-8")
        parts.append("Content-Length: %d" % len(data))
        return ("\n".join(parts) + "\n\n").encode("utf-8") + data
    return ("\n".join(parts) + "\n\n").encode("utf-8")
