"""freeswitch_conf/ installed by scripts/install_freeswitch_conf.py into a real FreeSWITCH.

What FreeSWITCH says after the install and its reloadxml: nothing of ours in its log at
WARNING or worse, the contexts, menus, users and gateway where the daemon expects them,
every sound file of freeswitch_conf/SOUNDS.md on disk, and a second install that changes
nothing.
"""

from __future__ import annotations

import re

import pytest

from tests.real.lab import REPO, wait_for

SOUNDS = sorted(
    set(
        re.findall(
            r"`([a-z]+/[A-Za-z0-9_.-]+\.wav)`",
            (REPO / "freeswitch_conf" / "SOUNDS.md").read_text(encoding="utf-8"),
        )
    )
)


def test_install_again_changes_nothing(real_switch):
    backups = real_switch.conf_dir / "ccd-backups"
    before = sorted(p.name for p in backups.iterdir()) if backups.is_dir() else []
    output = real_switch.install()
    assert "already up to date" in output, output
    assert "reloadxml: +OK" in output
    after = sorted(p.name for p in backups.iterdir()) if backups.is_dir() else []
    assert after == before  # nothing replaced, so nothing backed up
    vars_xml = (real_switch.conf_dir / "vars.xml").read_text(encoding="utf-8")
    assert vars_xml.count('data="ccd_vars.xml"') == 1


def test_freeswitch_log_shows_no_error_from_the_install(real_switch):
    if real_switch.log_path is None:
        pytest.skip("no FreeSWITCH log named (CCD_REAL_FS_LOG)")
    offset = real_switch.log_size()
    real_switch.install()  # reloadxml: FreeSWITCH parses every file of ours again
    wait_for(lambda: real_switch.log_settled(offset), 10, "FreeSWITCH's log to settle")
    log = real_switch.log_since(offset)
    bad = [
        line
        for line in log.splitlines()
        if re.search(r"\[(ERR|CRIT|ALERT)\]", line)
        or ("[WARNING]" in line and re.search(r"ccd|ivr|dialplan|directory|gateway", line))
    ]
    assert bad == [], "\n".join(bad[:20])


def test_freeswitch_holds_what_the_daemon_relies_on(fs):
    for context in ("ccd", "ccd_agents"):
        found = fs.api(f"xml_locate dialplan context name {context}")
        assert f'name="{context}"' in found, found[:200]
    menus = fs.api("xml_locate configuration configuration name ivr.conf")
    for menu in ("ccd_main", "ccd_support"):
        assert f'name="{menu}"' in menus
    # Desk phones run their calls in ccd_agents; the queue boxes are users of the domain.
    assert fs.api("user_data 1001@127.0.0.1 var user_context").strip() == "ccd_agents"
    assert fs.api("user_data sales@127.0.0.1 var ccd_voicemail_box").strip() == "true"
    assert "ccd_trunk" in fs.api("sofia status gateway ccd_trunk")
    assert int(re.search(r"(\d+)", fs.api("fsctl sps")).group(1)) >= 200
    for module in ("mod_sofia", "mod_voicemail", "mod_local_stream", "mod_say_en"):
        assert fs.api(f"module_exists {module}").strip() == "true", module


@pytest.mark.parametrize("sound", SOUNDS)
def test_every_listed_sound_file_is_on_the_switch(fs, sound):
    prefix = fs.api("global_getvar sound_prefix").strip()
    directory, name = sound.split("/")
    assert fs.api(f"file_exists {prefix}/{directory}/8000/{name}").strip() == "true", sound
