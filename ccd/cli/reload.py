"""``ccd reload``: the running daemon reads its configuration file again, without dropping a call.

How the daemon is found, and why
--------------------------------
The daemon reloads on SIGHUP (``ccd.supervisor``), so ``ccd reload`` sends that signal; it
needs no token, no Redis and no open port, and only root or the daemon's own user (``ccd``)
may signal it: the ordinary Unix permission decides who may reload. The pid is, in order:

1. ``--pid PID``;
2. ``$MAINPID``: systemd sets it for ``ExecReload=``, so ``systemctl reload ccd`` runs this
   command and reports its exit status;
3. the pid file ``ccd.pid`` in the run directory (``$RUNTIME_DIRECTORY``, ``$CCD_RUN_DIR``,
   ``/run/ccd``);
4. ``systemctl show --property MainPID ccd`` where systemd runs the daemon.

The daemon writes the outcome to ``reload.json`` in its run directory; this command waits for
it and prints it: what changed, the settings that need a restart, or every problem of an
invalid file (the running configuration is kept). Exit 0 when applied, 2 when the file is
invalid, 1 when no daemon was found, signalled or heard from.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ccd.adapters.rundir import RunDir, default_run_dir
from ccd.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, one_line

#: Seconds to wait for the daemon's outcome (it reloads between two events).
WAIT = 20.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "reload",
        help="make the running daemon read its configuration again (no call is dropped)",
        description="Send SIGHUP to the running daemon and print the outcome of the reload.",
    )
    p.add_argument("--pid", type=int, default=None, help="the daemon's pid (default: found)")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="the daemon's run directory (default: $RUNTIME_DIRECTORY, $CCD_RUN_DIR, /run/ccd)",
    )
    p.add_argument("--wait", type=float, default=WAIT, help="seconds to wait for the outcome")
    p.set_defaults(func=cmd_reload)


def _systemd_pid() -> int | None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        out = subprocess.run(
            [systemctl, "show", "--property", "MainPID", "--value", "ccd"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out) if out.isdigit() and int(out) > 0 else None


def find_pid(args: argparse.Namespace, run_dir: RunDir) -> tuple[int | None, str]:
    """The daemon's pid and where it was found."""
    if args.pid:
        return args.pid, "--pid"
    main_pid = os.environ.get("MAINPID", "")
    if main_pid.isdigit() and int(main_pid) > 0:
        return int(main_pid), "$MAINPID"
    pid = run_dir.read_pid()
    if pid:
        return pid, str(run_dir.pid_file)
    return _systemd_pid(), "systemctl"


def cmd_reload(args: argparse.Namespace) -> int:
    run_dir = RunDir(args.run_dir or default_run_dir())
    pid, where = find_pid(args, run_dir)
    if pid is None:
        print(
            f"ccd reload: no running daemon found (no {run_dir.pid_file}, no $MAINPID, "
            "systemd knows no ccd service); start it, or give --pid",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    before = run_dir.read_reload() or {}
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"ccd reload: no process {pid} (from {where}): is the daemon running?",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE
    except PermissionError:
        print(f"ccd reload: not allowed to signal the daemon (pid {pid}): run it as root or "
              "as the daemon's user", file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE
    outcome = _wait_for_outcome(run_dir, pid, before, args.wait)
    if outcome is None:
        print(
            f"ccd reload: sent SIGHUP to {pid}; no outcome in {run_dir.reload_file} within "
            f"{args.wait:g} s: see the daemon's log (config.reloaded / config.reload_failed)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return _report(outcome)


def _wait_for_outcome(run_dir: RunDir, pid: int, before: dict, wait: float) -> dict | None:
    """The daemon's next outcome: a reload.json of that pid other than the one before."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        outcome = run_dir.read_reload()
        if outcome and outcome != before and outcome.get("pid") == pid:
            return outcome
        time.sleep(0.05)
    return None


def _report(outcome: dict) -> int:
    config = outcome.get("config") or "(no file: defaults and environment)"
    if not outcome.get("ok"):
        print(f"ccd reload: {config} NOT applied; the daemon keeps its running configuration:",
              file=sys.stderr)  # fmt: skip
        for problem in outcome.get("problems", []):
            print(f"  {one_line(str(problem))}", file=sys.stderr)
        return EXIT_USAGE
    print(f"reloaded {config}")
    for line in outcome.get("changes", []) or ["(nothing changed)"]:
        print(f"  {one_line(str(line))}")
    for line in outcome.get("restart_needed", []):
        print(f"  restart needed: {one_line(str(line))}")
    return EXIT_OK
