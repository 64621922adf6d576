"""Sticky bindings in a real redis-server (ccd.store.sticky): TTLs, lapses, replace, races,
numbers."""

from __future__ import annotations

import time

import gevent
import pytest
import structlog

from ccd.config import Config
from ccd.core.numbers import InvalidNumber
from ccd.core.sticky import (
    Action,
    AgentAttempt,
    CustomerCall,
    StickySetting,
    StickyType,
    decide,
)
from ccd.store.redis_store import Codec, Store, connect_redis
from ccd.store.sticky import SettingOverride, StickyStore

NUMBER = "+3612345678"
NOW = 1_700_000_000.0
HOUR = 3600.0


def make(store: Store, **types: str | tuple[str, float]) -> StickyStore:
    """A StickyStore whose config gives each named agent a type (and expiry, default 1 h)."""
    per_agent = {
        agent: SettingOverride(*(spec if isinstance(spec, tuple) else (spec, HOUR)))
        for agent, spec in types.items()
    }
    return StickyStore(store, per_agent=per_agent)


def failed(agent: str, number: str = NUMBER, now: float = NOW) -> AgentAttempt:
    return AgentAttempt(number, agent, answered=False, now=now)


def left_ms(bindings: StickyStore, number: str = NUMBER) -> int:
    left = bindings.pttl(number)
    assert left is not None, "no binding"
    return left


def poll(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        gevent.sleep(0.005)
    return condition()


# --- TTLs --------------------------------------------------------------------------------------


def test_a_new_binding_expires_after_the_agents_expiry(store):
    bindings = make(store, anna=("type1", 600))
    decision = bindings.record(failed("anna"), NOW)
    assert decision.action is Action.SET
    assert 599_000 < left_ms(bindings) <= 600_000
    binding = bindings.get(NUMBER)
    assert (binding.agent_id, binding.type, binding.expires_at) == ("anna", "type1", NOW + 600)


def test_type1_retry_keeps_the_redis_expiry(store):
    bindings = make(store, anna="type1")
    bindings.record(failed("anna"), NOW)
    store.client.pexpire(store.keys.sticky(NUMBER), 5_000)  # as if most of the hour had passed
    decision = bindings.record(failed("anna", now=NOW + 10), NOW + 10)
    assert decision.action is Action.KEEP_TTL_UPDATE
    assert left_ms(bindings) <= 5_000
    assert bindings.get(NUMBER).attempts == 2


@pytest.mark.parametrize(
    ("anna", "event"),
    [
        ("type2", failed("anna", now=NOW + 10)),
        ("type3", AgentAttempt(NUMBER, "anna", answered=True, now=NOW + 10)),
        ("type4", CustomerCall(NUMBER, NOW + 10, talked_to=None)),
    ],
)
def test_refresh_restarts_the_redis_expiry(store, anna, event):
    bindings = make(store, anna=anna)
    bindings.record(failed("anna"), NOW)
    store.client.pexpire(store.keys.sticky(NUMBER), 5_000)
    assert bindings.record(event, NOW + 10).action is Action.REFRESH
    assert left_ms(bindings) > HOUR * 1000 - 1000
    assert bindings.get(NUMBER).expires_at == NOW + 10 + HOUR


def test_the_binding_lapses_in_redis_at_its_expiry(store):
    bindings = make(store, anna=("type1", 0.15))
    started = time.monotonic()
    bindings.record(failed("anna"), NOW)
    assert bindings.route(NUMBER, NOW) == "anna"
    assert poll(lambda: bindings.get(NUMBER) is None)
    # Redis honours PX to the millisecond: never before the expiry.
    assert time.monotonic() - started >= 0.15
    assert bindings.pttl(NUMBER) is None and bindings.list() == []


def test_time_scale_divides_the_expiry(store):
    bindings = StickyStore(
        store, per_agent={"anna": SettingOverride("type1", 600)}, time_scale=100.0
    )
    bindings.record(failed("anna"), NOW)
    assert 5_000 < left_ms(bindings) <= 6_000
    assert bindings.setting_for("anna") == StickySetting(StickyType.TYPE1, 600)


def test_talking_deletes_a_type1_binding(store):
    bindings = make(store, anna="type1")
    bindings.record(failed("anna"), NOW)
    decision = bindings.record(CustomerCall("06 1 234 5678", NOW + 5, talked_to="anna"), NOW + 5)
    assert decision.action is Action.DELETE
    assert bindings.get(NUMBER) is None


def test_bindings_survive_a_redis_restart_with_their_ttl(make_redis_server):
    server = make_redis_server(persistence=True)
    client = connect_redis(server.url)
    try:
        bindings = make(Store.create(client, "t:"), anna="type3")
        bindings.record(failed("anna"), NOW)
        server.restart()
        assert bindings.route(NUMBER, NOW + 1) == "anna"
        assert HOUR * 1000 - 30_000 < left_ms(bindings) <= HOUR * 1000
    finally:
        client.close()


# --- replace and races ----------------------------------------------------------------------------


def test_a_newer_agent_replaces_the_binding_and_it_is_logged(store):
    bindings = make(store, anna="type1", bela=("type2", 60))
    bindings.record(failed("anna"), NOW)
    with structlog.testing.capture_logs() as logs:
        bindings.record(failed("bela", now=NOW + 1), NOW + 1)
    assert bindings.route(NUMBER, NOW + 2) == "bela"
    assert 59_000 < left_ms(bindings) <= 60_000
    replaced = [e for e in logs if e["event"] == "sticky.replaced"]
    assert replaced and replaced[0]["old_agent"] == "anna" and replaced[0]["agent"] == "bela"


def test_a_stale_decision_does_not_undo_a_concurrent_replace(store):
    bindings = make(store, anna="type1", bela="type1")
    bindings.record(failed("anna"), NOW)
    seen = bindings.get(NUMBER)
    stale = decide(seen, CustomerCall(NUMBER, NOW + 1, "anna"), bindings.setting_for, NOW + 1)
    assert stale.action is Action.DELETE
    bindings.record(failed("bela", now=NOW + 1), NOW + 1)  # lands first
    assert bindings.apply(NUMBER, stale) is False
    assert bindings.get(NUMBER).agent_id == "bela"


def test_a_stale_create_does_not_overwrite_a_binding_made_meanwhile(store):
    bindings = make(store, anna="type1", bela="type1")
    stale = decide(None, failed("anna"), bindings.setting_for, NOW)
    bindings.record(failed("bela"), NOW)
    assert bindings.apply(NUMBER, stale) is False
    assert bindings.get(NUMBER).agent_id == "bela"


def test_a_binding_recreated_by_the_same_agent_is_not_the_one_decided_on(store):
    bindings = make(store, anna="type1")
    bindings.record(failed("anna"), NOW)
    stale = decide(bindings.get(NUMBER), failed("anna"), bindings.setting_for, NOW + 1)
    store.delete(store.keys.sticky(NUMBER))
    bindings.record(failed("anna", now=NOW + 2), NOW + 2)
    assert bindings.apply(NUMBER, stale) is False
    assert bindings.get(NUMBER).created_at == NOW + 2


def test_concurrent_records_lose_no_attempt(store):
    """Twenty type1 re-attempts at once: every one is counted (compare-and-set retries)."""
    bindings = make(store, anna="type1")
    bindings.record(failed("anna"), NOW)
    jobs = [gevent.spawn(bindings.record, failed("anna", now=NOW + 1), NOW + 1) for _ in range(20)]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert bindings.get(NUMBER).attempts == 21


def test_concurrent_agents_leave_exactly_one_binding(store):
    agents = {f"agent{i}": "type2" for i in range(10)}
    bindings = make(store, **agents)
    jobs = [gevent.spawn(bindings.record, failed(a), NOW) for a in agents]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert all(job.value is not None for job in jobs)
    assert [b.agent_id for b, _ in bindings.list()] in ([a] for a in agents)


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["06 1 234 5678", "+36 (1) 234-5678", "0036-1/234-5678"])
def test_numbers_written_differently_hit_the_same_binding(store, written):
    bindings = make(store, anna="type3")
    bindings.record(failed("anna", number=written), NOW)
    assert bindings.get(NUMBER).number == NUMBER
    assert bindings.route("3612345678", NOW) == "anna"
    assert bindings.delete(written).agent_id == "anna"
    assert bindings.get(NUMBER) is None


def test_an_unusable_number_binds_nothing_and_routes_nowhere(store):
    bindings = make(store, anna="type3")
    assert bindings.record(failed("anna", number="anonymous"), NOW) is None
    assert bindings.route("anonymous", NOW) is None
    assert bindings.list() == []
    with pytest.raises(InvalidNumber):
        bindings.get("anonymous")


# --- operators ---------------------------------------------------------------------------------


def test_list_filters_by_agent_and_gives_the_time_left(store):
    bindings = make(store, anna="type3", bela=("type3", 60))
    bindings.record(failed("anna", number="+3611111111"), NOW)
    bindings.record(failed("bela", number="+3622222222"), NOW)
    bindings.record(failed("anna", number="+3633333333"), NOW)
    store.client.set("t:sticky_setting_unrelated", b"x")  # not matched by the pattern
    assert [b.number for b, _ in bindings.list()] == ["+3611111111", "+3622222222", "+3633333333"]
    listed = bindings.list(agent="bela")
    assert [(b.number, b.agent_id) for b, _ in listed] == [("+3622222222", "bela")]
    assert 59_000 < listed[0][1] <= 60_000


def test_delete_logs_and_a_missing_binding_is_none(store):
    bindings = make(store, anna="type3")
    bindings.record(failed("anna"), NOW)
    with structlog.testing.capture_logs() as logs:
        assert bindings.delete(NUMBER).agent_id == "anna"
    assert [(e["event"], e["reason"]) for e in logs] == [("sticky.deleted", "operator")]
    assert bindings.delete(NUMBER) is None


def test_a_record_of_another_schema_is_neither_read_nor_overwritten(store):
    bindings = make(store, anna="type3")
    key = store.keys.sticky(NUMBER)
    foreign = Codec(99).encode({"number": NUMBER, "agent": "zoli"})
    store.client.set(key, foreign)
    assert bindings.get(NUMBER) is None
    assert bindings.record(failed("anna"), NOW) is None
    assert store.client.get(key) == foreign
    assert bindings.list() == []


# --- settings -----------------------------------------------------------------------------------


def test_setting_layers_run_time_then_config_agent_then_default(store):
    config = Config.from_dict(
        {
            "sticky": {"default_type": "type2", "default_expiry": 300},
            "agents": {
                "anna": {"extension": "1001", "sticky_type": "type4"},
                "bela": {"extension": "1002", "sticky_expiry": 60},
                "cili": {"extension": "1003"},
            },
        },
        env={},
    )
    bindings = StickyStore.from_config(store, config)
    assert bindings.setting_for("anna") == StickySetting(StickyType.TYPE4, 300)
    assert bindings.setting_for("bela") == StickySetting(StickyType.TYPE2, 60)
    assert bindings.setting_for("cili") == StickySetting(StickyType.TYPE2, 300)
    bindings.set_runtime_setting("bela", "type1")
    assert bindings.setting_for("bela") == StickySetting(StickyType.TYPE1, 60)
    bindings.set_runtime_setting("bela", StickyType.DISABLED, 10)
    assert bindings.setting_for("bela") == StickySetting(StickyType.DISABLED, 10)
    assert bindings.configured_setting("bela") == StickySetting(StickyType.TYPE2, 60)
    assert bindings.clear_runtime_setting("bela") is True
    assert bindings.setting_for("bela") == StickySetting(StickyType.TYPE2, 60)
    assert bindings.clear_runtime_setting("bela") is False


def test_the_run_time_setting_governs_the_next_call(store):
    bindings = make(store, anna="type3")
    bindings.set_runtime_setting("anna", "disabled")
    assert bindings.record(failed("anna"), NOW).action is Action.KEEP
    assert bindings.get(NUMBER) is None


def test_config_refuses_unknown_sticky_values():
    from ccd.config import ConfigError

    with pytest.raises(ConfigError) as info:
        Config.from_dict(
            {
                "sticky": {"default_type": "type5", "default_expiry": -1},
                "agents": {"anna": {"extension": "1001", "sticky_type": "sticky"}},
            },
            env={},
        )
    problems = "\n".join(info.value.problems)
    assert "sticky.default_type: expected one of" in problems
    assert "sticky.default_expiry: expected a number of seconds >= 0" in problems
    assert "agents.anna.sticky_type: expected one of" in problems


def test_config_defaults_are_disabled_for_a_day():
    config = Config.from_dict({}, env={})
    assert (config.sticky.default_type, config.sticky.default_expiry) == ("disabled", 86400.0)
