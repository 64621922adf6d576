"""Disposition storage and reports against a real redis-server, checked against a generated
set of calls whose counts are known."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter

import pytest

from ccd.core.disposition import DEFAULT_CODES, Disposition
from ccd.core.report import BadReportRequest, format_report, zone
from ccd.store.report import ReportStore

CODES = [c.name for c in DEFAULT_CODES]
AGENTS = [f"agent{i:02d}" for i in range(20)]
QUEUES = ["sales", "support", "billing"]


@pytest.fixture
def reports(store):
    return ReportStore(store)


def midnight_days_ago(days: int) -> float:
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), dt.UTC).timestamp()


def test_a_code_set_twice_counts_once_and_later_codes_join_the_call(reports):
    t = midnight_days_ago(1) + 3600
    first = Disposition("c1", ("abandoned",), "system", t, queue="sales", number="+3612345678")
    assert reports.record(first) == ("abandoned",)
    again = Disposition("c1", ("interested", "abandoned"), "agent:alice", t + 60, agent="alice")
    assert reports.record(again) == ("interested",)
    assert reports.record(again) == ()
    assert reports.codes_of("c1") == ("abandoned", "interested")
    day = reports.day_of(t)
    entries = reports.entries(day)
    assert [(e["set_by"], e["new"]) for e in entries] == [
        ("system", ["abandoned"]), ("agent:alice", ["interested"])]  # fmt: skip
    assert entries[0]["details"] == {} and entries[0]["agent"] is None
    by_agent = reports.report(day, day, "agent", DEFAULT_CODES)
    # alice took the call after it had been coded: both its codes count for her, once
    assert sorted((r.group, r.code, r.count, r.calls) for r in by_agent.rows) == [
        ("alice", "abandoned", 1, 1), ("alice", "interested", 1, 1)]  # fmt: skip


def test_a_code_set_after_midnight_counts_on_the_calls_day(reports):
    late = midnight_days_ago(1) - 60  # 23:59 the day before yesterday
    reports.record(Disposition("c1", ("busy",), "system", late, agent="bob"))
    reports.record(Disposition("c1", ("wrong_number",), "agent:bob", late + 600, agent="bob"))
    day = reports.day_of(late)
    assert {r.code for r in reports.report(day, day).rows} == {"busy", "wrong_number"}
    next_day = reports.day_of(late + 600)
    assert reports.report(next_day, next_day).calls == 0


def test_days_expire_after_the_retention(store):
    short = ReportStore(store, retention_days=1)
    old = midnight_days_ago(3) + 100
    short.record(Disposition("old", ("busy",), "system", old))
    assert short.codes_of("old") == ()  # past retention: gone at once
    recent = midnight_days_ago(0) + 1
    short.record(Disposition("new", ("busy",), "system", recent))
    key = store.keys.disposition_counts(short.day_of(recent))
    end_of_day = midnight_days_ago(-1)
    expected = end_of_day + 86400 - time.time()
    assert abs(store.client.ttl(key) - expected) < 5
    assert abs(store.client.ttl(store.keys.disposition_stream(short.day_of(recent))) - expected) < 5


def test_days_follow_the_centres_time_zone(store):
    budapest = ReportStore(store, tz=zone("Europe/Budapest"))
    t = midnight_days_ago(2) - 1800  # 23:30 UTC = 00:30 or 01:30 the next day in Budapest
    assert (
        budapest.day_of(t) == dt.datetime.fromtimestamp(t + 7200, dt.UTC).date().isoformat()
        or budapest.day_of(t) == dt.datetime.fromtimestamp(t + 3600, dt.UTC).date().isoformat()
    )
    assert budapest.day_of(t) != ReportStore(store).day_of(t)
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("Mars/Olympus")


def generate(rng: random.Random, calls: int, days: int):
    """Dispositions with the figures a correct store must report (the model, kept apart)."""
    dispositions: list[Disposition] = []
    model: dict[str, dict] = {}
    for i in range(calls):
        uuid = f"call-{i}"
        at = midnight_days_ago(rng.randint(1, days)) + rng.uniform(0, 86399)
        queue = rng.choice(QUEUES)
        agent = rng.choice(AGENTS) if rng.random() < 0.8 else None
        steps = []
        if rng.random() < 0.3:  # the system saw something first, the agent adds later
            steps.append(((rng.choice(CODES[:5]),), "system", at, None))
        codes = tuple(rng.sample(CODES, rng.randint(1, 3)))
        steps.append((codes, f"agent:{agent}", at + rng.uniform(1, 900), agent))
        if rng.random() < 0.2:  # keyed again: nothing new
            steps.append((codes[:1], f"agent:{agent}", at + 1000, agent))
        for step_codes, by, when, who in steps:
            dispositions.append(Disposition(uuid, step_codes, by, when, agent=who, queue=queue))
            entry = model.setdefault(uuid, {"day": dt.datetime.fromtimestamp(when, dt.UTC)
                                            .date().isoformat(), "codes": set(),
                                            "agent": None, "queue": queue})  # fmt: skip
            entry["codes"].update(step_codes)
            entry["agent"] = entry["agent"] or who
    return dispositions, model


def expected_rows(model: dict, by: str) -> dict[tuple[str, str], tuple[int, int]]:
    counts: Counter = Counter()
    calls: Counter = Counter()
    for entry in model.values():
        group = {"code": "", "day": entry["day"], "agent": entry["agent"],
                 "queue": entry["queue"]}[by]  # fmt: skip
        if group is None:
            continue
        calls[group] += 1
        for code in entry["codes"]:
            counts[(group, code)] += 1
    return {key: (n, calls[key[0]]) for key, n in counts.items()}


def test_report_figures_match_a_generated_set_with_known_counts(reports):
    rng = random.Random(6)
    dispositions, model = generate(rng, calls=14_000, days=7)
    assert len(dispositions) > 19_000
    started = time.monotonic()
    for start in range(0, len(dispositions), 2000):
        reports.record_many(dispositions[start : start + 2000])
    print(f"\nrecorded {len(dispositions)} dispositions in {time.monotonic() - started:.2f} s")
    first = min(e["day"] for e in model.values())
    last = max(e["day"] for e in model.values())
    for by in ("code", "agent", "queue", "day"):
        started = time.monotonic()
        report = reports.report(first, last, by, DEFAULT_CODES)
        print(f"report by {by}: {len(report.rows)} rows in {time.monotonic() - started:.3f} s")
        got = {(r.group, r.code): (r.count, r.calls) for r in report.rows}
        assert got == expected_rows(model, by)
        for row in report.rows:
            assert row.share == row.count / row.calls
        assert report.calls == len(model)
    # one day only
    one = reports.report(last, last, "code")
    assert one.calls == sum(1 for e in model.values() if e["day"] == last)


def test_formats_table_csv_json(reports):
    t = midnight_days_ago(1) + 10
    reports.record(Disposition("c1", ("busy", "interested"), "system", t, agent="al", queue="q"))
    reports.record(Disposition("c2", ("busy",), "system", t, agent="bo", queue="q"))
    day = reports.day_of(t)
    report = reports.report(day, day, "code", DEFAULT_CODES)
    assert format_report(report, "csv").splitlines() == [
        "code,label,count,calls,share",
        "busy,Busy,2,2,1.0000",
        "interested,Interested,1,2,0.5000",
    ]
    table = format_report(report, "table").splitlines()
    assert table[0].endswith("2 calls with a code")
    assert table[2].split() == ["busy", "Busy", "2", "2", "100.0%"]
    assert '"share": 0.5' in format_report(report, "json")
    empty = reports.report("2020-01-01", "2020-01-02", "agent")
    assert format_report(empty, "table").splitlines()[1].split()[0] == "agent"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("2024-02-30", "2024-03-01"), "not a day"),
        (("yesterday", "2024-03-01"), "not a day"),
        (("2024-03-02", "2024-03-01"), "before"),
        (("2000-01-01", "2024-03-01"), "at most"),
        (("2024-03-01", "2024-03-01", "colour"), "--by"),
    ],
)
def test_bad_report_requests_are_refused_clearly(reports, args, fragment):
    with pytest.raises(BadReportRequest, match=fragment):
        reports.report(*args)


def test_bad_format_and_retention_are_refused(store, reports):
    with pytest.raises(BadReportRequest, match="--format"):
        format_report(reports.report("2024-03-01", "2024-03-01"), "xml")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="retention_days"):
            ReportStore(store, retention_days=bad)
