"""The statistics' feed: the facts the engine says, counted in the step's unit of work.

Theory of operation
-------------------
Every fact the engine says goes through :meth:`ccd.engine.io.CallIo.fact`, which hands the
ones :data:`ccd.core.stats.COUNTED` names to :meth:`StatsFeed.fact` with the moment it
happened. They wait here until the dispatcher sends its unit of work
(:meth:`ccd.engine.io.CallIo.flush`): :meth:`into` folds them all at once
(:func:`ccd.core.stats.fold`: one ``HINCRBY`` per counter field for the whole group of
events, however many calls it holds) and appends the result to the batch, so statistics cost
no round trip of their own.

A fact said while a batch is being sent (a presence compare-and-set's result says
``agent.state`` once Redis accepted the write) waits for the next unit of work that sends
something anyway; only on an idle daemon does it go alone, after :data:`MAX_WAIT`. It
carries its own time, so nothing is counted late, only written later. A batch lost to a Redis
failure loses the statistics it carried with it.

``agent.state`` needs the queues the agent serves now (its tags against the queues' tags,
:func:`ccd.core.stats.served_queues`), taken from the daemon's copy of the agent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ccd.config import Config
from ccd.config.rules import stats_rules_from_config
from ccd.core.commands import Fact
from ccd.core.stats import COUNTED, StatsRules, fold, served_queues
from ccd.store.agent import Agent, AgentRepository
from ccd.store.batch import Batch
from ccd.store.redis_store import Store
from ccd.store.stats import StatsStore

__all__ = ["StatsFeed"]

#: Seconds (daemon time) a counted fact waits at most for a unit of work to ride with.
MAX_WAIT = 1.0
#: Counted facts that are sent however young they are.
MAX_PENDING = 5000


class StatsFeed:
    def __init__(self, store: Store, agents: AgentRepository, config: Config) -> None:
        self.agents = agents
        self.store = StatsStore(store, stats_rules_from_config(config))
        self._queue_tags = _queue_tags(config)
        self._pending: list[tuple[Fact, float, Sequence[str] | None]] = []
        self._oldest = 0.0  # when the oldest pending fact was said (daemon time)
        self._overdue = False
        # Agents whose agent.offered was counted and whose presence fact (ringing) is to come:
        # one agent move per offer instead of two (the hunt and presence both say it).
        self._offered: set[str] = set()

    @property
    def rules(self) -> StatsRules:
        return self.store.rules

    def due(self, riding: bool) -> bool:
        """Whether to send what waits now: with a unit of work that goes anyway
        (``riding``), or alone once the oldest has waited :data:`MAX_WAIT` (an idle daemon,
        see :meth:`tick`) or :data:`MAX_PENDING` facts wait: never a round trip of its own
        under load."""
        if not self._pending:
            return False
        return riding or self._overdue or len(self._pending) >= MAX_PENDING

    def tick(self, now: float) -> None:
        """The dispatcher's tick: what waited MAX_WAIT goes with the next flush, alone if
        need be."""
        if self._pending and now - self._oldest >= MAX_WAIT:
            self._overdue = True

    def apply_config(self, config: Config) -> None:
        """A reload: new service levels, zones, windows and queues from now on."""
        self.store.rules = stats_rules_from_config(config)
        self._queue_tags = _queue_tags(config)

    def fact(self, fact: Fact, now: float) -> None:
        if fact.name not in COUNTED:
            return
        served = None
        agent_id = str(fact.data.get("agent", ""))
        if fact.name == "agent.offered":
            self._offered.add(agent_id)
        elif fact.name == "agent.state":
            if agent_id in self._offered:
                self._offered.discard(agent_id)
                if fact.data.get("activity") == "ringing":
                    return  # the offer's agent.offered moved it to ringing already
            agent = self.agents.cached(agent_id)
            if agent is not None:
                served = served_queues(agent.tags, self._queue_tags)
        self._add(fact, now, served)

    def _add(self, fact: Fact, now: float, served: Sequence[str] | None) -> None:
        if not self._pending:
            self._oldest = now
        self._pending.append((fact, now, served))

    def seed(self, agents: Iterable[Agent], now: float) -> None:
        """Every agent's status as it stands now (at start): the agents-by-status counts
        hold agents that have not changed since. An agent whose status is already recorded
        only has its time so far added up (ccd.store.stats' agent move)."""
        for agent in agents:
            state = agent.at(now).state
            data: dict[str, object] = {
                "agent": agent.id,
                "login": str(state.login),
                "registered": state.registered,
                "activity": str(state.activity),
            }
            if state.logout_pending:  # what it does after its call (the estimated wait)
                data["logout_pending"] = True
            served = served_queues(agent.tags, self._queue_tags)
            self._add(Fact("agent.state", data), now, served)
        # Sent with this step's unit of work: held for a later one, the seed's slices piled
        # up until MAX_PENDING and were folded in one step (5,000 facts: 60-90 ms).
        self._overdue = bool(self._pending)

    def into(self, batch: Batch) -> None:
        """Append everything counted since the last call to ``batch``."""
        pending, self._pending = self._pending, []
        self._overdue = False
        self.store.apply(batch, fold(pending, self.store.rules))


def _queue_tags(config: Config) -> dict[str, frozenset[str]]:
    return {name: frozenset(queue.tags) for name, queue in config.queues.items()}
