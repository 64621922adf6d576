"""Screen-pop names on a real phone: every printable ASCII character and some Unicode (defect 3).

The caller's name comes from the customer data (template ``{name}``) and reaches the desk
phone as the display name of the INVITE's From header, as sipp receives it. Before the fix
FreeSWITCH cut ``Doe: John`` to `` John`` and ``x sip:a@b y`` to ``a`` (mod_sofia's
switch_sanitize_number on the outbound leg's caller-id name; see tests/real/README.md).
A ``"`` cannot pass through FreeSWITCH at all: it shows as U+201D.
"""

from __future__ import annotations

import string

import pytest

from ccd.core.customer import Customer
from ccd.store.customer import CustomerStore
from ccd.store.redis_store import Store
from tests.real.lab import wait_for

PRINTABLE = string.printable[:95]  # 0-9 a-z A-Z punctuation, space last
NAMES = [
    "Doe: John",
    "x sip:a@b y",
    *(f"A {PRINTABLE[i : i + 38]} Z" for i in range(0, 95, 38)),
    "\u00dcnnepi Gy\u0151z\u0151 \u2013 \u65e5\u672c\u8a9e \U0001f600",
    "Zo\u00eb O'Brien \u00df \u03a9mega \u201cq\u201d",
]
CONFIG = {
    "routing": {"ring_time": 3, "wrapup_time": 0, "caller_id_template": "{name}"},
    "queues": {"general": {"tags": ["general"], "overflow_time": 0}},
    "agents": {"screen": {"extension": "1018", "tags": ["general"]}},
}


@pytest.fixture(scope="module")
def center(make_center, make_phone):
    center = make_center(CONFIG)
    center.phone = make_phone("1018", ("refuse", 486))  # one INVITE a call, then voicemail
    center.set_login("login", "screen")
    return center


def shown(name: str) -> str:
    """What the phone must show: the name, whitespace collapsed, '"' as U+201D."""
    return " ".join(name.split()).replace('"', "\u201d")


def test_every_printable_ascii_character_is_in_a_name():
    assert set("".join(NAMES)) >= set(PRINTABLE)


@pytest.mark.parametrize("name", NAMES)
def test_the_phone_shows_the_customer_name_whole(center, fs, name, call):
    number = f"+3630{NAMES.index(name):07d}"
    CustomerStore(Store.create(center.redis.client(), "ccd:")).put(Customer(number, name))
    before = len(center.phone.invites())
    caller = call("ccd_queue_general", number=number)
    invite = wait_for(
        lambda: len(center.phone.invites()) > before and center.phone.invites()[-1],
        10,
        "the INVITE at the desk phone",
    )
    caller.hang_up()
    assert invite.display == shown(name), invite.raw_from_line
