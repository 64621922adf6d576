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

This module holds the lifecycle, phones, channels and their runners; the rest of the class
comes from mixins beside it: :mod:`~ccd.fakeswitch.bridging` (bridges),
:mod:`~ccd.fakeswitch.calls` (dialing legs, callers placing calls) and
:mod:`~ccd.fakeswitch.switch_api` (the API commands); :mod:`~ccd.fakeswitch.dialstring`
parses their arguments.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import gevent
import structlog

from ccd.fakeswitch.api import (
    ApiRegistry,
    SwitchStats,
    register_static_commands,
)
from ccd.fakeswitch.apps import Apps
from ccd.fakeswitch.bridging import Bridging
from ccd.fakeswitch.calls import Calls
from ccd.fakeswitch.channel_events import ChannelEvents
from ccd.fakeswitch.channels import HANGUP_CAUSES, Channel, HangupSignal, Interrupt, new_uuid
from ccd.fakeswitch.clock import SwitchClock
from ccd.fakeswitch.dialplan import Action, Conf, NoRoute, expand_vars, load_conf
from ccd.fakeswitch.dialstring import number_or
from ccd.fakeswitch.esl_server import EslServer
from ccd.fakeswitch.fsevents import EventBus, EventFactory
from ccd.fakeswitch.phones import Behaviour, OutsideParty, Phone, Registrar
from ccd.fakeswitch.switch_api import SwitchApi
from ccd.fakeswitch.trace import Trace
from ccd.fakeswitch.voicemail import Mailboxes

log = structlog.get_logger()

DEFAULT_CONF_DIR = Path(__file__).resolve().parents[2] / "freeswitch_conf"
DEFAULT_SPS = 30
_PARK_AFTER_BRIDGE = "__park_after_bridge"


class FakeSwitch(Bridging, Calls, SwitchApi):
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
        self.ev = ChannelEvents(self.factory, self.bus.fire, self.now_us, self.bus.wanted)
        self.registrar = Registrar(self.factory.make, self.bus.fire, self.clock.now)
        self.mailboxes = Mailboxes(self.factory.make, self.bus.fire, self.clock.now)
        self._registrations_answer: tuple[tuple, str] | None = None  # show registrations
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

    def settle(self) -> None:
        """Tune the process for this one fake, once its set-up is in (phones, configuration,
        waiting callers). For a process that runs one fake for long (``ccd-fakeswitch``,
        scripts/bench.py); not for tests, which build many fakes in one process.

        * Collect, then leave out of the cycle collector's passes, all that exists now: a
          full pass then scans only what came later, not thousands of phones (up to 0.2 s
          a pass at 5,000 agents). Garbage frozen here would never be collected.
        * Greenlets stop recording their spawning stack (a debugging aid): it doubled the
          cost of each of the few greenlets a call spawns (10 -> 5 us).
        """
        gc.collect()
        gc.freeze()
        gevent.config.track_greenlet_tree = False

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
        self.server.stop(end_jobs=False)

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
        timers, ch.timers = ch.timers, []
        for timer in timers:
            if timer is not gevent.getcurrent():
                timer.kill(block=False)
        self.trace.record(
            "hangup", uuid=ch.uuid, party=ch.party or None, leg=ch.kind, cause=ch.hangup_cause
        )
        ch.gone.set()
        other = ch.other
        if other is not None and other.gone.is_set():
            # Both legs are over and fire nothing more: untie them, so that reference
            # counting frees them (a cycle waits for the garbage collector).
            ch.other = None
            if other.other is ch:
                other.other = None

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
                        raise ch.take_interrupt()
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
            loops = max(1, int(number_or(low.get("loops"), 1)))
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
