#!/usr/bin/env python3
"""When can an answered `originate ... &park()` leg be bridged? Ask a real FreeSWITCH.

    .venv/bin/python scripts/real_bridge_timing.py                       # every trigger
    .venv/bin/python scripts/real_bridge_timing.py --trigger answer --delays 0,5,10 --trials 40

Each trial: a caller parked in the queue extension ccd_queue_general (a loopback channel,
music playing as the daemon plays it), then `originate {...}user/<phone> &park()` to a
sipp desk phone that answers after --answer-ms, and, as soon as this script's event socket
sees the TRIGGER event of that originate, plus --delays ms, `bgapi uuid_break <caller> all`
and `bgapi uuid_bridge <caller> <agent leg>` on a second connection (what the daemon sends).
A trial FAILS when FreeSWITCH reports no CHANNEL_BRIDGE within 1.5 s of the bridge.

Triggers, in the order FreeSWITCH reports them for the agent leg:
  answer         CHANNEL_ANSWER (the phone's 200 OK)
  state_execute  CHANNEL_STATE CS_EXECUTE (the originate API set it, to run &park())
  execute_park   CHANNEL_EXECUTE Application=park
  park           CHANNEL_PARK
  job            BACKGROUND_JOB of the originate (+OK <uuid>)

It prints the failures per trigger and delay and the event sequence of the first failures
(A = agent leg, C = caller, J = the originate's BACKGROUND_JOB, times in ms from the
originate). tests/real/README.md records what it found on FreeSWITCH 1.10.12. Needs the
kit (../shared/freeswitch/fslab) or CCD_REAL_FS_* (tests/real/lab.py) and freeswitch_conf
installed (scripts/install_freeswitch_conf.py); it uses desk phone 1010 on port 5210.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.real.esl import EslClient, Seen
from tests.real.lab import RealSwitch, find_switch, place_call
from tests.real.sip import Phone

TRIGGERS = {
    "answer": lambda s, t: s.uuid == t["leg"] and s.name == "CHANNEL_ANSWER",
    "state_execute": lambda s, t: (
        s.uuid == t["leg"] and s.name == "CHANNEL_STATE" and s.get("Channel-State") == "CS_EXECUTE"
    ),
    "execute_park": lambda s, t: (
        s.uuid == t["leg"] and s.name == "CHANNEL_EXECUTE" and s.get("Application") == "park"
    ),
    "park": lambda s, t: s.uuid == t["leg"] and s.name == "CHANNEL_PARK",
    "job": lambda s, t: s.name == "BACKGROUND_JOB" and s.get("Job-UUID") == t["job"],
}
EVENTS = (
    "CHANNEL_STATE",
    "CHANNEL_ANSWER",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
)


class Sender:
    """A raw event-socket connection that only sends (no reply is awaited)."""

    def __init__(self, switch: RealSwitch) -> None:
        self.sock = socket.create_connection(switch.esl)
        self.sock.recv(1024)
        self.sock.sendall(f"auth {switch.password}\n\n".encode())
        reply = b""
        while b"\n\n" not in reply:
            reply += self.sock.recv(1024)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while self.sock.recv(65536):
            pass

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n\n")


class Probe:
    def __init__(self, switch: RealSwitch, args: argparse.Namespace) -> None:
        self.switch, self.args = switch, args
        self.sender = Sender(switch)
        self.trial: dict | None = None
        self.lock = threading.Lock()
        self.watch = EslClient(*switch.esl, switch.password, on_event=self.on_event)
        self.watch.subscribe(*EVENTS)
        self.ctl = switch.client()
        self.ctl.subscribe("BACKGROUND_JOB")

    def on_event(self, s: Seen) -> None:
        t = self.trial
        if t is None:
            return
        ours = s.uuid in (t["leg"], t["caller"]) or (
            s.name == "BACKGROUND_JOB" and s.get("Job-UUID") == t["job"]
        )
        if not ours:
            return
        who = "A" if s.uuid == t["leg"] else "C" if s.uuid == t["caller"] else "J"
        detail = s.get("Application") or s.get("Hangup-Cause")
        if s.name == "BACKGROUND_JOB":
            detail = (s.event.body or "").strip()[:24]
        t["events"].append(
            (s.at, who, s.name.replace("CHANNEL_", ""), s.get("Channel-State"), detail)
        )
        if t["sent"] is None and TRIGGERS[t["trigger"]](s, t):
            if t["delay"]:
                time.sleep(t["delay"] / 1000)
            if not self.args.no_break:
                self.sender.send(f"bgapi uuid_break {t['caller']} all")
            self.sender.send(f"bgapi uuid_bridge {t['caller']} {t['leg']}")
            t["sent"] = time.monotonic()

    def run_one(self, trigger: str, delay: float) -> tuple[bool, dict]:
        caller = place_call(self.ctl, "ccd_queue_general", number="+3612345600")
        self.ctl.api(f"sched_del {caller.b}")
        self.ctl.api(f"uuid_broadcast {caller.b} local_stream://moh aleg")
        leg, job = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        trial = {"trigger": trigger, "delay": delay, "leg": leg, "caller": caller.b,
                 "job": job, "events": [], "sent": None, "t0": time.monotonic()}  # fmt: skip
        self.trial = trial
        self.ctl.bgapi(f"originate {{origination_uuid={leg}}}user/1010 &park()", job)
        deadline = time.monotonic() + 5
        bridged = False
        while time.monotonic() < deadline:
            if any(e[2] == "BRIDGE" for e in trial["events"]):
                bridged = True
                break
            if trial["sent"] and time.monotonic() - trial["sent"] > 1.5:
                break
            time.sleep(0.02)
        self.trial = None
        self.ctl.api("hupall MANAGER_REQUEST")
        return bridged, trial


def show(trial: dict) -> str:
    t0 = trial["t0"]
    sent = (trial["sent"] - t0) * 1000 if trial["sent"] else -1
    steps = [
        f"{(t - t0) * 1000:.1f}{who}:{name}" + (f"/{state}" if name == "STATE" else "")
        + (f"/{detail}" if detail else "")
        for t, who, name, state, detail in trial["events"]
    ]  # fmt: skip
    return f"bridge sent at {sent:.1f} ms | " + " ".join(steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trigger", choices=sorted(TRIGGERS), action="append")
    p.add_argument("--delays", default="0,5", help="ms after the trigger, comma-separated")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--answer-ms", type=int, default=200)
    p.add_argument("--no-break", action="store_true", help="send uuid_bridge alone")
    p.add_argument("--show", type=int, default=2, help="failures printed per setting")
    args = p.parse_args(argv)
    switch = find_switch()
    if isinstance(switch, str):
        print(f"real_bridge_timing: {switch}", file=sys.stderr)
        return 2
    with switch.held():
        return drive(switch, args)


def drive(switch: RealSwitch, args: argparse.Namespace) -> int:
    switch.ensure_up()
    workdir = Path(tempfile.mkdtemp(prefix="ccd-bridge-timing-"))
    phone = Phone("1010", 5210, workdir, ("answer", args.answer_ms)).start()
    phone.register(expires=3600)
    probe = Probe(switch, args)
    try:
        for trigger in args.trigger or list(TRIGGERS):
            for delay in [float(d) for d in args.delays.split(",")]:
                failed = 0
                for _ in range(args.trials):
                    ok, trial = probe.run_one(trigger, delay)
                    if not ok:
                        failed += 1
                        if failed <= args.show:
                            print("  FAILED " + show(trial))
                print(
                    f"{trigger:14} +{delay:g} ms: {failed} of {args.trials} not bridged", flush=True
                )
    finally:
        phone.unregister()
        phone.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
