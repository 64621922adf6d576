"""Position announcements (issue 13): what a waiting caller hears, and the queue's load the
estimate is made from.

Theory of operation
-------------------
Every ``announce_interval`` seconds of waiting (the first at once when routing puts the call
in its waiting list) the hunt asks for one read (:mod:`ccd.engine.hunting`: the caller's rank
in ``queue:<name>``, the queue's agents by status and its recent counters, in the unit of
work's one round trip). :func:`queue_load` turns that into the :class:`QueueLoad` of
:mod:`ccd.core.estimate`; :func:`announcement` is what the caller hears:

    uuid_break <uuid> all                                     the music stops
    uuid_broadcast <uuid> ivr/ivr-you_are_number.wav aleg     "You are number..."
    uuid_broadcast <uuid> 'say::en number pronounced 3' aleg  "three"
    uuid_broadcast <uuid> 'say::en number pronounced 4' aleg  "four"      (the estimate, in
    uuid_broadcast <uuid> time/minutes.wav aleg               "minutes"    whole minutes)
    uuid_broadcast <uuid> local_stream://moh aleg             the music again

All are ``api`` commands sent in order on the one connection, so FreeSWITCH queues the
broadcasts on the channel in that order after the break; the caller never leaves the waiting
list. mod_say's own ``time_measurement`` reading is not used: mod_say_en says "0 hours 4
minutes 0 seconds".
"""

from __future__ import annotations

from collections.abc import Mapping

from ccd.core.commands import Break, Broadcast, Command, SayNumber
from ccd.core.estimate import BusyAgent, Estimate, QueueLoad
from ccd.core.stats import QueueCounts

__all__ = ["POSITION_PROMPT", "announcement", "queue_load"]

#: Stock prompts (freeswitch_conf/SOUNDS.md): "You are number...", "minute(s)".
POSITION_PROMPT = "ivr/ivr-you_are_number.wav"
MINUTE_PROMPT = "time/minute.wav"
MINUTES_PROMPT = "time/minutes.wav"


def queue_load(agents: Mapping[str, int], recent: QueueCounts, window: float) -> QueueLoad | None:
    """The queue's load from its agents by status (``stats:agents:<queue>``) and its counters
    over the last ``window`` seconds. None: no history (no call answered or handled in the
    window), so no estimate is said, only the position.

    Agents are known by their number per status only (one hash read, whatever their number):
    a busy agent's call has lasted for an unknown time, a break for an unknown part of one."""
    if recent.answered <= 0 and recent.handled <= 0:
        return None
    handled = recent.handled
    busy = (
        *(BusyAgent("ringing") for _ in range(max(0, agents.get("ringing", 0)))),
        *(BusyAgent("oncall") for _ in range(max(0, agents.get("oncall", 0)))),
        *(BusyAgent("wrapup") for _ in range(max(0, agents.get("wrapup", 0)))),
    )
    return QueueLoad(
        free_agents=max(0, agents.get("free", 0)),
        busy=busy,
        talk=recent.talk / handled if handled > 0 else None,
        wrapup=recent.wrapup / handled if handled > 0 else None,
        on_break=(None,) * max(0, agents.get("break", 0)),
        abandoned=recent.abandoned,
        waited_total=recent.wait_answered + recent.wait_abandoned,
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
