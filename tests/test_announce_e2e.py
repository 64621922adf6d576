"""Position announcements end to end (issue 13): the fake FreeSWITCH, real Redis, the daemon.

A caller third in line hears "You are number" and "three" in full, then the music again,
keeps their place (callers are served in the order they came), and the estimated wait is
made from the queue's history.

Whether a moment of music comes before the first announcement is a race FreeSWITCH does not
settle: the daemon starts the music as the caller enters the queue and breaks it for the
announcement when routing finds nobody free, a tick later. ``uuid_break <uuid> all`` drops
the music if it has not begun yet (mod_commands.c break_function,
switch_core_session_flush_private_events; on the kit, music, break, prompt and music sent
back to back: the first music never began, 5 times out of 5) or cuts it if it has. Either
way nothing is said over it, and the announcement itself is heard to its end.
"""

from __future__ import annotations

import redis

from ccd.core import presence
from ccd.core.stats import minute_of
from tests.support.daemon_fixtures import QUEUES, agents_of, bridged, calls_of, eventually

SALES = "1"  # the main menu's digit for sales
MOH = "local_stream://moh"
POSITION_PROMPT = "ivr/ivr-you_are_number.wav"


def playbacks(switch, uuid):
    return [e["file"] for e in switch.trace.of("playback", uuid=uuid)]


def heard(switch, uuid) -> list[tuple[str, str | None]]:
    """What the caller heard, in order: each file and how it ended (``done``; ``break``: cut
    short; None: still playing). One channel plays one file at a time."""
    ended = [e["status"] for e in switch.trace.of("playback_stop", uuid=uuid)]
    files = playbacks(switch, uuid)
    return list(zip(files, ended + [None] * (len(files) - len(ended)), strict=True))


def announcement(switch, uuid, position: int) -> list[tuple[str, str | None]]:
    """The caller's first announcement, from "You are number" up to the music after it (an
    empty list until the music has started again), checked against what came before it."""
    files = heard(switch, uuid)
    names = [f for f, _ in files]
    if POSITION_PROMPT not in names:
        return []
    at = names.index(POSITION_PROMPT)
    if MOH not in names[at:]:
        return []
    said = files[at : names.index(MOH, at) + 1]
    # The announcement begins once the caller waits in the queue, never over the dialplan's
    # own prompts (the menu's welcome ended before the caller parked there) ...
    parked = switch.trace.of("park", uuid=uuid, queue="sales")[0]["t"]
    started = switch.trace.of("playback", uuid=uuid)[at]["t"]
    assert parked <= started, (parked, started)
    before = files[:at]
    assert all(status is not None for _, status in before), files
    # ... and a moment of music, if it had begun (see the module's docstring), was broken.
    assert [status for f, status in before if f == MOH] in ([], ["break"]), files
    # Every word of it heard to its end, the position second, the music after.
    assert all(status == "done" for _, status in said[:-1]), files
    assert said[1] == (f"digits/{position}.wav", "done"), files
    return said


def test_third_in_line_hears_3_keeps_the_place_and_the_estimate_uses_history(
    fakeswitch, start_daemon, redis_url
):
    # Alice talks 40 s with each caller; the others wait.
    fakeswitch.add_phone("1001", answer_after=1, hangup_after=40)
    queues = {**QUEUES, "sales": {**QUEUES["sales"], "announce_interval": 45}}
    daemon = start_daemon(
        fakeswitch,
        agents={"alice": {"extension": "1001", "tags": ["sales"]}},
        queues=queues,
    )
    # The queue's history: 10 calls answered and handled in the last minutes, 120 s of talk
    # and 10 s of wrap-up each.
    client = redis.Redis.from_url(redis_url)
    bucket = calls_of(daemon).keys.stats_queue_minute(
        "sales", str(minute_of(fakeswitch.clock.now()))
    )
    client.hset(bucket, mapping={"answered": 10, "handled": 10, "talk": 1200.0, "wrapup": 100.0})
    client.expire(bucket, 3600)
    agents_of(daemon).transition("alice", lambda s: presence.set_login(s, "login", 0.0))

    first = fakeswitch.place_call("+3611111111", "First", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, first), what="the first caller talks to alice")
    # The estimate knows since when alice talks (the statistics keep it for the queue).
    busy = calls_of(daemon).keys.stats_busy("sales")

    def talking() -> list[str]:
        entry = (client.hget(busy, "alice") or b"").decode().split()
        return entry if entry[:1] == ["oncall"] else []

    _, since, after = eventually(talking, what="alice on a call, since when")
    assert after == "ready" and abs(float(since) - fakeswitch.clock.now()) < 60
    waiting = []
    for n, number in enumerate(("+3622222222", "+3633333333", "+3644444444")):
        waiting.append(fakeswitch.place_call(number, f"Caller {n}", digits=[SALES]))
        eventually(
            lambda u=waiting[-1]: "digits/" in " ".join(playbacks(fakeswitch, u)),
            what="the announcement",
        )
    third = waiting[2]

    said = eventually(lambda: announcement(fakeswitch, third, 3), what="the music again")
    # The estimate comes from the history: a number of minutes, "minutes".
    wait = [f for f, _ in said[2:-1]]
    assert wait and wait[-1] in ("time/minutes.wav", "time/minute.wav"), said
    assert all(f.startswith("digits/") for f in wait[:-1]), said
    for caller, position in ((waiting[0], 1), (waiting[1], 2)):
        assert eventually(lambda c=caller, p=position: announcement(fakeswitch, c, p),
                          what="the music again")  # fmt: skip

    # Nobody lost their place: served in the order they came, the third one last.
    for caller in waiting:
        eventually(lambda c=caller: bridged(fakeswitch, c), timeout=30.0, what="served")
    order = [e["t"] for caller in waiting for e in bridged(fakeswitch, caller)[:1]]
    assert order == sorted(order)
