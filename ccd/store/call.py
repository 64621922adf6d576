"""Queued and live calls in Redis: the records a restarted daemon resumes from.

Theory of operation
-------------------
* ``call:<uuid>``: one msgpack record per caller: who called, which queue, when
  it entered, priority, the customer found for the number, and the hunt's own
  state (:meth:`ccd.core.hunt.Hunt.to_dict`). Created by the routing script as the
  call enters its queue and rewritten in the unit of work of every step that
  changes what a restarted daemon would need, so a daemon restarted mid-hunt
  continues from the last step. Finished calls are kept for ``FINISHED_TTL_MS``
  for the JSON view, then expire.
* ``queue:<name>``: a sorted set of the queue's calls, scored by
  :func:`ccd.core.queue.queue_order_key` (priority first, then arrival), from entry
  until bridged or finished: what ``ccd status`` lists and positions count.
* ``calls``: every call not finished, for resynchronisation.
* The waiting lists, tried sets, offers and leases are the routing script's
  (:mod:`ccd.store.routing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ccd.store.batch import Batch
from ccd.store.redis_store import Store, unavailable_as_domain_error

FINISHED_TTL_MS = 24 * 3600 * 1000


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
    sticky: bool = False  # the number had a sticky binding when the call entered

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
        self.keys = store.keys

    def encode(self, record: CallRecord) -> bytes:
        return self.store.codec.encode(record.to_dict())

    # -- records -----------------------------------------------------------
    def get(self, uuid: str) -> CallRecord | None:
        record = self.store.get(self.keys.call(uuid))
        return None if record is None else CallRecord.from_dict(record)

    def get_many(self, uuids: Iterable[str]) -> list[CallRecord]:
        keys = [self.keys.call(u) for u in uuids]
        return [CallRecord.from_dict(r) for r in self.store.get_many(keys) if r is not None]

    def save_op(self, batch: Batch, record: CallRecord) -> None:
        """Rewrite the live call's record in ``batch`` (the step's unit of work)."""
        batch.command("SET", self.keys.call(record.uuid), self.encode(record))

    def offer(self, uuid: str) -> dict[str, Any] | None:
        """The agent the routing script reserved for the call ({agent, leg, job, at})."""
        with unavailable_as_domain_error("calls.offer"):
            raw = self.store.client.get(self.keys.offer(uuid))
        if raw is None:
            return None
        try:
            value = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException):
            return None
        return value if isinstance(value, dict) else None

    # -- queues ----------------------------------------------------------------
    def waiting(self, queue: str) -> list[str]:
        """The queue's calls not yet bridged, first to be served first."""
        with unavailable_as_domain_error("calls.waiting"):
            raw = self.store.client.zrange(self.keys.queue(queue), 0, -1)
        return [x.decode() for x in raw]

    def live(self) -> list[str]:
        with unavailable_as_domain_error("calls.live"):
            raw = self.store.client.smembers(self.keys.calls())
        return sorted(x.decode() for x in raw)
