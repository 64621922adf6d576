"""``ccd status``: waiting calls in serving order, agents, bridged calls; ``--watch``: a view
refreshed in place from the live statistics (queues with today's figures, waiting callers with
their wait, agents), readable at 80 columns, plain ANSI (no curses); Ctrl-C quits with 0."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ccd.cli.common import (
    EXIT_OK,
    agent_dict,
    call_dict,
    cell,
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
from ccd.config.rules import stats_rules_from_config
from ccd.store.call import CallRecord
from ccd.store.redis_store import RedisUnavailable
from ccd.store.stats import StatsStore

#: Waiting callers read per queue, and agents listed at most, in the watch view.
WATCH_CALLERS = 10
WATCH_AGENTS = 200
#: The watch view's pause between frames (tests replace it).
_sleep: Callable[[float], None] = time.sleep


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.2 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"--interval must be 0.2..3600 seconds, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = leaf(
        sub, "status", cmd_status, "waiting calls, agents and bridged calls now", json_flag=True
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="refresh in place until Ctrl-C: queues with today's figures, callers, agents "
        "(with --json: one /stats document a line)",
    )
    p.add_argument(
        "--interval", type=_interval, default=2.0, help="seconds between refreshes (default 2)"
    )
    p.add_argument("--count", type=int, default=0, help="with --watch: stop after N frames")


def _is_bridged(call: CallRecord) -> bool:
    return call.ended_at is None and (call.status == "bridged" or call.bridged_at is not None)


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        try:
            return _watch(args)
        except KeyboardInterrupt:
            return EXIT_OK
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


# --- the watch view ---------------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty() and not args.json
    with session(args) as s:
        stats = StatsStore(s.store, stats_rules_from_config(s.config))
        queues = list(s.config.queues)
        if tty:
            sys.stdout.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
        frames = 0
        try:
            while True:
                now = clock()
                try:
                    doc = _watch_data(s, stats, queues, now)
                except RedisUnavailable as exc:
                    doc = {"at": now, "error": f"Redis unavailable: {exc}"[:200]}
                if args.json:
                    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
                else:
                    size = shutil.get_terminal_size((80, 24))
                    lines = render_frame(
                        doc, width=size.columns, height=size.lines if tty else None,
                        interval=args.interval,
                    )  # fmt: skip
                    if tty:
                        sys.stdout.write("\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")
                    else:
                        sys.stdout.write("\n".join(lines) + "\n\n")
                sys.stdout.flush()
                frames += 1
                if args.count and frames >= args.count:
                    break
                _sleep(args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            if tty:
                sys.stdout.write("\x1b[?25h\x1b[?1049l")
                sys.stdout.flush()
    return EXIT_OK


def _watch_data(s: Any, stats: StatsStore, queues: Sequence[str], now: float) -> dict[str, Any]:
    """The /stats document plus the waiting callers' numbers and the agents (when few)."""
    ids = s.agents.ids()
    doc = stats.read(
        queues, now, callers=WATCH_CALLERS, agents=ids if len(ids) <= WATCH_AGENTS else None
    )
    uuids = [c["call"] for q in doc["queues"] for c in q["callers"]]
    numbers = {c.uuid: c.caller_number for c in s.calls.get_many(uuids)}
    for q in doc["queues"]:
        for c in q["callers"]:
            c["number"] = numbers.get(c["call"], "")
    doc["agents_listed"] = len(ids) <= WATCH_AGENTS
    return doc


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def _secs(seconds: float | None) -> str:
    return "-" if seconds is None else human_duration(seconds)


def _agents_line(agents: Mapping[str, int]) -> tuple[int, int, int, int]:
    busy = agents.get("ringing", 0) + agents.get("oncall", 0) + agents.get("wrapup", 0)
    off = agents.get("logged_out", 0) + agents.get("unregistered", 0)
    return agents.get("free", 0), busy, agents.get("break", 0), off


def render_frame(
    doc: Mapping[str, Any],
    *,
    width: int = 80,
    height: int | None = None,
    interval: float | None = None,
) -> list[str]:
    """One frame of ``ccd status --watch`` from a /stats document (with the callers' numbers
    and the agents): lines no wider than ``width``, no more than ``height`` (None: all)."""
    at = float(doc.get("at", 0.0))
    clock_text = dt.datetime.fromtimestamp(at).strftime("%H:%M:%S")
    every = "" if interval is None else f"  every {interval:g}s"
    lines = [f"ccd status {clock_text}{every}  Ctrl-C quits"]
    if "error" in doc:
        return [cell(line)[:width] for line in [*lines, "", str(doc["error"])]]
    lines.append("")
    window = str(min(doc.get("windows") or [15]))
    lines.append(
        f"{'QUEUE':<10} {'WAIT':>4} {'LONGEST':>7} {'SL':>4} {'SL+AB':>5} {'SL' + window:>4} "
        f"{'ANS/OFF':>9} {'ABAND':>5} {'ASA':>5} {'FREE':>4} {'BUSY':>4} {'BRK':>3} {'OFF':>3}"
    )
    for q in doc.get("queues", []):
        today = q["today"]
        recent = q.get("windows", {}).get(window, {})
        free, busy, brk, off = _agents_line(q["agents"])
        lines.append(
            f"{q['queue'][:10]:<10} {q['waiting']:>4} {_secs(q['longest_wait']):>7} "
            f"{_pct(today['service_level']):>4} {_pct(today['service_level_abandoned']):>5} "
            f"{_pct(recent.get('service_level')):>4} "
            f"{str(today['answered']) + '/' + str(today['offered']):>9} "
            f"{today['abandoned']:>5} {_secs(today['asa']):>5} "
            f"{free:>4} {busy:>4} {brk:>3} {off:>3}"
        )
    lines.append(f"SL{window}: the last {window} minutes; the other figures: today")
    lines.append("SL = within T / answered; SL+AB = within T / (answered + long abandons)")
    lines += [
        "",
        "WAITING CALLERS",
        f"{'QUEUE':<10} {'#':>3}  {'CALLER':<18} {'WAITED':>7} {'PRIO':>4}",
    ]
    callers = [
        (q["queue"], n, c) for q in doc.get("queues", []) for n, c in enumerate(q["callers"], 1)
    ]
    for queue, n, c in callers:
        lines.append(
            f"{queue[:10]:<10} {n:>3}  {(c.get('number') or '')[:18]:<18} "
            f"{human_duration(c['waited']):>7} {c['priority']:>4}"
        )
    if not callers:
        lines.append("(no calls waiting)")
    lines += ["", "AGENTS", f"{'AGENT':<16} {'STATUS':<12} {'FOR':>7} {'OCC':>5} {'ANSWERED':>8}"]
    agents = doc.get("agents")
    if agents is None:
        totals = doc.get("totals", {}).get("agents", {})
        lines.append("  ".join(f"{k} {v}" for k, v in totals.items() if v) or "(no agents)")
        lines.append(f"(more than {WATCH_AGENTS} agents: counts only)")
    for a in agents or []:
        since = a.get("since")
        lines.append(
            f"{a['agent'][:16]:<16} {(a['status'] or '-'):<12} "
            f"{(human_duration(at - since) if since else '-'):>7} "
            f"{_pct(a['occupancy']):>5} {a['answered']:>8}"
        )
    if agents == []:
        lines.append("(no agents)")
    if height is not None and len(lines) > height - 1:
        hidden = len(lines) - (height - 2)
        lines = [*lines[: height - 2], f"... {hidden} more lines (a taller terminal shows them)"]
    return [cell(line)[:width] for line in lines]
