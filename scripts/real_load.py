#!/usr/bin/env python3
"""Load the daemon on a real FreeSWITCH and count the callers it loses.

    .venv/bin/python scripts/real_load.py                  # 2,000 callers, 20/s, 50 agents
    .venv/bin/python scripts/real_load.py --calls 500 --rate 5

A caller is LOST when their call ends without FreeSWITCH ever having bridged it to an
agent: hung up by FreeSWITCH or the daemon, sent to voicemail, or giving up after
--patience seconds of waiting. Every caller who is bridged stays --talk seconds, then
hangs up. The verdict the engine is judged by (issue 9, defect 1): 0 callers lost in a
2,000-call run.

Set-up (the real-switch tier's: tests/real/lab.py): the FreeSWITCH at hand (the kit
../shared/freeswitch/fslab, or CCD_REAL_FS_* variables), freeswitch_conf/ installed with
scripts/install_freeswitch_conf.py, a private redis-server and the daemon as `ccd run`.
--agents directory users 2000.. (password 1234) are added to FreeSWITCH's directory in
directory/default/ccd_load_agents.xml (kept for later runs) and registered from one sipp
desk phone that answers every call after --answer-ms. Callers are loopback channels into
the queue extension ccd_queue_general (no IVR: the menu is not what is measured).

What is counted comes from FreeSWITCH's own events on a separate event-socket connection
(CHANNEL_BRIDGE of the caller's leg, its CHANNEL_HANGUP_COMPLETE and cause), never from the
daemon. For each lost caller the event sequence of the caller and of its agent legs is
printed (first --show of them), with the daemon's log lines about the call.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.real.esl import EslClient, Seen
from tests.real.lab import Center, RealSwitch, find_switch, utc
from tests.real.sip import Phone, register

LOAD_USERS_FILE = "directory/default/ccd_load_agents.xml"
PHONE_PORT = 5300
EVENTS = (
    "CHANNEL_ANSWER",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
)


@dataclass
class CallerRecord:
    n: int
    a: str
    placed: float
    b: str = ""
    queued: float | None = None
    bridged: float | None = None
    ended: float | None = None
    cause: str = ""
    killed_by_us: str = ""  # "talked" | "patience"
    agent_legs: list[str] = field(default_factory=list)


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.callers: dict[str, CallerRecord] = {}  # a uuid -> record
        self.by_b: dict[str, CallerRecord] = {}
        self.seq: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
        self.due: list[tuple[float, str, str]] = []  # (when, a uuid, why)
        self.job_legs: dict[str, str] = {}

    # -- FreeSWITCH's events (reader thread: short) ---------------------------------------
    def on_event(self, s: Seen) -> None:
        name, uuid = s.name, s.uuid
        with self.lock:
            if name == "BACKGROUND_JOB":
                return
            record = self.by_b.get(uuid)
            if record is None and s.var("loopback_leg") == "B" and s.var("ccd_load_id"):
                record = self.callers.get(s.var("other_loopback_leg_uuid"))
                if record is not None and not record.b:
                    record.b = uuid
                    self.by_b[uuid] = record
            call = s.var("ccd_call")
            if record is None and call in self.by_b:
                agent_of = self.by_b[call]
                if uuid not in agent_of.agent_legs:
                    agent_of.agent_legs.append(uuid)
            if record is not None or call in self.by_b:
                detail = s.get("Hangup-Cause") if name == "CHANNEL_HANGUP_COMPLETE" else ""
                if name == "CHANNEL_BRIDGE":
                    detail = f"{s.get('Bridge-A-Unique-ID')[:8]}+{s.get('Bridge-B-Unique-ID')[:8]}"
                self.seq[uuid].append((s.at, name, detail))
            if record is None:
                return
            if name == "CHANNEL_PARK" and record.queued is None and s.var("ccd_queue"):
                record.queued = s.at
            elif name == "CHANNEL_BRIDGE" and record.bridged is None:
                record.bridged = s.at
                heapq.heappush(self.due, (time.monotonic() + self.args.talk, record.a, "talked"))
            elif name == "CHANNEL_HANGUP_COMPLETE":
                record.ended = s.at
                record.cause = s.get("Hangup-Cause")

    # -- the run ----------------------------------------------------------------------------
    def run(self, switch: RealSwitch, center: Center) -> dict[str, float]:
        args = self.args
        watch = EslClient(*switch.esl, switch.password, on_event=self.on_event)
        watch.subscribe(*EVENTS)
        ctl = switch.client()
        interval = 1.0 / args.rate
        start = time.monotonic()
        for n in range(args.calls):
            a = str(uuidlib.uuid4())
            with self.lock:
                self.callers[a] = CallerRecord(n, a, time.monotonic())
                heapq.heappush(self.due, (time.monotonic() + args.patience, a, "patience"))
            number = f"+36{n % 100:02d}{100000 + n:06d}"
            ctl.bgapi(
                f"originate {{origination_uuid={a},origination_caller_id_number={number},"
                f"ccd_load_id={n}}}loopback/ccd_queue_general/ccd &park()"
            )
            self._hang_up_due(ctl)
            next_at = start + (n + 1) * interval
            while time.monotonic() < next_at:
                time.sleep(min(0.005, max(0.0, next_at - time.monotonic())))
                self._hang_up_due(ctl)
        placed_in = time.monotonic() - start
        deadline = time.monotonic() + args.patience + args.talk + 30
        while time.monotonic() < deadline:
            self._hang_up_due(ctl)
            with self.lock:
                if all(r.ended is not None for r in self.callers.values()):
                    break
            time.sleep(0.05)
        watch.close()
        ctl.close()
        return {"placed_in": placed_in}

    def _hang_up_due(self, ctl: EslClient) -> None:
        now = time.monotonic()
        while True:
            with self.lock:
                if not self.due or self.due[0][0] > now:
                    return
                _, a, why = heapq.heappop(self.due)
                record = self.callers[a]
                if record.ended is not None or record.killed_by_us:
                    continue
                if why == "patience" and record.bridged is not None:
                    continue
                record.killed_by_us = why
            ctl.bgapi(f"uuid_kill {a}")

    # -- the verdict -----------------------------------------------------------------------------
    def report(self, center: Center, placed_in: float) -> int:
        records = list(self.callers.values())
        bridged = [r for r in records if r.bridged is not None]
        lost = [r for r in records if r.bridged is None]
        voicemail = {r.get("call") for r in center.logged("call.voicemail")}
        how: Counter[str] = Counter()
        for r in lost:
            if r.b in voicemail:
                how["sent to voicemail"] += 1
            elif r.killed_by_us == "patience":
                how[f"gave up after {self.args.patience:g} s unbridged"] += 1
            elif r.ended is None:
                how["never ended (still up at the end)"] += 1
            else:
                how[f"hung up by FreeSWITCH/daemon: {r.cause}"] += 1
        waits = sorted(r.bridged - r.placed for r in bridged if r.bridged)
        a = self.args
        print()
        print(
            f"real_load: {len(records)} callers at {a.rate:g}/s (placed in {placed_in:.1f} s), "
            f"{a.agents} agents answering after {a.answer_ms} ms, talk {a.talk:g} s"
        )
        print(f"  bridged to an agent   {len(bridged)}")
        print(f"  LOST                  {len(lost)}")
        for text, count in how.most_common():
            print(f"    {count:5d}  {text}")
        if waits:
            p50, p95 = waits[len(waits) // 2], waits[int(len(waits) * 0.95) - 1]
            print(
                f"  placed -> bridged     median {p50:.2f} s, 95th {p95:.2f} s, "
                f"max {waits[-1]:.2f} s"
            )
        answered = [
            r
            for r in lost
            if any(n == "CHANNEL_ANSWER" for leg in r.agent_legs for _, n, _ in self.seq[leg])
        ]
        print(f"  lost after an agent answered (the bridge never happened): {len(answered)}")
        for r in lost[: a.show]:
            self._show(center, r)
        return 0 if not lost else 1

    def _show(self, center: Center, r: CallerRecord) -> None:
        print(f"\n  lost caller #{r.n}: leg {r.b} ended {r.cause or '-'}")
        t0 = r.placed
        rows = [(t, "caller", n, d) for t, n, d in self.seq.get(r.b, [])]
        for leg in r.agent_legs:
            rows += [(t, f"agent {leg[:8]}", n, d) for t, n, d in self.seq.get(leg, [])]
        for t, who, n, d in sorted(rows):
            print(f"    {t - t0:8.3f}  {who:15} {n:24} {d}")
        for line in center.log():
            if line.get("call") == r.b and line.get("event") not in ("agent.state",):
                at = utc(line["timestamp"]) if "timestamp" in line else 0.0
                extra = {k: line[k] for k in ("agent", "leg", "cause", "phase") if k in line}
                clock = time.strftime("%H:%M:%S", time.localtime(at))
                print(f"    daemon {line['event']} {extra} at {clock}")


def ensure_load_users(switch: RealSwitch, count: int) -> None:
    users = "".join(
        f'  <user id="{2000 + i}"><params><param name="password" value="1234"/></params>'
        f'<variables><variable name="user_context" value="default"/></variables></user>\n'
        for i in range(count)
    )
    text = (
        "<include>\n  <!-- Desk phones of scripts/real_load.py (ccd's load test). -->\n"
        + users
        + "</include>\n"
    )
    path = switch.conf_dir / LOAD_USERS_FILE
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        client = switch.client()
        try:
            reply = client.api("reloadxml")
        finally:
            client.close()
        if not reply.startswith("+OK"):
            raise SystemExit(f"reloadxml: {reply}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rate", type=float, default=20.0, help="new callers per second")
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--answer-ms", type=int, default=300, help="agents answer after this")
    p.add_argument("--talk", type=float, default=1.5, help="seconds a bridged caller stays")
    p.add_argument("--patience", type=float, default=60.0, help="seconds before giving up")
    p.add_argument("--wrapup", type=float, default=0.0, help="routing.wrapup_time")
    p.add_argument("--ring-time", type=float, default=10.0, help="routing.ring_time")
    p.add_argument("--show", type=int, default=5, help="lost callers shown in detail")
    p.add_argument("--no-install", action="store_true", help="freeswitch_conf is installed")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)

    switch = find_switch()
    if isinstance(switch, str):
        print(f"real_load: {switch}", file=sys.stderr)
        return 2
    with switch.held():
        return drive(switch, args)


def drive(switch: RealSwitch, args: argparse.Namespace) -> int:
    switch.ensure_up()
    if not args.no_install:
        switch.install()
    ensure_load_users(switch, args.agents)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ccd-real-load-"))
    print(f"real_load: work directory {workdir}")
    phone = Phone("agent", PHONE_PORT, workdir, ("answer", args.answer_ms)).start()
    users = [str(2000 + i) for i in range(args.agents)]
    center = Center(
        switch,
        workdir / "center",
        {
            "log": {"level": "info"},
            "routing": {"ring_time": args.ring_time, "wrapup_time": args.wrapup},
            "queues": {"general": {"tags": ["general"], "overflow_time": 0}},
            "agents": {f"a{u}": {"extension": u, "tags": ["general"]} for u in users},
        },
    )
    try:
        for user in users:
            register(user, PHONE_PORT, workdir / "register", expires=3600)
        center.start()
        center.set_login("login", *(f"a{u}" for u in users))
        load = Load(args)
        figures = load.run(switch, center)
        return load.report(center, figures["placed_in"])
    finally:
        center.close()
        for user in users:
            with contextlib.suppress(RuntimeError):
                register(user, PHONE_PORT, workdir / "register", expires=0)
        phone.stop()


if __name__ == "__main__":
    sys.exit(main())
