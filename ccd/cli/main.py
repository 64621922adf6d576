"""`ccd`: the daemon and the operators' command line, one module per noun.

Every command validates its input and answers a typo or a bad value with one
clear line on stderr and exit code 2; a runtime failure (Redis down, FreeSWITCH
unreachable) is exit code 1. Nothing prints a secret.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class UsageError(Exception):
    """The operator asked for something that cannot be done as asked."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    # The nouns import redis-py: only once main() has monkey-patched for gevent.
    from ccd.cli import (
        agent,
        callback,
        config,
        customer,
        disposition,
        dnc,
        queue,
        reload,
        run,
        status,
        sticky,
    )

    parser = _Parser(prog="ccd", description="Call-center daemon for FreeSWITCH.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    nouns = (run, reload, config, agent, sticky, queue, status, customer, callback, dnc,
             disposition)  # fmt: skip
    for noun in nouns:
        noun.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before redis-py or anything else opens a socket: the daemon is gevent-based.
    from gevent import monkey

    monkey.patch_all()
    from ccd.cli.common import EXIT_FAILURE, EXIT_USAGE
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
