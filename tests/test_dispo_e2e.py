"""R-DISPO's dialplan parts through the fake FreeSWITCH (the shipped freeswitch_conf/): the
*7 disposition entry and the agents' outbound do-not-call check, watched over a real ESL
socket. The daemon's side (answering the parks) is the call path's; here a test plays it with
the same API commands where a step needs one."""

from __future__ import annotations

import pytest

from ccd.core import events as ev

OUTSIDE = "0612345678"


@pytest.fixture
def phone(fakeswitch):
    fakeswitch.add_phone("1001")
    return "1001"


def parked(esl, uuid):
    return esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid)


def hangup(esl, uuid):
    return esl.wait_event(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == uuid)


def rang_outside(fakeswitch) -> list:
    return [r for r in fakeswitch.trace.of("ring") if r["party"] == OUTSIDE]


# --- *7: the disposition entry --------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialed", "digits"),
    [
        ("*705#", "05"),  # keyed in one go
        ("*705", "05"),  # a phone that sends # as "dial"
        ("*75", "5"),  # the daemon reads 5 as 05
        ("*799#", "99"),  # unknown: the daemon refuses it out loud
        ("*7123#", "123"),  # too many digits: refused by the daemon, with its own reason
    ],
)
def test_keyed_code_parks_for_the_daemon_with_action_and_digits(fakeswitch, esl, phone, dialed,
                                                                digits):  # fmt: skip
    uuid = fakeswitch.phone_call(phone, dialed)
    park = parked(esl, uuid)
    assert park.var("ccd_action") == "dispo"
    assert park.var("ccd_digits") == digits
    assert park.var("ccd_agent_ext") == phone
    # What the daemon's event decoder makes of it: a feature code from this agent's phone.
    assert ev.from_esl(park) == ev.FeatureCode(uuid, phone, "dispo", digits)


def test_star7_alone_asks_for_the_code_then_parks(fakeswitch, esl, phone):
    uuid = fakeswitch.phone_call(phone, "*7", digits=["11#"])
    park = parked(esl, uuid)
    assert (park.var("ccd_action"), park.var("ccd_digits")) == ("dispo", "11")
    assert fakeswitch.trace.of("digits", uuid=uuid)[0]["digits"] == "11#"


def test_twice_is_two_parks_the_daemon_decides_it_is_one_code(fakeswitch, esl, phone):
    first = fakeswitch.phone_call(phone, "*711#")
    assert parked(esl, first).var("ccd_digits") == "11"
    esl.api(f"uuid_kill {first}")
    second = fakeswitch.phone_call(phone, "*711#")
    assert parked(esl, second).var("ccd_digits") == "11"


@pytest.mark.parametrize("dialed", ["*7123456789#", "*7123456789"])
def test_an_overlong_entry_is_refused_by_the_dialplan_out_loud(fakeswitch, esl, phone,
                                                               dialed):  # fmt: skip
    uuid = fakeswitch.phone_call(phone, dialed)
    done = hangup(esl, uuid)
    assert done.get("Hangup-Cause") == "UNALLOCATED_NUMBER"
    assert fakeswitch.trace.of("playback", uuid=uuid)  # the agent hears why
    assert not any(e.name == "CHANNEL_PARK" and e.uuid == uuid for e in esl.events)


# --- the agents' outbound calls: do-not-call check ---------------------------------------------


def test_outside_number_parks_for_the_check_before_anything_is_dialled(fakeswitch, esl, phone):
    fakeswitch.add_outside(OUTSIDE, answer_after=1, hangup_after=3)
    uuid = fakeswitch.phone_call(phone, OUTSIDE)
    park = parked(esl, uuid)
    assert park.var("ccd_action") == "outbound_check"
    assert park.var("ccd_dialed") == OUTSIDE and park.var("ccd_agent_ext") == phone
    assert not park.var("ccd_outbound")  # not an outside call yet
    assert isinstance(ev.from_esl(park), ev.FeatureCode)
    assert rang_outside(fakeswitch) == []


def test_allowed_number_goes_out_once_the_daemon_transfers_it(fakeswitch, esl, phone):
    fakeswitch.add_outside(OUTSIDE, answer_after=1, hangup_after=3)
    uuid = fakeswitch.phone_call(phone, OUTSIDE)
    parked(esl, uuid)
    assert esl.api(f"uuid_transfer {uuid} ccd_outbound_go XML ccd_agents").startswith("+OK")
    done = hangup(esl, uuid)
    assert done.var("originate_disposition") == "SUCCESS"
    # What the daemon's outside-call handling reads at the end (ccd.engine.presence).
    assert done.var("ccd_outbound") == "true" and done.var("ccd_dialed") == OUTSIDE
    assert not done.var("ccd_action")
    assert len(rang_outside(fakeswitch)) == 1
    assert not fakeswitch.trace.of("scheduled_transfer", uuid=uuid)  # the safety was cancelled


def test_listed_number_is_refused_with_a_prompt_and_never_dialled(fakeswitch, esl, phone):
    fakeswitch.add_outside(OUTSIDE, answer_after=1, hangup_after=3)
    uuid = fakeswitch.phone_call(phone, OUTSIDE)
    parked(esl, uuid)
    esl.api(f"uuid_transfer {uuid} ccd_outbound_refused XML ccd_agents")
    done = hangup(esl, uuid)
    assert done.get("Hangup-Cause") == "CALL_REJECTED"
    assert not done.var("ccd_outbound")  # no call went out: no binding, no contact
    assert fakeswitch.trace.of("playback", uuid=uuid)
    assert rang_outside(fakeswitch) == []
    assert not fakeswitch.trace.of("scheduled_transfer", uuid=uuid)


def test_no_daemon_the_call_goes_out_unchecked_after_a_moment(fakeswitch, esl, phone):
    fakeswitch.add_outside(OUTSIDE, answer_after=1, hangup_after=3)
    uuid = fakeswitch.phone_call(phone, OUTSIDE)
    parked(esl, uuid)
    done = hangup(esl, uuid)  # ccd_direct_check_s of switch time, then ccd_outbound_go
    assert fakeswitch.trace.of("scheduled_transfer", uuid=uuid)
    assert done.var("originate_disposition") == "SUCCESS" and done.var("ccd_outbound") == "true"
    assert len(rang_outside(fakeswitch)) == 1
