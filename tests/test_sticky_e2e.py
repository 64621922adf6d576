"""R-STICKY end to end: an agent's outside call binds the customer; their call back goes
to that agent first. Fake FreeSWITCH (the shipped dialplan), real Redis, the daemon."""

from __future__ import annotations

from ccd.core import presence
from ccd.store.redis_store import Store, connect_redis
from ccd.store.sticky import StickyStore
from tests.support.daemon_fixtures import agents_of, bridged, eventually
from tests.test_routing_e2e import login, offers

CUSTOMER = "+3612345678"
DIALED = "0612345678"  # how the agent dials the same customer (national format)
AGENTS = {
    "alice": {"extension": "1001", "tags": ["general"]},
    "bob": {"extension": "1002", "tags": ["general", "sales"]},
}


def start(fakeswitch, start_daemon, sticky_type="type1", expiry=3600, **routing):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=5)
    fakeswitch.add_phone("1002", answer_after=1, hangup_after=5)
    daemon = start_daemon(
        fakeswitch,
        agents=AGENTS,
        sticky={"default_type": sticky_type, "default_expiry": expiry},
        routing={"wrapup_time": 0, **routing},
    )
    login(daemon, "alice", "bob")
    return daemon


def bindings(daemon) -> StickyStore:
    return daemon.control.sticky


def unanswered_outside_call(fakeswitch, ext="1002"):
    fakeswitch.add_outside(DIALED, ring_forever=True)
    call = fakeswitch.phone_call(ext, DIALED)
    eventually(
        lambda: fakeswitch.trace.of("dial_failed", party=DIALED) or call not in fakeswitch.channels,
        timeout=15,
        what="the customer did not answer",
    )


def test_customer_calls_back_and_reaches_the_agent_who_called(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    unanswered_outside_call(fakeswitch, "1002")  # bob tried and failed
    binding = eventually(lambda: bindings(daemon).get(CUSTOMER), what="binding created")
    assert binding.agent_id == "bob"
    caller = fakeswitch.place_call(CUSTOMER, "Doe, John", destination="5000")
    bridge = eventually(lambda: bridged(fakeswitch, caller), what="bridged to bob")[0]
    # bob (two tags) was rung although alice (one tag) is the general specialist
    assert offers(fakeswitch) == ["1002"]
    assert not fakeswitch.trace.of("ivr", uuid=caller)  # straight past the menu
    leg = fakeswitch.channels[bridge["b"] if bridge["a"] == caller else bridge["a"]]
    assert leg.caller_id_name == "DIRECT Doe, John"  # the screen-pop says so
    # type1: once they talked the binding is gone
    eventually(lambda: bindings(daemon).get(CUSTOMER) is None, what="binding deleted")


def test_bound_agent_busy_means_the_normal_queue(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    unanswered_outside_call(fakeswitch, "1002")
    eventually(lambda: bindings(daemon).get(CUSTOMER), what="binding")
    agents_of(daemon).transition("bob", lambda s: presence.set_login(s, "break", 0.0))
    caller = fakeswitch.place_call(CUSTOMER, "Doe, John", destination="5000")
    eventually(lambda: bridged(fakeswitch, caller), what="bridged to alice")
    assert offers(fakeswitch) == ["1001"]
    # not talked to bob: the type1 binding stays for the next try
    assert bindings(daemon).get(CUSTOMER).agent_id == "bob"


def test_expired_binding_means_the_menu(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon, expiry=30)  # 30 switch seconds
    unanswered_outside_call(fakeswitch, "1002")
    eventually(lambda: bindings(daemon).get(CUSTOMER), what="binding")
    created = fakeswitch.clock.now()
    eventually(lambda: bindings(daemon).pttl(CUSTOMER) is None, timeout=10, what="TTL lapsed")
    assert fakeswitch.clock.now() - created >= 25  # the TTL held to (near) the configured time
    caller = fakeswitch.place_call(CUSTOMER, "Doe, John", destination="5000", digits=["4"])
    eventually(lambda: fakeswitch.trace.of("ivr", uuid=caller), what="the menu")
    eventually(lambda: bridged(fakeswitch, caller), what="general queue")
    assert offers(fakeswitch) == ["1001"]


def test_type4_customer_call_restarts_the_expiry(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon, sticky_type="type4", expiry=200)
    fakeswitch.phone("1002").set(ring_forever=True)  # bob cannot answer the call back
    unanswered_outside_call(fakeswitch, "1002")
    eventually(lambda: bindings(daemon).get(CUSTOMER), what="binding")
    before = bindings(daemon).get(CUSTOMER).expires_at
    caller = fakeswitch.place_call(CUSTOMER, "Doe, John", destination="5000")
    eventually(lambda: bridged(fakeswitch, caller), timeout=15, what="fell back to alice")
    after = bindings(daemon).get(CUSTOMER)
    assert after.agent_id == "bob" and after.expires_at > before


def test_binding_is_stored_in_redis_with_a_ttl(fakeswitch, start_daemon, redis_url):
    start(fakeswitch, start_daemon, expiry=3600)
    unanswered_outside_call(fakeswitch, "1002")
    client = connect_redis(redis_url)
    try:
        store = StickyStore(Store.create(client))
        eventually(lambda: store.get(CUSTOMER), what="binding visible to any daemon")
        ttl_ms = store.pttl(CUSTOMER)
        scale = fakeswitch.clock.time_scale
        assert 0 < ttl_ms <= 3600 / scale * 1000
    finally:
        client.close()
