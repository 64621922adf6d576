"""Fixture plugin: the real daemon, in process, against the fake FreeSWITCH and real Redis.

``start_daemon(switch, **config_sections)`` builds a configuration the way an
operator's TOML would (validated by ccd.config), starts the daemon with the
call-control service on it, waits until it is connected and resynchronised,
and stops it at teardown. The daemon's clock runs at the fake switch's time
scale, so ring times and wrap-up last fractions of a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ccd.config import Config
from ccd.daemon import Daemon, build_call_control
from ccd.fakeswitch.switch import FakeSwitch
from ccd.store.agent import AgentRepository
from ccd.store.call import CallRepository

#: The daemons' HTTP token in tests (``/calls/...`` and POSTs need it: ccd.adapters.http).
HTTP_TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {HTTP_TOKEN}"}

# The shipped dialplan's queues. Overflow and position announcements are off here; the
# overflow and announcement tests turn them on.
_OFF = {"overflow_time": 0, "no_agents": "voicemail", "announce_interval": 0}
QUEUES = {
    "sales": {"tags": ["sales"], **_OFF},
    "support": {"tags": ["support"], **_OFF},
    "payments": {"tags": ["billing"], **_OFF},
    "general": {"tags": ["general"], **_OFF},
}


def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


def bridged(switch: FakeSwitch, caller: str) -> list[dict[str, Any]]:
    """The fake switch's bridge entries that involve ``caller``."""
    return [b for b in switch.trace.of("bridge") if caller in (b["a"], b["b"])]


def daemon_config(switch: FakeSwitch, redis_url: str, **sections: Any) -> Config:
    host, port = switch.address
    data: dict[str, Any] = {
        "esl": {
            "host": host,
            "port": port,
            "password": "ClueCon",
            "backoff_min": 0.05,
            "backoff_max": 0.5,
            "command_timeout": 5,
        },
        "redis": {"url": redis_url},
        "http": {"port": 0, "token": HTTP_TOKEN},
        "daemon": {"time_scale": switch.clock.time_scale, "node_id": "test-node"},
        "voicemail": {"boxes": []},
        "queues": QUEUES,
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict) and name != "queues":
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return Config.from_dict(data, env={})


@pytest.fixture
def start_daemon(redis_url: str) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(switch: FakeSwitch, **sections: Any) -> Daemon:
        daemon = Daemon(
            daemon_config(switch, redis_url, **sections),
            call_control_factory=build_call_control,
            clock=switch.clock.now,  # one clock for the switch and every daemon
        )
        daemon.start()
        started.append(daemon)
        eventually(lambda: daemon.synced, what="daemon connected and resynchronised")
        return daemon

    yield start
    for daemon in reversed(started):
        daemon.stop()


def agents_of(daemon: Daemon) -> AgentRepository:
    return daemon.control.agents  # type: ignore[union-attr]


def calls_of(daemon: Daemon) -> CallRepository:
    return daemon.control.calls  # type: ignore[union-attr]
