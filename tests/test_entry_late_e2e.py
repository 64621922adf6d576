"""A daemon that hears of a parked call after the dialplan moved it on by itself leaves it
alone (ccd.core.events.fell_through): the main number's caller keeps the menu they are in,
an agent's allowed outside call is not dialled twice, a refused one is still cut off.

The dispatcher is held (a burst of work, an overloaded daemon) while the call parks; the
fake FreeSWITCH runs the dialplan's sched_transfer meanwhile, on its own clock."""

from __future__ import annotations

from uuid import uuid4

import gevent.event
from structlog.testing import capture_logs

from ccd.adapters.inbox_items import Received
from ccd.core import events as ev
from ccd.supervisor import Task
from tests.support.daemon_fixtures import bridged, eventually
from tests.test_routing_e2e import SALES, login

OUTSIDE = "0612345678"
ALICE = {"alice": {"extension": "1001", "tags": ["sales"]}}


class _Held(Task):
    def __init__(self) -> None:
        self.held, self.release = gevent.event.Event(), gevent.event.Event()

    def run(self) -> None:
        self.held.set()
        self.release.wait(20)


def _hold(daemon) -> _Held:
    task = _Held()
    daemon.inbox.put(task)
    assert task.held.wait(5), "the dispatcher held"
    return task


def test_a_caller_heard_of_late_keeps_the_menu_the_dialplan_gave_them(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=3)
    daemon = start_daemon(fakeswitch, agents=ALICE)
    login(daemon, "alice")
    task = _hold(daemon)
    with capture_logs() as logs:
        caller = fakeswitch.place_call("+3612345600", "Late", digits=[SALES])
        # Meanwhile the dialplan's own sched_transfer sent the caller to the menu, who chose
        # sales there.
        eventually(lambda: fakeswitch.trace.of("park", queue="sales", uuid=caller), what="in sales")
        task.release.set()
        eventually(lambda: caller not in fakeswitch.channels, timeout=20, what="call over")
    assert bridged(fakeswitch, caller)
    assert len(fakeswitch.trace.of("ivr", uuid=caller)) == 1  # the menu was not started again
    assert not fakeswitch.trace.of("park", queue="general", uuid=caller)
    [late] = [e for e in logs if e["event"] == "call.entry_late"]
    assert late["call"] == caller and late["waited"] >= 1.0


def _sent_apps(fakeswitch, monkeypatch) -> list[tuple[str, str]]:
    """(uuid, application) of every sendmsg execute the switch receives from now on."""
    sent: list[tuple[str, str]] = []
    receive = fakeswitch.server.sendmsg  # what the event socket hands each sendmsg to

    def recorded(uuid: str, headers: dict[str, str]) -> str:
        low = {k.lower(): v for k, v in headers.items()}
        sent.append((uuid, low.get("execute-app-name", "")))
        return receive(uuid, headers)

    monkeypatch.setattr(fakeswitch.server, "sendmsg", recorded)
    return sent


def test_an_allowed_outside_call_heard_of_late_is_dialled_once(
    fakeswitch, start_daemon, monkeypatch
):
    # FreeSWITCH runs a message queued for a bridged channel in the bridge (the fake runs it
    # after): a transfer sent now would take the agent out of the call and dial again.
    fakeswitch.add_phone("1001")
    daemon = start_daemon(fakeswitch, agents=ALICE)
    fakeswitch.add_outside(OUTSIDE, answer_after=1, hangup_after=4)
    sent = _sent_apps(fakeswitch, monkeypatch)
    task = _hold(daemon)
    with capture_logs() as logs:
        out = fakeswitch.phone_call("1001", OUTSIDE)
        eventually(lambda: fakeswitch.trace.of("ring", party=OUTSIDE), what="dialled unchecked")
        task.release.set()
        eventually(lambda: out not in fakeswitch.channels, timeout=15, what="call over")
    assert len(fakeswitch.trace.of("ring", party=OUTSIDE)) == 1
    assert [app for uuid, app in sent if uuid == out] == []  # the daemon sent it nothing
    assert [e["agent"] for e in logs if e["event"] == "agent.outbound_late"] == ["alice"]


def test_a_refused_outside_call_heard_of_late_is_still_cut_off(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001")
    daemon = start_daemon(fakeswitch, agents=ALICE)
    daemon.control.disposition.dnc.add(OUTSIDE, None)  # the list the outbound check reads
    fakeswitch.add_outside(OUTSIDE, answer_after=1000)  # rings while the daemon is held
    task = _hold(daemon)
    out = fakeswitch.phone_call("1001", OUTSIDE)
    eventually(lambda: fakeswitch.trace.of("ring", party=OUTSIDE), what="dialled unchecked")
    task.release.set()
    eventually(lambda: out not in fakeswitch.channels, timeout=15, what="cut off")
    transfers = [e["to"] for e in fakeswitch.trace.of("transfer", uuid=out)]
    assert transfers == ["ccd_outbound_go", "ccd_outbound_refused"]  # the dialplan's, ours


def test_a_park_that_does_not_say_its_wait_is_reported_once(fakeswitch, start_daemon):
    """A centre that upgraded ccd but not its dialplan: the daemon acts as before, and says
    once what to install (every caller would repeat it)."""
    daemon = start_daemon(fakeswitch, agents=ALICE)
    with capture_logs() as logs:
        for _ in range(2):
            park = ev.EntryParked(str(uuid4()), "+3612345600", "Old", "5000", "general")
            daemon.inbox.put(Received(park, "", None))
        done = _Held()
        done.release.set()
        daemon.inbox.put(done)  # taken after the two parks: they were handled
        assert done.held.wait(5)
    told = [e for e in logs if e["event"] == "entry.dialplan_outdated"]
    assert len(told) == 1 and "freeswitch_conf" in told[0]["hint"]
