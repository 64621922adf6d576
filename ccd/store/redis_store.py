"""Redis storage, stacked as raw client → codec → key naming, with Lua for atomic steps.

Theory of operation
-------------------
* ``connect_redis`` builds the raw redis-py client: bytes in and out, short timeouts, one
  immediate retry on a broken connection (a pooled socket left over from before a Redis restart),
  never an unbounded wait. Every redis-py connection or timeout error leaving this module is a
  :class:`RedisUnavailable`.
* :class:`Codec` turns a record (a dict) into msgpack carrying ``"_v": schema_version`` and back.
  A record of another (or no) version is a :class:`SchemaMismatch`; the :class:`Store` logs
  ``store.schema_mismatch`` and treats such a record as absent. It never crashes on it and never
  rewrites it (a daemon of the other version may be running during an upgrade).
* :class:`ccd.store.keys.Keys` is the one place where key names are made; every part is checked so
  that a caller-supplied value cannot forge another key (no ``:``, whitespace or glob characters).
* Lua scripts are registered once in a :class:`ScriptRegistry` and called by name. Redis-side they
  read and write the same msgpack records with ``cmsgpack``. ``cmsgpack`` drops ``nil`` map
  values, so scripts write records through the shared prelude's ``pack_map(t, nullable)``,
  which keeps the named nullable keys (an agent's ``call``) present as msgpack nil.

Atomic helpers
--------------
* Leases (``lease``/``renew``/``release``): the key holds the owner's name with a PX expiry;
  only the owner renews or releases; taking a lease one already holds extends it (so a retried
  request is harmless).
* Agents: ``reserve_agent`` moves a ready, registered, idle agent to ``ringing`` for one call;
  ``release_agent`` moves it on (``oncall``, ``wrapup``, ``idle``) only if the record is still
  fenced to that same call uuid, so a late event about an old call cannot free an agent who is
  busy with a new one.

Agent record (schema version ``AGENT_SCHEMA_VERSION``)::

    {"_v": 1, "id": str, "ext": str, "tags": [str], "login": "logged_out|ready|break",
     "registered": bool, "activity": "idle|ringing|oncall|wrapup", "since": float,
     "idle_since": float, "call": str | None, "missed": int}

Numbers written by Lua come back as ``int`` when integral (``since`` 1700000000.0 → 1700000000).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgpack
import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from ccd.store.keys import Keys

__all__ = [
    "AGENT_ACTIVITIES",
    "AGENT_LOGINS",
    "AGENT_NULLABLE",
    "AGENT_SCHEMA_VERSION",
    "LUA_PRELUDE",
    "Codec",
    "RedisUnavailable",
    "SchemaMismatch",
    "ScriptRegistry",
    "Store",
    "connect_redis",
    "new_agent_record",
    "unavailable_as_domain_error",
]

log = structlog.get_logger()

AGENT_SCHEMA_VERSION = 1
AGENT_LOGINS = ("logged_out", "ready", "break")
AGENT_ACTIVITIES = ("idle", "ringing", "oncall", "wrapup")
#: Keys of an agent record that may hold None (kept present through Lua rewrites).
AGENT_NULLABLE = ("call",)

# Errors that mean "Redis cannot be reached or cannot serve now", not "the request was wrong".
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (Redis replaying its data)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after a failover
    TimeoutError,
    OSError,
)


class RedisUnavailable(Exception):
    """Redis did not answer (down, unreachable, timed out, loading): retry later."""


class SchemaMismatch(Exception):
    """A stored record is not of the schema version this daemon reads."""

    def __init__(self, key: str, expected: int, found: object) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        super().__init__(f"{key}: schema version {found!r}, expected {expected}")


@contextlib.contextmanager
def unavailable_as_domain_error(operation: str) -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        # redis-py's messages name host and port, never the password.
        raise RedisUnavailable(f"{operation}: {exc}") from exc


def connect_redis(url: str, socket_timeout: float = 2.0) -> redis.Redis:
    """The raw client for ``url``; connects lazily (use ``Store.ping`` to check).

    ``unix:///path.sock`` works too: redis-py's Unix socket connections take no TCP options
    (keepalive), so those are given to TCP URLs only."""
    tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        **tcp,  # type: ignore[arg-type]
        # PING a connection idle this long before reusing it: finds sockets Redis closed.
        health_check_interval=15,
        # One immediate retry on a broken connection only. A timeout is not retried: the
        # command may have run, and waiting twice is worse than failing fast.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        retry_on_timeout=False,
    )


class Codec:
    """msgpack records carrying a schema version under ``_v``."""

    def __init__(self, schema_version: int) -> None:
        if isinstance(schema_version, bool) or not isinstance(schema_version, int):
            raise TypeError("schema_version must be an int")
        self.schema_version = schema_version

    def encode(self, value: Mapping[str, Any]) -> bytes:
        record = dict(value)
        record["_v"] = self.schema_version
        return msgpack.packb(record, use_bin_type=True)

    def decode(self, raw: bytes, key: str = "") -> dict[str, Any]:
        """The record without ``_v``; SchemaMismatch if it is not ours (or not msgpack)."""
        try:
            record = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException):
            raise SchemaMismatch(key, self.schema_version, "undecodable") from None
        if not isinstance(record, dict):
            raise SchemaMismatch(key, self.schema_version, type(record).__name__)
        found = record.pop("_v", None)
        if found != self.schema_version or isinstance(found, bool):
            raise SchemaMismatch(key, self.schema_version, found)
        return record


LUA_PRELUDE = r"""
-- Encode map t; cmsgpack would drop nil values, so keys named in `nullable` that are nil
-- are written as msgpack nil (0xc0) to keep the record's shape.
local function pack_map(t, nullable)
  local n, parts = 0, {}
  for k, v in pairs(t) do
    n = n + 1
    parts[n] = cmsgpack.pack(k) .. cmsgpack.pack(v)
  end
  for _, k in ipairs(nullable or {}) do
    if t[k] == nil then
      n = n + 1
      parts[n] = cmsgpack.pack(k) .. "\192"
    end
  end
  local header
  if n < 16 then
    header = string.char(0x80 + n)
  elseif n < 65536 then
    header = string.char(0xde, math.floor(n / 256), n % 256)
  else
    return redis.error_reply("record too large")
  end
  return header .. table.concat(parts)
end

-- The record at key, or nil and a code: -1 missing, -2 not of schema `version`.
local function load_record(key, version)
  local raw = redis.call("GET", key)
  if not raw then return nil, -1 end
  local ok, rec = pcall(cmsgpack.unpack, raw)
  if not ok or type(rec) ~= "table" or rec["_v"] ~= tonumber(version) then return nil, -2 end
  return rec, 0
end

local function save_record(key, rec, nullable)
  redis.call("SET", key, pack_map(rec, nullable), "KEEPTTL")
end
"""

_LUA_LEASE = r"""
-- KEYS[1] lease; ARGV owner, ttl_ms. Taking a lease one holds extends it.
local current = redis.call("GET", KEYS[1])
if current == false then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_LUA_RENEW = r"""
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_LUA_RELEASE = r"""
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
"""

_LUA_PATCH = r"""
-- KEYS[1] record; ARGV version, msgpack map of changes, msgpack list of keys set to nil,
-- msgpack list of the record's nullable keys. 1 done, -1 missing, -2 other schema.
local rec, code = load_record(KEYS[1], ARGV[1])
if not rec then return code end
for k, v in pairs(cmsgpack.unpack(ARGV[2])) do rec[k] = v end
local nullable = cmsgpack.unpack(ARGV[4])
for _, k in ipairs(cmsgpack.unpack(ARGV[3])) do
  rec[k] = nil
  nullable[#nullable + 1] = k
end
save_record(KEYS[1], rec, nullable)
return 1
"""

_LUA_RESERVE_AGENT = r"""
-- KEYS[1] agent; ARGV version, call uuid, now.
-- 1 reserved, 0 not available, -1 missing, -2 other schema.
local rec, code = load_record(KEYS[1], ARGV[1])
if not rec then return code end
if rec.activity == "ringing" and rec.call == ARGV[2] then
  return 1  -- the same request again (a client retry): already ours
end
if rec.login ~= "ready" or rec.registered ~= true or rec.activity ~= "idle" then
  return 0
end
rec.activity = "ringing"
rec.call = ARGV[2]
rec.since = tonumber(ARGV[3])
save_record(KEYS[1], rec, {"call"})
return 1
"""

_LUA_RELEASE_AGENT = r"""
-- KEYS[1] agent; ARGV version, call uuid, new activity, now, missed (0|1).
-- 1 done, 0 fenced off (the agent is not on this call), -1 missing, -2 other schema.
local rec, code = load_record(KEYS[1], ARGV[1])
if not rec then return code end
if rec.call ~= ARGV[2] then return 0 end
local previous = rec.activity
local now = tonumber(ARGV[4])
rec.activity = ARGV[3]
rec.since = now
if ARGV[3] == "idle" then
  rec.call = nil
  -- A missed offer does not send the agent to the back of the idle line; a finished call does.
  if previous ~= "ringing" then rec.idle_since = now end
elseif ARGV[3] == "oncall" then
  rec.missed = 0  -- answered: the run of missed offers is over
end
if ARGV[5] == "1" then rec.missed = (tonumber(rec.missed) or 0) + 1 end
save_record(KEYS[1], rec, {"call"})
return 1
"""


class ScriptRegistry:
    """Lua scripts registered once by name; calling one by name runs it by SHA (EVALSHA).

    redis-py reloads a script that Redis forgot (NOSCRIPT after a Redis restart).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._scripts: dict[str, Any] = {}
        self._sources: dict[str, str] = {}

    def register(self, name: str, source: str, *, prelude: bool = True) -> None:
        """Register ``source`` as ``name``; ``prelude`` puts the LUA_PRELUDE helpers first."""
        full = (LUA_PRELUDE + source) if prelude else source
        if name in self._sources:
            if self._sources[name] != full:
                raise ValueError(f"a different script is already registered as {name!r}")
            return
        self._sources[name] = full
        self._scripts[name] = self._client.register_script(full)

    def __contains__(self, name: str) -> bool:
        return name in self._scripts

    def sha(self, name: str) -> str:
        """The SHA1 Redis knows the script by (for EVALSHA inside a pipeline)."""
        return self._scripts[name].sha

    def load_all(self) -> None:
        """Load every script into Redis (after a restart made it forget them)."""
        with unavailable_as_domain_error("script load"):
            for source in self._sources.values():
                self._client.script_load(source)

    def call(self, name: str, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        script = self._scripts[name]  # KeyError: a programming error, not a runtime condition
        with unavailable_as_domain_error(f"script {name}"):
            return script(keys=list(keys), args=list(args))


def new_agent_record(
    agent_id: str, extension: str, tags: Iterable[str], now: float
) -> dict[str, Any]:
    """A fresh agent record: logged out, not registered, idle."""
    return {
        "id": agent_id,
        "ext": extension,
        "tags": sorted(set(tags)),
        "login": "logged_out",
        "registered": False,
        "activity": "idle",
        "since": now,
        "idle_since": now,
        "call": None,
        "missed": 0,
    }


_AGENT_FIELDS = frozenset(new_agent_record("a", "1", (), 0.0)) - {"id"}


def _ttl_ms(ttl_ms: float) -> int:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int | float) or not ttl_ms > 0:
        raise ValueError(f"ttl_ms must be a number > 0, got {ttl_ms!r}")
    if not math.isfinite(ttl_ms):
        raise ValueError("ttl_ms must be finite")
    return max(1, math.ceil(ttl_ms))


def _owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner or len(owner) > 256:
        raise ValueError(f"lease owner must be a non-empty string, got {owner!r}")
    return owner


def own_connection(client: redis.Redis) -> redis.connection.AbstractConnection:
    """A connection of the client's kind that its pool does not count or hand out: a
    greenlet that keeps one for itself (the dispatcher's lane, an event-feed client) must
    not use up the pool's limit (redis-py's default: 100), which is never given back for a
    connection made with ``pool.make_connection()``."""
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


class Store:
    """Records and atomic steps over one Redis, under one key prefix."""

    def __init__(
        self, client: redis.Redis, prefix: str = "ccd:", codec: Codec | None = None
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.codec = codec or Codec(AGENT_SCHEMA_VERSION)
        self.scripts = ScriptRegistry(client)
        self.scripts.register("lease", _LUA_LEASE, prelude=False)
        self.scripts.register("renew", _LUA_RENEW, prelude=False)
        self.scripts.register("release", _LUA_RELEASE, prelude=False)
        self.scripts.register("patch", _LUA_PATCH)
        self.scripts.register("reserve_agent", _LUA_RESERVE_AGENT)
        self.scripts.register("release_agent", _LUA_RELEASE_AGENT)

    # --- health ---------------------------------------------------------------------------

    @classmethod
    def create(cls, client: redis.Redis, prefix: str = "ccd:") -> Store:
        """The daemon's store: records of the current schema version."""
        return cls(client, prefix, Codec(AGENT_SCHEMA_VERSION))

    def ping(self) -> bool:
        """True when Redis answers; RedisUnavailable when it does not (never False)."""
        with unavailable_as_domain_error("ping"):
            return bool(self.client.ping())

    # --- records ----------------------------------------------------------------------------

    def _decode(self, key: str, raw: bytes | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            return self.codec.decode(raw, key)
        except SchemaMismatch as exc:
            log.warning(
                "store.schema_mismatch", key=key, expected=exc.expected, found=repr(exc.found)
            )
            return None

    def get(self, key: str) -> dict[str, Any] | None:
        """The record, or None when absent or of another schema version (logged)."""
        with unavailable_as_domain_error("get"):
            raw = self.client.get(key)
        return self._decode(key, raw)

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """Records in the order of ``keys`` (one round trip), None where absent or foreign."""
        if not keys:
            return []
        with unavailable_as_domain_error("get_many"):
            raws = self.client.mget(list(keys))
        return [self._decode(k, raw) for k, raw in zip(keys, raws, strict=True)]

    def put(self, key: str, value: Mapping[str, Any], ttl_ms: float | None = None) -> None:
        """Write the record (replacing it); with ``ttl_ms`` it expires after that many ms."""
        data = self.codec.encode(value)
        px = None if ttl_ms is None else _ttl_ms(ttl_ms)
        with unavailable_as_domain_error("put"):
            self.client.set(key, data, px=px)

    def patch(self, key: str, changes: Mapping[str, Any], nullable: Sequence[str] = ()) -> bool:
        """Merge ``changes`` into the stored record atomically, keeping its TTL.

        False when the record is absent or of another schema. A None in ``changes`` stores nil;
        ``nullable`` names the record's other keys that may be None (agents: AGENT_NULLABLE).
        """
        if "_v" in changes:
            raise ValueError("the schema version is not a field to patch")
        values = {k: v for k, v in changes.items() if v is not None}
        nulls = [k for k, v in changes.items() if v is None]
        code = self.scripts.call(
            "patch",
            keys=[key],
            args=[
                self.codec.schema_version,
                msgpack.packb(values, use_bin_type=True),
                msgpack.packb(nulls, use_bin_type=True),
                msgpack.packb(list(nullable), use_bin_type=True),
            ],
        )
        return self._result("patch", key, code)

    def delete(self, key: str) -> bool:
        """True if the key existed."""
        with unavailable_as_domain_error("delete"):
            return bool(self.client.delete(key))

    def pttl(self, key: str) -> int | None:
        """Milliseconds left; -1 when the key never expires; None when there is no key."""
        with unavailable_as_domain_error("pttl"):
            left = int(self.client.pttl(key))
        return None if left == -2 else left

    def _result(self, operation: str, key: str, code: int) -> bool:
        if code == -2:
            log.warning(
                "store.schema_mismatch",
                key=key,
                expected=self.codec.schema_version,
                operation=operation,
            )
        return code == 1

    # --- leases -----------------------------------------------------------------------------

    def lease(self, name: str, owner: str, ttl_ms: float) -> bool:
        """Take the lease ``name`` for ``owner`` (or extend it if ``owner`` holds it)."""
        return (
            self.scripts.call(
                "lease", keys=[self.keys.lease(name)], args=[_owner(owner), _ttl_ms(ttl_ms)]
            )
            == 1
        )

    def renew(self, name: str, owner: str, ttl_ms: float) -> bool:
        """Extend the lease; False if ``owner`` does not hold it (lost or expired)."""
        return (
            self.scripts.call(
                "renew", keys=[self.keys.lease(name)], args=[_owner(owner), _ttl_ms(ttl_ms)]
            )
            == 1
        )

    def release(self, name: str, owner: str) -> bool:
        """Give the lease up; False (and nothing done) if ``owner`` does not hold it."""
        return self.scripts.call("release", keys=[self.keys.lease(name)], args=[_owner(owner)]) == 1

    def scan_batches(self, pattern: str, batch: int = 500) -> Iterator[list[bytes]]:
        """Keys matching ``pattern`` in batches (SCAN: never blocks Redis like KEYS)."""
        found: list[bytes] = []
        with unavailable_as_domain_error(f"scan {pattern}"):
            for key in self.client.scan_iter(match=pattern, count=batch):
                found.append(key)
                if len(found) >= batch:
                    yield found
                    found = []
        if found:
            yield found

    def lease_owner(self, name: str) -> str | None:
        with unavailable_as_domain_error("lease_owner"):
            raw = self.client.get(self.keys.lease(name))
        return None if raw is None else raw.decode("utf-8", "replace")

    # --- agents -----------------------------------------------------------------------------

    def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        """The agent record with its types restored (Lua writes 100.0 back as 100)."""
        record = self.get(self.keys.agent(agent_id))
        if record is not None:
            for name in ("since", "idle_since"):
                if isinstance(record.get(name), int):
                    record[name] = float(record[name])
            for name in AGENT_NULLABLE:
                record.setdefault(name, None)
        return record

    def update_agent(self, agent_id: str, **changes: Any) -> bool:
        """Atomically change fields of an agent record (login, registered, tags...).

        Safe against a concurrent reserve/release: only the named fields change. False if the
        agent has no record (or one of another schema).
        """
        unknown = set(changes) - _AGENT_FIELDS
        if unknown:
            raise ValueError(f"not agent record fields: {sorted(unknown)}")
        if "login" in changes and changes["login"] not in AGENT_LOGINS:
            raise ValueError(f"login must be one of {AGENT_LOGINS}, got {changes['login']!r}")
        if "activity" in changes and changes["activity"] not in AGENT_ACTIVITIES:
            raise ValueError(
                f"activity must be one of {AGENT_ACTIVITIES}, got {changes['activity']!r}"
            )
        return self.patch(self.keys.agent(agent_id), changes, nullable=AGENT_NULLABLE)

    def reserve_agent(self, agent_id: str, call_uuid: str, now: float) -> bool:
        """Atomically take a ready, registered, idle agent for ``call_uuid`` (→ ringing)."""
        if not isinstance(call_uuid, str) or not call_uuid:
            raise ValueError("call_uuid must be a non-empty string")
        key = self.keys.agent(agent_id)
        code = self.scripts.call(
            "reserve_agent",
            keys=[key],
            args=[self.codec.schema_version, call_uuid, repr(float(now))],
        )
        return self._result("reserve_agent", key, code)

    def release_agent(
        self, agent_id: str, call_uuid: str, activity: str, now: float, *, missed: bool = False
    ) -> bool:
        """Move the agent on from ``call_uuid``, only if it is still on that call.

        ``activity``: "idle" (the call is cleared from the record), "oncall" or "wrapup" (the
        record stays fenced to the call). ``missed=True`` counts a missed offer; going
        "oncall" resets the count.
        """
        if activity not in ("idle", "oncall", "wrapup"):
            raise ValueError(f"activity must be idle, oncall or wrapup, got {activity!r}")
        if not isinstance(call_uuid, str) or not call_uuid:
            raise ValueError("call_uuid must be a non-empty string")
        key = self.keys.agent(agent_id)
        code = self.scripts.call(
            "release_agent",
            keys=[key],
            args=[
                self.codec.schema_version,
                call_uuid,
                activity,
                repr(float(now)),
                "1" if missed else "0",
            ],
        )
        return self._result("release_agent", key, code)
