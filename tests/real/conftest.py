"""The real-switch tier: runs when a real FreeSWITCH is at hand, else one line says why not.

Whether one is at hand is decided at collection (tests/real/lab.py, find_switch): the kit
beside the checkout (../shared/freeswitch/fslab, started here when it is down) or the
FreeSWITCH the CCD_REAL_FS_* variables name. Without one every test of this folder is
skipped and the run ends with one line: ``real-switch tier skipped: <why>``.

Fixtures: ``real_switch`` (session: FreeSWITCH up, freeswitch_conf/ installed by the
project's script), ``fs`` (module: the tests' own event-socket connection, the witness of
what FreeSWITCH reports), ``make_center`` and ``make_phone`` (module: a call centre of the
module's configuration, desk phones played by sipp; every call on the switch is hung up
before and after a module's centre), ``customer`` (the phone behind the ccd_trunk
gateway), ``call`` (a loopback caller, hung up when the test ends).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.esl import EslClient
from tests.real.lab import (
    CUSTOMER_PORT,
    Caller,
    Center,
    RealSwitch,
    find_switch,
    place_call,
    wait_for,
)
from tests.real.sip import Phone

_AT_HAND = find_switch()
_HERE = Path(__file__).resolve().parent

#: What the witness connection subscribes to.
WITNESS_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_STATE",
    "CHANNEL_EXECUTE",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "DTMF",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not isinstance(_AT_HAND, str):
        return
    skip = pytest.mark.skip(reason=f"real-switch tier: {_AT_HAND}")
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if isinstance(_AT_HAND, str):
        terminalreporter.write_line(f"real-switch tier skipped: {_AT_HAND}")


@pytest.fixture(scope="session")
def real_switch() -> Iterator[RealSwitch]:
    assert not isinstance(_AT_HAND, str)
    with _AT_HAND.held():
        _AT_HAND.ensure_up()
        _AT_HAND.install()
        yield _AT_HAND


@pytest.fixture(scope="module")
def fs(real_switch: RealSwitch) -> Iterator[EslClient]:
    client = real_switch.client()
    client.subscribe(*WITNESS_EVENTS)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def make_center(real_switch: RealSwitch, workdir: Path) -> Iterator[Callable[..., Center]]:
    centers: list[Center] = []

    def make(config: dict[str, Any], *, start: bool = True) -> Center:
        # A clean switch: no call left over from an earlier module (or an aborted run).
        hang_up_everything(real_switch)
        center = Center(real_switch, workdir / f"center-{len(centers)}", config)
        centers.append(center)
        return center.start() if start else center

    try:
        yield make
    finally:
        for center in centers:
            with contextlib.suppress(Exception):
                center.close()
        hang_up_everything(real_switch)


def hang_up_everything(switch: RealSwitch) -> None:
    """Every call on the switch ends (the tier's FreeSWITCH is a test switch)."""
    client = switch.client()
    try:
        client.api("hupall MANAGER_REQUEST")
        wait_for(
            lambda: '"row_count":0' in client.api("show channels as json").replace(" ", ""),
            10,
            "FreeSWITCH without calls",
        )
    finally:
        client.close()


@pytest.fixture
def call(fs: EslClient) -> Iterator[Callable[..., Caller]]:
    """``call("ccd_queue_sales", number=...)``: a loopback caller, hung up after the test."""
    callers: list[Caller] = []

    def place(extension: str, **kwargs: Any) -> Caller:
        caller = place_call(fs, extension, **kwargs)
        callers.append(caller)
        return caller

    try:
        yield place
    finally:
        for caller in callers:
            with contextlib.suppress(Exception):
                caller.hang_up()


@pytest.fixture(scope="module")
def make_phone(real_switch: RealSwitch, workdir: Path) -> Iterator[Callable[..., Phone]]:
    """``make_phone("1001", ("answer", 500), register=True)``: a started desk phone on port
    5200 + last three digits (so a phone's port is stable across modules)."""
    phones: list[Phone] = []

    def make(user: str, behaviour: tuple[str, int | None], *, register: bool = True) -> Phone:
        phone = Phone(
            user, 5200 + int(user) % 1000, workdir, behaviour, sip=real_switch.sip
        ).start()
        phones.append(phone)
        if register:
            phone.register(expires=3600)
        return phone

    try:
        yield make
    finally:
        for phone in phones:
            with contextlib.suppress(Exception):
                phone.unregister()
            phone.stop()


@pytest.fixture(scope="module")
def customer(real_switch: RealSwitch, workdir: Path) -> Iterator[Phone]:
    """The customer behind the ccd_trunk gateway (lab.CUSTOMER_PORT): answers after 0.5 s."""
    phone = Phone("customer", CUSTOMER_PORT, workdir, ("answer", 500)).start()
    try:
        yield phone
    finally:
        phone.stop()
