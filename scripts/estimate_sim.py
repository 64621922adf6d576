"""How good is the estimated wait? A simulated day of a call center, every caller's estimate at
entry compared with the wait they really had.

Theory of operation
-------------------
A discrete-event simulation (one heap of timed events, a seeded ``random.Random``): callers
arrive as a Poisson stream whose rate changes every hour; agents work shifts with two short
breaks and a lunch (an agent busy at the start of a break finishes the call first); talk times
are log-normal, wrap-up uniform; callers abandon after an exponential patience. One queue, first
come first served; an agent who frees up takes the caller at the head.

At each arrival the script builds what the daemon's statistics know at that moment
(ccd.core.stats / ccd.store.stats): agents serving the queue by status and how long they have
been in it, the mean talk and wrap-up of the calls handled in the last 60 minutes, the calls
answered in the last 15 minutes, the callers waiting; and asks each estimator for the wait of
the new caller (position = callers waiting, itself included). When the caller reaches an agent
the real wait is known; callers who abandon have none and are left out. It prints, per
estimator, the mean absolute error in seconds and as a share of the mean real wait:

* ``ccd``: ccd.core.estimate.estimate_wait (what the daemon announces);
* ``position``: position x mean handle time / agents serving (the textbook formula);
* ``constant``: the average wait of the calls answered in the last 15 minutes, the same for
  every position (a "hold time" announcement).

``python scripts/estimate_sim.py [--seed N] [--days D] [--hours H]``; the test
(tests/test_estimate.py) runs a short day with a fixed seed.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccd.core.estimate import (
    BusyAgent,
    QueueLoad,
    constant_estimate,
    estimate_wait,
    summary_error,
)

#: Calls per hour, from 08:00 (the load changes through the day).
ARRIVALS_PER_HOUR = (50, 100, 150, 160, 120, 110, 140, 150, 110, 60)
TALK_MEAN, TALK_SD = 210.0, 120.0
WRAP_RANGE = (20.0, 40.0)
PATIENCE_MEAN = 900.0
ANSWER_WINDOW = 900.0  # the stats' 15-minute window
HANDLE_WINDOW = 3600.0  # the stats' 60-minute window
BREAK_LENGTH = 900.0
ESTIMATORS = ("ccd", "position", "constant")


@dataclass
class Agent:
    name: str
    start: float
    end: float
    breaks: list[tuple[float, float]]  # (start, seconds)
    status: str = "off"  # off | free | oncall | wrapup | break
    since: float = 0.0
    on_break_until: float = 0.0
    wants_break: float = 0.0  # a break's length waiting for the current call to end


@dataclass
class Caller:
    n: int
    arrived: float
    estimates: dict[str, float | None]
    gone: bool = False


@dataclass
class Result:
    pairs: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {e: [] for e in ESTIMATORS}
    )
    served: int = 0
    abandoned: int = 0
    max_wait: float = 0.0

    def errors(self) -> dict[str, tuple[float, float, float]]:
        return {name: summary_error(pairs) for name, pairs in self.pairs.items()}


def staff(hours: int, scale: int = 1) -> list[Agent]:
    """12 x scale agents: half 08:00-16:00, half from 10:00 to the end; breaks staggered."""
    agents = []
    for i in range(12 * scale):
        early = i < 6 * scale
        start = 0.0 if early else 2 * 3600.0
        end = min(8 * 3600.0 if early else hours * 3600.0, hours * 3600.0)
        offset = 600.0 * (i % 3)
        first = start + 2 * 3600 + offset
        lunch = start + 4 * 3600 + offset
        last = start + 6.5 * 3600 + offset
        breaks = [(first, 900.0), (lunch, 1800.0), (last, 900.0)]
        agents.append(Agent(f"a{i}", start, end, [b for b in breaks if b[0] < end]))
    return agents


class Day:
    def __init__(self, seed: int, hours: int, scale: int = 1):
        self.rng = random.Random(seed)
        self.hours = hours
        self.arrivals = tuple(n * scale for n in ARRIVALS_PER_HOUR)
        self.agents = staff(hours, scale)
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.queue: deque[Caller] = deque()
        self.answered: deque[tuple[float, float]] = deque()  # (when, waited)
        self.handled: deque[tuple[float, float, float]] = deque()  # (ended, talk, wrap)
        self.waits: deque[tuple[float, float, bool]] = deque()  # (when, waited, abandoned)
        self.result = Result()

    def at(self, when: float, kind: str, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, kind, payload))

    # --- the day -------------------------------------------------------------------------

    def run(self) -> Result:
        end = self.hours * 3600.0
        for agent in self.agents:
            self.at(agent.start, "shift", agent)
            self.at(agent.end, "leave", agent)
            for start, length in agent.breaks:
                self.at(start, "break", (agent, length))
        self.at(self._next_arrival(0.0), "arrive")
        n = 0
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrive":
                if now < end:
                    n += 1
                    self._arrive(now, n)
                    self.at(self._next_arrival(now), "arrive")
            elif kind == "abandon":
                caller = payload
                assert isinstance(caller, Caller)
                if not caller.gone:
                    caller.gone = True
                    self.queue.remove(caller)
                    self.result.abandoned += 1
                    self.waits.append((now, now - caller.arrived, True))
            else:
                self._agent_event(now, kind, payload)
            self._dispatch(now)
        return self.result

    def _next_arrival(self, now: float) -> float:
        """The next arrival of a Poisson stream whose rate is the current hour's (thinning)."""
        peak = max(self.arrivals) / 3600.0
        while True:
            now += self.rng.expovariate(peak)
            hour = int(now // 3600)
            if hour >= len(self.arrivals) or hour >= self.hours:
                return now
            if self.rng.random() < self.arrivals[hour] / 3600.0 / peak:
                return now

    def _agent_event(self, now: float, kind: str, payload: object) -> None:
        if kind == "shift":
            agent = payload
            assert isinstance(agent, Agent)
            agent.status, agent.since = "free", now
        elif kind == "leave":
            agent = payload
            assert isinstance(agent, Agent)
            if agent.status in ("free", "break"):
                agent.status, agent.since = "off", now
            else:
                agent.end = now  # leaves after the call
        elif kind == "break":
            agent, length = payload  # type: ignore[misc]
            if agent.status == "free":
                self._start_break(agent, now, length)
            elif agent.status in ("oncall", "wrapup"):
                agent.wants_break = length
        elif kind == "talk_end":
            agent, talk, wrap = payload  # type: ignore[misc]
            agent.status, agent.since = "wrapup", now
            self.at(now + wrap, "wrap_end", (agent, talk, wrap))
        elif kind == "wrap_end":
            agent, talk, wrap = payload  # type: ignore[misc]
            self.handled.append((now, talk, wrap))
            self._free(agent, now)
        elif kind == "break_end":
            agent = payload
            assert isinstance(agent, Agent)
            self._free(agent, now)

    def _start_break(self, agent: Agent, now: float, length: float) -> None:
        agent.status, agent.since, agent.wants_break = "break", now, 0.0
        self.at(now + length, "break_end", agent)

    def _free(self, agent: Agent, now: float) -> None:
        if now >= agent.end and agent.end > agent.start:
            agent.status, agent.since = "off", now
        elif agent.wants_break:
            self._start_break(agent, now, agent.wants_break)
        else:
            agent.status, agent.since = "free", now

    def _dispatch(self, now: float) -> None:
        for agent in self.agents:
            if not self.queue:
                break
            if agent.status != "free":
                continue
            caller = self.queue.popleft()
            caller.gone = True
            waited = now - caller.arrived
            self.answered.append((now, waited))
            self.waits.append((now, waited, False))
            self.result.served += 1
            self.result.max_wait = max(self.result.max_wait, waited)
            for name, estimate in caller.estimates.items():
                if estimate is not None:
                    self.result.pairs[name].append((estimate, waited))
            talk = self.rng.lognormvariate(*_lognormal(TALK_MEAN, TALK_SD))
            wrap = self.rng.uniform(*WRAP_RANGE)
            agent.status, agent.since = "oncall", now
            self.at(now + talk, "talk_end", (agent, talk, wrap))

    # --- what the statistics know, and the estimates ---------------------------------------

    def load(self, now: float) -> QueueLoad:
        while self.answered and self.answered[0][0] < now - ANSWER_WINDOW:
            self.answered.popleft()
        while self.handled and self.handled[0][0] < now - HANDLE_WINDOW:
            self.handled.popleft()
        while self.waits and self.waits[0][0] < now - HANDLE_WINDOW:
            self.waits.popleft()
        busy = tuple(
            BusyAgent(a.status, now - a.since, _after(a, now))
            for a in self.agents
            if a.status in ("oncall", "wrapup")
        )
        handled = len(self.handled)
        return QueueLoad(
            free_agents=sum(1 for a in self.agents if a.status == "free"),
            busy=busy,
            talk=sum(h[1] for h in self.handled) / handled if handled else None,
            wrapup=sum(h[2] for h in self.handled) / handled if handled else None,
            answered=len(self.answered),
            window=ANSWER_WINDOW,
            on_break=tuple(now - a.since for a in self.agents if a.status == "break"),
            break_length=BREAK_LENGTH,
            abandoned=sum(1 for w in self.waits if w[2]),
            waited_total=sum(w[1] for w in self.waits),
        )

    def _arrive(self, now: float, n: int) -> None:
        load = self.load(now)
        position = len(self.queue) + 1
        asa = sum(w for _, w in self.answered) / len(self.answered) if self.answered else 0.0
        agents = load.free_agents + len(load.busy)
        estimates: dict[str, float | None] = {
            "ccd": estimate_wait(load, position).seconds,
            "position": (
                max(0, position - load.free_agents) * load.handle / agents if agents else None
            ),
            "constant": constant_estimate(asa, position).seconds,
        }
        caller = Caller(n, now, estimates)
        self.queue.append(caller)
        self.at(now + self.rng.expovariate(1 / PATIENCE_MEAN), "abandon", caller)


def _after(agent: Agent, now: float) -> str:
    """What presence knows a busy agent does after the call: a break it asked for, the
    logout at the end of its shift, or the next caller."""
    if now >= agent.end > agent.start:
        return "logged_out"
    return "break" if agent.wants_break else "ready"


def _lognormal(mean: float, sd: float) -> tuple[float, float]:
    """mu and sigma of the log-normal with this mean and standard deviation."""
    sigma2 = math.log(1 + (sd / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


def simulate(seed: int = 1, hours: int = 10, days: int = 1, scale: int = 1) -> Result:
    """``days`` simulated days (seeds seed, seed+1, ...), their callers pooled; ``scale``
    multiplies the agents and the calls."""
    total = Result()
    for day in range(days):
        result = Day(seed + day, hours, scale).run()
        for name in ESTIMATORS:
            total.pairs[name].extend(result.pairs[name])
        total.served += result.served
        total.abandoned += result.abandoned
        total.max_wait = max(total.max_wait, result.max_wait)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--hours", type=int, default=10, choices=range(1, 11))
    parser.add_argument(
        "--scale", type=int, default=1, help="agents x 12 and calls x this (default 1)"
    )
    args = parser.parse_args(argv)
    result = simulate(args.seed, args.hours, args.days, args.scale)
    print(
        f"{args.days} simulated day(s) of {args.hours} h, {12 * args.scale} agents, "
        f"seed {args.seed}: "
        f"{result.served} callers served, {result.abandoned} abandoned, "
        f"longest wait {result.max_wait:.0f} s"
    )
    print(f"{'estimator':<10} {'MAE':>8} {'mean wait':>10} {'MAE/mean':>9}")
    for name, (mae, mean, share) in result.errors().items():
        print(f"{name:<10} {mae:>7.1f}s {mean:>9.1f}s {share * 100:>8.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
