"""Business hours (R-CALLBACK): when callbacks may be dialled. Pure: the time is an argument.

Business hours are wall-clock windows in the configured time zone (``zoneinfo``): "mon-fri
08:00-18:00" means 08:00 local time also on the days a DST change moves UTC by an hour. An
empty list of windows means always open. A window opening inside a DST gap opens at the
transition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "BusinessWindow",
    "OpeningHours",
    "in_business_hours",
    "next_opening",
    "parse_business_hours",
    "time_zone",
]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(
    r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)


@dataclass(frozen=True, slots=True)
class BusinessWindow:
    """Open on ``weekdays`` (0 = Monday) from ``start`` to ``end`` seconds after local
    midnight (``end`` may be 86400: "24:00")."""

    weekdays: frozenset[int]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.weekdays or not set(self.weekdays) <= set(range(7)):
            raise ValueError("weekdays must be a non-empty set of 0..6")
        if not 0 <= self.start < self.end <= 86400:
            raise ValueError("need 0 <= start < end <= 86400 seconds")


def _clock(text: str) -> int:
    hours, minutes = (int(p) for p in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes <= 59) or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day (00:00-24:00)")
    return hours * 3600 + minutes * 60


def _days(text: str) -> frozenset[int]:
    if text in ("daily", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if first not in _DAYS or (dash and last not in _DAYS):
            raise ValueError(f"{part!r}: days are mon tue wed thu fri sat sun, e.g. mon-fri")
        a = _DAYS.index(first)
        b = _DAYS.index(last) if dash else a
        if b < a:
            raise ValueError(f"{part!r}: a day range runs forward (mon-fri, not fri-mon)")
        days.update(range(a, b + 1))
    return frozenset(days)


class OpeningHours(Protocol):
    """The windows and their time zone (:class:`ccd.core.callback.CallbackRules` is one)."""

    @property
    def business_hours(self) -> tuple[BusinessWindow, ...]: ...
    @property
    def zone(self) -> ZoneInfo: ...


def parse_business_hours(entries: Iterable[str]) -> tuple[BusinessWindow, ...]:
    """``["mon-fri 08:00-18:00", "sat 09:00-13:00"]`` → windows; ValueError naming the entry.

    Days: ``mon``..``sun``, ranges ``mon-fri``, lists ``mon,wed``, or ``daily``. A window that
    would run past midnight is refused: write it as two windows.
    """
    if isinstance(entries, str):
        raise ValueError('business hours are a list of strings like "mon-fri 08:00-18:00"')
    windows = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f'expected a string like "mon-fri 08:00-18:00", got {entry!r}')
        match = _WINDOW_RE.match(entry.lower())
        if not match:
            raise ValueError(f'{entry!r}: expected "DAYS HH:MM-HH:MM", e.g. "mon-fri 08:00-18:00"')
        try:
            days = _days(match["days"])
            start, end = _clock(match["start"]), _clock(match["end"])
        except ValueError as exc:
            raise ValueError(f"{entry!r}: {exc}") from None
        if end <= start:
            raise ValueError(
                f"{entry!r}: the window ends before it starts; split a window over midnight "
                "into two"
            )
        windows.append(BusinessWindow(days, start, end))
    return tuple(windows)


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f'unknown time zone {name!r} (e.g. "Europe/Budapest")') from None


def _local_seconds(moment: datetime) -> float:
    return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6


def in_business_hours(now: float, rules: OpeningHours) -> bool:
    """Is ``now`` (epoch seconds) inside a window, by the wall clock of ``rules.timezone``?"""
    if not rules.business_hours:
        return True
    local = datetime.fromtimestamp(now, rules.zone)
    seconds = _local_seconds(local)
    weekday = local.weekday()
    return any(weekday in w.weekdays and w.start <= seconds < w.end for w in rules.business_hours)


def _epoch(day: date, seconds: int, zone: ZoneInfo, fold: int) -> float:
    naive = datetime.combine(day, dtime()) + timedelta(seconds=seconds)
    if seconds == 86400:  # "24:00": midnight of the next day
        naive = datetime.combine(day + timedelta(days=1), dtime())
    return naive.replace(tzinfo=zone, fold=fold).timestamp()


def _first_open_instant(day: date, window: BusinessWindow, rules: OpeningHours) -> float:
    """When ``window`` opens on ``day``. If its start falls into a DST gap (a local time that
    does not exist), the opening is the transition itself: found by bisection between the two
    readings of the missing time."""
    early = _epoch(day, window.start, rules.zone, fold=1)
    late = _epoch(day, window.start, rules.zone, fold=0)
    if early >= late:  # not a gap (ordinary time, or the repeated hour of autumn)
        return min(early, late)
    for _ in range(60):
        middle = (early + late) / 2
        if _local_seconds(datetime.fromtimestamp(middle, rules.zone)) >= window.start:
            late = middle
        else:
            early = middle
    return late


def next_opening(now: float, rules: OpeningHours) -> float:
    """``now`` when open, else the next instant the business hours open (epoch seconds)."""
    if in_business_hours(now, rules):
        return now
    today = datetime.fromtimestamp(now, rules.zone).date()
    best: float | None = None
    for offset in range(9):  # a week ahead, plus a day either side for DST and "24:00"
        day = today + timedelta(days=offset - 1)
        for window in rules.business_hours:
            if day.weekday() not in window.weekdays:
                continue
            opening = _first_open_instant(day, window, rules)
            if opening > now and (best is None or opening < best):
                best = opening
        if best is not None and offset >= 2:
            break
    if best is None:  # unreachable with validated windows; never hand back a past time
        raise ValueError("business hours have no opening")
    return best
