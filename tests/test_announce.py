"""Position announcements (issue 13): the hunt's deadlines with a fake clock, the commands a
caller hears, the queue's load built from the statistics, the wire text."""

from __future__ import annotations

import pytest

from ccd.core.announce import POSITION_PROMPT, BusySince, announcement, parse_busy, queue_load
from ccd.core.commands import Break, Broadcast, SayNumber, Transfer, UnsafeValue, to_esl
from ccd.core.estimate import BusyAgent, Estimate, QueueLoad, estimate_wait
from ccd.core.hunt import Hunt, Phase
from ccd.core.queue import QueueRules
from ccd.core.stats import QueueCounts
from ccd.fakeswitch.apps import pronounced

CALL = "c0000000-0000-0000-0000-000000000001"
LEG = "00000000-0000-0000-0000-000000000011"
JOB = "00000000-0000-0000-0000-000000000012"
MOH = "local_stream://moh"
RULES = QueueRules("sales", ("sales",), overflow_time=0.0, announce_interval=45.0)
#: A queue with history: 2 agents on calls, talk 120 s + wrap-up 10 s a call.
LOAD = QueueLoad(free_agents=0, busy=(), talk=120.0, wrapup=10.0, answered=10, window=900.0)


def waiting(rules: QueueRules = RULES, now: float = 0.0) -> Hunt:
    """A call routing has put in its waiting list at ``now``."""
    hunt = Hunt(CALL, rules, entered_at=now)
    hunt.start(now)
    hunt.on_waiting(ready=2, untried=2, now=now)
    return hunt


def due(hunt: Hunt, now: float) -> bool:
    """The engine's timer: is a tick due at ``now``, and does it ask for the read?"""
    deadline = hunt.next_deadline
    return deadline is not None and now >= deadline and hunt.on_tick(now).announce


def test_first_announcement_at_entry_then_every_interval():
    hunt = waiting()
    assert hunt.next_deadline == 0.0
    assert due(hunt, 0.0)
    step = hunt.on_announce(3, LOAD, 0.0)
    assert step.commands[:3] == (
        Break(CALL),
        Broadcast(CALL, POSITION_PROMPT),
        SayNumber(CALL, 3),
    )
    assert step.commands[-1] == Broadcast(CALL, MOH)
    assert hunt.phase is Phase.WAITING and hunt.moh_on
    (fact,) = step.facts
    assert fact.name == "call.announced"
    assert fact.data["call"] == CALL and fact.data["queue"] == "sales"
    assert fact.data["position"] == 3 and fact.data["estimate"] > 0
    assert hunt.next_deadline == 45.0
    assert not due(hunt, 44.9)
    assert due(hunt, 45.0)
    assert hunt.next_deadline == 90.0


def test_no_announcement_while_ringing_and_a_full_interval_after_a_failed_offer():
    hunt = waiting()
    assert due(hunt, 0.0)
    hunt.on_announce(1, None, 0.0)
    hunt.on_matched("a1", "1001", LEG, JOB, 30.0)
    assert hunt.phase is Phase.RINGING
    assert hunt.next_deadline == 30.0 + RULES.ring_time  # the ring deadline only
    # The read of an announcement that was under way finds the call ringing: nothing said.
    assert hunt.on_announce(1, LOAD, 31.0).commands == ()
    step = hunt.on_agent_leg_hangup(LEG, "USER_BUSY", 40.0)
    assert step.match and hunt.phase is Phase.WAITING
    hunt.on_waiting(ready=2, untried=1, now=40.0)
    assert hunt.next_deadline == 85.0


def test_the_first_announcement_waits_for_the_list_not_for_the_entry_ring():
    hunt = Hunt(CALL, RULES, entered_at=0.0)
    hunt.start(0.0)
    assert hunt.next_deadline is None  # routing has not answered yet
    hunt.on_matched("a1", "1001", LEG, JOB, 0.1)
    hunt.on_agent_leg_hangup(LEG, "NO_ANSWER", 15.0)
    hunt.on_waiting(ready=1, untried=0, now=15.0)  # everyone tried: voicemail
    assert hunt.done and hunt.next_deadline is None


def test_no_history_says_the_position_only():
    hunt = waiting()
    assert due(hunt, 0.0)
    step = hunt.on_announce(2, None, 0.0)
    assert step.commands == (
        Break(CALL),
        Broadcast(CALL, POSITION_PROMPT),
        SayNumber(CALL, 2),
        Broadcast(CALL, MOH),
    )
    assert step.facts[0].data["estimate"] is None


def test_beyond_the_overflow_horizon_the_caller_hears_the_offer_instead():
    rules = QueueRules("sales", ("sales",), overflow_time=60.0, announce_interval=45.0)
    hunt = waiting(rules, now=100.0)
    assert due(hunt, 100.0)
    step = hunt.on_announce(9, LOAD, 100.0)  # 9th behind two busy agents: minutes
    assert hunt.phase is Phase.OFFERING
    assert Transfer(CALL, "ccd_cb_offer", "ccd") in step.commands
    (overflow,) = [f for f in step.facts if f.name == "call.overflow"]
    assert overflow.data["why"] == "estimate" and overflow.data["waited"] == 0.0
    assert step.unlist and hunt.next_deadline is None


def test_without_music_the_prompts_still_queued_are_broken_before_the_agent_is_bridged():
    rules = QueueRules("sales", ("sales",), overflow_time=0.0, announce_interval=45.0, moh="")
    hunt = waiting(rules)
    announced = hunt.on_announce(3, None, 0.0).commands
    assert Break(CALL) in announced and not any(c.path == "" for c in announced
                                                 if isinstance(c, Broadcast))  # fmt: skip
    leg, job = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000b1"
    hunt.on_matched("a1", "1001", leg, job, 1.0)
    hunt.on_agent_answered(leg, 2.0)
    bridge = hunt.on_agent_parked(leg, 2.0).commands
    assert bridge[0] == Break(CALL)  # "... minutes" is not heard over the agent's hello


def test_nobody_serving_and_no_history_keeps_the_overflow_time_not_an_offer_at_entry():
    # Nobody logged in who could answer (issue 9, defect 7): the caller waits for the offer
    # at the overflow time; an estimate that cannot be made does not bring it forward.
    rules = QueueRules("sales", ("sales",), overflow_time=30.0, announce_interval=45.0)
    hunt = waiting(rules)
    step = hunt.on_announce(1, QueueLoad(free_agents=0), 0.0)
    assert hunt.phase is Phase.WAITING and not step.unlist
    assert [c for c in step.commands if isinstance(c, SayNumber)] == [SayNumber(CALL, 1)]
    assert hunt.on_tick(30.0).unlist and hunt.phase is Phase.OFFERING


def test_within_the_horizon_the_wait_is_said():
    rules = QueueRules("sales", ("sales",), overflow_time=3600.0, announce_interval=45.0)
    hunt = waiting(rules)
    load = QueueLoad(free_agents=0, busy=(), talk=120.0, wrapup=10.0, answered=30, window=900.0)
    step = hunt.on_announce(3, load, 0.0)
    minutes = [c.number for c in step.commands if isinstance(c, SayNumber)][1:]
    assert hunt.phase is Phase.WAITING and minutes and minutes[0] >= 1


def test_interval_zero_means_no_announcement():
    rules = QueueRules("sales", ("sales",), overflow_time=0.0, announce_interval=0.0)
    hunt = waiting(rules)
    assert hunt.next_deadline is None
    assert not hunt.on_tick(1000.0).announce


def test_the_next_announcement_survives_a_restart():
    hunt = waiting()
    assert due(hunt, 0.0)
    hunt.on_announce(4, None, 0.0)
    again = Hunt.from_dict(hunt.to_dict())
    assert again.announce_at == 45.0 and again.announced == 1
    assert again.rules.announce_interval == 45.0
    assert again.next_deadline == 45.0
    assert again.to_dict() == hunt.to_dict()


def test_a_stored_hunt_from_before_announcements_still_loads():
    data = waiting().to_dict()
    for name in ("announce_at", "announced"):
        data.pop(name)
    data["rules"].pop("announce_interval")
    old = Hunt.from_dict(data)
    assert old.announce_at is None and old.rules.announce_interval == 0.0


def test_queue_load_from_the_statistics():
    assert queue_load({"free": 1}, QueueCounts(), 900.0) is None  # no history
    counts = QueueCounts(answered=8, handled=4, talk=480.0, wrapup=40.0, abandoned=2,
                         wait_answered=100.0, wait_abandoned=60.0)  # fmt: skip
    agents = {"free": 1, "ringing": 1, "oncall": 2, "wrapup": 1, "break": 2, "logged_out": 3}
    load = queue_load(agents, counts, 900.0)
    assert load is not None
    assert load.free_agents == 1 and load.talk == 120.0 and load.wrapup == 10.0
    assert [a.status for a in load.busy] == ["ringing", "oncall", "oncall", "wrapup"]
    assert load.on_break == (None, None)
    assert load.abandoned == 2 and load.waited_total == 160.0
    assert load.answered == 8 and load.window == 900.0


def test_queue_load_knows_how_long_each_busy_agent_has_been_so():
    counts = QueueCounts(answered=8, handled=4, talk=480.0, wrapup=40.0)
    agents = {"free": 0, "ringing": 1, "oncall": 3, "wrapup": 1, "break": 2}
    busy = parse_busy(["oncall 900.5 ready", "oncall 700 break", "wrapup 990 logged_out",
                       "ringing 998 ready", "break 400 break", "oncall x ready", "x"])  # fmt: skip
    assert busy[0] == BusySince("oncall", 900.5, "ready") and len(busy) == 5
    load = queue_load(agents, counts, 900.0, busy, now=1000.0)
    assert load is not None
    assert load.busy == (
        BusyAgent("ringing", 2.0),
        BusyAgent("oncall", 300.0, "break"),  # the longest call first
        BusyAgent("oncall", 99.5),
        BusyAgent("oncall"),  # counted, but its time is not known (written before)
        BusyAgent("wrapup", 10.0, "logged_out"),
    )
    assert load.on_break == (600.0, None)
    # It changes the estimate: a call of 300 s is likelier to end soon than one of 100 s.
    known = estimate_wait(load, 1).seconds
    unknown = estimate_wait(queue_load(agents, counts, 900.0), 1).seconds
    assert known is not None and unknown is not None and known != unknown


def test_the_announcement_in_minutes():
    cmds = announcement(CALL, 3, Estimate(200.0), MOH)
    assert cmds[3:] == [
        SayNumber(CALL, 4),
        Broadcast(CALL, "time/minutes.wav"),
        Broadcast(CALL, MOH),
    ]
    cmds = announcement(CALL, 1, Estimate(20.0), "")
    assert cmds[3:] == [SayNumber(CALL, 1), Broadcast(CALL, "time/minute.wav")]
    assert announcement(CALL, 1, Estimate(0.0), MOH)[3:] == [Broadcast(CALL, MOH)]


def test_the_wire_text_and_what_is_refused():
    assert to_esl(SayNumber(CALL, 3)) == (
        "api",
        f"uuid_broadcast {CALL} 'say::en number pronounced 3' aleg",
    )
    for bad in (-1, True, "3", 3.0, 10**9, "3' both"):
        with pytest.raises(UnsafeValue):
            to_esl(SayNumber(CALL, bad))  # type: ignore[arg-type]
    with pytest.raises(UnsafeValue):
        to_esl(SayNumber("not-a-uuid", 3))
    with pytest.raises(UnsafeValue):
        to_esl(SayNumber(CALL, 3, "aleg' x"))


@pytest.mark.parametrize(
    ("number", "files"),
    [
        (0, ["0"]),
        (3, ["3"]),
        (13, ["13"]),
        (20, ["20"]),
        (42, ["40", "2"]),
        (100, ["1", "hundred"]),
        (115, ["1", "hundred", "15"]),
        (2005, ["2", "thousand", "5"]),
    ],
)
def test_the_fake_says_a_count_as_mod_say_en_does(number, files):
    assert pronounced(number) == [f"digits/{f}.wav" for f in files]
