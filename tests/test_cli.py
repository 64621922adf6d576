"""The operators' command line (`ccd agent|queue|status|customer|callback`) against a real
redis-server.

Each test runs `ccd.cli.main.main([...])` with a temporary config file, then checks the exit code,
what was printed, and what Redis holds now (read back through the repositories).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccd.cli.common import human_duration
from ccd.cli.main import main
from ccd.core import presence
from ccd.core.queue import queue_order_key
from ccd.core.sticky import AgentAttempt, StickySetting, StickyType
from ccd.store.agent import AgentRepository
from ccd.store.call import CallRecord, CallRepository
from ccd.store.sticky import SettingOverride, StickyStore
from tests.support.cli_fixtures import cli_clock, refused, run_ccd
from tests.support.redis_fixtures import free_port

NOW = 1_700_000_000.0
PREFIX = "t:"


#: The commands configure logging for the process; each test leaves it as it found it.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def clock(monkeypatch):
    """The commands' wall clock, under the test's control."""
    return cli_clock(monkeypatch, NOW)


def _write_config(path: Path, redis_url: str) -> Path:
    path.write_text(
        f"""
[redis]
url = "{redis_url}"
prefix = "{PREFIX}"

[queues.sales]
tags = ["sales"]

[queues.support]
tags = ["support"]
ring_time = 20
on_exhausted = "hangup"
priority = 5

[agents.alice]
extension = "1001"
tags = ["sales"]

[agents.bob]
extension = "1002"
tags = ["sales", "support"]
"""
    )
    return path


@pytest.fixture
def config(tmp_path, redis_url):
    return _write_config(tmp_path / "ccd.toml", redis_url)


@pytest.fixture
def agents(store):
    return AgentRepository(store)


@pytest.fixture
def calls(store):
    return CallRepository(store)


@pytest.fixture
def ccd(config, capsys, clock):
    """Run one command; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        words = 2 if argv[0] in ("agent", "queue", "customer", "sticky", "callback") else 1
        return run_ccd(capsys, config, argv, words)

    return run


def _ready(agents: AgentRepository, agent_id: str, now: float = NOW) -> None:
    agents.transition(agent_id, lambda s: presence.set_login(s, "login", now))
    agents.transition(agent_id, lambda s: presence.set_registered(s, True, now))


def _queue_call(calls: CallRepository, uuid: str, queue: str, entered_at: float, **kw) -> None:
    """What a daemon leaves in Redis for a call waiting in ``queue`` with no agent free."""
    record = CallRecord(uuid=uuid, queue=queue, entered_at=entered_at, **kw)
    client, keys = calls.store.client, calls.keys
    client.set(keys.call(uuid), calls.encode(record))
    client.zadd(keys.queue(queue), {uuid: queue_order_key(record.priority, entered_at)})
    client.sadd(keys.calls(), uuid)


# --- agent add / remove --------------------------------------------------------------------------


def test_agent_add_stores_a_logged_out_agent_with_its_tags(ccd, agents):
    code, out, err = ccd("agent", "add", "carol", "--ext", "1003", "--tags", "Sales, support")
    assert code == 0, err
    assert "carol added" in out
    carol = agents.require("carol")
    assert carol.extension == "1003"
    assert carol.tags == frozenset({"sales", "support"})
    assert carol.state.login is presence.Login.LOGGED_OUT
    assert agents.id_for_extension("1003") == "carol"


def test_agent_add_refuses_a_duplicate_extension(ccd, agents):
    agents.create("alice", "1001", ["sales"], NOW)
    line = refused(*ccd("agent", "add", "zed", "--ext", "1001"))
    assert line == "ccd agent add: extension 1001 already belongs to agent 'alice'"
    assert agents.get("zed") is None
    assert agents.id_for_extension("1001") == "alice"


def test_agent_add_refuses_an_existing_id(ccd, agents):
    agents.create("alice", "1001", ["sales"], NOW)
    line = refused(*ccd("agent", "add", "alice", "--ext", "1009"))
    assert "exists already" in line
    assert agents.require("alice").extension == "1001"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["agent", "add", "Zed!", "--ext", "1009"], "agent id 'Zed!'"),
        (["agent", "add", "zed", "--ext", "10a9"], "extension '10a9'"),
        (["agent", "add", "zed", "--ext", "1009", "--tags", "sales,ba d"], "tag 'ba d'"),
        (["agent", "add", "zed"], "--ext"),
    ],
)
def test_agent_add_refuses_bad_input_in_one_line(ccd, agents, argv, fragment):
    line = refused(*ccd(*argv))
    assert fragment in line
    assert agents.ids() == []


def test_agent_add_notes_a_tag_no_queue_requires(ccd, agents):
    code, _out, err = ccd("agent", "add", "zed", "--ext", "1009", "--tags", "slaes,lang_hu")
    assert code == 0
    assert "no configured queue requires tag(s) slaes" in err
    assert "lang_hu" not in err  # language tags come from customers, not queues
    assert agents.require("zed").tags == frozenset({"slaes", "lang_hu"})


def test_agent_remove_deletes_the_agent_and_its_indexes(ccd, agents, store):
    agents.create("carol", "1003", ["sales"], NOW)
    _ready(agents, "carol")
    code, out, _ = ccd("agent", "remove", "carol")
    assert code == 0
    assert out.strip() == "agent carol removed"
    assert agents.get("carol") is None
    assert agents.id_for_extension("1003") is None
    assert agents.available_with(["sales"]) == []
    assert not store.client.sismember(f"{PREFIX}agents:tag:sales", "carol")


def test_agent_login_and_remove_are_counted_in_the_statistics(ccd, agents, store):
    """The daemons never see a login made here as a fact: the command counts it itself."""
    agents.create("carol", "1003", ["sales", "support"], NOW)
    by_status = f"{PREFIX}stats:agents:support"
    assert ccd("agent", "login", "carol")[0] == 0
    assert store.client.hgetall(by_status) == {b"unregistered": b"1"}  # no phone yet
    assert ccd("agent", "break", "carol")[0] == 0
    assert store.client.hgetall(by_status) == {b"unregistered": b"0", b"break": b"1"}
    assert ccd("agent", "remove", "carol")[0] == 0
    assert store.client.hgetall(by_status) == {b"unregistered": b"0", b"break": b"0"}


def test_agent_remove_refuses_an_agent_on_a_call_unless_forced(ccd, agents):
    agents.create("carol", "1003", ["sales"], NOW)
    agents.transition("carol", lambda s: presence.personal_call(s, "leg-1", NOW))
    line = refused(*ccd("agent", "remove", "carol"))
    assert "is oncall" in line and "--force" in line
    assert agents.get("carol") is not None
    code, _, _ = ccd("agent", "remove", "carol", "--force")
    assert code == 0
    assert agents.get("carol") is None


def test_agent_remove_of_a_config_agent_says_sync_brings_it_back(ccd, agents):
    agents.create("alice", "1001", ["sales"], NOW)
    code, _, err = ccd("agent", "remove", "alice")
    assert code == 0
    assert "in the config file" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["agent", "remove", "ghost"],
        ["agent", "login", "ghost"],
        ["agent", "show", "ghost"],
        ["agent", "tags", "ghost", "sales"],
        ["agent", "tags", "ghost", "--add", "sales"],
    ],
)
def test_unknown_agent_is_refused_in_one_line(ccd, argv):
    line = refused(*ccd(*argv))
    assert line.endswith("no agent 'ghost'")
    assert line.startswith(f"ccd agent {argv[1]}: ")


# --- agent tags ----------------------------------------------------------------------------------


def test_agent_tags_replaces_all_tags_and_the_indexes_follow(ccd, agents):
    agents.create("carol", "1003", ["sales", "support"], NOW)
    _ready(agents, "carol")
    code, out, _ = ccd("agent", "tags", "carol", "billing", "VIP")
    assert code == 0
    assert "tags billing,vip (were sales,support)" in out
    assert agents.require("carol").tags == frozenset({"billing", "vip"})
    assert [a.id for a in agents.available_with(["billing", "vip"])] == ["carol"]
    assert agents.available_with(["sales"]) == []


def test_agent_tags_add_and_remove_change_only_those_tags(ccd, agents):
    agents.create("carol", "1003", ["sales", "support"], NOW)
    code, _, _ = ccd("agent", "tags", "carol", "--add", "lang_hu", "--remove", "support")
    assert code == 0
    assert agents.require("carol").tags == frozenset({"sales", "lang_hu"})


def test_agent_tags_refuses_removing_a_tag_the_agent_does_not_have(ccd, agents):
    agents.create("carol", "1003", ["sales", "support"], NOW)
    line = refused(*ccd("agent", "tags", "carol", "--remove", "suport"))
    assert "has no tag suport" in line
    assert agents.require("carol").tags == frozenset({"sales", "support"})


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["agent", "tags", "carol"], "give the new tags"),
        (["agent", "tags", "carol", "sales", "--add", "x"], "not both"),
        (["agent", "tags", "carol", "--add", "x", "--remove", "x"], "both added and removed"),
        (["agent", "tags", "carol", "sa$les"], "tag 'sa$les'"),
    ],
)
def test_agent_tags_refuses_bad_requests(ccd, agents, argv, fragment):
    agents.create("carol", "1003", ["sales"], NOW)
    assert fragment in refused(*ccd(*argv))
    assert agents.require("carol").tags == frozenset({"sales"})


# --- agent login / logout / break / ready --------------------------------------------------------


def test_login_break_ready_logout_walk_the_presence_table(ccd, agents):
    agents.create("carol", "1003", ["sales"], NOW)
    agents.transition("carol", lambda s: presence.set_registered(s, True, NOW))

    assert ccd("agent", "login", "carol") == (0, "agent carol: ready (was logged out)\n", "")
    assert [a.id for a in agents.available_with(["sales"])] == ["carol"]

    assert ccd("agent", "break", "carol")[:2] == (0, "agent carol: on break (was ready)\n")
    assert agents.require("carol").state.login is presence.Login.BREAK
    assert agents.available_with(["sales"]) == []

    assert ccd("agent", "ready", "carol")[0] == 0
    assert agents.require("carol").state.login is presence.Login.READY

    assert ccd("agent", "logout", "carol")[0] == 0
    assert agents.require("carol").state.login is presence.Login.LOGGED_OUT
    assert agents.available_with(["sales"]) == []


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        ("break", "is logged out: cannot break (log in first)"),
        ("ready", "is logged out: cannot ready (log in with: ccd agent login carol)"),
        ("logout", "is logged out: cannot logout (already logged out)"),
    ],
)
def test_illegal_login_change_is_refused_and_changes_nothing(ccd, agents, action, fragment):
    agents.create("carol", "1003", ["sales"], NOW)
    before = agents.require("carol")
    line = refused(*ccd("agent", action, "carol"))
    assert line == f"ccd agent {action}: agent 'carol' {fragment}"
    assert agents.require("carol") == before


def test_login_with_an_unregistered_phone_warns_that_no_call_will_come(ccd, agents):
    agents.create("carol", "1003", ["sales"], NOW)
    code, _, err = ccd("agent", "login", "carol")
    assert code == 0
    assert "not registered" in err
    assert agents.require("carol").state.login is presence.Login.READY


def test_logout_during_a_call_is_pending_until_the_call_ends(ccd, agents):
    agents.create("carol", "1003", ["sales"], NOW)
    _ready(agents, "carol")
    agents.transition("carol", lambda s: presence.personal_call(s, "leg-1", NOW))
    code, out, _ = ccd("agent", "logout", "carol")
    assert code == 0
    assert "logout pending" in out
    state = agents.require("carol").state
    assert state.logout_pending and state.login is presence.Login.READY

    code, out, _ = ccd("agent", "login", "carol")
    assert code == 0 and "pending logout cancelled" in out
    assert not agents.require("carol").state.logout_pending


# --- agent list / show / sync --------------------------------------------------------------------


def test_agent_list_shows_state_and_how_long(ccd, agents, clock):
    agents.create("carol", "1003", ["sales", "support"], NOW - 500)
    agents.create("dave", "1004", [], NOW - 10)
    _ready(agents, "carol", now=NOW - 500)
    agents.transition("carol", lambda s: presence.personal_call(s, "leg-9", NOW - 192))
    code, out, _ = ccd("agent", "list")
    assert code == 0
    header, carol, dave = out.splitlines()
    assert header.split() == ["AGENT", "EXT", "TAGS", "LOGIN", "PHONE", "ACTIVITY", "FOR", "CALL"]
    assert carol.split() == ["carol", "1003", "sales,support", "ready", "registered", "oncall",
                             "3m12s"]  # fmt: skip
    assert dave.split() == ["dave", "1004", "-", "logged_out", "unregistered", "idle", "10s"]
    # aligned: every column starts at the same offset on every line
    assert header.index("LOGIN") == carol.index("ready") == dave.index("logged_out")


def test_agent_list_json_is_machine_readable(ccd, agents):
    agents.create("carol", "1003", ["sales"], NOW - 60)
    code, out, _ = ccd("agent", "list", "--json")
    assert code == 0
    [carol] = json.loads(out)
    assert carol["id"] == "carol"
    assert carol["extension"] == "1003"
    assert carol["tags"] == ["sales"]
    assert carol["login"] == "logged_out"
    assert carol["for_seconds"] == 60
    assert carol["in_config"] is False


def test_agent_list_when_there_are_no_agents(ccd):
    assert ccd("agent", "list")[:2] == (0, "(no agents)\n")


def test_agent_show_includes_the_call_the_agent_is_on(ccd, agents, calls):
    agents.create("alice", "1001", ["sales"], NOW - 100)
    _ready(agents, "alice")
    _queue_call(calls, "call-1", "sales", NOW - 30, caller_number="+3612345678",
                caller_name="Kovacs")  # fmt: skip
    assert agents.reserve("alice", "call-1", NOW - 5)
    code, out, _ = ccd("agent", "show", "alice")
    assert code == 0
    assert "activity:       ringing for 5s" in out
    assert "call:           call-1" in out
    assert "caller:         +3612345678 Kovacs" in out
    assert "in config file: yes" in out
    data = json.loads(ccd("agent", "show", "alice", "--json")[1])
    assert data["call"] == "call-1"
    assert data["call_record"]["caller_number"] == "+3612345678"


def test_agent_sync_creates_missing_config_agents_and_keeps_run_time_tags(ccd, agents):
    agents.create("alice", "1001", ["vip"], NOW)  # tags changed at run time: they win
    agents.create("zed", "1099", [], NOW)
    code, out, _ = ccd("agent", "sync")
    assert code == 0
    assert "alice  unchanged" in out
    assert "bob    created: extension 1002, tags sales,support" in out
    assert "in Redis only (kept): zed" in out
    assert agents.require("alice").tags == frozenset({"vip"})
    assert agents.require("bob").tags == frozenset({"sales", "support"})
    assert agents.require("bob").state.login is presence.Login.LOGGED_OUT
    # Running it again changes nothing.
    assert "created" not in ccd("agent", "sync")[1]


def test_agent_sync_refuses_an_extension_taken_by_another_agent(ccd, agents):
    agents.create("zed", "1002", [], NOW)  # holds bob's configured extension
    code, out, err = ccd("agent", "sync")
    assert code == 2
    assert "bob    refused: extension 1002 belongs to agent zed" in out
    assert "alice  created" in out
    assert err.strip() == "ccd agent sync: 1 agent(s) refused"
    assert agents.get("bob") is None
    assert agents.id_for_extension("1002") == "zed"


# --- queue list / status -------------------------------------------------------------------------


def test_queue_list_counts_waiting_calls_and_the_longest_wait(ccd, agents, calls):
    agents.create("alice", "1001", ["sales"], NOW)
    agents.create("bob", "1002", ["sales", "support"], NOW)
    _ready(agents, "alice")
    agents.transition("bob", lambda s: presence.set_login(s, "login", NOW))  # not registered
    _queue_call(calls, "call-1", "sales", NOW - 192, caller_number="+3611111111", caller_name="")
    _queue_call(calls, "call-2", "sales", NOW - 20, caller_number="+3622222222", caller_name="")
    code, out, _ = ccd("queue", "list")
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()}
    assert lines["QUEUE"] == ["QUEUE", "TAGS", "RING", "VOICEMAIL", "EXHAUSTED", "PRIO", "AGENTS",
                              "FREE", "WAITING", "LONGEST"]  # fmt: skip
    assert lines["sales"] == ["sales", "sales", "15s", "sales", "voicemail", "0", "2", "1", "2",
                              "3m12s"]  # fmt: skip
    assert lines["support"] == ["support", "support", "20s", "support", "hangup", "5", "1", "0",
                                "0"]  # fmt: skip

    queues = {q["name"]: q for q in json.loads(ccd("queue", "list", "--json")[1])}
    assert queues["sales"]["waiting"] == 2
    assert queues["sales"]["longest_wait"] == 192
    assert queues["support"]["longest_wait"] is None


def test_status_shows_waiting_calls_agents_and_bridged_calls(ccd, agents, calls):
    agents.create("alice", "1001", ["sales"], NOW - 1000)
    _ready(agents, "alice", now=NOW - 1000)
    _queue_call(calls, "call-1", "sales", NOW - 75, caller_number="+3611111111",
                caller_name="Nagy")  # fmt: skip
    _queue_call(calls, "call-2", "sales", NOW - 3700, caller_number="+3622222222",
                caller_name="", priority=10, customer={"name": "Big Co", "vip": True})  # fmt: skip
    _queue_call(calls, "call-3", "support", NOW - 400, caller_number="+3633333333",
                caller_name="Toth")  # fmt: skip
    bridged = calls.get("call-3")
    bridged.status, bridged.agent, bridged.bridged_at = "bridged", "alice", NOW - 62
    calls.store.client.set(calls.keys.call("call-3"), calls.encode(bridged))
    calls.store.client.zrem(calls.keys.queue("support"), "call-3")
    code, out, _ = ccd("status")
    assert code == 0
    sections = out.split("\n\n")
    assert [s.splitlines()[0] for s in sections] == [
        "QUEUES", "WAITING CALLS", "AGENTS", "BRIDGED CALLS"
    ]  # fmt: skip
    queues, waiting, agents_out, bridged_out = (s.splitlines()[2:] for s in sections)
    assert [q.split() for q in queues] == [["sales", "2", "1h01m"], ["support", "0"]]
    # VIP first (priority), the caller's number shown in full, the customer's name.
    assert [w.split()[:5] for w in waiting] == [
        ["sales", "1", "+3622222222", "Big", "Co"],
        ["sales", "2", "+3611111111", "Nagy", "1m15s"],
    ]
    assert "10 vip" in waiting[0]
    assert agents_out[0].split() == ["alice", "1001", "ready", "registered", "idle", "16m40s"]
    assert bridged_out[0].split() == ["support", "+3633333333", "Toth", "alice", "1m02s", "call-3"]


def test_status_json(ccd, agents, calls):
    agents.create("alice", "1001", ["sales"], NOW)
    _queue_call(calls, "call-1", "sales", NOW - 30, caller_number="+3611111111", caller_name="")
    code, out, _ = ccd("status", "--json")
    assert code == 0
    data = json.loads(out)
    sales = next(q for q in data["queues"] if q["name"] == "sales")
    assert sales["waiting"] == 1
    assert sales["calls"][0]["caller_number"] == "+3611111111"
    assert sales["calls"][0]["waited"] == 30
    assert [a["id"] for a in data["agents"]] == ["alice"]
    assert data["bridged"] == []


def test_status_shows_a_waiting_queue_the_config_no_longer_has(ccd, calls):
    _queue_call(calls, "call-1", "oldq", NOW - 5, caller_number="+3611111111", caller_name="")
    out = ccd("status")[1]
    assert "oldq (not configured)  1" in out


def test_caller_supplied_text_cannot_send_terminal_escapes(ccd, calls):
    _queue_call(calls, "call-1", "sales", NOW - 5, caller_number="+3611111111",
                caller_name="Evil\x1b]0;pwned\x07\x1b[2J")  # fmt: skip
    out = ccd("status")[1]
    assert "\x1b" not in out and "\x07" not in out
    assert "Evil?]0;pwned??[2J" in out
    assert "\x1b" not in ccd("status", "--json")[1]


# --- customer import ----------------------------------------------------------------------------


def test_customers_import_reports_imported_and_refused_rows(ccd, store, tmp_path):
    from ccd.store.customer import CustomerStore

    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "number,name,language,vip,account\n"
        "+36 1 234 5678,Kovacs Anna,hu,yes,A-1\n"
        "not a number,Bad Row,hu,no,A-2\n"
        "+44 20 7946 0958,John Smith,en,maybe,A-3\n"
        "+49 30 1234567,Erika Muster,de,no,A-4\n"
    )
    code, out, err = ccd("customer", "import", str(csv_file))
    assert code == 2  # some rows were refused: a script must notice
    lines = out.splitlines()
    assert lines[0] == f"{csv_file}: imported 2 customers, refused 2 rows"
    assert lines[1].startswith("  line 3: ")
    assert lines[2].startswith("  line 4: ") and "vip" in lines[2]
    assert err.strip() == "ccd customer import: 2 row(s) refused"
    customers = CustomerStore(store)
    assert customers.get("+3612345678").name == "Kovacs Anna"
    assert customers.get("+3612345678").vip is True
    assert customers.get("+49301234567").fields == {"account": "A-4"}


def test_customers_import_of_a_clean_file_exits_zero(ccd, tmp_path):
    csv_file = tmp_path / "ok.csv"
    csv_file.write_text("number,name\n+3612345678,Anna\n")
    code, out, err = ccd("customer", "import", str(csv_file))
    assert (code, err) == (0, "")
    assert out == f"{csv_file}: imported 1 customers, refused 0 rows\n"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read"), ("name,language\nAnna,hu\n", "no 'number' column")],
)
def test_customers_import_of_an_unusable_file_is_refused(ccd, tmp_path, content, fragment):
    csv_file = tmp_path / "c.csv"
    if content is not None:
        csv_file.write_text(content)
    assert fragment in refused(*ccd("customer", "import", str(csv_file)))


# --- the command line as a whole -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["agent", "lgoin", "carol"],
        ["agnet", "list"],
        ["queue", "show"],
        ["agent", "list", "--jsn"],
    ],
)
def test_typos_are_refused_in_one_line(config, capsys, argv):
    code = main([*argv, "-c", str(config)])
    out, err = capsys.readouterr()
    refused(code, out, err)


def test_redis_down_is_exit_1_without_a_traceback(tmp_path, capsys):
    config = _write_config(tmp_path / "down.toml", f"redis://127.0.0.1:{free_port()}/0")
    for argv in (["status"], ["agent", "list"], ["agent", "login", "carol"], ["queue", "list"]):
        code = main([*argv, "-c", str(config)])
        out, err = capsys.readouterr()
        assert code == 1
        assert out == ""
        assert err.startswith("ccd: Redis unavailable")
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_redis_password_is_never_printed(tmp_path, capsys):
    url = f"redis://:s3cr3t-pw@127.0.0.1:{free_port()}/0"
    config = _write_config(tmp_path / "pw.toml", url)
    assert main(["status", "-c", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "s3cr3t-pw" not in out + err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (192, "3m12s"), (3600, "1h00m"), (3725, "1h02m"),
     (90000, "1d01h"), (-5, "0s")],
)  # fmt: skip
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


# --- ccd agent sticky / ccd sticky ... ----------------------------------------------------------


@pytest.fixture
def bindings(store):
    """Bindings made as the daemon makes them: alice type1, bob type3, 1 hour."""
    return StickyStore(
        store,
        per_agent={
            "alice": SettingOverride("type1", 3600),
            "bob": SettingOverride("type3", 3600),
        },
    )


def _bind(bindings: StickyStore, agent: str, number: str, now: float = NOW) -> None:
    assert bindings.record(AgentAttempt(number, agent, answered=False, now=now), now) is not None


def test_agent_sticky_sets_shows_and_drops_the_run_time_setting(ccd, bindings):
    code, out, _ = ccd("agent", "sticky", "alice")
    assert code == 0 and out == "agent alice: direct callback disabled (config file)\n"
    code, out, _ = ccd("agent", "sticky", "alice", "type2", "--expiry", "600")
    assert code == 0
    assert out.splitlines() == [
        "agent alice: direct callback type2, expiry 10m00s (run-time setting)",
        "config file: disabled (back to it: ccd agent sticky alice config)",
    ]
    assert bindings.setting_for("alice") == StickySetting(StickyType.TYPE2, 600)
    code, out, _ = ccd("agent", "sticky", "alice", "type4")  # expiry: the configured one
    assert code == 0
    assert bindings.runtime_setting("alice") == SettingOverride("type4", None)
    code, out, _ = ccd("agent", "sticky", "alice", "config")
    assert code == 0 and "(config file)" in out
    assert bindings.runtime_setting("alice") is None


def test_agent_sticky_for_an_agent_only_in_redis(ccd):
    assert ccd("agent", "add", "carol", "--ext", "1003")[0] == 0
    code, out, _ = ccd("agent", "sticky", "carol", "type3", "--expiry", "60")
    assert code == 0 and out.startswith("agent carol: direct callback type3, expiry 1m00s")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["nobody", "type1"], "no agent 'nobody'"),
        (["alice", "type1", "--expiry", "-5"], "--expiry: expected a number of seconds >= 0"),
        (["alice", "type1", "--expiry", "nan"], "--expiry: expected"),
        (["alice", "type1", "--expiry", "soon"], "--expiry: expected"),
        (["alice", "config", "--expiry", "10"], "no --expiry"),
        (["alice", "--expiry", "10"], "--expiry needs a TYPE"),
        (["alice", "type5"], "invalid choice"),
    ],
)
def test_agent_sticky_refuses_bad_requests(ccd, bindings, argv, fragment):
    line = refused(*ccd("agent", "sticky", *argv))
    assert fragment in line
    assert bindings.runtime_setting("alice") is None


def test_sticky_list_shows_bindings_and_filters_by_agent(ccd, bindings, clock):
    _bind(bindings, "alice", "06 1 111 1111")
    _bind(bindings, "bob", "+36 22 222 222")
    _bind(bindings, "alice", "+3633333333", NOW + 60)
    clock[0] = NOW + 120
    code, out, _ = ccd("sticky", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NUMBER", "AGENT", "TYPE", "LEFT", "ATTEMPTS", "AGE"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["+3611111111", "alice", "type1"],
        ["+3622222222", "bob", "type3"],
        ["+3633333333", "alice", "type1"],
    ]
    assert lines[1].split()[3] in ("59m59s", "1h00m")  # Redis's own count, a moment later
    assert lines[1].split()[5] == "2m00s"
    code, out, _ = ccd("sticky", "list", "--agent", "bob")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["+3622222222"]
    code, out, _ = ccd("sticky", "list", "--agent", "carol")
    assert code == 0 and out == "(no bindings of agent carol)\n"


def test_sticky_list_json(ccd, bindings):
    _bind(bindings, "bob", "+3622222222")
    code, out, _ = ccd("sticky", "list", "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert entry["number"] == "+3622222222" and entry["agent"] == "bob"
    assert entry["type"] == "type3" and entry["expires_at"] == NOW + 3600
    assert 3_590_000 < entry["ttl_ms"] <= 3_600_000


def test_sticky_show_finds_the_number_however_written(ccd, bindings):
    _bind(bindings, "alice", "+3612345678")
    code, out, _ = ccd("sticky", "show", "06 (1) 234-5678")
    assert code == 0
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert fields["number"].strip() == "+3612345678"
    assert fields["agent"].strip() == "alice"
    assert fields["attempts"].strip() == "1"
    code, out, _ = ccd("sticky", "show", "+3612345678", "--json")
    assert json.loads(out)["agent"] == "alice"


def test_sticky_delete_removes_the_binding(ccd, bindings):
    _bind(bindings, "alice", "+3612345678")
    code, out, _ = ccd("sticky", "delete", "0036 1 234 5678")
    assert code == 0 and out == "binding +3612345678 -> alice deleted\n"
    assert bindings.get("+3612345678") is None
    assert "no binding for +3612345678" in refused(*ccd("sticky", "delete", "+3612345678"))


@pytest.mark.parametrize("command", ["show", "delete"])
def test_sticky_refuses_what_is_not_a_number_or_not_bound(ccd, command):
    assert "is not a phone number" in refused(*ccd("sticky", command, "anonymous"))
    assert "no binding for +3612345678" in refused(*ccd("sticky", command, "+3612345678"))


def test_sticky_with_redis_down_is_exit_1(tmp_path, capsys):
    config = _write_config(tmp_path / "down.toml", f"redis://127.0.0.1:{free_port()}/0")
    for argv in (["sticky", "list"], ["sticky", "show", "+3612345678"], ["agent", "sticky", "x"]):
        code = main([*argv[:2], "-c", str(config), *argv[2:]])
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err.startswith("ccd: Redis unavailable"), err


# --- ccd callback ... -----------------------------------------------------------------------------


@pytest.fixture
def callback_store(store):
    from ccd.store.callback import CallbackStore

    return CallbackStore(store)


def _callback(n: int, **changes):
    from ccd.core.callback import new_request

    values = dict(
        created_at=NOW - 3600 + n,
        order_key=queue_order_key(0, NOW - 3700 + n),
        caller_uuid=f"uuid-{n}",
        strategy="active",
    )
    values.update(changes)
    return new_request(f"cb{n}", f"+3630100000{n}", "sales", **values)


def test_callbacks_list_show_cancel_retry(ccd, callback_store):
    from ccd.core.callback import Attempt, CallbackRules

    callback_store.create(_callback(1), None)
    callback_store.create(_callback(2), None)
    assert callback_store.take("cb2", "node-a", 60_000)
    callback_store.record_attempt(
        "cb2", "node-a", Attempt(NOW - 60, "no_answer", "alice"), CallbackRules(max_attempts=1),
        NOW - 60,
    )  # fmt: skip

    code, out, err = ccd("callback", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "NUMBER"]
    assert lines[1].split()[:3] == ["cb1", "pending", "+36301000001"]
    assert lines[2].split()[:3] == ["cb2", "unreached", "+36301000002"]

    code, out, _ = ccd("callback", "list", "--status", "unreached", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [r["id"] for r in listed] == ["cb2"]
    assert listed[0]["attempts"][0]["outcome"] == "no_answer"

    code, out, _ = ccd("callback", "show", "cb2")
    assert code == 0
    assert "unreached" in out and "no_answer (alice)" in out

    code, out, _ = ccd("callback", "retry", "cb2")
    assert code == 0 and "pending again" in out
    assert callback_store.get("cb2").status == "pending"
    assert len(callback_store.get("cb2").attempts) == 1  # history kept

    code, out, _ = ccd("callback", "cancel", "cb1")
    assert code == 0 and "cancelled" in out
    assert callback_store.get("cb1").status == "cancelled"
    assert [r.id for r in callback_store.list("cancelled")] == ["cb1"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("callback", "show", "nope"), "no callback request"),
        (("callback", "cancel", "bad:id"), "no callback request"),
        (("callback", "retry", "cb1"), "nothing to retry"),  # pending
        (("callback", "list", "--status", "lost"), "invalid choice"),
    ],
)
def test_callbacks_bad_input_is_one_line_exit_2(ccd, callback_store, argv, words):
    callback_store.create(_callback(1), None)
    line = refused(*ccd(*argv))
    assert words in line


def test_callbacks_with_redis_down_is_exit_1(tmp_path, capsys):
    config = _write_config(tmp_path / "down.toml", f"redis://127.0.0.1:{free_port()}/0")
    for argv in (["list"], ["show", "cb1"], ["cancel", "cb1"], ["retry", "cb1"]):
        code = main(["callback", argv[0], "-c", str(config), *argv[1:]])
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err.startswith("ccd: Redis unavailable"), err
