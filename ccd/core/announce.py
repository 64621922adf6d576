"""Position announcements (issue 13): what a waiting caller hears, and the queue's load the
estimate is made from.

Theory of operation
-------------------
Every ``announce_interval`` seconds of waiting (the first at once when routing puts the call
in its waiting list) the hunt asks for one read (:mod:`ccd.engine.hunting`: the caller's rank
in ``queue:<name>``, the queue's agents by status, those ringing, on a call, in wrap-up or on
break with the time that status began and what they do after the call
(``stats:busy:<name>``, kept by the statistics' agent moves), its counters over the shortest
window and of its day, in one script call of the unit of work's one round trip).
:func:`queue_load` turns that into the :class:`QueueLoad` of :mod:`ccd.core.estimate`;
:func:`announcement` is what the caller hears:

    uuid_break <uuid> all                                     the music stops
    uuid_broadcast <uuid> ivr/ivr-you_are_number.wav aleg     "You are number..."
    uuid_broadcast <uuid> 'say::en number pronounced 3' aleg  "three"
    uuid_broadcast <uuid> 'say::en number pronounced 4' aleg  "four"      (the estimate, in
    uuid_broadcast <uuid> time/minutes.wav aleg               "minutes"    whole minutes)
    uuid_broadcast <uuid> local_stream://moh aleg             the music again

All are ``api`` commands sent in order on the one connection, so FreeSWITCH queues the
broadcasts on the channel in that order after the break; the caller never leaves the waiting
list. mod_say's own ``time_measurement`` reading is not used: mod_say_en says "0 hours 4
minutes 0 seconds"; no stock recording says "your estimated wait is" (SOUNDS.md), so the
minutes follow the position.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ccd.core.commands import Break, Broadcast, Command, SayNumber
from ccd.core.estimate import BusyAgent, Estimate, QueueLoad
from ccd.core.stats import QueueCounts

__all__ = ["POSITION_PROMPT", "BusySince", "announcement", "parse_busy", "queue_load"]

#: The day's counters weigh as many handled calls in the talk, wrap-up and abandon figures.
DAY_WEIGHT = 20.0
_BUSY = ("ringing", "oncall", "wrapup")
_AFTER = ("ready", "break", "logged_out")


class BusySince(NamedTuple):
    """An agent of the queue ringing, on a call, in wrap-up or on break since ``since`` (the
    daemons' clock); ``after``: what it does once its call ends (ready, break, logged_out)."""

    status: str
    since: float
    after: str = "ready"


#: Stock prompts (freeswitch_conf/SOUNDS.md): "You are number...", "minute(s)".
POSITION_PROMPT = "ivr/ivr-you_are_number.wav"
MINUTE_PROMPT = "time/minute.wav"
MINUTES_PROMPT = "time/minutes.wav"


def parse_busy(values: Iterable[str]) -> list[BusySince]:
    """The values of ``stats:busy:<queue>`` (``"<status> <since> <after>"``); a bad one is
    left out."""
    out = []
    for value in values:
        parts = value.split()
        try:
            if len(parts) == 3:
                out.append(BusySince(parts[0], float(parts[1]), parts[2]))
        except ValueError:
            continue
    return out


def queue_load(
    agents: Mapping[str, int],
    recent: QueueCounts,
    window: float,
    busy: Iterable[BusySince] = (),
    now: float = 0.0,
    day: QueueCounts | None = None,
) -> QueueLoad | None:
    """The queue's load at ``now`` from its agents by status (``stats:agents:<queue>``), those
    busy or on break since when (``stats:busy:<queue>``), its counters over the last
    ``window`` seconds and of its day so far. None: no history (no call answered or handled in
    the window or the day), so no estimate is said, only the position.

    A busy agent's call has lasted ``now - since``; a break too. Agents the counts hold beyond
    those known since when (written before the daemons kept the times) count with an unknown
    time; known ones beyond the counts are kept (the two are written together).

    Talk, wrap-up and abandon rate are the window's, steadied by the day's: the day counts as
    :data:`DAY_WEIGHT` handled calls of its own means (a quiet window says little)."""
    weight = DAY_WEIGHT / day.handled if day is not None and day.handled > 0 else 0.0
    if recent.answered <= 0 and recent.handled <= 0 and not weight:
        return None
    day = day if weight else QueueCounts()
    handled = recent.handled + weight * day.handled
    known: dict[str, list[BusySince]] = {status: [] for status in (*_BUSY, "break")}
    for entry in busy:
        if entry.status in known:
            known[entry.status].append(entry)
    out: list[BusyAgent] = []
    for status in _BUSY:
        out += [
            BusyAgent(status, max(0.0, now - e.since), e.after if e.after in _AFTER else "ready")
            for e in sorted(known[status], key=lambda e: e.since)
        ]
        out += [BusyAgent(status)] * max(0, agents.get(status, 0) - len(known[status]))
    breaks = [max(0.0, now - e.since) for e in known["break"]]
    unknown = max(0, agents.get("break", 0) - len(breaks))
    waited = recent.wait_answered + recent.wait_abandoned
    return QueueLoad(
        free_agents=max(0, agents.get("free", 0)),
        busy=tuple(out),
        talk=(recent.talk + weight * day.talk) / handled if handled > 0 else None,
        wrapup=(recent.wrapup + weight * day.wrapup) / handled if handled > 0 else None,
        on_break=(*sorted(breaks), *(None,) * unknown),
        abandoned=recent.abandoned + weight * day.abandoned,
        waited_total=waited + weight * (day.wait_answered + day.wait_abandoned),
        answered=recent.answered,
        window=window,
    )


def announcement(uuid: str, position: int, estimate: Estimate | None, moh: str) -> list[Command]:
    """The commands of one announcement, music stopped before and started again after."""
    commands: list[Command] = [Break(uuid), Broadcast(uuid, POSITION_PROMPT)]
    commands.append(SayNumber(uuid, position))
    minutes = estimate.minutes if estimate is not None else None
    if minutes:
        commands.append(SayNumber(uuid, minutes))
        commands.append(Broadcast(uuid, MINUTE_PROMPT if minutes == 1 else MINUTES_PROMPT))
    if moh:
        commands.append(Broadcast(uuid, moh))
    return commands
