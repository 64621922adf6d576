"""ccd.core.esl_wire against the real FreeSWITCH 1.10.12 recordings in fs-captures/.

The expected numbers (bytes, frames per Content-Type, events per name) are read
from the captures' README.txt, so a new capture is checked without editing
this file.
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ccd.core.esl_wire import (
    MAX_HEADER_BYTES,
    EslEvent,
    Frame,
    FrameParser,
    PlainHeaders,
    ProtocolError,
    decode_event,
    encode_event_plain,
    parse_header_block,
    url_encode,
)
from tests.support.captures import captures_dir

CAPTURES = captures_dir() or Path("/nonexistent/fs-captures")

pytestmark = pytest.mark.skipif(
    not (CAPTURES / "README.txt").is_file(), reason="fs-captures not present"
)

# Events SEQUENCES.md leaves out because they depend on timing, not on the call flow.
NOISE = frozenset(
    {"HEARTBEAT", "RE_SCHEDULE", "API", "PRESENCE_IN", "MESSAGE_QUERY", "MESSAGE_WAITING"}
)


@dataclass
class CaptureInfo:
    name: str
    size: int = -1
    frames: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)


def _readme_index() -> dict[str, CaptureInfo]:
    """Per capture: its byte count, frames={...} and events: lines from README.txt."""
    if not (CAPTURES / "README.txt").is_file():
        return {}
    index: dict[str, CaptureInfo] = {}
    current: CaptureInfo | None = None
    for line in (CAPTURES / "README.txt").read_text().splitlines():
        if m := re.match(r"^(\S+)\.raw\s+\((\d+) bytes\)", line):
            current = index.setdefault(m.group(1), CaptureInfo(m.group(1)))
        elif current is None:
            continue
        elif m := re.match(r"^\s+Received: bytes=(\d+)\s+frames=(\{.*\})\s*$", line):
            current.size = int(m.group(1))
            current.frames = ast.literal_eval(m.group(2))
        elif m := re.match(r"^\s+events: (.*)$", line):
            for item in m.group(1).split(", "):
                name, _, count = item.rpartition(" x")
                current.events[name] = int(count)
    return index


INDEX = _readme_index()
NAMES = sorted(INDEX)


def raw(name: str) -> bytes:
    return (CAPTURES / f"{name}.raw").read_bytes()


def parse_all(data: bytes, chunks: list[int] | None = None) -> list[Frame]:
    parser = FrameParser()
    frames: list[Frame] = []
    if chunks is None:
        parser.feed(data)
        frames.extend(parser)
    else:
        pos = 0
        for size in chunks:
            parser.feed(data[pos : pos + size])
            pos += size
            frames.extend(parser)
        assert pos >= len(data)
    assert parser.buffered == 0, "bytes left over after the last frame"
    return frames


def events_of(frames: list[Frame]) -> list[EslEvent]:
    return [
        decode_event(f) for f in frames if f.content_type in ("text/event-plain", "text/event-json")
    ]


def event_key(event: EslEvent) -> str:
    return f"CUSTOM/{event.subclass}" if event.name == "CUSTOM" else event.name


def cut_patterns(name: str, size: int) -> dict[str, list[int]]:
    rng = random.Random(name)  # seeded per capture: a failure reproduces

    def random_cuts(low: int, high: int) -> list[int]:
        cuts, total = [], 0
        while total < size:
            cuts.append(rng.randint(low, high))
            total += cuts[-1]
        return cuts

    return {
        "one-byte": [1] * size,
        "tiny": random_cuts(1, 7),
        "header-sized": random_cuts(20, 300),
        "recv-sized": random_cuts(1, 65536),
    }


def test_readme_describes_every_capture():
    on_disk = {p.stem for p in CAPTURES.glob("*.raw")}
    assert on_disk == set(INDEX)
    assert all(info.frames for info in INDEX.values())


@pytest.mark.parametrize("name", NAMES)
def test_frame_counts_per_content_type_match_readme(name):
    data = raw(name)
    frames = parse_all(data)
    assert len(data) == INDEX[name].size
    assert Counter(f.content_type for f in frames) == Counter(INDEX[name].frames)


@pytest.mark.parametrize("name", NAMES)
def test_any_cut_of_the_stream_gives_the_same_frames(name):
    data = raw(name)
    whole = parse_all(data)
    for pattern, chunks in cut_patterns(name, len(data)).items():
        assert parse_all(data, chunks) == whole, pattern


# ccd does not decode text/event-xml (capture 05).
@pytest.mark.parametrize(
    "name", [n for n in NAMES if INDEX[n].events and not INDEX[n].frames.get("text/event-xml")]
)
def test_decoded_event_names_match_readme(name):
    frames = parse_all(raw(name))
    assert Counter(event_key(e) for e in events_of(frames)) == Counter(INDEX[name].events)


def _per_channel_sequences(name: str) -> list[list[str]]:
    channels: dict[str, list[str]] = {}
    for event in events_of(parse_all(raw(name))):
        if event.name not in NOISE:
            channels.setdefault(event.uuid, []).append(event_key(event))
    return list(channels.values())


def test_plain_and_json_captures_of_the_same_flow_give_the_same_channel_sequences():
    # README: 04 is "Same flow as 03 with 'event json ALL'". The uuids differ;
    # each channel's events, in order of the channels' first appearance, must not.
    plain = _per_channel_sequences("03_events_plain_ALL_calls")
    json_ = _per_channel_sequences("04_events_json_ALL_calls")
    assert len(plain) == 13
    assert plain == json_
    assert any("CHANNEL_BRIDGE" in seq and "CHANNEL_PARK" in seq for seq in plain)


@pytest.mark.parametrize(
    ("name", "wire_form"),
    [
        ("14_dialplan_park_vars_and_custom_event", b"Doe,%20John%20%22VIP%22"),
        ("17_event_json_calls", b'Doe, John \\"VIP\\"'),
    ],
)
def test_caller_id_name_with_comma_and_quotes_decodes_exactly(name, wire_form):
    data = raw(name)
    assert wire_form in data
    names = {e.get("Caller-Caller-ID-Name") for e in events_of(parse_all(data))}
    assert 'Doe, John "VIP"' in names
    assert url_encode('Doe, John "VIP"').encode() in raw("14_dialplan_park_vars_and_custom_event")


@pytest.mark.parametrize("name", ["14_dialplan_park_vars_and_custom_event", "17_event_json_calls"])
def test_custom_event_from_the_dialplan_decodes(name):
    custom = [e for e in events_of(parse_all(raw(name))) if e.subclass == "ccd::test"]
    assert custom
    assert all(e.name == "CUSTOM" and e.get("ccd_note") == "hello world" for e in custom)
    assert all(e.var("ccd_queue") == "sales" for e in custom)


def _job_bodies(name: str) -> list[str]:
    jobs = [e for e in events_of(parse_all(raw(name))) if e.name == "BACKGROUND_JOB"]
    for job in jobs:
        assert job.get("Job-UUID")
        assert job.body is not None
        assert len(job.body.encode()) == int(job.get("Content-Length"))
    return [job.body or "" for job in jobs]


def test_background_job_bodies_plain():
    bodies = _job_bodies("03_events_plain_ALL_calls")
    # the bgapi originate with origination_uuid=8b6bc300-... succeeded, user/9999 did not
    assert bodies == ["+OK 8b6bc300-b305-4999-8fcc-bd09df9a229c\n", "-ERR SUBSCRIBER_ABSENT\n"]
    causes = [b.strip() for b in _job_bodies("12_originate_failures_sip")]
    assert causes == [
        "-ERR NO_ANSWER",
        "-ERR USER_BUSY",
        "-ERR CALL_REJECTED",
        "-ERR NORMAL_CLEARING",
        "-ERR USER_NOT_REGISTERED",
    ]


def test_background_job_body_json():
    assert _job_bodies("17_event_json_calls") == ["-ERR NO_ANSWER\n"]


def test_background_job_keeps_a_client_chosen_job_uuid():
    jobs = [
        e
        for e in events_of(parse_all(raw("06_bgapi_subscriptions_filters")))
        if e.name == "BACKGROUND_JOB"
    ]
    assert "11111111-2222-3333-4444-555555555555" in {j.get("Job-UUID") for j in jobs}


def test_execute_complete_carries_the_client_event_uuid_as_application_uuid():
    done = [
        e
        for e in events_of(parse_all(raw("11_sendmsg_execute")))
        if e.name == "CHANNEL_EXECUTE_COMPLETE"
    ]
    by_uuid = {e.get("Application-UUID"): e for e in done}
    playback = by_uuid["bad7760f-519a-458a-867c-33dbcb711330"]
    assert playback.get("Application") == "playback"
    assert playback.get("Application-Response") == "FILE PLAYED"
    digits = by_uuid["59148f24-9ad3-4a1b-927e-30337f3f33de"]
    assert digits.var("ccd_digit") == "1"


@pytest.mark.parametrize("name", [n for n in NAMES if INDEX[n].frames.get("text/event-plain")])
def test_plain_encoder_reproduces_freeswitch_bytes(name):
    # The fake FreeSWITCH writes events with encode_event_plain: it must give
    # FreeSWITCH's exact bytes. Events that repeat a header name (Hangup-Cause,
    # codec headers) cannot round-trip through a dict and are skipped.
    checked = 0
    for frame in parse_all(raw(name)):
        if frame.content_type != "text/event-plain":
            continue
        block = frame.body.split(b"\n\n", 1)[0]
        names = [line.split(b":", 1)[0] for line in block.split(b"\n")]
        if len(names) != len(set(names)):
            continue
        event = decode_event(frame)
        headers = [(k, v) for k, v in event.headers.items() if k != "Content-Length"]
        assert encode_event_plain(headers, event.body) == frame.body
        checked += 1
    assert checked > 0


# -- malformed input -------------------------------------------------------------------------

GOOD = b"Content-Type: command/reply\nReply-Text: +OK\n\n"


@pytest.mark.parametrize("length", [b"abc", b"-1", b"12x", b"", b"99999999999"])
def test_bad_content_length_is_a_protocol_error(length):
    parser = FrameParser()
    parser.feed(b"Content-Type: api/response\nContent-Length: " + length + b"\n\nhello")
    with pytest.raises(ProtocolError):
        list(parser)


def test_frame_without_content_type_is_returned_and_the_next_frame_still_parses():
    parser = FrameParser()
    parser.feed(b"Reply-Text: +OK\n\n" + GOOD)
    first, second = list(parser)
    assert first.content_type == ""
    assert second.headers["Reply-Text"] == "+OK"


def test_garbage_lines_do_not_break_framing():
    parser = FrameParser()
    parser.feed(b"\x00\xff\xfegarbage without colon\n:\n no name\n\n" + GOOD)
    frames = list(parser)
    assert [f.content_type for f in frames] == ["", "command/reply"]
    assert frames[0].headers == {}


def test_stray_blank_lines_between_frames_are_skipped():
    parser = FrameParser()
    parser.feed(b"\n\n\n" + GOOD + b"\n" + GOOD)
    assert [f.headers["Reply-Text"] for f in parser] == ["+OK", "+OK"]


def test_header_block_without_end_is_a_protocol_error_once_too_long():
    parser = FrameParser()
    line = b"X-Header: " + b"a" * 100 + b"\n"
    fed = 0
    with pytest.raises(ProtocolError):
        while fed <= MAX_HEADER_BYTES + len(line):
            parser.feed(line)
            fed += len(line)
            assert parser.next_frame() is None
    assert fed > MAX_HEADER_BYTES


def test_body_waits_for_all_its_bytes():
    parser = FrameParser()
    parser.feed(b"Content-Type: api/response\nContent-Length: 5\n\nfal")
    assert parser.next_frame() is None
    parser.feed(b"seContent-Type: command/reply\nReply-Text: +OK\n\n")
    assert [f.body for f in parser] == [b"false", b""]


def test_event_without_event_name_is_a_protocol_error():
    frame = Frame({"Content-Type": "text/event-plain"}, b"Unique-ID: abc\n\n")
    with pytest.raises(ProtocolError):
        decode_event(frame)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"Unique-ID": "x"}'])
def test_bad_json_event_is_a_protocol_error(body):
    with pytest.raises(ProtocolError):
        decode_event(Frame({"Content-Type": "text/event-json"}, body))


def test_decode_event_refuses_a_non_event_frame():
    with pytest.raises(ProtocolError):
        decode_event(Frame({"Content-Type": "api/response"}, b"+OK\n"))


# -- the fast decoding path: lazy plain values, JSON parsed once ----------------------------


def _eager_plain(body: bytes) -> tuple[dict[str, str], str | None]:
    """What decode_event gave before values were decoded lazily: every value at once."""
    end = body.find(b"\n\n")
    block, rest = (body, b"") if end < 0 else (body[:end], body[end + 2 :])
    headers = parse_header_block(block, decode_values=True)
    length = headers.get("Content-Length")
    return headers, None if length is None else rest[: int(length)].decode("utf-8", "replace")


def _eager_json(body: bytes) -> tuple[dict[str, str], str | None]:
    data = json.loads(body)
    inner = data.pop("_body", None)
    return {k: v if isinstance(v, str) else str(v) for k, v in data.items()}, inner


@pytest.mark.parametrize("name", NAMES)
def test_lazy_decoding_gives_the_eager_headers_for_every_recorded_event(name):
    checked = 0
    for frame in parse_all(raw(name)):
        if frame.content_type == "text/event-plain":
            want_headers, want_body = _eager_plain(frame.body)
        elif frame.content_type == "text/event-json":
            want_headers, want_body = _eager_json(frame.body)
        else:
            continue
        event = decode_event(frame)
        assert dict(event.headers.items()) == want_headers
        assert {k: event.headers[k] for k in want_headers} == want_headers
        assert {k: event.get(k) for k in want_headers} == want_headers
        assert event.body == want_body
        assert len(event.headers) == len(want_headers) and set(event.headers) == set(want_headers)
        checked += 1
    assert checked == sum(v for k, v in INDEX[name].frames.items() if k != "text/event-xml"
                          and k.startswith("text/event-"))  # fmt: skip


def test_plain_headers_decode_a_value_only_when_read():
    headers = PlainHeaders({"Caller-Caller-ID-Name": "Doe,%20John", "Event-Name": "CUSTOM"})
    assert headers._raw["Caller-Caller-ID-Name"] == "Doe,%20John"  # stored as sent
    assert headers["Caller-Caller-ID-Name"] == headers.get("Caller-Caller-ID-Name") == "Doe, John"
    assert headers.get("missing") is None and headers.get("missing", "x") == "x"
    assert "Event-Name" in headers and "missing" not in headers
    assert headers == {"Caller-Caller-ID-Name": "Doe, John", "Event-Name": "CUSTOM"}
    assert "Doe, John" in repr(headers)
    with pytest.raises(KeyError):
        headers["missing"]


@pytest.mark.parametrize(
    "block",
    [
        b"Event-Name: X\nName:value\nOther: %41",  # no space after the colon
        b"Event-Name: X\r\nCR-Line: a%20b\r\n",  # CR LF line ends
        b"Event-Name: X\nBad Name: skipped\nGood: kept",  # a name with a space
        b"Event-Name: X\n: no name\nGood: kept",  # an empty name
        b"Event-Name: X\nA:b: c\nGood: kept",  # a colon before the first ": "
        b"Event-Name: X\nTwice: a: b\nEmpty: \nBare:",  # ": " inside a value, empty values
        b"Event-Name: X\n\nafter-blank: y",  # a blank line (the block ends there)
        b"Event-Name: X\nDup: 1\nDup: 2",  # duplicates: the last one wins
        "Event-Name: X\nUtf8: \u00e9t\u00e9 %C3%A9".encode(),
        b"Event-Name: X\nBroken: \xff\xfe",  # invalid UTF-8 is replaced, never raised
    ],
)
def test_unusual_plain_blocks_decode_like_the_eager_parser(block):
    event = decode_event(Frame({"Content-Type": "text/event-plain"}, block + b"\n\n"))
    want, _ = _eager_plain(block + b"\n\n")
    assert dict(event.headers.items()) == want


def test_json_values_that_are_not_strings_become_strings():
    # FreeSWITCH sends strings only; a list or object (possibly nested deep) is not rendered.
    body = b'{"Event-Name":"CUSTOM","n":42,"list":["a","b"],"t":true,"_body":"hi"}'
    event = decode_event(Frame({"Content-Type": "text/event-json"}, body))
    assert dict(event.headers) == {
        "Event-Name": "CUSTOM", "n": "42", "list": "", "t": "True",
    }  # fmt: skip
    assert event.body == "hi"


def test_json_that_orjson_refuses_but_json_reads_still_decodes():
    body = b'{"Event-Name":"CUSTOM","odd":"\\ud800"}'  # a lone surrogate escape
    assert decode_event(Frame({"Content-Type": "text/event-json"}, body)).get("odd") == "\ud800"


@pytest.mark.parametrize("ctype", ["text/event-plain", "text/event-json"])
def test_damaged_event_bodies_decode_or_are_refused_never_crash(ctype):
    name = "03_events_plain_ALL_calls" if ctype.endswith("plain") else "04_events_json_ALL_calls"
    bodies = [f.body for f in parse_all(raw(name)) if f.content_type == ctype][:60]
    rng = random.Random(ctype)
    for body in bodies:
        for _ in range(5):
            damaged = bytearray(body[: rng.randint(0, len(body))])
            for _ in range(rng.randint(0, 4)):
                if damaged:
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            try:
                event = decode_event(Frame({"Content-Type": ctype}, bytes(damaged)))
            except ProtocolError:
                continue
            assert event.name
            dict(event.headers.items())  # every value decodes


@pytest.mark.parametrize(
    "body",
    [
        b'{"Event-Name":"CUSTOM","FreeSWITCH-IPv6":"::1","x":":1"}',  # values starting ":"
        b'{"Event-Name":"CUSTOM","pop":"{\\"k\\":1,\\"t\\":true}"}',  # JSON text in a value
        b'{"Event-Name" : "CUSTOM", "n" : 7}',  # spaces around the colon
    ],
)
def test_json_string_values_that_look_odd_decode_exactly(body):
    want, _ = _eager_json(body)
    assert dict(decode_event(Frame({"Content-Type": "text/event-json"}, body)).headers) == want


@pytest.mark.parametrize("name", NAMES)
def test_the_core_reads_lazy_headers_as_it_reads_eager_ones(name):
    from ccd.core.events import from_esl

    for frame in parse_all(raw(name)):
        if frame.content_type != "text/event-plain":
            continue
        headers, body = _eager_plain(frame.body)
        assert from_esl(decode_event(frame)) == from_esl(EslEvent(headers, body))
