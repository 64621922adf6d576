"""The CHANNEL_* events of the fake FreeSWITCH's channels: header blocks and firing.

:class:`ChannelEvents` both mutates a :class:`~ccd.fakeswitch.channels.Channel` and fires
the event FreeSWITCH fires for that change, with the header names and order recorded in
``fs-captures/`` (standard block, event-specific headers, channel block, caller profile,
other-leg block, ``variable_*``). Callers of these helpers (``switch.py``, ``apps.py``)
decide *when* things happen; the order of the helper calls is the event order on the wire,
and ``tests/test_fakeswitch_calls.py`` compares it per leg with SEQUENCES.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from ccd.fakeswitch.channels import CALLSTATE_NUMBERS, HANGUP_CAUSES, STATE_NUMBERS, Channel

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


def _opt(headers: list[tuple[str, str]], name: str, value: str) -> None:
    if value:
        headers.append((name, value))


_PROFILE_FIELDS = (
    "Direction",
    "Logical-Direction",
    "Username",
    "Dialplan",
    "Caller-ID-Name",
    "Caller-ID-Number",
    "Orig-Caller-ID-Name",
    "Orig-Caller-ID-Number",
    "Callee-ID-Name",
    "Callee-ID-Number",
    "Network-Addr",
    "ANI",
    "Destination-Number",
    "Unique-ID",
    "Source",
    "Transfer-Source",
    "Context",
    "Channel-Name",
    "Profile-Index",
    "Profile-Created-Time",
    "Channel-Created-Time",
    "Channel-Answered-Time",
    "Channel-Progress-Time",
    "Channel-Progress-Media-Time",
    "Channel-Hangup-Time",
    "Channel-Transfer-Time",
    "Channel-Bridged-Time",
)
_PROFILE_TAIL = (
    ("Channel-Last-Hold", "0"),
    ("Channel-Hold-Accum", "0"),
    ("Screen-Bit", "true"),
    ("Privacy-Hide-Name", "false"),
    ("Privacy-Hide-Number", "false"),
)


@functools.cache
def _profile_names(prefix: str) -> tuple[tuple[str, ...], tuple[str, str], list[tuple[str, str]]]:
    """A prefix's header names, its Channel-Resurrect-Time header and its constant tail."""
    return (
        tuple(prefix + name for name in _PROFILE_FIELDS),
        (prefix + "Channel-Resurrect-Time", "0"),
        [(prefix + name, value) for name, value in _PROFILE_TAIL],
    )


def profile_headers(ch: Channel, prefix: str, *, other: bool = False) -> list[tuple[str, str]]:
    """The caller-profile block (``Caller-*`` or ``Other-Leg-*``)."""
    n, resurrect, tail = _profile_names(prefix)
    cid_name, cid_number = ch.caller_id_name, ch.caller_id_number
    h: list[tuple[str, str]] = [
        (n[0], ch.direction),
        (n[1], "inbound" if other else ch.direction),
    ]
    if ch.username:
        h.append((n[2], ch.username))
    if ch.dialplan:
        h.append((n[3], ch.dialplan))
    if cid_name:
        h.append((n[4], cid_name))
    h.append((n[5], cid_number))
    if cid_name:
        h.append((n[6], cid_name))
    h.append((n[7], cid_number))
    if ch.callee_id_name:
        h.append((n[8], ch.callee_id_name))
    if ch.callee_id_number:
        h.append((n[9], ch.callee_id_number))
    if ch.network_addr:
        h.append((n[10], ch.network_addr))
    h += ((n[11], cid_number), (n[12], ch.destination_number), (n[13], ch.uuid), (n[14], ch.source))
    if not other and ch.transfer_source:
        h.append((n[15], ch.transfer_source))
    h.append((n[16], ch.context))
    h.append((n[17], ch.name))
    if not other:
        h.append((n[18], str(ch.profile_index)))
    t = ch.times
    created = str(ch.created_us)
    h += (
        (n[19], created),
        (n[20], created),
        (n[21], str(t.get("answered", 0))),
        (n[22], str(t.get("progress", 0))),
        (n[23], str(t.get("progress_media", 0))),
        (n[24], str(t.get("hangup", 0))),
        (n[25], str(t.get("transfer", 0))),
        resurrect,
        (n[26], str(t.get("bridged", 0))),
    )
    h += tail
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
    if ch.presence_id:
        h.append(("Channel-Presence-ID", ch.presence_id))
    h.append(("Channel-Call-UUID", ch.uuid))
    h.append(("Answer-State", ch.answer_state))
    if ch.hangup_cause:
        h.append(("Hangup-Cause", ch.hangup_cause))
    if ch.codec is not None:
        name, rate, bits = ch.codec
        h += (
            ("Channel-Read-Codec-Name", name),
            ("Channel-Read-Codec-Rate", rate),
            ("Channel-Read-Codec-Bit-Rate", bits),
            ("Channel-Write-Codec-Name", name),
            ("Channel-Write-Codec-Rate", rate),
            ("Channel-Write-Codec-Bit-Rate", bits),
        )
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
    the ``EventBus.fire``; ``now_us`` gives switch time in microseconds. ``wanted``
    (``EventBus.wanted``) says whether anyone may want an event of that name: when
    nobody does, the event only takes its sequence number (``factory.skip``).
    """

    def __init__(
        self,
        factory: Any,
        fire: Callable[[Any], None],
        now_us: Callable[[], int],
        wanted: Callable[[str], bool] | None = None,
    ):
        self._factory = factory
        self._fire = fire
        self.now_us = now_us
        self._wanted = wanted

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
        DTMF-Digit, Playback-File-Path... sit in real events). None when nobody
        listens for ``name``."""
        if self._wanted is not None and not self._wanted(name):
            self._factory.skip()
            return None
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
