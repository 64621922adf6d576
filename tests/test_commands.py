"""ccd.core.commands: the exact ESL text of every command, and refusal of hostile values."""

from __future__ import annotations

import urllib.parse

import pytest

from ccd.core.commands import (
    SIP_DQUOTE,
    Break,
    Bridge,
    Broadcast,
    Execute,
    Kill,
    Originate,
    Playback,
    SetVar,
    Transfer,
    UnsafeValue,
    quote_var_value,
    sanitize_caller_name,
    sanitize_number,
    sip_display_name,
    to_esl,
    to_wire,
)

A = "2424723f-9c09-402f-ab5d-040548ab2184"
B = "cc1717f6-3800-4f68-a001-7b88416f1c48"
JOB = "11111111-2222-3333-4444-555555555555"


def test_originate_keeps_a_caller_name_with_comma_quoted_as_capture_14():
    cmd = Originate(
        A,
        "1001",
        {
            "origination_caller_id_number": "+3612345678",
            "origination_caller_id_name": 'Doe, John "VIP"',
        },
        ring_timeout=18,
    )
    assert to_esl(cmd) == (
        "bgapi",
        "originate '{origination_uuid=" + A + ",originate_timeout=18,"
        "origination_caller_id_number=+3612345678,"
        "origination_caller_id_name=\\'Doe, John \u201dVIP\u201d\\'}user/1001' &park()",
    )


# What FreeSWITCH 1.10.12's mod_sofia does to origination_caller_id_name between the
# dial string and the INVITE's From header (tests/real/README.md; checked on the real
# switch by tests/real/test_screenpop.py): switch_sanitize_number() when the outbound leg
# is created, check_decode() when the INVITE is written, then "<name>" as it is.
def _sofia_sanitize_number(name: str) -> str:
    if not any(ch in name for ch in "/:@"):
        return name
    name = name.split("@", 1)[0]
    for sep in "/:":
        name = name.rsplit(sep, 1)[-1]
    return name


def _sofia_check_decode(name: str) -> str:
    if "%" in name:
        name = urllib.parse.unquote(name, errors="strict")
    if '"' in name:
        name = name.split('"', 1)[1]
        name = name.rsplit('"', 1)[0] if '"' in name else name
    return name


def _phone_shows(from_header: str) -> str:
    """A quoted-string display name as a SIP phone reads it (backslash pairs)."""
    assert from_header.startswith('"') and from_header.endswith('"')
    body, out, i = from_header[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            i += 1
        else:
            assert body[i] != '"', f"a bare quote ends the display name early: {from_header}"
        out.append(body[i])
        i += 1
    return "".join(out)


def _through_sofia(value: str) -> str:
    """Dial-string value (as the {...} parser hands it over) -> what the phone shows."""
    return _phone_shows('"' + _sofia_check_decode(_sofia_sanitize_number(value)) + '"')


def _value_in_dial_string(name: str) -> str:
    _, text = to_esl(Originate(A, "1001", {"origination_caller_id_name": name}, 18))
    inner = text.split("origination_caller_id_name=", 1)[1].removesuffix("}user/1001' &park()")
    # One argument for the API splitter, one value for the {...} parser.
    assert not any(ch in inner.strip("\\'") for ch in "{}$\n'")
    return inner[2:-2] if inner.startswith("\\'") else inner


SEEN_AS = {'"': SIP_DQUOTE}


@pytest.mark.parametrize("ch", [chr(c) for c in range(0x20, 0x7F)])
def test_every_printable_ascii_character_reaches_the_phone(ch):
    # Defect 3 (issue 9): "Doe: John" showed " John", "x sip:a@b y" showed "a".
    name = f"a{ch}b {ch} Doe: John x sip:a@b y"
    expected = name.replace('"', SEEN_AS['"'])
    assert _through_sofia(_value_in_dial_string(name)) == expected


@pytest.mark.parametrize(
    "name",
    [
        "Ünnepi Győző",
        "日本語 テスト",
        "\u03a9mega \u2013 \u2018q\u2019 \U0001f600",
        "Zoë ß",
        "a\\",
        "100%",
    ],
)
def test_unicode_and_edge_names_reach_the_phone(name):
    assert _through_sofia(_value_in_dial_string(name)) == name


def test_without_encoding_sofia_cuts_the_name_as_seen_on_the_real_switch():
    # The model above reproduces the real switch's cut (tests/real/test_screenpop.py).
    assert _through_sofia("Doe: John") == " John"
    assert _through_sofia("x sip:a@b y") == "a"
    assert sip_display_name("Doe: John") == "Doe%3A John"


def test_originate_wire_frame_carries_job_uuid_header():
    cmd = Originate(A, "1001", {"ccd_call": B}, ring_timeout=18, job_uuid=JOB)
    wire = to_wire(cmd)
    assert wire == (
        b"bgapi originate '{origination_uuid=" + A.encode() + b",originate_timeout=18,"
        b"ccd_call=" + B.encode() + b"}user/1001' &park()\nJob-UUID: " + JOB.encode() + b"\n\n"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1001", "1001"),
        ("sip:1001@example.com", "sip:1001@example.com"),
        ("Doe, John", "\\'Doe, John\\'"),
        ("a=b", "\\'a=b\\'"),
        ("Émilie Ñandú 李", "\\'Émilie Ñandú 李\\'"),
        (True, "true"),
        (30, "30"),
    ],
)
def test_quote_var_value(value, expected):
    assert quote_var_value(value) == expected


@pytest.mark.parametrize(
    "hostile",
    [
        "O'Brien",
        "x}user/9999",
        "{evil=1}",
        "line\nbreak",
        "cr\rlf",
        "back\\slash",
        "${system(rm -rf /)}",
        "^^:a:b",
        "a:_:user/9999",
        "nul\x00byte",
        "x" * 600,
    ],
)
def test_quote_var_value_refuses_what_cannot_be_expressed(hostile):
    with pytest.raises(UnsafeValue):
        quote_var_value(hostile)


@pytest.mark.parametrize(
    "hostile",
    [
        "O'Brien",
        "x}user/9999', '{a",
        "two\nlines",
        "back\\slash",
        "${x}",
        "^^:a",
        "a:_:b",
        "\u202e",
    ],
)
def test_sanitized_hostile_names_always_make_a_valid_originate(hostile):
    name = sanitize_caller_name(hostile)
    kind, text = to_esl(Originate(A, "1001", {"origination_caller_id_name": name}, 18))
    assert kind == "bgapi"
    # Exactly one outer quoted dial string and one &park(): nothing escaped the quoting.
    dial = text.removeprefix("originate ").removesuffix(" &park()")
    assert dial.startswith("'{") and dial.endswith("}user/1001'")
    inner = dial[2 : -len("}user/1001'")]
    assert "\n" not in text and "{" not in inner and "}" not in inner and "$" not in inner
    assert inner.count("\\'") in (0, 2)


def test_sanitize_caller_name_keeps_ordinary_names_and_replaces_the_rest():
    assert sanitize_caller_name('Doe, John "VIP"') == "Doe, John \u201dVIP\u201d"
    assert sanitize_caller_name("O'Brien") == "O'Brien"
    assert sanitize_caller_name("a\nb\t c") == "a b c"
    assert sanitize_caller_name("{x}") == "{x}"
    assert sanitize_caller_name("Zoë 王") == "Zoë 王"
    assert sanitize_caller_name("x" * 100, max_len=10) == "x" * 10
    assert sanitize_caller_name(None) == ""


def test_sanitize_number_keeps_plus_and_digits_only():
    assert sanitize_number("+36 (1) 234-5678") == "+3612345678"
    assert sanitize_number("1001'}") == "1001"
    assert sanitize_number("anonymous") == ""
    assert sanitize_number("٣٤٥") == ""  # non-ASCII digits are not dialable


def test_originate_refuses_bad_uuid_extension_variable_name_and_timeout():
    with pytest.raises(UnsafeValue):
        to_esl(Originate("not-a-uuid", "1001", {}, 18))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "1001@evil", {}, 18))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "10 01", {}, 18))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "1001", {"bad-name": "x"}, 18))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "1001", {"a,b": "x"}, 18))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "1001", {"origination_uuid": B}, 18))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "1001", {}, 0))
    with pytest.raises(UnsafeValue):
        to_esl(Originate(A, "1001", {}, 18, job_uuid="x y"))


def test_api_commands_exact_text():
    assert to_esl(Bridge(A, B)) == ("api", f"uuid_bridge {A} {B}")
    assert to_esl(Kill(A, "ORIGINATOR_CANCEL")) == ("api", f"uuid_kill {A} ORIGINATOR_CANCEL")
    assert to_esl(Kill(A)) == ("api", f"uuid_kill {A} NORMAL_CLEARING")
    assert to_esl(Transfer(A, "ccd_voicemail_sales", "ccd")) == (
        "api",
        f"uuid_transfer {A} ccd_voicemail_sales XML ccd",
    )
    assert to_esl(Broadcast(A, "local_stream://moh")) == (
        "api",
        f"uuid_broadcast {A} local_stream://moh aleg",
    )
    assert to_esl(Break(A)) == ("api", f"uuid_break {A} all")
    assert to_esl(SetVar(A, "park_after_bridge", "true")) == (
        "api",
        f"uuid_setvar {A} park_after_bridge true",
    )


@pytest.mark.parametrize(
    "cmd",
    [
        Bridge(A, "x y"),
        Kill(A, "no_such cause"),
        Kill(A + " extra"),
        Transfer(A, "ext with space"),
        Transfer(A, "1001", "ctx;x"),
        Broadcast(A, "/tmp/a file.wav"),
        Broadcast(A, "moh", "cleg"),
        Broadcast(A, "'quoted'"),
        SetVar(A, "name", "two words"),
        SetVar(A, "bad name", "x"),
        Execute(A, "playback", "x\ny"),
        Execute(A, "Play Back", "x"),
        Playback(A, "/tmp/x.wav\r\nexecute-app-name: hangup"),
    ],
)
def test_commands_refuse_values_that_would_change_the_command(cmd):
    with pytest.raises(UnsafeValue):
        to_esl(cmd)


def test_execute_is_a_sendmsg_frame_with_event_uuid():
    cmd = Execute(A, "play_and_get_digits", "1 1 2 3000 # a.wav b.wav ccd_digit \\d 1000", JOB)
    assert to_esl(cmd) == (
        "execute",
        f"{A} play_and_get_digits 1 1 2 3000 # a.wav b.wav ccd_digit \\d 1000",
    )
    assert to_wire(cmd).split(b"\n") == [
        f"sendmsg {A}".encode(),
        b"call-command: execute",
        b"execute-app-name: play_and_get_digits",
        b"execute-app-arg: 1 1 2 3000 # a.wav b.wav ccd_digit \\d 1000",
        f"Event-UUID: {JOB}".encode(),
        b"",
        b"",
    ]


def test_playback_is_execute_of_playback_without_arg_header_when_empty():
    assert to_esl(Playback(A, "ivr/ivr-hold.wav")) == ("execute", f"{A} playback ivr/ivr-hold.wav")
    assert to_wire(Execute(A, "answer")) == (
        f"sendmsg {A}\ncall-command: execute\nexecute-app-name: answer\n\n".encode()
    )
