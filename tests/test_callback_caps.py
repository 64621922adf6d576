"""Caps on open callback requests (issue 12): in all, per queue, and for callers without a
number of their own, enforced by the store's create script with the per-number limit; a caller
over a cap hears "please keep waiting" and keeps their place (end to end)."""

from __future__ import annotations

import dataclasses

import gevent
import pytest

from ccd.config import Config
from ccd.config.rules import open_limits_from_config
from ccd.core.callback import OpenLimitReached, OpenLimits
from ccd.store.callback import CallbackStore
from tests import test_callbacks_store as store_tests
from tests.support.daemon_fixtures import calls_of, eventually
from tests.test_callbacks_store import make
from tests.test_overflow_e2e import queue_caller, requests, start, transfers
from tests.test_routing_e2e import offers

# The Redis store and callback store fixtures of the store's own tests.
store, callbacks = store_tests.store, store_tests.callbacks


def test_the_queue_cap_counts_open_requests_of_that_queue_only(callbacks):
    limits = OpenLimits(per_queue=2)
    callbacks.create(make(1, queue="sales"), limits=limits)
    callbacks.create(make(2, queue="sales"), limits=limits)
    with pytest.raises(OpenLimitReached) as info:
        callbacks.create(make(3, queue="sales"), limits=limits)
    assert (info.value.scope, info.value.open_count, info.value.limit) == ("per_queue", 2, 2)
    assert "in this queue" in str(info.value)
    callbacks.create(make(4, queue="support"), limits=limits)  # another queue has room
    assert callbacks.get("cb3") is None
    callbacks.cancel("cb1")  # a closed request frees its place
    callbacks.create(make(5, queue="sales"), limits=limits)


def test_the_cap_in_all_counts_pending_and_working_requests_of_every_queue(callbacks):
    limits = OpenLimits(total=3)
    callbacks.create(make(1, queue="sales"), limits=limits)
    callbacks.create(make(2, queue="support"), limits=limits)
    callbacks.create(make(3, queue="general"), limits=limits)
    assert callbacks.take("cb1", "node-a", 30_000)  # working: still open
    with pytest.raises(OpenLimitReached) as info:
        callbacks.create(make(4, queue="payments"), limits=limits)
    assert (info.value.scope, info.value.open_count) == ("total", 3)
    callbacks.finish("cb1", "node-a", "done", 0.0)
    callbacks.create(make(4, queue="payments"), limits=limits)


def test_anonymous_callers_have_their_own_cap_per_queue_and_typed_numbers_their_limit(callbacks):
    limits = OpenLimits(per_caller=1, anonymous=2)
    callbacks.create(make(1, number="+36301111111"), limits=limits, anonymous=True)
    with pytest.raises(OpenLimitReached) as info:  # the same typed number again
        callbacks.create(make(2, number="+36301111111"), limits=limits, anonymous=True)
    assert info.value.scope == "per_caller"
    callbacks.create(make(3, number="+36303333333"), limits=limits, anonymous=True)
    with pytest.raises(OpenLimitReached) as info:
        callbacks.create(make(4, number="+36304444444"), limits=limits, anonymous=True)
    assert (info.value.scope, info.value.limit) == ("anonymous", 2)
    # Callers with a number of their own are not held back by the anonymous cap ...
    callbacks.create(make(5, caller="+3612345678"), limits=limits)
    # ... nor anonymous callers of another queue.
    callbacks.create(make(6, queue="support"), limits=limits, anonymous=True)
    # A request leaving the open states frees its anonymous place, and stays out of the cap
    # when an operator retries it (it is no longer a caller's fresh request).
    callbacks.cancel("cb1")
    callbacks.create(make(7, number="+36307777777"), limits=limits, anonymous=True)
    callbacks.retry("cb1", 0.0)
    callbacks.cancel("cb3")
    callbacks.create(make(8, number="+36308888888"), limits=limits, anonymous=True)


def test_caps_hold_under_concurrency(store):
    stores = [CallbackStore(store) for _ in range(4)]
    results: list[str] = []
    limits = OpenLimits(per_caller=5, per_queue=7, total=100)

    def create(n: int) -> None:
        try:
            stores[n % 4].create(make(n), limits=limits)
            results.append("ok")
        except OpenLimitReached as exc:
            results.append(exc.scope)

    gevent.joinall([gevent.spawn(create, n) for n in range(40)], raise_error=True)
    assert results.count("ok") == 7 and results.count("per_queue") == 33
    assert len(stores[0].list("pending")) == 7


def test_the_caps_come_from_the_configuration_with_sensible_defaults():
    config = Config.from_dict({"callback": {"max_open_per_queue": 5}}, env={})
    assert open_limits_from_config(config) == OpenLimits(
        per_caller=2, per_queue=5, total=20000, anonymous=50
    )


def test_a_caller_over_the_queue_cap_hears_keep_waiting_and_keeps_their_place(
    fakeswitch, start_daemon
):
    daemon = start(fakeswitch, start_daemon, callback={"max_open_per_queue": 1})
    # The queue's one place is taken (a passive request: nobody dials it meanwhile).
    CallbackStore(daemon.store).create(dataclasses.replace(make(1), strategy="passive"))
    caller = queue_caller(fakeswitch, "+3612345678", "1", "1")  # asks to be called back
    eventually(
        lambda: "ccd_cb_keep_waiting" in [to for _, to in transfers(fakeswitch, caller)],
        timeout=15,
        what="the keep-waiting prompt",
    )
    eventually(lambda: len(offers(fakeswitch)) >= 2, timeout=15, what="back in the queue")
    heard = [e["file"] for e in fakeswitch.trace.of("playback", uuid=caller)]
    assert "ivr/ivr-stay_on_line_call_answered_momentarily.wav" in heard  # never left silent
    assert caller in fakeswitch.channels  # not hung up on
    assert calls_of(daemon).waiting("sales") == [caller]  # their place, as before the offer
    assert [r.id for r in requests(daemon)] == ["cb1"]  # nothing stored for them
