"""EslClient over real loopback sockets against a small scripted FreeSWITCH.

The scripted server speaks with bytes cut out of the real recordings in
fs-captures/ (auth/request, the auth replies, events, disconnect-notice) and
builds the rest with the same framing; what the client writes is compared
with the recorded ``.sent`` bytes where the recordings have the same command.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import gevent.queue
import gevent.server
import pytest
from structlog.testing import capture_logs

from ccd.adapters.esl import (
    Backoff,
    Connected,
    Disconnected,
    EslClient,
    JobFailed,
    Reconnected,
    subscription_command,
)
from ccd.adapters.esl_connection import EslAuthError, EslCommandError, EslDisconnected, EslTimeout
from ccd.adapters.inbox import Inbox
from ccd.core.esl_wire import EslEvent, Frame, FrameParser, decode_event, encode_frame
from tests.support.captures import captures_dir

CAPTURES = captures_dir() or Path("/nonexistent/fs-captures")

pytestmark = pytest.mark.skipif(
    not (CAPTURES / "README.txt").is_file(), reason="fs-captures not present"
)

PASSWORD = "ClueCon"
EVENTS = ["CHANNEL_PARK", "CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB", "CUSTOM", "ccd::test"]
DEADLINE = 5.0  # generous: only a broken client ever waits this long


# -- bytes from the recordings -----------------------------------------------------------------


def capture_frames(name: str) -> list[tuple[Frame, bytes]]:
    """Every frame of a capture with the exact bytes it came in."""
    data = (CAPTURES / f"{name}.raw").read_bytes()
    parser = FrameParser()
    parser.feed(data)
    out, pos = [], 0
    while True:
        before = parser.buffered
        frame = parser.next_frame()
        if frame is None:
            return out
        used = before - parser.buffered
        out.append((frame, data[pos : pos + used]))
        pos += used


def sent_blocks(name: str) -> list[bytes]:
    data = (CAPTURES / f"{name}.sent").read_bytes()
    return [block + b"\n\n" for block in data.split(b"\n\n") if block]


def find_frame(name: str, pred: Callable[[Frame], bool]) -> bytes:
    return next(raw for frame, raw in capture_frames(name) if pred(frame))


def find_event(name: str, pred: Callable[[EslEvent], bool]) -> bytes:
    def is_it(frame: Frame) -> bool:
        return frame.content_type.startswith("text/event-") and pred(decode_event(frame))

    return find_frame(name, is_it)


def reply_with(name: str, text: str) -> bytes:
    return find_frame(name, lambda f: f.headers.get("Reply-Text") == text)


AUTH_REQUEST = find_frame("02_commands_and_errors", lambda f: f.content_type == "auth/request")
AUTH_OK = reply_with("02_commands_and_errors", "+OK accepted")
# Capture 01: '-ERR invalid', then a disconnect-notice, then FreeSWITCH closes.
AUTH_REJECTED = (CAPTURES / "01_auth_wrong_password.raw").read_bytes()[len(AUTH_REQUEST) :]
DISCONNECT_NOTICE = find_frame("02_commands_and_errors", lambda f: "disconnect" in f.content_type)
BYE = reply_with("02_commands_and_errors", "+OK bye")
OK = reply_with("11_sendmsg_execute", "+OK")
PARK_EVENT = find_event("03_events_plain_ALL_calls", lambda e: e.name == "CHANNEL_PARK")
JSON_DOE_EVENT = find_event(
    "17_event_json_calls", lambda e: e.get("Caller-Caller-ID-Name") == 'Doe, John "VIP"'
)


def reply_frame(text: str, *extra: tuple[str, str]) -> bytes:
    return encode_frame([("Content-Type", "command/reply"), ("Reply-Text", text), *extra])


def api_response(body: str) -> bytes:
    return encode_frame([("Content-Type", "api/response")], body)


def subscribed_reply(line: str) -> bytes:
    return reply_frame(f"+OK event listener enabled {line.split()[1]}")


def test_scripted_replies_are_freeswitch_bytes():
    job = "11111111-2222-3333-4444-555555555555"
    assert reply_frame(f"+OK Job-UUID: {job}", ("Job-UUID", job)) == reply_with(
        "02_commands_and_errors", f"+OK Job-UUID: {job}"
    )
    assert api_response("-ERR No such channel!\n") == find_frame(
        "02_commands_and_errors", lambda f: f.body == b"-ERR No such channel!\n"
    )
    assert subscribed_reply("event plain ALL") == reply_with(
        "03_events_plain_ALL_calls", "+OK event listener enabled plain"
    )


# -- the scripted FreeSWITCH -------------------------------------------------------------------


class Session:
    """One accepted connection: greets, reads command blocks, answers through its switch."""

    def __init__(self, switch: ScriptedSwitch, sock) -> None:
        self.switch, self.sock = switch, sock
        self.blocks: list[bytes] = []  # every command block received, with its "\n\n"

    @property
    def lines(self) -> list[str]:
        return [b.split(b"\n", 1)[0].decode() for b in self.blocks]

    def run(self) -> None:
        if self.switch.greet:
            self.push(AUTH_REQUEST)
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    self.blocks.append(block + b"\n\n")
                    self.switch.answer(self, block.decode())
        except OSError:
            return

    def push(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the client may be gone already
            self.sock.sendall(data)

    def drop(self) -> None:
        self.sock.close()


# A responder gets (session, command block) and returns the bytes to send,
# SILENT to send nothing, or None for the switch's default answer.
SILENT = b""


class ScriptedSwitch:
    def __init__(self, password: str = PASSWORD, greet: bool = True) -> None:
        self.password = password
        self.greet = greet
        self.sessions: list[Session] = []
        self.responder: Callable[[Session, str], bytes | None] = lambda session, block: None
        self.port = 0
        self.server: gevent.server.StreamServer | None = None
        self.start()

    def start(self) -> None:
        self.server = gevent.server.StreamServer(("127.0.0.1", self.port), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def kill(self) -> None:
        """FreeSWITCH dies: no listener, every connection closed."""
        assert self.server is not None
        self.server.close()
        for session in self.sessions:
            session.drop()

    def _handle(self, sock, address) -> None:
        session = Session(self, sock)
        self.sessions.append(session)
        session.run()

    @property
    def last(self) -> Session:
        return self.sessions[-1]

    def answer(self, session: Session, block: str) -> None:
        custom = self.responder(session, block)
        if custom is not None:
            session.push(custom)
            return
        line = block.split("\n", 1)[0]
        if line.startswith("auth "):
            if line[5:] == self.password:
                session.push(AUTH_OK)
            else:
                session.push(AUTH_REJECTED)
                session.drop()
        elif line.startswith("event "):
            session.push(subscribed_reply(line))
        elif line.startswith("api "):
            session.push(api_response(f"answer to {line[4:]}\n"))
        elif line.startswith("bgapi "):
            job = next(h[10:] for h in block.split("\n") if h.startswith("Job-UUID: "))
            session.push(reply_frame(f"+OK Job-UUID: {job}", ("Job-UUID", job)))
        elif line.startswith("sendmsg"):
            session.push(OK)
        elif line == "exit":
            session.push(BYE + DISCONNECT_NOTICE)
            session.drop()
        else:
            session.push(reply_frame("-ERR command not found"))


# -- helpers -----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], object], timeout: float = DEADLINE) -> None:
    with gevent.Timeout(timeout, AssertionError("condition not met before the deadline")):
        while not condition():
            gevent.sleep(0.002)


def next_item(client: EslClient, timeout: float = DEADLINE) -> object:
    return client.inbox.get(timeout=timeout)


def items_until(client: EslClient, kind: type) -> list[object]:
    """Inbox items up to and including the first of ``kind``."""
    seen = []
    while True:
        seen.append(next_item(client))
        if isinstance(seen[-1], kind):
            return seen


@pytest.fixture
def switch() -> Iterator[ScriptedSwitch]:
    fake = ScriptedSwitch()
    yield fake
    fake.kill()


@pytest.fixture
def make_client(switch) -> Iterator[Callable[..., EslClient]]:
    clients: list[EslClient] = []

    def make(start: bool = True, **overrides) -> EslClient:
        options = dict(
            events=EVENTS,
            connect_timeout=1.0,
            command_timeout=2.0,
            backoff_min=0.005,
            backoff_max=0.02,
            auth_retry_interval=60.0,
            rng=random.Random(7),
        )
        options.update(overrides)
        client = EslClient("127.0.0.1", switch.port, options.pop("password", PASSWORD), **options)
        clients.append(client)
        if start:
            client.start()
        return client

    yield make
    for client in clients:
        client.stop(timeout=1.0)


@pytest.fixture
def logs() -> Iterator[list[dict]]:
    with capture_logs() as captured:
        yield captured


def events_named(logs: list[dict], name: str) -> list[dict]:
    return [entry for entry in logs if entry["event"] == name]


def connected_client(make_client, **overrides) -> EslClient:
    client = make_client(**overrides)
    assert client.wait_connected(DEADLINE)
    assert isinstance(next_item(client), Connected)
    return client


# -- pure parts --------------------------------------------------------------------------------


def test_subscription_line_is_the_one_freeswitch_accepted_in_capture_06():
    line = subscription_command(
        [
            "CHANNEL_CREATE",
            "CHANNEL_ANSWER",
            "CHANNEL_HANGUP_COMPLETE",
            "CUSTOM",
            "callcenter::info",
            "sofia::register",
        ]
    )
    assert (line + "\n\n").encode() in sent_blocks("06_bgapi_subscriptions_filters")


def test_subscription_gathers_subclasses_behind_one_custom():
    line = subscription_command(["sofia::register", "CHANNEL_PARK", "ccd::agent", "CHANNEL_PARK"])
    assert line == "event plain CHANNEL_PARK CUSTOM sofia::register ccd::agent"
    assert subscription_command(["ALL"], "json") == "event json ALL"


@pytest.mark.parametrize(
    ("events", "fmt"), [([], "plain"), (["CHANNEL PARK"], "plain"), (["ALL"], "xml")]
)
def test_subscription_refuses_bad_input(events, fmt):
    with pytest.raises(ValueError):
        subscription_command(events, fmt)


def test_backoff_grows_with_full_jitter_up_to_the_maximum_and_resets():
    class Recording(random.Random):
        def __init__(self):
            super().__init__(5)
            self.ranges = []

        def uniform(self, a, b):
            self.ranges.append((a, b))
            return super().uniform(a, b)

    rng = Recording()
    backoff = Backoff(0.5, 30.0, rng)
    delays = [backoff.next_delay() for _ in range(9)]
    assert rng.ranges == [(0.5, 0.5 * 2**n) for n in range(6)] + [(0.5, 30.0)] * 3
    assert all(low <= d <= high for d, (low, high) in zip(delays, rng.ranges, strict=True))
    backoff.reset()
    assert backoff.next_delay() == 0.5
    spread = Backoff(0.5, 30.0, random.Random(1))
    delays = [spread.next_delay() for _ in range(50)]
    assert len(set(delays)) > 40  # jittered, not a fixed schedule


def test_client_refuses_bad_configuration():
    with pytest.raises(ValueError):
        EslClient("127.0.0.1", 1, "pass\nword", events=EVENTS)
    with pytest.raises(ValueError):
        EslClient("127.0.0.1", 1, PASSWORD, events=EVENTS, backoff_min=2.0, backoff_max=1.0)
    with pytest.raises(ValueError):
        EslClient("127.0.0.1", 1, PASSWORD, events=EVENTS, command_timeout=0)


# -- connecting --------------------------------------------------------------------------------


def test_connects_authenticates_subscribes_then_announces_connected(switch, make_client, logs):
    client = connected_client(make_client)
    assert client.connected
    assert switch.last.blocks == [
        b"auth ClueCon\n\n",
        b"event plain CHANNEL_PARK CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB CUSTOM ccd::test\n\n",
    ]
    assert events_named(logs, "esl.connected")
    assert not any(PASSWORD in repr(entry) for entry in logs)


def test_events_sent_right_after_the_subscription_come_after_connected(switch, make_client):
    def subscribe_then_event(session, block):
        if block.startswith("event "):
            return subscribed_reply(block) + PARK_EVENT
        return None

    switch.responder = subscribe_then_event
    client = make_client()
    assert isinstance(next_item(client), Connected)
    event = next_item(client)
    assert isinstance(event, EslEvent) and event.name == "CHANNEL_PARK"


def test_wrong_password_is_an_auth_error_retried_only_after_the_interval(switch, make_client, logs):
    client = make_client(password="WrongPassword", auth_retry_interval=60.0)
    wait_for(lambda: isinstance(client.last_error, EslAuthError))
    assert switch.last.blocks == [b"auth WrongPassword\n\n"]  # capture 01's .sent
    wait_for(lambda: events_named(logs, "esl.reconnect_in"))
    gevent.sleep(0.1)  # twenty backoff_min periods: a retry storm would show here
    assert len(switch.sessions) == 1 and client.attempts == 1
    assert [e["seconds"] for e in events_named(logs, "esl.reconnect_in")] == [60.0]
    assert len(events_named(logs, "esl.auth_failed")) == 1
    assert "-ERR invalid" in events_named(logs, "esl.auth_failed")[0]["error"]
    assert not any("WrongPassword" in repr(entry) for entry in logs)
    assert not client.connected and client.inbox.empty()
    with pytest.raises(EslDisconnected, match="password"):
        client.api("status")


def test_password_fixed_on_freeswitch_is_picked_up_at_the_next_auth_retry(
    switch, make_client, logs
):
    switch.password = "NotYet"
    client = make_client(auth_retry_interval=0.2)
    wait_for(lambda: isinstance(client.last_error, EslAuthError))
    switch.password = PASSWORD
    assert client.wait_connected(DEADLINE)
    assert client.attempts == 2 and len(switch.sessions) == 2  # one refusal, one retry: no storm
    assert isinstance(next_item(client), Connected)
    assert len(events_named(logs, "esl.auth_failed")) == 1


def test_silent_server_is_a_connect_timeout_and_is_retried(switch, make_client):
    switch.greet = False
    client = make_client(connect_timeout=0.05)
    wait_for(lambda: client.attempts >= 2)
    assert isinstance(client.last_error, EslTimeout)
    assert not client.connected


# -- losing the connection ---------------------------------------------------------------------


def test_server_restart_on_the_same_port_reconnects_resubscribes_and_announces_reconnected(
    switch, make_client, logs
):
    client = connected_client(make_client)
    first = switch.last
    switch.kill()
    seen = items_until(client, Disconnected)
    assert seen == [Disconnected("connection closed by FreeSWITCH")]
    assert not client.connected
    with pytest.raises(EslDisconnected):
        client.api("status")
    switch.start()
    assert isinstance(next_item(client), Reconnected)
    assert client.connected
    assert switch.last is not first
    assert switch.last.blocks == first.blocks  # same auth, same `event` line again
    assert client.api("status") == "answer to status\n"
    assert events_named(logs, "esl.disconnected") and events_named(logs, "esl.reconnect_in")


def test_every_connection_is_told_before_anything_it_brings(switch, make_client):
    # The reader measures how long events waited against the switch's own clock; a new
    # connection (another FreeSWITCH, maybe) must start that measure afresh.
    told: list[int] = []
    client = make_client(on_connected=lambda: told.append(len(told)))
    assert isinstance(next_item(client), Connected) and told == [0]
    switch.kill()
    items_until(client, Disconnected)
    switch.start()
    assert isinstance(next_item(client), Reconnected) and told == [0, 1]


def test_pending_command_fails_at_once_when_the_server_drops(switch, make_client):
    switch.responder = lambda session, block: SILENT if block == "api status" else None
    client = connected_client(make_client, command_timeout=30.0)
    pending = gevent.spawn(client.api, "status")
    wait_for(lambda: "api status" in switch.last.lines)
    switch.last.drop()
    pending.join(DEADLINE)  # long before command_timeout
    assert isinstance(pending.exception, EslDisconnected)


def test_unanswered_command_times_out_and_later_replies_still_meet_their_commands(
    switch, make_client, logs
):
    switch.responder = lambda session, block: SILENT if block == "api slow" else None
    client = connected_client(make_client)
    with pytest.raises(EslTimeout):
        client.api("slow", timeout=0.05)
    switch.last.push(api_response("late answer to slow\n"))
    assert client.api("version") == "answer to version\n"
    assert client.connected
    assert events_named(logs, "esl.command_timeout")


def test_disconnect_notice_is_a_disconnect_and_the_client_reconnects(switch, make_client):
    client = connected_client(make_client)
    switch.last.push(DISCONNECT_NOTICE)  # and keep the socket open
    assert next_item(client) == Disconnected("disconnect-notice from FreeSWITCH")
    assert isinstance(next_item(client), Reconnected)
    assert len(switch.sessions) == 2


def test_commands_fail_at_once_before_the_client_is_connected(make_client):
    client = make_client(start=False)
    for call in (
        lambda: client.api("status"),
        lambda: client.bgapi("status"),
        lambda: client.execute("8c5e8425-4704-4da1-b0db-4599767d3c1d", "answer"),
        lambda: client.send_raw("noevents"),
    ):
        with pytest.raises(EslDisconnected):
            call()


def test_stop_says_exit_and_does_not_reconnect(switch, make_client):
    client = connected_client(make_client)
    client.stop()
    assert switch.last.lines[-1] == "exit"
    assert next_item(client) == Disconnected("client stopped")
    assert not client.connected
    assert client._supervisor is not None and client._supervisor.dead
    assert len(switch.sessions) == 1


# -- commands ----------------------------------------------------------------------------------


def test_api_returns_the_body_and_raises_on_err_with_freeswitch_text(switch, make_client):
    no_channel = find_frame("02_commands_and_errors", lambda f: f.body.startswith(b"-ERR No such"))
    not_found = reply_with("02_commands_and_errors", "-ERR command not found")

    def answer(session, block):
        if block.startswith("api uuid_kill"):
            return no_channel
        if block.strip() == "api":
            return not_found  # a bare `api` gets a command/reply (capture 02)
        return None

    switch.responder = answer
    client = connected_client(make_client)
    assert client.api("uuid_exists 00000000-0000-0000-0000-000000000000").startswith("answer to")
    with pytest.raises(EslCommandError) as err:
        client.api("uuid_kill 00000000-0000-0000-0000-000000000000")
    assert err.value.reply == "-ERR No such channel!"
    with pytest.raises(EslCommandError) as err:
        client.api("")
    assert err.value.reply == "-ERR command not found"
    assert client.send_raw("api") == "-ERR command not found"
    assert client.connected


def test_commands_with_a_newline_are_refused_before_anything_is_sent(switch, make_client):
    client = connected_client(make_client)
    with pytest.raises(ValueError):
        client.api("status\n\nexit")
    with pytest.raises(ValueError):
        client.execute("8c5e8425-4704-4da1-b0db-4599767d3c1d", "playback", "a\nb")
    assert switch.last.lines == ["auth ClueCon", client.subscribe_line]


def _job(capture_uuid: str) -> tuple[EslEvent, bytes]:
    raw = find_event("06_bgapi_subscriptions_filters", lambda e: e.get("Job-UUID") == capture_uuid)
    frame = capture_frames("06_bgapi_subscriptions_filters")
    return next(decode_event(f) for f, r in frame if r == raw), raw


def test_bgapi_results_are_matched_by_job_uuid_when_jobs_answer_out_of_order(switch, make_client):
    exists, exists_raw = _job("11111111-2222-3333-4444-555555555555")
    originate, originate_raw = _job("d4690582-d61b-4e8b-b662-6a568f4bec75")
    client = connected_client(make_client)
    first = client.bgapi(
        exists.get("Job-Command") + " " + exists.get("Job-Command-Arg"),
        "11111111-2222-3333-4444-555555555555",
    )
    second = client.bgapi(
        originate.get("Job-Command") + " " + originate.get("Job-Command-Arg"),
        "d4690582-d61b-4e8b-b662-6a568f4bec75",
    )
    assert (first, second) == (exists.get("Job-UUID"), originate.get("Job-UUID"))
    # the client-chosen Job-UUID goes out exactly as in capture 06
    assert switch.last.blocks[2] in sent_blocks("06_bgapi_subscriptions_filters")
    switch.last.push(originate_raw + exists_raw)  # second job answers first
    results = {}
    for _ in range(2):
        event = next_item(client)
        assert isinstance(event, EslEvent) and event.name == "BACKGROUND_JOB"
        results[event.get("Job-UUID")] = event.body
    assert results == {first: "false", second: "+OK 3978bc8b-f3b6-4cb9-916f-e87d44c0b7b2\n"}


def test_bgapi_generates_a_job_uuid_and_sends_it(switch, make_client):
    client = connected_client(make_client)
    job = client.bgapi("status")
    assert switch.last.blocks[-1] == f"bgapi status\nJob-UUID: {job}\n\n".encode()
    assert client.bgapi("status") != job


def test_acknowledged_job_lost_with_the_socket_gets_job_failed(switch, make_client):
    client = connected_client(make_client)
    job = client.bgapi("originate user/1001 &park()")
    switch.last.drop()
    reason = "connection closed by FreeSWITCH"
    assert items_until(client, JobFailed) == [Disconnected(reason), JobFailed(job, reason)]
    assert isinstance(next_item(client), Reconnected)


def test_job_answered_before_its_reply_is_not_reported_failed_later(switch, make_client):
    _, exists_raw = _job("11111111-2222-3333-4444-555555555555")

    def event_first(session, block):
        if block.startswith("bgapi "):
            job = "11111111-2222-3333-4444-555555555555"
            return exists_raw + reply_frame(f"+OK Job-UUID: {job}", ("Job-UUID", job))
        return None

    switch.responder = event_first
    client = connected_client(make_client)
    job = client.bgapi(
        "uuid_exists 00000000-0000-0000-0000-000000000000", "11111111-2222-3333-4444-555555555555"
    )
    event = next_item(client)
    assert isinstance(event, EslEvent) and event.get("Job-UUID") == job
    switch.last.drop()
    assert next_item(client) == Disconnected("connection closed by FreeSWITCH")
    assert isinstance(next_item(client), Reconnected)  # no JobFailed in between


def test_failed_bgapi_command_raises_and_is_not_reported_again(switch, make_client):
    switch.responder = lambda session, block: (
        reply_frame("-ERR no reply") if block.startswith("bgapi") else None
    )
    client = connected_client(make_client)
    with pytest.raises(EslCommandError):
        client.bgapi("status")
    switch.last.drop()
    assert next_item(client) == Disconnected("connection closed by FreeSWITCH")
    assert isinstance(next_item(client), Reconnected)


def test_execute_sends_capture_11_bytes_and_completion_carries_the_event_uuid(switch, make_client):
    event_uuid = "bad7760f-519a-458a-867c-33dbcb711330"
    complete = find_event(
        "11_sendmsg_execute",
        lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application-UUID") == event_uuid,
    )
    client = connected_client(make_client)
    returned = client.execute(
        "8c5e8425-4704-4da1-b0db-4599767d3c1d",
        "playback",
        "tone_stream://%(500,100,440)",
        event_uuid=event_uuid,
    )
    assert returned == event_uuid
    assert switch.last.blocks[-1] in sent_blocks("11_sendmsg_execute")
    switch.last.push(complete)
    event = next_item(client)
    assert isinstance(event, EslEvent) and event.name == "CHANNEL_EXECUTE_COMPLETE"
    assert event.get("Application-UUID") == returned
    assert event.get("Application-Response") == "FILE PLAYED"


def test_execute_without_event_uuid_generates_one_and_can_lock(switch, make_client):
    client = connected_client(make_client)
    returned = client.execute("8c5e8425-4704-4da1-b0db-4599767d3c1d", "answer", lock=True)
    assert (
        switch.last.blocks[-1]
        == (
            "sendmsg 8c5e8425-4704-4da1-b0db-4599767d3c1d\ncall-command: execute\n"
            f"execute-app-name: answer\nEvent-UUID: {returned}\nevent-lock: true\n\n"
        ).encode()
    )


def test_execute_refused_raises_with_the_reply(switch, make_client):
    switch.responder = lambda session, block: (
        reply_frame("-ERR invalid session id [x]") if block.startswith("sendmsg") else None
    )
    client = connected_client(make_client)
    with pytest.raises(EslCommandError) as err:
        client.execute("8c5e8425-4704-4da1-b0db-4599767d3c1d", "answer")
    assert err.value.reply == "-ERR invalid session id [x]"
    with pytest.raises(ValueError):
        client.execute("two words", "answer")


def test_commands_from_many_greenlets_each_get_their_own_reply(switch, make_client):
    client = connected_client(make_client)
    jobs = [gevent.spawn(client.api, f"echo {n}") for n in range(30)]
    gevent.joinall(jobs, timeout=DEADLINE, raise_error=True)
    assert [j.value for j in jobs] == [f"answer to echo {n}\n" for n in range(30)]


# -- what FreeSWITCH sends ---------------------------------------------------------------------


def test_malformed_frames_are_skipped_and_later_events_still_arrive(switch, make_client, logs):
    client = connected_client(make_client)
    switch.last.push(
        b"Reply-Text: +OK\n\n"  # no Content-Type
        + b"\x00\xffgarbage \x01 bytes\n\n"  # garbage
        + encode_frame([("Content-Type", "text/event-plain")], "Unique-ID: abc\n\n")  # no name
        + encode_frame([("Content-Type", "text/event-json")], "{not json")
        + encode_frame([("Content-Type", "log/data")], "a log line\n")
        + reply_frame("+OK nobody asked")
        + PARK_EVENT
    )
    event = next_item(client)
    assert isinstance(event, EslEvent) and event.name == "CHANNEL_PARK"
    assert client.connected and client.attempts == 1
    reasons = [e["reason"] for e in events_named(logs, "esl.frame_ignored")]
    assert reasons == [
        "no Content-Type",
        "no Content-Type",
        "event without Event-Name",
        reasons[3],
        "unhandled Content-Type log/data",
        "reply without a pending command",
    ]
    assert reasons[3].startswith("bad event JSON")
    assert client.api("status") == "answer to status\n"


@pytest.mark.parametrize(
    "broken",
    [
        b"Content-Type: api/response\nContent-Length: twelve\n\n",
        b"Content-Type: text/event-plain\nX-Junk: " + b"x" * 70000,
    ],
    ids=["bad-content-length", "endless-header-block"],
)
def test_broken_framing_drops_the_connection_and_reconnects(switch, make_client, logs, broken):
    client = connected_client(make_client)
    switch.last.push(broken)
    item = next_item(client)
    assert isinstance(item, Disconnected) and item.reason.startswith("protocol error")
    assert isinstance(next_item(client), Reconnected)
    assert events_named(logs, "esl.protocol_error")
    switch.last.push(PARK_EVENT)
    assert next_item(client).name == "CHANNEL_PARK"


def test_json_events_are_decoded(switch, make_client):
    client = connected_client(make_client, event_format="json")
    assert switch.last.lines[1].startswith("event json CHANNEL_PARK")
    background_job = find_event("17_event_json_calls", lambda e: e.name == "BACKGROUND_JOB")
    switch.last.push(JSON_DOE_EVENT + background_job)
    doe, job = next_item(client), next_item(client)
    assert doe.get("Caller-Caller-ID-Name") == 'Doe, John "VIP"'
    assert (job.name, job.body) == ("BACKGROUND_JOB", "-ERR NO_ANSWER\n")


def test_plain_event_stream_cut_into_small_writes_arrives_whole(switch, make_client):
    client = connected_client(make_client)
    plain = [
        (frame, raw)
        for frame, raw in capture_frames("18_one_call_event_count")
        if frame.content_type == "text/event-plain"
    ][:40]
    stream = b"".join(raw for _, raw in plain)
    rng = random.Random(3)
    pos = 0
    while pos < len(stream):
        size = rng.randint(1, 3000)
        switch.last.push(stream[pos : pos + size])
        pos += size
        gevent.sleep(0)
    got = [next_item(client) for _ in plain]
    assert got == [decode_event(frame) for frame, _ in plain]


def test_acl_rejection_is_treated_like_a_refused_password(switch, make_client, logs):
    switch.greet = False
    rejection = encode_frame([("Content-Type", "text/rude-rejection")], "Access Denied, go away.\n")
    client = make_client()
    wait_for(lambda: switch.sessions)
    switch.last.push(rejection)
    wait_for(lambda: isinstance(client.last_error, EslAuthError))
    assert "Access Denied" in str(client.last_error)
    wait_for(lambda: events_named(logs, "esl.reconnect_in"))
    assert [e["seconds"] for e in events_named(logs, "esl.reconnect_in")] == [60.0]


class RecordingRandom(random.Random):
    def __init__(self) -> None:
        super().__init__(11)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return super().uniform(a, b)


@pytest.mark.parametrize(("stable_after", "grows"), [(0.0, False), (60.0, True)])
def test_backoff_resets_only_after_a_connection_that_stayed_up(
    switch, make_client, stable_after, grows
):
    rng = RecordingRandom()
    client = connected_client(make_client, rng=rng, stable_after=stable_after)
    for _ in range(3):
        switch.last.drop()
        assert isinstance(next_item(client), Disconnected)
        assert isinstance(next_item(client), Reconnected)
    low = 0.005
    expected = [(low, low * 2**n) for n in range(3)] if grows else [(low, low)] * 3
    assert rng.ranges == expected


# -- against the project's fake FreeSWITCH -----------------------------------------------------


def test_against_the_fake_freeswitch_jobs_and_resubscription_survive_an_esl_restart(fakeswitch):
    host, port = fakeswitch.address
    fakeswitch.add_phone("1001")
    client = EslClient(
        host,
        port,
        PASSWORD,
        events=["CHANNEL_ANSWER", "BACKGROUND_JOB"],
        backoff_min=0.005,
        backoff_max=0.02,
        command_timeout=3.0,
    )
    client.start()
    try:
        assert client.wait_connected(DEADLINE)
        assert isinstance(next_item(client), Connected)

        def job_result(job: str) -> str | None:
            while True:
                item = next_item(client)
                if isinstance(item, EslEvent) and item.name == "BACKGROUND_JOB":
                    assert item.get("Job-UUID") == job
                    return item.body

        leg = "aaaaaaaa-0000-4000-8000-000000000001"
        job = client.bgapi(f"originate {{origination_uuid={leg}}}user/1001 &park()")
        assert job_result(job) == f"+OK {leg}\n"
        fakeswitch.restart_esl()
        assert isinstance(next_item(client), Disconnected)
        assert isinstance(next_item(client), Reconnected)
        # BACKGROUND_JOB still arrives: the subscription was renewed on the new connection
        assert job_result(client.bgapi("originate user/9999 &park()")).startswith("-ERR")
    finally:
        client.stop()


def test_jobs_sent_without_waiting_each_end_in_exactly_one_result(fakeswitch):
    """bgapi(wait=False): the caller never waits on FreeSWITCH, and every job still
    ends in one BACKGROUND_JOB or one JobFailed, also across a dropped connection."""
    host, port = fakeswitch.address
    fakeswitch.add_phone("1001", ring_forever=True)
    client = EslClient(
        host, port, PASSWORD, events=["BACKGROUND_JOB"], backoff_min=0.005,
        backoff_max=0.02, command_timeout=3.0,
    )  # fmt: skip
    client.start()
    try:
        assert client.wait_connected(DEADLINE)
        assert isinstance(next_item(client), Connected)
        refused = client.bgapi("originate user/9999 &park()", wait=False)
        ringing = client.bgapi("originate user/1001 &park()", wait=False)
        first = next_item(client)
        assert isinstance(first, EslEvent) and first.get("Job-UUID") == refused
        assert first.body.startswith("-ERR SUBSCRIBER_ABSENT")
        fakeswitch.stop_esl()  # the ringing job has no result yet
        results = [next_item(client) for _ in range(2)]
        assert isinstance(results[0], Disconnected)
        assert results[1] == JobFailed(ringing, results[1].reason)
        with pytest.raises(EslDisconnected):
            client.bgapi("status", wait=False)
    finally:
        fakeswitch.start_esl()
        client.stop()


def test_a_full_inbox_stops_the_reader_and_loses_nothing(switch, make_client):
    """Back-pressure: past the limit the reader waits (FreeSWITCH's events stay in the
    socket), the daemon's own items still go in, and every event arrives in order."""
    client = connected_client(make_client, inbox=Inbox(limit=5))
    plain = [
        (frame, raw)
        for frame, raw in capture_frames("18_one_call_event_count")
        if frame.content_type == "text/event-plain"
    ][:40]
    for _ in range(5):
        switch.last.push(b"".join(raw for _, raw in plain))
    wait_for(lambda: client.inbox.stalls >= 1)
    gevent.sleep(0.05)  # the reader had every chance to overfill the inbox
    assert client.inbox.qsize() == 5
    client.inbox.put("the daemon's own item")  # never waits, even when full
    assert client.inbox.qsize() == 6
    got = [next_item(client) for _ in range(6)]
    got += [next_item(client) for _ in range(200 - 5)]
    events = [item for item in got if item != "the daemon's own item"]
    assert events == [decode_event(frame) for frame, _ in plain] * 5
    assert client.inbox.empty() and client.inbox.stalled_seconds > 0
    assert client.api("status") == "answer to status\n"  # the connection lives on


def test_a_flood_of_events_lets_the_loop_poll_its_other_sockets():
    """While FreeSWITCH's socket always has more to read, the reader must still let the
    event loop poll the others: a dispatcher waits there for Redis. Giving way with
    ``sleep(0)`` runs only greenlets already woken; a flood kept the loop from polling for
    37-51 ms at a time. The stream: scripts/bench_esl.py's server (its own process)
    replaying a real FreeSWITCH 1.10.12 recording as fast as the socket takes it."""
    import importlib.util
    import sys

    from ccd.adapters.esl_connection import RECV_SIZE

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_esl.py"
    spec = importlib.util.spec_from_file_location("ccd_bench_esl", path)
    assert spec is not None and spec.loader is not None
    bench_esl = importlib.util.module_from_spec(spec)
    sys.modules["ccd_bench_esl"] = bench_esl
    spec.loader.exec_module(bench_esl)
    frames, repeat = bench_esl.event_frames("json"), 30
    expected, streamed = len(frames) * repeat, sum(map(len, frames)) * repeat
    server = bench_esl.Server("json", repeat)
    inbox = Inbox()
    client = EslClient(
        "127.0.0.1", server.port, bench_esl.PASSWORD, events=["ALL"], event_format="json",
        inbox=inbox, connect_timeout=10, command_timeout=10,
    )  # fmt: skip
    polls: list[None] = []
    counted: list[int] = []

    def take() -> None:
        taken = 0
        while taken < expected:
            if isinstance(inbox.get(), EslEvent):
                taken += 1
                if taken == 1:
                    polls.clear()  # from the flood's first event
        counted.append(len(polls))

    watcher = gevent.get_hub().loop.prepare(ref=False)
    watcher.start(lambda: polls.append(None))
    try:
        taker = gevent.spawn(take)
        client.start()
        taker.join(30)
    finally:
        watcher.stop()
        client.stop()
        server.stop()
    assert counted, "every event taken"
    # About one poll a full read at least (each read takes RECV_SIZE bytes of the stream).
    assert counted[0] >= streamed // RECV_SIZE // 2, (counted[0], streamed // RECV_SIZE)
