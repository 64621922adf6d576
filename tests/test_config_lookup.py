"""The CLI finds its configuration like the daemon (issue 12): -c/--config, else $CCD_CONFIG,
else /etc/ccd/ccd.toml, else the defaults with a one-line note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccd.cli.main import main
from ccd.config import lookup
from ccd.config.lookup import find_config

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def etc(tmp_path, monkeypatch) -> Path:
    """Where /etc/ccd/ccd.toml would be (absent until a test writes it)."""
    path = tmp_path / "etc" / "ccd.toml"
    path.parent.mkdir()
    monkeypatch.setattr(lookup, "DEFAULT_PATH", path)
    monkeypatch.delenv("CCD_CONFIG", raising=False)
    return path


def write(path: Path, redis_url: str, queue: str) -> Path:
    path.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "lk:"\n[queues.{queue}]\n')
    return path


def test_the_order_is_flag_then_environment_then_etc_then_defaults(etc, tmp_path):
    flag, env_file = tmp_path / "flag.toml", tmp_path / "env.toml"
    env = {"CCD_CONFIG": str(env_file)}
    assert find_config(flag, env) == lookup.ConfigSource(flag, "--config")
    assert find_config(None, env) == lookup.ConfigSource(env_file, "CCD_CONFIG")
    assert find_config(None, {}).path is None and find_config(None, {}).note
    etc.write_text("")
    assert find_config(None, {}) == lookup.ConfigSource(etc, "default")
    assert find_config(None, {"CCD_CONFIG": ""}).path == etc  # empty counts as unset


def queues_listed(capsys) -> list[str]:
    out = capsys.readouterr().out
    return sorted(q["name"] for q in json.loads(out))


def test_the_cli_reads_ccd_config_as_the_daemon_does(etc, tmp_path, redis_url, capsys,
                                                      monkeypatch):  # fmt: skip
    monkeypatch.setenv("CCD_CONFIG", str(write(tmp_path / "c.toml", redis_url, "from_env")))
    assert main(["queue", "list", "--json"]) == 0
    assert queues_listed(capsys) == ["from_env"]


def test_the_cli_reads_etc_ccd_when_nothing_says_otherwise(etc, redis_url, capsys):
    write(etc, redis_url, "from_etc")
    assert main(["queue", "list", "--json"]) == 0
    assert queues_listed(capsys) == ["from_etc"]
    assert capsys.readouterr().err == ""


def test_without_any_file_the_defaults_are_used_with_one_line_said(etc, capsys, monkeypatch):
    monkeypatch.setenv("CCD_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    assert main(["queue", "list"]) == 1  # Redis unavailable: the defaults were used
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ccd: no configuration file (no --config, $CCD_CONFIG unset")
    assert str(etc) in err[0]


def test_a_named_file_that_is_missing_is_an_error_not_the_defaults(etc, tmp_path, capsys,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setenv("CCD_CONFIG", str(tmp_path / "typo.toml"))
    assert main(["queue", "list"]) == 2
    assert "typo.toml: cannot read the config file" in capsys.readouterr().err


def test_config_check_without_a_path_checks_what_the_daemon_reads(etc, redis_url, capsys):
    write(etc, redis_url, "sales")
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{etc}: ok (1 queues")
