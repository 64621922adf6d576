"""``ccd sticky list|show|delete``: the live direct-callback bindings (R-STICKY) in Redis."""

from __future__ import annotations

import argparse
from typing import Any

from ccd.cli.common import (
    EXIT_OK,
    Refused,
    Session,
    cell,
    clock,
    human_duration,
    leaf,
    print_fields,
    print_json,
    print_table,
    session,
)
from ccd.core.numbers import InvalidNumber
from ccd.core.sticky import Binding, StickySetting, StickyType
from ccd.store.sticky import StickyStore


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sticky = sub.add_parser("sticky", help="direct callback bindings (number -> agent)")
    sticky_sub = sticky.add_subparsers(dest="sticky_command", required=True, metavar="COMMAND")
    p = leaf(sticky_sub, "list", cmd_sticky_list, "list live bindings", json_flag=True)
    p.add_argument("--agent", metavar="A", help="only the bindings of this agent")
    p = leaf(sticky_sub, "show", cmd_sticky_show, "show the binding of a number", json_flag=True)
    p.add_argument("number")
    p = leaf(sticky_sub, "delete", cmd_sticky_delete, "delete the binding of a number")
    p.add_argument("number")


def sticky_store(s: Session) -> StickyStore:
    return StickyStore.from_config(s.store, s.config)


def _number(sticky: StickyStore, raw: str) -> str:
    try:
        return sticky.normalize(raw)
    except InvalidNumber as exc:
        raise Refused(f"{raw!r} is not a phone number: {exc}") from None


def setting_text(setting: StickySetting) -> str:
    if not setting.enabled:
        return "disabled" if setting.type is StickyType.DISABLED else "disabled (expiry 0)"
    return f"{setting.type}, expiry {human_duration(setting.expiry)}"


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
    with session(args) as s:
        listed = sticky_store(s).list(agent=args.agent)
        now = clock()
    if args.json:
        print_json([_binding_dict(b, ttl) for b, ttl in listed])
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
    print_table(["NUMBER", "AGENT", "TYPE", "LEFT", "ATTEMPTS", "AGE"], rows, empty)
    return EXIT_OK


def cmd_sticky_show(args: argparse.Namespace) -> int:
    with session(args) as s:
        sticky = sticky_store(s)
        number = _number(sticky, args.number)
        binding = sticky.get(number)
        ttl = sticky.pttl(number)
        now = clock()
    if binding is None or ttl is None:
        raise Refused(f"no binding for {number}")
    if args.json:
        print_json(_binding_dict(binding, ttl))
        return EXIT_OK
    lines = [
        ("number", binding.number),
        ("agent", binding.agent_id),
        ("type", str(binding.type)),
        ("expires in", _left(ttl)),
        ("attempts", str(binding.attempts)),
        ("created", f"{human_duration(now - binding.created_at)} ago"),
    ]
    print_fields(lines)
    return EXIT_OK


def cmd_sticky_delete(args: argparse.Namespace) -> int:
    with session(args) as s:
        sticky = sticky_store(s)
        number = _number(sticky, args.number)
        binding = sticky.delete(number, reason="operator")
    if binding is None:
        raise Refused(f"no binding for {number}")
    print(f"binding {binding.number} -> {cell(binding.agent_id)} deleted")
    return EXIT_OK
