"""``ccd agent …``: add, remove, tag, log in and out, list, show, sync agents; set an agent's
direct-callback type (``ccd agent sticky``).

Agents live in Redis (:class:`ccd.store.agent.AgentRepository`); a login change is the pure
:func:`ccd.core.presence.set_login` applied by compare-and-set, so a command racing a live
call is safe.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable

from ccd.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Refused,
    Session,
    agent_dict,
    call_dict,
    clock,
    human_duration,
    leaf,
    print_fields,
    print_json,
    print_table,
    session,
    tag_text,
)
from ccd.cli.sticky import setting_text, sticky_store
from ccd.config.rules import stats_rules_from_config
from ccd.core.commands import Fact
from ccd.core.presence import Activity, IllegalTransition, Login, set_login
from ccd.core.stats import fold, served_queues
from ccd.core.sticky import StickyType
from ccd.store.agent import Agent, AgentError, UnknownAgent, check_extension, check_tags
from ccd.store.call import CallRecord
from ccd.store.stats import StatsStore

#: The login changes an operator may ask for (the presence table decides which are legal).
LOGIN_ACTIONS = ("login", "logout", "break", "ready")


#: ``ccd agent sticky ID TYPE``: a type, or ``config`` to drop the run-time override.
STICKY_CHOICES = (*(str(t) for t in StickyType), "config")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agent = sub.add_parser("agent", help="add, change and inspect agents")
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


def _split_tags(values: Iterable[str]) -> list[str]:
    """Tags as typed: ``a,b c`` and ``--add a --add b`` all work."""
    return [t for value in values for t in value.split(",") if t.strip()]


def _unused_tag_note(session: Session, tags: Iterable[str]) -> None:
    """A tag no queue requires is probably a typo; say so without refusing it.

    ``lang_*`` tags are required by customers' languages, not by queues.
    """
    required = {t for q in session.config.queues.values() for t in q.tags}
    unused = sorted(t for t in tags if t not in required and not t.startswith("lang_"))
    if unused and session.config.queues:
        print(f"note: no configured queue requires tag(s) {', '.join(unused)}", file=sys.stderr)


def cmd_agent_add(args: argparse.Namespace) -> int:
    with session(args) as s:
        tags = check_tags(_split_tags([args.tags]))
        agent = s.agents.create(args.id, args.ext, tags, clock())
        configured = s.config.agents.get(agent.id)
        if configured is not None and configured.extension != agent.extension:
            print(
                f"note: the config file gives agent {agent.id} extension "
                f"{configured.extension}; `ccd agent sync` would change it back",
                file=sys.stderr,
            )
        _unused_tag_note(s, agent.tags)
    print(
        f"agent {agent.id} added: extension {agent.extension}, tags {tag_text(agent.tags)}, "
        f"logged out (log in: ccd agent login {agent.id})"
    )
    return EXIT_OK


def cmd_agent_remove(args: argparse.Namespace) -> int:
    with session(args) as s:
        agent = s.agents.require(args.id).at(clock())
        busy = agent.call is not None or agent.state.activity in (
            Activity.RINGING,
            Activity.ONCALL,
        )
        if busy and not args.force:
            raise Refused(
                f"agent {agent.id!r} is {agent.state.activity}"
                f"{' on call ' + agent.call if agent.call else ''}; log it out and remove it "
                "when the call ends, or use --force"
            )
        if not s.agents.delete(agent.id):
            raise UnknownAgent(f"no agent {agent.id!r}")
        stats = StatsStore(s.store, stats_rules_from_config(s.config))
        pipe = s.store.client.pipeline(transaction=True)
        stats.remove_agent(pipe, agent.id, clock())  # it leaves the agents by status
        pipe.execute()
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
        raise Refused("give either the new tags or --add/--remove, not both")
    if not (replace or add or remove):
        raise Refused(
            "give the new tags, or --add TAG / --remove TAG (to clear every tag, --remove them)"
        )
    new_tags = check_tags(replace)
    to_add = check_tags(add)
    to_remove = check_tags(remove)
    if to_add & to_remove:
        raise Refused(f"tag(s) {', '.join(sorted(to_add & to_remove))} both added and removed")

    def change(agent: Agent) -> Agent:
        # Inside the compare-and-set loop: computed from the record as it is now.
        if replace:
            return dataclasses.replace(agent, tags=new_tags)
        missing = to_remove - agent.tags
        if missing:
            raise AgentError(
                f"agent {agent.id!r} has no tag {', '.join(sorted(missing))} "
                f"(its tags: {tag_text(agent.tags)})"
            )
        return dataclasses.replace(agent, tags=(agent.tags | to_add) - to_remove)

    with session(args) as s:
        before = s.agents.require(args.id)
        after = s.agents.update(before.id, change)
        _unused_tag_note(s, after.tags - before.tags)
    print(f"agent {after.id}: tags {tag_text(after.tags)} (were {tag_text(before.tags)})")
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
    with session(args) as s:
        before = s.agents.require(args.id)
        now = clock()
        try:
            after, outcome = s.agents.transition(
                before.id, lambda state: set_login(state, action, now)
            )
        except IllegalTransition:
            current = s.agents.require(before.id).state.login
            hint = _REFUSAL_HINTS.get((current, action), f"not allowed while {current}")
            raise Refused(
                f"agent {before.id!r} is {_LOGIN_WORDS[current]}: cannot "
                f"{action} ({hint.format(id=before.id)})"
            ) from None
        _count(s, after, outcome.facts, now)
        if after.state.login is Login.READY:
            # A caller may be waiting for just this agent: the best one is rung now (the
            # daemon hunting it is told), not at the daemons' next look.
            s.agents.hand_out(after.id, clock())
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


def _agent_row(agent: Agent, now: float) -> list[str]:
    st = agent.at(now).state
    login = str(st.login) + (" (logout pending)" if st.logout_pending else "")
    return [
        agent.id,
        agent.extension,
        tag_text(agent.tags),
        login,
        "registered" if st.registered else "unregistered",
        str(st.activity),
        human_duration(now - st.since),
        agent.call or "",
    ]


_AGENT_HEADERS = ["AGENT", "EXT", "TAGS", "LOGIN", "PHONE", "ACTIVITY", "FOR", "CALL"]


def cmd_agent_list(args: argparse.Namespace) -> int:
    with session(args) as s:
        agents = s.agents.all()
        now = clock()
        if args.json:
            print_json([agent_dict(a, now, s.config) for a in agents])
        else:
            print_table(_AGENT_HEADERS, [_agent_row(a, now) for a in agents], "no agents")
    return EXIT_OK


def cmd_agent_show(args: argparse.Namespace) -> int:
    with session(args) as s:
        now = clock()
        agent = s.agents.require(args.id).at(now)
        call = s.calls.get(agent.call) if agent.call else None
        data = agent_dict(agent, now, s.config)
    if args.json:
        data["call_record"] = None if call is None else call_dict(call, now)
        print_json(data)
        return EXIT_OK
    st = agent.state
    lines = [
        ("agent", agent.id),
        ("extension", agent.extension),
        ("tags", tag_text(agent.tags)),
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
    print_fields(lines)
    return EXIT_OK


def cmd_agent_sync(args: argparse.Namespace) -> int:
    """Create the config file's agents missing in Redis; run-time tags in Redis win."""
    refused = 0
    rows: list[list[str]] = []
    with session(args) as s:
        now = clock()
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
                        f"created: extension {agent.extension}, tags {tag_text(agent.tags)}",
                    ]
                )
            elif existing.extension != agent.extension:
                rows.append([agent_id, f"extension {existing.extension} -> {agent.extension}"])
            else:
                rows.append([agent_id, "unchanged"])
        extra = [i for i in s.agents.ids() if i not in s.config.agents]
    print_table(["AGENT", "RESULT"], rows, "no agents in the config file")
    if extra:
        print(f"in Redis only (kept): {', '.join(extra)}")
    if refused:
        print(f"ccd agent sync: {refused} agent(s) refused", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _expiry_arg(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        raise Refused(f"--expiry: expected a number of seconds >= 0, got {text!r}")
    return value


def cmd_agent_sticky(args: argparse.Namespace) -> int:
    expiry = _expiry_arg(args.expiry)
    if args.type is None and expiry is not None:
        raise Refused("--expiry needs a TYPE")
    if args.type == "config" and expiry is not None:
        raise Refused("config goes back to the config file's type and expiry: no --expiry")
    with session(args) as s:
        if args.id not in s.config.agents:
            s.agents.require(args.id)  # UnknownAgent: neither in the config file nor in Redis
        sticky = sticky_store(s)
        if args.type == "config":
            sticky.clear_runtime_setting(args.id)
        elif args.type is not None:
            sticky.set_runtime_setting(args.id, args.type, expiry)
        override = sticky.runtime_setting(args.id)
        now = sticky.setting_for(args.id)
        configured = sticky.configured_setting(args.id)
    source = "run-time setting" if override is not None else "config file"
    print(f"agent {args.id}: direct callback {setting_text(now)} ({source})")
    if override is not None:
        print(
            f"config file: {setting_text(configured)} "
            f"(back to it: ccd agent sticky {args.id} config)"
        )
    return EXIT_OK


def _caller_text(call: CallRecord) -> str:
    return f"{call.caller_number} {call.caller_name}".strip()


def _count(s: Session, agent: Agent, facts: Iterable[Fact], now: float) -> None:
    """A login change made here goes to the statistics too: the daemons never say it."""
    stats = StatsStore(s.store, stats_rules_from_config(s.config))
    queue_tags = {name: queue.tags for name, queue in s.config.queues.items()}
    served = served_queues(agent.tags, queue_tags)
    stats.record(fold([(fact, now, served) for fact in facts], stats.rules))
