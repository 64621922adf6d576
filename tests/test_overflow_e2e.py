"""R-OVERFLOW end to end: the 30 s overflow, the callback offer and the number capture,
through the shipped dialplan prompts on the fake FreeSWITCH, real Redis and the daemon."""

from __future__ import annotations

from ccd.store.callback import CallbackStore
from ccd.store.redis_store import Store, connect_redis
from tests.support.daemon_fixtures import QUEUES, calls_of, eventually
from tests.test_routing_e2e import login, offers

AGENTS = {"alice": {"extension": "1001", "tags": ["sales"]}}
# A ring longer than the overflow time: the offer interrupts a ringing agent.
SALES_OVERFLOW = {**QUEUES, "sales": {"tags": ["sales"], "overflow_time": 30, "ring_time": 40}}


def start(fakeswitch, start_daemon, callback=None, **phone):
    fakeswitch.add_phone("1001", **(phone or {"ring_forever": True}))
    daemon = start_daemon(
        fakeswitch,
        agents=AGENTS,
        queues=SALES_OVERFLOW,
        routing={"wrapup_time": 0},
        callback={"business_hours": [], "max_open_per_caller": 2, **(callback or {})},
    )
    login(daemon, "alice")
    return daemon


def queue_caller(fakeswitch, number="+3612345678", *keys):
    """A caller straight into the sales queue who presses ``keys``, one entry per prompt."""
    return fakeswitch.place_call(number, "Doe", destination="ccd_queue_sales", digits=keys)


def requests(daemon):
    return CallbackStore(daemon.store).list()


def said(fakeswitch, uuid) -> str:
    """The digits read back to the caller (one digits/N.wav playback each)."""
    files = [e["file"] for e in fakeswitch.trace.of("playback", uuid=uuid)]
    return "".join(f[len("digits/") : -len(".wav")] for f in files if f.startswith("digits/"))


def transfers(fakeswitch, uuid):
    return [(e["t"], e["to"]) for e in fakeswitch.trace.of("transfer", uuid=uuid)]


def test_overflow_comes_exactly_at_the_configured_time(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    caller = queue_caller(fakeswitch, "+3612345678", "2")  # keeps waiting
    eventually(lambda: any(to == "ccd_cb_offer" for _, to in transfers(fakeswitch, caller)),
               what="the offer")  # fmt: skip
    parked = fakeswitch.trace.of("park", uuid=caller)[0]["t"]
    offered = next(t for t, to in transfers(fakeswitch, caller) if to == "ccd_cb_offer")
    assert 30.0 <= offered - parked <= 31.0  # 30 s from queue entry (ticks are 0.2 s)
    # The ringing agent leg was cancelled, the agent is free again.
    eventually(lambda: fakeswitch.trace.of("kill"), what="agent leg cancelled")
    # 2: back in the queue with the original place; the hunt goes on (alice rings again).
    eventually(lambda: len(offers(fakeswitch)) >= 2, timeout=15, what="hunt resumed")
    assert calls_of(daemon).waiting("sales") == [caller]
    assert requests(daemon) == []


def test_pressing_1_and_1_stores_the_calling_number_before_the_confirmation(
    fakeswitch, start_daemon
):
    daemon = start(fakeswitch, start_daemon)
    caller = queue_caller(fakeswitch, "+3612345678", "1", "1")
    eventually(lambda: caller not in fakeswitch.channels, timeout=15, what="call ends")
    [request] = requests(daemon)
    assert request.number == "+3612345678" and request.queue == "sales"
    assert request.status == "pending" and request.caller_uuid == caller
    assert [to for _, to in transfers(fakeswitch, caller)][-1] == "ccd_cb_stored"
    assert calls_of(daemon).get(caller).status == "callback"
    assert calls_of(daemon).waiting("sales") == []


def test_typed_number_is_read_back_and_stored(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    caller = queue_caller(fakeswitch, "+3612345678", "1", "2", "0612345679#", "1")
    eventually(lambda: caller not in fakeswitch.channels, timeout=15, what="call ends")
    assert said(fakeswitch, caller) == "0612345679"
    [request] = requests(daemon)
    assert request.number == "+3612345679"


def test_refused_numbers_get_a_clear_prompt_and_another_try(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    # An anonymous caller goes straight to typing: 112 (emergency) and 0690... (premium)
    # are refused with a prompt each, then a good number is read back and confirmed.
    caller = queue_caller(fakeswitch, "anonymous", "1", "112#", "0690123456#", "0612345679#", "1")
    eventually(lambda: caller not in fakeswitch.channels, timeout=20, what="call ends")
    refusals = [to for _, to in transfers(fakeswitch, caller) if to == "ccd_cb_refused"]
    assert len(refusals) == 2
    assert [r.number for r in requests(daemon)] == ["+3612345679"]


def test_three_refused_numbers_keep_the_caller_waiting(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    caller = queue_caller(fakeswitch, "anonymous", "1", "112#", "12#", "*#")
    # After the third refused number the hunt goes on: alice is rung again.
    eventually(lambda: len(offers(fakeswitch)) >= 2, timeout=15, what="back in the queue")
    refusals = [to for _, to in transfers(fakeswitch, caller) if to == "ccd_cb_refused"]
    assert len(refusals) == 2  # two refusal prompts, the third refusal returns to the queue
    assert requests(daemon) == []


def test_storage_failure_tells_the_caller_and_returns_them_to_the_queue(
    fakeswitch, start_daemon, make_redis_server
):
    server = make_redis_server(persistence=True)
    fakeswitch.add_phone("1001", ring_forever=True)
    daemon = start_daemon(
        fakeswitch,
        agents=AGENTS,
        queues=SALES_OVERFLOW,
        redis={"url": server.url, "socket_timeout": 0.5},
        routing={"wrapup_time": 0},
        callback={"business_hours": []},
    )
    login(daemon, "alice")
    # Redis goes away while the caller listens to the read-back.
    caller = queue_caller(fakeswitch, "+3612345678", "1", "2", "0612345679#", "1")
    eventually(lambda: said(fakeswitch, caller), what="read-back started")
    server.stop()
    eventually(
        lambda: any(to == "ccd_cb_store_failed" for _, to in transfers(fakeswitch, caller)),
        timeout=15,
        what="the caller is told",
    )
    server.start()
    eventually(lambda: len(offers(fakeswitch)) >= 2, timeout=20, what="back in the hunt")
    assert caller in fakeswitch.channels
    client = connect_redis(server.url)
    try:
        assert CallbackStore(Store.create(client)).list() == []
    finally:
        client.close()


def test_caller_answering_the_offer_while_the_daemon_restarts_is_not_left_in_silence(
    fakeswitch, start_daemon
):
    fakeswitch.add_phone("1001", ring_forever=True)
    section = dict(agents=AGENTS, queues=SALES_OVERFLOW, routing={"wrapup_time": 0},
                   callback={"business_hours": []})  # fmt: skip
    first = start_daemon(fakeswitch, **section)
    login(first, "alice")
    caller = queue_caller(fakeswitch, "+3612345678", None, None, None)  # presses nothing
    eventually(lambda: any(to == "ccd_cb_offer" for _, to in transfers(fakeswitch, caller)),
               what="the offer")  # fmt: skip
    first.stop()  # the prompt times out while no daemon listens: "keep waiting", parked
    eventually(
        lambda: (
            (e := fakeswitch.channels.get(caller)) is not None
            and e.variables.get("ccd_offer_choice") == "2"
            and e.application == "park"
        ),
        what="parked after the prompt",
    )
    second = start_daemon(fakeswitch, **section)
    eventually(lambda: len(offers(fakeswitch)) >= 2, timeout=15, what="hunt goes on")
    assert calls_of(second).waiting("sales") == [caller]
