"""The Redis adapter against a real redis-server: records, TTLs, leases, agent fences."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import structlog

from ccd.store.keys import Keys
from ccd.store.redis_store import (
    Codec,
    RedisUnavailable,
    SchemaMismatch,
    Store,
    connect_redis,
    new_agent_record,
)


def ready_agent(store: Store, agent_id: str = "alice", **changes) -> str:
    record = new_agent_record(agent_id, "1001", ["sales"], now=100.0)
    record.update({"login": "ready", "registered": True, **changes})
    key = store.keys.agent(agent_id)
    store.put(key, record)
    return key


# --- codec and keys ------------------------------------------------------------------------


def test_codec_round_trip_carries_the_version():
    codec = Codec(3)
    raw = codec.encode({"a": 1, "b": [1, "x"], "c": None})
    assert msgpack.unpackb(raw)["_v"] == 3
    assert codec.decode(raw) == {"a": 1, "b": [1, "x"], "c": None}


@pytest.mark.parametrize(
    "raw",
    [
        Codec(2).encode({"a": 1}),
        msgpack.packb({"a": 1}),
        msgpack.packb([1, 2]),
        b"\xc1not msgpack",
    ],
)
def test_codec_refuses_other_versions_and_garbage(raw):
    with pytest.raises(SchemaMismatch) as info:
        Codec(1).decode(raw, key="t:agent:x")
    assert info.value.key == "t:agent:x"


@pytest.mark.parametrize("part", ["a:b", "a b", "", "a\nb", "a*", "x" * 129, 5])
def test_keys_refuse_parts_that_could_forge_another_key(part):
    with pytest.raises(ValueError):
        Keys("ccd:").agent(part)


def test_keys_use_the_prefix():
    keys = Keys("ccd:")
    assert keys.agent("alice") == "ccd:agent:alice"
    assert keys.call("4e2a-11") == "ccd:call:4e2a-11"
    assert keys.lease("callback-7") == "ccd:lease:callback-7"


# --- records -------------------------------------------------------------------------------


def test_put_get_round_trip(store):
    key = store.keys.call("c1")
    store.put(key, {"queue": "sales", "since": 12.5, "tags": ["a"], "agent": None})
    assert store.get(key) == {"queue": "sales", "since": 12.5, "tags": ["a"], "agent": None}
    assert store.get(store.keys.call("c2")) is None
    assert store.get_many([key, store.keys.call("c2")]) == [store.get(key), None]
    assert store.delete(key) is True
    assert store.delete(key) is False
    assert store.get(key) is None


def test_put_with_ttl_sets_pttl(store, redis_client):
    key = store.keys.sticky("4930123")
    store.put(key, {"agent": "alice"}, ttl_ms=5000)
    left = store.pttl(key)
    assert left is not None and 4000 < left <= 5000
    store.put(key, {"agent": "alice"})  # a put without ttl makes it permanent
    assert store.pttl(key) == -1
    assert store.pttl(store.keys.sticky("0")) is None


def test_ttl_expires_the_record(store):
    key = store.keys.dnc("4930123")
    store.put(key, {"until": 1}, ttl_ms=30)
    deadline = time.monotonic() + 5
    while store.get(key) is not None:
        assert time.monotonic() < deadline, "record did not expire"
        time.sleep(0.01)


@pytest.mark.parametrize("ttl", [0, -5, True, float("inf")])
def test_bad_ttl_is_refused(store, ttl):
    with pytest.raises(ValueError):
        store.put(store.keys.call("c"), {}, ttl_ms=ttl)


def test_schema_mismatch_is_logged_and_treated_as_absent(store, redis_client):
    key = store.keys.agent("old")
    redis_client.set(key, Codec(99).encode({"id": "old"}))
    with structlog.testing.capture_logs() as logs:
        assert store.get(key) is None
        assert store.get_agent("old") is None
        assert store.reserve_agent("old", "c1", 1.0) is False
    assert [e["event"] for e in logs] == ["store.schema_mismatch"] * 3
    assert logs[0]["key"] == key
    # The foreign record is left alone (a daemon of the other version may own it).
    assert Codec(99).decode(redis_client.get(key)) == {"id": "old"}


def test_patch_merges_fields_and_keeps_ttl(store):
    key = store.keys.callback("r1")
    store.put(key, {"number": "123", "attempts": 0, "owner": None}, ttl_ms=60_000)
    assert store.patch(key, {"attempts": 1, "owner": "n1"}, nullable=("owner",)) is True
    assert store.get(key) == {"number": "123", "attempts": 1, "owner": "n1"}
    assert store.patch(key, {"owner": None}) is True
    assert store.get(key) == {"number": "123", "attempts": 1, "owner": None}
    assert 50_000 < store.pttl(key) <= 60_000
    assert store.patch(store.keys.callback("none"), {"attempts": 1}) is False


# --- leases --------------------------------------------------------------------------------


def test_lease_is_exclusive_and_only_the_owner_renews_or_releases(store):
    assert store.lease("cb-1", "node-a", 10_000) is True
    assert store.lease("cb-1", "node-b", 10_000) is False
    assert store.lease_owner("cb-1") == "node-a"
    assert store.renew("cb-1", "node-b", 10_000) is False
    assert store.release("cb-1", "node-b") is False
    assert store.lease_owner("cb-1") == "node-a"
    assert store.renew("cb-1", "node-a", 20_000) is True
    assert 10_000 < store.pttl(store.keys.lease("cb-1")) <= 20_000
    assert store.lease("cb-1", "node-a", 10_000) is True  # re-taking one's own lease extends it
    assert store.release("cb-1", "node-a") is True
    assert store.lease_owner("cb-1") is None
    assert store.lease("cb-1", "node-b", 10_000) is True


def test_lease_expires_and_then_the_old_owner_cannot_renew(store):
    assert store.lease("cb-2", "node-a", 50) is True
    deadline = time.monotonic() + 5
    while not store.lease("cb-2", "node-b", 10_000):
        assert time.monotonic() < deadline, "lease did not expire"
        time.sleep(0.01)
    assert store.renew("cb-2", "node-a", 10_000) is False
    assert store.release("cb-2", "node-a") is False
    assert store.lease_owner("cb-2") == "node-b"


def test_concurrent_lease_takers_get_exactly_one(store, redis_url):
    winners = run_concurrently(redis_url, 50, lambda s, i: s.lease("cb-3", f"node-{i}", 10_000))
    assert sum(winners) == 1
    assert store.lease_owner("cb-3") == f"node-{winners.index(True)}"


# --- agents --------------------------------------------------------------------------------


def test_reserve_takes_a_ready_idle_agent_for_one_call(store):
    ready_agent(store)
    assert store.reserve_agent("alice", "call-1", 200.5) is True
    agent = store.get_agent("alice")
    assert (agent["activity"], agent["call"], agent["since"]) == ("ringing", "call-1", 200.5)
    assert agent["idle_since"] == 100.0
    assert store.reserve_agent("alice", "call-2", 201.0) is False
    assert store.get_agent("alice")["call"] == "call-1"
    # The same reservation again (a retried request) is still ours.
    assert store.reserve_agent("alice", "call-1", 201.0) is True


@pytest.mark.parametrize(
    "state",
    [
        {"login": "break"},
        {"login": "logged_out"},
        {"registered": False},
        {"activity": "wrapup"},
        {"activity": "oncall", "call": "other"},
    ],
)
def test_reserve_refuses_an_unavailable_agent(store, state):
    ready_agent(store, **state)
    before = store.get_agent("alice")
    assert store.reserve_agent("alice", "call-1", 200.0) is False
    assert store.get_agent("alice") == before


def test_reserve_of_an_unknown_agent_is_refused(store):
    assert store.reserve_agent("ghost", "call-1", 1.0) is False


def test_fifty_concurrent_reservations_of_one_agent_give_one_success(store, redis_url):
    ready_agent(store)
    results = run_concurrently(
        redis_url, 50, lambda s, i: s.reserve_agent("alice", f"call-{i}", 300.0)
    )
    assert sum(results) == 1
    assert store.get_agent("alice")["call"] == f"call-{results.index(True)}"


def test_release_is_fenced_by_the_call_uuid(store):
    ready_agent(store)
    assert store.reserve_agent("alice", "call-1", 200.0)
    # A late event about some other call cannot touch the agent.
    assert store.release_agent("alice", "call-0", "idle", 201.0) is False
    assert store.get_agent("alice")["activity"] == "ringing"
    assert store.release_agent("alice", "call-1", "oncall", 202.0) is True
    assert store.release_agent("alice", "call-1", "wrapup", 260.0) is True
    agent = store.get_agent("alice")
    assert (agent["activity"], agent["call"], agent["since"]) == ("wrapup", "call-1", 260.0)
    assert store.release_agent("alice", "call-1", "idle", 270.0) is True
    agent = store.get_agent("alice")
    assert (agent["activity"], agent["call"], agent["idle_since"]) == ("idle", None, 270.0)
    # Now busy on a new call: a late hangup of the old one must not free her.
    assert store.reserve_agent("alice", "call-2", 280.0)
    assert store.release_agent("alice", "call-1", "idle", 281.0) is False
    assert store.get_agent("alice")["call"] == "call-2"


def test_missed_offer_keeps_the_idle_place_and_counts(store):
    ready_agent(store)
    assert store.reserve_agent("alice", "call-1", 200.0)
    assert store.release_agent("alice", "call-1", "idle", 215.0, missed=True) is True
    agent = store.get_agent("alice")
    assert (agent["activity"], agent["idle_since"], agent["missed"]) == ("idle", 100.0, 1)
    assert store.reserve_agent("alice", "call-2", 220.0)
    assert store.release_agent("alice", "call-2", "oncall", 221.0)
    assert store.get_agent("alice")["missed"] == 0


def test_release_refuses_an_unknown_activity(store):
    with pytest.raises(ValueError):
        store.release_agent("alice", "call-1", "ringing", 1.0)


def test_update_agent_changes_only_the_named_fields(store):
    ready_agent(store)
    assert store.reserve_agent("alice", "call-1", 200.0)
    assert store.update_agent("alice", login="break", tags=["sales", "vip"]) is True
    agent = store.get_agent("alice")
    assert (agent["login"], agent["tags"]) == ("break", ["sales", "vip"])
    assert (agent["activity"], agent["call"]) == ("ringing", "call-1")  # untouched
    assert store.update_agent("ghost", login="ready") is False
    with pytest.raises(ValueError):
        store.update_agent("alice", login="sleeping")
    with pytest.raises(ValueError):
        store.update_agent("alice", colour="red")


def test_record_shape_survives_lua_rewrites(store):
    ready_agent(store)
    store.reserve_agent("alice", "call-1", 200.0)
    store.release_agent("alice", "call-1", "idle", 201.0)
    agent = store.get(store.keys.agent("alice"))  # the generic read, not get_agent
    assert set(agent) == set(new_agent_record("a", "1", [], 0.0))
    assert agent["call"] is None and agent["tags"] == ["sales"]


# --- Redis down ----------------------------------------------------------------------------


def test_stopped_redis_raises_redis_unavailable_quickly(make_redis_server):
    server = make_redis_server()
    store = Store.create(connect_redis(server.url, socket_timeout=0.5), "t:")
    assert store.ping() is True
    ready_agent(store)
    server.stop()
    for operation in (
        store.ping,
        lambda: store.get(store.keys.agent("alice")),
        lambda: store.put(store.keys.call("c"), {}),
        lambda: store.reserve_agent("alice", "call-1", 1.0),
        lambda: store.lease("l", "me", 1000),
    ):
        with pytest.raises(RedisUnavailable):
            operation()


def test_unresponsive_redis_times_out_as_unavailable(make_redis_server):
    server = make_redis_server()
    store = Store.create(connect_redis(server.url, socket_timeout=0.2), "t:")
    store.ping()
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            store.get(store.keys.agent("alice"))
        # Bounded by the socket timeout (plus one reconnect), not a hang; generous for CI.
        assert time.monotonic() - started < 5
    finally:
        server.resume()
    assert store.ping() is True


def test_store_recovers_after_redis_restart_with_persistence(make_redis_server):
    server = make_redis_server(persistence=True)
    store = Store.create(connect_redis(server.url, socket_timeout=0.5), "t:")
    ready_agent(store)
    assert store.reserve_agent("alice", "call-1", 200.0)
    server.kill()
    with pytest.raises(RedisUnavailable):
        store.get_agent("alice")
    server.start()
    # Same client: the pool reconnects and the Lua scripts are loaded again (NOSCRIPT).
    assert store.get_agent("alice")["call"] == "call-1"
    assert store.release_agent("alice", "call-1", "idle", 201.0) is True


# --- helpers -------------------------------------------------------------------------------


def run_concurrently(redis_url, count, operation):
    """Run operation(store, i) in `count` threads, each with its own client, released at once."""
    barrier = threading.Barrier(count)
    results: list[bool | None] = [None] * count

    def worker(i):
        client = connect_redis(redis_url, socket_timeout=5.0)
        try:
            store = Store.create(client, "t:")
            store.ping()
            barrier.wait()
            results[i] = operation(store, i)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(r is not None for r in results), "a worker did not finish"
    return results
