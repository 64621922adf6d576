"""What the dispatcher's inbox carries besides the ESL client's own items (ccd.adapters.esl:
Connected, Reconnected, Disconnected, JobFailed), and which of it is urgent.

An event off the socket is queued as :class:`Received`: what ccd.core.events makes of it,
about 0.5 KB where the decoded event is 7-19 KB, so an inbox holding tens of thousands of
them under overload stays small, and an event the core has no use for is never queued.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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


class Lanes:
    """Which lane each event off the socket goes to (ccd.adapters.inbox), and what to queue.

    Urgent: what finishes work already started. Every event of a leg the daemon originated
    (all carry ``ccd_call``, from CHANNEL_CREATE on: checked on FreeSWITCH 1.10.12), job
    results, and a caller's events from the moment its channel is bridged to such a leg on:
    the caller's CHANNEL_BRIDGE must not wait behind new callers while the agent's hangup
    overtakes it (the daemon would take a finished conversation for an agent who hung up
    before the bridge, and offer the caller again). A caller's events before that are not
    urgent; it switches lanes at its bridge, after which its events come in order. One of
    its earlier events may still wait then (a digit pressed at the callback offer just as
    the agent answered): it is handled after the bridge, as if pressed a moment later. A
    channel leaves the set at its CHANNEL_HANGUP_COMPLETE (and the oldest go beyond
    ``limit``: hangups never heard, a lost socket)."""

    def __init__(self, limit: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._hot: dict[str, None] = {}  # channels whose events are urgent, oldest first
        self._limit = limit
        self._clock = clock
        self._lag = WindowMin(LAG_WINDOW)

    def connected(self) -> None:
        """A new connection (perhaps another FreeSWITCH, its clock not the last one's): the
        gap between its clock and ours is learnt afresh."""
        self._lag = WindowMin(LAG_WINDOW)

    def received(self, event: EslEvent) -> tuple[Received | None, bool]:
        """What to queue for ``event`` (None: nothing to do) and whether it is urgent."""
        stamp = event.get("Event-Date-Timestamp")
        if stamp.isdigit():
            now = self._clock()
            self._lag.add(now - int(stamp) / 1e6, now)
        job = None
        if event.name == "BACKGROUND_JOB":
            job = (event.get("Job-UUID"), event.body or "")
        decoded = ev.from_esl(event)
        hot, uuid = self._hot, event.uuid
        urgent = job is not None or uuid in hot
        if not urgent and (
            event.var("ccd_call")
            or (isinstance(decoded, ev.ChannelBridged) and decoded.other_uuid in hot)
        ):
            urgent = True
            hot[uuid] = None
            if len(hot) > self._limit:
                del hot[next(iter(hot))]
        if event.name == "CHANNEL_HANGUP_COMPLETE":
            hot.pop(uuid, None)
        if decoded is None and job is None:
            return None, False
        return Received(decoded, stamp, job), urgent

    def aged(self, item: Received) -> Any:
        """The item's event, told how long it waited before the dispatcher took it when the
        core needs to know (ccd.core.events.fell_through): our clock now, less its stamp,
        less the smallest such gap of the last minute (the two clocks' difference plus
        the wire's delay, learnt from events read as they came: FreeSWITCH's HEARTBEAT
        every 20 s keeps it fresh on a quiet switch). Neither clock need be right; a
        daemon that stood still (a long pause, SIGSTOP) is caught as well as a busy one,
        since the gap is learnt when events are read, not when they are handled."""
        e = item.event
        if not isinstance(e, ev.EntryParked | ev.FeatureCode) or e.moves_on_after is None:
            return e
        if not item.stamp.isdigit():
            return e
        waited = self._clock() - int(item.stamp) / 1e6 - self._lag.value()
        return replace(e, waited=max(0.0, waited))


#: Seconds over which the smallest gap between FreeSWITCH's clock and ours is kept: a clock
#: stepped by NTP is forgotten within it.
LAG_WINDOW = 60.0


class WindowMin:
    """The smallest value added within about the last ``window`` seconds (two halves)."""

    __slots__ = ("_half", "_previous", "_since", "_smallest")

    def __init__(self, window: float) -> None:
        self._half = window / 2
        self._smallest = self._previous = math.inf
        self._since: float | None = None

    def add(self, value: float, now: float) -> None:
        if self._since is None:
            self._since = now
        elif now - self._since >= self._half:
            self._previous, self._smallest, self._since = self._smallest, math.inf, now
        if value < self._smallest:
            self._smallest = value

    def value(self) -> float:
        """The smallest value, or 0 before any was added."""
        smallest = min(self._smallest, self._previous)
        return 0.0 if smallest == math.inf else smallest
