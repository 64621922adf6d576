"""mod_voicemail in the fake FreeSWITCH: a caller leaves a message, in FreeSWITCH 1.10.12's order.

Theory of operation
-------------------
The caller model of the ``voicemail`` application (:meth:`ccd.fakeswitch.apps.Apps.voicemail`)
hears the greeting, speaks for ``voicemail_seconds`` while mod_voicemail records, then hangs
up. The hangup ends the recording, and mod_voicemail delivers the message afterwards, still
in the hung-up channel's thread (``voicemail_leave_main`` goes on to ``deliver`` when the
channel is no longer ready). What the kit's FreeSWITCH 1.10.12 reported for one caller, in
order (tests/real/README.md, "Voicemail messages"; tests/real/test_recovery.py checks it):

    CHANNEL_HANGUP                   Answer-State hangup, Hangup-Cause NORMAL_CLEARING
    RECORD_STOP                      (not modelled here, nor RECORD_START)
    CUSTOM vm::maintenance           leave-message: mod_voicemail.c:2896 deliver_vm, the VM-*
                                     headers then the caller's channel data and variables
                                     (Channel-State CS_EXECUTE, Channel-Call-State ACTIVE,
                                     Answer-State hangup, Hangup-Cause)
    CUSTOM vm::maintenance           mwi-update: mod_voicemail.c:1955 update_mwi, the box's
                                     totals, no channel
    CHANNEL_EXECUTE_COMPLETE         voicemail, with the voicemail_* variables deliver set
    CHANNEL_STATE CS_HANGUP ...      then CHANNEL_HANGUP_COMPLETE

:class:`Mailboxes` fires the two events and keeps each box's count of messages for the
``VM-Total-New`` of mwi-update (boxes start empty with the switch; nothing is read or saved).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ccd.fakeswitch.channel_events import channel_headers
from ccd.fakeswitch.channels import Channel, new_uuid

#: mod_voicemail's storage directory on a packaged FreeSWITCH.
STORAGE = "/var/lib/freeswitch/storage/voicemail"


class Mailboxes:
    """``make``: fsevents.EventFactory.make; ``fire``: EventBus.fire; ``now``: the switch
    clock (epoch seconds)."""

    def __init__(
        self, make: Callable[..., Any], fire: Callable[[Any], None], now: Callable[[], float]
    ) -> None:
        self._make = make
        self._fire = fire
        self._now = now
        self._new: dict[tuple[str, str], int] = {}  # (domain, box) -> messages left

    def deliver(self, ch: Channel, data: str, seconds: float) -> None:
        """``deliver_vm`` for the message ``ch`` left with ``voicemail <data>`` (``<profile>
        <domain> <box>``), ``seconds`` long: leave-message, then mwi-update, then the
        channel variables the application sets once the message is delivered."""
        parts = data.split()
        profile = parts[0] if parts else "default"
        domain = parts[1] if len(parts) > 2 else ""
        box = parts[-1] if parts else ""
        length = max(1, int(seconds))  # whole seconds recorded (4 for 4980 ms on the kit)
        path = f"{STORAGE}/{profile}/{domain}/{box}/msg_{new_uuid()}.wav"  # its own uuid
        v = ch.variables
        headers = [
            ("VM-Action", "leave-message"),
            ("VM-User", box),
            ("VM-Domain", domain),
            ("VM-Caller-ID-Name", v.get("effective_caller_id_name") or ch.caller_id_name),
            ("VM-Caller-ID-Number",
             v.get("effective_caller_id_number") or ch.caller_id_number),
            ("VM-File-Path", path),
            ("VM-Flags", "B_NORMAL"),
            ("VM-Folder", "inbox"),
            ("VM-UUID", ch.uuid),
            ("VM-Message-Len", str(length)),
            ("VM-Timestamp", str(int(self._now()))),
        ]  # fmt: skip
        self._fire(
            self._make(
                "CUSTOM",
                headers + channel_headers(ch),
                subclass="vm::maintenance",
                calling_file="mod_voicemail.c",
                calling_function="deliver_vm",
                calling_line=2896,
            )
        )
        self._new[(domain, box)] = total = self._new.get((domain, box), 0) + 1
        self._fire(
            self._make(
                "CUSTOM",
                [
                    ("VM-Action", "mwi-update"),
                    ("VM-User", box),
                    ("VM-Domain", domain),
                    ("VM-Total-New", str(total)),
                    ("VM-Total-Saved", "0"),
                    ("VM-Total-New-Urgent", "0"),
                    ("VM-Total-Saved-Urgent", "0"),
                ],
                subclass="vm::maintenance",
                calling_file="mod_voicemail.c",
                calling_function="update_mwi",
                calling_line=1955,
            )
        )
        hours, rest = divmod(length, 3600)
        v.update(
            voicemail_account=box,
            voicemail_domain=domain,
            voicemail_file_path=path,
            voicemail_read_flags="B_NORMAL",
            voicemail_message_len=f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
        )
