"""Channels of the fake FreeSWITCH and the CHANNEL_* events they produce.

Theory of operation
-------------------
A :class:`Channel` holds what FreeSWITCH reports about a call leg: the
Unique-ID, name, direction, running state (``CS_*``), call state (``DOWN``,
``RINGING``, ``EARLY``, ``ACTIVE``, ``HANGUP``), answer state, the caller
profile (caller-id, destination, context, timestamps), channel variables and
the bridge partner.

Every state change goes through :class:`ChannelEvents`, which both mutates the
channel and fires the event FreeSWITCH fires for that change, with the header
names and order recorded in ``fs-captures/`` (standard block, event-specific
headers, channel block, caller profile, other-leg block, ``variable_*``).
Callers of these helpers (``switch.py``, ``apps.py``) decide *when* things
happen; the order of the helper calls is the event order on the wire, and
``tests/test_fakeswitch_calls.py`` compares it per leg with SEQUENCES.md.

The runtime part of a channel (inbox of queued commands, wake-up event,
pending hangup, break flag) lets other greenlets (API commands, the caller
model, the partner leg) interrupt whatever the channel's own greenlet waits
for: every wait in the fake goes through :meth:`Channel.wait`.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event

STATE_NUMBERS = {
    "CS_NEW": 0,
    "CS_INIT": 1,
    "CS_ROUTING": 2,
    "CS_SOFT_EXECUTE": 3,
    "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5,
    "CS_PARK": 6,
    "CS_CONSUME_MEDIA": 7,
    "CS_HIBERNATE": 8,
    "CS_RESET": 9,
    "CS_HANGUP": 10,
    "CS_REPORTING": 11,
    "CS_DESTROY": 12,
    "CS_NONE": 13,
}

CALLSTATE_NUMBERS = {
    "DOWN": 0,
    "DIALING": 1,
    "RINGING": 2,
    "EARLY": 3,
    "ACTIVE": 4,
    "HELD": 5,
    "RING_WAIT": 6,
    "HANGUP": 7,
    "UNHELD": 8,
}

#: Hangup causes FreeSWITCH knows (name -> Q.850 code); anything else given to
#: uuid_kill silently becomes NORMAL_CLEARING (capture 15).
HANGUP_CAUSES = {
    "UNSPECIFIED": 0,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42,
    "REQUESTED_CHAN_UNAVAIL": 44,
    "BEARERCAPABILITY_NOTAVAIL": 58,
    "INCOMPATIBLE_DESTINATION": 88,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "INTERWORKING": 127,
    "ORIGINATOR_CANCEL": 487,
    "CRASH": 500,
    "SYSTEM_SHUTDOWN": 501,
    "LOSE_RACE": 502,
    "MANAGER_REQUEST": 503,
    "BLIND_TRANSFER": 600,
    "ATTENDED_TRANSFER": 601,
    "ALLOTTED_TIMEOUT": 602,
    "USER_CHALLENGE": 603,
    "MEDIA_TIMEOUT": 604,
    "PICKED_OFF": 605,
    "USER_NOT_REGISTERED": 606,
    "PROGRESS_TIMEOUT": 607,
}

# Where FreeSWITCH fires each event from (Event-Calling-*), and whether the
# event carries the channel variables; both as recorded in the captures.
_ORIGIN: dict[str, tuple[str, str, int, bool]] = {
    "CHANNEL_OUTGOING": (
        "switch_core_session.c",
        "switch_core_session_outgoing_channel",
        768,
        False,
    ),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408, False),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626, True),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", 632, True),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 301, False),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944, True),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967, True),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846, True),
    "CHANNEL_PROGRESS": (
        "switch_channel.c",
        "switch_channel_perform_mark_ring_ready_value",
        3505,
        True,
    ),
    "CHANNEL_PROGRESS_MEDIA": (
        "switch_channel.c",
        "switch_channel_perform_mark_pre_answered",
        3560,
        True,
    ),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002, True),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213, True),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", 3277, True),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646, True),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020, True),
    "PRIVATE_COMMAND": ("switch_ivr.c", "switch_ivr_parse_next_event", 804, False),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", 677, False),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445, True),
    "CHANNEL_HANGUP_COMPLETE": (
        "switch_core_state_machine.c",
        "switch_core_session_reporting_state",
        943,
        True,
    ),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584, True),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689, True),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879, True),
    "CHANNEL_UUID": ("switch_core_session.c", "switch_core_session_set_uuid", 2051, True),
    "CODEC": ("switch_core_codec.c", "switch_core_session_set_read_codec", 279, False),
    "CUSTOM": ("mod_dptools.c", "event_function", 1902, True),
}


class HangupSignal(Exception):
    """Raised inside a channel's greenlet when the channel has been hung up."""


class Interrupt(Exception):
    """Raised inside a channel's greenlet to leave the current application.

    ``kind`` is ``"transfer"`` (``payload`` = (extension, context)) or
    ``"bridge"`` (``payload`` = (partner channel, is_a_leg)).
    """

    def __init__(self, kind: str, payload: Any) -> None:
        super().__init__(kind)
        self.kind = kind
        self.payload = payload


def new_uuid() -> str:
    return str(uuid_mod.uuid4())


@dataclass(eq=False)
class Channel:
    """One call leg, as FreeSWITCH would describe it."""

    uuid: str
    name: str
    direction: str  # "inbound" | "outbound"
    created_us: int
    caller_id_name: str = ""
    caller_id_number: str = "0000000000"
    callee_id_name: str = ""
    callee_id_number: str = ""
    destination_number: str = ""
    context: str = "default"
    dialplan: str = ""
    source: str = "mod_sofia"
    username: str = ""
    network_addr: str = ""
    presence_id: str = ""
    state: str = "CS_NEW"
    call_state: str = "DOWN"
    answer_state: str = "ringing"
    hit_dialplan: bool = False
    codec: tuple[str, str, str] | None = None
    hangup_cause: str = ""
    profile_index: int = 1
    transfer_source: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    #: Variables `export`ed to legs this one originates (bridge app).
    exported: dict[str, str] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)
    #: The leg this one was originated from / to (Other-Leg-* headers).
    other: Channel | None = field(default=None, repr=False)
    other_type: str = ""
    #: The leg this one is bridged to right now.
    bridged_to: Channel | None = field(default=None, repr=False)
    #: "phone" | "caller" | "outside" | "loopback" | "agent_call": who is behind it.
    kind: str = ""
    #: Phone extension or outside number behind the channel.
    party: str = ""
    application: str = ""
    application_data: str = ""
    parked: bool = False
    #: A runner greenlet owns the channel (else: whoever dials it).
    has_runner: bool = False
    #: The outbound leg this channel's bridge app is ringing right now.
    dialing: Channel | None = field(default=None, repr=False)
    #: Seconds this party talks once bridged before hanging up (None: forever).
    talk_limit: float | None = None
    ever_bridged: bool = False
    # Runtime: cross-greenlet signalling.
    inbox: deque = field(default_factory=deque)
    wake: gevent.event.Event = field(default_factory=gevent.event.Event)
    pending_hangup: str | None = None
    interrupt: Interrupt | None = None
    break_requested: bool = False
    gone: gevent.event.Event = field(default_factory=gevent.event.Event)
    digits: deque = field(default_factory=deque)

    @property
    def answered(self) -> bool:
        return self.times.get("answered", 0) > 0

    @property
    def is_hungup(self) -> bool:
        return bool(self.hangup_cause)

    def var(self, name: str) -> str | None:
        return self.variables.get(name)

    def post(self, message: tuple) -> None:
        """Queue a command for the channel's greenlet (sendmsg execute, hangup...)."""
        self.inbox.append(message)
        self.wake.set()

    def request_interrupt(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt
        self.wake.set()

    def wait(
        self,
        clock_sleep_real: float | None,
        *,
        on_message: bool = False,
        on_digit: bool = False,
        on_break: bool = False,
        interruptible: bool = True,
    ) -> str:
        """Wait up to ``clock_sleep_real`` REAL seconds (None: forever).

        Raises HangupSignal / Interrupt when they are pending (checked first);
        ``interruptible=False`` leaves an Interrupt pending for a later owner.
        Returns "timeout", "message", "digit" or "break" for the conditions
        the caller asked to be woken for.
        """
        deadline = None if clock_sleep_real is None else time.monotonic() + clock_sleep_real
        while True:
            if self.pending_hangup is not None or self.hangup_cause:
                raise HangupSignal()
            if interruptible and self.interrupt is not None:
                interrupt, self.interrupt = self.interrupt, None
                raise interrupt
            if on_break and self.break_requested:
                self.break_requested = False
                return "break"
            if on_message and self.inbox:
                return "message"
            if on_digit and self.digits:
                return "digit"
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return "timeout"
            self.wake.clear()
            self.wake.wait(remaining)


def _opt(headers: list[tuple[str, str]], name: str, value: str) -> None:
    if value:
        headers.append((name, value))


def profile_headers(ch: Channel, prefix: str, *, other: bool = False) -> list[tuple[str, str]]:
    """The caller-profile block (``Caller-*`` or ``Other-Leg-*``)."""
    p = prefix
    h: list[tuple[str, str]] = [
        (p + "Direction", ch.direction),
        (p + "Logical-Direction", "inbound" if other else ch.direction),
    ]
    _opt(h, p + "Username", ch.username)
    _opt(h, p + "Dialplan", ch.dialplan)
    _opt(h, p + "Caller-ID-Name", ch.caller_id_name)
    h.append((p + "Caller-ID-Number", ch.caller_id_number))
    _opt(h, p + "Orig-Caller-ID-Name", ch.caller_id_name)
    h.append((p + "Orig-Caller-ID-Number", ch.caller_id_number))
    _opt(h, p + "Callee-ID-Name", ch.callee_id_name)
    _opt(h, p + "Callee-ID-Number", ch.callee_id_number)
    _opt(h, p + "Network-Addr", ch.network_addr)
    h += [
        (p + "ANI", ch.caller_id_number),
        (p + "Destination-Number", ch.destination_number),
        (p + "Unique-ID", ch.uuid),
        (p + "Source", ch.source),
    ]
    if not other:
        _opt(h, p + "Transfer-Source", ch.transfer_source)
    h.append((p + "Context", ch.context))
    h.append((p + "Channel-Name", ch.name))
    if not other:
        h.append((p + "Profile-Index", str(ch.profile_index)))
    t = ch.times
    h += [
        (p + "Profile-Created-Time", str(ch.created_us)),
        (p + "Channel-Created-Time", str(ch.created_us)),
        (p + "Channel-Answered-Time", str(t.get("answered", 0))),
        (p + "Channel-Progress-Time", str(t.get("progress", 0))),
        (p + "Channel-Progress-Media-Time", str(t.get("progress_media", 0))),
        (p + "Channel-Hangup-Time", str(t.get("hangup", 0))),
        (p + "Channel-Transfer-Time", str(t.get("transfer", 0))),
        (p + "Channel-Resurrect-Time", "0"),
        (p + "Channel-Bridged-Time", str(t.get("bridged", 0))),
        (p + "Channel-Last-Hold", "0"),
        (p + "Channel-Hold-Accum", "0"),
        (p + "Screen-Bit", "true"),
        (p + "Privacy-Hide-Name", "false"),
        (p + "Privacy-Hide-Number", "false"),
    ]
    return h


def channel_headers(ch: Channel, *, with_vars: bool = True) -> list[tuple[str, str]]:
    """Channel block + caller profile (+ other leg) (+ variables), FreeSWITCH's order."""
    h: list[tuple[str, str]] = [
        ("Channel-State", ch.state),
        ("Channel-Call-State", ch.call_state),
        ("Channel-State-Number", str(STATE_NUMBERS.get(ch.state, 0))),
        ("Channel-Name", ch.name),
        ("Unique-ID", ch.uuid),
        ("Call-Direction", ch.direction),
        ("Presence-Call-Direction", ch.direction),
        ("Channel-HIT-Dialplan", "true" if ch.hit_dialplan else "false"),
    ]
    _opt(h, "Channel-Presence-ID", ch.presence_id)
    h.append(("Channel-Call-UUID", ch.uuid))
    h.append(("Answer-State", ch.answer_state))
    _opt(h, "Hangup-Cause", ch.hangup_cause)
    if ch.codec is not None:
        name, rate, bits = ch.codec
        h += [
            ("Channel-Read-Codec-Name", name),
            ("Channel-Read-Codec-Rate", rate),
            ("Channel-Read-Codec-Bit-Rate", bits),
            ("Channel-Write-Codec-Name", name),
            ("Channel-Write-Codec-Rate", rate),
            ("Channel-Write-Codec-Bit-Rate", bits),
        ]
    h += profile_headers(ch, "Caller-")
    partner = ch.bridged_to or ch.other
    if partner is not None:
        h.append(("Other-Type", ch.other_type or "originatee"))
        h += profile_headers(partner, "Other-Leg-", other=True)
    if with_vars:
        h += [("variable_" + k, v) for k, v in ch.variables.items()]
    return h


class ChannelEvents:
    """Fires FreeSWITCH events for channel changes through the protocol layer.

    ``factory`` is the protocol engineer's ``EventFactory`` (``make``), ``fire``
    the ``EventBus.fire``; ``now_us`` gives switch time in microseconds.
    """

    def __init__(self, factory: Any, fire: Callable[[Any], None], now_us: Callable[[], int]):
        self._factory = factory
        self._fire = fire
        self.now_us = now_us

    # -- raw ---------------------------------------------------------------

    def fire(
        self,
        name: str,
        ch: Channel,
        *,
        pre: Iterable[tuple[str, str]] = (),
        mid: Iterable[tuple[str, str]] = (),
        with_vars: bool | None = None,
        leading: Iterable[tuple[str, str]] = (),
        subclass: str | None = None,
        event_app: bool = False,
    ) -> Any:
        """Fire ``name`` for ``ch``: ``pre`` headers go before the channel block,
        ``mid`` ones after Answer-State/Hangup-Cause (where Application,
        DTMF-Digit, Playback-File-Path... sit in real events)."""
        file, func, line, has_vars = _ORIGIN.get(name, ("switch_channel.c", "", 0, True))
        if with_vars is not None:
            has_vars = with_vars
        block = channel_headers(ch, with_vars=has_vars)
        mid = list(mid)
        if mid:
            at = next(i for i, (k, _) in enumerate(block) if k == "Answer-State") + 1
            if ch.hangup_cause:
                at += 1
            block[at:at] = mid
        ev = self._factory.make(
            name,
            list(pre) + block,
            calling_file=file,
            calling_function=func,
            calling_line=line,
            leading=leading,
            subclass=subclass,
            event_app=event_app,
        )
        self._fire(ev)
        return ev

    # -- state changes -------------------------------------------------------

    def state(self, ch: Channel, state: str) -> None:
        ch.state = state
        self.fire("CHANNEL_STATE", ch)

    def callstate(self, ch: Channel, call_state: str) -> None:
        original, ch.call_state = ch.call_state, call_state
        self.fire(
            "CHANNEL_CALLSTATE",
            ch,
            pre=[
                ("Original-Channel-Call-State", original),
                ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS[call_state])),
            ],
        )

    def codec(self, ch: Channel, codec: tuple[str, str, str] = ("PCMU", "8000", "64000")) -> None:
        """The two CODEC events (read, write) a leg fires when media is set up."""
        ch.codec = codec
        self.fire("CODEC", ch)
        self.fire("CODEC", ch)

    def progress(self, ch: Channel) -> None:
        """Ringing: CHANNEL_PROGRESS (+ CALLSTATE RINGING on an outbound leg)."""
        ch.times.setdefault("progress", self.now_us())
        ch.variables.setdefault("progress_uepoch", str(ch.times["progress"]))
        self.fire("CHANNEL_PROGRESS", ch)
        if ch.direction == "outbound" and ch.call_state != "RINGING":
            self.callstate(ch, "RINGING")

    def progress_media(self, ch: Channel) -> None:
        ch.times.setdefault("progress_media", self.now_us())
        ch.answer_state = "early"
        self.fire("CHANNEL_PROGRESS_MEDIA", ch)
        self.callstate(ch, "EARLY")

    def answer(self, ch: Channel) -> None:
        if ch.answered or ch.is_hungup:
            return
        now = self.now_us()
        ch.times["answered"] = now
        ch.answer_state = "answered"
        ch.variables["answer_uepoch"] = str(now)
        if ch.codec is None:
            ch.codec = ("PCMU", "8000", "64000")
        self.fire("CHANNEL_ANSWER", ch)
        self.callstate(ch, "ACTIVE")

    def execute(self, ch: Channel, app: str, data: str, app_uuid: str) -> None:
        ch.application, ch.application_data = app, data
        ch.variables["current_application"] = app
        if data:
            ch.variables["current_application_data"] = data
        mid = [("Application", app)]
        _opt(mid, "Application-Data", data)
        mid.append(("Application-UUID", app_uuid))
        self.fire("CHANNEL_EXECUTE", ch, mid=mid)

    def execute_complete(
        self, ch: Channel, app: str, data: str, app_uuid: str, response: str = "_none_"
    ) -> None:
        ch.variables["last_app"] = app
        if data:
            ch.variables["last_arg"] = data
        mid = [("Application", app)]
        _opt(mid, "Application-Data", data)
        mid += [("Application-Response", response or "_none_"), ("Application-UUID", app_uuid)]
        self.fire("CHANNEL_EXECUTE_COMPLETE", ch, mid=mid)

    def hangup(self, ch: Channel, cause: str) -> bool:
        """Mark the channel hung up and fire CHANNEL_HANGUP. False if it already was."""
        if ch.hangup_cause:
            return False
        now = self.now_us()
        ch.hangup_cause = cause
        ch.answer_state = "hangup"
        ch.times["hangup"] = now
        ch.variables["hangup_cause"] = cause
        ch.variables["hangup_cause_q850"] = str(HANGUP_CAUSES.get(cause, 16))
        self.fire("CHANNEL_HANGUP", ch)
        return True

    def teardown(self, ch: Channel) -> None:
        """The events after CHANNEL_HANGUP: reporting, HANGUP_COMPLETE, DESTROY."""
        self.state(ch, "CS_HANGUP")
        self.callstate(ch, "HANGUP")
        self.state(ch, "CS_REPORTING")
        self._final_vars(ch)
        self.fire("CHANNEL_HANGUP_COMPLETE", ch, pre=[("Hangup-Cause", ch.hangup_cause)])
        self.fire("CHANNEL_DESTROY", ch)
        self.state(ch, "CS_DESTROY")

    def _final_vars(self, ch: Channel) -> None:
        t = ch.times
        start = ch.created_us
        end = t.get("hangup") or self.now_us()
        answered = t.get("answered", 0)
        v = ch.variables
        v["start_epoch"] = str(start // 1_000_000)
        v["start_uepoch"] = str(start)
        v["answer_epoch"] = str(answered // 1_000_000)
        v["answer_uepoch"] = str(answered)
        v["bridge_uepoch"] = str(t.get("bridged", 0))
        v["progress_uepoch"] = str(t.get("progress", 0))
        v["end_epoch"] = str(end // 1_000_000)
        v["end_uepoch"] = str(end)
        v["duration"] = str(round((end - start) / 1_000_000))
        v["billsec"] = str(round((end - answered) / 1_000_000)) if answered else "0"
        v["billmsec"] = str((end - answered) // 1000) if answered else "0"
        v["answersec"] = str(round((answered - start) / 1_000_000)) if answered else "0"
        v["progresssec"] = (
            str(round((t["progress"] - start) / 1_000_000)) if t.get("progress") else "0"
        )
