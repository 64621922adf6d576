"""`make bench`'s code path on a tiny point: it runs to the end and produces figures.

No timing is asserted: only that each figure was measured (the benchmark's
plumbing — processes, /metrics, Redis INFO, /proc — works), and that the
pure helpers compute what the table claims.
"""

from __future__ import annotations

import importlib.util
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
    r = bench.Result(agents=10, rate=100.0, routed_per_s=60.0)
    r.cpu = {"daemon": 98.0, "fake": 40.0, "redis": 10.0}
    assert "daemon CPU-bound" in bench.verdict(r)
    r.cpu = {"daemon": 60.0, "fake": 91.0, "redis": 10.0}
    assert "fake CPU-bound" in bench.verdict(r)
    r.routed_per_s = 100.0
    assert bench.verdict(r) == "sustained"
    r.unoffered = 1  # a caller never offered to anyone is not a sustained point
    assert bench.verdict(r) != "sustained"


def test_agents_cover_every_queue_extension():
    import random

    rng = random.Random(1)
    tags = [set(bench.agent_tags(i, rng)) for i in range(len(bench.PRIMARY_TAGS))]
    for primary, agent in zip(bench.PRIMARY_TAGS, tags, strict=True):
        assert set(primary) <= agent


@pytest.mark.skipif(find_redis_server() is None, reason="redis-server not installed")
def test_tiny_run_produces_every_figure():
    options = bench.Options(seconds=2.5, warmup=0.5, drain=1.0, answer_after=0.2, talk=0.3,
                            wrapup=0.2)  # fmt: skip
    result = bench.run_point(6, 4.0, options, say=lambda *_: None)
    assert result.routed_per_s > 0
    assert result.unoffered == 0
    assert all(math.isfinite(v) and v >= 0 for v in (result.p50_ms, result.p99_ms))
    assert result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.events_per_s > 0
    assert math.isfinite(result.redis_rt_per_call) and result.redis_rt_per_call > 0
    assert result.daemon_rss_mb > 0 and result.fake_rss_mb > 0
    assert set(result.cpu) == {"daemon", "fake", "redis"}
    text = bench.table([result], options)
    assert text.splitlines()[2].startswith("6 ")
