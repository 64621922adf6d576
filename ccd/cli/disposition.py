"""``ccd disposition set|report``: codes on finished calls, and reports of them (R-DISPO).

Settings are the configuration's ``[disposition]`` section
(:class:`ccd.config.sections.DispositionConfig`): codes, ``timezone`` (report days),
``retention_days``, and what ``disposition set`` needs for the codes' actions.

``ccd disposition set CALL_OR_AGENT CODE…`` names a finished call by its uuid, or an agent:
that agent's most recent finished call. The codes (numbers or names) are recorded
(idempotent) as set by ``operator`` (or ``--by``) and their actions run exactly as the
daemon runs them (:class:`ccd.engine.disposition.DispositionService`): do-not-call,
follow-up callback, final (open callbacks cancelled), webhook (POSTed before the command
ends, with the configured timeout and retries). One line per action is printed.

``ccd disposition report --from DAY --to DAY`` reads the daily counters
(:class:`ccd.store.report.ReportStore`) by code, agent, queue or day.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any

import gevent

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
from ccd.config.sections import DispositionConfig
from ccd.core.report import GROUPINGS, REPORT_FORMATS, format_report, zone
from ccd.engine.disposition import DispositionService
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.report import ReportStore

_leaf = functools.partial(leaf, refusals=DISPOSITION_ERRORS, clean=printable_line)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    disposition = sub.add_parser("disposition", help="call dispositions: codes and reports")
    disposition_sub = disposition.add_subparsers(
        dest="disposition_command", required=True, metavar="COMMAND"
    )
    p = _leaf(
        disposition_sub,
        "set",
        cmd_disposition_set,
        "set codes (numbers or names) on a finished call, or on an agent's most recent one",
    )
    p.add_argument("call", metavar="CALL_OR_AGENT")
    p.add_argument("codes", nargs="+", metavar="CODE")
    p.add_argument("--by", default="operator", help="who sets them (default: operator)")
    p = _leaf(disposition_sub, "report", cmd_disposition_report, "disposition counts and shares")
    p.add_argument("--from", dest="from_day", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="to_day", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--by", default="code", choices=GROUPINGS)
    p.add_argument("--format", dest="fmt", default="table", choices=REPORT_FORMATS)


def _reports(s: Session) -> ReportStore:
    section = s.config.disposition
    return ReportStore(s.store, tz=zone(section.timezone), retention_days=section.retention_days)


def cmd_disposition_report(args: argparse.Namespace) -> int:
    with session(args) as s:
        started = time.monotonic()
        report = _reports(s).report(args.from_day, args.to_day, args.by, s.config.disposition.codes)
        took = time.monotonic() - started
    sys.stdout.write(format_report(report, args.fmt))
    if args.fmt == "table":
        print(f"({len(report.rows)} rows in {took:.2f} s)")
    return EXIT_OK


def cmd_disposition_set(args: argparse.Namespace) -> int:
    with session(args) as s:
        codes = [s.config.disposition.codes.resolve(text) for text in args.codes]
        names = tuple(dict.fromkeys(code.name for code in codes))
        webhook = _CliWebhook.create(s.config.disposition)
        dispositions = DispositionService(
            config=s.config,
            store=s.store,
            customers=CustomerStore(s.store),
            callbacks=CallbackStore(s.store),
            webhook=webhook,
            now=clock,
        )
        call_uuid, agent_id = _target(dispositions, args.call)
        try:
            applied = dispositions.set_codes(
                codes, set_by=args.by, now=clock(), call_uuid=call_uuid, agent_id=agent_id
            )
        except ValueError as exc:  # a --by that is not a name (DispositionError is one too)
            raise Refused(str(exc)) from None
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
    raise Refused(
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
    def create(cls, section: DispositionConfig) -> _CliWebhook | None:
        if not section.webhook_url:
            return None
        from ccd.adapters.webhook import WebhookSender

        sender = WebhookSender(section.webhook_url, section.webhook_timeout)
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
