"""ccd.core.hunt: one call's hunt for an agent, driven with a fake clock.

Routing's answers (an agent reserved for the call, or "nobody free") are given by hand here;
the Redis side that produces them is tested in test_routing_store.py.
"""

from __future__ import annotations

import itertools

import msgpack
import pytest

from ccd.core.commands import Break, Bridge, Broadcast, Kill, Originate, Transfer, to_esl
from ccd.core.hunt import LEG_END_WAIT, Hunt, Phase, Release, Step
from ccd.core.queue import QueueRules, outcome_for_cause, queue_order_key
from ccd.core.routing import AgentView

CALL = "c0000000-0000-0000-0000-000000000001"
RULES = QueueRules("sales", ("sales",), ring_time=15.0, ring_margin=3)
_uuids = itertools.count(1)


def new_leg() -> str:
    return f"00000000-0000-0000-0000-{next(_uuids):012d}"


def agent(id: str, ext: str) -> AgentView:
    return AgentView(id, ext, frozenset({"sales"}), "ready", True, "idle", 0.0)


A1, A2, A3 = agent("a1", "1001"), agent("a2", "1002"), agent("a3", "1003")


def new_hunt(rules: QueueRules = RULES, **kw) -> Hunt:
    return Hunt(CALL, rules, caller_number="+36 1 234", caller_display="Doe, John", **kw)


def ring(hunt: Hunt, agent: AgentView, now: float):
    """Routing reserved ``agent`` for the call; returns the Originate and the step."""
    step = hunt.on_matched(agent.id, agent.extension, new_leg(), new_leg(), now)
    (originate,) = [c for c in step.commands if isinstance(c, Originate)]
    return originate, step


def names(step) -> list[str]:
    return [f.name for f in step.facts]


def answer(hunt: Hunt, originate: Originate, now: float) -> Step:
    """The agent answers and the leg parks: the bridge step."""
    hunt.on_agent_answered(originate.leg_uuid, now)
    return hunt.on_agent_parked(originate.leg_uuid, now)


def test_start_plays_music_and_asks_routing():
    hunt = new_hunt()
    step = hunt.start(0.0)
    assert step.commands == (Broadcast(CALL, "local_stream://moh", "aleg"),)
    assert step.match and hunt.phase is Phase.WAITING
    step = hunt.on_entered(7, ["sales", "lang_hu"])
    assert names(step) == ["call.queued"] and step.facts[0].data["tags"] == ["lang_hu", "sales"]
    assert hunt.priority == 7 and hunt.rules.required_tags == ("lang_hu", "sales")


def test_originate_carries_call_agent_timeout_and_screen_pop():
    hunt = new_hunt()
    hunt.start(0.0)
    originate, step = ring(hunt, A1, 1.0)
    assert originate.endpoint_ext == "1001"
    assert originate.ring_timeout == 18  # 15 s ring + 3 s safety margin
    assert originate.variables == {
        "ccd_call": CALL,
        "ccd_agent": "a1",
        "ccd_queue": "sales",
        "origination_caller_id_name": "Doe, John",
        "origination_caller_id_number": "+361234",
    }
    assert originate.job_uuid is not None and originate.job_uuid != originate.leg_uuid
    assert names(step) == ["agent.offered"]
    assert hunt.next_deadline == 16.0
    kind, text = to_esl(originate)
    assert kind == "bgapi" and "origination_caller_id_name=\\'Doe, John\\'" in text


def test_answered_leg_is_bridged_only_once_it_is_parked():
    hunt = new_hunt()
    hunt.start(0.0)
    originate, _ = ring(hunt, A1, 1.0)
    step = hunt.on_agent_answered(originate.leg_uuid, 5.0)
    # FreeSWITCH runs the originate's &park() after the answer; a bridge before it is undone.
    assert step.commands == () and names(step) == ["agent.answered"]
    assert hunt.phase is Phase.ANSWERED and hunt.next_deadline is None
    step = hunt.on_agent_parked(originate.leg_uuid, 5.2)
    assert step.commands == (Break(CALL), Bridge(CALL, originate.leg_uuid))
    # The +OK job result for the same answer does nothing more.
    assert hunt.on_job_result(originate.job_uuid, True, originate.leg_uuid, 5.3) == Step()
    step = hunt.on_bridged(5.3)
    assert names(step) == ["call.bridged"] and hunt.phase is Phase.BRIDGED
    step = hunt.on_agent_leg_hangup(originate.leg_uuid, "NORMAL_CLEARING", 60.0)
    assert step.releases == (Release("a1", "completed", originate.leg_uuid),)
    assert hunt.done and hunt.result == "bridged"


def test_the_originates_ok_bridges_at_once_and_the_leg_park_after_it_adds_nothing():
    # FreeSWITCH sends +OK once it set the leg to run &park(): a bridge from then on holds.
    hunt = new_hunt()
    hunt.start(0.0)
    originate, _ = ring(hunt, A1, 1.0)
    hunt.on_agent_answered(originate.leg_uuid, 3.9)
    step = hunt.on_job_result(originate.job_uuid, True, originate.leg_uuid, 4.0)
    assert step.commands == (Break(CALL), Bridge(CALL, originate.leg_uuid))
    assert hunt.on_agent_parked(originate.leg_uuid, 4.1) == Step()


def test_a_park_before_the_answer_event_still_bridges_once():
    hunt = new_hunt()
    hunt.start(0.0)
    originate, _ = ring(hunt, A1, 1.0)
    step = hunt.on_agent_parked(originate.leg_uuid, 4.0)
    assert names(step) == ["agent.answered"] and Bridge(CALL, originate.leg_uuid) in step.commands
    assert hunt.on_agent_answered(originate.leg_uuid, 4.1) == Step()
    assert hunt.on_agent_parked(originate.leg_uuid, 4.2) == Step()


def time_out(hunt: Hunt, leg: str, now: float) -> Step:
    """The ring deadline at ``now``, then the killed leg's hangup: the step that asks routing."""
    hunt.on_tick(now)
    return hunt.on_agent_leg_hangup(leg, "ORIGINATOR_CANCEL", now + 0.01)


def test_ring_timeout_kills_the_leg_and_looks_for_the_next_agent_once_it_has_ended():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    assert hunt.on_tick(15.9).commands == ()  # not yet
    step = hunt.on_tick(16.0)
    assert step.commands == (Kill(first.leg_uuid, "ORIGINATOR_CANCEL"),)
    assert step.releases == (Release("a1", "no_answer", first.leg_uuid, tried=True),)
    assert names(step) == ["agent.no_answer"] and hunt.tried == ["a1"]
    # One phone rings at a time on the wire: no next agent while the first leg still lives.
    assert not step.match and hunt.phase is Phase.CANCELLING
    assert hunt.next_deadline == 16.0 + LEG_END_WAIT
    assert hunt.on_agent_leg_hangup(new_leg(), "NORMAL_CLEARING", 16.01) == Step()
    step = hunt.on_agent_leg_hangup(first.leg_uuid, "ORIGINATOR_CANCEL", 16.02)
    assert step.match and step.commands == () and step.releases == ()
    second, _ = ring(hunt, A2, 16.03)
    assert second.endpoint_ext == "1002" and second.leg_uuid != first.leg_uuid


def test_a_killed_leg_whose_end_never_comes_holds_the_caller_no_longer_than_the_wait():
    hunt = new_hunt()
    hunt.start(0.0)
    ring(hunt, A1, 1.0)
    hunt.on_tick(16.0)
    assert not hunt.on_tick(16.0 + LEG_END_WAIT - 0.01).match
    step = hunt.on_tick(16.0 + LEG_END_WAIT)
    assert step.match and step.commands == () and hunt.phase is Phase.WAITING


def test_the_caller_leaving_while_the_killed_leg_ends_is_abandoned_without_a_second_kill():
    hunt = new_hunt()
    hunt.start(0.0)
    ring(hunt, A1, 1.0)
    hunt.on_tick(16.0)
    step = hunt.on_caller_hangup(16.01)
    assert names(step) == ["call.abandoned"] and step.releases == ()
    assert not any(isinstance(c, Kill) for c in step.commands) and hunt.done


def test_a_hunt_waiting_for_a_killed_leg_survives_a_restart_and_resumes_routing():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    hunt.on_tick(16.0)
    restored = Hunt.from_dict(msgpack.unpackb(msgpack.packb(hunt.to_dict())))
    assert restored.phase is Phase.CANCELLING and restored.ending_leg == first.leg_uuid
    step = restored.on_resync([CALL], 17.0)
    assert step.match and restored.phase is Phase.WAITING


def test_a_tried_agent_handed_back_by_routing_is_released_not_rung():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    time_out(hunt, first.leg_uuid, 16.0)
    leg = new_leg()
    step = hunt.on_matched("a1", "1001", leg, new_leg(), 16.1)
    assert step.commands == () and step.releases == (Release("a1", "cancelled", leg),)


def test_normal_clearing_after_our_cancel_is_not_no_answer():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    time_out(hunt, first.leg_uuid, 16.0)
    second, _ = ring(hunt, A2, 16.0)
    # FreeSWITCH reports the leg we killed as NORMAL_CLEARING, job and hangup.
    assert hunt.on_job_result(first.job_uuid, False, "NORMAL_CLEARING", 16.1) == Step()
    step = hunt.on_agent_leg_hangup(first.leg_uuid, "NORMAL_CLEARING", 16.1)
    assert step == Step()
    assert hunt.phase is Phase.RINGING and hunt.leg_uuid == second.leg_uuid


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        ("NO_ANSWER", "no_answer"),
        ("USER_BUSY", "busy"),
        ("CALL_REJECTED", "rejected"),
        ("USER_NOT_REGISTERED", "unregistered"),
        ("SUBSCRIBER_ABSENT", "failed"),
    ],
)
def test_failed_offer_releases_with_outcome_and_tries_next(cause, outcome):
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    step = hunt.on_job_result(first.job_uuid, False, cause, 3.0)
    assert step.releases == (Release("a1", outcome, first.leg_uuid, tried=True),)
    assert step.match and hunt.tried == ["a1"]
    # The leg's own hangup arriving afterwards changes nothing.
    assert hunt.on_agent_leg_hangup(first.leg_uuid, cause, 3.1).releases == ()


def test_leg_hangup_before_job_result_counts_once():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    step = hunt.on_agent_leg_hangup(first.leg_uuid, "USER_BUSY", 3.0)
    assert step.releases == (Release("a1", "busy", first.leg_uuid, tried=True),)
    assert hunt.on_job_result(first.job_uuid, False, "USER_BUSY", 3.1).releases == ()


def test_all_tried_goes_to_voicemail():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    time_out(hunt, first.leg_uuid, 16.0)
    second, _ = ring(hunt, A2, 16.0)
    hunt.on_job_result(second.job_uuid, False, "USER_BUSY", 17.0)
    # Routing: both agents logged in carrying the tags were offered the call already.
    step = hunt.on_waiting(ready=2, untried=0, now=17.0)
    assert step.commands == (Break(CALL), Transfer(CALL, "ccd_voicemail_sales", "ccd"))
    assert names(step) == ["call.voicemail"] and step.unlist
    assert step.facts[0].data["tried"] == ["a1", "a2"]
    assert hunt.done and hunt.result == "voicemail"


def test_exhausted_with_hangup_rule_and_named_box():
    rules = QueueRules("sales", ring_time=5, on_exhausted="hangup", moh="")
    hunt = new_hunt(rules)
    assert hunt.start(0.0).commands == ()  # no music configured
    first, _ = ring(hunt, A1, 1.0)
    hunt.on_job_result(first.job_uuid, False, "NO_ANSWER", 6.0)
    step = hunt.on_waiting(1, 0, 6.0)
    assert step.commands == (Kill(CALL, "NORMAL_CLEARING"),)
    assert names(step) == ["call.unanswered"]
    box = QueueRules("support", voicemail_box="helpdesk")
    h2 = Hunt(CALL, box)
    h2.start(0)
    leg, _ = ring(h2, A1, 0)
    time_out(h2, leg.leg_uuid, 100)
    assert Transfer(CALL, "ccd_voicemail_helpdesk", "ccd") in h2.on_waiting(1, 0, 100).commands


def test_nobody_free_yet_means_wait_not_voicemail():
    hunt = new_hunt()
    hunt.start(0.0)
    step = hunt.on_waiting(ready=3, untried=3, now=1.0)
    assert step == Step() and not hunt.done and hunt.waiting
    originate, _ = ring(hunt, A2, 30.0)
    assert originate.endpoint_ext == "1002"


def test_caller_hangup_while_ringing_kills_leg_and_frees_agent():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    step = hunt.on_caller_hangup(4.0)
    assert step.commands == (Kill(first.leg_uuid, "ORIGINATOR_CANCEL"),)
    assert step.releases == (Release("a1", "cancelled", first.leg_uuid),)
    assert names(step) == ["call.abandoned"] and hunt.done and hunt.result == "abandoned"
    # The killed leg's -ERR NORMAL_CLEARING and hangup come later: nothing more happens.
    assert hunt.on_job_result(first.job_uuid, False, "NORMAL_CLEARING", 4.1).releases == ()
    assert hunt.on_agent_leg_hangup(first.leg_uuid, "NORMAL_CLEARING", 4.1).releases == ()
    assert hunt.on_tick(100.0).commands == ()


def test_a_reservation_arriving_after_the_caller_left_goes_back():
    hunt = new_hunt()
    hunt.start(0.0)
    assert hunt.on_caller_hangup(1.5).releases == ()
    leg = new_leg()
    assert hunt.on_matched("a1", "1001", leg, new_leg(), 1.6).releases == (
        Release("a1", "cancelled", leg),
    )


def test_caller_hangup_after_bridge_ends_call_and_frees_agent():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    answer(hunt, first, 3.0)
    hunt.on_bridged(3.1)
    step = hunt.on_caller_hangup(90.0)
    assert step.releases == (Release("a1", "completed", first.leg_uuid),)
    assert names(step) == ["call.ended"]
    assert hunt.on_agent_leg_hangup(first.leg_uuid, "NORMAL_CLEARING", 90.1).releases == ()


def test_agent_hangs_up_before_the_bridge_caller_keeps_waiting_with_music():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    answer(hunt, first, 3.0)
    step = hunt.on_agent_leg_hangup(first.leg_uuid, "NORMAL_CLEARING", 3.05)
    assert step.releases == (Release("a1", "hangup", first.leg_uuid, tried=True),)
    assert Broadcast(CALL, "local_stream://moh", "aleg") in step.commands
    assert step.match
    second, _ = ring(hunt, A2, 3.1)
    assert second.endpoint_ext == "1002"


def test_out_of_order_releases_without_blame_and_looks_again_after_the_delay():
    rules = QueueRules("sales", ring_time=15, retry_delay=0.5, max_retries=2)
    hunt = new_hunt(rules)
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    step = hunt.on_job_result(first.job_uuid, False, "DESTINATION_OUT_OF_ORDER", 1.1)
    assert step.releases == (Release("a1", "out_of_order", first.leg_uuid),)
    assert names(step) == ["agent.retry"] and not step.match
    assert hunt.phase is Phase.RETRY and hunt.next_deadline == pytest.approx(1.6)
    assert not hunt.on_tick(1.5).match
    assert hunt.on_tick(1.6).match and hunt.tried == []
    again, _ = ring(hunt, A1, 1.6)  # routing may give the same agent: not its fault
    assert again.endpoint_ext == "1001" and again.leg_uuid != first.leg_uuid
    # Second refusal: one more retry; third: the limit is reached, the agent counts as tried.
    hunt.on_job_result(again.job_uuid, False, "DESTINATION_OUT_OF_ORDER", 1.7)
    hunt.on_tick(2.2)
    third, _ = ring(hunt, A1, 2.2)
    step = hunt.on_job_result(third.job_uuid, False, "DESTINATION_OUT_OF_ORDER", 2.3)
    assert step.releases == (Release("a1", "failed", third.leg_uuid, tried=True),)
    assert step.match and hunt.tried == ["a1"]


def test_state_roundtrips_through_dict_midhunt():
    hunt = new_hunt(priority=5, entered_at=1000.0)
    hunt.start(1000.0)
    first, _ = ring(hunt, A1, 1001.0)
    time_out(hunt, first.leg_uuid, 1016.0)
    second, _ = ring(hunt, A2, 1016.0)
    data = msgpack.unpackb(msgpack.packb(hunt.to_dict()))
    assert data == hunt.to_dict()
    restored = Hunt.from_dict(data)
    assert restored.to_dict() == hunt.to_dict()
    # The restored hunt carries on: ring deadline, then the untried a3.
    assert restored.next_deadline == 1031.0
    step = restored.on_tick(1031.0)
    assert step.releases == (Release("a2", "no_answer", second.leg_uuid, tried=True),)
    assert restored.tried == ["a1", "a2"]
    time_out(restored, second.leg_uuid, 1031.0)
    third, _ = ring(restored, A3, 1031.0)
    assert third.endpoint_ext == "1003"


def test_an_older_stored_hunt_is_refused_not_misread():
    data = new_hunt().to_dict()
    data["v"] = 1
    with pytest.raises(ValueError, match="schema version"):
        Hunt.from_dict(data)


def test_resync_after_restart_caller_gone_kills_leg_and_frees_agent():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    restored = Hunt.from_dict(hunt.to_dict())
    step = restored.on_resync([first.leg_uuid], 5.0)
    assert Kill(first.leg_uuid, "ORIGINATOR_CANCEL") in step.commands
    assert step.releases == (Release("a1", "cancelled", first.leg_uuid),)
    assert restored.done


def test_resync_after_restart_agent_leg_gone_tries_next():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    step = hunt.on_resync([CALL], 5.0)
    assert step.releases == (Release("a1", "failed", first.leg_uuid, tried=True),)
    assert step.match


def test_resync_bridged_call_whose_agent_leg_is_gone_completes():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    answer(hunt, first, 2.0)
    hunt.on_bridged(2.1)
    step = hunt.on_resync([CALL], 50.0)
    assert step.releases == (Release("a1", "completed", first.leg_uuid),)
    assert hunt.done


def test_resync_of_a_waiting_call_asks_routing_again():
    hunt = new_hunt()
    hunt.start(0.0)
    assert hunt.on_resync([CALL], 2.0).match


def test_resync_past_the_overflow_time_goes_to_the_offer_not_to_an_agent():
    rules = QueueRules("sales", ("sales",), overflow_time=30.0)
    hunt = Hunt(CALL, rules, entered_at=0.0)
    hunt.start(0.0)
    ring(hunt, A1, 20.0)
    restored = Hunt.from_dict(hunt.to_dict())
    # The daemon was away from 21 to 45 s; the agent's leg is gone by now.
    step = restored.on_resync([CALL], 45.0)
    assert Transfer(CALL, "ccd_cb_offer", "ccd") in step.commands
    assert not step.match and restored.phase is Phase.OFFERING
    assert not any(isinstance(c, Kill) for c in step.commands)
    assert step.releases == (Release("a1", "cancelled", None),)


@pytest.mark.parametrize("answered_event", [False, True])
def test_resync_bridges_an_agent_leg_that_parked_while_nobody_listened(answered_event):
    hunt = new_hunt(QueueRules("sales", ("sales",), overflow_time=30.0))
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    if answered_event:  # CHANNEL_ANSWER heard, the +OK and CHANNEL_PARK lost
        hunt.on_agent_answered(first.leg_uuid, 2.0)
    ringing = {first.leg_uuid: ("", "")}
    assert hunt.on_resync([CALL, first.leg_uuid], 3.0, ringing) == Step()
    parked = {first.leg_uuid: ("park", "")}
    # Past the overflow time too: an agent who answered beats the callback offer.
    step = hunt.on_resync([CALL, first.leg_uuid], 40.0, parked)
    assert step.commands == (Break(CALL), Bridge(CALL, first.leg_uuid))
    assert names(step) == ([] if answered_event else ["agent.answered"])
    assert hunt.phase is Phase.BRIDGING and hunt.next_deadline is None
    again = hunt.on_resync([CALL, first.leg_uuid], 45.0, parked)  # the bridge was lost too
    assert again.commands == (Bridge(CALL, first.leg_uuid),)


def test_resync_of_a_leg_bridged_to_the_caller_meanwhile_leaves_it_bridged():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    bridged = {first.leg_uuid: ("uuid_bridge", CALL), CALL: ("uuid_bridge", first.leg_uuid)}
    step = hunt.on_resync([CALL, first.leg_uuid], 3.0, bridged)
    assert step.commands == () and names(step) == ["agent.answered"]
    assert hunt.phase is Phase.BRIDGING and not hunt.moh_on
    assert names(hunt.on_bridged(3.0)) == ["call.bridged"]
    late = new_hunt()
    late.start(0.0)
    leg, _ = ring(late, A2, 1.0)
    elsewhere = {leg.leg_uuid: ("uuid_bridge", new_leg())}  # bridged to someone else: not ours
    assert late.on_resync([CALL, leg.leg_uuid], 3.0, elsewhere) == Step()


def test_queue_order_key_priority_first_then_arrival():
    vip_late = queue_order_key(9, 1_800_000_100.0)
    normal_early = queue_order_key(0, 1_800_000_000.0)
    normal_late = queue_order_key(0, 1_800_000_000.001)
    assert vip_late < normal_early < normal_late
    assert queue_order_key(500, 5.0) == queue_order_key(99, 5.0)  # clamped
    with pytest.raises(ValueError):
        queue_order_key(0, -1.0)


def test_outcome_for_cause_defaults_to_failed():
    assert outcome_for_cause("NO_USER_RESPONSE") == "no_answer"
    assert outcome_for_cause("WHATEVER") == "failed"


def test_rules_validate_and_roundtrip():
    with pytest.raises(ValueError):
        QueueRules("q", on_exhausted="explode")
    with pytest.raises(ValueError):
        QueueRules("q", ring_time=0)
    with pytest.raises(ValueError):
        QueueRules("q", no_agents="shrug")
    assert QueueRules.from_dict(RULES.to_dict()) == RULES


def test_hunt_refuses_a_call_uuid_that_is_not_a_uuid():
    with pytest.raises(ValueError):
        Hunt("x' &park()", RULES)


def test_busy_untried_agent_keeps_the_caller_waiting():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    hunt.on_job_result(first.job_uuid, False, "NO_ANSWER", 6.0)
    # A2 carries the tags but is on another call: wait for A2, no voicemail.
    step = hunt.on_waiting(ready=2, untried=1, now=6.0)
    assert step == Step() and not hunt.done and hunt.waiting
    originate, _ = ring(hunt, A2, 40.0)
    assert originate.endpoint_ext == A2.extension


def test_nobody_logged_in_means_waiting_for_an_agent_or_the_offer():
    rules = QueueRules("sales", ("sales",), overflow_time=30.0)
    hunt = Hunt(CALL, rules, entered_at=0.0)
    hunt.start(0.0)
    assert hunt.on_waiting(ready=0, untried=0, now=0.0) == Step()
    assert not hunt.done and hunt.next_deadline == 30.0
    assert Transfer(CALL, "ccd_cb_offer", "ccd") in hunt.on_tick(30.0).commands


def test_a_queue_may_choose_voicemail_at_once_when_nobody_is_logged_in():
    rules = QueueRules("sales", ("sales",), overflow_time=30.0, no_agents="voicemail")
    hunt = Hunt(CALL, rules, entered_at=0.0)
    hunt.start(0.0)
    step = hunt.on_waiting(ready=0, untried=0, now=0.0)
    assert hunt.done and hunt.result == "voicemail"
    assert step.facts[0].data["reason"] == "nobody_logged_in"
    assert any(isinstance(c, Transfer) for c in step.commands)


def test_only_tried_agents_logged_in_means_exhausted():
    hunt = new_hunt()
    hunt.start(0.0)
    first, _ = ring(hunt, A1, 1.0)
    hunt.on_job_result(first.job_uuid, False, "USER_BUSY", 2.0)
    hunt.on_waiting(ready=1, untried=0, now=2.0)
    assert hunt.done and hunt.result == "voicemail"


def test_bound_agent_is_offered_first_with_the_direct_screen_pop():
    hunt = Hunt(CALL, RULES, caller_display="Doe", preferred=A3.id, preferred_display="DIRECT Doe")
    hunt.start(0.0)
    originate, step = ring(hunt, A3, 1.0)
    assert originate.endpoint_ext == A3.extension
    assert originate.variables["origination_caller_id_name"] == "DIRECT Doe"
    assert "sticky.routed" in names(step)


def test_bound_agent_not_answering_falls_back_to_the_queue_order():
    hunt = Hunt(CALL, RULES, caller_display="Doe", preferred=A3.id)
    hunt.start(0.0)
    first, _ = ring(hunt, A3, 1.0)
    step = hunt.on_job_result(first.job_uuid, False, "NO_ANSWER", 20.0)
    assert "sticky.fallback" in names(step) and step.match
    second, _ = ring(hunt, A1, 20.0)
    assert second.endpoint_ext == A1.extension
    assert second.variables["origination_caller_id_name"] == "Doe"


def test_bound_agent_busy_means_the_queue_at_once():
    hunt = Hunt(CALL, RULES, preferred=A3.id)
    hunt.start(0.0)
    step = hunt.on_sticky_fallback()
    assert "sticky.fallback" in names(step)
    restored = Hunt.from_dict(hunt.to_dict())
    assert restored.preferred is None
    assert hunt.on_sticky_fallback() == Step()


OVERFLOW = QueueRules("sales", ("sales",), ring_time=15.0, ring_margin=3, overflow_time=30.0)


def test_overflow_exactly_at_the_configured_time_cancels_the_ring_and_offers():
    hunt = Hunt(CALL, OVERFLOW, entered_at=100.0)
    hunt.start(100.0)
    originate, _ = ring(hunt, A1, 115.5)  # second agent rings from 115.5
    assert hunt.next_deadline == 130.0  # the overflow comes before this ring's end (130.5)
    assert hunt.on_tick(129.99).commands == ()
    step = hunt.on_tick(130.0)
    assert Kill(originate.leg_uuid, "ORIGINATOR_CANCEL") in step.commands
    assert Transfer(CALL, "ccd_cb_offer", "ccd") in step.commands
    assert [r.outcome for r in step.releases] == ["cancelled"]  # not the agent's miss
    assert names(step)[-2:] == ["call.overflow", "callback.offered"]
    assert hunt.phase is Phase.OFFERING and not hunt.waiting and step.unlist


def test_keep_waiting_returns_with_the_original_place_and_no_second_offer():
    hunt = Hunt(CALL, OVERFLOW, entered_at=100.0, priority=5)
    hunt.start(100.0)
    hunt.on_waiting(2, 2, 100.0)
    hunt.on_tick(130.0)
    key = hunt.order_key
    step = hunt.on_offer_declined(140.0)
    assert "callback.declined_offer" in names(step) and step.match
    assert hunt.order_key == key  # same place: priority and original arrival
    assert hunt.overflow_at is None and hunt.on_tick(500.0).commands == ()
    restored = Hunt.from_dict(hunt.to_dict())
    assert restored.offered and restored.overflow_at is None


def test_stored_callback_ends_the_hunt_and_caller_hangup_during_the_offer_is_abandoned():
    hunt = Hunt(CALL, OVERFLOW, entered_at=0.0)
    hunt.start(0.0)
    hunt.on_tick(30.0)
    hunt.on_callback_stored("req-1", 40.0)
    assert hunt.done and hunt.result == "callback"
    other = Hunt(CALL, OVERFLOW, entered_at=0.0)
    other.start(0.0)
    other.on_tick(30.0)
    step = other.on_caller_hangup(35.0)
    assert other.result == "abandoned" and "call.abandoned" in names(step)


def test_overflow_off_means_no_offer():
    hunt = Hunt(CALL, RULES, entered_at=0.0)
    hunt.start(0.0)
    hunt.on_waiting(1, 1, 0.0)
    assert hunt.next_deadline is None and hunt.on_tick(10_000.0) == Step()


def test_a_full_ring_at_the_overflow_instant_counts_as_no_answer_first():
    hunt = Hunt(CALL, OVERFLOW, entered_at=0.0)
    hunt.start(0.0)
    ring(hunt, A1, 15.0)  # rings until exactly 30.0, the overflow time
    step = hunt.on_tick(30.0)
    assert [r.outcome for r in step.releases] == ["no_answer"]
    assert not step.match and hunt.phase is Phase.OFFERING
