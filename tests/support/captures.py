"""Real FreeSWITCH recordings (``fs-captures/``) cut into command/answer pairs.

Each capture ``NAME`` has ``NAME.sent`` (bytes the client sent), ``NAME.raw``
(bytes FreeSWITCH sent) and ``NAME.log`` (a timeline: ``SEND b'...'`` lines,
``RECV frame ...`` lines, ``#`` comments). :func:`load_capture` pairs them:

    >>> ex = load_capture("02_commands_and_errors")
    >>> ex[0].command is None              # the greeting arrives before any send
    True
    >>> ex[1].command, ex[1].frames[0].headers["Reply-Text"]
    (b'auth ClueCon\\n\\n', '+OK accepted')

``Exchange.frames`` are the :class:`ccd.core.esl_wire.Frame` objects received after
that command and before the next one, in order. Caveat: FreeSWITCH writes
queued events between commands, so an event caused by one command sometimes
arrives after the next command was sent (see the ``.log`` times); compare
events as a sequence over the whole capture when that matters.

class:`FrameReader` reads frames from a live socket with a deadline, for
replaying ``Exchange.command`` against the fake switch. The captures
directory is ``$FS_CAPTURES`` or the repository's ``tests/data/fs-captures``
(kept with the code, so every clone has them); :func:`captures_dir` returns
None when it is absent (tests then skip, except under CI).
"""

from __future__ import annotations

import ast
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ccd.core.esl_wire import Frame, FrameParser

__all__ = [
    "Exchange",
    "FrameReader",
    "capture_names",
    "captures_dir",
    "load_capture",
    "split_sent",
]

# Recorded from FreeSWITCH 1.10.12 (tests/data/README.md): part of the repository.
_DEFAULT_DIR = Path(__file__).resolve().parents[1] / "data" / "fs-captures"


def captures_dir() -> Path | None:
    """The recordings: $FS_CAPTURES, else tests/data/fs-captures in the checkout.

    Under CI (CI=true) a missing directory is an error, not a skip: the suite
    must not pass vacuously on a machine where the recordings did not arrive.
    """
    path = Path(os.environ.get("FS_CAPTURES", _DEFAULT_DIR))
    if path.is_dir():
        return path
    if os.environ.get("CI"):
        raise RuntimeError(f"fs-captures not found at {path} (set FS_CAPTURES)")
    return None


def capture_names() -> list[str]:
    """Every capture that has .raw, .sent and .log."""
    base = captures_dir()
    if base is None:
        return []
    return sorted(
        p.stem
        for p in base.glob("*.raw")
        if p.with_suffix(".sent").exists() and p.with_suffix(".log").exists()
    )


@dataclass
class Exchange:
    """One command sent (None: before the first send) and the frames that followed."""

    command: bytes | None
    frames: list[Frame] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        """The command line (first line) as text, '' for the greeting."""
        if self.command is None:
            return ""
        return self.command.split(b"\n", 1)[0].decode("utf-8", errors="replace")


_SEND = re.compile(r"^\S+ SEND (b(['\"]).*\2)\s*$")
_RECV = re.compile(r"^\S+ RECV frame ")
_COMMENT = re.compile(r"^\S+ # (.*)$")


def split_sent(data: bytes) -> list[bytes]:
    """Cut a ``.sent`` stream into command frames (Content-Length bodies included)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n\n", pos)
        if end < 0:
            out.append(data[pos:])
            break
        block = data[pos : end + 2]
        length = 0
        for line in block.split(b"\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        out.append(data[pos : end + 2 + length])
        pos = end + 2 + length
    return out


def load_capture(name: str) -> list[Exchange]:
    """The capture as a list of exchanges; see the module docstring."""
    base = captures_dir()
    if base is None:
        raise FileNotFoundError("no fs-captures directory")
    parser = FrameParser()
    parser.feed((base / (name + ".raw")).read_bytes())
    frames = list(parser)
    sent = split_sent((base / (name + ".sent")).read_bytes())
    exchanges = [Exchange(None)]
    received = 0
    comments: list[str] = []
    sends = 0
    for line in (base / (name + ".log")).read_text(encoding="utf-8").splitlines():
        if m := _SEND.match(line):
            command = ast.literal_eval(m.group(1))
            if sends < len(sent) and sent[sends] != command:
                raise ValueError(f"{name}: .log and .sent disagree at send {sends}")
            sends += 1
            exchanges.append(Exchange(command, comments=comments))
            comments = []
        elif _RECV.match(line):
            exchanges[-1].frames.append(frames[received])
            received += 1
        elif m := _COMMENT.match(line):
            comments.append(m.group(1))
    if received != len(frames):
        raise ValueError(f"{name}: log has {received} frames, raw {len(frames)}")
    return exchanges


class FrameReader:
    """Frames from a connected socket, with a deadline per call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = FrameParser()
        self.eof = False

    def read(self, count: int, timeout: float = 5.0) -> list[Frame]:
        """Exactly ``count`` frames, or fewer if the peer closed; raises on timeout."""
        out: list[Frame] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            frame = self.parser.next_frame()
            if frame is not None:
                out.append(frame)
                continue
            if self.eof:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"got {len(out)} of {count} frames")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
            self.parser.feed(data)
        return out

    def read_eof(self, timeout: float = 5.0) -> bool:
        """True when the peer closes within ``timeout`` with no further frame."""
        if self.parser.buffered:
            return False
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.parser.feed(data)
            if self.parser.next_frame() is not None:
                return False
        return True
