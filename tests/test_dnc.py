"""The do-not-call list against a real redis-server: TTL expiry, normalisation, bad input."""

from __future__ import annotations

import time

import pytest
import structlog

from ccd.core.numbers import InvalidNumber
from ccd.store.dnc import DncList
from ccd.store.redis_store import Codec

NUMBER = "+3612345678"
WRITINGS = ["+3612345678", "06 1 234 5678", "06-1/234-5678", "003612345678", "+36 (1) 234 5678"]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dnc(store):
    return DncList(store, clock=FakeClock())


def wait_until(condition, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_added_number_is_listed_with_reason_and_remaining_ttl(dnc, store):
    entry = dnc.add(NUMBER, 180 * 86400, reason="asked not to be called", by="alice")
    assert entry.number == NUMBER
    assert dnc.is_listed(NUMBER)
    got = dnc.get(NUMBER)
    assert got is not None
    assert (got.reason, got.by, got.added_at) == ("asked not to be called", "alice", 1_700_000_000)
    assert got.expires_at == 1_700_000_000 + 180 * 86400
    # The period is Redis's own TTL on the key, not a field only the daemon would check.
    assert 180 * 86400 * 1000 - 5000 < got.ttl_ms <= 180 * 86400 * 1000
    assert store.pttl(store.keys.dnc(NUMBER)) == pytest.approx(got.ttl_ms, abs=5000)


def test_entry_expires_on_time_without_any_timer(dnc):
    dnc.add(NUMBER, 0.05, reason="short")  # 50 ms
    assert dnc.is_listed(NUMBER)
    started = time.monotonic()
    wait_until(lambda: not dnc.is_listed(NUMBER), what="the entry to lapse")
    assert time.monotonic() - started >= 0.03  # not gone before its period (Redis ms TTL)
    assert dnc.get(NUMBER) is None
    assert dnc.list() == []


def test_time_scale_shortens_the_real_ttl(store):
    fast = DncList(store, time_scale=3600.0, clock=FakeClock())
    entry = fast.add(NUMBER, 180.0)  # 180 configured seconds → 50 real ms
    assert entry.ttl_ms == 50
    wait_until(lambda: not fast.is_listed(NUMBER), what="the scaled entry to lapse")


def test_no_period_means_listed_until_removed(dnc, store):
    entry = dnc.add(NUMBER, None, reason="permanent")
    assert entry.ttl_ms is None and entry.expires_at is None
    assert dnc.get(NUMBER).ttl_ms is None
    assert store.pttl(store.keys.dnc(NUMBER)) == -1


@pytest.mark.parametrize("writing", WRITINGS)
def test_any_writing_of_the_number_hits_the_same_entry(dnc, store, redis_client, writing):
    dnc.add("06 1 234 5678", 3600)
    assert dnc.is_listed(writing)
    assert dnc.get(writing).number == NUMBER
    assert redis_client.keys("t:dnc:*") == [store.keys.dnc(NUMBER).encode()]
    assert dnc.remove(writing) is True
    assert not dnc.is_listed(NUMBER)


def test_adding_again_replaces_and_restarts_the_period(dnc):
    dnc.add(NUMBER, 0.05, reason="first")
    dnc.add("0612345678", 3600, reason="second", by="bob")
    entry = dnc.get(NUMBER)
    assert (entry.reason, entry.by) == ("second", "bob")
    assert entry.ttl_ms > 3_000_000
    assert len(dnc.list()) == 1


def test_remove_answers_whether_the_number_was_listed(dnc):
    assert dnc.remove(NUMBER) is False
    dnc.add(NUMBER, 60)
    assert dnc.remove(NUMBER) is True
    assert dnc.remove(NUMBER) is False


def test_list_returns_every_entry_by_number(dnc):
    for number in ["+3630111222", "+3612345678", "+4930123456"]:
        dnc.add(number, 60, reason=f"r{number[-3:]}")
    assert [e.number for e in dnc.list()] == ["+3612345678", "+3630111222", "+4930123456"]
    assert [e.reason for e in dnc.list()] == ["r678", "r222", "r456"]


def test_list_pages_through_more_entries_than_one_scan_batch(dnc):
    numbers = [f"+36301{index:05d}" for index in range(450)]
    for number in numbers:
        dnc.add(number, 60)
    assert [e.number for e in dnc.list()] == numbers


def test_listed_checks_many_numbers_in_one_call(dnc):
    dnc.add(NUMBER, 60)
    dnc.add("+3630111222", 60)
    asked = ["06 1 234 5678", "+3699999999", "anonymous", "+3630111222"]
    assert dnc.listed(asked) == {"06 1 234 5678", "+3630111222"}
    assert dnc.listed([]) == set()


@pytest.mark.parametrize("text", ["anonymous", "", "12", "+36 12 abc", None, "1" * 80])
def test_an_unusable_number_is_never_listed_and_cannot_be_added(dnc, text):
    assert dnc.is_listed(text) is False
    with pytest.raises(InvalidNumber):
        dnc.add(text, 60)
    with pytest.raises(InvalidNumber):
        dnc.remove(text)
    with pytest.raises(InvalidNumber):
        dnc.get(text)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), True, "180"])
def test_bad_periods_are_refused(dnc, ttl):
    with pytest.raises(ValueError, match="ttl_seconds"):
        dnc.add(NUMBER, ttl)
    assert not dnc.is_listed(NUMBER)


@pytest.mark.parametrize(
    ("reason", "match"), [("x" * 201, "too long"), ("line\nbreak", "control"), (5, "text")]
)
def test_bad_reasons_are_refused(dnc, reason, match):
    with pytest.raises(ValueError, match=match):
        dnc.add(NUMBER, 60, reason=reason)
    assert not dnc.is_listed(NUMBER)


def test_an_entry_of_another_schema_still_blocks_but_is_not_read(dnc, store, redis_client):
    key = store.keys.dnc(NUMBER)
    redis_client.set(key, Codec(99).encode({"number": NUMBER}))
    with structlog.testing.capture_logs() as logs:
        assert dnc.get(NUMBER) is None
    assert [e["event"] for e in logs] == ["store.schema_mismatch"]
    # A dialer must not call a number an other daemon version listed.
    assert dnc.is_listed(NUMBER) is True


def test_add_and_remove_are_logged_without_a_secret(dnc):
    with structlog.testing.capture_logs() as logs:
        dnc.add(NUMBER, 60, reason="asked", by="alice")
        dnc.remove(NUMBER, by="bob")
    assert [(e["event"], e["number"], e["by"]) for e in logs] == [
        ("dnc.added", NUMBER, "alice"),
        ("dnc.removed", NUMBER, "bob"),
    ]


def test_bad_time_scale_is_refused(store):
    for scale in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="time_scale"):
            DncList(store, time_scale=scale)
