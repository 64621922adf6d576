"""The unit of work: everything one step writes and asks of Redis, in one round trip.

Theory of operation
-------------------
The engine's handlers do not talk to Redis one command at a time. They append to a
:class:`Batch`: plain commands (``command``), registered Lua scripts (``script``) and
routing operations (``route``: ccd/store/routing.lua runs every one of them in ONE script
call, atomically, in the order given), each with an optional ``then`` callback for its
result. :meth:`Batch.execute` sends it all as one pipeline (not MULTI: each script is atomic
by itself, and nothing else needs to be), then hands each result to its callback, in order.
A callback may append to the batch again; ``execute`` repeats until nothing is pending,
so a step's follow-ups (rare: a compare-and-set lost to another writer) cost one more round
trip, never a silent drop.

Scripts go as ``EVALSHA`` without redis-py's per-pipeline ``SCRIPT EXISTS`` check (an extra
round trip every time). A Redis that forgot them (restarted) answers NOSCRIPT for those
commands only, which never ran: they are loaded and sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import redis

from ccd.store.redis_store import (
    RedisUnavailable,
    ScriptRegistry,
    own_connection,
    unavailable_as_domain_error,
)

__all__ = ["Batch", "Lane", "Then"]

Then = Callable[[Any], None]

#: Rounds of follow-ups one execute may take before it gives up (a bound against a bug).
MAX_ROUNDS = 8


class Batch:
    """Commands, scripts and routing operations sent together; see the module doc."""

    __slots__ = (
        "_client",
        "_commands",
        "_deferred",
        "_lane",
        "_route_now",
        "_routes",
        "_routing",
        "_scripts",
        "trips",
    )

    def __init__(
        self,
        client: redis.Redis,
        scripts: ScriptRegistry,
        routing: Any = None,
        lane: Lane | None = None,
    ) -> None:
        self._client = client
        self._lane = lane
        self._scripts = scripts
        self._routing = routing
        self._commands: list[tuple[tuple[Any, ...], Then | None]] = []
        self._routes: list[tuple[list[Any], Then | None]] = []
        self._deferred: dict[Any, Callable[[], tuple[Any, ...]]] = {}
        self._route_now = 0.0
        self.trips = 0  # round trips made by execute(), for tests and the benchmark

    def __bool__(self) -> bool:
        return bool(self._commands or self._routes or self._deferred)

    def command(self, *args: Any, then: Then | None = None) -> None:
        self._commands.append((args, then))

    def script(
        self, name: str, keys: Sequence[str], args: Sequence[Any], then: Then | None = None
    ) -> None:
        sha = self._scripts.sha(name)
        self._commands.append((("EVALSHA", sha, len(keys), *keys, *args), then))

    def deferred(self, key: Any, make: Callable[[], tuple[Any, ...]]) -> None:
        """A command built when the batch is sent, once per ``key`` however often a step asks
        (a record rewritten by several steps of one event goes out once, in its last state)."""
        self._deferred[key] = make

    def forget(self, key: Any) -> None:
        """Drop a deferred command (the record it would write was finished meanwhile)."""
        self._deferred.pop(key, None)

    def route(self, op: list[Any], now: float, then: Then | None = None) -> None:
        """One routing operation (see ccd/store/routing.lua); ``then`` gets its result."""
        self._routes.append((op, then))
        self._route_now = max(self._route_now, now)

    def execute(self) -> None:
        """Send everything pending; callbacks run in order. RedisUnavailable (from
        ccd.store.redis_store) if Redis failed: nothing pending is kept, the caller decides
        what to retry."""
        for _ in range(MAX_ROUNDS):
            if not self:
                return
            commands, self._commands = self._commands, []
            routes, self._routes = self._routes, []
            deferred, self._deferred = self._deferred, {}
            commands.extend((make(), None) for make in deferred.values())
            if routes:
                # Last, so reads of the same step (a customer, a history) have answered
                # when the routing results are handed on.
                # Redis's Lua msgpack reads no bin type: records travel as raw strings.
                ops = msgpack.packb([op for op, _ in routes], use_bin_type=False)
                routed = self._routing.command(ops, self._route_now)
                commands.append((routed, self._split(routes)))
            self._route_now = 0.0
            self._send(commands)
        raise RuntimeError("a batch kept asking for more round trips")

    def _send(self, commands: list[tuple[tuple[Any, ...], Then | None]]) -> None:
        results = self._roundtrip([args for args, _ in commands])
        again = [
            i for i, r in enumerate(results) if isinstance(r, redis.ResponseError) and _noscript(r)
        ]
        if again:
            self._scripts.load_all()
            for i, result in zip(
                again, self._roundtrip([commands[i][0] for i in again]), strict=True
            ):
                results[i] = result
        for (args, then), result in zip(commands, results, strict=True):
            if isinstance(result, redis.ResponseError):
                # A script or command refused by Redis is a bug, not an outage: say which.
                raise RuntimeError(f"redis refused {str(args[0])[:40]}: {result}")
            if then is not None:
                then(result)

    def _roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One round trip: on the lane's own connection when there is one (no pool, no
        pipeline object: half the CPU of a pipeline), else a pipeline of the client."""
        self.trips += 1
        lane = self._lane
        if lane is None:
            with unavailable_as_domain_error("batch"):
                pipe = self._client.pipeline(transaction=False)
                for args in commands:
                    pipe.execute_command(*args)
                return pipe.execute(raise_on_error=False)
        return lane.roundtrip(commands)

    @staticmethod
    def _split(routes: list[tuple[list[Any], Then | None]]) -> Then:
        def each(raw: bytes) -> None:
            results = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            for (_, then), result in zip(routes, results, strict=True):
                if then is not None:
                    then(result)

        return each


class Lane:
    """One connection of its own for the batches of one greenlet (the dispatcher): a round
    trip is packing, one write and reading the replies, without a pool checkout or a
    pipeline object. A broken connection (Redis restarted) is reconnected and the batch sent
    once more only when nothing of it reached Redis."""

    __slots__ = ("_conn",)

    def __init__(self, client: redis.Redis) -> None:
        self._conn = own_connection(client)

    def roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn = self._conn
        packed = conn.pack_commands(commands)
        for attempt in (1, 2):
            try:
                conn.send_packed_command(packed, check_health=False)
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as exc:
                conn.disconnect()
                if attempt == 2:
                    raise RedisUnavailable(f"batch: {exc}") from exc
                continue
            break
        results: list[Any] = []
        try:
            for _ in commands:
                try:
                    results.append(conn.read_response())
                except redis.exceptions.ResponseError as error:
                    results.append(error)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            conn.disconnect()  # replies half read: this connection cannot be trusted again
            raise RedisUnavailable(f"batch: {exc}") from exc
        return results

    def close(self) -> None:
        self._conn.disconnect()


def _noscript(error: redis.ResponseError) -> bool:
    return isinstance(error, redis.exceptions.NoScriptError) or str(error).startswith("NOSCRIPT")
