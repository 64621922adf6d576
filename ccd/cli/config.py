"""``ccd config check FILE`` and ``ccd config defaults``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccd.cli.common import EXIT_OK
from ccd.config import defaults_table, load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cfg = sub.add_parser("config", help="check or explain configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("path", type=Path)
    check.set_defaults(func=cmd_config_check)
    defaults = cfg_sub.add_parser("defaults", help="print every key with its default")
    defaults.set_defaults(func=cmd_config_defaults)


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.path)
    print(f"{args.path}: ok ({len(config.queues)} queues, {len(config.agents)} agents)")
    return EXIT_OK


def cmd_config_defaults(args: argparse.Namespace) -> int:
    rows = defaults_table()
    width = max(len(key) for key, _default, _doc in rows)
    for key, default, doc in rows:
        print(f"{key:<{width}}  {default!r:<28} {doc}")
    return EXIT_OK
