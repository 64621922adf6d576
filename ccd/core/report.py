"""Disposition reports (R-DISPO): the rows, the days, the output formats. No I/O.

:class:`ccd.store.report.ReportStore` reads the counters into a :class:`Report`;
:func:`format_report` prints it for ``ccd disposition report``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "GROUPINGS",
    "MAX_REPORT_DAYS",
    "REPORT_FORMATS",
    "BadReportRequest",
    "Report",
    "ReportRow",
    "format_report",
    "parse_day",
    "zone",
]

#: The longest range one report covers (~10 years): beyond that the request is a typo.
MAX_REPORT_DAYS = 3660
GROUPINGS = ("code", "agent", "queue", "day")
REPORT_FORMATS = ("table", "csv", "json")


class BadReportRequest(ValueError):
    """A report asked for with bad dates, grouping or format (the message is one line)."""


def zone(name: str) -> dt.tzinfo:
    """The time zone ``name`` (``UTC``, ``Europe/Budapest``); ValueError when unknown."""
    if name.upper() == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_day(text: str) -> dt.date:
    """``YYYY-MM-DD`` as a date; :class:`BadReportRequest` otherwise."""
    if not isinstance(text, str) or len(text) != 10 or not text.isascii():
        raise BadReportRequest(f"not a day (YYYY-MM-DD): {text!r}"[:80])
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadReportRequest(f"not a day (YYYY-MM-DD): {text!r}") from None


@dataclass(frozen=True, slots=True)
class ReportRow:
    """``count`` calls of ``group`` carried ``code``; ``calls``: the group's calls with any
    code; ``share`` = count / calls. ``group`` is "" for ``by="code"``."""

    group: str
    code: str
    label: str
    count: int
    calls: int
    share: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "code": self.code,
            "label": self.label,
            "count": self.count,
            "calls": self.calls,
            "share": self.share,
        }


@dataclass(frozen=True, slots=True)
class Report:
    by: str
    from_day: str
    to_day: str
    calls: int
    rows: tuple[ReportRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "from": self.from_day,
            "to": self.to_day,
            "calls": self.calls,
            "rows": [row.to_dict() for row in self.rows],
        }


# --- output ---------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """No control characters reach a terminal or a CSV cell."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def format_report(report: Report, fmt: str = "table") -> str:
    """The report as an aligned ``table``, ``csv`` (with a header) or ``json``."""
    if fmt not in REPORT_FORMATS:
        raise BadReportRequest(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    header = [report.by] if report.by != "code" else []
    header += ["code", "label", "count", "calls", "share"]
    lines: list[list[str]] = []
    for row in report.rows:
        cells = [_clean(row.group)] if report.by != "code" else []
        cells += [_clean(row.code), _clean(row.label), str(row.count), str(row.calls)]
        cells.append(f"{row.share:.4f}" if fmt == "csv" else f"{row.share * 100:.1f}%")
        lines.append(cells)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        return buffer.getvalue()
    widths = [max([len(h), *(len(r[i]) for r in lines)]) for i, h in enumerate(header)]
    numeric = {"count", "calls", "share"}

    def line(cells: Iterable[str]) -> str:
        return "  ".join(
            c.rjust(w) if h in numeric else c.ljust(w)
            for c, w, h in zip(cells, widths, header, strict=True)
        ).rstrip()

    out = [
        f"dispositions {report.from_day} .. {report.to_day}: {report.calls} calls with a code",
        line(header),
        *(line(cells) for cells in lines),
    ]
    return "\n".join(out) + "\n"
