"""The composition root: builds every object, wires them, runs the dispatcher.

Theory of operation
-------------------
FreeSWITCH's events reach the ESL adapter's reader greenlet, which only puts
them on ``inbox``. One dispatcher greenlet takes items off ``inbox`` one at a
time and hands them to the call-control service, so every state change happens
in one place, in arrival order. A ticker greenlet puts a ``Tick`` on the same
queue so deadlines (ring time, wrap-up) are handled in order with events.

On every (re)connect the dispatcher resynchronises before it handles anything
else: ``show channels as json`` and the registration list tell what is live
now; Redis holds everything that crosses calls. The daemon's memory is a cache.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gevent
import gevent.event
import redis
import structlog

from ccd.adapters.clock import ScaledClock
from ccd.adapters.esl import Connected, Disconnected, EslClient, JobFailed, Reconnected
from ccd.adapters.http import HttpServer, Response, json_response, text_response
from ccd.adapters.inbox import Inbox
from ccd.adapters.inbox_items import (
    GROUP,
    Lanes,
    Notified,
    NotifyGap,
    Received,
    ResyncStep,
    Tick,
)
from ccd.adapters.metrics import CONTENT_TYPE, DaemonMetrics
from ccd.adapters.snapshot import Snapshot, SnapshotReader
from ccd.adapters.sse import FeedEndpoint
from ccd.adapters.wallboard import WALLBOARD_CONTENT_TYPE, WALLBOARD_HEADERS, wallboard_page
from ccd.adapters.webhook import WebhookSender
from ccd.config import Config, ConfigError
from ccd.config.live import LiveConfig
from ccd.config.rules import stats_rules_from_config
from ccd.core.esl_wire import EslEvent
from ccd.engine.control import CallControl
from ccd.engine.disposition import DispositionService
from ccd.store.callback import CallbackStore
from ccd.store.customer import CustomerStore
from ccd.store.feed import FeedStore
from ccd.store.node import Nodes, default_node_id
from ccd.store.redis_store import RedisUnavailable, Store, connect_redis
from ccd.store.stats import StatsStore
from ccd.store.sticky import StickyStore
from ccd.supervisor import Supervisor, Task, install_sighup

log = structlog.get_logger()

#: Events the daemon acts on; never ALL (DESIGN.md: ALL costs ~60 events a call). Each
#: one costs parsing on every call, so an event nobody handles is not subscribed.
SUBSCRIBED_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_PARK",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "CUSTOM",
    "sofia::register",
    "sofia::unregister",
    "sofia::expire",
    "vm::maintenance",  # leave-message: a voicemail caller to call back (ccd.core.recovery)
    # Every 20 s: its stamp keeps the reader's measure of FreeSWITCH's clock fresh on a
    # quiet switch (ccd.adapters.inbox_items.Lanes.aged); never queued.
    "HEARTBEAT",
)


class Control(Protocol):
    """What the dispatcher drives: turns events into state changes and commands
    (:class:`ccd.engine.control.CallControl`, built by :func:`build_call_control`)."""

    def resync_request(self) -> bool: ...
    def on_snapshot(self, answer: Snapshot, now: float) -> None: ...
    def flush(self) -> None: ...
    def on_redis_lost(self, now: float) -> None: ...
    def index_tagsets(self) -> int: ...
    def resync_step(self, now: float) -> bool: ...
    def on_event(self, decoded: Any, now: float, job: tuple[str, str] | None = None) -> None: ...
    def on_job_failed(self, job_uuid: str, reason: str, now: float) -> None: ...
    def on_tick(self, now: float) -> None: ...
    def call_view(self, uuid: str) -> dict[str, Any] | None: ...


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        call_control_factory: Any = None,
        clock: Callable[[], float] | None = None,
        config_path: Path | None = None,
    ) -> None:
        #: The running configuration; a reload swaps what it holds (ccd.supervisor).
        self.config = LiveConfig(config)
        config = self.config.current
        self.node_id = config.daemon.node_id or default_node_id()
        self.scale = config.daemon.time_scale
        # Tests running several daemons at a time scale hand them one shared clock.
        self._now = clock or ScaledClock(self.scale).now
        self.inbox = Inbox(config.daemon.inbox_limit)
        self._lanes = Lanes(clock=self.now)  # on the ESL reader: which lane each event takes
        self.metrics = DaemonMetrics(known_queues=lambda: self.config.queues)
        self.redis = connect_redis(config.redis.url, config.redis.socket_timeout)
        self.store = Store.create(self.redis, config.redis.prefix)
        self.nodes = Nodes(self.store, self.node_id, clock=self.now, scale=self.scale)
        self.esl = EslClient(
            config.esl.host,
            config.esl.port,
            config.esl.password,
            events=SUBSCRIBED_EVENTS,
            event_format=config.esl.event_format,
            connect_timeout=config.esl.connect_timeout,
            command_timeout=config.esl.command_timeout,
            backoff_min=config.esl.backoff_min,
            backoff_max=config.esl.backoff_max,
            inbox=self.inbox,
            deliver=self._received,
            on_connected=self._lanes.connected,
        )
        # A resync's questions go beside the dispatcher; the answer comes back as an item.
        self.snapshots = SnapshotReader(self.esl, self.inbox.put)
        self.http = HttpServer(
            config.http.host,
            config.http.port,
            token=config.http.token,
            max_connections=config.http.max_connections,
            read_timeout=config.http.read_timeout,
            max_streams=config.feed.max_clients,
        )
        self._resync_at = -1e18
        self._connected_at, self._sync_overdue = 0.0, False
        self._heap_frozen = False
        self._resync_step_queued = False
        self.synced = False
        self._stopping = gevent.event.Event()
        self._stopped = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._on_stop: list[Any] = []
        self._tick_queued = False
        self._redis_warned = -1e9
        self.control: Control | None = None
        self._stats: tuple[Config, StatsStore] | None = None  # /stats's reader, per config
        if call_control_factory is not None:
            self.control = call_control_factory(self)
            resync = getattr(self.control, "resync", None)
            if resync is not None:
                resync.on_done = self._resynced
        self.supervisor = Supervisor(self, config_path=config_path)
        self.supervisor.wire_metrics(self.metrics)
        self._routes()

    # -- time ---------------------------------------------------------------
    def now(self) -> float:
        """Daemon time: wall time, running ``time_scale`` times faster for tests."""
        return self._now()

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start serving; NodeClash when another live daemon uses this node id."""
        log.info("daemon.starting", node=self.node_id, config=self.config.redacted())
        _, middle, _ = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, GC_FULL_BEFORE_FROZEN)  # _freeze_heap
        self._claim()
        self._index_tagsets()
        try:
            self.http.start()
        except OSError as exc:  # the port is taken (another daemon?) or not ours to bind
            host, port = self.config.http.host, self.config.http.port
            raise ConfigError(
                f"http.port: cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(is another ccd running? set http.host/http.port)"
            ) from None
        self.supervisor.start()
        self.esl.start()
        self._greenlets = [
            gevent.spawn(self._dispatch_loop),
            gevent.spawn(self._tick_loop),
            gevent.spawn(self._listen),
        ]

    def _claim(self) -> None:
        try:
            previous = self.nodes.claim()
        except RedisUnavailable as exc:
            # Nothing can be served without Redis anyway; the first beat claims it.
            log.error("daemon.node_claim_failed", node=self.node_id, error=str(exc))
            return
        if previous is not None:
            log.info("daemon.node_taken_over", node=self.node_id, previous_pid=previous.pid,
                     previous_started=previous.started)  # fmt: skip

    def _index_tagsets(self) -> None:
        """The routing index an older ccd did not keep, built in slices before serving."""
        if self.control is None:
            return
        started = time.monotonic()
        try:
            count = self.control.index_tagsets()
        except RedisUnavailable as exc:  # the first search that needs it builds it
            log.error("agents.tagsets_index_failed", error=str(exc))
            return
        if count:
            ms = round((time.monotonic() - started) * 1000, 1)
            log.info("agents.tagsets_indexed", agents=count, ms=ms)

    def on_stop(self, callback: Any) -> None:
        """Run ``callback()`` when the daemon stops (after the dispatcher)."""
        self._on_stop.append(callback)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("daemon.stopping", node=self.node_id)
        self.supervisor.stopping()
        self.esl.stop()
        self.inbox.put(StopIteration)
        gevent.joinall(self._greenlets, timeout=2)
        gevent.killall(self._greenlets, timeout=1)
        for callback in self._on_stop:
            callback()
        with contextlib.suppress(RedisUnavailable):  # else the heartbeat expires by itself
            self.nodes.leave()
        self.http.stop()
        self.redis.close()
        log.info("daemon.stopped", node=self.node_id)
        self._stopped.set()

    def run_forever(self) -> None:
        """Start, stop cleanly on SIGTERM/SIGINT, reload on SIGHUP."""
        gevent.signal_handler(signal.SIGTERM, self.stop)
        gevent.signal_handler(signal.SIGINT, self.stop)
        install_sighup(self.supervisor.request_reload)
        self.start()
        self._stopped.wait()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def reload(self, timeout: float = 30.0) -> dict[str, Any]:
        """Reload the configuration file now (as SIGHUP does) and wait for the outcome."""
        return self.supervisor.request_reload().result.get(timeout=timeout)

    # -- readiness ------------------------------------------------------------
    def readiness(self) -> dict[str, bool]:
        try:
            redis_ok = bool(self.store.ping())
        except RedisUnavailable:
            redis_ok = False
        return {"esl": self.esl.connected, "redis": redis_ok, "synced": self.synced}

    def _routes(self) -> None:
        self.http.route("/healthz", lambda m: text_response(200, "ok\n"))
        self.http.route("/readyz", self._readyz)
        self.http.route("/metrics", self._metrics)
        # The wallboard page holds no data; what it shows comes from /stats, with the token.
        self.http.route("/wallboard", self._wallboard, headers=WALLBOARD_HEADERS)
        self.http.route("/stats", self._stats_view, private=True)
        # The event feed (ccd.adapters.sse): each client reads the shared stream on a Redis
        # connection of its own, blocking less than a command may take.
        feed, block = self.config.feed, min(1.0, self.config.redis.socket_timeout / 2)
        events = FeedStore(self.store, feed.max_len)
        self.http.stream("/events", FeedEndpoint(lambda: events.reader(block),
                                                 keepalive=feed.keepalive / self.scale,
                                                 stats=self._stats_doc))  # fmt: skip
        # Customer data: the token is required (ccd.adapters.http). POSTs always need it.
        call = r"/calls/(?P<uuid>[0-9a-fA-F\-]{1,64})"
        self.http.route(call, self._call_view, private=True)
        self.http.route(call + "/dispositions", self._codes_view, private=True)
        self.http.post(r"/calls/(?P<uuid>[0-9a-fA-F\-]{1,64})/dispositions", self._set_codes)

    def _readyz(self, _m: Any) -> Response:
        checks = self.readiness()
        return json_response(200 if all(checks.values()) else 503, checks)

    def _metrics(self, _m: Any) -> Response:
        return 200, CONTENT_TYPE, self.metrics.render()

    def _wallboard(self, _m: Any) -> Response:
        return 200, WALLBOARD_CONTENT_TYPE, wallboard_page()

    def _stats_view(self, _m: Any) -> Response:
        try:
            return json_response(200, self._stats_doc())
        except RedisUnavailable:
            return json_response(503, {"error": "redis_unavailable"})

    def _stats_doc(self) -> dict[str, Any]:
        """The /stats document (ccd.core.stats_view) of the configured queues, now."""
        config = self.config.current
        if self._stats is None or self._stats[0] is not config:  # the first, or a reload
            self._stats = (config, StatsStore(self.store, stats_rules_from_config(config)))
        return self._stats[1].read(list(config.queues), self.now())

    def _call_view(self, m: Any) -> Response:
        view = self.control.call_view(m["uuid"]) if self.control else None
        if view is None:
            return json_response(404, {"error": "no_such_call", "uuid": m["uuid"]})
        return json_response(200, view)

    def _codes_view(self, m: Any) -> Response:
        dispositions = getattr(self.control, "disposition", None)
        if dispositions is None:
            return json_response(404, {"error": "no_dispositions"})
        return json_response(200, dispositions.codes_view(m["uuid"]))

    def _set_codes(self, m: Any, body: Any) -> Response:
        """``POST {"codes": ["interested", "07"], "by": "crm"}``: codes on a finished call."""
        dispositions = getattr(self.control, "disposition", None)
        if dispositions is None:
            return json_response(404, {"error": "no_dispositions"})
        if not isinstance(body, dict) or not isinstance(body.get("codes"), list):
            return json_response(400, {"error": 'expected {"codes": [...], "by": ...}'})
        by = body.get("by", "api")
        if not isinstance(by, str) or not by or len(by) > 64:
            return json_response(400, {"error": "by: a name of 1-64 characters"})
        try:
            applied = dispositions.set_api_codes(m["uuid"], body["codes"], by, self.now())
        except LookupError as exc:
            return json_response(404, {"error": str(exc)})
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        except RedisUnavailable:
            return json_response(503, {"error": "redis_unavailable"})
        return json_response(200, applied)

    # -- the dispatcher ---------------------------------------------------------
    def _tick_loop(self) -> None:
        # 0.2 s of daemon time between ticks keeps deadlines within a fifth of a
        # second; at a time scale the interval shrinks with everything else. A
        # tick is only queued once the previous one was handled, so a slow spell
        # (Redis timing out) never leaves a backlog of stale ticks behind it.
        interval = 0.2 / self.scale
        while not self._stopping.is_set():
            gevent.sleep(interval)
            if not self._tick_queued:
                self._tick_queued = True
                self.inbox.put(Tick(self.now()), urgent=True)

    def _dispatch_loop(self) -> None:
        """Take what waits in the inbox (up to ``GROUP`` items), handle it in order, then
        send what it all said: one Redis round trip and one ESL write for the group. Under
        load the group grows and the cost per call falls; idle, a group is one item."""
        while True:
            group = [self.inbox.get()]
            while len(group) < GROUP and not self.inbox.empty():
                group.append(self.inbox.get_nowait())
            self.esl.cork()
            try:
                for item in group:
                    if item is StopIteration:
                        self._finish_group()
                        return
                    if isinstance(item, Tick):
                        self._tick_queued = False
                    self._guarded(self._dispatch, item, type(item).__name__)
                self._finish_group()
            finally:
                self.esl.uncork()

    def _finish_group(self) -> None:
        if self.control is None:
            return
        self._guarded(self.control.flush, None, "flush")
        if self.control.resync_has_work and not self._resync_step_queued:
            # The reconciliation goes on in slices, after what is already waiting.
            self._resync_step_queued = True
            self.inbox.put(ResyncStep)

    def _guarded(self, step: Callable[..., Any], item: Any, what: str) -> None:
        try:
            step(item) if item is not None else step()
        except RedisUnavailable as exc:
            self.metrics.inc("redis_errors_total")
            if time.monotonic() - self._redis_warned >= 5.0:  # one line, not a flood
                self._redis_warned = time.monotonic()
                log.error("daemon.redis_unavailable", error=str(exc))
        except Exception:
            # One bad event must not stop call handling for everyone else.
            log.exception("daemon.dispatch_failed", item=what)
            self.metrics.inc("dispatch_errors_total")

    def _listen(self) -> None:
        """Agents another daemon reserved for this daemon's calls (routing's ``notify``)."""
        channel = self.store.keys.notify(self.node_id)
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                self.inbox.put(NotifyGap())  # anything said while not listening is re-read
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        notified = Notified.decode(message["data"])
                        if notified is not None:
                            self.inbox.put(notified, urgent=True)  # an agent waits
            except (redis.exceptions.RedisError, OSError):
                gevent.sleep(1.0)
            finally:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    pubsub.close()

    def _received(self, event: EslEvent) -> None:
        """An event off the socket, on the ESL reader: queued as ccd.adapters.inbox_items says."""
        item, urgent = self._lanes.received(event)
        if item is None:
            self.metrics.esl_event(event.get("Event-Date-Timestamp"), time.time())  # handled
            return
        self.inbox.put_event(item, urgent)

    def _dispatch(self, item: Any) -> None:
        if isinstance(item, Notified):
            if self.control:
                self.control.on_notified(item.call, item.agent, item.leg, item.job, self.now())
            return
        if isinstance(item, NotifyGap):
            if self.control:
                self.control.on_notify_gap(self.now())
            return
        if isinstance(item, Received):
            self.metrics.esl_event(item.stamp, time.time())
            if self.control:
                self.control.on_event(self._lanes.aged(item), self.now(), item.job)
        elif isinstance(item, Tick):
            # From the dispatcher: a stuck one stops beating. A Redis that lost its data is
            # noticed here, a beat after it happened.
            if self.nodes.beat() == "lost":
                self._redis_lost()
            stale = item.now - self._resync_at >= self.config.routing.resync_interval
            if self.esl.connected and (not self.synced or stale):
                # Retry a failed resync (Redis was down), and reconcile periodically: a
                # call whose daemon died is taken over once its lease has expired.
                self.resync()
            if self.control and self._timers_run(item.now):
                self.control.on_tick(item.now)
        elif isinstance(item, Connected | Reconnected):
            kind = "reconnected" if isinstance(item, Reconnected) else "connected"
            log.info("daemon.esl_" + kind)
            self._connected_at, self._sync_overdue = self.now(), False
            self.resync()
        elif isinstance(item, Disconnected):
            self.synced = False
            if self.control:
                self.control.fresh.lost()
            log.warning("daemon.esl_lost", reason=item.reason)
        elif isinstance(item, JobFailed) and self.control:
            self.control.on_job_failed(item.job_uuid, item.reason, self.now())
        elif isinstance(item, Task):  # heartbeat (watchdog), reload: ccd.supervisor
            item.run()
        elif isinstance(item, Snapshot) and self.control:
            self.control.on_snapshot(item, self.now())
        elif item is ResyncStep and self.control:
            self._resync_step_queued = False
            self.control.resync_step(self.now())

    def _timers_run(self, now: float) -> bool:
        """Whether the daemon's deadlines are acted on now. Not while FreeSWITCH is away: a
        ring timer, a wrap-up's end, a callback due would decide on a switch that cannot be
        told. Not until the resync after a (re)connect says what happened meanwhile unheard
        (the deadlines that passed are acted on after it), but no longer than SYNC_GRACE: a
        resync that keeps failing must not stop every timer of the centre."""
        if self.synced:
            return True
        if not self.esl.connected or now - self._connected_at < SYNC_GRACE:
            return False
        if not self._sync_overdue:
            self._sync_overdue = True
            log.error("daemon.resync_overdue", grace=SYNC_GRACE)
        return True

    def resync(self) -> None:
        """Ask FreeSWITCH what is live now; the answer is reconciled in slices between
        events (ccd.engine.resync), and the daemon is synced once that is done."""
        self._resync_at = self.now()  # not again before the next interval
        if self.control is None:
            self.synced = True
            return
        if self.control.resync_request():
            self.metrics.inc("resyncs_asked_total")

    def _redis_lost(self) -> None:
        """Redis came back without its data: say it loudly, rebuild what this daemon knows,
        and read FreeSWITCH again for the rest (registrations, live channels)."""
        log.critical(
            "redis.data_lost",
            node=self.node_id,
            hint="Redis restarted without persistence or was flushed: run it with "
            "appendonly yes (scripts/redis-ccd.conf); stored callback requests not being "
            "dialled right now are gone",
        )
        self.metrics.inc("redis_data_lost_total")
        if self.control is not None:
            self.control.on_redis_lost(self.now())
        self._index_tagsets()
        self.resync()

    def _resynced(self, snapshot: Any) -> None:
        if not self._heap_frozen:
            _freeze_heap()
            self._heap_frozen = True
        self.synced = True
        self.metrics.inc("resyncs_total")


#: Seconds (daemon time) the timers wait for the resync after a (re)connect, at most; one
#: takes about a second at 20,000 agents.
SYNC_GRACE = 30.0
#: Objects allocated before a young collection (Python's default: 700); middle-generation
#: collections before a full one, none in practice until the heap is frozen (_freeze_heap).
GC_YOUNG_THRESHOLD, GC_FULL_BEFORE_FROZEN, GC_FULL_AFTER_FROZEN = 2_000, 1_000, 10


def _freeze_heap() -> None:
    """Keep the garbage collector's pauses short on a large center (20,000 agents: a full
    collection walked ~300,000 long-lived objects, 50-90 ms with no call moving).

    Once the first resync has loaded what the daemon keeps (agents, calls, compiled
    config), it is frozen: later full collections walk only what came
    after. Young collections run every ``GC_YOUNG_THRESHOLD`` allocations (from the start):
    enough that the temporaries of a dispatcher step (a resync slice decodes 32 records)
    die by reference count before they are promoted, few enough that one collection walks
    them in ~1 ms (at 7,000 each took ~4 ms, inside a resync step, once a resync). Until
    then no full collection runs: each walked all loaded so far, ever longer as the first
    resync read 20,000 agents (14-50 ms inside a step)."""
    gc.freeze()  # no collection first: at 20,000 agents it took 59 ms to find 33 objects
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, GC_FULL_AFTER_FROZEN)


def build_call_control(daemon: Daemon) -> CallControl:
    """The one place where the engine is wired: the stores, webhook senders and parts."""
    routing = daemon.config.routing
    webhook = _webhook_sender(daemon, routing.webhook_url, routing.webhook_timeout)
    customers = CustomerStore(daemon.store)
    control = CallControl(
        config=daemon.config,
        store=daemon.store,
        esl=daemon.esl,
        node_id=daemon.node_id,
        customers=customers,
        disposition=build_disposition_service(daemon, customers=customers),
        sticky=StickyStore.from_config(daemon.store, daemon.config),
        webhook=webhook,
        metrics=daemon.metrics,
        ask_snapshot=daemon.snapshots.ask,
    )
    daemon.on_stop(control.release_all)
    return control


def build_disposition_service(
    daemon: Daemon,
    *,
    customers: CustomerStore | None = None,
    callbacks: CallbackStore | None = None,
) -> DispositionService:
    """The daemon's :class:`DispositionService`: its own webhook sender for
    ``disposition.webhook_url`` (started, stopped with the daemon), the given or new
    customer and callback stores."""
    section = daemon.config.disposition
    webhook = _webhook_sender(daemon, section.webhook_url, section.webhook_timeout)
    return DispositionService(
        config=daemon.config,
        store=daemon.store,
        customers=customers if customers is not None else CustomerStore(daemon.store),
        callbacks=callbacks if callbacks is not None else CallbackStore(daemon.store),
        webhook=webhook,
        now=daemon.now,
    )


def _webhook_sender(daemon: Daemon, url: str, timeout: float) -> WebhookSender | None:
    """A started sender for ``url`` that stops with the daemon; None when ``url`` is ""."""
    if not url:
        return None
    webhook = WebhookSender(url, timeout)
    webhook.start()
    daemon.on_stop(webhook.stop)
    return webhook
