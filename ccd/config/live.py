"""The running configuration: one holder that every part of the daemon reads through.

The daemon builds one :class:`LiveConfig` around the loaded :class:`~ccd.config.Config` and
hands the holder, not the Config, to every engine part. Attribute reads go to the Config it
holds now (``live.routing.ring_time``), so a part that reads ``self.config`` when it decides
sees a reload at its next decision. :meth:`LiveConfig.swap` is called on the dispatcher
greenlet only, between two events: no decision ever sees half of each configuration.
"""

from __future__ import annotations

from typing import Any

from ccd.config.loading import Config

__all__ = ["LiveConfig"]


class LiveConfig:
    """Holds the current :class:`Config`; reads of its attributes go to it."""

    def __init__(self, config: Config) -> None:
        if isinstance(config, LiveConfig):
            config = config.current
        self._current = config
        self.generation = 0  # reloads applied so far

    @property
    def current(self) -> Config:
        return self._current

    def swap(self, config: Config) -> Config:
        """Hold ``config`` from now on; returns the one it replaces."""
        old, self._current = self._current, config
        self.generation += 1
        return old

    def __getattr__(self, name: str) -> Any:
        # Only called for names LiveConfig itself lacks: esl, routing, queues, redacted...
        if name == "_current":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._current, name)

    def __repr__(self) -> str:
        return f"LiveConfig(generation={self.generation}, {self._current!r})"
