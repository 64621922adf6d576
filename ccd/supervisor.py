"""Operations around the dispatcher: systemd readiness and watchdog, status, reload, metrics.

Theory of operation
-------------------
One :class:`Supervisor` per daemon, built by the composition root (:mod:`ccd.daemon`). Its
greenlet never changes call state; what must happen on the dispatcher is put in the inbox
as a :class:`Task`, which the dispatcher runs between two events (``task.run()``):

* **READY.** Once FreeSWITCH and Redis are connected and the first resynchronisation is done
  (``daemon.readiness()``), ``READY=1`` goes to systemd (``Type=notify``), with a STATUS line.
* **Watchdog.** Every second (at most half of ``$WATCHDOG_USEC``) a :class:`Heartbeat` goes
  in the inbox, one at a time. The dispatcher running it pings ``WATCHDOG=1`` and records
  how long it waited (``ccd_dispatcher_lag_seconds``). A dispatcher that is stuck, or too far
  behind, stops pinging: systemd kills and restarts the daemon (``WatchdogSec=``).
* **STATUS.** Every few seconds this greenlet (not the dispatcher) asks Redis for two counts
  (calls waiting, agents free: :meth:`ccd.store.stats.QueueStats.totals`) and sends
  ``STATUS=ready: 3 calls waiting, 5 agents free``.
* **Reload.** SIGHUP (``systemctl reload ccd`` runs ``ccd reload``, which sends it) puts a
  :class:`Reload` in the inbox. On the dispatcher: ``RELOADING=1``; the file is read again
  (the same path the daemon started with); an invalid file keeps the running configuration
  and logs ``config.reload_failed`` with every problem; otherwise the settings that cannot
  change at run time keep their running values (``config.restart_needed``, one line each)
  and the rest applies through ``control.reconfigure`` (``config.reloaded``), followed by a
  resynchronisation (new agents' phones); then ``READY=1``. The outcome is written to the
  run directory for ``ccd reload``.
* **STOPPING=1** when the daemon stops; the pid file is removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.queue
import structlog

from ccd.adapters.metrics import DaemonMetrics
from ccd.adapters.rundir import RunDir, default_run_dir
from ccd.adapters.systemd import Notifier
from ccd.config import ConfigError, load_config
from ccd.config.live import LiveConfig
from ccd.config.reload import plan_reload
from ccd.store.stats import QueueStats

log = structlog.get_logger()

__all__ = ["Heartbeat", "Reload", "Supervisor", "Task"]

#: Real seconds between two heartbeats (and watchdog pings), at most.
BEAT = 1.0
#: Real seconds between two STATUS lines.
STATUS_EVERY = 5.0


class Task:
    """An inbox item the dispatcher runs between two events."""

    def run(self) -> None:
        raise NotImplementedError


class Heartbeat(Task):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.sent = time.monotonic()

    def run(self) -> None:
        self.supervisor.beat_taken(time.monotonic() - self.sent)


class Reload(Task):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.result: gevent.event.AsyncResult = gevent.event.AsyncResult()

    def run(self) -> None:
        self.result.set(self.supervisor.reload_now())


class Supervisor:
    def __init__(
        self,
        daemon: Any,
        *,
        config_path: Path | None,
        notifier: Notifier | None = None,
        run_dir: RunDir | None = None,
    ) -> None:
        self.daemon = daemon
        self.live: LiveConfig = daemon.config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.run_dir = run_dir or RunDir(default_run_dir())
        # The engine keeps the agents-by-status counters (ccd.engine.stats); a daemon
        # without it (tests driving no calls) reports free agents from the free index.
        counters = getattr(daemon.control, "stats", None) is not None
        self.stats = QueueStats(daemon.store, lambda: self.live.queues, agent_counters=counters)
        self.ready = False
        self._beat_pending = False
        self._beat = min(BEAT, self.notifier.watchdog_interval or BEAT)
        self._greenlet: gevent.Greenlet | None = None
        self._generation = 0

    # ------------------------------------------------------------------ wiring
    def wire_metrics(self, metrics: DaemonMetrics) -> None:
        d = self.daemon
        metrics.watch("inbox_depth", "Items waiting in the dispatcher's inbox", d.inbox.qsize)
        metrics.watch(
            "inbox_urgent_depth",
            "Items of work already started (offer legs, job results, ticks) waiting in the "
            "inbox; taken before the others",
            d.inbox.urgent_size,
        )
        metrics.watch(
            "inbox_limit", "FreeSWITCH events each inbox lane holds at most", lambda: d.inbox.limit
        )
        metrics.watch_counters(
            "inbox_stalls", "Times the ESL reader found the inbox full", lambda: d.inbox.stalls
        )
        metrics.watch_counters(
            "inbox_stalled_seconds",
            "Seconds the ESL reader waited for room in the inbox (FreeSWITCH's events "
            "waited in the socket meanwhile)",
            lambda: d.inbox.stalled_seconds,
        )
        metrics.watch("esl_connected", "1 while the ESL connection is up", lambda: d.esl.connected)
        metrics.watch("ready", "1 once connected and resynchronised", lambda: float(d.synced))
        metrics.watch("http_connections", "Open HTTP connections", lambda: d.http.stats["open"])
        http_counters = {
            "evicted": "closed to make room for a new one",
            "refused": "refused with 503 (every one busy)",
            "timeouts": "cut off for sending their request too slowly",
        }
        for name, what in http_counters.items():
            metrics.watch_counters(
                f"http_connections_{name}",
                f"HTTP connections {what}",
                lambda n=name: d.http.stats[n],
            )
        metrics.use_queue_gauges(self.stats, d.now)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        pid = os.getpid()
        if not self.run_dir.claim(pid):
            log.info("daemon.no_run_dir", path=str(self.run_dir.path))
        self.notifier.status("connecting to FreeSWITCH and Redis")
        self._greenlet = gevent.spawn(self._loop)

    def stopping(self) -> None:
        self.notifier.stopping()
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self.run_dir.release(os.getpid())

    def request_reload(self) -> Reload:
        """Queue a reload for the dispatcher (SIGHUP); ``.result`` gets the outcome."""
        task = Reload(self)
        self.daemon.inbox.put(task)
        return task

    # ------------------------------------------------------------------ the greenlet
    def _loop(self) -> None:
        next_status = 0.0
        while True:
            gevent.sleep(self._beat if self.ready else min(self._beat, 0.1))
            if not self.ready and self._is_ready():
                self.ready = True
                self.notifier.ready(self._status_line())
                next_status = time.monotonic() + STATUS_EVERY
                log.info("daemon.ready", systemd=self.notifier.enabled)
            if not self._beat_pending:
                self._beat_pending = True
                self.daemon.inbox.put(Heartbeat(self))
            if self.ready and time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY
                self.notifier.status(self._status_line())

    def _is_ready(self) -> bool:
        try:
            return all(self.daemon.readiness().values())
        except Exception:
            return False

    def _status_line(self) -> str:
        try:
            waiting, free = self.stats.totals(self.daemon.now())
        except Exception:
            return "Redis unavailable: calls wait for it (see the log)"
        state = "ready" if self.daemon.synced else "resynchronising"
        return f"{state}: {waiting} calls waiting, {free} agents free"

    # ------------------------------------------------------------------ on the dispatcher
    def beat_taken(self, lag: float) -> None:
        self._beat_pending = False
        self.daemon.metrics.dispatcher_lag(lag)
        self.notifier.watchdog()

    def reload_now(self) -> dict[str, Any]:
        """Read the file again and apply it (see the module docstring); the outcome."""
        self.notifier.reloading()
        self._generation += 1
        path = str(self.config_path) if self.config_path else None
        outcome: dict[str, Any] = {
            "pid": os.getpid(),
            "generation": self._generation,
            "at": time.time(),
            "config": path,
            "ok": False,
            "problems": [],
            "restart_needed": [],
            "changes": [],
        }
        try:
            candidate = load_config(self.config_path)
        except ConfigError as exc:
            outcome["problems"] = list(exc.problems)
            log.error("config.reload_failed", config=path, problems=outcome["problems"])
        else:
            self._apply(candidate, outcome)
        self.daemon.metrics.reloaded(outcome["ok"])
        self.run_dir.write_reload(outcome)
        self.notifier.ready(self._status_line())
        return outcome

    def _apply(self, candidate: Any, outcome: dict[str, Any]) -> None:
        plan = plan_reload(self.live.current, candidate)
        for line in plan.restart_needed:
            log.warning("config.restart_needed", setting=line)
        try:
            control = self.daemon.control
            if control is not None:
                done = control.reconfigure(plan.config, self.daemon.now())
            else:
                self.live.swap(plan.config)
                done = []
        except Exception as exc:  # a bug: say so; the dispatcher goes on
            log.exception("config.reload_failed", config=outcome["config"])
            outcome["problems"] = [f"internal error while applying: {exc!r}"]
            return
        if self.daemon.esl.connected:
            # Agents the file added learn their phones' registrations (and calls) now, not
            # at the next periodic resync.
            self.daemon.resync()
        outcome.update(
            ok=True,
            restart_needed=list(plan.restart_needed),
            changes=[*plan.changes, *done],
        )
        log.info(
            "config.reloaded",
            config=outcome["config"],
            changes=outcome["changes"],
            restart_needed=outcome["restart_needed"],
        )


def install_sighup(handler: Callable[[], object]) -> None:
    """SIGHUP → ``handler()`` in a greenlet (never inside a signal frame)."""
    import signal

    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(handler))
