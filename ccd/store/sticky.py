"""Sticky bindings (R-STICKY) in Redis: the store behind :mod:`ccd.core.sticky`'s pure rules.

Theory of operation
-------------------
* A binding is one key, ``Keys.sticky(<+number>)``, holding a msgpack record of schema
  ``BINDING_SCHEMA_VERSION``::

      {"_v": 1, "number": str, "agent": str, "type": "type1".."type4",
       "created_at": float, "expires_at": float, "attempts": int}

  The expiry IS the key's TTL (``SET … PX``): it holds to the millisecond, survives daemon
  restarts, needs no timer in the daemon and costs nothing when it lapses. ``expires_at`` in
  the record is the same instant by the daemon's clock, for display and for the pure core.
* Numbers are normalised (:mod:`ccd.core.numbers`) before they become keys, so ``06 1 234 5678`` and
  ``+3612345678`` are one binding.
* :meth:`StickyStore.apply` writes a :class:`ccd.core.sticky.Decision` with one Lua script that
  first checks the stored record is still byte for byte the one the decision was made from (or
  still absent): a compare-and-set. If another daemon or an operator changed it meanwhile,
  nothing is written and ``apply`` answers False; :meth:`StickyStore.record` then reads again
  and decides again. So a concurrent replace (latest agent wins) is never undone by a stale
  refresh or delete. SET and REFRESH write with ``PX`` (expiry restarts); KEEP_TTL_UPDATE
  writes with ``KEEPTTL`` (a type1 re-attempt: the expiry stays where it was).
* Settings: :meth:`StickyStore.setting_for` takes each of type and expiry from the agent's
  run-time override in Redis (``ccd agent sticky``), else from the config file's
  ``agents.<id>.sticky_type`` / ``sticky_expiry``, else ``sticky.default_type`` /
  ``sticky.default_expiry``. Expiries are configured seconds; with ``daemon.time_scale`` the
  TTL written is ``expiry / time_scale`` (tests and the demo).
* Every Redis failure is :class:`ccd.store.redis_store.RedisUnavailable` (the caller
  decides; on the call path a missing binding only means the normal queue).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ccd.config import Config
from ccd.core.numbers import NumberPlan, normalize, try_normalize
from ccd.core.sticky import (
    DISABLED,
    Action,
    AgentAttempt,
    Binding,
    CustomerCall,
    Decision,
    StickySetting,
    StickyType,
    decide,
    route,
)
from ccd.store.redis_store import Codec, SchemaMismatch, Store, unavailable_as_domain_error

__all__ = [
    "BINDING_SCHEMA_VERSION",
    "SETTING_SCHEMA_VERSION",
    "SettingOverride",
    "StickyStore",
]

log = structlog.get_logger()

BINDING_SCHEMA_VERSION = 1
SETTING_SCHEMA_VERSION = 1

#: Rounds of read → decide → compare-and-write before giving up. A round fails only because
#: another writer's round succeeded, so N writers racing on one number need at most N rounds;
#: the bound is a safety net, far above the few writers one customer's number ever has.
_MAX_TRIES = 32
_SCAN_BATCH = 200

_LUA_APPLY = r"""
-- KEYS[1] binding; ARGV version, op (set|keepttl|delete), the record expected to be stored
-- (its exact bytes; "" = expect no key), the new record, ttl_ms.
-- 1 written, 0 the stored binding is not the expected one, -2 a record of another schema.
local raw = redis.call("GET", KEYS[1])
if (raw or "") ~= ARGV[3] then
  if raw then
    local ok, rec = pcall(cmsgpack.unpack, raw)
    if not ok or type(rec) ~= "table" or rec["_v"] ~= tonumber(ARGV[1]) then return -2 end
  end
  return 0
end
if ARGV[2] == "set" then
  redis.call("SET", KEYS[1], ARGV[4], "PX", ARGV[5])
elseif ARGV[2] == "keepttl" then
  if not raw then return 0 end
  redis.call("SET", KEYS[1], ARGV[4], "KEEPTTL")
elseif ARGV[2] == "delete" then
  if raw then redis.call("DEL", KEYS[1]) end
end
return 1
"""

_LUA_GETDEL = r"""
local raw = redis.call("GET", KEYS[1])
if raw then redis.call("DEL", KEYS[1]) end
return raw
"""


@dataclass(frozen=True, slots=True)
class SettingOverride:
    """A partial setting: None leaves that part to the next layer."""

    type: StickyType | None = None
    expiry: float | None = None

    def __post_init__(self) -> None:
        if self.type is not None:
            object.__setattr__(self, "type", StickyType(self.type))
        if self.expiry is not None:
            StickySetting(StickyType.DISABLED, self.expiry)  # validates: seconds >= 0, finite


def _binding_record(binding: Binding) -> dict[str, Any]:
    return {
        "number": binding.number,
        "agent": binding.agent_id,
        "type": str(binding.type),
        "created_at": float(binding.created_at),
        "expires_at": float(binding.expires_at),
        "attempts": int(binding.attempts),
    }


def _binding_of(record: Mapping[str, Any]) -> Binding:
    return Binding(
        number=str(record["number"]),
        agent_id=str(record["agent"]),
        type=StickyType(record["type"]),
        expires_at=float(record["expires_at"]),
        created_at=float(record["created_at"]),
        attempts=int(record["attempts"]),
    )


def _ttl_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class StickyStore:
    """Sticky bindings and the agents' sticky settings over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        default: StickySetting = DISABLED,
        per_agent: Mapping[str, SettingOverride] | None = None,
        plan: NumberPlan | None = None,
        time_scale: float = 1.0,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self._store = store
        self._keys = store.keys
        self._codec = Codec(BINDING_SCHEMA_VERSION)
        self._setting_codec = Codec(SETTING_SCHEMA_VERSION)
        self._default = default
        self._per_agent = dict(per_agent or {})
        self._plan = plan
        self._time_scale = time_scale
        store.scripts.register("sticky_apply", _LUA_APPLY, prelude=False)
        store.scripts.register("sticky_getdel", _LUA_GETDEL, prelude=False)

    @classmethod
    def from_config(
        cls, store: Store, config: Config, *, plan: NumberPlan | None = None
    ) -> StickyStore:
        """The store with ``config.sticky`` defaults, per-agent overrides and time scale."""
        sticky = cls(store, plan=plan, time_scale=config.daemon.time_scale)
        sticky.apply_config(config)
        return sticky

    def apply_config(self, config: Config) -> None:
        """The configured default and per-agent settings (at start and at a reload; run-time
        overrides in Redis are kept and still win)."""
        self._default = StickySetting(config.sticky.default_type, config.sticky.default_expiry)
        self._per_agent = {
            agent_id: SettingOverride(agent.sticky_type, agent.sticky_expiry)
            for agent_id, agent in config.agents.items()
            if agent.sticky_type is not None or agent.sticky_expiry is not None
        }

    # --- numbers and records ------------------------------------------------------------------

    def normalize(self, number: str) -> str:
        """The number's one stored form; :class:`ccd.core.numbers.InvalidNumber` when it is none."""
        return normalize(number, plan=self._plan)

    def _encode(self, binding: Binding) -> bytes:
        # Deterministic (fixed field order, floats as float64): the bytes of a binding read
        # back are the bytes stored, which is what apply's compare-and-set relies on.
        return self._codec.encode(_binding_record(binding))

    def _decode(self, key: str, raw: bytes | None) -> Binding | None:
        if raw is None:
            return None
        try:
            return _binding_of(self._codec.decode(raw, key))
        except SchemaMismatch as exc:
            log.warning(
                "store.schema_mismatch", key=key, expected=exc.expected, found=repr(exc.found)
            )
        except (KeyError, TypeError, ValueError):
            log.warning(
                "store.schema_mismatch", key=key, expected=BINDING_SCHEMA_VERSION, found="bad shape"
            )
        return None

    def get(self, number: str) -> Binding | None:
        """The stored binding of ``number`` (None: none, or of another schema; logged)."""
        key = self._keys.sticky(self.normalize(number))
        with unavailable_as_domain_error("sticky get"):
            raw = self._store.client.get(key)
        return self._decode(key, raw)

    def pttl(self, number: str) -> int | None:
        """Milliseconds the binding has left (Redis's own count); None when there is none."""
        return self._store.pttl(self._keys.sticky(self.normalize(number)))

    def apply(self, number: str, decision: Decision) -> bool:
        """Write ``decision`` atomically, only if the stored binding is still exactly
        ``decision.previous`` (or still absent): a compare-and-set on the whole record.

        True: written (or nothing to write, KEEP). False: the binding changed meanwhile (read
        and decide again) or is a record of another schema (logged); nothing was written.
        """
        normalized = self.normalize(number)
        if decision.action is Action.KEEP:
            return True
        if decision.action is not Action.DELETE and (
            decision.binding is None or decision.binding.number != normalized
        ):
            raise ValueError(f"decision for {number!r} carries no binding of {normalized!r}")
        op = {
            Action.SET: "set",
            Action.REFRESH: "set",
            Action.KEEP_TTL_UPDATE: "keepttl",
            Action.DELETE: "delete",
        }[decision.action]
        ttl_ms = 0
        if op == "set":
            if decision.ttl is None or not decision.ttl > 0:
                raise ValueError(f"{decision.action} needs a ttl > 0, got {decision.ttl!r}")
            ttl_ms = _ttl_ms(decision.ttl)
        previous = b"" if decision.previous is None else self._encode(decision.previous)
        record = b"" if decision.binding is None else self._encode(decision.binding)
        key = self._keys.sticky(normalized)
        code = self._store.scripts.call(
            "sticky_apply",
            keys=[key],
            args=[
                BINDING_SCHEMA_VERSION,
                op,
                previous,
                record,
                ttl_ms,
            ],
        )
        if code == -2:
            log.warning(
                "store.schema_mismatch",
                key=key,
                expected=BINDING_SCHEMA_VERSION,
                operation="sticky_apply",
            )
        return code == 1

    def delete(self, number: str, *, reason: str = "operator") -> Binding | None:
        """Remove the binding at once; the binding removed (logged ``sticky.deleted``), or None."""
        key = self._keys.sticky(self.normalize(number))
        raw = self._store.scripts.call("sticky_getdel", keys=[key])
        if raw is None:
            return None
        binding = self._decode(key, raw)
        if binding is not None:
            log.info(
                "sticky.deleted",
                number=binding.number,
                agent=binding.agent_id,
                type=str(binding.type),
                reason=reason,
            )
        return binding

    def _scan(self) -> Iterator[list[bytes]]:
        return self._store.scan_batches(self._keys.sticky_pattern(), _SCAN_BATCH)

    def list(self, agent: str | None = None) -> list[tuple[Binding, int]]:
        """Every binding (of ``agent`` when given) with its milliseconds left, by number.

        SCANs the key space: for operators, not for the call path.
        """
        found: list[tuple[Binding, int]] = []
        for keys in self._scan():
            with unavailable_as_domain_error("sticky list"):
                pipe = self._store.client.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                    pipe.pttl(key)
                replies = pipe.execute()
            for index, key in enumerate(keys):
                raw, left = replies[2 * index], int(replies[2 * index + 1])
                if raw is None or left == -2:
                    continue  # lapsed between SCAN and GET
                binding = self._decode(key.decode("utf-8", "replace"), raw)
                if binding is not None and (agent is None or binding.agent_id == agent):
                    found.append((binding, left))
        found.sort(key=lambda item: item[0].number)
        return found

    # --- settings ---------------------------------------------------------------------------

    def runtime_setting(self, agent_id: str) -> SettingOverride | None:
        """The agent's run-time override (``ccd agent sticky``), None when there is none."""
        key = self._keys.sticky_setting(agent_id)
        with unavailable_as_domain_error("sticky setting"):
            raw = self._store.client.get(key)
        if raw is None:
            return None
        try:
            record = self._setting_codec.decode(raw, key)
            return SettingOverride(record.get("type"), record.get("expiry"))
        except (SchemaMismatch, TypeError, ValueError):
            log.warning("store.schema_mismatch", key=key, expected=SETTING_SCHEMA_VERSION)
            return None

    def set_runtime_setting(
        self, agent_id: str, type: StickyType | str, expiry: float | None = None
    ) -> SettingOverride:
        """Store the agent's run-time type (and expiry; None keeps the configured one)."""
        override = SettingOverride(StickyType(type), None if expiry is None else float(expiry))
        record = {"type": str(override.type), "expiry": override.expiry}
        with unavailable_as_domain_error("sticky setting"):
            self._store.client.set(
                self._keys.sticky_setting(agent_id), self._setting_codec.encode(record)
            )
        return override

    def clear_runtime_setting(self, agent_id: str) -> bool:
        """Back to the configured setting; True if there was an override."""
        return self._store.delete(self._keys.sticky_setting(agent_id))

    def configured_setting(self, agent_id: str) -> StickySetting:
        """The config file's setting for the agent (its overrides, else the defaults)."""
        return self._layered(agent_id, None)

    def setting_for(self, agent_id: str) -> StickySetting:
        """The agent's setting in configured seconds: run-time override, config, default."""
        return self._layered(agent_id, self.runtime_setting(agent_id))

    def _layered(self, agent_id: str, runtime: SettingOverride | None) -> StickySetting:
        layers = [runtime, self._per_agent.get(agent_id)]
        kind = next((o.type for o in layers if o and o.type is not None), self._default.type)
        expiry = next(
            (o.expiry for o in layers if o and o.expiry is not None), self._default.expiry
        )
        return StickySetting(kind, expiry)

    def _scaled_setting(self, agent_id: str) -> StickySetting:
        setting = self.setting_for(agent_id)
        return StickySetting(setting.type, setting.expiry / self._time_scale)

    # --- the call path ----------------------------------------------------------------------

    def record(self, event: AgentAttempt | CustomerCall, now: float) -> Decision | None:
        """Read the binding, decide (:func:`ccd.core.sticky.decide`), write, log the facts.

        None when the number is not usable (``anonymous``...) or the stored binding is of
        another schema. Retries when another writer changed the binding in between.
        """
        number = try_normalize(event.number, plan=self._plan)
        if number is None:
            log.debug("sticky.unusable_number", kind=type(event).__name__)
            return None
        if isinstance(event, AgentAttempt):
            event = AgentAttempt(number, event.agent_id, event.answered, event.now)
        else:
            event = CustomerCall(number, event.now, event.talked_to)
        for _ in range(_MAX_TRIES):
            key = self._keys.sticky(number)
            with unavailable_as_domain_error("sticky get"):
                raw = self._store.client.get(key)
            current = self._decode(key, raw)
            if raw is not None and current is None:
                return None  # another schema: neither read nor overwritten
            decision = decide(current, event, self._scaled_setting, now)
            if self.apply(number, decision):
                for fact in decision.facts:
                    log.info(fact.name, **fact.fields)
                return decision
        log.warning("sticky.conflict", number=number, tries=_MAX_TRIES)
        return None

    def route(self, number: str, now: float) -> str | None:
        """The agent a call from ``number`` is offered to first, or None (no live binding,
        or a number that cannot be anyone's)."""
        normalized = try_normalize(number, plan=self._plan)
        if normalized is None:
            return None
        return route(self.get(normalized), now)
