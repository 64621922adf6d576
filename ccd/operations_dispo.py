"""Operators' commands for R-DISPO: ``ccd dnc …``, ``ccd report dispositions``, ``ccd dispo set``.

Theory of operation
-------------------
Like :mod:`ccd.operations`: each command loads the configuration, connects to Redis, PINGs,
does one thing through :class:`ccd.store.dnc.DncList` / :class:`ccd.store.report.ReportStore`,
prints, closes. Errors as ``ccd.cli`` defines them: an operator's mistake (bad number, unknown code,
bad day, unknown call) → one line on stderr naming the command, exit 2; Redis down →
``RedisUnavailable`` (``ccd.cli.main`` prints it, exit 1); another Redis error → one line,
exit 1. Never a traceback.

Settings are the configuration's ``[dispositions]`` section
(:class:`ccd.config.DispositionsConfig`): codes, ``dnc_days`` (also the default of
``ccd dnc add``), ``timezone`` (report days), ``retention_days``, and what ``dispo set``
needs for the codes' actions.

``ccd dispo set CALL_OR_AGENT CODE…`` names a finished call by its uuid, or an agent: that
agent's most recent finished call. The codes (numbers or names) are recorded (idempotent) as
set by ``operator`` (or ``--by``) and their actions run exactly as the daemon runs them
(:class:`ccd.engine.disposition.DispositionService`): do-not-call, follow-up callback, final (open
callbacks cancelled), webhook (POSTed before the command ends, with the configured timeout and
retries). One line per action is printed.
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

import gevent
import redis

from ccd.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ccd.config import Config, DispositionsConfig, load_config
from ccd.core.disposition import DispositionError
from ccd.core.numbers import InvalidNumber
from ccd.core.report import GROUPINGS, REPORT_FORMATS, BadReportRequest, format_report, zone
from ccd.engine.disposition import DispositionService
from ccd.logging import configure_logging
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.dnc import DncList
from ccd.store.redis_store import RedisUnavailable, Store, connect_redis
from ccd.store.report import ReportStore

__all__ = ["register"]

#: The CLI is an adapter: wall-clock time is fine here (tests replace this).
_now: Callable[[], float] = time.time

#: Longest ``ccd dnc add --days``: ten years; more is a typo (no period: ``--days 0``).
MAX_DNC_DAYS = 3660

Handler = Callable[[argparse.Namespace], int]


class _Refused(Exception):
    """The operator asked for something that cannot be done as asked (exit 2)."""


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
    p = leaf(
        dispo_sub,
        "set",
        cmd_dispo_set,
        "set codes (numbers or names) on a finished call, or on an agent's most recent one",
    )
    p.add_argument("call", metavar="CALL_OR_AGENT")
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
    dispo: DispositionsConfig
    store: Store
    dnc: DncList
    reports: ReportStore


@contextlib.contextmanager
def _session(args: argparse.Namespace) -> Iterator[_Session]:
    config = load_config(args.config)
    dispo = config.dispositions
    configure_logging(config.log.format, "warning", stream=_Stderr())  # type: ignore[arg-type]
    client = connect_redis(config.redis.url, config.redis.socket_timeout)
    try:
        store = Store.create(client, config.redis.prefix)
        store.ping()
        yield _Session(
            config,
            dispo,
            store,
            DncList(store, time_scale=config.daemon.time_scale, clock=_now),
            ReportStore(store, tz=zone(dispo.timezone), retention_days=dispo.retention_days),
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
        days = _days(args.days, s.dispo.dnc_days)
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
        codes = [s.dispo.codes.resolve(text) for text in args.codes]
        names = tuple(dict.fromkeys(code.name for code in codes))
        webhook = _CliWebhook.create(s.dispo)
        dispositions = DispositionService(
            config=s.config,
            store=s.store,
            customers=CustomerStore(s.store),
            callbacks=CallbackStore(s.store),
            webhook=webhook,
            now=_now,
        )
        call_uuid, agent_id = _target(dispositions, args.call)
        try:
            applied = dispositions.set_codes(
                codes, set_by=args.by, now=_now(), call_uuid=call_uuid, agent_id=agent_id
            )
        except ValueError as exc:  # a --by that is not a name (DispositionError is one too)
            raise _Refused(str(exc)) from None
        finally:
            webhook_line = webhook.finish() if webhook is not None else None
    if not applied.new:
        print(f"{applied.call_uuid}: already set: {', '.join(names)}")
        return EXIT_OK
    print(
        f"{applied.call_uuid}: set {', '.join(applied.new)} "
        f"(the call carries {', '.join(applied.carried)})"
    )
    for line in applied.actions:
        print(f"  {line}")
    if webhook_line:
        print(f"  {webhook_line}")
    return EXIT_OK


def _target(dispositions: DispositionService, text: str) -> tuple[str | None, str | None]:
    """(call uuid, None) for a finished call, (None, agent id) for an agent's last call."""
    if dispositions.find_call(text) is not None:  # DispositionError: not a call uuid
        return text, None
    if dispositions.last_call(text) is not None:
        return None, text
    raise _Refused(
        f"no stored call {text} (finished calls are kept 24 h) and no agent {text} "
        "with a finished call"[:200]
    )


class _CliWebhook:
    """The daemon's webhook sender, waited for: the command ends after the POST (or its
    last retry), so an operator's code reaches the CRM like an agent's."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender
        self.queued = 0

    @classmethod
    def create(cls, dispo: DispositionsConfig) -> _CliWebhook | None:
        if not dispo.webhook_url:
            return None
        from ccd.adapters.webhook import WebhookSender

        sender = WebhookSender(dispo.webhook_url, dispo.webhook_timeout)
        sender.start()
        return cls(sender)

    def send(self, payload: dict[str, Any]) -> None:
        self.queued += 1
        self.sender.send(payload)

    def finish(self) -> str | None:
        sender = self.sender
        if not self.queued:
            sender.stop(0)
            return None
        attempts = sender.retries + 1
        limit = attempts * sender.timeout + sum(sender.backoff * 2**i for i in range(attempts)) + 1
        deadline = time.monotonic() + limit
        while sender.sent + sender.failed + sender.dropped < self.queued:
            if time.monotonic() > deadline:
                break
            gevent.sleep(0.05)
        sent = sender.sent
        sender.stop(0)
        return "webhook posted" if sent >= self.queued else "webhook NOT delivered (see the log)"
