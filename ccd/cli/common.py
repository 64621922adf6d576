"""What every ``ccd`` command shares: exit codes, the Redis session, the error guard, output.

Theory of operation
-------------------
Redis holds the truth about agents, waiting calls and customers; the daemon's memory is only a
cache and it reads Redis for every routing decision. So each command is a short session
against Redis (:func:`session`): load the configuration, connect, PING, do one thing through
the stores, print the result, close. Writes go through the same atomic Lua scripts the daemon
uses, so a command racing a live call is safe.

Errors (:func:`guarded`):

* the operator's mistake (unknown agent, bad id/extension/tag/number/code/day, a login change
  the presence table forbids, an unreadable CSV file) → one line on stderr naming the command,
  exit 2 (as :func:`ccd.cli.main.main` answers a usage error);
* Redis down or timing out → :class:`RedisUnavailable`, ``ccd: Redis unavailable: …``, exit 1;
  any other Redis error → one line, exit 1. Never a traceback.

Output is an aligned table for people, ``--json`` for machines. Text that came from callers
(names, numbers) is stripped of control characters before it reaches a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ccd.config import Config, load_config
from ccd.config.lookup import ConfigSource, find_config
from ccd.core.callback import CallbackError
from ccd.core.disposition import DispositionError
from ccd.core.numbers import InvalidNumber
from ccd.core.presence import IllegalTransition
from ccd.core.report import BadReportRequest
from ccd.logging import configure_logging
from ccd.store.agent import Agent, AgentError, AgentRepository
from ccd.store.call import CallRecord, CallRepository
from ccd.store.node import DaemonClock, daemon_clock, default_node_id
from ccd.store.redis_store import RedisUnavailable, Store, connect_redis

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: The CLI is an adapter: wall-clock time is fine here (tests replace this).
_now: Callable[[], float] = time.time
#: The daemon's clock when it runs at a time scale (set by :func:`session`, see :func:`clock`).
_daemon: DaemonClock | None = None

Handler = Callable[[argparse.Namespace], int]

#: The operator's mistakes each family of commands answers with one line and exit 2 (besides
#: :class:`Refused`): agents, queues, sticky bindings, customers and callbacks ...
OPERATOR_ERRORS: tuple[type[Exception], ...] = (AgentError, IllegalTransition, CallbackError)
#: ... and the do-not-call list and dispositions.
DISPOSITION_ERRORS: tuple[type[Exception], ...] = (
    InvalidNumber,
    DispositionError,
    BadReportRequest,
)


def clock() -> float:
    """The commands' clock: the wall clock (``_now`` looked up at each call: tests replace
    it), or, while a session talks to a daemon running at a ``daemon.time_scale`` other than
    1, that daemon's clock. Its stamps in Redis (since, entered, wrap-up until) are on its
    clock, which then runs ahead of the wall clock: measured against the wall clock every
    duration would be 0 and every wrap-up endless."""
    if _daemon is not None:
        return _daemon.at(_now())
    return _now()


class Refused(Exception):
    """The operator asked for something that cannot be done as asked (exit 2)."""


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="TOML configuration file (default: $CCD_CONFIG, else /etc/ccd/ccd.toml, "
        "else built-in defaults + environment)",
    )


def load_cli_config(args: argparse.Namespace) -> tuple[Config, ConfigSource]:
    """The configuration the daemon would read (ccd.config.lookup); a note on stderr when
    there is no file at all."""
    source = find_config(getattr(args, "config", None))
    if source.note:
        print(source.note, file=sys.stderr)
    return load_config(source.path), source


# --- registration ------------------------------------------------------------------------------


def leaf(
    parent: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    func: Handler,
    help_text: str,
    *,
    json_flag: bool = False,
    refusals: tuple[type[Exception], ...] = OPERATOR_ERRORS,
    clean: Callable[[str], str] | None = None,
) -> argparse.ArgumentParser:
    """A command: its parser (with ``--config``, and ``--json`` if asked) and guarded handler."""
    p = parent.add_parser(name, help=help_text, description=help_text)
    add_config_arg(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=guarded(func, refusals, clean or one_line), op_prog=p.prog)
    return p


def guarded(
    func: Handler, refusals: tuple[type[Exception], ...], clean: Callable[[str], str]
) -> Handler:
    """Operator mistakes → one line and exit 2; a Redis error → one line and exit 1."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (Refused, *refusals) as exc:
            print(f"{args.op_prog}: {clean(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except RedisUnavailable:
            raise  # ccd.cli.main.main: "Redis unavailable", exit 1
        except redis.exceptions.RedisError as exc:
            # redis-py's messages name host and port, never the password.
            print(f"ccd: Redis error: {clean(str(exc))}", file=sys.stderr)
            return EXIT_FAILURE

    return run


# --- the session ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    config: Config
    store: Store
    agents: AgentRepository
    calls: CallRepository


class _Stderr:
    """sys.stderr looked up at each write (it may be replaced after logging is configured)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


@contextlib.contextmanager
def session(args: argparse.Namespace) -> Iterator[Session]:
    config, _ = load_cli_config(args)
    # stdout is the command's answer (maybe JSON): log lines go to stderr, warnings only.
    configure_logging(config.log.format, "warning", stream=_Stderr())  # type: ignore[arg-type]
    client = connect_redis(config.redis.url, config.redis.socket_timeout)
    global _daemon
    try:
        store = Store.create(client, config.redis.prefix)
        store.ping()
        if config.daemon.time_scale != 1:
            # No daemon beating (stopped): the wall clock, the best there is.
            _daemon = daemon_clock(store, config.daemon.node_id or default_node_id())
        yield Session(config, store, AgentRepository(store), CallRepository(store))
    finally:
        _daemon = None
        client.close()


# --- views of records ---------------------------------------------------------------------


def agent_dict(agent: Agent, now: float, config: Config) -> dict[str, Any]:
    agent = agent.at(now)
    st = agent.state
    return {
        "id": agent.id,
        "extension": agent.extension,
        "tags": sorted(agent.tags),
        "login": str(st.login),
        "logout_pending": st.logout_pending,
        "registered": st.registered,
        "activity": str(st.activity),
        "since": st.since,
        "for_seconds": round(max(0.0, now - st.since), 3),
        "idle_since": st.idle_since,
        "wrapup_until": st.wrapup_until,
        "missed_offers": st.missed_offers,
        "call": agent.call,
        "offer_leg": st.offer_leg,
        "personal_calls": list(st.personal),
        "in_config": agent.id in config.agents,
    }


def call_dict(call: CallRecord, now: float) -> dict[str, Any]:
    customer = call.customer or {}
    return {
        "uuid": call.uuid,
        "queue": call.queue,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "customer": customer.get("name") or None,
        "vip": bool(customer.get("vip")),
        "priority": call.priority,
        "status": call.status,
        "agent": call.agent,
        "entered_at": call.entered_at,
        "waited": round(max(0.0, now - call.entered_at), 3),
        "bridged_at": call.bridged_at,
        "talking": None if call.bridged_at is None else round(max(0.0, now - call.bridged_at), 3),
    }


def waiting_calls(s: Session, queue: str) -> list[CallRecord]:
    """The queue's waiting calls in serving order (entries without a record are skipped)."""
    return s.calls.get_many(s.calls.waiting(queue))


def longest_wait(calls: Sequence[CallRecord], now: float) -> float | None:
    return max((now - c.entered_at for c in calls), default=None)


# --- rendering ---------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``3d04h``; negative (clock skew) shows as ``0s``."""
    total = int(max(0.0, seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def tag_text(tags: Iterable[str]) -> str:
    return ",".join(sorted(tags)) or "-"


def cell(value: object) -> str:
    """Text safe for a terminal: control and format characters (escape sequences) become '?'."""
    return "".join(
        "?" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(value)
    )


def one_line(text: str) -> str:
    return " ".join(cell(text.replace("\n", " ")).split())


def printable_line(text: str) -> str:
    """One line of printable text: anything else becomes a space (dnc, disposition)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
    if not rows:
        print(f"({empty})")
        return
    cells = [[cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_json(value: Any) -> None:
    # ensure_ascii: a caller's name cannot smuggle a terminal escape through the JSON either.
    print(json.dumps(value, indent=2, sort_keys=True))


def print_fields(lines: Sequence[tuple[str, str]]) -> None:
    """``key: value`` lines, the values aligned (``show`` commands)."""
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 1}} {cell(value)}")
