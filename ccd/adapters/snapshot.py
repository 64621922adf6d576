"""What FreeSWITCH has live, read beside the dispatcher for a resync.

``show channels`` and ``show registrations`` of a large switch are megabytes of JSON
(20,000 registered phones: about 6 MB). Asked with ``bgapi``, the answer came back as one
BACKGROUND_JOB event that the reader decoded, and then the dispatcher parsed, each in one
go: tens of milliseconds during which no call moved. Here a greenlet of its own asks on a
connection of its own (:meth:`ccd.adapters.esl.EslClient.api_aside`), parses the rows a
slice at a time, giving way to the dispatcher between slices, and puts one
:class:`Snapshot` into the inbox when both answers are in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
import structlog

from ccd.adapters.esl_connection import EslError
from ccd.core.events import show_rows

log = structlog.get_logger()

#: Rows parsed between two pauses (about 1.3 ms of parsing for channel rows).
ROWS_PER_PAUSE = 256
QUESTIONS = ("show channels as json", "show registrations as json")


class AsksAside(Protocol):
    def api_aside(self, commands: Sequence[str], timeout: float | None = None) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The answers to one resync's questions (an inbox item); ``error`` when there are none."""

    token: str
    channels: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


class SnapshotReader:
    def __init__(self, esl: AsksAside, deliver: Callable[[Snapshot], None]) -> None:
        self.esl = esl
        self.deliver = deliver

    def ask(self, token: str) -> None:
        """Ask now; the :class:`Snapshot` with ``token`` is delivered when it is read."""
        gevent.spawn(self._read, token)

    def _read(self, token: str) -> None:
        try:
            bodies = self.esl.api_aside(QUESTIONS)
        except EslError as exc:
            self.deliver(Snapshot(token, error=f"asking FreeSWITCH: {exc}"))
            return
        except Exception as exc:  # a bug must not leave the resync waiting for an answer
            log.error("daemon.resync_read_failed", error=repr(exc)[:200])
            self.deliver(Snapshot(token, error=f"asking FreeSWITCH: {exc!r:.200}"))
            return
        answers: list[list[dict[str, Any]]] = []
        for question, body in zip(QUESTIONS, bodies, strict=True):
            rows: list[dict[str, Any]] = []
            try:
                for row in show_rows(body):
                    rows.append(row)
                    if len(rows) % ROWS_PER_PAUSE == 0:
                        gevent.sleep(0)  # the dispatcher's turn
            except ValueError as exc:
                self.deliver(Snapshot(token, error=f"{question}: {exc}"))
                return
            answers.append(rows)
            gevent.sleep(0)
        self.deliver(Snapshot(token, answers[0], answers[1]))
