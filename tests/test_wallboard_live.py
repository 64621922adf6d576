"""The wallboard page against the live daemon, in headless chromium in real time (issue 13).

The real stack of the other end-to-end tests: the session's redis-server, the fake
FreeSWITCH, the daemon with its HTTP server and token. Chromium is driven over the DevTools
protocol through its debugging pipe (tests.support.cdp): it opens ``/wallboard#token=...``
and stays on it while a caller queues and an agent answers; the test reads the sales tile
from the page's DOM until it shows each change (deadlines, no fixed sleeps) and checks that
no change came by reloading the page. A screenshot of the board at the end is saved (its path
is printed; set CCD_TEST_OUTPUT to keep it in a folder of yours).

tests/test_wallboard.py keeps the cases a live daemon cannot show on demand (six queues on
one screen, the feed down, a refused token) against a scripted server.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from tests.support.cdp import Browser
from tests.support.daemon_fixtures import HTTP_TOKEN, eventually
from tests.test_routing_e2e import SALES

ALICE = {"alice": {"extension": "1001", "tags": ["sales"]}}
# Callers wait for an agent even while nobody is logged in; a service level time of an hour
# (of the fake switch's clock: 72 real seconds at its time scale of 50) makes the one
# answered call count as within it, whatever the machine's speed.
QUEUES = {
    "sales": {"tags": ["sales"], "overflow_time": 0, "no_agents": "wait",
              "service_level_time": 3600},
}  # fmt: skip
NONE = "\u2013"  # the page's dash where there is no figure yet

# The sales tile's figures as the page shows them, the mode badge, and what the test keeps
# in the page's window (gone if the page were reloaded): a marker and the ticker's lines.
TILE = """(() => {
  const tile = document.querySelector('section[data-queue="sales"]');
  const text = (root, name) => {
    const node = root && root.querySelector('[data-field="' + name + '"]');
    return node ? node.textContent.replace(/\\s+/g, " ").trim() : null;
  };
  return {
    waiting: text(tile, "waiting"), longest: text(tile, "longest_wait"),
    sl: text(tile, "service_level"), today: text(tile, "today"),
    free: text(tile, "agents-free"), oncall: text(tile, "agents-oncall"),
    out: text(tile, "agents-logged_out"), mode: text(document, "mode"),
    updates: Number(document.body.dataset.updates || 0),
    fits: document.body.dataset.fits, marker: window.__marker || null,
    tickers: window.__tickers || [],
  };
})()"""

# The ticker shows the last event only: keep each line it shows.
WATCH = """(() => {
  window.__marker = "same page";
  window.__tickers = [];
  const ticker = document.getElementById("ticker");
  new MutationObserver(() => window.__tickers.push(ticker.textContent))
    .observe(ticker, {childList: true, characterData: true, subtree: true});
})()"""


@pytest.fixture
def browser(tmp_path):
    browser = Browser(tmp_path / "profile")
    yield browser
    browser.close()


def open_page(browser: Browser, url: str) -> str:
    """Attach to chromium's page, follow its navigations, load ``url``; the session id."""
    (page,) = [t for t in browser.send("Target.getTargets")["targetInfos"] if t["type"] == "page"]
    session = browser.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})
    session_id = session["sessionId"]
    browser.send("Page.enable", session=session_id)
    # The wallboard's screen: headless chromium's window keeps room for a toolbar otherwise.
    screen = {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False}
    browser.send("Emulation.setDeviceMetricsOverride", screen, session=session_id)
    browser.send("Page.navigate", {"url": url}, session=session_id)
    return session_id


def loads(browser: Browser, session: str) -> int:
    """How many documents the page's main frame loaded (1: no reload since the first)."""
    return sum(
        1
        for e in browser.events
        if e["method"] == "Page.frameNavigated"
        and e.get("sessionId") == session
        and "parentId" not in e["params"]["frame"]
    )


def test_the_board_follows_a_caller_queued_then_answered_without_a_reload(
    fakeswitch, start_daemon, browser, tmp_path
):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents=ALICE, queues=QUEUES)
    url = f"http://127.0.0.1:{daemon.http.address[1]}/wallboard#token={HTTP_TOKEN}"
    session = open_page(browser, url)

    def board() -> dict:
        answer = browser.send("Runtime.evaluate", {"expression": TILE, "returnByValue": True},
                              session=session)  # fmt: skip
        return answer["result"].get("value") or {}

    # A quiet centre, live from the feed: nobody waiting, nothing answered, alice logged out.
    first = eventually(
        lambda: (b := board()).get("mode") == "LIVE" and b["waiting"] == "0" and b,
        what="the board live and quiet",
    )
    assert (first["sl"], first["longest"], first["out"]) == (NONE, NONE, "1"), first
    assert first["today"].startswith("answered 0/0"), first
    browser.send("Runtime.evaluate", {"expression": WATCH}, session=session)

    # A caller queues; nobody is logged in, so the caller waits.
    caller = fakeswitch.place_call("+3612345678", "First", digits=[SALES], hangup_after=600)
    assert caller is not None
    queued = eventually(lambda: (b := board())["waiting"] == "1" and b, what="1 waiting shown")
    assert queued["today"].startswith("answered 0/1"), queued  # offered, not answered
    assert queued["sl"] == NONE and queued["updates"] > first["updates"], queued
    assert queued["marker"] == "same page" and loads(browser, session) == 1, "reloaded"

    # Alice logs in from her desk phone, is offered the caller and answers.
    fakeswitch.phone_call("1001", "*21")
    answered = eventually(
        lambda: (b := board())["waiting"] == "0" and b["oncall"] == "1" and b,
        what="the caller answered on the board",
    )
    assert answered["today"].startswith("answered 1/1"), answered
    assert answered["sl"] == "100%" and answered["longest"] == NONE, answered
    assert answered["out"] == "0" and answered["mode"] == "LIVE", answered
    assert answered["marker"] == "same page" and loads(browser, session) == 1, "reloaded"
    # The feed's events reached the page too (its ticker shows only what /events says).
    lines = eventually(
        lambda: (t := board()["tickers"]) and any("call.bridged" in line for line in t) and t,
        what="call.bridged in the ticker",
    )
    assert any("call.queued  sales" in line for line in lines), lines
    assert any("call.bridged  sales alice" in line for line in lines), lines
    # Every change came to the same document: the marker is there, one load in all.
    assert board()["marker"] == "same page"
    assert loads(browser, session) == 1

    # The board as it is now, for people; one queue fills the 1920x1080 screen.
    assert board()["fits"] == "true"
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
    out = Path(os.environ.get("CCD_TEST_OUTPUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "wallboard-live.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    print(f"wallboard screenshot (live daemon): {path}")
