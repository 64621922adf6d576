"""Candidate order for tag routing (R-ROUTE, seed 002).

Among agents who are logged in and ready (not on break, not logged out), whose
phone is registered, who are idle and who carry every required tag, the
specialist goes first: fewest tags first, then longest idle first (smallest
``idle_since``), then agent id so the order is the same on every daemon.
Pure: the engine reads a fresh snapshot (tags change at run time) and calls
:func:`candidates` for each routing decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TAG_RE", "AgentView", "candidates", "normalize_tags", "split_tags"]

#: What a tag is, for agents, queues and calls alike: a call can only be served by an agent
#: carrying every tag it needs, so a call may need no tag an agent could not carry.
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")


@dataclass(frozen=True, slots=True)
class AgentView:
    """What routing needs to know about one agent, read from live state."""

    id: str
    extension: str
    tags: frozenset[str]
    login: str  # "logged_out" | "ready" | "break" (ccd.core.presence.Login)
    registered: bool
    activity: str  # "idle" | "ringing" | "oncall" | "wrapup" (ccd.core.presence.Activity)
    idle_since: float


def normalize_tags(tags: Iterable[str]) -> frozenset[str]:
    """Tags compare case-insensitively and without surrounding spaces."""
    return frozenset(t.strip().lower() for t in tags if t and t.strip())


def split_tags(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"Sales, support"`` -> the tags (``("sales", "support")``, duplicates once) and the
    parts that are no tag (``"lang:fr"``, ``"sales team"``), for the caller to refuse."""
    tags: list[str] = []
    refused: list[str] = []
    for part in text.split(","):
        tag = part.strip().lower()
        if TAG_RE.match(tag):
            if tag not in tags:
                tags.append(tag)
        elif tag:
            refused.append(part.strip())
    return tuple(tags), tuple(refused)


def candidates(
    agents: Iterable[AgentView], required_tags: Iterable[str], exclude: Iterable[str] = ()
) -> list[AgentView]:
    """Agents who may be offered a call needing ``required_tags``, best first."""
    required = normalize_tags(required_tags)
    skip = frozenset(exclude)
    eligible = [
        a
        for a in agents
        if a.login == "ready"
        and a.registered
        and a.activity == "idle"
        and a.id not in skip
        and required <= normalize_tags(a.tags)
    ]
    eligible.sort(key=lambda a: (len(normalize_tags(a.tags)), a.idle_since, a.id))
    return eligible
