"""Routing in Redis: the atomic form of :mod:`ccd.core.routing`'s order, for every daemon.

Theory of operation
-------------------
``routing.lua`` (beside this module; its header lists every key it keeps) holds the free-agent
index, the waiting calls and the two directions of matching:

* a call entering its queue (``enter``) or looking again after an offer failed (``match``)
  gets the first free agent carrying its tags in routing order (fewest tags, then longest
  idle), reserved for it in the same step, or waits in its list;
* an agent becoming free (``free``) gets the best waiting call it can take (lowest queue
  order key across every list whose tags it carries); when another daemon hunts that call,
  the script publishes the reservation on that daemon's ``notify`` channel.

Nothing polls: a call or an agent looks once, when it changes; ``sweep`` (the head of each
waiting list, a few per second at most) is only the net for a wake-up lost between daemons.

Every operation is a short list; a daemon appends the operations of one step to a
:class:`~ccd.store.batch.Batch`, which runs them in ONE script call with the step's other
commands (one round trip). :meth:`Routing.run` runs operations at once (the CLI, tests).

A call's lease names the daemon hunting it and never needs renewing: it is valid while that
daemon's heartbeat key ``node:<id>`` lives (:mod:`ccd.store.node`); a daemon that stops
beating loses its calls to whichever daemon looks at them next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import msgpack

from ccd.store.batch import Batch, Lane, Then
from ccd.store.keys import check_part
from ccd.store.redis_store import AGENT_SCHEMA_VERSION, Store, unavailable_as_domain_error

__all__ = ["ROUTING_LUA", "Routing"]

ROUTING_LUA = resources.files("ccd.store").joinpath("routing.lua").read_text(encoding="utf-8")


def _part(value: str, what: str) -> str:
    """A value that becomes part of a key inside the script: checked as Keys checks parts."""
    return check_part(value, what)


class Routing:
    """Builds routing operations and runs them (see the module doc)."""

    def __init__(self, store: Store, node_id: str) -> None:
        self.store = store
        self.prefix = store.keys.prefix
        self.node_id = node_id
        store.scripts.register("routing", ROUTING_LUA)

    # ------------------------------------------------------------------ running
    def command(self, packed_ops: bytes, now: float) -> tuple[Any, ...]:
        """The EVALSHA of one script call running ``packed_ops`` (a Batch sends it)."""
        return (
            "EVALSHA",
            self.store.scripts.sha("routing"),
            0,
            self.prefix,
            AGENT_SCHEMA_VERSION,
            repr(float(now)),
            self.node_id,
            packed_ops,
        )

    def batch(self, lane: Lane | None = None) -> Batch:
        return Batch(self.store.client, self.store.scripts, self, lane)

    def run(self, ops: Sequence[list[Any]], now: float) -> list[Any]:
        """Run ``ops`` now, in one script call; their results in order."""
        if not ops:
            return []
        packed = msgpack.packb(list(ops), use_bin_type=False)
        with unavailable_as_domain_error("routing"):
            raw = self.store.scripts.call(
                "routing",
                args=[self.prefix, AGENT_SCHEMA_VERSION, repr(float(now)), self.node_id, packed],
            )
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)

    def one(self, op: list[Any], now: float) -> Any:
        return self.run([op], now)[0]

    def add(self, batch: Batch, op: list[Any], now: float, then: Then | None = None) -> None:
        batch.route(op, now, then)

    # ------------------------------------------------------------------ agents
    @staticmethod
    def write(agent_id: str, expected_rev: int, record: bytes) -> list[Any]:
        """Compare-and-set of an agent record (-1: create). 1 ok, 0 lost, -2, -3 (see Lua)."""
        return ["write", _part(agent_id, "agent id"), int(expected_rev), record]

    @staticmethod
    def delete(agent_id: str) -> list[Any]:
        return ["delete", _part(agent_id, "agent id")]

    @staticmethod
    def reserve(agent_id: str, call: str, leg: str = "", job: str = "") -> list[Any]:
        """This agent for ``call`` if free: its new record, else False."""
        return ["reserve", _part(agent_id, "agent id"), _part(call, "call"), leg, job]

    @staticmethod
    def candidates(tags: Iterable[str], limit: int) -> list[Any]:
        return ["candidates", max(1, int(limit)), _tags(tags)]

    @staticmethod
    def claim(agent_id: str, request: str, order: float, leg: str, job: str) -> list[Any]:
        """A free agent for a callback request, unless a waiting call it could take comes
        first by queue order: {request, agent} reserved for the request, or (as with
        :meth:`free`) {call, agent} / {call, node} for that call; False: not free."""
        return ["claim", _part(agent_id, "agent id"), _part(request, "request"), float(order),
                leg, job]  # fmt: skip

    @staticmethod
    def ahead(order: float, tags: Iterable[str]) -> list[Any]:
        """Is a call waiting, that agents carrying ``tags`` could take, ahead of ``order``?"""
        return ["ahead", float(order), _tags(tags)]

    @staticmethod
    def count_free(tags: Iterable[str]) -> list[Any]:
        return ["count_free", _tags(tags)]

    @staticmethod
    def index_tagsets(agent_ids: Sequence[str]) -> list[Any]:
        """Put these agents into the index by tag set (a centre an older ccd wrote)."""
        return ["index_tagsets", [_part(a, "agent id") for a in agent_ids]]

    @staticmethod
    def mark_tagsets() -> list[Any]:
        """Every agent is in the index by tag set (no search needs to build it)."""
        return ["mark_tagsets"]

    @staticmethod
    def free(agent_id: str, leg: str, job: str) -> list[Any]:
        """The agent is free: the best waiting call for it ({call, agent} / {call, node})."""
        return ["free", _part(agent_id, "agent id"), leg, job]

    # ------------------------------------------------------------------ calls
    @staticmethod
    def enter(
        call: str,
        record: bytes,
        queue: str,
        priority: int,
        entered_at: float,
        *,
        vip_boost: int,
        language_prefix: str,
        number: str,
        leg: str,
        job: str,
        preferred: str,
        tags: Iterable[str],
    ) -> list[Any]:
        return [
            "enter",
            _part(call, "call"),
            record,
            _part(queue, "queue"),
            int(priority),
            float(entered_at),
            int(vip_boost),
            language_prefix,
            _part(number, "number") if number else "",
            leg,
            job,
            _part(preferred, "agent id") if preferred else "",
            _tags(tags),
        ]

    @staticmethod
    def match(
        call: str, queue: str, order: float, leg: str, job: str, tags: Iterable[str]
    ) -> list[Any]:
        return [
            "match", _part(call, "call"), _part(queue, "queue"), float(order), leg, job,
            _tags(tags),
        ]  # fmt: skip

    @staticmethod
    def untry(call: str, agent_id: str) -> list[Any]:
        """The offer ended through no fault of the agent: it may be offered this call again."""
        return ["untry", _part(call, "call"), _part(agent_id, "agent id")]

    @staticmethod
    def unoffer(call: str) -> list[Any]:
        return ["unoffer", _part(call, "call")]

    @staticmethod
    def dequeue(call: str) -> list[Any]:
        return ["dequeue", _part(call, "call")]

    @staticmethod
    def leave(call: str, queue: str) -> list[Any]:
        return ["leave", _part(call, "call"), _part(queue, "queue")]

    @staticmethod
    def finish(call: str, queue: str, record: bytes, ttl_ms: int) -> list[Any]:
        return ["finish", _part(call, "call"), _part(queue, "queue"), record, int(ttl_ms)]

    @staticmethod
    def restore(call: str, queue: str, record: bytes, order: float) -> list[Any]:
        """Redis lost its data: put back a call this daemon hunts (record, lease, queue)."""
        return ["restore", _part(call, "call"), _part(queue, "queue"), record, float(order)]

    @staticmethod
    def lease(call: str) -> list[Any]:
        return ["lease", _part(call, "call")]

    @staticmethod
    def release(call: str) -> list[Any]:
        return ["release", _part(call, "call")]

    @staticmethod
    def sweep(pairs: Sequence[tuple[str, str]]) -> list[Any]:
        return ["sweep", [list(p) for p in pairs]]


def _tags(tags: Iterable[str]) -> list[str]:
    return sorted({_part(t, "tag") for t in tags})
