"""systemd's notify protocol (``Type=notify``), without a library: one datagram per message.

The service manager passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the pid
the watchdog is for). Messages are newline-separated ``KEY=value`` lines: ``READY=1``,
``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=<text>``, ``MAINPID=<pid>``.
Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing, so the daemon runs the
same way by hand. A send that fails is logged once and never raises: the daemon's calls
matter more than its supervisor's bookkeeping.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

__all__ = ["Notifier"]

log = structlog.get_logger()


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # the abstract namespace
            address = "\0" + address[1:]
        self.address = address
        self._watchdog = _watchdog_seconds(env)
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two WATCHDOG=1 pings (half the watchdog timeout, as systemd
        advises), or None when no watchdog is asked of this process."""
        return None if self._watchdog is None else self._watchdog / 2

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (``notify(READY=1, STATUS="...")``); True if sent."""
        if not self.address:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one line per field
            lines.append(f"{key}={text}")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), self.address)
        except OSError as exc:
            if not self._failed:  # one line: a missing socket stays missing
                self._failed = True
                log.warning("systemd.notify_failed", error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def reloading(self) -> bool:
        # MONOTONIC_USEC: systemd >= 253 (Type=notify-reload) matches it to the reload it asked.
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (our parent, say)
    return int(usec) / 1e6
