"""The fake FreeSWITCH's ``uuid_break`` against FreeSWITCH 1.10.12, on a caller parked in a
queue (the kit's answers, ``tests/real/README.md``, "uuid_break and queued broadcasts"):

* ``uuid_break <uuid> all`` drops every message queued and not begun, whatever it runs
  (mod_commands.c ``break_function``: ``switch_core_session_flush_private_events``): music
  broadcast and broken before it began is never heard, a queued ``sendmsg`` never runs;
  a plain ``uuid_break`` keeps them;
* a break that found nothing playing does not cut the next prompt:
  ``switch_core_session_exec`` clears ``CF_BREAK`` as each application begins.
"""

from __future__ import annotations

MOH = "local_stream://moh"
PROMPT = "ivr/ivr-you_are_number.wav"


def parked(fakeswitch, esl):
    uuid = fakeswitch.place_call("+3611100001", "Doe", destination="ccd_queue_sales")
    esl.wait_event(lambda e: e.name == "CHANNEL_PARK" and e.uuid == uuid and e.var("ccd_queue"))
    return uuid


def playbacks(esl, uuid):
    """(START|STOP, file, status) of the caller's playbacks, in order."""
    return [
        (e.name.removeprefix("PLAYBACK_"), e.get("Playback-File-Path"), e.get("Playback-Status"))
        for e in esl.events
        if e.uuid == uuid and e.name in ("PLAYBACK_START", "PLAYBACK_STOP")
    ]


def music_again(esl, uuid):
    esl.wait_event(
        lambda e: (
            e.uuid == uuid
            and e.name == "PLAYBACK_START"
            and e.get("Playback-File-Path") == MOH
            and any(p[:2] == ("STOP", PROMPT) for p in playbacks(esl, uuid))
        )
    )
    return playbacks(esl, uuid)


def test_break_all_drops_music_not_begun_and_the_prompt_plays_in_full(fakeswitch, esl):
    uuid = parked(fakeswitch, esl)
    # The daemon's entry music and first announcement, before the caller's channel ran (on
    # the kit, sent back to back: the first music never began, 5 times out of 5).
    for line in (f"uuid_broadcast {uuid} {MOH} aleg", f"uuid_break {uuid} all",
                 f"uuid_broadcast {uuid} {PROMPT} aleg",
                 f"uuid_broadcast {uuid} {MOH} aleg"):  # fmt: skip
        assert fakeswitch.api.run(line).startswith("+OK")  # at once: nothing yields here
    assert music_again(esl, uuid) == [
        ("START", PROMPT, ""),
        ("STOP", PROMPT, "done"),
        ("START", MOH, ""),
    ]


def test_break_all_cuts_the_music_playing(fakeswitch, esl):
    uuid = parked(fakeswitch, esl)
    assert esl.api(f"uuid_broadcast {uuid} {MOH} aleg") == "+OK Message sent\n"
    esl.wait_event(lambda e: e.uuid == uuid and e.name == "PLAYBACK_START")
    for line in (f"uuid_break {uuid} all", f"uuid_broadcast {uuid} {PROMPT} aleg",
                 f"uuid_broadcast {uuid} {MOH} aleg"):  # fmt: skip
        assert esl.api(line).startswith("+OK")
    assert music_again(esl, uuid) == [
        ("START", MOH, ""),
        ("STOP", MOH, "break"),
        ("START", PROMPT, ""),
        ("STOP", PROMPT, "done"),
        ("START", MOH, ""),
    ]


def test_a_break_finding_nothing_playing_does_not_cut_the_next_prompt(fakeswitch, esl):
    uuid = parked(fakeswitch, esl)
    assert esl.api(f"uuid_break {uuid} all") == "+OK\n"
    assert esl.api(f"uuid_broadcast {uuid} {PROMPT} aleg") == "+OK Message sent\n"
    stop = esl.wait_event(lambda e: e.uuid == uuid and e.name == "PLAYBACK_STOP")
    assert stop.get("Playback-Status") == "done"
    assert fakeswitch.trace.of("playback_stop", uuid=uuid)[0]["status"] == "done"


def _queued_set_then_break(fakeswitch, esl, flag: str) -> str:
    uuid = parked(fakeswitch, esl)
    esl.api(f"uuid_broadcast {uuid} {MOH} aleg")
    esl.wait_event(lambda e: e.uuid == uuid and e.name == "PLAYBACK_START")
    # Queued behind the music, which never ends by itself.
    headers = [("call-command", "execute"), ("execute-app-name", "set"),
               ("execute-app-arg", "ccd_probe=queued")]  # fmt: skip
    assert esl.command(f"sendmsg {uuid}", headers) == "+OK"
    assert esl.api(f"uuid_break {uuid}{flag}") == "+OK\n"
    esl.wait_event(lambda e: e.uuid == uuid and e.name == "PLAYBACK_STOP")
    # A barrier: messages run in order, so once this one has run, the probe has run too
    # unless the break dropped it.
    barrier = [("call-command", "execute"), ("execute-app-name", "set"),
               ("execute-app-arg", "ccd_barrier=reached")]  # fmt: skip
    assert esl.command(f"sendmsg {uuid}", barrier) == "+OK"
    esl.wait_event(lambda e: e.uuid == uuid and e.name == "CHANNEL_EXECUTE_COMPLETE"
                   and e.get("Application-Data") == "ccd_barrier=reached")  # fmt: skip
    return esl.api(f"uuid_getvar {uuid} ccd_probe")


def test_break_all_drops_a_queued_sendmsg_and_a_plain_break_keeps_it(fakeswitch, esl):
    assert _queued_set_then_break(fakeswitch, esl, " all") == "_undef_"
    assert _queued_set_then_break(fakeswitch, esl, "") == "queued"
