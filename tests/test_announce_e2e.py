"""Position announcements end to end (issue 13): the fake FreeSWITCH, real Redis, the daemon.

A caller third in line hears "You are number" and "three" between two stretches of music
(the music broken, the announcement, the music again), keeps their place (callers are
served in the order they came), and the estimated wait is made from the queue's history.
"""

from __future__ import annotations

import redis

from ccd.core import presence
from ccd.core.stats import minute_of
from tests.support.daemon_fixtures import QUEUES, agents_of, bridged, calls_of, eventually

SALES = "1"  # the main menu's digit for sales
MOH = "local_stream://moh"


def playbacks(switch, uuid):
    return [e["file"] for e in switch.trace.of("playback", uuid=uuid)]


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

    def announced() -> list[str]:
        files = playbacks(fakeswitch, third)
        at = files.index("ivr/ivr-you_are_number.wav")
        return files if MOH in files[at:] else []

    heard = eventually(announced, what="the music again")
    at = heard.index("ivr/ivr-you_are_number.wav")
    # Music, broken for the announcement (it never ends by itself), then music again. At
    # entry the announcement can come before the music has begun: uuid_break ... all drops
    # the music still queued, as FreeSWITCH does, and the caller hears the position first.
    before = heard[:at]
    assert before.count(MOH) <= 1 and (MOH not in before or before[-1] == MOH), heard
    assert heard[at + 1] == "digits/3.wav"
    said = heard[at + 2 :]
    assert said[-1] == MOH
    wait = said[:-1]
    # The estimate comes from the history: a number of minutes, "minutes".
    assert wait and wait[-1] in ("time/minutes.wav", "time/minute.wav"), heard
    assert all(f.startswith("digits/") for f in wait[:-1])
    for caller, position in ((waiting[0], "digits/1.wav"), (waiting[1], "digits/2.wav")):
        files = playbacks(fakeswitch, caller)
        at = files.index("ivr/ivr-you_are_number.wav")
        assert files[at - 1 : at + 2] == [MOH, "ivr/ivr-you_are_number.wav", position]

    # Nobody lost their place: served in the order they came, the third one last.
    for caller in waiting:
        eventually(lambda c=caller: bridged(fakeswitch, c), timeout=30.0, what="served")
    order = [e["t"] for caller in waiting for e in bridged(fakeswitch, caller)[:1]]
    assert order == sorted(order)
