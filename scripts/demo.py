"""``make demo``: a private call centre on loopback plays one scripted story and tells it.

Theory of operation
-------------------
Three child processes share one temporary directory and free loopback ports:
``redis-server``, the daemon (``ccd run``, JSON log lines to ``daemon.log``) and the fake
FreeSWITCH (``ccd-fakeswitch --scenario``, trace to ``trace.jsonl``). The order matters
because the scenario's clock starts when the fake starts:

1. redis-server; the agents are created and logged in with the operators' own commands
   (``ccd agent sync``, ``ccd agent login``), which only need Redis;
2. the daemon, which retries the event socket every 0.2 s until the fake is there
   (``/healthz`` says it is alive);
3. the fake FreeSWITCH with the scenario; ``/readyz`` says the daemon is connected,
   subscribed and resynchronised, well before the first caller dials (20 switch seconds).

When the scenario is over the fake exits. The demo then reads both files and merges them
into one timeline in *switch seconds* since the fake started. The trace is in switch time;
the daemon logs UTC wall-clock time. The fake's clock runs ``time_scale`` times faster than
the wall clock from a starting point the demo cannot see, so the two are aligned on moments
both sides saw: a caller parking in a queue (trace ``park``) and the daemon's ``call.queued``
for that caller, which follows within milliseconds.

The story (``demo_story.py`` beside this file) is one line per step: the menu, the
fewest-tags hunt, the 30 s overflow and both answers to it, callbacks stored and dialled, a
direct callback, a desk-phone disposition putting a number on the do-not-call list, an
abandoned caller called back. It ends with what an operator sees (``ccd status``, ``ccd
callback list``, ``ccd dnc list``, read while the daemon runs: at a time scale the commands
measure by the daemon's clock, ccd.store.node) and the day's figures per queue from ``GET
/stats`` (the HTTP token is the demo's own). The children import this checkout's ccd
(PYTHONPATH), whatever the venv's editable install points at.

Everything the demo started is stopped, and the directory removed, on success, on error and
on Ctrl-C (exit code 130); children also get SIGTERM if the demo itself is killed outright.
A part that does not come up, a caller the daemon did not route to an end, or an error in
the daemon's log ends the demo with a clear message and exit code 1.

Files: ``scripts/demo/ccd.toml`` (the daemon's configuration, without addresses),
``scripts/demo/scenario.toml`` (the story) and ``scenario-short.toml`` (``--short``, for CI).
``--keep`` leaves the logs, the trace and the generated configuration in place.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "scripts" / "demo"
sys.path.insert(0, str(ROOT / "scripts"))  # demo_story, beside this file, however it is run
from demo_story import NOT_QUEUED, WAITING, Cast, outcomes, timeline  # noqa: E402

CONFIG = HERE / "ccd.toml"
SCENARIO = HERE / "scenario.toml"
SHORT_SCENARIO = HERE / "scenario-short.toml"

#: Real seconds each part gets to come up before the demo gives up on it.
START_TIMEOUT = 15.0

#: Presence changes made by an operator during the full story, in switch seconds:
#: (when, action, agent), done with ``ccd agent <action> <agent>``. The story's breaks are
#: dialled on the desk phone (*23 / *24, in scenario.toml); this is for operator steps.
OPERATOR_ACTIONS: list[tuple[float, str, str]] = []


class DemoError(Exception):
    """Something did not come up or did not finish; the message says what and where to look."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop everything and leave."""


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, ready: Callable[[], bool], alive: Callable[[], bool], timeout: float
) -> None:
    """Poll ``ready`` until true; fail at once when the process died, or at the deadline."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise DemoError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not up after {timeout:g} s")
        time.sleep(0.05)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "    (no output)"
    return "\n".join("    " + line[:300] for line in text[-lines:]) or "    (no output)"


@dataclass
class Children:
    """The processes the demo started, stopped in reverse order by :meth:`stop_all`."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Path:
        log_path = self.workdir / f"{name}.log"
        out = open(log_path, "wb")  # noqa: SIM115 - closed in stop_all
        try:
            proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.workdir, preexec_fn=_die_with_parent,
            )  # fmt: skip
        except OSError as exc:
            out.close()
            raise DemoError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
        self.procs.append((name, proc, out))
        return log_path

    def proc(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, p, _ in self.procs if n == name)

    def stop(self, name: str) -> None:
        for n, proc, out in self.procs:
            if n == name:
                _terminate(proc)
                out.close()

    def stop_all(self) -> None:
        for _name, proc, out in reversed(self.procs):
            _terminate(proc)
            out.close()
        self.procs.clear()


def _die_with_parent() -> None:
    """In the child: SIGTERM when the demo dies, even by SIGKILL, where cleanup cannot run."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_cli(argv: Sequence[str], env: dict[str, str]) -> str:
    """Run one ``ccd`` operator command; its stdout, or DemoError with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "ccd.cli", *argv],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise DemoError(f"ccd {' '.join(argv[:3])} failed: {done.stderr.strip()}")
    return done.stdout


# --- the day's figures -------------------------------------------------------------------------


def fetch_stats(base: str, token: str) -> dict[str, Any]:
    """``GET /stats`` with the token (the figures are private to the centre)."""
    request = urllib.request.Request(base + "/stats", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return dict(json.load(reply))
    except (OSError, ValueError) as exc:
        raise DemoError(f"GET /stats failed: {exc}") from None


STATS_COLUMNS = ("offered", "answered", "abandoned", "overflowed", "callback_requested")


def stats_table(doc: dict[str, Any]) -> list[str]:
    """One aligned line per queue: today's counts, service level and ASA."""
    head = ["QUEUE", "OFFERED", "ANSWERED", "ABANDONED", "OVERFLOWED", "CALLBACK", "SL", "ASA"]
    rows = [head]
    for q in doc.get("queues", []):
        today = q.get("today", {})
        level, asa = today.get("service_level"), today.get("asa")
        rows.append(
            [q.get("queue", "?"), *(str(today.get(c, 0)) for c in STATS_COLUMNS),
             "-" if level is None else f"{level * 100:.0f}%",
             "-" if asa is None else f"{asa:.0f}s"]
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    sl_time = next((q.get("service_level_time") for q in doc.get("queues", [])), None)
    if sl_time is not None:
        lines.append(f"SL: answered within {sl_time:g} s / answered; ASA: average wait answered")
    return [line.rstrip() for line in lines]


# --- reading the logs ---------------------------------------------------------------------


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """JSON objects of a file, one a line; anything else on a line (a traceback) is skipped."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def daemon_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for row in read_json_lines(path):
        try:
            row["wall"] = datetime.fromisoformat(str(row["timestamp"])).timestamp()
        except (KeyError, ValueError):
            continue
        records.append(row)
    return records


# --- the run -----------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def run(args: argparse.Namespace, workdir: Path, children: Children) -> int:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    scale = float(config["daemon"]["time_scale"])
    scenario_path = SHORT_SCENARIO if args.short else SCENARIO
    from ccd.fakeswitch.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        raise DemoError(str(exc)) from None
    agents = {
        a: {"extension": v["extension"], "tags": sorted(v.get("tags", []))}
        for a, v in config["agents"].items()
    }
    cast = Cast(agents, float(config.get("routing", {}).get("ring_time", 15)))
    on_duty = [p["agent"] for p in scenario.phones if p.get("agent") in agents]

    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise DemoError(
            "redis-server not found: install it (`make redis-server`, or "
            "apt-get install redis-server) and run the demo again"
        )
    redis_port, esl_port, http_port = free_port(), free_port(), free_port()
    password = secrets.token_hex(8)
    config_path = workdir / "ccd.toml"
    config_path.write_text(
        "# Written by scripts/demo.py: its free ports, then scripts/demo/ccd.toml.\n"
        f'[esl]\nhost = "127.0.0.1"\nport = {esl_port}\n'
        "connect_timeout = 2\nbackoff_min = 0.05\nbackoff_max = 0.2\n"
        f'[redis]\nurl = "redis://127.0.0.1:{redis_port}/0"\n'
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n\n' + CONFIG.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    # The children run this checkout's ccd, whatever the venv's editable install points at
    # (a worktree shares its venv with the main checkout) and whatever their working directory.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    fake_env = {**os.environ, "PYTHONPATH": path}
    fake_env.pop("CCD_REDIS_URL", None)
    # The secrets reach the daemon the way an operator's should: the environment. The HTTP
    # token opens /stats, read at the end.
    token = secrets.token_hex(16)
    env = {**fake_env, "CCD_ESL_PASSWORD": password, "CCD_HTTP_TOKEN": token}
    cfg = ["--config", str(config_path)]

    say(f"ccd demo ({'short' if args.short else 'full'} story, time runs {scale:g}x faster)")
    say(f"  work directory {workdir}")
    redis_log = children.start(
        "redis",
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"],
    )  # fmt: skip
    _up("redis-server", redis_log, lambda: redis_answers(redis_port), children.proc("redis"))
    say(f"  redis-server   127.0.0.1:{redis_port}")

    for line in run_cli(["agent", "sync", *cfg], env).splitlines()[1:]:
        say(f"  agent          {' '.join(line.split())}")
    for agent in on_duty:
        say(f"  login          {run_cli(['agent', 'login', agent, *cfg], env).strip()}")

    daemon_log = children.start(
        "daemon", [sys.executable, "-m", "ccd.cli", "run", *cfg, "--log-format", "json"], env
    )
    base = f"http://127.0.0.1:{http_port}"
    _up("ccd daemon (/healthz)", daemon_log, lambda: http_status(base + "/healthz") == 200,
        children.proc("daemon"))  # fmt: skip
    say(f"  ccd daemon     http://127.0.0.1:{http_port}/healthz ok")

    trace_path = workdir / "trace.jsonl"
    fake_log = children.start(
        "fakeswitch",
        [sys.executable, "-m", "ccd.fakeswitch.cli", "--esl-host", "127.0.0.1",
         "--esl-port", str(esl_port), "--password", password, "--scenario", str(scenario_path),
         "--trace", str(trace_path), "--time-scale", f"{scale:g}"],
        fake_env,
    )  # fmt: skip
    _up("ccd daemon (/readyz: FreeSWITCH and Redis connected)", fake_log,
        lambda: http_status(base + "/readyz") == 200, children.proc("fakeswitch"),
        also=(daemon_log, children.proc("daemon")))  # fmt: skip
    say(f"  fake switch    127.0.0.1:{esl_port}; daemon /readyz ok")
    length = scenario.duration or 120
    say(f"  scenario       {scenario_path.name}: {length:g} switch seconds, running ...")

    fake = children.proc("fakeswitch")
    operator: list[tuple[float, str]] = []
    actions = [] if args.short else OPERATOR_ACTIONS
    if actions:
        # The fake's clock starts with its first trace line (the desk phones registering).
        _up("fake FreeSWITCH trace", fake_log, lambda: trace_path.exists() and
            trace_path.stat().st_size > 0, fake)  # fmt: skip
        started = time.time()
        for at, action, agent in actions:
            while time.time() < started + at / scale and fake.poll() is None:
                time.sleep(0.01)
            said = run_cli(["agent", action, agent, *cfg], env).strip()
            operator.append((time.time(), f"ccd agent {action} {agent}: {said}"))
    try:
        code = fake.wait(timeout=length / scale + 30)
    except subprocess.TimeoutExpired:
        raise DemoError(f"the scenario did not end in time; see\n{tail(fake_log)}") from None
    if code != 0:
        raise DemoError(f"the fake FreeSWITCH exited with {code}:\n{tail(fake_log)}")
    if children.proc("daemon").poll() is not None:
        raise DemoError(f"the daemon died during the scenario:\n{tail(daemon_log)}")

    # What an operator sees at the end of the day, asked while the daemon still runs (its
    # clock is the one the figures are measured by: ccd.store.node.daemon_clock).
    status = run_cli(["status", *cfg], env)
    requests = run_cli(["callback", "list", *cfg], env)
    dnc = run_cli(["dnc", "list", *cfg], env)
    day = fetch_stats(base, token)
    children.stop("daemon")

    trace = read_json_lines(trace_path)
    records = daemon_records(daemon_log)
    say()
    say("What happened (time = switch seconds since the fake FreeSWITCH started)")
    say()
    for line in timeline(trace, records, operator, cast, scale):
        say(f"  {line.t:6.1f}  {line.source:<6}  {line.text}")
    say()
    say("Callers")
    rows = outcomes(records, cast, scale)
    width = max((len(o.caller) for o in rows.values()), default=0)
    for o in rows.values():
        say(f"  {o.caller:<{width}}  {o.queue or '-':<9} {o.result}")
    say()
    say("ccd status (what an operator sees now)")
    for line in status.rstrip().splitlines():
        say(f"  {line}")
    say()
    say("ccd callback list")
    for line in requests.rstrip().splitlines():
        say(f"  {line}")
    say()
    say("ccd dnc list")
    for line in dnc.rstrip().splitlines():
        say(f"  {line}")
    say()
    say("The day's figures per queue (GET /stats, today)")
    for line in stats_table(day):
        say(f"  {line}")
    # Every caller who chose a queue must have been routed to an end; anything else, or an
    # error in the daemon's log, is a bug the demo must not hide behind a readable story.
    parked = {e["uuid"] for e in trace if e["kind"] == "park" and e.get("queue")}
    lost = [o.caller for u, o in rows.items() if u in parked and o.result in (NOT_QUEUED, WAITING)]
    if lost:
        raise DemoError(f"caller(s) the daemon did not route to an end: {', '.join(lost)}")
    errors = [r for r in records if r.get("level") in ("error", "critical")]
    if errors:
        raise DemoError(f"the daemon logged {len(errors)} error(s), first: {errors[0]}")
    return 0


def _up(
    what: str,
    log_path: Path,
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    also: tuple[Path, subprocess.Popen[bytes]] | None = None,
) -> None:
    """Wait for a part to come up; on failure show the last lines of the logs concerned."""

    def alive() -> bool:
        return proc.poll() is None and (also is None or also[1].poll() is None)

    try:
        wait_for(what, ready, alive, START_TIMEOUT)
    except DemoError as exc:
        logs = f"{log_path.name}:\n{tail(log_path)}"
        if also is not None:
            logs += f"\n{also[0].name}:\n{tail(also[0])}"
        raise DemoError(f"{exc}\n{logs}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--short", action="store_true", help="minimal story (CI): two calls")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the trace")
    args = parser.parse_args(argv)

    def interrupted(_signum: int, _frame: Any) -> None:
        raise Interrupted

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="ccd-demo-"))
    children = Children(workdir)
    code = 1
    try:
        code = run(args, workdir, children)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
    except Interrupted:
        print("demo: interrupted, stopping everything", file=sys.stderr)
        code = 130
    finally:
        # Ctrl-C again while cleaning up must not leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    where = f"logs and trace kept in {workdir}" if args.keep else f"{workdir} removed"
    print(f"demo: {'done' if code == 0 else 'failed'}; every process stopped, {where}",
          file=sys.stdout if code == 0 else sys.stderr)  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
