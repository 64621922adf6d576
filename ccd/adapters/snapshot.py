"""What FreeSWITCH has live, read beside the dispatcher for a resync.

``show channels`` and ``show registrations`` of a large switch are megabytes of JSON
(20,000 registered phones: about 5 MB). Asked with ``bgapi``, the answer came back as one
BACKGROUND_JOB event that the reader decoded, and then the dispatcher parsed, each in one
go: tens of milliseconds during which no call moved. Here a greenlet of its own asks on a
connection of its own (:meth:`ccd.adapters.esl.EslClient.api_aside`), parses the rows
giving way to the dispatcher every :data:`PARSE_TURN` seconds, and puts one
:class:`Snapshot` into the inbox when both answers are in.

Only what the resync reads is kept of a row (:data:`CHANNEL_KEYS`, a registration's user):
a registration row is 11 objects, a channel row over 100, and 20,000 whole rows freed at
once (when the next snapshot replaced them) held the dispatcher 19-45 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
import structlog

from ccd.adapters.esl_connection import EslError
from ccd.core.events import show_rows

log = structlog.get_logger()

#: Seconds of parsing between two turns of the dispatcher: a channel row costs several
#: times a registration row, so the pause goes by the clock, not by a count of rows.
PARSE_TURN = 0.0005
QUESTIONS = ("show channels as json", "show registrations as json")
#: The columns of ``show channels`` the resync reads (ccd.engine.resync).
CHANNEL_KEYS = ("uuid", "name", "application", "application_data", "cid_num", "cid_name",
                "dest")  # fmt: skip


class AsksAside(Protocol):
    def api_aside(self, commands: Sequence[str], timeout: float | None = None) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The answers to one resync's questions (an inbox item); ``error`` when there are none.
    ``channels`` holds :data:`CHANNEL_KEYS` of each row, ``registrations`` the registered
    users (``reg_user``)."""

    token: str
    channels: list[dict[str, str]] = field(default_factory=list)
    registrations: list[str] = field(default_factory=list)
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
        answers = []
        for question, body, keep in zip(QUESTIONS, bodies, (_channel, _registration), strict=True):
            try:
                answers.append(_parsed(body, keep))
            except ValueError as exc:
                self.deliver(Snapshot(token, error=f"{question}: {exc}"))
                return
        self.deliver(Snapshot(token, *answers))


def _parsed(body: str, keep: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """What ``keep`` takes of each row, giving way every PARSE_TURN seconds."""
    kept: list[Any] = []
    clock = time.perf_counter
    turn = clock() + PARSE_TURN
    for row in show_rows(body):
        kept.append(keep(row))
        if clock() >= turn:
            _give_way()
            turn = clock() + PARSE_TURN
    _give_way()
    return kept


def _give_way() -> None:
    """The dispatcher's turn, and the sockets': ``sleep(0)`` lets only greenlets already
    woken run, and a parse that keeps sleeping 0 kept the event loop from polling for
    13-30 ms (the ESL reader and a dispatcher waiting for Redis not run): a timer makes
    the loop poll once."""
    gevent.sleep(0.0001)


def _channel(row: dict[str, Any]) -> dict[str, str]:
    return {key: str(row[key]) for key in CHANNEL_KEYS if key in row}


def _registration(row: dict[str, Any]) -> str:
    return str(row.get("reg_user", ""))
