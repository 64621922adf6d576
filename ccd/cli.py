"""`ccd`: the daemon and the operators' command line.

Every command validates its input and answers a typo or a bad value with one
clear line on stderr and exit code 2; a runtime failure (Redis down, FreeSWITCH
unreachable) is exit code 1. Nothing prints a secret.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The operator asked for something that cannot be done as asked."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def _add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="TOML configuration file (default: built-in defaults + environment)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ccd", description="Call-center daemon for FreeSWITCH.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the daemon")
    _add_config_arg(run)
    run.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="check or explain configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = cfg_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("path", type=Path)
    check.set_defaults(func=cmd_config_check)
    defaults = cfg_sub.add_parser("defaults", help="print every key with its default")
    defaults.set_defaults(func=cmd_config_defaults)

    from ccd import operations, operations_dispo

    operations.register(sub, _add_config_arg)
    operations_dispo.register(sub, _add_config_arg)
    return parser


def _load(path: Path | None):  # -> Config
    from ccd.config import load_config

    return load_config(path)


def cmd_run(args: argparse.Namespace) -> int:
    from ccd.logging import configure_logging

    config = _load(args.config)
    configure_logging(args.log_format or config.log.format, config.log.level)
    from ccd.daemon import Daemon, build_call_control

    Daemon(config, call_control_factory=build_call_control).run_forever()
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args.path)
    print(f"{args.path}: ok ({len(config.queues)} queues, {len(config.agents)} agents)")
    return EXIT_OK


def cmd_config_defaults(args: argparse.Namespace) -> int:
    from ccd.config import defaults_table

    rows = defaults_table()
    width = max(len(key) for key, _default, _doc in rows)
    for key, default, doc in rows:
        print(f"{key:<{width}}  {default!r:<28} {doc}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    # Before redis-py or anything else opens a socket: the daemon is gevent-based.
    from gevent import monkey

    monkey.patch_all()
    from ccd.config import ConfigError
    from ccd.store.redis_store import RedisUnavailable

    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"ccd: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RedisUnavailable as exc:
        print(f"ccd: Redis unavailable: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
