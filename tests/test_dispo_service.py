"""Dispositions in the call path (R-DISPO): ccd.engine.disposition against a real redis-server,
driven with plain call records and hunt facts, a fake clock, and the [disposition] config."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from ccd.adapters.webhook import WebhookSender
from ccd.config import Config, ConfigError, load_config
from ccd.core.callback import new_request
from ccd.core.commands import Fact
from ccd.core.disposition import DEFAULT_CODES
from ccd.engine.disposition import DispositionService
from ccd.store.call import CallRecord
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.dnc import DncList
from ccd.store.redis_store import Store, connect_redis
from ccd.store.report import ReportStore
from tests.support.redis_fixtures import free_port

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC, 09:00 in Budapest
DAY = "2027-01-15"
NUMBER = "+3612345678"
EXAMPLE = Path(__file__).resolve().parent.parent / "ccd" / "example.toml"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Hooks:
    """A webhook sender that keeps what it was given."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []

    def send(self, payload: dict) -> None:
        self.payloads.append(payload)


def make_config(dispositions: dict | None = None, **daemon) -> Config:
    return Config.from_dict(
        {
            "daemon": daemon,
            "queues": {"sales": {"tags": ["sales"], "callback_strategy": "passive"}},
            "callback": {"business_hours": []},
            "disposition": {"webhook_url": "http://crm.test/dispo", **(dispositions or {})},
        },
        env={},
    )


@pytest.fixture
def store(redis_url):
    client = connect_redis(redis_url, socket_timeout=2.0)
    yield Store.create(client, "tds:")
    client.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def hooks():
    return Hooks()


@pytest.fixture
def make(store, clock, hooks):
    def build(
        config: Config | None = None, webhook=hooks, target: Store = store
    ) -> DispositionService:
        counter = itertools.count(1)
        return DispositionService(
            config=config or make_config(),
            store=target,
            customers=CustomerStore(target),
            callbacks=CallbackStore(target),
            webhook=webhook,
            new_uuid=lambda: f"gen-{next(counter)}",
            now=clock,
        )

    return build


@pytest.fixture
def dispo(make):
    return make()


def record(uuid="call-1", status="bridged", agent="alice", number=NUMBER, waited=30.0, **kw):
    return CallRecord(
        uuid=uuid,
        queue="sales",
        caller_number=number,
        caller_name="Doe",
        entered_at=NOW - waited,
        status=status,
        agent=agent,
        ended_at=NOW,
        **kw,
    )


def fact(name: str, **data) -> Fact:
    return Fact(name, {"call": "call-1", "queue": "sales", **data})


def history(store, number=NUMBER) -> list[dict]:
    return CustomerStore(store).history(number)


def talked(dispo, uuid="call-1", agent="alice", number=NUMBER, at=NOW):
    """A queue call answered by ``agent`` that ended at ``at``."""
    dispo.call_finished(record(uuid, agent=agent, number=number), [fact("call.bridged")], at)


# --- automatic codes --------------------------------------------------------------------------


def test_abandoned_call_gets_the_code_with_the_wait(dispo, store):
    rec = record(status="abandoned", agent="bob", waited=42.5)  # bob was ringing, not talking
    dispo.call_finished(rec, [fact("agent.offered"), fact("call.abandoned", phase="ringing")], NOW)
    assert dispo.reports.codes_of("call-1") == ("abandoned",)
    [entry] = dispo.reports.entries(DAY)
    assert entry["set_by"] == "system" and entry["details"] == {"wait": 42.5}
    assert entry["agent"] is None and entry["queue"] == "sales" and entry["number"] == NUMBER
    [contact] = history(store)
    assert contact["codes"] == ["abandoned"] and contact["wait"] == 42.5
    assert contact["outcome"] == "abandoned" and contact["direction"] == "inbound"
    assert dispo.last_call("bob") is None  # an offer nobody took is not bob's call


def test_offers_nobody_took_mark_the_call_no_answer_busy_and_voicemail(dispo):
    facts = [
        fact("agent.no_answer", agent="alice", cause="RING_TIMEOUT"),
        fact("agent.no_answer", agent="bob", cause="USER_BUSY", outcome="busy"),
        fact("call.voicemail", box="sales", tried=["alice", "bob"]),
    ]
    dispo.call_finished(record(status="voicemail", agent=None), facts, NOW)
    assert set(dispo.reports.codes_of("call-1")) == {"no_answer", "busy", "left_voicemail"}


def test_offers_missed_before_someone_answered_do_not_mark_the_call(dispo, store):
    facts = [fact("agent.no_answer", agent="bob", cause="RING_TIMEOUT"), fact("call.bridged")]
    dispo.call_finished(record(), facts, NOW)
    assert dispo.reports.codes_of("call-1") == ()
    assert history(store)[0]["codes"] == [] and history(store)[0]["agent"] == "alice"
    assert dispo.last_call("alice").call_uuid == "call-1"


def test_finishing_a_call_twice_records_one_contact(dispo, store):
    rec = record(status="abandoned", agent=None)
    dispo.call_finished(rec, [fact("call.abandoned")], NOW)
    dispo.call_finished(rec, [fact("call.abandoned")], NOW + 5)
    assert len(history(store)) == 1 and len(dispo.reports.entries(DAY)) == 1


@pytest.mark.parametrize(
    ("answered", "cause", "codes", "outcome"),
    [
        (False, "USER_BUSY", ("busy",), "busy"),
        (False, "NO_ANSWER", ("no_answer",), "no_answer"),
        (False, None, ("no_answer",), "no_answer"),
        (False, "UNALLOCATED_NUMBER", ("disconnected",), "disconnected"),
        (True, "SUCCESS", (), "answered"),
    ],
)
def test_agents_own_call_gets_automatic_codes_and_history(dispo, store, answered, cause, codes,
                                                          outcome):  # fmt: skip
    dispo.outside_call_finished("alice", "06 1 234 5678", answered, 7 if answered else 0, NOW,
                                call_uuid="leg-1", cause=cause)  # fmt: skip
    assert dispo.reports.codes_of("leg-1") == codes
    [contact] = history(store)
    assert (contact["direction"], contact["agent"], contact["outcome"]) == (
        "outbound", "alice", outcome)  # fmt: skip
    assert contact["codes"] == list(codes)
    assert dispo.last_call("alice").call_uuid == "leg-1"  # *7 after it applies to it


# --- codes from the agent -----------------------------------------------------------------------


def test_agent_code_applies_to_the_last_call_and_records_who_and_when(dispo, store, clock):
    talked(dispo)
    clock.now = NOW + 3
    assert dispo.agent_code("alice", "06", None, NOW + 3) == (True, "Interested")
    [entry] = dispo.reports.entries(DAY)
    assert entry["codes"] == ["interested"] and entry["set_by"] == "agent:alice"
    assert entry["set_at"] == NOW + 3 and entry["agent"] == "alice"
    assert history(store)[0]["codes"] == ["interested"]  # shown in the screen-pop's history


@pytest.mark.parametrize(
    ("digits", "reason"),
    [
        ("99", "unknown code 99"),
        ("ab", "digits only"),
        ("1a", "digits only"),
        ("123", "at most 2 digits"),
        ("12345678", "at most 2 digits"),
        ("", "no digits"),
        ("#", "no digits"),
    ],
)
def test_bad_entries_are_refused_with_a_reason_and_nothing_recorded(dispo, digits, reason):
    talked(dispo)
    ok, text = dispo.agent_code("alice", digits, None, NOW)
    assert not ok and reason in text
    assert dispo.reports.entries(DAY) == []


def test_the_same_code_twice_is_accepted_once(dispo, hooks):
    talked(dispo)
    assert dispo.agent_code("alice", "11", None, NOW)[0]
    assert dispo.agent_code("alice", "11#", None, NOW + 1) == (True, "Needs follow-up")
    assert len(dispo.reports.entries(DAY)) == 1
    assert len(dispo.callbacks.list()) == 1  # the action ran once
    assert dispo.agent_code("alice", "6", None, NOW + 2) == (True, "Interested")  # "6" is 06
    assert set(dispo.reports.codes_of("call-1")) == {"needs_follow_up", "interested"}


def test_codes_after_wrap_up_go_to_the_most_recent_finished_call(dispo):
    talked(dispo, "call-1")
    assert dispo.agent_code("alice", "08", None, NOW + 3600)[0]  # an hour later: still call-1
    talked(dispo, "call-2", number="+3612345679", at=NOW + 4000)
    assert dispo.agent_code("alice", "09", None, NOW + 4100)[0]
    assert dispo.reports.codes_of("call-1") == ("demo_booked",)
    assert dispo.reports.codes_of("call-2") == ("appointment_set",)
    assert dispo.agent_code("alice", "10", "call-1", NOW + 4200)[0]  # named: the older one
    assert dispo.reports.codes_of("call-1") == ("deal_closed", "demo_booked")


def test_no_finished_call_means_a_refusal(dispo):
    ok, reason = dispo.agent_code("carol", "06", None, NOW)
    assert not ok and "carol has no finished call" in reason
    ok, reason = dispo.agent_code("carol", "06", "nope", NOW)
    assert not ok and "no stored call nope" in reason


def test_redis_down_refuses_codes_and_never_breaks_the_call_path(make):
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    dead = make(target=Store.create(client, "tds:"))
    dead.call_finished(record(status="abandoned"), [fact("call.abandoned")], NOW)  # no raise
    dead.outside_call_finished("alice", NUMBER, False, 0, NOW)
    ok, reason = dead.agent_code("alice", "06", None, NOW)
    assert not ok and "Redis unavailable" in reason
    assert dead.outbound_allowed(NUMBER)  # an agent's own call is not stopped (module doc)
    client.close()


# --- actions ------------------------------------------------------------------------------------


def test_do_not_contact_lists_the_number_blocks_outbound_and_callbacks(dispo, store):
    pending = new_request("cb-1", NUMBER, "sales", created_at=NOW - 60, order_key=1.0,
                          caller_uuid="old", strategy="active")  # fmt: skip
    other = new_request("cb-2", "+3612345679", "sales", created_at=NOW - 60, order_key=2.0,
                        caller_uuid="old2", strategy="active")  # fmt: skip
    for request in (pending, other):
        dispo.callbacks.create(request, None)
    talked(dispo)
    assert dispo.outbound_allowed("06 1 234 5678")
    assert dispo.agent_code("alice", "12", None, NOW) == (True, "Do not contact")
    entry = DncList(store).get(NUMBER)
    assert entry.by == "agent:alice" and entry.reason == "Do not contact"
    assert 179.9 * 86400_000 < entry.ttl_ms <= 180 * 86400_000  # dnc_days, as a Redis TTL
    assert not dispo.outbound_allowed("06 1 234 5678")
    assert [r.id for r in dispo.callbacks.due(NOW)] == ["cb-2"]  # the dialer skips it
    assert dispo.callbacks.get("cb-1").status == "cancelled"  # "final": no more dialing


def test_outbound_refusal_can_be_turned_off(make):
    dispo = make(make_config({"refuse_dnc_outbound": False}))
    dispo.dnc.add(NUMBER, 3600)
    assert dispo.outbound_allowed(NUMBER)
    assert not make().outbound_allowed(NUMBER)


def test_dnc_entry_expires_on_time(make):
    # 180 configured days at this time scale last 150 real milliseconds.
    fast = make(make_config(time_scale=180 * 86400 / 0.15))
    talked(fast)
    started = time.monotonic()
    assert fast.agent_code("alice", "12", None, NOW)[0]
    assert not fast.outbound_allowed(NUMBER)
    deadline = started + 5
    while not fast.outbound_allowed(NUMBER):
        assert time.monotonic() < deadline, "the listing never lapsed"
        time.sleep(0.005)
    assert time.monotonic() - started >= 0.12  # not before its period


def test_needs_follow_up_schedules_a_callback_after_the_delay(make):
    dispo = make(make_config({"callback_delay": 7200}))
    talked(dispo)
    assert dispo.agent_code("alice", "11", None, NOW)[0]
    [request] = dispo.callbacks.list()
    assert (request.number, request.queue, request.caller_uuid) == (NUMBER, "sales", "call-1")
    assert request.status == "pending" and request.next_due_at == NOW + 7200
    assert str(request.strategy) == "passive"  # the queue's strategy
    assert dispo.callbacks.due(NOW + 7199) == []
    assert [r.id for r in dispo.callbacks.due(NOW + 7200)] == [request.id]


def test_follow_up_is_skipped_when_the_call_already_says_do_not_contact(dispo):
    talked(dispo)
    assert dispo.agent_code("alice", "12", None, NOW)[0]
    assert dispo.agent_code("alice", "11", None, NOW + 1)[0]  # recorded, but not dialed
    assert dispo.callbacks.list() == []
    assert "needs_follow_up" in dispo.reports.codes_of("call-1")


def test_follow_up_of_an_agents_own_call_uses_the_configured_queue(make):
    dispo = make(make_config({"callback_queue": "sales"}))
    dispo.outside_call_finished("alice", NUMBER, True, 60, NOW, call_uuid="leg-1")
    assert dispo.agent_code("alice", "11", None, NOW)[0]
    assert [(r.queue, r.caller_uuid) for r in dispo.callbacks.list()] == [("sales", "leg-1")]
    without = make()  # callback_queue "": nothing to put it in, and said so
    without.outside_call_finished("bob", NUMBER, True, 60, NOW, call_uuid="leg-2")
    applied = without.set_codes([DEFAULT_CODES.by_name("needs_follow_up")], set_by="operator",
                                now=NOW, agent_id="bob")  # fmt: skip
    assert applied.actions == (
        "skipped callback of needs_follow_up: the call has no queue and "
        "disposition.callback_queue is not set",
    )


def test_webhook_carries_the_disposition(dispo, hooks):
    talked(dispo)
    assert dispo.agent_code("alice", "10", None, NOW)[0]  # deal closed: webhook + final
    [payload] = hooks.payloads
    assert payload["event"] == "disposition" and payload["call"] == "call-1"
    assert payload["codes"] == ["deal_closed"] and payload["new_codes"] == ["deal_closed"]
    assert payload["labels"] == {"deal_closed": "Deal closed"}
    assert payload["set_by"] == "agent:alice" and payload["number"] == NUMBER


def test_webhook_down_leaves_calls_alone_is_retried_and_logged(make):
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/hook", 0.5, retries=2, backoff=0.01)
    sender.start()
    dispo = make(webhook=sender)
    try:
        with capture_logs() as logs:
            talked(dispo)
            started = time.monotonic()
            assert dispo.agent_code("alice", "06", None, NOW) == (True, "Interested")
            talked(dispo, "call-2", at=NOW + 10)  # the next call is handled as usual
            assert time.monotonic() - started < 0.5  # nobody waited for the dead CRM
            deadline = time.monotonic() + 10
            while sender.failed < 1:
                assert time.monotonic() < deadline, "the webhook never gave up"
                time.sleep(0.01)
        names = [entry["event"] for entry in logs]
        assert names.count("webhook.retry") == 2 and names.count("webhook.failed") == 1
        assert dispo.last_call("alice").call_uuid == "call-2"
    finally:
        sender.stop(0)


# --- reports ------------------------------------------------------------------------------------


def test_report_figures_follow_the_recorded_dispositions(dispo):
    abandoned, interested, wrong = set(), set(), set()
    for i in range(30):
        uuid, agent = f"call-{i}", ("alice", "bob", "carol")[i % 3]
        if i % 5 == 0:
            dispo.call_finished(record(uuid, status="abandoned", agent=None),
                                [fact("call.abandoned")], NOW + i)  # fmt: skip
            abandoned.add(uuid)
            continue
        talked(dispo, uuid, agent=agent, number=f"+36123456{i:02d}", at=NOW + i)
        if i % 2 == 0:
            assert dispo.agent_code(agent, "06", None, NOW + i)[0]
            interested.add(uuid)
        if i % 3 == 0:  # alice's calls
            assert dispo.agent_code(agent, "13", None, NOW + i)[0]
            wrong.add(uuid)
    assert (len(abandoned), len(interested), len(wrong)) == (6, 12, 8)  # the generated set
    report = dispo.reports.report(DAY, DAY, "code", DEFAULT_CODES)
    rows = {row.code: (row.count, row.calls) for row in report.rows}
    calls = len(abandoned | interested | wrong)
    assert rows == {"abandoned": (6, calls), "interested": (12, calls), "wrong_number": (8, calls)}
    assert report.calls == calls
    by_agent = dispo.reports.report(DAY, DAY, "agent", DEFAULT_CODES)
    alice = {row.code: (row.count, row.calls) for row in by_agent.rows if row.group == "alice"}
    alice_calls = {f"call-{i}" for i in range(0, 30, 3)} - abandoned
    assert alice == {
        "interested": (len(interested & alice_calls), len(alice_calls)),
        "wrong_number": (len(wrong), len(alice_calls)),
    }
    assert ReportStore(dispo.store).codes_of("call-3") == ("wrong_number",)


# --- configuration ---------------------------------------------------------------------------


def test_codes_come_from_the_config_and_errors_name_the_key():
    config = make_config({"codes": {"callme": {"number": "42", "label": "Call me",
                                               "actions": ["callback"]}}})  # fmt: skip
    assert [c.name for c in config.disposition.codes] == ["callme"]
    with pytest.raises(ConfigError) as info:
        make_config({"codes": {"callme": {"number": "42"}, "x": {"number": 1, "label": "X"}}})
    problems = str(info.value)
    assert "disposition.codes.callme: missing ['label']" in problems
    with pytest.raises(ConfigError, match=r"disposition\.codes: code number 42 used by both"):
        make_config({"codes": {"a": {"number": "42", "label": "A"},
                               "b": {"number": "42", "label": "B"}}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"disposition\.callback_queue: unknown queue"):
        make_config({"callback_queue": "nowhere"})


def test_example_config_lists_the_default_codes():
    codes = load_config(EXAMPLE, env={}).disposition.codes
    assert [c.to_dict() for c in codes] == [c.to_dict() for c in DEFAULT_CODES]


def test_config_log_line_shows_the_codes_as_plain_data():
    redacted = make_config().redacted()["disposition"]
    assert redacted["codes"]["do_not_contact"]["actions"] == ["dnc", "final"]
    structlog.get_logger().info("config", config=redacted)  # serialisable, no objects
