"""systemd (issue 12): the unit's hardening score, and the notify protocol over real datagram
sockets: READY only after the first resynchronisation, WATCHDOG pings from the dispatcher
(none while it is stuck), a STATUS line, RELOADING/READY around a reload (SIGHUP and
``ccd reload``), STOPPING; a busy HTTP port is one line and exit 78."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import gevent
import pytest

from ccd.adapters.systemd import Notifier
from ccd.supervisor import Task
from tests.support.daemon_fixtures import eventually
from tests.test_daemon import _free_port, _ready, _run_ccd

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "scripts" / "ccd.service"


# --- the unit ---------------------------------------------------------------------------------


def test_the_unit_is_rated_at_most_2_5_by_systemd_analyze_security():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's score is not checked here")
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for ccd\.service: ([0-9.]+)", proc.stdout)
    if proc.returncode != 0 or found is None:
        pytest.skip(f"systemd-analyze security --offline=yes does not work here: {proc.stderr}")
    assert float(found.group(1)) <= 2.5, proc.stdout


def _unit() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_notifies_has_a_watchdog_reload_limits_and_stops_config_loops():
    unit = _unit()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert int(unit["WatchdogSec"][0]) >= 2
    assert int(unit["LimitNOFILE"][0]) >= 65536
    assert unit["ExecReload"] == ["/opt/ccd/.venv/bin/ccd reload"]
    assert set(unit["RestartPreventExitStatus"][0].split()) == {"2", "78"}
    assert unit["RuntimeDirectory"] == ["ccd"]
    # Documentation= points at a file the install puts there.
    doc = unit["Documentation"][0].removeprefix("file://")
    assert 'install -m 0644 "$SRC/README.md" "$ROOT' + doc + '"' in (
        (ROOT / "scripts" / "install.sh").read_text()
    )


# --- the notify protocol --------------------------------------------------------------------


class NotifySocket:
    """A datagram socket standing in for systemd's; ``abstract``: in the abstract namespace."""

    def __init__(self, tmp_path: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"ccd-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError, OSError):
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))
        return [m for _, m in self.messages]

    def seen(self, key: str, value: str | None = None) -> list[float]:
        self.drain()
        return [t for t, m in self.messages if key in m and (value is None or m[key] == value)]

    def close(self) -> None:
        self.sock.close()


def test_the_notifier_speaks_to_path_and_abstract_sockets(tmp_path):
    for abstract in (False, True):
        listener = NotifySocket(tmp_path, abstract)
        notifier = Notifier({"NOTIFY_SOCKET": listener.env})
        assert notifier.ready("up\nand running")
        assert notifier.watchdog() and notifier.stopping()
        messages = listener.drain()
        assert messages == [
            {"READY": "1", "STATUS": "up and running"},
            {"WATCHDOG": "1"},
            {"STOPPING": "1"},
        ]
        listener.close()
        notifier.close()


def test_the_notifier_is_silent_outside_systemd_and_honours_watchdog_usec():
    assert not Notifier({}).ready() and Notifier({}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "4000000"}).watchdog_interval == 2.0
    other = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other).watchdog_interval is None  # meant for another process
    gone = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify.sock"})
    assert gone.ready() is False  # logged once, never raised


def test_ccd_run_notifies_ready_after_resync_pings_the_watchdog_reloads_and_stops(
    fakeswitch, redis_url, tmp_path
):
    listener = NotifySocket(tmp_path, abstract=True)
    host, port = fakeswitch.address
    http_port = _free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = tmp_path / "ccd.toml"
    text = (
        f'[esl]\nhost = "{host}"\nport = {port}\n[http]\nport = {http_port}\n'
        '[voicemail]\nboxes = []\n[queues.sales]\ntags = ["sales"]\n'
    )
    config.write_text(text)
    env = {
        "CCD_ESL_PASSWORD": "ClueCon",
        "CCD_REDIS_URL": redis_url,
        "NOTIFY_SOCKET": listener.env,
        "WATCHDOG_USEC": "1000000",  # pings every 0.5 s at most
        "CCD_RUN_DIR": str(run_dir),
    }
    proc = _run_ccd(["run", "--config", str(config), "--log-format", "json"], env=env)
    try:
        eventually(lambda: listener.seen("READY", "1"), timeout=30, what="READY=1")
        assert _ready(http_port)  # READY came once connected and resynchronised
        first_ready = listener.seen("READY", "1")[0]
        assert listener.seen("STATUS")[0] < first_ready  # "connecting ..." before
        ready_status = next(m for _, m in listener.messages if "READY" in m)["STATUS"]
        assert re.fullmatch(r"ready: 0 calls waiting, 0 agents free", ready_status)
        eventually(lambda: len(listener.seen("WATCHDOG", "1")) >= 4, timeout=10,
                   what="watchdog pings")  # fmt: skip
        assert (run_dir / "ccd.pid").read_text().strip() == str(proc.pid)

        # SIGHUP: RELOADING=1, then READY=1 again.
        proc.send_signal(signal.SIGHUP)
        eventually(lambda: listener.seen("RELOADING", "1"), timeout=10, what="RELOADING=1")
        reloading = listener.seen("RELOADING", "1")[0]
        eventually(lambda: [t for t in listener.seen("READY", "1") if t > reloading],
                   timeout=10, what="READY=1 after the reload")  # fmt: skip

        # ccd reload: finds the daemon by its pid file, prints what changed.
        config.write_text(text + '[queues.vip]\ntags = ["vip"]\n')
        done = subprocess.run(
            [*_ccd(), "reload"], env={**os.environ, **env}, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "reloaded" in done.stdout and "queues added: vip" in done.stdout

        # An invalid file: exit 2, every problem printed, the daemon keeps running.
        config.write_text(text + '[routing]\nring_time = "abc"\nrign_time = 5\n')
        bad = subprocess.run(
            [*_ccd(), "reload"], env={**os.environ, **env}, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert bad.returncode == 2
        assert "NOT applied" in bad.stderr and "routing.ring_time" in bad.stderr
        assert "routing.rign_time" in bad.stderr and "Traceback" not in bad.stderr
        assert _ready(http_port)

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.drain()
        listener.close()
    assert proc.returncode == 0, err.decode()
    assert [m for _, m in listener.messages if m.get("STOPPING") == "1"]
    assert not (run_dir / "ccd.pid").exists()
    assert b"config.reload_failed" in out and b"config.reloaded" in out


def _ccd() -> list[str]:
    import sys

    return [sys.executable, "-m", "ccd.cli"]


def test_a_stuck_dispatcher_stops_the_watchdog_pings(fakeswitch, start_daemon, tmp_path,
                                                     monkeypatch):  # fmt: skip
    listener = NotifySocket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    daemon = start_daemon(fakeswitch)
    eventually(lambda: len(listener.seen("WATCHDOG", "1")) >= 3, what="pings")

    class Stuck(Task):
        def run(self) -> None:
            gevent.sleep(1.5)  # the dispatcher is busy; everything else still runs

    daemon.inbox.put(Stuck())
    gevent.sleep(0.3)
    stuck_at = time.monotonic()
    gevent.sleep(1.0)
    pings = listener.seen("WATCHDOG", "1")
    assert not [t for t in pings if stuck_at < t < stuck_at + 0.9]  # no ping while stuck
    eventually(lambda: [t for t in listener.seen("WATCHDOG", "1") if t > stuck_at + 1.0],
               what="pings again once the dispatcher runs")  # fmt: skip
    lag = daemon.metrics.registry.get_sample_value("ccd_dispatcher_lag_seconds_sum")
    assert lag is not None and lag >= 1.0  # the heartbeat that waited behind it
    listener.close()


def test_a_busy_http_port_is_one_line_and_exit_78(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    config = tmp_path / "ccd.toml"
    config.write_text(f"[http]\nport = {port}\n[esl]\nport = 1\n")
    try:
        proc = _run_ccd(["run", "--config", str(config), "--log-format", "json"],
                        env={"CCD_REDIS_URL": "redis://127.0.0.1:1/0"})  # fmt: skip
        _out, err = proc.communicate(timeout=30)
    finally:
        busy.close()
    assert proc.returncode == 78
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert lines[0].startswith(f"ccd run: configuration error: http.port: cannot listen on "
                               f"127.0.0.1:{port}")  # fmt: skip
