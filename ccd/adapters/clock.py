"""The daemon's clock: wall-clock epoch seconds, optionally running faster (tests, demo)."""

from __future__ import annotations

import time

__all__ = ["ScaledClock"]


class ScaledClock:
    """Wall-clock epoch seconds that run ``scale`` times faster, anchored at creation.

    With scale 1 it is plain ``time.time()``: the daemon's timestamps in Redis
    are then real epoch seconds another daemon can compare with its own.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        if self.scale == 1:
            return time.time()
        return self._wall0 + (time.monotonic() - self._mono0) * self.scale
