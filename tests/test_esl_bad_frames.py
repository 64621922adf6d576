"""Bad frames from FreeSWITCH, as raw bytes over a real socket to the EslClient (issue 12).

An event that frames correctly but does not decode (JSON nested deeper than the parser
recurses, a non-digit inner Content-Length) is skipped with ``esl.frame_ignored``: the
connection stays up and the next event arrives. An outer ``Content-Length`` that is not
plain digits breaks the framing itself: the stream cannot be trusted, so it is a protocol
error, once (one reconnect, no loop), never a value read by ``int()``'s lenient rules.
"""

from __future__ import annotations

import pytest

from ccd.adapters.esl import Disconnected, Reconnected
from ccd.core.esl_wire import EslEvent, FrameParser, ProtocolError, content_length, encode_frame
from tests import test_esl_client as scripted
from tests.test_esl_client import PARK_EVENT, connected_client, events_named, next_item

# The scripted FreeSWITCH, the client factory and the log capture of the client's tests.
switch, make_client, logs = scripted.switch, scripted.make_client, scripted.logs

DEEP = 100_000  # far past the interpreter's recursion limit


def _nested_json_event() -> bytes:
    body = '{"Event-Name": "CHANNEL_PARK", "Unique-ID": "x", "deep": %s%s}' % (
        "[" * DEEP,
        "]" * DEEP,
    )
    return encode_frame([("Content-Type", "text/event-json")], body)


def test_a_deeply_nested_json_event_is_skipped_and_the_connection_stays(switch, make_client, logs):
    client = connected_client(make_client)
    switch.last.push(_nested_json_event() + PARK_EVENT)
    event = next_item(client)
    assert isinstance(event, EslEvent) and event.name == "CHANNEL_PARK"
    assert client.connected and client.attempts == 1
    reasons = [e["reason"] for e in events_named(logs, "esl.frame_ignored")]
    assert reasons == ["bad event JSON: nested too deeply"]
    assert not events_named(logs, "esl.protocol_error")
    assert client.api("status") == "answer to status\n"


def test_a_nested_value_inside_a_json_event_costs_nothing_and_is_not_rendered(switch, make_client):
    client = connected_client(make_client)
    nested = "[" * 500 + "]" * 500  # parses, but is no header value FreeSWITCH would send
    body = '{"Event-Name": "CHANNEL_PARK", "Unique-ID": "abc", "x": %s, "n": 5}' % nested
    switch.last.push(encode_frame([("Content-Type", "text/event-json")], body))
    event = next_item(client)
    assert event.name == "CHANNEL_PARK" and event.get("x") == "" and event.get("n") == "5"


@pytest.mark.parametrize("inner", [b"+5", b" 5", b"5_0", "\u0665".encode()])
def test_an_event_with_a_bad_inner_content_length_is_skipped(switch, make_client, logs, inner):
    client = connected_client(make_client)
    body = b"Event-Name: BACKGROUND_JOB\nContent-Length: " + inner + b"\n\n+OK done\n"
    switch.last.push(encode_frame([("Content-Type", "text/event-plain")], body) + PARK_EVENT)
    assert next_item(client).name == "CHANNEL_PARK"
    assert client.connected and client.attempts == 1
    [ignored] = events_named(logs, "esl.frame_ignored")
    assert ignored["reason"].startswith("bad inner Content-Length")


@pytest.mark.parametrize("length", [b"+5", b" 5", b"5_0", "\u0665".encode(), b"0x5"])
def test_an_outer_content_length_that_is_not_digits_is_a_protocol_error_once(
    switch, make_client, logs, length
):
    client = connected_client(make_client)
    switch.last.push(b"Content-Type: api/response\nContent-Length: " + length + b"\n\nhello")
    item = next_item(client)
    assert isinstance(item, Disconnected) and "Content-Length" in item.reason
    assert isinstance(next_item(client), Reconnected)
    switch.last.push(PARK_EVENT)
    assert next_item(client).name == "CHANNEL_PARK"  # one reconnect, then events again
    assert len(events_named(logs, "esl.protocol_error")) == 1


@pytest.mark.parametrize("text", ["+5", " 5", "5 ", "5_0", "\u0665", "-1", "", "1e3", "0x5"])
def test_content_length_is_ascii_digits_only(text):
    with pytest.raises(ProtocolError):
        content_length(text)
    parser = FrameParser()
    parser.feed(b"Content-Type: api/response\nContent-Length: %s\n\nhello" % text.encode())
    with pytest.raises(ProtocolError):
        list(parser)


def test_content_length_takes_plain_digits():
    assert content_length("0") == 0
    assert content_length("00012") == 12
