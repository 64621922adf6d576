"""The fake FreeSWITCH's fast paths against the plain definitions they replaced.

Dial-string splitting, api name matching, event serialisation and uuids were rewritten for
speed (scripts/bench.py: the fake's CPU per routed call). Each test here keeps the earlier,
obviously-correct version as the reference and feeds both many random inputs drawn from the
characters that matter (quotes, backslashes, delimiters, control and non-ASCII characters).
"""

from __future__ import annotations

import functools
import json
import random
import uuid

import pytest

from ccd.core.esl_wire import encode_event_plain
from ccd.fakeswitch.api import ApiRegistry
from ccd.fakeswitch.channels import new_uuid
from ccd.fakeswitch.dialstring import OriginateError, parse_dial_string, split_args
from ccd.fakeswitch.fsevents import FsEvent, serialize_json, serialize_plain


def _reference_split_args(text: str, delim: str = " ") -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
            cur.append(text[i + 1])
            i += 2
            continue
        if c == "'" and (quoted or "'" in text[i + 1 :]):
            quoted = not quoted
        elif c == delim and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [p for p in out if p] if delim == " " else out


def _reference_parse_dial_string(dial: str) -> tuple[dict[str, str], str]:
    variables: dict[str, str] = {}
    rest = dial.strip()
    while rest[:1] in ("{", "["):
        close = "}" if rest[0] == "{" else "]"
        end, quoted = -1, False
        for i, c in enumerate(rest):
            if c == "'":
                quoted = not quoted
            elif c == close and not quoted:
                end = i
                break
        if end < 0:
            raise OriginateError("unterminated variable block")
        for item in _reference_split_args(rest[1:end], ","):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                variables[name.strip()] = value
        rest = rest[end + 1 :]
    return variables, rest


def _random_text(rng: random.Random, alphabet: str, most: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(most)))


def test_split_args_matches_the_character_loop():
    rng = random.Random(11)
    for _ in range(20_000):
        text = _random_text(rng, "ab '\\,=x", 14)
        for delim in (" ", ","):
            assert split_args(text, delim) == _reference_split_args(text, delim), (text, delim)


def test_split_args_refuses_a_delimiter_it_cannot_split_at():
    for delim in ("'", "\\", "", ", "):
        with pytest.raises(ValueError):
            split_args("a b", delim)


def test_parse_dial_string_matches_the_character_loop():
    rng = random.Random(12)
    for _ in range(20_000):
        dial = _random_text(rng, "{}[]'\\,= ab", 18)
        try:
            expected: object = _reference_parse_dial_string(dial)
        except OriginateError:
            expected = OriginateError
        try:
            got: object = parse_dial_string(dial)
        except OriginateError:
            got = OriginateError
        assert got == expected, dial


def _reference_resolve(handlers: dict[str, object], line: str) -> tuple[object | None, str]:
    cuts = [i for i, ch in enumerate(line) if ch == " "]
    cuts.append(len(line))
    for cut in reversed(cuts):
        key = " ".join(line[:cut].split())
        handler = handlers.get(key) if key else None
        if handler is not None:
            return handler, line[cut + 1 :]
    return None, ""


def test_api_name_matching_matches_trying_every_cut():
    rng = random.Random(13)
    registry = ApiRegistry()
    handlers: dict[str, object] = {}
    for name in ("show", "show channels", "a", "a b c", "b", "uuid_kill"):
        handler = functools.partial(str.__add__, name)
        registry.register(name, handler)
        handlers[name] = handler
    for _ in range(20_000):
        line = _random_text(rng, "ab c  \tshow channels", 20)
        assert registry._resolve(line) == _reference_resolve(handlers, line), line
        # Asked twice (exists() then execute()): the same answer.
        assert registry._resolve(line) == _reference_resolve(handlers, line), line


_CHARS = 'aZ09 :-_%+"\\/\n\r\t\b\f\x00\x01\x1f\x7f\x80é€\u2028\U0001f600{},'


def _random_headers(rng: random.Random) -> list[tuple[str, str]]:
    names = ["Event-Name", "Unique-ID", "variable_x", "Caller-ID-Name", "ü"]
    return [(rng.choice(names), _random_text(rng, _CHARS, 12)) for _ in range(rng.randrange(0, 8))]


def _reference_serialize_json(ev: FsEvent) -> bytes:
    def text(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    parts = [text(k) + ":" + text(v) for k, v in ev.headers]
    if ev.body is not None:
        parts.append('"Content-Length":' + text(str(len(ev.body.encode("utf-8")))))
        parts.append('"_body":' + text(ev.body))
    payload = ("{" + ",".join(parts) + "}").encode("utf-8")
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(payload) + payload


def _reference_serialize_plain(ev: FsEvent) -> bytes:
    payload = encode_event_plain(ev.headers, ev.body)
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(payload) + payload


def test_event_serialisers_match_json_dumps_and_encode_event_plain():
    rng = random.Random(14)
    for _ in range(5_000):
        body = rng.choice([None, "", _random_text(rng, _CHARS, 20)])
        ev = FsEvent(_random_headers(rng), body)
        assert serialize_json(ev) == _reference_serialize_json(ev), ev
        assert serialize_plain(ev) == _reference_serialize_plain(ev), ev


def test_json_strings_escape_every_code_point_like_json_dumps():
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    ev = FsEvent([("k", every), (every[:3000], "v")], every)
    assert serialize_json(ev) == _reference_serialize_json(ev)


def test_new_uuid_is_a_random_version_4_uuid():
    seen = set()
    for _ in range(2_000):
        text = new_uuid()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 2_000
