"""A dialplan that asks for a tag no agent can carry (``ccd_tags=sales,lang:fr``): the caller
is served on the tags that are tags, and the operator is told once, not on every call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ccd.fakeswitch.switch import DEFAULT_CONF_DIR, FakeSwitch
from tests.support.daemon_fixtures import bridged, eventually
from tests.support.fakeswitch_fixtures import FAKESWITCH_DEFAULTS
from tests.test_routing_e2e import SALES, login

ALICE = {"alice": {"extension": "1001", "tags": ["sales"]}}


@pytest.fixture
def mistaken_switch(tmp_path: Path):
    """The fake FreeSWITCH with the shipped dialplan, sales asking for ``lang:fr`` too."""
    conf = tmp_path / "freeswitch_conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    dialplan = conf / "dialplan" / "ccd.xml"
    text = dialplan.read_text()
    assert text.count('data="ccd_tags=sales"') == 1
    dialplan.write_text(text.replace('data="ccd_tags=sales"', 'data="ccd_tags=sales,lang:fr"'))
    switch = FakeSwitch(conf, **{**FAKESWITCH_DEFAULTS})
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


def test_a_tag_no_agent_can_carry_is_refused_out_loud_and_the_caller_served(
    mistaken_switch, start_daemon
):
    fakeswitch = mistaken_switch
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=2)
    daemon = start_daemon(fakeswitch, agents=ALICE)
    login(daemon, "alice")
    with capture_logs() as logs:
        callers = []
        for n in range(2):
            caller = fakeswitch.place_call(f"+361234560{n}", "Tagged", digits=[SALES])
            callers.append(caller)
            eventually(lambda c=caller: bridged(fakeswitch, c), timeout=20, what="served")
            eventually(lambda c=caller: c not in fakeswitch.channels, timeout=20, what="over")
    [told] = [e for e in logs if e["event"] == "call.tags_refused"]
    assert told["call"] == callers[0] and told["queue"] == "sales"
    assert told["refused"] == ["lang:fr"] and told["log_level"] == "warning"
