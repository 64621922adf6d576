"""The fake FreeSWITCH's voicemail against FreeSWITCH 1.10.12 (ccd.fakeswitch.voicemail).

On the kit (tests/real/test_recovery.py, which checks the same order on the real switch), a
caller who hangs up while mod_voicemail records gets, in this order: CHANNEL_HANGUP, the
message's ``vm::maintenance`` ``leave-message`` carrying the hung-up channel (Answer-State
hangup), the box's ``mwi-update``, the voicemail application's EXECUTE_COMPLETE, and the
channel's end. The daemon turning such a message into a callback request is
tests/test_recovery_e2e.py.
"""

from __future__ import annotations

from tests.support.fs_order import MESSAGE_ORDER, message_order

CALLER = "+3612345613"


class _Seen:
    """The real tier's view of an event (tests.real.esl.Seen) over the fake's events."""

    def __init__(self, event) -> None:
        self.event = event
        self.name, self.uuid = event.name, event.uuid

    def get(self, key: str, default: str = "") -> str:
        return self.event.get(key, default)


def left_a_message(fakeswitch, esl):
    uuid = fakeswitch.place_call(CALLER, "Message", destination="ccd_voicemail_general")
    esl.wait_gone(uuid)
    return uuid, [e for e in esl.events if e.subclass == "vm::maintenance"]


def test_the_message_is_delivered_after_the_callers_hangup_as_freeswitch_does(fakeswitch, esl):
    uuid, _ = left_a_message(fakeswitch, esl)
    assert message_order([_Seen(e) for e in esl.events], uuid, "general") == MESSAGE_ORDER


def test_leave_message_carries_the_hung_up_channel_then_the_box_totals(fakeswitch, esl):
    uuid, (left, mwi) = left_a_message(fakeswitch, esl)
    assert [(k, left.get(k)) for k in ("VM-Action", "VM-User", "VM-Domain", "VM-Caller-ID-Name",
                                       "VM-Caller-ID-Number", "VM-UUID")] == [
        ("VM-Action", "leave-message"), ("VM-User", "general"), ("VM-Domain", "127.0.0.1"),
        ("VM-Caller-ID-Name", "Message"), ("VM-Caller-ID-Number", CALLER), ("VM-UUID", uuid),
    ]  # fmt: skip
    assert left.uuid == uuid
    assert int(left.get("VM-Message-Len")) >= 3
    assert (left.get("Event-Calling-Function"), left.get("Event-Calling-Line-Number")) == (
        "deliver_vm",
        "2896",
    )
    # The channel data of a channel hung up and still running the application.
    assert (left.get("Answer-State"), left.get("Hangup-Cause")) == ("hangup", "NORMAL_CLEARING")
    assert (left.get("Channel-State"), left.get("Channel-Call-State")) == ("CS_EXECUTE", "ACTIVE")
    assert mwi.get("VM-Action") == "mwi-update" and not mwi.uuid
    assert [(k, mwi.get(k)) for k in ("VM-User", "VM-Domain", "VM-Total-New")] == [
        ("VM-User", "general"),
        ("VM-Domain", "127.0.0.1"),
        ("VM-Total-New", "1"),
    ]
    done = next(
        e
        for e in esl.events
        if e.uuid == uuid
        and e.name == "CHANNEL_EXECUTE_COMPLETE"
        and e.get("Application") == "voicemail"
    )
    assert done.var("voicemail_account") == "general"
    assert done.var("voicemail_message_len") == "00:00:03"
