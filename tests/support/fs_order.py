"""Event orders FreeSWITCH 1.10.12 follows, checked on the real switch (tests/real) and
required of the fake one (tests/test_fakeswitch_*.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: What FreeSWITCH 1.10.12 reports for a caller who hangs up while mod_voicemail records, in
#: order (Event-Sequence): the message is delivered after the hangup (the kit:
#: tests/real/test_recovery.py; the fake: tests/test_fakeswitch_voicemail.py).
MESSAGE_ORDER = [
    "CHANNEL_HANGUP",
    "vm::maintenance leave-message",
    "vm::maintenance mwi-update",
    "CHANNEL_EXECUTE_COMPLETE voicemail",
    "CHANNEL_HANGUP_COMPLETE",
]


def message_order(events: Iterable[Any], uuid: str, box: str) -> list[str]:
    """The caller's hangup, the box's vm::maintenance events and the voicemail application's
    end, by FreeSWITCH's Event-Sequence."""
    picked = []
    for s in events:
        name = s.name
        if name == "CUSTOM" and s.get("Event-Subclass") == "vm::maintenance":
            if s.get("VM-User") == box and s.get("VM-UUID", uuid) == uuid:
                picked.append((s, f"vm::maintenance {s.get('VM-Action')}"))
        elif s.uuid == uuid and name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            picked.append((s, name))
        elif s.uuid == uuid and (name, s.get("Application")) == (
            "CHANNEL_EXECUTE_COMPLETE",
            "voicemail",
        ):
            picked.append((s, f"{name} voicemail"))
    picked.sort(key=lambda p: int(p[0].get("Event-Sequence")))
    return [label for _, label in picked]
