"""Dialplan applications of the fake FreeSWITCH, executed on a channel.

Theory of operation
-------------------
:meth:`Apps.execute` is ``switch_core_session_exec``: it expands ``${vars}``
in the data, fires CHANNEL_EXECUTE (Application, Application-Data,
Application-UUID), runs the application and always fires
CHANNEL_EXECUTE_COMPLETE with Application-Response — also when the
application is left by a hangup or an interrupt (bridge, transfer), exactly
like FreeSWITCH, whose per-leg orders SEQUENCES.md records
(``HANGUP → UNPARK → EXECUTE_COMPLETE(park)``).

Applications run in the channel's own greenlet and wait only through
``Channel.wait``, so a hangup (HangupSignal) or an Interrupt from another
greenlet ends them at once. Durations are switch seconds (``switch.clock``).

An unknown application does what FreeSWITCH does: no EXECUTE event, the
channel is hung up with DESTINATION_OUT_OF_ORDER ("Invalid Application").
Callers' key presses come from the caller model: each prompt takes the next
entry of the channel's digits script ("" or a missing entry = no key pressed).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import structlog

from ccd.fakeswitch.channel_events import ChannelEvents
from ccd.fakeswitch.channels import Channel, HangupSignal, Interrupt, new_uuid
from ccd.fakeswitch.clock import SwitchClock
from ccd.fakeswitch.trace import Trace
from ccd.fakeswitch.voicemail import Mailboxes

log = structlog.get_logger()


class AppHost(Protocol):
    """What the applications use of the switch (:class:`ccd.fakeswitch.switch.FakeSwitch`):
    named here so that apps.py needs nothing from switch.py, which builds the Apps."""

    trace: Trace
    ev: ChannelEvents
    factory: Any  # fsevents.EventFactory: events that are no channel's (vm::maintenance)
    bus: Any  # fsevents.EventBus
    mailboxes: Mailboxes  # mod_voicemail's boxes
    clock: SwitchClock
    playback_seconds: float
    voicemail_seconds: float

    def menus(self) -> dict[str, Any]: ...
    def expand(self, ch: Channel, text: str) -> str: ...
    def hangup_channel(self, ch: Channel, cause: str) -> None: ...
    def valid_cause(self, cause: str) -> str: ...
    def bridge_app(self, ch: Channel, data: str) -> None: ...
    def run_message(self, ch: Channel, message: tuple) -> None: ...
    def schedule(self, ch: Channel, seconds: float, what: str, arg: str) -> None: ...
    def unschedule(self, uuid: str) -> int: ...


#: Files that play until broken (music on hold, endless streams).
_ENDLESS = ("local_stream://", "moh", "${hold_music}")


class Apps:
    """The application table; ``switch`` gives events, clock, trace and call control."""

    def __init__(self, switch: AppHost) -> None:
        self.sw = switch
        self._table = {
            "answer": self.answer,
            "pre_answer": self.pre_answer,
            "ring_ready": self.ring_ready,
            "set": self.set,
            "export": self.export,
            "unset": self.unset,
            "park": self.park,
            "hangup": self.hangup,
            "playback": self.playback,
            "play_and_get_digits": self.play_and_get_digits,
            "say": self.say,
            "ivr": self.ivr,
            "transfer": self.transfer,
            "bridge": self.bridge,
            "voicemail": self.voicemail,
            "event": self.event,
            "sleep": self.sleep,
            "hash": self.noop,
            "log": self.noop,
            "info": self.noop,
            "set_zombie_exec": self.noop,
            "sched_hangup": self.sched_hangup,
            "sched_transfer": self.sched_transfer,
            "sched_cancel": self.sched_cancel,
        }

    def known(self, app: str) -> bool:
        return app in self._table

    # -- the exec wrapper ------------------------------------------------------

    def execute(self, ch: Channel, app: str, data: str, app_uuid: str | None = None) -> str:
        fn = self._table.get(app)
        if fn is None:
            self.sw.trace.record("unknown_app", uuid=ch.uuid, app=app, data=data)
            log.warning("fakeswitch.app.unknown", uuid=ch.uuid, app=app)
            self.sw.hangup_channel(ch, "DESTINATION_OUT_OF_ORDER")
            raise HangupSignal()
        data = self.sw.expand(ch, data)
        app_uuid = app_uuid or new_uuid()
        self.sw.ev.execute(ch, app, data, app_uuid)
        # switch_core_session_exec clears CF_BREAK after CHANNEL_EXECUTE (1.10.12,
        # switch_core_session.c:2953): a uuid_break that found nothing playing never cuts
        # the next application's prompt (the kit: break, then a broadcast plays in full).
        ch.break_requested = False
        response = "_none_"
        try:
            response = fn(ch, data) or "_none_"
        finally:
            self.sw.ev.execute_complete(ch, app, data, app_uuid, response)
        return response

    # -- helpers ---------------------------------------------------------------

    def _sleep(self, ch: Channel, seconds: float | None, **wake: bool) -> str:
        real = None if seconds is None else self.sw.clock.real_seconds(seconds)
        return ch.wait(real, **wake)

    def play(self, ch: Channel, path: str, seconds: float | None = None) -> str:
        """Play one file: PLAYBACK_START/STOP around its duration. 'done' | 'break'."""
        endless = path.startswith(_ENDLESS)
        if seconds is None:
            seconds = None if endless else self.sw.playback_seconds
        kind = path.split("://", 1)[0] if "://" in path else "file"
        mid = [("Playback-File-Type", kind), ("Playback-File-Path", path)]
        self.sw.ev.fire("PLAYBACK_START", ch, mid=mid)
        self.sw.trace.record("playback", uuid=ch.uuid, file=path, party=ch.party or None)
        status = "done"
        try:
            if self._sleep(ch, seconds, on_break=True) == "break":
                status = "break"
        finally:
            self.sw.ev.fire("PLAYBACK_STOP", ch, mid=[*mid, ("Playback-Status", status)])
            self._played(ch, path, status)
        return status

    def _played(self, ch: Channel, path: str, status: str) -> None:
        """The trace's ``playback_stop``: how one file ended, ``done`` or ``break`` (cut)."""
        self.sw.trace.record(
            "playback_stop", uuid=ch.uuid, file=path, status=status, party=ch.party or None
        )

    def _press(self, ch: Channel, digits: str) -> None:
        for digit in digits:
            self.sw.ev.fire(
                "DTMF",
                ch,
                mid=[("DTMF-Digit", digit), ("DTMF-Duration", "2000"), ("DTMF-Source", "APP")],
            )

    def _next_digits(self, ch: Channel) -> str:
        """The caller's answer to one prompt ('' when nothing is pressed)."""
        entry = ch.digits.popleft() if ch.digits else ""
        entry = "" if entry is None else str(entry)
        if entry:
            self.sw.trace.record("digits", uuid=ch.uuid, digits=entry, party=ch.party or None)
            self._press(ch, entry)
        return entry

    # -- applications ----------------------------------------------------------

    def noop(self, ch: Channel, data: str) -> str:
        return "_none_"

    def answer(self, ch: Channel, data: str) -> str:
        if not ch.answered:
            self.sw.ev.answer(ch)
            self.sw.trace.record("answer", uuid=ch.uuid, party=ch.party or None)
        return "_none_"

    def pre_answer(self, ch: Channel, data: str) -> str:
        if not ch.answered and "progress_media" not in ch.times:
            self.sw.ev.progress_media(ch)
        return "_none_"

    def ring_ready(self, ch: Channel, data: str) -> str:
        self.sw.ev.progress(ch)
        return "_none_"

    def set(self, ch: Channel, data: str) -> str:
        name, _, value = data.partition("=")
        if name:
            if value:
                ch.variables[name.strip()] = value
            else:
                ch.variables.pop(name.strip(), None)
        return "_none_"

    def export(self, ch: Channel, data: str) -> str:
        name, _, value = data.partition("=")
        name = name.strip()
        if name.startswith("nolocal:"):
            name = name[len("nolocal:") :]
        elif name:
            ch.variables[name] = value
        if name:
            ch.exported[name] = value
        return "_none_"

    def unset(self, ch: Channel, data: str) -> str:
        ch.variables.pop(data.strip(), None)
        return "_none_"

    def sleep(self, ch: Channel, data: str) -> str:
        try:
            ms = int(data.strip() or "0")
        except ValueError:
            ms = 0
        self._sleep(ch, ms / 1000.0)
        return "_none_"

    def hangup(self, ch: Channel, data: str) -> str:
        cause = data.strip() or "NORMAL_CLEARING"
        self.sw.hangup_channel(ch, self.sw.valid_cause(cause))
        raise HangupSignal()

    def park(self, ch: Channel, data: str) -> str:
        self.park_loop(ch)
        return "_none_"

    def park_loop(self, ch: Channel) -> None:
        """CHANNEL_PARK, then run queued commands until hangup/interrupt; UNPARK on leaving."""
        ch.parked = True
        self.sw.ev.fire("CHANNEL_PARK", ch)
        self.sw.trace.record(
            "park", uuid=ch.uuid, party=ch.party or None, queue=ch.variables.get("ccd_queue")
        )
        try:
            while True:
                if self._sleep(ch, None, on_message=True) == "message":
                    self.sw.run_message(ch, ch.inbox.popleft())
        finally:
            ch.parked = False
            self.sw.ev.fire("CHANNEL_UNPARK", ch)

    def playback(self, ch: Channel, data: str) -> str:
        # file_string://a!b is one playback for FreeSWITCH (one PLAYBACK_START).
        paths = [data] if data.startswith("file_string://") else data.split("!")
        for path in [p for p in paths if p] or [data]:
            if self.play(ch, path) == "break":
                break
        return "FILE PLAYED"

    def play_and_get_digits(self, ch: Channel, data: str) -> str:
        """mod_dptools play_and_get_digits, with switch_play_and_get_digits' rules.

        ``min max tries timeout terminators prompt invalid var regex digit_timeout
        failure_target`` (the last field keeps its spaces: "ext XML context"). Per try:
        the variable is cleared, the prompt plays, the caller's next script entry is
        pressed; keys up to a terminator or ``max`` count. A silence waits ``timeout``,
        keys without a terminator short of ``max`` wait ``digit_timeout`` (then count).
        Fewer than ``min`` keys, or keys the regex does not find (unanchored search, as
        PCRE in FreeSWITCH), fail the try and ``invalid`` plays (after a silence too).
        With ``min`` 0 an empty answer is valid only once a terminator was ever pressed on
        the channel (``read_terminator_used``, which FreeSWITCH never clears). After the
        last failed try: the variable stays unset and the failure target, if any, is
        transferred to.
        """
        args = data.split(" ", 10)
        min_d = max(0, _int(args[0], 0))
        max_d = max(min_d, _int(_arg(args, 1), 0))
        tries = _int(_arg(args, 2), 0)
        timeout_ms = max(1000, _int(_arg(args, 3), 1000))
        terminators = _arg(args, 4) or "#"
        prompt, invalid, var = _arg(args, 5), _arg(args, 6), _arg(args, 7)
        regex = _arg(args, 8)
        digit_timeout_ms = _int(_arg(args, 9), 0) or timeout_ms
        failure_target = _arg(args, 10).strip()
        if regex and var:
            ch.variables.pop(var + "_invalid", None)
        for _ in range(tries):
            status, got = self._read(
                ch, min_d, max_d, prompt, var, timeout_ms, terminators, digit_timeout_ms
            )
            if status == "timeout" and len(got) >= min_d:
                status = "success"
            if min_d == 0 and not got and "read_terminator_used" in ch.variables:
                return "_none_"
            if status == "success" and got:
                if not regex or re.search(regex, got):
                    return "_none_"
                if var:
                    ch.variables.pop(var, None)
                    ch.variables[var + "_invalid"] = got
            if invalid:
                self.play(ch, invalid)
        if failure_target:
            self.transfer(ch, failure_target)
        return "_none_"

    def _read(
        self,
        ch: Channel,
        min_d: int,
        max_d: int,
        prompt: str,
        var: str,
        timeout_ms: int,
        terminators: str,
        digit_timeout_ms: int,
    ) -> tuple[str, str]:
        """switch_ivr_read: (status 'success' | 'timeout' | 'too_small', digits kept)."""
        ch.variables.pop("read_result", None)
        if var:
            ch.variables.pop(var, None)
        if prompt and prompt != "silence":
            self.play(ch, prompt)
        pressed = self._next_digits(ch)
        got, terminator = "", ""
        for key in pressed:
            if key in terminators:
                terminator = key
                break
            got += key
            if len(got) >= max_d:
                break
        status = "success"
        if not terminator and len(got) < max_d:
            # Nothing ended the input: FreeSWITCH waits out the (inter-digit) timeout.
            self._sleep(ch, (digit_timeout_ms if got else timeout_ms) / 1000.0)
            status = "timeout"
        if terminator:
            ch.variables["read_terminator_used"] = terminator
        if min_d and len(got) < min_d:
            status = "too_small"
        ch.variables["read_result"] = status if status != "too_small" else "failure"
        if var and got:
            ch.variables[var] = got
        return status, got

    def say(self, ch: Channel, data: str) -> str:
        """mod_say ``<module>[:<lang>] <type> <method> [<gender>] <text>``.

        Only what the project uses is modelled: ``number iterated`` (the dialplan), which
        mod_say_en turns into one ``file_string://`` playback of ``digits/N.wav`` per digit,
        and ``number pronounced`` (position announcements): the files of the number read as
        a count (:func:`pronounced`). Commas are skipped; any other character is a parse
        error and nothing is played. The trace gets one ``playback`` per file, in order.
        """
        argv = data.split(" ")
        if len(argv) not in (4, 5):
            log.warning("fakeswitch.app.bad_args", app="say", data=data)
            return "_none_"
        say_type, method, text = argv[1].lower(), argv[2].lower(), argv[-1]
        if say_type != "number" or method not in ("iterated", "pronounced"):
            log.warning("fakeswitch.say.unsupported", uuid=ch.uuid, type=say_type, method=method)
            return "_none_"
        digits = text.replace(",", "")
        if (
            not digits.isdigit()
            or not digits.isascii()
            or (method == "pronounced" and len(digits) > 9)
        ):
            log.warning("fakeswitch.say.parse_error", uuid=ch.uuid)
            return "_none_"
        if method == "iterated":
            files = [f"digits/{d}.wav" for d in digits]
        else:
            files = pronounced(int(digits))
        path = "file_string://" + "!".join(files)
        mid = [("Playback-File-Type", "file_string"), ("Playback-File-Path", path)]
        self.sw.ev.fire("PLAYBACK_START", ch, mid=mid)
        status = "done"
        try:
            for file in files:
                self.sw.trace.record("playback", uuid=ch.uuid, file=file, party=ch.party or None)
                try:
                    if self._sleep(ch, self.sw.playback_seconds, on_break=True) == "break":
                        status = "break"
                finally:
                    self._played(ch, file, status)
                if status == "break":
                    break
        finally:
            self.sw.ev.fire("PLAYBACK_STOP", ch, mid=[*mid, ("Playback-Status", status)])
        return "_none_"

    def transfer(self, ch: Channel, data: str) -> str:
        parts = data.split()
        if not parts:
            return "_none_"
        ext = parts[0]
        context = parts[2] if len(parts) > 2 else ch.context
        raise Interrupt("transfer", (ext, context))

    def event(self, ch: Channel, data: str) -> str:
        headers: list[tuple[str, str]] = []
        subclass = None
        for item in data.split(","):
            name, sep, value = item.partition("=")
            if not sep:
                continue
            name = name.strip()
            if name == "Event-Subclass":
                subclass = value
            elif name != "Event-Name":
                headers.append((name, value))
        self.sw.ev.fire(
            "CUSTOM",
            ch,
            leading=(),
            subclass=subclass or "",
            event_app=True,
            pre=headers,
        )
        self.sw.trace.record("event", uuid=ch.uuid, subclass=subclass)
        return "_none_"

    def voicemail(self, ch: Channel, data: str) -> str:
        """The caller model: the greeting, a message of ``voicemail_seconds``, then the caller
        hangs up and mod_voicemail delivers it (:mod:`ccd.fakeswitch.voicemail`)."""
        parts = data.split()
        box = parts[-1] if parts else ""
        if not ch.answered:
            self.sw.ev.answer(ch)
        self.sw.trace.record("voicemail", uuid=ch.uuid, box=box, party=ch.party or None)
        self.play(ch, "voicemail/vm-record_message.wav")
        self._sleep(ch, self.sw.voicemail_seconds)
        self.sw.hangup_channel(ch, "NORMAL_CLEARING")  # ends the recording
        self.sw.trace.record("voicemail_left", uuid=ch.uuid, box=box, party=ch.party or None)
        self.sw.mailboxes.deliver(ch, data, self.sw.voicemail_seconds)
        raise HangupSignal()

    def sched_transfer(self, ch: Channel, data: str) -> str:
        when, _, target = data.strip().partition(" ")
        self.sw.schedule(ch, _delay(when), "transfer", target)
        return "_none_"

    def sched_hangup(self, ch: Channel, data: str) -> str:
        when, _, cause = data.strip().partition(" ")
        self.sw.schedule(ch, _delay(when), "hangup", cause or "ALLOTTED_TIMEOUT")
        return "_none_"

    def sched_cancel(self, ch: Channel, data: str) -> str:
        self.sw.unschedule(ch.uuid)
        return "_none_"

    def bridge(self, ch: Channel, data: str) -> str:
        self.sw.bridge_app(ch, data)
        return "_none_"

    def ivr(self, ch: Channel, data: str) -> str:
        name = data.strip()
        menus = self.sw.menus()
        if name not in menus:
            log.warning("fakeswitch.ivr.unknown_menu", menu=name)
            self.sw.trace.record("ivr_missing", uuid=ch.uuid, menu=name)
            return "_none_"
        self.sw.trace.record("ivr", uuid=ch.uuid, menu=name, party=ch.party or None)
        stack = [name]
        while stack:
            result = self._run_menu(ch, menus[stack[-1]])
            if result == "exit":
                return "_none_"
            if result == "back":
                stack.pop()
            elif result == "top":
                del stack[1:]
            elif result.startswith("sub:"):
                target = result[4:]
                if target in menus:
                    stack.append(target)
        return "_none_"

    def _run_menu(self, ch: Channel, menu: Any) -> str:
        """One menu until it exits or moves: 'exit', 'back', 'top' or 'sub:<name>'."""
        failures = timeouts = 0
        greeting = menu.greet_long or menu.greet_short
        while True:
            if greeting:
                self.play(ch, greeting)
            greeting = menu.greet_short or menu.greet_long
            got = self._next_digits(ch)
            if not got:
                self._sleep(ch, menu.timeout_ms / 1000.0)
                timeouts += 1
                if timeouts >= max(1, menu.max_timeouts):
                    break
                continue
            entry = next((e for e in menu.entries if e.digits == got), None)
            if entry is None:
                failures += 1
                if menu.invalid_sound:
                    self.play(ch, menu.invalid_sound)
                if failures >= max(1, menu.max_failures):
                    break
                continue
            self.sw.trace.record(
                "ivr_choice",
                uuid=ch.uuid,
                menu=menu.name,
                digits=got,
                action=entry.action,
                param=entry.param,
            )
            if entry.action == "menu-exec-app":
                app, _, app_data = entry.param.partition(" ")
                self.execute(ch, app, app_data)
            elif entry.action == "menu-sub":
                return "sub:" + entry.param
            elif entry.action == "menu-top":
                return "top"
            elif entry.action == "menu-back":
                return "back"
            elif entry.action == "menu-exit":
                return "exit"
            elif entry.action == "menu-play-sound":
                self.play(ch, entry.param)
        if menu.exit_sound:
            self.play(ch, menu.exit_sound)
        return "exit"


def _delay(when: str) -> float:
    """``+N`` (seconds from now) or an absolute epoch, FreeSWITCH's sched_* syntax."""
    try:
        return float(when[1:]) if when.startswith("+") else max(0.0, float(when))
    except ValueError:
        return 0.0


def _arg(args: list[str], index: int) -> str:
    return args[index] if index < len(args) else ""


def _int(text: str, default: int) -> int:
    """C's atoi as FreeSWITCH uses it: leading digits, else ``default``."""
    match = re.match(r"\s*[-+]?\d+", text)
    return int(match.group()) if match else default


def pronounced(number: int) -> list[str]:
    """mod_say_en's ``number pronounced`` (en_say_general_count, play_group): the files of a
    count below a billion: groups of three digits, each "N hundred" then 20..90 and 1..9 or
    10..19, followed by "million" / "thousand"; 0 is ``digits/0.wav``."""
    if number == 0:
        return ["digits/0.wav"]
    files: list[str] = []
    for scale, word in ((1_000_000, "million"), (1_000, "thousand"), (1, "")):
        group = number // scale % 1000
        if not group:
            continue
        hundreds, tens, ones = group // 100, group // 10 % 10, group % 10
        if hundreds:
            files += [f"digits/{hundreds}.wav", "digits/hundred.wav"]
        if tens == 1:
            files.append(f"digits/1{ones}.wav")
        else:
            if tens:
                files.append(f"digits/{tens}0.wav")
            if ones:
                files.append(f"digits/{ones}.wav")
        if word:
            files.append(f"digits/{word}.wav")
    return files
