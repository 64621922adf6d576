"""Issue 13 end to end ("no call is lost", caller side): abandoned callers and voicemail
messages become callback requests, through the fake FreeSWITCH over real sockets, the real
daemon and Redis; time scaled (the fake's 50x: 20 s of waiting is 0.4 s)."""

from __future__ import annotations

from ccd.store.callback import CallbackStore
from tests.support.daemon_fixtures import QUEUES, bridged, eventually
from tests.test_routing_e2e import login
from tests.test_stats_e2e import sales, stats

CUSTOMER = "+3612345678"
AGENTS = {"alice": {"extension": "1001", "tags": ["sales"]}}


def start(fakeswitch, start_daemon, **sales):
    queue = {"tags": ["sales"], "overflow_time": 0, "no_agents": "wait",
             "abandoned_callback": True, "abandoned_after": 20, **sales}  # fmt: skip
    return start_daemon(
        fakeswitch,
        agents=AGENTS,
        queues={**QUEUES, "sales": queue},
        routing={"wrapup_time": 0},
        callback={"business_hours": [], "agent_poll_interval": 1},
    )


def requests(daemon):
    return CallbackStore(daemon.store).list()


def abandon(fakeswitch, daemon, patience=30):
    """A caller to the sales queue who gives up after ``patience`` switch seconds."""
    caller = fakeswitch.place_call(CUSTOMER, "Doe", destination="ccd_queue_sales",
                                   patience=patience)  # fmt: skip
    eventually(lambda: fakeswitch.trace.of("hangup", uuid=caller), what="the caller gave up")
    return caller


def test_abandoned_after_the_threshold_is_stored_then_dialled(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=5)
    fakeswitch.add_outside(CUSTOMER, answer_after=1, digits=["1"], hangup_after=60)
    daemon = start(fakeswitch, start_daemon, callback_strategy="customer_first")
    caller = abandon(fakeswitch, daemon)
    (request,) = eventually(lambda: requests(daemon), what="an abandoned request")
    assert (request.id, request.reason, request.status) == (f"ab-{caller}", "abandoned", "pending")
    assert (request.number, request.queue, request.caller_uuid) == (CUSTOMER, "sales", caller)
    # In the day's statistics too: one abandoned caller, one callback request stored.
    today = eventually(lambda: (t := sales(stats(daemon))["today"])["callbacks_stored"] and t,
                       what="the request in /stats")  # fmt: skip
    assert (today["abandoned"], today["callbacks_stored"], today["callback_requested"]) == (1, 1, 0)
    assert not fakeswitch.trace.of("ring", party=CUSTOMER)  # nobody free to take it yet
    login(daemon, "alice")  # a free agent: customer_first dials the customer
    leg = eventually(lambda: [e["uuid"] for e in fakeswitch.trace.of("answer", party=CUSTOMER)
                              if e["uuid"] != caller], what="customer called back")[0]  # fmt: skip
    eventually(lambda: bridged(fakeswitch, leg), what="customer bridged to alice")
    # The customer entering the queue does not close the request being dialed: done.
    done = eventually(lambda: (r := requests(daemon)[0]).status == "done" and r, what="done")
    assert [a.outcome for a in done.attempts] == ["queued"] and not done.closed_reason


def test_short_wait_stores_nothing(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    abandon(fakeswitch, daemon, patience=5)
    eventually(lambda: daemon.control.hunting.hunts == {}, what="call finished")
    daemon.control.flush()
    assert requests(daemon) == []


def test_calling_again_and_being_answered_closes_the_request(fakeswitch, start_daemon):
    fakeswitch.add_phone("1001", answer_after=1)
    daemon = start(fakeswitch, start_daemon, callback_strategy="passive")
    first = abandon(fakeswitch, daemon)
    eventually(lambda: requests(daemon), what="an abandoned request")
    login(daemon, "alice")
    again = fakeswitch.place_call(CUSTOMER, "Doe", destination="ccd_queue_sales",
                                  hangup_after=5)  # fmt: skip
    eventually(lambda: bridged(fakeswitch, again), what="second call answered by alice")
    (closed,) = eventually(lambda: [r for r in requests(daemon) if r.status == "cancelled"],
                           what="request closed")  # fmt: skip
    assert (closed.id, closed.closed_reason) == (f"ab-{first}", "called_again")
    assert len(requests(daemon)) == 1  # the answered call made none
    assert not fakeswitch.trace.of("ring", party=CUSTOMER)  # never dialled


def test_voicemail_message_becomes_a_voicemail_request(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon, no_agents="voicemail", abandoned_callback=False,
                   voicemail_callback=True, callback_strategy="passive")  # fmt: skip
    caller = fakeswitch.place_call(CUSTOMER, "Doe", destination="ccd_queue_sales")
    eventually(lambda: fakeswitch.trace.of("voicemail_left", uuid=caller), what="message left")
    (request,) = eventually(lambda: requests(daemon), what="a voicemail request")
    assert (request.id, request.reason, request.status) == (f"vm-{caller}", "voicemail", "pending")
    assert (request.number, request.queue) == (CUSTOMER, "sales")
    today = eventually(lambda: (t := sales(stats(daemon))["today"])["callbacks_stored"] and t,
                       what="the request in /stats")  # fmt: skip
    assert today["callbacks_stored"] == 1


def test_voicemail_of_a_queue_without_the_option_stores_nothing(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon, no_agents="voicemail", abandoned_callback=False)
    caller = fakeswitch.place_call(CUSTOMER, "Doe", destination="ccd_queue_sales")
    eventually(lambda: fakeswitch.trace.of("hangup", uuid=caller), what="message left, gone")
    daemon.control.flush()
    assert requests(daemon) == []
