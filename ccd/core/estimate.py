"""The estimated wait of a caller at position k, for position announcements (issue 13).

Theory of operation
-------------------
A waiting caller is served when the callers ahead are gone and one more agent serving the
queue frees up. :func:`estimate_wait` answers the median of that moment from what the daemon
knows now, not from a constant:

* every agent serving the queue: free (it takes the first callers at once), busy (how long its
  call has lasted: a call of log-normal length with the queue's recent mean talk time is
  likely to end within t seconds with a probability that follows from it; then the recent
  wrap-up; an agent who asked for a break or a logout during the call frees up after the
  break or never), on break (back after a typical break);
* the queue's recent handle times (talk + wrap-up) for the calls the agents take next;
* the callers ahead give up at the queue's recent abandon rate, so fewer releases are needed.

Up to :data:`ORDER_LIMIT` callers ahead the number of agents freed by t is a sum of
independent per-agent counts (a small dynamic programme), bisected for its median; further
back a deterministic walk of the releases is as good and cheaper. Agents shared with other
queues count with ``share``; with no agent known, the answer rate alone gives the estimate.

A caller whose estimate is beyond the overflow horizon (they would reach ``overflow_time``
before an agent) is told so with ``beyond_horizon``: the engine plays the callback offer
instead of a wait. ``scripts/estimate_sim.py`` measures the estimate against the real waits of
a simulated day (README, "Statistics": what was tried and the figures).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BusyAgent", "Estimate", "QueueLoad", "constant_estimate", "estimate_wait"]

#: Handle time assumed while the queue has no recent handled call (seconds).
DEFAULT_TALK = 180.0
DEFAULT_WRAPUP = 15.0
#: Talk times are taken as log-normal with this coefficient of variation (sd / mean).
DEFAULT_TALK_CV = 0.6
#: A call already longer than the typical one is expected to last this share of a typical
#: call more in the fluid walk (handle times have long tails).
OVERRUN_SHARE = 0.3
#: The order-statistic estimate is used up to this many callers ahead (and twice the agents);
#: further back the fluid walk is as good and cheaper.
ORDER_LIMIT = 60
#: The fluid walk's bound on its steps (positions beyond are extrapolated at the full rate).
MAX_STEPS = 2000


@dataclass(frozen=True, slots=True)
class BusyAgent:
    """An agent serving the queue, busy now: ``status`` ringing | oncall | wrapup, for how
    many seconds (None: unknown), and what it does after the call: ``then`` ready (takes the
    next caller), break (asked for a break during the call) or logged_out (logout pending)."""

    status: str
    elapsed: float | None = None
    then: str = "ready"


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """What the statistics and presence say about a queue now.

    ``talk``/``wrapup``: recent mean seconds per handled call (None: none handled recently);
    ``on_break``: seconds each agent of the queue on break has been on it (None: unknown),
    breaks taken as ``break_length`` long; ``abandoned``/``waited_total``: abandons and seconds
    waited by the callers who stopped waiting in the recent window (answered or abandoned);
    ``share``: the part of its agents' time the queue gets (1: agents serve it alone; for
    agents shared with other queues, e.g. its answered calls / all answered calls of those
    agents); ``answered`` in the last ``window`` seconds: the answer rate, used alone when no
    agent is known to serve the queue."""

    free_agents: int
    busy: tuple[BusyAgent, ...] = ()
    talk: float | None = None
    wrapup: float | None = None
    talk_cv: float = DEFAULT_TALK_CV
    on_break: tuple[float | None, ...] = ()
    break_length: float = 900.0
    abandoned: int = 0
    waited_total: float = 0.0
    answered: int = 0
    window: float = 900.0
    share: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError("share must be in (0, 1]")

    @property
    def handle(self) -> float:
        wrapup = DEFAULT_WRAPUP if self.wrapup is None else self.wrapup
        return (self.talk or DEFAULT_TALK) + wrapup

    @property
    def abandon_hazard(self) -> float:
        """Callers ahead give up at this rate per second each: abandons / seconds waited."""
        if self.abandoned <= 0 or self.waited_total <= 0:
            return 0.0
        return self.abandoned / self.waited_total

    @property
    def serving(self) -> int:
        """Agents that will take callers: free, busy and staying, on break."""
        staying = sum(1 for a in self.busy if a.then != "logged_out")
        return self.free_agents + staying + len(self.on_break)


@dataclass(frozen=True, slots=True)
class Estimate:
    """``seconds`` until an agent takes the call (None: no agent serves the queue now);
    ``beyond_horizon``: the caller would reach the overflow time first."""

    seconds: float | None
    beyond_horizon: bool = False

    @property
    def minutes(self) -> int | None:
        """Whole minutes to announce, rounded up (at least 1 when there is any wait)."""
        if self.seconds is None:
            return None
        return max(1, math.ceil(self.seconds / 60)) if self.seconds > 0 else 0


class _Talk:
    """Log-normal talk times of a given mean and coefficient of variation."""

    def __init__(self, mean: float, cv: float) -> None:
        sigma2 = math.log(1 + max(cv, 0.05) ** 2)
        self.sigma = math.sqrt(sigma2)
        self.mu = math.log(max(mean, 1.0)) - sigma2 / 2

    def survival(self, x: float) -> float:
        if x <= 0:
            return 1.0
        return 0.5 * math.erfc((math.log(x) - self.mu) / (self.sigma * math.sqrt(2)))

    def left_by(self, elapsed: float, t: float) -> float:
        """P(a call already ``elapsed`` long ends within ``t`` more seconds)."""
        if t <= 0:
            return 0.0
        alive = self.survival(elapsed)
        return 1.0 - self.survival(elapsed + t) / alive if alive > 1e-12 else 1.0


def _sources(load: QueueLoad, talk: _Talk, wrapup: float, handle: float):
    """Per agent, t -> (P(it frees up for a caller by t), P(twice by t)); free agents have
    taken the first callers already and count from their next call."""

    def fixed(at: float):
        return lambda t: (float(t >= at), float(t >= at + handle))

    out = []
    for agent in load.busy:
        if agent.then == "logged_out":
            continue
        pause = load.break_length if agent.then == "break" else 0.0
        if agent.status == "wrapup":
            out.append(fixed(max(0.0, wrapup - (agent.elapsed or 0.0)) + pause))
            continue
        elapsed = agent.elapsed or 0.0 if agent.status == "oncall" else 0.0

        def call(t: float, e: float = elapsed, p: float = pause) -> tuple[float, float]:
            first = talk.left_by(e, t - wrapup - p)
            return first, min(first, talk.left_by(e, t - wrapup - p - handle))

        out.append(call)
    for elapsed in load.on_break:
        left = load.break_length / 2 if elapsed is None else load.break_length - elapsed
        out.append(fixed(max(left, OVERRUN_SHARE * load.break_length)))
    for _ in range(load.free_agents):
        out.append(lambda t: (talk.left_by(0.0, t - wrapup), 0.0))
    return out


def _order_statistic(load: QueueLoad, ahead: int, talk: _Talk, wrapup: float) -> float:
    """The median time by which the callers ahead are served and one more agent frees up:
    the number of agents freed by t is a sum of independent per-agent counts (0, 1, 2)."""
    sources = _sources(load, talk, wrapup, load.handle)
    hazard = load.abandon_hazard

    def served_by(t: float) -> float:
        # The callers ahead give up meanwhile: fewer releases are needed.
        need = max(1, round(1 + ahead * math.exp(-hazard * t / 2)))
        dist = [1.0] + [0.0] * need
        for source in sources:
            p1, p2 = source(t)
            q = (1.0 - p1, p1 - p2, p2)
            new = [0.0] * (need + 1)
            for n, pn in enumerate(dist):
                if pn:
                    for step, pq in enumerate(q):
                        new[min(n + step, need)] += pn * pq
            dist = new
        return dist[need]

    hi = 60.0
    while served_by(hi) < 0.5:
        hi *= 2
        if hi > 86400:
            return hi
    lo = 0.0
    for _ in range(24):
        mid = (lo + hi) / 2
        if served_by(mid) >= 0.5:
            hi = mid
        else:
            lo = mid
    return hi


def _fluid(load: QueueLoad, ahead: int, talk: float, wrapup: float) -> float:
    """Without randomness: agents free up in turn (each at what is left of a typical call),
    each takes the next caller for a typical handle time; the callers ahead give up at the
    queue's abandon rate. The release that finds nobody ahead is the caller's."""
    handle = talk + wrapup
    releases = []
    for agent in load.busy:
        if agent.then == "logged_out":
            continue
        pause = load.break_length if agent.then == "break" else 0.0
        releases.append(_remaining(agent, talk, wrapup) + pause)
    for elapsed in load.on_break:
        left = load.break_length / 2 if elapsed is None else load.break_length - elapsed
        releases.append(max(left, OVERRUN_SHARE * load.break_length))
    releases += [handle] * load.free_agents  # they took the first callers already
    heapq.heapify(releases)
    hazard = load.abandon_hazard
    left, at = float(ahead), 0.0
    for _ in range(MAX_STEPS):
        release = heapq.heappop(releases)
        left *= math.exp(-hazard * (release - at))
        at = release
        if left < 0.5:
            return at
        left -= 1.0
        heapq.heappush(releases, at + handle)
    return at + left * handle / max(1, len(releases))


def _remaining(agent: BusyAgent, talk: float, wrapup: float) -> float:
    """Seconds until a busy agent is free, from what a typical call is."""
    elapsed = agent.elapsed
    if agent.status == "wrapup":
        return wrapup / 2 if elapsed is None else max(0.0, wrapup - elapsed)
    if agent.status == "ringing":
        return talk + wrapup
    if elapsed is None:
        return talk / 2 + wrapup  # unknown phase: half a call on average
    return max(talk - elapsed, OVERRUN_SHARE * talk) + wrapup


def estimate_wait(
    load: QueueLoad,
    position: int,
    *,
    waited: float = 0.0,
    horizon: float | None = None,
) -> Estimate:
    """The wait still ahead of the caller at ``position`` (1: served next).

    Up to :data:`ORDER_LIMIT` callers ahead: the median of the time the callers ahead and
    this one are served, from each agent's chance to free up by then (log-normal talk times
    given how long the call has lasted, breaks, pending logouts; :func:`_order_statistic`).
    Further back: the fluid walk (:func:`_fluid`). Both let the callers ahead abandon at the
    queue's recent rate. ``waited``: seconds the caller has waited already; ``horizon``: the
    queue's overflow time (None or 0: none): beyond it when ``waited`` + estimate reaches it.
    """
    if position < 1:
        raise ValueError("position starts at 1")
    if load.serving <= 0:
        if load.answered <= 0 or load.window <= 0:
            return Estimate(None, bool(horizon))
        # No agent known to serve the queue, yet calls were answered: the answer rate alone.
        seconds = position * load.window / load.answered
        return Estimate(round(seconds, 1), bool(horizon) and waited + seconds >= horizon)
    ahead = position - 1
    if ahead < load.free_agents:
        seconds = 0.0
    else:
        ahead -= load.free_agents
        talk = load.talk or DEFAULT_TALK
        wrapup = DEFAULT_WRAPUP if load.wrapup is None else load.wrapup
        if ahead < min(ORDER_LIMIT, 2 * load.serving):
            seconds = _order_statistic(load, ahead, _Talk(talk, load.talk_cv), wrapup)
        else:
            seconds = _fluid(load, ahead, talk, wrapup)
        seconds /= load.share
    beyond = bool(horizon) and waited + seconds >= horizon  # type: ignore[operator]
    return Estimate(round(seconds, 1), beyond)


def constant_estimate(asa: float | None, position: int) -> Estimate:
    """The naive estimate: the queue's recent average wait whatever the position (what a
    "hold time" announcement of many systems says); the simulation's baseline."""
    del position
    return Estimate(None if asa is None else round(asa, 1))


def summary_error(pairs: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """(mean absolute error, mean real wait, MAE as a share of the mean wait) of
    (estimate, real wait) pairs."""
    if not pairs:
        return 0.0, 0.0, 0.0
    mae = sum(abs(e - r) for e, r in pairs) / len(pairs)
    mean = sum(r for _, r in pairs) / len(pairs)
    return mae, mean, (mae / mean if mean > 0 else 0.0)
