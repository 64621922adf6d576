"""`make demo` in CI: scripts/demo.py --short as a newcomer would run it, in a subprocess.

The demo starts redis-server, the daemon and the fake FreeSWITCH itself, in a temporary
directory under TMPDIR; each test points TMPDIR at its own tmp_path, so "cleaned up" means
that directory is empty again and no process still names it on its command line (redis-server
rewrites its command line to "redis-server 127.0.0.1:<port>", so it is found by its port,
which the demo prints).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.py"


def demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **extra}


def processes_naming(*needles: object) -> list[str]:
    """Command lines of live processes that mention any of ``needles``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(str(n) in cmdline for n in needles):
            found.append(f"{proc.name}: {cmdline}")
    return found


def demo_children(tmp_path: Path, output: str) -> list[str]:
    found = re.search(r"redis-server +(127\.0\.0\.1:\d+)", output)
    redis = f"redis-server {found.group(1)}" if found else str(tmp_path)
    return processes_naming(tmp_path, redis)


def assert_cleaned_up(tmp_path: Path, output: str) -> None:
    deadline = time.monotonic() + 5
    while demo_children(tmp_path, output) and time.monotonic() < deadline:
        time.sleep(0.05)  # a child reaped a moment after the demo returned
    assert demo_children(tmp_path, output) == []
    assert list(tmp_path.iterdir()) == []


def in_order(out: str, steps: list[str]) -> None:
    """Every step is in the output, each after the one before."""
    missing = [step for step in steps if step not in out]
    assert not missing, f"missing {missing}:\n{out}"
    where = [out.index(step) for step in steps]
    assert where == sorted(where), out


def test_short_demo_tells_the_story_and_ends_with_the_days_figures(tmp_path):
    done = subprocess.run(
        [sys.executable, str(DEMO), "--short"],
        capture_output=True, text=True, env=demo_env(tmp_path), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The menu and the fewest-tags hunt.
    in_order(out, [
        "Anna Kovacs presses 1 in the menu (sales)",
        "alice's phone rings for Anna Kovacs (fewest tags: sales)",
        "alice answered: Anna Kovacs talks to alice",
    ])  # fmt: skip
    # The direct callback: dave's unanswered call binds Gizella; her call skips the menu.
    in_order(out, [
        "dave calls Gizella Farkas (0612345607) from the desk phone",
        "Gizella Farkas (+3612345607) is bound to dave",
        "Gizella Farkas was called by dave: past the menu, to dave first (direct callback)",
        "dave answered: Gizella Farkas talks to dave",
    ])  # fmt: skip
    assert "Gizella Farkas presses" not in out
    # The desk-phone disposition with do-not-call.
    in_order(out, [
        "dave keys *712# on the desk phone: disposition 12 of the last call",
        "dave files the call with Gizella Farkas as: do not contact",
        "Gizella Farkas (+3612345607) is on the do-not-call list for 180 days",
    ])  # fmt: skip
    # The abandoned caller becomes a callback (reason abandoned), dialled and bridged.
    in_order(out, [
        "Ferenc Kiss gives up and hangs up",
        "callback stored for +3612345606 (abandoned)",
        "callback for Ferenc Kiss (+3612345606): alice's phone rings first",
        "callback done: Ferenc Kiss (+3612345606) talks to alice",
    ])  # fmt: skip
    # The position announcement: on entry, again an interval later, with the music back.
    in_order(out, [
        "Hanna Szabo waits in queue support (music on hold)",
        'Hanna Szabo hears (music paused, place kept): "you are number 1"',
        'Hanna Szabo hears (music paused, place kept): "you are number 1"',
        "Hanna Szabo left queue support after 25 s: abandoned",
    ])  # fmt: skip
    assert out.count("Hanna Szabo hears") == 2
    # The 30 s overflow with both answers; the stored request dialled and bridged once the
    # caller who kept waiting was served. Csaba's answers and Erika's offer, 2 s apart, may
    # interleave: each hears the whole offer prompt first.
    in_order(out, [
        "Csaba Toth has waited 30 s: offer 1 = call me back, 2 = keep waiting",
        "Csaba Toth pressed 1: callback stored for +3612345603",
        "alice answered: Erika Varga talks to alice",
        "callback for Csaba Toth (+3612345603): alice's phone rings first",
        "alice is on the line: dialling Csaba Toth (+3612345603) through the gateway",
        "callback done: Csaba Toth (+3612345603) talks to alice",
    ])  # fmt: skip
    in_order(out, [
        "Csaba Toth has waited 30 s",
        "Erika Varga has waited 30 s",
        "Erika Varga pressed 2: keeps waiting, with the same place in the queue",
        "alice answered: Erika Varga talks to alice",
    ])  # fmt: skip
    # The close: callers, the operator's view on the daemon's clock (not "0s" for all),
    # the requests, the do-not-call list and the day's figures from /stats.
    assert "asked for a callback after waiting 3" in out
    assert "gave up after waiting 23 s; called back, talked to alice" in out
    rows = out.split("AGENTS\n", 1)[1].splitlines()[1:]
    agents = [row.split() for row in rows[: [r.strip() for r in rows].index("")]]
    assert len(agents) == 5 and {row[5] for row in agents} != {"0s"}, out
    assert "abandoned" in out.split("ccd callback list", 1)[1].split("ccd dnc list")[0]
    assert "+3612345607" in out.split("ccd dnc list", 1)[1]
    figures = out.split("The day's figures per queue", 1)[1].splitlines()
    sales = next(line.split() for line in figures if line.strip().startswith("sales"))
    # offered 4 (Anna, Csaba, Erika, Ferenc), answered 2, abandoned 1, overflowed 2,
    # callback requested 1; the callbacks' customers are not queue calls.
    assert sales[:6] == ["sales", "4", "2", "1", "2", "1"], figures
    assert_cleaned_up(tmp_path, out)


def test_missing_redis_server_stops_the_demo_with_a_clear_message(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    workdirs = tmp_path / "tmp"
    workdirs.mkdir()
    done = subprocess.run(
        [sys.executable, str(DEMO), "--short"],
        capture_output=True, text=True, timeout=60, check=False,
        env=demo_env(workdirs, PATH=str(empty_bin)),
    )  # fmt: skip
    assert done.returncode == 1
    assert "redis-server not found" in done.stderr
    assert "Traceback" not in done.stderr
    assert_cleaned_up(workdirs, done.stdout)


def test_ctrl_c_stops_every_child_and_removes_the_work_directory(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(DEMO)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=demo_env(tmp_path),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        seen = []
        # The full story is running: redis-server, the daemon and the fake are all up.
        while not any("running ..." in line for line in seen):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(seen)
            seen.append(line)
        assert len(demo_children(tmp_path, "".join(seen))) == 3
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a failed assertion above: still let the demo clean up
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert_cleaned_up(tmp_path, "".join(seen))
