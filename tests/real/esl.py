"""A small event-socket client for the real-switch tier: FreeSWITCH's own view of calls.

Theory of operation
-------------------
One TCP connection, authenticated; a reader thread (a greenlet under the suite's gevent
patching) parses frames with :mod:`ccd.esl_wire`. Command replies (``command/reply``,
``api/response``) answer the oldest command waiting, in order, as FreeSWITCH sends them;
events are kept in :attr:`EslClient.events` with the monotonic time they arrived, so a
test can both wait for one (:meth:`wait_event`) and read the whole sequence afterwards.

It is the tests' witness, independent of the daemon's own ESL adapter: what it records is
what FreeSWITCH reported.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ccd.core.esl_wire import EslEvent, Frame, FrameParser, decode_event, encode_command

__all__ = ["EslClient", "EslFailure", "Seen"]


class EslFailure(Exception):
    """FreeSWITCH refused, closed the connection or did not answer in time."""


@dataclass(frozen=True)
class Seen:
    """One event as received: monotonic arrival time and the decoded event."""

    at: float
    event: EslEvent

    @property
    def name(self) -> str:
        return self.event.name

    @property
    def uuid(self) -> str:
        return self.event.uuid

    def get(self, key: str, default: str = "") -> str:
        return self.event.get(key, default)

    def var(self, name: str, default: str = "") -> str:
        return self.event.var(name, default)


class EslClient:
    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        timeout: float = 10.0,
        on_event: Callable[[Seen], None] | None = None,
    ) -> None:
        """``on_event``: called (in the reader) for each event instead of keeping it."""
        self.timeout = timeout
        self._on_event = on_event
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(None)
        self._parser = FrameParser()
        self._lock = threading.Condition()
        self._replies: list[Frame] = []
        self._closed = False
        self.events: list[Seen] = []
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        greeting = self._next_reply()
        if greeting.content_type != "auth/request":
            raise EslFailure(f"unexpected greeting {greeting.headers}")
        reply = self._command(f"auth {password}")
        if not reply.headers.get("Reply-Text", "").startswith("+OK"):
            self.close()
            raise EslFailure("event socket refused the password")

    # -- plumbing ---------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while True:
                data = self.sock.recv(262144)
                if not data:
                    break
                now = time.monotonic()
                self._parser.feed(data)
                with self._lock:
                    for frame in self._parser:
                        ctype = frame.content_type
                        if ctype in ("text/event-plain", "text/event-json"):
                            seen = Seen(now, decode_event(frame))
                            if self._on_event is not None:
                                self._on_event(seen)
                            else:
                                self.events.append(seen)
                        elif ctype == "text/disconnect-notice":
                            continue
                        else:
                            self._replies.append(frame)
                    self._lock.notify_all()
        except OSError:
            pass
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify_all()

    def _next_reply(self) -> Frame:
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while not self._replies:
                left = deadline - time.monotonic()
                if self._closed:
                    raise EslFailure("event socket closed")
                if left <= 0:
                    raise EslFailure("no reply from the event socket")
                self._lock.wait(left)
            return self._replies.pop(0)

    def _command(self, line: str, headers: Iterable[tuple[str, str]] = ()) -> Frame:
        with self._send_lock:
            self.sock.sendall(encode_command(line, headers))
            return self._next_reply()

    # -- commands -------------------------------------------------------------
    def api(self, command: str) -> str:
        """``api <command>``: FreeSWITCH's answer text (blocking the connection)."""
        return self._command(f"api {command}").body_text()

    def sendevent(self, name: str, headers: Iterable[tuple[str, str]] = ()) -> str:
        """``sendevent <name>``: FreeSWITCH fires it to every subscriber (stamped by it)."""
        return self._command(f"sendevent {name}", headers).headers.get("Reply-Text", "")

    def bgapi(self, command: str, job_uuid: str | None = None) -> str:
        """``bgapi <command>`` with our own Job-UUID; the result comes as BACKGROUND_JOB."""
        job = job_uuid or str(uuidlib.uuid4())
        reply = self._command(f"bgapi {command}", [("Job-UUID", job)])
        if not reply.headers.get("Reply-Text", "").startswith("+OK"):
            raise EslFailure(f"bgapi refused: {reply.headers.get('Reply-Text')}")
        return job

    def subscribe(self, *names: str, fmt: str = "json") -> None:
        reply = self._command(f"event {fmt} {' '.join(names)}")
        if not reply.headers.get("Reply-Text", "").startswith("+OK"):
            raise EslFailure(f"subscription refused: {reply.headers.get('Reply-Text')}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"exit\n\n")
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- events ---------------------------------------------------------------
    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.events)

    def mark(self) -> int:
        """An index into :attr:`events`: later waits can ignore what came before it."""
        with self._lock:
            return len(self.events)

    def wait_event(
        self,
        predicate: Callable[[Seen], bool],
        timeout: float = 10.0,
        *,
        since: int = 0,
        what: str = "",
    ) -> Seen:
        """The first event from index ``since`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        index = since
        with self._lock:
            while True:
                while index < len(self.events):
                    seen = self.events[index]
                    index += 1
                    if predicate(seen):
                        return seen
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(f"FreeSWITCH reported no {what or 'such event'}")
                self._lock.wait(min(left, 0.5))

    def wait_job(self, job_uuid: str, timeout: float = 30.0) -> Seen:
        return self.wait_event(
            lambda s: s.name == "BACKGROUND_JOB" and s.get("Job-UUID") == job_uuid,
            timeout,
            what=f"BACKGROUND_JOB {job_uuid}",
        )
