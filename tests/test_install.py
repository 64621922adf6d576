"""The install path (issue 12): scripts/install.sh (make install) into a DESTDIR staging root,
twice (idempotent, the admin's files kept), and a dry run that changes nothing."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install.sh"


def install(destdir: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(destdir) if destdir else ""}
    return subprocess.run(
        ["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_stages_config_secrets_unit_and_docs_and_is_idempotent(tmp_path):
    stage = tmp_path / "stage"
    first = install(stage, "--no-venv")
    assert first.returncode == 0, first.stderr
    etc = stage / "etc" / "ccd"
    assert (etc / "ccd.toml").read_text() == (ROOT / "ccd" / "example.toml").read_text()
    assert mode(etc / "ccd.toml") == 0o640
    assert mode(etc / "ccd.env") == 0o600
    assert "CCD_HTTP_TOKEN" in (etc / "ccd.env").read_text()
    unit = stage / "etc" / "systemd" / "system" / "ccd.service"
    assert unit.read_text() == (ROOT / "scripts" / "ccd.service").read_text()
    docs = stage / "usr" / "share" / "doc" / "ccd"
    assert (docs / "README.md").is_file() and (docs / "example.toml").is_file()
    # Documentation= of the unit names a file the install puts there.
    doc_line = next(x for x in unit.read_text().splitlines() if x.startswith("Documentation="))
    assert (stage / doc_line.removeprefix("Documentation=file:///")).is_file()
    # Nothing outside the staging root: no user, no owner change, systemd not told.
    assert "(skipped, not a system install) useradd" in first.stdout or "user ccd exists" in (
        first.stdout
    )

    # The admin edits the files; installing again keeps them and refreshes the rest.
    (etc / "ccd.toml").write_text("# mine\n")
    (etc / "ccd.env").write_text("CCD_HTTP_TOKEN=mine-mine-mine-mine\n")
    unit.write_text("stale")
    again = install(stage, "--no-venv")
    assert again.returncode == 0, again.stderr
    assert (etc / "ccd.toml").read_text() == "# mine\n"
    assert (etc / "ccd.env").read_text() == "CCD_HTTP_TOKEN=mine-mine-mine-mine\n"
    assert unit.read_text() == (ROOT / "scripts" / "ccd.service").read_text()
    assert "keeping" in again.stdout


def test_a_dry_run_prints_every_step_and_changes_nothing(tmp_path):
    stage = tmp_path / "stage"
    dry = install(stage, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not stage.exists()
    for step in ("venv", "pip install", "ccd.toml", "ccd.env", "ccd.service", "README.md"):
        assert step in dry.stdout, step


def test_the_makefile_has_an_install_target_that_runs_the_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "\ninstall:\n" in makefile and "scripts/install.sh" in makefile


def test_an_unknown_option_is_refused():
    assert install(None, "--frobnicate").returncode == 2
