"""Desk phones on a real FreeSWITCH: feature codes, dispositions, *25, the direct callback.

The desk phones 1001-1006 are the directory users freeswitch_conf/ ships (context
ccd_agents): sipp registers each as a phone that answers, and dials from it as the agent
would (digest authentication, so FreeSWITCH knows the user, ${user_name}). Customers are
behind the ccd_trunk gateway, pointed by the tier at its customer phone (a sipp).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from ccd.core import presence
from ccd.core.callback import new_request
from ccd.core.queue import queue_order_key
from ccd.store.callback import CallbackStore
from ccd.store.redis_store import Store
from tests.real.lab import HTTP_TOKEN, bridged_pair, channel_events, wait_for
from tests.real.sip import dial

CONFIG = {
    "routing": {"ring_time": 4, "wrapup_time": 1},
    "sticky": {"default_type": "disabled"},
    "queues": {
        "general": {"tags": ["general"], "overflow_time": 0},
        "payments": {"tags": ["billing"], "overflow_time": 0, "callback_strategy": "passive"},
    },
    "agents": {
        "dora": {"extension": "1004", "tags": ["billing"]},
        "ed": {"extension": "1005", "tags": ["general", "outbound"], "sticky_type": "type3"},
        "fay": {"extension": "1006", "tags": ["general"]},
    },
}


@pytest.fixture(scope="module")
def center(make_center, make_phone, customer):
    center = make_center(CONFIG)
    center.phones = {ext: make_phone(ext, ("answer", 300)) for ext in ("1004", "1005", "1006")}
    center.customer = customer
    return center


def desk_call(center, workdir, user, number, **kwargs):
    """The desk phone ``user`` dials ``number``; the sipp run's exit status."""
    process = dial(user, number, workdir, sip=center.switch.sip, **kwargs)
    return process.wait(60)


def login_of(center, agent_id):
    return center.agents().require(agent_id).state.login


@pytest.mark.parametrize(
    ("code", "after"),
    [
        ("*21", presence.Login.READY),  # login
        ("*23", presence.Login.BREAK),  # break
        ("*24", presence.Login.READY),  # ready
        ("*22", presence.Login.LOGGED_OUT),  # logout
    ],
)
def test_feature_codes_change_the_agents_state(center, fs, workdir, code, after):
    mark = fs.mark()
    # FreeSWITCH answers, parks the call (ccd_action), the daemon plays its tone and hangs up:
    # the phone's scenario ends with FreeSWITCH's BYE.
    assert desk_call(center, workdir, "1006", code) == 0
    parked = fs.wait_event(
        lambda s: s.name == "CHANNEL_PARK" and s.var("ccd_agent_ext") == "1006",
        since=mark, what="the feature-code call parked",
    )  # fmt: skip
    hangup = fs.wait_event(
        lambda s: s.name == "CHANNEL_HANGUP_COMPLETE" and s.uuid == parked.uuid,
        since=mark, what="the feature-code call ended",
    )  # fmt: skip
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"
    wait_for(lambda: login_of(center, "fay") is after, 5, f"fay {after} after {code}")


def test_disposition_code_from_the_desk_phone_codes_the_last_call(center, fs, workdir, call):
    center.set_login("login", "fay")
    mark = fs.mark()
    caller = call("ccd_queue_general", number="+3612345690")
    wait_for(lambda: bridged_pair(fs.snapshot()[mark:], caller.b), 10, "fay bridged")
    caller.hang_up()
    fs.wait_event(
        lambda s: s.name == "CHANNEL_HANGUP_COMPLETE" and s.var("ccd_call") == caller.b,
        since=mark, what="fay's leg ended",
    )  # fmt: skip
    assert desk_call(center, workdir, "1006", "*706") == 0  # 06: interested
    center.wait_logged("agent.disposition", agent="fay")
    url = f"http://127.0.0.1:{center.http_port}/calls/{caller.b}/dispositions"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {HTTP_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        codes = json.load(reply)["codes"]
    assert "interested" in [c["name"] for c in codes]
    assert desk_call(center, workdir, "1006", "*799") == 0  # no such code: refused out loud
    center.wait_logged("agent.feature_code_refused", agent="fay", action="dispo")


def test_star_25_dials_a_due_callback_and_bridges_it_to_the_agent(center, fs, workdir):
    number = "+36201112222"
    store = CallbackStore(Store.create(center.redis.client(), "ccd:"))
    now = time.time()
    request = store.create(
        new_request(
            uuid.uuid4().hex, number, "payments", created_at=now - 5,
            order_key=queue_order_key(0, now - 5), caller_uuid=str(uuid.uuid4()),
            strategy="passive",
        ),
        None,
    )  # fmt: skip
    center.set_login("login", "dora")
    mark = fs.mark()
    before = len(center.customer.invites())
    agent = dial("1004", "*25", workdir, sip=center.switch.sip, wait_bye_ms=30000)
    try:
        parked = fs.wait_event(
            lambda s: s.name == "CHANNEL_PARK" and s.var("ccd_action") == "next_callback",
            since=mark, what="the *25 call parked",
        )  # fmt: skip
        customer_leg = wait_for(
            lambda: bridged_pair(fs.snapshot()[mark:], parked.uuid), 15, "agent bridged"
        )
        invite = center.customer.invites()[before]  # through the ccd_trunk gateway
        assert invite.user == number and invite.answered_at
        # The daemon's callback.caller_id is what the customer sees.
        assert "<sip:+15550100@" in invite.from_header
        assert fs.api(f"uuid_getvar {customer_leg} ccd_callback").strip() == request.id
        wait_for(lambda: store.require(request.id).status == "done", 5, "request done")
        fs.api(f"uuid_kill {parked.uuid}")
    finally:
        agent.wait(40)


def test_direct_callback_goes_to_the_agent_who_called_the_customer(center, fs, workdir, call):
    customer = "+36201234567"
    center.set_login("login", "ed")
    mark = fs.mark()
    # ed calls the customer from the desk phone, talks 1 s and hangs up.
    assert desk_call(center, workdir, "1005", customer, talk_ms=1000) == 0
    outside = fs.wait_event(
        lambda s: s.name == "CHANNEL_HANGUP_COMPLETE" and s.var("ccd_outbound") == "true",
        since=mark, what="ed's outside call ended",
    )  # fmt: skip
    assert outside.var("ccd_dialed") == customer
    center.wait_logged("agent.outside_call", agent="ed")
    wait_for(lambda: center.cli("sticky", "show", customer, check=False).returncode == 0, 5,
             "the binding")  # fmt: skip
    # The customer calls back the main number once ed is free again (after wrap-up): ed's
    # phone rings first, with DIRECT, though fay is free too and idle for longer.
    wait_for(
        lambda: center.agents().require("ed").at(time.time()).state.activity
        is presence.Activity.IDLE,
        5, "ed's wrap-up over",
    )  # fmt: skip
    phone = center.phones["1005"]
    before = len(phone.invites())
    mark = fs.mark()
    caller = call("5000", number=customer, name="Customer")
    other = wait_for(lambda: bridged_pair(fs.snapshot()[mark:], caller.b), 15, "the bridge")
    invite = phone.invites()[before]
    assert invite.display.startswith("DIRECT ")
    answered = channel_events(fs.snapshot()[mark:], other, "CHANNEL_ANSWER")
    assert answered[0].var("ccd_agent") == "ed"
    center.wait_logged("sticky.routed", call=caller.b)
    caller.hang_up()
