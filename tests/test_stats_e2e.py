"""Statistics end to end: calls through the fake FreeSWITCH and the real daemon, figures read
back from ``GET /stats`` (and ``/wallboard`` served beside it).

The engine's facts feed the statistics in its own unit of work (ccd.engine.stats), so what a
caller does shows in /stats a moment later: offered when they enter the queue, waiting while
nobody is free, answered with the wait, abandoned when they hang up, agents by status as the
desk phone logs in and takes the call.
"""

from __future__ import annotations

import json

from ccd.core import presence
from tests.support.daemon_fixtures import agents_of, bridged, eventually
from tests.test_daemon import http_get
from tests.test_routing_e2e import SALES

ALICE = {"alice": {"extension": "1001", "tags": ["sales"]}}


def stats(daemon) -> dict:
    status, body = http_get(daemon, "/stats")
    assert status == 200, body
    return json.loads(body)


def sales(doc: dict) -> dict:
    (queue,) = [q for q in doc["queues"] if q["queue"] == "sales"]
    return queue


def test_stats_follow_the_calls_answered_waiting_and_abandoned(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents=ALICE, queues={"sales": {"tags": ["sales"]}})
    # Seeded at start: alice is there, logged out.
    doc = eventually(lambda: (d := stats(daemon))["totals"]["agents"].get("logged_out") and d)
    assert sales(doc)["today"]["offered"] == 0 and sales(doc)["waiting"] == 0
    assert http_get(daemon, "/stats", headers={})[0] == 401  # the token, as /calls

    fakeswitch.phone_call("1001", "*21")  # login from the desk phone: the engine's fact
    eventually(lambda: sales(stats(daemon))["agents"].get("free") == 1, what="alice free")

    first = fakeswitch.place_call("+3612345678", "First", digits=[SALES], hangup_after=30)
    eventually(lambda: bridged(fakeswitch, first), what="alice takes the first caller")
    doc = eventually(
        lambda: (d := stats(daemon)) and sales(d)["agents"].get("oncall") == 1 and d,
        what="alice on call in /stats",
    )
    today = sales(doc)["today"]
    assert (today["offered"], today["answered"], today["abandoned"]) == (1, 1, 0)
    assert today["asa"] is not None and today["asa"] >= 0 and today["service_level"] == 1.0
    assert sales(doc)["windows"]["15"]["answered"] == 1

    # Alice is busy: the next caller waits, then gives up.
    second = fakeswitch.place_call("+3612345679", "Second", digits=[SALES], patience=20)
    # (the queue shows the caller at once; call.queued, said once routing placed the call,
    # rides with the next unit of work)
    doc = eventually(
        lambda: (
            (d := stats(daemon))
            and (sales(d)["waiting"], sales(d)["today"]["offered"]) == (1, 2)
            and d
        )
    )
    assert sales(doc)["longest_wait"] >= 0
    assert doc["totals"]["waiting"] == 1
    eventually(lambda: fakeswitch.trace.of("abandon"), what="the second caller gives up")
    doc = eventually(lambda: (d := stats(daemon)) and sales(d)["today"]["abandoned"] == 1 and d)
    today = sales(doc)["today"]
    assert (today["offered"], today["answered"], today["abandoned"]) == (2, 1, 1)
    assert today["abandon_rate"] == 0.5 and sales(doc)["waiting"] == 0
    assert not bridged(fakeswitch, second)

    # The first call ends: handled, talk time for AHT, alice free again after her wrap-up.
    eventually(
        lambda: (
            agents_of(daemon).require("alice").at(daemon.now()).state.activity
            is presence.Activity.IDLE
        ),
        timeout=20,
        what="first call over",
    )
    doc = eventually(lambda: (d := stats(daemon)) and sales(d)["agents"].get("free") == 1 and d)
    today = sales(doc)["today"]
    assert today["handled"] == 1 and today["talk"] > 0 and today["aht"] is not None


def test_wallboard_page_is_served_without_the_token(fakeswitch, start_daemon):
    daemon = start_daemon(fakeswitch)
    status, body = http_get(daemon, "/wallboard", headers={})
    assert status == 200 and b"<html" in body.lower() and b"/stats" in body
