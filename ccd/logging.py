"""Structured logging: one JSON object a line in production, a readable console on a terminal.

Theory of operation
-------------------
Everything goes through structlog with one processor chain:

    contextvars → level → ISO timestamp (UTC) → exception text → redaction → renderer

``structlog.contextvars.bind_contextvars(call=…, agent=…, queue=…)`` therefore appears on every
line logged while it is bound (gevent gives each greenlet its own context). Standard-library
logging (greenswitch, redis-py, gevent) is routed into the same chain and stream through a root
handler, so a line from a library looks like ours, with ``logger`` naming its source.

Redaction runs last before rendering, so nothing escapes it: the value of any key named like
password / secret / token / credential / authorization becomes ``***``; in any string value a URL's
``user:password@`` becomes ``user:***@``; an ESL ``auth <password>`` line loses its password.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from ccd.config import redact_url

__all__ = ["LEVELS", "configure_logging", "redact_event"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_MASK = "***"
_SECRET_KEY_RE = re.compile(
    r"pass(word|wd)?$|passphrase|secret|token|credential|authorization|api_?key", re.IGNORECASE
)
_ESL_AUTH_RE = re.compile(r"^([ \t]*auth[ \t]+).+$", re.IGNORECASE | re.MULTILINE)
# Nested values are walked; a pathological structure is cut off rather than recursed forever.
_MAX_DEPTH = 6


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "@" in value or "=" in value:  # userinfo, or a ?password= query parameter
            value = redact_url(value)
        if "auth" in value or "AUTH" in value:
            value = _ESL_AUTH_RE.sub(lambda m: m.group(1) + _MASK, value)
        return value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            k: _MASK
            if isinstance(k, str) and _SECRET_KEY_RE.search(k)
            else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    return value


#: Key name -> is it a secret's (the daemon logs a few dozen names, over and over).
_secret_keys: dict[str, bool] = {}


def _is_secret_key(key: str) -> bool:
    secret = _secret_keys.get(key)
    if secret is None:
        secret = bool(_SECRET_KEY_RE.search(key))
        if len(_secret_keys) < 4096:  # names come from code; a flood of odd ones is not kept
            _secret_keys[key] = secret
    return secret


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets by key name and credentials inside strings."""
    for key, value in list(event_dict.items()):
        kind = type(value)
        plain = kind in _PLAIN or (kind is str and not _MAYBE_CREDENTIAL(value))
        if plain and _secret_keys.get(key) is False:
            continue  # the usual line: known names, plain values (a few us saved a line)
        if _is_secret_key(key):
            event_dict[key] = _MASK
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


_PLAIN = frozenset({int, float, bool, type(None)})
#: A string that may hold a credential: what _redact_value looks at more closely.
_MAYBE_CREDENTIAL = re.compile(r"[@=]|auth|AUTH").search


def _order_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """JSON lines start with timestamp, level, event: the columns a reader scans first."""
    head = {k: event_dict.pop(k) for k in ("timestamp", "level", "event") if k in event_dict}
    head.update(event_dict)
    return head


class _UtcStamp:
    """structlog processor: ``timestamp`` in ISO 8601 UTC with microseconds, like
    ``TimeStamper(fmt="iso", utc=True)`` at a sixth of its cost (the date part is made once
    a second: the daemon logs several lines per call)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second, self._prefix = -1, ""

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


def _json_line(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """structlog renderer: one JSON object (orjson; anything it cannot encode as its repr)."""
    try:
        return orjson.dumps(event_dict, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, ValueError):  # what orjson refuses (an int beyond 64 bits, deep nesting)
        return json.dumps(event_dict, default=repr)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _LineWriter:
    """structlog's logger: each line written and flushed at once. One instance serves every
    log call (structlog's WriteLogger is made anew for each, with a lock): the daemon's
    greenlets share one thread, and one write call never yields to another greenlet."""

    def __init__(self, stream: TextIO) -> None:
        self._write, self._flush = stream.write, stream.flush

    def factory(self, *_args: Any) -> _LineWriter:
        return self

    def msg(self, message: str) -> None:
        self._write(message + "\n")
        self._flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the root handler installed here, so configuring again replaces it."""


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog and stdlib logging to write to ``stream`` (default: sys.stdout).

    ``fmt``: "json", "console", or "auto" (console when ``stream`` is a terminal).
    May be called again (tests, configuration reload); the last call wins.
    """
    if stream is None:
        stream = sys.stdout
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f'log format: expected "auto", "json" or "console", got {fmt!r}')
    if level not in LEVELS:
        raise ValueError(f"log level: expected one of {', '.join(LEVELS)}, got {level!r}")
    console = fmt == "console" or (fmt == "auto" and _is_tty(stream))
    level_no = LEVELS[level]

    render: list[Any]
    if console:
        render = [structlog.dev.ConsoleRenderer(colors=_is_tty(stream))]
    else:
        render = [_order_keys, _json_line]

    # A traceback is turned into text before redaction so the redactor sees it; the console
    # renderer then prints that text as it is.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _UtcStamp(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]

    structlog.configure(
        processors=[*shared, redact_event, *render],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=_LineWriter(stream).factory,
        context_class=dict,
        # Not cached: loggers made at import time must follow a later configure_logging().
        cache_logger_on_first_use=False,
    )

    handler = _OurHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_event,
                *render,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
