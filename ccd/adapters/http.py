"""The daemon's loopback HTTP port: liveness, readiness, metrics and JSON views.

Routes are plain callables returning ``(status, content_type, body)``; the
adapter only maps paths to them, so the daemon decides what each one says.
gevent's WSGI server keeps it in the daemon's one process, without threads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import structlog
from gevent.pywsgi import WSGIServer

log = structlog.get_logger()

Response = tuple[int, str, bytes]
Handler = Callable[[re.Match[str]], Response]
#: A POST handler gets the parsed JSON body too.
PostHandler = Callable[[re.Match[str], Any], Response]
#: Largest request body accepted (a list of disposition codes is a few hundred bytes).
MAX_BODY = 64 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def json_response(status: int, payload: Any) -> Response:
    return status, "application/json", json.dumps(payload, sort_keys=True, default=str).encode()


def text_response(status: int, text: str, content_type: str = "text/plain") -> Response:
    return status, content_type + "; charset=utf-8", text.encode()


class HttpServer:
    """A small router (GET, and POST with a JSON body) on a WSGI server bound to loopback."""

    def __init__(self, host: str, port: int) -> None:
        self._routes: list[tuple[re.Pattern[str], Handler]] = []
        self._posts: list[tuple[re.Pattern[str], PostHandler]] = []
        self._server = WSGIServer((host, port), self._app, log=None, error_log=None)

    def route(self, pattern: str, handler: Handler) -> None:
        self._routes.append((re.compile(pattern + r"\Z"), handler))

    def post(self, pattern: str, handler: PostHandler) -> None:
        self._posts.append((re.compile(pattern + r"\Z"), handler))

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[0], self._server.server_port

    def start(self) -> None:
        self._server.start()
        log.info("http.listening", host=self.address[0], port=self.address[1])

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "POST":
            status, ctype, body = self._dispatch_post(path, environ)
        else:
            status, ctype, body = self._dispatch(method, path)
        start_response(
            f"{status} {_REASONS.get(status, 'Unknown')}",
            [("Content-Type", ctype), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _dispatch_post(self, path: str, environ: dict[str, Any]) -> Response:
        for pattern, handler in self._posts:
            match = pattern.match(path)
            if not match:
                continue
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_response(400, {"error": "bad_content_length"})
            if length > MAX_BODY:
                return json_response(413, {"error": "body_too_large", "limit": MAX_BODY})
            try:
                payload = json.loads(environ["wsgi.input"].read(length) or b"null")
            except ValueError:
                return json_response(400, {"error": "body_is_not_json"})
            try:
                return handler(match, payload)
            except Exception:
                log.exception("http.handler_failed", path=path)
                return json_response(500, {"error": "internal"})
        return json_response(405 if self._dispatch("GET", path)[0] != 404 else 404,
                             {"error": "no_post_here", "path": path})  # fmt: skip

    def _dispatch(self, method: str, path: str) -> Response:
        if method not in ("GET", "HEAD"):
            return json_response(405, {"error": "method_not_allowed"})
        for pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                try:
                    return handler(match)
                except Exception:
                    log.exception("http.handler_failed", path=path)
                    return json_response(500, {"error": "internal"})
        return json_response(404, {"error": "not_found", "path": path})
