"""Dispositions in Redis (R-DISPO): what was recorded, and reports read from counters.

Theory of operation
-------------------
* Days are calendar days in the centre's time zone (``tz``, config ``disposition.timezone``),
  written ``YYYY-MM-DD``. A call's codes all count on ONE day: the day of its first recorded
  code, kept with the call, so a code set after midnight for a call of 23:58 lands beside the
  others.
* Per call, a hash ``Keys.disposition_call(<uuid>)``: ``day``, ``agent``, ``queue`` and one field
  ``c:<code>`` per code already counted. This makes recording idempotent: a code set twice
  (an agent keying ``*7 05 #`` again, a retried API call) is counted once.
* Per day, a stream ``Keys.disposition_stream(<day>)`` (``disposition:<day>``): one entry per
  recording that added codes, field ``d`` = msgpack of the disposition plus ``new`` (the codes it
  added); the audit trail of who set what and when.
* Per day, a counters hash ``Keys.disposition_counts(<day>)``, fields (``\\t`` separates parts; no
  part may hold one, :class:`ccd.store.keys.Keys` rules)::

      n                      calls with at least one code
      c\\t<code>              calls carrying <code>
      a\\t<agent>             calls of <agent> with a code
      ac\\t<agent>\\t<code>    ... carrying <code>
      q\\t<queue>, qc\\t<queue>\\t<code>  the same per queue

  A call's agent and queue are those of its first recording that names one (a call abandoned
  in a queue has no agent; one answered later has).
* One Lua script does all of it for one recording, so the call's hash, the stream and the
  counters never disagree (a MULTI could not decide "is this code new?" inside the
  transaction). Python first reads the call's day (``HGET``) to name the day's keys; the script
  refuses (and Python retries with the stored day) if another writer fixed a different day
  in between.
* Retention: every key of a day expires ``retention_days`` after the end of that day
  (``EXPIREAT``); no cleanup job. A disposition of a day already past its retention is
  therefore gone as soon as it is written.
* :meth:`ReportStore.report` reads only the counters: one ``HGETALL`` per day in one pipeline,
  so a month of a 100-agent centre (~200,000 calls) costs 31 small hashes, not 200,000 entries.
  Shares are count / calls of the row's group (the whole range for ``by="code"``, the agent,
  the queue, the day): a call may carry several codes, so shares may add up to more than 1.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import structlog

from ccd.core.disposition import CodeSet, Disposition
from ccd.core.report import (
    GROUPINGS,
    MAX_REPORT_DAYS,
    BadReportRequest,
    Report,
    ReportRow,
    parse_day,
)
from ccd.store.batch import Batch
from ccd.store.redis_store import Store, unavailable_as_domain_error

__all__ = ["DEFAULT_RETENTION_DAYS", "ReportStore"]

log = structlog.get_logger()

#: Days a day's dispositions and counters are kept after the day ends (config
#: ``disposition.retention_days``).
DEFAULT_RETENTION_DAYS = 400
_SEP = "\t"
_MAX_TRIES = 3

_LUA_RECORD = r"""
-- KEYS[1] call hash, KEYS[2] day counters, KEYS[3] day stream.
-- ARGV[1] day, ARGV[2] expire-at (unix s), ARGV[3] agent or "", ARGV[4] queue or "",
-- ARGV[5] msgpack disposition (without "new"), ARGV[6] stream max length, ARGV[7..] codes.
-- {1, new codes...} recorded; {0} nothing new; {-3, day} the call counts on another day.
local day = redis.call("HGET", KEYS[1], "day")
if day and day ~= ARGV[1] then return {-3, day} end
local new = {}
for i = 7, #ARGV do
  if redis.call("HSETNX", KEYS[1], "c:" .. ARGV[i], "1") == 1 then new[#new + 1] = ARGV[i] end
end
if #new == 0 and not day then return {0} end
local sep = "\t"
if not day then
  redis.call("HSET", KEYS[1], "day", ARGV[1])
  redis.call("HINCRBY", KEYS[2], "n", 1)
end
-- The call's agent/queue: the first recording that names one fixes it, even one that adds
-- no code; the call's codes so far are then counted for that agent/queue, so its
-- per-agent figures stay whole.
local changed = false
local function owner(field, value, calls_prefix)
  local current = redis.call("HGET", KEYS[1], field)
  if current then return current, nil end
  if value == "" then return nil, nil end
  changed = true
  redis.call("HSET", KEYS[1], field, value)
  redis.call("HINCRBY", KEYS[2], calls_prefix .. sep .. value, 1)
  local all = {}
  for _, f in ipairs(redis.call("HKEYS", KEYS[1])) do
    if string.sub(f, 1, 2) == "c:" then all[#all + 1] = string.sub(f, 3) end
  end
  return value, all
end
local agent, agent_all = owner("agent", ARGV[3], "a")
local queue, queue_all = owner("queue", ARGV[4], "q")
if #new == 0 and not changed then return {0} end
local function count(prefix, who, codes)
  for _, code in ipairs(codes) do
    redis.call("HINCRBY", KEYS[2], prefix .. sep .. who .. sep .. code, 1)
  end
end
for _, code in ipairs(new) do redis.call("HINCRBY", KEYS[2], "c" .. sep .. code, 1) end
if agent then count("ac", agent, agent_all or new) end
if queue then count("qc", queue, queue_all or new) end
local entry = cmsgpack.unpack(ARGV[5])
entry["new"] = new
redis.call("XADD", KEYS[3], "MAXLEN", "~", ARGV[6], "*", "d", cmsgpack.pack(entry))
for i = 1, 3 do redis.call("EXPIREAT", KEYS[i], ARGV[2]) end
local out = {1}
for _, code in ipairs(new) do out[#out + 1] = code end
return out
"""

#: A day's stream keeps at most about this many entries (far above a day of a big centre).
_STREAM_MAX = 1_000_000


class ReportStore:
    """Recorded dispositions and their counters over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        tz: dt.tzinfo = dt.UTC,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if isinstance(retention_days, bool) or not isinstance(retention_days, int):
            raise ValueError(f"retention_days must be an integer, got {retention_days!r}")
        if not 1 <= retention_days <= 36600:
            raise ValueError(f"retention_days must be 1..36600, got {retention_days!r}")
        self._store = store
        self._keys = store.keys
        self._tz = tz
        self._retention_days = retention_days
        store.scripts.register("disposition_record", _LUA_RECORD, prelude=False)

    # --- days --------------------------------------------------------------------------------

    def day_of(self, at: float) -> str:
        """The centre's calendar day of the epoch time ``at``."""
        return dt.datetime.fromtimestamp(at, self._tz).date().isoformat()

    def _expire_at(self, day: str) -> int:
        """Unix seconds: the end of ``day`` in the centre's zone plus the retention."""
        date = dt.date.fromisoformat(day)
        end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), self._tz)
        return math.ceil(end.timestamp()) + self._retention_days * 86400

    # --- recording --------------------------------------------------------------------------

    def _args(self, disposition: Disposition, day: str) -> list[Any]:
        entry = disposition.to_dict()
        return [
            day,
            self._expire_at(day),
            disposition.agent or "",
            disposition.queue or "",
            msgpack.packb(entry, use_bin_type=True),
            _STREAM_MAX,
            *disposition.codes,
        ]

    def _call_keys(self, call_uuid: str, day: str) -> list[str]:
        return [
            self._keys.disposition_call(call_uuid),
            self._keys.disposition_counts(day),
            self._keys.disposition_stream(day),
        ]

    def record(self, disposition: Disposition) -> tuple[str, ...]:
        """Record the disposition's codes for its call; answers the codes that were new.

        () when the call already carried every one of them (nothing is written). Actions are
        for the new codes only (:func:`ccd.core.disposition.plan_actions` ``new=``).
        """
        key = self._keys.disposition_call(disposition.call_uuid)
        with unavailable_as_domain_error("disposition record"):
            stored = self._store.client.hget(key, "day")
        day = stored.decode() if stored else self.day_of(disposition.set_at)
        for _ in range(_MAX_TRIES):
            reply = self._store.scripts.call(
                "disposition_record",
                keys=self._call_keys(disposition.call_uuid, day),
                args=self._args(disposition, day),
            )
            if reply[0] != -3:
                return self._recorded(disposition, reply)
            day = reply[1].decode()
        raise RuntimeError(
            f"disposition record: the day of call {disposition.call_uuid} keeps changing"
        )

    def record_op(
        self, batch: Batch, disposition: Disposition, then: Callable[[tuple[str, ...]], None]
    ) -> None:
        """:meth:`record` in ``batch``, for a call that just ended (it has no day yet: the
        day of its end; should another writer have fixed another day, recorded again at
        once on that day). ``then`` gets the new codes."""
        day = self.day_of(disposition.set_at)

        def done(reply: list[Any]) -> None:
            if reply[0] == -3:
                then(self.record(disposition))
            else:
                then(self._recorded(disposition, reply))

        batch.script(
            "disposition_record",
            self._call_keys(disposition.call_uuid, day),
            self._args(disposition, day),
            done,
        )

    def record_many(self, dispositions: Sequence[Disposition]) -> list[tuple[str, ...]]:
        """:meth:`record` for many (imports, tests) in two round trips; same answers."""
        if not dispositions:
            return []
        with unavailable_as_domain_error("disposition record"):
            pipe = self._store.client.pipeline(transaction=False)
            for d in dispositions:
                pipe.hget(self._keys.disposition_call(d.call_uuid), "day")
            days = [raw.decode() if raw else None for raw in pipe.execute()]
        script = self._store.client.register_script(_LUA_RECORD)
        with unavailable_as_domain_error("disposition record"):
            pipe = self._store.client.pipeline(transaction=False)
            for d, stored in zip(dispositions, days, strict=True):
                day = stored or self.day_of(d.set_at)
                script(keys=self._call_keys(d.call_uuid, day), args=self._args(d, day), client=pipe)
            replies = pipe.execute()
        results: list[tuple[str, ...]] = []
        for d, reply in zip(dispositions, replies, strict=True):
            if reply[0] == -3:
                # Two of the batch were one call on two days: the first fixed it.
                results.append(self.record(d))
            else:
                results.append(self._recorded(d, reply))
        return results

    def _recorded(self, disposition: Disposition, reply: list[Any]) -> tuple[str, ...]:
        new = tuple(code.decode() for code in reply[1:])
        if new:
            log.info(
                "disposition.recorded",
                call=disposition.call_uuid,
                codes=list(new),
                set_by=disposition.set_by,
                agent=disposition.agent,
                queue=disposition.queue,
            )
        else:
            log.info(
                "disposition.already_set", call=disposition.call_uuid, codes=list(disposition.codes)
            )
        return new

    def codes_of(self, call_uuid: str) -> tuple[str, ...]:
        """Every code the call carries (for its JSON view), sorted by name."""
        with unavailable_as_domain_error("disposition codes"):
            fields = self._store.client.hkeys(self._keys.disposition_call(call_uuid))
        return tuple(sorted(f.decode()[2:] for f in fields if f.startswith(b"c:")))

    def entries(self, day: str, count: int = 1000) -> list[dict[str, Any]]:
        """The day's recordings, oldest first (at most ``count``), each with ``id``."""
        parse_day(day)
        with unavailable_as_domain_error("disposition entries"):
            raw = self._store.client.xrange(self._keys.disposition_stream(day), count=count)
        out = []
        for entry_id, fields in raw:
            try:
                entry = msgpack.unpackb(fields[b"d"], raw=False)
            except (KeyError, ValueError, msgpack.UnpackException):
                log.warning("disposition.bad_entry", day=day, id=entry_id.decode())
                continue
            # cmsgpack drops nil values and packs an empty map as an empty array.
            for name in ("agent", "queue", "number"):
                entry.setdefault(name, None)
            if not entry.get("details"):
                entry["details"] = {}
            entry["id"] = entry_id.decode()
            out.append(entry)
        return out

    # --- reports ----------------------------------------------------------------------------

    def report(
        self,
        from_day: str,
        to_day: str,
        by: str = "code",
        codes: CodeSet | None = None,
    ) -> Report:
        """Counts and shares of the codes over the days ``from_day``..``to_day`` inclusive,
        per code, per agent and code, per queue and code or per day and code. ``codes`` gives the
        labels and the order (codes no longer configured still appear, by name)."""
        if by not in GROUPINGS:
            raise BadReportRequest(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")
        first, last = parse_day(from_day), parse_day(to_day)
        if last < first:
            raise BadReportRequest(f"--to {to_day} is before --from {from_day}")
        span = (last - first).days + 1
        if span > MAX_REPORT_DAYS:
            raise BadReportRequest(f"at most {MAX_REPORT_DAYS} days per report, asked {span}")
        days = [(first + dt.timedelta(days=i)).isoformat() for i in range(span)]
        with unavailable_as_domain_error("disposition report"):
            pipe = self._store.client.pipeline(transaction=False)
            for day in days:
                pipe.hgetall(self._keys.disposition_counts(day))
            hashes = pipe.execute()
        totals: dict[tuple[str, str], int] = {}  # (group, code) -> count
        calls: dict[str, int] = {}  # group -> calls
        all_calls = 0
        for day, counters in zip(days, hashes, strict=True):
            for raw_field, raw_value in counters.items():
                parts = raw_field.decode("utf-8", "replace").split(_SEP)
                value = int(raw_value)
                kind = parts[0]
                if kind == "n":
                    all_calls += value
                    if by == "day":
                        calls[day] = calls.get(day, 0) + value
                    elif by == "code":
                        calls[""] = calls.get("", 0) + value
                elif kind == "c" and by in ("code", "day") and len(parts) == 2:
                    group = day if by == "day" else ""
                    totals[(group, parts[1])] = totals.get((group, parts[1]), 0) + value
                elif (kind, by) in (("a", "agent"), ("q", "queue")) and len(parts) == 2:
                    calls[parts[1]] = calls.get(parts[1], 0) + value
                elif (kind, by) in (("ac", "agent"), ("qc", "queue")) and len(parts) == 3:
                    key = (parts[1], parts[2])
                    totals[key] = totals.get(key, 0) + value
        order = {code.name: index for index, code in enumerate(codes or ())}

        def sort_key(item: tuple[tuple[str, str], int]) -> tuple[Any, ...]:
            (group, code), count = item
            return (group, -count, order.get(code, len(order)), code)

        rows = []
        for (group, code), count in sorted(totals.items(), key=sort_key):
            group_calls = calls.get(group, 0)
            rows.append(
                ReportRow(
                    group=group,
                    code=code,
                    label=codes.label(code) if codes else code,
                    count=count,
                    calls=group_calls,
                    share=count / group_calls if group_calls else 0.0,
                )
            )
        return Report(by, first.isoformat(), last.isoformat(), all_calls, tuple(rows))
