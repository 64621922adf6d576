"""Issue 4's callback prompts (freeswitch_conf/dialplan/ccd.xml, ccd_cb_*) through the fake.

Each test does what the daemon will do over a real ESL socket: a caller waits parked in a
queue, `uuid_transfer <uuid> <prompt> XML ccd` sends them to a prompt, the caller model
presses the scripted keys, and the prompt parks the caller again with `ccd_stage` and its
result variables, read back with `uuid_getvar`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ccd.fakeswitch.apps import Apps
from ccd.fakeswitch.dialplan import load_conf, transfer_target
from ccd.fakeswitch.switch import FakeSwitch
from tests.support.fakeswitch_fixtures import EslClient

CONF_DIR = Path(__file__).resolve().parents[1] / "freeswitch_conf"

REASONS = ("emergency", "premium", "international", "too_short", "too_long", "not_digits", "limit")
# Distinct prompt per meaning, so the trace says which one played.
PROMPTS = {
    "ccd_cb_offer_prompt": "t/offer.wav",
    "ccd_cb_which_number_prompt": "t/which.wav",
    "ccd_cb_enter_number_prompt": "t/enter.wav",
    "ccd_cb_readback_prompt": "t/number_is.wav",
    "ccd_cb_confirm_prompt": "t/confirm.wav",
    "ccd_cb_invalid_prompt": "t/invalid.wav",
    "ccd_cb_keep_waiting_prompt": "t/keep_waiting.wav",
    "ccd_cb_refused_prompt": "t/refused.wav",
    "ccd_cb_stored_prompt": "t/stored.wav",
    "ccd_cb_store_failed_prompt": "t/store_failed.wav",
    "ccd_cb_customer_first_prompt": "t/customer_first.wav",
    **{f"ccd_cb_refused_{r}_prompt": f"t/refused_{r}.wav" for r in REASONS},
}


class Esl(EslClient):
    """The fake's event socket, listening to the events the prompts fire."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address)
        names = "CHANNEL_PARK CHANNEL_HANGUP_COMPLETE PLAYBACK_START DTMF"
        assert self.command(f"event plain {names}") == "+OK event listener enabled plain"

    def getvar(self, uuid: str, name: str) -> str:
        return self.api(f"uuid_getvar {uuid} {name}")

    def park_after(self, uuid: str, start: int):
        return self.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid, start)

    def to_prompt(self, uuid: str, extension: str):
        """uuid_transfer to a prompt; the CHANNEL_PARK that ends it."""
        start = len(self.events)
        assert self.api(f"uuid_transfer {uuid} {extension} XML ccd") == "+OK\n"
        return self.park_after(uuid, start)


@pytest.fixture
def fakeswitch():
    """The repo's conf with a distinct file per prompt, 100 times faster than real time."""
    switch = FakeSwitch(CONF_DIR, time_scale=100.0, password="ClueCon", conf_overrides=PROMPTS)
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


@pytest.fixture
def esl(fakeswitch: FakeSwitch):
    client = Esl(fakeswitch.address)
    yield client
    client.close()


def queued_caller(switch: FakeSwitch, esl: Esl, *keys: str | None, number="0612345678") -> str:
    """A caller parked in the sales queue who will press ``keys``, one entry per prompt."""
    start = len(esl.events)
    uuid = switch.place_call(number, destination="ccd_queue_sales", digits=keys)
    assert uuid is not None
    park = esl.park_after(uuid, start)
    assert park.get("variable_ccd_queue") == "sales"
    return uuid


def played(switch: FakeSwitch, uuid: str) -> list[str]:
    return [e["file"] for e in switch.trace.of("playback", uuid=uuid)]


def is_up(switch: FakeSwitch, uuid: str) -> bool:
    return uuid in switch.channels and not switch.channels[uuid].is_hungup


# --- the offer -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["1", "2"])
def test_offer_parks_with_the_pressed_choice(fakeswitch, esl, key):
    uuid = queued_caller(fakeswitch, esl, key)
    park = esl.to_prompt(uuid, "ccd_cb_offer")
    assert park.get("variable_ccd_stage") == "offer"
    assert park.get("variable_ccd_offer_choice") == key
    assert esl.getvar(uuid, "ccd_stage") == "offer"
    assert esl.getvar(uuid, "ccd_offer_choice") == key
    assert played(fakeswitch, uuid) == ["t/offer.wav"]


def test_offer_silence_every_try_answers_keep_waiting(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl)  # presses nothing
    park = esl.to_prompt(uuid, "ccd_cb_offer")
    tries = int(fakeswitch.conf.vars["ccd_offer_tries"])
    assert tries >= 2
    assert (park.get("variable_ccd_stage"), park.get("variable_ccd_offer_choice")) == ("offer", "2")
    assert esl.getvar(uuid, "ccd_offer_choice") == "2"
    expected = ["t/offer.wav", "t/invalid.wav"] * tries + ["t/keep_waiting.wav"]
    assert played(fakeswitch, uuid) == expected
    assert is_up(fakeswitch, uuid)  # never hung up on


def test_offer_wrong_keys_are_asked_again_then_the_right_key_counts(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, "7", "#", "1")
    park = esl.to_prompt(uuid, "ccd_cb_offer")
    assert park.get("variable_ccd_offer_choice") == "1"
    assert played(fakeswitch, uuid) == ["t/offer.wav", "t/invalid.wav"] * 2 + ["t/offer.wav"]
    # FreeSWITCH keeps the last key the regex refused in <var>_invalid (set, never cleared
    # within the prompt; "#" alone is too short and not a refused key).
    assert esl.getvar(uuid, "ccd_offer_choice_invalid") == "7"


def test_offer_wrong_keys_every_try_answers_keep_waiting(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, "9", "0", "*")
    park = esl.to_prompt(uuid, "ccd_cb_offer")
    assert (park.get("variable_ccd_stage"), park.get("variable_ccd_offer_choice")) == ("offer", "2")
    assert played(fakeswitch, uuid)[-1] == "t/keep_waiting.wav"
    digits = [e.get("DTMF-Digit") for e in esl.events if e.name == "DTMF" and e.uuid == uuid]
    assert digits == ["9", "0", "*"]


def test_a_queue_after_a_prompt_parks_without_the_old_stage(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, "2")
    assert esl.to_prompt(uuid, "ccd_cb_offer").get("variable_ccd_stage") == "offer"
    back = esl.to_prompt(uuid, "ccd_queue_sales")
    assert back.get("variable_ccd_queue") == "sales"
    assert not back.get("variable_ccd_stage")
    assert esl.getvar(uuid, "ccd_stage") == "_undef_"


# --- which number, typed number, read-back ---------------------------------------------------


@pytest.mark.parametrize("key", ["1", "2"])
def test_which_number_parks_with_the_choice(fakeswitch, esl, key):
    uuid = queued_caller(fakeswitch, esl, key)
    park = esl.to_prompt(uuid, "ccd_cb_which_number")
    assert park.get("variable_ccd_stage") == "which_number"
    assert esl.getvar(uuid, "ccd_which") == key
    assert played(fakeswitch, uuid) == ["t/which.wav"]


def test_which_number_silence_answers_keep_waiting(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, None, "5", "")
    park = esl.to_prompt(uuid, "ccd_cb_which_number")
    assert (park.get("variable_ccd_stage"), park.get("variable_ccd_offer_choice")) == ("offer", "2")
    assert esl.getvar(uuid, "ccd_which") == "_undef_"
    assert played(fakeswitch, uuid)[-1] == "t/keep_waiting.wav"


@pytest.mark.parametrize(
    ("keys", "digits"),
    [
        ("0612345678#", "0612345678"),
        ("0612345678", "0612345678"),  # no #: taken after the inter-digit pause
        ("12*4A#", "12*4A"),  # garbage goes to the daemon raw, it refuses it
        ("112#", "112"),
        ("12345678901234567890#", "1234567890123456"),  # FreeSWITCH stops at 16 keys
    ],
)
def test_entered_number_is_handed_over_raw(fakeswitch, esl, keys, digits):
    uuid = queued_caller(fakeswitch, esl, keys)
    park = esl.to_prompt(uuid, "ccd_cb_enter_number")
    assert park.get("variable_ccd_stage") == "entered_number"
    assert park.get("variable_ccd_cb_digits") == digits
    assert esl.getvar(uuid, "ccd_cb_digits") == digits
    assert played(fakeswitch, uuid) == ["t/enter.wav"]


def test_just_pound_is_an_empty_number(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, "#")
    park = esl.to_prompt(uuid, "ccd_cb_enter_number")
    assert park.get("variable_ccd_stage") == "entered_number"
    assert not park.get("variable_ccd_cb_digits")
    assert esl.getvar(uuid, "ccd_cb_digits") == "_undef_"


def test_entering_silence_answers_keep_waiting_even_after_an_earlier_pound(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, "#", None, None, None)
    assert esl.to_prompt(uuid, "ccd_cb_enter_number").get("variable_ccd_stage") == (
        "entered_number"
    )
    # FreeSWITCH keeps read_terminator_used forever; the extension unsets it, so this
    # silence is a silence, not another empty number.
    park = esl.to_prompt(uuid, "ccd_cb_enter_number")
    assert (park.get("variable_ccd_stage"), park.get("variable_ccd_offer_choice")) == ("offer", "2")
    assert is_up(fakeswitch, uuid)


@pytest.mark.parametrize("key", ["1", "2"])
def test_readback_says_every_digit_in_order_then_asks_to_confirm(fakeswitch, esl, key):
    uuid = queued_caller(fakeswitch, esl, key)
    assert esl.api(f"uuid_setvar {uuid} ccd_cb_number 0612345078") == "+OK\n"
    park = esl.to_prompt(uuid, "ccd_cb_readback")
    assert park.get("variable_ccd_stage") == "readback"
    assert esl.getvar(uuid, "ccd_confirm") == key
    digits = [f"digits/{d}.wav" for d in "0612345078"]
    assert played(fakeswitch, uuid) == ["t/number_is.wav", *digits, "t/confirm.wav"]
    # mod_say_en plays the digits as one file_string (one PLAYBACK_START).
    starts = [e.get("Playback-File-Path") for e in esl.events if e.name == "PLAYBACK_START"]
    assert "file_string://" + "!".join(digits) in starts


def test_readback_of_a_plus_number_says_nothing_but_still_asks(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl, "2")
    esl.api(f"uuid_setvar {uuid} ccd_cb_number +33612345678")
    park = esl.to_prompt(uuid, "ccd_cb_readback")
    assert park.get("variable_ccd_confirm") == "2"
    assert played(fakeswitch, uuid) == ["t/number_is.wav", "t/confirm.wav"]


def test_readback_silence_answers_keep_waiting(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl)
    esl.api(f"uuid_setvar {uuid} ccd_cb_number 0612")
    park = esl.to_prompt(uuid, "ccd_cb_readback")
    assert (park.get("variable_ccd_stage"), park.get("variable_ccd_offer_choice")) == ("offer", "2")
    assert esl.getvar(uuid, "ccd_confirm") == "_undef_"


# --- refusal, storage ------------------------------------------------------------------


@pytest.mark.parametrize("reason", [*REASONS, "something_new"])
def test_refused_number_hears_the_reason_then_enters_another(fakeswitch, esl, reason):
    uuid = queued_caller(fakeswitch, esl, "0612345678#")
    esl.api(f"uuid_setvar {uuid} ccd_cb_refusal {reason}")
    park = esl.to_prompt(uuid, "ccd_cb_refused")
    assert park.get("variable_ccd_stage") == "entered_number"
    assert park.get("variable_ccd_cb_digits") == "0612345678"
    expected = f"t/refused_{reason}.wav" if reason in REASONS else "t/refused.wav"
    assert played(fakeswitch, uuid) == [expected, "t/enter.wav"]


def test_stored_says_goodbye_and_hangs_up_with_the_voicemail_safety_cancelled(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl)
    start = len(esl.events)
    esl.api(f"uuid_transfer {uuid} ccd_cb_stored XML ccd")
    done = esl.wait_event(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == uuid, start)
    assert done.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert played(fakeswitch, uuid) == ["t/stored.wav"]
    assert not [e for e in esl.events[start:] if e.name == "CHANNEL_PARK"]
    assert uuid not in fakeswitch._scheduled


def test_store_failed_tells_the_caller_and_parks(fakeswitch, esl):
    uuid = queued_caller(fakeswitch, esl)
    park = esl.to_prompt(uuid, "ccd_cb_store_failed")
    assert park.get("variable_ccd_stage") == "store_failed"
    assert played(fakeswitch, uuid) == ["t/store_failed.wav"]
    assert is_up(fakeswitch, uuid)


# --- customer-first ----------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "choice"), [(["1"], "1"), (["3"], "3"), ([], "timeout")])
def test_customer_first_parks_with_the_customers_answer(fakeswitch, esl, keys, choice):
    fakeswitch.add_outside("0698765432", answer_after=0.5, digits=keys)
    uuid = "c0ffee00-0000-4000-8000-00000000cf01"
    reply = esl.api(
        f"originate {{origination_uuid={uuid}}}sofia/gateway/ccd_trunk/0698765432 "
        "ccd_cb_customer_first XML ccd"
    )
    assert reply == f"+OK {uuid}\n"
    park = esl.park_after(uuid, 0)
    assert park.get("variable_ccd_stage") == "customer_first"
    assert park.get("variable_ccd_cf_choice") == choice
    assert esl.getvar(uuid, "ccd_cf_choice") == choice
    assert played(fakeswitch, uuid)[0] == "t/customer_first.wav"


# --- the conf itself -------------------------------------------------------------------

CONTRACT = {
    # extension: (variable, regex, tries var, failure target)
    "ccd_cb_offer": ("ccd_offer_choice", "^[12]$", "ccd_offer_tries", "ccd_cb_keep_waiting"),
    "ccd_cb_which_number": ("ccd_which", "^[12]$", "ccd_cb_tries", "ccd_cb_keep_waiting"),
    "ccd_cb_enter_number": ("ccd_cb_digits", None, "ccd_cb_tries", "ccd_cb_keep_waiting"),
    "ccd_cb_readback": ("ccd_confirm", "^[12]$", "ccd_cb_tries", "ccd_cb_keep_waiting"),
    "ccd_cb_customer_first": (
        "ccd_cf_choice",
        None,
        "ccd_cb_tries",
        "ccd_cb_customer_first_timeout",
    ),
}


@pytest.mark.parametrize("extension", sorted(CONTRACT))
def test_prompt_arguments_are_in_freeswitch_order_and_failures_route(extension):
    conf = load_conf(CONF_DIR)
    actions = [a for a in conf.dialplan.route("ccd", extension, {}) if not a.inline]
    pagd = [a for a in actions if a.app == "play_and_get_digits"]
    assert len(pagd) == 1
    # min max tries timeout terminators prompt invalid var regex digit_timeout target
    argv = pagd[0].data.split(" ", 10)
    var, regex, tries_var, failure = CONTRACT[extension]
    assert 0 <= int(argv[0]) <= int(argv[1])
    assert argv[2] == conf.vars[tries_var] and int(argv[2]) >= 1
    assert int(argv[3]) > 1000 and int(argv[9]) > 1000
    assert argv[4] == "#"
    assert argv[5] and argv[6] and " " not in argv[5] + argv[6]
    assert argv[7] == var
    assert regex is None or argv[8] == regex
    target = transfer_target(argv[10], "ccd")
    assert target == (failure, "ccd")
    assert conf.dialplan.route(*reversed(target), {})
    assert [a.app for a in actions[-2:]] == ["set", "park"]
    assert actions[-2].data.startswith("ccd_stage=")


def test_typed_number_takes_up_to_16_digits():
    conf = load_conf(CONF_DIR)
    pagd = [
        a
        for a in conf.dialplan.route("ccd", "ccd_cb_enter_number", {})
        if a.app == "play_and_get_digits"
    ]
    assert pagd[0].data.split(" ")[:2] == ["0", "16"]


def test_every_prompt_application_is_one_the_fake_executes():
    conf = load_conf(CONF_DIR)
    apps = Apps(None)  # type: ignore[arg-type]  # the table only
    seen = set()
    for ext in conf.dialplan.extensions("ccd"):
        if not ext.name.startswith("ccd_cb_"):
            continue
        for cond in ext.conditions:
            for item in cond.actions + cond.anti_actions:
                seen.add(item.app)
                assert apps.known(item.app), (ext.name, item.app)
    assert {"play_and_get_digits", "say", "park", "transfer", "hangup"} <= seen
