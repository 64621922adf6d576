"""The daemon's loopback HTTP port: liveness, readiness, metrics and JSON views.

Routes are plain callables returning ``(status, content_type, body)``; the
adapter only maps paths to them, so the daemon decides what each one says.
gevent's WSGI server keeps it in the daemon's one process, without threads.

Theory of operation: an HTTP client never starves calls
-------------------------------------------------------
* At most ``max_connections`` connections are open. A new one past that closes the
  longest-idle connection (one that has not sent a whole request yet) to make room; if every
  connection is busy with a request, the new one is answered ``503`` at once and closed.
  Idle clients therefore never hold file descriptors the calls need, and ``/healthz`` keeps
  answering however many of them there are.
* A client has ``read_timeout`` seconds to send its whole request (line, headers and body);
  a slow or silent one is cut off. Every answer closes the connection (no keep-alive).
* Routes marked ``private`` (customer data) and every POST (changes) need
  ``Authorization: Bearer <token>``, compared in constant time. With no token configured they
  answer ``403`` saying so: nothing private is served to whoever can reach the port.
  ``/healthz``, ``/readyz`` and ``/metrics`` stay open: they carry no customer data or
  secret, and monitoring must reach them without credentials.
* Streams (``stream``: ``GET /events``, server-sent events) are private too; the token may
  also come as ``?token=`` since a browser's EventSource cannot send headers (pywsgi writes
  no access log, and no path logged here carries the query, so it is never logged). Once a
  stream is accepted its connection leaves the cap above for a cap of its own
  (``max_streams``): a stream is busy for ever and could otherwise hold every slot, so
  streams never take more than one connection each from the other endpoints, and only
  while their request is read. Past ``max_streams`` a new stream is answered ``503``. A
  stream's writes are bounded by ``read_timeout`` like any other (a client that stopped
  reading is cut off), and it runs in its own greenlet, never in the dispatcher's.
* A POST body must be JSON in UTF-8 with a ``Content-Length`` (digits only): too large is
  ``413``, anything else it cannot take (bad UTF-8, not JSON, nested deeper than
  ``MAX_DEPTH``) ``400``, before the handler sees it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import select
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import structlog
from gevent.pywsgi import WSGIHandler, WSGIServer

log = structlog.get_logger()

Response = tuple[int, str, bytes]
Handler = Callable[[re.Match[str]], Response]
#: A POST handler gets the parsed JSON body too.
PostHandler = Callable[[re.Match[str], Any], Response]


#: A stream's request: its query parameters (the token left out) and headers it reads.
@dataclass(frozen=True)
class StreamRequest:
    params: dict[str, str]  # the first value of each query parameter
    last_event_id: str | None  # the Last-Event-ID header
    gone: Callable[[], bool]  # whether the client closed its side (checked without waiting)


#: A stream's handler answers a refusal, or the stream's chunks (closed when the client goes).
StreamHandler = Callable[[re.Match[str], StreamRequest], "Response | Iterable[bytes]"]
#: Largest request body accepted (a list of disposition codes is a few hundred bytes).
MAX_BODY = 64 * 1024
#: Deepest JSON nesting accepted in a body (lists and objects).
MAX_DEPTH = 32

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_STREAM_HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Connection", "close"),
    ("X-Accel-Buffering", "no"),  # nginx: pass each event on at once
]
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b'Connection: close\r\nContent-Length: 23\r\n\r\n{"error": "too_busy"}\r\n'
)
_DIGITS = re.compile(r"[0-9]{1,12}")


def json_response(status: int, payload: Any) -> Response:
    return status, "application/json", json.dumps(payload, sort_keys=True, default=str).encode()


def text_response(status: int, text: str, content_type: str = "text/plain") -> Response:
    return status, content_type + "; charset=utf-8", text.encode()


class _TooSlow(BaseException):
    """The client did not send its request within read_timeout (raised by a gevent timer;
    a BaseException so that no ``except Exception`` on the way swallows it)."""


class _Handler(WSGIHandler):
    """pywsgi's handler, telling the server when a connection is idle or busy, and under a
    deadline for reading the request."""

    server: _Server
    deadline: gevent.Timeout | None = None

    def handle_one_request(self) -> Any:
        self.server.mark(self, busy=False)
        self.deadline = gevent.Timeout.start_new(self.server.read_timeout, _TooSlow)
        try:
            return super().handle_one_request()
        except _TooSlow:
            self.server.timeouts += 1
            return None  # close the connection
        finally:
            self.deadline.close()

    def read_request(self, raw_requestline: str) -> Any:
        self.server.mark(self, busy=True)
        return super().read_request(raw_requestline)

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["ccd.handler"] = self
        return environ


class _Server(WSGIServer):
    """WSGIServer with a cap on open connections (see the module docstring)."""

    handler_class = _Handler

    def __init__(
        self, *args: Any, max_connections: int, read_timeout: float, max_streams: int, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.max_streams = max_streams
        self.connections: dict[_Handler, bool] = {}  # handler -> busy, oldest first
        # Accepted streams, outside max_connections, and the greenlet serving each.
        self.streams: dict[_Handler, gevent.Greenlet] = {}
        self.evicted = self.refused = self.timeouts = 0
        self._said = 0.0

    def mark(self, handler: _Handler, *, busy: bool) -> None:
        self.connections.pop(handler, None)  # re-inserted: the idle order is by last activity
        self.connections[handler] = busy

    def handle(self, sock: socket.socket, address: Any) -> None:
        if len(self.connections) >= self.max_connections and not self._evict_one():
            self.refused += 1
            self._say_full()
            with contextlib.suppress(OSError):
                sock.sendall(_BUSY)
                sock.shutdown(socket.SHUT_WR)
            gevent.spawn(_drain_and_close, sock)  # closing on an unread request would reset
            return
        sock.settimeout(self.read_timeout)  # any one read or write: a stalled peer is cut off
        handler = self.handler_class(sock, address, self)
        self.connections[handler] = False
        try:
            handler.handle()
        finally:
            self.connections.pop(handler, None)

    def _evict_one(self) -> bool:
        """Close the longest-idle connection; False when every connection is busy."""
        for handler, busy in self.connections.items():
            if not busy:
                del self.connections[handler]
                self.evicted += 1
                self._say_full()
                with contextlib.suppress(OSError, AttributeError):
                    handler.socket.shutdown(socket.SHUT_RDWR)  # its readline returns b""
                return True
        return False

    def _say_full(self) -> None:
        if time.monotonic() - self._said >= 10.0:  # one line, not one per connection
            self._said = time.monotonic()
            log.warning(
                "http.connections_full",
                limit=self.max_connections,
                evicted=self.evicted,
                refused=self.refused,
            )


def _drain_and_close(sock: socket.socket) -> None:
    """Read what the refused client sent (a second at most), then close: the 503 arrives
    instead of a connection reset."""
    with contextlib.suppress(OSError), gevent.Timeout(1.0, False):
        sock.settimeout(1.0)
        while sock.recv(4096):
            pass
    sock.close()


class HttpServer:
    """A small router (GET, and POST with a JSON body) on a WSGI server bound to loopback."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str = "",
        max_connections: int = 256,
        read_timeout: float = 5.0,
        max_streams: int = 32,
    ) -> None:
        self._routes: list[tuple[re.Pattern[str], Handler, bool]] = []
        self._streams: list[tuple[re.Pattern[str], StreamHandler]] = []
        self._headers: dict[str, Sequence[tuple[str, str]]] = {}  # path -> extra headers
        self._posts: list[tuple[re.Pattern[str], PostHandler]] = []
        self._token = token.encode()
        self._server = _Server(
            (host, port),
            self._app,
            log=None,
            error_log=None,
            max_connections=max_connections,
            read_timeout=read_timeout,
            max_streams=max_streams,
        )

    def route(
        self,
        pattern: str,
        handler: Handler,
        *,
        private: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """GET ``pattern``; ``private``: the answer holds customer data (token required).
        ``headers``: sent as well, for a plain path (a page's Content-Security-Policy...)."""
        self._routes.append((re.compile(pattern + r"\Z"), handler, private))
        if headers:
            self._headers[pattern] = tuple(headers)

    def stream(self, pattern: str, handler: StreamHandler) -> None:
        """GET ``pattern`` as a long-lived stream (server-sent events); always needs the
        token, from the header or ``?token=`` (see the module docstring)."""
        self._streams.append((re.compile(pattern + r"\Z"), handler))

    def post(self, pattern: str, handler: PostHandler) -> None:
        """POST ``pattern`` with a JSON body; always needs the token (it changes things)."""
        self._posts.append((re.compile(pattern + r"\Z"), handler))

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[0], self._server.server_port

    @property
    def stats(self) -> dict[str, int]:
        """Open connections, and connections evicted, refused or timed out so far."""
        s = self._server
        return {
            "open": len(s.connections),
            "streams": len(s.streams),
            "evicted": s.evicted,
            "refused": s.refused,
            "timeouts": s.timeouts,
        }

    def start(self) -> None:
        """Bind and listen; OSError (the port is taken, the address is not local) is left to
        the caller, which knows how to say it."""
        self._server.start()
        log.info("http.listening", host=self.address[0], port=self.address[1])

    def stop(self) -> None:
        # A stream never ends by itself, and the server does not wait for its greenlets.
        gevent.killall(list(self._server.streams.values()), timeout=1)
        self._server.stop(timeout=1)

    # ------------------------------------------------------------------ the application
    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "POST":
            status, ctype, body = self._dispatch_post(path, environ)  # reads, then _read_done
        else:
            _read_done(environ)  # the request is in: what follows is ours, not the client's
            stream = self._stream(method, path, environ)
            if stream is not None and not isinstance(stream, tuple):
                start_response("200 OK", list(_STREAM_HEADERS))
                return stream
            status, ctype, body = stream or self._dispatch(method, path, environ)
        headers = [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
        if status == 200 and path in self._headers:
            ours = {name.lower() for name, _ in self._headers[path]}
            headers = [h for h in headers if h[0].lower() not in ours]
            headers.extend(self._headers[path])
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="ccd"'))
        start_response(f"{status} {_REASONS.get(status, 'Unknown')}", headers)
        return [body]

    def _stream(self, method: str, path: str, environ: dict[str, Any]) -> Any:
        """None: not a stream; a Response: refused; else the stream's chunks, its connection
        moved from the connection cap to the streams' cap until it ends."""
        found = next(((p.match(path), h) for p, h in self._streams if p.match(path)), None)
        if found is None or method != "GET":
            return None
        match, handler = found
        try:
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=16)
        except ValueError:  # more fields than any client of ours sends
            return json_response(400, {"error": "bad_query"})
        params = {name: values[0] for name, values in query.items()}
        refusal = self._authorized(environ, params.pop("token", None))
        if refusal is not None:
            return refusal
        server, connection = self._server, environ.get("ccd.handler")
        if len(server.streams) >= server.max_streams:
            return json_response(503, {"error": "too_many_streams", "limit": server.max_streams})
        sock = getattr(connection, "socket", None)
        request = StreamRequest(params, environ.get("HTTP_LAST_EVENT_ID"), lambda: _gone(sock))
        try:
            chunks = handler(match, request)
        except Exception:
            log.exception("http.handler_failed", path=path)
            return json_response(500, {"error": "internal"})
        if isinstance(chunks, tuple):
            return chunks
        if connection is not None:
            server.connections.pop(connection, None)
            server.streams[connection] = gevent.getcurrent()
        return _streaming(chunks, server.streams, connection)

    def _authorized(self, environ: dict[str, Any], token: str | None = None) -> Response | None:
        """None when the request carries the token (the header, or ``token`` from a stream's
        query); else the refusal to send."""
        if not self._token:
            return json_response(
                403,
                {
                    "error": "forbidden",
                    "why": "this endpoint needs a token and none is configured: "
                    "set CCD_HTTP_TOKEN for the daemon, then send Authorization: Bearer <token>",
                },
            )
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if token is not None and not scheme:
            scheme, given = "bearer", token
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self._token
        ):
            return json_response(401, {"error": "unauthorized", "why": "Bearer token required"})
        return None

    def _dispatch_post(self, path: str, environ: dict[str, Any]) -> Response:
        for pattern, handler in self._posts:
            match = pattern.match(path)
            if not match:
                continue
            refusal = self._authorized(environ) or self._body_refusal(environ)
            if refusal is not None:
                _skip_body(environ)
                return refusal
            payload = _read_json(environ)
            _read_done(environ)
            if isinstance(payload, tuple):
                return payload  # a refusal
            try:
                return handler(match, payload)
            except Exception:
                log.exception("http.handler_failed", path=path)
                return json_response(500, {"error": "internal"})
        _skip_body(environ)
        _read_done(environ)
        return json_response(405 if self._match(path) else 404,
                             {"error": "no_post_here", "path": path})  # fmt: skip

    @staticmethod
    def _body_refusal(environ: dict[str, Any]) -> Response | None:
        length = environ.get("CONTENT_LENGTH")
        if not length:
            return json_response(411, {"error": "content_length_required"})
        if not _DIGITS.fullmatch(length):
            return json_response(400, {"error": "bad_content_length"})
        if int(length) > MAX_BODY:
            return json_response(413, {"error": "body_too_large", "limit": MAX_BODY})
        return None

    def _match(self, path: str) -> tuple[re.Match[str], Handler, bool] | None:
        for pattern, handler, private in self._routes:
            match = pattern.match(path)
            if match:
                return match, handler, private
        return None

    def _dispatch(self, method: str, path: str, environ: dict[str, Any]) -> Response:
        if method not in ("GET", "HEAD"):
            _skip_body(environ)
            return json_response(405, {"error": "method_not_allowed"})
        found = self._match(path)
        if found is None:
            return json_response(404, {"error": "not_found", "path": path})
        match, handler, private = found
        if private and (refusal := self._authorized(environ)) is not None:
            return refusal
        try:
            return handler(match)
        except Exception:
            log.exception("http.handler_failed", path=path)
            return json_response(500, {"error": "internal"})


def _streaming(
    chunks: Iterable[bytes], streams: dict[Any, Any], connection: Any
) -> Iterator[bytes]:
    """The stream's chunks; when it ends (the client went, the daemon stops, a write timed
    out) its slot is given back and the handler's iterator closed (its Redis connection)."""
    try:
        yield from chunks
    finally:
        streams.pop(connection, None)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _gone(sock: socket.socket | None) -> bool:
    """Whether the client closed its side: readable with nothing to read. A stream's client
    sends nothing after its request, so this never takes anything it meant for us."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _read_done(environ: dict[str, Any]) -> None:
    """The request is read: the client's deadline no longer applies."""
    handler = environ.get("ccd.handler")
    if handler is not None and handler.deadline is not None:
        handler.deadline.close()


def _skip_body(environ: dict[str, Any]) -> None:
    """Do not read a body that was refused (pywsgi would read it to the end to keep the
    connection; the connection is closed instead)."""
    stream = environ.get("wsgi.input")
    if stream is not None and hasattr(stream, "_chunked_input_error"):
        stream._chunked_input_error = True


def _read_json(environ: dict[str, Any]) -> Any:
    """The body as JSON, or a refusal (a Response tuple)."""
    try:
        raw = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    except _TooSlow:
        _skip_body(environ)
        return json_response(408, {"error": "request_timeout"})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return json_response(400, {"error": "body_is_not_utf8"})
    if _depth(text) > MAX_DEPTH:
        return json_response(400, {"error": "body_nested_too_deeply", "limit": MAX_DEPTH})
    try:
        return json.loads(text or "null")
    except (ValueError, RecursionError):
        return json_response(400, {"error": "body_is_not_json"})


def _depth(text: str) -> int:
    """Nesting depth of JSON text (brackets outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
