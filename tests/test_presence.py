"""ccd.core.presence: the agent state machine, including calls outside the queue."""

from __future__ import annotations

import msgpack
import pytest

from ccd.core.presence import (
    Activity,
    AgentState,
    IllegalTransition,
    Login,
    PresenceRules,
    answered,
    call_ended,
    offer,
    offer_failed,
    personal_call,
    reconcile,
    set_login,
    set_registered,
    tick,
)

RULES = PresenceRules(wrapup_time=10.0, max_missed_offers=0)
LEG = "aaaaaaaa-0000-0000-0000-000000000001"
OTHER = "aaaaaaaa-0000-0000-0000-000000000002"


def ready(at: float = 0.0) -> AgentState:
    state = AgentState("a1", registered=True)
    return set_login(state, "login", at).state


def test_login_break_ready_logout_table():
    s = ready()
    assert s.login is Login.READY
    s = set_login(s, "break", 1).state
    assert s.login is Login.BREAK
    s = set_login(s, "ready", 2).state
    assert s.login is Login.READY
    out = set_login(s, "logout", 3)
    assert out.state.login is Login.LOGGED_OUT
    assert out.facts[0].name == "agent.state"
    assert out.facts[0].data["previous_login"] == "ready"


@pytest.mark.parametrize(
    ("login", "action"),
    [
        ("logged_out", "break"),
        ("logged_out", "ready"),
        ("logged_out", "logout"),
        ("break", "break"),
    ],
)
def test_illegal_login_transition_raises_and_leaves_state(login, action):
    s = AgentState("a1", login=Login(login))
    with pytest.raises(IllegalTransition):
        set_login(s, action, 1)
    assert s.login is Login(login)


def test_offer_answer_hangup_wrapup_idle():
    s = ready()
    s = offer(s, LEG, 10).state
    assert s.activity is Activity.RINGING
    s = answered(s, LEG, 12).state
    assert s.activity is Activity.ONCALL
    assert answered(s, LEG, 12).facts == []  # +OK job after CHANNEL_ANSWER: no change
    s = call_ended(s, LEG, 50, RULES).state
    assert (s.activity, s.wrapup_until, s.next_deadline) == (Activity.WRAPUP, 60.0, 60.0)
    assert tick(s, 59.9).state.activity is Activity.WRAPUP
    out = tick(s, 60.0)
    assert out.state.activity is Activity.IDLE
    assert out.state.idle_since == 60.0
    assert out.facts[0].data["previous_activity"] == "wrapup"


def test_no_wrapup_configured_goes_straight_to_idle():
    s = answered(offer(ready(), LEG, 1).state, LEG, 2).state
    s = call_ended(s, LEG, 5, PresenceRules(wrapup_time=0)).state
    assert (s.activity, s.idle_since) == (Activity.IDLE, 5)


@pytest.mark.parametrize("outcome", ["no_answer", "busy", "rejected", "cancelled"])
def test_unanswered_offer_returns_to_idle(outcome):
    s = offer(ready(), LEG, 1).state
    s = offer_failed(s, LEG, outcome, 16, RULES).state
    assert (s.activity, s.offer_leg, s.idle_since) == (Activity.IDLE, None, 16)


def test_missed_offers_in_a_row_put_the_agent_on_break():
    rules = PresenceRules(max_missed_offers=2)
    s = offer_failed(offer(ready(), LEG, 1).state, LEG, "no_answer", 2, rules).state
    # A cancelled offer (caller hung up) is not the agent's miss and does not count.
    s = offer_failed(offer(s, OTHER, 3).state, OTHER, "cancelled", 4, rules).state
    assert (s.login, s.missed_offers) == (Login.READY, 1)
    out = offer_failed(offer(s, LEG, 5).state, LEG, "busy", 6, rules)
    assert out.state.login is Login.BREAK
    assert [f.name for f in out.facts] == ["agent.auto_break", "agent.state"]
    # Back from break: the count starts again.
    s = set_login(out.state, "ready", 7).state
    assert s.missed_offers == 0


def test_answer_resets_missed_offers_and_zero_means_off():
    s = offer_failed(offer(ready(), LEG, 1).state, LEG, "no_answer", 2, RULES).state
    s = offer_failed(offer(s, LEG, 3).state, LEG, "no_answer", 4, RULES).state
    assert (s.login, s.missed_offers) == (Login.READY, 2)
    s = answered(offer(s, OTHER, 5).state, OTHER, 6).state
    assert s.missed_offers == 0


def test_user_not_registered_marks_the_phone_unregistered():
    s = offer_failed(offer(ready(), LEG, 1).state, LEG, "unregistered", 2, RULES).state
    assert s.registered is False
    assert set_registered(s, True, 3).state.registered is True


def test_personal_call_makes_agent_oncall_then_idle_without_wrapup():
    s = personal_call(ready(), OTHER, 5).state
    assert s.activity is Activity.ONCALL
    with pytest.raises(IllegalTransition):
        offer(s, LEG, 6)
    s = call_ended(s, OTHER, 9, RULES).state
    assert (s.activity, s.wrapup_until) == (Activity.IDLE, None)


def test_personal_call_during_wrapup_resumes_the_running_wrapup():
    s = answered(offer(ready(), LEG, 1).state, LEG, 2).state
    s = call_ended(s, LEG, 10, RULES).state  # wrapup until 20
    s = personal_call(s, OTHER, 12).state
    assert s.activity is Activity.ONCALL
    assert call_ended(s, OTHER, 15, RULES).state.activity is Activity.WRAPUP
    assert call_ended(s, OTHER, 25, RULES).state.activity is Activity.IDLE


def test_offer_failing_while_a_personal_call_is_live_leaves_agent_oncall():
    s = offer(ready(), LEG, 1).state
    s = personal_call(s, OTHER, 2).state
    assert s.activity is Activity.RINGING
    s = offer_failed(s, LEG, "busy", 3, RULES).state
    assert s.activity is Activity.ONCALL
    assert call_ended(s, OTHER, 4, RULES).state.activity is Activity.IDLE


def test_logout_while_on_a_call_takes_effect_when_the_call_ends():
    s = answered(offer(ready(), LEG, 1).state, LEG, 2).state
    out = set_login(s, "logout", 3)
    assert out.state.login is Login.READY and out.state.logout_pending
    assert [f.name for f in out.facts] == ["agent.logout_pending"]
    s = call_ended(out.state, LEG, 4, RULES).state
    assert (s.login, s.logout_pending, s.activity) == (Login.LOGGED_OUT, False, Activity.WRAPUP)


def test_a_pending_logout_is_said_with_every_state_and_its_cancel_too():
    # The statistics keep what a busy agent does after its call (the estimated wait's input).
    s = set_login(offer(ready(), LEG, 1).state, "logout", 2).state
    out = answered(s, LEG, 3)
    (fact,) = out.facts
    assert fact.data["activity"] == "oncall" and fact.data["logout_pending"] is True
    out = set_login(out.state, "login", 4)  # stays after all: nothing visible changes
    assert not out.state.logout_pending
    assert [(f.name, f.data) for f in out.facts] == [("agent.logout_cancelled", {"agent": "a1"})]
    (fact,) = call_ended(out.state, LEG, 5, RULES).facts
    assert "logout_pending" not in fact.data


def test_logout_while_ringing_takes_effect_when_the_offer_ends():
    s = set_login(offer(ready(), LEG, 1).state, "logout", 2).state
    s = offer_failed(s, LEG, "no_answer", 3, RULES).state
    assert (s.login, s.activity) == (Login.LOGGED_OUT, Activity.IDLE)


def test_stale_events_for_unknown_legs_change_nothing():
    s = offer(ready(), LEG, 1).state
    assert answered(s, OTHER, 2) == (s, [])
    assert offer_failed(s, OTHER, "busy", 2, RULES) == (s, [])
    assert call_ended(s, OTHER, 2, RULES) == (s, [])


def test_queue_leg_ending_while_ringing_is_not_counted_as_missed():
    s = offer(ready(), LEG, 1).state
    s = call_ended(s, LEG, 2, RULES).state
    assert (s.activity, s.missed_offers) == (Activity.IDLE, 0)


def test_reconcile_nothing_live_after_restart_frees_a_ringing_agent():
    s = offer(ready(), LEG, 1).state
    s = reconcile(s, [], 100, RULES).state
    assert (s.activity, s.offer_leg) == (Activity.IDLE, None)


def test_reconcile_answered_queue_call_gone_goes_to_wrapup_then_idle():
    s = answered(offer(ready(), LEG, 1).state, LEG, 2).state
    s = reconcile(s, [], 100, RULES).state
    assert (s.activity, s.wrapup_until) == (Activity.WRAPUP, 110)
    assert tick(s, 110).state.activity is Activity.IDLE


def test_reconcile_unknown_live_channel_is_a_personal_call():
    s = reconcile(ready(), [OTHER], 100, RULES).state
    assert (s.activity, s.personal) == (Activity.ONCALL, (OTHER,))
    s = reconcile(s, [], 120, RULES).state
    assert (s.activity, s.personal) == (Activity.IDLE, ())


def test_reconcile_expired_wrapup_and_live_offer_leg():
    s = call_ended(answered(offer(ready(), LEG, 1).state, LEG, 2).state, LEG, 3, RULES).state
    assert reconcile(s, [], 50, RULES).state.activity is Activity.IDLE
    ringing = offer(ready(), LEG, 1).state
    assert reconcile(ringing, [LEG], 50, RULES).state == ringing


def test_state_roundtrips_through_msgpack():
    s = set_login(answered(offer(ready(), LEG, 1).state, LEG, 2).state, "logout", 3).state
    s = personal_call(s, OTHER, 4).state
    data = msgpack.unpackb(msgpack.packb(s.to_dict()))
    assert AgentState.from_dict(data) == s
