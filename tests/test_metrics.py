"""/metrics with the Prometheus client (issue 12): HELP and TYPE on every series, per-queue
counters driven by the engine's facts, waiting-time histograms, queue gauges from Redis at
scrape time (agents by every state from the statistics' counters, issue 13), the daemon's own
health; nothing secret."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccd.adapters.metrics import FACT_COUNTERS, DaemonMetrics
from ccd.core.commands import Fact
from ccd.core.queue import queue_order_key
from ccd.core.stats import STATUSES, QueueStatsRules, StatsRules, fold, served_queues
from ccd.core.stats_view import QueueFigures
from ccd.store.call import CallRecord
from ccd.store.stats import QueueStats, StatsStore
from tests.support.daemon_fixtures import bridged, calls_of, eventually
from tests.test_daemon import http_get
from tests.test_routing_e2e import SALES, login


def scrape(daemon) -> tuple[str, dict[tuple[str, tuple], float]]:
    status, body = http_get(daemon, "/metrics", headers={})
    assert status == 200
    text = body.decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def test_every_series_has_help_and_type():
    metrics = DaemonMetrics(known_queues=lambda: {"sales": None})
    metrics.fact("call.queued", {"queue": "sales", "call": "c1"})
    metrics.inc("something_new_total")
    text = metrics.render().decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert names == helps and "ccd_queue_calls_offered_total" in names
    assert "ccd_something_new_total" in names  # a counter nobody declared still has both
    assert not [n for n in names if n.endswith("_created")]  # no clutter series


def test_facts_drive_the_per_queue_counters_and_histograms():
    metrics = DaemonMetrics(known_queues=lambda: {"sales": None})
    metrics.fact("call.queued", {"queue": "sales", "call": "c1"})
    metrics.fact("agent.offered", {"queue": "sales", "call": "c1", "waited": 0.4})
    metrics.fact("agent.no_answer", {"queue": "sales", "call": "c1"})
    metrics.fact("agent.offered", {"queue": "sales", "call": "c1", "waited": 15.4})  # not first
    metrics.fact("call.bridged", {"queue": "sales", "call": "c1", "waited": 20.0})
    metrics.fact("call.queued", {"queue": "made-up", "call": "c2"})  # not configured
    get = metrics.registry.get_sample_value
    assert get("ccd_queue_calls_offered_total", {"queue": "sales"}) == 1
    assert get("ccd_queue_calls_offered_total", {"queue": "other"}) == 1
    assert get("ccd_queue_agent_offers_total", {"queue": "sales"}) == 2
    assert get("ccd_queue_calls_answered_total", {"queue": "sales"}) == 1
    assert get("ccd_queue_offer_wait_seconds_count", {"queue": "sales"}) == 1  # first only
    assert get("ccd_queue_offer_wait_seconds_sum", {"queue": "sales"}) == 0.4
    assert get("ccd_queue_answer_wait_seconds_sum", {"queue": "sales"}) == 20.0
    assert get("ccd_facts_total", {"name": "agent.offered"}) == 2
    assert set(FACT_COUNTERS) >= {"call.queued", "call.bridged", "call.abandoned",
                                  "call.overflow", "call.voicemail", "call.callback_requested",
                                  "callback.connected", "callback.unreached"}  # fmt: skip


def test_queue_gauges_that_fail_leave_the_scrape_working():
    class Down:
        def figures(self, now: float) -> QueueFigures:
            raise ConnectionError("redis down")

    metrics = DaemonMetrics()
    metrics.use_queue_gauges(Down(), lambda: 0.0)
    text = metrics.render().decode()
    assert "ccd_queue_figures_failures_total 1.0" in text
    assert "ccd_queue_waiting_calls{" not in text


def test_queue_stats_count_waiting_calls_longest_wait_and_free_agents_in_redis(
    fakeswitch, start_daemon
):
    fakeswitch.add_phone("1001")
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    calls = calls_of(daemon)
    # The daemon's clock (time-scaled here): an agent is free from the moment it wrote.
    now = daemon.now() + 60.0
    for uuid, priority, entered in (("a", 0, now - 50), ("b", 10, now - 5), ("c", 0, now - 20)):
        record = CallRecord(uuid=uuid, queue="support", caller_number="1", caller_name="x",
                            entered_at=entered, priority=priority)  # fmt: skip
        # What a daemon leaves in Redis for a call waiting with no agent free.
        calls.store.client.set(calls.keys.call(uuid), calls.encode(record))
        calls.store.client.zadd(
            calls.keys.queue("support"), {uuid: queue_order_key(priority, entered)}
        )
    stats = QueueStats(daemon.store, lambda: daemon.config.queues)
    figures = stats.figures(now)
    assert figures.waiting["support"] == 3 and figures.waiting["sales"] == 0
    # The oldest, though a VIP is served first; the entry time comes back from the waiting
    # set's score (priority and time in one float: ~0.1 ms of precision at today's epoch).
    assert figures.longest_wait["support"] == pytest.approx(50.0, abs=0.002)
    assert figures.longest_wait["sales"] == 0.0
    assert figures.agents["sales"] == {"free": 0}  # alice is logged out
    login(daemon, "alice")
    eventually(
        lambda: stats.figures(daemon.now()).agents["sales"] == {"free": 1}, what="alice free"
    )
    assert stats.totals(daemon.now()) == (3, 1)


def test_queue_stats_report_every_agent_state_from_the_statistics_counters(store):
    """With the counters kept (the fold applied at every agent status change), the gauges
    show every state per queue, zeros included, and the status line counts free agents."""
    now = 1_700_000_100.0
    queues = {"sales": SimpleNamespace(tags=("sales",)), "vip": SimpleNamespace(tags=("vip",))}
    tags = {"ann": ["sales"], "ben": ["sales", "vip"], "cy": ["sales"], "di": ["sales", "vip"],
            "ed": ["sales"], "flo": ["vip"], "gus": ["sales"]}  # fmt: skip
    states = {  # agent: (login, registered, activity)
        "ann": ("ready", True, "idle"),
        "ben": ("ready", True, "ringing"),
        "cy": ("ready", True, "oncall"),
        "di": ("ready", True, "wrapup"),
        "ed": ("break", True, "idle"),
        "flo": ("ready", False, "idle"),
        "gus": ("logged_out", False, "idle"),
    }
    rules = StatsRules()
    facts = [
        (Fact("agent.state", {"agent": a, "login": login, "registered": reg, "activity": act}),
         now - 60, served_queues(tags[a], {q: c.tags for q, c in queues.items()}))
        for a, (login, reg, act) in states.items()
    ]  # fmt: skip
    StatsStore(store, rules).record(fold(facts, rules))
    store.client.zadd(store.keys.queue("vip"), {"c1": queue_order_key(0, now - 42)})

    stats = QueueStats(store, lambda: queues, agent_counters=True)
    figures = stats.figures(now)
    assert figures.agents["sales"] == {
        "oncall": 1, "ringing": 1, "wrapup": 1, "free": 1, "break": 1, "unregistered": 0,
        "logged_out": 1,
    }  # fmt: skip
    assert figures.agents["vip"] == {**dict.fromkeys(STATUSES, 0), "ringing": 1, "wrapup": 1,
                                     "unregistered": 1}  # fmt: skip
    assert figures.waiting == {"sales": 0, "vip": 1}
    assert figures.longest_wait == {"sales": 0.0, "vip": 42.0}
    assert stats.totals(now) == (1, 1)  # the centre's counters: ann is the one free agent

    metrics = DaemonMetrics(known_queues=lambda: queues)
    metrics.use_queue_gauges(stats, lambda: now)
    get = metrics.registry.get_sample_value
    for state in STATUSES:
        assert get("ccd_queue_agents", {"queue": "sales", "state": state}) is not None, state
    assert get("ccd_queue_agents", {"queue": "vip", "state": "unregistered"}) == 1
    assert get("ccd_queue_longest_wait_seconds", {"queue": "vip"}) == 42.0

    # Without the counters (the engine does not keep them yet): free alone, from the index.
    plain = QueueStats(store, lambda: queues).figures(now)
    assert plain.agents == {"sales": {"free": 0}, "vip": {"free": 0}}  # no agent record here


def test_the_days_service_level_asa_and_abandonment_are_scraped_per_queue(store):
    """The day's figures from the statistics' counters (README, "Statistics"), computed by
    hand: T = 20 s, S = 5 s; sales offered 5, answered after 5, 15 and 40 s, abandoned after
    3 s (short) and 30 s."""
    now = time.time()  # the day's counters expire after the retention, counted from today
    queues = {"sales": SimpleNamespace(tags=("sales",)), "quiet": SimpleNamespace(tags=("q",))}
    rules = StatsRules(default=QueueStatsRules(service_level_time=20.0, short_abandon_time=5.0))
    facts = [(Fact("call.queued", {"queue": "sales"}), now) for _ in range(5)]
    facts += [(Fact("call.bridged", {"queue": "sales", "waited": w}), now) for w in (5, 15, 40)]
    facts += [(Fact("call.abandoned", {"queue": "sales", "waited": w}), now) for w in (3, 30)]
    StatsStore(store, rules).record(fold(facts, rules))

    metrics = DaemonMetrics(known_queues=lambda: queues)
    metrics.use_queue_gauges(QueueStats(store, lambda: queues), lambda: now)
    get = metrics.registry.get_sample_value
    sales = {"queue": "sales"}
    assert get("ccd_queue_today_calls", {**sales, "outcome": "offered"}) == 5
    assert get("ccd_queue_today_calls", {**sales, "outcome": "answered_in_sl"}) == 2
    assert get("ccd_queue_today_calls", {**sales, "outcome": "abandoned_short"}) == 1
    assert get("ccd_queue_service_level_ratio", {**sales, "definition": "answered"}) == 2 / 3
    assert (
        get("ccd_queue_service_level_ratio", {**sales, "definition": "answered_abandoned"}) == 0.5
    )
    assert get("ccd_queue_asa_seconds", sales) == 20.0
    assert get("ccd_queue_abandon_ratio", {**sales, "definition": "all"}) == 0.4
    assert get("ccd_queue_abandon_ratio", {**sales, "definition": "after_short"}) == 0.25
    # Nothing to divide by is no figure, not a zero that reads as "0 % in time".
    assert get("ccd_queue_aht_seconds", sales) is None
    assert (
        get("ccd_queue_service_level_ratio", {"queue": "quiet", "definition": "answered"}) is None
    )
    assert get("ccd_queue_today_calls", {"queue": "quiet", "outcome": "offered"}) == 0


def test_metrics_of_a_routed_call_and_the_daemon_itself(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start_daemon(fakeswitch, agents={"alice": {"extension": "1001", "tags": ["sales"]}})
    login(daemon, "alice")
    caller = fakeswitch.place_call("+3612345678", "Doe", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, caller), what="bridged")
    sales = (("queue", "sales"),)
    answered = ("ccd_queue_calls_answered_total", sales)
    eventually(lambda: scrape(daemon)[1].get(answered) == 1, what="counted")
    text, samples = scrape(daemon)
    assert samples[("ccd_queue_calls_offered_total", sales)] == 1
    assert samples[("ccd_queue_agent_offers_total", sales)] == 1
    assert samples[("ccd_queue_offer_wait_seconds_count", sales)] == 1
    assert samples[("ccd_queue_answer_wait_seconds_count", sales)] == 1
    assert samples[("ccd_queue_waiting_calls", sales)] == 0  # bridged: out of the queue
    assert samples[("ccd_queue_agents", (("queue", "sales"), ("state", "free")))] == 0
    assert samples[("ccd_esl_events_total", ())] > 0
    assert samples[("ccd_esl_event_lag_seconds_count", ())] > 0
    eventually(lambda: scrape(daemon)[1].get(("ccd_dispatcher_lag_seconds_count", ())),
               what="a heartbeat")  # fmt: skip
    assert ("ccd_inbox_depth", ()) in samples and samples[("ccd_esl_connected", ())] == 1
    assert samples[("ccd_inbox_limit", ())] == daemon.config.daemon.inbox_limit
    assert ("ccd_inbox_urgent_depth", ()) in samples
    assert samples[("ccd_inbox_stalls_total", ())] == 0
    assert ("ccd_inbox_stalled_seconds_total", ()) in samples
    assert ("ccd_redis_errors_total", ()) in samples
    assert ("ccd_http_connections", ()) in samples
    assert daemon.config.http.token not in text and "ClueCon" not in text
