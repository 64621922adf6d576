"""The daemon's Prometheus metrics (``/metrics``), with the Prometheus client library.

Theory of operation
-------------------
* One :class:`DaemonMetrics` per daemon, on its own ``CollectorRegistry`` (no global state):
  ``render()`` is the exposition (``generate_latest``), every series with HELP and TYPE.
* Counters and histograms are driven by the engine's facts: every fact goes through
  ``CallIo.fact`` (ccd.engine.io), which hands it to :meth:`DaemonMetrics.fact`. The one
  mapping from fact names to series is :data:`FACT_COUNTERS` (plus the two waiting-time
  histograms in :meth:`DaemonMetrics.fact`); the fact names are the log event names.
  ``inc(name)`` keeps the daemon's own counters (``redis_errors_total`` ...).
  Counters are per daemon: sum them over the daemons of a center.
* Gauges that describe the whole center (calls waiting, longest wait, agents by state) are
  read at scrape time from a :class:`QueueGauges` provider, never computed on the dispatcher;
  a provider that fails (Redis down) leaves them out of that scrape and counts the failure.
* The daemon's own health is read at scrape time through callables: inbox depth, ESL
  connected, resynchronised, open HTTP connections.
* Label values are bounded: a queue not in the configuration is counted as ``other``, a
  fact by its name (a fixed set). Nothing from
  the configuration is exposed, so no secret can be.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ccd.core.stats_view import QueueFigures, QueueGauges

log = structlog.get_logger()

__all__ = [
    "CONTENT_TYPE",
    "FACT_COUNTERS",
    "DaemonMetrics",
    "QueueFigures",
    "QueueGauges",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Seconds: from sub-second routing to the 30 s overflow and beyond.
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300, 600)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: fact name → the per-queue counter it increments (ccd_queue_<counter>_total{queue}).
FACT_COUNTERS: Mapping[str, str] = {
    "call.queued": "calls_offered",
    "call.bridged": "calls_answered",
    "call.abandoned": "calls_abandoned",
    "call.overflow": "calls_overflowed",
    "call.voicemail": "calls_voicemail",
    "call.unanswered": "calls_unanswered",
    "agent.offered": "agent_offers",
    "agent.no_answer": "agent_no_answers",
    "call.callback_requested": "callbacks_stored",
    "callback.connected": "callbacks_connected",
    "callback.unreached": "callbacks_unreached",
}
_COUNTER_HELP = {
    "calls_offered": "Calls that entered the queue",
    "calls_answered": "Queue calls bridged to an agent",
    "calls_abandoned": "Callers who hung up while waiting or ringing",
    "calls_overflowed": "Calls that reached the overflow time (callback offer)",
    "calls_voicemail": "Calls sent to the queue's voicemail",
    "calls_unanswered": "Calls hung up after the last candidate (on_exhausted = hangup)",
    "agent_offers": "Offers of a queue call to an agent (each ring)",
    "agent_no_answers": "Offers not answered (no answer, busy, rejected, failed)",
    "callbacks_stored": "Callback requests stored from the callback offer",
    "callbacks_connected": "Callback attempts that connected customer and agent",
    "callbacks_unreached": "Callback requests that ran out of attempts (kept as unreached)",
}
#: Facts that end a call's wait: its first-offer bookkeeping is dropped.
_CALL_ENDS = frozenset(
    {"call.bridged", "call.abandoned", "call.voicemail", "call.unanswered",
     "call.callback_requested", "call.ended"}
)  # fmt: skip
#: Counters the daemon increments by name (``inc``): name → help.
_NAMED = {
    "redis_errors_total": "Dispatcher steps that failed because Redis did not answer",
    "dispatch_errors_total": "Dispatcher steps that failed with an unexpected error",
    "resyncs_total": "Resynchronisations with FreeSWITCH (connect, reconnect, periodic)",
    "resyncs_asked_total": "Resynchronisations asked of FreeSWITCH",
    "redis_data_lost_total": "Times Redis came back without its data and the daemon rebuilt "
    "what it knew (configure Redis with appendonly yes)",
}


class DaemonMetrics:
    """Every series of one daemon; see the module docstring."""

    def __init__(self, known_queues: Callable[[], Container[str]] = tuple) -> None:
        # No ``*_created`` twin of every counter and histogram: a series per label set that
        # dashboards do not use (a process-wide switch of the client library).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self._known_queues = known_queues
        r = self.registry
        self._queue_counters = {
            name: Counter(f"ccd_queue_{name}", help_text, ["queue"], registry=r)
            for name, help_text in _COUNTER_HELP.items()
        }
        self._offer_wait = Histogram(
            "ccd_queue_offer_wait_seconds",
            "Seconds from queue entry to the call's first offer to an agent",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self._answer_wait = Histogram(
            "ccd_queue_answer_wait_seconds",
            "Seconds from queue entry to the bridge with an agent (answered calls)",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self._facts = Counter("ccd_facts", "Facts logged, by log event name", ["name"], registry=r)
        self._esl_events = Counter(
            "ccd_esl_events", "ESL events handled by the dispatcher", registry=r
        )
        self._event_lag = Histogram(
            "ccd_esl_event_lag_seconds",
            "Seconds from an event's Event-Date-Timestamp to its handling by the dispatcher",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._loop_lag = Histogram(
            "ccd_dispatcher_lag_seconds",
            "Seconds a heartbeat waited in the inbox before the dispatcher took it",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._reloads = Counter(
            "ccd_config_reloads", "Configuration reloads, by result", ["result"], registry=r
        )
        self._named = {
            name: Counter(f"ccd_{name.removesuffix('_total')}", help_text, registry=r)
            for name, help_text in _NAMED.items()
        }
        self._first_offered: set[str] = set()  # calls offered once already (this daemon)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._gauges = _ScrapeCollector()
        r.register(self._gauges)

    # ------------------------------------------------------------------ wiring
    def watch(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge ``ccd_<name>`` read at scrape time from ``read()``."""
        Gauge(f"ccd_{name}", help_text, registry=self.registry).set_function(read)

    def watch_counters(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter ``ccd_<name>_total`` whose value another object keeps."""
        self._gauges.counters.append((f"ccd_{name}", help_text, read))

    def use_queue_gauges(self, provider: QueueGauges, now: Callable[[], float]) -> None:
        self._gauges.provider, self._gauges.now = provider, now

    # ------------------------------------------------------------------ what happens
    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: the library validates and locks at each call,
        and the engine says several facts a call (names and queues are few: bounded)."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def fact(self, name: str, data: Mapping[str, Any]) -> None:
        """A fact the engine logged (CallIo.fact): its counters and histograms."""
        self._child(self._facts, name).inc()
        counter = FACT_COUNTERS.get(name)
        if counter is None:
            return
        queue = self._queue(data.get("queue"))
        self._child(self._queue_counters[counter], queue).inc()
        call = str(data.get("call", ""))
        waited = data.get("waited")
        if name == "agent.offered" and call and call not in self._first_offered:
            if len(self._first_offered) >= 100_000:  # calls whose end this daemon never saw
                self._first_offered.clear()
            self._first_offered.add(call)
            if isinstance(waited, int | float):
                self._child(self._offer_wait, queue).observe(max(0.0, waited))
        elif name == "call.bridged" and isinstance(waited, int | float):
            self._child(self._answer_wait, queue).observe(max(0.0, waited))
        if name in _CALL_ENDS:
            self._first_offered.discard(call)

    def esl_event(self, timestamp_us: str, received: float) -> None:
        """An ESL event taken by the dispatcher at wall time ``received``; ``timestamp_us``
        is its Event-Date-Timestamp (microseconds since the epoch, as FreeSWITCH sends it)."""
        self._esl_events.inc()
        if timestamp_us.isdigit():
            self._event_lag.observe(max(0.0, received - int(timestamp_us) / 1e6))

    def dispatcher_lag(self, seconds: float) -> None:
        self._loop_lag.observe(max(0.0, seconds))

    def reloaded(self, ok: bool) -> None:
        self._reloads.labels("ok" if ok else "failed").inc()

    def inc(self, name: str, value: float = 1.0) -> None:
        """A counter by name (``redis_errors_total`` ...); a name not declared here gets its
        own counter the first time (HELP says so), so a new caller never breaks /metrics."""
        counter = self._named.get(name)
        if counter is None:
            base = name.removesuffix("_total")
            counter = Counter(f"ccd_{base}", f"ccd counter {base}", registry=self.registry)
            self._named[name] = counter
        counter.inc(value)

    @property
    def counters(self) -> dict[str, float]:
        """The named counters' values (``resyncs_total`` ...), for tests and the bench."""
        return {
            name: self.registry.get_sample_value(f"ccd_{name.removesuffix('_total')}_total") or 0.0
            for name in self._named
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _queue(self, queue: Any) -> str:
        name = str(queue or "")
        return name if name in self._known_queues() else "other"


class _ScrapeCollector(Collector):
    """Series read at scrape time: the queue figures and counters other objects keep."""

    def __init__(self) -> None:
        self.provider: QueueGauges | None = None
        self.now: Callable[[], float] = time.time
        self.counters: list[tuple[str, str, Callable[[], float]]] = []
        self.failures = 0
        self._said = 0.0

    def describe(self) -> Iterable[Metric]:
        return []  # generated per scrape

    def collect(self) -> Iterator[Metric]:
        for name, help_text, read in self.counters:
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], read())
            yield family
        if self.provider is None:
            return
        try:
            figures = self.provider.figures(self.now())
        except Exception as exc:  # Redis down: this scrape has no queue figures
            self.failures += 1
            if time.monotonic() - self._said >= 60:
                self._said = time.monotonic()
                log.warning("metrics.queue_figures_failed", error=str(exc))
            figures = None
        failed = CounterMetricFamily(
            "ccd_queue_figures_failures", "Scrapes whose queue figures could not be read"
        )
        failed.add_metric([], self.failures)
        yield failed
        if figures is None:
            return
        waiting = GaugeMetricFamily(
            "ccd_queue_waiting_calls", "Calls waiting in the queue now", labels=["queue"]
        )
        for queue, n in sorted(figures.waiting.items()):
            waiting.add_metric([queue], n)
        yield waiting
        longest = GaugeMetricFamily(
            "ccd_queue_longest_wait_seconds",
            "Seconds the longest-waiting call of the queue has waited (0: none waiting)",
            labels=["queue"],
        )
        for queue, seconds in sorted(figures.longest_wait.items()):
            longest.add_metric([queue], seconds)
        yield longest
        agents = GaugeMetricFamily(
            "ccd_queue_agents",
            "Agents carrying the queue's tags, by state: free, ringing, oncall, wrapup, break, "
            "unregistered, logged_out (a state the provider does not count is absent)",
            labels=["queue", "state"],
        )
        for queue, states in sorted(figures.agents.items()):
            for state, n in sorted(states.items()):
                agents.add_metric([queue, state], n)
        yield agents
        yield from _today_families(figures)


#: The day's counters shown as ccd_queue_today_calls{queue,outcome} (README, "Statistics").
TODAY_OUTCOMES = (
    ("offered", "offered"), ("answered", "answered"), ("answered_sl", "answered_in_sl"),
    ("abandoned", "abandoned"), ("abandoned_short", "abandoned_short"),
    ("overflowed", "overflowed"), ("callback_requested", "callback_requested"),
    ("voicemail", "voicemail"), ("unanswered", "unanswered"), ("handled", "handled"),
    ("callbacks_stored", "callbacks_stored"), ("callbacks_connected", "callbacks_connected"),
    ("callbacks_unreached", "callbacks_unreached"),
)  # fmt: skip


def _today_families(figures: QueueFigures) -> Iterator[Metric]:
    """The day's statistics per queue (reset at the queue's midnight, so gauges): the
    counts, service level by both definitions, ASA, AHT and abandonment. A ratio with nothing
    to divide by (no answered call yet) is absent, not zero."""
    calls = GaugeMetricFamily(
        "ccd_queue_today_calls",
        "Calls of the queue's day so far, by outcome (reset at the queue's midnight)",
        labels=["queue", "outcome"],
    )
    sl = GaugeMetricFamily(
        "ccd_queue_service_level_ratio",
        "Today: answered within the queue's service_level_time / answered (definition "
        "answered), or / (answered + abandoned after short_abandon_time) (answered_abandoned)",
        labels=["queue", "definition"],
    )
    asa = GaugeMetricFamily(
        "ccd_queue_asa_seconds",
        "Today: average seconds waited by answered calls",
        labels=["queue"],
    )
    aht = GaugeMetricFamily(
        "ccd_queue_aht_seconds", "Today: average talk + wrap-up seconds per handled call",
        labels=["queue"],
    )  # fmt: skip
    abandon = GaugeMetricFamily(
        "ccd_queue_abandon_ratio",
        "Today: abandoned / offered (definition all), or abandoned after short_abandon_time / "
        "(offered - short abandons) (definition after_short)",
        labels=["queue", "definition"],
    )
    for queue, counts in sorted(figures.today.items()):
        for field_name, outcome in TODAY_OUTCOMES:
            calls.add_metric([queue, outcome], getattr(counts, field_name))
        for family, labels, value in (
            (sl, [queue, "answered"], counts.service_level()),
            (sl, [queue, "answered_abandoned"], counts.service_level_abandoned()),
            (asa, [queue], counts.asa()),
            (aht, [queue], counts.aht()),
            (abandon, [queue, "all"], counts.abandon_rate()),
            (abandon, [queue, "after_short"], counts.abandon_rate_long()),
        ):
            if value is not None:
                family.add_metric(labels, value)
    yield from (calls, sl, asa, aht, abandon)
