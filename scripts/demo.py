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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent / "demo"
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


# --- the story, as a newcomer reads it --------------------------------------------------------


@dataclass(frozen=True, order=True)
class Line:
    t: float  # switch seconds since the fake started, to the tenth shown
    # Within one tenth of a second the switch's fact comes before the daemon's reaction:
    # the fake writes some trace lines just after the events the daemon reacts to.
    rank: int
    seq: int  # then each side's own order
    source: str
    text: str


@dataclass
class Cast:
    """Who is who: callers by call uuid, agents by extension, from the config and trace."""

    agents: dict[str, dict[str, Any]]  # id -> {"extension", "tags"}
    ring_time: float
    callers: dict[str, str] = field(default_factory=dict)  # uuid -> "Anna Kovacs (+36...)"
    short: dict[str, str] = field(default_factory=dict)  # uuid -> "Anna Kovacs"

    def agent_at(self, ext: str) -> str:
        return next((a for a, v in self.agents.items() if v["extension"] == ext), f"ext {ext}")

    def agent_label(self, agent: str) -> str:
        info = self.agents.get(agent, {})
        tags = ",".join(info.get("tags", [])) or "no tags"
        return f"{agent} ({info.get('extension', '?')}, tags {tags})"

    def who(self, uuid: str) -> str:
        return self.short.get(uuid, "a caller")


FEATURE_CODES = {"*21": "log in", "*22": "log out", "*23": "break", "*24": "ready"}


def trace_lines(entries: Iterable[dict[str, Any]], cast: Cast, t0: float) -> list[Line]:
    """The fake FreeSWITCH's side: callers, menus, desk phones."""
    out: list[Line] = []
    phones = [e for e in entries if e["kind"] == "register"]
    if phones:
        names = ", ".join(f"{e['ext']} ({cast.agent_at(e['ext'])})" for e in phones)
        out.append(Line(round(phones[0]["t"] - t0, 1), 0, 0, "switch", f"desk phones: {names}"))

    def add(e: dict[str, Any], text: str) -> None:
        out.append(Line(round(e["t"] - t0, 1), 0, len(out), "switch", text))

    for e in entries:
        kind = e["kind"]
        if kind == "call" and e.get("context") == "ccd_agents":
            code = e.get("to", "")
            agent = cast.agent_at(e["party"])
            cast.short[e["uuid"]] = agent
            add(e, f"{agent} dials {code} ({FEATURE_CODES.get(code, 'feature code')})")
        elif kind == "call":
            name = e.get("name") or e["party"]
            cast.short[e["uuid"]] = name
            cast.callers[e["uuid"]] = f"{name} ({e['party']})"
            add(e, f"caller {e['party']} ({name}) dials {e.get('to')}: welcome menu")
        elif kind == "ivr_choice":
            param = str(e.get("param", ""))
            department = param.split()[1].removeprefix("ccd_queue_") if " " in param else param
            add(e, f"{cast.who(e['uuid'])} presses {e['digits']} ({department})")
        elif kind == "answer" and e.get("leg") == "phone":
            add(e, f"{cast.agent_at(e['party'])} picks up the phone")
        elif kind == "abandon":
            add(e, f"{cast.who(e['uuid'])} gives up and hangs up")
        elif kind == "voicemail_left":
            add(e, f"{cast.who(e['uuid'])} leaves a message in voicemail box {e.get('box')}")
        elif kind == "party_hangup" and e.get("why") == "talk_done":
            add(e, f"{cast.agent_at(e['party'])} finishes the conversation and hangs up")
        elif kind == "scenario_end":
            add(e, "end of the scenario")
    return out


def daemon_lines(records: Iterable[dict[str, Any]], cast: Cast) -> list[tuple[float, str]]:
    """The daemon's side as (wall-clock epoch, text): queues, offers, bridges, presence."""
    out: list[tuple[float, str]] = []
    resynced = False
    for r in records:
        name, wall = r.get("event", ""), r["wall"]
        call = str(r.get("call", ""))
        who, agent = cast.who(call), str(r.get("agent", ""))
        text = ""
        if name == "daemon.resynced" and not resynced:
            resynced = True  # later ones are the periodic reconciliation: not news
            text = (
                f"connected to FreeSWITCH, subscribed, resynchronised "
                f"({r.get('registrations')} phones registered)"
            )
        elif name == "call.queued":
            text = f"{who} waits in queue {r.get('queue')} (music on hold)"
        elif name == "agent.offered":
            text = f"ringing {cast.agent_label(agent)} for {who}"
        elif name == "agent.no_answer" and r.get("cause") == "RING_TIMEOUT":
            text = f"{agent} did not answer in {cast.ring_time:g} s: next agent"
        elif name == "agent.no_answer":
            why = r.get("outcome") or r.get("cause")
            text = f"{agent}'s phone refused the call ({why}): next agent"
        elif name == "call.bridged":
            text = f"{agent} answered: {who} bridged to {agent}"
        elif name == "call.voicemail":
            tried = ", ".join(r.get("tried") or []) or "nobody"
            text = (
                f"nobody left in queue {r.get('queue')} (tried: {tried}): "
                f"{who} goes to voicemail box {r.get('box')}"
            )
        elif name == "call.abandoned":
            text = f"{who} left queue {r.get('queue')} while {r.get('phase')}: call abandoned"
        elif name == "call.ended":
            text = f"{who}'s call with {agent} is over ({r.get('by')} hung up)"
        elif name == "agent.state":
            text = _presence_text(r)
        elif r.get("level") in ("warning", "error", "critical") and not name.startswith("esl."):
            skip = ("event", "level", "timestamp", "wall")
            details = {k: v for k, v in r.items() if k not in skip}
            text = f"{r['level'].upper()} {name} {json.dumps(details)}"
        if text:
            out.append((wall, text))
    return out


def _presence_text(r: dict[str, Any]) -> str:
    agent, reason = r.get("agent"), r.get("reason")
    if reason == "break":
        return f"{agent} is on break: no calls offered"
    if reason == "ready":
        return f"{agent} is ready again: calls are offered"
    if reason in ("login", "logout"):
        return f"{agent} logged {reason.removeprefix('log')}"
    if r.get("activity") == "wrapup":
        return f"{agent} in wrap-up (after-call work)"
    if reason == "wrapup_done":
        return f"{agent} is free for the next call"
    return ""


def align(
    trace: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], scale: float
) -> Callable[[float], float]:
    """Wall-clock epoch -> the fake's switch epoch (see the module docstring).

    switch = wall * scale + offset. Every ``call.queued`` happens just after its caller's
    ``park``, so each pair bounds ``offset`` from below; the largest bound keeps every
    reaction after its cause and is off by the daemon's reaction time (milliseconds).
    """
    parked = {e["uuid"]: e["t"] for e in trace if e["kind"] == "park" and e.get("queue")}
    bounds = [
        parked[r["call"]] - r["wall"] * scale
        for r in records
        if r.get("event") == "call.queued" and r.get("call") in parked
    ]
    if bounds:
        offset = max(bounds)
    else:  # no call reached the daemon: assume the fake's clock started at its first line
        t0 = trace[0]["t"] if trace else 0.0
        offset = t0 * (1 - scale)
    return lambda wall: wall * scale + offset


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


def timeline(
    trace: list[dict[str, Any]],
    records: list[dict[str, Any]],
    operator: list[tuple[float, str]],
    cast: Cast,
    scale: float,
) -> list[Line]:
    """Both sides (and the operator's commands, by wall-clock time) in one time order."""
    t0 = trace[0]["t"] if trace else 0.0
    end = next((e["t"] - t0 for e in trace if e["kind"] == "scenario_end"), float("inf"))
    lines = trace_lines(trace, cast, t0)
    to_switch = align(trace, records, scale)
    for source, rank, items in (
        ("ops", 1, operator),
        ("ccd", 2, daemon_lines(records, cast)),
    ):
        for seq, (wall, text) in enumerate(items):
            t = to_switch(wall) - t0
            # Before 0: the daemon retrying the socket before the fake was up; at the end: the
            # fake going away (the half second absorbs the alignment's few milliseconds).
            if 0 <= t < end - 0.5:
                lines.append(Line(round(t, 1), rank, seq, source, text))
    return sorted(lines)


NOT_QUEUED, WAITING = "never queued by the daemon", "still waiting"


@dataclass
class Outcome:
    caller: str
    queue: str = ""
    result: str = NOT_QUEUED


def outcomes(records: list[dict[str, Any]], cast: Cast, scale: float) -> dict[str, Outcome]:
    """Per caller's uuid: where they went and how it ended, from the daemon's log."""
    result = {uuid: Outcome(label) for uuid, label in cast.callers.items()}
    queued: dict[str, float] = {}
    for r in records:
        o = result.get(str(r.get("call", "")))
        if o is None:
            continue
        name, waited = r.get("event"), (r["wall"] - queued.get(r["call"], r["wall"])) * scale
        if name == "call.queued":
            queued[r["call"]], o.queue, o.result = r["wall"], str(r.get("queue")), WAITING
        elif name == "call.bridged":
            o.result = f"talked to {r.get('agent')} after waiting {waited:.0f} s"
        elif name == "call.voicemail":
            o.result = f"voicemail box {r.get('box')} after {waited:.0f} s"
        elif name == "call.abandoned":
            o.result = f"gave up after waiting {waited:.0f} s"
    return result


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
    # The password reaches the daemon the way an operator's secret should: the environment.
    env = {**os.environ, "CCD_ESL_PASSWORD": password}
    env.pop("CCD_REDIS_URL", None)
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

    status = run_cli(["status", *cfg], env)
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
