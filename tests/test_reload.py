"""Reload without dropping calls (issue 12, R-OPS): the file read again on the dispatcher.

End to end with the fake FreeSWITCH and real Redis: a caller waiting while the ring time
changes and a queue and agents are added keeps their place, the offer ringing at the reload
keeps its old ring time, the next offers take the new one, and the call is answered. A bad
file keeps the running configuration and says why; restart-only settings are refused by name
while the rest applies.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from structlog.testing import capture_logs

from ccd.config import Config, load_config
from ccd.config.reload import plan_reload
from ccd.core.callback import new_request
from ccd.daemon import Daemon, build_call_control
from ccd.store.callback import CallbackStore
from tests.support.daemon_fixtures import (
    HTTP_TOKEN,
    QUEUES,
    agents_of,
    bridged,
    calls_of,
    eventually,
)
from tests.test_routing_e2e import login


def toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for test configurations (tables of scalars and lists)."""
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            scalars.append(f"{key} = {_value(value)}")
    out = ""
    if scalars:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(scalars) + "\n\n"
    for key, value in tables:
        out += toml(value, f"{prefix}.{key}" if prefix else key)
    return out


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)


def base_config(switch, redis_url: str, **sections: Any) -> dict[str, Any]:
    host, port = switch.address
    data: dict[str, Any] = {
        "esl": {"host": host, "port": port, "password": "ClueCon", "backoff_min": 0.05,
                "backoff_max": 0.5},
        "redis": {"url": redis_url},
        "http": {"port": 0, "token": HTTP_TOKEN},
        "daemon": {"time_scale": switch.clock.time_scale, "node_id": "reload-node"},
        "voicemail": {"boxes": []},
        "routing": {"wrapup_time": 0},
        "queues": {**QUEUES, "sales": {"tags": ["sales"], "overflow_time": 0, "ring_time": 40}},
        "agents": {"alice": {"extension": "1001", "tags": ["sales"]}},
    }  # fmt: skip
    data.update(sections)
    return data


@pytest.fixture
def run_daemon(fakeswitch, redis_url, tmp_path):
    started: list[Daemon] = []
    path = tmp_path / "ccd.toml"

    def run(data: dict[str, Any]) -> Daemon:
        path.write_text(toml(data))
        daemon = Daemon(
            load_config(path, env={}),
            call_control_factory=build_call_control,
            clock=fakeswitch.clock.now,
            config_path=path,
        )
        daemon.start()
        started.append(daemon)
        eventually(lambda: daemon.synced, what="daemon connected and resynchronised")
        return daemon

    run.path = path  # type: ignore[attr-defined]
    yield run
    for daemon in started:
        daemon.stop()


def ring_times(switch) -> list[tuple[str, float]]:
    """(extension, switch time) of every desk phone rung, in order."""
    return [(e["party"], e["t"]) for e in switch.trace.of("ring") if e.get("leg") == "phone"]


def test_a_waiting_caller_keeps_their_place_through_a_reload_and_is_answered(
    fakeswitch, redis_url, run_daemon
):
    fakeswitch.add_phone("1001", ring_forever=True)  # alice: configured at start
    fakeswitch.add_phone("1003", ring_forever=True)  # carol: added by the reload
    fakeswitch.add_phone("1002", answer_after=1)  # bob: added by the reload, answers
    data = base_config(fakeswitch, redis_url)
    daemon = run_daemon(data)
    login(daemon, "alice")
    callbacks = CallbackStore(daemon.store)
    waiting_request = callbacks.create(
        new_request(
            "cb1",
            "+3612345600",
            "sales",
            created_at=0.0,
            order_key=1.0,
            caller_uuid="x",
            strategy="passive",
        )
    )
    caller = fakeswitch.place_call("+3612345678", "Patient", destination="ccd_queue_sales")
    eventually(lambda: [e for e, _ in ring_times(fakeswitch)] == ["1001"], what="alice rings")

    # The new file: a shorter ring, a new queue, two new agents.
    data["queues"] = {**data["queues"], "sales": {**data["queues"]["sales"], "ring_time": 5},
                      "vip": {"tags": ["vip"]}}  # fmt: skip
    data["agents"] = {
        **data["agents"],
        "carol": {"extension": "1003", "tags": ["sales"]},
        "bob": {"extension": "1002", "tags": ["sales", "vip"]},  # more tags: tried last
    }
    run_daemon.path.write_text(toml(data))
    outcome = daemon.reload()
    assert outcome["ok"] and outcome["problems"] == [] and outcome["restart_needed"] == []
    assert "queues added: vip" in outcome["changes"]
    assert "agents added: bob, carol" in outcome["changes"]
    assert "vip" in daemon.config.queues and daemon.config.queues["sales"].ring_time == 5
    assert calls_of(daemon).waiting("sales") == [caller]  # their place, right after
    assert caller in fakeswitch.channels

    eventually(lambda: agents_of(daemon).get("bob") and agents_of(daemon).get("carol"),
               what="the new agents exist")  # fmt: skip
    eventually(lambda: agents_of(daemon).require("bob").state.registered, what="bob's phone")
    login(daemon, "carol", "bob")
    eventually(lambda: bridged(fakeswitch, caller), timeout=20, what="answered by bob")
    rung = ring_times(fakeswitch)
    assert [ext for ext, _ in rung] == ["1001", "1003", "1002"]
    (_, alice_at), (_, carol_at), (_, bob_at) = rung
    assert 39.0 <= carol_at - alice_at <= 42.0  # the offer ringing at the reload: 40 s
    assert 4.5 <= bob_at - carol_at <= 7.0  # the next offer: the new 5 s
    assert callbacks.get(waiting_request.id).status == "pending"  # no callback dropped


def test_an_invalid_file_keeps_the_running_configuration_and_says_why(
    fakeswitch, redis_url, run_daemon
):
    daemon = run_daemon(base_config(fakeswitch, redis_url))
    run_daemon.path.write_text(
        '[routing]\nring_time = "abc"\n[esl]\npasword = "x"\n[queues.sales]\nring_time = -1\n'
    )
    with capture_logs() as logs:
        outcome = daemon.reload()
    assert not outcome["ok"]
    problems = outcome["problems"]
    assert any(p.startswith("routing.ring_time:") for p in problems)
    assert any(p.startswith("esl.pasword:") for p in problems)
    assert any(p.startswith("queues.sales.ring_time:") for p in problems)
    [failed] = [e for e in logs if e["event"] == "config.reload_failed"]
    assert failed["problems"] == problems and failed["log_level"] == "error"
    assert daemon.config.queues["sales"].ring_time == 40  # still the running one
    assert (
        daemon.metrics.registry.get_sample_value("ccd_config_reloads_total", {"result": "failed"})
        == 1
    )


def test_restart_only_settings_are_refused_by_name_and_the_rest_applies(
    fakeswitch, redis_url, run_daemon
):
    data = base_config(fakeswitch, redis_url)
    daemon = run_daemon(data)
    data["esl"] = {**data["esl"], "port": 1}
    data["redis"] = {"url": redis_url.replace("/0", "/5")}
    data["daemon"] = {**data["daemon"], "node_id": "renamed"}
    data["routing"] = {"wrapup_time": 7}
    run_daemon.path.write_text(toml(data))
    with capture_logs() as logs:
        outcome = daemon.reload()
    assert outcome["ok"]
    needed = outcome["restart_needed"]
    assert any(line.startswith("esl.port: 1 needs a restart") for line in needed)
    assert any(line.startswith("daemon.node_id:") for line in needed)
    assert "redis.url: changed; needs a restart (the running value stays; values hidden)" in needed
    assert redis_url not in str(outcome) and redis_url not in str(logs)
    assert daemon.config.esl.port == fakeswitch.address[1] and daemon.esl.connected
    assert daemon.config.routing.wrapup_time == 7  # the rest applied
    assert daemon.control.io.rules.wrapup_time == 7  # type: ignore[union-attr]
    assert len([e for e in logs if e["event"] == "config.restart_needed"]) == 3


def test_plan_reload_keeps_restart_only_settings_and_lists_the_changes():
    running = Config.from_dict({"queues": {"sales": {"tags": ["sales"]}}}, env={})
    candidate = Config.from_dict(
        {
            "http": {"port": 9000},
            "esl": {"password": "n3w-s3cret"},
            "routing": {"ring_time": 20},
            "queues": {"sales": {"tags": ["sales", "vip"]}, "support": {}},
        },
        env={},
    )
    plan = plan_reload(running, candidate)
    assert plan.config.http == running.http and plan.config.esl == running.esl
    assert plan.config.routing.ring_time == 20
    assert plan.config.queues == candidate.queues
    assert "http.port: 9000 needs a restart; running with 8086" in plan.restart_needed
    assert "esl.password: changed; needs a restart (the running value stays; values hidden)" in (
        plan.restart_needed
    )
    assert "n3w-s3cret" not in str(plan.restart_needed) + str(plan.changes)
    assert plan.changes[:2] == ("queues added: support", "queues changed: sales")
    assert "routing.ring_time: 20.0" in plan.changes
    same = plan_reload(running, dataclasses.replace(running))
    assert same.restart_needed == () and same.changes == ()
