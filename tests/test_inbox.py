"""The dispatcher's inbox under overload: work already started first, each lane in order,
nothing reordered across a reconnect (ccd.adapters.inbox), and the daemon using it so
(an answered agent is bridged before new callers are queued)."""

from __future__ import annotations

from uuid import uuid4

import gevent
import gevent.event
import pytest

from ccd.adapters.inbox import Inbox
from ccd.adapters.inbox_items import Lanes
from ccd.core import events as ev
from ccd.core.esl_wire import EslEvent
from ccd.supervisor import Task
from tests.support.daemon_fixtures import bridged, eventually
from tests.test_routing_e2e import SALES, login, offers


def drain(inbox: Inbox) -> list[object]:
    out = []
    while not inbox.empty():
        out.append(inbox.get_nowait())
    return out


def test_urgent_items_come_first_and_each_lane_keeps_its_order():
    inbox = Inbox(limit=100)
    for item in ("park 1", "park 2"):
        inbox.put_event(item)
    inbox.put_event("answer A", urgent=True)
    inbox.put_event("park 3")
    inbox.put_event("hangup A", urgent=True)
    inbox.put("tick", urgent=True)
    assert inbox.qsize() == 6 and inbox.urgent_size() == 3
    assert drain(inbox) == ["answer A", "hangup A", "tick", "park 1", "park 2", "park 3"]


def test_nothing_urgent_overtakes_a_reconnect():
    """What the new connection says waits for the daemon to learn of that connection; what
    the old one said urgently still comes first."""
    inbox = Inbox(limit=100)
    inbox.put_event("old park")
    inbox.put_event("old answer", urgent=True)
    inbox.put("reconnected", barrier=True)
    inbox.put_event("new answer", urgent=True)
    inbox.put("tick", urgent=True)
    inbox.put_event("new park")
    assert inbox.get_nowait() == "old answer"
    assert inbox.get_nowait() == "old park"
    assert inbox.get_nowait() == "reconnected"
    inbox.put_event("newer answer", urgent=True)  # the barrier is taken: urgent again
    assert drain(inbox) == ["newer answer", "new answer", "tick", "new park"]


def test_a_full_lane_stops_the_reader_only_for_that_lane():
    inbox = Inbox(limit=100)
    for n in range(100):
        inbox.put_event(f"park {n}")
    inbox.put_event("answer", urgent=True)  # room in its lane: no wait
    reader = gevent.spawn(inbox.put_event, "park 100")
    gevent.sleep(0.01)
    assert not reader.ready() and inbox.stalls == 1
    assert inbox.get_nowait() == "answer"
    gevent.sleep(0.01)
    assert not reader.ready()  # taking the other lane makes no room in this one
    for n in range(25):
        assert inbox.get_nowait() == f"park {n}"
    reader.join(1)
    assert reader.ready() and inbox.stalled_seconds > 0
    assert drain(inbox)[-1] == "park 100"


def test_the_reader_resumes_with_room_to_spare_not_at_every_item():
    inbox = Inbox(limit=1000)
    for n in range(1000):
        inbox.put_event(n)
    reader = gevent.spawn(inbox.put_event, "next")
    gevent.sleep(0.01)
    inbox.get_nowait()  # one place free: the reader still waits for 64
    gevent.sleep(0.01)
    assert not reader.ready()
    for _ in range(63):
        inbox.get_nowait()
    reader.join(1)
    assert reader.ready()


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(limit=0)


def test_an_agent_who_answered_is_bridged_before_new_callers_are_queued(fakeswitch, start_daemon):
    """While the dispatcher is held up (a burst of work), ten new callers park and then
    alice answers the call offered to her. In arrival order the ten would be queued first,
    and under a long enough burst alice would hang up on the silence; the two lanes bridge
    her first."""
    fakeswitch.add_phone("1001", answer_after=75)  # 1.5 s at the tests' time scale
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        routing={"ring_time": 2000, "wrapup_time": 0},
    )
    login(daemon, "alice")
    first = fakeswitch.place_call("+3612345600", "First", digits=[SALES])
    eventually(lambda: offers(fakeswitch) == ["1001"], what="alice rings")

    held, release = gevent.event.Event(), gevent.event.Event()

    class Held(Task):
        def run(self) -> None:
            held.set()
            release.wait(20)

    daemon.inbox.put(Held())
    assert held.wait(5), "the dispatcher held"
    later = [
        fakeswitch.place_call(f"+36123456{n:02d}", f"Later {n}", digits=[SALES])
        for n in range(1, 11)
    ]
    queue_parks = lambda: [  # noqa: E731
        e for e in fakeswitch.trace.of("park", queue="sales") if e["uuid"] in later
    ]
    eventually(lambda: len(queue_parks()) == 10, what="the ten parked in the queue")
    leg_parked = lambda: any(  # noqa: E731
        ch.application == "park" and "1001" in ch.name for ch in list(fakeswitch.channels.values())
    )
    assert fakeswitch.wait_for(leg_parked, timeout=5), "alice answered"
    assert daemon.inbox.urgent_size() >= 1 and daemon.inbox.qsize() > daemon.inbox.urgent_size()

    release.set()
    eventually(lambda: bridged(fakeswitch, first), what="alice bridged")
    moh = daemon.config.routing.moh
    eventually(
        lambda: {e["uuid"] for e in fakeswitch.trace.of("playback", file=moh)} >= set(later),
        what="the ten hear the queue's music",
    )
    entries = list(fakeswitch.trace)
    bridge_at = next(i for i, e in enumerate(entries) if e["kind"] == "bridge")
    music_at = min(
        i
        for i, e in enumerate(entries)
        if e["kind"] == "playback" and e.get("file") == moh and e["uuid"] in later
    )
    assert bridge_at < music_at


def _event(name: str, uuid: str, **headers: str) -> EslEvent:
    return EslEvent({"Event-Name": name, "Unique-ID": uuid, **headers})


def test_a_callers_events_turn_urgent_at_its_bridge_to_an_agents_leg():
    """FreeSWITCH reports uuid_bridge on the caller's channel only. Behind a burst of new
    callers, the agent's hangup (urgent) would overtake that CHANNEL_BRIDGE and the daemon
    would take the finished conversation for an agent who hung up before the bridge."""
    caller, leg, other = str(uuid4()), str(uuid4()), str(uuid4())
    lanes = Lanes()
    steps = [
        _event("CHANNEL_PARK", caller, variable_ccd_queue="sales"),
        _event("CHANNEL_CREATE", leg, variable_ccd_call=caller),
        _event("CHANNEL_PARK", leg, variable_ccd_call=caller),
        _event("CHANNEL_PARK", other, variable_ccd_queue="sales"),
        _event("CHANNEL_BRIDGE", caller, **{"Other-Leg-Unique-ID": leg}),
        _event(
            "CHANNEL_HANGUP_COMPLETE",
            leg,
            variable_ccd_call=caller,
            **{"Hangup-Cause": "NORMAL_CLEARING"},
        ),
        _event("CHANNEL_HANGUP_COMPLETE", caller, **{"Hangup-Cause": "NORMAL_CLEARING"}),
        _event("CHANNEL_BRIDGE", other, **{"Other-Leg-Unique-ID": caller}),  # gone: not hot
    ]
    got = [lanes.received(e) for e in steps]
    assert all(item is not None for item, _ in got)
    assert [urgent for _, urgent in got] == [False, True, True, False, True, True, True, False]


def test_channels_are_forgotten_beyond_the_limit():
    lanes = Lanes(limit=2)
    legs = [str(uuid4()) for _ in range(3)]
    for leg in legs:
        lanes.received(_event("CHANNEL_CREATE", leg, variable_ccd_call=str(uuid4())))
    bridge = lambda other: _event("CHANNEL_BRIDGE", str(uuid4()), **{"Other-Leg-Unique-ID": other})  # noqa: E731
    assert not lanes.received(bridge(legs[0]))[1]  # the oldest went
    assert lanes.received(bridge(legs[2]))[1]


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _stamp(seconds: float) -> dict[str, str]:
    return {"Event-Date-Timestamp": str(round(seconds * 1e6))}


def _entry_park(at: float, wait: str = "2") -> EslEvent:
    return _event(
        "CHANNEL_PARK",
        str(uuid4()),
        variable_ccd_direct_check="true",
        variable_ccd_direct_queue="general",
        variable_ccd_direct_check_s=wait,
        **_stamp(at),
    )


def test_a_parked_entry_is_told_how_long_it_waited_whatever_the_two_clocks_say():
    """Our clock 500 s ahead of FreeSWITCH's and the wire 2 ms long: only the wait counts
    (ccd.core.events.fell_through), learnt from events read as they came."""
    clock = _Clock(1500.002)
    lanes = Lanes(clock=clock)
    lanes.received(_event("CHANNEL_CREATE", str(uuid4()), **_stamp(1000.0)))
    clock.now = 1510.004  # this one came 4 ms after it was stamped
    park = lanes.received(_entry_park(1010.0))[0]
    assert lanes.aged(park).waited == pytest.approx(0.002)  # taken at once: the wire's 2 ms
    clock.now = 1510.502
    aged = lanes.aged(park)
    assert isinstance(aged, ev.EntryParked) and aged.waited == pytest.approx(0.5)
    assert not ev.fell_through(aged)
    clock.now = 1511.002  # nothing else heard meanwhile: a daemon that stood still
    aged = lanes.aged(park)
    # FreeSWITCH's +2 s may fire from 1 s after the park on (whole seconds): too late.
    assert aged.waited == pytest.approx(1.0) and ev.fell_through(aged)


def test_the_gap_between_the_clocks_is_forgotten_after_a_minute():
    """Our clock stepped forward by 30 s (NTP): for a minute at most every entry looks late
    (left to the dialplan, which sends it to the menu), then the new gap is learnt."""
    clock = _Clock(1000.0)
    lanes = Lanes(clock=clock)
    for t in range(0, 200, 5):
        clock.now = 1000.0 + t + (30 if t >= 100 else 0)
        lanes.received(_event("CHANNEL_CREATE", str(uuid4()), **_stamp(1000.0 + t)))
    clock.now = 1000.0 + 200 + 30
    park = lanes.received(_entry_park(1000.0 + 200))[0]
    clock.now += 0.1
    assert lanes.aged(park).waited == pytest.approx(0.1)


@pytest.mark.parametrize("said", ["", "soon", "0", "-2", "nan", "inf", "99999"])
def test_a_missing_or_bad_wait_never_makes_an_entry_late(said):
    clock = _Clock(1000.0)
    lanes = Lanes(clock=clock)
    park = lanes.received(_entry_park(1000.0, wait=said))[0]
    clock.now = 2000.0
    aged = lanes.aged(park)
    assert isinstance(aged, ev.EntryParked) and aged.moves_on_after is None
    assert not ev.fell_through(aged)  # as before the dialplan said it: the daemon acts


def test_a_new_connection_learns_the_gap_to_its_own_clock():
    """Another FreeSWITCH after a reconnect, its clock 1,000 s behind the last one's: its
    callers are not taken for late ones (the daemon would leave them all to the dialplan)."""
    clock = _Clock(2000.0)
    lanes = Lanes(clock=clock)
    lanes.received(_event("CHANNEL_CREATE", str(uuid4()), **_stamp(2000.0)))
    lanes.connected()
    clock.now = 2001.0
    park = lanes.received(_entry_park(1001.0))[0]
    clock.now = 2001.3
    aged = lanes.aged(park)
    assert aged.waited == pytest.approx(0.3) and not ev.fell_through(aged)
