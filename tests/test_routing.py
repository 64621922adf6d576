"""ccd.core.routing: who is offered a call, in which order (seed 002)."""

from __future__ import annotations

from ccd.core.routing import AgentView, candidates


def agent(
    id: str,
    tags: str,
    *,
    login: str = "ready",
    registered: bool = True,
    activity: str = "idle",
    idle_since: float = 100.0,
) -> AgentView:
    return AgentView(
        id,
        "1" + id[-3:],
        frozenset(t for t in tags.split(",") if t),
        login,
        registered,
        activity,
        idle_since,
    )


def ids(agents: list[AgentView]) -> list[str]:
    return [a.id for a in agents]


def test_seed_002_specialist_first():
    pool = [
        agent("a003", "sales,support,management"),
        agent("a001", "sales"),
        agent("a002", "sales,support"),
        agent("a004", "support"),
    ]
    assert ids(candidates(pool, {"sales"})) == ["a001", "a002", "a003"]


def test_ties_go_to_the_longest_idle_then_to_the_id():
    pool = [
        agent("a002", "sales", idle_since=50.0),
        agent("a001", "sales", idle_since=70.0),
        agent("a003", "sales", idle_since=50.0),
    ]
    assert ids(candidates(pool, ["sales"])) == ["a002", "a003", "a001"]


def test_only_ready_registered_idle_agents_with_every_required_tag():
    pool = [
        agent("a001", "sales,de", login="break"),
        agent("a002", "sales,de", login="logged_out"),
        agent("a003", "sales,de", registered=False),
        agent("a004", "sales,de", activity="oncall"),
        agent("a005", "sales,de", activity="ringing"),
        agent("a006", "sales,de", activity="wrapup"),
        agent("a007", "sales"),
        agent("a008", "Sales,DE"),
    ]
    assert ids(candidates(pool, {"sales", "de"})) == ["a008"]


def test_exclude_and_no_required_tags():
    pool = [agent("a001", "sales"), agent("a002", ""), agent("a003", "x,y")]
    assert ids(candidates(pool, ())) == ["a002", "a001", "a003"]
    assert ids(candidates(pool, (), exclude={"a002"})) == ["a001", "a003"]
