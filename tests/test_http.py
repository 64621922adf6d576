"""The HTTP port hardened (issue 12): a cap on connections, a read deadline, a bearer token for
customer data and changes, strict bodies. Over real loopback sockets."""

from __future__ import annotations

import json
import socket
import time

import gevent
import pytest

from ccd.adapters.http import HttpServer, json_response, text_response
from tests.support.daemon_fixtures import AUTH, HTTP_TOKEN, bridged, eventually
from tests.test_daemon import http_get
from tests.test_routing_e2e import SALES, login

TOKEN = "s3cret-token-0123456789"


def request(port: int, raw: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send raw bytes, read the whole answer: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())


def post(port: int, path: str, body: bytes, token: str | None = TOKEN, **headers: str):
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if "length" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items() if k != "length"]
    if "length" in headers:
        lines.append(f"Content-Length: {headers['length']}")
    return request(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@pytest.fixture
def server():
    started = []

    def make(token: str = TOKEN, **kw) -> tuple[HttpServer, int]:
        srv = HttpServer("127.0.0.1", 0, token=token, **kw)
        srv.route("/healthz", lambda m: text_response(200, "ok\n"))
        srv.route(r"/calls/(?P<uuid>[a-f0-9-]+)", lambda m: json_response(200, {"secret": 1}),
                  private=True)  # fmt: skip
        srv.post(r"/calls/(?P<uuid>[a-f0-9-]+)/dispositions",
                 lambda m, body: json_response(200, {"got": body}))  # fmt: skip
        srv.start()
        started.append(srv)
        return srv, srv.address[1]

    yield make
    for srv in started:
        srv.stop()


def test_private_routes_need_the_bearer_token_compared_whole(server):
    _, port = server()
    assert get(port, "/healthz")[0] == 200  # open: no customer data
    assert get(port, "/calls/abc")[0] == 401
    assert get(port, "/calls/abc", "wrong")[0] == 401
    assert get(port, "/calls/abc", TOKEN[:-1])[0] == 401
    assert get(port, "/calls/abc", TOKEN + "x")[0] == 401
    assert get(port, "/calls/abc", TOKEN) == (200, b'{"secret": 1}')
    assert post(port, "/calls/abc/dispositions", b"{}", token=None)[0] == 401
    assert post(port, "/calls/abc/dispositions", b"{}", token="nope")[0] == 401
    assert post(port, "/calls/abc/dispositions", b'{"a": 1}')[0] == 200


def test_without_a_token_configured_private_routes_answer_403_saying_so(server):
    _, port = server(token="")
    status, body = get(port, "/calls/abc", "anything")
    assert status == 403 and "CCD_HTTP_TOKEN" in json.loads(body)["why"]
    assert post(port, "/calls/abc/dispositions", b"{}", token="")[0] == 403
    assert get(port, "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"[" * 5000 + b"]" * 5000, {}, 400),  # nested far too deep
        (b"[" * 33 + b"]" * 33, {}, 400),  # past MAX_DEPTH
        (b'{"codes": ["\xff\xfe"]}', {}, 400),  # not UTF-8
        (b"not json", {}, 400),
        (b"{}", {"length": "+2"}, 400),  # Content-Length digits only
        (b"{}", {"length": "2_0"}, 400),
        (b"x" * 10, {"length": str(10**9)}, 413),  # refused before reading it
    ],
    ids=["deep", "depth-33", "utf8", "not-json", "plus-length", "underscore-length", "too-large"],
)
def test_bodies_it_cannot_take_are_400_or_413_quickly(server, body, headers, status):
    _, port = server()
    started = time.monotonic()
    assert post(port, "/calls/abc/dispositions", body, **headers)[0] == status
    assert time.monotonic() - started < 2.0


def test_a_post_without_content_length_is_411(server):
    _, port = server()
    raw = (
        b"POST /calls/abc/dispositions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert request(port, raw)[0] == 411


def test_a_slow_client_is_cut_off_at_the_read_timeout(server):
    srv, port = server(read_timeout=0.5)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # ... and never the rest
    started = time.monotonic()
    sock.settimeout(5)
    assert sock.recv(100) == b""  # closed by the server
    assert 0.4 <= time.monotonic() - started < 2.0
    sock.close()
    eventually(lambda: srv.stats["timeouts"] >= 1, what="timeout counted")


def test_idle_connections_past_the_cap_make_room_and_never_block_healthz(server):
    srv, port = server(max_connections=50, read_timeout=60)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        eventually(lambda: srv.stats["evicted"] >= 150, what="idle ones evicted")
        assert srv.stats["open"] <= 51
        for _ in range(5):
            assert get(port, "/healthz") == (200, b"ok\n")
    finally:
        for sock in idle:
            sock.close()


def test_every_connection_busy_answers_503_at_once(server):
    release = gevent.event.Event()
    srv, port = server(max_connections=2)
    srv.route("/slow", lambda m: (release.wait(5), text_response(200, "done"))[1])
    slow = [gevent.spawn(get, port, "/slow") for _ in range(2)]
    eventually(lambda: sum(srv._server.connections.values()) == 2, what="two busy")
    started = time.monotonic()
    assert get(port, "/healthz")[0] == 503
    assert time.monotonic() - started < 1.0
    release.set()
    gevent.joinall(slow, timeout=5)
    assert [g.value[0] for g in slow] == [200, 200]
    assert srv.stats["refused"] == 1


def test_a_thousand_idle_connections_stop_neither_healthz_nor_a_call(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    login(daemon, "alice")
    port = daemon.http.address[1]
    idle = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        assert http_get(daemon, "/healthz") == (200, b"ok\n")
        caller = fakeswitch.place_call("+3612345678", "Doe", digits=[SALES])
        eventually(lambda: bridged(fakeswitch, caller), what="the call is routed")
        assert http_get(daemon, "/readyz")[0] == 200
        assert daemon.http.stats["open"] <= daemon.config.http.max_connections + 1
    finally:
        for sock in idle:
            sock.close()


def test_the_daemon_guards_customer_data_with_its_token(fakeswitch, start_daemon):
    daemon = start_daemon(fakeswitch)
    uuid = "00000000-0000-0000-0000-000000000000"
    assert http_get(daemon, f"/calls/{uuid}", headers={})[0] == 401
    assert http_get(daemon, f"/calls/{uuid}/dispositions", headers={})[0] == 401
    assert http_get(daemon, f"/calls/{uuid}")[0] == 404  # with AUTH: looked up
    assert AUTH["Authorization"].endswith(HTTP_TOKEN)
    assert http_get(daemon, "/metrics", headers={})[0] == 200  # open, like /healthz
    port = daemon.http.address[1]
    nested = b'{"codes": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert post(port, f"/calls/{uuid}/dispositions", nested, token=HTTP_TOKEN)[0] == 400
    wrong = b'{"codes": [1, {"a": 2}], "by": "crm"}'
    assert post(port, f"/calls/{uuid}/dispositions", wrong, token=HTTP_TOKEN)[0] == 400
