"""``ccd status --watch``: a frame for fixed data fits 80 columns and shows the figures; the
view reads the live statistics from Redis, refreshes, and Ctrl-C ends it with exit code 0."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccd.cli import common, status
from ccd.cli.main import main
from ccd.core.commands import Fact
from ccd.core.queue import queue_order_key
from ccd.core.stats import AgentDay, QueueCounts, QueueStatsRules, StatsRules, fold
from ccd.core.stats_view import AgentNow, QueueNow, Snapshot, WaitingCaller, stats_json
from ccd.store.redis_store import Store, connect_redis
from ccd.store.stats import StatsStore

AT = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("restore_logging")


def _doc() -> dict:
    rules = StatsRules(default=QueueStatsRules(service_level_time=20.0))
    sales = QueueNow(
        "sales",
        2,
        AT - 102.0,
        {"free": 1, "oncall": 4, "ringing": 1, "wrapup": 1, "break": 1, "logged_out": 3},
        (WaitingCaller("c-vip", AT - 30.0, 10), WaitingCaller("c-old", AT - 102.0, 0)),
    )
    support = QueueNow("support-and-a-very-long-name", 0, None)
    counts = QueueCounts(
        offered=134, answered=120, answered_sl=96, wait_answered=1680.0,
        abandoned=8, abandoned_short=3, handled=118, talk=21240.0, wrapup=2360.0,
    )  # fmt: skip
    doc = stats_json(
        Snapshot(AT, (sales, support)),
        rules,
        {"sales": ("2023-11-14", counts)},
        {"sales": {15: QueueCounts(answered=10, answered_sl=7)}},
        [AgentNow("alice", "oncall", AT - 190.0, "2023-11-14", AgentDay(free=600, oncall=1200))],
    )
    doc["queues"][0]["callers"][0]["number"] = "+36301234567"
    return doc


def test_a_frame_fits_80_columns_and_shows_the_figures():
    lines = status.render_frame(_doc(), width=80, interval=2)
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    text = "\n".join(lines)
    sales = next(line for line in lines if line.startswith("sales "))
    # waiting 2, longest 1m42s, SL 96/120 = 80%, SL+AB 96/(120 + 5) = 77%, last 15 min 7/10,
    # answered/offered, abandoned, ASA 1680/120 = 14 s; free 1, busy 1 + 4 + 1, break 1, off 3
    assert sales.split() == [
        "sales", "2", "1m42s", "80%", "77%", "70%", "120/134", "8", "14s", "1", "6", "1", "3"
    ]  # fmt: skip
    assert "support-an " in text  # a long name is cut, the columns stay
    assert "+36301234567" in text and "1m42s" in text
    alice = next(line for line in lines if line.startswith("alice"))
    assert alice.split() == ["alice", "oncall", "3m10s", "67%", "0"]  # 1200 / 1800 busy
    assert lines[0].startswith("ccd status ") and "Ctrl-C quits" in lines[0]


def test_a_short_terminal_gets_a_frame_that_fits_it_and_says_what_is_cut():
    lines = status.render_frame(_doc(), width=60, height=12)
    assert len(lines) <= 11 and all(len(line) <= 60 for line in lines)
    assert lines[-1].startswith("... ")


def test_caller_text_cannot_reach_the_terminal_as_escapes():
    doc = _doc()
    doc["queues"][0]["callers"][0]["number"] = "\x1b[2J+36"
    assert not any("\x1b" in line for line in status.render_frame(doc))


def _config(tmp_path: Path, redis_url: str) -> Path:
    path = tmp_path / "ccd.toml"
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\nprefix = "w:"\n\n[disposition]\ntimezone = "UTC"\n\n'
        '[queues.sales]\ntags = ["sales"]\n'
    )
    return path


@pytest.fixture
def seeded(tmp_path, redis_url):
    """A day so far in Redis: alice logged in for sales, two calls offered, one answered after
    12 s; one caller waiting since 40 s."""
    client = connect_redis(redis_url)
    store = Store.create(client, "w:")
    rules = StatsRules(default=QueueStatsRules(), tz=dt.UTC, retention_days=36600)
    facts = [
        (Fact("agent.state", {"agent": "alice", "login": "ready", "registered": True}), AT - 600),
        (Fact("call.queued", {"queue": "sales"}), AT - 300),
        (Fact("call.bridged", {"queue": "sales", "agent": "alice", "waited": 12.0}), AT - 288),
        (Fact("call.queued", {"queue": "sales"}), AT - 40),
    ]
    StatsStore(store, rules).record(fold([(f, at, ("sales",)) for f, at in facts], rules))
    client.zadd("w:queue:sales", {"c1": queue_order_key(0, AT - 40)})
    client.sadd("w:agents", "alice")
    client.close()
    return _config(tmp_path, redis_url)


def test_watch_reads_the_live_statistics_and_refreshes(seeded, monkeypatch, capsys):
    monkeypatch.setattr(common, "_now", lambda: AT)
    pauses = []
    monkeypatch.setattr(status, "_sleep", pauses.append)
    code = main(["status", "-c", str(seeded), "--watch", "--interval", "0.5", "--count", "2"])
    out = capsys.readouterr().out
    assert code == 0 and pauses == [0.5]
    assert out.count("ccd status ") == 2  # not a terminal: frames one after another, no escapes
    assert "\x1b" not in out
    sales = next(line for line in out.splitlines() if line.startswith("sales "))
    # 1 waiting for 40 s; 1 of 2 answered, after 12 s (within T): SL 100%, ASA 12 s; alice free
    assert sales.split() == [
        "sales", "1", "40s", "100%", "100%", "100%", "1/2", "0", "12s", "1", "0", "0", "0"
    ]  # fmt: skip
    alice = next(line for line in out.splitlines() if line.startswith("alice"))
    assert alice.split() == ["alice", "free", "10m00s", "0%", "1"]  # free since she logged in


def test_watch_json_gives_one_document_a_line(seeded, monkeypatch, capsys):
    monkeypatch.setattr(common, "_now", lambda: AT)
    monkeypatch.setattr(status, "_sleep", lambda _: None)
    assert main(["status", "-c", str(seeded), "--watch", "--json", "--count", "2"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["queues"][0]["waiting"] for d in docs] == [1, 1]


def test_ctrl_c_ends_the_watch_with_exit_code_0(seeded, monkeypatch, capsys):
    def interrupt(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "_sleep", interrupt)
    assert main(["status", "-c", str(seeded), "--watch"]) == 0


def test_a_real_sigint_ends_the_watch_process_cleanly(seeded):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "ccd.cli", "status", "-c", str(seeded), "--watch"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as p:
        first = p.stdout.readline()  # the first frame is being written: the loop runs
        assert first.startswith(b"ccd status ")
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_a_bad_interval_is_a_usage_error(seeded, capsys):
    assert main(["status", "-c", str(seeded), "--watch", "--interval", "0"]) == 2
    assert "--interval must be 0.2..3600 seconds" in capsys.readouterr().err
