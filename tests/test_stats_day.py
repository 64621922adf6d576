"""A generated day of two queues and two agents, folded into a real redis-server event by event
(ccd.core.stats -> ccd.store.stats), and every figure read back compared with numbers worked
out by hand below. Nothing mocks Redis.

The day (Monday 2 November 2026, Europe/Budapest; both queues use S = 5 s short abandons):

* ``sales`` (T = 20 s), 20 calls:
  S1-S10 answered by alice after 10 s, talk 100 s, wrap-up 20 s; S11-S13 the same after 25 s;
  S14-S15 abandoned after 3 s; S16 after 15 s; S17 after 28 s; S18 overflowed at 30 s and left
  a callback request at 45 s; S19 overflowed at 30 s, kept waiting, hung up at 60 s; S20 sent
  to voicemail after 12 s. Later: S18's callback connected.
* ``support`` (T = 30 s), 20 calls:
  P1-P8 answered by bob after 20 s, talk 200 s, wrap-up 30 s; P9-P12 by alice after exactly
  30 s, talk 150 s, wrap-up 30 s; P13-P14 by bob after 45 s, talk 200 s, wrap-up 30 s (P13 first
  rang alice 15 s, who missed it); P15-P17 abandoned after 2 s; P18 after 35 s; P19 overflowed
  at 30 s and left a callback request at 45 s; P20 to voicemail after 8 s. Later: a follow-up
  callback stored for support, and one support request unreached.
* alice (tags sales, support) logs in 08:00, break 10:00-10:15, logs out 12:00.
  bob (tag support) logs in 09:00, break 11:00-11:30, logs out 13:00.
  Every answered call rings the agent 5 s before the answer.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from ccd.core.announce import BusySince
from ccd.core.commands import Fact
from ccd.core.queue import queue_order_key
from ccd.core.stats import QueueStatsRules, StatsRules, fold, served_queues
from ccd.store.batch import Batch
from ccd.store.stats import StatsStore

TZ = ZoneInfo("Europe/Budapest")
DAY = "2026-11-02"
RULES = StatsRules(
    queues={"sales": QueueStatsRules(20.0, 5.0, TZ), "support": QueueStatsRules(30.0, 5.0, TZ)},
    default=QueueStatsRules(20.0, 5.0, TZ),
    tz=TZ,
    windows=(15, 60),
    retention_days=36600,  # the day's counters outlive any date this test runs on
)
QUEUE_TAGS = {"sales": ("sales",), "support": ("support",)}
TAGS = {"alice": ("sales", "support"), "bob": ("support",)}


def t(hh: int, mm: int, ss: float = 0.0) -> float:
    return dt.datetime(2026, 11, 2, hh, mm, tzinfo=TZ).timestamp() + ss


# --- the day as facts -------------------------------------------------------------------------


class Day:
    def __init__(self) -> None:
        self.events: list[tuple[float, Fact]] = []
        self.busy_until = {"alice": t(8, 0), "bob": t(9, 0)}
        self.n = 0

    def fact(self, at: float, name: str, **data) -> None:
        self.events.append((at, Fact(name, data)))

    def agent(self, at: float, agent: str, login: str, activity: str = "idle") -> None:
        self.fact(at, "agent.state", agent=agent, login=login, registered=True, activity=activity)

    def answered(self, queue: str, agent: str, wait: float, talk: float, wrap: float, at=None):
        """Arrives 60 s after the agent is free (or at ``at``), rings 5 s, answered at +wait."""
        self.n += 1
        call = f"{queue}-{self.n}"
        start = self.busy_until[agent] + 60 if at is None else at
        answer = start + wait
        self.fact(start, "call.queued", queue=queue, call=call)
        self.fact(answer - 5, "agent.offered", queue=queue, call=call, agent=agent)
        self.agent(answer, agent, "ready", "oncall")
        self.fact(answer, "call.bridged", queue=queue, call=call, agent=agent, waited=wait)
        self.fact(answer + talk, "call.ended", queue=queue, call=call, agent=agent, by="caller")
        self.agent(answer + talk, agent, "ready", "wrapup")
        self.agent(answer + talk + wrap, agent, "ready", "idle")
        self.busy_until[agent] = answer + talk + wrap
        return start

    def abandoned(self, queue: str, at: float, wait: float) -> None:
        self.fact(at, "call.queued", queue=queue)
        self.fact(at + wait, "call.abandoned", queue=queue, waited=wait, phase="waiting")

    def overflow(self, queue: str, at: float, *, then: str) -> None:
        self.fact(at, "call.queued", queue=queue)
        self.fact(at + 30, "call.overflow", queue=queue, waited=30.0)
        self.fact(at + 30, "callback.offered", queue=queue)
        if then == "callback":
            self.fact(at + 45, "call.callback_requested", queue=queue, request="r")
            self.fact(at + 45, "callback.stored", queue=queue, callback="r")
        else:
            self.fact(at + 40, "callback.declined_offer", queue=queue)
            self.fact(at + 60, "call.abandoned", queue=queue, waited=60.0, phase="waiting")

    def voicemail(self, queue: str, at: float, wait: float) -> None:
        self.fact(at, "call.queued", queue=queue)
        self.fact(at + wait, "call.voicemail", queue=queue, box=queue)


def the_day() -> list[tuple[float, Fact]]:
    d = Day()
    d.agent(t(8, 0), "alice", "ready")
    d.agent(t(9, 0), "bob", "ready")
    d.busy_until["alice"] = t(8, 4)  # the first call arrives 08:05
    d.busy_until["bob"] = t(9, 4)
    for i in range(13):  # S1-S13
        d.answered("sales", "alice", 10.0 if i < 10 else 25.0, 100.0, 20.0)
    for _ in range(4):  # P9-P12
        d.answered("support", "alice", 30.0, 150.0, 30.0)
    for _ in range(8):  # P1-P8
        d.answered("support", "bob", 20.0, 200.0, 30.0)
    assert max(d.busy_until.values()) < t(10, 0), "the answered calls fit before the breaks"
    d.agent(t(10, 0), "alice", "break")
    d.agent(t(10, 15), "alice", "ready")
    # P13: rings alice 15 s (missed), then bob answers after 45 s. P14 after 45 s too.
    d.fact(t(10, 20, 5), "agent.offered", queue="support", call="p13", agent="alice")
    d.fact(t(10, 20, 20), "agent.no_answer", queue="support", call="p13", agent="alice")
    d.agent(t(10, 20, 20), "alice", "ready")
    d.answered("support", "bob", 45.0, 200.0, 30.0, at=t(10, 20))
    d.answered("support", "bob", 45.0, 200.0, 30.0, at=t(10, 30))
    assert d.busy_until["bob"] < t(10, 40)
    d.agent(t(11, 0), "bob", "break")
    d.agent(t(11, 30), "bob", "ready")
    # Sales calls not answered, 11:00-11:06; support's 11:30-11:35.
    d.abandoned("sales", t(11, 0), 3.0)  # S14
    d.abandoned("sales", t(11, 1), 3.0)  # S15
    d.abandoned("sales", t(11, 2), 15.0)  # S16
    d.abandoned("sales", t(11, 3), 28.0)  # S17
    d.overflow("sales", t(11, 4), then="callback")  # S18
    d.overflow("sales", t(11, 5), then="abandon")  # S19
    d.voicemail("sales", t(11, 6), 12.0)  # S20
    for minute in (30, 31, 32):  # P15-P17
        d.abandoned("support", t(11, minute), 2.0)
    d.abandoned("support", t(11, 33), 35.0)  # P18
    d.overflow("support", t(11, 34), then="callback")  # P19
    d.voicemail("support", t(11, 35), 8.0)  # P20
    d.agent(t(12, 0), "alice", "logged_out")
    d.agent(t(13, 0), "bob", "logged_out")
    d.fact(t(12, 45), "callback.stored", queue="support", callback="follow-up")
    d.fact(t(13, 30), "callback.connected", queue="sales", callback="r")
    d.fact(t(14, 0), "callback.unreached", queue="support", callback="old")
    return sorted(d.events, key=lambda e: e[0])  # stable: same-time facts keep their order


def feed(stats: StatsStore, client, events, until: float | None = None) -> list:
    """One pipeline per moment, as the engine's unit of work will run one per event. Returns
    the events left after ``until``."""
    while events and (until is None or events[0][0] <= until):
        at = events[0][0]
        batch = []
        while events and events[0][0] == at:
            _, fact = events.pop(0)
            agent = fact.data.get("agent")
            served = served_queues(TAGS[agent], QUEUE_TAGS) if fact.name == "agent.state" else None
            batch.append((fact, at, served))
        pipe = client.pipeline(transaction=True)
        stats.apply(pipe, fold(batch, RULES))
        pipe.execute()
    return events


@pytest.fixture
def stats(store):
    return StatsStore(store, RULES)


def _agents(snapshot_agents) -> dict[str, int]:
    return {k: v for k, v in snapshot_agents.items() if v}


# --- the test ---------------------------------------------------------------------------------


def test_a_generated_day_gives_the_figures_worked_out_by_hand(stats, store):
    client = store.client
    events = the_day()

    # 08:06:00, during S1: alice logged in 08:00:00, rung 08:05:05, answered 08:05:10.
    events = feed(stats, client, events, until=t(8, 6))
    snap = stats.snapshot(["sales", "support"], t(8, 6))
    assert [_agents(q.agents) for q in snap.queues] == [{"oncall": 1}, {"oncall": 1}]
    (alice,) = stats.agents(["alice"], t(8, 6))
    # free 08:00:00-08:05:05 = 305 s; ringing 5 s; on the call for 50 s so far (running).
    assert (alice.status, alice.counts.free, alice.counts.ringing) == ("oncall", 305, 5)
    assert alice.counts.oncall == 50
    assert alice.counts.occupancy() == pytest.approx(55 / 360)

    # 10:05: alice on break, bob free (his eight calls ended by 09:46).
    events = feed(stats, client, events, until=t(10, 5))
    snap = stats.snapshot(["sales", "support"], t(10, 5))
    assert [_agents(q.agents) for q in snap.queues] == [{"break": 1}, {"break": 1, "free": 1}]
    assert _agents(snap.agents) == {"break": 1, "free": 1}

    # 11:00:30: bob on break; two callers wait in sales (as ccd.store.call queues them): one
    # since 11:00:00, a VIP (priority 10, served first) since 11:00:20.
    events = feed(stats, client, events, until=t(11, 0, 30))
    client.zadd("t:queue:sales", {"old": queue_order_key(0, t(11, 0))})
    client.zadd("t:queue:sales", {"vip": queue_order_key(10, t(11, 0, 20))})
    snap = stats.snapshot(["sales", "support"], t(11, 0, 30), callers=5)
    sales, support = snap.queues
    assert (sales.waiting, sales.longest_wait(t(11, 0, 30))) == (
        2,
        30.0,
    )  # the oldest, not the first
    assert [(c.call, c.priority) for c in sales.callers] == [("vip", 10), ("old", 0)]
    assert (support.waiting, support.longest_wait(t(11, 0, 30))) == (0, None)
    assert _agents(support.agents) == {"break": 1, "free": 1}
    client.delete("t:queue:sales")

    # 12:30: alice logged out, bob free.
    events = feed(stats, client, events, until=t(12, 30))
    snap = stats.snapshot(["sales", "support"], t(12, 30))
    assert [_agents(q.agents) for q in snap.queues] == [
        {"logged_out": 1},
        {"logged_out": 1, "free": 1},
    ]
    feed(stats, client, events)

    doc = stats.read(["sales", "support"], t(23, 0), agents=["alice", "bob"])
    sales, support = (q["today"] for q in doc["queues"])
    assert sales["day"] == support["day"] == DAY

    # SALES, T = 20 s, S = 5 s.
    assert sales["offered"] == 20  # S1-S20
    assert sales["answered"] == 13  # S1-S13
    assert sales["answered_sl"] == 10  # S1-S10 waited 10 <= 20; S11-S13 waited 25 > 20
    assert sales["wait_answered"] == 175.0  # 10 x 10 + 3 x 25
    assert sales["abandoned"] == 5  # S14, S15, S16, S17, S19
    assert sales["abandoned_short"] == 2  # S14, S15 (3 s < 5 s)
    assert sales["wait_abandoned"] == 109.0  # 3 + 3 + 15 + 28 + 60
    assert (sales["overflowed"], sales["callback_requested"]) == (2, 1)  # S18, S19; S18
    assert (sales["voicemail"], sales["unanswered"]) == (1, 0)  # S20
    assert sales["handled"] == 13
    assert (sales["talk"], sales["wrapup"]) == (1300.0, 260.0)  # 13 x 100; 13 x 20
    assert (sales["callbacks_stored"], sales["callbacks_connected"]) == (1, 1)
    # every call offered ended one way: 13 answered + 5 abandoned + 1 callback + 1 voicemail
    outcomes = ("answered", "abandoned", "callback_requested", "voicemail", "unanswered")
    assert sum(sales[o] for o in outcomes) == sales["offered"]
    assert sales["service_level"] == round(10 / 13, 4)  # 0.7692
    assert sales["service_level_abandoned"] == round(10 / (13 + 3), 4)  # 0.625: 3 long abandons
    assert sales["asa"] == round(175 / 13, 3)  # 13.462 s
    assert sales["aht"] == 120.0  # (1300 + 260) / 13
    assert sales["abandon_rate"] == 0.25  # 5 / 20
    assert sales["abandon_rate_long"] == round(3 / 18, 4)  # (5 - 2) / (20 - 2) = 0.1667

    # SUPPORT, T = 30 s, S = 5 s.
    assert support["offered"] == 20
    assert support["answered"] == 14  # P1-P14
    assert support["answered_sl"] == 12  # P1-P8 (20 s), P9-P12 (exactly 30 s counts)
    assert support["wait_answered"] == 370.0  # 8 x 20 + 4 x 30 + 2 x 45
    assert (support["abandoned"], support["abandoned_short"]) == (4, 3)  # P15-P18; P15-P17
    assert support["wait_abandoned"] == 41.0  # 3 x 2 + 35
    assert (support["overflowed"], support["callback_requested"]) == (1, 1)  # P19
    assert support["voicemail"] == 1  # P20
    assert sum(support[o] for o in outcomes) == support["offered"]  # 14 + 4 + 1 + 1
    assert support["handled"] == 14
    assert support["talk"] == 2600.0  # 8 x 200 + 4 x 150 + 2 x 200
    assert support["wrapup"] == 420.0  # 14 x 30
    assert (support["callbacks_stored"], support["callbacks_unreached"]) == (2, 1)
    assert support["service_level"] == round(12 / 14, 4)  # 0.8571
    assert support["service_level_abandoned"] == 0.8  # 12 / (14 + 1)
    assert support["asa"] == round(370 / 14, 3)  # 26.429 s
    assert support["aht"] == round(3020 / 14, 3)  # (2600 + 420) / 14 = 215.714 s
    assert support["abandon_rate"] == 0.2  # 4 / 20
    assert support["abandon_rate_long"] == round(1 / 17, 4)  # (4 - 3) / (20 - 3)

    # Agents. alice: logged in 08:00-12:00 = 14,400 s. 17 calls answered: ringing 17 x 5 = 85
    # plus the 15 s of P13 she missed = 100; on calls 13 x 100 + 4 x 150 = 1,900; wrap-up
    # 13 x 20 + 4 x 30 = 380; break 900; free = 14,400 - 100 - 1,900 - 380 - 900 = 11,120.
    alice, bob = doc["agents"]
    assert alice["status"] == "logged_out"
    assert (alice["ringing"], alice["oncall"], alice["wrapup"]) == (100.0, 1900.0, 380.0)
    assert (alice["break"], alice["free"]) == (900.0, 11120.0)
    assert (alice["offered"], alice["answered"], alice["missed"]) == (18, 17, 1)
    assert alice["occupancy"] == round(2380 / 13500, 4)  # busy / (14,400 - 900) = 0.1763
    # bob: 09:00-13:00 = 14,400 s; 10 calls: ringing 50, on calls 8 x 200 + 2 x 200 = 2,000,
    # wrap-up 300; break 1,800; free = 14,400 - 2,350 - 1,800 = 10,250.
    assert (bob["ringing"], bob["oncall"], bob["wrapup"]) == (50.0, 2000.0, 300.0)
    assert (bob["break"], bob["free"]) == (1800.0, 10250.0)
    assert bob["occupancy"] == round(2350 / 12600, 4)  # 0.1865

    # The sliding windows at 11:40:00: 15 minutes = 11:26-11:40, 60 minutes = 10:41-11:40.
    doc = stats.read(["sales", "support"], t(11, 40))
    sales, support = doc["queues"]
    assert sales["windows"]["15"]["offered"] == 0  # sales' last calls came 11:00-11:06
    assert sales["windows"]["15"]["service_level"] is None  # nothing answered: no SL
    last_hour = sales["windows"]["60"]
    assert (last_hour["offered"], last_hour["abandoned"], last_hour["abandoned_short"]) == (7, 5, 2)
    assert (last_hour["overflowed"], last_hour["voicemail"], last_hour["answered"]) == (2, 1, 0)
    assert last_hour["abandon_rate"] == round(5 / 7, 4)
    assert last_hour["abandon_rate_long"] == 0.6  # (5 - 2) / (7 - 2)
    for window in ("15", "60"):  # support's answered calls ended by 10:35: P15-P20 only
        w = support["windows"][window]
        assert (w["offered"], w["abandoned"], w["abandoned_short"], w["answered"]) == (6, 4, 3, 0)
        assert (w["wait_abandoned"], w["callbacks_stored"], w["talk"]) == (41.0, 1, 0.0)
        assert w["abandon_rate_long"] == round(1 / 3, 4)  # (4 - 3) / (6 - 3)


def test_apply_only_appends_to_the_callers_pipeline(stats, store):
    client = store.client
    events = the_day()[:12]
    batch = [(fact, when, ("sales", "support")) for when, fact in events]
    pipe = client.pipeline(transaction=True)
    before = int(client.info("stats")["total_commands_processed"])
    appended = stats.apply(pipe, fold(batch, RULES))
    after = int(client.info("stats")["total_commands_processed"])
    assert after - before == 1  # the second INFO itself: apply sent nothing
    assert appended > 0 and len(pipe.command_stack) == 1  # one script call for them all
    pipe.execute()
    assert client.hget(f"t:stats:queue:sales:{DAY}", "offered") is not None


def test_an_interval_across_midnight_is_split_between_the_two_days(stats, store):
    late, early = t(23, 50), t(23, 50) + 1200  # 23:50 -> 00:10 the next day
    facts = [
        (Fact("agent.state", {"agent": "carol", "login": "ready", "registered": True}), late),
        (Fact("agent.state", {"agent": "carol", "login": "break"}), early),
    ]
    stats.record(fold(facts, RULES))
    assert float(store.client.hget(f"t:stats:agent:carol:{DAY}", "free")) == 600.0
    assert float(store.client.hget("t:stats:agent:carol:2026-11-03", "free")) == 600.0


def test_agents_counts_follow_new_tags_and_a_removed_agent_leaves_them(stats, store):
    state = {"agent": "dave", "login": "ready", "registered": True, "activity": "idle"}
    stats.record(fold([(Fact("agent.state", state), t(9, 0), ("sales",))], RULES))
    # Tags changed: the next write names the new queues; dave moves from sales to support.
    stats.record(fold([(Fact("agent.state", state), t(9, 5), ("support",))], RULES))
    snap = stats.snapshot(["sales", "support"], t(9, 6))
    assert [_agents(q.agents) for q in snap.queues] == [{}, {"free": 1}]
    pipe = store.client.pipeline()
    stats.remove_agent(pipe, "dave", t(9, 10))
    pipe.execute()
    snap = stats.snapshot(["sales", "support"], t(9, 11))
    assert [_agents(q.agents) for q in snap.queues] == [{}, {}] and _agents(snap.agents) == {}
    assert float(store.client.hget(f"t:stats:agent:dave:{DAY}", "free")) == 600.0


def test_a_bad_name_from_a_fact_is_skipped_not_raised(stats, store):
    facts = [(Fact("call.queued", {"queue": "bad name*"}), t(9, 0))]
    facts.append((Fact("call.queued", {"queue": "sales"}), t(9, 0)))
    pipe = store.client.pipeline()
    assert stats.apply(pipe, fold(facts, RULES)) == 2  # sales' day and minute, not the bad one
    pipe.execute()
    assert store.client.hget(f"t:stats:queue:sales:{DAY}", "offered") == b"1"


def test_each_queue_keeps_its_busy_agents_since_when_and_the_announcement_reads_them(stats, store):
    """``stats:busy:<queue>``: the estimated wait's input, kept by the agent moves."""
    client = store.client

    def state(at, login="ready", activity="idle", served=("sales", "support"), **extra):
        fact = Fact("agent.state", {"agent": "erin", "login": login, "registered": True,
                                    "activity": activity, **extra})  # fmt: skip
        stats.record(fold([(fact, at, served)], RULES))

    def busy(queue):
        return {k.decode(): v.decode() for k, v in client.hgetall(f"t:stats:busy:{queue}").items()}

    state(t(9, 0))
    assert busy("sales") == busy("support") == {}  # free: not kept
    offered = Fact("agent.offered", {"agent": "erin", "queue": "sales", "call": "c1"})
    stats.record(fold([(offered, t(9, 1))], RULES))
    assert busy("sales") == {"erin": f"ringing {t(9, 1):.3f} ready"}
    state(t(9, 1, 5), activity="oncall")
    state(t(9, 2), login="break", activity="oncall")  # a break asked for during the call
    assert busy("support") == {"erin": f"oncall {t(9, 1, 5):.3f} break"}  # since the answer
    state(t(9, 5), login="break", activity="wrapup")
    state(t(9, 5, 30), login="break")
    assert busy("sales") == {"erin": f"break {t(9, 5, 30):.3f} break"}
    # The agent's tags changed: it leaves support's set at its next write.
    state(t(9, 10), login="break", served=("sales",))
    assert busy("support") == {} and busy("sales") == {"erin": f"break {t(9, 5, 30):.3f} break"}
    stats.record(fold([(Fact("agent.logout_pending", {"agent": "erin"}), t(9, 11))], RULES))
    assert busy("sales")["erin"].endswith(" logged_out")
    for queue in ("sales", "support"):  # a second agent, on a call in both
        fact = Fact("agent.state", {"agent": "finn", "login": "ready", "registered": True,
                                    "activity": "oncall"})  # fmt: skip
        stats.record(fold([(fact, t(9, 12), (queue,))], RULES))
    assert busy("support") == {"finn": f"oncall {t(9, 12):.3f} ready"}  # moved: support only

    client.zadd("t:queue:sales", {"c9": 1.0})
    heard = []
    batch = Batch(client, store.scripts)
    stats.announce(batch, "sales", "c9", t(9, 13), lambda *reply: heard.append(reply))
    batch.execute()
    ((position, agents, since, _, day, window),) = heard
    assert day.handled == 0  # this test's day counted no call
    assert position == 1 and window == 900.0 and agents["break"] == 1
    assert since == [BusySince("break", t(9, 5, 30), "logged_out")]
    pipe = client.pipeline()
    stats.remove_agent(pipe, "erin", t(9, 14))
    pipe.execute()
    assert busy("sales") == {}
