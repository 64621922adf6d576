"""``ccd status``: waiting calls in serving order, agents, bridged calls."""

from __future__ import annotations

import argparse
from typing import Any

from ccd.cli.common import (
    EXIT_OK,
    agent_dict,
    call_dict,
    clock,
    human_duration,
    leaf,
    longest_wait,
    print_json,
    print_table,
    session,
    waiting_calls,
)
from ccd.config import NAME_RE
from ccd.store.call import CallRecord


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    leaf(sub, "status", cmd_status, "waiting calls, agents and bridged calls now", json_flag=True)


def _is_bridged(call: CallRecord) -> bool:
    return call.ended_at is None and (call.status == "bridged" or call.bridged_at is not None)


def cmd_status(args: argparse.Namespace) -> int:
    with session(args) as s:
        now = clock()
        live = s.calls.get_many(s.calls.live())
        # Configured queues first, then any queue a live call names that the config lost.
        names = list(s.config.queues)
        names += sorted(
            {
                c.queue
                for c in live
                if c.queue not in s.config.queues and NAME_RE.match(c.queue or "")
            }
        )
        queues = []
        for name in names:
            waiting = waiting_calls(s, name)
            longest = longest_wait(waiting, now)
            queues.append(
                {
                    "name": name,
                    "configured": name in s.config.queues,
                    "waiting": len(waiting),
                    "longest_wait": None if longest is None else round(max(0.0, longest), 3),
                    "calls": [call_dict(c, now) for c in waiting],
                }
            )
        agents = [agent_dict(a, now, s.config) for a in s.agents.all()]
        bridged = [call_dict(c, now) for c in live if _is_bridged(c)]
        bridged.sort(key=lambda c: c["bridged_at"] or 0.0)
    if args.json:
        print_json({"at": now, "queues": queues, "agents": agents, "bridged": bridged})
        return EXIT_OK

    print("QUEUES")
    print_table(
        ["QUEUE", "WAITING", "LONGEST"],
        [
            [
                q["name"] + ("" if q["configured"] else " (not configured)"),
                str(q["waiting"]),
                "" if q["longest_wait"] is None else human_duration(q["longest_wait"]),
            ]
            for q in queues
        ],
        "no queues",
    )
    print()
    print("WAITING CALLS")
    print_table(
        ["QUEUE", "#", "CALLER", "NAME", "WAITED", "STATE", "AGENT", "PRIO", "CALL"],
        [
            [
                q["name"],
                str(position),
                c["caller_number"],
                _caller_name(c),
                human_duration(c["waited"]),
                c["status"],
                c["agent"] or "",
                str(c["priority"]) + (" vip" if c["vip"] else ""),
                c["uuid"],
            ]
            for q in queues
            for position, c in enumerate(q["calls"], 1)
        ],
        "no calls waiting",
    )
    print()
    print("AGENTS")
    print_table(
        ["AGENT", "EXT", "LOGIN", "PHONE", "ACTIVITY", "FOR", "CALL"],
        [
            [
                a["id"],
                a["extension"],
                a["login"] + (" (logout pending)" if a["logout_pending"] else ""),
                "registered" if a["registered"] else "unregistered",
                a["activity"],
                human_duration(a["for_seconds"]),
                a["call"] or "",
            ]
            for a in agents
        ],
        "no agents",
    )
    print()
    print("BRIDGED CALLS")
    print_table(
        ["QUEUE", "CALLER", "NAME", "AGENT", "TALKING", "CALL"],
        [
            [
                c["queue"],
                c["caller_number"],
                _caller_name(c),
                c["agent"] or "",
                "" if c["talking"] is None else human_duration(c["talking"]),
                c["uuid"],
            ]
            for c in bridged
        ],
        "no calls bridged",
    )
    return EXIT_OK


def _caller_name(call: dict[str, Any]) -> str:
    return call["customer"] or call["caller_name"] or ""
