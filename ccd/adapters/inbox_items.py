"""What the dispatcher's inbox carries besides the ESL client's own items (ccd.adapters.esl:
Connected, Reconnected, Disconnected, JobFailed), and which of it is urgent.

An event off the socket is queued as :class:`Received`: what ccd.core.events makes of it,
about 0.5 KB where the decoded event is 7-19 KB, so an inbox holding tens of thousands of
them under overload stays small, and an event the core has no use for is never queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import structlog

from ccd.core import events as ev
from ccd.core.esl_wire import EslEvent

log = structlog.get_logger()

#: Inbox items handled together before their Redis work is sent (one round trip).
GROUP = 32


@dataclass(frozen=True, slots=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True)
class Received:
    """A FreeSWITCH event as the inbox keeps it: what the core makes of it (not its hundred-
    odd headers: thousands of these wait under overload), when FreeSWITCH sent it, and for a
    BACKGROUND_JOB its job and reply (the resync's checks read them)."""

    event: Any  # a ccd.core.events domain event; None for a job reply it cannot read
    stamp: str  # Event-Date-Timestamp
    job: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Notified:
    """Another daemon reserved ``agent`` (its record) for ``call``, one of ours."""

    call: str
    agent: dict[str, Any]
    leg: str
    job: str

    @classmethod
    def decode(cls, data: bytes) -> Notified | None:
        try:
            value = msgpack.unpackb(data, raw=False)
            call, agent = str(value["call"]), dict(value["agent"])
            return cls(call, agent, str(value["leg"]), str(value["job"]))
        except (ValueError, TypeError, KeyError, msgpack.UnpackException):
            log.warning("daemon.notification_garbled")
            return None


#: The next slice of a resync's reconciliation (an inbox item).
ResyncStep = object()


@dataclass(frozen=True, slots=True)
class NotifyGap:
    """The notification channel was (re)subscribed: what it said meanwhile is unknown."""


def received(event: EslEvent) -> tuple[Received | None, bool]:
    """What to queue for ``event`` (None: nothing to do) and whether it is urgent: it
    finishes work already started (ccd.adapters.inbox), a leg the daemon originated (all its
    events carry ``ccd_call``, from its creation on, so a channel never changes lanes) or a
    job's result."""
    job = None
    if event.name == "BACKGROUND_JOB":
        job = (event.get("Job-UUID"), event.body or "")
    decoded = ev.from_esl(event)
    if decoded is None and job is None:
        return None, False
    urgent = job is not None or bool(event.var("ccd_call"))
    return Received(decoded, event.get("Event-Date-Timestamp"), job), urgent
