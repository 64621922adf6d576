"""The daemon's clock published with its heartbeat, and ``ccd status`` measuring by it.

At ``daemon.time_scale`` 10 the daemon's stamps in Redis run ahead of the wall clock; a
command measuring against the wall clock showed every agent "FOR 0s" and every wrap-up as
never ending (the demo's ``ccd status``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ccd.cli.main import main
from ccd.core import presence
from ccd.store.agent import AgentRepository
from ccd.store.dnc import DncList
from ccd.store.node import DaemonClock, Nodes, daemon_clock
from tests.support.cli_fixtures import cli_clock

WALL = 1_700_000_000.0
PREFIX = "t:"

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def wall(monkeypatch):
    return cli_clock(monkeypatch, WALL)


def _config(tmp_path: Path, redis_url: str, scale: float) -> Path:
    path = tmp_path / "ccd.toml"
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\nprefix = "{PREFIX}"\n'
        f'[daemon]\nnode_id = "n1"\ntime_scale = {scale}\n'
        '[agents.alice]\nextension = "1001"\ntags = ["sales"]\n'
    )
    return path


def test_daemon_clock_carries_forward_at_the_scale():
    stamp = DaemonClock(now=5000.0, wall=100.0, scale=10.0)
    assert stamp.at(100.0) == 5000.0
    assert stamp.at(102.5) == 5025.0
    assert DaemonClock.unpack(stamp.pack()) == stamp
    assert DaemonClock.unpack(b"garbage") is None


def test_beat_publishes_the_daemon_clock_and_leave_removes_it(store):
    nodes = Nodes(store, "n1", clock=lambda: 9000.0, scale=10.0)
    nodes.claim()
    stamp = daemon_clock(store, "n1")
    assert (stamp.now, stamp.scale) == (9000.0, 10.0)
    assert 0 < store.client.pttl(store.keys.node_clock("n1")) <= 3500  # dies with the beat
    nodes.leave()
    assert daemon_clock(store, "n1") is None


def _status_agents(config: Path, capsys) -> list[str]:
    capsys.readouterr()
    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    return out.split("\n\n")[2].splitlines()[2:]


def test_status_measures_durations_on_the_scaled_daemon_clock(
    tmp_path, redis_url, store, wall, capsys
):
    config = _config(tmp_path, redis_url, 10)
    agents = AgentRepository(store)
    # The daemon's clock is 100,000 s ahead of the wall clock (it has run a while at 10x).
    ahead = WALL + 100_000
    agents.create("alice", "1001", ["sales"], ahead - 200)
    agents.transition("alice", lambda s: presence.set_login(s, "login", ahead - 200))
    agents.transition("alice", lambda s: presence.set_registered(s, True, ahead - 200))
    agents.create("bob", "1002", ["sales"], ahead - 200)
    rules = presence.PresenceRules(wrapup_time=30.0)
    agents.transition("bob", lambda s: presence.set_login(s, "login", ahead - 200))
    agents.transition("bob", lambda s: presence.set_registered(s, True, ahead - 200))
    agents.transition("bob", lambda s: presence.offer(s, "leg", ahead - 100))
    agents.transition("bob", lambda s: presence.answered(s, "leg", ahead - 90))
    agents.transition("bob", lambda s: presence.call_ended(s, "leg", ahead - 50, rules))
    # Without a beating daemon: the wall clock, every stamp in the future (what the demo
    # showed): 0s, and bob's wrap-up never ends.
    rows = [row.split() for row in _status_agents(config, capsys)]
    assert [(r[0], r[4], r[5]) for r in rows] == [("alice", "idle", "0s"), ("bob", "wrapup", "0s")]
    # The daemon beat when the wall clock read WALL; 1 s later its clock is 10 s further.
    store.client.set(store.keys.node_clock("n1"), DaemonClock(ahead, WALL, 10.0).pack(), px=3500)
    wall[0] = WALL + 1
    rows = [row.split() for row in _status_agents(config, capsys)]
    # alice: 210 s since login; bob's wrap-up ended at ahead - 20, 30 s ago.
    assert [(r[0], r[4], r[5]) for r in rows] == [
        ("alice", "idle", "3m30s"),
        ("bob", "idle", "30s"),
    ]


def test_at_scale_1_the_wall_clock_is_used_whatever_is_stored(
    tmp_path, redis_url, store, wall, capsys
):
    config = _config(tmp_path, redis_url, 1)
    agents = AgentRepository(store)
    agents.create("alice", "1001", ["sales"], WALL - 60)
    agents.transition("alice", lambda s: presence.set_login(s, "login", WALL - 60))
    agents.transition("alice", lambda s: presence.set_registered(s, True, WALL - 60))
    store.client.set(store.keys.node_clock("n1"), DaemonClock(0.0, 0.0, 1.0).pack(), px=3500)
    [row] = [row.split() for row in _status_agents(config, capsys)]
    assert row[5] == "1m00s"


def test_dnc_days_left_are_the_daemons_days(tmp_path, redis_url, store, wall, capsys):
    # The daemon (time scale 10, its clock 100,000 s ahead) listed a number for 180 days: the
    # key lives 18 wall-clock days, which are 180 of the daemon's.
    config = _config(tmp_path, redis_url, 10)
    ahead = WALL + 100_000
    DncList(store, time_scale=10, clock=lambda: ahead).add("+3612345678", 180 * 86400.0)
    store.client.set(store.keys.node_clock("n1"), DaemonClock(ahead, WALL, 10.0).pack(), px=3500)
    wall[0] = WALL + 8640  # a tenth of a day later on the wall clock: a whole day for it
    capsys.readouterr()
    assert main(["dnc", "list", "-c", str(config)]) == 0
    [row] = capsys.readouterr().out.splitlines()[1:]
    assert row.split()[:2] == ["+3612345678", "179.0d"]
    assert main(["dnc", "check", "+3612345678", "-c", str(config)]) == 0
    assert "179.0d left" in capsys.readouterr().out
