"""The operators' commands: ``ccd agent …``, ``ccd queue list``, ``ccd status``, ``ccd customers``,
``ccd sticky …``, ``ccd callbacks …``.

Theory of operation
-------------------
Redis holds the truth about agents, waiting calls and customers; the daemon's memory is only a
cache and it reads Redis for every routing decision. So each command here is a short session
against Redis: load the configuration, connect, PING, do one thing through the repositories
(:class:`ccd.store.agent.AgentRepository`, :class:`ccd.store.call.CallRepository`,
:class:`ccd.store.customer.CustomerStore`, :class:`ccd.store.sticky.StickyStore`), print the result,
close. Writes go through the same
atomic Lua scripts the daemon uses, so a command racing a live call is safe; a login change is
the pure :func:`ccd.core.presence.set_login` applied by compare-and-set.

Errors, as ``ccd.cli`` defines them:

* the operator's mistake (unknown agent, bad id/extension/tag, duplicate extension, a login
  change the presence table forbids, an unreadable CSV file) → one line on stderr naming the
  command, exit 2 (as ``ccd.cli`` answers a usage error);
* Redis down or timing out → :class:`RedisUnavailable`, ``ccd: Redis unavailable: …``, exit 1;
  any other Redis error → one line, exit 1. Never a traceback.

Output is an aligned table for people, ``--json`` for machines. Text that came from callers
(names, numbers) is stripped of control characters before it reaches a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ccd.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ccd.config import NAME_RE, Config, load_config
from ccd.core.callback import CallbackError, CallbackRequest, Status
from ccd.core.numbers import InvalidNumber
from ccd.core.presence import Activity, IllegalTransition, Login, set_login
from ccd.core.sticky import Binding, StickySetting, StickyType
from ccd.logging import configure_logging
from ccd.store.agent import (
    Agent,
    AgentError,
    AgentRepository,
    UnknownAgent,
    check_extension,
    check_tags,
)
from ccd.store.call import CallRecord, CallRepository
from ccd.store.callback import CallbackStore
from ccd.store.redis_store import RedisUnavailable, Store, connect_redis
from ccd.store.sticky import StickyStore

__all__ = ["LOGIN_ACTIONS", "STICKY_CHOICES", "human_duration", "register"]

#: The login changes an operator may ask for (the presence table decides which are legal).
LOGIN_ACTIONS = ("login", "logout", "break", "ready")

#: ``ccd agent sticky ID TYPE``: a type, or ``config`` to drop the run-time override.
STICKY_CHOICES = (*(str(t) for t in StickyType), "config")

#: The CLI is an adapter: wall-clock time is fine here (tests replace this).
_now: Callable[[], float] = time.time

Handler = Callable[[argparse.Namespace], int]


class _Refused(Exception):
    """The operator asked for something that cannot be done as asked (exit 2)."""


# --- registration ----------------------------------------------------------------------------


def register(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``agent``, ``queue``, ``status``, ``customers`` and ``sticky`` to the parser."""

    def leaf(
        parent: argparse._SubParsersAction,  # type: ignore[type-arg]
        name: str,
        func: Handler,
        help_text: str,
        *,
        json_flag: bool = False,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        add_config_arg(p)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(func=_guarded(func), op_prog=p.prog)
        return p

    # ccd agent ...
    agent = subparsers.add_parser("agent", help="add, change and inspect agents")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")
    p = leaf(agent_sub, "add", cmd_agent_add, "add an agent (logged out)")
    p.add_argument("id", help="agent id: 1-32 of a-z 0-9 _ -")
    p.add_argument("--ext", required=True, help="the desk phone's extension (digits)")
    p.add_argument("--tags", default="", help="comma-separated tags, e.g. sales,lang_hu")
    p = leaf(agent_sub, "remove", cmd_agent_remove, "remove an agent")
    p.add_argument("id")
    p.add_argument(
        "--force", action="store_true", help="remove even while the agent is ringing or on a call"
    )
    p = leaf(agent_sub, "tags", cmd_agent_tags, "replace, add or remove an agent's tags")
    p.add_argument("id")
    p.add_argument("tags", nargs="*", metavar="TAG", help="the new tags (replace all)")
    p.add_argument("--add", nargs="+", default=[], metavar="TAG", help="tags to add")
    p.add_argument("--remove", nargs="+", default=[], metavar="TAG", help="tags to remove")
    for action in LOGIN_ACTIONS:
        p = leaf(agent_sub, action, cmd_agent_login, f"{action}: change the agent's login state")
        p.add_argument("id")
        p.set_defaults(action=action)
    leaf(agent_sub, "list", cmd_agent_list, "list agents with their state", json_flag=True)
    p = leaf(agent_sub, "show", cmd_agent_show, "show one agent", json_flag=True)
    p.add_argument("id")
    leaf(agent_sub, "sync", cmd_agent_sync, "create the config file's agents missing in Redis")
    p = leaf(
        agent_sub,
        "sticky",
        cmd_agent_sticky,
        "show or set an agent's direct callback type at run time",
    )
    p.add_argument("id")
    p.add_argument(
        "type",
        nargs="?",
        choices=STICKY_CHOICES,
        metavar="TYPE",
        help=f"one of {', '.join(STICKY_CHOICES)} (config: back to the config file); "
        "none: show the setting",
    )
    p.add_argument(
        "--expiry", metavar="S", help="binding expiry in seconds (default: the configured one)"
    )

    # ccd sticky ...
    sticky = subparsers.add_parser("sticky", help="direct callback bindings (number -> agent)")
    sticky_sub = sticky.add_subparsers(dest="sticky_command", required=True, metavar="COMMAND")
    p = leaf(sticky_sub, "list", cmd_sticky_list, "list live bindings", json_flag=True)
    p.add_argument("--agent", metavar="A", help="only the bindings of this agent")
    p = leaf(sticky_sub, "show", cmd_sticky_show, "show the binding of a number", json_flag=True)
    p.add_argument("number")
    p = leaf(sticky_sub, "delete", cmd_sticky_delete, "delete the binding of a number")
    p.add_argument("number")

    # ccd queue list
    queue = subparsers.add_parser("queue", help="inspect queues")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    leaf(queue_sub, "list", cmd_queue_list, "configured queues with waiting calls", json_flag=True)

    # ccd status
    leaf(
        subparsers,
        "status",
        cmd_status,
        "waiting calls, agents and bridged calls now",
        json_flag=True,
    )

    # ccd customers import FILE
    customers = subparsers.add_parser("customers", help="the customer store")
    customers_sub = customers.add_subparsers(
        dest="customers_command", required=True, metavar="COMMAND"
    )
    p = leaf(customers_sub, "import", cmd_customers_import, "import customers from a CSV file")
    p.add_argument("file", help="CSV with a header: number,name,language,vip,...")

    # ccd callbacks ...
    callbacks = subparsers.add_parser("callbacks", help="callback requests")
    callbacks_sub = callbacks.add_subparsers(
        dest="callbacks_command", required=True, metavar="COMMAND"
    )
    p = leaf(callbacks_sub, "list", cmd_callbacks_list, "list callback requests", json_flag=True)
    p.add_argument(
        "--status",
        choices=[str(s) for s in Status],
        metavar="S",
        help=f"only requests in this status: {', '.join(str(s) for s in Status)}",
    )
    p = leaf(callbacks_sub, "show", cmd_callbacks_show, "show one request", json_flag=True)
    p.add_argument("id")
    p = leaf(callbacks_sub, "cancel", cmd_callbacks_cancel, "cancel a request (it is kept)")
    p.add_argument("id")
    p = leaf(
        callbacks_sub,
        "retry",
        cmd_callbacks_retry,
        "dial an unreached, declined or cancelled request again, with fresh attempts",
    )
    p.add_argument("id")


def _guarded(func: Handler) -> Handler:
    """Operator mistakes → one line and exit 2; a Redis error → one line and exit 1."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (_Refused, AgentError, IllegalTransition, CallbackError) as exc:
            print(f"{args.op_prog}: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except RedisUnavailable:
            raise  # ccd.cli.main: "Redis unavailable", exit 1
        except redis.exceptions.RedisError as exc:
            # redis-py's messages name host and port, never the password.
            print(f"ccd: Redis error: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_FAILURE

    return run


# --- the session ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Session:
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
def _session(args: argparse.Namespace) -> Iterator[_Session]:
    config = load_config(args.config)
    # stdout is the command's answer (maybe JSON): log lines go to stderr, warnings only.
    configure_logging(config.log.format, "warning", stream=_Stderr())  # type: ignore[arg-type]
    client = connect_redis(config.redis.url, config.redis.socket_timeout)
    try:
        store = Store.create(client, config.redis.prefix)
        store.ping()
        yield _Session(config, store, AgentRepository(store), CallRepository(store))
    finally:
        client.close()


# --- ccd agent ... ------------------------------------------------------------------------------


def _split_tags(values: Iterable[str]) -> list[str]:
    """Tags as typed: ``a,b c`` and ``--add a --add b`` all work."""
    return [t for value in values for t in value.split(",") if t.strip()]


def _unused_tag_note(session: _Session, tags: Iterable[str]) -> None:
    """A tag no queue requires is probably a typo; say so without refusing it.

    ``lang_*`` tags are required by customers' languages, not by queues.
    """
    required = {t for q in session.config.queues.values() for t in q.tags}
    unused = sorted(t for t in tags if t not in required and not t.startswith("lang_"))
    if unused and session.config.queues:
        print(f"note: no configured queue requires tag(s) {', '.join(unused)}", file=sys.stderr)


def cmd_agent_add(args: argparse.Namespace) -> int:
    with _session(args) as s:
        tags = check_tags(_split_tags([args.tags]))
        agent = s.agents.create(args.id, args.ext, tags, _now())
        configured = s.config.agents.get(agent.id)
        if configured is not None and configured.extension != agent.extension:
            print(
                f"note: the config file gives agent {agent.id} extension "
                f"{configured.extension}; `ccd agent sync` would change it back",
                file=sys.stderr,
            )
        _unused_tag_note(s, agent.tags)
    print(
        f"agent {agent.id} added: extension {agent.extension}, tags {_tag_text(agent.tags)}, "
        f"logged out (log in: ccd agent login {agent.id})"
    )
    return EXIT_OK


def cmd_agent_remove(args: argparse.Namespace) -> int:
    with _session(args) as s:
        agent = s.agents.require(args.id)
        busy = agent.call is not None or agent.state.activity in (
            Activity.RINGING,
            Activity.ONCALL,
        )
        if busy and not args.force:
            raise _Refused(
                f"agent {agent.id!r} is {agent.state.activity}"
                f"{' on call ' + agent.call if agent.call else ''}; log it out and remove it "
                "when the call ends, or use --force"
            )
        if not s.agents.delete(agent.id):
            raise UnknownAgent(f"no agent {agent.id!r}")
        if agent.id in s.config.agents:
            print(
                f"note: agent {agent.id} is in the config file; `ccd agent sync` would add it "
                "again",
                file=sys.stderr,
            )
    print(f"agent {agent.id} removed")
    return EXIT_OK


def cmd_agent_tags(args: argparse.Namespace) -> int:
    replace = _split_tags(args.tags)
    add = _split_tags(args.add)
    remove = _split_tags(args.remove)
    if replace and (add or remove):
        raise _Refused("give either the new tags or --add/--remove, not both")
    if not (replace or add or remove):
        raise _Refused(
            "give the new tags, or --add TAG / --remove TAG (to clear every tag, --remove them)"
        )
    new_tags = check_tags(replace)
    to_add = check_tags(add)
    to_remove = check_tags(remove)
    if to_add & to_remove:
        raise _Refused(f"tag(s) {', '.join(sorted(to_add & to_remove))} both added and removed")

    def change(agent: Agent) -> Agent:
        # Inside the compare-and-set loop: computed from the record as it is now.
        if replace:
            return dataclasses.replace(agent, tags=new_tags)
        missing = to_remove - agent.tags
        if missing:
            raise AgentError(
                f"agent {agent.id!r} has no tag {', '.join(sorted(missing))} "
                f"(its tags: {_tag_text(agent.tags)})"
            )
        return dataclasses.replace(agent, tags=(agent.tags | to_add) - to_remove)

    with _session(args) as s:
        before = s.agents.require(args.id)
        after = s.agents.update(before.id, change)
        _unused_tag_note(s, after.tags - before.tags)
    print(f"agent {after.id}: tags {_tag_text(after.tags)} (were {_tag_text(before.tags)})")
    return EXIT_OK


_LOGIN_WORDS = {Login.LOGGED_OUT: "logged out", Login.READY: "ready", Login.BREAK: "on break"}
_REFUSAL_HINTS = {
    (Login.LOGGED_OUT, "break"): "log in first",
    (Login.LOGGED_OUT, "ready"): "log in with: ccd agent login {id}",
    (Login.LOGGED_OUT, "logout"): "already logged out",
    (Login.READY, "ready"): "already ready",
    (Login.BREAK, "break"): "already on break",
}


def cmd_agent_login(args: argparse.Namespace) -> int:
    action: str = args.action
    with _session(args) as s:
        before = s.agents.require(args.id)
        try:
            after, _outcome = s.agents.transition(
                before.id, lambda state: set_login(state, action, _now())
            )
        except IllegalTransition:
            current = s.agents.require(before.id).state.login
            hint = _REFUSAL_HINTS.get((current, action), f"not allowed while {current}")
            raise _Refused(
                f"agent {before.id!r} is {_LOGIN_WORDS[current]}: cannot "
                f"{action} ({hint.format(id=before.id)})"
            ) from None
    state = after.state
    if state.logout_pending:
        print(
            f"agent {after.id}: logout pending, takes effect when the current call ends "
            f"({state.activity})"
        )
    elif before.state.logout_pending and state.login is not Login.LOGGED_OUT:
        print(f"agent {after.id}: pending logout cancelled, {_LOGIN_WORDS[state.login]}")
    elif state.login is before.state.login:
        print(f"agent {after.id}: already {_LOGIN_WORDS[state.login]}")
    else:
        print(
            f"agent {after.id}: {_LOGIN_WORDS[state.login]} "
            f"(was {_LOGIN_WORDS[before.state.login]})"
        )
    if state.login is Login.READY and not state.registered:
        print(
            f"note: the phone of agent {after.id} is not registered: no calls until it is",
            file=sys.stderr,
        )
    return EXIT_OK


def _agent_dict(agent: Agent, now: float, config: Config) -> dict[str, Any]:
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


def _agent_row(agent: Agent, now: float) -> list[str]:
    st = agent.state
    login = str(st.login) + (" (logout pending)" if st.logout_pending else "")
    return [
        agent.id,
        agent.extension,
        _tag_text(agent.tags),
        login,
        "registered" if st.registered else "unregistered",
        str(st.activity),
        human_duration(now - st.since),
        agent.call or "",
    ]


_AGENT_HEADERS = ["AGENT", "EXT", "TAGS", "LOGIN", "PHONE", "ACTIVITY", "FOR", "CALL"]


def cmd_agent_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        agents = s.agents.all()
        now = _now()
        if args.json:
            _print_json([_agent_dict(a, now, s.config) for a in agents])
        else:
            _print_table(_AGENT_HEADERS, [_agent_row(a, now) for a in agents], "no agents")
    return EXIT_OK


def cmd_agent_show(args: argparse.Namespace) -> int:
    with _session(args) as s:
        agent = s.agents.require(args.id)
        call = s.calls.get(agent.call) if agent.call else None
        now = _now()
        data = _agent_dict(agent, now, s.config)
    if args.json:
        data["call_record"] = None if call is None else _call_dict(call, now)
        _print_json(data)
        return EXIT_OK
    st = agent.state
    lines = [
        ("agent", agent.id),
        ("extension", agent.extension),
        ("tags", _tag_text(agent.tags)),
        ("login", _LOGIN_WORDS[st.login] + (" (logout pending)" if st.logout_pending else "")),
        ("phone", "registered" if st.registered else "unregistered"),
        ("activity", f"{st.activity} for {human_duration(now - st.since)}"),
        ("idle since", f"{human_duration(now - st.idle_since)} ago"),
        ("missed offers", str(st.missed_offers)),
        ("in config file", "yes" if data["in_config"] else "no"),
    ]
    if st.wrapup_until is not None:
        lines.append(("wrap-up ends in", human_duration(st.wrapup_until - now)))
    if agent.call:
        lines.append(("call", agent.call))
    if call is not None:
        lines.append(("caller", _caller_text(call)))
        lines.append(("queue", call.queue))
    if st.personal:
        lines.append(("personal calls", ", ".join(st.personal)))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 1}} {_cell(value)}")
    return EXIT_OK


def cmd_agent_sync(args: argparse.Namespace) -> int:
    """Create the config file's agents missing in Redis; run-time tags in Redis win."""
    refused = 0
    rows: list[list[str]] = []
    with _session(args) as s:
        now = _now()
        for agent_id, wanted in s.config.agents.items():
            existing = s.agents.get(agent_id)
            owner = s.agents.id_for_extension(wanted.extension)
            if owner is not None and owner != agent_id:
                refused += 1
                rows.append(
                    [agent_id, f"refused: extension {wanted.extension} belongs to agent {owner}"]
                )
                continue
            try:
                check_extension(wanted.extension)
                agent = s.agents.ensure(agent_id, wanted.extension, wanted.tags, now)
            except AgentError as exc:
                refused += 1
                rows.append([agent_id, f"refused: {exc}"])
                continue
            if existing is None:
                rows.append(
                    [
                        agent_id,
                        f"created: extension {agent.extension}, tags {_tag_text(agent.tags)}",
                    ]
                )
            elif existing.extension != agent.extension:
                rows.append([agent_id, f"extension {existing.extension} -> {agent.extension}"])
            else:
                rows.append([agent_id, "unchanged"])
        extra = [i for i in s.agents.ids() if i not in s.config.agents]
    _print_table(["AGENT", "RESULT"], rows, "no agents in the config file")
    if extra:
        print(f"in Redis only (kept): {', '.join(extra)}")
    if refused:
        print(f"ccd agent sync: {refused} agent(s) refused", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# --- ccd agent sticky / ccd sticky ... ------------------------------------------------------------


def _bindings(s: _Session) -> StickyStore:
    return StickyStore.from_config(s.store, s.config)


def _number(bindings: StickyStore, raw: str) -> str:
    try:
        return bindings.normalize(raw)
    except InvalidNumber as exc:
        raise _Refused(f"{raw!r} is not a phone number: {exc}") from None


def _setting_text(setting: StickySetting) -> str:
    if not setting.enabled:
        return "disabled" if setting.type is StickyType.DISABLED else "disabled (expiry 0)"
    return f"{setting.type}, expiry {human_duration(setting.expiry)}"


def _expiry_arg(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        raise _Refused(f"--expiry: expected a number of seconds >= 0, got {text!r}")
    return value


def cmd_agent_sticky(args: argparse.Namespace) -> int:
    expiry = _expiry_arg(args.expiry)
    if args.type is None and expiry is not None:
        raise _Refused("--expiry needs a TYPE")
    if args.type == "config" and expiry is not None:
        raise _Refused("config goes back to the config file's type and expiry: no --expiry")
    with _session(args) as s:
        if args.id not in s.config.agents:
            s.agents.require(args.id)  # UnknownAgent: neither in the config file nor in Redis
        bindings = _bindings(s)
        if args.type == "config":
            bindings.clear_runtime_setting(args.id)
        elif args.type is not None:
            bindings.set_runtime_setting(args.id, args.type, expiry)
        override = bindings.runtime_setting(args.id)
        now = bindings.setting_for(args.id)
        configured = bindings.configured_setting(args.id)
    source = "run-time setting" if override is not None else "config file"
    print(f"agent {args.id}: direct callback {_setting_text(now)} ({source})")
    if override is not None:
        print(
            f"config file: {_setting_text(configured)} "
            f"(back to it: ccd agent sticky {args.id} config)"
        )
    return EXIT_OK


def _binding_dict(binding: Binding, ttl_ms: int | None) -> dict[str, Any]:
    return {
        "number": binding.number,
        "agent": binding.agent_id,
        "type": str(binding.type),
        "created_at": binding.created_at,
        "expires_at": binding.expires_at,
        "ttl_ms": ttl_ms,
        "attempts": binding.attempts,
    }


def _left(ttl_ms: int | None) -> str:
    if ttl_ms is None:
        return ""
    return "never" if ttl_ms < 0 else human_duration(ttl_ms / 1000)


def cmd_sticky_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        listed = _bindings(s).list(agent=args.agent)
        now = _now()
    if args.json:
        _print_json([_binding_dict(b, ttl) for b, ttl in listed])
        return EXIT_OK
    rows = [
        [
            b.number,
            b.agent_id,
            str(b.type),
            _left(ttl),
            str(b.attempts),
            human_duration(now - b.created_at),
        ]
        for b, ttl in listed
    ]
    empty = f"no bindings of agent {args.agent}" if args.agent else "no bindings"
    _print_table(["NUMBER", "AGENT", "TYPE", "LEFT", "ATTEMPTS", "AGE"], rows, empty)
    return EXIT_OK


def cmd_sticky_show(args: argparse.Namespace) -> int:
    with _session(args) as s:
        bindings = _bindings(s)
        number = _number(bindings, args.number)
        binding = bindings.get(number)
        ttl = bindings.pttl(number)
        now = _now()
    if binding is None or ttl is None:
        raise _Refused(f"no binding for {number}")
    if args.json:
        _print_json(_binding_dict(binding, ttl))
        return EXIT_OK
    lines = [
        ("number", binding.number),
        ("agent", binding.agent_id),
        ("type", str(binding.type)),
        ("expires in", _left(ttl)),
        ("attempts", str(binding.attempts)),
        ("created", f"{human_duration(now - binding.created_at)} ago"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 1}} {_cell(value)}")
    return EXIT_OK


def cmd_sticky_delete(args: argparse.Namespace) -> int:
    with _session(args) as s:
        bindings = _bindings(s)
        number = _number(bindings, args.number)
        binding = bindings.delete(number, reason="operator")
    if binding is None:
        raise _Refused(f"no binding for {number}")
    print(f"binding {binding.number} -> {_cell(binding.agent_id)} deleted")
    return EXIT_OK


# --- ccd queue list / ccd status ------------------------------------------------------------------


def _waiting_calls(s: _Session, queue: str) -> list[CallRecord]:
    """The queue's waiting calls in serving order (entries without a record are skipped)."""
    return s.calls.get_many(s.calls.waiting(queue))


def _longest(calls: Sequence[CallRecord], now: float) -> float | None:
    return max((now - c.entered_at for c in calls), default=None)


def _queue_dict(s: _Session, name: str, now: float) -> dict[str, Any]:
    q = s.config.queues[name]
    waiting = _waiting_calls(s, name)
    longest = _longest(waiting, now)
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
    with _session(args) as s:
        now = _now()
        queues = [_queue_dict(s, name, now) for name in s.config.queues]
    if args.json:
        _print_json(queues)
        return EXIT_OK
    rows = [
        [
            q["name"],
            _tag_text(q["tags"]),
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
    _print_table(headers, rows, "no queues configured")
    return EXIT_OK


def _call_dict(call: CallRecord, now: float) -> dict[str, Any]:
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


def _is_bridged(call: CallRecord) -> bool:
    return call.ended_at is None and (call.status == "bridged" or call.bridged_at is not None)


def cmd_status(args: argparse.Namespace) -> int:
    with _session(args) as s:
        now = _now()
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
            waiting = _waiting_calls(s, name)
            longest = _longest(waiting, now)
            queues.append(
                {
                    "name": name,
                    "configured": name in s.config.queues,
                    "waiting": len(waiting),
                    "longest_wait": None if longest is None else round(max(0.0, longest), 3),
                    "calls": [_call_dict(c, now) for c in waiting],
                }
            )
        agents = [_agent_dict(a, now, s.config) for a in s.agents.all()]
        bridged = [_call_dict(c, now) for c in live if _is_bridged(c)]
        bridged.sort(key=lambda c: c["bridged_at"] or 0.0)
    if args.json:
        _print_json({"at": now, "queues": queues, "agents": agents, "bridged": bridged})
        return EXIT_OK

    print("QUEUES")
    _print_table(
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
    _print_table(
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
    _print_table(
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
    _print_table(
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


# --- ccd customers import ----------------------------------------------------------------------


def cmd_customers_import(args: argparse.Namespace) -> int:
    try:
        from ccd.core.customer import CustomerImportError
        from ccd.store.customer import CustomerStore
    except ImportError as exc:
        print(f"ccd: the customer store cannot be loaded: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    with _session(args) as s:
        try:
            report = CustomerStore(s.store).import_csv(args.file)
        except CustomerImportError as exc:
            raise _Refused(f"{args.file}: {_one_line(str(exc))}") from None
    print(f"{_cell(args.file)}: {report.summary()}")
    for error in report.errors:
        print(f"  {_cell(str(error))}")
    if report.refused:
        # The good rows are in; the exit code still tells a script that some were not.
        print(f"{args.op_prog}: {report.refused} row(s) refused", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# --- ccd callbacks ... --------------------------------------------------------------------------


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
        human_duration(now - req.created_at) + " ago",
        str(len(req.attempts)),
        "" if last is None else str(last.outcome),
        due,
    ]


def cmd_callbacks_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        requests = CallbackStore(s.store).list(args.status)
        now = _now()
    if args.json:
        _print_json([r.to_dict() for r in requests])
        return EXIT_OK
    _print_table(
        ["ID", "STATUS", "NUMBER", "QUEUE", "STRATEGY", "CREATED", "ATTEMPTS", "LAST", "DUE"],
        [_callback_row(r, now) for r in requests],
        "no callback requests" + (f" {args.status}" if args.status else ""),
    )
    return EXIT_OK


def cmd_callbacks_show(args: argparse.Namespace) -> int:
    with _session(args) as s:
        store = CallbackStore(s.store)
        req = store.require(args.id)
        owner = store.lease_owner(req.id)
        now = _now()
    if args.json:
        _print_json({**req.to_dict(), "lease_owner": owner})
        return EXIT_OK
    row = _callback_row(req, now)
    lines = [
        ("callback", req.id),
        ("status", row[1] + (f" (worked by {owner})" if owner else "")),
        ("number", req.number),
        ("calling number", req.caller_number or "-"),
        ("queue", f"{req.queue} ({req.strategy})"),
        ("created", row[5]),
        ("original call", req.caller_uuid),
        ("next due", row[8] or "-"),
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
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 1}} {_cell(value)}")
    return EXIT_OK


def cmd_callbacks_cancel(args: argparse.Namespace) -> int:
    with _session(args) as s:
        req = CallbackStore(s.store).cancel(args.id, _now())
    print(f"callback {req.id} cancelled ({req.number}, {len(req.attempts)} attempt(s) kept)")
    return EXIT_OK


def cmd_callbacks_retry(args: argparse.Namespace) -> int:
    with _session(args) as s:
        req = CallbackStore(s.store).retry(args.id, _now())
    print(f"callback {req.id} pending again: {req.number} is due now")
    return EXIT_OK


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


def _tag_text(tags: Iterable[str]) -> str:
    return ",".join(sorted(tags)) or "-"


def _caller_text(call: CallRecord) -> str:
    return f"{call.caller_number} {call.caller_name}".strip()


def _caller_name(call: dict[str, Any]) -> str:
    return call["customer"] or call["caller_name"] or ""


def _cell(value: object) -> str:
    """Text safe for a terminal: control and format characters (escape sequences) become '?'."""
    return "".join(
        "?" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(value)
    )


def _one_line(text: str) -> str:
    return " ".join(_cell(text.replace("\n", " ")).split())


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
    if not rows:
        print(f"({empty})")
        return
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _print_json(value: Any) -> None:
    # ensure_ascii: a caller's name cannot smuggle a terminal escape through the JSON either.
    print(json.dumps(value, indent=2, sort_keys=True))
