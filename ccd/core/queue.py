"""A queue (R-ROUTE): its rules as a hunt needs them, the order its calls are served in, and
the outcomes of offering one of its calls to an agent.

Waiting calls are served by priority (higher first, VIP calls gain points), then by arrival:
:func:`queue_order_key` is the one score for both, used by the waiting calls' Redis ZSET and
by callback requests queued behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_PRIORITY",
    "OUTCOMES",
    "PRIORITY_STEP",
    "QueueRules",
    "order_key_parts",
    "outcome_for_cause",
    "queue_order_key",
]

#: What an offer's outcome (a hunt's Release) can be.
OUTCOMES = frozenset(
    {
        "no_answer",  # rang out (our ring deadline or FreeSWITCH's NO_ANSWER)
        "busy",
        "rejected",
        "unregistered",  # the phone is not registered: mark it so
        "out_of_order",  # FreeSWITCH refused the session (rate limit): not the agent's fault
        "failed",  # any other originate failure
        "hangup",  # the agent leg ended after answering, before the bridge
        "cancelled",  # we stopped the offer because the caller left
        "completed",  # the bridged call ended
    }
)

_CAUSE_OUTCOMES = {
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "rejected",
    "USER_NOT_REGISTERED": "unregistered",
    "DESTINATION_OUT_OF_ORDER": "out_of_order",
}

#: Largest priority; larger is more urgent (VIP).

MAX_PRIORITY = 99


_PRIORITY_STEP = 1e10  # more than any epoch time in seconds until year 2286
#: Width of one priority's band of order keys (ccd.store.stats walks the bands in Lua).
PRIORITY_STEP = _PRIORITY_STEP


def outcome_for_cause(cause: str) -> str:
    """Map a FreeSWITCH hangup cause of an unanswered offer to a Release outcome."""
    return _CAUSE_OUTCOMES.get(cause, "failed")


def queue_order_key(priority: int, entered_at: float) -> float:
    """Score for the waiting calls' Redis ZSET: lowest is served first.

    Higher priority first, then earlier arrival. ``priority`` is clamped to
    0..MAX_PRIORITY; ``entered_at`` is epoch seconds (millisecond precision
    survives: scores stay below 1e12).
    """
    prio = min(max(int(priority), 0), MAX_PRIORITY)
    if not 0 <= entered_at < _PRIORITY_STEP:
        raise ValueError(f"entered_at out of range: {entered_at!r}")
    return (MAX_PRIORITY - prio) * _PRIORITY_STEP + entered_at


def order_key_parts(score: float) -> tuple[int, float]:
    """The priority and arrival time (epoch seconds) a :func:`queue_order_key` was made of."""
    band = int(score // _PRIORITY_STEP)
    return MAX_PRIORITY - band, score - band * _PRIORITY_STEP


@dataclass(frozen=True, slots=True)
class QueueRules:
    """A queue's routing settings, as the hunt needs them."""

    name: str
    required_tags: tuple[str, ...] = ()
    ring_time: float = 15.0
    ring_margin: int = 3  # originate_timeout = ceil(ring_time) + ring_margin
    retry_delay: float = 1.0  # after DESTINATION_OUT_OF_ORDER
    max_retries: int = 5
    on_exhausted: str = "voicemail"  # "voicemail" | "hangup"
    voicemail_box: str = ""  # default: the queue's name
    moh: str = "local_stream://moh"  # "" = no music
    context: str = "ccd"
    overflow_time: float = 0.0  # seconds from queue entry to the callback offer; 0 = never
    no_agents: str = "wait"  # nobody logged in who could answer: "wait" | "voicemail"

    def __post_init__(self) -> None:
        if self.on_exhausted not in ("voicemail", "hangup"):
            raise ValueError(f"on_exhausted must be voicemail or hangup: {self.on_exhausted!r}")
        if self.no_agents not in ("wait", "voicemail"):
            raise ValueError(f"no_agents must be wait or voicemail: {self.no_agents!r}")
        if self.ring_time <= 0 or self.ring_margin < 1:
            raise ValueError("ring_time must be > 0 and ring_margin >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "required_tags": list(self.required_tags),
            "ring_time": self.ring_time,
            "ring_margin": self.ring_margin,
            "retry_delay": self.retry_delay,
            "max_retries": self.max_retries,
            "on_exhausted": self.on_exhausted,
            "voicemail_box": self.voicemail_box,
            "moh": self.moh,
            "context": self.context,
            "overflow_time": self.overflow_time,
            "no_agents": self.no_agents,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueRules:
        return cls(**{**data, "required_tags": tuple(data.get("required_tags", ()))})
