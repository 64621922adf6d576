"""The statistics' definitions (ccd.core.stats): what each fact counts, and every figure's edge
cases. The whole day against a real Redis is tests/test_stats_day.py."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from ccd.config import Config
from ccd.config.rules import stats_rules_from_config
from ccd.core.commands import Fact
from ccd.core.hunt import Hunt
from ccd.core.queue import QueueRules
from ccd.core.stats import (
    COUNTED,
    AgentDay,
    AgentMove,
    Increment,
    QueueCounts,
    QueueStatsRules,
    StatsRules,
    agent_status,
    count,
    day_of,
    day_start,
    fold,
    served_queues,
)
from ccd.core.stats_view import QueueNow, Snapshot, agents_by_status, stats_json

BUDAPEST = ZoneInfo("Europe/Budapest")
RULES = StatsRules(
    queues={"sales": QueueStatsRules(20.0, 5.0, BUDAPEST)},
    default=QueueStatsRules(30.0, 0.0, dt.UTC),
    tz=BUDAPEST,
)
NOON = dt.datetime(2026, 11, 2, 12, 0, tzinfo=BUDAPEST).timestamp()


def _fields(ops, kind="queue_day"):
    out = {}
    for op in ops:
        if isinstance(op, Increment) and op.counter.kind == kind:
            out[op.field] = out.get(op.field, 0) + op.amount
    return out


# --- what each fact counts ----------------------------------------------------------------------


def test_answered_within_t_counts_for_the_service_level_and_exactly_t_is_within():
    for waited, in_sl in ((0.0, 1), (19.9, 1), (20.0, 1), (20.001, None)):
        ops = count(Fact("call.bridged", {"queue": "sales", "waited": waited}), NOON, RULES)
        fields = _fields(ops)
        assert fields["answered"] == 1
        assert fields.get("answered_sl") == in_sl, waited
        assert fields["wait_answered"] == waited


def test_short_abandon_is_strictly_less_than_s_and_zero_means_none():
    short = count(Fact("call.abandoned", {"queue": "sales", "waited": 4.99}), NOON, RULES)
    at_s = count(Fact("call.abandoned", {"queue": "sales", "waited": 5.0}), NOON, RULES)
    assert _fields(short) == {"abandoned": 1, "abandoned_short": 1, "wait_abandoned": 4.99}
    assert _fields(at_s) == {"abandoned": 1, "wait_abandoned": 5.0}
    # The default rules have S = 0: no abandon is short, not even one after 0 s.
    zero = count(Fact("call.abandoned", {"queue": "other", "waited": 0.0}), NOON, RULES)
    assert _fields(zero) == {"abandoned": 1, "wait_abandoned": 0.0}


def test_every_increment_goes_to_the_day_and_the_minute_bucket():
    ops = count(Fact("call.queued", {"queue": "sales", "call": "c"}), NOON, RULES)
    assert sorted(op.counter.kind for op in ops) == ["queue_day", "queue_minute"]
    assert {op.counter.period for op in ops} == {"2026-11-02", str(int(NOON // 60))}


def test_the_day_is_the_queues_own_zone():
    # 23:30 UTC on 2 November is already 3 November in Budapest (UTC+1).
    late = dt.datetime(2026, 11, 2, 23, 30, tzinfo=dt.UTC).timestamp()
    budapest = count(Fact("call.queued", {"queue": "sales"}), late, RULES)
    utc = count(Fact("call.queued", {"queue": "other"}), late, RULES)
    assert {o.counter.period for o in budapest if o.counter.kind == "queue_day"} == {"2026-11-03"}
    assert {o.counter.period for o in utc if o.counter.kind == "queue_day"} == {"2026-11-02"}


def test_facts_without_a_queue_or_that_count_nothing_give_nothing():
    assert count(Fact("call.queued", {"call": "c"}), NOON, RULES) == []
    assert count(Fact("callback.connected", {"callback": "r1"}), NOON, RULES) == []
    assert count(Fact("sticky.routed", {"queue": "sales"}), NOON, RULES) == []


def test_a_missing_or_bad_waited_counts_as_zero_never_crashes():
    for data in ({}, {"waited": "x"}, {"waited": float("nan")}, {"waited": -3}, {"waited": True}):
        ops = count(Fact("call.bridged", {"queue": "sales", **data}), NOON, RULES)
        assert _fields(ops) == {"answered": 1, "answered_sl": 1, "wait_answered": 0.0}


def test_every_counted_fact_is_documented():
    facts = {
        "call.queued": {}, "call.bridged": {"waited": 1}, "call.abandoned": {"waited": 1},
        "call.overflow": {}, "call.callback_requested": {}, "call.voicemail": {},
        "call.unanswered": {}, "call.ended": {}, "callback.stored": {},
        "callback.connected": {}, "callback.unreached": {}, "agent.offered": {},
        "agent.no_answer": {}, "agent.state": {"activity": "idle"},
        "agent.logout_pending": {}, "agent.logout_cancelled": {},
    }  # fmt: skip
    assert set(facts) == set(COUNTED)
    for name, data in facts.items():
        assert count(Fact(name, {"queue": "sales", "agent": "a", **data}), NOON, RULES), name


def test_agent_status_busy_activity_wins_over_login():
    assert agent_status("break", True, "oncall") == "oncall"
    assert agent_status("logged_out", True, "wrapup") == "wrapup"
    assert agent_status("break", True, "idle") == "break"
    assert agent_status("ready", False, "idle") == "unregistered"
    assert agent_status("ready", True, "idle") == "free"
    assert agent_status("logged_out", False, "idle") == "logged_out"


def test_served_queues_need_every_tag():
    queues = {"sales": ("sales",), "tv": ("support", "tv"), "general": ()}
    assert served_queues({"sales"}, queues) == ("general", "sales")
    assert served_queues({"support"}, queues) == ("general",)
    assert served_queues({"support", "tv", "x"}, queues) == ("general", "tv")


def test_agent_offered_moves_to_ringing_for_the_queue_and_state_facts_move_too():
    ops = count(Fact("agent.offered", {"queue": "sales", "agent": "a"}), NOON, RULES)
    move = next(op for op in ops if isinstance(op, AgentMove))
    assert (move.status, move.queue, move.queue_day.period) == ("ringing", "sales", "2026-11-02")
    assert move.since_day == day_start("2026-11-02", BUDAPEST)
    assert move.prev_day.period == "2026-11-01"
    assert _fields(ops, "agent_day") == {"offered": 1}
    state = Fact("agent.state", {"agent": "a", "login": "break", "activity": "idle"})
    (move,) = count(state, NOON, RULES, served=("sales",))
    assert (move.status, move.queues, move.queue) == ("break", ("sales",), None)
    (move,) = count(state, NOON, RULES)
    assert move.queues is None  # unknown: the store keeps the recorded ones


def test_what_an_agent_does_after_its_call_rides_with_its_moves():
    def then(name, **data):
        (move,) = count(Fact(name, {"agent": "a", **data}), NOON, RULES)
        return move.status, move.then

    assert then("agent.state", login="ready", activity="oncall") == ("oncall", "ready")
    assert then("agent.state", login="break", activity="oncall") == ("oncall", "break")
    pending = {"login": "ready", "activity": "ringing", "logout_pending": True}
    assert then("agent.state", **pending) == ("ringing", "logged_out")
    assert then("agent.state", login="logged_out", activity="wrapup") == ("wrapup", "logged_out")
    assert then("agent.logout_pending") == (None, "logged_out")  # the status stays
    assert then("agent.logout_cancelled") == (None, "ready")


def test_fold_sums_one_field_once_and_keeps_moves_in_order():
    facts = [(Fact("call.queued", {"queue": "sales"}), NOON + i) for i in range(5)]
    facts.append((Fact("agent.state", {"agent": "a", "activity": "oncall"}), NOON + 6))
    facts.append((Fact("agent.state", {"agent": "a", "activity": "wrapup"}), NOON + 7))
    folded = fold(facts, RULES)
    assert [i.amount for i in folded.increments] == [5, 5]  # the day and one minute bucket
    assert [m.status for m in folded.moves] == ["oncall", "wrapup"]


def test_the_hunt_says_how_long_the_caller_waited_when_bridged_and_when_abandoned():
    legs = iter(f"{i:08d}-0000-4000-8000-000000000000" for i in range(1, 99))
    rules = QueueRules("sales", ("sales",), ring_time=15.0)
    hunt = Hunt("00000000-0000-4000-8000-000000000000", rules, entered_at=100)
    hunt.start(100.0)
    leg = next(legs)
    hunt.on_matched("a", "1001", leg, next(legs), 102.0)
    hunt.on_agent_answered(leg, 112.5)
    hunt.on_agent_parked(leg, 112.5)
    (fact,) = hunt.on_bridged(112.75).facts
    assert (fact.name, fact.data["waited"]) == ("call.bridged", 12.75)
    other = Hunt("10000000-0000-4000-8000-000000000000", rules, entered_at=50)
    other.start(50.0)
    (fact,) = [f for f in other.on_caller_hangup(83.25).facts if f.name == "call.abandoned"]
    assert fact.data["waited"] == 33.25


# --- the figures ----------------------------------------------------------------------------------


def test_no_answered_call_gives_no_service_level_asa_or_aht_rather_than_an_error():
    empty = QueueCounts()
    assert empty.service_level() is None
    assert empty.service_level_abandoned() is None
    assert empty.asa() is None
    assert empty.aht() is None
    assert empty.abandon_rate() is None
    assert empty.abandon_rate_long() is None
    only_short = QueueCounts(offered=2, abandoned=2, abandoned_short=2)
    assert only_short.abandon_rate() == 1.0
    assert only_short.abandon_rate_long() is None  # nothing left once short abandons go
    assert only_short.service_level_abandoned() is None


def test_the_two_service_levels_and_the_two_abandon_rates():
    c = QueueCounts(
        offered=10, answered=6, answered_sl=4, wait_answered=90.0,
        abandoned=3, abandoned_short=1, handled=5, talk=500.0, wrapup=100.0,
    )  # fmt: skip
    assert c.service_level() == 4 / 6
    assert c.service_level_abandoned() == 4 / (6 + 2)  # the long abandons only
    assert c.asa() == 15.0
    assert c.aht() == 120.0  # (500 + 100) / 5
    assert c.abandon_rate() == 3 / 10
    assert c.abandon_rate_long() == 2 / 9  # short abandons out of both


def test_counts_read_back_from_redis_bytes_and_add_up():
    raw = {b"offered": b"3", b"wait_answered": b"12.5", b"bogus": b"1", b"answered": b"-2"}
    c = QueueCounts.from_fields(raw)
    assert (c.offered, c.wait_answered, c.answered) == (3, 12.5, 0)
    assert (c + c).offered == 6


def test_occupancy_counts_ringing_talk_and_wrapup_over_logged_in_time_without_breaks():
    raw = {b"free": b"600", b"ringing": b"60", b"oncall": b"1800", b"wrapup": b"540"}
    day = AgentDay.from_fields({**raw, b"break": b"900", b"unregistered": b"30"})
    assert day.occupancy() == (60 + 1800 + 540) / (600 + 60 + 1800 + 540)
    assert AgentDay().occupancy() is None
    assert AgentDay(break_=3600).occupancy() is None
    assert AgentDay(free=10).to_dict()["occupancy"] == 0.0


def test_stats_json_shape_with_nothing_counted():
    snapshot = Snapshot(NOON, (QueueNow("sales", 2, NOON - 42.0),), agents_by_status({}))
    doc = stats_json(snapshot, RULES, {}, {})
    (q,) = doc["queues"]
    assert q["longest_wait"] == 42.0 and q["waiting"] == 2
    assert q["today"]["service_level"] is None
    assert doc["totals"] == {"waiting": 2, "longest_wait": 42.0, "agents": agents_by_status({})}
    assert set(q["agents"]) == {
        "oncall", "ringing", "wrapup", "free", "break", "unregistered", "logged_out"
    }  # fmt: skip


def test_agents_by_status_never_shows_a_negative_count():
    assert agents_by_status({b"free": b"-1", b"oncall": b"3"})["free"] == 0


def test_rules_from_config_per_queue_time_and_zone():
    config = Config.from_dict(
        {
            "stats": {"service_level_time": 15, "short_abandon_time": 3},
            "queues": {"sales": {"service_level_time": 30, "timezone": "UTC"}, "tv": {}},
            "disposition": {"timezone": "Europe/Budapest"},
        }
    )
    rules = stats_rules_from_config(config)
    assert rules.queue("sales") == QueueStatsRules(30.0, 3.0, dt.UTC)
    assert rules.queue("tv").service_level_time == 15.0
    assert rules.queue("tv").tz == BUDAPEST == rules.tz
    assert rules.windows == (15, 60)


def test_bad_rules_are_refused():
    with pytest.raises(ValueError):
        QueueStatsRules(service_level_time=0)
    with pytest.raises(ValueError):
        StatsRules(windows=())
    assert day_of(NOON, BUDAPEST) == "2026-11-02"


def test_day_of_agrees_with_the_calendar_at_every_local_midnight_and_dst_change():
    """day_of caches quarter hours: a day boundary (midnight, a DST change, a zone at +5:45
    or +13:45) must never be read from a cached block on the wrong side."""
    zones = [dt.UTC] + [
        ZoneInfo(name)
        for name in ("Europe/Budapest", "Asia/Kathmandu", "America/St_Johns",
                     "Australia/Lord_Howe", "Pacific/Chatham", "America/New_York")
    ]  # fmt: skip
    for tz in zones:
        for offset in range(-3, 240):  # spring and autumn changes of both hemispheres
            midnight = dt.datetime(2026, 3, 1, tzinfo=tz) + dt.timedelta(days=offset)
            at = midnight.timestamp()
            for t in (at - 0.001, at, at + 0.001, at + 43_200):
                assert day_of(t, tz) == dt.datetime.fromtimestamp(t, tz).date().isoformat()
