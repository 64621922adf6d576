"""R-CALLBACK end to end: stored requests dialled by each strategy, through the fake
FreeSWITCH's gateway customers and desk phones, real Redis, the daemon; time scaled."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from ccd.core.callback import new_request
from ccd.core.queue import queue_order_key
from ccd.store.callback import CallbackStore
from tests.support.daemon_fixtures import QUEUES, bridged, eventually
from tests.test_routing_e2e import login, offers

AGENTS = {"alice": {"extension": "1001", "tags": ["sales"]}}
CUSTOMER = "+3612345678"


def start(fakeswitch, start_daemon, strategy, *, hours=(), **callbacks):
    queues = {**QUEUES, "sales": {"tags": ["sales"], "overflow_time": 0,
                                  "callback_strategy": strategy}}  # fmt: skip
    daemon = start_daemon(
        fakeswitch,
        agents=AGENTS,
        queues=queues,
        routing={"wrapup_time": 0},
        callback={"business_hours": list(hours), "agent_poll_interval": 5,
                   "min_interval": 60, "max_attempts": 2, **callbacks},
    )  # fmt: skip
    login(daemon, "alice")
    return daemon


def store_request(daemon, number=CUSTOMER, strategy="customer_first", at=None):
    now = daemon.now() if at is None else at
    request = new_request(
        uuid.uuid4().hex, number, "sales", created_at=now,
        order_key=queue_order_key(0, now), caller_uuid=str(uuid.uuid4()), strategy=strategy,
    )  # fmt: skip
    return CallbackStore(daemon.store).create(request, None)


def status(daemon, request):
    return CallbackStore(daemon.store).require(request.id)


def test_customer_first_answered_pressing_1_is_queued_ahead_and_bridged(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=5)
    fakeswitch.add_outside(CUSTOMER, answer_after=1, digits=["1"], hangup_after=60)
    daemon = start(fakeswitch, start_daemon, "customer_first")
    request = store_request(daemon)
    leg = eventually(lambda: [e["uuid"] for e in fakeswitch.trace.of("answer", party=CUSTOMER)],
                     what="customer answered")[0]  # fmt: skip
    eventually(lambda: bridged(fakeswitch, leg), what="customer bridged to alice")
    done = status(daemon, request)
    assert done.status == "done" and [a.outcome for a in done.attempts] == ["queued"]


def test_customer_first_declining_closes_the_request(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    fakeswitch.add_outside(CUSTOMER, answer_after=1, digits=["2"])
    daemon = start(fakeswitch, start_daemon, "customer_first")
    request = store_request(daemon)
    eventually(lambda: status(daemon, request).status == "declined", what="declined")
    assert offers(fakeswitch) == []  # no agent was bothered


def test_unanswered_customer_is_retried_after_the_interval_then_kept_unreached(
    fakeswitch, start_daemon
):
    fakeswitch.add_phone("1001", answer_after=1)
    fakeswitch.add_outside(CUSTOMER, ring_forever=True)
    daemon = start(fakeswitch, start_daemon, "customer_first", customer_ring_time=10)
    request = store_request(daemon)
    final = eventually(lambda: (r := status(daemon, request)).status == "unreached" and r,
                       timeout=20, what="unreached after two attempts")  # fmt: skip
    assert [a.outcome for a in final.attempts] == ["no_answer", "no_answer"]
    first, second = (a.at for a in final.attempts)
    assert second - first >= 60  # min_interval held (daemon seconds)
    rings = fakeswitch.trace.of("ring", party=CUSTOMER)
    assert len(rings) == 2  # max_attempts: never dialled a third time
    assert CallbackStore(daemon.store).get(request.id) is not None  # kept, never deleted


def test_active_rings_a_free_agent_then_dials_and_bridges_the_customer(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=10)
    fakeswitch.add_outside(CUSTOMER, answer_after=1, hangup_after=60)
    daemon = start(fakeswitch, start_daemon, "active")
    request = store_request(daemon, strategy="active")
    eventually(lambda: status(daemon, request).status == "done", timeout=15, what="done")
    customer_leg = fakeswitch.trace.of("answer", party=CUSTOMER)[0]["uuid"]
    assert bridged(fakeswitch, customer_leg)  # done only once FreeSWITCH reported the bridge
    assert offers(fakeswitch) == ["1001"]
    assert [a.outcome for a in status(daemon, request).attempts] == ["connected"]


def test_active_customer_not_answering_frees_the_agent_and_counts(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    fakeswitch.add_outside(CUSTOMER, busy=True)
    daemon = start(fakeswitch, start_daemon, "active", max_attempts=3)
    request = store_request(daemon, strategy="active")
    eventually(lambda: status(daemon, request).attempts, timeout=15, what="an attempt")
    assert status(daemon, request).attempts[0].outcome == "busy"
    eventually(lambda: daemon.control.agents.require("alice").state.activity == "idle",
               what="alice free again")  # fmt: skip


def test_passive_agent_feature_code_dials_due_requests_until_one_answers(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001")
    fakeswitch.add_outside("+3612345600", ring_forever=True)
    fakeswitch.add_outside(CUSTOMER, answer_after=1, hangup_after=30)
    daemon = start(fakeswitch, start_daemon, "passive", customer_ring_time=10)
    t0 = daemon.now()
    first = store_request(daemon, "+3612345600", "passive", at=t0 - 10)  # older: dialled first
    second = store_request(daemon, CUSTOMER, "passive", at=t0)
    code = fakeswitch.phone_call("1001", "*25")
    eventually(lambda: bridged(fakeswitch, code), timeout=20, what="alice bridged to a customer")
    # The daemon writes "done" once it handles FreeSWITCH's CHANNEL_BRIDGE, which may come
    # after the switch's own trace shows the bridge: wait for the state, do not race it.
    eventually(lambda: status(daemon, second).status == "done", what="second request done")
    assert [a.outcome for a in status(daemon, first).attempts] == ["no_answer"]


def test_nothing_is_dialled_outside_business_hours(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001")
    fakeswitch.add_outside(CUSTOMER, answer_after=1, digits=["1"])
    local = dt.datetime.now(ZoneInfo("Europe/Budapest"))
    start_at = (local + dt.timedelta(hours=6)).strftime("%H:00")
    end_at = (local + dt.timedelta(hours=7)).strftime("%H:00")
    if start_at >= end_at:  # the window would cross midnight: use the morning instead
        start_at, end_at = "03:00", "04:00"
    daemon = start(fakeswitch, start_daemon, "customer_first",
                   hours=[f"daily {start_at}-{end_at}"])  # fmt: skip
    request = store_request(daemon)
    fakeswitch.place_call(
        "+3699999999", "Other", destination="ccd_queue_sales", hangup_after=3
    )  # fmt: skip  (something else happening meanwhile)
    eventually(lambda: fakeswitch.trace.of("ring", party="1001"), what="the other call")
    assert not fakeswitch.trace.of("ring", party=CUSTOMER)
    assert status(daemon, request).status == "pending"


def test_two_daemons_dial_each_of_200_requests_exactly_once(fakeswitch, start_daemon):
    for i in range(20):
        fakeswitch.add_phone(f"{1100 + i}", answer_after=1)
    numbers = [f"+361555{i:04d}" for i in range(200)]
    for number in numbers:
        fakeswitch.add_outside(number, answer_after=1, digits=["2"])  # each declines
    agents = {f"agent{i}": {"extension": f"{1100 + i}", "tags": ["sales"]} for i in range(20)}
    queues = {**QUEUES, "sales": {"tags": ["sales"], "overflow_time": 0,
                                  "callback_strategy": "customer_first"}}  # fmt: skip
    section = {"business_hours": [], "min_interval": 60}
    daemons = [
        start_daemon(
            fakeswitch, agents=agents, queues=queues, callback=section, daemon={"node_id": node}
        )
        for node in ("a", "b")
    ]
    login(daemons[0], *agents)
    t0 = daemons[0].now()
    requests = [store_request(daemons[0], n, at=t0 - 1000 + i) for i, n in enumerate(numbers)]
    eventually(
        lambda: all(status(daemons[0], r).status == "declined" for r in requests),
        timeout=60,
        what="every request worked",
    )
    dialled = [e["party"] for e in fakeswitch.trace.of("ring") if e["party"] in set(numbers)]
    assert sorted(dialled) == sorted(numbers)  # each exactly once
    by = {a.agent for r in requests for a in status(daemons[0], r).attempts}
    assert by == {None}  # customer-first: no agent bothered


def test_a_daemon_dying_mid_attempt_leaves_the_customer_to_the_other(fakeswitch, start_daemon):
    import gevent

    fakeswitch.add_phone("1001", answer_after=1, hangup_after=5)
    fakeswitch.add_outside(CUSTOMER, answer_after=5, digits=["1"], hangup_after=60)
    queues = {**QUEUES, "sales": {"tags": ["sales"], "overflow_time": 0,
                                  "callback_strategy": "customer_first"}}  # fmt: skip
    section = {"business_hours": [], "lease_time": 20}
    first = start_daemon(fakeswitch, agents=AGENTS, queues=queues, callback=section,
                         daemon={"node_id": "a"})  # fmt: skip
    login(first, "alice")
    request = store_request(first)
    eventually(lambda: fakeswitch.trace.of("ring", party=CUSTOMER), what="a dials")
    gevent.killall(first._greenlets)  # daemon a dies while the customer's phone rings
    first.esl.stop()
    second = start_daemon(fakeswitch, agents=AGENTS, queues=queues, callback=section,
                          daemon={"node_id": "b"})  # fmt: skip
    leg = eventually(lambda: [e["uuid"] for e in fakeswitch.trace.of("answer", party=CUSTOMER)],
                     what="customer answers a's call")[0]  # fmt: skip
    eventually(lambda: bridged(fakeswitch, leg), timeout=20, what="b finishes the request")
    assert len(fakeswitch.trace.of("ring", party=CUSTOMER)) == 1  # not dialled twice
    assert status(second, request).status == "done"


def test_callback_outcomes_are_coded_and_kept_in_the_contact_history(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    fakeswitch.add_outside(CUSTOMER, busy=True)
    daemon = start(fakeswitch, start_daemon, "customer_first", max_attempts=1)
    request = store_request(daemon)
    eventually(lambda: status(daemon, request).status == "unreached", what="one busy attempt")
    leg = status(daemon, request).attempts[0]
    history = daemon.control.customers.history(CUSTOMER)
    assert history and history[0]["codes"] == ["busy"] and leg.outcome == "busy"


def test_a_sigkilled_daemon_process_mid_attempt_leaves_the_request_to_the_other(
    fakeswitch, start_daemon, redis_url, tmp_path
):
    """A real `ccd run` process, killed with SIGKILL while the customer's phone rings."""
    import os
    import signal
    import subprocess
    import sys

    fakeswitch.add_phone("1001", answer_after=1, hangup_after=5)
    fakeswitch.add_outside(CUSTOMER, answer_after=8, digits=["1"], hangup_after=60)
    host, port = fakeswitch.address
    scale = fakeswitch.clock.time_scale
    config = tmp_path / "ccd.toml"
    config.write_text(
        f'[esl]\nhost = "{host}"\nport = {port}\n[http]\nport = 0\n'
        f'[daemon]\nnode_id = "doomed"\ntime_scale = {scale}\n[voicemail]\nboxes = []\n'
        "[callback]\nbusiness_hours = []\nlease_time = 20\n"
        '[queues.sales]\ntags = ["sales"]\noverflow_time = 0\n'
        'callback_strategy = "customer_first"\n'
        '[agents.alice]\nextension = "1001"\ntags = ["sales"]\n'
    )
    queues = {**QUEUES, "sales": {"tags": ["sales"], "overflow_time": 0,
                                  "callback_strategy": "customer_first"}}  # fmt: skip
    section = {"business_hours": [], "lease_time": 20}
    doomed = subprocess.Popen(
        [sys.executable, "-m", "ccd.cli", "run", "--config", str(config), "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "CCD_ESL_PASSWORD": "ClueCon", "CCD_REDIS_URL": redis_url},
    )  # fmt: skip
    try:
        # Alice's state is in Redis (the process synced the config agents); log her in.
        from ccd.core import presence
        from ccd.store.agent import AgentRepository
        from ccd.store.redis_store import Store, connect_redis

        client = connect_redis(redis_url)
        repo = AgentRepository(Store.create(client))
        eventually(lambda: repo.get("alice") is not None and repo.get("alice").state.registered,
                   timeout=30, what="the process is up and synced")  # fmt: skip
        repo.transition("alice", lambda s: presence.set_login(s, "login", 0.0))
        store = CallbackStore(Store.create(client))
        request = new_request(
            uuid.uuid4().hex,
            CUSTOMER,
            "sales",
            created_at=0.0,
            order_key=queue_order_key(0, 0.0),
            caller_uuid=str(uuid.uuid4()),
            strategy="customer_first",
        )  # fmt: skip  (created "long ago": due for any daemon's clock)
        store.create(request, None)
        eventually(lambda: fakeswitch.trace.of("ring", party=CUSTOMER), timeout=30,
                   what="the process dials the customer")  # fmt: skip
        doomed.send_signal(signal.SIGKILL)  # no goodbye, leases left to expire
        doomed.wait(timeout=10)
        survivor = start_daemon(fakeswitch, agents=AGENTS, queues=queues, callback=section,
                                daemon={"node_id": "survivor"})  # fmt: skip
        leg = eventually(lambda: [e["uuid"] for e in fakeswitch.trace.of("answer", party=CUSTOMER)],
                         timeout=20, what="the customer answers")[0]  # fmt: skip
        eventually(lambda: bridged(fakeswitch, leg), timeout=30, what="survivor finishes it")
        assert len(fakeswitch.trace.of("ring", party=CUSTOMER)) == 1  # never dialled twice
        assert status(survivor, request).status == "done"
        client.close()
    finally:
        if doomed.poll() is None:
            doomed.kill()


def test_an_attempt_lost_with_the_freeswitch_connection_is_given_back_not_counted(
    fakeswitch, start_daemon
):
    fakeswitch.add_phone("1001", answer_after=1)
    fakeswitch.add_outside(CUSTOMER, ring_forever=True)
    daemon = start(fakeswitch, start_daemon, "customer_first", customer_ring_time=200)
    request = store_request(daemon)
    eventually(lambda: fakeswitch.trace.of("ring", party=CUSTOMER), what="dialling")
    fakeswitch.stop_esl()  # the originate's result can no longer arrive
    back = eventually(lambda: (r := status(daemon, request)).attempts and r,
                      what="the attempt given back")  # fmt: skip
    assert [a.outcome for a in back.attempts] == ["aborted"]  # ours, not the customer's
    fakeswitch.start_esl()
    eventually(lambda: len(fakeswitch.trace.of("ring", party=CUSTOMER)) == 2, timeout=15,
               what="dialled again once FreeSWITCH is back")  # fmt: skip
