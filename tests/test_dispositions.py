"""Dispositions, pure: codes, desk-phone entry, automatic codes, planned actions; the *7 code
in the shipped dialplan."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccd.core.disposition import (
    DEFAULT_CODES,
    BadEntry,
    CallFacts,
    Code,
    CodeSet,
    Disposition,
    DispositionError,
    UnknownCode,
    automatic_codes,
    automatic_disposition,
    parse_entry,
)
from ccd.core.disposition_actions import (
    AddToDnc,
    DispositionSettings,
    MarkFinal,
    PostWebhook,
    ScheduleCallback,
    Skipped,
    plan_actions,
)
from ccd.fakeswitch.dialplan import load_conf

SEED_001 = [
    "no answer", "busy", "abandoned in queue", "disconnected", "left voicemail", "interested",
    "not interested", "demo booked", "appointment set", "deal closed", "needs follow-up",
    "do not contact", "wrong number",
]  # fmt: skip
NUMBER = "+3612345678"
HOOK = DispositionSettings(webhook_url="https://crm.example/hook")


def names(codes) -> list[str]:
    return [c.name for c in codes]


def dispo(*codes: str, number: str | None = NUMBER, by: str = "agent:alice") -> Disposition:
    return Disposition("c1", codes, by, 1000.0, agent="alice", queue="sales", number=number)


def test_default_codes_cover_seed_001_with_two_digit_numbers():
    assert [c.label.lower() for c in DEFAULT_CODES] == SEED_001
    assert all(len(c.number) == 2 and c.number.isdigit() for c in DEFAULT_CODES)
    assert DEFAULT_CODES.by_name("do_not_contact").actions == ("dnc", "final")
    assert DEFAULT_CODES.by_name("needs_follow_up").actions == ("callback",)


@pytest.mark.parametrize(
    ("keyed", "name"),
    [
        ("05", "left_voicemail"),
        ("5", "left_voicemail"),
        ("12#", "do_not_contact"),
        (" 01 ", "no_answer"),
    ],
)
def test_desk_phone_entry_finds_the_code(keyed, name):
    assert parse_entry(keyed, DEFAULT_CODES).name == name


@pytest.mark.parametrize(
    ("keyed", "error", "fragment"),
    [
        ("99", UnknownCode, "unknown code 99"),
        ("00", UnknownCode, "unknown code 00"),
        ("ab", BadEntry, "digits only"),
        ("0a", BadEntry, "digits only"),
        ("*5", BadEntry, "digits only"),
        ("123", BadEntry, "at most 2 digits"),
        ("9" * 500, BadEntry, "at most 2 digits"),
        ("", BadEntry, "no digits"),
        ("#", BadEntry, "no digits"),
        ("\u0660\u0665", BadEntry, "digits only"),  # Arabic-Indic digits: no desk-phone key
        (None, BadEntry, "text"),
    ],
)
def test_bad_entries_are_refused_clearly(keyed, error, fragment):
    with pytest.raises(error, match=fragment) as caught:
        parse_entry(keyed, DEFAULT_CODES)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 120


def test_resolve_takes_a_number_or_a_name():
    assert DEFAULT_CODES.resolve("11").name == "needs_follow_up"
    assert DEFAULT_CODES.resolve("interested").number == "06"
    with pytest.raises(UnknownCode, match="unknown code 'nope'"):
        DEFAULT_CODES.resolve("nope")
    with pytest.raises(BadEntry):
        DEFAULT_CODES.resolve("Interested!")


def test_code_sets_refuse_duplicates_and_bad_codes():
    with pytest.raises(ValueError, match="used by both"):
        CodeSet([Code("01", "a", "A"), Code("01", "b", "B")])
    with pytest.raises(ValueError, match="defined twice"):
        CodeSet([Code("01", "a", "A"), Code("02", "a", "B")])
    bads = [dict(number="1"), dict(number="001"), dict(name="Bad Name"), dict(label=""),
            dict(actions=("email",)), dict(actions=("final", "callback"))]  # fmt: skip
    for bad in bads:
        spec = {"number": "01", "name": "a", "label": "A", **bad}
        with pytest.raises(ValueError):
            Code(**spec)


def test_codes_from_configuration_name_the_bad_entry():
    codes = CodeSet.from_mapping({
        "sold": {"number": "20", "label": "Sold", "actions": ["webhook", "final"]},
        "later": {"number": "21", "label": "Call later", "actions": ["callback"],
                  "callback_delay": 600},
    })  # fmt: skip
    assert codes.resolve("20").actions == ("webhook", "final")
    assert codes.by_name("later").callback_delay == 600.0
    with pytest.raises(ValueError, match=r"disposition\.codes\.x: missing \['label'\]"):
        CodeSet.from_mapping({"x": {"number": "01"}})
    with pytest.raises(ValueError, match=r"disposition\.codes\.x: unknown keys \['colour'\]"):
        CodeSet.from_mapping({"x": {"number": "01", "label": "X", "colour": "red"}})
    with pytest.raises(ValueError, match=r"disposition\.codes\.x: code number"):
        CodeSet.from_mapping({"x": {"number": "1x", "label": "X"}})


# --- automatic codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (CallFacts("abandoned", ("no_answer",), wait=42.5), ["abandoned", "no_answer"]),
        (CallFacts("voicemail", ("no_answer", "busy", "no_answer")),
         ["left_voicemail", "no_answer", "busy"]),
        (CallFacts("hangup", ("busy",)), ["busy"]),
        # Answered by the second agent: the first one's miss is not the call's outcome.
        (CallFacts("bridged", ("no_answer",)), []),
        (CallFacts("bridged"), []),
        (CallFacts("failed", customer_cause="NO_ANSWER"), ["no_answer"]),
        (CallFacts("failed", customer_cause="USER_BUSY"), ["busy"]),
        (CallFacts("failed", customer_cause="UNALLOCATED_NUMBER"), ["disconnected"]),
        (CallFacts("failed", customer_cause="NORMAL_TEMPORARY_FAILURE"), []),
    ],
)  # fmt: skip
def test_automatic_codes_from_what_the_system_saw(facts, expected):
    assert names(automatic_codes(facts, DEFAULT_CODES)) == expected


def test_automatic_disposition_keeps_the_wait_of_an_abandoned_caller():
    d = automatic_disposition(CallFacts("abandoned", wait=42.5), DEFAULT_CODES, call_uuid="c9",
                              at=5.0, queue="sales", number=NUMBER)  # fmt: skip
    assert (d.codes, d.set_by, d.details, d.queue) == (("abandoned",), "system", {"wait": 42.5},
                                                       "sales")  # fmt: skip
    assert automatic_disposition(CallFacts("bridged"), DEFAULT_CODES, call_uuid="c9", at=5) is None


def test_a_configuration_without_the_name_gets_no_automatic_code():
    codes = CodeSet([Code("01", "busy", "Busy")])
    assert names(automatic_codes(CallFacts("abandoned", ("busy",)), codes)) == ["busy"]


# --- dispositions and actions --------------------------------------------------------------


def test_the_same_code_twice_is_one_code():
    assert dispo("interested", "interested", "demo_booked").codes == ("interested", "demo_booked")


@pytest.mark.parametrize(
    "kwargs",
    [dict(codes=()), dict(codes=("x",) * 0 + tuple(f"c{i}" for i in range(17))),
     dict(codes=("Bad",)), dict(call_uuid="a b"), dict(set_by=""), dict(set_at=float("nan")),
     dict(agent="a:b")],
)  # fmt: skip
def test_bad_dispositions_are_refused(kwargs):
    spec = dict(call_uuid="c1", codes=("busy",), set_by="x", set_at=1.0) | kwargs
    with pytest.raises(DispositionError):
        Disposition(**spec)


def test_do_not_contact_lists_the_number_for_the_configured_period_and_is_final():
    actions = plan_actions(dispo("do_not_contact"), DEFAULT_CODES, DispositionSettings(dnc_days=30))
    assert actions == [
        AddToDnc(NUMBER, 30 * 86400.0, "Do not contact", "agent:alice"),
        MarkFinal(NUMBER, "do_not_contact", "c1"),
    ]


def test_follow_up_schedules_one_callback_after_the_delay():
    settings = DispositionSettings(callback_delay=3600)
    actions = plan_actions(dispo("needs_follow_up"), DEFAULT_CODES, settings)
    assert actions == [ScheduleCallback(NUMBER, 3600.0, "sales", "needs_follow_up", "c1", "alice")]


def test_do_not_contact_beats_follow_up_even_when_set_earlier():
    both = plan_actions(dispo("needs_follow_up", "do_not_contact"), DEFAULT_CODES)
    assert not any(isinstance(a, ScheduleCallback) for a in both)
    assert Skipped("callback", "needs_follow_up", "the call carries a final or dnc code") in both
    later = plan_actions(dispo("needs_follow_up"), DEFAULT_CODES,
                         all_codes=["wrong_number", "needs_follow_up"])  # fmt: skip
    assert not any(isinstance(a, ScheduleCallback) for a in later)


def test_only_new_codes_act_so_a_repeated_entry_schedules_nothing_twice():
    d = dispo("needs_follow_up", "interested")
    assert plan_actions(d, DEFAULT_CODES, HOOK, new=()) == []
    only_hook = plan_actions(d, DEFAULT_CODES, HOOK, new=("interested",))
    assert [type(a) for a in only_hook] == [PostWebhook]


def test_webhook_payload_carries_the_whole_disposition_once():
    actions = plan_actions(dispo("interested", "demo_booked"), DEFAULT_CODES, HOOK)
    (hook,) = actions
    assert hook.url == "https://crm.example/hook"
    assert hook.payload["codes"] == ["interested", "demo_booked"]
    assert hook.payload["labels"] == {"interested": "Interested", "demo_booked": "Demo booked"}
    assert (hook.payload["call"], hook.payload["number"], hook.payload["agent"]) == (
        "c1", NUMBER, "alice")  # fmt: skip


def test_without_a_url_or_a_number_actions_are_skipped_not_crashed():
    no_url = plan_actions(dispo("interested"), DEFAULT_CODES)
    assert no_url == [Skipped("webhook", "interested", "no webhook url configured")]
    anonymous = plan_actions(dispo("do_not_contact", number=None), DEFAULT_CODES)
    assert {a.action for a in anonymous} == {"dnc", "final"}
    assert all(isinstance(a, Skipped) for a in anonymous)


def test_code_overrides_win_over_settings():
    codes = CodeSet([Code("01", "block", "Block", ("dnc",), dnc_days=7),
                     Code("02", "soon", "Soon", ("callback",), callback_delay=0)])  # fmt: skip
    d = dispo("block")
    assert plan_actions(d, codes)[0].ttl_seconds == 7 * 86400
    assert plan_actions(dispo("soon"), codes)[0].delay == 0.0


# --- the desk-phone code in the shipped dialplan ---------------------------------------------

CONF = Path(__file__).resolve().parents[1] / "freeswitch_conf"
PHONE = {"caller_id_number": "1001", "domain_name": "example.test"}


@pytest.fixture(scope="module")
def conf():
    return load_conf(CONF)


def _vars(actions) -> dict[str, str]:
    return dict(a.data.split("=", 1) for a in actions if a.app == "set")


@pytest.mark.parametrize(("dialed", "digits"), [("*705#", "05"), ("*705", "05"), ("*75", "5"),
                                                ("*7999", "999"), ("*7ab", "ab")])  # fmt: skip
def test_star7_with_the_code_parks_for_the_daemon_with_what_was_keyed(conf, dialed, digits):
    actions = conf.dialplan.route("ccd_agents", dialed, PHONE)
    variables = _vars(actions)
    assert (variables["ccd_action"], variables["ccd_digits"]) == ("dispo", digits)
    assert variables["ccd_agent_ext"] == "${user_name}"
    assert variables["park_timeout"].split(":")[0] == conf.vars["ccd_feature_park_timeout_s"]
    assert actions[0].app == "answer" and actions[-1].app == "park"
    # What the dialplan passes on, the daemon accepts or refuses with a clear reason.
    try:
        parse_entry(digits, DEFAULT_CODES)
    except DispositionError as exc:
        assert str(exc)


@pytest.mark.parametrize("dialed", ["*7", "*7#"])
def test_star7_alone_asks_for_the_code_then_parks(conf, dialed):
    actions = conf.dialplan.route("ccd_agents", dialed, PHONE)
    apps = [a.app for a in actions]
    assert apps.index("play_and_get_digits") < apps.index("park")
    collect = next(a for a in actions if a.app == "play_and_get_digits").data.split()
    assert (collect[0], collect[1], collect[4], collect[7]) == ("1", "2", "#", "ccd_digits")
    assert _vars(actions)["ccd_action"] == "dispo"


def test_an_overlong_star7_entry_hears_the_invalid_message(conf):
    actions = conf.dialplan.route("ccd_agents", "*7123456789", PHONE)
    assert [a.app for a in actions] == ["answer", "playback", "hangup"]
