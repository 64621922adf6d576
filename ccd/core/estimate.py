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
  break or never), in wrap-up (what is left of the recent wrap-up), on break (back after a
  typical break, soon when it has lasted longer);
* the queue's recent handle times (talk + wrap-up) for the calls the agents take next, random
  too: what is left of an agent's call and j more calls are taken as the log-normal of the
  same mean and variance;
* the callers ahead give up at the queue's recent abandon rate, so fewer releases are needed.

Up to :data:`ORDER_LIMIT` callers ahead the number of releases by t (each agent freeing up 0,
1, 2, ... times) is a sum of independent per-agent counts (a small dynamic programme; with
more than :data:`MANY_AGENTS` agents, those unlikely to free up by t are counted together as
a Poisson number), bisected for its median; further back a deterministic walk of the releases
is as good and cheaper. Agents shared with other queues count with ``share``; with no agent
known, the answer rate alone gives the estimate. How long each call, wrap-up and break has
lasted comes from ``stats:busy:<queue>`` (:func:`ccd.core.announce.queue_load`); unknown, a
call is taken at an unknown point of a typical one.

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
#: The order-statistic estimate is used up to this many callers ahead; further back the
#: fluid walk is as good and cheaper.
ORDER_LIMIT = 60
#: ... and while (callers ahead + 1) x agents stays within this: the programme's cost grows
#: with both, and it runs on the dispatcher (200 agents, 50 ahead: 22 ms an announcement).
#: Beyond it the fluid walk, whose error is as small when many agents free up.
ORDER_WORK = 1500
#: Beyond this many agents, those with less than :data:`RARE` chance of freeing up by t
#: are counted together: their number of releases is taken as Poisson (cheaper, as exact).
MANY_AGENTS = 64
RARE = 0.05
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
    abandoned: float = 0
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
        self.mean = math.exp(self.mu + sigma2 / 2)
        self.var = self.mean**2 * (math.exp(sigma2) - 1)

    def survival(self, x: float) -> float:
        if x <= 0:
            return 1.0
        return 0.5 * math.erfc((math.log(x) - self.mu) / (self.sigma * _SQRT2))

    def left_by(self, elapsed: float, t: float) -> float:
        """P(a call already ``elapsed`` long ends within ``t`` more seconds)."""
        if t <= 0:
            return 0.0
        alive = self.survival(elapsed)
        return 1.0 - self.survival(elapsed + t) / alive if alive > 1e-12 else 1.0

    def residual(self, elapsed: float) -> tuple[float, float]:
        """Mean and variance of what is left of a call already ``elapsed`` long."""
        if elapsed <= 0:
            return self.mean, self.var
        z = (math.log(elapsed) - self.mu) / self.sigma
        alive = 0.5 * math.erfc(z / _SQRT2)
        if alive < 1e-12:  # far beyond any call: a short while more
            return OVERRUN_SHARE * self.mean, (OVERRUN_SHARE * self.mean) ** 2
        s = self.sigma
        first = self.mean * 0.5 * math.erfc((z - s) / _SQRT2) / alive
        second = math.exp(2 * self.mu + 2 * s * s) * 0.5 * math.erfc((z - 2 * s) / _SQRT2) / alive
        return max(first - elapsed, 0.0), max(second - first * first, 0.0)


_SQRT2 = math.sqrt(2.0)


class _Agent:
    """One agent serving the queue: when it frees up for a caller, once and again. The first
    time when its call (with the wrap-up, and a break it asked for after it) ends, or at a
    fixed time (wrap-up, break); the next ones after calls of the queue's handle time (talk
    log-normal: what is left of the first and j more calls is taken as the log-normal of the
    same mean and variance)."""

    __slots__ = ("_alive", "_elapsed", "_later", "_mean", "_shift", "_talk", "_var", "fixed")

    def __init__(
        self, talk: _Talk, wrapup: float, *, elapsed: float = 0.0, pause: float = 0.0,
        fixed: float | None = None,
    ) -> None:  # fmt: skip
        self._talk, self._elapsed, self.fixed = talk, elapsed, fixed
        if fixed is None:
            self._shift = wrapup + pause
            self._alive = talk.survival(elapsed)
            rest, self._var = talk.residual(elapsed)
            self._mean = rest + self._shift
        else:
            self._mean, self._var = fixed, 0.0
        self._later: list[tuple[float, float]] = []  # per j: (log median, 1 / (sigma sqrt 2))

    def first(self, t: float) -> float:
        if self.fixed is not None:
            return float(t >= self.fixed)
        x = t - self._shift
        if x <= 0:
            return 0.0
        if self._alive <= 1e-12:
            return 1.0
        return 1.0 - self._talk.survival(self._elapsed + x) / self._alive

    def counts(self, t: float, need: int, handle: float, spread: float) -> list[float]:
        """[P(it frees up at least m times by t), m = 1, 2, ...], up to ``need`` or until
        nothing is left to it."""
        p = self.first(t)
        out = []
        later = self._later
        log_t = math.log(t) if t > 0 else -math.inf
        j = 0
        while p > 1e-9 and j < need:
            out.append(p)
            if j == len(later):
                mean, var = self._mean + (j + 1) * handle, self._var + (j + 1) * spread
                sigma2 = math.log(1 + var / (mean * mean))
                later.append((math.log(mean) - sigma2 / 2, 1 / math.sqrt(2 * sigma2)))
            median, scale = later[j]
            j += 1
            p = min(p, 0.5 * math.erfc((median - log_t) * scale))
        return out


def _agents(load: QueueLoad, talk: _Talk, wrapup: float) -> list[_Agent]:
    """The agents that will take callers; free ones have taken the first callers already
    and count from the end of that call."""
    out = []
    for agent in load.busy:
        if agent.then == "logged_out":
            continue
        pause = load.break_length if agent.then == "break" else 0.0
        if agent.status == "wrapup":
            left = max(0.0, wrapup - (agent.elapsed or 0.0))
            out.append(_Agent(talk, wrapup, fixed=left + pause))
        else:
            elapsed = agent.elapsed or 0.0 if agent.status == "oncall" else 0.0
            out.append(_Agent(talk, wrapup, elapsed=elapsed, pause=pause))
    for elapsed in load.on_break:
        left = load.break_length / 2 if elapsed is None else load.break_length - elapsed
        out.append(_Agent(talk, wrapup, fixed=max(left, OVERRUN_SHARE * load.break_length)))
    out += [_Agent(talk, wrapup)] * load.free_agents
    return out


def _order_statistic(load: QueueLoad, ahead: int, talk: _Talk, wrapup: float) -> float:
    """The median time by which the callers ahead are served and one more agent frees up:
    the number of releases by t is a sum of independent per-agent counts (0, 1, 2, ...)."""
    agents = _agents(load, talk, wrapup)
    many = len(agents) > MANY_AGENTS
    handle, spread = talk.mean + wrapup, talk.var
    hazard = load.abandon_hazard

    def served_by(t: float) -> float:
        # The callers ahead give up meanwhile: fewer releases are needed.
        need = max(1, round(1 + ahead * math.exp(-hazard * t / 2)))
        below = [1.0]  # P(exactly j releases by t), j < need (up to the last with a chance)
        rare = 0.0  # releases expected of the agents unlikely to free up by t (many agents)
        for agent in agents:
            probs = agent.counts(t, need, handle, spread)
            if not probs:
                continue
            if probs[0] < RARE and many:
                rare += sum(probs)
                continue
            exact = [1.0 - probs[0]]  # P(exactly m) for this agent, m = 0, 1, ...
            exact += [probs[m] - probs[m + 1] for m in range(len(probs) - 1)]
            exact.append(probs[-1])
            size = min(need, len(below) + len(exact) - 1)
            new = [0.0] * size
            for m, pm in enumerate(exact[:size]):
                if pm > 0:
                    end = min(size, m + len(below))
                    new[m:end] = [a + b * pm for a, b in zip(new[m:end], below, strict=False)]
            below = new
        if rare > 0:  # their number is Poisson (Le Cam): convolved once
            term, poisson = math.exp(-rare), []
            for j in range(need):
                poisson.append(term)
                term *= rare / (j + 1)
            below = [
                sum(below[k] * poisson[j - k] for k in range(min(j + 1, len(below))))
                for j in range(need)
            ]
        return 1.0 - sum(below)

    hi = 60.0
    while served_by(hi) < 0.5:
        hi *= 2
        if hi > 86400:
            return hi
    lo = 0.0
    while hi - lo > max(2.0, 0.01 * hi):  # 1 %: it is said in minutes
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
        if ahead < ORDER_LIMIT and (ahead + 1) * load.serving <= ORDER_WORK:
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
