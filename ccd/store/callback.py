"""Callback requests in Redis: the durable store behind :mod:`ccd.core.callback`'s pure rules.

Theory of operation
-------------------
* A request is one key, ``Keys.callback(<id>)``, holding the msgpack record of
  :meth:`ccd.core.callback.CallbackRequest.to_dict` with schema ``CALLBACK_SCHEMA_VERSION``. Records
  are encoded in Python only; Lua never rewrites one, it only checks and moves bytes, so a
  float stays a float and an attempt's ``agent: None`` stays present.
* Indexes, all kept by the same Lua script as the record (never out of step with it):
  ``callback_all`` (every id by creation time), ``callback_status:<status>`` (ids by the original
  call's queue order: listing and dialing order), ``callback_due`` (pending ids by due time),
  ``callback_open:<number>`` (open ids of a number: the per-caller limit).
* Every change is read → pure function (:mod:`ccd.core.callback`) → one Lua script that writes only
  if the record is still byte for byte the one read (compare-and-set), and, where asked, only
  if the writer holds the request's lease, or takes it with ``SET NX PX``. A lost race reads
  again and decides again. So two daemons, an operator's ``cancel`` and a dialer's attempt can
  interleave in any order and the record always holds every attempt made.
* One dialer at a time: :meth:`CallbackStore.take` moves a pending request to ``working`` and
  takes ``Keys.callback_lease(<id>)`` for the daemon's node id in the same script. The holder
  renews the lease while it works and gives it back with ``record_attempt``, ``finish`` or
  ``release`` (each drops the lease with the status change). A daemon that dies leaves a
  ``working`` request whose lease expires: :meth:`expired_leases` lists them and ``take``
  accepts them (logged ``callback.lease_taken_over``).
* The do-not-call list (:class:`ccd.store.dnc.DncList`) is respected at the dialing end: ``due``
  leaves listed numbers out and ``take`` refuses them; the request stays pending and is dialed
  only if the listing lapses (an operator may ``cancel`` it).
* Requests are never deleted by the daemon. Every Redis failure is
  :class:`ccd.store.redis_store.RedisUnavailable`: ``create`` raising it means NOT stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import structlog

from ccd.core.callback import (
    OPEN_STATUSES,
    Attempt,
    CallbackError,
    CallbackRequest,
    CallbackRules,
    IllegalStatusChange,
    OpenLimitReached,
    OpenLimits,
    Status,
    after_attempt,
    is_due,
    with_status,
)
from ccd.store.dnc import DncList
from ccd.store.redis_store import (
    Codec,
    SchemaMismatch,
    Store,
    unavailable_as_domain_error,
)

__all__ = [
    "CALLBACK_SCHEMA_VERSION",
    "CallbackStore",
    "LeaseLost",
    "UnknownCallback",
]

log = structlog.get_logger()

CALLBACK_SCHEMA_VERSION = 1
_STATUSES = tuple(Status)
_MAX_TRIES = 64
_BATCH = 500
_NO_LIMITS = OpenLimits()
#: The write script's answer when a limit is reached → which limit (an OpenLimits field).
_LIMIT_CODES = {-3: "per_caller", -5: "per_queue", -6: "total", -7: "anonymous"}


class UnknownCallback(CallbackError):
    """No callback request with this id."""


class LeaseLost(CallbackError):
    """The caller does not hold the request's lease (it expired and maybe another daemon took
    it): what it was doing must not be written."""


_LUA_WRITE = r"""
-- KEYS: 1 record, 2 lease, 3 due zset, 4 all zset, 5 open set of the number, 6 open set of
--       the caller number (may be KEYS[5]), 7 open set of the queue, 8 open set of the queue's
--       anonymous callers, 9.. one zset per status (in ccd.core.callback.Status order: 9 is
--       pending, 10 working, the open ones)
-- ARGV: 1 expected record bytes ("" = there must be none), 2 new record bytes,
--       3 lease mode: "none" | "hold" (ARGV[4] must hold it) | "take" (SET NX PX ARGV[5]),
--       4 owner, 5 ttl ms, 6 "1" = drop the lease after writing, 7 id, 8 status index (1-based),
--       9 order key, 10 next due at ("" = not due), 11 created at, 12 "1" = open,
--       13 per-caller limit, 14 per-queue limit, 15 limit in all, 16 anonymous limit per queue
--       ("" = none, each), 17 "1" = the request is an anonymous caller's (create only)
-- Returns {1} written, {2} a record exists already (create), {0} the record changed since it
-- was read, {-1} lease not held, {-4} lease held by another, {code, open count} a limit is
-- reached: -3 the caller's, -5 the queue's, -6 the one in all, -7 the queue's anonymous one.
local raw = redis.call("GET", KEYS[1])
if ARGV[1] == "" then
  if raw then return {2} end
elseif raw ~= ARGV[1] then
  return {0}
end
if ARGV[13] ~= "" then
  local open = #redis.call("SUNION", KEYS[5], KEYS[6])
  if open >= tonumber(ARGV[13]) then return {-3, open} end
end
if ARGV[15] ~= "" then
  local open = redis.call("ZCARD", KEYS[9]) + redis.call("ZCARD", KEYS[10])
  if open >= tonumber(ARGV[15]) then return {-6, open} end
end
if ARGV[14] ~= "" then
  local open = redis.call("SCARD", KEYS[7])
  if open >= tonumber(ARGV[14]) then return {-5, open} end
end
if ARGV[16] ~= "" and ARGV[17] == "1" then
  local open = redis.call("SCARD", KEYS[8])
  if open >= tonumber(ARGV[16]) then return {-7, open} end
end
if ARGV[3] == "hold" then
  if redis.call("GET", KEYS[2]) ~= ARGV[4] then return {-1} end
elseif ARGV[3] == "take" then
  if not redis.call("SET", KEYS[2], ARGV[4], "NX", "PX", ARGV[5]) then return {-4} end
end
local id = ARGV[7]
redis.call("SET", KEYS[1], ARGV[2])
redis.call("ZADD", KEYS[4], ARGV[11], id)
for i = 9, #KEYS do redis.call("ZREM", KEYS[i], id) end
redis.call("ZADD", KEYS[8 + tonumber(ARGV[8])], ARGV[9], id)
if ARGV[10] ~= "" then
  redis.call("ZADD", KEYS[3], ARGV[10], id)
else
  redis.call("ZREM", KEYS[3], id)
end
if ARGV[12] == "1" then
  redis.call("SADD", KEYS[5], id)
  redis.call("SADD", KEYS[6], id)
  redis.call("SADD", KEYS[7], id)
  if ARGV[17] == "1" then redis.call("SADD", KEYS[8], id) end
else
  redis.call("SREM", KEYS[5], id)
  redis.call("SREM", KEYS[6], id)
  redis.call("SREM", KEYS[7], id)
  redis.call("SREM", KEYS[8], id)
end
if ARGV[6] == "1" then redis.call("DEL", KEYS[2]) end
return {1}
"""
# The script counts the open requests in all from the first two status sets.
assert _STATUSES[:2] == (Status.PENDING, Status.WORKING) and set(_STATUSES[:2]) == OPEN_STATUSES


def _ttl(ttl_ms: float) -> int:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int | float) or not 0 < ttl_ms < 1e12:
        raise ValueError(f"ttl_ms must be a number of milliseconds > 0, got {ttl_ms!r}")
    return max(1, round(ttl_ms))


def _owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner or len(owner) > 256:
        raise ValueError(f"lease owner must be a non-empty string, got {owner!r}")
    return owner


class CallbackStore:
    """Callback requests over one :class:`Store` (same Redis and key prefix)."""

    def __init__(self, store: Store, *, dnc: DncList | None = None) -> None:
        # Callback records carry their own schema version.
        self._store = Store(store.client, store.keys.prefix, Codec(CALLBACK_SCHEMA_VERSION))
        self._store.scripts.register("callback_write", _LUA_WRITE, prelude=False)
        self._keys = store.keys
        self._client = store.client
        self._dnc = dnc if dnc is not None else DncList(store)

    # --- reading --------------------------------------------------------------------------

    def _decode(self, key: str, raw: bytes | None) -> CallbackRequest | None:
        if raw is None:
            return None
        try:
            return CallbackRequest.from_dict(self._store.codec.decode(raw, key))
        except SchemaMismatch as exc:
            log.warning(
                "store.schema_mismatch", key=key, expected=exc.expected, found=repr(exc.found)
            )
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("callback.bad_record", key=key, error=str(exc))
        return None

    def _load(self, request_id: str) -> tuple[bytes, CallbackRequest]:
        try:
            key = self._keys.callback(request_id)
        except ValueError:  # not an id we could have made (``:``, spaces...)
            raise UnknownCallback(f"no callback request {request_id!r}") from None
        with unavailable_as_domain_error("callback get"):
            raw = self._client.get(key)
        request = self._decode(key, raw)
        if raw is None or request is None:
            raise UnknownCallback(f"no callback request {request_id!r}")
        return raw, request

    def get(self, request_id: str) -> CallbackRequest | None:
        """The request, or None (also for an id that cannot be one)."""
        try:
            return self._load(request_id)[1]
        except UnknownCallback:
            return None

    def require(self, request_id: str) -> CallbackRequest:
        """The request; :class:`UnknownCallback` when there is none (or the id is malformed)."""
        return self._load(request_id)[1]

    def _many(self, ids: Sequence[bytes | str]) -> list[CallbackRequest]:
        out: list[CallbackRequest] = []
        for start in range(0, len(ids), _BATCH):
            chunk = [i.decode() if isinstance(i, bytes) else i for i in ids[start : start + _BATCH]]
            keys = [self._keys.callback(i) for i in chunk]
            with unavailable_as_domain_error("callback get"):
                raws = self._client.mget(keys)
            for key, raw in zip(keys, raws, strict=True):
                request = self._decode(key, raw)
                if request is not None:
                    out.append(request)
        return out

    def list(self, status: Status | str | None = None) -> list[CallbackRequest]:
        """Every request by creation time, or those of one ``status`` in dialing order."""
        key = self._keys.callback_all() if status is None else self._status_key(Status(status))
        with unavailable_as_domain_error("callback list"):
            ids = self._client.zrange(key, 0, -1)
        return self._many(ids)

    def counts(self) -> dict[str, int]:
        """Number of requests in each status (unreached ones are kept and counted)."""
        with unavailable_as_domain_error("callback counts"):
            pipe = self._client.pipeline(transaction=False)
            for status in _STATUSES:
                pipe.zcard(self._status_key(status))
            values = pipe.execute()
        return {str(s): int(n) for s, n in zip(_STATUSES, values, strict=True)}

    def open_count(self, *numbers: str | None) -> int:
        """Open requests of these normalised numbers (each request counted once)."""
        keys = [self._keys.callback_open(n) for n in numbers if n]
        if not keys:
            return 0
        with unavailable_as_domain_error("callback open count"):
            return len(self._client.sunion(keys))

    def due(
        self, now: float, queue: str | Iterable[str] | None = None, limit: int = 100
    ) -> list[CallbackRequest]:
        """Pending requests due at ``now``, in dialing order (the original queue entry's order:
        priority first, then arrival), of ``queue`` (a name or several; None: all), without
        numbers on the do-not-call list. Business hours are the caller's check."""
        queues = None if queue is None else {queue} if isinstance(queue, str) else set(queue)
        with unavailable_as_domain_error("callback due"):
            ids = self._client.zrangebyscore(self._keys.callback_due(), "-inf", repr(float(now)))
        candidates = [
            r for r in self._many(ids) if is_due(r, now) and (queues is None or r.queue in queues)
        ]
        if candidates:
            listed = self._dnc.listed({r.number for r in candidates})
            candidates = [r for r in candidates if r.number not in listed]
        candidates.sort(key=lambda r: (r.order_key, r.created_at, r.id))
        return candidates[: max(0, limit)]

    def expired_leases(self) -> list[CallbackRequest]:
        """Working requests whose daemon's lease is gone (it died): to be taken over."""
        working = self.list(Status.WORKING)
        if not working:
            return []
        with unavailable_as_domain_error("callback leases"):
            pipe = self._client.pipeline(transaction=False)
            for request in working:
                pipe.exists(self._keys.callback_lease(request.id))
            held = pipe.execute()
        return [r for r, exists in zip(working, held, strict=True) if not exists]

    def lease_owner(self, request_id: str) -> str | None:
        with unavailable_as_domain_error("callback lease"):
            raw = self._client.get(self._keys.callback_lease(request_id))
        return None if raw is None else raw.decode("utf-8", "replace")

    # --- writing ----------------------------------------------------------------------------

    def _status_key(self, status: Status) -> str:
        return self._keys.callback_status(str(status))

    def _write(
        self,
        expected: bytes | None,
        request: CallbackRequest,
        *,
        lease: str = "none",
        owner: str = "",
        ttl_ms: int = 0,
        drop_lease: bool = False,
        limits: OpenLimits | None = None,
        anonymous: bool = False,
    ) -> list[int]:
        keys = self._keys
        number_key = keys.callback_open(request.number)
        caller_key = (
            keys.callback_open(request.caller_number) if request.caller_number else number_key
        )
        limits = limits or _NO_LIMITS
        result = self._store.scripts.call(
            "callback_write",
            keys=[
                keys.callback(request.id),
                keys.callback_lease(request.id),
                keys.callback_due(),
                keys.callback_all(),
                number_key,
                caller_key,
                keys.callback_open_queue(request.queue),
                keys.callback_open_anonymous(request.queue),
                *(self._status_key(s) for s in _STATUSES),
            ],
            args=[
                expected or b"",
                self._store.codec.encode(request.to_dict()),
                lease,
                owner,
                ttl_ms,
                "1" if drop_lease else "0",
                request.id,
                _STATUSES.index(request.status) + 1,
                repr(request.order_key),
                "" if request.next_due_at is None else repr(request.next_due_at),
                repr(request.created_at),
                "1" if request.is_open else "0",
                *("" if n is None else n for n in limits.as_tuple()),
                "1" if anonymous else "0",
            ],
        )
        return [int(v) for v in result]

    def _change(
        self,
        request_id: str,
        change: Callable[[CallbackRequest], CallbackRequest],
        *,
        lease: str = "none",
        owner: str = "",
        drop_lease: bool = False,
    ) -> tuple[CallbackRequest, CallbackRequest]:
        """(before, after): ``change`` applied by compare-and-set, retried on a lost race."""
        for _ in range(_MAX_TRIES):
            raw, before = self._load(request_id)
            after = change(before)
            code = self._write(raw, after, lease=lease, owner=owner, drop_lease=drop_lease)[0]
            if code == 1:
                return before, after
            if code == -1:
                raise LeaseLost(f"callback {request_id}: {owner!r} does not hold its lease")
        raise RuntimeError(f"callback {request_id}: changed by others {_MAX_TRIES} times running")

    def create(
        self,
        request: CallbackRequest,
        per_caller_limit: int | None = None,
        *,
        limits: OpenLimits | None = None,
        anonymous: bool = False,
    ) -> CallbackRequest:
        """Store a new request durably (pending, indexed), unless a limit on open requests is
        reached (:class:`OpenLimitReached` naming it, nothing stored): the caller's number or the
        number to call has ``per_caller_limit`` (or ``limits.per_caller``) open requests, the
        queue ``limits.per_queue``, all queues ``limits.total``, or, for an ``anonymous``
        caller (no usable number of their own), the queue's anonymous callers
        ``limits.anonymous``. Checked and written in one script: two daemons never both pass a
        limit with one place left. Creating an id that exists returns the stored request (a
        retried create is harmless). RedisUnavailable: NOT stored."""
        if request.status is not Status.PENDING:
            raise ValueError("a new callback request is pending")
        limits = limits or OpenLimits()
        if per_caller_limit is not None:
            limits = dataclasses.replace(limits, per_caller=per_caller_limit)
        code = self._write(None, request, limits=limits, anonymous=anonymous)
        if code[0] == 2:
            return self.require(request.id)
        if code[0] in _LIMIT_CODES:
            scope = _LIMIT_CODES[code[0]]
            limit = getattr(limits, scope) or 0
            log.info(
                "callback.limit_reached",
                callback=request.id,
                number=request.number,
                queue=request.queue,
                scope=scope,
                open=code[1],
                limit=limit,
            )
            raise OpenLimitReached(code[1], limit, scope)
        log.info(
            "callback.stored",
            callback=request.id,
            number=request.number,
            queue=request.queue,
            strategy=str(request.strategy),
            call_uuid=request.caller_uuid,
            anonymous=anonymous,
        )
        return request

    def restore(self, request: CallbackRequest, owner: str, ttl_ms: float) -> None:
        """Redis lost its data: write back a request ``owner`` is working on, with its lease
        (the request as this process last saw it, indexes and all). An existing record is
        left as it is."""
        code = self._write(None, request, lease="take", owner=owner, ttl_ms=_ttl(ttl_ms))
        if code[0] == 1:
            log.warning("callback.restored", callback=request.id, status=str(request.status))

    def take(self, request_id: str, owner: str, ttl_ms: float) -> bool:
        """Claim a pending request (→ working) for ``owner`` with a lease of ``ttl_ms``; also a
        working one whose lease expired (takeover). False: held by another, not pending, on the
        do-not-call list, or unknown."""
        owner, ttl = _owner(owner), _ttl(ttl_ms)
        for _ in range(_MAX_TRIES):
            try:
                raw, before = self._load(request_id)
            except UnknownCallback:
                return False
            if before.status not in (Status.PENDING, Status.WORKING):
                return False
            if self._dnc.is_listed(before.number):
                log.info("callback.do_not_call", callback=request_id, number=before.number)
                return False
            working = before.status is Status.WORKING
            after = before if working else with_status(before, Status.WORKING, 0.0)
            code = self._write(raw, after, lease="take", owner=owner, ttl_ms=ttl)[0]
            if code == 1:
                if working:
                    log.warning("callback.lease_taken_over", callback=request_id, owner=owner)
                return True
            if code == -4:
                return False
        return False

    def renew(self, request_id: str, owner: str, ttl_ms: float) -> bool:
        """Extend ``owner``'s lease; False if it is lost (stop working the request)."""
        return self._store.renew("callback." + request_id, _owner(owner), _ttl(ttl_ms))

    def release(self, request_id: str, owner: str) -> CallbackRequest:
        """Give a working request back without an attempt (→ pending, due as before)."""

        def back(request: CallbackRequest) -> CallbackRequest:
            if request.status is Status.WORKING:
                return with_status(request, Status.PENDING, 0.0)
            return request

        return self._change(request_id, back, lease="hold", owner=_owner(owner), drop_lease=True)[1]

    def record_attempt(
        self,
        request_id: str,
        owner: str,
        attempt: Attempt,
        rules: CallbackRules,
        now: float,
    ) -> CallbackRequest:
        """Keep ``attempt`` on the request and move it on (:func:`ccd.core.callback.after_attempt`),
        giving the lease back. Only the lease holder may (:class:`LeaseLost`). If an operator
        cancelled or retried the request meanwhile, the attempt is kept and the status stays."""

        def record(request: CallbackRequest) -> CallbackRequest:
            if request.status is Status.WORKING:
                return after_attempt(request, attempt, now, rules)
            return dataclasses.replace(request, attempts=(*request.attempts, attempt))

        _, after = self._change(
            request_id, record, lease="hold", owner=_owner(owner), drop_lease=True
        )
        log.info(
            "callback.attempt",
            callback=request_id,
            outcome=str(attempt.outcome),
            agent=attempt.agent,
            status=str(after.status),
            attempts=len(after.attempts),
            next_due_at=after.next_due_at,
        )
        return after  # an UNREACHED request is reported by the dialer (fact callback.unreached)

    def finish(
        self, request_id: str, owner: str, status: Status | str, now: float
    ) -> CallbackRequest:
        """The lease holder closes a working request without an attempt (done, declined,
        cancelled, unreached) and gives the lease back."""
        status = Status(status)
        if status in (Status.WORKING, Status.PENDING):
            raise ValueError("finish closes a request; use release to give it back")
        _, after = self._change(
            request_id,
            lambda r: with_status(r, status, now),
            lease="hold",
            owner=_owner(owner),
            drop_lease=True,
        )
        log.info("callback.finished", callback=request_id, status=str(status))
        return after

    def cancel(self, request_id: str, now: float = 0.0) -> CallbackRequest:
        """Operator: cancel a pending, working, unreached or declined request. A dialer working
        it keeps its lease until it records its attempt (kept on the request)."""
        _, after = self._change(request_id, lambda r: with_status(r, Status.CANCELLED, now))
        log.info("callback.cancelled", callback=request_id)
        return after

    def retry(self, request_id: str, now: float) -> CallbackRequest:
        """Operator: an unreached, declined or cancelled request → pending, due at ``now``, with
        a fresh set of attempts (the old ones stay on it)."""

        def again(request: CallbackRequest) -> CallbackRequest:
            if request.status in (Status.PENDING, Status.WORKING, Status.DONE):
                raise IllegalStatusChange(
                    f"callback {request.id} is {request.status}: nothing to retry"
                )
            return with_status(request, Status.PENDING, now)

        _, after = self._change(request_id, again)
        log.info("callback.retried", callback=request_id)
        return after
