"""``ccd-fakeswitch``: run the fake FreeSWITCH (optionally a scenario) from a shell.

Runs until SIGTERM/SIGINT, or with ``--scenario`` until the scenario ends.
Bad arguments, a bad scenario or conf: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import gevent
import gevent.event
import structlog

from ccd.fakeswitch.dialplan import ConfError
from ccd.fakeswitch.scenario import ScenarioError, load_scenario, run_scenario
from ccd.fakeswitch.switch import DEFAULT_CONF_DIR, FakeSwitch

log = structlog.get_logger()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"ccd-fakeswitch: {message}\n")
        raise SystemExit(2)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ccd-fakeswitch", description="A fake FreeSWITCH event socket.")
    p.add_argument("--esl-host", default="127.0.0.1")
    p.add_argument("--esl-port", type=_port, default=8021)
    p.add_argument("--password", default="ClueCon")
    p.add_argument("--scenario")
    p.add_argument("--trace")
    p.add_argument("--time-scale", type=_positive, default=1.0)
    p.add_argument("--conf", default=str(DEFAULT_CONF_DIR))
    p.add_argument("--sessions-per-second", type=int, default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else None
        switch = FakeSwitch(
            conf_dir=args.conf,
            time_scale=args.time_scale,
            host=args.esl_host,
            port=args.esl_port,
            password=args.password,
            trace_path=args.trace,
            sessions_per_second=args.sessions_per_second,
        )
        switch.start()
        switch.settle()  # one fake for the whole process: its set-up out of the collector's way
    except (ScenarioError, ConfError) as exc:
        sys.stderr.write(f"ccd-fakeswitch: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(
            f"ccd-fakeswitch: cannot listen on {args.esl_host}:{args.esl_port}: {exc.strerror}\n"
        )
        return 2
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    try:
        if scenario is not None:
            runner = gevent.spawn(run_scenario, switch, scenario)
            runner.link(lambda _g: stop.set())
        stop.wait()
    finally:
        switch.stop()
        log.info("fakeswitch.stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
