"""The fake FreeSWITCH's API commands on its call model: originate, the ``uuid_*`` commands,
``hupall``, ``show channels/calls/registrations`` and ``sofia`` (replies as FreeSWITCH 1.10.12
writes them, fs-captures)."""

from __future__ import annotations

import json
import time
from collections import deque

import structlog

from ccd.fakeswitch.api import SofiaRegistration, format_sofia_registrations
from ccd.fakeswitch.channels import Channel, HangupSignal, Interrupt
from ccd.fakeswitch.dialplan import expand_vars
from ccd.fakeswitch.dialstring import (
    OriginateError,
    number_or,
    parse_originate,
    split_args,
)
from ccd.fakeswitch.phones import Phone

log = structlog.get_logger()


class SwitchApi:
    """Part of :class:`ccd.fakeswitch.switch.FakeSwitch` (a mixin over its channels, phones
    and events): the API commands registered on its ApiRegistry."""

    # -- API commands ---------------------------------------------------------------------------

    def _register_commands(self) -> None:
        r = self.api.register
        r("originate", self.api_originate)
        r("uuid_kill", self.api_uuid_kill)
        r("uuid_bridge", self.api_uuid_bridge)
        r("uuid_transfer", self.api_uuid_transfer)
        r("uuid_broadcast", self.api_uuid_broadcast)
        r("uuid_break", self.api_uuid_break)
        r("uuid_setvar", self.api_uuid_setvar)
        r("uuid_getvar", self.api_uuid_getvar)
        r("uuid_exists", self.api_uuid_exists)
        r("eval", self.api_eval)
        r("uuid_answer", self.api_uuid_answer)
        r("hupall", self.api_hupall)
        r("show channels", lambda a: self.show_channels(a, calls=False))
        r("show calls", lambda a: self.show_channels(a, calls=True))
        r("show registrations", self.show_registrations)
        r("sofia status profile internal reg", self.sofia_reg)
        r("sofia_contact", self.api_sofia_contact)
        r("user_exists", self.api_user_exists)
        r("sched_del", self.api_sched_del)

    def api_originate(self, args: str) -> str:
        try:
            req = parse_originate(args)
        except OriginateError:
            return (
                "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"
            )
        variables = req["vars"]
        target = self._resolve(req["endpoint"])
        if isinstance(target, str):
            self.trace.record("originate_failed", endpoint=req["endpoint"], cause=target)
            return f"-ERR {target}\n"
        kind, party, behaviour, name, presence = target
        if not self._admit():
            self.trace.record("originate_failed", party=party, cause="DESTINATION_OUT_OF_ORDER")
            return "-ERR DESTINATION_OUT_OF_ORDER\n"
        timeout = number_or(variables.get("originate_timeout") or variables.get("leg_timeout"), 60)
        ch = self._outbound_leg(name, party, variables, kind=kind, presence=presence)
        if kind == "phone":
            ch.variables.update(dialed_user=party, dialed_domain=self.domain)
        cause = self._ring(ch, behaviour, timeout)
        if cause is not None:
            self._finish(ch)
            return f"-ERR {cause}\n"
        self._answer_outbound(ch)
        self.ev.fire("CHANNEL_OUTGOING", ch)
        self.ev.fire("CALL_UPDATE", ch, pre=[("Direction", "RECV")])
        ch.talk_limit = behaviour.hangup_after
        ch.digits.extend(behaviour.digits)
        if "program" in req:
            self._spawn_runner(ch, req["program"])
        else:
            ch.destination_number, ch.context = req["extension"], req["context"]
            self.spawn(self._routed_runner, ch)
        if ch.talk_limit is not None and kind == "phone":
            # A phone's talk time runs from its answer (bridged or not).
            self.talk_timer(ch, ch.talk_limit)
            ch.talk_limit = None
        return f"+OK {ch.uuid}\n"

    def _routed_runner(self, ch: Channel) -> None:
        try:
            self.ev.state(ch, "CS_ROUTING")
            program = self._route(ch)
        except HangupSignal:
            self._finish(ch)
            return
        ch.has_runner = True
        self._run(ch, deque(program), True)

    def _channel_arg(self, args: str) -> tuple[Channel | None, list[str]]:
        argv = args.split()
        if not argv:
            return None, []
        return self.channels.get(argv[0]), argv[1:]

    def api_uuid_kill(self, args: str) -> str:
        ch, rest = self._channel_arg(args)
        if ch is None or ch.is_hungup:
            return "-ERR No such channel!\n"
        cause = self.valid_cause(rest[0]) if rest else "NORMAL_CLEARING"
        self.trace.record("kill", uuid=ch.uuid, party=ch.party or None, cause=cause)
        self.hangup_channel(ch, cause)
        return "+OK\n"

    def api_uuid_bridge(self, args: str) -> str:
        argv = args.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        a, b = self.channels.get(argv[0]), self.channels.get(argv[1])
        if a is None or b is None or a.is_hungup or b.is_hungup or a is b:
            return "-ERR Invalid uuid\n"
        a.request_interrupt(Interrupt("bridge", (b, True)))
        b.request_interrupt(Interrupt("bridge", (a, False)))
        return f"+OK {b.uuid}\n"

    def api_uuid_transfer(self, args: str) -> str:
        ch, rest = self._channel_arg(args)
        if ch is None or ch.is_hungup:
            return "-ERR No such channel!\n"
        rest = [r for r in rest if r not in ("-bleg", "-both")]
        if not rest:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        context = rest[2] if len(rest) > 2 else ch.context
        ch.request_interrupt(Interrupt("transfer", (rest[0], context)))
        return "+OK\n"

    def api_uuid_broadcast(self, args: str) -> str:
        # mod_commands splits with switch_separate_string: a quoted path keeps its spaces
        # ('say::en number pronounced 3'), the quotes removed.
        argv = split_args(args)
        if len(argv) < 2:  # FreeSWITCH 1.10.12 checks the count before the uuid
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        ch, rest = self.channels.get(argv[0]), argv[1:]
        if ch is None or ch.is_hungup:
            return "-ERR invalid uuid\n"
        path = rest[0]
        app, sep, arg = path.partition("::")
        if not sep:
            app, arg = "playback", path
        headers = [
            ("call-command", "execute"),
            ("execute-app-name", app),
            ("execute-app-arg", arg),
            ("event-lock", "true"),
            ("lead-frames", "5"),
        ]
        ch.post(("execute", app, arg, None, headers))
        return "+OK Message sent\n"

    def api_uuid_break(self, args: str) -> str:
        ch, rest = self._channel_arg(args)
        if ch is None or ch.is_hungup:
            return "-ERR No such channel!\n"
        if rest[:1] == ["all"]:
            # mod_commands break_function: switch_core_session_flush_private_events drops
            # every message queued and not begun (broadcasts of any application, sendmsg
            # executes and hangups alike), then what plays is broken.
            ch.inbox.clear()
        ch.break_requested = True
        ch.wake.set()
        return "+OK\n"

    def api_uuid_setvar(self, args: str) -> str:
        ch, rest = self._channel_arg(args)
        if ch is None:
            return "-ERR No such channel!\n"
        if not rest:
            return "-USAGE: <uuid> <var> [value]\n"
        parts = args.split(None, 2)
        value = parts[2].strip() if len(parts) > 2 else ""
        if value:
            ch.variables[rest[0]] = value
        else:
            ch.variables.pop(rest[0], None)
        return "+OK\n"

    def api_uuid_getvar(self, args: str) -> str:
        ch, rest = self._channel_arg(args)
        if ch is None:
            return "-ERR No such channel!\n"
        if not rest:
            return "-USAGE: <uuid> <var>\n"
        value = self._lookup(ch)(rest[0])
        return "_undef_" if value is None or value == "" else value

    def api_uuid_exists(self, args: str) -> str:
        ch, _ = self._channel_arg(args)
        return "true" if ch is not None and not ch.is_hungup else "false"

    def api_eval(self, args: str) -> str:
        """``eval [uuid:<uuid> ]<expression>``: the expression with ``${var}`` expanded, in
        the channel's variables when one is named (unknown or gone: none), like FreeSWITCH
        (no +OK, nothing appended)."""
        if args.startswith("uuid:"):
            ident, _, expression = args[5:].partition(" ")
            ch = self.channels.get(ident)
            if ch is not None and not ch.is_hungup:
                return expand_vars(expression, self._lookup(ch))
            return expand_vars(expression, lambda _name: None)
        return expand_vars(args, lambda _name: None)

    def api_uuid_answer(self, args: str) -> str:
        ch, _ = self._channel_arg(args)
        if ch is None or ch.is_hungup:
            return "-ERROR\n"
        self.ev.answer(ch)
        return "+OK\n"

    def api_hupall(self, args: str) -> str:
        argv = args.split()
        cause = self.valid_cause(argv[0]) if argv else "MANAGER_REQUEST"
        for ch in list(self.channels.values()):
            self.hangup_channel(ch, cause)
        return f"+OK hangup all channels with cause {cause}\n"

    # -- show / registrations -------------------------------------------------------------------

    def _row(self, ch: Channel) -> dict[str, str]:
        created = ch.created_us // 1_000_000
        outbound = ch.direction == "outbound"
        return {
            "uuid": ch.uuid,
            "direction": ch.direction,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
            "created_epoch": str(created),
            "name": ch.name,
            "state": ch.state,
            "cid_name": ch.caller_id_name,
            "cid_num": ch.caller_id_number,
            "ip_addr": ch.network_addr,
            "dest": ch.destination_number,
            "application": ch.application,
            "application_data": ch.application_data,
            "dialplan": ch.dialplan,
            "context": ch.context,
            "read_codec": ch.codec[0] if ch.codec else "",
            "read_rate": ch.codec[1] if ch.codec else "",
            "read_bit_rate": ch.codec[2] if ch.codec else "",
            "write_codec": ch.codec[0] if ch.codec else "",
            "write_rate": ch.codec[1] if ch.codec else "",
            "write_bit_rate": ch.codec[2] if ch.codec else "",
            "secure": "",
            "hostname": "fakeswitch",
            "presence_id": ch.presence_id,
            "presence_data": "",
            "accountcode": "",
            "callstate": ch.call_state,
            "callee_name": ch.callee_id_name,
            "callee_num": ch.callee_id_number,
            "callee_direction": "RECV" if outbound else "",
            "call_uuid": ch.uuid if outbound else "",
            "sent_callee_name": "",
            "sent_callee_num": "",
            "initial_cid_name": ch.caller_id_name,
            "initial_cid_num": ch.caller_id_number,
            "initial_ip_addr": ch.network_addr,
            "initial_dest": ch.destination_number,
            "initial_dialplan": ch.dialplan,
            "initial_context": ch.context,
        }

    _CALL_KEYS = (
        "uuid",
        "direction",
        "created",
        "created_epoch",
        "name",
        "state",
        "cid_name",
        "cid_num",
        "ip_addr",
        "dest",
        "presence_id",
        "presence_data",
        "accountcode",
        "callstate",
        "callee_name",
        "callee_num",
        "callee_direction",
        "call_uuid",
        "hostname",
        "sent_callee_name",
        "sent_callee_num",
    )
    _B_KEYS = (
        "uuid",
        "direction",
        "created",
        "created_epoch",
        "name",
        "state",
        "cid_name",
        "cid_num",
        "ip_addr",
        "dest",
        "presence_id",
        "presence_data",
        "accountcode",
        "callstate",
        "callee_name",
        "callee_num",
        "callee_direction",
        "sent_callee_name",
        "sent_callee_num",
    )

    def _rows(self, calls: bool) -> list[dict[str, str]]:
        live = sorted(
            (c for c in self.channels.values() if not c.is_hungup), key=lambda c: c.created_us
        )
        if not calls:
            return [self._row(c) for c in live]
        rows, seen = [], set()
        for ch in live:
            if ch.uuid in seen:
                continue
            partner = ch.bridged_to
            if partner is not None and partner.uuid in seen:
                continue
            full = self._row(ch)
            row = {k: full[k] for k in self._CALL_KEYS}
            b = self._row(partner) if partner is not None else None
            for k in self._B_KEYS:
                row["b_" + k] = b[k] if b else ""
            row["call_created_epoch"] = (
                str(ch.times.get("bridged", 0) // 1_000_000) if partner is not None else ""
            )
            rows.append(row)
            seen.add(ch.uuid)
            if partner is not None:
                seen.add(partner.uuid)
        return rows

    def show_channels(self, args: str, *, calls: bool) -> str:
        rows = self._rows(calls)
        if args.split() == ["as", "json"]:
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps(
                {"row_count": len(rows), "rows": rows},
                separators=(",", ":"),
                ensure_ascii=False,
            )  # with rows FreeSWITCH ends at "}]}" (recordings 03, 13)
        if not rows:
            return "\n0 total.\n"
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(r[k] for k in keys) for r in rows]
        return "\n".join(lines) + "\n\n%d total.\n" % len(rows)

    def _registered(self, ext: str | None = None) -> list[Phone]:
        return [p for p in self.phones.values() if p.registered and ext in (None, p.ext)]

    def show_registrations(self, args: str) -> str:
        # FreeSWITCH answers from its own thread; the fake answers in its one loop, so a
        # list of 20,000 phones (54 ms to build) is built again only once it changed.
        key = (self.registrar.version, len(self.phones), args)
        cached = self._registrations_answer
        if cached is not None and cached[0] == key:
            return cached[1]
        answer = self._show_registrations(args)
        self._registrations_answer = (key, answer)
        return answer

    def _show_registrations(self, args: str) -> str:
        rows = [
            {
                "reg_user": p.ext,
                "realm": p.domain,
                "token": p.call_id,
                "url": f"sofia/internal/sip:{p.ext}@127.0.0.1:{p.port}",
                "expires": str(int(p.registered_at + p.expires)),
                "network_ip": "127.0.0.1",
                "network_port": str(p.port),
                "network_proto": "udp",
                "hostname": "fakeswitch",
                "metadata": "",
            }
            for p in self._registered()
        ]
        if args.split() == ["as", "json"]:
            if not rows:
                return '{"row_count": 0}\n'
            # With rows FreeSWITCH ends at "}]}" (recordings 03, 13); "row_count": 0 has "\n".
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))
        if not rows:
            return "\n0 total.\n"
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(r[k] for k in keys) for r in rows]
        return "\n".join(lines) + "\n\n%d total.\n" % len(rows)

    def sofia_reg(self, args: str) -> str:
        ext = args.split()[0] if args.split() else None
        now = self.clock.now()
        regs = []
        for p in self._registered(ext):
            expires_at = p.registered_at + p.expires
            regs.append(
                SofiaRegistration(
                    user=f"{p.ext}@{p.domain}",
                    contact=p.contact,
                    call_id=p.call_id,
                    agent=p.user_agent,
                    expires_local=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires_at)),
                    expires_in=max(0, int(expires_at - now)),
                    host="fakeswitch",
                    port=p.port,
                    auth_user=p.ext,
                    auth_realm=p.domain,
                )
            )
        return format_sofia_registrations(regs)

    def api_sofia_contact(self, args: str) -> str:
        user = args.strip().split("/")[-1].split("@", 1)[0]
        phone = self.phones.get(user)
        if phone is None or not phone.registered:
            return "error/user_not_registered"
        return f"sofia/internal/sip:{user}@127.0.0.1:{phone.port}"

    def api_user_exists(self, args: str) -> str:
        argv = args.split()
        if len(argv) < 2:
            return "false"
        ext = argv[1]
        return "true" if ext in self.phones or self.directory_user(ext) else "false"
