"""Fixture plugin: a running fake FreeSWITCH on a free loopback port.

``fakeswitch`` starts a :class:`~ccd.fakeswitch.switch.FakeSwitch` (the repo's
``freeswitch_conf/``, time scale 50, ESL password ``ClueCon``) and stops it
after the test. Parametrize indirectly to change its arguments::

    @pytest.mark.parametrize("fakeswitch", [{"time_scale": 100}], indirect=True)

:class:`EslClient` is a test's own event-socket connection to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import pytest
from gevent import socket

from ccd.core.esl_wire import FrameParser, decode_event, encode_command
from ccd.fakeswitch.switch import FakeSwitch

DEADLINE = 5.0  # real seconds any single wait may take

FAKESWITCH_DEFAULTS = {"time_scale": 50.0, "password": "ClueCon", "host": "127.0.0.1", "port": 0}


@pytest.fixture
def fakeswitch(request: pytest.FixtureRequest) -> Iterator[FakeSwitch]:
    kwargs = {**FAKESWITCH_DEFAULTS, **getattr(request, "param", {})}
    switch = FakeSwitch(**kwargs)
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


class EslClient:
    """A minimal inbound ESL client on a gevent socket (the switch runs in this thread)."""

    def __init__(self, address: tuple[str, int], password: str = "ClueCon") -> None:
        self.sock = socket.create_connection(address, timeout=DEADLINE)
        self.parser = FrameParser()
        self.events: list = []
        self.replies: list = []
        self._reader = gevent.spawn(self._read)
        self.wait_reply()  # auth/request
        assert self.command(f"auth {password}") == "+OK accepted"

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.parser.feed(data)
            for frame in self.parser:
                if frame.content_type.startswith("text/event-"):
                    self.events.append(decode_event(frame))
                else:
                    self.replies.append(frame)

    def wait_reply(self):
        deadline = time.monotonic() + DEADLINE
        while not self.replies:
            assert time.monotonic() < deadline, "no reply from the fake switch"
            gevent.sleep(0.002)
        return self.replies.pop(0)

    def command(self, line: str, headers=()) -> str:
        self.sock.sendall(encode_command(line, headers))
        frame = self.wait_reply()
        return frame.headers.get("Reply-Text") or frame.body_text()

    def api(self, line: str) -> str:
        return self.command("api " + line)

    def wait_event(self, pred, start: int = 0, timeout: float = DEADLINE):
        """The first event from index ``start`` on that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[start:]:
                if pred(ev):
                    return ev
            assert time.monotonic() < deadline, "event never arrived"
            gevent.sleep(0.002)

    def wait_gone(self, uuid: str):
        return self.wait_event(lambda e: e.name == "CHANNEL_DESTROY" and e.uuid == uuid)

    def close(self) -> None:
        self.sock.close()
        self._reader.kill()


@pytest.fixture
def esl(fakeswitch: FakeSwitch) -> Iterator[EslClient]:
    """An ESL client of the fake switch, subscribed to every event (plain)."""
    client = EslClient(fakeswitch.address)
    assert client.command("event plain ALL") == "+OK event listener enabled plain"
    yield client
    client.close()
