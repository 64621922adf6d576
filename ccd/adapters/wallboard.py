"""The wallboard page (issue 13): a static file shipped with the package, for the daemon's
HTTP adapter to serve at ``GET /wallboard``.

The page (``ccd/web/wallboard.html``: HTML, CSS and JavaScript in one file, no outside
resources) reads ``GET /events`` (server-sent events; an event ``stats`` carries the /stats
document of ccd.core.stats_view, ``call.*``/``agent.*`` events feed its ticker) and polls
``GET /stats`` every few seconds while the feed is down. With a token it sends
``Authorization: Bearer <token>`` on fetch and ``?token=<token>`` on /events, because
EventSource cannot send headers: the HTTP adapter must accept the token as a query parameter
on /events (and should keep it out of its access log).
"""

from __future__ import annotations

from importlib import resources

__all__ = ["WALLBOARD_CONTENT_TYPE", "WALLBOARD_HEADERS", "wallboard_page"]

WALLBOARD_CONTENT_TYPE = "text/html; charset=utf-8"
#: Headers to send with the page: it loads nothing from elsewhere and runs only its own script.
WALLBOARD_HEADERS = (
    ("Content-Type", WALLBOARD_CONTENT_TYPE),
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
)


def wallboard_page() -> bytes:
    """The page's bytes, read from the installed package."""
    return resources.files("ccd").joinpath("web", "wallboard.html").read_bytes()
