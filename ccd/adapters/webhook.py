"""The CRM webhook: offers POSTed as JSON, never in the way of routing.

Theory of operation
-------------------
:meth:`WebhookSender.send` only encodes the payload and appends it to an in-memory queue; it
does no I/O and never yields to another greenlet, so the dispatcher that calls it is never
delayed by a slow or dead CRM. The queue is bounded: when it is full the OLDEST payload is
dropped (logged ``webhook.dropped``), because a CRM wants the offer that is ringing now, not
one from a minute ago.

One worker greenlet (:meth:`start`) takes payloads in order and POSTs each with
``http.client`` under a hard deadline of ``timeout`` seconds for the whole request
(``gevent.Timeout``; the sockets are gevent's). A 2xx answer is ``webhook.sent``. A network
error, a timeout, 408, 429 or 5xx is retried up to ``retries`` times, waiting
``backoff * 2**attempt`` seconds in between; any other status (a 4xx: the CRM refuses this
payload) is not retried. A payload that could not be delivered is ``webhook.failed``. The
worker survives anything a request can throw.

Logs show the URL redacted (:func:`redact_webhook_url`): user info and every query value
become ``***``, since CRMs put tokens there. :meth:`stop` gives the worker ``timeout`` seconds
to finish the current request, then drops what is left (logged ``webhook.stopped``).
Payloads are not persisted: an offer notification is advisory, the call's state lives in Redis.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import gevent
import gevent.event
import structlog

__all__ = ["WebhookSender", "redact_webhook_url"]

log = structlog.get_logger()

_RETRY_STATUSES = frozenset({408, 429})
_MAX_RESPONSE_BYTES = 64 * 1024
_MASK = "***"


def redact_webhook_url(url: str) -> str:
    """``url`` for logs: user info and query values masked, scheme/host/path kept."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = _MASK + "@" + netloc.rpartition("@")[2]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, _MASK) for k, _ in pairs], safe="*") if pairs else _MASK
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparsable url>"


class _Target:
    """What a request needs from the URL, split once."""

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad webhook URL {redact_webhook_url(url)}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"webhook URL must be http(s)://host/..., got {redact_webhook_url(url)}"
            )
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.authorization = None
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.authorization = "Basic " + base64.b64encode(secret.encode()).decode("ascii")


class _Retryable(Exception):
    """This attempt failed in a way worth trying again."""


class WebhookSender:
    """POSTs payloads to one URL from a bounded queue, in a worker greenlet."""

    def __init__(
        self,
        url: str,
        timeout: float,
        max_queue: int = 1000,
        retries: int = 2,
        *,
        backoff: float = 0.5,
    ) -> None:
        self._target = _Target(url)
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be a whole number >= 1, got {max_queue!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
        if not (isinstance(backoff, int | float) and backoff >= 0):
            raise ValueError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        self.url = redact_webhook_url(url)  # the only form of the URL that is ever shown
        self.timeout = float(timeout)
        self.max_queue = max_queue
        self.retries = retries
        self.backoff = float(backoff)
        self._queue: deque[tuple[bytes, dict[str, Any]]] = deque()
        self._wakeup = gevent.event.Event()
        self._worker: gevent.Greenlet | None = None
        self._stopping = False
        # Counters for /metrics and tests.
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Payloads waiting to be sent (not counting one in flight)."""
        return len(self._queue)

    def send(self, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` for delivery; returns at once, never raises, never blocks."""
        context = _context(payload)
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            log.error("webhook.unencodable", url=self.url, error=str(exc), **context)
            return
        if len(self._queue) >= self.max_queue:
            _, old_context = self._queue.popleft()
            self.dropped += 1
            log.warning("webhook.dropped", url=self.url, max_queue=self.max_queue, **old_context)
        self._queue.append((body, context))
        self._wakeup.set()

    def start(self) -> None:
        """Start the worker greenlet (once)."""
        if self._worker is None or self._worker.dead:
            self._stopping = False
            self._worker = gevent.spawn(self._run)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker, giving it ``timeout`` (default: the request timeout) to finish the
        request in flight; payloads still queued are dropped and counted in the log."""
        self._stopping = True
        self._wakeup.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(self.timeout if timeout is None else timeout)
            worker.kill(block=True)
        if self._queue:
            log.warning("webhook.stopped", url=self.url, unsent=len(self._queue))
            self.dropped += len(self._queue)
            self._queue.clear()

    # --- worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            if not self._queue:
                self._wakeup.clear()
                self._wakeup.wait()
                continue
            body, context = self._queue.popleft()
            try:
                self._deliver(body, context)
            except gevent.GreenletExit:
                raise
            except Exception as exc:  # the worker must outlive any bug in one delivery
                self.failed += 1
                log.error("webhook.failed", url=self.url, error=repr(exc), **context)

    def _deliver(self, body: bytes, context: dict[str, Any]) -> None:
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                status = self._post(body)
            except _Retryable as exc:
                reason = str(exc)
            else:
                if 200 <= status < 300:
                    self.sent += 1
                    log.info(
                        "webhook.sent", url=self.url, status=status, attempts=attempt + 1, **context
                    )
                else:
                    self.failed += 1
                    log.warning(
                        "webhook.failed",
                        url=self.url,
                        status=status,
                        attempts=attempt + 1,
                        retry=False,
                        **context,
                    )
                return
            if attempt + 1 < attempts and not self._stopping:
                log.info(
                    "webhook.retry", url=self.url, reason=reason, attempt=attempt + 1, **context
                )
                gevent.sleep(self.backoff * 2**attempt)
            else:
                break
        self.failed += 1
        log.warning("webhook.failed", url=self.url, reason=reason, attempts=attempt + 1, **context)

    def _post(self, body: bytes) -> int:
        """One POST; the status, or _Retryable. The whole request is bounded by ``timeout``."""
        target = self._target
        connection: http.client.HTTPConnection
        if target.https:
            connection = http.client.HTTPSConnection(
                target.host,
                target.port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=self.timeout)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "ccd-webhook",
            "Connection": "close",
        }
        if target.authorization:
            headers["Authorization"] = target.authorization
        try:
            with gevent.Timeout(self.timeout, _Retryable(f"no answer in {self.timeout:g} s")):
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read(_MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            # Messages name host and port at most; the URL's secrets are never in them.
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        finally:
            connection.close()
        if response.status >= 500 or response.status in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {response.status}")
        return response.status


def _context(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a payload in the logs: its event and call uuid, if it has them."""
    context: dict[str, Any] = {}
    if isinstance(payload, Mapping):
        if isinstance(payload.get("event"), str):
            context["payload_event"] = payload["event"][:64]
        call = payload.get("call")
        if isinstance(call, Mapping) and isinstance(call.get("uuid"), str):
            context["call"] = call["uuid"][:64]
    return context
