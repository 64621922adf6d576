"""The do-not-call list (R-DISPO): numbers the daemon must not dial, each for a period.

Theory of operation
-------------------
* One key per listed number, ``Keys.dnc(<+number>)``, holding a msgpack record of schema
  ``DNC_SCHEMA_VERSION``::

      {"_v": 1, "number": str, "reason": str, "by": str, "added_at": float,
       "expires_at": float | None}

  The period IS the key's TTL (``SET … PX``): the entry lapses on time in Redis itself, with no
  timer in the daemon, and survives daemon restarts. ``ttl_seconds=None`` lists a number with
  no expiry (until ``remove``). ``expires_at`` is the same instant by the clock given to
  :class:`DncList` (the daemon's, at a time scale), for display: ``ccd dnc list`` shows the
  time left as ``expires_at`` minus the daemon's now; what counts is the TTL
  (``DncEntry.ttl_ms``, wall-clock milliseconds).
* Numbers are normalised (:mod:`ccd.core.numbers`) before they become keys, so ``06 1 234 5678``,
  ``+36 1 234 5678`` and ``003612345678`` are one entry.
* Adding a listed number again replaces its entry: the new period starts now.
* ``is_listed`` is for the call path and never raises for a bad number: a text that has no
  normalised form (``anonymous``, empty) cannot be on the list, so it answers False.
  ``add``/``remove``/``get`` refuse such a text with :class:`ccd.core.numbers.InvalidNumber`.
* Configured periods are seconds; with ``time_scale`` (``daemon.time_scale``: tests and the
  demo) the TTL written is ``ttl_seconds / time_scale``.
* Every Redis failure is :class:`ccd.store.redis_store.RedisUnavailable`. Whether a caller
  then dials or not is the caller's decision (a dialer should not dial: fail closed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from ccd.core.numbers import NumberPlan, normalize, try_normalize
from ccd.store.redis_store import Codec, SchemaMismatch, Store, unavailable_as_domain_error

__all__ = [
    "DEFAULT_DNC_DAYS",
    "DNC_SCHEMA_VERSION",
    "MAX_TEXT_LENGTH",
    "DncEntry",
    "DncList",
]

log = structlog.get_logger()

DNC_SCHEMA_VERSION = 1
#: The default period of a "do not contact" disposition (config ``disposition.dnc_days``).
DEFAULT_DNC_DAYS = 180
#: Longest reason / "by" text kept; longer text is refused, not cut.
MAX_TEXT_LENGTH = 200
_SCAN_BATCH = 200


@dataclass(frozen=True, slots=True)
class DncEntry:
    """A listed number. ``ttl_ms``: Redis's own milliseconds left, None = no expiry."""

    number: str
    reason: str
    by: str
    added_at: float
    expires_at: float | None
    ttl_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "reason": self.reason,
            "by": self.by,
            "added_at": self.added_at,
            "expires_at": self.expires_at,
            "ttl_ms": self.ttl_ms,
        }


def _text(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"{name} too long: {len(value)} characters (at most {MAX_TEXT_LENGTH})")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{name} must not contain control characters")
    return value


class DncList:
    """The do-not-call list over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        plan: NumberPlan | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (isinstance(time_scale, int | float) and math.isfinite(time_scale)) or not (
            time_scale > 0
        ):
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self._store = store
        self._keys = store.keys
        self._codec = Codec(DNC_SCHEMA_VERSION)
        self._plan = plan
        self._time_scale = float(time_scale)
        self._clock = clock

    def normalize(self, number: str) -> str:
        """The number's one stored form; :class:`ccd.core.numbers.InvalidNumber` when it is none."""
        return normalize(number, plan=self._plan)

    def add(
        self,
        number: str,
        ttl_seconds: float | None,
        reason: str = "",
        by: str = "operator",
    ) -> DncEntry:
        """List ``number`` for ``ttl_seconds`` (None: until removed); replaces an entry.

        Raises InvalidNumber for a bad number, ValueError for a bad period or text.
        """
        normalized = self.normalize(number)
        reason, by = _text("reason", reason), _text("by", by)
        if ttl_seconds is not None:
            if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
                raise ValueError(f"ttl_seconds must be a number, got {ttl_seconds!r}")
            if not math.isfinite(ttl_seconds) or not ttl_seconds > 0:
                raise ValueError(f"ttl_seconds must be > 0 and finite, got {ttl_seconds!r}")
        now = float(self._clock())
        ttl_ms = (
            None
            if ttl_seconds is None
            else max(1, math.ceil(ttl_seconds * 1000 / self._time_scale))
        )
        # The clock's instant: at a time scale the clock runs that much faster than the TTL.
        expires_at = None if ttl_seconds is None else now + ttl_seconds
        record = {
            "number": normalized,
            "reason": reason,
            "by": by,
            "added_at": now,
            "expires_at": expires_at,
        }
        with unavailable_as_domain_error("dnc add"):
            self._store.client.set(
                self._keys.dnc(normalized), self._codec.encode(record), px=ttl_ms
            )
        log.info("dnc.added", number=normalized, ttl_seconds=ttl_seconds, reason=reason, by=by)
        return DncEntry(normalized, reason, by, now, expires_at, ttl_ms)

    def remove(self, number: str, *, by: str = "operator") -> bool:
        """Take ``number`` off the list; True if it was listed."""
        normalized = self.normalize(number)
        removed = self._store.delete(self._keys.dnc(normalized))
        if removed:
            log.info("dnc.removed", number=normalized, by=_text("by", by))
        return removed

    def is_listed(self, number: str) -> bool:
        """True while ``number`` is on the list. A text that is not a usable number: False."""
        normalized = try_normalize(number, plan=self._plan)
        if normalized is None:
            return False
        with unavailable_as_domain_error("dnc check"):
            return bool(self._store.client.exists(self._keys.dnc(normalized)))

    def listed(self, numbers: Iterable[str]) -> set[str]:
        """The given texts (as given) that are listed, in one round trip; for dialers."""
        pairs = [(n, try_normalize(n, plan=self._plan)) for n in numbers]
        usable = [(raw, n) for raw, n in pairs if n is not None]
        if not usable:
            return set()
        with unavailable_as_domain_error("dnc check"):
            pipe = self._store.client.pipeline(transaction=False)
            for _raw, normalized in usable:
                pipe.exists(self._keys.dnc(normalized))
            found = pipe.execute()
        return {raw for (raw, _n), hit in zip(usable, found, strict=True) if hit}

    def get(self, number: str) -> DncEntry | None:
        """The entry with its remaining TTL, or None (not listed, or of another schema)."""
        key = self._keys.dnc(self.normalize(number))
        with unavailable_as_domain_error("dnc get"):
            pipe = self._store.client.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            raw, left = pipe.execute()
        return self._entry(key, raw, int(left))

    def list(self) -> list[DncEntry]:
        """Every entry, by number. SCANs the key space: for operators, not the call path."""
        found: list[DncEntry] = []
        for keys in self._scan():
            with unavailable_as_domain_error("dnc list"):
                pipe = self._store.client.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                    pipe.pttl(key)
                replies = pipe.execute()
            for index, key in enumerate(keys):
                entry = self._entry(
                    key.decode("utf-8", "replace"), replies[2 * index], int(replies[2 * index + 1])
                )
                if entry is not None:
                    found.append(entry)
        found.sort(key=lambda entry: entry.number)
        return found

    def _scan(self) -> Iterator[list[bytes]]:
        return self._store.scan_batches(self._keys.dnc_pattern(), _SCAN_BATCH)

    def _entry(self, key: str, raw: bytes | None, left: int) -> DncEntry | None:
        if raw is None or left == -2:
            return None  # not listed, or lapsed between two reads
        try:
            record = self._codec.decode(raw, key)
            expires_at = record.get("expires_at")
            return DncEntry(
                number=str(record["number"]),
                reason=str(record.get("reason", "")),
                by=str(record.get("by", "")),
                added_at=float(record["added_at"]),
                expires_at=None if expires_at is None else float(expires_at),
                ttl_ms=None if left == -1 else left,
            )
        except SchemaMismatch as exc:
            log.warning(
                "store.schema_mismatch", key=key, expected=exc.expected, found=repr(exc.found)
            )
        except (KeyError, TypeError, ValueError):
            log.warning(
                "store.schema_mismatch", key=key, expected=DNC_SCHEMA_VERSION, found="bad shape"
            )
        return None
