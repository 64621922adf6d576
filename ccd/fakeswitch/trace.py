"""What happened inside the fake FreeSWITCH, one JSON object per line.

Each entry is ``{"t": <switch seconds>, "kind": <what>, ...details}`` — kinds
such as ``ring``, ``answer``, ``bridge``, ``unbridge``, ``playback`` (a file begins),
``playback_stop`` (it ended: ``status`` ``done``, or ``break`` when cut), ``digits``,
``voicemail``, ``park``, ``transfer``, ``hangup``, ``register``, ``unregister``,
``originate_failed``. Tests and the demo read :attr:`Trace.entries` (or the
file) to say what happened to callers and agents without parsing ESL events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


class Trace:
    """An append-only list of trace entries, optionally mirrored to a file."""

    def __init__(self, clock: Callable[[], float], path: str | Path | None = None) -> None:
        self._clock = clock
        self.entries: list[dict[str, Any]] = []
        self._file: IO[str] | None = None
        if path is not None:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    def record(self, kind: str, **details: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"t": round(self._clock(), 6), "kind": kind}
        entry.update({k: v for k, v in details.items() if v is not None})
        self.entries.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, sort_keys=False) + "\n")
            self._file.flush()
        return entry

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Entries of one kind whose fields equal every ``match`` item."""
        return [
            e
            for e in self.entries
            if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())
        ]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
