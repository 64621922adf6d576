"""`make bench`'s code path on a tiny point: it runs to the end and produces figures.

No timing is asserted: only that each figure was measured (the benchmark's
plumbing — processes, /metrics, Redis INFO, /proc — works), that the Redis
round-trip counter counts what it claims on the redis-server in use, and that
the pure helpers compute what the table claims (never a NaN).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from tests.support.redis_fixtures import find_redis_server

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
_spec = importlib.util.spec_from_file_location("ccd_bench", _PATH)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["ccd_bench"] = bench  # dataclasses look their module up while the class is built
_spec.loader.exec_module(bench)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50.0
    assert bench.percentile(values, 99) == 99.0
    assert bench.percentile(values, 100) == 100.0
    assert bench.percentile([3.0], 99) == 3.0


def test_verdict_names_the_cpu_bound_process():
    r = bench.Result(agents=1000, rate=100.0, routed_per_s=60.0, agent_capacity_per_s=400.0)
    r.cpu_pct = {"daemon1": 98.0, "fake": 40.0, "redis": 10.0}
    assert "daemon1 CPU-bound" in bench.verdict(r)
    r.cpu_pct = {"daemon1": 60.0, "fake": 91.0, "redis": 10.0}
    assert "fake CPU-bound" in bench.verdict(r)
    r.routed_per_s = 100.0
    assert bench.verdict(r) == "sustained"
    r.unoffered = 1  # a caller never offered to anyone is not a sustained point
    assert bench.verdict(r) != "sustained"


def test_too_few_agents_is_said_and_judged_against_what_they_can_take():
    r = bench.Result(agents=100, rate=200.0, routed_per_s=39.0, agent_capacity_per_s=38.5)
    r.cpu_pct = {"daemon1": 30.0, "fake": 20.0, "redis": 5.0}
    assert bench.verdict(r) == "sustained (agent-bound)"
    r.routed_per_s = 11.0
    assert bench.verdict(r) == "NOT sustained: fewer agents than the load needs"


def test_agents_cover_every_queue_extension_and_never_the_backlog_queue():
    import random

    rng = random.Random(1)
    tags = [set(bench.agent_tags(i, rng)) for i in range(200)]
    for i, primary in enumerate(bench.PRIMARY_TAGS):
        assert set(primary) <= tags[i]
    assert not any(bench.BACKLOG_TAG in t for t in tags)


def _samples(t0, t1, reads0, reads1):
    start = (t0, {"daemon1": 1.0, "fake": 1.0, "redis": 1.0}, bench.RedisSample(reads0, {}), [{}])
    end = (t1, {"daemon1": 2.0, "fake": 1.5, "redis": 1.1}, bench.RedisSample(reads1, {}), [{}])
    return {"start": start, "end": end}


def test_nothing_routed_gives_no_per_call_figure_and_says_so():
    r = bench.Result(agents=10, rate=50.0)
    data = {"calls": [["u1", 10.5, None, None]], "failures": {}, "backlog_waiting_end": 0,
            "backlog_left": {}}  # fmt: skip
    bench.summarise(r, data, _samples(10.0, 20.0, 100, 600), 0.0, bench.Options())
    for key in ("p50_ms", "p99_ms", "redis_round_trips_per_call", "daemon_cpu_ms_per_call"):
        assert getattr(r, key) is None
    assert "nothing routed" in r.note
    text = json.dumps(r.to_json(), allow_nan=False)  # raises on NaN
    assert "NaN" not in text and "nan" not in bench.table([r], bench.Options())


def test_per_call_figures_are_over_the_window():
    r = bench.Result(agents=100, rate=10.0)
    calls = [[f"u{i}", 10.0 + i, 10.0 + i + 0.002 * (i + 1), 10.6 + i] for i in range(10)]
    data = {"calls": calls, "failures": {}, "backlog_waiting_end": 0, "backlog_left": {}}
    bench.summarise(r, data, _samples(10.0, 20.0, 1000, 1201), 0.0, bench.Options())
    assert r.routed == 10 and r.routed_per_s == 1.0
    assert r.p50_ms == pytest.approx(10.0) and r.max_ms == pytest.approx(20.0)
    assert r.redis_round_trips_per_call == 20.0  # 201 reads less the bench's own INFO
    assert r.daemon_cpu_ms_per_call == pytest.approx(100.0)


def test_json_has_the_keys_runs_are_compared_by():
    keys = {"agents", "rate", "backlog", "routed_per_s", "p50_ms", "p95_ms", "p99_ms",
            "redis_round_trips_per_call", "daemon_cpu_ms_per_call", "rss_mb"}  # fmt: skip
    assert keys <= set(bench.Result(agents=1, rate=1.0).to_json())


def test_commands_of_one_call_are_tagged_and_counted_as_round_trips():
    u, number = "6879885a-d237-476a-9030-df73fea55491", "+3629999999"
    lines = [
        (0.9, "127.0.0.1:1", ["GET", "ccd:call:before"]),
        (1.0, "127.0.0.1:1", ["EVALSHA", "l", "1", f"ccd:lease:call.{u}"]),
        (1.0, "lua", ["SET", f"ccd:lease:call.{u}"]),
        (1.0, "127.0.0.1:1", ["GET", f"ccd:customer:{number}"]),
        (1.1, "127.0.0.1:1", ["EVALSHA", "x", "1", "ccd:agent:a00007", u]),
        (1.1, "lua", ["GET", "ccd:agent:a00007"]),
        (1.2, "127.0.0.1:1", ["ZCARD", "ccd:agents:available"]),  # a tick: background
        (1.3, "127.0.0.1:1", ["MULTI"]),
        (1.3, "127.0.0.1:1", ["SET", f"ccd:call:{u}", "x"]),
        (1.3, "127.0.0.1:1", ["ZREM", "ccd:queue:sales", u]),
        (1.3, "127.0.0.1:1", ["EXEC"]),
        (1.4, "127.0.0.1:1", ["EVALSHA", "z", "1", "ccd:agent:a00007", "idle"]),
        (9.0, "127.0.0.1:1", ["SET", f"ccd:call:{u}", "late"]),
    ]
    picked = bench.commands_of_call(lines, u, number, span=2.0)
    assert [p[3] for p in picked if p[1] != "lua"] == ["call"] * 3 + ["bg"] + ["call"] * 5
    assert bench.round_trips_of(picked, "call") == 5  # the MULTI/EXEC block once
    assert bench.round_trips_of(picked, "bg") == 1
    assert "5 round trips for the call" in bench.format_commands(picked)


@pytest.mark.skipif(find_redis_server() is None, reason="redis-server not installed")
def test_round_trips_are_counted_from_the_servers_view(tmp_path):
    redis = bench.Redis(tmp_path)
    try:
        cases = bench.round_trip_self_test(redis)
    finally:
        redis.stop()
    assert cases["a pipeline of 10"] == (1, 1)
    assert cases["MULTI/EXEC of 10"] == (1, 1)
    assert cases["one EVALSHA running 5 commands"] == (1, 1)
    assert all(expected == counted for expected, counted in cases.values()), cases


@pytest.mark.skipif(find_redis_server() is None, reason="redis-server not installed")
def test_tiny_run_with_a_backlog_produces_every_figure():
    options = bench.Options(seconds=2.5, warmup=0.5, drain=1.0, answer_after=0.2, talk=0.3,
                            wrapup=0.2, resync_interval=1.0)  # fmt: skip
    result = bench.run_point(8, 4.0, options, backlog=5, say=lambda *_: None)
    assert result.routed_per_s > 0
    assert result.unoffered == 0
    assert all(math.isfinite(v) and v >= 0 for v in (result.p50_ms, result.p99_ms))
    assert result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert result.events_per_s > 0
    assert result.redis_round_trips_per_call > 0
    assert result.redis_commands_per_call >= result.redis_round_trips_per_call
    assert result.daemon_cpu_ms_per_call > 0 and result.rss_mb > 0 and result.fake_rss_mb > 0
    assert set(result.cpu_pct) == {"daemon1", "fake", "redis"}
    assert result.backlog_waiting_start == 5 and result.backlog_waiting_end == 5
    assert result.resyncs >= 1
    text = bench.table([result], options)
    assert text.splitlines()[2].startswith("8 ")


def test_esl_ingest_bench_delivers_every_recorded_event_to_each_client():
    """scripts/bench_esl.py on a tiny replay: every case counts every event (own process:
    it monkey-patches for gevent)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_esl.py"
    out = subprocess.run(
        [sys.executable, str(script), "--repeat", "2", "--runs", "1", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    cases = {c["case"]: c for c in map(json.loads, out.stdout.splitlines())}
    assert set(cases) == {"ccd-json", "ccd-plain", "greenswitch-plain"}
    for case in cases.values():
        assert "error" not in case, case
        assert case["events"] > 400 and case["events_per_s_best"] > 0
        assert case["cpu_us_per_event_best"] > 0
