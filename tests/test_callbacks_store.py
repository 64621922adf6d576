"""Callback requests in a real Redis: atomic create with the per-caller limit, leases, order."""

from __future__ import annotations

import gevent
import pytest
from gevent.event import Event

from ccd.core.callback import (
    Attempt,
    CallbackRules,
    IllegalStatusChange,
    OpenLimitReached,
    Outcome,
    Status,
    new_request,
)
from ccd.core.queue import queue_order_key
from ccd.store.callback import CallbackStore, LeaseLost, UnknownCallback
from ccd.store.dnc import DncList
from ccd.store.redis_store import RedisUnavailable, Store, connect_redis

T0 = 1_700_000_000.0
RULES = CallbackRules(max_attempts=2, min_interval=600)


@pytest.fixture
def store(redis_url):
    client = connect_redis(redis_url)
    yield Store.create(client, "t:")
    client.close()


@pytest.fixture
def callbacks(store) -> CallbackStore:
    return CallbackStore(store)


def make(n: int, *, number: str | None = None, priority: int = 0, entered: float | None = None,
         queue: str = "sales", caller: str | None = None):  # fmt: skip
    entered = T0 + n if entered is None else entered
    return new_request(
        f"cb{n}",
        number or f"+36301{n:06d}",
        queue,
        created_at=T0 + 100 + n,
        order_key=queue_order_key(priority, entered),
        caller_uuid=f"uuid-{n}",
        strategy="active",
        caller_number=caller,
    )


def test_create_is_durable_and_indexed(callbacks, store):
    req = callbacks.create(make(1, caller="+3612345678"), per_caller_limit=2)
    fresh = CallbackStore(store)  # another daemon, nothing in memory
    assert fresh.get("cb1") == req
    assert [r.id for r in fresh.list()] == ["cb1"]
    assert [r.id for r in fresh.list("pending")] == ["cb1"]
    assert fresh.counts()["pending"] == 1
    assert fresh.open_count("+3612345678") == 1
    assert [r.id for r in fresh.due(T0 + 101)] == ["cb1"]
    assert fresh.due(T0 + 100) == []  # not due before it was made


def test_create_again_with_the_same_id_is_harmless(callbacks):
    first = callbacks.create(make(1), per_caller_limit=1)
    assert callbacks.create(make(1), per_caller_limit=1) == first
    assert len(callbacks.list()) == 1


def test_per_caller_limit_counts_the_number_and_the_calling_number(callbacks):
    callbacks.create(make(1, number="+36301111111", caller="+3612345678"), per_caller_limit=2)
    callbacks.create(make(2, number="+36302222222", caller="+3612345678"), per_caller_limit=2)
    with pytest.raises(OpenLimitReached) as info:
        callbacks.create(make(3, number="+36303333333", caller="+3612345678"), 2)
    assert (info.value.open_count, info.value.limit) == (2, 2)
    with pytest.raises(OpenLimitReached):  # another caller asking to call the same number
        callbacks.create(make(4, number="+36301111111", caller="+3619999999"), 1)
    assert callbacks.get("cb3") is None and callbacks.get("cb4") is None
    # A closed request no longer counts.
    callbacks.cancel("cb1")
    callbacks.create(make(5, number="+36305555555", caller="+3612345678"), per_caller_limit=2)


def test_create_limit_holds_under_concurrency(store):
    stores = [CallbackStore(store) for _ in range(4)]
    results: list[str] = []

    def create(n: int) -> None:
        try:
            stores[n % 4].create(make(n, number="+36301234567"), per_caller_limit=3)
            results.append("ok")
        except OpenLimitReached:
            results.append("refused")

    gevent.joinall([gevent.spawn(create, n) for n in range(40)], raise_error=True)
    assert results.count("ok") == 3 and results.count("refused") == 37
    assert stores[0].open_count("+36301234567") == 3
    assert len(stores[0].list()) == 3


def test_due_is_in_original_queue_order_priority_first(callbacks):
    # Created in a shuffled order; entries: cb1 earliest, cb3 a priority caller.
    callbacks.create(make(2, entered=T0 + 20), None)
    callbacks.create(make(1, entered=T0 + 10), None)
    callbacks.create(make(3, entered=T0 + 30, priority=10), None)
    callbacks.create(make(4, entered=T0 + 5, queue="support"), None)
    now = T0 + 1000
    assert [r.id for r in callbacks.due(now)] == ["cb3", "cb4", "cb1", "cb2"]
    assert [r.id for r in callbacks.due(now, queue="sales")] == ["cb3", "cb1", "cb2"]
    assert [r.id for r in callbacks.due(now, queue=["support"])] == ["cb4"]
    assert [r.id for r in callbacks.due(now, limit=2)] == ["cb3", "cb4"]
    assert [r.id for r in callbacks.list("pending")] == ["cb3", "cb4", "cb1", "cb2"]


def test_attempts_retry_after_min_interval_then_unreached_kept(callbacks):
    callbacks.create(make(1), None)
    now = T0 + 200
    assert callbacks.take("cb1", "node-a", 5000)
    assert callbacks.due(now) == []  # working: not due for anyone else
    after = callbacks.record_attempt("cb1", "node-a", Attempt(now, Outcome.NO_ANSWER), RULES, now)
    assert after.status is Status.PENDING and after.next_due_at == now + 600
    assert callbacks.lease_owner("cb1") is None  # given back with the attempt
    assert callbacks.due(now + 599) == []
    assert [r.id for r in callbacks.due(now + 600)] == ["cb1"]
    assert callbacks.take("cb1", "node-b", 5000)
    final = callbacks.record_attempt(
        "cb1", "node-b", Attempt(now + 600, Outcome.BUSY, "bob"), RULES, now + 600
    )
    assert final.status is Status.UNREACHED
    assert callbacks.due(now + 10**6) == []
    assert not callbacks.take("cb1", "node-a", 5000)
    kept = callbacks.get("cb1")
    assert [a.outcome for a in kept.attempts] == ["no_answer", "busy"]
    assert [r.id for r in callbacks.list("unreached")] == ["cb1"]
    assert callbacks.counts()["unreached"] == 1


def test_only_the_lease_holder_records(callbacks):
    callbacks.create(make(1), None)
    assert callbacks.take("cb1", "node-a", 5000)
    assert not callbacks.take("cb1", "node-b", 5000)
    with pytest.raises(LeaseLost):
        callbacks.record_attempt("cb1", "node-b", Attempt(T0, "connected"), RULES, T0)
    with pytest.raises(LeaseLost):
        callbacks.finish("cb1", "node-b", "done", T0)
    assert callbacks.get("cb1").status is Status.WORKING
    assert callbacks.renew("cb1", "node-a", 5000)
    assert not callbacks.renew("cb1", "node-b", 5000)
    done = callbacks.finish("cb1", "node-a", "done", T0)
    assert done.status is Status.DONE and callbacks.lease_owner("cb1") is None


def test_release_gives_the_request_back_untouched(callbacks):
    callbacks.create(make(1), None)
    assert callbacks.take("cb1", "node-a", 5000)
    back = callbacks.release("cb1", "node-a")
    assert back.status is Status.PENDING and back.attempts == ()
    assert [r.id for r in callbacks.due(T0 + 200)] == ["cb1"]
    assert callbacks.take("cb1", "node-b", 5000)


def test_lease_expiry_lets_another_daemon_take_over(callbacks, redis_client):
    callbacks.create(make(1), None)
    callbacks.create(make(2), None)
    assert callbacks.take("cb1", "node-a", 60_000)
    assert callbacks.take("cb2", "node-a", 60_000)
    assert callbacks.expired_leases() == []
    # node-a dies: its lease on cb1 lapses (made to lapse now rather than waiting for it).
    redis_client.pexpire("t:lease:callback.cb1", 1)
    deadline = gevent.get_hub().loop.now() + 5
    while redis_client.exists("t:lease:callback.cb1") and gevent.get_hub().loop.now() < deadline:
        gevent.sleep(0.005)
    assert [r.id for r in callbacks.expired_leases()] == ["cb1"]
    assert callbacks.take("cb1", "node-b", 60_000)
    assert callbacks.lease_owner("cb1") == "node-b"
    assert callbacks.expired_leases() == []
    with pytest.raises(LeaseLost):  # node-a comes back from a long pause: too late
        callbacks.record_attempt("cb1", "node-a", Attempt(T0, "no_answer"), RULES, T0)
    done = callbacks.record_attempt("cb1", "node-b", Attempt(T0, "connected"), RULES, T0)
    assert done.status is Status.DONE and len(done.attempts) == 1


def test_two_daemons_take_200_requests_each_exactly_once(store):
    for n in range(200):
        CallbackStore(store).create(make(n), None)
    taken: dict[str, list[str]] = {}
    now = T0 + 10_000
    start = Event()

    def daemon(owner: str) -> None:
        callbacks = CallbackStore(store)
        start.wait()
        while True:
            due = callbacks.due(now, limit=20)
            if not due:
                return
            for req in due:
                if callbacks.take(req.id, owner, 30_000):
                    taken.setdefault(req.id, []).append(owner)
                    gevent.sleep(0)  # let the other daemon run mid-attempt
                    callbacks.record_attempt(req.id, owner, Attempt(now, "connected"), RULES, now)

    workers = [gevent.spawn(daemon, name) for name in ("node-a", "node-b")]
    start.set()
    gevent.joinall(workers, timeout=20, raise_error=True)
    assert all(w.dead for w in workers)
    assert len(taken) == 200
    assert all(len(owners) == 1 for owners in taken.values())
    assert {o for owners in taken.values() for o in owners} == {"node-a", "node-b"}
    assert CallbackStore(store).counts()["done"] == 200


def test_operator_cancel_and_retry(callbacks):
    callbacks.create(make(1), None)
    assert callbacks.take("cb1", "node-a", 5000)
    callbacks.cancel("cb1")
    # The dialer's attempt made meanwhile is kept; the request stays cancelled.
    after = callbacks.record_attempt("cb1", "node-a", Attempt(T0, "no_answer"), RULES, T0)
    assert after.status is Status.CANCELLED and len(after.attempts) == 1
    assert callbacks.lease_owner("cb1") is None
    retried = callbacks.retry("cb1", T0 + 5000)
    assert retried.status is Status.PENDING and retried.next_due_at == T0 + 5000
    assert [r.id for r in callbacks.due(T0 + 5000)] == ["cb1"]
    with pytest.raises(IllegalStatusChange):
        callbacks.retry("cb1", T0 + 5000)
    with pytest.raises(UnknownCallback):
        callbacks.cancel("nope")
    with pytest.raises(UnknownCallback):
        callbacks.retry("bad:id", T0)


def test_do_not_call_numbers_are_neither_due_nor_taken(store, callbacks):
    callbacks.create(make(1, number="+36301111111"), None)
    callbacks.create(make(2, number="+36302222222"), None)
    DncList(store).add("+36301111111", reason="asked", by="test", ttl_seconds=None)
    assert [r.id for r in callbacks.due(T0 + 1000)] == ["cb2"]
    assert not callbacks.take("cb1", "node-a", 5000)
    assert callbacks.get("cb1").status is Status.PENDING  # kept, not dialed


def test_redis_down_means_not_stored(make_redis_server):
    server = make_redis_server()
    client = connect_redis(server.url, socket_timeout=0.5)
    callbacks = CallbackStore(Store.create(client, "t:"))
    server.stop()
    with pytest.raises(RedisUnavailable):
        callbacks.create(make(1), 2)
    client.close()
