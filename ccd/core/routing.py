"""Candidate order for tag routing (R-ROUTE, seed 002).

Among agents who are logged in and ready (not on break, not logged out), whose
phone is registered, who are idle and who carry every required tag, the
specialist goes first: fewest tags first, then longest idle first (smallest
``idle_since``), then agent id so the order is the same on every daemon.
Pure: the engine reads a fresh snapshot (tags change at run time) and calls
:func:`candidates` for each routing decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AgentView", "candidates", "normalize_tags"]


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
