"""The fake FreeSWITCH's call model, over a real ESL socket, against the captures.

Per-leg event orders come from the captures' SEQUENCES.md (tests/data/fs-captures,
recorded from FreeSWITCH 1.10.12); reply texts from the captures' api/response frames.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from ccd.core.esl_wire import FrameParser, decode_event
from ccd.fakeswitch.dialstring import parse_dial_string, parse_originate, split_args
from ccd.fakeswitch.switch import FakeSwitch
from tests.support.captures import captures_dir

CAPTURES = captures_dir() or Path("/nonexistent/fs-captures")


def leg_sequence(events, uuid: str) -> list[str]:
    """SEQUENCES.md notation for one leg's events."""
    out = []
    for ev in events:
        if ev.uuid != uuid or ev.name in ("API", "PRESENCE_IN", "HEARTBEAT", "RE_SCHEDULE"):
            continue
        name = ev.name.removeprefix("CHANNEL_")
        if ev.name == "CHANNEL_STATE":
            name = "STATE(%s)" % ev.get("Channel-State").removeprefix("CS_")
        elif ev.name == "CHANNEL_CALLSTATE":
            name = "CALLSTATE(%s)" % ev.get("Channel-Call-State")
        elif ev.name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"):
            name += "(%s)" % ev.get("Application")
        elif ev.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            name += "(%s)" % ev.get("Hangup-Cause")
        elif ev.name == "CUSTOM":
            name = "CUSTOM(%s)" % ev.subclass
        out.append(name)
    return out


def captured(capture: str, uuid_prefix: str) -> list[str]:
    """One leg's sequence from SEQUENCES.md (by the first 8 hex digits of its uuid)."""
    text = (CAPTURES / "SEQUENCES.md").read_text()
    section = text.split(f"## {capture}", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if f"[{uuid_prefix}]" in line:
            return [s.strip() for s in lines[i + 1].split("→")]
    raise AssertionError(f"{uuid_prefix} not in {capture}")


# -- parsing, as FreeSWITCH splits an originate line ---------------------------------


def test_caller_id_with_comma_and_quotes_survives_the_quoted_form():
    line = (
        "'{origination_uuid=u1,origination_caller_id_number=+3612345678,"
        "origination_caller_id_name=\\'Doe, John \"VIP\"\\'}loopback/queue_sales/fslab' &park()"
    )
    req = parse_originate(line)
    assert req["vars"]["origination_caller_id_name"] == 'Doe, John "VIP"'
    assert req["endpoint"] == "loopback/queue_sales/fslab"


def test_naive_quoting_truncates_caller_id_name_like_freeswitch():
    line = (
        "{origination_uuid=u1,origination_caller_id_name='Doe, John \"VIP\"'}"
        "loopback/queue_sales/fslab &park()"
    )
    assert parse_originate(line)["vars"]["origination_caller_id_name"] == "Doe"


def test_split_args_and_dial_string():
    assert split_args("a  'b c' d") == ["a", "b c", "d"]
    assert parse_dial_string("{a=1,b='x,y'}user/1001") == ({"a": "1", "b": "x,y"}, "user/1001")


# -- originate to a phone: every outcome --------------------------------------------


def test_originate_answered_phone_matches_capture_03(fakeswitch, esl):
    fakeswitch.add_phone("1001", answer_after=1)
    uuid = "619bdfd4-0000-4000-8000-000000000001"
    reply = esl.api(f"originate {{origination_uuid={uuid}}}user/1001 &park()")
    assert reply == f"+OK {uuid}\n"
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid)
    assert esl.api(f"uuid_kill {uuid}") == "+OK\n"
    esl.wait_gone(uuid)
    assert leg_sequence(esl.events, uuid) == captured("03_events_plain_ALL_calls", "619bdfd4")
    assert fakeswitch.trace.of("answer", uuid=uuid)


@pytest.mark.parametrize(
    ("behaviour", "cause", "capture_leg"),
    [
        ({"ring_forever": True}, "NO_ANSWER", "86379fe1"),
        ({"busy": True}, "USER_BUSY", "8916e96b"),
        ({"reject": True}, "CALL_REJECTED", "d204a657"),
    ],
)
def test_originate_failures_match_capture_12(fakeswitch, esl, behaviour, cause, capture_leg):
    fakeswitch.add_phone("1001", **behaviour)
    uuid = capture_leg + "-0000-4000-8000-000000000002"
    reply = esl.api(f"originate {{originate_timeout=4,origination_uuid={uuid}}}user/1001 &park()")
    assert reply == f"-ERR {cause}\n"
    esl.wait_gone(uuid)
    assert leg_sequence(esl.events, uuid) == captured("12_originate_failures_sip", capture_leg)
    complete = esl.wait_event(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == uuid)
    assert complete.get("Hangup-Cause") == cause


def test_unregistered_phone_fails_without_any_channel_event(fakeswitch, esl):
    fakeswitch.add_phone("1002", registered=False)
    assert esl.api("originate user/1002 &park()") == "-ERR USER_NOT_REGISTERED\n"
    # a directory user with no phone at all is not registered either
    assert esl.api("originate user/1003 &park()") == "-ERR USER_NOT_REGISTERED\n"
    assert esl.api("show channels as json") == '{"row_count": 0}\n'
    assert not [e for e in esl.events if e.name.startswith("CHANNEL_")]


def test_unknown_user_is_subscriber_absent(fakeswitch, esl):
    assert esl.api("originate user/9999 &park()") == "-ERR SUBSCRIBER_ABSENT\n"
    assert not [e for e in esl.events if e.name.startswith("CHANNEL_")]


def test_killed_while_ringing_is_normal_clearing(fakeswitch, esl):
    fakeswitch.add_phone("1001", ring_forever=True)
    uuid = "da68ced6-0000-4000-8000-000000000003"
    job = esl.command(
        f"bgapi originate {{originate_timeout=20,origination_uuid={uuid}}}user/1001 &park()"
    )
    assert job.startswith("+OK Job-UUID: ")
    esl.wait_event(lambda e: e.name == "CHANNEL_PROGRESS" and e.uuid == uuid)
    assert esl.api(f"uuid_kill {uuid}") == "+OK\n"
    bg = esl.wait_event(lambda e: e.name == "BACKGROUND_JOB")
    assert bg.body == "-ERR NORMAL_CLEARING\n"
    esl.wait_gone(uuid)
    assert leg_sequence(esl.events, uuid) == captured("12_originate_failures_sip", "da68ced6")


def test_ring_timeout_runs_on_switch_time(fakeswitch, esl):
    # 30 switch seconds of ringing at time scale 100 take 0.3 s of real time.
    fakeswitch.clock.time_scale = 100.0
    fakeswitch.add_phone("1001", ring_forever=True)
    assert esl.api("originate {originate_timeout=30}user/1001 &park()") == "-ERR NO_ANSWER\n"
    ring = fakeswitch.trace.of("ring")[0]
    failed = fakeswitch.trace.of("originate_failed")[0]
    assert failed["t"] - ring["t"] == pytest.approx(30, abs=3)


def test_sessions_per_second_limit_gives_destination_out_of_order(fakeswitch, esl):
    fakeswitch.sessions_per_second = 2
    fakeswitch.add_phone("1001", busy=True)
    replies = [esl.api("originate user/1001 &park()") for _ in range(3)]
    assert replies[:2] == ["-ERR USER_BUSY\n"] * 2
    assert replies[2] == "-ERR DESTINATION_OUT_OF_ORDER\n"


# -- bridge, kill, transfer ------------------------------------------------------------


def after_first_park(seq: list[str]) -> list[str]:
    return seq[seq.index("PARK") + 1 :]


def two_parked_phones(fakeswitch, esl, a_uuid, b_uuid):
    fakeswitch.add_phone("1001", answer_after=0.5)
    fakeswitch.add_phone("1002", answer_after=0.5)
    for uuid, ext in ((a_uuid, "1001"), (b_uuid, "1002")):
        assert esl.api(f"originate {{origination_uuid={uuid}}}user/{ext} &park()") == (
            f"+OK {uuid}\n"
        )
        esl.wait_event(lambda e, u=uuid: e.name == "CHANNEL_PARK" and e.uuid == u)


def test_uuid_bridge_then_kill_a_leg_hangs_up_both_like_capture_03(fakeswitch, esl):
    a, b = "dad7428c-0000-4000-8000-00000000000a", "515b0a46-0000-4000-8000-00000000000b"
    two_parked_phones(fakeswitch, esl, a, b)
    assert esl.api(f"uuid_bridge {a} {b}") == f"+OK {b}\n"
    esl.wait_event(lambda e: e.name == "CHANNEL_BRIDGE" and e.uuid == a)
    esl.wait_event(lambda e: e.get("Channel-State") == "CS_EXCHANGE_MEDIA" and e.uuid == b)
    calls = esl.api("show calls as json")
    assert '"row_count":1' in calls and f'"b_uuid":"{b}"' in calls
    assert esl.api(f"uuid_kill {a}") == "+OK\n"
    esl.wait_gone(a)
    esl.wait_gone(b)
    for uuid, leg in ((a, "dad7428c"), (b, "515b0a46")):
        assert after_first_park(leg_sequence(esl.events, uuid)) == after_first_park(
            captured("03_events_plain_ALL_calls", leg)
        )
    assert esl.api(f"uuid_exists {b}") == "false"


def test_kill_b_leg_a_leg_hangs_up_unless_park_after_bridge_capture_15(fakeswitch, esl):
    a, b = "a8e6c5db-0000-4000-8000-00000000000a", "042af9d9-0000-4000-8000-00000000000b"
    two_parked_phones(fakeswitch, esl, a, b)
    assert esl.api(f"uuid_setvar {a} park_after_bridge true") == "+OK\n"
    assert esl.api(f"uuid_bridge {a} {b}") == f"+OK {b}\n"
    esl.wait_event(lambda e: e.name == "CHANNEL_BRIDGE" and e.uuid == a)
    assert esl.api(f"uuid_kill {b}") == "+OK\n"
    esl.wait_gone(b)
    esl.wait_event(lambda e: e.name == "CHANNEL_UNBRIDGE" and e.uuid == a)
    esl.wait_event(lambda e: e.get("Channel-State") == "CS_PARK" and e.uuid == a)
    assert esl.api(f"uuid_exists {a}") == "true"
    assert esl.api(f"uuid_getvar {a} park_after_bridge") == "true"
    assert esl.api(f"uuid_kill {a} USER_BUSY") == "+OK\n"
    esl.wait_gone(a)
    for uuid, leg in ((a, "a8e6c5db"), (b, "042af9d9")):
        assert after_first_park(leg_sequence(esl.events, uuid)) == after_first_park(
            captured("15_transfer_broadcast_bridge", leg)
        )


def test_kill_b_leg_without_park_after_bridge_hangs_up_a(fakeswitch, esl):
    a, b = "c62c16cd-0000-4000-8000-00000000000a", "ba57cf8b-0000-4000-8000-00000000000b"
    two_parked_phones(fakeswitch, esl, a, b)
    esl.api(f"uuid_bridge {a} {b}")
    esl.wait_event(lambda e: e.name == "CHANNEL_BRIDGE" and e.uuid == a)
    esl.api(f"uuid_kill {b} NOT_A_CAUSE")
    esl.wait_gone(a)
    seq = leg_sequence(esl.events, a)
    assert seq[seq.index("BRIDGE") :] == [
        "BRIDGE",
        "UNBRIDGE",
        "STATE(EXECUTE)",
        "HANGUP(NORMAL_CLEARING)",
        "STATE(HANGUP)",
        "CALLSTATE(HANGUP)",
        "STATE(REPORTING)",
        "HANGUP_COMPLETE(NORMAL_CLEARING)",
        "DESTROY",
        "STATE(DESTROY)",
    ]
    assert esl.api(f"uuid_kill {a}") == "-ERR No such channel!\n"


def test_api_replies_for_missing_channels(fakeswitch, esl):
    nobody = "00000000-0000-0000-0000-000000000000"
    assert esl.api(f"uuid_exists {nobody}") == "false"
    assert esl.api(f"uuid_kill {nobody}") == "-ERR No such channel!\n"
    assert esl.api(f"uuid_answer {nobody}") == "-ERROR\n"
    assert esl.api(f"uuid_bridge {nobody} {nobody[:-1]}1") == "-ERR Invalid uuid\n"
    # As fs_cli shows FreeSWITCH 1.10.12 answering: the argument count first, then the uuid.
    assert esl.api(f"uuid_broadcast {nobody} foo aleg") == "-ERR invalid uuid\n"
    assert esl.api(f"uuid_broadcast {nobody}") == ("-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n")
    assert esl.api("show channels") == "\n0 total.\n"
    assert esl.api("show calls as json") == '{"row_count": 0}\n'
    assert esl.api("hupall MANAGER_REQUEST") == (
        "+OK hangup all channels with cause MANAGER_REQUEST\n"
    )


def test_sendmsg_execute_and_broadcast_break_setvar_getvar(fakeswitch, esl):
    fakeswitch.add_phone("1001", answer_after=0.2)
    uuid = "8c5e8425-0000-4000-8000-000000000001"
    esl.api(f"originate {{origination_uuid={uuid}}}user/1001 &park()")
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid)
    reply = esl.command(
        f"sendmsg {uuid}",
        [
            ("call-command", "execute"),
            ("execute-app-name", "playback"),
            ("execute-app-arg", "tone_stream://%(500,100,440)"),
            ("Event-UUID", "ev-1"),
        ],
    )
    assert reply == "+OK"
    done = esl.wait_event(
        lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application-UUID") == "ev-1"
    )
    assert done.get("Application-Response") == "FILE PLAYED"
    esl.wait_event(lambda e: e.name == "PRIVATE_COMMAND" and e.uuid == uuid)
    assert esl.api(f"uuid_broadcast {uuid} local_stream://moh aleg") == "+OK Message sent\n"
    esl.wait_event(
        lambda e: e.name == "PLAYBACK_START" and e.get("Playback-File-Path") == "local_stream://moh"
    )
    assert esl.api(f"uuid_break {uuid} all") == "+OK\n"
    esl.wait_event(lambda e: e.name == "PLAYBACK_STOP" and e.get("Playback-Status") == "break")
    assert esl.api(f"uuid_setvar {uuid} foo bar") == "+OK\n"
    assert esl.api(f"uuid_getvar {uuid} foo") == "bar"
    assert esl.api(f"uuid_getvar {uuid} no_such_var") == "_undef_"
    assert esl.command(
        "sendmsg 00000000-0000-0000-0000-000000000000", [("call-command", "hangup")]
    ).startswith("-ERR invalid session id")
    esl.command(
        f"sendmsg {uuid}", [("call-command", "hangup"), ("hangup-cause", "NORMAL_CLEARING")]
    )
    esl.wait_gone(uuid)
    seq = leg_sequence(esl.events, uuid)
    at = seq.index("HANGUP(NORMAL_CLEARING)")
    assert seq[at : at + 4] == [
        "HANGUP(NORMAL_CLEARING)",
        "PRIVATE_COMMAND",
        "UNPARK",
        "EXECUTE_COMPLETE(park)",
    ]


def test_uuid_transfer_runs_the_dialplan_again(fakeswitch, esl):
    fakeswitch.add_phone("1001", answer_after=0.2)
    uuid = "c62c16cd-0000-4000-8000-0000000000c1"
    esl.api(f"originate {{origination_uuid={uuid}}}user/1001 &park()")
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid)
    assert esl.api(f"uuid_transfer {uuid} ccd_queue_sales XML ccd") == "+OK\n"
    park = esl.wait_event(
        lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid and e.var("ccd_queue") == "sales"
    )
    assert park.var("ccd_tags") == "sales"
    seq = leg_sequence(esl.events, uuid)
    assert seq[seq.index("PARK") + 1 :][:4] == [
        "UNPARK",
        "EXECUTE_COMPLETE(park)",
        "STATE(ROUTING)",
        "STATE(EXECUTE)",
    ]
    assert fakeswitch.trace.of("transfer", uuid=uuid)


def test_show_channels_as_json_lists_live_legs(fakeswitch, esl):
    import json

    fakeswitch.add_phone("1001", answer_after=0.2)
    uuid = "619bdfd4-0000-4000-8000-0000000000d1"
    esl.api(
        f"originate '{{origination_uuid={uuid},origination_caller_id_name=\\'Doe, J\\'}}"
        "user/1001' &park()"
    )
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid)
    rows = json.loads(esl.api("show channels as json"))["rows"]
    assert [(r["uuid"], r["name"], r["cid_name"], r["application"]) for r in rows] == [
        (uuid, "sofia/internal/1001@127.0.0.1:5071", "Doe, J", "park")
    ]


# -- registrations -------------------------------------------------------------------


def test_registration_lifecycle_like_capture_13(fakeswitch, esl):
    phone = fakeswitch.add_phone("1001")
    reg = esl.api("sofia status profile internal reg 1001")
    assert "User:       \t1001@127.0.0.1\n" in reg and "Total items returned: 1\n" in reg
    assert '"reg_user":"1001"' in esl.api("show registrations as json")
    assert esl.api("sofia_contact 1001@127.0.0.1") == "sofia/internal/sip:1001@127.0.0.1:5071"
    phone.set(registered=False)
    assert esl.api("sofia_contact 1001@127.0.0.1") == "error/user_not_registered"
    assert esl.api("show registrations as json") == '{"row_count": 0}\n'
    phone.set(registered=True)
    answer = esl.api("show registrations as json")
    assert '"reg_user":"1001"' in answer and answer.endswith("}]}")  # recording 13: no "\n"
    fakeswitch.expire_phone("1001")
    expire = esl.wait_event(lambda e: e.subclass == "sofia::expire")
    esl.wait_event(
        lambda e: (
            e.name == "PRESENCE_IN"
            and int(e.get("Event-Sequence")) > int(expire.get("Event-Sequence"))
        )
    )
    names = [e.subclass or e.name for e in esl.events if e.name in ("CUSTOM", "PRESENCE_IN")]
    assert names == [
        "sofia::pre_register",
        "sofia::register_attempt",
        "sofia::register",
        "sofia::pre_register",
        "sofia::register_attempt",
        "PRESENCE_IN",
        "sofia::unregister",
        "sofia::pre_register",
        "sofia::register_attempt",
        "sofia::register",
        "sofia::expire",
        "PRESENCE_IN",
    ]
    assert int(expire.get("expires")) > fakeswitch.clock.now() - 60  # an epoch, not seconds


# -- header names stay those of the captures -----------------------------------------


_CHANNEL_BLOCK = (
    "Channel-",
    "Caller-",
    "Other-",
    "Hangup-Cause",
    "Answer-State",
    "Unique-ID",
    "Call-Direction",
    "Presence-Call-Direction",
)


def capture_header_names() -> dict[str, set[str]]:
    """Header names per event (CUSTOM: per subclass); key "" = any channel event's block."""
    names: dict[str, set[str]] = defaultdict(set)
    for path in CAPTURES.glob("*.raw"):
        if path.name.startswith(("05_", "04_", "17_")):
            continue
        parser = FrameParser()
        parser.feed(path.read_bytes())
        for frame in parser:
            if frame.content_type == "text/event-plain":
                ev = decode_event(frame)
                key = ev.subclass if ev.name == "CUSTOM" else ev.name
                names[key] |= {k for k in ev.headers if not k.startswith("variable_")}
                names[""] |= {k for k in ev.headers if k.startswith(_CHANNEL_BLOCK)}
    return names


def test_event_header_names_are_freeswitch_names(fakeswitch, esl):
    fakeswitch.add_phone("1001", answer_after=0.2)
    fakeswitch.add_phone("1002", busy=True)
    a = esl.api("originate user/1001 &park()").split()[1]
    esl.api("originate user/1002 &park()")
    uuid = fakeswitch.place_call("+3612345678", "Doe, John", "5000", digits=["1"])
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid and e.var("ccd_queue"))
    esl.api(f"uuid_bridge {uuid} {a}")
    esl.wait_event(lambda e: e.name == "CHANNEL_BRIDGE")
    esl.api("hupall")
    esl.wait_gone(a)
    recorded = capture_header_names()
    checked = set()
    for ev in esl.events:
        key = ev.subclass if ev.name == "CUSTOM" else ev.name
        if key not in recorded:
            continue
        # the channel block varies with the channel, not with the event: any recorded name
        allowed = recorded[key] | recorded[""]
        extra = {k for k in ev.headers if not k.startswith("variable_")} - allowed
        assert not extra, f"{key} has headers FreeSWITCH never sent: {sorted(extra)}"
        checked.add(key)
    assert {
        "CHANNEL_CREATE",
        "CHANNEL_ANSWER",
        "CHANNEL_PARK",
        "CHANNEL_BRIDGE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HANGUP_COMPLETE",
        "DTMF",
        "PLAYBACK_START",
    } <= checked


# -- inbound callers through the dialplan ----------------------------------------------


def test_caller_through_ivr_to_sales_queue_parks_with_contract_vars(fakeswitch, esl):
    uuid = fakeswitch.place_call("+3612345678", 'Doe, John "VIP"', "5000", digits=["1"])
    park = esl.wait_event(
        lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid and e.var("ccd_queue") == "sales"
    )
    assert park.var("ccd_tags") == "sales"
    assert park.get("Caller-Caller-ID-Name") == 'Doe, John "VIP"'
    assert fakeswitch.trace.of("digits", uuid=uuid)[0]["digits"] == "1"
    assert esl.api(f"uuid_exists {uuid}") == "true"


def test_caller_pressing_nothing_ends_in_general_queue(fakeswitch, esl):
    uuid = fakeswitch.place_call("+3611111111", "", "5000", digits=[])
    park = esl.wait_event(
        lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid and e.var("ccd_queue")
    )
    assert park.var("ccd_queue") == "general"


def test_caller_patience_and_voicemail_transfer(fakeswitch, esl):
    impatient = fakeswitch.place_call("+3622222222", "", "5000", digits=["3"], patience=40)
    esl.wait_gone(impatient)
    assert fakeswitch.trace.of("abandon", uuid=impatient)
    caller = fakeswitch.place_call("+3633333333", "", "5000", digits=["1"])
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == caller and e.var("ccd_queue"))
    assert esl.api(f"uuid_transfer {caller} ccd_voicemail_sales XML ccd") == "+OK\n"
    esl.wait_gone(caller)
    assert fakeswitch.trace.of("voicemail", uuid=caller)[0]["box"] == "sales"


def test_caller_bridged_to_agent_then_agent_hangs_up(fakeswitch, esl):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=5)
    caller = fakeswitch.place_call("+3644444444", "", "5000", digits=["1"])
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == caller and e.var("ccd_queue"))
    agent = esl.api("originate {origination_caller_id_number=+3644444444}user/1001 &park()")
    agent = agent.split()[1]
    assert esl.api(f"uuid_bridge {caller} {agent}") == f"+OK {agent}\n"
    esl.wait_gone(agent)
    done = esl.wait_event(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == caller)
    assert done.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert int(done.var("billsec")) >= 5


def test_agent_outside_call_no_answer_like_capture_16(fakeswitch, esl):
    fakeswitch.add_phone("1003")
    fakeswitch.add_outside("0612345678", ring_forever=True)
    uuid = fakeswitch.phone_call("1003", "0612345678")
    complete = esl.wait_event(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == uuid)
    assert complete.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert complete.var("originate_disposition") == "NO_ANSWER"
    assert complete.var("last_bridge_hangup_cause") == "NO_ANSWER"
    customer = next(e for e in esl.events if e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid != uuid)
    assert customer.get("Hangup-Cause") == "NO_ANSWER"
    assert leg_sequence(esl.events, customer.uuid) == captured("16_agent_outbound_call", "0be7292d")


def test_agent_outside_call_answered_like_capture_16(fakeswitch, esl):
    fakeswitch.add_phone("1003")
    fakeswitch.add_outside("0612345678", answer_after=1, hangup_after=3)
    uuid = fakeswitch.phone_call("1003", "0612345678")
    complete = esl.wait_event(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == uuid)
    assert complete.var("originate_disposition") == "SUCCESS"
    assert complete.var("billsec") == "3"
    seq = leg_sequence(esl.events, uuid)
    cap = captured("16_agent_outbound_call", "ccb98b03")
    assert seq[seq.index("EXECUTE(bridge)") :] == cap[cap.index("EXECUTE(bridge)") :]


# -- scenario and CLI ----------------------------------------------------------------------


def test_scenario_runs_to_the_end_on_switch_time(tmp_path):
    from ccd.fakeswitch.scenario import load_scenario, run_scenario

    path = tmp_path / "s.toml"
    path.write_text(
        '[[phones]]\next = "1001"\nanswer_after = 2\n'
        '[[calls]]\nat = 1\nfrom = "+3612345678"\ndigits = ["1"]\npatience = 30\n'
    )
    switch = FakeSwitch(time_scale=200.0).start()
    try:
        run_scenario(switch, load_scenario(path))
    finally:
        switch.stop()
    kinds = [e["kind"] for e in switch.trace.entries]
    assert "register" in kinds and "park" in kinds and "abandon" in kinds
    assert switch.trace.entries[-1]["kind"] == "scenario_end"


def test_cli_refuses_bad_arguments_and_bad_scenarios(tmp_path, capsys):
    from ccd.fakeswitch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--time-scale", "zero"])
    assert exc.value.code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[phones]]\next = "1001"\nbusy = "yes"\n')
    assert main(["--esl-port", "0", "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(r"phones\[0\]: busy must be true or false", err[-1])
