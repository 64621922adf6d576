"""Queued and live calls in Redis: the records a restarted daemon resumes from.

Theory of operation
-------------------
* ``call:<uuid>``: one msgpack record per caller: who called, which queue, when
  it entered, priority, the customer found for the number, and the hunt's own
  state (:meth:`ccd.core.hunt.Hunt.to_dict`). Written after every hunt step, so a
  daemon restarted mid-hunt continues from the last step. Finished calls are
  kept for ``FINISHED_TTL_MS`` for the JSON view, then expire.
* ``queue:<name>``: a sorted set of the waiting callers' uuids, scored by
  :func:`ccd.core.queue.queue_order_key` (priority first, then arrival): the order
  calls are offered in. A call leaves it when bridged or finished.
* ``calls:live``: every call not finished, for resynchronisation.
* ``job:<job uuid>`` and ``leg:<leg uuid>`` map FreeSWITCH's answers
  (BACKGROUND_JOB, the agent leg's events) back to the caller, for any daemon.
* ``lease:call.<uuid>``: the daemon that hunts the call (``SET NX PX``), so two
  daemons on one FreeSWITCH never both hunt it; renewed while it works, taken
  over by another daemon when it expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccd.store.redis_store import Store, unavailable_as_domain_error

FINISHED_TTL_MS = 24 * 3600 * 1000
MAP_TTL_MS = 6 * 3600 * 1000


@dataclass(slots=True)
class CallRecord:
    uuid: str
    queue: str
    caller_number: str
    caller_name: str
    destination: str = ""
    tags: list[str] = field(default_factory=list)
    entered_at: float = 0.0
    priority: int = 0
    customer: dict[str, Any] | None = None
    hunt: dict[str, Any] = field(default_factory=dict)
    status: str = "waiting"  # waiting | ringing | bridged | voicemail | abandoned | ...
    agent: str | None = None
    agent_leg: str | None = None
    bridged_at: float | None = None
    ended_at: float | None = None
    node: str = ""
    capture: dict[str, Any] = field(default_factory=dict)  # the callback number dialogue

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() deep-copies the hunt state on every save.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("tags"), dict):
            values["tags"] = []
        return cls(**values)


class CallRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.prefix = store.keys.prefix

    def _call_key(self, uuid: str) -> str:
        return self.store.keys.call(uuid)

    def _queue_key(self, queue: str) -> str:
        return self.store.keys.queue(queue)

    def _map_key(self, kind: str, uuid: str) -> str:
        return self.store.keys.ref(kind, uuid)

    # -- records -----------------------------------------------------------
    def get(self, uuid: str) -> CallRecord | None:
        record = self.store.get(self._call_key(uuid))
        return None if record is None else CallRecord.from_dict(record)

    def get_many(self, uuids: Iterable[str]) -> list[CallRecord]:
        keys = [self._call_key(u) for u in uuids]
        return [CallRecord.from_dict(r) for r in self.store.get_many(keys) if r is not None]

    def create(self, record: CallRecord, score: float) -> bool:
        """Store a new call and queue it; False when the call is known already."""
        key = self._call_key(record.uuid)
        data = self.store.codec.encode(record.to_dict())
        with unavailable_as_domain_error("calls.create"):
            if not self.store.client.set(key, data, nx=True):
                return False
            pipe = self.store.client.pipeline(transaction=True)
            pipe.zadd(self._queue_key(record.queue), {record.uuid: score})
            pipe.sadd(self.store.keys.calls(), record.uuid)
            pipe.execute()
        return True

    def save(self, record: CallRecord) -> None:
        self.store.put(self._call_key(record.uuid), record.to_dict())

    def finish(self, record: CallRecord) -> None:
        """The call is over: out of its queue and the live set; the record expires."""
        with unavailable_as_domain_error("calls.finish"):
            pipe = self.store.client.pipeline(transaction=True)
            pipe.set(
                self._call_key(record.uuid),
                self.store.codec.encode(record.to_dict()),
                px=FINISHED_TTL_MS,
            )
            pipe.zrem(self._queue_key(record.queue), record.uuid)
            pipe.srem(self.store.keys.calls(), record.uuid)
            pipe.execute()

    def leave_queue(self, record: CallRecord) -> None:
        with unavailable_as_domain_error("calls.leave_queue"):
            self.store.client.zrem(self._queue_key(record.queue), record.uuid)

    # -- queues ----------------------------------------------------------------
    def waiting(self, queue: str) -> list[str]:
        """The queue's waiting callers, first to be served first."""
        with unavailable_as_domain_error("calls.waiting"):
            raw = self.store.client.zrange(self._queue_key(queue), 0, -1)
        return [x.decode() for x in raw]

    def live(self) -> list[str]:
        with unavailable_as_domain_error("calls.live"):
            raw = self.store.client.smembers(self.store.keys.calls())
        return sorted(x.decode() for x in raw)

    # -- FreeSWITCH's ids back to the caller -------------------------------------
    def map(self, kind: str, uuid: str, call_uuid: str) -> None:
        with unavailable_as_domain_error("calls.map"):
            self.store.client.set(self._map_key(kind, uuid), call_uuid, px=MAP_TTL_MS)

    def lookup(self, kind: str, uuid: str) -> str | None:
        with unavailable_as_domain_error("calls.lookup"):
            raw = self.store.client.get(self._map_key(kind, uuid))
        return None if raw is None else raw.decode()
