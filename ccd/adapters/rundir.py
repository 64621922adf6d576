"""The daemon's run directory: its pid file and the outcome of its last reload.

Under systemd the unit's ``RuntimeDirectory=ccd`` makes ``/run/ccd`` (owned by the ``ccd``
user) and passes it as ``$RUNTIME_DIRECTORY``; by hand ``$CCD_RUN_DIR`` names another one.
The daemon writes ``ccd.pid`` there at start (removed at a clean stop) and ``reload.json``
after every reload: ``ccd reload`` signals the daemon and reads the outcome (the problems of
a bad file, the settings that need a restart) from it. Without a writable run directory the
daemon runs all the same, and says so once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ENV_RUN_DIR", "RunDir", "default_run_dir"]

ENV_RUN_DIR = "CCD_RUN_DIR"
DEFAULT = Path("/run/ccd")


def default_run_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$RUNTIME_DIRECTORY`` (systemd; the first of a list), else ``$CCD_RUN_DIR``, else
    ``/run/ccd``."""
    env = os.environ if env is None else env
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime or env.get(ENV_RUN_DIR) or DEFAULT)


class RunDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def pid_file(self) -> Path:
        return self.path / "ccd.pid"

    @property
    def reload_file(self) -> Path:
        return self.path / "reload.json"

    @property
    def usable(self) -> bool:
        return self.path.is_dir() and os.access(self.path, os.W_OK | os.X_OK)

    def claim(self, pid: int) -> bool:
        """Write the pid file; False when the directory is missing or not writable."""
        if not self.usable:
            return False
        self._write(self.pid_file, f"{pid}\n")
        return True

    def release(self, pid: int) -> None:
        """Remove the pid file if it is still ours (a newer daemon may have written it)."""
        if self.read_pid() == pid:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def read_pid(self) -> int | None:
        try:
            text = self.pid_file.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def write_reload(self, outcome: Mapping[str, Any]) -> bool:
        if not self.usable:
            return False
        self._write(self.reload_file, json.dumps(outcome, indent=2, sort_keys=True) + "\n")
        return True

    def read_reload(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.reload_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Whole or not at all: a reader never sees half a file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
