"""The offer webhook against a tiny local HTTP server: delivery, retries, never blocking."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable

import gevent
import pytest
import structlog

from ccd.adapters.webhook import WebhookSender, redact_webhook_url
from tests.support.redis_fixtures import free_port


class Crm:
    """A local HTTP server; ``answers`` is the list of statuses to give, then 200 forever."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.hang = False
        self.release = threading.Event()
        crm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                crm.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                if crm.hang:
                    crm.release.wait(10)  # longer than any client timeout here
                    return
                status = crm.answers.pop(0) if crm.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm():
    server = Crm()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def senders():
    made: list[WebhookSender] = []

    def make(*args, **kwargs) -> WebhookSender:
        kwargs.setdefault("backoff", 0.0)
        sender = WebhookSender(*args, **kwargs)
        made.append(sender)
        return sender

    try:
        yield make
    finally:
        for sender in made:
            sender.stop(timeout=0)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        gevent.sleep(0.005)


def offer(n: int) -> dict:
    return {"event": "agent.offered", "call": {"uuid": f"call-{n}"}, "n": n}


def test_payload_arrives_as_json_with_basic_auth_and_no_secret_in_logs(crm, senders):
    url = f"http://crm:s3cret@127.0.0.1:{crm.port}/hook?token=t0ken&x=1"
    sender = senders(url, timeout=2.0)
    sender.start()
    with structlog.testing.capture_logs() as logs:
        sender.send({"event": "agent.offered", "name": "Kovács Anna 😀"})
        wait_until(lambda: sender.sent == 1)

    (request,) = crm.requests
    assert request["body"] == {"event": "agent.offered", "name": "Kovács Anna 😀"}
    assert request["path"] == "/hook?token=t0ken&x=1"
    assert request["headers"]["Content-Type"].startswith("application/json")
    assert (
        request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"crm:s3cret").decode()
    )
    sent = [e for e in logs if e["event"] == "webhook.sent"]
    assert sent and sent[0]["status"] == 200 and sent[0]["attempts"] == 1
    assert "s3cret" not in repr(logs) and "t0ken" not in repr(logs)


def test_send_returns_at_once_while_the_crm_hangs(crm, senders):
    crm.hang = True
    sender = senders(crm.url(), timeout=0.2, retries=1)
    sender.start()
    sender.send(offer(1))
    # send() did no I/O and yielded to nobody: the payload is still in our queue.
    assert sender.pending == 1
    wait_until(lambda: len(crm.requests) == 1)  # the worker is now stuck in the request
    for n in range(2, 12):
        sender.send(offer(n))
        assert sender.pending == n - 1
    with structlog.testing.capture_logs() as logs:
        wait_until(lambda: sender.failed >= 1)
    failed = [e for e in logs if e["event"] == "webhook.failed"]
    assert failed[0]["call"] == "call-1" and failed[0]["attempts"] == 2
    assert "no answer in 0.2 s" in failed[0]["reason"]
    assert [r["body"]["n"] for r in crm.requests[:2]] == [1, 1]  # tried again, then gave up


def test_a_dead_crm_is_retried_then_given_up(senders):
    sender = senders(f"http://127.0.0.1:{free_port()}/hook", timeout=1.0, retries=2)
    sender.start()
    with structlog.testing.capture_logs() as logs:
        sender.send(offer(1))
        assert sender.pending == 1
        wait_until(lambda: sender.failed == 1)
    assert [e["attempt"] for e in logs if e["event"] == "webhook.retry"] == [1, 2]
    failed = [e for e in logs if e["event"] == "webhook.failed"]
    assert failed[0]["attempts"] == 3 and "ConnectionRefused" in failed[0]["reason"]
    assert sender.sent == 0


def test_server_errors_are_retried_until_delivered(crm, senders):
    crm.answers = [500, 503]
    sender = senders(crm.url(), timeout=2.0, retries=2)
    sender.start()
    sender.send(offer(1))
    wait_until(lambda: sender.sent == 1)
    assert [r["body"]["n"] for r in crm.requests] == [1, 1, 1]
    assert sender.failed == 0


def test_a_refusal_by_the_crm_is_not_retried(crm, senders):
    crm.answers = [400]
    sender = senders(crm.url(), timeout=2.0, retries=2)
    sender.start()
    sender.send(offer(1))
    sender.send(offer(2))
    wait_until(lambda: sender.sent == 1)
    assert [r["body"]["n"] for r in crm.requests] == [1, 2]
    assert sender.failed == 1


def test_a_full_queue_drops_the_oldest(crm, senders):
    sender = senders(crm.url(), timeout=2.0, max_queue=3)
    with structlog.testing.capture_logs() as logs:
        for n in range(1, 6):
            sender.send(offer(n))
    assert sender.pending == 3 and sender.dropped == 2
    assert [e["call"] for e in logs if e["event"] == "webhook.dropped"] == ["call-1", "call-2"]
    sender.start()
    wait_until(lambda: sender.sent == 3)
    assert [r["body"]["n"] for r in crm.requests] == [3, 4, 5]


def test_an_unencodable_payload_is_logged_not_raised(senders):
    sender = senders("http://127.0.0.1:9/hook", timeout=1.0)
    with structlog.testing.capture_logs() as logs:
        sender.send({"event": "agent.offered", "bad": object()})
    assert sender.pending == 0
    assert [e["event"] for e in logs] == ["webhook.unencodable"]


def test_stop_drops_what_is_left_and_says_so(crm, senders):
    crm.hang = True
    sender = senders(crm.url(), timeout=5.0)
    sender.start()
    sender.send(offer(1))
    sender.send(offer(2))
    wait_until(lambda: len(crm.requests) == 1)
    with structlog.testing.capture_logs() as logs:
        sender.stop(timeout=0)
    assert [(e["event"], e["unsent"]) for e in logs] == [("webhook.stopped", 1)]
    assert sender.pending == 0
    sender.send(offer(3))  # after stop: queued, nothing breaks
    assert sender.pending == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://crm.example/hook", "https://crm.example/hook"),
        (
            "https://user:pw@crm.example:8443/h?token=abc&a=1",
            "https://***@crm.example:8443/h?token=***&a=***",
        ),
        ("http://tok@crm/h?secret", "http://***@crm/h?secret=***"),
    ],
)
def test_urls_are_redacted_for_logs(url, shown):
    assert redact_webhook_url(url) == shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ftp://u:pw@crm/x", 1.0), "http"),
        (("http://crm:notaport/x", 1.0), "bad webhook URL"),
        (("http://crm/x", 0), "timeout"),
        (("http://crm/x", 1.0, 0), "max_queue"),
        (("http://crm/x", 1.0, 10, -1), "retries"),
    ],
)
def test_bad_settings_are_refused_without_showing_secrets(args, message):
    with pytest.raises(ValueError) as info:
        WebhookSender(*args)
    assert message in str(info.value) and "pw" not in str(info.value)
