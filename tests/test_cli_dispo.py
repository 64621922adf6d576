"""``ccd dnc``, ``ccd disposition report`` and ``ccd disposition set`` through ccd.cli.main."""

from __future__ import annotations

import json

import pytest

from ccd.cli import dnc
from ccd.cli.main import main
from ccd.core.disposition import Disposition
from ccd.store.call import CallRecord, CallRepository
from ccd.store.dnc import DncList
from ccd.store.redis_store import Store, connect_redis
from ccd.store.report import ReportStore
from tests.support.cli_fixtures import cli_clock, refused, run_ccd

PREFIX = "tcli:"
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY = "2027-01-15"


#: The commands configure logging for the process; each test leaves it as it found it.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def store(redis_url):
    client = connect_redis(redis_url)
    yield Store.create(client, PREFIX)
    client.close()


@pytest.fixture
def ccd(tmp_path, redis_url, capsys, monkeypatch):
    config = tmp_path / "ccd.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "{PREFIX}"\n')
    cli_clock(monkeypatch, NOW)

    def run(*argv: str) -> tuple[int, str, str]:
        # Every command here is two words: "dnc add", "disposition report".
        return run_ccd(capsys, config, argv, 2)

    return run


def test_dnc_add_check_list_remove(ccd, store):
    code, out, _ = ccd("dnc", "add", "06 1 234 5678", "--days", "30", "--reason", "asked")
    assert code == 0 and out.strip() == "+3612345678 listed for 30 days"
    entry = DncList(store).get("+3612345678")
    assert entry.reason == "asked" and 30 * 86400_000 - 60_000 < entry.ttl_ms <= 30 * 86400_000
    code, out, _ = ccd("dnc", "check", "+36 1 234 5678")
    assert code == 0 and "is listed, 30.0d left (asked)" in out
    code, out, _ = ccd("dnc", "list", "--json")
    assert [e["number"] for e in json.loads(out)] == ["+3612345678"]
    code, out, _ = ccd("dnc", "list")
    assert out.splitlines()[1].split()[:3] == ["+3612345678", "30.0d", "operator"]
    assert ccd("dnc", "remove", "003612345678")[0] == 0
    code, out, _ = ccd("dnc", "check", "+3612345678")
    assert code == dnc.EXIT_NOT_LISTED and "not listed" in out
    assert "not on the do-not-call list" in refused(*ccd("dnc", "remove", "+3612345678"))


def test_dnc_add_uses_the_default_period_and_zero_means_until_removed(ccd, store):
    assert ccd("dnc", "add", "+3612345678")[1].strip() == "+3612345678 listed for 180 days"
    assert ccd("dnc", "add", "+3630111222", "--days", "0")[1].strip().endswith("until removed")
    assert DncList(store).get("+3630111222").ttl_ms is None


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("dnc", "add", "hello"), "letter 'h'"),
        (("dnc", "add", "12"), "too short"),
        (("dnc", "add", "+3612345678", "--days", "x"), "--days must be a number"),
        (("dnc", "add", "+3612345678", "--days", "-1"), "--days must be 0.."),
        (("dnc", "add", "+3612345678", "--reason", "a\nb"), "control"),
        (("dnc", "check", "1" * 100), "too long"),
        (("disposition", "report", "--from", "2027-02-30", "--to", DAY), "not a day"),
        (("disposition", "report", "--from", DAY, "--to", "2027-01-01"), "before"),
        (("disposition", "report", "--from", DAY, "--to", DAY, "--by", "x"), "invalid choice"),
        (("disposition", "set", "c1", "99"), "unknown code 99"),
        (("disposition", "set", "c1", "123"), "at most 2 digits"),
        (("disposition", "set", "c1", "interesting"), "unknown code 'interesting'"),
        (("disposition", "set", "c1", "05"), "no stored call c1"),
        (("disposition", "set", "bad:uuid", "05"), "not a call uuid"),
    ],
)
def test_bad_input_is_refused_in_one_line(ccd, argv, fragment):
    assert fragment in refused(*ccd(*argv))


def stored_call(store, uuid="call-1", **changes) -> CallRecord:
    record = CallRecord(
        uuid=uuid,
        queue="sales",
        caller_number="+3612345678",
        caller_name="Doe",
        agent="alice",
        status="completed",
        **changes,
    )
    repo = CallRepository(store)
    store.client.set(store.keys.call(uuid), repo.encode(record))  # a finished call's record
    return record


def test_dispo_set_records_codes_once_and_applies_do_not_contact(ccd, store):
    stored_call(store)
    code, out, _ = ccd("disposition", "set", "call-1", "06", "interested", "12")
    assert code == 0, out
    assert (
        out.splitlines()[0] == "call-1: set interested, do_not_contact (the call carries "
        "do_not_contact, interested)"
    )
    assert DncList(store).is_listed("+3612345678")
    reports = ReportStore(store)
    assert reports.entries(DAY)[0]["set_by"] == "operator"
    code, out, _ = ccd("disposition", "set", "call-1", "interested")
    assert (code, out.strip()) == (0, "call-1: already set: interested")
    assert len(reports.entries(DAY)) == 1


def test_report_dispositions_in_every_format(ccd, store):
    reports = ReportStore(store)
    for i, codes in enumerate([("busy",), ("busy", "interested"), ("deal_closed",)]):
        reports.record(Disposition(f"c{i}", codes, "system", NOW, agent="alice", queue="sales"))
    code, out, _ = ccd("disposition", "report", "--from", DAY, "--to", DAY, "--format", "csv")
    assert code == 0
    assert out.splitlines()[:2] == ["code,label,count,calls,share", "busy,Busy,2,3,0.6667"]
    code, out, _ = ccd("disposition", "report", "--from", DAY, "--to", DAY, "--by", "agent",
                       "--format", "json")  # fmt: skip
    rows = json.loads(out)["rows"]
    assert {(r["group"], r["code"], r["count"], r["calls"]) for r in rows} == {
        ("alice", "busy", 2, 3),
        ("alice", "interested", 1, 3),
        ("alice", "deal_closed", 1, 3),
    }
    code, out, _ = ccd("disposition", "report", "--from", DAY, "--to", DAY, "--by", "day")
    assert code == 0 and out.splitlines()[2].split()[:2] == [DAY, "busy"]


def test_redis_down_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    config = tmp_path / "ccd.toml"
    config.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\n')
    code = main(["dnc", "check", "-c", str(config), "+3612345678"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("ccd: Redis unavailable") and "Traceback" not in err
