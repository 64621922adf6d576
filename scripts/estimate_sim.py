"""How good is the estimated wait? A simulated day of a call center, every caller's estimate at
entry compared with the wait they really had.

Theory of operation
-------------------
A discrete-event simulation (one heap of timed events, a seeded ``random.Random``): callers
arrive as a Poisson stream whose rate changes every hour; agents work shifts with two short
breaks and a lunch (an agent busy at the start of a break finishes the call first); talk times
are log-normal, wrap-up uniform; callers abandon after an exponential patience. One queue, first
come first served; an agent who frees up takes the caller at the head. ``--agents N`` staffs N
agents (half from 08:00 to 16:00, half from 10:00 to the end) for N/12 times the calls of the
twelve-agent day (50 → 160 → 60 an hour), so every size sees the same load per agent.

At each arrival the script builds exactly what the daemon reads for an announcement
(ccd.store.stats' ``announce``) and turns it into the estimate's input with the daemon's own
:func:`ccd.core.announce.queue_load`:

* the queue's counters over the shortest statistics window (15 minutes): the last 15 minute
  buckets, the current one included, each event counted in the minute it was written (talk
  seconds and ``handled`` when the conversation ends, wrap-up seconds when the wrap-up ends,
  waits when a caller is answered or gives up);
* agents by status, and each agent on a call, in wrap-up or on break with the time that status
  began and what it does after the call (``stats:busy:<queue>``: a break it asked for, the
  logout at the end of its shift, else the next caller);
* the caller's position (callers waiting, itself included).

It asks each estimator for the new caller's wait. When the caller reaches an agent the real
wait is known; callers who abandon have none and are left out, and so are the callers one of
the estimators has no figure for (the first minutes of the day). It prints, per estimator,
the mean absolute error (MAE) and the MAE as a share of the mean real wait:

* ``ccd``: ccd.core.estimate.estimate_wait on what the daemon knows (what it announces);
* ``counts``: the same estimator given only the agents' numbers per status, as the daemon had
  before it kept since when each agent is busy (every call of unknown length);
* ``position``: position x mean handle time / agents serving (the textbook formula);
* ``constant``: the average wait of the calls answered in the window, the same for every
  position (a "hold time" announcement).

``python scripts/estimate_sim.py [--agents 5,12,30,80] [--seeds 1,11,21] [--days D]
[--hours H]`` prints one line per centre size (the seeds' callers pooled; the range over the
seeds beside it); the test (tests/test_estimate.py) runs a short day with a fixed seed.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccd.core.announce import BusySince, queue_load
from ccd.core.estimate import constant_estimate, estimate_wait, summary_error
from ccd.core.stats import QueueCounts, minute_of

#: Calls per hour of the twelve-agent day, from 08:00 (the load changes through the day).
ARRIVALS_PER_HOUR = (50, 100, 150, 160, 120, 110, 140, 150, 110, 60)
TALK_MEAN, TALK_SD = 210.0, 120.0
WRAP_RANGE = (20.0, 40.0)
PATIENCE_MEAN = 900.0
WINDOW_MINUTES = 15  # the statistics' shortest window: what an announcement reads
ESTIMATORS = ("ccd", "counts", "position", "constant", "floor")
#: --floor: simulated futures per caller, and one caller in this many gets them.
FLOOR_RUNS, FLOOR_EVERY = 200, 3
BREAK_LENGTH, OVERRUN_SHARE = 900.0, 0.3  # what the daemon assumes of a break (estimate.py)
_NORMAL = statistics.NormalDist()
DEFAULT_AGENTS = (5, 12, 30, 80)
DEFAULT_SEEDS = (1, 11, 21)


@dataclass
class Agent:
    name: str
    start: float
    end: float
    breaks: list[tuple[float, float]]  # (start, seconds)
    status: str = "off"  # off | free | oncall | wrapup | break
    since: float = 0.0
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
        return {name: summary_error(pairs) for name, pairs in self.pairs.items() if pairs}

    def add(self, other: Result) -> None:
        for name in ESTIMATORS:
            self.pairs[name].extend(other.pairs[name])
        self.served += other.served
        self.abandoned += other.abandoned
        self.max_wait = max(self.max_wait, other.max_wait)


def staff(hours: int, agents: int = 12) -> list[Agent]:
    """``agents`` agents: half 08:00-16:00, half from 10:00 to the end; breaks staggered."""
    out = []
    early_count = (agents + 1) // 2
    for i in range(agents):
        early = i < early_count
        start = 0.0 if early else 2 * 3600.0
        end = min(8 * 3600.0 if early else hours * 3600.0, hours * 3600.0)
        offset = 600.0 * (i % 3)
        first = start + 2 * 3600 + offset
        lunch = start + 4 * 3600 + offset
        last = start + 6.5 * 3600 + offset
        breaks = [(first, 900.0), (lunch, 1800.0), (last, 900.0)]
        out.append(Agent(f"a{i}", start, end, [b for b in breaks if b[0] < end]))
    return out


class Window:
    """A queue's counters over the last :data:`WINDOW_MINUTES` minute buckets (the current
    one included), as ccd.store.stats adds them up: (when written, field, amount); and of
    the day so far (the simulated day is the queue's day)."""

    def __init__(self) -> None:
        self.items: deque[tuple[float, str, float]] = deque()
        self.day: dict[str, float] = {}

    def add(self, when: float, name: str, amount: float = 1.0) -> None:
        self.items.append((when, name, amount))
        self.day[name] = self.day.get(name, 0.0) + amount

    def counts(self, now: float) -> tuple[QueueCounts, QueueCounts]:
        """(the window's counters, the day's)."""
        first = minute_of(now) - WINDOW_MINUTES + 1
        while self.items and minute_of(self.items[0][0]) < first:
            self.items.popleft()
        sums: dict[str, float] = {}
        for _, name, amount in self.items:
            sums[name] = sums.get(name, 0.0) + amount
        return QueueCounts.from_fields(sums), QueueCounts.from_fields(self.day)


class Day:
    def __init__(self, seed: int, hours: int, agents: int = 12, floor: bool = False):
        self.rng = random.Random(seed)
        self.floor = random.Random(-seed) if floor else None  # the day's own draws untouched
        self.hours = hours
        self.arrivals = tuple(n * agents / 12 for n in ARRIVALS_PER_HOUR)
        self.agents = staff(hours, agents)
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.queue: deque[Caller] = deque()
        self.window = Window()
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
                    self.window.add(now, "abandoned")
                    self.window.add(now, "wait_abandoned", now - caller.arrived)
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
            self.window.add(now, "handled")  # call.ended
            self.window.add(now, "talk", talk)  # the agent's on-call interval closes
            self.at(now + wrap, "wrap_end", (agent, talk, wrap))
        elif kind == "wrap_end":
            agent, talk, wrap = payload  # type: ignore[misc]
            self.window.add(now, "wrapup", wrap)
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
            self.window.add(now, "answered")
            self.window.add(now, "wait_answered", waited)
            self.result.served += 1
            self.result.max_wait = max(self.result.max_wait, waited)
            if all(e is not None for e in caller.estimates.values()):
                for name, estimate in caller.estimates.items():
                    self.result.pairs[name].append((estimate, waited))  # type: ignore[arg-type]
            talk = self.rng.lognormvariate(*_lognormal(TALK_MEAN, TALK_SD))
            wrap = self.rng.uniform(*WRAP_RANGE)
            agent.status, agent.since = "oncall", now
            self.at(now + talk, "talk_end", (agent, talk, wrap))

    # --- what the daemon reads, and the estimates ---------------------------------------

    def read(
        self, now: float
    ) -> tuple[dict[str, int], list[BusySince], tuple[QueueCounts, QueueCounts]]:
        """What an announcement reads: agents by status, the busy ones since when, the
        window's and the day's counters."""
        by_status: dict[str, int] = {}
        busy = []
        for a in self.agents:
            if a.status == "off":
                continue
            by_status[a.status] = by_status.get(a.status, 0) + 1
            if a.status != "free":
                busy.append(BusySince(a.status, a.since, _after(a, now)))
        return by_status, busy, self.window.counts(now)

    def _arrive(self, now: float, n: int) -> None:
        agents, busy, (counts, day) = self.read(now)
        window = 60.0 * WINDOW_MINUTES
        position = len(self.queue) + 1
        estimates: dict[str, float | None] = dict.fromkeys(ESTIMATORS)
        load = queue_load(agents, counts, window, busy, now, day)
        before = queue_load(agents, counts, window)  # numbers per status, the window only
        if load is not None and before is not None:  # else the daemon says the position only
            estimates["ccd"] = estimate_wait(load, position).seconds
            estimates["counts"] = estimate_wait(before, position).seconds
            serving = load.free_agents + len(load.busy)
            if serving:
                estimates["position"] = max(0, position - load.free_agents) * load.handle / serving
            estimates["constant"] = constant_estimate(counts.asa() or 0.0, position).seconds
            if self.floor is not None and n % FLOOR_EVERY == 0:
                estimates["floor"] = self._floor(now, position, self.floor)
        if self.floor is None:
            del estimates["floor"]
        caller = Caller(n, now, estimates)
        self.queue.append(caller)
        self.at(now + self.rng.expovariate(1 / PATIENCE_MEAN), "abandon", caller)

    def _floor(self, now: float, position: int, rng: random.Random) -> float:
        """The best estimate from what the daemon knows, were the talk, wrap-up and patience
        laws known exactly and the median found by simulating the queue's futures: each busy
        agent's call ends after what is left of a talk time longer than it has lasted, breaks
        end as the daemon assumes; no break, shift start or end that has not begun is known."""
        talk_law = _lognormal(TALK_MEAN, TALK_SD)
        waits = []
        for _ in range(FLOOR_RUNS):
            releases = []
            for a in self.agents:
                elapsed, after = now - a.since, _after(a, now)
                if a.status == "off" or (a.status != "break" and after == "logged_out"):
                    continue
                if a.status == "free":
                    at = 0.0
                elif a.status == "break":
                    at = max(BREAK_LENGTH - elapsed, OVERRUN_SHARE * BREAK_LENGTH)
                elif a.status == "wrapup":
                    at = max(0.0, rng.uniform(max(elapsed, WRAP_RANGE[0]), WRAP_RANGE[1]) - elapsed)
                else:
                    at = _longer(talk_law, elapsed, rng) - elapsed + rng.uniform(*WRAP_RANGE)
                releases.append(
                    at + (BREAK_LENGTH if a.status != "break" and after == "break" else 0)
                )
            heapq.heapify(releases)
            patience = [rng.expovariate(1 / PATIENCE_MEAN) for _ in range(position - 1)]
            ahead, wait = 0, math.inf  # the callers ahead (in order) served or gone so far
            while releases:
                at = heapq.heappop(releases)
                while ahead < len(patience) and patience[ahead] < at:
                    ahead += 1  # gave up before this release
                if ahead == len(patience):
                    wait = at  # nobody left ahead: this release is the caller's
                    break
                ahead += 1
                handle = rng.lognormvariate(*talk_law) + rng.uniform(*WRAP_RANGE)
                heapq.heappush(releases, at + handle)
            waits.append(wait)
        return statistics.median(waits)


def _longer(law: tuple[float, float], elapsed: float, rng: random.Random) -> float:
    """A log-normal talk time drawn among those longer than ``elapsed`` (inverse CDF)."""
    mu, sigma = law
    if elapsed <= 0:
        return rng.lognormvariate(mu, sigma)
    left = 0.5 * math.erfc((math.log(elapsed) - mu) / (sigma * math.sqrt(2)))  # P(X > elapsed)
    if left < 1e-12:
        return elapsed * 1.05
    p = left * (1.0 - rng.random())  # in (0, left]: the upper tail beyond elapsed
    return max(elapsed, math.exp(mu - sigma * _NORMAL.inv_cdf(p)))


def _after(agent: Agent, now: float) -> str:
    """What the daemon knows a busy agent does after the call: a break it asked for, the
    logout at the end of its shift, or the next caller."""
    if now >= agent.end > agent.start:
        return "logged_out"
    return "break" if agent.wants_break else "ready"


def _lognormal(mean: float, sd: float) -> tuple[float, float]:
    """mu and sigma of the log-normal with this mean and standard deviation."""
    sigma2 = math.log(1 + (sd / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


def simulate(
    seed: int = 1, hours: int = 10, days: int = 1, agents: int = 12, floor: bool = False
) -> Result:
    """``days`` simulated days (seeds seed, seed+1, ...) of ``agents`` agents, their callers
    pooled. ``floor``: one caller in :data:`FLOOR_EVERY` also gets the best estimate there
    could be (``Day._floor``), and only those callers are measured."""
    total = Result()
    for day in range(days):
        total.add(Day(seed + day, hours, agents, floor).run())
    return total


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, comma-separated: {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=_numbers, default=DEFAULT_AGENTS,
                        help="centre sizes, comma-separated (default 5,12,30,80)")  # fmt: skip
    parser.add_argument("--seeds", type=_numbers, default=DEFAULT_SEEDS,
                        help="seeds, comma-separated (default 1,11,21)")  # fmt: skip
    parser.add_argument("--days", type=int, default=2, help="days per seed (default 2)")
    parser.add_argument("--hours", type=int, default=10, choices=range(1, 11))
    parser.add_argument("--floor", action="store_true",
                        help=f"also the best estimate there could be (slow; one caller in "
                             f"{FLOOR_EVERY} is measured)")  # fmt: skip
    args = parser.parse_args(argv)
    shown = ESTIMATORS if args.floor else ESTIMATORS[:-1]
    seeds = ",".join(map(str, args.seeds))
    print(
        f"MAE of the estimate at entry / mean real wait of the callers served; "
        f"{args.days} day(s) of {args.hours} h per seed, seeds {seeds} pooled "
        f"(per-seed range in brackets)"
    )
    names = "".join(f"{name:>22}" for name in shown)
    print(f"{'agents':>6} {'served':>7} {'mean wait':>9}{names}")
    for agents in args.agents:
        total = Result()
        shares: dict[str, list[float]] = {name: [] for name in shown}
        for seed in args.seeds:
            result = simulate(seed, args.hours, args.days, agents, args.floor)
            for name, (_, _, share) in result.errors().items():
                shares[name].append(share)
            total.add(result)
        errors = total.errors()
        cells = "".join(
            f"{errors[name][2] * 100:>8.1f}% [{min(shares[name]) * 100:4.1f}-"
            f"{max(shares[name]) * 100:4.1f}]"
            for name in shown
        )
        print(f"{agents:>6} {total.served:>7} {errors['ccd'][1]:>8.1f}s{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
