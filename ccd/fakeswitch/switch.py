"""FakeSwitch: the fake FreeSWITCH's call model, composed with its event socket.

Theory of operation
-------------------
One :class:`FakeSwitch` owns the clock, trace, event factory/bus, API
registry, the ESL server, the loaded ``freeswitch_conf/`` (dialplan, IVR
menus, directory), the phones and outside parties, and every live channel.

Each channel has exactly one *owner* greenlet at a time, and only the owner
fires the channel's events after CHANNEL_HANGUP (so per-leg order is what
FreeSWITCH shows):

* while an outbound leg rings, its owner is whoever dials it (the greenlet of
  an ``originate`` api/bgapi call, or the A leg running the ``bridge`` app);
* once answered, or for an inbound call, a *runner* greenlet executes the
  leg's program (dialplan actions, ``&park()``) and queued commands.

Other greenlets (API commands, timers of the caller/phone models, the other
leg of a bridge) never touch another leg's flow directly: they fire
CHANNEL_HANGUP via :meth:`hangup_channel` (FreeSWITCH fires it in the
caller's thread too), post a command (sendmsg, uuid_broadcast) or request an
:class:`Interrupt` (uuid_bridge, uuid_transfer, "your partner left"). The
owner sees them in ``Channel.wait``.

Every duration is in switch seconds (see clock.py). API replies are
FreeSWITCH 1.10.12's exact texts (fs-captures, README.txt).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import gevent
import structlog

from ccd.fakeswitch.api import (
    ApiRegistry,
    SofiaRegistration,
    SwitchStats,
    format_sofia_registrations,
    register_static_commands,
)
from ccd.fakeswitch.apps import Apps
from ccd.fakeswitch.channels import (
    HANGUP_CAUSES,
    Channel,
    ChannelEvents,
    HangupSignal,
    Interrupt,
    new_uuid,
)
from ccd.fakeswitch.clock import SwitchClock
from ccd.fakeswitch.dialplan import Action, Conf, NoRoute, expand_vars, load_conf
from ccd.fakeswitch.esl_server import EslServer
from ccd.fakeswitch.fsevents import EventBus, EventFactory
from ccd.fakeswitch.phones import Behaviour, OutsideParty, Phone, Registrar
from ccd.fakeswitch.trace import Trace

log = structlog.get_logger()

DEFAULT_CONF_DIR = Path(__file__).resolve().parents[2] / "freeswitch_conf"
DEFAULT_SPS = 30
_PARK_AFTER_BRIDGE = "__park_after_bridge"

_DIALSTATUS = {
    "NO_ANSWER": "NOANSWER",
    "USER_BUSY": "BUSY",
    "CALL_REJECTED": "CANCEL",
    "SUCCESS": "SUCCESS",
}


class OriginateError(ValueError):
    """An originate line FreeSWITCH would refuse before creating any channel."""


# -- argument parsing, as FreeSWITCH's switch_separate_string does it ---------


def split_args(text: str, delim: str = " ") -> list[str]:
    """Split at ``delim`` outside single quotes; quotes are removed and ``\\'``
    is a literal quote. Empty fields are dropped when splitting at spaces."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
            cur.append(text[i + 1])
            i += 2
            continue
        if c == "'" and (quoted or "'" in text[i + 1 :]):
            quoted = not quoted
        elif c == delim and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [p for p in out if p] if delim == " " else out


def parse_dial_string(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b,c='x, y'}[d=e]endpoint`` -> (variables, endpoint)."""
    variables: dict[str, str] = {}
    rest = dial.strip()
    while rest[:1] in ("{", "["):
        close = "}" if rest[0] == "{" else "]"
        end, quoted = -1, False
        for i, c in enumerate(rest):
            if c == "'":
                quoted = not quoted
            elif c == close and not quoted:
                end = i
                break
        if end < 0:
            raise OriginateError("unterminated variable block")
        for item in split_args(rest[1:end], ","):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                variables[name.strip()] = value
        rest = rest[end + 1 :]
    return variables, rest


def parse_originate(args: str) -> dict[str, Any]:
    """``<dial> <&app(arg)|exten> [dialplan] [context] [cid_name] [cid_num] [timeout]``."""
    argv = split_args(args)
    if len(argv) < 2:
        raise OriginateError("originate needs a dial string and an application")
    variables, endpoint = parse_dial_string(argv[0])
    target = argv[1]
    req: dict[str, Any] = {"vars": variables, "endpoint": endpoint}
    if target.startswith("&"):
        app, _, data = target[1:].partition("(")
        req["program"] = [Action(app, data[:-1] if data.endswith(")") else data)]
    else:
        req["extension"] = target
        req["context"] = argv[3] if len(argv) > 3 else "default"
    if len(argv) > 4 and argv[4] != "undef":
        variables.setdefault("origination_caller_id_name", argv[4])
    if len(argv) > 5 and argv[5] != "undef":
        variables.setdefault("origination_caller_id_number", argv[5])
    if len(argv) > 6:
        variables.setdefault("originate_timeout", argv[6])
    return req


class FakeSwitch:
    """A FreeSWITCH stand-in: ESL server + call model. See the module docstring."""

    def __init__(
        self,
        conf_dir: str | Path | None = DEFAULT_CONF_DIR,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "ClueCon",
        trace_path: str | Path | None = None,
        *,
        sessions_per_second: int | None = None,
        playback_seconds: float = 1.0,
        voicemail_seconds: float = 3.0,
        domain: str = "127.0.0.1",
        conf_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.clock = SwitchClock(time_scale)
        self.trace = Trace(self.clock.now, trace_path)
        self.domain = domain
        self.playback_seconds = playback_seconds
        self.voicemail_seconds = voicemail_seconds
        self.conf: Conf | None = (
            load_conf(Path(conf_dir), conf_overrides or {}) if conf_dir is not None else None
        )
        if sessions_per_second is None:
            # As FreeSWITCH: post_load_switch.conf is read after switch.conf and wins.
            configured = self._setting(
                "post_load_switch.conf", "sessions-per-second"
            ) or self._setting("switch.conf", "sessions-per-second")
            sessions_per_second = int(configured) if configured else DEFAULT_SPS
        self.sessions_per_second = sessions_per_second
        self.factory = EventFactory(self.clock.now, hostname="fakeswitch")
        self.bus = EventBus()
        self.ev = ChannelEvents(self.factory, self.bus.fire, self.now_us)
        self.registrar = Registrar(self.factory.make, self.bus.fire, self.clock.now)
        self.apps = Apps(self)
        self.channels: dict[str, Channel] = {}
        self.phones: dict[str, Phone] = {}
        self.outside: dict[str, OutsideParty] = {}
        self.default_outside = Behaviour(answer_after=2.0, hangup_after=30.0)
        self._created: deque[float] = deque()
        self._sessions_total = 0
        self._session_id = 0
        self._greenlets: set[gevent.Greenlet] = set()
        self._scheduled: dict[str, set[gevent.Greenlet]] = {}
        self.api = ApiRegistry()
        register_static_commands(
            self.api,
            clock=self.clock.now,
            switch_stats=self._stats,
            sip_ip=domain,
            hostname="fakeswitch",
        )
        self._register_commands()
        self.server = EslServer(
            api=self.api,
            bus=self.bus,
            events=self.factory,
            sendmsg=self.sendmsg,
            host=host,
            port=port,
            password=password,
        )

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> FakeSwitch:
        self.server.start()
        log.info(
            "fakeswitch.started", address="%s:%d" % self.address, time_scale=self.clock.time_scale
        )
        return self

    def stop(self) -> None:
        for ch in list(self.channels.values()):
            self.hangup_channel(ch, "SYSTEM_SHUTDOWN")
        gevent.joinall(list(self._greenlets), timeout=2.0)
        gevent.killall(list(self._greenlets), block=False)
        self.server.stop()
        self.trace.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def restart_esl(self) -> None:
        """Drop every ESL connection and listen again on the same port."""
        self.stop_esl()
        self.start_esl()

    def stop_esl(self) -> None:
        """FreeSWITCH going away: connections cut, nothing listening (calls go on)."""
        self._esl_address = self.address
        self.server.drop_connections()
        self.server.stop()

    def start_esl(self) -> None:
        """Listen again on the port used before :meth:`stop_esl`."""
        saved = getattr(self, "_esl_address", None)
        host, port = saved if saved is not None else self.address
        self.server = EslServer(
            api=self.api,
            bus=self.bus,
            events=self.factory,
            sendmsg=self.sendmsg,
            host=host,
            port=port,
            password=self.server.password,
        )
        self.server.start()

    def now_us(self) -> int:
        return round(self.clock.now() * 1_000_000)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until true or ``timeout`` REAL seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.005)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        g = gevent.spawn(fn, *args)
        self._greenlets.add(g)
        g.link(self._greenlets.discard)
        return g

    def spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        g = gevent.spawn_later(self.clock.real_seconds(seconds), fn, *args)
        self._greenlets.add(g)
        g.link(self._greenlets.discard)
        return g

    # -- configuration helpers -----------------------------------------------------

    def _setting(self, config: str, name: str) -> str | None:
        if self.conf is None:
            return None
        return self.conf.settings.get(config, {}).get(name)

    def menus(self) -> dict[str, Any]:
        return self.conf.menus if self.conf is not None else {}

    def directory_user(self, ext: str) -> dict[str, str] | None:
        if self.conf is None:
            return None
        return self.conf.directory.get(ext)

    def valid_cause(self, cause: str) -> str:
        cause = cause.strip().upper()
        return cause if cause in HANGUP_CAUSES else "NORMAL_CLEARING"

    def _lookup(self, ch: Channel) -> Callable[[str], str | None]:
        profile = {
            "uuid": ch.uuid,
            "caller_id_name": ch.caller_id_name,
            "caller_id_number": ch.caller_id_number,
            "destination_number": ch.destination_number,
            "context": ch.context,
            "channel_name": ch.name,
            "ani": ch.caller_id_number,
        }
        if ch.username:
            profile["user_name"] = ch.username

        def lookup(name: str) -> str | None:
            if name in ch.variables:
                return ch.variables[name]
            if name in profile:
                return profile[name]
            if self.conf is not None:
                return self.conf.vars.get(name)
            return None

        return lookup

    def expand(self, ch: Channel, text: str) -> str:
        return expand_vars(text, self._lookup(ch)) if "$" in text else text

    # -- phones and outside parties -------------------------------------------------

    def add_phone(
        self, ext: str, *, registered: bool = True, agent: str | None = None, **behaviour: Any
    ) -> Phone:
        """A desk phone for directory user ``ext`` (registers now when ``registered``)."""
        if ext in self.phones:
            raise ValueError(f"phone {ext} already exists")
        b = Behaviour()
        b.update(behaviour)
        phone = Phone(
            ext=ext,
            domain=self.domain,
            port=5070 + len(self.phones) + 1,
            behaviour=b,
            agent=agent,
            call_id=f"{new_uuid()}@127.0.0.1",
            directory=dict(self.directory_user(ext) or {"user_context": "ccd_agents"}),
        )
        phone._on_registration = self._registration_changed
        self.phones[ext] = phone
        if registered:
            self._registration_changed(phone, True)
        return phone

    def phone(self, ext: str) -> Phone:
        return self.phones[ext]

    def _registration_changed(self, phone: Phone, registered: bool) -> None:
        if registered:
            self.registrar.register(phone)
            self.trace.record("register", ext=phone.ext, agent=phone.agent)
        else:
            self.registrar.unregister(phone)
            self.trace.record("unregister", ext=phone.ext, agent=phone.agent)

    def expire_phone(self, ext: str) -> None:
        """The registration ran out without an un-REGISTER (sofia::expire)."""
        phone = self.phones[ext]
        if phone.registered:
            self.registrar.expire(phone)
            self.trace.record("expire", ext=ext, agent=phone.agent)

    def add_outside(self, number: str, **behaviour: Any) -> OutsideParty:
        b = Behaviour(answer_after=2.0, hangup_after=30.0)
        b.update(behaviour)
        party = OutsideParty(number, b)
        self.outside[number] = party
        return party

    # -- sessions-per-second -----------------------------------------------------------

    def _admit(self, legs: int = 1) -> bool:
        now = self.clock.now()
        while self._created and self._created[0] <= now - 1.0:
            self._created.popleft()
        if len(self._created) + legs > self.sessions_per_second:
            return False
        self._created.extend([now] * legs)
        self._sessions_total += legs
        return True

    def _stats(self) -> SwitchStats:
        return SwitchStats(
            sessions_since_startup=self._sessions_total,
            sessions=len(self.channels),
            sps_max=self.sessions_per_second,
            internal_in_use=len(self.channels),
            registrations=sum(1 for p in self.phones.values() if p.registered),
        )

    # -- channels ---------------------------------------------------------------------

    def _new_channel(self, name: str, direction: str, **profile: Any) -> Channel:
        self._session_id += 1
        uuid = profile.pop("uuid", None) or new_uuid()
        ch = Channel(uuid=uuid, name=name, direction=direction, created_us=self.now_us(), **profile)
        ch.variables.update(
            {
                "direction": direction,
                **({"is_outbound": "true"} if direction == "outbound" else {}),
                "uuid": uuid,
                "call_uuid": uuid,
                "session_id": str(self._session_id),
                "channel_name": name,
            }
        )
        self.channels[uuid] = ch
        return ch

    def hangup_channel(self, ch: Channel, cause: str) -> None:
        """Hang ``ch`` up (fires CHANNEL_HANGUP now); its owner finishes the teardown."""
        if ch.hangup_cause:
            return
        self.ev.hangup(ch, cause)
        ch.pending_hangup = cause
        ch.wake.set()
        if ch.dialing is not None:
            ch.dialing.wake.set()

    def _finish(self, ch: Channel) -> None:
        if not ch.hangup_cause:
            self.ev.hangup(ch, "NORMAL_CLEARING")
        self.ev.teardown(ch)
        self.channels.pop(ch.uuid, None)
        self.unschedule(ch.uuid)
        self.trace.record(
            "hangup", uuid=ch.uuid, party=ch.party or None, leg=ch.kind, cause=ch.hangup_cause
        )
        ch.gone.set()

    def _spawn_runner(self, ch: Channel, program: Iterable[Action], *, enter: bool = True):
        ch.has_runner = True
        return self.spawn(self._run, ch, deque(program), enter)

    def _run(self, ch: Channel, queue: deque, enter: bool) -> None:
        try:
            if enter:
                self.ev.state(ch, "CS_EXECUTE")
            while not (ch.pending_hangup or ch.hangup_cause):
                try:
                    if ch.interrupt is not None:
                        interrupt, ch.interrupt = ch.interrupt, None
                        raise interrupt
                    if ch.inbox:
                        self.run_message(ch, ch.inbox.popleft())
                        continue
                    if not queue:
                        self.hangup_channel(ch, "NORMAL_CLEARING")
                        break
                    action = queue.popleft()
                    if action.app == _PARK_AFTER_BRIDGE:
                        self.ev.state(ch, "CS_PARK")
                        self.apps.park_loop(ch)
                    elif getattr(action, "inline", False):
                        self.apps.set(ch, action.data)
                    else:
                        self.apps.execute(ch, action.app, action.data)
                except Interrupt as interrupt:
                    queue = self._on_interrupt(ch, interrupt, queue)
        except HangupSignal:
            pass
        except Exception:
            log.exception("fakeswitch.channel.crashed", uuid=ch.uuid)
            self.hangup_channel(ch, "NORMAL_TEMPORARY_FAILURE")
        finally:
            self._finish(ch)

    def _on_interrupt(self, ch: Channel, interrupt: Interrupt, queue: deque) -> deque:
        if interrupt.kind == "transfer":
            ext, context = interrupt.payload
            return self._transfer(ch, ext, context)
        if interrupt.kind == "bridge":
            partner, a_side = interrupt.payload
            if partner.is_hungup or partner.uuid not in self.channels:
                return queue
            self._uuid_bridge_leg(ch, partner, a_side)
            return self._after_unbridge(ch, queue)
        return queue  # "unbridge" outside a bridge: nothing to leave

    def _after_unbridge(self, ch: Channel, queue: deque) -> deque:
        if ch.variables.get("park_after_bridge") == "true":
            return deque([Action(_PARK_AFTER_BRIDGE, "")])
        if ch.variables.get("hangup_after_bridge") == "true":
            self.hangup_channel(ch, "NORMAL_CLEARING")
            raise HangupSignal()
        self.ev.state(ch, "CS_EXECUTE")
        return queue

    def _transfer(self, ch: Channel, ext: str, context: str) -> deque:
        previous = f"{ch.destination_number}/{ch.context}/XML"
        ch.variables["transfer_history"] = (
            f"{int(self.clock.now())}:{new_uuid()}:bl_xfer:{ext}/{context}/XML"
        )
        ch.variables["transfer_source"] = previous
        ch.transfer_source = previous
        ch.destination_number, ch.context, ch.dialplan = ext, context, "XML"
        ch.profile_index += 1
        ch.times["transfer"] = self.now_us()
        self.trace.record("transfer", uuid=ch.uuid, party=ch.party or None, to=ext, context=context)
        self.ev.state(ch, "CS_ROUTING")
        actions = self._route(ch)
        self.ev.state(ch, "CS_EXECUTE")
        return deque(actions)

    def _route(self, ch: Channel) -> list[Action]:
        if self.conf is None:
            actions = None
        else:
            variables = {k: v for k, v in ch.variables.items()}
            variables.update(
                caller_id_name=ch.caller_id_name,
                caller_id_number=ch.caller_id_number,
                destination_number=ch.destination_number,
                context=ch.context,
            )
            if ch.username:
                variables["user_name"] = ch.username
            try:
                actions = self.conf.dialplan.route(ch.context, ch.destination_number, variables)
            except NoRoute:
                actions = None
        if actions is None:
            self.trace.record(
                "no_route", uuid=ch.uuid, number=ch.destination_number, context=ch.context
            )
            self.hangup_channel(ch, "NO_ROUTE_DESTINATION")
            raise HangupSignal()
        ch.hit_dialplan = True
        return list(actions)

    # -- bridging -----------------------------------------------------------------------

    def _link(self, a: Channel, b: Channel) -> None:
        a.bridged_to, b.bridged_to = b, a
        a.other, b.other = b, a
        a.other_type, b.other_type = "originatee", "originator"
        now = self.now_us()
        for ch, other in ((a, b), (b, a)):
            ch.times["bridged"] = now
            ch.variables["bridge_uuid"] = other.uuid
            ch.variables["signal_bond"] = other.uuid
            ch.variables["last_bridge_to"] = other.uuid
            ch.ever_bridged = True
        self.trace.record(
            "bridge", a=a.uuid, b=b.uuid, a_party=a.party or None, b_party=b.party or None
        )
        for ch in (a, b):
            if ch.talk_limit is not None:
                self.spawn_later(ch.talk_limit, self._party_hangs_up, ch, "talk_done")

    def schedule(self, ch: Channel, seconds: float, what: str, arg: str) -> None:
        """sched_transfer / sched_hangup: act on ``ch`` later unless unscheduled."""

        def fire() -> None:
            self._scheduled.get(ch.uuid, set()).discard(g)
            if ch.uuid not in self.channels or ch.is_hungup:
                return
            self.trace.record("scheduled_" + what, uuid=ch.uuid, arg=arg)
            if what == "hangup":
                self.hangup_channel(ch, self.valid_cause(arg))
            else:
                parts = arg.split()
                if parts:
                    context = parts[2] if len(parts) > 2 else ch.context
                    ch.request_interrupt(Interrupt("transfer", (parts[0], context)))

        g = self.spawn_later(seconds, fire)
        self._scheduled.setdefault(ch.uuid, set()).add(g)

    def unschedule(self, uuid: str) -> int:
        tasks = self._scheduled.pop(uuid, set())
        for g in tasks:
            g.kill(block=False)
        return len(tasks)

    def api_sched_del(self, args: str) -> str:
        count = self.unschedule(args.strip())
        return "+OK\n" if count else "-ERR no such id\n"

    def _party_hangs_up(self, ch: Channel, why: str) -> None:
        if ch.uuid in self.channels and not ch.is_hungup:
            self.trace.record("party_hangup", uuid=ch.uuid, party=ch.party or None, why=why)
            self.hangup_channel(ch, "NORMAL_CLEARING")

    def _bridge_event(self, name: str, a: Channel, b: Channel) -> None:
        self.ev.fire(name, a, pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])

    def _bridged_wait(self, ch: Channel, partner: Channel, a_side: bool) -> None:
        """Stay bridged until someone leaves; raise HangupSignal/Interrupt when we do."""
        left_first = True
        try:
            while True:
                ch.wait(None)
        except Interrupt as interrupt:
            if interrupt.kind != "unbridge":
                raise
            left_first = False
        finally:
            if a_side:
                self._bridge_event("CHANNEL_UNBRIDGE", ch, partner)
            if ch.bridged_to is partner:
                ch.bridged_to = None
                if partner.bridged_to is ch:
                    partner.bridged_to = None
                self.trace.record(
                    "unbridge",
                    a=ch.uuid if a_side else partner.uuid,
                    b=partner.uuid if a_side else ch.uuid,
                )
                if left_first:
                    stays = partner.variables.get("park_after_bridge") == "true"
                    if a_side and not stays:
                        self.hangup_channel(partner, "NORMAL_CLEARING")
                    else:
                        partner.request_interrupt(Interrupt("unbridge", ch))

    def _uuid_bridge_leg(self, ch: Channel, partner: Channel, a_side: bool) -> None:
        for state in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
            self.ev.state(ch, state)
        self.ev.execute(ch, "uuid_bridge", partner.uuid, new_uuid())
        if a_side:
            self._link(ch, partner)
            self._bridge_event("CHANNEL_BRIDGE", ch, partner)
        else:
            self.ev.state(ch, "CS_EXCHANGE_MEDIA")
        self._bridged_wait(ch, partner, a_side)

    def bridge_app(self, ch: Channel, data: str) -> None:
        """The dialplan ``bridge`` application: dial one endpoint and bridge to it."""
        variables, endpoint = parse_dial_string(data)
        variables = {**ch.exported, **variables}
        timeout = _num(ch.variables.get("call_timeout") or variables.get("leg_timeout"), 60)
        target = self._resolve(endpoint)
        if isinstance(target, str):
            self._bridge_failed(ch, target)
            return
        kind, party, behaviour, name, presence = target
        if not self._admit():
            self._bridge_failed(ch, "DESTINATION_OUT_OF_ORDER")
            return
        b = self._outbound_leg(
            name,
            party,
            variables,
            kind=kind,
            presence=presence,
            cid_name=ch.caller_id_name,
            cid_number=ch.caller_id_number,
        )
        b.other, b.other_type = ch, "originator"
        ch.variables["originated_legs"] = f"{b.uuid};Outbound Call;{party}"
        b.variables["originating_leg_uuid"] = ch.uuid
        ch.dialing = b
        try:
            cause = self._ring(b, behaviour, timeout, watch=ch)
        finally:
            ch.dialing = None
        if cause is not None:
            self._finish(b)
            self._bridge_failed(ch, cause)
            return
        self._answer_outbound(b)
        b.talk_limit = behaviour.hangup_after
        b.digits.extend(behaviour.digits)
        if not ch.answered:
            self.ev.codec(ch)
            self.ev.progress_media(ch)
            self.ev.answer(ch)
        ch.variables["originate_disposition"] = "SUCCESS"
        ch.variables["DIALSTATUS"] = "SUCCESS"
        self._link(ch, b)
        self._bridge_event("CHANNEL_BRIDGE", ch, b)
        self.ev.fire("CALL_UPDATE", ch, pre=[("Direction", "SEND")])
        b.has_runner = True
        self.spawn(self._run_b_leg, b, ch)
        try:
            self._bridged_wait(ch, b, True)
        finally:
            cause = b.hangup_cause or "NORMAL_CLEARING"
            ch.variables["last_bridge_hangup_cause"] = cause
            ch.variables["bridge_hangup_cause"] = cause
        if ch.variables.get("hangup_after_bridge") == "true":
            self.hangup_channel(ch, "NORMAL_CLEARING")
            raise HangupSignal()

    def _run_b_leg(self, b: Channel, a: Channel) -> None:
        try:
            self.ev.state(b, "CS_EXCHANGE_MEDIA")
            self.ev.fire("CALL_UPDATE", b, pre=[("Direction", "RECV")])
            self._bridged_wait(b, a, False)
            if b.variables.get("park_after_bridge") == "true":
                self.ev.state(b, "CS_PARK")
                self.apps.park_loop(b)
            self.hangup_channel(b, "NORMAL_CLEARING")
        except (HangupSignal, Interrupt):
            pass
        except Exception:
            log.exception("fakeswitch.channel.crashed", uuid=b.uuid)
        finally:
            self._finish(b)

    def _bridge_failed(self, ch: Channel, cause: str) -> None:
        self.trace.record("bridge_failed", uuid=ch.uuid, party=ch.party or None, cause=cause)
        v = ch.variables
        v["originate_disposition"] = cause
        v["DIALSTATUS"] = _DIALSTATUS.get(cause, cause)
        v["originate_failed_cause"] = cause
        v["last_bridge_hangup_cause"] = cause

    # -- dialing --------------------------------------------------------------------------

    def _resolve(self, endpoint: str) -> tuple | str:
        """Endpoint -> (kind, party, behaviour, channel name, presence) or a failure cause."""
        proto, _, rest = endpoint.partition("/")
        if proto == "user":
            ext = rest.split("@", 1)[0]
            phone = self.phones.get(ext)
            if phone is None:
                return "USER_NOT_REGISTERED" if self.directory_user(ext) else "SUBSCRIBER_ABSENT"
            if not phone.registered:
                return "USER_NOT_REGISTERED"
            name = f"sofia/internal/{ext}@127.0.0.1:{phone.port}"
            return ("phone", ext, phone.behaviour, name, f"{ext}@{self.domain}")
        if proto == "sofia":
            parts = rest.split("/")
            if parts[0] == "gateway" and len(parts) >= 3:
                number = parts[2]
            elif len(parts) >= 2:
                number = parts[1].split("@", 1)[0]
            else:
                return "INVALID_NUMBER_FORMAT"
            party = self.outside.get(number)
            behaviour = party.behaviour if party else self.default_outside
            return ("outside", number, behaviour, f"sofia/external/{number}", "")
        if proto == "error":
            return self.valid_cause(rest or "NORMAL_CLEARING")
        return "CHAN_NOT_IMPLEMENTED"

    def _outbound_leg(
        self,
        name: str,
        party: str,
        variables: Mapping[str, str],
        *,
        kind: str,
        presence: str = "",
        cid_name: str = "",
        cid_number: str = "",
    ) -> Channel:
        ch = self._new_channel(
            name,
            "outbound",
            uuid=variables.get("origination_uuid"),
            caller_id_name=variables.get("origination_caller_id_name", cid_name),
            caller_id_number=variables.get(
                "origination_caller_id_number", cid_number or "0000000000"
            ),
            callee_id_name="Outbound Call",
            callee_id_number=party,
            destination_number=party,
            context="default",
            source="src/switch_ivr_originate.c",
            presence_id=presence,
            kind=kind,
            party=party,
        )
        ch.variables.update(variables)
        ch.variables["originate_endpoint"] = "sofia"
        ch.state = "CS_NONE"
        self.ev.fire("CHANNEL_OUTGOING", ch)
        self.ev.state(ch, "CS_INIT")
        self.ev.fire("CHANNEL_CREATE", ch)
        self.ev.fire("CHANNEL_ORIGINATE", ch)
        self.ev.state(ch, "CS_ROUTING")
        self.ev.state(ch, "CS_CONSUME_MEDIA")
        return ch

    def _ring(
        self, ch: Channel, behaviour: Behaviour, timeout: float, watch: Channel | None = None
    ) -> str | None:
        """Let the far end react; None when it answers, else the failure cause.

        Raises HangupSignal (for ``watch``, the dialing A leg) when ``watch`` hangs up.
        A uuid_kill of the ringing leg ends the ring with its cause (NORMAL_CLEARING).
        """
        outcome = behaviour.outcome()
        if outcome == "busy":
            cause: str | None = "USER_BUSY"
        elif outcome == "reject":
            cause = "CALL_REJECTED"
        else:
            self.ev.progress(ch)
            if watch is not None:
                self.ev.progress(watch)
            self.trace.record("ring", uuid=ch.uuid, party=ch.party, leg=ch.kind, timeout=timeout)
            answers = outcome == "answer" and behaviour.answer_after < timeout
            ring_for = behaviour.answer_after if answers else timeout
            deadline = time.monotonic() + self.clock.real_seconds(ring_for)
            cause = None if answers else "NO_ANSWER"
            while True:
                if watch is not None and (watch.pending_hangup or watch.hangup_cause):
                    self.hangup_channel(ch, "ORIGINATOR_CANCEL")
                    self._finish(ch)
                    raise HangupSignal()
                try:
                    if (
                        ch.wait(max(0.0, deadline - time.monotonic()), interruptible=False)
                        == "timeout"
                    ):
                        break
                except HangupSignal:
                    return ch.hangup_cause or "NORMAL_CLEARING"
        if cause is not None:
            self.trace.record(
                "originate_failed" if watch is None else "dial_failed",
                uuid=ch.uuid,
                party=ch.party,
                cause=cause,
            )
            self.hangup_channel(ch, cause)
        return cause

    def _answer_outbound(self, ch: Channel) -> None:
        self.ev.codec(ch)
        self.ev.answer(ch)
        self.trace.record("answer", uuid=ch.uuid, party=ch.party, leg=ch.kind)

    # -- inbound calls ------------------------------------------------------------------------

    def place_call(
        self,
        caller_number: str,
        caller_name: str = "",
        destination: str = "5000",
        context: str = "ccd",
        digits: Iterable[str | None] = (),
        patience: float | None = None,
        hangup_after: float | None = None,
    ) -> str | None:
        """A customer calls in: inbound leg through the dialplan. Returns its uuid
        (None when sessions-per-second refuses it)."""
        if not self._admit():
            self.trace.record("call_refused", party=caller_number, cause="DESTINATION_OUT_OF_ORDER")
            return None
        ch = self._new_channel(
            f"sofia/external/{caller_number}@192.0.2.10",
            "inbound",
            caller_id_name=caller_name,
            caller_id_number=caller_number,
            destination_number=destination,
            context=context,
            dialplan="XML",
            network_addr="192.0.2.10",
            kind="caller",
            party=caller_number,
        )
        ch.digits.extend(digits)
        ch.talk_limit = hangup_after
        ch.variables.update(sip_from_user=caller_number, sip_to_user=destination)
        self.trace.record(
            "call",
            uuid=ch.uuid,
            party=caller_number,
            name=caller_name,
            to=destination,
            context=context,
        )
        if patience is not None:
            self.spawn_later(patience, self._caller_gives_up, ch)
        self.spawn(self._inbound, ch)
        return ch.uuid

    def phone_call(
        self,
        ext: str,
        destination: str,
        *,
        hangup_after: float | None = None,
        digits: Iterable[str | None] = (),
    ) -> str | None:
        """A desk phone dials ``destination`` (feature code, agent, outside number)."""
        phone = self.phones[ext]
        if not self._admit():
            return None
        ch = self._new_channel(
            f"sofia/internal/{ext}@127.0.0.1",
            "inbound",
            caller_id_name=phone.caller_id_name,
            caller_id_number=phone.caller_id_number,
            destination_number=destination,
            context=phone.context,
            dialplan="XML",
            username=ext,
            network_addr="127.0.0.1",
            presence_id=f"{ext}@{self.domain}",
            kind="agent_call",
            party=ext,
        )
        ch.digits.extend(digits)
        ch.talk_limit = hangup_after if hangup_after is not None else phone.behaviour.hangup_after
        ch.variables.update(user_name=ext, domain_name=self.domain, sip_from_user=ext)
        self.trace.record(
            "call", uuid=ch.uuid, party=ext, to=destination, context=phone.context, leg="agent_call"
        )
        self.spawn(self._inbound, ch)
        return ch.uuid

    def _inbound(self, ch: Channel) -> None:
        try:
            self.ev.state(ch, "CS_NEW")
            self.ev.state(ch, "CS_INIT")
            self.ev.fire("CHANNEL_CREATE", ch)
            self.ev.callstate(ch, "RINGING")
            self.ev.state(ch, "CS_ROUTING")
            program = self._route(ch)
        except HangupSignal:
            self._finish(ch)
            return
        ch.has_runner = True
        self._run(ch, deque(program), True)

    def _caller_gives_up(self, ch: Channel) -> None:
        if ch.uuid in self.channels and not ch.is_hungup and not ch.ever_bridged:
            self.trace.record("abandon", uuid=ch.uuid, party=ch.party)
            self.hangup_channel(ch, "NORMAL_CLEARING")

    # -- ESL sendmsg -------------------------------------------------------------------------

    def sendmsg(self, uuid: str, headers: dict[str, str]) -> str:
        ch = self.channels.get(uuid)
        if ch is None or ch.is_hungup:
            return f"-ERR invalid session id [{uuid}]"
        low = {k.lower(): v for k, v in headers.items()}
        command = low.get("call-command", "").strip().lower()
        if command == "execute":
            app = low.get("execute-app-name", "").strip()
            arg = low.get("execute-app-arg", headers.get("_body", ""))
            loops = max(1, int(_num(low.get("loops"), 1)))
            for _ in range(loops):
                ch.post(("execute", app, arg, low.get("event-uuid"), list(headers.items())))
            return "+OK"
        if command == "hangup":
            cause = self.valid_cause(low.get("hangup-cause", "NORMAL_CLEARING"))
            if ch.has_runner:
                ch.post(("hangup", cause, list(headers.items())))
            else:
                self.hangup_channel(ch, cause)
            return "+OK"
        if command in ("unicast", "nomedia", "xferext"):
            return "+OK"
        return "-ERR Invalid Command"

    def run_message(self, ch: Channel, message: tuple) -> None:
        """Run one queued command in the channel's greenlet, then PRIVATE_COMMAND."""
        kind = message[0]
        headers = [(k, v) for k, v in message[-1] if k != "_body"]
        try:
            if kind == "execute":
                _, app, arg, event_uuid, _ = message
                self.apps.execute(ch, app, arg, event_uuid)
            elif kind == "hangup":
                self.hangup_channel(ch, message[1])
                raise HangupSignal()
        finally:
            self.ev.fire("PRIVATE_COMMAND", ch, leading=headers, with_vars=False)

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
        timeout = _num(variables.get("originate_timeout") or variables.get("leg_timeout"), 60)
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
            self.spawn_later(ch.talk_limit, self._party_hangs_up, ch, "talk_done")
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
        ch, rest = self._channel_arg(args)
        if ch is None or ch.is_hungup:
            return "-ERR No such channel!\n"
        if not rest:
            return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
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
            kept = [m for m in ch.inbox if not (m[0] == "execute" and m[1] == "playback")]
            ch.inbox.clear()
            ch.inbox.extend(kept)
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
            return (
                json.dumps(
                    {"row_count": len(rows), "rows": rows},
                    separators=(",", ":"),
                    ensure_ascii=False,
                )
                + "\n"
            )
        if not rows:
            return "\n0 total.\n"
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(r[k] for k in keys) for r in rows]
        return "\n".join(lines) + "\n\n%d total.\n" % len(rows)

    def _registered(self, ext: str | None = None) -> list[Phone]:
        return [p for p in self.phones.values() if p.registered and ext in (None, p.ext)]

    def show_registrations(self, args: str) -> str:
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
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":")) + "\n"
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


def _num(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)
