"""`make bench`: the routing benchmark — the real daemon against the fake FreeSWITCH and Redis.

Theory of operation
-------------------
Each point (agents N, calls/s R) runs three processes on loopback, so every figure belongs
to one process and not to a shared interpreter:

* a private ``redis-server`` (no persistence);
* the fake FreeSWITCH (this script with ``--role fake``): N registered desk phones that
  answer after ``--answer-after`` seconds and hang up ``--talk`` seconds after answering,
  and, once told "go" on stdin, R callers a second (evenly spaced) for ``--seconds``
  seconds. Callers dial the queue extensions directly (``ccd_queue_sales`` ... in context
  ``ccd``, spread evenly), which skips the IVR's prompts: the figure is the daemon's
  routing, not the greeting. The fake times, on its own monotonic clock, the caller's
  CHANNEL_PARK and the arrival of the daemon's first ``bgapi originate`` for that caller
  (matched by the ``ccd_call`` variable in the dial string), and the bridge;
* the daemon: ``python -m ccd.cli run`` with a generated TOML (event format, wrap-up and
  ring time from the command line), its JSON log written to a file.

The orchestrator (this script without ``--role``) seeds the agents in Redis through
``AgentRepository`` (logged in; registration comes from the daemon's resync), starts the
daemon, waits for ``/readyz``, then samples the daemon's ``/metrics``, Redis ``INFO
commandstats`` and each process's CPU time (``/proc/<pid>/stat``) at the end of a warm-up
and at the end of the call stream. Every rate is over that steady window:

* latency p50/p99/max: queue entry (CHANNEL_PARK) → first originate received by the fake,
  for callers parked in the window (one clock: the fake's);
* routed calls/s: callers bridged to an agent in the window / window;
* ESL events/s: ``ccd_esl_events_total`` delta / window;
* Redis round trips per routed call: commands processed in the window (all but this
  script's INFO) / routed calls. The store sends no pipelines, so a command is a round trip;
* peak RSS: ``VmHWM`` of the daemon and of the fake, read just before they stop.

When a point is not sustained (routed < 95% of offered, or callers left without an offer),
the verdict names the process whose CPU use over the window is near one full core (each is
single-threaded), or the machine when all cores are busy. Every run is bounded: the stream
lasts ``--seconds``, a drain of ``--drain`` seconds follows, and every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench.py` from anywhere
    sys.path.insert(0, str(REPO))

POINTS = ((100, 20), (1000, 100), (5000, 200))
QUICK_POINT = (50, 10)
#: Queue extensions of freeswitch_conf/dialplan/ccd.xml and the tags each one asks for.
QUEUE_EXTENSIONS = (
    "ccd_queue_sales",
    "ccd_queue_support_internet",
    "ccd_queue_support_tv",
    "ccd_queue_payments",
    "ccd_queue_general",
)
#: Tag sets that cover each queue extension above (same order), and optional extras.
PRIMARY_TAGS = (
    ("sales",),
    ("support", "internet"),
    ("support", "tv"),
    ("billing",),
    ("general",),
)
EXTRA_TAGS = ("sales", "support", "internet", "tv", "billing", "general", "management", "french")
QUEUES = {
    "sales": {"tags": ["sales"]},
    "support": {"tags": ["support"]},
    "payments": {"tags": ["billing"]},
    "general": {"tags": ["general"]},
}
CCD_CALL_RE = re.compile(r"ccd_call=([0-9a-fA-F-]{36})")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOT_SUSTAINED = 0.95


# --------------------------------------------------------------------------- the fake


class Recorder:
    """Replaces the fake's Trace: keeps only what the benchmark needs (no growing list)."""

    def __init__(self) -> None:
        self.callers: set[str] = set()  # uuids of the callers we placed (not agent legs)
        self.park: dict[str, float] = {}
        self.first_originate: dict[str, float] = {}
        self.bridged: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.originates = 0

    def record(self, kind: str, **details: Any) -> dict[str, Any]:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "park" and details.get("uuid") in self.callers:
            self.park.setdefault(details["uuid"], time.monotonic())
        elif kind == "bridge":
            for uuid in (details.get("a"), details.get("b")):
                if uuid in self.park:
                    self.bridged.setdefault(uuid, time.monotonic())
        elif kind in ("originate_failed", "call_refused"):
            cause = f"{kind}:{details.get('cause')}"
            self.failures[cause] = self.failures.get(cause, 0) + 1
        return {}

    def on_bgapi(self, api_line: str) -> None:
        if api_line.startswith("originate"):
            self.originates += 1
            found = CCD_CALL_RE.search(api_line)
            if found:
                self.first_originate.setdefault(found.group(1), time.monotonic())

    def close(self) -> None:
        pass


def fake_main(args: argparse.Namespace) -> int:
    """The fake FreeSWITCH process: phones, then callers on "go", results on exit."""
    from gevent import monkey

    monkey.patch_all()
    import logging

    import gevent
    import structlog
    from gevent.fileobject import FileObject

    from ccd.fakeswitch import esl_server
    from ccd.fakeswitch.switch import FakeSwitch

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    recorder = Recorder()
    original_bgapi = esl_server._Connection._bgapi

    def timed_bgapi(conn: Any, api_line: str, job_uuid: str | None) -> None:
        recorder.on_bgapi(api_line)  # the moment the command left the socket buffer
        original_bgapi(conn, api_line, job_uuid)

    esl_server._Connection._bgapi = timed_bgapi  # type: ignore[method-assign]
    switch = FakeSwitch(time_scale=1.0, port=0, sessions_per_second=args.sps)
    switch.trace = recorder  # type: ignore[assignment]
    for i in range(args.agents):
        switch.add_phone(extension_of(i), answer_after=args.answer_after, hangup_after=args.talk)
    switch.start()
    print(json.dumps({"port": switch.address[1]}), flush=True)
    stdin = FileObject(sys.stdin, "r")
    if stdin.readline().strip() != "go":
        switch.stop()
        return 1
    t_go = time.monotonic()
    total = int(args.rate * args.seconds)
    rng = random.Random(7)
    placed = refused = 0
    for k in range(total):
        delay = t_go + k / args.rate - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        uuid = switch.place_call(
            f"+3620{k:07d}",
            f"Bench Caller {k}",
            destination=rng.choice(QUEUE_EXTENSIONS),
            context="ccd",
            hangup_after=args.talk + 5.0,  # a caller left over after its agent never lingers
        )
        if uuid is not None:
            recorder.callers.add(uuid)
        placed += uuid is not None
        refused += uuid is None
    t_end = time.monotonic()
    gevent.sleep(args.drain)
    result = {
        "t_go": t_go,
        "t_end": t_end,
        "placed": placed,
        "refused": refused,
        "originates": recorder.originates,
        "calls": [
            [recorder.park[u], recorder.first_originate.get(u), recorder.bridged.get(u)]
            for u in recorder.park
        ],
        "counts": recorder.counts,
        "failures": recorder.failures,
        "live_channels": len(switch.channels),
    }
    Path(args.result).write_text(json.dumps(result))
    print(json.dumps({"done": True}), flush=True)
    stdin.readline()  # "stop" (or EOF when the orchestrator is gone)
    switch.stop()
    return 0


# --------------------------------------------------------------------------- helpers


def extension_of(i: int) -> str:
    return str(20000 + i)


def agent_tags(i: int, rng: random.Random) -> list[str]:
    """Agent i covers one queue extension (round robin) plus 0-2 random extra tags."""
    tags = set(PRIMARY_TAGS[i % len(PRIMARY_TAGS)])
    tags.update(rng.sample(EXTRA_TAGS, rng.randint(0, 2)))
    return sorted(tags)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def read_line(proc: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line a child prints, or RuntimeError after ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"timed out waiting for {what}")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the fake switch exited while waiting for {what}")
            try:
                return json.loads(line)
            except ValueError:
                continue  # not ours (a stray print); keep reading
        elif proc.poll() is not None:
            raise RuntimeError(f"the fake switch exited ({proc.returncode}) before {what}")


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def daemon_metrics(port: int) -> dict[str, float]:
    status, text = http_get(port, "/metrics")
    out: dict[str, float] = {}
    if status != 200:
        return out
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def redis_commands(client: Any) -> tuple[int, dict[str, int]]:
    """Commands processed so far, not counting INFO (this script's own sampling)."""
    stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return sum(v for k, v in calls.items() if k != "info"), calls


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Redis:
    """A private, throw-away redis-server on loopback (mirrors tests/support/redis_fixtures)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed: run `make redis-server`")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir),
             "--save", "", "--appendonly", "no", "--logfile", str(workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

        def up() -> bool:
            try:
                return bool(self.client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(up, 10, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# --------------------------------------------------------------------------- one point


@dataclass
class Options:
    seconds: float = 15.0
    warmup: float = 3.0
    drain: float = 3.0
    answer_after: float = 0.5
    talk: float = 1.0
    wrapup: float = 1.0
    ring_time: float = 15.0
    event_format: str = "json"  # the daemon's default
    sps: int = 5000
    profile: Path | None = None
    keep: bool = False


@dataclass
class Result:
    agents: int
    rate: float
    placed_per_s: float = 0.0
    routed_per_s: float = 0.0
    offered_per_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    unoffered: int = 0
    events_per_s: float = 0.0
    redis_rt_per_call: float = float("nan")
    redis_per_s: float = 0.0
    daemon_rss_mb: float = float("nan")
    fake_rss_mb: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)
    max_inbox: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    top_redis: list[tuple[str, int]] = field(default_factory=list)
    verdict: str = ""


def seed_agents(redis_url: str, agents: int) -> None:
    """N agents in Redis, logged in; the daemon's resync marks their phones registered."""
    import logging

    import structlog

    from ccd.core import presence
    from ccd.store.agent import AgentRepository
    from ccd.store.redis_store import Store, connect_redis

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    client = connect_redis(redis_url)
    repo = AgentRepository(Store.create(client, "ccd:"))
    rng = random.Random(11)
    now = time.time()
    for i in range(agents):
        agent_id = f"a{i:05d}"
        repo.create(agent_id, extension_of(i), agent_tags(i, rng), now)
        repo.transition(agent_id, lambda s: presence.set_login(s, "login", now))
    client.close()


def write_config(path: Path, esl_port: int, redis_url: str, http_port: int, o: Options) -> None:
    lines = [
        "[esl]", 'host = "127.0.0.1"', f"port = {esl_port}", 'password = "ClueCon"',
        "command_timeout = 10", f'event_format = "{o.event_format}"',
        "[redis]", f'url = "{redis_url}"',
        "[http]", 'host = "127.0.0.1"', f"port = {http_port}",
        "[log]", 'format = "json"', 'level = "info"',
        "[daemon]", 'node_id = "bench"',
        "[routing]", f"ring_time = {o.ring_time}", f"wrapup_time = {o.wrapup}",
        "[voicemail]", "boxes = []",
    ]  # fmt: skip
    for name, queue in QUEUES.items():
        lines += [f"[queues.{name}]", "tags = [%s]" % ", ".join(f'"{t}"' for t in queue["tags"])]
    path.write_text("\n".join(lines) + "\n")


def run_point(agents: int, rate: float, o: Options, say: Any = print) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="ccd-bench-"))
    result = Result(agents, rate)
    redis = Redis(workdir)
    fake: subprocess.Popen[str] | None = None
    daemon: subprocess.Popen[bytes] | None = None
    try:
        fake_cmd = [
            sys.executable, str(Path(__file__).resolve()), "--role", "fake",
            "--agents", str(agents), "--rate", str(rate), "--seconds", str(o.seconds),
            "--drain", str(o.drain), "--answer-after", str(o.answer_after),
            "--talk", str(o.talk), "--sps", str(o.sps),
            "--result", str(workdir / "fake.json"),
        ]  # fmt: skip
        fake = subprocess.Popen(
            fake_cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(workdir / "fake.log", "w"),  # noqa: SIM115 - the child owns it
            text=True,
            cwd=REPO,
        )
        esl_port = read_line(fake, 60 + agents / 100, "the fake switch to listen")["port"]
        seed_agents(redis.url, agents)
        http_port = free_port()
        write_config(workdir / "ccd.toml", esl_port, redis.url, http_port, o)
        daemon_cmd = [sys.executable]
        if o.profile is not None:
            o.profile.mkdir(parents=True, exist_ok=True)
            prof = o.profile / f"daemon-{agents}-{int(rate)}.prof"
            daemon_cmd += ["-m", "cProfile", "-o", str(prof)]
        daemon_cmd += ["-m", "ccd.cli", "run", "-c", str(workdir / "ccd.toml")]
        daemon = subprocess.Popen(
            daemon_cmd,
            stdout=open(workdir / "daemon.log", "wb"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

        def ready() -> bool:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}); see {workdir}")
            return http_get(http_port, "/readyz")[0] == 200

        wait_for(ready, 60 + agents / 50, "the daemon to connect and resynchronise")
        pids = {"daemon": daemon.pid, "fake": fake.pid, "redis": redis.proc.pid}

        assert fake.stdin is not None
        fake.stdin.write("go\n")
        fake.stdin.flush()
        t_go = time.monotonic()
        max_inbox = 0.0
        samples: dict[str, tuple[float, dict[str, float], int, dict[str, int], dict]] = {}
        for label, at in (("start", t_go + o.warmup), ("end", t_go + o.seconds)):
            while time.monotonic() < at:
                time.sleep(min(0.5, max(0.0, at - time.monotonic())))
                max_inbox = max(max_inbox, daemon_metrics(http_port).get("ccd_inbox_depth", 0))
            commands, per_command = redis_commands(redis.client)
            samples[label] = (
                time.monotonic(),
                {name: cpu_seconds(pid) for name, pid in pids.items()},
                commands,
                per_command,
                daemon_metrics(http_port),
            )
        read_line(fake, o.drain + 60, "the fake switch's results")
        result.daemon_rss_mb = peak_rss_mb(daemon.pid)
        result.fake_rss_mb = peak_rss_mb(fake.pid)
        data = json.loads((workdir / "fake.json").read_text())
        summarise(result, data, samples, max_inbox, o)
    finally:
        if daemon is not None:
            stop_process(daemon)
        if fake is not None:
            if fake.poll() is None and fake.stdin is not None:
                try:
                    fake.stdin.write("stop\n")
                    fake.stdin.close()
                except OSError:
                    pass
            try:
                fake.wait(15)
            except subprocess.TimeoutExpired:
                stop_process(fake)
        redis.stop()
        if o.keep:
            say(f"  (kept logs in {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def summarise(
    result: Result,
    data: dict[str, Any],
    samples: dict[str, tuple[float, dict[str, float], int, dict[str, int], dict]],
    max_inbox: float,
    o: Options,
) -> None:
    """Fill ``result`` with the steady-window figures (see the module docstring)."""
    (t0, cpu0, cmd0, per0, met0), (t1, cpu1, cmd1, per1, met1) = samples["start"], samples["end"]
    window = t1 - t0
    calls = data["calls"]
    in_window = [c for c in calls if t0 <= c[0] < t1]
    latencies = sorted((c[1] - c[0]) * 1000.0 for c in in_window if c[1] is not None)
    if latencies:
        result.p50_ms = percentile(latencies, 50)
        result.p99_ms = percentile(latencies, 99)
        result.max_ms = latencies[-1]
    result.unoffered = sum(1 for c in in_window if c[1] is None)
    result.placed_per_s = len(in_window) / window
    result.offered_per_s = sum(1 for c in calls if c[1] is not None and t0 <= c[1] < t1) / window
    routed = sum(1 for c in calls if c[2] is not None and t0 <= c[2] < t1)
    result.routed_per_s = routed / window
    events = met1.get("ccd_esl_events_total", 0.0) - met0.get("ccd_esl_events_total", 0.0)
    result.events_per_s = events / window
    result.redis_per_s = (cmd1 - cmd0) / window
    if routed:
        result.redis_rt_per_call = (cmd1 - cmd0) / routed
    deltas = {k: per1.get(k, 0) - per0.get(k, 0) for k in per1 if k != "info"}
    result.top_redis = sorted(deltas.items(), key=lambda kv: -kv[1])[:6]
    result.cpu = {name: 100.0 * (cpu1[name] - cpu0[name]) / window for name in cpu1}
    result.max_inbox = max_inbox
    result.failures = data["failures"]
    result.verdict = verdict(result)


def verdict(r: Result) -> str:
    sustained = r.routed_per_s >= NOT_SUSTAINED * r.rate and r.unoffered == 0
    busy = {name: pct for name, pct in r.cpu.items() if pct >= 85.0}
    total = sum(r.cpu.values())
    cores = os.cpu_count() or 1
    if sustained:
        return "sustained"
    if r.max_inbox >= r.rate:
        # More than a second of events queued in the dispatcher: the daemon is behind.
        return (
            f"NOT sustained: daemon behind (inbox max {r.max_inbox:.0f}, "
            f"daemon CPU {r.cpu.get('daemon', 0):.0f}%; profile it with --profile)"
        )
    if busy:
        worst = max(busy, key=lambda n: busy[n])
        return f"NOT sustained: {worst} CPU-bound ({busy[worst]:.0f}% of a core)"
    if total >= 85.0 * cores:
        return f"NOT sustained: machine CPU saturated ({total:.0f}% of {cores} cores)"
    return "NOT sustained: no process CPU-bound (see failures / inbox)"


# --------------------------------------------------------------------------- output


def describe(r: Result, say: Any = print) -> None:
    cpu = ", ".join(f"{name} {pct:.0f}%" for name, pct in r.cpu.items())
    say(f"  routed {r.routed_per_s:.1f}/s, first offers {r.offered_per_s:.1f}/s, "
        f"of {r.placed_per_s:.1f}/s placed; "
        f"latency p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms max {r.max_ms:.1f} ms; "
        f"unoffered {r.unoffered}")  # fmt: skip
    say(f"  ESL events {r.events_per_s:.0f}/s; Redis {r.redis_per_s:.0f} commands/s, "
        f"{r.redis_rt_per_call:.1f} round trips/call "
        f"(top: {', '.join(f'{k} {v}' for k, v in r.top_redis)})")  # fmt: skip
    say(f"  CPU over the window: {cpu}; daemon inbox max {r.max_inbox:.0f}; "
        f"failures {r.failures or 'none'}")  # fmt: skip
    say(f"  {r.verdict}")


def table(results: Sequence[Result], o: Options) -> str:
    header = (
        "agents", "calls/s", "routed/s", "offered/s", "p50 ms", "p99 ms", "max ms", "ESL ev/s",
        "Redis RT/call", "daemon RSS MB", "fake RSS MB", "CPU d/f/r %", "verdict",
    )  # fmt: skip
    rows = [header]
    for r in results:
        cpu = "/".join(f"{r.cpu.get(n, 0):.0f}" for n in ("daemon", "fake", "redis"))
        rows.append((
            str(r.agents), f"{r.rate:g}", f"{r.routed_per_s:.1f}", f"{r.offered_per_s:.1f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}", f"{r.max_ms:.1f}", f"{r.events_per_s:.0f}",
            f"{r.redis_rt_per_call:.1f}", f"{r.daemon_rss_mb:.0f}", f"{r.fake_rss_mb:.0f}",
            cpu, r.verdict,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    notes = (
        f"Window: {o.seconds - o.warmup:g} s steady (after {o.warmup:g} s warm-up) of "
        f"{o.seconds:g} s evenly spaced callers straight into queue extensions (no IVR); "
        f"phones answer after {o.answer_after:g} s, talk {o.talk:g} s, wrap-up {o.wrapup:g} s; "
        f"ESL event format {o.event_format}; {os.cpu_count()} CPUs shared by daemon, fake "
        "and redis-server. Latency = caller CHANNEL_PARK -> first originate at the fake."
    )
    return "\n".join(lines) + "\n" + notes


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"one small point {QUICK_POINT}")
    p.add_argument("--agents", type=int, help="one custom point: number of agents")
    p.add_argument("--rate", type=float, help="one custom point: calls per second")
    p.add_argument("--seconds", type=float, default=None, help="length of the call stream")
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--answer-after", type=float, default=0.5)
    p.add_argument("--talk", type=float, default=1.0)
    p.add_argument("--wrapup", type=float, default=1.0)
    p.add_argument("--event-format", choices=("plain", "json"), default="json")
    p.add_argument("--sps", type=int, default=5000, help="the fake's sessions-per-second")
    p.add_argument("--profile", type=Path, help="run the daemon under cProfile, output here")
    p.add_argument("--keep", action="store_true", help="keep each run's logs and config")
    p.add_argument("--role", choices=("fake",), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role == "fake":
        return fake_main(args)
    if (args.agents is None) != (args.rate is None):
        print("bench.py: --agents and --rate go together", file=sys.stderr)
        return 2
    if args.agents is not None:
        if args.agents < 1 or args.rate <= 0:
            print("bench.py: --agents must be >= 1 and --rate > 0", file=sys.stderr)
            return 2
        points: Sequence[tuple[int, float]] = [(args.agents, args.rate)]
    elif args.quick:
        points = [QUICK_POINT]
    else:
        points = POINTS
    seconds = args.seconds if args.seconds is not None else (6.0 if args.quick else 15.0)
    warmup = args.warmup if args.warmup is not None else min(3.0, seconds / 3)
    if not 0 <= warmup < seconds:
        print("bench.py: need 0 <= --warmup < --seconds", file=sys.stderr)
        return 2
    o = Options(
        seconds=seconds, warmup=warmup, drain=args.drain, answer_after=args.answer_after,
        talk=args.talk, wrapup=args.wrapup, event_format=args.event_format, sps=args.sps,
        profile=args.profile, keep=args.keep,
    )  # fmt: skip
    results = []
    for agents, rate in points:
        busy = rate * (o.answer_after + o.talk + o.wrapup)
        print(f"== {agents} agents, {rate:g} calls/s for {o.seconds:g} s "
              f"(~{busy:.0f} agents busy at once)", flush=True)  # fmt: skip
        try:
            result = run_point(agents, rate, o)
        except RuntimeError as exc:
            print(f"  failed: {exc}", flush=True)
            continue
        describe(result)
        results.append(result)
    if results:
        print()
        print(table(results, o))
    return 0 if len(results) == len(points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
