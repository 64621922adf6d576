"""R-ROUTE presence end to end: who is skipped, who comes back, who goes first.

Fake FreeSWITCH over a real ESL socket, real Redis, the real daemon; time scaled.
"""

from __future__ import annotations

from ccd.core import presence
from ccd.core.customer import Customer
from ccd.store.customer import CustomerStore
from tests.support.daemon_fixtures import agents_of, bridged, calls_of, eventually
from tests.test_routing_e2e import SALES, login, offers

TWO_SALES = {
    "alice": {"extension": "1001", "tags": ["sales"]},
    "bob": {"extension": "1002", "tags": ["sales", "support"]},
}


def activity(daemon, agent_id):
    return agents_of(daemon).require(agent_id).state.activity


def agent_leg(switch, caller):
    b = eventually(lambda: bridged(switch, caller), what="bridge")[0]
    return switch.channels[b["b"] if b["a"] == caller else b["a"]]


def test_agent_on_a_personal_call_is_skipped(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001")
    fakeswitch.add_phone("1002")
    fakeswitch.add_outside("+3619998888", answer_after=1, hangup_after=600)
    daemon = start_daemon(fakeswitch, agents=TWO_SALES)
    login(daemon, "alice", "bob")
    fakeswitch.phone_call("1001", "+3619998888")  # alice calls a customer herself
    eventually(lambda: activity(daemon, "alice") is presence.Activity.ONCALL, what="alice busy")
    caller = fakeswitch.place_call("+3612345678", "X", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, caller), what="bridged")
    assert offers(fakeswitch) == ["1002"]


def test_unregistered_phone_is_skipped_and_registration_brings_it_back(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", registered=False)
    fakeswitch.add_phone("1002", ring_forever=True)
    daemon = start_daemon(fakeswitch, agents=TWO_SALES, routing={"wrapup_time": 0})
    login(daemon, "alice", "bob")
    assert agents_of(daemon).require("alice").state.registered is False
    # Patience well inside the ring (15 s): at 20 it raced the voicemail (ring + 3 s) by ms.
    first = fakeswitch.place_call("+3612345678", "X", digits=[SALES], patience=10)
    eventually(lambda: fakeswitch.trace.of("abandon", uuid=first), what="first caller gives up")
    assert offers(fakeswitch) == ["1002"]
    fakeswitch.phone("1001").set(registered=True)
    eventually(lambda: agents_of(daemon).require("alice").state.registered, what="registered")
    eventually(lambda: activity(daemon, "bob") is presence.Activity.IDLE, what="bob idle")
    second = fakeswitch.place_call("+3612345679", "Y", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, second), what="alice answers")
    assert offers(fakeswitch) == ["1002", "1001"]


def test_two_simultaneous_calls_never_ring_one_agent(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=3, hangup_after=5)
    fakeswitch.add_phone("1002", answer_after=3, hangup_after=5)
    daemon = start_daemon(fakeswitch, agents=TWO_SALES, routing={"wrapup_time": 0})
    login(daemon, "alice", "bob")
    callers = [fakeswitch.place_call(f"+361234567{i}", f"C{i}", digits=[SALES]) for i in range(4)]
    for caller in callers:
        eventually(lambda c=caller: bridged(fakeswitch, c), timeout=20, what="all bridged")
    # Per phone, each ring starts only after the previous offer to it has ended.
    for ext in ("1001", "1002"):
        legs = [e["uuid"] for e in fakeswitch.trace.of("ring") if e.get("party") == ext]
        assert len(legs) == 2
        first_end = [
            e["t"]
            for e in fakeswitch.trace.entries
            if e["kind"] == "hangup" and e.get("uuid") == legs[0]
        ]
        second_ring = [e["t"] for e in fakeswitch.trace.of("ring", uuid=legs[1])]
        assert first_end and second_ring and first_end[0] <= second_ring[0]


def test_tag_change_at_run_time_is_seen_by_the_next_call(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001")
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["support"]}})
    login(daemon, "alice")
    first = fakeswitch.place_call("+3612345678", "X", digits=[SALES])
    eventually(lambda: fakeswitch.trace.of("voicemail", uuid=first), what="nobody for sales")
    agents_of(daemon).set_tags("alice", ["support", "sales"])
    second = fakeswitch.place_call("+3612345679", "Y", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, second), what="alice now takes sales")
    assert offers(fakeswitch) == ["1001"]


def test_feature_codes_change_presence_and_break_is_skipped(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001")
    fakeswitch.add_phone("1002")
    daemon = start_daemon(fakeswitch, agents=TWO_SALES, routing={"wrapup_time": 0})
    repo = agents_of(daemon)
    fakeswitch.phone_call("1001", "*21")  # login
    fakeswitch.phone_call("1002", "*21")
    eventually(lambda: repo.require("alice").state.login is presence.Login.READY, what="login")
    eventually(lambda: repo.require("bob").state.login is presence.Login.READY, what="login")
    fakeswitch.phone_call("1001", "*23")  # break
    eventually(lambda: repo.require("alice").state.login is presence.Login.BREAK, what="break")
    eventually(lambda: activity(daemon, "alice") is presence.Activity.IDLE, what="code call over")
    first = fakeswitch.place_call("+3612345678", "X", digits=[SALES], hangup_after=5)
    eventually(lambda: bridged(fakeswitch, first), what="bob takes it")
    assert offers(fakeswitch) == ["1002"]
    fakeswitch.phone_call("1001", "*24")  # back from break
    eventually(lambda: repo.require("alice").state.login is presence.Login.READY, what="ready")
    eventually(lambda: activity(daemon, "alice") is presence.Activity.IDLE, what="idle")
    eventually(lambda: activity(daemon, "bob") is presence.Activity.IDLE, what="bob free")
    second = fakeswitch.place_call("+3612345679", "Y", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, second), what="alice takes it")
    assert offers(fakeswitch) == ["1002", "1001"]
    # Every feature code was answered with a tone, never silence.
    tones = [e for e in fakeswitch.trace.of("playback") if "tone_stream" in e["file"]]
    assert len(tones) == 4


def test_unknown_feature_code_user_hears_the_refusal_tone(fakeswitch, start_daemon):
    fakeswitch.add_phone("1005")  # a desk phone that is no agent
    start_daemon(fakeswitch, agents=TWO_SALES)
    call = fakeswitch.phone_call("1005", "*21")
    eventually(lambda: fakeswitch.trace.of("playback", uuid=call), what="a tone")
    assert "330" in fakeswitch.trace.of("playback", uuid=call)[0]["file"]


def test_vip_overtakes_earlier_callers(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=10)
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        routing={"wrapup_time": 0},
    )
    CustomerStore(daemon.store).put(Customer(number="+3615550000", name="Big Boss", vip=True))
    login(daemon, "alice")
    busy = fakeswitch.place_call("+3612340000", "First", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, busy), what="alice busy")
    normal = fakeswitch.place_call("+3612341111", "Normal", digits=[SALES])
    eventually(lambda: calls_of(daemon).waiting("sales") == [normal], what="normal waits")
    vip = fakeswitch.place_call("+3615550000", "Boss", digits=[SALES])
    eventually(lambda: calls_of(daemon).waiting("sales") == [vip, normal], what="vip first")
    leg = agent_leg(fakeswitch, vip)
    # The agent's phone showed who is calling (screen pop from the customer store).
    assert leg.caller_id_name == "VIP Big Boss"
    assert not bridged(fakeswitch, normal)


def test_two_daemons_on_one_switch_hunt_each_caller_once(fakeswitch, start_daemon):
    for ext in ("1001", "1002"):
        fakeswitch.add_phone(ext, answer_after=2, hangup_after=4)
    agents = TWO_SALES
    first = start_daemon(fakeswitch, agents=agents, routing={"wrapup_time": 0})
    second = start_daemon(
        fakeswitch, agents=agents, routing={"wrapup_time": 0}, daemon={"node_id": "other-node"}
    )
    login(first, "alice", "bob")
    callers = [
        fakeswitch.place_call(f"+36123456{i:02d}", f"C{i}", digits=[SALES]) for i in range(6)
    ]
    for caller in callers:
        eventually(lambda c=caller: bridged(fakeswitch, c), timeout=30, what="every caller bridged")
    # Each caller was bridged exactly once, and no phone ever rang for two offers at a time.
    for caller in callers:
        assert len(bridged(fakeswitch, caller)) == 1
    rings = [e for e in fakeswitch.trace.of("ring") if e.get("party") in ("1001", "1002")]
    assert len(rings) == len(callers)
    owners = {calls_of(first).get(c).node for c in callers}
    assert owners <= {"test-node", "other-node"}
    assert second.synced


def test_wrapup_holds_the_agent_then_frees_it(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=3)
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        routing={"wrapup_time": 20},
    )
    login(daemon, "alice")
    first = fakeswitch.place_call("+3612345678", "One", digits=[SALES])
    eventually(lambda: activity(daemon, "alice") is presence.Activity.WRAPUP, what="wrap-up")
    ended = fakeswitch.clock.now()
    second = fakeswitch.place_call("+3612345679", "Two", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, second), timeout=20, what="second call after wrap-up")
    second_ring = [e["t"] for e in fakeswitch.trace.of("ring") if e.get("party") == "1001"][1]
    assert second_ring - ended >= 19.0  # not offered during the 20 s of wrap-up
    assert bridged(fakeswitch, first)


def test_missed_offers_put_the_agent_on_break(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", ring_forever=True)
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        routing={"max_missed_offers": 2},
    )
    login(daemon, "alice")
    for number in ("+3612345670", "+3612345671"):
        caller = fakeswitch.place_call(number, "X", digits=[SALES])
        eventually(lambda c=caller: fakeswitch.trace.of("voicemail", uuid=c), what="voicemail")
    alice = eventually(
        lambda: (a := agents_of(daemon).require("alice")).state.login is presence.Login.BREAK and a,
        what="alice put on break",
    )
    assert alice.state.activity is presence.Activity.IDLE
    third = fakeswitch.place_call("+3612345672", "Y", digits=[SALES])
    eventually(lambda: fakeswitch.trace.of("voicemail", uuid=third), what="nobody left")
    assert len([e for e in fakeswitch.trace.of("ring") if e.get("party") == "1001"]) == 2
