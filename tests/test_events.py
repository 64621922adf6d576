"""ccd.core.events: FreeSWITCH's recorded events become the right domain events."""

from __future__ import annotations

import random

import pytest

from ccd.core.esl_wire import EslEvent, FrameParser, decode_event
from ccd.core.events import (
    CallParked,
    ChannelAnswered,
    ChannelBridged,
    ChannelCreated,
    ChannelHangup,
    ChannelUnbridged,
    ExecuteComplete,
    FeatureCode,
    JobResult,
    PhoneRegistered,
    PhoneUnregistered,
    from_esl,
    parse_tags,
)
from tests.support.captures import captures_dir

U = "2424723f-9c09-402f-ab5d-040548ab2184"


def capture_events(name: str) -> list[EslEvent]:
    base = captures_dir()
    if base is None:
        pytest.skip("fs-captures not available")
    parser = FrameParser()
    parser.feed((base / f"{name}.raw").read_bytes())
    return [
        decode_event(f) for f in parser if f.content_type in ("text/event-plain", "text/event-json")
    ]


def domain(name: str, cls: type) -> list:
    return [d for d in map(from_esl, capture_events(name)) if isinstance(d, cls)]


def test_park_with_ccd_queue_is_a_queued_call_and_the_other_loopback_leg_is_ignored():
    parked = domain("14_dialplan_park_vars_and_custom_event", CallParked)
    # Two calls in the capture (well quoted, then naively quoted): one CallParked each.
    assert [p.uuid for p in parked] == [
        "cc1717f6-3800-4f68-a001-7b88416f1c48",
        "9ac3c0b6-6819-4b44-b19d-043fa91a7611",
    ]
    first = parked[0]
    assert first.caller_name == 'Doe, John "VIP"'
    assert first.caller_number == "+3612345678"
    assert first.queue == "sales"
    assert first.tags == ("sales",)
    assert first.destination == "queue_sales"
    assert first.variables["ccd_queue"] == "sales"
    assert parked[1].caller_name == "Doe"  # what naive quoting did to the name


def test_background_job_results_from_originate_failures():
    results = domain("12_originate_failures_sip", JobResult)
    assert [(r.ok, r.value) for r in results] == [
        (False, "NO_ANSWER"),
        (False, "USER_BUSY"),
        (False, "CALL_REJECTED"),
        (False, "NORMAL_CLEARING"),
        (False, "USER_NOT_REGISTERED"),
    ]
    assert results[0].job_uuid == "57027b94-b787-4428-b4e2-9fc4aaed91a3"
    assert results[0].command == "originate"


def test_background_job_ok_carries_the_leg_uuid():
    ok = [r for r in domain("03_events_plain_ALL_calls", JobResult) if r.ok]
    assert ok and all(len(r.value) == 36 for r in ok)


def test_json_events_decode_the_same_as_plain():
    plain = domain("03_events_plain_ALL_calls", JobResult)
    json_ = domain("04_events_json_ALL_calls", JobResult)
    # Same flow, different uuids: compare the outcomes.
    assert [(r.ok, r.value if not r.ok else len(r.value)) for r in json_] == [
        (r.ok, r.value if not r.ok else len(r.value)) for r in plain
    ]
    assert len(plain) == 2


def test_registration_lifecycle():
    evs = [
        d
        for d in map(from_esl, capture_events("13_registration_lifecycle"))
        if isinstance(d, PhoneRegistered | PhoneUnregistered)
    ]
    assert evs == [
        PhoneRegistered("1001", '"" <sip:1001@127.0.0.1:5071>', 60),
        PhoneRegistered("1001", '"" <sip:1001@127.0.0.1:5071>', 60),
        PhoneUnregistered("1001", "unregister"),
        # Re-registered for 5 s, then left to expire.
        PhoneRegistered("1001", '"" <sip:1001@127.0.0.1:5071>', 5),
        PhoneUnregistered("1001", "expire"),
    ]


def test_agent_outbound_call_legs_are_attributed_to_the_desk_phone():
    created = domain("16_agent_outbound_call", ChannelCreated)
    agent_legs = [c for c in created if c.extension == "1003"]
    assert [c.uuid for c in agent_legs] == [
        "a136ea87-0ab0-4062-9f60-329641bcee8e",
        "5730f505-7925-4138-99b1-91ac589df316",
        "ccb98b03-1a96-4e25-82a3-e754234e0aa6",
    ]
    assert all(c.direction == "inbound" for c in agent_legs)
    assert agent_legs[0].callee_number == "0612345678"
    # The customer legs carry the agent's caller id, but they are not the phone.
    assert all(c.extension != "1003" for c in created if c not in agent_legs)


def test_agent_leg_hangup_carries_the_real_outcome():
    hangups = {h.uuid: h for h in domain("16_agent_outbound_call", ChannelHangup)}
    unanswered = hangups["a136ea87-0ab0-4062-9f60-329641bcee8e"]
    assert unanswered.cause == "NORMAL_CLEARING"
    assert unanswered.extension == "1003"
    assert unanswered.variables["originate_disposition"] == "NO_ANSWER"
    assert unanswered.variables["ccd_agent"] == "1003"
    assert unanswered.variables["billsec"] == "0"
    talked = hangups["ccb98b03-1a96-4e25-82a3-e754234e0aa6"]
    assert talked.variables["originate_disposition"] == "SUCCESS"
    assert talked.variables["billsec"] == "3"
    assert hangups["0be7292d-3b93-4325-9f44-155e2571f17b"].cause == "NO_ANSWER"


def test_bridge_unbridge_and_answer():
    events = [from_esl(e) for e in capture_events("15_transfer_broadcast_bridge")]
    bridged = [e for e in events if isinstance(e, ChannelBridged)]
    unbridged = [e for e in events if isinstance(e, ChannelUnbridged)]
    assert bridged[0] == ChannelBridged(
        "c62c16cd-c333-44b1-b8f1-1de41c4dd7f8", "ba57cf8b-a549-4992-9789-8f15c183d48e"
    )
    assert unbridged[0].other_uuid == "ba57cf8b-a549-4992-9789-8f15c183d48e"
    assert any(isinstance(e, ChannelAnswered) for e in events)


def test_execute_complete_carries_application_uuid_and_response():
    done = domain("11_sendmsg_execute", ExecuteComplete)
    playback = next(d for d in done if d.app == "playback")
    assert playback.app_uuid == "bad7760f-519a-458a-867c-33dbcb711330"
    assert playback.response == "FILE PLAYED"
    digits = [d for d in done if d.app == "play_and_get_digits"]
    assert digits[0].variables.get("ccd_digit") == "1"


def _park(**variables: str) -> EslEvent:
    headers = {
        "Event-Name": "CHANNEL_PARK",
        "Unique-ID": U,
        "Channel-Name": "sofia/internal/1001@10.0.0.5:5060",
        "Caller-Caller-ID-Number": "1001",
    }
    headers.update({f"variable_{k}": v for k, v in variables.items()})
    return EslEvent(headers)


def test_feature_code_park():
    ev = _park(ccd_action="login", ccd_agent_ext="1001")
    assert from_esl(ev) == FeatureCode(U, "1001", "login", "")
    ev = _park(ccd_action="dispo", ccd_agent_ext="1001", ccd_digits="12")
    assert from_esl(ev) == FeatureCode(U, "1001", "dispo", "12")
    # Without ccd_agent_ext the desk phone's channel name says who it is.
    assert from_esl(_park(ccd_action="break")) == FeatureCode(U, "1001", "break", "")


def test_feature_code_as_custom_event():
    ev = EslEvent(
        {
            "Event-Name": "CUSTOM",
            "Event-Subclass": "ccd::agent",
            "Unique-ID": U,
            "ccd_action": "logout",
            "ccd_agent_ext": "1002",
        }
    )
    assert from_esl(ev) == FeatureCode(U, "1002", "logout", "")


@pytest.mark.parametrize(
    "ev",
    [
        _park(ccd_action="login; rm", ccd_agent_ext="1001"),
        _park(ccd_action="login", ccd_agent_ext="10 01", ccd_digits="x" * 40),
        _park(ccd_action="dispo", ccd_agent_ext="1001", ccd_digits="1; 2"),
        _park(ccd_queue="sales queue"),
        _park(),
        EslEvent({"Event-Name": "CHANNEL_PARK", "Unique-ID": "x' y", "variable_ccd_queue": "s"}),
        EslEvent({"Event-Name": "CHANNEL_PARK", "variable_ccd_queue": "sales"}),
        EslEvent({"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": U}),
        EslEvent({"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": U, "Hangup-Cause": "a b"}),
        EslEvent({"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": U}),
        EslEvent({"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j"}),
        EslEvent({"Event-Name": "CUSTOM", "Event-Subclass": "sofia::register", "expires": "60"}),
        EslEvent(
            {
                "Event-Name": "CUSTOM",
                "Event-Subclass": "sofia::register",
                "from-user": "1001",
                "expires": "soon",
            }
        ),
        EslEvent({"Event-Name": "HEARTBEAT"}),
        EslEvent({}),
    ],
)
def test_absent_or_garbled_headers_are_ignored(ev):
    assert from_esl(ev) is None


def test_background_job_with_unexpected_body_is_a_failure_with_its_text():
    ev = EslEvent({"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j1"}, "something odd\n")
    assert from_esl(ev) == JobResult("j1", False, "something odd")


def test_parse_tags():
    assert parse_tags(" Sales, support ,,sales,bad tag,de") == ("sales", "support", "de")
    assert parse_tags("") == ()


def test_a_call_needs_only_tags_an_agent_can_carry():
    """ccd_tags took ``lang:fr``, ``fr.ca``, ``a+b`` and 64 characters where an agent's tags
    are 1-32 of a-z 0-9 _ -: such a call waited for an agent who cannot exist."""
    import random

    from ccd.core.routing import split_tags
    from ccd.store.agent import AgentError, check_tags

    assert split_tags("Sales, lang:fr,fr.ca, a+b,-x," + "x" * 33 + ",de") == (
        ("sales", "de"),
        ("lang:fr", "fr.ca", "a+b", "-x", "x" * 33),
    )
    rng = random.Random(11)
    alphabet = "ab_-.:+ ,Z9"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for tag in parse_tags(text):
            try:
                check_tags([tag])
            except AgentError as exc:
                raise AssertionError(f"{text!r}: a call may need {tag!r}: {exc}") from None


def test_mangled_recorded_events_never_raise():
    rng = random.Random(1234)
    events = capture_events("16_agent_outbound_call") + capture_events("12_originate_failures_sip")
    junk = ["", " ", "\x00", "'}", "%zz", "x" * 5000, "-1", "NaN", "\n\n", "é"]
    for ev in events:
        headers = dict(ev.headers)
        for key in rng.sample(sorted(headers), k=min(5, len(headers))):
            if rng.random() < 0.5:
                del headers[key]
            else:
                headers[key] = rng.choice(junk)
        result = from_esl(EslEvent(headers, rng.choice([None, ev.body, "-ERR", "+OK"])))
        assert result is None or type(result).__module__ == "ccd.core.events"


def test_letters_keyed_after_a_feature_code_reach_the_daemon_to_be_refused_out_loud():
    code = from_esl(_park(ccd_action="dispo", ccd_agent_ext="1001", ccd_digits="ab#"))
    assert isinstance(code, FeatureCode) and code.digits == "ab#"
