"""``ccd config check FILE`` and ``ccd config defaults``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccd.cli.common import EXIT_OK
from ccd.config import defaults_table, load_config
from ccd.config.lookup import find_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cfg = sub.add_parser("config", help="check or explain configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate a configuration file")
    check.add_argument(
        "path", type=Path, nargs="?", help="default: the file the daemon reads (ccd run)"
    )
    check.set_defaults(func=cmd_config_check)
    defaults = cfg_sub.add_parser("defaults", help="print every key with its default")
    defaults.set_defaults(func=cmd_config_defaults)


def cmd_config_check(args: argparse.Namespace) -> int:
    source = find_config(args.path)
    if source.path is None:
        print(source.note, file=sys.stderr)
    config = load_config(source.path)
    name = source.path or "defaults"
    print(f"{name}: ok ({len(config.queues)} queues, {len(config.agents)} agents)")
    return EXIT_OK


def cmd_config_defaults(args: argparse.Namespace) -> int:
    rows = defaults_table()
    width = max(len(key) for key, _default, _doc in rows)
    for key, default, doc in rows:
        print(f"{key:<{width}}  {default!r:<28} {doc}")
    return EXIT_OK
