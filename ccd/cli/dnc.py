"""``ccd dnc add|remove|list|check``: the do-not-call list (R-DISPO) in Redis.

Entries expire by themselves (a Redis TTL); ``--days`` defaults to the configuration's
``disposition.dnc_days``. Errors as :mod:`ccd.cli.common` says: a bad number or ``--days``
is one line on stderr and exit 2; ``ccd dnc check`` answers "not listed" with exit 3.
"""

from __future__ import annotations

import argparse
import functools
import json

from ccd.cli.common import (
    DISPOSITION_ERRORS,
    EXIT_OK,
    Refused,
    Session,
    clock,
    leaf,
    printable_line,
    session,
)
from ccd.core.numbers import InvalidNumber
from ccd.store.dnc import DncEntry, DncList

#: Longest ``ccd dnc add --days``: ten years; more is a typo (no period: ``--days 0``).
MAX_DNC_DAYS = 3660


#: ``ccd dnc check`` answers "not listed" with this exit code (0 = listed), for scripts.
EXIT_NOT_LISTED = 3

_leaf = functools.partial(leaf, refusals=DISPOSITION_ERRORS, clean=printable_line)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dnc = sub.add_parser("dnc", help="the do-not-call list")
    dnc_sub = dnc.add_subparsers(dest="dnc_command", required=True, metavar="COMMAND")
    p = _leaf(dnc_sub, "add", cmd_dnc_add, "put a number on the do-not-call list")
    p.add_argument("number")
    p.add_argument(
        "--days",
        metavar="N",
        help="days on the list (default: disposition.dnc_days; 0: until removed)",
    )
    p.add_argument("--reason", default="", help="why (shown by list/check)")
    p = _leaf(dnc_sub, "remove", cmd_dnc_remove, "take a number off the do-not-call list")
    p.add_argument("number")
    p = _leaf(dnc_sub, "list", cmd_dnc_list, "every listed number with its time left")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = _leaf(dnc_sub, "check", cmd_dnc_check, "is a number listed? (exit 0 listed, 3 not)")
    p.add_argument("number")
    p.add_argument("--json", action="store_true", help="print JSON")


def _dnc(s: Session) -> DncList:
    return DncList(s.store, time_scale=s.config.daemon.time_scale, clock=clock)


def _days(text: str | None, default: float) -> float | None:
    """``--days``: None → the default; ``0`` → no expiry (None)."""
    if text is None:
        return default
    try:
        days = float(text)
    except ValueError:
        raise Refused(f"--days must be a number of days, got {text!r}"[:120]) from None
    if days != days or days < 0 or days > MAX_DNC_DAYS:
        raise Refused(f"--days must be 0..{MAX_DNC_DAYS} (0: until removed), got {text}")
    return None if days == 0 else days


def _left(entry: DncEntry, now: float) -> str:
    """The time left on the list, measured like every duration the commands show: the entry's
    end by the daemon's clock minus ``now`` (:func:`ccd.cli.common.clock`, read in the
    session: at a time scale the daemon's days, not the wall clock's); from the TTL when the
    end is unknown."""
    if entry.ttl_ms is None:
        return "forever"
    if entry.expires_at is not None:
        seconds = max(0.0, entry.expires_at - now)
    else:
        seconds = entry.ttl_ms / 1000
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds:.0f}s"


def cmd_dnc_add(args: argparse.Namespace) -> int:
    with session(args) as s:
        dnc = _dnc(s)
        days = _days(args.days, s.config.disposition.dnc_days)
        try:
            entry = dnc.add(
                args.number, None if days is None else days * 86400, args.reason, "operator"
            )
        except InvalidNumber:
            raise
        except ValueError as exc:
            raise Refused(str(exc)) from None
        period = "until removed" if days is None else f"for {days:g} days"
        print(f"{entry.number} listed {period}")
    return EXIT_OK


def cmd_dnc_remove(args: argparse.Namespace) -> int:
    with session(args) as s:
        dnc = _dnc(s)
        number = dnc.normalize(args.number)
        if not dnc.remove(number):
            raise Refused(f"{number} is not on the do-not-call list")
        print(f"{number} removed")
    return EXIT_OK


def cmd_dnc_list(args: argparse.Namespace) -> int:
    with session(args) as s:
        dnc = _dnc(s)
        entries = dnc.list()
        now = clock()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not entries:
        print("(no listed numbers)")
        return EXIT_OK
    rows = [
        (e.number, _left(e, now), printable_line(e.by), printable_line(e.reason)) for e in entries
    ]
    headers = ("number", "left", "by", "reason")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def cmd_dnc_check(args: argparse.Namespace) -> int:
    with session(args) as s:
        dnc = _dnc(s)
        entry = dnc.get(args.number)  # InvalidNumber: refused; the check is strict here
        number = dnc.normalize(args.number)
        now = clock()
    if args.json:
        print(json.dumps({"number": number, "listed": entry is not None,
                          "entry": entry.to_dict() if entry else None}))  # fmt: skip
    elif entry is None:
        print(f"{number} is not listed")
    else:
        reason = f" ({printable_line(entry.reason)})" if entry.reason else ""
        print(f"{number} is listed, {_left(entry, now)} left{reason}")
    return EXIT_OK if entry is not None else EXIT_NOT_LISTED
