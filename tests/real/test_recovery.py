"""Issue 13 on a real FreeSWITCH: no call lost, caller side.

A caller who gives up after the sales queue's ``abandoned_after`` (3 s here; 20 s is the
default) becomes an ``abandoned`` callback request, one who gives up sooner does not, and the
same number calling again and reaching an agent closes the request. A caller sent to the
general queue's voicemail (nobody there can answer: ``no_agents = "voicemail"``) who leaves a
message becomes a ``voicemail`` request: the caller's side plays a tone once mod_voicemail
records (``RECORD_START``), so the message is long enough to be kept (the kit's profile:
``min-record-len`` 3 s), and mod_voicemail's own ``vm::maintenance`` / ``leave-message`` is
the proof a message was stored. Waits are measured with FreeSWITCH's event stamps; requests
are read from the centre's Redis through the project's store, as the CLI reads them.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.real.lab import bridged_pair, is_execute, queued, stamp, wait_for
from tests.support.fs_order import MESSAGE_ORDER, message_order

ABANDONED_AFTER = 3.0
PATIENT = "+3612345610"  # waits past abandoned_after, then hangs up
HASTY = "+3612345611"  # hangs up before it
RETURNING = "+3612345612"  # hangs up past it, then calls again and is answered
MESSAGE = "+3612345613"  # leaves a message

CONFIG = {
    "routing": {"ring_time": 8, "wrapup_time": 1},
    "queues": {
        "sales": {
            "tags": ["sales"],
            "overflow_time": 0,
            "no_agents": "wait",
            "abandoned_callback": True,
            "abandoned_after": ABANDONED_AFTER,
            # Nobody dials the requests by themselves: an agent would take them with *25.
            "callback_strategy": "passive",
        },
        "general": {
            "tags": ["general"],
            "overflow_time": 0,
            "no_agents": "voicemail",
            "voicemail_callback": True,
            "callback_strategy": "passive",
        },
    },
    "agents": {"cary": {"extension": "1008", "tags": ["sales"]}},  # answers after 0.3 s
}

#: Besides the witness's usual events: when mod_voicemail starts recording, when the
#: caller's tone ends, the caller's hangup, what ended the voicemail application, and
#: mod_voicemail's message event (CUSTOM last: every word after it is read as a subclass).
RECORDING_EVENTS = ("RECORD_START", "PLAYBACK_STOP", "CHANNEL_HANGUP",
                    "CHANNEL_EXECUTE_COMPLETE", "CUSTOM", "vm::maintenance")  # fmt: skip


@pytest.fixture(scope="module")
def center(make_center, make_phone, fs):
    fs.subscribe(*RECORDING_EVENTS)
    center = make_center(CONFIG)
    center.cary = make_phone("1008", ("answer", 300))
    return center


def hung_up(fs, caller, mark):
    return fs.wait_event(
        lambda s: s.uuid == caller.b and s.name == "CHANNEL_HANGUP_COMPLETE",
        since=mark, what="the caller's hangup",
    )  # fmt: skip


def hang_up_at(caller, when: float) -> None:
    """Hang the caller up at epoch second ``when`` (FreeSWITCH's stamps are epoch too)."""
    time.sleep(max(0.0, when - time.time()))
    caller.hang_up()


def test_caller_hanging_up_past_abandoned_after_becomes_an_abandoned_request(center, fs, call):
    mark = fs.mark()
    patient = call("ccd_queue_sales", number=PATIENT, name="Patient")
    hasty = call("ccd_queue_sales", number=HASTY, name="Hasty")
    parked = {c.b: stamp(queued(fs, c, mark)) for c in (patient, hasty)}
    hang_up_at(hasty, parked[hasty.b] + 1.0)
    hang_up_at(patient, parked[patient.b] + ABANDONED_AFTER + 0.8)
    # How long each waited in the queue, by FreeSWITCH's clock.
    waited = {c.b: stamp(hung_up(fs, c, mark)) - parked[c.b] for c in (patient, hasty)}
    assert waited[hasty.b] < ABANDONED_AFTER <= waited[patient.b], waited
    store = center.callbacks()
    request = wait_for(lambda: store.get(f"ab-{patient.b}"), 10, "the abandoned request")
    assert (request.reason, request.status) == ("abandoned", "pending")
    assert (request.number, request.queue, request.caller_uuid) == (PATIENT, "sales", patient.b)
    # The hasty caller's decision is logged once the daemon took it: nothing stored.
    skipped = center.wait_logged("callback.not_stored", call_uuid=hasty.b)
    assert skipped["why"] == "short_wait"
    assert [r.id for r in store.list() if r.number == HASTY] == []


def test_same_number_calling_again_and_answered_closes_the_abandoned_request(center, fs, call):
    mark = fs.mark()
    first = call("ccd_queue_sales", number=RETURNING, name="Returning")
    hang_up_at(first, stamp(queued(fs, first, mark)) + ABANDONED_AFTER + 0.8)
    store = center.callbacks()
    request = wait_for(lambda: store.get(f"ab-{first.b}"), 10, "the abandoned request")
    assert request.status == "pending"
    center.set_login("login", "cary")
    try:
        mark = fs.mark()
        again = call("ccd_queue_sales", number=RETURNING, name="Returning")
        leg = wait_for(lambda: bridged_pair(fs.snapshot()[mark:], again.b), 10, "the bridge")
        assert fs.api(f"uuid_getvar {leg} ccd_agent").strip() == "cary"
        closed = wait_for(
            lambda: (r := store.require(request.id)).status == "cancelled" and r,
            5,
            "the abandoned request closed",
        )
        # Closed when the number entered the queue again, before the agent answered.
        assert closed.closed_reason == "called_again"
        assert [r.id for r in store.list() if r.number == RETURNING] == [request.id]
        again.hang_up()
        hung_up(fs, again, mark)
    finally:
        with contextlib.suppress(Exception):
            center.set_login("logout", "cary")


def test_message_left_in_the_queues_voicemail_becomes_a_voicemail_request(center, fs, call):
    mark = fs.mark()
    caller = call("ccd_queue_general", number=MESSAGE, name="Message")
    sent = fs.wait_event(
        lambda s: is_execute(s, caller.b, "voicemail"),
        since=mark, what="the caller sent to voicemail",
    )  # fmt: skip
    assert sent.get("Application-Data").split()[-1] == "general"
    # The greeting ("the person at extension g-e-n-e-r-a-l is not available...") lasts
    # about 9 s on the kit; the recording starts after its beep.
    fs.wait_event(
        lambda s: s.uuid == caller.b and s.name == "RECORD_START",
        timeout=20, since=mark, what="mod_voicemail recording",
    )  # fmt: skip
    # The caller speaks: 5 s of tone from the caller's side of the loopback.
    reply = fs.api(f"uuid_broadcast {caller.a} tone_stream://%(5000,0,440) aleg")
    assert reply.startswith("+OK"), reply
    fs.wait_event(
        lambda s: s.uuid == caller.a and s.name == "PLAYBACK_STOP",
        timeout=10, since=mark, what="the caller's tone ended",
    )  # fmt: skip
    caller.hang_up()
    left = fs.wait_event(
        lambda s: (
            s.name == "CUSTOM"
            and s.get("Event-Subclass") == "vm::maintenance"
            and s.get("VM-Action") == "leave-message"
            and s.get("VM-UUID") == caller.b
        ),
        timeout=10, since=mark, what="vm::maintenance leave-message",
    )  # fmt: skip
    try:
        assert (left.get("VM-User"), left.get("VM-Caller-ID-Number")) == ("general", MESSAGE)
        # Delivered after the caller's hangup, from the hung-up channel, before its end.
        assert (left.get("Answer-State"), left.get("Hangup-Cause")) == ("hangup", "NORMAL_CLEARING")
        assert (left.get("Channel-State"), left.get("Channel-Call-State")) == (
            "CS_EXECUTE",
            "ACTIVE",
        )
        assert left.var("ccd_queue") == "general"
        hung_up(fs, caller, mark)
        assert message_order(fs.snapshot()[mark:], caller.b, left.get("VM-User")) == MESSAGE_ORDER
        assert int(left.get("VM-Message-Len")) >= 3
        store = center.callbacks()
        request = wait_for(lambda: store.get(f"vm-{caller.b}"), 10, "the voicemail request")
        assert (request.reason, request.status) == ("voicemail", "pending")
        assert (request.number, request.queue) == (MESSAGE, "general")
        assert request.caller_uuid == caller.b
    finally:
        # The kit's voicemail box keeps nothing of the tier's runs.
        fs.api(f"vm_delete {left.get('VM-User')}@{left.get('VM-Domain')} {left.get('VM-UUID')}")
