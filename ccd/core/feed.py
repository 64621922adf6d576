"""The event feed's rules: which facts are events, what each carries, and the wire format.

Theory of operation
-------------------
The engine's facts (``ccd.engine.io.CallIo.fact``) are the feed's events: a fact named in
:data:`EVENT_FIELDS` becomes one event of the same type, whose data is compact JSON with
``type``, ``t`` (when it happened, epoch seconds), the fact's useful fields and ``node``
(the daemon that said it) (:func:`event_json`). Only the fields listed are taken, so nothing
a fact carries for the log alone (legs, tags, tried agents) reaches a CRM by accident; the
caller's number is the one customer datum, as ``/calls`` shows it under the same token.

The events live in one Redis stream shared by every daemon (ccd.store.feed); a stream id
(``<ms>-<seq>``) is the server-sent event's ``id:``, so a client that reconnects to any daemon
says where it stopped with ``Last-Event-ID`` (:func:`parse_id`, :func:`id_before`).
:func:`sse_event` and :func:`sse_comment` write the ``text/event-stream`` frames.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import orjson

from ccd.core.commands import Fact

__all__ = [
    "EVENT_FIELDS",
    "GAP_EVENT",
    "event_json",
    "id_before",
    "parse_id",
    "sse_comment",
    "sse_event",
]

#: Fields of every event, when the fact has them.
_COMMON = ("call", "queue", "agent")
#: Each event type (the fact's name) and the fields it carries besides ``_COMMON``.
EVENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "call.queued": ("priority", "number"),  # number: the caller's, "" when withheld
    "agent.offered": ("extension", "waited"),
    "agent.no_answer": ("cause",),
    "call.bridged": ("waited",),  # answered
    "call.abandoned": ("phase", "waited"),
    "call.overflow": ("waited",),
    "call.callback_requested": ("request",),
    "call.voicemail": ("reason",),
    "call.unanswered": ("reason",),
    "call.ended": ("by", "cause"),  # an answered call's conversation ended
    "callback.stored": ("callback",),
    "callback.dialing": ("callback", "strategy"),
    "callback.connected": ("callback",),
    "callback.unreached": ("callback",),
    "agent.state": (
        "login",
        "registered",
        "activity",
        "reason",
        "previous_activity",
        "previous_login",
    ),
}
#: Said (without an id) to a client whose Last-Event-ID is older than the stream's first
#: event: what followed it was trimmed, the feed resumes from the first event kept.
GAP_EVENT = "feed.gap"

_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


def event_json(fact: Fact, at: float, node: str = "") -> bytes | None:
    """The event of ``fact`` (said at ``at`` by daemon ``node``) as compact JSON; None: not
    a feed event."""
    fields = EVENT_FIELDS.get(fact.name)
    if fields is None:
        return None
    data: dict[str, Any] = {"type": fact.name, "t": round(at, 3)}
    for name in _COMMON + fields:
        value = fact.data.get(name)
        if value is not None:
            data[name] = value
    if node:
        data["node"] = node
    try:  # every event a call says goes through here: orjson is a sixth of json's cost
        return orjson.dumps(data, default=str)
    except (TypeError, ValueError):  # what orjson refuses (an int beyond 64 bits)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def parse_id(text: str) -> tuple[int, int] | None:
    """A stream id (``1793000000000-0``; ``0`` alone is the start) as a pair; None if it is
    not one."""
    match = _ID.fullmatch(text.strip())
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2] or 0)
    return (ms, seq) if ms < 2**64 and seq < 2**64 else None  # Redis's ids are 64-bit


def id_before(a: str, b: str) -> bool:
    """Whether stream id ``a`` comes before ``b`` (ids that do not parse never do)."""
    pa, pb = parse_id(a), parse_id(b)
    return pa is not None and pb is not None and pa < pb


def sse_event(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One ``text/event-stream`` event; ``data`` is one line of JSON (no newline in it)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


def sse_comment(text: str) -> bytes:
    """A comment line: clients ignore it; it keeps proxies and idle timers from closing."""
    return b": " + text.replace("\n", " ").encode() + b"\n\n"
