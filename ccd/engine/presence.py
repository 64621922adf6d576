"""Agents' presence from their phones: registrations, calls outside the queue, wrap-up ends.

Queue calls change an agent's presence in :mod:`ccd.engine.hunting`; everything else the
desk phone does is followed here: a phone registering or not, a personal call starting or
ending (the agent is busy meanwhile), and the end of an agent's own call to a customer
(marked ``ccd_outbound`` by the dialplan), which feeds sticky bindings (R-STICKY) and
dispositions (R-DISPO).
"""

from __future__ import annotations

import structlog

from ccd.core import events as ev
from ccd.core import presence
from ccd.core.sticky import AgentAttempt
from ccd.engine.disposition import DispositionService
from ccd.engine.io import CallIo
from ccd.store.agent import Agent

log = structlog.get_logger()


class AgentPresence:
    def __init__(self, *, io: CallIo, disposition: DispositionService | None = None) -> None:
        self.io = io
        self.disposition = disposition

    def on_registered(self, e: ev.PhoneRegistered, now: float) -> None:
        agent = self.io.agent_for(e.extension)
        if agent is not None and not agent.state.registered:
            self.io.presence(agent.id, lambda s: presence.set_registered(s, True, now), now)

    def on_unregistered(self, e: ev.PhoneUnregistered, now: float) -> None:
        agent = self.io.agent_for(e.extension)
        if agent is not None and agent.state.registered:
            self.io.presence(agent.id, lambda s: presence.set_registered(s, False, now), now)

    def on_created(self, e: ev.ChannelCreated, now: float) -> None:
        if e.variables.get("ccd_call"):
            return  # our own offer leg; presence already knows it
        agent = self.io.agent_for(e.extension)
        if agent is not None:
            self.io.presence(agent.id, lambda s: presence.personal_call(s, e.uuid, now), now)

    def on_hangup(self, e: ev.ChannelHangup, now: float) -> None:
        """A call on an agent's phone that was no queue call ended."""
        agent = self.io.agent_for(e.extension)
        if agent is not None:
            self.io.presence(
                agent.id, lambda s: presence.call_ended(s, e.uuid, now, self.io.rules), now
            )
            if e.variables.get("ccd_outbound") == "true":
                self._outside_call_ended(agent, e, now)

    def _outside_call_ended(self, agent: Agent, e: ev.ChannelHangup, now: float) -> None:
        """An agent's own call to a customer ended (marked by the dialplan, ccd_agents.xml).

        The agent's leg ends NORMAL_CLEARING either way (DESIGN.md wire facts): whether the
        customer answered is in originate_disposition, else in the talk time (billsec)."""
        number = e.variables.get("ccd_dialed", "")
        if not number:
            return
        disposition = e.variables.get("originate_disposition", "")
        try:
            billsec = int(e.variables.get("billsec", "0") or 0)
        except ValueError:
            billsec = 0
        answered = disposition == "SUCCESS" or (not disposition and billsec > 0)
        log.info("agent.outside_call", agent=agent.id, answered=answered, billsec=billsec)
        self.io.sticky_event(AgentAttempt(number, agent.id, answered, now), now)
        if self.disposition is not None:
            self.disposition.outside_call_finished(
                agent.id, number, answered, billsec, now, call_uuid=e.uuid,
                cause=disposition or None,
            )  # fmt: skip
