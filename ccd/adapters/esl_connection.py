"""One ESL connection: greenswitch's InboundESL with ccd's reader, deadlines and errors.

greenswitch connections are single use: :class:`ccd.adapters.esl.EslClient` builds a fresh
:class:`EslConnection` for every (re)connect. What is kept from greenswitch: the connection
object and its state (``connected``, ``_commands_sent`` as the FIFO of replies awaited,
``_auth_request_event``, ``_lingering``) and the connect/authenticate steps. What is
replaced: the reader (see the module doc of :mod:`ccd.adapters.esl`), and every command
carries a deadline and fails with an :class:`EslError` instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
import structlog
from greenswitch.esl import InboundESL

from ccd.core.esl_wire import (
    EslEvent,
    Frame,
    FrameParser,
    ProtocolError,
    decode_event,
    encode_command,
)

__all__ = [
    "EslAuthError",
    "EslCommandError",
    "EslConnection",
    "EslDisconnected",
    "EslError",
    "EslTimeout",
]

log = structlog.get_logger()

#: Bytes asked of the socket per read: at ~2.5 KB an event, about a hundred events.
RECV_SIZE = 262144
#: A read this large says more is waiting (one event alone is ~2.5 KB).
BURST_READ = RECV_SIZE // 4


class EslError(Exception):
    """An ESL operation failed; ``reply`` is FreeSWITCH's own text when there is one."""

    def __init__(self, message: str, reply: str = "") -> None:
        super().__init__(message)
        self.reply = reply


class EslAuthError(EslError):
    """FreeSWITCH refused the password (or its ACL refused us): permanent until fixed."""


class EslTimeout(EslError):
    """No reply within the command's deadline."""


class EslDisconnected(EslError):
    """Not connected, or the connection was lost before the reply."""


class EslCommandError(EslError):
    """FreeSWITCH answered the command with ``-ERR`` (or ``-USAGE``); see ``reply``."""


@dataclass(eq=False)
class _Pending:
    """A command waiting for its reply, in ``_commands_sent`` order."""

    summary: str  # the command line for logs; the password is never in it
    result: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)
    job_uuid: str | None = None
    abandoned: bool = False  # timed out; its reply is still due and must be swallowed
    # Sent without waiting (send_nowait): called with the reason if the reply is not +OK
    # or the connection is lost before it; nobody waits on ``result``.
    on_fail: Callable[[str], None] | None = None


class EslConnection(InboundESL):
    """One TCP connection to FreeSWITCH; used once, then thrown away."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        connect_timeout: float,
        deliver: Callable[[EslEvent], None],
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        super().__init__(host, port, password, timeout=connect_timeout)
        self.sock: gevent.socket.socket | None = None
        self._commands_sent: deque[_Pending] = deque()  # type: ignore[assignment]
        self._parser = FrameParser()
        self._send_lock = gevent.lock.Semaphore()
        # While corked (the dispatcher handling one item), commands sent without waiting are
        # queued here and written in one sendall when it uncorks: one syscall per event.
        self._corked: list[bytes] | None = None
        self._deliver = deliver
        self._log = log
        # Events that arrive before the supervisor announced the connection wait
        # here, so the inbox shows Connected/Reconnected before them.
        self._held: list[EslEvent] | None = []
        self.closed = gevent.event.Event()
        self.close_reason = ""
        self.refusal = ""  # body of a text/rude-rejection
        # bgapi jobs of this connection without BACKGROUND_JOB yet:
        # job uuid -> True once FreeSWITCH acknowledged the command.
        self.jobs: dict[str, bool] = {}

    # -- greenswitch's steps, with deadlines -------------------------------------------------

    def connect(self, command_timeout: float) -> None:  # type: ignore[override]
        try:
            sock = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            raise EslTimeout(f"TCP connect timed out after {self.timeout} s") from None
        except OSError as exc:
            raise EslDisconnected(f"cannot connect: {exc}") from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A peer that vanishes without a FIN is found by keepalive, not never.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.sock = sock
        self.connected = True
        self.start_event_handlers()
        # greenswitch waits for auth/request forever; a port that accepts and
        # stays silent must not hang the supervisor.
        gevent.wait([self._auth_request_event, self.closed], timeout=self.timeout, count=1)
        if self.refusal:
            raise EslAuthError(f"FreeSWITCH refused the connection: {self.refusal}", self.refusal)
        if self.closed.is_set():
            raise EslDisconnected(f"closed before auth/request: {self.close_reason}")
        if not self._auth_request_event.is_set():
            self.close("no auth/request")
            raise EslTimeout(f"no auth/request within {self.timeout} s")
        self.authenticate(command_timeout)

    def authenticate(self, timeout: float) -> None:  # type: ignore[override]
        frame = self.send("auth " + self.password, timeout, summary="auth ********")
        reply = frame.headers.get("Reply-Text", "")
        if reply != "+OK accepted":
            raise EslAuthError(
                f"FreeSWITCH refused the ESL password ({reply or 'no reply text'}); "
                "check the password in ccd's config against event_socket.conf.xml",
                reply,
            )

    def start_event_handlers(self) -> None:
        self._receive_events_greenlet = gevent.spawn(self.receive_events)

    def release(self) -> None:
        """The connection was announced: deliver held events, accept commands."""
        held, self._held = self._held or [], None
        for event in held:
            self._deliver(event)

    @property
    def ready(self) -> bool:
        return self._held is None and not self.closed.is_set()

    # -- reading ------------------------------------------------------------------------------

    def receive_events(self) -> None:
        reason = "connection closed by FreeSWITCH"
        try:
            while not self.closed.is_set():
                assert self.sock is not None
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    break
                self._parser.feed(data)
                for frame in self._parser:
                    self.handle_event(frame)
                    if self.closed.is_set():
                        return
                # A socket that always has more to read never makes recv() wait: let
                # the dispatcher (and everyone else) run between two chunks. After a large
                # read (a burst) the loop must also poll the other sockets, which sleep(0)
                # does not make it do: a flood of events kept a dispatcher waiting for Redis
                # 37-51 ms (scripts/bench_esl.py's stream, a 0.5 ms ticker's longest gap).
                gevent.sleep(0.0001 if len(data) >= BURST_READ else 0)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            self._log.error("esl.protocol_error", error=str(exc))
        except OSError as exc:
            reason = f"socket error: {exc}"
        except Exception as exc:
            # A bug here must cost one connection, not the reader forever.
            reason = f"reader failed: {exc!r}"
            self._log.exception("esl.reader_failed")
        finally:
            self.close(reason)

    def handle_event(self, frame: Frame) -> None:  # type: ignore[override]
        ctype = frame.headers.get("Content-Type", "")
        if ctype == "text/event-json" or ctype == "text/event-plain":  # the most frequent
            self._on_event(frame)
        elif ctype in ("command/reply", "api/response"):
            self._on_reply(frame)
        elif ctype == "auth/request":
            self._auth_request_event.set()
        elif ctype == "text/disconnect-notice":
            if frame.headers.get("Content-Disposition") == "linger":
                self._lingering = True
            else:
                self.close("disconnect-notice from FreeSWITCH")
        elif ctype == "text/rude-rejection":
            self.refusal = frame.body_text().strip() or "text/rude-rejection"
            self.close(f"rejected by FreeSWITCH: {self.refusal}")
        else:
            self._ignore(frame, f"unhandled Content-Type {ctype}" if ctype else "no Content-Type")

    def _ignore(self, frame: Frame, reason: str) -> None:
        self._log.warning(
            "esl.frame_ignored",
            reason=reason,
            content_type=frame.content_type,
            body_bytes=len(frame.body),
        )

    def _on_reply(self, frame: Frame) -> None:
        if not self._commands_sent:
            self._ignore(frame, "reply without a pending command")
            return
        slot = self._commands_sent.popleft()
        if slot.job_uuid is not None and slot.job_uuid in self.jobs:
            # Marked here, in the reader, not in the bgapi caller: a disconnect
            # right after this reply must still report the job.
            del self.jobs[slot.job_uuid]
            if frame.headers.get("Reply-Text", "").startswith("+OK"):
                self.jobs[frame.headers.get("Job-UUID") or slot.job_uuid] = True
        if slot.abandoned:
            self._log.info("esl.late_reply", command=slot.summary)
            return
        if slot.on_fail is not None:
            if frame.content_type == "api/response":
                body = (frame.body or b"").decode("utf-8", "replace").strip()
                if body.startswith("-"):  # -ERR ..., -USAGE: ...
                    slot.on_fail(body[:200])
                return
            reply = frame.headers.get("Reply-Text", "")
            if not reply.startswith("+OK"):
                slot.on_fail(reply or frame.content_type)
            return
        slot.result.set(frame)

    def _on_event(self, frame: Frame) -> None:
        try:
            event = decode_event(frame)
        except ProtocolError as exc:
            self._ignore(frame, str(exc))
            return
        if event.name == "BACKGROUND_JOB":
            self.jobs.pop(event.get("Job-UUID"), None)
        if self._held is not None:
            self._held.append(event)
        else:
            self._deliver(event)

    # -- writing ------------------------------------------------------------------------------

    def send(  # type: ignore[override]
        self,
        line: str,
        timeout: float,
        *,
        headers: Sequence[tuple[str, str]] = (),
        job_uuid: str | None = None,
        summary: str | None = None,
    ) -> Frame:
        """Write one command and wait for its reply frame."""
        data = encode_command(line, headers)
        slot = _Pending(summary or line, job_uuid=job_uuid)
        timer = gevent.Timeout(timeout)
        timer.start()
        writing = False
        try:
            with self._send_lock:
                if self.closed.is_set():
                    raise EslDisconnected(f"not connected: {self.close_reason}")
                assert self.sock is not None
                self._commands_sent.append(slot)
                if job_uuid is not None:
                    self.jobs[job_uuid] = False
                writing = True
                if self._corked:  # what was queued first goes first: replies come in order
                    data = b"".join(self._corked) + data
                    self._corked = []
                self.sock.sendall(data)
                writing = False
            return slot.result.get()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            slot.abandoned = True
            if job_uuid is not None:
                self.jobs.pop(job_uuid, None)
            if writing:
                # Half a command is on the wire: nothing after it would parse.
                self.close("command write timed out")
            self._log.warning("esl.command_timeout", command=slot.summary, timeout=timeout)
            raise EslTimeout(f"no reply to {slot.summary!r} within {timeout} s") from None
        except OSError as exc:
            self.close(f"socket error on send: {exc}")
            raise EslDisconnected(f"connection lost sending {slot.summary!r}: {exc}") from None
        finally:
            timer.close()

    def send_nowait(
        self,
        line: str,
        timeout: float,
        on_fail: Callable[[str], None],
        *,
        headers: Sequence[tuple[str, str]] = (),
        job_uuid: str | None = None,
    ) -> None:
        """Write one command without waiting for its reply (FreeSWITCH answers in order;
        the reader matches it). ``on_fail(reason)`` runs if the reply is not ``+OK`` or
        the connection is lost first. The write itself is bounded by ``timeout``."""
        data = encode_command(line, headers)
        slot = _Pending(line, job_uuid=job_uuid, on_fail=on_fail)
        if self._corked is not None and not self.closed.is_set():
            self._commands_sent.append(slot)
            if job_uuid is not None:
                self.jobs[job_uuid] = False
            self._corked.append(data)
            return
        try:
            with gevent.Timeout(timeout), self._send_lock:
                if self.closed.is_set():
                    raise EslDisconnected(f"not connected: {self.close_reason}")
                assert self.sock is not None
                self._commands_sent.append(slot)
                if job_uuid is not None:
                    self.jobs[job_uuid] = False
                self.sock.sendall(data)
        except gevent.Timeout:
            self.close("command write timed out")
            raise EslTimeout(
                f"could not write {line.split(' ', 2)[:2]} within {timeout} s"
            ) from None
        except OSError as exc:
            self.close(f"socket error on send: {exc}")
            raise EslDisconnected(
                f"connection lost sending {line.split(' ', 1)[0]}: {exc}"
            ) from None

    def cork(self) -> None:
        """Queue commands sent without waiting until :meth:`uncork`."""
        if self._corked is None:
            self._corked = []

    def uncork(self, timeout: float) -> None:
        """Write what was queued, in one go."""
        queued, self._corked = self._corked, None
        if not queued or self.closed.is_set():
            return
        try:
            with gevent.Timeout(timeout), self._send_lock:
                assert self.sock is not None
                self.sock.sendall(b"".join(queued))
        except gevent.Timeout:
            self.close("command write timed out")
        except OSError as exc:
            self.close(f"socket error on send: {exc}")

    def close(self, reason: str) -> None:
        """Close once; every command still waiting fails with EslDisconnected now."""
        if self.closed.is_set():
            return
        self.connected = False
        self._run = False
        self.close_reason = reason
        pending, self._commands_sent = self._commands_sent, deque()
        for slot in pending:
            if slot.on_fail is not None:
                slot.on_fail(reason)
            elif not slot.abandoned:
                slot.result.set_exception(
                    EslDisconnected(
                        f"connection lost before the reply to {slot.summary!r}: {reason}"
                    )
                )
        if self.sock is not None:
            self.sock.close()
        self.closed.set()

    def stop(self, timeout: float = 1.0) -> None:  # type: ignore[override]
        if self.ready:
            with contextlib.suppress(EslError):  # goodbye is a courtesy
                self.send("exit", timeout)
        self.close("client stopped")
