"""Headless chromium driven over the Chrome DevTools Protocol, through its debugging pipe.

``chromium --remote-debugging-pipe`` reads protocol messages (JSON, each ended by a NUL byte)
from its fd 3 and writes answers and events to its fd 4: two ``os.pipe()`` put at those
numbers in the child, no websocket and no new dependency. The tests run on gevent (conftest)
with the daemon in the same process, so the pipe is read by a greenlet and never blocks it;
``send`` waits for its answer with a timeout, events are kept in ``events``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.event import AsyncResult
from gevent.os import make_nonblocking, nb_read, nb_write

#: Headless, no network of its own beyond the page, a wallboard's screen.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1920,1080",
)


def chromium() -> str:
    """Debian's chromium, or the test is skipped in one line (``make test`` installs it)."""
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("chromium is not installed: `make test` installs it (apt-get install chromium)")


class Browser:
    """One chromium; ``send(method, params, session=...)`` answers the command's result."""

    def __init__(self, profile: Path, url: str = "about:blank") -> None:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        to_child, self._out = os.pipe()  # we write, chromium reads at its fd 3
        self._in, from_child = os.pipe()  # chromium writes at its fd 4, we read

        def at_3_and_4() -> None:  # in the child, before exec; both are first copied above
            # 4, so putting one at 3 or 4 cannot overwrite the other
            low_in = fcntl.fcntl(to_child, fcntl.F_DUPFD, 5)
            low_out = fcntl.fcntl(from_child, fcntl.F_DUPFD, 5)
            os.dup2(low_in, 3)
            os.dup2(low_out, 4)

        self.log = profile.with_name(profile.name + ".log")  # chromium's own complaints
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, url], pass_fds=(3, 4), preexec_fn=at_3_and_4,
                stdout=log, stderr=log,
            )  # fmt: skip
        os.close(to_child)  # only chromium holds its ends: its exit is our end of file
        os.close(from_child)
        make_nonblocking(self._in)
        make_nonblocking(self._out)
        self.events: list[dict[str, Any]] = []  # {"method", "params", "sessionId"?}
        self._answers: dict[int, AsyncResult] = {}
        self._last_id = 0
        self._reader = gevent.spawn(self._read)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout: float = 10.0) -> dict[str, Any]:  # fmt: skip
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        answer = self._answers[self._last_id] = AsyncResult()
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[nb_write(self._out, data) :]
        try:
            reply = answer.get(timeout=timeout)
        except gevent.Timeout:
            raise AssertionError(
                f"chromium did not answer {method} within {timeout}s (log: {self.log})"
            ) from None
        if "error" in reply:
            raise AssertionError(f"chromium refused {method}: {reply['error']}")
        return reply["result"]

    def _read(self) -> None:
        buffer = b""
        while chunk := nb_read(self._in, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    self._answers.pop(message["id"]).set(message)
                else:
                    self.events.append(message)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        os.close(self._in)
        os.close(self._out)
