"""The daemon as operators run it: health, readiness, FreeSWITCH going away, restarts.

Over real sockets: the fake FreeSWITCH's event socket, a real redis-server, the
daemon's loopback HTTP port; `ccd run` as a subprocess for signals and config errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ccd.core import presence
from ccd.store.agent import AgentRepository
from ccd.store.redis_store import Store, connect_redis
from tests.support.daemon_fixtures import AUTH, agents_of, bridged, calls_of, eventually
from tests.test_routing_e2e import SALES, login, offers


def http_get(daemon_or_port, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET with the tests' token (AUTH) unless other ``headers`` are given."""
    port = daemon_or_port if isinstance(daemon_or_port, int) else daemon_or_port.http.address[1]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers=AUTH if headers is None else headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_and_readiness_follow_freeswitch(fakeswitch, start_daemon):
    daemon = start_daemon(fakeswitch)
    assert http_get(daemon, "/healthz") == (200, b"ok\n")
    status, body = http_get(daemon, "/readyz")
    assert status == 200 and json.loads(body) == {"esl": True, "redis": True, "synced": True}
    fakeswitch.stop_esl()
    eventually(lambda: http_get(daemon, "/readyz")[0] == 503, what="not ready without ESL")
    assert json.loads(http_get(daemon, "/readyz")[1])["esl"] is False
    assert http_get(daemon, "/healthz")[0] == 200  # alive all the same
    fakeswitch.start_esl()
    eventually(lambda: http_get(daemon, "/readyz")[0] == 200, what="ready again")


def test_freeswitch_restart_resubscribes_resyncs_and_routes_again(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    login(daemon, "alice")
    fakeswitch.stop_esl()
    eventually(lambda: not daemon.esl.connected, what="disconnect noticed")
    fakeswitch.start_esl()
    eventually(lambda: daemon.metrics.counters.get("resyncs_total") == 2, what="resynced")
    # Subscribed again: a call is routed exactly as before the outage.
    caller = fakeswitch.place_call("+3612345678", "After", digits=[SALES])
    eventually(
        lambda: bridged(fakeswitch, caller),
        what="routed after reconnect",
    )


def test_metrics_and_call_view(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    login(daemon, "alice")
    caller = fakeswitch.place_call("+3612345678", "Doe, John", digits=[SALES])
    view = eventually(
        lambda: (
            (v := json.loads(http_get(daemon, f"/calls/{caller}")[1])).get("status") == "bridged"
            and v
        ),
        what="the daemon saw the bridge",
    )
    assert view["queue"] == "sales" and view["caller_name"] == "Doe, John"
    assert view["agent"] == "alice" and view["status"] == "bridged"
    assert http_get(daemon, "/calls/00000000-0000-0000-0000-000000000000")[0] == 404
    assert http_get(daemon, "/calls/not%20a%20uuid")[0] == 404
    status, text = http_get(daemon, "/metrics")
    assert status == 200 and b'ccd_facts_total{name="call.bridged"} 1' in text


def test_daemon_restarted_mid_hunt_resumes_without_stuck_agent(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", ring_forever=True)
    fakeswitch.add_phone("1002", answer_after=1)
    agents = {
        "alice": {"extension": "1001", "tags": ["sales"]},
        "bob": {"extension": "1002", "tags": ["sales", "support"]},
    }
    first = start_daemon(fakeswitch, agents=agents, routing={"wrapup_time": 0})
    login(first, "alice", "bob")
    caller = fakeswitch.place_call("+3612345678", "Patient", digits=[SALES])
    eventually(lambda: offers(fakeswitch) == ["1001"], what="alice rings")
    first.stop()  # mid-hunt: alice's phone is ringing
    second = start_daemon(fakeswitch, agents=agents, routing={"wrapup_time": 0})
    eventually(
        lambda: bridged(fakeswitch, caller),
        what="the restarted daemon finishes the hunt",
    )
    assert offers(fakeswitch) == ["1001", "1002"]
    alice = eventually(
        lambda: (
            (a := agents_of(second).require("alice")).state.activity is presence.Activity.IDLE and a
        ),
        what="alice not stuck ringing",
    )
    assert alice.call is None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(port: int) -> bool:
    try:
        return http_get(port, "/readyz")[0] == 200
    except OSError:
        return False


def _run_ccd(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ccd.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        **kw,
    )


@contextlib.contextmanager
def ccd_process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``ccd <args>`` as a subprocess (:func:`_run_ccd`), killed if it still runs at the end."""
    proc = _run_ccd(args, env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def terminate(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """SIGTERM, then what the process wrote to stdout and stderr once it exited."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=15)


def test_ccd_run_stops_cleanly_on_sigterm_and_never_logs_secrets(
    fakeswitch, redis_url, tmp_path: Path
):
    host, port = fakeswitch.address
    http_port = _free_port()
    config = tmp_path / "ccd.toml"
    config.write_text(
        f'[esl]\nhost = "{host}"\nport = {port}\n[http]\nport = {http_port}\n'
        "[voicemail]\nboxes = []\n"
    )
    with ccd_process(
        ["run", "--config", str(config), "--log-format", "json"],
        env={"CCD_ESL_PASSWORD": "ClueCon", "CCD_REDIS_URL": redis_url},
    ) as proc:
        eventually(lambda: _ready(http_port), timeout=30, what="daemon ready")
        out, err = terminate(proc)
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line)["event"] for line in out.decode().splitlines() if line.strip()]
    assert "daemon.resynced" in events and events[-1] == "daemon.stopped"
    assert b"ClueCon" not in out + err


def test_config_error_names_the_key_and_stops_the_start(tmp_path: Path):
    config = tmp_path / "ccd.toml"
    config.write_text('[routing]\nring_time = "abc"\n[esl]\npasword = "x"\n')
    proc = _run_ccd(["run", "--config", str(config)])
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 78  # EX_CONFIG: the unit's RestartPreventExitStatus
    text = err.decode()
    assert "routing.ring_time" in text and "esl.pasword" in text and "password" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 2  # one per problem


def test_wrong_esl_password_is_a_clear_error_not_a_retry_storm(fakeswitch, redis_url, tmp_path):
    host, port = fakeswitch.address
    config = tmp_path / "ccd.toml"
    config.write_text(f'[esl]\nhost = "{host}"\nport = {port}\n[http]\nport = 0\n')
    with ccd_process(
        ["run", "--config", str(config), "--log-format", "json"],
        env={"CCD_ESL_PASSWORD": "WrongSecret", "CCD_REDIS_URL": redis_url},
    ) as proc:
        lines = []
        eventually(
            lambda: lines.append(proc.stdout.readline()) or b"esl.auth_failed" in lines[-1],
            what="auth failure logged",
        )
        out, err = terminate(proc)
    text = b"".join(lines) + out + err
    assert b"WrongSecret" not in text
    assert text.count(b"esl.auth_failed") == 1


def test_redis_outage_caller_hears_music_and_is_routed_when_redis_returns(
    fakeswitch, start_daemon, make_redis_server
):
    fakeswitch.add_phone("1001", answer_after=1)
    server = make_redis_server(persistence=True)  # production Redis keeps its data
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        redis={"url": server.url, "socket_timeout": 0.5},
    )
    login(daemon, "alice")
    server.stop()
    caller = fakeswitch.place_call("+3612345678", "During outage", digits=[SALES])
    eventually(
        lambda: (
            [e for e in fakeswitch.trace.of("playback", uuid=caller) if "moh" in e["file"]]
            or fakeswitch.trace.of("broadcast", uuid=caller)
        ),
        what="music while Redis is down",
    )
    assert http_get(daemon, "/readyz")[0] == 503
    server.start()
    eventually(
        lambda: bridged(fakeswitch, caller),
        timeout=20,
        what="routed once Redis is back",
    )
    assert daemon.metrics.counters.get("redis_errors_total", 0) >= 1


def test_slow_crm_webhook_gets_the_offer_and_never_holds_up_routing(fakeswitch, start_daemon):
    import gevent
    from gevent.event import Event
    from gevent.pywsgi import WSGIServer

    received: list[dict] = []
    release = Event()

    def crm(environ, start_response):
        received.append(json.loads(environ["wsgi.input"].read()))
        release.wait(10)  # a CRM that hangs until the test lets it go
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = WSGIServer(("127.0.0.1", 0), crm, log=None)
    server.start()
    try:
        fakeswitch.add_phone("1001", answer_after=1)
        daemon = start_daemon(
            fakeswitch,
            agents={"alice": {"extension": "1001", "tags": ["sales"]}},
            routing={
                "webhook_url": f"http://127.0.0.1:{server.server_port}/offer",
                "webhook_timeout": 10,
            },
        )
        login(daemon, "alice")
        caller = fakeswitch.place_call("+3612345678", "Doe, John", digits=[SALES])
        eventually(lambda: received, what="offer posted")
        # The CRM has not answered yet, and the call is bridged all the same.
        eventually(
            lambda: bridged(fakeswitch, caller),
            what="bridged while the webhook hangs",
        )
        assert not release.is_set()
        offer = received[0]
        assert offer["event"] == "agent.offered"
        assert offer["call"]["uuid"] == caller and offer["call"]["queue"] == "sales"
        assert offer["agent"] == {"id": "alice", "ext": "1001", "tags": ["sales"]}
        assert offer["display_name"] == "Doe, John"
    finally:
        release.set()
        gevent.sleep(0)
        server.stop()


def test_callers_parked_while_no_daemon_listened_are_adopted(fakeswitch, start_daemon, redis_url):
    # Alice logged in before the daemon went away: her state is in Redis.
    client = connect_redis(redis_url)
    repo = AgentRepository(Store.create(client))
    repo.create("alice", "1001", ["sales"], now=fakeswitch.clock.now())
    repo.transition("alice", lambda s: presence.set_login(s, "login", fakeswitch.clock.now()))
    client.close()
    fakeswitch.add_phone("1001", answer_after=1)
    caller = fakeswitch.place_call("+3612345678", "Early bird", digits=[SALES])
    fakeswitch.wait_for(lambda: fakeswitch.channels[caller].application == "park", timeout=5)
    fakeswitch.add_phone("1002")
    code_call = fakeswitch.phone_call("1002", "*21")  # bob logs in while nobody listens
    fakeswitch.wait_for(lambda: fakeswitch.channels[code_call].application == "park", timeout=5)
    daemon = start_daemon(
        fakeswitch,
        agents={
            "alice": {"extension": "1001", "tags": ["sales"]},
            "bob": {"extension": "1002", "tags": ["support"]},
        },
    )
    eventually(
        lambda: bridged(fakeswitch, caller),
        what="the early caller is routed",
    )
    eventually(
        lambda: agents_of(daemon).require("bob").state.login is presence.Login.READY,
        what="bob's feature code is answered",
    )
    assert fakeswitch.trace.of("playback", uuid=code_call)


def test_a_crashed_daemons_caller_is_taken_over_by_the_other_daemon(
    fakeswitch, start_daemon, monkeypatch
):
    import gevent

    fakeswitch.add_phone("1001", ring_forever=True)
    fakeswitch.add_phone("1002", answer_after=1)
    agents = {
        "alice": {"extension": "1001", "tags": ["sales"]},
        "bob": {"extension": "1002", "tags": ["sales", "support"]},
    }
    routing = {"wrapup_time": 0, "resync_interval": 5}
    first = start_daemon(fakeswitch, agents=agents, routing=routing, daemon={"node_id": "a"})
    login(first, "alice", "bob")
    caller = fakeswitch.place_call("+3612345678", "Patient", digits=[SALES])
    eventually(lambda: offers(fakeswitch) == ["1001"], what="alice rings (daemon a)")
    # Daemon a dies without a word: its calls are its own until its heartbeat expires.
    gevent.killall(first._greenlets)
    first.esl.stop()
    second = start_daemon(fakeswitch, agents=agents, routing=routing, daemon={"node_id": "b"})
    eventually(lambda: bridged(fakeswitch, caller), timeout=20, what="daemon b took over")
    assert offers(fakeswitch) == ["1001", "1002"]
    assert calls_of(second).get(caller).node == "b"


#: Alice's phone answers 0.8 s after it rings; her ring time is far beyond the test, so only
#: a resync can bridge her in time.
_SLOW_ALICE = {"alice": {"extension": "1001", "tags": ["sales"]}}
_LONG_RING = {"ring_time": 2000, "wrapup_time": 0}


def _answered_unheard(fakeswitch, daemon, cut) -> str:
    """A caller for alice; ``cut()`` once her phone rings, so her answer (the originate's
    +OK, her leg's CHANNEL_PARK) reaches nobody. The caller's uuid, once her leg is parked."""
    login(daemon, "alice")
    caller = fakeswitch.place_call("+3612345678", "Unheard", digits=[SALES])
    eventually(lambda: offers(fakeswitch) == ["1001"], what="alice rings")
    cut()
    parked = lambda: any(  # noqa: E731
        ch.application == "park" and "1001" in ch.name for ch in list(fakeswitch.channels.values())
    )
    assert fakeswitch.wait_for(parked, timeout=5), "alice's leg parked"
    assert not bridged(fakeswitch, caller)
    return caller


def test_agent_answering_while_the_event_socket_is_down_is_bridged_after_it(
    fakeswitch, start_daemon
):
    fakeswitch.add_phone("1001", answer_after=40)
    daemon = start_daemon(fakeswitch, agents=_SLOW_ALICE, routing=_LONG_RING)
    caller = _answered_unheard(fakeswitch, daemon, fakeswitch.stop_esl)
    fakeswitch.start_esl()
    eventually(lambda: bridged(fakeswitch, caller), timeout=6, what="bridged after the outage")
    eventually(
        lambda: calls_of(daemon).get(caller) and calls_of(daemon).get(caller).status == "bridged",
        what="the call record says bridged",
    )


def test_agent_answering_while_no_daemon_runs_is_bridged_by_the_restarted_one(
    fakeswitch, start_daemon
):
    fakeswitch.add_phone("1001", answer_after=40)
    first = start_daemon(fakeswitch, agents=_SLOW_ALICE, routing=_LONG_RING)
    caller = _answered_unheard(fakeswitch, first, first.stop)
    second = start_daemon(fakeswitch, agents=_SLOW_ALICE, routing=_LONG_RING)
    eventually(lambda: bridged(fakeswitch, caller), timeout=6, what="bridged by the new daemon")
    eventually(
        lambda: (
            (a := agents_of(second).require("alice")).call == caller
            and a.state.activity is presence.Activity.ONCALL
        ),
        what="alice on the call",
    )


def test_configured_agents_are_seeded_in_slices_between_events(fakeswitch, start_daemon):
    """Every resync makes sure the configured agents exist; at 20,000 that was 20,000 reads
    in one dispatcher step. Now one read a slice, and only a missing or moved agent written."""
    from ccd.engine.resync import AGENT_SLICE

    configured = {f"a{n:04d}": {"extension": str(2000 + n), "tags": ["sales"]} for n in range(150)}
    daemon = start_daemon(fakeswitch, agents=configured)
    agents = agents_of(daemon)
    assert agents.require("a0149").extension == "2149"
    daemon.store.client.delete(daemon.store.keys.agent("a0007"))  # gone from Redis
    steps = eventually(lambda: list(daemon.control.seeding(daemon.now())), what="seeded")
    assert len(steps) == -(-150 // AGENT_SLICE)  # one step a slice
    assert agents.require("a0007").extension == "2007"  # written again


def test_a_refused_command_is_logged_with_its_channel(fakeswitch, start_daemon):
    """ "uuid_broadcast -ERR invalid uuid" alone tells an operator nothing: which caller?"""
    from structlog.testing import capture_logs

    fakeswitch.add_phone("1001", ring_forever=True)
    daemon = start_daemon(fakeswitch, agents=_SLOW_ALICE, routing=_LONG_RING)
    login(daemon, "alice")
    fakeswitch.api.register("uuid_broadcast", lambda _args: "-ERR invalid uuid\n")
    with capture_logs() as logs:
        caller = fakeswitch.place_call("+3612345678", "Refused", digits=[SALES])
        failed = eventually(
            lambda: [e for e in logs if e["event"] == "esl.command_failed"], what="refused"
        )
    assert failed[0]["command"] == "uuid_broadcast" and failed[0]["reply"] == "-ERR invalid uuid"
    assert failed[0]["uuid"] == caller


def test_the_statistics_are_seeded_a_slice_at_a_time(fakeswitch, start_daemon):
    """At start-up, and after Redis lost its data, every agent's status goes to the
    statistics: in one step that held the dispatcher 448 ms at 20,000 agents. Now a slice a
    step, and the agents-by-status counts come out whole."""
    from ccd.engine.control import STATS_SEED_SLICE
    from ccd.engine.resync import AGENT_SLICE

    configured = {f"a{n:04d}": {"extension": str(2000 + n), "tags": ["sales"]} for n in range(300)}
    daemon = start_daemon(fakeswitch, agents=configured)
    client, centre = daemon.store.client, daemon.store.keys.stats_agents()
    eventually(lambda: sum(int(v) for v in client.hvals(centre)) == 300, what="seeded at start")
    for key in client.scan_iter(daemon.store.keys.stats_agents() + "*"):
        client.delete(key)  # the statistics lost
    for key in client.scan_iter(f"{daemon.config.redis.prefix}stats:agent_now:*"):
        client.delete(key)
    daemon.control._stats_seeded = False
    steps = list(daemon.control.seeding(daemon.now()))
    seeding = len(steps) - -(-300 // AGENT_SLICE)  # SSCAN's batches are about the count
    assert 300 // STATS_SEED_SLICE <= seeding <= 2 * -(-300 // STATS_SEED_SLICE)
    eventually(
        lambda: (
            {k.decode(): int(v) for k, v in client.hgetall(centre).items()} == {"logged_out": 300}
        ),
        what="every agent counted once",
    )


def test_each_slice_of_the_statistics_seed_is_counted_in_its_own_step(fakeswitch, start_daemon):
    """A seed slice's statistics go out with the step that read it. Held for a step that
    wrote something anyway, they piled up to 5,000 and were folded in one step: 60-90 ms
    with no call moving at 20,000 agents (the gevent monitor caught it in the benchmark)."""
    import gevent.event

    from ccd.engine.control import STATS_SEED_SLICE
    from ccd.supervisor import Task

    configured = {f"a{n:04d}": {"extension": str(2000 + n), "tags": ["sales"]} for n in range(100)}
    daemon = start_daemon(fakeswitch, agents=configured)
    client, centre = daemon.store.client, daemon.store.keys.stats_agents()
    eventually(lambda: sum(int(v) for v in client.hvals(centre)) == 100, what="seeded at start")
    for key in [*client.scan_iter(centre + "*"), *client.scan_iter("*stats:agent_now:*")]:
        client.delete(key)  # the statistics lost
    daemon.control._stats_seeded = False
    steps = daemon.control.seeding(daemon.now())

    class OneStep(Task):
        """A seed step as the resync runs it, on the dispatcher: the step, then its flush."""

        def __init__(self) -> None:
            self.counted: gevent.event.AsyncResult = gevent.event.AsyncResult()

        def run(self) -> None:
            more = next(steps, StopIteration) is not StopIteration
            daemon.control.flush()
            self.counted.set((more, sum(int(v) for v in client.hvals(centre))))

    counts = []
    while True:
        step = OneStep()
        daemon.inbox.put(step)
        more, counted = step.counted.get(timeout=5)
        counts.append(counted)
        if not more:
            break
    rises = [b - a for a, b in zip([0, *counts], counts, strict=False) if b > a]
    # SSCAN's batches are about the count asked for, not exactly it.
    assert len(rises) >= 100 // (2 * STATS_SEED_SLICE), counts
    assert max(rises) <= 2 * STATS_SEED_SLICE, counts
    assert counts[-1] == 100


def test_timers_wait_for_the_resync_but_not_for_ever(fakeswitch, start_daemon):
    """After a reconnect the deadlines wait for the resync; one that keeps failing (here
    `show channels` answers an error) must not stop every ring timer of the centre."""
    fakeswitch.add_phone("1001", ring_forever=True)
    fakeswitch.add_phone("1002", answer_after=1)
    agents = {
        "alice": {"extension": "1001", "tags": ["sales"]},
        "bob": {"extension": "1002", "tags": ["sales", "x"]},
    }
    # FreeSWITCH's own originate timeout far beyond the daemon's ring timer (15 s).
    routing = {"wrapup_time": 0, "originate_timeout_margin": 600}
    daemon = start_daemon(fakeswitch, agents=agents, routing=routing)
    login(daemon, "alice", "bob")
    fakeswitch.api.register("show channels", lambda _args: "-ERR broken\n")
    fakeswitch.stop_esl()
    eventually(lambda: not daemon.synced, what="the outage noticed")
    fakeswitch.start_esl()
    eventually(lambda: daemon.esl.connected, what="reconnected")
    caller = fakeswitch.place_call("+3612345678", "Timer", digits=[SALES])
    # alice rings first (fewest tags); only her ring timer sends the call on to bob.
    eventually(lambda: bridged(fakeswitch, caller), what="bob reached after alice's ring time")
    assert offers(fakeswitch) == ["1001", "1002"]
    assert not daemon.synced


def test_a_daemon_builds_the_routing_index_an_older_ccd_left_out(
    fakeswitch, start_daemon, redis_url
):
    from structlog.testing import capture_logs

    from ccd.store.redis_store import connect_redis

    agents = {"bob": {"extension": "1002", "tags": ["sales", "support"]}}
    first = start_daemon(fakeswitch, agents=agents)
    first.stop()
    client = connect_redis(redis_url)
    old = [k for k in client.scan_iter("ccd:agents:*") if b"tagset" in k or b"freeset" in k]
    client.delete(*old)
    with capture_logs() as logs:
        start_daemon(fakeswitch, agents=agents)
    [built] = [e for e in logs if e["event"] == "agents.tagsets_indexed"]
    assert built["agents"] == 1
    assert client.get("ccd:agents:tagsets") == b"1"
    assert client.smembers("ccd:agents:tagset:sales+support") == {b"bob"}
    client.close()
