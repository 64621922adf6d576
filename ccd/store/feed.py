"""The event feed in Redis: one stream (``events``) every daemon appends to, read by each
``/events`` client on a connection of its own.

Theory of operation
-------------------
*Writing.* The engine's unit of work carries one ``XADD <key> MAXLEN ~ <n> * e <json>`` per
event (run by one script, :meth:`FeedStore.append`) in the batch it sends anyway: no round
trip of its own, and
the stream ids Redis gives are one order for every daemon sharing it. ``MAXLEN ~`` trims
whole radix-tree nodes only, so the cap costs next to nothing per event; the stream keeps a
little more than ``n`` events.

*Reading.* Each client gets a :class:`FeedReader` holding ONE connection of its own, made
from the client's pool settings but never taken from the pool: its ``XREAD BLOCK`` waits on
Redis without holding a connection the dispatcher (which has its own, ccd.store.batch.Lane)
or an HTTP request needs. Blocks are shorter than ``redis.socket_timeout``, so a Redis that
went away is noticed like any other command's timeout. :meth:`FeedReader.start` decides where
a client resumes: after its ``Last-Event-ID``, or from the first event kept when events after
that id were trimmed (or lost with Redis's data); that is the "gap" it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from ccd.core.feed import parse_id
from ccd.store.batch import Batch
from ccd.store.redis_store import Store, own_connection, unavailable_as_domain_error

__all__ = ["START", "FeedReader", "FeedStore"]

#: The first id of a stream: reading after it reads everything kept.
START = "0-0"


#: XADD each event given, in order: one command for the client to pack and one reply to
#: read, however many events a unit of work carries (each XADD alone cost ~7 us of the
#: daemon's CPU, and a routed call says eight or so).
_LUA_APPEND = """
local key, cap = KEYS[1], ARGV[1]
for i = 2, #ARGV do
  redis.call("XADD", key, "MAXLEN", "~", cap, "*", "e", ARGV[i])
end
return #ARGV - 1
"""


class FeedStore:
    def __init__(self, store: Store, max_len: int) -> None:
        self.key = store.keys.events()
        self.max_len = max_len
        self._client = store.client
        store.scripts.register("feed_append", _LUA_APPEND, prelude=False)

    def append(self, batch: Batch, events: Sequence[bytes]) -> None:
        """XADD the events (compact JSON, ccd.core.feed.event_json) in ``batch``, in order."""
        if events:
            batch.script("feed_append", [self.key], [self.max_len, *events])

    def reader(self, block: float) -> FeedReader:
        """A reader on a new connection of its own; ``block`` seconds per XREAD at most."""
        return FeedReader(self._client, self.key, block)


class FeedReader:
    """One client's reading of the feed (see the module doc). Not shared between greenlets."""

    def __init__(self, client: redis.Redis, key: str, block: float) -> None:
        self._conn = own_connection(client)
        self._key = key
        self._block_ms = max(1, int(block * 1000))

    def _ask(self, *args: Any) -> Any:
        with unavailable_as_domain_error("feed"):
            try:
                self._conn.send_command(*args, check_health=False)
                return self._conn.read_response()
            except BaseException:
                # A reply half read, a timeout, the client gone (GreenletExit): this
                # connection cannot be trusted with the next command.
                self._conn.disconnect()
                raise

    def start(self, last_id: str | None) -> tuple[str, bool]:
        """The id to read after, and whether events after ``last_id`` are gone (trimmed, or
        lost with Redis's data): then it is the start of what is kept. No ``last_id``: the
        newest event, so a new client gets what happens from now on."""
        try:
            info = _as_map(self._ask("XINFO", "STREAM", self._key))
        except redis.exceptions.ResponseError:  # no such key: nothing was ever kept
            return START, bool(last_id) and parse_id(last_id) != (0, 0)
        if last_id is None:
            return _text(info.get(b"last-generated-id")) or START, False
        mine = parse_id(last_id) or (0, 0)
        first = info.get(b"first-entry")
        first_id = parse_id(_text(first[0])) if first else None
        deleted = parse_id(_text(info.get(b"max-deleted-entry-id")) or "0")
        if deleted not in (None, (0, 0)):
            gap = mine < deleted  # Redis 7 says the newest id it trimmed
        else:  # never trimmed: an id before the first one is from an older life of the key
            gap = mine != (0, 0) and first_id is not None and mine < first_id
        newest = parse_id(_text(info.get(b"last-generated-id")) or "0")
        if newest is not None and mine > newest:  # from a Redis that lost data since
            gap = True
        return (START, True) if gap else (f"{mine[0]}-{mine[1]}", False)

    def read(self, after: str, count: int = 200) -> list[tuple[str, bytes]]:
        """Events after ``after`` (oldest first, ``count`` at most), waiting up to the block
        time for one to come; [] when none came."""
        reply = self._ask("XREAD", "COUNT", count, "BLOCK", self._block_ms,
                          "STREAMS", self._key, after)  # fmt: skip
        if not reply:
            return []
        entries = next(iter(_as_map(reply).values())) if isinstance(reply, dict) else reply[0][1]
        found = []
        for entry_id, fields in entries:
            values = _as_map(fields)
            found.append((_text(entry_id), bytes(values.get(b"e", b"{}"))))
        return found

    def close(self) -> None:
        self._conn.disconnect()


def _as_map(value: Any) -> dict[Any, Any]:
    """A RESP3 map as it is, a RESP2 flat list of pairs as a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and value and isinstance(value[0], list):  # XREAD in RESP2
        return {item[0]: item[1] for item in value}
    return dict(zip(value[::2], value[1::2], strict=True))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
