"""What the hunt works with: its phases, and what one input yields (:class:`Step`).

The engine reads a :class:`Step` and carries it out; see :mod:`ccd.core.hunt`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ccd.core.commands import Command, Fact


class Phase(StrEnum):
    """Where a hunt is::

    NEW --start--> WAITING --on_matched--> RINGING --answer--> ANSWERED --parked--> BRIDGING
    WAITING   --on_waiting: everyone who could answer was tried--> DONE (on_exhausted)
    RINGING   --no answer/busy/rejected--> WAITING (agent tried, match again)
    RINGING   --ring deadline: leg killed--> CANCELLING --the leg's hangup--> WAITING
    RINGING   --DESTINATION_OUT_OF_ORDER--> RETRY --retry_at--> WAITING (match again)
    ANSWERED/BRIDGING --agent leg gone before the bridge--> WAITING (agent tried)
    BRIDGING  --on_bridged--> BRIDGED --either side hangs up--> DONE
    RINGING/ANSWERED/BRIDGING --resync: the leg parked--> BRIDGING, bridged--> BRIDGED
    WAITING/RINGING/RETRY --overflow time--> OFFERING --kept waiting--> WAITING
    WAITING   --announce deadline: position read--> WAITING (announced) or OFFERING (beyond)
    OFFERING  --request stored--> DONE
    any       --caller hangs up--> DONE (ringing leg killed, agent released)
    """

    NEW = "new"
    WAITING = "waiting"  # no agent: asking routing, or in the waiting list
    RINGING = "ringing"
    ANSWERED = "answered"  # the agent answered; bridged once the leg is parked
    RETRY = "retry"
    CANCELLING = "cancelling"  # the ring deadline passed: waiting for the killed leg's end
    OFFERING = "offering"  # overflow: the caller is in the callback offer / number capture
    BRIDGING = "bridging"
    BRIDGED = "bridged"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Release:
    """The offer to ``agent_id`` is over: tell presence ``outcome``; ``tried``: not offered
    this call again."""

    agent_id: str
    outcome: str
    leg_uuid: str | None = None
    tried: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """What the engine must do after feeding the hunt one input.

    Commands are sent in order, releases written, facts logged. ``match``: ask routing for an
    agent for this call (answered by :meth:`Hunt.on_matched` or :meth:`Hunt.on_waiting`).
    ``unlist``: take the call out of its waiting list (it is in the callback offer).
    ``announce``: read the caller's position and the queue's load for a position announcement
    (answered by :meth:`Hunt.on_announce`).
    """

    commands: tuple[Command, ...] = ()
    facts: tuple[Fact, ...] = ()
    releases: tuple[Release, ...] = ()
    match: bool = False
    unlist: bool = False
    announce: bool = False


EMPTY = Step()
#: Phases in which the caller still waits for an agent, so the overflow clock runs.
OVERFLOW_PHASES = frozenset({Phase.WAITING, Phase.RINGING, Phase.RETRY, Phase.CANCELLING})
#: Phases with an agent's leg on its way.
OFFER_PHASES = frozenset({Phase.RINGING, Phase.ANSWERED, Phase.BRIDGING})


@dataclass
class Acc:
    """Collects one step's output while a handler runs."""

    commands: list[Command] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    match: bool = False
    unlist: bool = False
    announce: bool = False

    def step(self) -> Step:
        return Step(
            tuple(self.commands),
            tuple(self.facts),
            tuple(self.releases),
            self.match,
            self.unlist,
            self.announce,
        )
