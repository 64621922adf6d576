"""Issue 13's pure rules (ccd.core.recovery) and the vm::maintenance decoding."""

from __future__ import annotations

import pytest

from ccd.core import events as ev
from ccd.core.callback import NumberRules, Reason, new_request, with_status
from ccd.core.esl_wire import EslEvent
from ccd.core.recovery import (
    RecoveryPolicy,
    abandoned_candidate,
    close,
    request_id,
    settle,
    to_close,
    voicemail_candidate,
)

RULES = NumberRules()
ON = RecoveryPolicy(abandoned=True, abandoned_after=20.0, voicemail=True)
NUMBER = "+3612345678"


def abandoned(policy=ON, phase="waiting", waited=25.0, number=NUMBER):
    return abandoned_candidate(policy, phase=phase, waited=waited, caller_number=number,
                               rules=RULES)  # fmt: skip


def test_waited_over_the_threshold_is_a_candidate():
    assert abandoned().store and abandoned().number == NUMBER
    assert abandoned(waited=20.0).store  # "at least" the threshold
    assert abandoned(number="06 1 234 5678").number == NUMBER  # normalised


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"waited": 19.9}, "short_wait"),
        ({"policy": RecoveryPolicy()}, "off"),
        ({"policy": RecoveryPolicy(abandoned=False, voicemail=True)}, "off"),
        ({"phase": "answered"}, "agent_reached"),
        ({"phase": "bridging"}, "agent_reached"),
        ({"number": ""}, "no_number"),
        ({"number": "anonymous"}, "no_number"),
        ({"number": "0000000000"}, "no_number"),
        ({"number": "112"}, "refused:emergency"),
        ({"number": "+3690123456"}, "refused:premium"),
        ({"number": "+4412345678"}, "refused:international"),
        ({"number": "1234"}, "refused:too_short"),
    ],
)
def test_abandoned_not_a_candidate(kwargs, why):
    decision = abandoned(**kwargs)
    assert not decision.store and decision.why == why


@pytest.mark.parametrize("phase", ["waiting", "ringing", "retry", "cancelling", "offering"])
def test_no_agent_reached_in_these_phases(phase):
    assert abandoned(phase=phase).store


def test_do_not_call_and_duplicates_are_settled_away():
    candidate = abandoned()
    assert settle(candidate, do_not_call=False, open_requests=0) == candidate
    assert settle(candidate, do_not_call=True, open_requests=0).why == "do_not_call"
    assert settle(candidate, do_not_call=False, open_requests=1).why == "open_request"
    refused = abandoned(waited=1.0)
    assert settle(refused, do_not_call=True, open_requests=3) == refused  # first reason stays


def test_voicemail_candidate():
    assert voicemail_candidate(ON, caller_number=NUMBER, rules=RULES).number == NUMBER
    off = RecoveryPolicy(abandoned=True)
    assert voicemail_candidate(off, caller_number=NUMBER, rules=RULES).why == "off"
    assert voicemail_candidate(ON, caller_number="", rules=RULES).why == "no_number"


def test_ids_are_one_per_call_or_message():
    uuid = "c0d4991e-5320-4809-ba0b-2883778f2bff"
    assert request_id(Reason.ABANDONED, uuid) == "ab-" + uuid
    assert request_id(Reason.VOICEMAIL, uuid) == "vm-" + uuid


def _request(rid, number=NUMBER, reason=Reason.ABANDONED):
    return new_request(rid, number, "sales", created_at=1.0, order_key=1.0, caller_uuid="c",
                       strategy="active", caller_number=number, reason=reason)  # fmt: skip


def test_a_returning_number_closes_its_pending_abandoned_requests_only():
    mine = _request("ab-1")
    working = with_status(_request("ab-2"), "working", 2.0)
    offer = _request("cb-3", reason=Reason.OFFER)
    voicemail = _request("vm-4", reason=Reason.VOICEMAIL)
    other = _request("ab-5", number="+3612345600")
    assert to_close([mine, working, offer, voicemail, other], NUMBER) == [mine]
    closed = close(mine, "called_again")
    assert (closed.status, closed.closed_reason, closed.next_due_at) == (
        "cancelled", "called_again", None)  # fmt: skip
    assert close(working, "served") == working  # a dialer has it: left to its outcome
    retried = with_status(closed, "pending", 9.0)  # an operator's retry clears the reason
    assert retried.closed_reason == "" and retried.reason is Reason.ABANDONED


def test_reason_round_trips_and_old_records_are_offers():
    request = _request("vm-1", reason=Reason.VOICEMAIL)
    data = request.to_dict()
    assert type(request).from_dict(data) == request
    del data["reason"], data["closed_reason"]
    assert type(request).from_dict(data).reason is Reason.OFFER


UUID = "a1b2c3d4-0000-4000-8000-000000000001"


def _vm_event(**changes):
    # Header names and order of mod_voicemail.c deliver_vm (FreeSWITCH 1.10.12), then the
    # caller's channel data and variables.
    headers = {
        "Event-Subclass": "vm::maintenance", "Event-Name": "CUSTOM",
        "Event-Calling-File": "mod_voicemail.c", "Event-Calling-Function": "deliver_vm",
        "VM-Action": "leave-message", "VM-User": "sales", "VM-Domain": "127.0.0.1",
        "VM-Caller-ID-Name": "Doe", "VM-Caller-ID-Number": NUMBER,
        "VM-File-Path": "/var/lib/freeswitch/storage/voicemail/default/127.0.0.1/sales/m.wav",
        "VM-Flags": "B_NORMAL", "VM-Folder": "inbox", "VM-UUID": UUID,
        "VM-Message-Len": "7", "VM-Timestamp": "1795381183",
        "Unique-ID": UUID, "variable_ccd_queue": "sales",
    }  # fmt: skip
    headers.update(changes)
    return EslEvent({k: v for k, v in headers.items() if v is not None})


def test_leave_message_is_decoded():
    assert ev.from_esl(_vm_event()) == ev.VoicemailLeft(UUID, "sales", NUMBER, "Doe", "sales", 7)


@pytest.mark.parametrize(
    "changes",
    [
        {"VM-Action": "mwi-update"},
        {"VM-Action": "folder-summary"},
        {"VM-User": "bad box"},
        {"VM-UUID": "nope", "Unique-ID": "nope"},
        {"Event-Subclass": "vm::other"},
    ],
)
def test_other_voicemail_events_are_ignored(changes):
    assert ev.from_esl(_vm_event(**changes)) is None


def test_subscription_names_the_voicemail_subclass():
    from ccd.adapters.esl import subscription_command
    from ccd.daemon import SUBSCRIBED_EVENTS

    line = subscription_command(SUBSCRIBED_EVENTS, "json")
    assert line.split("CUSTOM", 1)[1].split() == [
        "sofia::register", "sofia::unregister", "sofia::expire", "vm::maintenance"]  # fmt: skip
