"""``ccd run``: the daemon."""

from __future__ import annotations

import argparse
import sys

from ccd.cli.common import EXIT_OK, add_config_arg, load_cli_config

#: sysexits.h EX_CONFIG: a configuration error (a bad file, a busy port). The systemd unit
#: names it in RestartPreventExitStatus=: restarting cannot fix it.
EXIT_CONFIG = 78


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the daemon")
    add_config_arg(run)
    run.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ccd.config import ConfigError
    from ccd.logging import configure_logging

    try:
        config, source = load_cli_config(args)
        configure_logging(args.log_format or config.log.format, config.log.level)
        from ccd.daemon import Daemon, build_call_control

        daemon = Daemon(config, call_control_factory=build_call_control, config_path=source.path)
        daemon.run_forever()
    except ConfigError as exc:
        # One line per problem, never a traceback; exit 78 stops systemd's restart loop.
        for problem in exc.problems:
            print(f"ccd run: configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK
