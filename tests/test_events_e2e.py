"""The event feed end to end: ``GET /events`` (server-sent events) over real sockets from the
real daemon, calls through the fake FreeSWITCH, the events in the shared Redis stream.

A call queued, offered, answered and ended arrives as events in that order, each with its
stream id; reconnecting with ``Last-Event-ID`` (the header EventSource sends, or
``?last_event_id=``) gets only what followed, from any daemon on the same Redis; an id older
than what the stream keeps resumes from its start with a ``feed.gap`` event; without the
token nothing is streamed; a quiet feed gets keep-alive comments; streams have a cap of their
own beside the HTTP connection cap, and a client that goes gives its slot back.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest

from ccd.store.redis_store import connect_redis
from tests.support.daemon_fixtures import AUTH, HTTP_TOKEN, eventually
from tests.test_daemon import http_get
from tests.test_routing_e2e import SALES

ALICE = {"alice": {"extension": "1001", "tags": ["sales"]}}
QUEUES = {"sales": {"tags": ["sales"], "overflow_time": 0, "no_agents": "wait"}}


class Sse:
    """A server-sent events client on a plain HTTP connection: frames as dicts."""

    def __init__(self, daemon: Any, path: str = "/events", headers: dict | None = None) -> None:
        port = daemon.http.address[1]
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", path, headers=AUTH if headers is None else headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.comments: list[str] = []

    def frame(self) -> dict[str, str]:
        """The next event (its fields); comments are kept in ``comments``."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the stream ended")
            text = line.decode().rstrip("\n")
            if not text:
                if "data" in fields:
                    return fields
                continue
            name, _, value = text.partition(":")
            if not name:
                self.comments.append(value.strip())
                continue
            fields[name] = value[1:] if value.startswith(" ") else value

    def events(self, until: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Events (data parsed, with ``id`` and ``event``) until ``until(event)`` is true."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fields = self.frame()
            event = {**json.loads(fields["data"]), "id": fields.get("id"), "event": fields["event"]}
            found.append(event)
            if until(event):
                return found
        raise AssertionError(f"no such event within {timeout}s: {found}")

    def close(self) -> None:
        self.response.close()  # its file holds the socket open otherwise
        self.conn.close()


def of_call(events: list[dict[str, Any]], call: str) -> list[str]:
    return [e["type"] for e in events if e.get("call") == call]


def ids(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [tuple(int(p) for p in e["id"].split("-")) for e in events if e["id"]]


def test_a_call_arrives_in_order_and_a_reconnect_gets_only_what_followed(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents=ALICE, queues=QUEUES)
    feed = Sse(daemon)
    assert feed.status == 200
    assert feed.response.getheader("Content-Type").startswith("text/event-stream")

    fakeswitch.phone_call("1001", "*21")  # alice logs in: agent.state
    login = feed.events(lambda e: e["type"] == "agent.state" and e["login"] == "ready")
    assert login[-1]["agent"] == "alice" and login[-1]["node"] == "test-node"

    caller = fakeswitch.place_call("+3612345678", "First", digits=[SALES], hangup_after=3)
    seen = feed.events(lambda e: e["type"] == "call.ended" and e.get("call") == caller, 20)
    assert of_call(seen, caller) == ["call.queued", "agent.offered", "call.bridged", "call.ended"]
    assert ids(seen) == sorted(ids(seen)) and len(set(ids(seen))) == len(seen)
    queued, offered, bridged, ended = [e for e in seen if e.get("call") == caller]
    assert queued["queue"] == "sales" and queued["number"] == "+3612345678"
    assert offered["agent"] == "alice" and offered["extension"] == "1001"
    assert bridged["agent"] == "alice" and bridged["waited"] >= 0
    assert ended["by"] in ("caller", "agent")
    assert set(queued) <= {"type", "t", "call", "queue", "priority", "number", "node", "id",
                           "event"}  # fmt: skip
    states = [e["activity"] for e in seen if e["type"] == "agent.state"]
    assert "oncall" in states
    feed.close()

    # Reconnect after the bridge (EventSource's header): only what followed, in order.
    again = Sse(daemon, headers={**AUTH, "Last-Event-ID": bridged["id"]})
    rest = again.events(lambda e: e["type"] == "call.ended")
    assert ids(rest)[0] > ids([bridged])[0]
    assert [e["id"] for e in rest] == [e["id"] for e in seen if ids([e]) > ids([bridged])][
        : len(rest)
    ]
    again.close()
    # The query form, with the token in the query as a browser's EventSource sends it.
    query = Sse(daemon, f"/events?token={HTTP_TOKEN}&last_event_id={queued['id']}", headers={})
    assert query.events(lambda e: True)[0]["id"] == offered["id"]
    query.close()


def raw_get(daemon: Any, request: bytes) -> bytes:
    """What the daemon answers ``request`` (it closes every connection), in 3 s at most."""
    with socket.create_connection(("127.0.0.1", daemon.http.address[1]), timeout=3) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


@pytest.mark.parametrize(
    "target, headers",
    [
        ("/events", b""),
        ("/events", b"Authorization: Bearer wrong-token-0123456789\r\n"),
        ("/events?token=wrong-token-0123456789", b""),
        (f"/events?token={HTTP_TOKEN[:-1]}", b""),
    ],
)
def test_a_bad_or_missing_token_gets_401_and_nothing(fakeswitch, start_daemon, target, headers):
    daemon = start_daemon(fakeswitch)
    answer = raw_get(daemon, f"GET {target} HTTP/1.1\r\nHost: x\r\n".encode() + headers + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"event-stream" not in head
    assert json.loads(body) == {"error": "unauthorized", "why": "Bearer token required"}
    assert daemon.http.stats["streams"] == 0


def test_an_id_older_than_the_stream_resumes_from_its_start_and_says_so(
    fakeswitch, start_daemon, redis_url
):
    daemon = start_daemon(fakeswitch)
    client = connect_redis(redis_url)
    key = daemon.store.keys.events()
    old = [client.xadd(key, {"e": json.dumps({"type": "test.old", "n": n})}) for n in range(3)]
    client.xtrim(key, maxlen=1, approximate=False)  # the first two are gone
    feed = Sse(daemon, headers={**AUTH, "Last-Event-ID": old[0].decode()})
    gap, kept = feed.events(lambda e: e["type"] == "test.old")
    assert gap["event"] == "feed.gap" and gap["id"] is None
    assert gap["last_event_id"] == old[0].decode() and gap["resumed_from"] == "0-0"
    assert kept["id"] == old[2].decode() and kept["n"] == 2
    feed.close()
    # The newest id trimmed is a gap too; the one after it is not.
    feed = Sse(daemon, headers={**AUTH, "Last-Event-ID": old[1].decode()})
    assert feed.events(lambda e: True)[0]["event"] == "feed.gap"
    feed.close()
    feed = Sse(daemon, headers={**AUTH, "Last-Event-ID": old[2].decode()})
    client.xadd(key, {"e": json.dumps({"type": "test.new"})})
    assert [e["type"] for e in feed.events(lambda e: True)] == ["test.new"]
    feed.close()
    # A made-up id is refused before anything is streamed.
    status, body = http_get(daemon, "/events?last_event_id=yesterday")
    assert status == 400 and json.loads(body) == {"error": "bad_last_event_id"}
    # An id with blanks around it resumes like the id itself; one past the newest (a Redis
    # that lost data since the client read it) is a gap; one beyond 64 bits is refused.
    newest = client.xrevrange(key, count=1)[0][0].decode()
    feed = Sse(daemon, headers={**AUTH, "Last-Event-ID": f" {newest} "})
    client.xadd(key, {"e": json.dumps({"type": "test.next"})})
    assert [e["type"] for e in feed.events(lambda e: True)] == ["test.next"]
    feed.close()
    feed = Sse(daemon, headers={**AUTH, "Last-Event-ID": "99999999999999-0"})
    assert feed.events(lambda e: True)[0]["event"] == "feed.gap"
    feed.close()
    status, _ = http_get(daemon, f"/events?last_event_id={2**64}-0")
    assert status == 400
    # So is a query with more fields than any client sends (not a 500).
    flood = "&".join(f"f{n}=1" for n in range(40))
    status, body = http_get(daemon, f"/events?{flood}")
    assert status == 400 and json.loads(body) == {"error": "bad_query"}


def test_two_daemons_feed_one_stream(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    first = start_daemon(fakeswitch, agents=ALICE, queues=QUEUES, daemon={"node_id": "a"})
    on_a = Sse(first)
    fakeswitch.phone_call("1001", "*21")
    one = fakeswitch.place_call("+3612345678", "One", digits=[SALES], hangup_after=1)
    seen_a = on_a.events(lambda e: e["type"] == "call.ended" and e.get("call") == one, 20)
    assert {e["node"] for e in seen_a} == {"a"}
    # Daemon a stops; b takes the next call. A client of b resumes where a's client stopped,
    # and one reading b's stream from the start sees a's events with the same ids.
    first.stop()
    second = start_daemon(fakeswitch, agents=ALICE, queues=QUEUES, daemon={"node_id": "b"})
    on_b = Sse(second, headers={**AUTH, "Last-Event-ID": seen_a[-1]["id"]})
    eventually(lambda: second.control.agents.require("alice").state.login.value == "ready")
    two = fakeswitch.place_call("+3612345679", "Two", digits=[SALES], hangup_after=1)
    seen_b = on_b.events(lambda e: e["type"] == "call.ended" and e.get("call") == two, 20)
    assert of_call(seen_b, two) == ["call.queued", "agent.offered", "call.bridged", "call.ended"]
    assert {e["node"] for e in seen_b if e.get("call") == two} == {"b"}
    assert not [e for e in seen_b if e.get("call") == one]
    everything = Sse(second, "/events?last_event_id=0")
    whole = everything.events(lambda e: e["id"] == seen_b[-1]["id"])
    upto_a = [e["id"] for e in whole if ids(seen_a[:1]) <= ids([e]) <= ids(seen_a[-1:])]
    assert upto_a == [e["id"] for e in seen_a]  # the same events, the same ids
    assert {e["node"] for e in whole} == {"a", "b"}
    assert ids(whole) == sorted(ids(whole))
    for client in (on_a, on_b, everything):
        client.close()


def test_keepalive_comments_keep_a_quiet_feed_open(fakeswitch, start_daemon):
    # keepalive is in daemon time: at the tests' time scale, a fraction of a real second.
    daemon = start_daemon(fakeswitch, feed={"keepalive": 0.5 * fakeswitch.clock.time_scale})
    feed = Sse(daemon)
    started = time.monotonic()
    while feed.comments.count("keep-alive") < 2:
        line = feed.response.readline()
        assert line, "the stream ended"
        if line.startswith(b":"):
            feed.comments.append(line[1:].decode().strip())
    assert feed.comments[0] == "ccd events"
    assert time.monotonic() - started < 4
    feed.close()


def test_streams_have_their_own_cap_and_a_client_that_goes_frees_its_slot(fakeswitch, start_daemon):
    daemon = start_daemon(
        fakeswitch, http={"max_connections": 1}, feed={"max_clients": 1, "keepalive": 3600}
    )
    feed = Sse(daemon)
    assert feed.status == 200
    eventually(lambda: daemon.http.stats["streams"] == 1)
    # The stream is outside http.max_connections: the other endpoints still answer.
    for _ in range(3):
        assert http_get(daemon, "/healthz") == (200, b"ok\n")
        assert http_get(daemon, "/stats")[0] == 200
    status, body = http_get(daemon, "/events")
    assert status == 503 and json.loads(body) == {"error": "too_many_streams", "limit": 1}
    feed.close()  # no keep-alive due for an hour: the daemon notices the EOF itself
    eventually(lambda: daemon.http.stats["streams"] == 0, what="the slot is given back")
    again = Sse(daemon)
    assert again.status == 200
    again.close()


def test_the_wallboard_gets_the_stats_document_with_the_feed(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents=ALICE, queues=QUEUES)
    # As the page asks it (ccd/web/wallboard.html): ?stats=1, the token in the query.
    board = Sse(daemon, f"/events?stats=1&token={HTTP_TOKEN}", headers={})
    first = board.events(lambda e: e["event"] == "stats")[-1]
    assert first["id"] is None and [q["queue"] for q in first["queues"]] == ["sales"]
    fakeswitch.phone_call("1001", "*21")
    caller = fakeswitch.place_call("+3612345678", "First", digits=[SALES], hangup_after=5)
    seen = board.events(
        lambda e: e["event"] == "stats" and e["queues"][0]["today"]["answered"] == 1, 20
    )
    assert "call.bridged" in of_call(seen, caller)  # the events came in between
    board.close()
    plain = Sse(daemon)  # a CRM's feed: no stats documents
    fakeswitch.phone_call("1001", "*22")
    out = plain.events(lambda e: e["type"] == "agent.state" and e["login"] == "logged_out")
    assert all(e["event"] != "stats" for e in out)
    plain.close()
