"""Live daemons in Redis: the heartbeat that makes a daemon's claims on calls valid.

Theory of operation
-------------------
Each daemon has a node id, stable across restarts (default: the host name), and keeps
``node:<id>`` alive with a short expiry (``TTL_MS``), rewritten every ``BEAT`` seconds by its
dispatcher, so a daemon whose dispatcher is stuck stops beating as surely as one that died.
A call's lease names its daemon and is valid only while that daemon's key lives
(ccd/store/routing.lua), so:

* a daemon restarted under the same id (systemd, after a crash) owns its calls at once and
  resumes them as soon as it has read what FreeSWITCH has live;
* a daemon that stops beating loses its calls to the next daemon that looks at them, a few
  seconds later, without any per-call renewal work while it lives.

Two processes must never beat under one id: :meth:`Nodes.claim` refuses to start when the
key is held by a live process elsewhere (another host, or another live process here), and
takes it over when it was left by a process of this host that is gone.

Each beat also writes the daemon's clock beside the heartbeat (``node_clock:<id>``: the
daemon's now, the wall clock's now and the time scale). The daemon stamps Redis with its own
clock, which at a ``daemon.time_scale`` other than 1 (tests, the demo) runs faster than the
wall clock from its start; a ``ccd`` command measuring "waited" or "for" against its wall clock
would then see every stamp in the future (``FOR 0s``). It reads :func:`daemon_clock` instead
and carries the daemon's clock forward from the last beat at the same scale.

Each beat also reads ``epoch``, a random mark written once into an empty Redis. A Redis that
comes back without it lost its data (restarted without persistence, flushed, failed over to
an empty replica): :meth:`Nodes.beat` says so, at most a beat after it happened, and the
daemon rebuilds what it knows (issue 9, defect 6). Ship Redis with ``appendonly yes``.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from ccd.store.redis_store import Store, unavailable_as_domain_error

__all__ = ["BEAT", "TTL_MS", "DaemonClock", "NodeClash", "NodeInfo", "Nodes", "daemon_clock"]

#: Seconds between two heartbeats (real time: a daemon at a time scale beats as often).
BEAT = 1.0
#: How long a heartbeat lives: a node that missed about three is gone.
TTL_MS = 3500


class NodeClash(Exception):
    """Another live daemon uses this node id: starting would steal its calls."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    host: str
    pid: int
    token: str
    started: float

    def pack(self) -> bytes:
        return msgpack.packb([self.host, self.pid, self.token, self.started])

    @classmethod
    def unpack(cls, raw: bytes) -> NodeInfo | None:
        try:
            host, pid, token, started = msgpack.unpackb(raw)
            return cls(str(host), int(pid), str(token), float(started))
        except (ValueError, TypeError, msgpack.UnpackException):
            return None


@dataclass(frozen=True, slots=True)
class DaemonClock:
    """A daemon's clock as of its last beat: ``now`` on its clock when the wall clock read
    ``wall``; it runs ``scale`` times faster than the wall clock."""

    now: float
    wall: float
    scale: float

    def at(self, wall: float) -> float:
        """The daemon's time when the wall clock reads ``wall``."""
        return self.now + (wall - self.wall) * self.scale

    def pack(self) -> bytes:
        return msgpack.packb([self.now, self.wall, self.scale])

    @classmethod
    def unpack(cls, raw: bytes) -> DaemonClock | None:
        try:
            now, wall, scale = msgpack.unpackb(raw)
            return cls(float(now), float(wall), float(scale))
        except (ValueError, TypeError, msgpack.UnpackException):
            return None


def daemon_clock(store: Store, node_id: str) -> DaemonClock | None:
    """The clock of the live daemon ``node_id``; None when it is not beating."""
    with unavailable_as_domain_error("node clock"):
        raw = store.client.get(store.keys.node_clock(node_id))
    return DaemonClock.unpack(raw) if raw else None


def default_node_id() -> str:
    """The host name, made safe for a key: the same after a restart, unlike a pid."""
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())
    return name[:64] or "ccd"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Nodes:
    """This daemon's heartbeat under ``node_id``."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        clock: Callable[[], float] = time.time,
        scale: float = 1.0,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.key = store.keys.node(node_id)
        self.clock_key = store.keys.node_clock(node_id)
        self.clock, self.scale = clock, scale  # the daemon's clock, published at each beat
        self.me = NodeInfo(socket.gethostname(), os.getpid(), secrets.token_hex(8), time.time())
        self.epoch_key = store.keys.epoch()
        self.epoch: bytes | None = None  # the mark this daemon saw in Redis
        self._last = 0.0

    def claim(self) -> NodeInfo | None:
        """Take the node id; NodeClash when another live process holds it. Answers the
        previous holder this host left behind (a crash or a kill), if any."""
        with unavailable_as_domain_error("node claim"):
            raw = self.store.client.get(self.key)
        held = NodeInfo.unpack(raw) if raw else None
        if held is not None and held.token != self.me.token:
            here = held.host == self.me.host
            if not here or (held.pid != self.me.pid and _alive(held.pid)):
                where = f"pid {held.pid}" + ("" if here else f" on {held.host}")
                raise NodeClash(
                    f"node id {self.node_id!r} is in use by a running daemon ({where}); "
                    "give every daemon its own daemon.node_id"
                )
        self.beat(force=True)
        return held if held is not None and held.token != self.me.token else None

    def beat(self, *, force: bool = False) -> str | None:
        """Renew the heartbeat if a beat is due (wall clock) and check Redis still holds its
        data: "ok", "lost" (the epoch mark this daemon saw is gone: rebuild), or None when
        no beat was due."""
        now = time.monotonic()
        if not force and now - self._last < BEAT:
            return None
        fresh = secrets.token_hex(8).encode()
        with unavailable_as_domain_error("node beat"):
            pipe = self.store.client.pipeline(transaction=False)
            pipe.set(self.key, self.me.pack(), px=TTL_MS)
            stamp = DaemonClock(self.clock(), time.time(), self.scale)
            pipe.set(self.clock_key, stamp.pack(), px=TTL_MS)
            pipe.set(self.epoch_key, fresh, nx=True)
            pipe.get(self.epoch_key)
            _, _, _, epoch = pipe.execute()
        self._last = now
        seen, self.epoch = self.epoch, epoch
        return "lost" if seen is not None and epoch != seen else "ok"

    def leave(self) -> None:
        """A clean stop: the calls of this id go to whoever looks next, at once."""
        with unavailable_as_domain_error("node leave"):
            raw = self.store.client.get(self.key)
            if raw and (held := NodeInfo.unpack(raw)) is not None and held.token == self.me.token:
                self.store.client.delete(self.key, self.clock_key)
