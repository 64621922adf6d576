"""The fake switch's event socket: mod_event_socket's INBOUND mode over gevent.

Theory of operation
-------------------
One :class:`EslServer` listens on loopback; every accepted socket becomes an
:class:`_Connection` with two greenlets:

* the *reader* (the StreamServer handler) cuts the byte stream into command
  frames (a command line, ``Name: value`` headers, an empty line, and a body
  when a ``Content-Length`` header says so) and executes them one at a time.
  ``api`` runs its handler right there, so a slow command blocks that
  connection's commands only, exactly like FreeSWITCH; ``bgapi`` answers at
  once and runs the job in its own greenlet.
* the *writer* drains what the socket did not take at once, so a slow client
  never blocks the switch: the event bus only appends bytes. When a client's
  queue grows past ``max_queue_bytes`` the connection is dropped
  (``fakeswitch.esl.slow_client_dropped``).

Writes are coalesced: the first frame queued asks the hub for a flush
(``run_callback``), which goes once more to the back of the hub's queue so the
greenlets woken in the same turn of the loop add their frames; then everything
queued leaves in one non-blocking ``write``. Only what the socket does not take
(and the close) is handed to the writer greenlet, which blocks for it. The bytes
and their order are those of one frame per write; only the segmentation differs.

Events: the server holds one :class:`~ccd.fakeswitch.fsevents.EventBus`
subscription and offers each fired event to every connection, which applies
FreeSWITCH's rules (``event`` names, ``CUSTOM`` subclasses, ``ALL``, then
``filter``s) and serialises it in the connection's format (plain, json, xml),
once per format per event. FreeSWITCH writes queued events only between
commands: an event fired while a command is being executed (the ``API`` event
of an ``api`` call, a fast ``BACKGROUND_JOB``) is held and written after that
command's reply. Recorded in captures 02 and 06.

Replies and their exact texts come from FreeSWITCH 1.10.12 (captures 01, 02,
06, 11, 14 and mod_event_socket's documented behaviour):

* greeting ``auth/request``; ``auth <pw>`` -> ``+OK accepted`` or ``-ERR
  invalid`` followed by ``text/disconnect-notice`` and close; any other
  command before auth -> ``-ERR command not found`` (connection kept);
* ``exit`` -> ``+OK bye``, disconnect notice, close;
* unknown command, bare ``api``/``bgapi`` -> ``-ERR command not found``.

Malformed input (a header block over ``MAX_HEADER_BYTES``, a bad or huge
``Content-Length``, NUL bytes or invalid UTF-8 in a header block) closes that
connection only (``fakeswitch.esl.bad_input``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid as uuidlib
from collections import deque
from collections.abc import Callable

import gevent
import gevent.event
import structlog
from gevent.server import StreamServer

from ccd.fakeswitch.api import ApiRegistry
from ccd.fakeswitch.esl_protocol import (
    BadInput,
    Command,
    CommandReader,
    Subscriptions,
    api_response,
    reply,
)
from ccd.fakeswitch.fsevents import (
    EventBus,
    EventFactory,
    FsEvent,
    serialize_json,
    serialize_plain,
    serialize_xml,
)

__all__ = ["EslServer"]

log = structlog.get_logger()

DISCONNECT_NOTICE = (
    b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
    b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
)
#: Default bound on one client's unsent bytes before it is dropped as too slow.
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024


class _Connection(Subscriptions):
    """One client's session: auth, subscriptions, filters, queues."""

    def __init__(self, server: EslServer, sock: socket.socket, peer: tuple) -> None:
        self.server = server
        self.sock = sock
        self.peer = "{}:{}".format(*peer[:2])
        self.log = log.bind(peer=self.peer)
        self.authed = False
        self._init_subscriptions()
        self.busy = False
        self.closed = False
        self._held: list[bytes] = []
        self._out: deque[tuple[bool, bytes | None]] = deque()
        self._queued = 0
        self._flush_queued = False
        self._flush_deferred = False
        self._writing = False
        self._loop = gevent.get_hub().loop
        self._wake = gevent.event.Event()
        self._writer = gevent.spawn(self._write_loop)

    # ---- outbound -------------------------------------------------------
    def send(self, data: bytes, *, is_event: bool = False) -> None:
        if self.closed:
            return
        self._queued += len(data)
        if self._queued > self.server.max_queue_bytes:
            self.log.warning("fakeswitch.esl.slow_client_dropped", queued=self._queued)
            self.abort()
            return
        self._out.append((is_event, data))
        if not self._flush_queued:
            self._flush_queued = True
            self._loop.run_callback(self._flush)

    def offer(self, ev: FsEvent, frames: dict[str, bytes]) -> None:
        """The bus hands over a fired event; keep it if this client wants it."""
        if self.closed or not self.events_on or not self._wants(ev):
            return
        data = frames.get(self.format)
        if data is None:
            data = frames[self.format] = _SERIALIZERS[self.format](ev)
        if self.busy:
            # FreeSWITCH writes events only between commands.
            self._queued += len(data)
            if self._queued > self.server.max_queue_bytes:
                self.log.warning("fakeswitch.esl.slow_client_dropped", queued=self._queued)
                self.abort()
                return
            self._held.append(data)
        else:
            self.send(data, is_event=True)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for data in held:
            self._queued -= len(data)
            self.send(data, is_event=True)

    def _drop_events(self) -> None:
        for data in self._held:
            self._queued -= len(data)
        self._held = []
        kept: deque[tuple[bool, bytes | None]] = deque()
        for is_event, data in self._out:
            if is_event and data is not None:
                self._queued -= len(data)
            else:
                kept.append((is_event, data))
        self._out = kept

    def _take(self) -> tuple[bytes, bool]:
        """Everything queued up to a close mark, as one write; and whether the mark came."""
        out = self._out
        chunks: list[bytes] = []
        while out:
            data = out.popleft()[1]
            if data is None:
                return b"".join(chunks), True
            chunks.append(data)
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), False

    def _flush(self) -> None:
        """Run by the hub once the greenlets it woke have queued their frames: all that is
        queued goes out in one non-blocking write; what the socket does not take now
        (and a close) is left to the writer greenlet."""
        if not self._flush_deferred:
            # Once more to the back of the hub's queue: the greenlets it has woken
            # meanwhile add their frames to this write.
            self._flush_deferred = True
            self._loop.run_callback(self._flush)
            return
        self._flush_deferred = False
        self._flush_queued = False
        if self._writing or not self._out:
            return
        fd = self.sock.fileno()
        if self._out[0][1] is not None and fd >= 0:
            data, finish = self._take()
            self._queued -= len(data)
            try:
                sent = os.write(fd, data) if data else 0
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self.log.info("fakeswitch.esl.write_failed", error=str(exc))
                self.abort()
                return
            if finish:
                self._out.appendleft((False, None))
            if sent < len(data):
                self._queued += len(data) - sent
                self._out.appendleft((False, data[sent:]))  # not an event: it is half sent
        if self._out:
            self._wake.set()

    def _write_loop(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                while self._out:
                    data, finish = self._take()
                    if data:
                        self._queued -= len(data)
                        self._writing = True
                        try:
                            self.sock.sendall(data)
                        finally:
                            self._writing = False
                    if finish:
                        self._shutdown_socket()
                        return
        except OSError as exc:
            self.log.info("fakeswitch.esl.write_failed", error=str(exc))
            self.abort()

    def close(self) -> None:
        """Polite close: disconnect notice after everything queued, then FIN."""
        if self.closed:
            return
        self._out.append((False, DISCONNECT_NOTICE))
        self._out.append((False, None))
        self.closed = True
        self._wake.set()
        self.server._forget(self)

    def abort(self) -> None:
        """Abrupt close: no notice, queued bytes lost."""
        self.closed = True
        self._out.clear()
        self._held = []
        self._shutdown_socket()
        self.server._forget(self)
        if gevent.getcurrent() is not self._writer:
            self._writer.kill(block=False)

    def _shutdown_socket(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    # ---- inbound --------------------------------------------------------
    def serve(self) -> None:
        self.send(b"Content-Type: auth/request\n\n")
        reader = CommandReader()
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    break
                reader.feed(data)
                while not self.closed:
                    cmd = reader.next_command()
                    if cmd is None:
                        break
                    self.busy = True
                    try:
                        self.execute(cmd)
                    finally:
                        self.busy = False
                        self._release_held()
        except BadInput as exc:
            self.log.warning("fakeswitch.esl.bad_input", error=str(exc))
            self.abort()
            return
        except OSError as exc:
            self.log.info("fakeswitch.esl.read_failed", error=str(exc))
        # Peer went away or we are closing: FreeSWITCH still tries the notice.
        self.close()
        self._writer.join(timeout=5)

    def execute(self, cmd: Command) -> None:
        line = cmd.line
        low = line.lower()
        if low.startswith(("exit", "...")):
            self.send(reply("+OK bye"))
            self.close()
            return
        if not self.authed:
            self._before_auth(line, low)
            return
        if low.startswith("filter "):
            self.send(reply(self._filter(line[7:])))
        elif low.startswith("divert_events"):
            self.send(reply("-ERR not controlling a session."))
        elif low.startswith("sendmsg"):
            self.send(reply(self._sendmsg(cmd)))
        elif low.startswith("api "):
            self._api(line[4:])
        elif low.startswith("bgapi "):
            self._bgapi(line[6:], cmd.header("Job-UUID"))
        elif low.startswith(("linger", "nolinger")):
            self.send(reply("-ERR not controlling a session"))
        elif low.startswith("event"):
            self.send(reply(self._event(line)))
        elif low.startswith("nixevent"):
            self.send(reply(self._nixevent(line)))
        elif low.startswith("noevents"):
            self.send(reply(self._noevents()))
        else:
            self.send(reply("-ERR command not found"))

    def _before_auth(self, line: str, low: str) -> None:
        if low.startswith("auth "):
            if line[5:] == self.server.password:
                self.authed = True
                self.log.info("fakeswitch.esl.authed")
                self.send(reply("+OK accepted"))
            else:
                self.log.info("fakeswitch.esl.auth_refused")
                self.send(reply("-ERR invalid"))
                self.close()
        elif low.startswith("userauth "):
            # No directory users in the fake: every userauth fails like an unknown user.
            self.send(reply("-ERR invalid"))
            self.close()
        else:
            self.send(reply("-ERR command not found"))

    # ---- subscriptions (the rest: esl_protocol.Subscriptions) -----------
    def _noevents(self) -> str:
        self._drop_events()
        return self._unsubscribe_all()

    def _subscriptions_changed(self) -> None:
        self.server.subscriptions_changed()

    # ---- commands that run things ---------------------------------------
    def _sendmsg(self, cmd: Command) -> str:
        uuid = cmd.line[7:].strip(" ")
        if not uuid:
            uuid = cmd.header("session-id") or ""
        if not uuid:
            return "-ERR invalid session id []"
        headers: dict[str, str] = {"Command": cmd.line}
        for key, value in cmd.headers:
            if key.lower() != "content-length":
                headers[key] = value
        if cmd.body is not None:
            headers["_body"] = cmd.body
        try:
            return self.server.sendmsg(uuid, headers)
        except Exception:
            self.log.exception("fakeswitch.esl.sendmsg_failed", uuid=uuid)
            return "-ERR internal error"

    def _api(self, api_line: str) -> None:
        server = self.server
        api_event = server.make_api_event(api_line)
        result = server.api.execute(api_line)
        # FreeSWITCH answers an empty body with this text (api only, not bgapi).
        self.send(api_response(result.body or "-ERR no reply\n"))
        if api_event is not None:
            server.bus.fire(api_event)

    def _bgapi(self, api_line: str, job_uuid: str | None) -> None:
        job = job_uuid or str(uuidlib.uuid4())
        self.send(
            f"Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\n"
            f"Job-UUID: {job}\n\n".encode()
        )
        self.server.spawn_job(api_line, job)


_SERIALIZERS: dict[str, Callable[[FsEvent], bytes]] = {
    "plain": serialize_plain,
    "json": serialize_json,
    "xml": serialize_xml,
}


class EslServer:
    """mod_event_socket (inbound) for the fake switch; see the module docstring."""

    def __init__(
        self,
        *,
        api: ApiRegistry,
        bus: EventBus,
        events: EventFactory,
        sendmsg: Callable[[str, dict[str, str]], str],
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "ClueCon",
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ) -> None:
        self.api = api
        self.bus = bus
        self.events = events
        self.sendmsg = sendmsg
        self.password = password
        self.max_queue_bytes = max_queue_bytes
        self._host = host
        self._port = port
        self._server: StreamServer | None = None
        self._token: int | None = None
        self._conns: set[_Connection] = set()
        self._jobs: set[gevent.Greenlet] = set()
        #: Event names some connection listens to (True: every name); None: to be worked out.
        self._interest: frozenset[str] | bool | None = None

    # ---- lifecycle ------------------------------------------------------
    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("EslServer already started")
        self._server = StreamServer((self._host, self._port), self._handle)
        self._server.start()
        self._token = self.bus.subscribe(self._on_event, self.wants)
        host, port = self.address
        log.info("fakeswitch.esl.listening", host=host, port=port)

    def stop(self, *, end_jobs: bool = True) -> None:
        """Close every connection politely (disconnect notice) and stop listening;
        ``end_jobs=False``: background jobs go on (an originate still rings, as in
        FreeSWITCH, where they run on threads of their own)."""
        if self._server is None:
            return
        if self._token is not None:
            self.bus.unsubscribe(self._token)
            self._token = None
        self._server.stop(timeout=1)
        writers = []
        for conn in list(self._conns):
            writers.append(conn._writer)
            conn.close()
        gevent.joinall(writers, timeout=2)
        if end_jobs:
            gevent.killall(list(self._jobs), block=False)
            self._jobs.clear()
        self._server = None
        log.info("fakeswitch.esl.stopped")

    def drop_connections(self) -> None:
        """Test helper: every client socket is cut with no notice (a crashed switch)."""
        for conn in list(self._conns):
            conn.abort()
        log.info("fakeswitch.esl.connections_dropped")

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("EslServer not started")
        host, port = self._server.address[:2]
        return host, port

    @property
    def connections(self) -> int:
        return len(self._conns)

    # ---- internals ------------------------------------------------------
    def _handle(self, sock: socket.socket, peer: tuple) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(self, sock, peer)
        self._conns.add(conn)
        conn.log.info("fakeswitch.esl.connected")
        try:
            conn.serve()
        except Exception:
            # A bug in the fake must not take the server down with it.
            conn.log.exception("fakeswitch.esl.connection_crashed")
            conn.abort()
        finally:
            self._forget(conn)
            conn.log.info("fakeswitch.esl.disconnected")

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        self._interest = None

    def subscriptions_changed(self) -> None:
        self._interest = None

    def wants(self, name: str) -> bool:
        """Whether a connection may want an event called ``name`` (its filters aside)."""
        interest = self._interest
        if interest is None:
            interest = self._interest = self._work_out_interest()
        return interest is True or name in interest  # type: ignore[operator]

    def _work_out_interest(self) -> frozenset[str] | bool:
        names: set[str] = set()
        for conn in self._conns:
            if conn.closed or not conn.events_on:
                continue
            if conn.all_events:
                return True
            names |= conn.event_types
        return frozenset(names)

    def _on_event(self, ev: FsEvent) -> None:
        frames: dict[str, bytes] = {}
        for conn in list(self._conns):
            conn.offer(ev, frames)

    def make_api_event(self, api_line: str) -> FsEvent | None:
        """The API event FreeSWITCH numbers before running a known command."""
        if not self.api.exists(api_line):
            return None
        if not self.bus.wanted("API"):
            self.events.skip()
            return None
        command, sep, args = api_line.partition(" ")
        headers = [("API-Command", command)]
        if sep:
            headers.append(("API-Command-Argument", args))
        return self.events.make(
            "API",
            headers,
            calling_file="switch_loadable_module.c",
            calling_function="switch_api_execute",
            calling_line=2954,
        )

    def spawn_job(self, api_line: str, job_uuid: str) -> None:
        job = gevent.spawn(self._run_job, api_line, job_uuid)
        self._jobs.add(job)
        job.link(self._jobs.discard)

    def _run_job(self, api_line: str, job_uuid: str) -> None:
        try:
            api_event = self.make_api_event(api_line)
            result = self.api.execute(api_line)
            if api_event is not None:
                self.bus.fire(api_event)
            headers = [("Job-UUID", job_uuid), ("Job-Command", result.command)]
            if result.args is not None:
                headers.append(("Job-Command-Arg", result.args))
            self.bus.fire(
                self.events.make(
                    "BACKGROUND_JOB",
                    headers,
                    body=result.body,
                    calling_file="mod_event_socket.c",
                    calling_function="api_exec",
                    calling_line=1572,
                )
            )
        except Exception:
            log.exception("fakeswitch.esl.bgapi_failed", job_uuid=job_uuid)
