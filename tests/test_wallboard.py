"""The wallboard page in a real headless browser (Debian's chromium) against a scripted
daemon: live from a scripted /events feed, falling back to polling /stats, the token sent both
ways, a refused token shown, six queues on one screen without scrolling. A screenshot is saved
(its path is printed; set CCD_TEST_OUTPUT to keep it in a folder of yours).

tests/test_wallboard_live.py drives the page against the real daemon, as calls arrive and are
answered. These cases stay here because a live daemon does not show them on demand: six busy
queues with figures chosen by hand, a feed that is down, a token refused.

A tiny gevent WSGI server plays the daemon: it serves the page from the package, /stats and
/events from documents made by ccd.core.stats_view.stats_json, so the page is tested against
the real /stats shape. Chromium runs with --virtual-time-budget and --dump-dom (or
--screenshot): the page's timers run on virtual time, so the checks do not depend on how fast
the machine is; the feed ends its stream after the last frame so the budget can run out (a
real daemon's feed never ends, hence the live test's real time over the DevTools pipe).
Headless chromium's --window-size=1920,1080 leaves the page 1920x937 (room for a toolbar):
the six queues fit that, so they fit a 1080-line screen too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import gevent
import pytest
from gevent.pywsgi import WSGIServer

from ccd.adapters.wallboard import WALLBOARD_HEADERS, wallboard_page
from ccd.core.stats import QueueCounts, QueueStatsRules, StatsRules
from ccd.core.stats_view import QueueNow, Snapshot, agents_by_status, stats_json
from tests.support.cdp import FLAGS, chromium

QUEUES = ("sales", "support", "billing", "tech", "vip", "general")
RULES = StatsRules(default=QueueStatsRules(service_level_time=20.0))
TOKEN = "s3cret-token"


def state(waiting: int, longest: float | None, answered: int, in_sl: int) -> dict:
    """A /stats document: ``sales`` as given, the other queues quiet."""
    at = 1_793_000_000.0
    queues = []
    for name in QUEUES:
        busy = name == "sales"
        agents = {"free": 2, "oncall": 3, "wrapup": 1, "break": 1, "logged_out": 4} if busy else {}
        oldest = None if longest is None or not busy else at - longest
        queues.append(QueueNow(name, waiting if busy else 0, oldest, agents_by_status(agents)))
    counts = QueueCounts(
        offered=answered + 2, answered=answered, answered_sl=in_sl, wait_answered=12.0 * answered,
        abandoned=2, handled=answered, talk=180.0 * answered,
    )  # fmt: skip
    snapshot = Snapshot(at, tuple(queues), agents_by_status({"free": 2, "oncall": 3}))
    today = {"sales": ("2026-11-02", counts)}
    return stats_json(snapshot, RULES, today, {})


# The scripted day: a caller queues (the longest wait passes T = 20 s), then is answered.
QUIET = state(waiting=1, longest=8.0, answered=9, in_sl=9)  # SL 100%
QUEUED = state(waiting=2, longest=25.0, answered=9, in_sl=9)
ANSWERED = state(waiting=1, longest=4.0, answered=10, in_sl=9)  # SL 90%


class Daemon:
    """Plays the daemon's HTTP side: the page, /stats (the latest state, or a script) and a
    scripted /events stream; it records what it was asked."""

    def __init__(self, *, frames: list[tuple[str, dict]] | None, polls: list[dict]) -> None:
        self.frames = frames  # None: /events answers 503
        self.polls = list(polls)  # /stats answers these in turn, then the feed's latest
        self.current = polls[-1]
        self.requests: list[tuple[str, str, str]] = []

    def authorized(self, environ: dict) -> bool:
        if environ["PATH_INFO"] == "/events":
            return f"token={TOKEN}" in environ.get("QUERY_STRING", "").split("&")
        return environ.get("HTTP_AUTHORIZATION") == f"Bearer {TOKEN}"

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        self.requests.append(
            (path, environ.get("QUERY_STRING", ""), environ.get("HTTP_AUTHORIZATION", ""))
        )
        if path == "/wallboard":
            start_response("200 OK", list(WALLBOARD_HEADERS))
            return [wallboard_page()]
        if path not in ("/stats", "/events"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        if not self.authorized(environ):
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"token needed"]
        if path == "/stats":
            if self.polls:
                self.current = self.polls.pop(0)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(self.current).encode()]
        if self.frames is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no feed"]
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return self._stream(list(self.frames))

    def _stream(self, frames: list[tuple[str, dict]]) -> Iterator[bytes]:
        yield b"retry: 60000\n\n"  # after the stream ends, no reconnection within the test
        for n, (event, data) in enumerate(frames, 1):
            if event == "stats":
                self.current = data  # /stats says what the feed said last, as the daemon's
            yield f"id: {n}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()
            gevent.sleep(0.05)


@pytest.fixture
def serve():
    servers = []

    def start(daemon: Daemon) -> str:
        server = WSGIServer(("127.0.0.1", 0), daemon, log=None, error_log=None)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/wallboard"

    yield start
    for server in servers:
        server.stop(timeout=1)


def browse(tmp_path: Path, url: str, *, budget_ms: int = 5000, screenshot: Path | None = None):
    """Chromium loads ``url``; answers the DOM (or writes the screenshot)."""
    profile = tmp_path / f"profile-{uuid.uuid4().hex[:8]}"
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}"]
    command.append(f"--virtual-time-budget={budget_ms}")
    command.append(f"--screenshot={screenshot}" if screenshot else "--dump-dom")
    done = subprocess.run([*command, url], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return Page(done.stdout.decode())


_VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr"})


class Page(HTMLParser):
    """The dumped DOM: text of every element with a data-field, per tile, and body's data."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.body: dict[str, str] = {}
        self.fields: dict[tuple[str, str], str] = {}
        self._queue = ""
        self._open: list[tuple[str, tuple[str, str] | None]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = {k[5:]: v or "" for k, v in attrs.items() if k.startswith("data-")}
        if "data-queue" in attrs:
            self._queue = attrs["data-queue"]
        if tag in _VOID:
            return
        key = (self._queue, attrs["data-field"]) if "data-field" in attrs else None
        if key is not None:
            self.fields[key] = ""
        self._open.append((tag, key))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break
        if tag == "section":  # a tile ends
            self._queue = ""

    def handle_data(self, data):
        for _, key in self._open:
            if key is not None:
                self.fields[key] += data

    def field(self, name: str, queue: str = "") -> str:
        return re.sub(r"\s+", " ", self.fields.get((queue, name), "")).strip()


def test_the_board_follows_the_live_feed_without_a_reload(serve, tmp_path):
    frames = [
        ("stats", QUEUED),
        ("call.queued", {"queue": "sales", "call": "c1"}),
        ("stats", ANSWERED),
        ("call.bridged", {"queue": "sales", "call": "c1", "agent": "alice"}),
    ]
    daemon = Daemon(frames=frames, polls=[QUIET])
    url = serve(daemon) + f"#token={TOKEN}"
    page = browse(tmp_path, url)
    # QUIET came by /stats first, then QUEUED and ANSWERED by the feed: the page moved on.
    assert int(page.body["updates"]) >= 3, page.body
    assert page.field("waiting", "sales") == "1"
    assert page.field("longest_wait", "sales") == "0:04"
    assert page.field("service_level", "sales") == "90%"  # 9 of 10 within 20 s
    assert page.field("agents-oncall", "sales") == "3"
    assert "answered 10/12" in page.field("today", "sales")
    assert "call.bridged sales alice" in page.field("ticker")
    assert page.field("mode") == "LIVE"
    assert page.body["fits"] == "true"  # six queues, 1920x1080, no scrolling
    assert [page.field("waiting", q) for q in QUEUES[1:]] == ["0"] * 5
    # The token went as a bearer header to /stats and as ?token= to /events (EventSource).
    asked = {(path, query, auth) for path, query, auth in daemon.requests}
    assert ("/stats", "", f"Bearer {TOKEN}") in asked
    assert ("/events", f"stats=1&token={TOKEN}", "") in asked

    # The same scene as a picture, for people.
    out = Path(os.environ.get("CCD_TEST_OUTPUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "wallboard.png"
    browse(tmp_path, serve(Daemon(frames=frames, polls=[QUIET])) + f"#token={TOKEN}",
           screenshot=shot)  # fmt: skip
    assert shot.stat().st_size > 10_000
    print(f"wallboard screenshot: {shot}")


def test_without_the_feed_the_board_polls_stats_and_keeps_changing(serve, tmp_path):
    daemon = Daemon(frames=None, polls=[QUIET, QUEUED, ANSWERED])
    page = browse(tmp_path, serve(daemon) + f"?token={TOKEN}&poll=500", budget_ms=4000)
    assert int(page.body["updates"]) >= 3 and page.body["via"] == "poll"
    assert page.field("waiting", "sales") == "1"
    assert page.field("service_level", "sales") == "90%"
    assert page.field("mode") == "POLLING"
    polled = [r for r in daemon.requests if r[0] == "/stats"]
    assert len(polled) >= 3 and all(auth == f"Bearer {TOKEN}" for _, _, auth in polled)


def test_a_refused_token_is_shown_not_a_stale_board(serve, tmp_path):
    page = browse(tmp_path, serve(Daemon(frames=[], polls=[QUIET])) + "#token=wrong")
    assert page.field("mode") == "TOKEN REFUSED"
    assert "updates" not in page.body
