"""R-ROUTE end to end: the fake FreeSWITCH (real ESL socket), real Redis, the real daemon.

Callers dial the main number, choose a department in the shipped IVR, and the
daemon hunts agents one at a time. What happened is read from the fake
switch's trace (rings, bridges, voicemail) and from Redis.
"""

from __future__ import annotations

import itertools

import pytest

from ccd.core import presence
from tests.support.daemon_fixtures import agents_of, bridged, eventually

SALES = "1"  # the main menu's digit for sales (freeswitch_conf/ivr_menus/ccd_main.xml)


def login(daemon, *agent_ids, now=0.0):
    repo = agents_of(daemon)
    for agent_id in agent_ids:
        repo.transition(agent_id, lambda s: presence.set_login(s, "login", now))


def rings(switch):
    return [e["party"] for e in switch.trace.of("ring") if e.get("leg") == "phone"]


def offers(switch):
    """Desk phones the daemon called, in order (rung, or refused at once: busy, 603)."""
    seen: dict[str, str] = {}
    for e in switch.trace.entries:
        if (
            e["kind"] in ("ring", "originate_failed")
            and e.get("uuid")
            and e.get("party") in switch.phones
            and e.get("leg") in (None, "phone")
        ):
            seen.setdefault(e["uuid"], e["party"])
    return list(seen.values())


SEED_002_AGENTS = {
    "carol": {"extension": "1003", "tags": ["sales", "support", "management"]},
    "alice": {"extension": "1001", "tags": ["sales"]},
    "bob": {"extension": "1002", "tags": ["sales", "support"]},
}


def test_seed_002_fewest_tags_rung_first_then_next_then_voicemail(fakeswitch, start_daemon):
    for ext in ("1001", "1002", "1003"):
        fakeswitch.add_phone(ext, ring_forever=True)
    daemon = start_daemon(fakeswitch, agents=SEED_002_AGENTS)
    login(daemon, "alice", "bob", "carol")
    caller = fakeswitch.place_call("+3612345678", "Doe, John", digits=[SALES])
    eventually(lambda: fakeswitch.trace.of("voicemail", uuid=caller), what="voicemail")
    assert rings(fakeswitch) == ["1001", "1002", "1003"]
    voicemail = fakeswitch.trace.of("voicemail", uuid=caller)[0]
    assert voicemail["box"] == "sales"
    # Each agent rang for the ring time (15 s), timed by the daemon, not FreeSWITCH.
    ring_times = [e["t"] for e in fakeswitch.trace.of("ring") if e.get("leg") == "phone"]
    gaps = [b - a for a, b in itertools.pairwise(ring_times)]
    assert all(14.5 <= g <= 17.5 for g in gaps), gaps
    # Nobody is left ringing: every agent is idle again.
    eventually(
        lambda: all(a.state.activity is presence.Activity.IDLE for a in agents_of(daemon).all()),
        what="agents idle",
    )


def test_answering_agent_is_bridged_to_the_caller(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=2)
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    login(daemon, "alice")
    caller = fakeswitch.place_call("+3612345678", "Doe, John", digits=[SALES])
    bridge = eventually(
        lambda: bridged(fakeswitch, caller),
        what="bridge",
    )[0]
    leg = bridge["b"] if bridge["a"] == caller else bridge["a"]
    alice = eventually(
        lambda: (
            (a := agents_of(daemon).require("alice")).state.activity is presence.Activity.ONCALL
            and a
        ),
        what="alice on call",
    )
    assert alice.state.offer_leg == leg and alice.call == caller
    # The screen-pop name survived the dial string intact.
    assert fakeswitch.channels[leg].caller_id_name == "Doe, John"


def test_caller_hangs_up_while_agent_rings_frees_the_agent(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", ring_forever=True)
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    login(daemon, "alice")
    fakeswitch.place_call("+3612345678", "Impatient", digits=[SALES], patience=12)
    eventually(lambda: fakeswitch.trace.of("abandon"), what="caller gives up")
    eventually(lambda: fakeswitch.trace.of("kill"), what="agent leg cancelled")
    alice = eventually(
        lambda: (
            (a := agents_of(daemon).require("alice")).state.activity is presence.Activity.IDLE and a
        ),
        what="alice idle",
    )
    assert alice.call is None and alice.state.offer_leg is None
    assert rings(fakeswitch) == ["1001"]


@pytest.mark.parametrize("behaviour", [{"busy": True}, {"reject": True}])
def test_busy_or_rejecting_agent_moves_to_the_next(fakeswitch, start_daemon, behaviour):
    fakeswitch.add_phone("1001", **behaviour)
    fakeswitch.add_phone("1002", answer_after=1)
    daemon = start_daemon(
        fakeswitch,
        agents={
            "alice": {"extension": "1001", "tags": ["sales"]},
            "bob": {"extension": "1002", "tags": ["sales", "support"]},
        },
    )
    login(daemon, "alice", "bob")
    caller = fakeswitch.place_call("+3612345678", "X", digits=[SALES])
    eventually(
        lambda: bridged(fakeswitch, caller),
        what="bridged to bob",
    )
    assert offers(fakeswitch) == ["1001", "1002"]
