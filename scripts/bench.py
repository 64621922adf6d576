"""`make bench`: the routing benchmark — the real daemon against the fake FreeSWITCH and Redis.

Theory of operation
-------------------
Each point (agents N, offered calls/s R, waiting backlog B, daemons D) runs its own
processes on loopback, so every figure belongs to one process:

* a private ``redis-server`` (no persistence);
* the fake FreeSWITCH (this script with ``--role fake``): N desk phones that answer after
  ``--answer-after`` s and hang up ``--talk`` s after answering; on "backlog" it places
  the waiting callers, on "go" R callers a second (evenly spaced) for ``--seconds`` s.
  Callers dial the queue extensions directly (``ccd_queue_sales`` ... in context ``ccd``,
  spread evenly over four queues), which skips the IVR's prompts: the figure is the
  daemon's routing, not the greeting. The fake times, on its own monotonic clock, the
  caller's CHANNEL_PARK (the moment it is emitted: queue entry) and the moment the
  daemon's first ``bgapi originate`` for that caller (matched by the ``ccd_call`` variable
  of the dial string) is read from the socket, and the bridge;
* D daemons: ``python -m ccd.cli run`` with a generated TOML (all queues with
  ``overflow_time = 0``, so nobody is offered a callback mid-run), JSON log to a file.

The orchestrator (this script) seeds the agents in Redis through ``AgentRepository``
(logged in; registration comes from the daemon's resync), starts the daemons, waits for
``/readyz``, fills the backlog, then samples each process's CPU time (``/proc/<pid>/stat``)
and Redis ``INFO stats commandstats`` at the end of a warm-up and at the end of the call
stream. Every rate is over that steady window.

The backlog: B callers waiting in ANOTHER queue (``payments``, tag ``billing``) for the
whole run, the load of a busy center on the engine. The current daemon keeps a caller
waiting (rather than sending them to voicemail) only while some agent who could take the
call is logged in and registered, so four ``billing`` agents are seeded whose phones
answer at once and never hang up: the first four backlog callers are bridged to them
and B more wait. The stream's agents never carry ``billing``. The fake's park timeout
(``ccd_park_timeout_s``) is raised to an hour so FreeSWITCH's own safety net does not
move them either. The bench waits (bounded) until Redis shows B callers in the queue
and reports how many still wait at the end (``backlog_waiting_end``).

Figures of a point (``--json`` prints them as one object; ``null`` when not measurable):

* latency p50/p95/p99/max: CHANNEL_PARK → first originate read by the fake, for callers
  parked in the window (one clock: the fake's);
* routed calls/s: callers bridged to an agent in the window / window;
* CPU ms per routed call of the daemons (summed), the fake (its call generator
  included) and redis-server: CPU time over the window / calls routed in the window;
* Redis round trips per routed call, counted from the server's view (below);
* RSS: the daemon's peak (``VmHWM``) and its RSS at the end (``VmRSS``);
* verdict: sustained when routed ≥ 95% of what the agents can take (R, or N / cycle time
  when that is less) and every caller parked in the window got an offer.

Counting Redis round trips
--------------------------
INFO commandstats counts every command, also those run INSIDE a Lua script and inside
MULTI, so it overstates what a client pays for. A client pays one network round trip per
request it sends and then waits on: one command, one pipeline, one MULTI/EXEC, one
EVALSHA however many commands the script runs. Redis counts the reads it does on client
sockets in ``INFO stats`` ``total_reads_processed``; a synchronous client's request
arrives in one read (a redis-py pipeline is written at once), so the delta of that counter
is the number of client round trips. This script's own INFO calls (one per sample, on its
own connection) are subtracted. Chosen over MONITOR (which costs Redis a lot of CPU and
cannot see pipeline boundaries) and over a counting proxy (a Python proxy in the path
would add a core's worth of CPU and latency at 500 calls/s). Limits: a request larger
than Redis's 16 KB read buffer (a pipeline of hundreds of commands, an MGET of thousands
of keys at resync) counts as several reads, so the figure can only overstate.
:func:`round_trip_self_test` (``--self-test``, and tests/test_bench_smoke.py) checks it on
the Redis binary in use: N single commands = N, a pipeline of 10 = 1, MULTI/EXEC of 10
= 1, one EVALSHA running 5 commands = 1. ``redis_commands_per_call`` (commandstats) is
printed beside it for comparison.

``--commands`` records Redis MONITOR over one sampled call's life (queue entry to the end
of wrap-up) and prints the commands naming that call's uuid, its agent's, and the Lua
commands each script ran (indented): what one call costs.

Other modes: ``--saturate`` (offered load raised until routed calls/s stops following,
then one point at twice that: routed calls/s should hold while latency grows),
``--daemons 2`` (two daemons on one Redis and one fake; ``--scaling`` runs one point
with one daemon, then two, and prints the ratio), ``--resync-interval S`` (periodic
resyncs during the run: each starts when the fake reads the daemon's ``show
channels``, ends at the daemon's ``daemon.resynced`` log line; ``resync_stall_ms`` is the
worst latency of a caller parked while one ran; ``resync_step_ms`` the longest single
step a resync in the window ran on the dispatcher (from that log line), what it held
everything else up),
``--matrix`` (the issue's whole matrix), ``--profile DIR`` (py-spy samples the daemon
and the fake over the window: CPU only, idle waits left out; the top functions are
printed in ms per routed call). Every run is bounded: every wait has a deadline, the
stream lasts ``--seconds``, a drain of ``--drain`` s follows. On this 2-core machine the
three or four processes share the cores (``--pin`` puts the daemon on CPU 0, fake and
Redis on CPU 1).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench.py` from anywhere
    sys.path.insert(0, str(REPO))

#: `make bench` (a few minutes): (agents, calls/s, backlog).
DEFAULT_POINTS = ((100, 50, 0), (5000, 200, 0), (5000, 200, 2000), (5000, 500, 0))
MATRIX_AGENTS = (100, 5000, 20000)
MATRIX_RATES = (50, 200, 500)
MATRIX_BACKLOGS = (0, 2000)
QUICK_POINT = (50, 10, 0)
#: Queue extensions of freeswitch_conf/dialplan/ccd.xml the stream's callers dial, and
#: the tags each one asks for (same order). ``payments`` is kept for the backlog.
QUEUE_EXTENSIONS = (
    "ccd_queue_sales",
    "ccd_queue_support_internet",
    "ccd_queue_support_tv",
    "ccd_queue_general",
)
PRIMARY_TAGS = (("sales",), ("support", "internet"), ("support", "tv"), ("general",))
EXTRA_TAGS = ("sales", "support", "internet", "tv", "general", "management", "french")
BACKLOG_EXTENSION = "ccd_queue_payments"
BACKLOG_QUEUE = "payments"
BACKLOG_TAG = "billing"
#: Agents that take the first backlog callers and keep them (phones that never hang up).
BACKLOG_AGENTS = 4
QUEUES = {
    "sales": ["sales"],
    "support": ["support"],
    "payments": ["billing"],
    "general": ["general"],
}
CCD_CALL_RE = re.compile(r"ccd_call=([0-9a-fA-F-]{36})")
#: --commands: one caller placed this long after the drain, when nothing else happens.
PROBE_DELAY = 1.0
PROBE_NUMBER = "+3629999999"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOT_SUSTAINED = 0.95
#: Seconds of an agent's cycle beyond answer + talk + wrap-up (ring set-up, events).
CYCLE_SLACK = 0.1


# --------------------------------------------------------------------------- the fake


class Recorder:
    """Replaces the fake's Trace: keeps only what the benchmark needs."""

    def __init__(self) -> None:
        self.callers: set[str] = set()  # the stream's callers (not agent legs, not backlog)
        self.backlog: set[str] = set()
        self.park: dict[str, float] = {}
        self.first_originate: dict[str, float] = {}
        self.bridged: dict[str, float] = {}
        self.backlog_left: dict[str, str] = {}  # backlog caller -> why it stopped waiting
        self.failures: dict[str, int] = {}
        self.originates = 0
        self.resync_starts: list[float] = []

    def record(self, kind: str, **details: Any) -> dict[str, Any]:
        uuid = details.get("uuid")
        if kind == "park":
            if uuid in self.callers:
                self.park.setdefault(uuid, time.monotonic())
        elif kind == "bridge":
            for leg in (details.get("a"), details.get("b")):
                if leg in self.park:
                    self.bridged.setdefault(leg, time.monotonic())
                elif leg in self.backlog:
                    self.backlog_left.setdefault(leg, "bridged")
        elif kind in ("transfer", "hangup", "voicemail", "abandon") and uuid in self.backlog:
            self.backlog_left.setdefault(uuid, kind)  # no longer waiting (bridged counts first)
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


#: The daemons' HTTP token, for the /events client of --feed.
FEED_TOKEN = "bench-token-0123456789abcdef"


def _patch_esl(recorder: Recorder) -> None:
    """Time each bgapi as the fake reads it (wrap the ESL connection's ``_bgapi``), and
    each ``show channels`` (a resync starting, asked as bgapi or api: wrap both).

    The fake is being split into modules; find the class wherever it lives."""
    import importlib
    import pkgutil

    import ccd.fakeswitch as package

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and "_bgapi" in vars(obj) and obj.__module__ == info.name:
                bgapi, api = obj._bgapi, getattr(obj, "_api", None)

                def timed_bgapi(conn: Any, api_line: str, *args: Any, _o: Any = bgapi) -> Any:
                    recorder.on_bgapi(api_line)  # the moment the command left the socket
                    if api_line.startswith("show channels"):  # a resync asks with bgapi
                        recorder.resync_starts.append(time.monotonic())
                    return _o(conn, api_line, *args)

                def timed_api(conn: Any, api_line: str, *args: Any, _o: Any = api) -> Any:
                    if api_line.startswith("show channels"):
                        recorder.resync_starts.append(time.monotonic())
                    return _o(conn, api_line, *args)

                obj._bgapi = timed_bgapi
                if api is not None:
                    obj._api = timed_api
                return
    raise RuntimeError("no ESL connection class with _bgapi in ccd.fakeswitch")


def fake_main(args: argparse.Namespace) -> int:
    """The fake FreeSWITCH process: phones, backlog and callers on command, results on exit."""
    from gevent import monkey

    monkey.patch_all()
    import logging

    import gevent
    import structlog
    from gevent.fileobject import FileObject

    from ccd.fakeswitch.switch import FakeSwitch

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    recorder = Recorder()
    _patch_esl(recorder)
    switch = FakeSwitch(
        time_scale=1.0,
        port=0,
        sessions_per_second=args.sps,
        conf_overrides={"ccd_park_timeout_s": "3600"},
    )
    switch.trace = recorder  # type: ignore[assignment]
    for i in range(args.agents):
        switch.add_phone(extension_of(i), answer_after=args.answer_after, hangup_after=args.talk)
    if args.backlog:
        for i in range(BACKLOG_AGENTS):
            switch.add_phone(backlog_extension_of(i), answer_after=0.05, hangup_after=None)
    switch.start()
    say = print
    say(json.dumps({"port": switch.address[1]}), flush=True)
    stdin = FileObject(sys.stdin, "r")

    def paced(total: int, rate: float, place: Callable[[int], None]) -> tuple[float, float]:
        t0 = time.monotonic()
        for k in range(total):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            place(k)
        return t0, time.monotonic()

    command = stdin.readline().strip()
    if command == "backlog":

        def place_backlog(k: int) -> None:
            uuid = switch.place_call(
                f"+3630{k:07d}", f"Waiting Caller {k}", destination=BACKLOG_EXTENSION, context="ccd"
            )
            if uuid is not None:
                recorder.backlog.add(uuid)

        paced(args.backlog + BACKLOG_AGENTS, args.backlog_rate, place_backlog)
        say(json.dumps({"backlog_placed": len(recorder.backlog)}), flush=True)
        command = stdin.readline().strip()
    if command != "go":
        switch.stop()
        return 1
    switch.settle()  # the phones and the backlog out of the cycle collector's full passes
    rng = random.Random(7)

    def place(k: int) -> None:
        uuid = switch.place_call(
            f"+3620{k:07d}",
            f"Bench Caller {k}",
            destination=rng.choice(QUEUE_EXTENSIONS),
            context="ccd",
            hangup_after=args.talk + 5.0,  # a caller whose agent never hangs up does not linger
        )
        if uuid is not None:
            recorder.callers.add(uuid)

    t_go, t_end = paced(int(args.rate * args.seconds), args.rate, place)
    gevent.sleep(args.drain)
    probe = None
    if args.probe:  # one more caller once all is quiet, for --commands
        gevent.sleep(PROBE_DELAY)
        uuid = switch.place_call(PROBE_NUMBER, "Probe Caller", destination=QUEUE_EXTENSIONS[0],
                                 context="ccd", hangup_after=args.talk + 5.0)  # fmt: skip
        probe = [uuid, PROBE_NUMBER]
        gevent.sleep(args.answer_after + args.talk + args.wrapup + 1.5)
    live = switch.channels
    result = {
        "t_go": t_go,
        "t_end": t_end,
        "placed": len(recorder.callers),
        "originates": recorder.originates,
        "calls": [
            [u, recorder.park[u], recorder.first_originate.get(u), recorder.bridged.get(u)]
            for u in recorder.park
        ],
        "failures": recorder.failures,
        "backlog_placed": len(recorder.backlog),
        "backlog_waiting_end": sum(
            1 for u in recorder.backlog if u in live and u not in recorder.backlog_left
        ),
        "backlog_left": _count(recorder.backlog_left.values()),
        "live_channels": len(live),
        "resync_starts": recorder.resync_starts,
        "probe": probe,
    }
    Path(args.result).write_text(json.dumps(result))
    say(json.dumps({"done": True}), flush=True)
    stdin.readline()  # "stop" (or EOF when the orchestrator is gone)
    switch.stop()
    return 0


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# --------------------------------------------------------------------------- helpers


def extension_of(i: int) -> str:
    return str(20000 + i)


def backlog_extension_of(i: int) -> str:
    return str(19900 + i)


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


def rss_mb(pid: int, key: str = "VmHWM") -> float | None:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of a live process in MB, None when gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return None


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


def tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def daemon_metrics(port: int) -> dict[str, float]:
    """The daemon's /metrics (it does not touch Redis, so sampling it costs no round trip)."""
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


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# --------------------------------------------------------------------------- Redis


class Redis:
    """A private, throw-away redis-server on loopback (mirrors tests/support/redis_fixtures).

    ``client`` is the benchmark's own connection; :meth:`sample` counts its requests so
    they can be taken out of the round-trip count."""

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

        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

        def up() -> bool:
            try:
                return bool(self.client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(up, 10, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def sample(self) -> RedisSample:
        """One request (so one read on the server): reads so far and commands per name."""
        info = self.client.execute_command("INFO", "stats", "commandstats")
        if isinstance(info, bytes | str):  # RESP3 clients may hand the raw text back
            import redis

            info = redis.client.parse_info(info if isinstance(info, str) else info.decode())
        calls = {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_")
        }
        return RedisSample(int(info["total_reads_processed"]), calls)

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)


@dataclass(frozen=True)
class RedisSample:
    reads: int
    calls: dict[str, int]


#: Requests the benchmark itself sends between two samples: the second sample's INFO.
OWN_READS_PER_SAMPLE = 1


def round_trips_between(a: RedisSample, b: RedisSample) -> int:
    """Client round trips of everyone but the benchmark between two samples."""
    return max(0, b.reads - a.reads - OWN_READS_PER_SAMPLE)


def round_trip_self_test(redis: Redis) -> dict[str, tuple[int, int]]:
    """The counter against known traffic: {case: (expected, counted)}.

    A second connection does the traffic (warmed up first: a new connection's handshake
    is a round trip of its own)."""
    import redis as redis_py

    other = redis_py.Redis(host="127.0.0.1", port=redis.port, socket_timeout=10)
    other.ping()
    script = other.register_script(
        "for i = 1, 5 do redis.call('INCR', KEYS[1]) end return redis.call('GET', KEYS[1])"
    )
    script(keys=["bench:selftest:script"])  # loads it (NOSCRIPT, SCRIPT LOAD, EVALSHA)

    def singles() -> None:
        for i in range(7):
            other.set(f"bench:selftest:{i}", i)

    def pipeline(transaction: bool) -> Callable[[], None]:
        def run() -> None:
            pipe = other.pipeline(transaction=transaction)
            for i in range(10):
                pipe.get(f"bench:selftest:{i}")
            pipe.execute()

        return run

    cases: list[tuple[str, int, Callable[[], Any]]] = [
        ("7 single commands", 7, singles),
        ("a pipeline of 10", 1, pipeline(False)),
        ("MULTI/EXEC of 10", 1, pipeline(True)),
        ("one EVALSHA running 5 commands", 1, lambda: script(keys=["bench:selftest:script"])),
        ("nothing", 0, lambda: None),
    ]
    out = {}
    for name, expected, run in cases:
        before = redis.sample()
        run()
        out[name] = (expected, round_trips_between(before, redis.sample()))
    other.delete(*[f"bench:selftest:{i}" for i in range(7)], "bench:selftest:script")
    other.close()
    return out


class Monitor:
    """Redis MONITOR on a raw socket in a thread, for ``--commands``: bounded in lines
    and time."""

    LINE = re.compile(rb"^\+(\d+\.\d+) \[\d+ ([^\]]+)\] (.*)$")
    ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')

    def __init__(
        self, port: int, seconds: float, *, start_at: float = 0.0, max_lines: int = 500_000
    ) -> None:
        self.lines: list[tuple[float, str, list[str]]] = []
        self._port, self._seconds, self._max = port, seconds, max_lines
        self._start_at = start_at
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        time.sleep(max(0.0, self._start_at - time.monotonic()))
        deadline = time.monotonic() + self._seconds
        with socket.create_connection(("127.0.0.1", self._port), timeout=1.0) as sock:
            sock.sendall(b"MONITOR\r\n")
            buf = b""
            while time.monotonic() < deadline and len(self.lines) < self._max:
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not data:
                    return
                buf += data
                *complete, buf = buf.split(b"\r\n")
                for raw in complete:
                    found = self.LINE.match(raw)
                    if found:
                        args = [
                            a.decode("utf-8", "replace") for a in self.ARG.findall(found.group(3))
                        ]
                        self.lines.append((float(found.group(1)), found.group(2).decode(), args))


def commands_of_call(
    lines: Sequence[tuple[float, str, list[str]]], call_uuid: str, number: str, span: float
) -> list[tuple[float, str, list[str], str]]:
    """MONITOR lines from the first naming the call's uuid until ``span`` seconds later,
    each tagged ``call`` or ``bg`` (other work meanwhile: ticks, renewals).

    ``call``: names the uuid, the caller's number or an agent reserved for it; or comes
    within 2 ms of a ``call`` command (the dispatcher handles one event at a time, so a
    burst belongs to one event: the candidate search names no call); a MULTI ... EXEC
    block takes the tag of what is inside. A script's Lua commands (client ``lua``)
    follow it with its tag. Meant for a quiet moment (``--commands`` places the call so)."""
    first = next((i for i, ln in enumerate(lines) if any(call_uuid in a for a in ln[2])), None)
    if first is None:
        return []
    t_end = lines[first][0] + span
    window = [ln for ln in lines[first:] if ln[0] <= t_end]
    agents: set[str] = set()
    for _ts, client, args in window:
        joined = " ".join(args)
        if client != "lua" and call_uuid in joined:
            agents.update(re.findall(r"agent:(a\d{5}|b\d{3})\b", joined))
    names = re.compile("|".join(re.escape(x) for x in (call_uuid, number, *agents)))
    tags: list[str] = []
    last_call = -1.0
    for ts, client, args in window:
        if client == "lua":
            tags.append(tags[-1] if tags else "bg")
            continue
        mine = bool(names.search(" ".join(args))) or ts - last_call <= 0.002
        tags.append("call" if mine else "bg")
        if mine:
            last_call = ts
    for i, (_ts, _client, args) in enumerate(window):  # MULTI ... EXEC: one tag
        if args[:1] == ["MULTI"]:
            j = next((k for k in range(i + 1, len(window)) if window[k][2][:1] == ["EXEC"]), i)
            tag = "call" if "call" in tags[i + 1 : j] else tags[i]
            tags[i] = tags[j] = tag
    return [(ts, client, args, tag) for (ts, client, args), tag in zip(window, tags, strict=True)]


def round_trips_of(picked: Sequence[tuple[float, str, list[str], str]], tag: str) -> int:
    """Requests among ``picked`` with ``tag``: MULTI ... EXEC counts once, Lua not at all."""
    count, in_multi = 0, False
    for _ts, client, args, t in picked:
        if client == "lua" or t != tag:
            continue
        name = args[0].upper() if args else ""
        if name == "MULTI":
            in_multi = True
            count += 1
        elif name == "EXEC":
            in_multi = False
        elif not in_multi:
            count += 1
    return count


def format_commands(picked: Sequence[tuple[float, str, list[str], str]]) -> str:
    if not picked:
        return "  (no command named the sampled call)"
    t0 = picked[0][0]
    out = []
    for ts, client, args, tag in picked:
        shown = " ".join(a if len(a) <= 60 else a[:57] + "..." for a in args[:8])
        if len(args) > 8:
            shown += f" ... (+{len(args) - 8} args)"
        indent = "        lua: " if client == "lua" else "  "
        out.append(f"  {tag:4} +{(ts - t0) * 1000:8.1f} ms {indent}{shown}")
    inner = sum(1 for _, client, _, tag in picked if client == "lua" and tag == "call")
    out.append(
        f"  = {round_trips_of(picked, 'call')} round trips for the call (MULTI...EXEC = 1; "
        f"{inner} more commands inside its scripts); {round_trips_of(picked, 'bg')} other "
        "requests meanwhile (bg)"
    )
    return "\n".join(out)


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
    daemons: int = 1
    backlog_rate: float = 500.0
    resync_interval: float = 60.0  # the daemon's default
    commands: bool = False
    profile: Path | None = None
    pin: bool = False
    keep: bool = False
    feed: bool = False  # one /events client reading the whole run (curl)


@dataclass
class Result:
    agents: int
    rate: float
    backlog: int = 0
    daemons: int = 1
    window_s: float = 0.0
    placed_per_s: float = 0.0
    routed_per_s: float = 0.0
    first_offers_per_s: float = 0.0
    agent_capacity_per_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    unoffered: int = 0
    routed: int = 0
    redis_round_trips_per_call: float | None = None
    redis_commands_per_call: float | None = None
    redis_round_trips_per_s: float = 0.0
    daemon_cpu_ms_per_call: float | None = None
    fake_cpu_ms_per_call: float | None = None
    redis_cpu_ms_per_call: float | None = None
    cpu_pct: dict[str, float] = field(default_factory=dict)
    rss_mb: float | None = None
    rss_end_mb: float | None = None
    fake_rss_mb: float | None = None
    events_per_s: float = 0.0
    inbox_max: float = 0.0
    backlog_waiting_start: int | None = None
    backlog_waiting_end: int | None = None
    backlog_fill_s: float | None = None
    resyncs: int = 0
    resync_ms: float | None = None
    resync_stall_ms: float | None = None
    resync_step_ms: float | None = None
    max_ms_outside_resync: float | None = None
    failures: dict[str, int] = field(default_factory=dict)
    top_redis: list[tuple[str, int]] = field(default_factory=list)
    note: str = ""
    feed_events: int | None = None  # events the /events client received (--feed)
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in data.items()}


def seed_agents(redis_url: str, agents: int, backlog: bool) -> None:
    """N agents in Redis, logged in; the daemon's resync marks their phones registered."""
    import logging

    import structlog

    from ccd.core import presence
    from ccd.store.agent import AgentRepository
    from ccd.store.redis_store import Store, connect_redis

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    client = connect_redis(redis_url, socket_timeout=30)
    repo = AgentRepository(Store.create(client, "ccd:"))
    rng = random.Random(11)
    now = time.time()
    people = [(f"a{i:05d}", extension_of(i), agent_tags(i, rng)) for i in range(agents)]
    if backlog:
        people += [(f"b{i:03d}", backlog_extension_of(i), [BACKLOG_TAG]) for i in range(4)]
    for agent_id, ext, tags in people:
        repo.create(agent_id, ext, tags, now)
        repo.transition(agent_id, lambda s: presence.set_login(s, "login", now))
    client.close()


def write_config(
    path: Path, esl_port: int, redis_url: str, http_port: int, node: str, o: Options
) -> None:
    lines = [
        "[esl]", 'host = "127.0.0.1"', f"port = {esl_port}", 'password = "ClueCon"',
        "command_timeout = 10", f'event_format = "{o.event_format}"',
        "[redis]", f'url = "{redis_url}"',
        "[http]", 'host = "127.0.0.1"', f"port = {http_port}", f'token = "{FEED_TOKEN}"',
        "[log]", 'format = "json"', 'level = "info"',
        "[daemon]", f'node_id = "{node}"',
        "[routing]", f"ring_time = {o.ring_time}", f"wrapup_time = {o.wrapup}",
        f"resync_interval = {o.resync_interval}",
        "[voicemail]", "boxes = []",
    ]  # fmt: skip
    for name, tags in QUEUES.items():
        tag_list = ", ".join(f'"{t}"' for t in tags)
        lines += [f"[queues.{name}]", f"tags = [{tag_list}]", "overflow_time = 0"]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class _Daemon:
    proc: subprocess.Popen[bytes]
    http_port: int
    log: Path


def _pin(pid: int, cpu: int) -> None:
    with contextlib.suppress(OSError):
        if cpu < (os.cpu_count() or 1):
            os.sched_setaffinity(pid, {cpu})


def run_point(
    agents: int, rate: float, o: Options, backlog: int = 0, say: Callable[..., None] = print
) -> Result:
    """One point of the benchmark; RuntimeError when it could not be measured."""
    workdir = Path(tempfile.mkdtemp(prefix="ccd-bench-"))
    result = Result(agents, rate, backlog, o.daemons)
    redis = Redis(workdir)
    fake: subprocess.Popen[str] | None = None
    daemons: list[_Daemon] = []
    feed: subprocess.Popen[bytes] | None = None
    monitor: Monitor | None = None
    try:
        fake_cmd = [sys.executable,
            str(Path(__file__).resolve()), "--role", "fake",
            "--agents", str(agents), "--rate", str(rate), "--seconds", str(o.seconds),
            "--backlog", str(backlog), "--backlog-rate", str(o.backlog_rate),
            "--drain", str(o.drain), "--answer-after", str(o.answer_after),
            "--talk", str(o.talk), "--sps", str(o.sps),
            "--result", str(workdir / "fake.json"),
        ]  # fmt: skip
        if o.commands:
            fake_cmd += ["--probe", "--wrapup", str(o.wrapup)]
        fake = subprocess.Popen(
            fake_cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(workdir / "fake.log", "w"),  # noqa: SIM115 - the child owns it
            text=True,
            cwd=REPO,
        )
        esl_port = read_line(fake, 60 + agents / 100, "the fake switch to listen")["port"]
        seed_agents(redis.url, agents, backlog > 0)
        for n in range(o.daemons):
            http_port = free_port()
            config = workdir / f"ccd{n}.toml"
            write_config(config, esl_port, redis.url, http_port, f"bench-{n + 1}", o)
            cmd = [sys.executable, "-m", "ccd.cli", "run", "-c", str(config)]
            log_path = workdir / f"daemon{n}.log"
            proc = subprocess.Popen(
                cmd,
                stdout=open(log_path, "wb"),  # noqa: SIM115 - the child owns it
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            daemons.append(_Daemon(proc, http_port, log_path))
        if o.pin:
            for n, d in enumerate(daemons):
                _pin(d.proc.pid, n % 2)
            _pin(fake.pid, 1)
            _pin(redis.proc.pid, 1)

        def ready() -> bool:
            for d in daemons:
                if d.proc.poll() is not None:
                    raise RuntimeError(f"a daemon exited ({d.proc.returncode}); see {workdir}")
            return all(http_get(d.http_port, "/readyz")[0] == 200 for d in daemons)

        wait_for(ready, 60 + agents / 50, "the daemons to connect and resynchronise")
        pids = {f"daemon{n + 1}": d.proc.pid for n, d in enumerate(daemons)}
        if o.feed:  # a CRM's feed on the first daemon, read to the end of the run
            if shutil.which("curl") is None:
                raise SystemExit("bench.py --feed reads /events with curl: apt-get install curl")
            feed_out = workdir / "feed.txt"
            feed = subprocess.Popen(
                ["curl", "-sN", "-H", f"Authorization: Bearer {FEED_TOKEN}",
                 f"http://127.0.0.1:{daemons[0].http_port}/events", "-o", str(feed_out)],
            )  # fmt: skip
        pids.update(fake=fake.pid, redis=redis.proc.pid)

        if backlog:
            t_fill = time.monotonic()
            tell(fake, "backlog")
            read_line(fake, 60 + backlog / 50, "the fake to place the backlog")
            queue_key = f"ccd:queue:{BACKLOG_QUEUE}"
            waiting = 0

            def queued() -> bool:
                nonlocal waiting
                waiting = int(redis.client.zcard(queue_key))
                return waiting == backlog  # the first BACKLOG_AGENTS bridged, B waiting

            with contextlib.suppress(RuntimeError):  # measured anyway; the figure says it
                wait_for(queued, 60 + backlog * 0.03, "the backlog to be queued")
            result.backlog_waiting_start = waiting
            result.backlog_fill_s = time.monotonic() - t_fill
            if waiting < backlog:
                result.note += f"backlog: only {waiting} of {backlog} queued in time; "

        tell(fake, "go")
        t_go = time.monotonic()
        probe_span = o.answer_after + o.talk + o.wrapup + 1.0
        if o.commands:  # from just before the probe call to the end of its wrap-up
            start_at = t_go + o.seconds + o.drain + PROBE_DELAY - 0.5
            monitor = Monitor(redis.port, probe_span + 3.0, start_at=start_at)
            monitor.start()
        inbox_max = 0.0
        samples: dict[str, tuple[float, dict[str, float], RedisSample, list[dict]]] = {}
        samplers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for label, at in (("start", t_go + o.warmup), ("end", t_go + o.seconds)):
            while time.monotonic() < at:
                time.sleep(min(0.5, max(0.0, at - time.monotonic())))
                for d in daemons:
                    depth = daemon_metrics(d.http_port).get("ccd_inbox_depth", 0.0)
                    inbox_max = max(inbox_max, depth)
            samples[label] = (
                time.monotonic(),
                {name: cpu_seconds(pid) for name, pid in pids.items()},
                redis.sample(),
                [daemon_metrics(d.http_port) for d in daemons],
            )
            if label == "start" and o.profile is not None:
                tag = f"{agents}-{rate:g}-{backlog}"
                samplers = start_samplers(pids, o.profile, tag, o.seconds - o.warmup, say)
        read_line(fake, o.drain + 120, "the fake switch's results")
        peaks = [rss_mb(d.proc.pid, "VmHWM") for d in daemons]
        nows = [rss_mb(d.proc.pid, "VmRSS") for d in daemons]
        result.rss_mb = max((p for p in peaks if p is not None), default=None)
        result.rss_end_mb = max((p for p in nows if p is not None), default=None)
        result.fake_rss_mb = rss_mb(fake.pid, "VmHWM")
        data = json.loads((workdir / "fake.json").read_text())
        summarise(result, data, samples, inbox_max, o)
        for name, (sampler, out) in samplers.items():
            try:
                sampler.wait(30)
            except subprocess.TimeoutExpired:
                stop_process(sampler)
            say(profile_top(out, name, result.routed, result.window_s))
        if o.resync_interval < o.seconds:
            resync_figures(result, data, [d.log for d in daemons], samples)
        if monitor is not None:
            monitor.join(30)
            uuid, number = data["probe"] or (None, None)
            picked = commands_of_call(monitor.lines, uuid, number, probe_span) if uuid else []
            say(f"  Redis commands of one call (placed when all was quiet, {uuid}; 'call' "
                f"names its uuid, number or agent, 'bg' is other work meanwhile):")  # fmt: skip
            say(format_commands(picked))
    finally:
        if feed is not None:
            stop_process(feed)
            with contextlib.suppress(OSError):
                text = (workdir / "feed.txt").read_text()
                result.feed_events = text.count("\nid: ") + text.startswith("id: ")
        for d in daemons:
            stop_process(d.proc)
        if fake is not None:
            if fake.poll() is None and fake.stdin is not None:
                with contextlib.suppress(OSError):
                    fake.stdin.write("stop\n")
                    fake.stdin.close()
            try:
                fake.wait(30)
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
    samples: dict[str, tuple[float, dict[str, float], RedisSample, list[dict]]],
    inbox_max: float,
    o: Options,
) -> None:
    """Fill ``result`` with the steady-window figures (see the module docstring)."""
    (t0, cpu0, redis0, met0), (t1, cpu1, redis1, met1) = samples["start"], samples["end"]
    window = t1 - t0
    result.window_s = window
    calls = data["calls"]
    in_window = [c for c in calls if t0 <= c[1] < t1]
    latencies = sorted((c[2] - c[1]) * 1000.0 for c in in_window if c[2] is not None)
    if latencies:
        result.p50_ms = percentile(latencies, 50)
        result.p95_ms = percentile(latencies, 95)
        result.p99_ms = percentile(latencies, 99)
        result.max_ms = latencies[-1]
    result.unoffered = sum(1 for c in in_window if c[2] is None)
    result.placed_per_s = len(in_window) / window
    result.first_offers_per_s = sum(1 for c in calls if c[2] is not None and t0 <= c[2] < t1)
    result.first_offers_per_s /= window
    routed = sum(1 for c in calls if c[3] is not None and t0 <= c[3] < t1)
    result.routed = routed
    result.routed_per_s = routed / window
    cycle = o.answer_after + o.talk + o.wrapup + CYCLE_SLACK
    result.agent_capacity_per_s = result.agents / cycle
    events = sum(m.get("ccd_esl_events_total", 0.0) for m in met1) - sum(
        m.get("ccd_esl_events_total", 0.0) for m in met0
    )
    result.events_per_s = events / window
    round_trips = round_trips_between(redis0, redis1)
    result.redis_round_trips_per_s = round_trips / window
    deltas = {k: v - redis0.calls.get(k, 0) for k, v in redis1.calls.items() if k != "info"}
    cpu = {name: cpu1[name] - cpu0[name] for name in cpu1}
    daemon_cpu = sum(v for k, v in cpu.items() if k.startswith("daemon"))
    if routed:
        result.redis_round_trips_per_call = round_trips / routed
        result.redis_commands_per_call = sum(deltas.values()) / routed
        result.daemon_cpu_ms_per_call = 1000.0 * daemon_cpu / routed
        result.fake_cpu_ms_per_call = 1000.0 * cpu["fake"] / routed
        result.redis_cpu_ms_per_call = 1000.0 * cpu["redis"] / routed
    else:
        result.note += "nothing routed in the window: per-call figures not measurable; "
    result.top_redis = sorted(((k, v) for k, v in deltas.items() if v), key=lambda kv: -kv[1])[:6]
    result.cpu_pct = {name: 100.0 * v / window for name, v in cpu.items()}
    result.inbox_max = inbox_max
    result.failures = data["failures"]
    if result.backlog:
        result.backlog_waiting_end = data["backlog_waiting_end"]
        left = dict(data["backlog_left"])
        left["bridged"] = left.get("bridged", 0) - BACKLOG_AGENTS  # those were meant to be
        if any(v > 0 for v in left.values()):
            result.note += f"backlog callers that stopped waiting: {left}; "
    result.verdict = verdict(result)


def resync_figures(
    result: Result,
    data: dict[str, Any],
    logs: Sequence[Path],
    samples: dict[str, tuple[float, dict[str, float], RedisSample, list[dict]]],
) -> None:
    """How long dispatching stalled while a resync ran.

    A resync starts when the fake reads the daemon's ``show channels`` and ends at
    the daemon's ``daemon.resynced`` log line (wall clock, moved onto the monotonic
    clock the fake uses: both are system-wide on Linux). The stall is the worst latency
    of a caller parked while one ran; ``max_ms_outside_resync`` is the worst of callers
    parked well away from any (0.5 s before to 1 s after), for comparison."""
    offset = time.time() - time.monotonic()
    t0, t1 = samples["start"][0], samples["end"][0]
    ends: list[float] = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if '"daemon.resynced"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                stamp = record["timestamp"]
                wall = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                ends.append(wall - offset)
                step = record.get("longest_step_ms")
                if step is not None and t0 <= wall - offset <= t1:  # the start-up one is apart
                    result.resync_step_ms = max(result.resync_step_ms or 0.0, float(step))
    starts = sorted(data.get("resync_starts", []))
    spans = []
    for end in sorted(ends):
        begun = [s for s in starts if s <= end]
        if begun and t0 <= end and begun[-1] <= t1:
            spans.append((begun[-1], end))
    result.resyncs = len(spans)
    if spans:
        result.resync_ms = max(1000.0 * (e - s) for s, e in spans)
    near, far = [], []
    for _uuid, parked, offered, _bridged in data["calls"]:
        if offered is None or not t0 <= parked < t1:
            continue
        latency = (offered - parked) * 1000.0
        if any(s - 0.05 <= parked <= e for s, e in spans):
            near.append(latency)
        elif not any(s - 0.5 <= parked <= e + 1.0 for s, e in spans):
            far.append(latency)
    result.resync_stall_ms = max(near) if near else None
    result.max_ms_outside_resync = max(far) if far else None
    if not spans:
        result.note += "no resync ran inside the window; "


def verdict(r: Result) -> str:
    expected = min(r.rate, r.agent_capacity_per_s) if r.agent_capacity_per_s else r.rate
    sustained = r.routed_per_s >= NOT_SUSTAINED * expected and r.unoffered == 0
    agent_bound = r.agent_capacity_per_s and r.rate > r.agent_capacity_per_s
    busy = {name: pct for name, pct in r.cpu_pct.items() if pct >= 85.0}
    total = sum(r.cpu_pct.values())
    cores = os.cpu_count() or 1
    if sustained:
        return "sustained" + (" (agent-bound)" if agent_bound else "")
    if r.inbox_max >= max(r.rate, 1.0):
        # More than a second of events queued in the dispatcher: the daemon is behind.
        return (
            f"NOT sustained: daemon behind (inbox max {r.inbox_max:.0f}, "
            f"daemon CPU {sum(v for k, v in r.cpu_pct.items() if k.startswith('daemon')):.0f}%)"
        )
    if busy:
        worst = max(busy, key=lambda n: busy[n])
        return f"NOT sustained: {worst} CPU-bound ({busy[worst]:.0f}% of a core)"
    if total >= 85.0 * cores:
        return f"NOT sustained: machine CPU saturated ({total:.0f}% of {cores} cores)"
    if agent_bound:
        return "NOT sustained: fewer agents than the load needs"
    return "NOT sustained: no process CPU-bound (see failures / inbox)"


#: Samples a second py-spy takes of each process.
SAMPLE_RATE = 250


def start_samplers(
    pids: dict[str, int], folder: Path, tag: str, seconds: float, say: Callable[..., None]
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """py-spy on the daemons and the fake for ``seconds``: CPU samples only (a process
    waiting in the event loop is idle and not sampled), raw stacks written to ``folder``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        say("  --profile needs py-spy: pip install py-spy (or .[bench])")
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, pid in pids.items():
        if name == "redis":
            continue
        path = folder / f"{name}-{tag}.txt"
        proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE), "--duration",
             str(max(1, int(seconds))), "--format", "raw", "--nonblocking", "--output",
             str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out[name] = (proc, path)
    return out


def profile_top(path: Path, title: str, calls: int, window: float, limit: int = 22) -> str:
    """Where a process's CPU went over the window, in ms per routed call: the functions
    with the most samples of their own (the innermost frame), from py-spy's raw stacks.

    Sampling costs the process little (py-spy reads its memory from outside); each
    sample stands for 1/SAMPLE_RATE s of CPU."""
    if not path.exists():
        return f"  (no profile written for the {title})"
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}  # the project's own functions, with all they call
    per_file: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # any line
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        for frame in set(frames):
            if "(ccd/" in frame or "(scripts/" in frame:
                inclusive[frame] = inclusive.get(frame, 0) + count
        found = re.search(r"\(([^()]+)\)$", leaf)
        module = found.group(1) if found else leaf
        per_file[module] = per_file.get(module, 0) + count
        total += count
    # Nothing routed: CPU ms per second of the window instead of per call.
    per, unit = (calls, "routed call") if calls else (max(window, 1e-9), "s (NOTHING routed)")

    def ms(samples: int) -> float:
        return 1000.0 * samples / SAMPLE_RATE / per

    out = [f"  CPU profile of the {title} (py-spy, window): {ms(total):.2f} ms per {unit} "
           f"sampled ({calls} calls routed); by file: "
           + ", ".join(f"{f} {ms(n):.2f}" for f, n in sorted(per_file.items(),
                                                           key=lambda kv: -kv[1])[:8])]  # fmt: skip
    out.append("   own time (innermost frame):")
    for leaf, count in sorted(own.items(), key=lambda kv: -kv[1])[:limit]:
        out.append(f"    {ms(count):7.3f} ms {100.0 * count / max(total, 1):5.1f}%  {leaf}")
    out.append("   the project's functions with all they call (I/O waits excluded):")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]:
        out.append(f"    {ms(count):7.3f} ms {100.0 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(out)


# --------------------------------------------------------------------------- output


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def describe(r: Result, say: Callable[..., None] = print) -> None:
    cpu = ", ".join(f"{name} {pct:.0f}%" for name, pct in r.cpu_pct.items())
    if r.routed:
        say(f"  routed {r.routed_per_s:.1f}/s of {r.placed_per_s:.1f}/s placed "
            f"(first offers {r.first_offers_per_s:.1f}/s); latency p50 {fmt(r.p50_ms)} "
            f"p95 {fmt(r.p95_ms)} p99 {fmt(r.p99_ms)} max {fmt(r.max_ms)} ms; "
            f"unoffered {r.unoffered}")  # fmt: skip
        say(f"  per routed call: Redis {fmt(r.redis_round_trips_per_call)} round trips "
            f"({fmt(r.redis_commands_per_call)} commands incl. inside scripts); CPU ms "
            f"daemon {fmt(r.daemon_cpu_ms_per_call, 2)}, fake {fmt(r.fake_cpu_ms_per_call, 2)}"
            f", redis {fmt(r.redis_cpu_ms_per_call, 2)}")  # fmt: skip
    else:
        say(f"  NOTHING ROUTED in the {r.window_s:.1f} s window ({r.placed_per_s:.1f}/s "
            f"placed, {r.unoffered} never offered): no per-call figure")  # fmt: skip
        if r.p50_ms is not None:
            say(f"  latency of the callers offered: p50 {fmt(r.p50_ms)} p99 {fmt(r.p99_ms)} "
                f"max {fmt(r.max_ms)} ms")  # fmt: skip
    say(f"  ESL events {r.events_per_s:.0f}/s; Redis {r.redis_round_trips_per_s:.0f} round "
        f"trips/s (top commands: {', '.join(f'{k} {v}' for k, v in r.top_redis)})")  # fmt: skip
    say(f"  CPU over the window: {cpu}; daemon RSS peak {fmt(r.rss_mb)} MB "
        f"(end {fmt(r.rss_end_mb)}); inbox max {r.inbox_max:.0f}; "
        f"failures {r.failures or 'none'}")  # fmt: skip
    if r.backlog:
        say(f"  backlog: {r.backlog_waiting_start} waiting at start (filled in "
            f"{fmt(r.backlog_fill_s)} s), {r.backlog_waiting_end} at the end")  # fmt: skip
    if r.resyncs or r.resync_stall_ms is not None:
        say(f"  resync: {r.resyncs} in the window, the longest {fmt(r.resync_ms)} ms in "
            f"steps of at most {fmt(r.resync_step_ms)} ms; worst latency of a caller parked "
            f"during one {fmt(r.resync_stall_ms)} ms (away from them max "
            f"{fmt(r.max_ms_outside_resync)} ms)")  # fmt: skip
    if r.note:
        say(f"  note: {r.note.strip().rstrip(';')}")
    say(f"  {r.verdict}")


def table(results: Sequence[Result], o: Options) -> str:
    header = (
        "agents", "backlog", "offered/s", "routed/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
        "RT/call", "CPU ms/call d/f/r", "RSS MB", "verdict",
    )  # fmt: skip
    rows = [header]
    for r in results:
        cpu = "/".join(
            fmt(v, 2)
            for v in (r.daemon_cpu_ms_per_call, r.fake_cpu_ms_per_call, r.redis_cpu_ms_per_call)
        )
        rows.append((
            str(r.agents), str(r.backlog), f"{r.rate:g}",
            f"{r.routed_per_s:.1f}" if r.routed else "none",
            fmt(r.p50_ms), fmt(r.p95_ms), fmt(r.p99_ms), fmt(r.max_ms),
            fmt(r.redis_round_trips_per_call), cpu, fmt(r.rss_mb, 0), r.verdict,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines += saturation_lines(results)
    notes = (
        f"Window: {o.seconds - o.warmup:g} s steady (after {o.warmup:g} s warm-up) of "
        f"{o.seconds:g} s of evenly spaced callers straight into queue extensions (no IVR); "
        f"phones answer after {o.answer_after:g} s, talk {o.talk:g} s, wrap-up {o.wrapup:g} s; "
        f"{o.daemons} daemon(s); ESL event format {o.event_format}; {os.cpu_count()} CPUs "
        "shared by daemon, fake and redis-server (and anything else running: figures are "
        "noisy, CPU ms per call least so). Latency = caller CHANNEL_PARK -> first originate "
        "at the fake. RT/call = Redis client round trips per routed call (pipeline, "
        "MULTI/EXEC, script = 1). Backlog = callers kept waiting in another queue."
    )
    return "\n".join(lines) + "\n" + notes


def saturation_lines(results: Sequence[Result]) -> list[str]:
    """Per (agents, backlog, daemons): the highest offered rate sustained, the most routed."""
    groups: dict[tuple[int, int, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.agents, r.backlog, r.daemons), []).append(r)
    out = []
    for (agents, backlog, daemons), rs in groups.items():
        if len(rs) < 2:
            continue
        ok = [r.rate for r in rs if r.verdict.startswith("sustained")]
        best = max(rs, key=lambda r: r.routed_per_s)
        held = "none" if not ok else f"{max(ok):g} calls/s"
        out.append(
            f"saturation ({agents} agents, backlog {backlog}, {daemons} daemon(s)): sustained up "
            f"to {held} offered; most routed {best.routed_per_s:.1f}/s (offered {best.rate:g})"
        )
    return out


# --------------------------------------------------------------------------- modes


def saturate(agents: int, backlog: int, o: Options, start: float, say: Callable) -> list[Result]:
    """Raise the offered rate until a point is not sustained, then offer twice that."""
    results: list[Result] = []
    rate = start
    for _ in range(8):  # bounded: 8 steps reach ~25x the start
        say(f"== saturation: {agents} agents, backlog {backlog}, {rate:g} calls/s")
        r = run_point(agents, rate, o, backlog, say=say)
        describe(r, say)
        results.append(r)
        if not r.verdict.startswith("sustained"):
            beyond = rate * 2
            say(f"== beyond capacity: {beyond:g} calls/s")
            r2 = run_point(agents, beyond, o, backlog, say=say)
            describe(r2, say)
            results.append(r2)
            break
        rate = rate * 1.5 if rate >= 200 else rate * 2
    return results


def capacity_summary(results: Sequence[Result]) -> dict[str, Any]:
    best = max(results, key=lambda r: r.routed_per_s)
    last = results[-1]
    return {
        "capacity_routed_per_s": round(best.routed_per_s, 1),
        "at_offered": best.rate,
        "beyond_offered": last.rate,
        "beyond_routed_per_s": round(last.routed_per_s, 1),
        "holds": last.routed_per_s >= 0.9 * best.routed_per_s,
    }


def scaling(
    agents: int, rate: float, backlog: int, o: Options, say: Callable, as_json: bool
) -> int:
    """The same offered load (beyond one daemon's capacity) with one daemon, then two."""
    results = []
    for daemons in (1, 2):
        say(f"== scaling: {daemons} daemon(s), {agents} agents, {rate:g} calls/s, "
            f"backlog {backlog}")  # fmt: skip
        r = run_point(agents, rate, dataclasses.replace(o, daemons=daemons), backlog, say=say)
        describe(r, say)
        results.append(r)
    one, two = results
    ratio = two.routed_per_s / one.routed_per_s if one.routed_per_s else None
    summary = {"one_daemon_routed_per_s": round(one.routed_per_s, 1),
               "two_daemons_routed_per_s": round(two.routed_per_s, 1),
               "ratio": None if ratio is None else round(ratio, 2), "target": 1.6}  # fmt: skip
    if as_json:
        print(json.dumps({**summary, "points": [r.to_json() for r in results]}))
    else:
        say("\n" + table(results, o))
        say(f"two daemons / one: {fmt(ratio, 2)} (target >= 1.6; offer more than one daemon "
            "can route, or the ratio only shows the offered load)")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"one small point {QUICK_POINT}")
    p.add_argument("--matrix", action="store_true", help="the issue's full matrix (long)")
    p.add_argument("--agents", type=int, help="one custom point: number of agents")
    p.add_argument("--rate", type=float, help="one custom point: offered calls per second")
    p.add_argument("--backlog", type=int, default=0, help="callers waiting in another queue")
    p.add_argument("--seconds", type=float, default=None, help="length of the call stream")
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--answer-after", type=float, default=0.5)
    p.add_argument("--talk", type=float, default=1.0)
    p.add_argument("--wrapup", type=float, default=1.0)
    p.add_argument("--event-format", choices=("plain", "json"), default="json")
    p.add_argument("--sps", type=int, default=5000, help="the fake's sessions-per-second")
    p.add_argument("--daemons", type=int, default=1, help="daemons sharing Redis and the fake")
    p.add_argument("--backlog-rate", type=float, default=500.0, help="backlog callers placed/s")
    p.add_argument("--resync-interval", type=float, default=60.0,
                   help="the daemon's routing.resync_interval; below --seconds, the resync "
                   "stall is measured")  # fmt: skip
    p.add_argument("--saturate", action="store_true",
                   help="raise the rate from --rate (default 50) until not sustained")  # fmt: skip
    p.add_argument("--scaling", action="store_true",
                   help="one point (default 5000 agents, 300/s), 1 then 2 daemons")  # fmt: skip
    p.add_argument("--commands", action="store_true", help="print one call's Redis commands")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", type=Path, help="append each point's JSON object to this file")
    p.add_argument("--self-test", action="store_true", help="check the round-trip counter")
    p.add_argument("--pin", action="store_true", help="daemon on CPU 0, fake and Redis on CPU 1")
    p.add_argument("--profile", type=Path,
                   help="py-spy the daemon and the fake over the window, stacks here")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep each run's logs and config")
    p.add_argument("--feed", action="store_true", help="one GET /events client during the run")
    p.add_argument("--role", choices=("fake",), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    return p


def self_test(say: Callable[..., None]) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="ccd-bench-selftest-"))
    redis = Redis(workdir)
    try:
        cases = round_trip_self_test(redis)
        costs = wake_cost(redis)
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    ok = all(expected == counted for expected, counted in cases.values())
    say("round-trip counter (INFO stats total_reads_processed): " + ("ok" if ok else "WRONG"))
    for name, (expected, counted) in cases.items():
        say(f"  {name}: expected {expected}, counted {counted}")
    say("this machine's wake-up cost (CPU of one Redis PING round trip in this process): "
        "{:.0f} us back to back, {:.0f} us after 5 ms idle".format(*costs))  # fmt: skip
    return ok


def wake_cost(redis: Redis, trips: int = 200) -> tuple[float, float]:
    """CPU microseconds one Redis round trip costs this process, back to back and after
    5 ms idle. At a low call rate every event arrives alone and wakes the daemon (and the
    process it asks) from idle: where that costs several times the work (the 2-core
    virtual machine of the README's tables: 70-155 us against 530-580), the daemon's CPU
    per call at 200 calls/s is mostly wake-ups, not ccd's work."""
    import redis as redis_py

    conn = redis_py.Redis(host="127.0.0.1", port=redis.port, socket_timeout=10)
    conn.ping()
    costs = []
    for pause in (0.0, 0.005):
        cpu = time.process_time()
        for _ in range(trips):
            conn.ping()
            if pause:
                time.sleep(pause)
        costs.append(1e6 * (time.process_time() - cpu) / trips)
    conn.close()
    return costs[0], costs[1]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role == "fake":
        return fake_main(args)
    # With --json, progress goes to stderr and stdout holds the one JSON object.
    say: Callable[..., None] = (
        (lambda *a, **k: print(*a, file=sys.stderr, flush=True))
        if args.json
        else (lambda *a, **k: print(*a, flush=True))
    )
    if args.self_test:
        return 0 if self_test(say) else 1
    if args.agents is not None and args.agents < 1:
        print("bench.py: --agents must be >= 1", file=sys.stderr)
        return 2
    if (args.rate is not None and args.rate <= 0) or args.backlog < 0 or args.daemons < 1:
        print("bench.py: need --rate > 0, --backlog >= 0, --daemons >= 1", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None else (6.0 if args.quick else 15.0)
    warmup = args.warmup if args.warmup is not None else min(3.0, seconds / 3)
    if not 0 <= warmup < seconds:
        print("bench.py: need 0 <= --warmup < --seconds", file=sys.stderr)
        return 2
    o = Options(
        seconds=seconds, warmup=warmup, drain=args.drain, answer_after=args.answer_after,
        talk=args.talk, wrapup=args.wrapup, event_format=args.event_format, sps=args.sps,
        daemons=args.daemons, backlog_rate=args.backlog_rate,
        resync_interval=args.resync_interval, commands=args.commands, profile=args.profile,
        pin=args.pin, keep=args.keep, feed=args.feed,
    )  # fmt: skip
    if args.scaling:
        return scaling(args.agents or 5000, args.rate or 300.0, args.backlog, o, say, args.json)
    if args.saturate:
        agents = args.agents or 5000
        results = saturate(agents, args.backlog, o, args.rate or 50.0, say)
        summary = capacity_summary(results)
        if args.json:
            print(json.dumps({**summary, "points": [r.to_json() for r in results]}))
        else:
            say("\n" + table(results, o))
            say(f"capacity: {summary}")
        return 0
    if args.agents is not None or args.rate is not None:
        points: Sequence[tuple[int, float, int]] = [
            (args.agents or 100, args.rate or 50.0, args.backlog)
        ]
    elif args.quick:
        points = [QUICK_POINT]
    elif args.matrix:
        points = [(a, r, b) for a in MATRIX_AGENTS for b in MATRIX_BACKLOGS for r in MATRIX_RATES]
    else:
        points = DEFAULT_POINTS
    if not args.json and not args.quick:
        self_test(say)
    results = []
    for agents, rate, backlog in points:
        busy = rate * (o.answer_after + o.talk + o.wrapup)
        say(f"== {agents} agents, {rate:g} calls/s, backlog {backlog}, {o.daemons} daemon(s) "
            f"for {o.seconds:g} s (~{busy:.0f} agents busy at once)")  # fmt: skip
        try:
            result = run_point(agents, rate, o, backlog, say=say)
        except RuntimeError as exc:
            say(f"  failed: {exc}")
            if args.json:
                print(json.dumps({"agents": agents, "rate": rate, "backlog": backlog,
                                  "error": str(exc)}))  # fmt: skip
            continue
        describe(result, say)
        results.append(result)
        if args.save is not None:
            with args.save.open("a") as out:
                out.write(json.dumps(result.to_json()) + "\n")
        if args.json:
            print(json.dumps(result.to_json()))
    if results and not args.json:
        say("")
        say(table(results, o))
    return 0 if len(results) == len(points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
