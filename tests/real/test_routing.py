"""R-ROUTE on a real FreeSWITCH: who rings, for how long, what the caller gets.

One call centre for the module (ring time 3 s, wrap-up 1 s), desk phones played by sipp,
callers on loopback channels. Each test uses its own queue so the tests share the daemon
without sharing agents. What is checked is what FreeSWITCH reports (its events, its
`show channels`) and what the phones received on the wire (sipp's message trace).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time

import pytest

from ccd.adapters.inbox_items import Lanes
from ccd.core import events as ev
from ccd.core import presence
from tests.real.lab import bridged_pair, channel_events, is_execute, wait_for

RING = 3.0

CONFIG = {
    "routing": {"ring_time": RING, "wrapup_time": 1, "caller_id_template": "{vip}{name}"},
    "queues": {
        "sales": {"tags": ["sales"], "overflow_time": 0},
        "payments": {"tags": ["billing"], "overflow_time": 0},
        "support": {"tags": ["support"], "overflow_time": 0},
        "general": {"tags": ["general"], "overflow_time": 0},
    },
    "agents": {
        # Seed 002, written out of routing order on purpose.
        "carol": {"extension": "1003", "tags": ["sales", "support", "management"]},
        "alice": {"extension": "1001", "tags": ["sales"]},
        "bob": {"extension": "1002", "tags": ["sales", "support"]},
        # Every way an offer fails, fewest tags first: busy, rejects, never answers,
        # not registered (presence knows it), "registered" in Redis only (FreeSWITCH
        # answers USER_NOT_REGISTERED).
        "stale": {"extension": "1015", "tags": ["billing", "r1", "r2", "r3", "r4"]},
        "busy": {"extension": "1011", "tags": ["billing"]},
        "rejects": {"extension": "1012", "tags": ["billing", "r1"]},
        "silent": {"extension": "1013", "tags": ["billing", "r1", "r2"]},
        "away": {"extension": "1014", "tags": ["billing", "r1", "r2", "r3"]},
        "tv": {"extension": "1016", "tags": ["support", "tv"]},
        "gina": {"extension": "1017", "tags": ["general"]},
    },
}


@pytest.fixture(scope="module")
def center(make_center, make_phone, fs):
    phones = {
        "1001": make_phone("1001", ("ring", None)),
        "1002": make_phone("1002", ("ring", None)),
        "1003": make_phone("1003", ("ring", None)),
        "1011": make_phone("1011", ("refuse", 486)),
        "1012": make_phone("1012", ("refuse", 603)),
        "1013": make_phone("1013", ("ring", None)),
        "1016": make_phone("1016", ("ring", None)),
        "1017": make_phone("1017", ("answer", 300)),
    }
    for user in ("1014", "1015"):  # no phone: make sure FreeSWITCH has no registration
        fs.api(f"sofia profile internal flush_inbound_reg {user}@127.0.0.1")
    center = make_center(CONFIG)
    center.set_login("login", *CONFIG["agents"])
    center.phones = phones
    return center


def idle(center, *agent_ids):
    repo = center.agents()
    now = time.time()  # a wrap-up ends by itself: nobody writes it (ccd.core.presence.current)
    return all(repo.require(a).at(now).state.activity is presence.Activity.IDLE for a in agent_ids)


def test_seed_002_fewest_tags_rung_first_each_for_the_ring_time_then_voicemail(center, fs, call):
    mark = fs.mark()
    caller = call("5000", number="+3612345678", name="Doe, John")
    # Parked for the direct-callback look-up, saying how long the dialplan waits for the
    # daemon (a daemon hearing of it too late leaves the caller in the menu).
    entry = fs.wait_event(
        lambda s: s.name == "CHANNEL_PARK" and s.uuid == caller.b, since=mark, what="the park"
    )
    parked = ev.from_esl(entry)
    assert isinstance(parked, ev.EntryParked) and parked.moves_on_after == 2.0
    assert not ev.fell_through(parked)
    # The main menu (ivr ccd_main): 1 = sales.
    fs.wait_event(
        lambda s: is_execute(s, caller.b, "ivr"), since=mark, what="the caller in the main menu"
    )
    caller.press("1")
    voicemail = fs.wait_event(
        lambda s: is_execute(s, caller.b, "voicemail"),
        timeout=4 * RING + 10,
        since=mark,
        what="the caller sent to voicemail",
    )
    assert voicemail.get("Application-Data").split()[-1] == "sales"
    caller.hang_up()
    # The phones' traces may lag FreeSWITCH's events by a moment: wait for the last CANCEL.
    seed = ("1001", "1002", "1003")
    wait_for(
        lambda: all(i.cancelled_at for e in seed for i in center.phones[e].invites()),
        5,
        "the CANCELs on the wire",
    )
    rung = [(ext, center.phones[ext].invites()) for ext in ("1001", "1002", "1003")]
    assert all(len(invites) == 1 for _, invites in rung), rung
    # Fewest tags first: alice (sales), bob (sales, support), carol (three tags).
    order = sorted(rung, key=lambda item: item[1][0].at)
    assert [ext for ext, _ in order] == ["1001", "1002", "1003"]
    for ext, (invite,) in rung:
        # On the wire: INVITE in, CANCEL in after the configured ring time.
        assert invite.cancelled_at is not None, ext
        assert RING - 0.1 <= invite.ring_time <= RING + 0.5, (ext, invite.ring_time)
        # The screen-pop the phone shows while it rings.
        assert invite.display == "Doe, John"
    # One agent at a time: each ring starts after the previous one ended.
    for (_, (first,)), (_, (second,)) in itertools.pairwise(order):
        assert second.at >= first.cancelled_at
    wait_for(lambda: idle(center, "alice", "bob", "carol"), 10, "seed 002 agents idle again")


def test_a_daemon_that_stood_still_leaves_the_caller_in_the_menu_they_reached(center, fs, call):
    """The daemon stopped (SIGSTOP: a long pause) while a caller reached the main number:
    the dialplan's own sched_transfer sends them to the menu after ccd_direct_check_s. The
    daemon, running again, hears of the park late and must not transfer them to the menu a
    second time (FreeSWITCH would start it again, the key they press lost)."""
    # The daemon learns the gap between FreeSWITCH's clock and its own from events it
    # reads as they come (HEARTBEAT every 20 s on a quiet switch): one now, not to wait.
    heard = center.metric("ccd_esl_events_total")
    assert fs.sendevent("HEARTBEAT", [("Event-Info", "ccd test")]).startswith("+OK")
    wait_for(lambda: center.metric("ccd_esl_events_total") > heard, 5, "the daemon read it")
    mark = fs.mark()
    pid = center.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        caller = call("5000", number="+3612345670", name="Late Caller")
        fs.wait_event(
            lambda s: is_execute(s, caller.b, "ivr"), since=mark, what="the menu, by the dialplan"
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    caller.press("1")
    queued = fs.wait_event(
        lambda s: s.name == "CHANNEL_PARK" and s.uuid == caller.b and s.var("ccd_queue"),
        since=mark,
        what="the caller parked in a queue",
    )
    # A transfer from the daemon would have started the menu again (a second ivr, the key
    # lost to the first or the caller sent on by the second's timeouts).
    menus = [s for s in fs.snapshot()[mark:] if is_execute(s, caller.b, "ivr")]
    assert len(menus) == 1 and queued.var("ccd_queue") == "sales"
    late = center.wait_logged("call.entry_late", call=caller.b, timeout=10)
    assert late["waited"] >= 1.0  # stopped until the menu began: 1-2 s after the park
    caller.hang_up()


def test_busy_rejecting_silent_and_unregistered_agents_are_skipped_then_voicemail(center, fs, call):
    repo = center.agents()
    repo.transition("stale", lambda s: presence.set_registered(s, True, time.time()))
    mark = fs.mark()
    caller = call("ccd_queue_payments", number="+3612345679")
    voicemail = fs.wait_event(
        lambda s: is_execute(s, caller.b, "voicemail"),
        timeout=RING + 10,
        since=mark,
        what="the caller sent to voicemail",
    )
    caller.hang_up()
    assert voicemail.get("Application-Data").split()[-1] == "payments"
    wait_for(lambda: center.phones["1013"].invites(), 5, "the silent phone's INVITE")
    wait_for(lambda: center.phones["1013"].invites()[0].cancelled_at, 5, "its CANCEL")
    busy, rejects, silent = (center.phones[e].invites() for e in ("1011", "1012", "1013"))
    assert [len(busy), len(rejects), len(silent)] == [1, 1, 1]
    assert busy[0].refused_at and rejects[0].refused_at  # 486 and 603 on the wire
    assert busy[0].at < rejects[0].at < silent[0].at
    assert silent[0].cancelled_at and RING - 0.1 <= silent[0].ring_time <= RING + 0.5
    # FreeSWITCH's answers to the daemon's originates (BACKGROUND_JOB), per agent.
    results = {
        re.search(r"ccd_agent=(\w+)", s.get("Job-Command-Arg")).group(1): (
            s.event.body or ""
        ).strip()
        for s in fs.snapshot()[mark:]
        if s.name == "BACKGROUND_JOB"
        and s.get("Job-Command") == "originate"
        and caller.b in s.get("Job-Command-Arg")
    }
    assert results == {
        "busy": "-ERR USER_BUSY",  # 486
        "rejects": "-ERR CALL_REJECTED",  # 603
        "silent": "-ERR ORIGINATOR_CANCEL",  # uuid_kill by the daemon at the ring time
        "stale": "-ERR USER_NOT_REGISTERED",  # no channel, no INVITE
    }
    # "away" has no registration: never offered. "stale" is unregistered now.
    tried = center.wait_logged("call.voicemail", call=caller.b)["tried"]
    assert tried == ["busy", "rejects", "silent", "stale"]
    assert repo.require("stale").state.registered is False


def test_caller_hanging_up_while_an_agent_rings_cancels_the_ring(center, fs, call):
    mark = fs.mark()
    phone = center.phones["1016"]
    caller = call("ccd_queue_support_tv", number="+3612345680")
    wait_for(lambda: phone.invites(), 10, "the tv agent's phone to ring")
    hung_up_at = time.time()
    caller.hang_up()
    invite = wait_for(lambda: phone.invites()[0].cancelled_at and phone.invites()[0], 5, "CANCEL")
    assert invite.cancelled_at - hung_up_at < 1.0
    leg_end = fs.wait_event(
        lambda s: s.name == "CHANNEL_HANGUP_COMPLETE" and s.var("ccd_call") == caller.b,
        since=mark, what="the agent leg's hangup",
    )  # fmt: skip
    assert leg_end.get("Hangup-Cause") in ("ORIGINATOR_CANCEL", "NORMAL_CLEARING")
    center.wait_logged("call.abandoned", call=caller.b)
    wait_for(lambda: idle(center, "tv"), 5, "the tv agent idle again")


def test_answering_agent_is_bridged_and_shown_the_caller(center, fs, call):
    mark = fs.mark()
    phone = center.phones["1017"]
    caller = call("ccd_queue_general", number="+3612345681", name="Kovács Anna")
    leg = wait_for(lambda: bridged_pair(fs.snapshot()[mark:], caller.b), 10, "the bridge")
    invite = phone.invites()[0]
    assert invite.display == "Kovács Anna" and invite.answered_at
    # FreeSWITCH's own table of live calls pairs the caller with the agent's leg.
    rows = json.loads(fs.api("show channels as json")).get("rows", [])
    by_uuid = {row["uuid"]: row for row in rows}
    assert caller.b in by_uuid and leg in by_uuid
    assert by_uuid[leg]["dest"] == "1017" or by_uuid[leg]["name"].startswith("sofia/")
    assert channel_events(fs.snapshot()[mark:], leg, "CHANNEL_ANSWER")
    caller.hang_up()
    wait_for(lambda: phone.invites()[0].bye_at, 5, "the BYE on the agent's phone")
    wait_for(lambda: idle(center, "gina"), 10, "wrap-up over")
    # The daemon's inbox takes the events of work already started first (ccd.adapters.inbox):
    # that needs every event of the agent's leg, from CHANNEL_CREATE on, to carry ccd_call as
    # FreeSWITCH sends it (a channel changing lanes would have its events reordered), and the
    # caller's to be urgent from its CHANNEL_BRIDGE on (FreeSWITCH reports the bridge on the
    # caller's channel only: behind new callers, the agent's hangup would overtake it).
    ended = lambda: channel_events(fs.snapshot()[mark:], leg, "CHANNEL_HANGUP_COMPLETE")  # noqa: E731
    wait_for(ended, 5, "the agent's leg ended")
    lanes, queued = Lanes(), {leg: [], caller.b: []}
    for s in fs.snapshot()[mark:]:
        item, urgent = lanes.received(s.event)
        if item is not None and s.uuid in queued:
            queued[s.uuid].append((s.name, urgent))
    assert {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_HANGUP_COMPLETE"} <= {
        name for name, _ in queued[leg]
    }
    assert all(urgent for _, urgent in queued[leg]), queued[leg]
    names = [name for name, _ in queued[caller.b]]
    bridged_at = names.index("CHANNEL_BRIDGE")
    assert "CHANNEL_PARK" in names[:bridged_at] and "CHANNEL_HANGUP_COMPLETE" in names[bridged_at:]
    assert [u for _, u in queued[caller.b]] == [i >= bridged_at for i in range(len(names))]
