"""Channels of the fake FreeSWITCH.

Theory of operation
-------------------
A :class:`Channel` holds what FreeSWITCH reports about a call leg: the
Unique-ID, name, direction, running state (``CS_*``), call state (``DOWN``,
``RINGING``, ``EARLY``, ``ACTIVE``, ``HANGUP``), answer state, the caller
profile (caller-id, destination, context, timestamps), channel variables and
the bridge partner.

Every state change goes through
:class:`~ccd.fakeswitch.channel_events.ChannelEvents`, which both mutates the
channel and fires the event FreeSWITCH fires for that change.

The runtime part of a channel (inbox of queued commands, wake-up event,
pending hangup, break flag) lets other greenlets (API commands, the caller
model, the partner leg) interrupt whatever the channel's own greenlet waits
for: every wait in the fake goes through :meth:`Channel.wait`.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
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


#: Random version-4 uuids without a UUID object each time: a private generator seeded
#: from the OS (again in a forked child), so seeding ``random`` does not repeat them.
_uuid_bits = random.Random()
os.register_at_fork(after_in_child=_uuid_bits.seed)
_UUID4 = (1 << 78) | (1 << 63)  # version 4, RFC 4122 variant
_UUID4_KEEP = ~((0xF << 76) | (0x3 << 62))


def new_uuid() -> str:
    h = "%032x" % (_uuid_bits.getrandbits(128) & _UUID4_KEEP | _UUID4)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
    #: Greenlets that act on this leg later (the party's talk time); gone with the leg.
    timers: list = field(default_factory=list)

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

    def take_interrupt(self) -> Interrupt | None:
        interrupt, self.interrupt = self.interrupt, None
        return interrupt

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
                # Raised straight from the call: a local naming it would tie the
                # exception, its traceback and this frame into a reference cycle.
                raise self.take_interrupt()
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
