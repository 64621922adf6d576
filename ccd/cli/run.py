"""``ccd run``: the daemon."""

from __future__ import annotations

import argparse

from ccd.cli.common import EXIT_OK, add_config_arg, load_cli_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the daemon")
    add_config_arg(run)
    run.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ccd.logging import configure_logging

    config, _source = load_cli_config(args)
    configure_logging(args.log_format or config.log.format, config.log.level)
    from ccd.daemon import Daemon, build_call_control

    Daemon(config, call_control_factory=build_call_control).run_forever()
    return EXIT_OK
