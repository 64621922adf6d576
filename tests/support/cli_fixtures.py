"""Fixture plugin for the command-line tests: the commands configure logging for the process.

Helpers beside it: :func:`run_ccd` runs one command in this process, :func:`refused` checks
a refusal, :func:`cli_clock` puts the commands' wall clock under the test's control.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import structlog

from ccd.cli import common
from ccd.cli.main import main


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Leave structlog and the root logger as the test found them."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def run_ccd(
    capsys: pytest.CaptureFixture[str], config: Path, argv: Sequence[str], words: int
) -> tuple[int, str, str]:
    """``ccd`` with ``argv``, ``-c config`` after its first ``words`` words (the command), in
    this process; returns (exit code, stdout, stderr)."""
    args = [*argv[:words], "-c", str(config), *argv[words:]]
    capsys.readouterr()  # drop what the test's own setup logged
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def refused(code: int, out: str, err: str) -> str:
    """Exit 2 with exactly one line on stderr and nothing on stdout; returns that line."""
    assert code == 2, (out, err)
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err.strip()


def cli_clock(monkeypatch: pytest.MonkeyPatch, start: float) -> list[float]:
    """The commands' wall clock under the test's control: ``now[0]``, ``start`` at first."""
    now = [start]
    monkeypatch.setattr(common, "_now", lambda: now[0])
    return now
