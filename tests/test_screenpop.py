"""Screen-pop: the caller-id name on the agent's phone and the offer's JSON."""

from __future__ import annotations

import json
import unicodedata

import pytest

from ccd.core.commands import Originate, quote_var_value, sip_display_name, to_esl
from ccd.core.customer import Customer
from ccd.core.screenpop import (
    MAX_DISPLAY_LEN,
    PLACEHOLDERS,
    caller_id_name,
    offer_payload,
    validate_template,
)

ANNA = Customer("+3612345678", "Kovács Anna", "hu", True, {"segment": "gold"})
PLAIN = Customer("+3612345678", "Kovács Anna", "", False, {})
LEG = "3f1c8a2e-5b7d-4c6e-9a0b-1c2d3e4f5a6b"

HOSTILE = [
    'Doe, John "VIP"',
    "Robert'); DROP TABLE--",
    "evil}\nset:x=1{",
    "line1\r\nline2\x00\x07",
    "x" * 200,
    "😀🎉 Ünnepi Ügyfél 👨\u200d👩\u200d👧",
    "${system(rm -rf /)}",
    "^^:a:b:_:c",
    '<sip:attacker@evil> "',
    "\u202eRTL override",
]


def assert_safe_display(text: str) -> None:
    assert len(text) <= MAX_DISPLAY_LEN
    assert '"' not in text  # it would cut the name in FreeSWITCH (ccd.commands)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)
    # It must survive as one value inside an originate dial string.
    quote_var_value(sip_display_name(text))
    to_esl(Originate(LEG, "1001", {"origination_caller_id_name": text}))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_caller_names_stay_safe(hostile):
    text = caller_id_name("{vip}{name} [{queue}]", None, hostile, "+3612345678", "sales")
    assert_safe_display(text)
    assert text  # never empty: a phone that shows nothing tells the agent nothing


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_customer_data_stays_safe(hostile):
    customer = Customer("+3612345678", hostile, hostile, True, {})
    template = "{direct}{vip}{name} {lang} {last} {number} {queue}"
    history = [{"outcome": hostile}]
    assert_safe_display(
        caller_id_name(template, customer, hostile, hostile, hostile, True, history=history)
    )


def test_quotes_and_commas_keep_a_readable_lookalike():
    text = caller_id_name("{name}", None, 'Doe, John "VIP"', "", "q")
    assert text == "Doe, John \u201dVIP\u201d"


def test_sip_uri_like_names_are_kept_whole():
    # Defect 3 (issue 9): FreeSWITCH cut these; the dial string now carries them.
    assert caller_id_name("{name}", None, "Doe: John", "", "q") == "Doe: John"
    assert caller_id_name("{name}", None, "x sip:a@b y", "", "q") == "x sip:a@b y"
    assert caller_id_name("{name}", None, "O'Brien <1/2> {x} $5", "", "q") == (
        "O'Brien <1/2> {x} $5"
    )


def test_long_names_are_cut_to_the_display_limit():
    text = caller_id_name("{vip}{name}", ANNA, "", "", "q")
    assert text == "VIP Kovács Anna"
    long = caller_id_name("{name}", None, "Ab " * 100, "", "q")
    assert len(long) <= MAX_DISPLAY_LEN and long.startswith("Ab Ab") and not long.endswith(" ")


def test_emoji_and_accents_are_kept():
    text = caller_id_name("{name}", None, "Ünnepi 😀", "", "q")
    assert text == "Ünnepi 😀"


def test_every_placeholder_renders():
    history = [{"outcome": "no_answer", "at": 2.0}, {"outcome": "answered", "at": 1.0}]
    template = "{direct}{vip}{name}|{lang}|{queue}|{number}|{last}"
    anna = Customer("+3612345678", "Anna", "hu", True)
    text = caller_id_name(
        template, anna, "ignored", "06 1 234 5678", "sales", True, history=history
    )
    assert text == "DIRECT VIP Anna|hu|sales|+3612345678|no_answer"


def test_name_falls_back_to_caller_id_then_number():
    assert caller_id_name("{vip}{name}", None, "Caller Id", "+3612345678", "q") == "Caller Id"
    assert caller_id_name("{vip}{name}", None, "", "06 1 234 5678", "q") == "+3612345678"
    assert caller_id_name("{vip}{name}", PLAIN, "Caller Id", "", "q") == "Kovács Anna"
    # A number that does not normalise still shows its digits, not its letters.
    assert caller_id_name("{name}", None, "", "1001x", "q") == "1001"


def test_format_specs_are_honoured():
    assert caller_id_name("{name:.6}", ANNA, "", "", "q") == "Kovács"


# --- templates ---------------------------------------------------------------------------------


def test_known_templates_validate():
    for placeholder in PLACEHOLDERS:
        assert validate_template("{" + placeholder + "}") == "{" + placeholder + "}"
    assert validate_template("{vip}{name:.20} ({queue})") == "{vip}{name:.20} ({queue})"
    assert validate_template("plain text") == "plain text"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{vip}{customer}", "unknown placeholder {customer}"),
        ("{name.__class__}", "unknown placeholder {name.__class__}"),
        ("{name[0]}", "unknown placeholder {name[0]}"),
        ("{}", "unknown placeholder {}"),
        ("{name!r}", "conversions"),
        ("{name:{vip}}", "nested"),
        ("{name", "not valid"),
        ("{name:d}", "cannot be rendered"),
    ],
)
def test_bad_templates_are_refused_naming_the_problem(template, message):
    with pytest.raises(ValueError) as info:
        validate_template(template)
    assert message in str(info.value)


def test_a_template_that_slipped_through_never_crashes_a_call():
    assert caller_id_name("{name:d}", ANNA, "", "", "q") == "Kovács Anna"
    assert caller_id_name("{unknown}", ANNA, "", "", "q") == "Kovács Anna"


# --- offer payload -------------------------------------------------------------------------------


def test_offer_payload_carries_call_agent_customer_and_history():
    call = {
        "uuid": LEG,
        "queue": "sales",
        "caller_number": "06 1 234 5678",
        "caller_name": 'Doe, "J"',
        "entered_at": 100.5,
        "tags": frozenset({"sales", "lang_hu"}),
        "hunt": {"internal": "state"},
    }
    agent = {"id": "alice", "ext": "1001", "tags": ["sales"], "call": LEG, "missed": 3}
    history = [{"outcome": f"o{n}"} for n in range(15)]
    payload = offer_payload(call, agent, ANNA, history, display_name="VIP Kovács Anna")

    assert json.loads(json.dumps(payload)) == payload  # plain JSON all the way down
    assert payload["event"] == "agent.offered" and payload["version"] == 1
    assert payload["call"] == {
        "uuid": LEG,
        "queue": "sales",
        "caller_number": "06 1 234 5678",
        "caller_name": 'Doe, "J"',
        "entered_at": 100.5,
        "tags": ["lang_hu", "sales"],
        "number": "+3612345678",
    }
    assert payload["agent"] == {"id": "alice", "ext": "1001", "tags": ["sales"]}
    assert payload["customer"] == {
        "number": "+3612345678",
        "name": "Kovács Anna",
        "language": "hu",
        "vip": True,
        "fields": {"segment": "gold"},
    }
    assert [e["outcome"] for e in payload["history"]] == [f"o{n}" for n in range(10)]
    assert payload["display_name"] == "VIP Kovács Anna"


def test_offer_payload_for_an_unknown_anonymous_caller():
    payload = offer_payload({"uuid": LEG, "caller_number": "anonymous"}, {"id": "bob"}, None, [])
    assert payload["customer"] is None and payload["history"] == []
    assert payload["call"]["number"] is None
    json.dumps(payload)


def test_offer_payload_turns_odd_values_into_json():
    call = {"uuid": LEG, "entered_at": float("nan"), "caller_name": b"bytes\xff"}
    history = [{"at": float("inf"), "obj": object(), "nested": {"k": (1, 2)}}]
    payload = offer_payload(call, {}, None, history)
    text = json.dumps(payload, allow_nan=False)
    assert json.loads(text)["history"][0]["nested"] == {"k": [1, 2]}
    assert payload["call"]["entered_at"] is None
