"""The agent repository on a real redis-server: atomic reservation, CAS, index sets."""

from __future__ import annotations

import dataclasses

import gevent
import pytest

from ccd.core import presence
from ccd.core.routing import candidates
from ccd.store.agent import AgentError, AgentRepository, UnknownAgent
from ccd.store.redis_store import Store, connect_redis


@pytest.fixture
def agents(redis_url):
    client = connect_redis(redis_url)
    yield AgentRepository(Store.create(client, "ccd:"))
    client.close()


def _ready(repo: AgentRepository, agent_id: str, now: float = 10.0) -> None:
    repo.transition(agent_id, lambda s: presence.set_login(s, "login", now))
    repo.transition(agent_id, lambda s: presence.set_registered(s, True, now))


def test_created_agent_is_logged_out_and_not_available(agents):
    agents.create("alice", "1001", ["Sales"], now=1.0)
    alice = agents.require("alice")
    assert alice.tags == frozenset({"sales"})
    assert alice.state.login is presence.Login.LOGGED_OUT
    assert agents.available_with(["sales"]) == []
    assert agents.id_for_extension("1001") == "alice"


def test_duplicate_id_and_extension_are_refused(agents):
    agents.create("alice", "1001", [], now=1.0)
    with pytest.raises(AgentError, match="exists"):
        agents.create("alice", "1009", [], now=1.0)
    with pytest.raises(AgentError, match="1001 already belongs to agent 'alice'"):
        agents.create("bob", "1001", [], now=1.0)


@pytest.mark.parametrize(
    ("agent_id", "ext", "tags"),
    [("Alice", "1001", []), ("a b", "1001", []), ("al", "10a1", []), ("al", "1001", ["x y"])],
)
def test_bad_identifiers_are_refused(agents, agent_id, ext, tags):
    with pytest.raises(AgentError):
        agents.create(agent_id, ext, tags, now=1.0)


def test_available_index_follows_presence_and_tags(agents):
    agents.create("alice", "1001", ["sales"], now=1.0)
    agents.create("bob", "1002", ["sales", "support"], now=1.0)
    _ready(agents, "alice")
    _ready(agents, "bob")
    assert {a.id for a in agents.available_with(["sales"])} == {"alice", "bob"}
    assert [a.id for a in agents.available_with(["support"])] == ["bob"]
    agents.set_tags("bob", ["sales"])
    assert agents.available_with(["support"]) == []
    agents.transition("alice", lambda s: presence.set_login(s, "break", 11.0))
    assert [a.id for a in agents.available_with(["sales"])] == ["bob"]


def test_agent_whose_wrapup_is_over_is_available_and_idle(agents):
    # Nobody writes the end of a wrap-up: the record still says "wrapup" after its time.
    # The callback dialer keeps only idle views (ccd.core.routing.candidates): a view taken
    # from the raw record left an agent who finished wrap-up out of every active callback.
    agents.create("alice", "1001", ["sales"], now=1.0)
    _ready(agents, "alice")
    rules = presence.PresenceRules(wrapup_time=5.0)
    agents.transition("alice", lambda s: presence.offer(s, "leg-1", 20.0))
    agents.transition("alice", lambda s: presence.answered(s, "leg-1", 21.0))
    agents.transition("alice", lambda s: presence.call_ended(s, "leg-1", 30.0, rules))
    assert agents.require("alice").state.activity is presence.Activity.WRAPUP
    assert agents.available_with(["sales"], now=32.0) == []
    [alice] = agents.available_with(["sales"], now=36.0)
    assert (alice.id, alice.activity, alice.idle_since) == ("alice", "idle", 35.0)
    assert [a.id for a in candidates(agents.available_with(["sales"], now=36.0), ())] == ["alice"]


def test_reservation_is_exclusive_under_concurrency(agents):
    agents.create("alice", "1001", ["sales"], now=1.0)
    _ready(agents, "alice")
    results = []

    def take(i: int) -> None:
        results.append((i, agents.reserve("alice", f"call-{i}", 20.0)))

    gevent.joinall([gevent.spawn(take, i) for i in range(50)])
    winners = [i for i, ok in results if ok]
    assert len(winners) == 1
    alice = agents.require("alice")
    assert alice.call == f"call-{winners[0]}"
    assert alice.state.activity is presence.Activity.RINGING
    assert agents.available_with(["sales"]) == []
    # The same call asking again (a retry after a restart) still holds it.
    assert agents.reserve("alice", f"call-{winners[0]}", 21.0) is not None


def test_cas_write_loses_to_a_reservation_in_between(agents):
    agents.create("alice", "1001", [], now=1.0)
    _ready(agents, "alice")
    stale = agents.require("alice")
    assert agents.reserve("alice", "call-1", 5.0)
    # A writer still holding the old revision must not overwrite the reservation.
    assert agents._write(dataclasses.replace(stale, tags=frozenset({"x"})), stale.rev) is False
    assert agents.require("alice").call == "call-1"


def test_transition_recomputes_after_a_concurrent_write(agents):
    agents.create("alice", "1001", [], now=1.0)
    _ready(agents, "alice")
    seen = []

    def step(state):
        seen.append(state.activity)
        if len(seen) == 1:  # another daemon reserves while we compute
            agents.reserve("alice", "call-9", 6.0)
        return presence.personal_call(state, "personal-1", 6.0)

    agent, _ = agents.transition("alice", step)
    assert seen == [presence.Activity.IDLE, presence.Activity.RINGING]
    assert agent.state.personal == ("personal-1",)


def test_unknown_agent_and_delete(agents):
    with pytest.raises(UnknownAgent):
        agents.require("nobody")
    agents.create("alice", "1001", ["sales"], now=1.0)
    _ready(agents, "alice")
    assert agents.delete("alice") is True
    assert agents.ids() == []
    assert agents.available_with([]) == []
    assert agents.id_for_extension("1001") is None


def test_concurrent_adds_of_one_extension_admit_exactly_one(agents):
    results = []

    def add(i: int) -> None:
        try:
            agents.create(f"agent{i}", "1001", [], now=1.0)
            results.append(i)
        except AgentError:
            pass

    gevent.joinall([gevent.spawn(add, i) for i in range(20)])
    assert len(results) == 1
    assert agents.id_for_extension("1001") == f"agent{results[0]}"


def test_ensure_reports_an_extension_owned_by_another_agent(agents):
    agents.create("alice", "1001", [], now=1.0)
    with pytest.raises(AgentError, match="1001 already belongs to agent 'alice'"):
        agents.ensure("bob", "1001", [], now=1.0)
    agents.ensure("bob", "1002", [], now=1.0)
    with pytest.raises(AgentError, match="already belongs"):
        agents.ensure("bob", "1001", [], now=1.0)
    assert agents.require("bob").extension == "1002"


def test_candidates_come_in_routing_order_from_the_per_tag_index(agents):
    # seed 002: fewest tags first, ties longest idle first; tags changes move agents.
    # idle since their creation: dan (6.0) has waited longer than alice (7.0)
    agents.create("carol", "1003", ["sales", "support", "management"], now=5.0)
    agents.create("bob", "1002", ["sales", "support"], now=5.0)
    agents.create("alice", "1001", ["sales"], now=7.0)
    agents.create("dan", "1004", ["sales"], now=6.0)
    for agent_id in ("carol", "bob", "alice", "dan"):
        _ready(agents, agent_id, now=8.0)
    assert [a.id for a in agents.available_with(["sales"])] == ["dan", "alice", "bob", "carol"]
    assert [a.id for a in agents.available_with(["sales"], limit=2)] == ["dan", "alice"]
    assert [a.id for a in agents.available_with(["support", "sales"])] == ["bob", "carol"]
    agents.set_tags("dan", ["support"])
    assert [a.id for a in agents.available_with(["sales"])] == ["alice", "bob", "carol"]
    assert [a.id for a in agents.available_with(["support"])] == ["dan", "bob", "carol"]
    agents.delete("bob")
    assert [a.id for a in agents.available_with(["support"])] == ["dan", "carol"]
