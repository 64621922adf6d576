"""``ccd callback list|show|cancel|retry``: callback requests (R-CALLBACK) in Redis."""

from __future__ import annotations

import argparse

from ccd.cli.common import (
    EXIT_OK,
    clock,
    human_duration,
    leaf,
    print_fields,
    print_json,
    print_table,
    session,
)
from ccd.core.callback import CallbackRequest, Status
from ccd.store.callback import CallbackStore


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    callback = sub.add_parser("callback", help="callback requests")
    callback_sub = callback.add_subparsers(
        dest="callback_command", required=True, metavar="COMMAND"
    )
    p = leaf(callback_sub, "list", cmd_callback_list, "list callback requests", json_flag=True)
    p.add_argument(
        "--status",
        choices=[str(s) for s in Status],
        metavar="S",
        help=f"only requests in this status: {', '.join(str(s) for s in Status)}",
    )
    p = leaf(callback_sub, "show", cmd_callback_show, "show one request", json_flag=True)
    p.add_argument("id")
    p = leaf(callback_sub, "cancel", cmd_callback_cancel, "cancel a request (it is kept)")
    p.add_argument("id")
    p = leaf(
        callback_sub,
        "retry",
        cmd_callback_retry,
        "dial an unreached, declined or cancelled request again, with fresh attempts",
    )
    p.add_argument("id")


def _callback_row(req: CallbackRequest, now: float) -> list[str]:
    due = ""
    if req.next_due_at is not None:
        wait = req.next_due_at - now
        due = "now" if wait <= 0 else "in " + human_duration(wait)
    last = req.attempts[-1] if req.attempts else None
    return [
        req.id,
        str(req.status),
        req.number,
        req.queue,
        str(req.strategy),
        str(req.reason),
        human_duration(now - req.created_at) + " ago",
        str(len(req.attempts)),
        "" if last is None else str(last.outcome),
        due,
    ]


def cmd_callback_list(args: argparse.Namespace) -> int:
    with session(args) as s:
        requests = CallbackStore(s.store).list(args.status)
        now = clock()
    if args.json:
        print_json([r.to_dict() for r in requests])
        return EXIT_OK
    print_table(
        [
            "ID",
            "STATUS",
            "NUMBER",
            "QUEUE",
            "STRATEGY",
            "MARK",
            "CREATED",
            "ATTEMPTS",
            "LAST",
            "DUE",
        ],
        [_callback_row(r, now) for r in requests],
        "no callback requests" + (f" {args.status}" if args.status else ""),
    )
    return EXIT_OK


def cmd_callback_show(args: argparse.Namespace) -> int:
    with session(args) as s:
        store = CallbackStore(s.store)
        req = store.require(args.id)
        owner = store.lease_owner(req.id)
        now = clock()
    if args.json:
        print_json({**req.to_dict(), "lease_owner": owner})
        return EXIT_OK
    row = _callback_row(req, now)
    lines = [
        ("callback", req.id),
        ("status", row[1] + (f" (worked by {owner})" if owner else "")),
        ("number", req.number),
        ("calling number", req.caller_number or "-"),
        ("queue", f"{req.queue} ({req.strategy})"),
        (
            "mark",
            str(req.reason) + (f" (closed: {req.closed_reason})" if req.closed_reason else ""),
        ),
        ("created", row[6]),
        ("original call", req.caller_uuid),
        ("next due", row[9] or "-"),
    ]
    for n, attempt in enumerate(req.attempts, 1):
        detail = " ".join(p for p in (attempt.agent or "", attempt.detail) if p)
        lines.append(
            (
                f"attempt {n}",
                f"{human_duration(now - attempt.at)} ago: {attempt.outcome}"
                + (f" ({detail})" if detail else ""),
            )
        )
    print_fields(lines)
    return EXIT_OK


def cmd_callback_cancel(args: argparse.Namespace) -> int:
    with session(args) as s:
        req = CallbackStore(s.store).cancel(args.id, clock())
    print(f"callback {req.id} cancelled ({req.number}, {len(req.attempts)} attempt(s) kept)")
    return EXIT_OK


def cmd_callback_retry(args: argparse.Namespace) -> int:
    with session(args) as s:
        req = CallbackStore(s.store).retry(args.id, clock())
    print(f"callback {req.id} pending again: {req.number} is due now")
    return EXIT_OK
