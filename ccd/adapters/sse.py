"""``GET /events``: the event feed as server-sent events, one client at a time.

Theory of operation
-------------------
Each client's stream runs in its HTTP connection's own greenlet (ccd.adapters.http
``stream``): it opens a :class:`FeedSource` (ccd.store.feed's reader, on a Redis connection
of its own), asks it where to resume (``Last-Event-ID``, from the header EventSource sends
when it reconnects, or ``?last_event_id=``), then loops: read what followed (waiting up to a
second in Redis), write it, and when nothing was written for ``keepalive`` seconds write a
comment, so proxies and idle timers keep a quiet feed open. A client that went away is
noticed at the next loop (its socket reads EOF) or write, and its slot and Redis connection
are given back at once. Nothing here touches the dispatcher: a slow client only delays its
own writes, and is cut off when one stalls (the server's write timeout).

Frames (ccd.core.feed): each event is ``id: <stream id>``, ``event: <type>`` and one line
of JSON. Without an id: ``feed.gap`` when the client's id is older than what the stream
keeps (it resumes from the first event kept), and with ``?stats=1`` (the wallboard)
``stats`` events carrying the ``/stats`` document: at once, after events (once a second at
most), and every :data:`STATS_EVERY` seconds on a quiet centre.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import gevent
import structlog

from ccd.adapters.http import Response, StreamRequest, json_response
from ccd.core.feed import GAP_EVENT, parse_id, sse_comment, sse_event

__all__ = ["FeedEndpoint", "FeedSource"]

log = structlog.get_logger()

#: Seconds between ``stats`` events when no event came (the wallboard's figures age too).
STATS_EVERY = 5.0
#: Seconds between two ``stats`` events at least, however many events come.
STATS_GAP = 1.0
#: Seconds between two reads that found events at least: under load a client reads the
#: events of a tenth of a second in one XREAD instead of one XREAD per dispatcher batch.
READ_GAP = 0.1
#: Milliseconds an EventSource waits before it reconnects after the stream broke.
RETRY_MS = 2000


class FeedSource(Protocol):
    """Where the events are (ccd.store.feed.FeedReader); every method may raise when the
    store cannot answer."""

    def start(self, last_id: str | None) -> tuple[str, bool]: ...
    def read(self, after: str) -> list[tuple[str, bytes]]: ...
    def close(self) -> None: ...


class FeedEndpoint:
    """The /events handler (a ccd.adapters.http stream handler)."""

    def __init__(
        self,
        open_source: Callable[[], FeedSource],
        *,
        keepalive: float,
        stats: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_source
        self._keepalive = keepalive
        self._stats = stats
        self._clock = clock

    def __call__(self, _match: re.Match[str], request: StreamRequest) -> Response | Iterator[bytes]:
        last_id = request.last_event_id or request.params.get("last_event_id")
        if last_id is not None and parse_id(last_id) is None:
            return json_response(400, {"error": "bad_last_event_id"})
        source = None
        try:
            source = self._open()
            after, gap = source.start(last_id)
        except Exception as exc:
            if source is not None:
                source.close()
            log.warning("feed.unavailable", error=str(exc))
            return json_response(503, {"error": "feed_unavailable"})
        stats = self._stats if request.params.get("stats") == "1" else None
        first = f"retry: {RETRY_MS}\n\n".encode() + sse_comment("ccd events")
        if gap:
            said = {"type": GAP_EVENT, "last_event_id": last_id, "resumed_from": after}
            first += sse_event(GAP_EVENT, json.dumps(said, separators=(",", ":")).encode())
        return self._run(source, after, first, request.gone, stats)

    def _run(
        self,
        source: FeedSource,
        after: str,
        first: bytes,
        gone: Callable[[], bool],
        stats: Callable[[], dict[str, Any]] | None,
    ) -> Iterator[bytes]:
        clock = self._clock
        failing = False
        try:
            yield first  # the headers go now: the client knows it is connected
            wrote = clock()
            stats_at = wrote - STATS_EVERY
            fresh = stats is not None  # a stats document is due (at once, the first time)
            while not gone():
                chunk = b""
                try:
                    events = source.read(after)
                    failing = False
                except Exception as exc:  # Redis away: keep the client, try again
                    events = []
                    if not failing:
                        log.warning("feed.read_failed", error=str(exc))
                    failing = True
                    gevent.sleep(1.0)
                for event_id, data in events:
                    after = event_id
                    chunk += sse_event(_type_of(data), data, event_id)
                now = clock()
                fresh = fresh or bool(events)
                if stats is not None and now - stats_at >= (STATS_GAP if fresh else STATS_EVERY):
                    stats_at, fresh = now, False
                    chunk += _stats_frame(stats)
                if not chunk and now - wrote >= self._keepalive:
                    chunk = sse_comment("keep-alive")
                if chunk:
                    wrote = now
                    yield chunk
                if events:
                    gevent.sleep(max(0.0, READ_GAP - (clock() - now)))
        finally:
            source.close()


def _type_of(data: bytes) -> str:
    """The event's type, from its JSON (ccd.core.feed.event_json puts it first)."""
    try:
        kind = json.loads(data).get("type")
    except (ValueError, AttributeError):
        return "message"
    return kind if isinstance(kind, str) and kind.isprintable() and kind else "message"


def _stats_frame(stats: Callable[[], dict[str, Any]]) -> bytes:
    try:
        doc = stats()
    except Exception as exc:  # Redis away: the next one, or the page's polling, says it
        log.warning("feed.stats_failed", error=str(exc))
        return b""
    return sse_event("stats", json.dumps(doc, separators=(",", ":"), default=str).encode())
