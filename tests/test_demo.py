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


def test_short_demo_shows_a_bridged_call_and_a_voicemail(tmp_path):
    done = subprocess.run(
        [sys.executable, str(DEMO), "--short"],
        capture_output=True, text=True, env=demo_env(tmp_path), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The routed calls, in the order they happened: the specialist rung, then bridged; the
    # payments caller refused by the only billing agent and sent to the queue's voicemail.
    steps = [
        "Anna Kovacs presses 1 (sales)",
        "ringing alice (1001, tags sales) for Anna Kovacs",
        "alice answered: Anna Kovacs bridged to alice",
    ]
    assert all(step in out for step in steps), out
    assert [out.index(step) for step in steps] == sorted(out.index(step) for step in steps)
    assert "Dora Szabo presses 3 (payments)" in out
    assert "Dora Szabo goes to voicemail box payments" in out
    assert "Dora Szabo leaves a message in voicemail box payments" in out
    # The caller summary and the operator's view close the story.
    assert "talked to alice" in out and "voicemail box payments after" in out
    assert "AGENTS" in out and "BRIDGED CALLS" in out
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
