"""``ccd queue list``: the configured queues, their agents and waiting calls."""

from __future__ import annotations

import argparse
from typing import Any

from ccd.cli.common import (
    EXIT_OK,
    Session,
    clock,
    human_duration,
    leaf,
    longest_wait,
    print_json,
    print_table,
    session,
    tag_text,
    waiting_calls,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    queue = sub.add_parser("queue", help="inspect queues")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    leaf(queue_sub, "list", cmd_queue_list, "configured queues with waiting calls", json_flag=True)


def _queue_dict(s: Session, name: str, now: float) -> dict[str, Any]:
    q = s.config.queues[name]
    waiting = waiting_calls(s, name)
    longest = longest_wait(waiting, now)
    return {
        "name": name,
        "tags": list(q.tags),
        "ring_time": q.ring_time,
        "voicemail": q.voicemail,
        "on_exhausted": q.on_exhausted,
        "priority": q.priority,
        "agents_logged_in": len(s.agents.count_with(q.tags, logged_in=True)),
        "agents_available": len(s.agents.available_with(q.tags)),
        "waiting": len(waiting),
        "longest_wait": None if longest is None else round(max(0.0, longest), 3),
    }


def cmd_queue_list(args: argparse.Namespace) -> int:
    with session(args) as s:
        now = clock()
        queues = [_queue_dict(s, name, now) for name in s.config.queues]
    if args.json:
        print_json(queues)
        return EXIT_OK
    rows = [
        [
            q["name"],
            tag_text(q["tags"]),
            f"{q['ring_time']:g}s",
            q["voicemail"] or "",
            q["on_exhausted"],
            str(q["priority"]),
            str(q["agents_logged_in"]),
            str(q["agents_available"]),
            str(q["waiting"]),
            "" if q["longest_wait"] is None else human_duration(q["longest_wait"]),
        ]
        for q in queues
    ]
    headers = [
        "QUEUE",
        "TAGS",
        "RING",
        "VOICEMAIL",
        "EXHAUSTED",
        "PRIO",
        "AGENTS",
        "FREE",
        "WAITING",
        "LONGEST",
    ]
    print_table(headers, rows, "no queues configured")
    return EXIT_OK
