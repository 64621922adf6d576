"""Redis that lost its data (issue 9, defect 6): detected, said loudly, rebuilt from what the
daemon holds; and the Redis configuration the project ships persists and never evicts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from ccd.core import presence
from tests.support.daemon_fixtures import agents_of, bridged, calls_of, eventually
from tests.support.redis_fixtures import find_redis_server, free_port
from tests.test_routing_e2e import SALES, login

CONF = Path(__file__).resolve().parents[1] / "scripts" / "redis-ccd.conf"


def test_shipped_redis_configuration_loads_and_keeps_every_write(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [find_redis_server(), str(CONF), "--port", str(port), "--dir", str(tmp_path),
         "--daemonize", "no", "--logfile", str(tmp_path / "redis.log")],
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, socket_timeout=2)
        eventually(lambda: _pings(client), what="redis with the shipped configuration")
        info = client.info("persistence")
        assert info["aof_enabled"] == 1
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def test_redis_that_lost_its_data_is_reported_and_waiting_callers_keep_waiting(
    fakeswitch, start_daemon, make_redis_server
):
    fakeswitch.add_phone("1001", answer_after=1)
    # alice's own call keeps her busy for 300 s of switch time (6 real seconds).
    fakeswitch.add_outside("+3619998888", answer_after=1, hangup_after=300)
    server = make_redis_server()  # no persistence: a restart loses every key
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        routing={"wrapup_time": 0},
        redis={"url": server.url, "socket_timeout": 0.5},
    )
    login(daemon, "alice")
    fakeswitch.phone_call("1001", "+3619998888")  # alice is busy: callers wait
    eventually(
        lambda: agents_of(daemon).require("alice").state.activity is presence.Activity.ONCALL,
        what="alice on a personal call",
    )
    callers = [
        fakeswitch.place_call(f"+36123456{i:02d}", f"Waiting {i}", digits=[SALES]) for i in range(2)
    ]
    eventually(lambda: calls_of(daemon).waiting("sales") == callers, what="both waiting")
    server.restart()  # every key gone: agents, calls, queues, leases
    eventually(
        lambda: daemon.metrics.counters.get("redis_data_lost_total", 0) >= 1,
        timeout=15,
        what="the loss noticed",
    )
    # What the daemon held is back: alice (logged in, on her call) and the callers' places.
    eventually(lambda: calls_of(daemon).waiting("sales") == callers, what="places restored")
    alice = agents_of(daemon).require("alice")
    assert alice.state.login is presence.Login.READY
    assert not any(fakeswitch.trace.of("voicemail", uuid=c) for c in callers)
    # Her call ends: the first caller, in the place they had, gets her.
    eventually(lambda: bridged(fakeswitch, callers[0]), timeout=20, what="first caller served")
    assert not bridged(fakeswitch, callers[1])


def test_after_a_loss_the_agents_go_back_a_slice_a_call_and_the_rest_with_the_resync(
    fakeswitch, start_daemon, make_redis_server, monkeypatch
):
    """Writing back 20,000 agents was one script call (Redis held 930 ms for every daemon on
    it) and the statistics' seed one more step (790 ms of no call moving): now a script call
    a slice, and the configured agents and the statistics come back with the resync."""
    from ccd.engine import control

    monkeypatch.setattr(control, "RESTORE_SLICE", 25)
    server = make_redis_server()
    configured = {f"a{n:03d}": {"extension": str(2000 + n), "tags": ["sales"]} for n in range(90)}
    daemon = start_daemon(fakeswitch, agents=configured, redis={"url": server.url})
    agents = daemon.control.agents
    eventually(lambda: len(agents.known()) == 90, what="the daemon holds every agent")
    written: list[int] = []
    restore = agents.restore_op

    def counted(batch, some, now):
        some = list(some)
        written.append(len(some))
        restore(batch, some, now)

    monkeypatch.setattr(agents, "restore_op", counted)
    server.restart()
    eventually(lambda: daemon.metrics.counters.get("redis_data_lost_total", 0) >= 1,
               timeout=15, what="the loss noticed")  # fmt: skip
    assert written == [25, 25, 25, 15]
    client, centre = daemon.store.client, daemon.store.keys.stats_agents()
    eventually(lambda: sum(int(v) for v in client.hvals(centre)) == 90, what="statistics back")
    assert all(agents.get(a) is not None for a in configured)
