"""`make bench-esl`: how fast real FreeSWITCH events get from the socket into the daemon.

Theory of operation
-------------------
A loopback server (this script with ``--role server``, its own process, plain blocking
sockets so its CPU is not the client's) speaks just enough of mod_event_socket: the
``auth/request`` greeting, ``+OK accepted``, ``+OK event listener enabled``, then the
event frames of a real FreeSWITCH 1.10.12 recording (every event of a call flow under
``event plain ALL`` or ``event json ALL``: 03_events_plain_ALL_calls.raw,
04_events_json_ALL_calls.raw) replayed ``--repeat`` times, byte for byte, as fast as the
socket takes them. In this process, one client at a time reads them:

* ``ccd json`` / ``ccd plain``: ccd's :class:`ccd.adapters.esl.EslClient` end to end
  (bytes → frames → decoded :class:`ccd.core.esl_wire.EslEvent` → the inbox), and a
  greenlet that takes each event off the inbox, as the daemon's dispatcher does;
* ``greenswitch plain``: greenswitch's own ``InboundESL`` with one ``*`` handler that
  counts (greenswitch reads the plain format only), the baseline the issue names.

Per case: events/s (wall clock, from the subscription's reply to the last event taken)
and µs of this process's CPU per event (less sensitive to other load on the machine);
each case runs ``--runs`` times, the best and the median are printed. The machine's
other work makes wall-clock figures noisy: compare CPU µs/event first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CAPTURE_FILES = {
    "plain": "03_events_plain_ALL_calls.raw",
    "json": "04_events_json_ALL_calls.raw",
}
PASSWORD = "ClueCon"


def capture_path(name: str) -> Path:
    """The recording: the repository's copy, else $FS_CAPTURES, else shared/ beside it."""
    for folder in (
        REPO / "tests" / "data" / "fs-captures",
        Path(os.environ.get("FS_CAPTURES", "/nonexistent")),
        REPO.parent / "shared" / "fs-captures",
        Path("/work/shared/fs-captures"),
    ):
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"bench_esl.py: recording {name} not found")


def event_frames(fmt: str) -> list[bytes]:
    """The recording's event frames, each exactly as FreeSWITCH wrote it."""
    from ccd.core.esl_wire import FrameParser

    data = capture_path(CAPTURE_FILES[fmt]).read_bytes()
    parser = FrameParser()
    parser.feed(data)
    out = []
    for frame in parser:
        if frame.content_type == f"text/event-{fmt}":
            head = "Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(frame.body), fmt)
            out.append(head.encode() + frame.body)
    return out


# --------------------------------------------------------------------------- server


def serve(fmt: str, repeat: int) -> int:
    """One connection: greet, accept the password and the subscription, replay, close."""
    payload = b"".join(event_frames(fmt))
    listener = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    listener.settimeout(60)
    conn, _ = listener.accept()
    conn.settimeout(60)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"Content-Type: auth/request\n\n")
    pending = b""

    def command() -> bytes:
        nonlocal pending
        while b"\n\n" not in pending:
            data = conn.recv(4096)
            if not data:
                raise ConnectionError("client left")
            pending += data
        line, _, pending = pending.partition(b"\n\n")
        return line

    try:
        command()  # auth
        conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
        line = command()  # event <format> ...
        reply = "+OK event listener enabled " + line.split()[1].decode()
        conn.sendall(b"Content-Type: command/reply\nReply-Text: %s\n\n" % reply.encode())
        for _ in range(repeat):
            conn.sendall(payload)
        conn.settimeout(30)
        while True:  # until the client says exit (answered like FreeSWITCH) or hangs up
            data = conn.recv(65536)
            if not data:
                break
            pending += data
            if b"\n\n" in pending:
                conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n")
                break
    except (OSError, ConnectionError):
        pass
    finally:
        conn.close()
        listener.close()
    return 0


class Server:
    def __init__(self, fmt: str, repeat: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--role", "server",
             "--format", fmt, "--repeat", str(repeat)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]

    def stop(self) -> None:
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- clients


def run_ccd(fmt: str, repeat: int, expected: int, timeout: float) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, events) through ccd's EslClient into its inbox."""
    import gevent

    from ccd.adapters.esl import EslClient
    from ccd.adapters.inbox import Inbox
    from ccd.core.esl_wire import EslEvent

    server = Server(fmt, repeat)
    inbox = Inbox()
    client = EslClient(
        "127.0.0.1", server.port, PASSWORD, events=["ALL"], event_format=fmt, inbox=inbox,
        connect_timeout=10, command_timeout=10,
    )  # fmt: skip
    count = 0
    marks: dict[str, float] = {}

    def take() -> None:
        nonlocal count
        while count < expected:
            item = inbox.get()
            if isinstance(item, EslEvent):
                count += 1

    taker = gevent.spawn(take)
    # From before the connection: the reader may take the whole stream before the
    # Connected item even reaches the inbox (set-up costs a few ms of the whole).
    marks["wall"], marks["cpu"] = time.perf_counter(), time.process_time()
    client.start()
    taker.join(timeout)
    wall = time.perf_counter() - marks.get("wall", 0.0)
    cpu = time.process_time() - marks.get("cpu", 0.0)
    taker.kill()
    client.stop()
    server.stop()
    return wall, cpu, count


def run_greenswitch(repeat: int, expected: int, timeout: float) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, events) through greenswitch's InboundESL, plain."""
    import gevent
    import gevent.event
    from greenswitch.esl import InboundESL

    server = Server("plain", repeat)
    esl = InboundESL("127.0.0.1", server.port, PASSWORD, timeout=10)
    count = 0
    done = gevent.event.Event()

    def counted(_event: object) -> None:
        nonlocal count
        count += 1
        if count >= expected:
            done.set()

    esl.register_handle("*", counted)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with gevent.Timeout(30):  # greenswitch waits for the greeting and replies forever
        esl.connect()
        esl.send("event plain ALL")
    done.wait(timeout)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    esl._run = False
    with contextlib.suppress(OSError):
        esl.sock.shutdown(socket.SHUT_RDWR)  # the server sees the end at once
    gevent.sleep(0.05)  # its reader sees the end of the stream and stops
    esl.sock.close()
    server.stop()
    return wall, cpu, count


# --------------------------------------------------------------------------- main


def measure(
    name: str, run: Callable[[], tuple[float, float, int]], expected: int, runs: int
) -> dict[str, object]:
    rates, cpus = [], []
    for _ in range(runs):
        wall, cpu, count = run()
        if count < expected:
            return {"case": name, "error": f"only {count} of {expected} events arrived"}
        rates.append(count / wall)
        cpus.append(cpu / count * 1e6)
    return {
        "case": name,
        "events": expected,
        "events_per_s_best": round(max(rates)),
        "events_per_s_median": round(statistics.median(rates)),
        "cpu_us_per_event_best": round(min(cpus), 2),
        "cpu_us_per_event_median": round(statistics.median(cpus), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_esl.py", description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=200, help="replays of the recording per run")
    p.add_argument("--runs", type=int, default=3, help="runs per case")
    p.add_argument("--cases", default="ccd-json,ccd-plain,greenswitch-plain")
    p.add_argument("--json", action="store_true", help="one JSON object per case")
    p.add_argument("--json-parser", choices=("default", "stdlib"), default="default",
                   help="stdlib: ccd parses event-json with json.loads, not orjson")  # fmt: skip
    p.add_argument("--role", choices=("server",), help=argparse.SUPPRESS)
    p.add_argument("--format", choices=("plain", "json"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "server":
        return serve(args.format, args.repeat)
    from gevent import monkey

    monkey.patch_all()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.disable(logging.WARNING)
    if args.json_parser == "stdlib":
        import ccd.core.esl_wire

        ccd.core.esl_wire._fast_loads = json.loads
    counts = {fmt: len(event_frames(fmt)) * args.repeat for fmt in CAPTURE_FILES}
    timeout = 120.0
    cases: dict[str, Callable[[], tuple[float, float, int]]] = {
        "ccd-json": lambda: run_ccd("json", args.repeat, counts["json"], timeout),
        "ccd-plain": lambda: run_ccd("plain", args.repeat, counts["plain"], timeout),
        "greenswitch-plain": lambda: run_greenswitch(args.repeat, counts["plain"], timeout),
    }
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in cases]
    if unknown:
        print(f"bench_esl.py: unknown case(s) {unknown}; known: {sorted(cases)}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"ESL ingest: real FreeSWITCH events ({CAPTURE_FILES['json']}, "
              f"{CAPTURE_FILES['plain']}) replayed {args.repeat}x over loopback; "
              f"{args.runs} runs per case, best / median; {os.cpu_count()} CPUs shared with "
              "whatever else runs (CPU µs/event is the steadier figure)", flush=True)  # fmt: skip
    failed = False
    for name in wanted:
        fmt = name.rsplit("-", 1)[1]
        result = measure(name, cases[name], counts[fmt], args.runs)
        failed |= "error" in result
        if args.json:
            print(json.dumps(result), flush=True)
        elif "error" in result:
            print(f"  {name:18} FAILED: {result['error']}", flush=True)
        else:
            print(f"  {name:18} {result['events_per_s_best']:>7,} events/s best, "
                  f"{result['events_per_s_median']:>7,} median; CPU "
                  f"{result['cpu_us_per_event_best']:6.2f} µs/event best, "
                  f"{result['cpu_us_per_event_median']:6.2f} median "
                  f"({result['events']:,} events)", flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
