"""The ESL client: greenswitch's InboundESL with ccd's reader, deadlines and reconnects.

Theory of operation
-------------------
:class:`EslClient` owns one supervisor greenlet. Each round it builds a fresh
:class:`~ccd.adapters.esl_connection.EslConnection` (a ``greenswitch.InboundESL``; greenswitch
connections are single use), connects with a deadline, waits for ``auth/request``,
authenticates, subscribes with one ``event`` line and only then announces
:class:`Connected` (first time) or :class:`Reconnected` (every later time) in
the inbox, so the core resynchronises on a connection that already delivers
events. It then waits for the connection to end. When it does, every pending
command has already failed with :class:`EslDisconnected`; the supervisor puts
:class:`Disconnected` and one :class:`JobFailed` per acknowledged bgapi job
whose ``BACKGROUND_JOB`` never came into the inbox, waits a backoff delay
(exponential, full jitter, reset after a connection that stayed up) and starts
again. A refused password is permanent until an operator fixes it: it is
logged once and retried every ``auth_retry_interval``, never in a storm.

What is kept from greenswitch: the connection object and its state
(``connected``, ``_commands_sent`` as the FIFO of replies awaited,
``_auth_request_event``, ``_lingering``) and the connect/authenticate steps.
What is replaced: the reader. greenswitch reads lines, URL-decodes whole
blocks, raises in its reader on a frame without Content-Type and hands
``text/event-json`` to its plain parser. Here one reader greenlet per
connection feeds ``sock.recv`` bytes to :class:`ccd.core.esl_wire.FrameParser`, the
parser the capture tests check, and routes each frame:

* ``command/reply`` and ``api/response``: the reply to the oldest pending
  command (FreeSWITCH answers a connection's commands in order; a bare
  ``api`` gets a command/reply, so either type answers any command);
* ``text/event-plain`` / ``text/event-json``: decoded and put in the inbox
  (handling is only an enqueue; the daemon's dispatcher greenlet reads it;
  plain values are URL-decoded only when read, see :mod:`ccd.core.esl_wire`);
* a frame with no or an unknown Content-Type, or an event that does not
  decode: logged as ``esl.frame_ignored`` and skipped;
* a broken frame (bad Content-Length, endless header block): the stream
  cannot be trusted, so the connection is dropped (``esl.protocol_error``)
  and the supervisor reconnects;
* ``text/disconnect-notice``: a disconnect, except a linger notice (outbound
  sockets only).

The reader takes up to 256 KB a read and yields after each read: a socket
that always has more data never makes ``recv`` wait, and the dispatcher must
still run. greenswitch's handler greenlet is not started: it runs handlers one after
another, and ours would only enqueue. Commands carry a deadline; they are
written under a lock so the order of ``_commands_sent`` is the order on the
socket; a timed-out command keeps its place in that FIFO (its late reply is
matched and dropped) so later replies still meet their commands.
"""

from __future__ import annotations

import random
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import structlog

from ccd.adapters.esl_connection import (
    EslAuthError,
    EslCommandError,
    EslConnection,
    EslDisconnected,
    EslError,
)
from ccd.adapters.inbox import Inbox
from ccd.core.esl_wire import EslEvent

__all__ = [
    "Backoff",
    "Connected",
    "Disconnected",
    "EslClient",
    "JobFailed",
    "Reconnected",
    "subscription_command",
]

EVENT_FORMATS = ("plain", "json")


@dataclass(frozen=True)
class Connected:
    """The first connection is up, authenticated and subscribed."""


@dataclass(frozen=True)
class Reconnected:
    """A later connection is up and subscribed: events were missed, resynchronise."""


@dataclass(frozen=True)
class Disconnected:
    reason: str


@dataclass(frozen=True)
class JobFailed:
    """A bgapi job acknowledged by FreeSWITCH whose BACKGROUND_JOB was lost with the socket."""

    job_uuid: str
    reason: str


def subscription_command(events: Iterable[str], event_format: str = "plain") -> str:
    """The one ``event`` line for ``events``: CUSTOM, then the subclasses after it.

    FreeSWITCH reads every word after ``CUSTOM`` as a subclass, and a bare
    ``CUSTOM`` subscribes to no subclass (capture 14), so subclass names
    (``sofia::register``) are gathered behind one ``CUSTOM``.
    """
    if event_format not in EVENT_FORMATS:
        raise ValueError(f"event_format must be one of {EVENT_FORMATS}, not {event_format!r}")
    names: list[str] = []
    subclasses: list[str] = []
    custom = False
    for name in events:
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"bad event name {name!r}")
        if name == "CUSTOM":
            custom = True
        elif "::" in name:
            if name not in subclasses:
                subclasses.append(name)
        elif name not in names:
            names.append(name)
    if custom or subclasses:
        names += ["CUSTOM", *subclasses]
    if not names:
        raise ValueError("no events to subscribe to")
    return f"event {event_format} " + " ".join(names)


class Backoff:
    """Exponential backoff with full jitter, sans I/O.

    The n-th delay since the last reset is uniform in
    ``[low, min(high, low * 2**n)]``: the first retry comes after ``low``.
    """

    def __init__(self, low: float, high: float, rng: random.Random) -> None:
        self.low, self.high, self._rng = low, high, rng
        self.failures = 0

    def next_delay(self) -> float:
        cap = min(self.high, self.low * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return self._rng.uniform(self.low, cap)

    def reset(self) -> None:
        self.failures = 0


class EslClient:
    """A reconnecting inbound ESL client that feeds ``inbox``.

    ``inbox`` receives :class:`ccd.core.esl_wire.EslEvent` (or what ``deliver`` makes of
    each), :class:`Connected`, :class:`Reconnected`, :class:`Disconnected` (barriers: see
    ccd.adapters.inbox) and :class:`JobFailed`, in the order they happened. A full inbox
    stops the reader, and FreeSWITCH's socket with it (back-pressure).
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        events: Sequence[str],
        event_format: str = "plain",
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        inbox: Inbox | None = None,
        deliver: Callable[[EslEvent], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        auth_retry_interval: float = 60.0,
        stable_after: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if "\n" in password or "\r" in password:
            raise ValueError("the ESL password contains a newline")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
            ("backoff_min", backoff_min),
            ("auth_retry_interval", auth_retry_interval),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        if backoff_max < backoff_min:
            raise ValueError("backoff_max must be >= backoff_min")
        self.host, self.port = host, port
        self._password = password
        self.subscribe_line = subscription_command(events, event_format)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._auth_retry_interval = auth_retry_interval
        self._stable_after = stable_after
        self._backoff = Backoff(backoff_min, backoff_max, rng or random.Random())
        self.inbox: Inbox = inbox if inbox is not None else Inbox()
        # Who takes each event off the socket (the inbox's reader side, by default).
        self._deliver = deliver if deliver is not None else self.inbox.put_event
        # Told of every new connection before its first event is delivered.
        self._on_connected = on_connected
        #: The error of the last failed connect attempt (None while connected):
        #: an EslAuthError here means an operator has to fix the password.
        self.last_error: EslError | None = None
        self.attempts = 0
        self._conn: EslConnection | None = None
        self._ever_connected = False
        self._auth_failing = False
        self._up = gevent.event.Event()
        self._stop_requested = False
        self._stopping = gevent.event.Event()
        self._supervisor: gevent.Greenlet | None = None
        self._log = structlog.get_logger(esl_server=f"{host}:{port}")

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Socket up, authenticated and subscribed."""
        conn = self._conn
        return conn is not None and conn.ready

    def start(self) -> None:
        if self._supervisor is not None:
            raise RuntimeError("EslClient already started")
        self._supervisor = gevent.spawn(self._supervise)

    def stop(self, timeout: float = 2.0) -> None:
        """Say goodbye, close, and do not reconnect. Pending commands fail at once."""
        # The flag first, so the supervisor reads the coming close as a stop,
        # not as a loss to recover from; the Event then wakes it from a backoff.
        self._stop_requested = True
        conn = self._conn
        if conn is not None:
            conn.stop(min(1.0, self._command_timeout))
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        self._log.info("esl.stopped")

    def wait_connected(self, timeout: float) -> bool:
        return bool(self._up.wait(timeout))

    def _supervise(self) -> None:
        while not self._stop_requested:
            try:
                delay = self._one_connection()
            except Exception:
                # The supervisor is the only thing that reconnects: it must not die.
                self._log.exception("esl.supervisor_failed")
                delay = self._backoff.next_delay()
            if self._stop_requested:
                break
            self._log.info("esl.reconnect_in", seconds=round(delay, 3))
            self._stopping.wait(delay)

    def _one_connection(self) -> float:
        """Connect, serve until the connection ends; return the delay before the next try."""
        self.attempts += 1
        log = self._log.bind(attempt=self.attempts)
        conn = EslConnection(
            self.host,
            self.port,
            self._password,
            connect_timeout=self._connect_timeout,
            deliver=self._deliver,
            log=log,
        )
        self._conn = conn
        log.info("esl.connecting")
        try:
            conn.connect(self._command_timeout)
            reply = conn.send(self.subscribe_line, self._command_timeout).headers.get(
                "Reply-Text", ""
            )
            if not reply.startswith("+OK"):
                raise EslCommandError(f"subscription refused: {reply}", reply)
        except EslAuthError as exc:
            conn.close(str(exc))
            self.last_error = exc
            if not self._auth_failing:
                self._auth_failing = True
                log.error("esl.auth_failed", error=str(exc), retry_every=self._auth_retry_interval)
            return self._auth_retry_interval
        except EslError as exc:
            conn.close(str(exc))
            self.last_error = exc
            if not self._stop_requested:
                log.warning("esl.connect_failed", error=str(exc))
            return self._backoff.next_delay()
        except Exception as exc:
            conn.close(f"connect failed: {exc!r}")  # no half-open socket behind a bug
            raise
        if self._stop_requested:
            conn.close("client stopped")
            return 0.0

        self._auth_failing = False
        self.last_error = None
        up_since = time.monotonic()
        first = not self._ever_connected
        self._ever_connected = True
        log.info("esl.connected", reconnect=not first)
        if self._on_connected is not None:
            self._on_connected()
        self.inbox.put(Connected() if first else Reconnected(), barrier=True)
        conn.release()
        self._up.set()

        gevent.wait([conn.closed, self._stopping], count=1)
        self._up.clear()
        reason = "client stopped" if self._stop_requested else conn.close_reason
        conn.close(reason)
        if self._stop_requested:
            log.info("esl.disconnected", reason=reason)
        else:
            log.warning("esl.disconnected", reason=reason)
        self.last_error = EslDisconnected(reason)
        self.inbox.put(Disconnected(reason), barrier=True)
        for job_uuid, acknowledged in conn.jobs.items():
            if acknowledged:
                self.inbox.put(JobFailed(job_uuid, reason))
        conn.jobs.clear()
        if time.monotonic() - up_since >= self._stable_after:
            self._backoff.reset()
        return self._backoff.next_delay()

    # -- commands -----------------------------------------------------------------------------

    def _live(self) -> EslConnection:
        conn = self._conn
        if conn is None or not conn.ready:
            why = f": {self.last_error}" if self.last_error is not None else ""
            raise EslDisconnected("not connected to FreeSWITCH" + why)
        return conn

    def _timeout(self, timeout: float | None) -> float:
        return self._command_timeout if timeout is None else timeout

    def api(self, command: str, timeout: float | None = None) -> str:
        """``api <command>``: the response body. Raises EslCommandError on ``-ERR``/``-USAGE``."""
        frame = self._live().send(f"api {command}", self._timeout(timeout))
        if frame.content_type != "api/response":
            reply = frame.headers.get("Reply-Text", "")
            raise EslCommandError(f"api {command.split(' ', 1)[0]}: {reply}", reply)
        body = frame.body_text()
        if body.startswith(("-ERR", "-USAGE")):
            raise EslCommandError(f"api {command.split(' ', 1)[0]}: {body.strip()}", body.strip())
        return body

    def api_aside(self, commands: Sequence[str], timeout: float | None = None) -> list[str]:
        """Each ``api <command>``'s response body, on a connection of its own made for them
        and closed after: an answer of megabytes (``show registrations`` of 20,000 phones)
        neither holds back the events of the main connection (FreeSWITCH runs an api on the
        connection's own thread) nor passes through the dispatcher as one big event, as a
        bgapi's BACKGROUND_JOB would. Blocks the calling greenlet only."""
        conn = EslConnection(
            self.host,
            self.port,
            self._password,
            connect_timeout=self._connect_timeout,
            deliver=lambda event: None,  # it subscribes to nothing
            log=self._log.bind(aside=True),
        )
        try:
            conn.connect(self._timeout(timeout))
            conn.release()
            bodies = []
            for command in commands:
                frame = conn.send(f"api {command}", self._timeout(timeout))
                if frame.content_type != "api/response":
                    reply = frame.headers.get("Reply-Text", "")
                    raise EslCommandError(f"api {command.split(' ', 1)[0]}: {reply}", reply)
                bodies.append(frame.body_text())
            return bodies
        finally:
            conn.close("done")

    def api_nowait(self, command: str, on_fail: Callable[[str], None]) -> None:
        """``api <command>`` without waiting: for short commands whose answer only matters
        when it is an error (``on_fail(text)``, also when the connection is lost first).
        FreeSWITCH runs an api on the connection's own thread, in order, and sends no
        BACKGROUND_JOB back: cheaper for both sides than bgapi."""
        self._live().send_nowait(f"api {command}", self._command_timeout, on_fail)

    def cork(self) -> None:
        """Commands sent without waiting are written together at :meth:`uncork`."""
        conn = self._conn
        if conn is not None and conn.ready:
            conn.cork()

    def uncork(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.uncork(self._command_timeout)

    def bgapi(self, command: str, job_uuid: str | None = None, *, wait: bool = True) -> str:
        """``bgapi <command>`` with a Job-UUID header; returns the Job-UUID.

        The result arrives as a BACKGROUND_JOB event in the inbox, or, if the
        connection is lost first, as a JobFailed. If this raises, neither
        follows (a late BACKGROUND_JOB after an EslTimeout still goes to the
        inbox like any event).
        """
        job_uuid = job_uuid or str(uuidlib.uuid4())
        if not wait:
            # The dispatcher never waits on FreeSWITCH: a refused or lost job comes back
            # as a JobFailed in the inbox, so each job still ends in exactly one result.
            job = job_uuid
            self._live().send_nowait(
                f"bgapi {command}",
                self._command_timeout,
                lambda reason: self.inbox.put(JobFailed(job, reason)),
                headers=[("Job-UUID", job_uuid)],
                job_uuid=job_uuid,
            )
            return job_uuid
        frame = self._live().send(
            f"bgapi {command}",
            self._command_timeout,
            headers=[("Job-UUID", job_uuid)],
            job_uuid=job_uuid,
        )
        reply = frame.headers.get("Reply-Text", "")
        if not reply.startswith("+OK"):
            raise EslCommandError(f"bgapi {command.split(' ', 1)[0]}: {reply}", reply)
        return frame.headers.get("Job-UUID") or job_uuid

    def execute(
        self,
        uuid: str,
        app: str,
        arg: str = "",
        *,
        event_uuid: str | None = None,
        lock: bool = False,
        wait: bool = True,
    ) -> str:
        """Run a dialplan application on a channel; returns the event uuid.

        CHANNEL_EXECUTE and CHANNEL_EXECUTE_COMPLETE carry it as
        ``Application-UUID`` (capture 11).
        """
        for name, value in (("uuid", uuid), ("app", app)):
            if not value or any(ch.isspace() for ch in value):
                raise ValueError(f"bad {name} {value!r}")
        event_uuid = event_uuid or str(uuidlib.uuid4())
        headers = [("call-command", "execute"), ("execute-app-name", app)]
        if arg:
            headers.append(("execute-app-arg", arg))
        headers.append(("Event-UUID", event_uuid))
        if lock:
            headers.append(("event-lock", "true"))
        if not wait:

            def failed(reason: str) -> None:
                self._log.warning("esl.execute_failed", app=app, uuid=uuid, reply=reason)

            self._live().send_nowait(
                f"sendmsg {uuid}", self._command_timeout, failed, headers=headers
            )
            return event_uuid
        frame = self._live().send(f"sendmsg {uuid}", self._command_timeout, headers=headers)
        reply = frame.headers.get("Reply-Text", "")
        if not reply.startswith("+OK"):
            raise EslCommandError(f"execute {app} on {uuid}: {reply}", reply)
        return event_uuid

    def send_raw(self, command: str, timeout: float | None = None) -> str:
        """Any one-line command; returns Reply-Text (or an api/response body) unchecked."""
        frame = self._live().send(command, self._timeout(timeout))
        if frame.content_type == "api/response":
            return frame.body_text()
        return frame.headers.get("Reply-Text", "")
