"""scripts/install_freeswitch_conf.py on a conf dir of its own (no FreeSWITCH: --no-reload).

The real-switch tier runs it against a real FreeSWITCH (tests/real/test_install.py); here
the file rules: what is copied, what is backed up, vars.xml's one line, the
sessions-per-second that is never lowered, and a second run that changes nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_freeswitch_conf.py"
SHIPPED = sorted(
    p.relative_to(ROOT / "freeswitch_conf") for p in (ROOT / "freeswitch_conf").rglob("*.xml")
)

_spec = importlib.util.spec_from_file_location("install_freeswitch_conf", SCRIPT)
installer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(installer)

VARS = """<include>
  <X-PRE-PROCESS cmd="set" data="domain=$${local_ip_v4}"/>
</include>
"""
SWITCH_CONF = """<configuration name="switch.conf" description="Core Configuration">
  <settings>
    <!-- <param name="sessions-per-second" value="9000"/> -->
    <param name="sessions-per-second" value="{sps}"/>
    <param name="max-sessions" value="1000"/>
  </settings>
</configuration>
"""


def stock_conf(tmp_path: Path, sps: int = 30) -> Path:
    conf = tmp_path / "freeswitch"
    (conf / "autoload_configs").mkdir(parents=True)
    (conf / "vars.xml").write_text(VARS)
    (conf / "autoload_configs" / "switch.conf.xml").write_text(SWITCH_CONF.format(sps=sps))
    (conf / "autoload_configs" / "event_socket.conf.xml").write_text("<configuration/>\n")
    return conf


def run(conf: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert installer.main(["--conf-dir", str(conf), "--no-reload", *extra]) == 0
    return capsys.readouterr().out


def backups(conf: Path) -> list[Path]:
    root = conf / "ccd-backups"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def test_installs_every_shipped_xml_file_and_backs_up_the_one_it_replaces(tmp_path, capsys):
    conf = stock_conf(tmp_path)
    out = run(conf, capsys)
    for rel in SHIPPED:
        assert (conf / rel).read_bytes() == (ROOT / "freeswitch_conf" / rel).read_bytes(), rel
    assert not (conf / "SOUNDS.md").exists()  # documentation stays in the checkout
    assert f"replace {Path('autoload_configs/event_socket.conf.xml')}" in out
    saved = backups(conf)
    assert [p.name for p in saved] == ["event_socket.conf.xml", "vars.xml"]
    assert saved[0].read_text() == "<configuration/>\n"
    assert saved[1].read_text() == VARS
    # switch.conf.xml is FreeSWITCH's (or the operator's): never touched.
    assert (conf / "autoload_configs" / "switch.conf.xml").read_text() == SWITCH_CONF.format(sps=30)


def test_vars_xml_gets_the_include_line_once(tmp_path, capsys):
    conf = stock_conf(tmp_path)
    run(conf, capsys)
    run(conf, capsys)
    text = (conf / "vars.xml").read_text()
    assert text.count('<X-PRE-PROCESS cmd="include" data="ccd_vars.xml"/>') == 1
    assert text.index("domain=") < text.index("ccd_vars.xml") < text.index("</include>")


def test_second_run_changes_nothing(tmp_path, capsys):
    conf = stock_conf(tmp_path)
    run(conf, capsys)
    first = backups(conf)
    out = run(conf, capsys)
    assert "already up to date" in out
    assert backups(conf) == first


def test_an_operators_edit_is_backed_up_before_it_is_replaced(tmp_path, capsys):
    conf = stock_conf(tmp_path)
    run(conf, capsys)
    edited = conf / "dialplan" / "ccd.xml"
    edited.write_text(edited.read_text() + "<!-- mine -->\n")
    out = run(conf, capsys)
    assert f"replace {Path('dialplan/ccd.xml')}" in out
    assert any(p.read_text().endswith("<!-- mine -->\n") for p in backups(conf))
    assert edited.read_bytes() == (ROOT / "freeswitch_conf" / "dialplan" / "ccd.xml").read_bytes()


def test_site_settings_in_ccd_vars_d_are_never_touched(tmp_path, capsys):
    conf = stock_conf(tmp_path)
    site = conf / "ccd_vars.d" / "site.xml"
    site.parent.mkdir()
    site.write_text('<include><X-PRE-PROCESS cmd="set" data="ccd_esl_password=s3cret"/></include>')
    run(conf, capsys)
    assert "s3cret" in site.read_text()
    assert 'data="ccd_vars.d/*.xml"' in (conf / "ccd_vars.xml").read_text()


@pytest.mark.parametrize(("existing", "installed"), [(30, 200), (500, 500)])
def test_sessions_per_second_is_raised_never_lowered(tmp_path, capsys, existing, installed):
    conf = stock_conf(tmp_path, sps=existing)
    run(conf, capsys)
    post_load = (conf / "autoload_configs" / "post_load_switch.conf.xml").read_text()
    assert installer._active_sps(post_load) == installed


def test_dry_run_writes_nothing(tmp_path, capsys):
    conf = stock_conf(tmp_path)
    out = run(conf, capsys, "--dry-run")
    assert "would: install dialplan/ccd.xml" in out.replace("\\", "/")
    assert not (conf / "dialplan").exists() and not backups(conf)
