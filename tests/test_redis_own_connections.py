"""Connections a greenlet keeps for itself (the dispatcher's lane, each event-feed client) are
not the pool's: however many feed clients come and go, the pool keeps its whole limit for
everything else the daemon asks Redis."""

from __future__ import annotations

import redis

from ccd.store.batch import Lane
from ccd.store.feed import FeedStore
from ccd.store.redis_store import Store


def test_feed_clients_and_lanes_never_use_up_the_pools_limit(redis_url):
    client = redis.Redis.from_url(redis_url, max_connections=2)
    store = Store.create(client, "t:")
    feed = FeedStore(store, max_len=100)
    for _ in range(10):  # ten wallboards loaded, one after the other
        reader = feed.reader(block=0.05)
        reader.start(None)
        reader.close()
    lanes = [Lane(client) for _ in range(3)]
    assert [lane.roundtrip([("PING",)]) for lane in lanes] == [[b"PONG"]] * 3
    assert client.ping() and client.set("t:k", b"v") and client.get("t:k") == b"v"
    client.close()
