"""Which configuration file: the daemon and every CLI command find it the same way.

1. ``-c/--config PATH`` on the command line;
2. else the environment variable ``CCD_CONFIG``;
3. else ``/etc/ccd/ccd.toml`` when it exists (what ``make install`` writes);
4. else no file: the schema's defaults and the environment, with a one-line note on stderr
   (a CLI on the default Redis port and no queues is rarely what the operator meant).

A path named by 1 or 2 must exist: a typo there is an error, never a silent fall back to the
defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_PATH", "ENV_CONFIG", "ConfigSource", "find_config"]

ENV_CONFIG = "CCD_CONFIG"
#: Where ``make install`` puts the configuration.
DEFAULT_PATH = Path("/etc/ccd/ccd.toml")


@dataclass(frozen=True)
class ConfigSource:
    """The file to read (None: defaults and environment only) and how it was chosen."""

    path: Path | None
    how: str  # "--config" | ENV_CONFIG | "default" | "none"

    @property
    def note(self) -> str | None:
        """The one line said when no file is used."""
        if self.path is not None:
            return None
        return (
            f"ccd: no configuration file (no --config, ${ENV_CONFIG} unset, {DEFAULT_PATH} "
            "absent): using the built-in defaults and the environment"
        )


def find_config(
    arg: Path | str | None,
    env: Mapping[str, str] | None = None,
    default: Path | None = None,
) -> ConfigSource:
    """The configuration file the rules above choose."""
    env = os.environ if env is None else env
    if arg:
        return ConfigSource(Path(arg), "--config")
    if env.get(ENV_CONFIG):
        return ConfigSource(Path(env[ENV_CONFIG]), ENV_CONFIG)
    default = DEFAULT_PATH if default is None else default
    if default.is_file():
        return ConfigSource(default, "default")
    return ConfigSource(None, "none")
