"""Operators' commands for R-DISPO: ``ccd dnc …``, ``ccd report dispositions``, ``ccd dispo set``.

Theory of operation
-------------------
Like :mod:`ccd.operations`: each command loads the configuration, connects to Redis, PINGs,
does one thing through :class:`ccd.dnc.DncList` / :class:`ccd.reports.ReportStore`, prints,
closes. Errors as ``ccd.cli`` defines them: an operator's mistake (bad number, unknown code,
bad day, unknown call) → one line on stderr naming the command, exit 2; Redis down →
``RedisUnavailable`` (``ccd.cli.main`` prints it, exit 1); another Redis error → one line,
exit 1. Never a traceback.

Settings are read from ``config.dispositions`` when the configuration has that section, else
the documented defaults here (:func:`settings_of`)::

    dispositions.codes           {name: {number, label, actions, dnc_days?, callback_delay?}}
                                 (default ccd.dispositions.DEFAULT_CODES)
    dispositions.dnc_days        180      period of a ``dnc`` action and of ``ccd dnc add``
    dispositions.callback_delay  86400    seconds before a ``callback`` action's call
    dispositions.webhook_url     None     where ``webhook`` actions POST
    dispositions.timezone        "UTC"    the centre's calendar days for reports
    dispositions.retention_days  400      days a day's dispositions are kept

``ccd dispo set`` records the codes (idempotent) against a call the daemon stored
(:meth:`ccd.calls.CallRepository.get`) as set by ``operator`` (or ``--by``). It does not run
the codes' actions: those belong to the daemon (the lead's call path); it prints what the
daemon will do for the new codes, and ``dnc`` codes are applied here too, since listing a
number must not wait for anyone.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from ccd.adapters.redis_store import RedisUnavailable, Store, connect_redis
from ccd.calls import CallRepository
from ccd.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ccd.config import Config, load_config
from ccd.dispositions import (
    DEFAULT_CALLBACK_DELAY,
    DEFAULT_CODES,
    DEFAULT_DNC_DAYS,
    AddToDnc,
    CodeSet,
    Disposition,
    DispositionError,
    DispositionSettings,
    Skipped,
    plan_actions,
)
from ccd.dnc import DncList
from ccd.logging import configure_logging
from ccd.numbers import InvalidNumber, try_normalize
from ccd.reports import (
    DEFAULT_RETENTION_DAYS,
    GROUPINGS,
    REPORT_FORMATS,
    BadReportRequest,
    ReportStore,
    format_report,
    zone,
)

__all__ = ["DispoConfig", "register", "settings_of"]

#: The CLI is an adapter: wall-clock time is fine here (tests replace this).
_now: Callable[[], float] = time.time

#: Longest ``ccd dnc add --days``: ten years; more is a typo (no period: ``--days 0``).
MAX_DNC_DAYS = 3660

Handler = Callable[[argparse.Namespace], int]


class _Refused(Exception):
    """The operator asked for something that cannot be done as asked (exit 2)."""


@dataclass(frozen=True, slots=True)
class DispoConfig:
    codes: CodeSet
    settings: DispositionSettings
    timezone: str
    retention_days: int
    time_scale: float


def settings_of(config: Config) -> DispoConfig:
    """The R-DISPO settings of ``config``: its ``dispositions`` section when it has one
    (attributes named as in the module doc), else the defaults."""
    section: Any = getattr(config, "dispositions", None)
    daemon: Any = getattr(config, "daemon", None)

    def value(name: str, default: Any) -> Any:
        found = getattr(section, name, None) if section is not None else None
        return default if found is None else found

    codes = value("codes", DEFAULT_CODES)
    if not isinstance(codes, CodeSet):
        codes = CodeSet.from_mapping(codes)
    return DispoConfig(
        codes=codes,
        settings=DispositionSettings(
            dnc_days=float(value("dnc_days", DEFAULT_DNC_DAYS)),
            callback_delay=float(value("callback_delay", DEFAULT_CALLBACK_DELAY)),
            webhook_url=value("webhook_url", None) or None,
        ),
        timezone=str(value("timezone", "UTC")),
        retention_days=int(value("retention_days", DEFAULT_RETENTION_DAYS)),
        time_scale=float(getattr(daemon, "time_scale", 1.0) or 1.0),
    )


# --- registration ----------------------------------------------------------------------------


def register(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``dnc``, ``report`` and ``dispo`` to the parser."""

    def leaf(
        parent: argparse._SubParsersAction,  # type: ignore[type-arg]
        name: str,
        func: Handler,
        help_text: str,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        add_config_arg(p)
        p.set_defaults(func=_guarded(func), op_prog=p.prog)
        return p

    dnc = subparsers.add_parser("dnc", help="the do-not-call list")
    dnc_sub = dnc.add_subparsers(dest="dnc_command", required=True, metavar="COMMAND")
    p = leaf(dnc_sub, "add", cmd_dnc_add, "put a number on the do-not-call list")
    p.add_argument("number")
    p.add_argument(
        "--days",
        metavar="N",
        help="days on the list (default: dispositions.dnc_days; 0: until removed)",
    )
    p.add_argument("--reason", default="", help="why (shown by list/check)")
    p = leaf(dnc_sub, "remove", cmd_dnc_remove, "take a number off the do-not-call list")
    p.add_argument("number")
    p = leaf(dnc_sub, "list", cmd_dnc_list, "every listed number with its time left")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = leaf(dnc_sub, "check", cmd_dnc_check, "is a number listed? (exit 0 listed, 3 not)")
    p.add_argument("number")
    p.add_argument("--json", action="store_true", help="print JSON")

    report = subparsers.add_parser("report", help="reports")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="COMMAND")
    p = leaf(report_sub, "dispositions", cmd_report_dispositions, "disposition counts and shares")
    p.add_argument("--from", dest="from_day", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="to_day", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--by", default="code", choices=GROUPINGS)
    p.add_argument("--format", dest="fmt", default="table", choices=REPORT_FORMATS)

    dispo = subparsers.add_parser("dispo", help="call dispositions")
    dispo_sub = dispo.add_subparsers(dest="dispo_command", required=True, metavar="COMMAND")
    p = leaf(dispo_sub, "set", cmd_dispo_set, "set codes (numbers or names) on a stored call")
    p.add_argument("call", metavar="CALL_UUID")
    p.add_argument("codes", nargs="+", metavar="CODE")
    p.add_argument("--by", default="operator", help="who sets them (default: operator)")


#: ``ccd dnc check`` answers "not listed" with this exit code (0 = listed), for scripts.
EXIT_NOT_LISTED = 3


def _guarded(func: Handler) -> Handler:
    """Operator mistakes → one line and exit 2; a Redis error → one line and exit 1."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (_Refused, InvalidNumber, DispositionError, BadReportRequest) as exc:
            print(f"{args.op_prog}: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except RedisUnavailable:
            raise  # ccd.cli.main: "Redis unavailable", exit 1
        except redis.exceptions.RedisError as exc:
            print(f"ccd: Redis error: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _one_line(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


class _Stderr:
    """sys.stderr looked up at each write (tests replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


@dataclass(frozen=True)
class _Session:
    config: Config
    dispo: DispoConfig
    store: Store
    dnc: DncList
    reports: ReportStore


@contextlib.contextmanager
def _session(args: argparse.Namespace) -> Iterator[_Session]:
    config = load_config(args.config)
    try:
        dispo = settings_of(config)
        tz = zone(dispo.timezone)
    except (TypeError, ValueError) as exc:
        raise _Refused(f"configuration: {exc}") from None
    configure_logging(config.log.format, "warning", stream=_Stderr())  # type: ignore[arg-type]
    client = connect_redis(config.redis.url, config.redis.socket_timeout)
    try:
        store = Store.create(client, config.redis.prefix)
        store.ping()
        yield _Session(
            config,
            dispo,
            store,
            DncList(store, time_scale=dispo.time_scale, clock=_now),
            ReportStore(store, tz=tz, retention_days=dispo.retention_days),
        )
    finally:
        client.close()


# --- ccd dnc ... ----------------------------------------------------------------------------


def _days(text: str | None, default: float) -> float | None:
    """``--days``: None → the default; ``0`` → no expiry (None)."""
    if text is None:
        return default
    try:
        days = float(text)
    except ValueError:
        raise _Refused(f"--days must be a number of days, got {text!r}"[:120]) from None
    if days != days or days < 0 or days > MAX_DNC_DAYS:
        raise _Refused(f"--days must be 0..{MAX_DNC_DAYS} (0: until removed), got {text}")
    return None if days == 0 else days


def _left(ttl_ms: int | None) -> str:
    if ttl_ms is None:
        return "forever"
    seconds = ttl_ms / 1000
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds:.0f}s"


def cmd_dnc_add(args: argparse.Namespace) -> int:
    with _session(args) as s:
        days = _days(args.days, s.dispo.settings.dnc_days)
        try:
            entry = s.dnc.add(
                args.number, None if days is None else days * 86400, args.reason, "operator"
            )
        except InvalidNumber:
            raise
        except ValueError as exc:
            raise _Refused(str(exc)) from None
        period = "until removed" if days is None else f"for {days:g} days"
        print(f"{entry.number} listed {period}")
    return EXIT_OK


def cmd_dnc_remove(args: argparse.Namespace) -> int:
    with _session(args) as s:
        number = s.dnc.normalize(args.number)
        if not s.dnc.remove(number):
            raise _Refused(f"{number} is not on the do-not-call list")
        print(f"{number} removed")
    return EXIT_OK


def cmd_dnc_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        entries = s.dnc.list()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not entries:
        print("(no listed numbers)")
        return EXIT_OK
    rows = [(e.number, _left(e.ttl_ms), _one_line(e.by), _one_line(e.reason)) for e in entries]
    headers = ("number", "left", "by", "reason")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def cmd_dnc_check(args: argparse.Namespace) -> int:
    with _session(args) as s:
        entry = s.dnc.get(args.number)  # InvalidNumber: refused; the check is strict here
        number = s.dnc.normalize(args.number)
    if args.json:
        print(json.dumps({"number": number, "listed": entry is not None,
                          "entry": entry.to_dict() if entry else None}))  # fmt: skip
    elif entry is None:
        print(f"{number} is not listed")
    else:
        reason = f" ({_one_line(entry.reason)})" if entry.reason else ""
        print(f"{number} is listed, {_left(entry.ttl_ms)} left{reason}")
    return EXIT_OK if entry is not None else EXIT_NOT_LISTED


# --- ccd report dispositions ---------------------------------------------------------------


def cmd_report_dispositions(args: argparse.Namespace) -> int:
    with _session(args) as s:
        started = time.monotonic()
        report = s.reports.report(args.from_day, args.to_day, args.by, s.dispo.codes)
        took = time.monotonic() - started
    sys.stdout.write(format_report(report, args.fmt))
    if args.fmt == "table":
        print(f"({len(report.rows)} rows in {took:.2f} s)")
    return EXIT_OK


# --- ccd dispo set ----------------------------------------------------------------------------


def cmd_dispo_set(args: argparse.Namespace) -> int:
    with _session(args) as s:
        codes = s.dispo.codes
        names = tuple(dict.fromkeys(codes.resolve(text).name for text in args.codes))
        try:
            record = CallRepository(s.store).get(args.call)
        except ValueError:
            raise _Refused(f"not a call uuid: {args.call!r}"[:120]) from None
        if record is None:
            raise _Refused(f"no stored call {args.call} (finished calls are kept 24 h)")
        number = try_normalize(record.caller_number)
        disposition = Disposition(
            record.uuid,
            names,
            args.by,
            _now(),
            agent=record.agent,
            queue=record.queue or None,
            number=number,
        )
        new = s.reports.record(disposition)
        carried = s.reports.codes_of(record.uuid)
        if not new:
            print(f"{record.uuid}: already set: {', '.join(names)}")
            return EXIT_OK
        actions = plan_actions(disposition, codes, s.dispo.settings, new=new, all_codes=carried)
        for action in actions:
            if isinstance(action, AddToDnc):
                s.dnc.add(action.number, action.ttl_seconds, action.reason, action.by)
    print(f"{record.uuid}: set {', '.join(new)} (the call carries {', '.join(carried)})")
    for action in actions:
        if isinstance(action, Skipped):
            print(f"  skipped {action.action} of {action.code}: {action.why}")
        elif isinstance(action, AddToDnc):
            print(f"  {action.number} put on the do-not-call list")
        else:
            print(f"  for the daemon: {type(action).__name__}")
    return EXIT_OK
