"""Position announcements on a real FreeSWITCH (issue 13).

One agent (rita) is logged in and her phone rings without answering, so the first caller is
being rung for and the second waits in the list: the second hears "You are number", mod_say
reads their position ("say" with ``en number pronounced 2``, run by ``uuid_broadcast``), and
the music starts again (a playback of ``local_stream://moh``). What FreeSWITCH ran is read
from its CHANNEL_EXECUTE events on the caller's leg, in the order it ran them.
"""

from __future__ import annotations

import pytest

from tests.real.lab import executes, is_execute, queued

INTERVAL = 3.0
CONFIG = {
    "routing": {"ring_time": 30, "wrapup_time": 1},
    "queues": {
        "sales": {"tags": ["sales"], "overflow_time": 0, "announce_interval": INTERVAL},
    },
    "agents": {"rita": {"extension": "1007", "tags": ["sales"]}},  # rings, never answers
}


@pytest.fixture(scope="module")
def center(make_center, make_phone):
    center = make_center(CONFIG)
    center.rita = make_phone("1007", ("ring", None))
    center.set_login("login", "rita")
    return center


def ran(fs, uuid, mark):
    """(application, data) of what FreeSWITCH ran on channel ``uuid`` since ``mark``, in order."""
    return [(s.get("Application"), s.get("Application-Data")) for s in executes(fs, uuid, mark)]


def after(fs, seen):
    """The index just after ``seen`` in the events: a wait for what came later."""
    return next(i for i, s in enumerate(fs.snapshot()) if s is seen) + 1


def test_second_in_line_hears_the_position_and_the_music_again(center, fs, call):
    mark = fs.mark()
    first = call("ccd_queue_sales", number="+3612345601")
    queued(fs, first, mark, "the first caller queued")
    center.wait_logged("agent.offered", call=first.b)
    second = call("ccd_queue_sales", number="+3612345602")
    said = fs.wait_event(
        lambda s: is_execute(s, second.b, "say"),
        timeout=15, since=mark, what="the second caller's position said",
    )  # fmt: skip
    assert said.get("Application-Data") == "en number pronounced 2"
    fs.wait_event(
        lambda s: is_execute(s, second.b, "playback")
        and s.get("Application-Data") == "local_stream://moh",
        timeout=15, since=after(fs, said), what="the music again after the announcement",
    )  # fmt: skip
    played = ran(fs, second.b, mark)
    at = played.index(("playback", "ivr/ivr-you_are_number.wav"))
    assert played[at - 1] == ("playback", "local_stream://moh")  # the music, broken
    assert played[at + 1] == ("say", "en number pronounced 2")
    assert played[at + 2 :].count(("playback", "local_stream://moh")) >= 1
    logged = center.wait_logged("call.announced", call=second.b)
    assert logged["position"] == 2 and logged["queue"] == "sales"
    # The first caller, being rung for, heard nothing; the second is still in the list and
    # hears it again an interval later.
    assert ("say", "en number pronounced 1") not in ran(fs, first.b, mark)
    again = fs.wait_event(
        lambda s: is_execute(s, second.b, "say"),
        timeout=INTERVAL + 10, since=after(fs, said), what="the next announcement",
    )  # fmt: skip
    assert again.get("Application-Data") == "en number pronounced 2"
