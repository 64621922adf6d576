"""A call asking for several tags is served from free lists per agent tag set (routing.lua):
the order stays the routing order, the work does not grow with agents lacking the tags, a
centre written by an older ccd is indexed once, and the index forgets what is gone."""

from __future__ import annotations

import random

import pytest

from ccd.core import presence
from ccd.core.routing import candidates
from ccd.store.agent import AgentRepository
from ccd.store.redis_store import Store, connect_redis

PREFIX = "ccd:"
TAGS = ("sales", "support", "tv", "internet", "french")


@pytest.fixture
def agents(redis_url):
    client = connect_redis(redis_url)
    yield AgentRepository(Store.create(client, PREFIX))
    client.close()


def _ready(repo: AgentRepository, agent_id: str, now: float) -> None:
    repo.transition(agent_id, lambda s: presence.set_login(s, "login", now))
    repo.transition(agent_id, lambda s: presence.set_registered(s, True, now))


def _commands_run(client) -> int:
    """Commands Redis ran, those inside scripts included (its own count, not a clock)."""
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_evalsha"))


def test_several_tags_come_in_the_routing_order_of_every_agent_carrying_them(agents):
    # The merge of the tag sets' lists must give what one sorted list of every qualifying
    # agent would: fewest tags, longest idle, then id; wrap-ups only once over.
    rng = random.Random(11)
    rules = presence.PresenceRules(wrapup_time=10.0)
    for i in range(120):
        agent_id = f"a{i:03d}"
        tags = rng.sample(TAGS, rng.randint(1, 4))
        agents.create(agent_id, f"{2000 + i}", tags, now=float(rng.randint(1, 5)))
        if rng.random() < 0.85:
            _ready(agents, agent_id, now=6.0)
        kind = rng.random()
        if kind < 0.25:  # a call ended at 20..29: in wrap-up until 30..39
            leg, end = f"leg-{i}", 20.0 + rng.randint(0, 9)
            agents.transition(agent_id, lambda s, leg=leg: presence.offer(s, leg, 10.0))
            agents.transition(agent_id, lambda s, leg=leg: presence.answered(s, leg, 11.0))
            agents.transition(
                agent_id, lambda s, leg=leg, end=end: presence.call_ended(s, leg, end, rules)
            )
        elif kind < 0.35:
            agents.transition(agent_id, lambda s: presence.set_login(s, "break", 7.0))
    wanted = [("sales", "support"), ("support", "tv"), ("tv", "internet", "french"), TAGS[:4]]
    checked = 0
    for now in (25.0, 34.0, 45.0):
        everyone = [a.at(now).view() for a in agents.all()]
        for tags in wanted:
            expected = [a.id for a in candidates(everyone, tags)]
            assert [a.id for a in agents.available_with(tags, now=now)] == expected, (tags, now)
            assert [a.id for a in agents.available_with(tags, limit=3, now=now)] == expected[:3]
            assert agents.count_free(tags, now=now) == len(expected)
            checked += len(expected)
    assert checked > 50  # the draw gave the comparison something to compare


def test_past_agents_lacking_a_tag_the_routing_order_still_holds(agents):
    # Forty agents with tv but not support idle longest: a call for support+tv is served
    # from the tag sets' lists, in the order of every agent carrying both.
    rng = random.Random(5)
    rules = presence.PresenceRules(wrapup_time=10.0)
    for i in range(40):
        agents.create(f"d{i:02d}", f"{3000 + i}", ["tv", "sales"], now=0.5)
        _ready(agents, f"d{i:02d}", now=1.0)
    for i in range(60):  # more free agents with support than with tv: tv is walked
        agents.create(f"s{i:02d}", f"{4000 + i}", ["support", "internet"], now=0.5)
        _ready(agents, f"s{i:02d}", now=1.0)
    for i in range(50):
        agent_id = f"q{i:02d}"
        extra = rng.sample(["sales", "internet", "french"], rng.randint(0, 2))
        agents.create(agent_id, f"{5000 + i}", ["support", "tv", *extra], 2.0)
        _ready(agents, agent_id, now=6.0)
        if rng.random() < 0.3:  # in wrap-up until 30..39
            leg, end = f"leg-{i}", 20.0 + rng.randint(0, 9)
            agents.transition(agent_id, lambda s, leg=leg: presence.offer(s, leg, 10.0))
            agents.transition(agent_id, lambda s, leg=leg: presence.answered(s, leg, 11.0))
            agents.transition(
                agent_id, lambda s, leg=leg, end=end: presence.call_ended(s, leg, end, rules)
            )
    for now in (25.0, 45.0):
        everyone = [a.at(now).view() for a in agents.all()]
        expected = [a.id for a in candidates(everyone, ("support", "tv"))]
        assert len(expected) > 20
        assert [a.id for a in agents.available_with(["tv", "support"], now=now)] == expected
        assert [a.id for a in agents.available_with(["tv", "support"], limit=2, now=now)] == (
            expected[:2]
        )


def test_a_search_for_two_tags_does_not_walk_agents_lacking_one(agents):
    # Agents with tv but not support stay idle longest (no call wants them): a call for
    # support+tv used to walk past every one of them, checking each for support.
    client = agents.store.client

    def cost_with(decoys: int) -> int:
        client.flushdb()
        for i in range(decoys):
            agents.create(f"d{i:03d}", f"{3000 + i}", ["tv", "sales"], now=1.0)
            _ready(agents, f"d{i:03d}", now=2.0)
        for i in range(decoys + 10):  # more free with support than with tv: tv is the rarer
            agents.create(f"s{i:03d}", f"{5000 + i}", ["support", "internet"], now=3.0)
            _ready(agents, f"s{i:03d}", now=4.0)
        agents.create("zoe", "1001", ["support", "tv"], now=5.0)
        _ready(agents, "zoe", now=6.0)
        agents.count_free(["support", "tv"], now=10.0)  # the tag sets exist: not counted below
        before = _commands_run(client)
        assert [a.id for a in agents.available_with(["support", "tv"], limit=1, now=10.0)] == [
            "zoe"
        ]
        assert agents.count_free(["tv", "support"], now=10.0) == 1
        return _commands_run(client) - before

    # Up to a handful are checked on the way (cheap, and the usual case finds its agent
    # there); beyond, the work stays what it is.
    assert cost_with(200) == cost_with(100)


def test_agents_written_by_an_older_ccd_are_found_by_their_tags(agents):
    client = agents.store.client
    agents.create("bob", "1002", ["sales", "support"], now=3.0)
    agents.create("carol", "1003", ["sales", "support", "tv"], now=1.0)
    agents.create("dan", "1004", ["support", "tv"], now=2.0)
    for agent_id in ("bob", "carol", "dan"):
        _ready(agents, agent_id, now=5.0)
    # What a centre run by the ccd before the tag-set index holds: none of its keys.
    old = [k for k in client.scan_iter(f"{PREFIX}agents:*") if b"tagset" in k or b"freeset" in k]
    assert old
    client.delete(*old)
    assert [a.id for a in agents.available_with(["support", "sales"], now=9.0)] == ["bob", "carol"]
    assert [a.id for a in agents.available_with(["tv", "support"], now=9.0)] == ["dan", "carol"]
    assert agents.count_free(["sales", "support"], now=9.0) == 2
    assert client.get(f"{PREFIX}agents:tagsets") == b"1"


def test_the_tag_set_index_forgets_changed_tags_and_deleted_agents(agents):
    client = agents.store.client
    agents.create("bob", "1002", ["sales", "support"], now=1.0)
    agents.create("eve", "1005", ["sales", "support"], now=1.0)
    for agent_id in ("bob", "eve"):
        _ready(agents, agent_id, now=2.0)
    assert agents.count_free(["sales", "support"], now=9.0) == 2
    agents.set_tags("bob", ["sales", "tv"])
    agents.delete("eve")
    assert agents.available_with(["sales", "support"], now=9.0) == []
    assert [a.id for a in agents.available_with(["tv", "sales"], now=9.0)] == ["bob"]
    agents.set_tags("bob", ["sales"])  # one tag: no tag set, found by the tag's own list
    assert [a.id for a in agents.available_with(["sales"], now=9.0)] == ["bob"]
    left = sorted(
        k.decode()
        for k in client.scan_iter(f"{PREFIX}agents:*")
        if b"tagset" in k or b"freeset" in k
    )
    assert left == [f"{PREFIX}agents:tagsets"]  # the mark that the index is built, only


def _drop_tagset_index(client) -> None:
    """Make Redis look like a centre an older ccd ran: no index by tag set, no mark."""
    old = [k for k in client.scan_iter(f"{PREFIX}agents:*") if b"tagset" in k or b"freeset" in k]
    if old:
        client.delete(*old)


def test_the_index_is_built_a_slice_at_a_time_before_any_search(agents):
    client = agents.store.client
    # Over 128 agents: a smaller set is kept packed and SSCAN gives it whole.
    for i in range(200):
        agents.create(f"a{i:03d}", f"{1000 + i}", ["sales", "support"], now=float(i))
        if i % 2:
            _ready(agents, f"a{i:03d}", now=300.0)
    _drop_tagset_index(client)
    client.config_resetstat()
    assert agents.index_tagsets(slice_size=50) == 200
    scripts = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert scripts >= 3 + 1  # slices of about 50 (SSCAN's count is a hint), then the mark
    assert client.get(f"{PREFIX}agents:tagsets") == b"1"
    found = agents.available_with(["support", "sales"], now=400.0)
    assert [a.id for a in found] == [f"a{i:03d}" for i in range(1, 200, 2)]
    assert agents.index_tagsets() == 0  # built: nothing to do
