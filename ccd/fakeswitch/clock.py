"""Switch time: epoch seconds that run ``time_scale`` times faster than real time.

Every duration inside the fake FreeSWITCH (ring time, answer delay, talk time,
caller patience, ``originate_timeout``, playback length) is in *switch seconds*.
With ``time_scale=50`` a 30 s scenario takes 0.6 s of real time, while every
timestamp the fake reports (event dates, trace lines, ``expires``) still moves
30 s forward, so a client sees a consistent, merely faster, world.
"""

from __future__ import annotations

import time

import gevent


class SwitchClock:
    """Scaled wall clock. ``now()`` starts at the real epoch time of creation."""

    def __init__(self, time_scale: float = 1.0, *, start: float | None = None) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0, got %r" % (time_scale,))
        self.time_scale = float(time_scale)
        self._epoch0 = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()

    def now(self) -> float:
        """Switch seconds since the Unix epoch."""
        return self._epoch0 + (time.monotonic() - self._mono0) * self.time_scale

    def real_seconds(self, switch_seconds: float) -> float:
        """How long ``switch_seconds`` last in real time."""
        return max(0.0, switch_seconds) / self.time_scale

    def sleep(self, switch_seconds: float) -> None:
        """Block the calling greenlet for ``switch_seconds`` of switch time."""
        gevent.sleep(self.real_seconds(switch_seconds))
