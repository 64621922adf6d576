"""The fake switch's event socket speaks like FreeSWITCH 1.10.12 (fs-captures replayed).

Call-dependent answers (``show``, ``uuid_*``, ``originate``, registrations) belong to
the call model, which these protocol tests do not start: for those commands the
framing and the events are compared, not the body. mod_callcenter is not modelled
(ccd replaces it), so ``callcenter_config`` bodies are not compared either.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import gevent
import pytest
from gevent import socket

from ccd.core.esl_wire import Frame, FrameParser, decode_event, url_encode
from ccd.fakeswitch.api import FS_VERSION, ApiRegistry, SwitchStats, register_static_commands
from ccd.fakeswitch.esl_server import EslServer
from ccd.fakeswitch.fsevents import (
    EventBus,
    EventFactory,
    FsEvent,
    serialize_json,
    serialize_plain,
    serialize_xml,
)
from tests.support.captures import Exchange, FrameReader, capture_names, captures_dir, load_capture

needs_captures = pytest.mark.skipif(captures_dir() is None, reason="fs-captures not present")

#: Commands whose answer depends on calls/registrations (the call model's) or on
#: mod_callcenter (not modelled): body not compared here.
CALL_DEPENDENT = (
    "show ",
    "uuid_",
    "originate",
    "sofia status profile internal reg",
    "callcenter_config",
)
#: Event names that only a live call produces.
CALL_EVENTS = re.compile(r"^(CHANNEL_|CODEC|CALL_UPDATE|PRESENCE_IN|PLAYBACK_|DTMF|PRIVATE_)")


class FakeClock:
    def __init__(self, now: float = 1_795_381_174.832842) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rig:
    """An EslServer with a bare registry (static commands only) and a recording sendmsg."""

    def __init__(self, **server_kwargs) -> None:
        self.clock = FakeClock()
        self.bus = EventBus()
        self.events = EventFactory(self.clock, hostname="vm")
        self.api = ApiRegistry()
        register_static_commands(
            self.api, clock=self.clock, switch_stats=SwitchStats, started_at=self.clock() - 558.7
        )
        self.sendmsg_calls: list[tuple[str, dict[str, str]]] = []
        self.server = EslServer(
            api=self.api, bus=self.bus, events=self.events, sendmsg=self._sendmsg, **server_kwargs
        )

    def _sendmsg(self, uuid: str, headers: dict[str, str]) -> str:
        self.sendmsg_calls.append((uuid, headers))
        return "+OK" if uuid == "known" else f"-ERR invalid session id [{uuid}]"

    def connect(self, *, auth: bool = False) -> tuple[socket.socket, FrameReader]:
        sock = socket.create_connection(self.server.address, timeout=5)
        reader = FrameReader(sock)
        assert reader.read(1)[0].content_type == "auth/request"
        if auth:
            sock.sendall(b"auth ClueCon\n\n")
            assert reader.read(1)[0].headers["Reply-Text"] == "+OK accepted"
        return sock, reader

    def command(self, sock, reader, line: str, count: int = 1) -> list[Frame]:
        sock.sendall(line.encode() + b"\n\n")
        return reader.read(count)


@pytest.fixture
def rig():
    r = Rig()
    r.server.start()
    yield r
    r.server.stop()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError("condition not met in time")
        gevent.sleep(0.005)


# ---- replaying captures ---------------------------------------------------------------


def _digits(text: str) -> str:
    return re.sub(r"\d+", "#", text)


def _header_names(frame: Frame) -> list[str]:
    end = frame.body.find(b"\n\n")
    block = frame.body if end < 0 else frame.body[:end]
    return [ln.split(":", 1)[0] for ln in block.decode().split("\n") if ln]


def _expected(ex: Exchange) -> list[Frame]:
    out = []
    for f in ex.frames:
        if f.content_type == "text/event-plain" and CALL_EVENTS.match(decode_event(f).name):
            continue  # produced by a live call; not modelled by the protocol layer
        out.append(f)
    return out


def replay(rig: Rig, name: str) -> int:
    """Send the capture's commands; compare what comes back. Returns frames compared."""
    sock = socket.create_connection(rig.server.address, timeout=5)
    reader = FrameReader(sock)
    compared = 0
    for ex in load_capture(name):
        if ex.command is not None:
            sock.sendall(ex.command)
        expected = _expected(ex)
        got = reader.read(len(expected))
        where = f"{name} after {ex.line!r}"
        assert [f.content_type for f in got] == [f.content_type for f in expected], where
        for want, have in zip(expected, got, strict=True):
            compare_frame(ex.line, want, have, where)
            compared += 1
    assert reader.read_eof(), f"{name}: server did not close after the last command"
    sock.close()
    return compared


def compare_frame(line: str, want: Frame, have: Frame, where: str) -> None:
    ctype = want.content_type
    assert list(have.headers) == list(want.headers), where
    if ctype == "command/reply":
        w, h = want.headers["Reply-Text"], have.headers["Reply-Text"]
        if w.startswith("+OK Job-UUID: ") and "Job-UUID:" not in line:
            # A server-chosen job uuid: same form, any value.
            assert re.fullmatch(r"\+OK Job-UUID: [0-9a-f-]{36}", h), where
            assert have.headers["Job-UUID"] == h[len("+OK Job-UUID: ") :], where
        else:
            assert h == w, where
            if "Job-UUID" in want.headers:
                assert have.headers["Job-UUID"] == want.headers["Job-UUID"], where
    elif ctype == "api/response":
        api = line[4:]
        if api.startswith(CALL_DEPENDENT):
            return
        if api.startswith(("status", "sofia status")):
            # Uptime and counters depend on time and on calls: compare the text around them.
            assert _digits(have.body_text()) == _digits(want.body_text()), where
        else:
            assert have.body == want.body, where
    elif ctype == "text/event-plain":
        w_ev, h_ev = decode_event(want), decode_event(have)
        assert h_ev.name == w_ev.name, where
        assert _header_names(have) == _header_names(want), where
        if w_ev.name == "BACKGROUND_JOB":
            assert h_ev.get("Job-Command") == w_ev.get("Job-Command"), where
            assert h_ev.get("Job-Command-Arg") == w_ev.get("Job-Command-Arg"), where
            if not w_ev.get("Job-Command").startswith(CALL_DEPENDENT):
                if w_ev.get("Job-Command") == "status":
                    assert _digits(h_ev.body or "") == _digits(w_ev.body or ""), where
                else:
                    assert h_ev.body == w_ev.body, where
        if w_ev.name == "API":
            assert h_ev.get("API-Command") == w_ev.get("API-Command"), where
    else:
        assert have.body == want.body, where


@needs_captures
def test_capture_01_wrong_password_gets_invalid_and_disconnect(rig):
    assert replay(rig, "01_auth_wrong_password") == 3
    wait_for(lambda: rig.server.connections == 0)


@needs_captures
def test_capture_02_commands_and_errors_answer_like_freeswitch(rig):
    assert replay(rig, "02_commands_and_errors") == 31


@needs_captures
def test_capture_06_bgapi_subscriptions_and_filters(rig):
    # BACKGROUND_JOBs, filter/nixevent/noevents replies; channel events skipped (live call).
    assert replay(rig, "06_bgapi_subscriptions_filters") == 22


@needs_captures
@pytest.mark.parametrize("suffix", ["bare", "ccd_test"])
def test_capture_14_custom_subscriptions(rig, suffix):
    # The capture's side connection subscribed, then the dialplan `event` app fired
    # ccd::test twice (and sofia::register went by); bare CUSTOM received nothing.
    _greeting, auth, subscribe, leave = load_capture(
        "14_dialplan_park_vars_and_custom_event_sub_custom_" + suffix
    )
    sock, reader = rig.connect()
    sock.sendall(auth.command)
    assert reader.read(1)[0].headers["Reply-Text"] == auth.frames[0].headers["Reply-Text"]
    sock.sendall(subscribe.command)
    want = subscribe.frames[0].headers["Reply-Text"]
    assert reader.read(1)[0].headers["Reply-Text"] == want
    for _ in range(2):
        rig.bus.fire(
            rig.events.make(
                "CUSTOM",
                [("ccd_note", "hello world")],
                subclass="ccd::test",
                event_app=True,
                calling_file="mod_dptools.c",
                calling_function="event_function",
                calling_line=1902,
            )
        )
    rig.bus.fire(rig.events.make("CUSTOM", subclass="sofia::register"))
    expected_events = subscribe.frames[1:]
    got = reader.read(len(expected_events))
    for want_f, have_f in zip(expected_events, got, strict=True):
        assert decode_event(have_f).subclass == decode_event(want_f).subclass == "ccd::test"
        assert _header_names(have_f)[:15] == _header_names(want_f)[:15]
    sock.sendall(leave.command)
    got = reader.read(len(leave.frames))
    assert [f.content_type for f in got] == [f.content_type for f in leave.frames]
    assert got[0].headers["Reply-Text"] == leave.frames[0].headers["Reply-Text"]
    assert reader.read_eof()


@needs_captures
def test_capture_14_custom_event_header_order_matches(rig):
    exchanges = load_capture("14_dialplan_park_vars_and_custom_event_sub_custom_ccd_test")
    want = next(f for ex in exchanges for f in ex.frames if f.content_type == "text/event-plain")
    ev = rig.events.make(
        "CUSTOM", [("ccd_note", "hello world")], subclass="ccd::test", event_app=True
    )
    have = FrameParser()
    have.feed(serialize_plain(ev))
    names = _header_names(next(iter(have)))
    assert names == _header_names(want)[: len(names)]


# ---- serialisation fidelity -----------------------------------------------------------


def _capture_frames(ctype: str):
    for name in capture_names():
        parser = FrameParser()
        parser.feed((captures_dir() / (name + ".raw")).read_bytes())
        for frame in parser:
            if frame.content_type == ctype:
                yield name, frame


@needs_captures
def test_every_plain_event_value_reencodes_byte_identical():
    count = 0
    for name, frame in _capture_frames("text/event-plain"):
        end = frame.body.find(b"\n\n")
        for line in frame.body[:end].decode().split("\n"):
            header, _, raw = line.partition(": ")
            assert url_encode(unquote(raw)) == raw, (name, header, raw)
        count += 1
    assert count > 1000


def _assert_reserialized(ctype: str, serialize, event_of, at_least: int) -> None:
    """Every captured event frame of ``ctype`` read back as an event (``event_of``), then
    serialized again: the same bytes, frame headers and all; more than ``at_least`` of them."""
    count = 0
    for name, frame in _capture_frames(ctype):
        frame_bytes = (
            b"Content-Length: %d\nContent-Type: %s\n\n" % (len(frame.body), ctype.encode())
            + frame.body
        )
        assert serialize(event_of(frame)) == frame_bytes, name
        count += 1
    assert count > at_least


@needs_captures
def test_every_plain_event_reserializes_byte_identical():
    def event_of(frame: Frame) -> FsEvent:
        end = frame.body.find(b"\n\n")
        pairs = [ln.split(": ", 1) for ln in frame.body[:end].decode().split("\n")]
        headers = [(k, unquote(v)) for k, v in pairs if k != "Content-Length"]
        return FsEvent(headers, decode_event(frame).body)

    _assert_reserialized("text/event-plain", serialize_plain, event_of, 1000)


@needs_captures
def test_every_json_event_reserializes_byte_identical():
    def event_of(frame: Frame) -> FsEvent:
        pairs = json.loads(frame.body, object_pairs_hook=list)
        body = dict(pairs).get("_body")
        headers = [(k, v) for k, v in pairs if k not in ("_body", "Content-Length") or body is None]
        return FsEvent(headers, body)

    _assert_reserialized("text/event-json", serialize_json, event_of, 300)


@needs_captures
def test_every_xml_event_reserializes_byte_identical():
    def event_of(frame: Frame) -> FsEvent:
        text = frame.body.decode()
        pairs = re.findall(r"^    <([^>]+)>(.*)</\1>$", text[: text.index("</headers>")], re.M)
        m = re.search(r"<body>(.*)  </body>", text, re.S)
        body = (
            m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            if m
            else None
        )
        return FsEvent([(k, unquote(v)) for k, v in pairs], body)

    _assert_reserialized("text/event-xml", serialize_xml, event_of, 200)


def test_factory_stamps_standard_block_in_freeswitch_order_and_counts_sequence():
    clock = FakeClock(1_795_381_174.832842)
    factory = EventFactory(
        clock, hostname="vm", core_uuid="c0", ipv4="192.0.2.2", ipv6="fd00::2", first_sequence=2489
    )
    ev = factory.make(
        "API",
        [("API-Command", "status")],
        calling_file="f.c",
        calling_function="fn",
        calling_line=7,
    )
    assert ev.headers[:2] == [("Event-Name", "API"), ("Core-UUID", "c0")]
    assert ev.get("Event-Date-Timestamp") == "1795381174832842"
    assert ev.get("Event-Date-GMT") == "Sun, 22 Nov 2026 20:59:34 GMT"
    assert ev.get("event-sequence") == "2489"
    assert [k for k, _ in ev.headers][-2:] == ["Event-Sequence", "API-Command"]
    module_custom = factory.make("CUSTOM", subclass="sofia::register")
    assert [k for k, _ in module_custom.headers[:3]] == [
        "Event-Subclass",
        "Event-Name",
        "Core-UUID",
    ]
    assert module_custom.get("Event-Sequence") == "2490"
    with pytest.raises(ValueError):
        factory.make("API", subclass="x::y")


def test_event_bus_keeps_going_when_a_subscriber_raises():
    bus = EventBus()
    seen = []

    def broken(ev):
        raise RuntimeError("boom")

    bus.subscribe(broken)
    token = bus.subscribe(seen.append)
    ev = FsEvent([("Event-Name", "HEARTBEAT")])
    bus.fire(ev)
    bus.unsubscribe(token)
    bus.fire(ev)
    assert seen == [ev]


def test_event_bus_says_which_events_someone_may_want():
    bus = EventBus()
    assert not bus.wanted("HEARTBEAT")  # nobody listens: nothing to build
    token = bus.subscribe(lambda ev: None, wants=lambda name: name == "CHANNEL_PARK")
    assert bus.wanted("CHANNEL_PARK") and not bus.wanted("HEARTBEAT")
    everything = bus.subscribe(lambda ev: None)  # says nothing: may want anything
    assert bus.wanted("HEARTBEAT")
    bus.unsubscribe(everything)
    assert not bus.wanted("HEARTBEAT")
    bus.unsubscribe(token)
    assert not bus.wanted("CHANNEL_PARK")


def test_esl_server_wants_what_its_connections_listen_to(rig):
    assert not rig.server.wants("CHANNEL_PARK")
    sock, reader = rig.connect(auth=True)
    rig.command(sock, reader, "event plain CHANNEL_PARK")
    assert rig.server.wants("CHANNEL_PARK") and not rig.server.wants("HEARTBEAT")
    rig.command(sock, reader, "event plain ALL")
    assert rig.server.wants("HEARTBEAT")
    rig.command(sock, reader, "nixevent HEARTBEAT")
    assert rig.server.wants("CHANNEL_PARK") and not rig.server.wants("HEARTBEAT")
    rig.command(sock, reader, "noevents")
    assert not rig.server.wants("CHANNEL_PARK")
    rig.command(sock, reader, "event json CHANNEL_ANSWER")
    assert rig.server.wants("CHANNEL_ANSWER")
    sock.close()
    wait_for(lambda: not rig.server.wants("CHANNEL_ANSWER"))


def test_skipped_events_keep_their_sequence_numbers(rig):
    sock, reader = rig.connect(auth=True)
    rig.command(sock, reader, "event plain HEARTBEAT")
    first = rig.events.make("HEARTBEAT")
    rig.events.skip()  # an event nobody wanted: numbered, not built
    rig.bus.fire(first)
    rig.bus.fire(rig.events.make("HEARTBEAT"))
    numbers = [int(decode_event(f).headers["Event-Sequence"]) for f in reader.read(2)]
    assert numbers[1] == numbers[0] + 2


# ---- api registry ---------------------------------------------------------------------


def test_api_registry_longest_word_prefix_wins_and_unknown_is_freeswitch_text():
    reg = ApiRegistry()
    reg.register("show", lambda a: "show:" + a)
    reg.register("show channels", lambda a: "channels:" + a)
    assert reg.run("show channels as json") == "channels:as json"
    assert reg.run("show calls") == "show:calls"
    assert reg.run("nosuchcommand arg1 arg2") == "-ERR nosuchcommand Command not found!\n"
    result = reg.execute("show channels")
    assert (result.command, result.args, result.found) == ("show", "channels", True)


def test_api_handler_exception_becomes_error_text_not_crash():
    reg = ApiRegistry()
    reg.register("boom", lambda a: 1 / 0)
    assert reg.run("boom now") == "-ERR boom internal error\n"


def test_static_commands_follow_stats_and_clock():
    clock = FakeClock(1000.0)
    stats = {"sessions_since_startup": 64, "registrations": 3, "calls_out": 6}
    reg = ApiRegistry()
    register_static_commands(reg, clock=clock, switch_stats=lambda: stats, started_at=0.0)
    assert reg.run("version") == FS_VERSION + "\n"
    status = reg.run("status")
    assert status.startswith("UP 0 years, 0 days, 0 hours, 16 minutes, 40 seconds, 0 millis")
    assert "\n64 session(s) since startup\n" in status
    assert "REGISTRATIONS    \t3\n" in reg.run("sofia status profile internal")
    assert "CALLS-OUT        \t6\n" in reg.run("sofia status profile internal")
    assert reg.run("sofia status profile nosuchprofile") == "Invalid Profile!\n"
    assert reg.run("global_getvar domain") == "127.0.0.1"
    assert reg.run("global_setvar ccd_x=1") == "+OK"
    assert reg.run("global_getvar ccd_x") == "1"
    assert reg.run("sofia status profile internal reg").endswith(
        "Total items returned: 0\n" + "=" * 97 + "\n"
    )


# ---- behaviour over a socket ----------------------------------------------------------


def test_commands_before_auth_get_command_not_found_and_connection_stays(rig):
    sock, reader = rig.connect()
    assert (
        rig.command(sock, reader, "api status")[0].headers["Reply-Text"] == "-ERR command not found"
    )
    assert rig.command(sock, reader, "auth ClueCon")[0].headers["Reply-Text"] == "+OK accepted"
    assert rig.command(sock, reader, "api version")[0].body_text() == FS_VERSION + "\n"


def test_empty_api_body_is_answered_no_reply(rig):
    rig.api.register("silent", lambda a: "")
    sock, reader = rig.connect(auth=True)
    assert rig.command(sock, reader, "api silent")[0].body == b"-ERR no reply\n"


def _fire_channel(rig, name: str, uuid: str, **extra: str) -> None:
    rig.bus.fire(rig.events.make(name, [("Unique-ID", uuid), *extra.items()]))


def test_events_fan_out_by_subscription_filters_and_format(rig):
    plain, plain_r = rig.connect(auth=True)
    js, js_r = rig.connect(auth=True)
    rig.command(plain, plain_r, "event plain CHANNEL_PARK CUSTOM ccd::agent")
    rig.command(plain, plain_r, "filter Unique-ID u1")
    rig.command(js, js_r, "event json ALL")
    _fire_channel(rig, "CHANNEL_PARK", "u2")  # filtered out for plain
    _fire_channel(rig, "CHANNEL_ANSWER", "u1")  # not subscribed by plain
    _fire_channel(rig, "CHANNEL_PARK", "u1", variable_ccd_queue='sales, "vip"')
    got = plain_r.read(1)[0]
    ev = decode_event(got)
    assert (ev.name, ev.uuid, ev.var("ccd_queue")) == ("CHANNEL_PARK", "u1", 'sales, "vip"')
    js_frames = js_r.read(3)
    assert [decode_event(f).name for f in js_frames] == [
        "CHANNEL_PARK",
        "CHANNEL_ANSWER",
        "CHANNEL_PARK",
    ]
    assert all(f.content_type == "text/event-json" for f in js_frames)
    # A negative filter beats a positive one; "filter delete all" lifts filtering.
    rig.command(plain, plain_r, "filter Unique-ID -u1")
    _fire_channel(rig, "CHANNEL_PARK", "u1")
    rig.command(plain, plain_r, "filter delete all")
    _fire_channel(rig, "CHANNEL_PARK", "u3")
    assert decode_event(plain_r.read(1)[0]).uuid == "u3"


def test_custom_needs_named_subclass_and_nixevent_removes(rig):
    sock, reader = rig.connect(auth=True)
    rig.command(sock, reader, "event plain CUSTOM ccd::agent sofia::register")
    rig.bus.fire(rig.events.make("CUSTOM", subclass="ccd::other"))
    rig.bus.fire(rig.events.make("CUSTOM", subclass="ccd::agent"))
    assert decode_event(reader.read(1)[0]).subclass == "ccd::agent"
    assert (
        rig.command(sock, reader, "nixevent CUSTOM ccd::agent")[0].headers["Reply-Text"]
        == "+OK events nixed"
    )
    rig.bus.fire(rig.events.make("CUSTOM", subclass="ccd::agent"))
    rig.bus.fire(rig.events.make("CUSTOM", subclass="sofia::register"))
    assert decode_event(reader.read(1)[0]).subclass == "sofia::register"


def test_nixevent_out_of_all_keeps_the_rest(rig):
    sock, reader = rig.connect(auth=True)
    rig.command(sock, reader, "event plain ALL")
    rig.command(sock, reader, "nixevent HEARTBEAT")
    rig.bus.fire(rig.events.make("HEARTBEAT"))
    rig.bus.fire(rig.events.make("RE_SCHEDULE"))
    assert decode_event(reader.read(1)[0]).name == "RE_SCHEDULE"


def test_api_event_follows_api_response_and_bgapi_job_follows_reply(rig):
    sock, reader = rig.connect(auth=True)
    rig.command(sock, reader, "event plain API BACKGROUND_JOB")
    frames = rig.command(sock, reader, "api global_getvar domain", count=2)
    assert [f.content_type for f in frames] == ["api/response", "text/event-plain"]
    api_ev = decode_event(frames[1])
    assert (api_ev.get("API-Command"), api_ev.get("API-Command-Argument")) == (
        "global_getvar",
        "domain",
    )
    frames = rig.command(sock, reader, "bgapi version", count=3)
    job = frames[0].headers["Job-UUID"]
    events = [decode_event(f) for f in frames[1:]]
    assert [e.name for e in events] == ["API", "BACKGROUND_JOB"]
    assert events[1].get("Job-UUID") == job and events[1].body == FS_VERSION + "\n"
    assert "Job-Command-Arg" not in events[1].headers


def test_slow_api_blocks_only_its_connection(rig):
    release = gevent.event.Event()
    rig.api.register("slow", lambda a: (release.wait(5), "+OK done\n")[1])
    slow, slow_r = rig.connect(auth=True)
    fast, fast_r = rig.connect(auth=True)
    rig.command(fast, fast_r, "event plain HEARTBEAT")
    slow.sendall(b"api slow\n\n")
    assert rig.command(fast, fast_r, "api version")[0].body_text() == FS_VERSION + "\n"
    rig.bus.fire(rig.events.make("HEARTBEAT"))
    assert decode_event(fast_r.read(1)[0]).name == "HEARTBEAT"
    release.set()
    assert slow_r.read(1)[0].body == b"+OK done\n"


def test_sendmsg_forms_and_replies(rig):
    sock, reader = rig.connect(auth=True)
    sock.sendall(
        b"sendmsg known\ncall-command: execute\nexecute-app-name: playback\n"
        b"execute-app-arg: tone_stream://%(500,100,440)\n\n"
    )
    assert reader.read(1)[0].headers["Reply-Text"] == "+OK"
    sock.sendall(b"sendmsg\nsession-id: gone\ncall-command: hangup\n\n")
    assert reader.read(1)[0].headers["Reply-Text"] == "-ERR invalid session id [gone]"
    assert (
        rig.command(sock, reader, "sendmsg")[0].headers["Reply-Text"]
        == "-ERR invalid session id []"
    )
    uuid, headers = rig.sendmsg_calls[0]
    assert uuid == "known"
    assert headers["execute-app-arg"] == "tone_stream://%(500,100,440)"
    assert headers["Command"] == "sendmsg known"


def test_garbage_and_huge_header_close_only_that_connection(rig):
    good, good_r = rig.connect(auth=True)
    bad, bad_r = rig.connect(auth=True)
    bad.sendall(b"api \x00\xff\n\n")
    assert bad_r.read_eof()
    huge, huge_r = rig.connect(auth=True)
    huge.sendall(b"api status\nX: " + b"a" * 70_000)
    assert huge_r.read_eof()
    assert rig.command(good, good_r, "api version")[0].body_text() == FS_VERSION + "\n"
    wait_for(lambda: rig.server.connections == 1)


def test_slow_client_is_dropped_and_switch_keeps_firing():
    rig = Rig(max_queue_bytes=200_000)
    rig.server.start()
    try:
        lazy, _ = rig.connect(auth=True)
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.sendall(b"event plain ALL\n\n")
        wait_for(lambda: any(c.events_on for c in rig.server._conns))
        payload = "x" * 4000
        for _ in range(20_000):
            rig.bus.fire(rig.events.make("HEARTBEAT", [("Pad", payload)]))
            if rig.server.connections == 0:
                break
        wait_for(lambda: rig.server.connections == 0)
    finally:
        rig.server.stop()


def test_drop_connections_cuts_clients_without_notice(rig):
    _sock, reader = rig.connect(auth=True)
    rig.server.drop_connections()
    assert reader.read_eof()
    assert rig.server.connections == 0


def test_stop_sends_disconnect_notice(rig):
    _sock, reader = rig.connect(auth=True)
    rig.server.stop()
    frame = reader.read(1)[0]
    assert frame.content_type == "text/disconnect-notice"
    assert reader.read_eof()
