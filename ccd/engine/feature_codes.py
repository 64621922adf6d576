"""Feature codes dialled on desk phones, and the check before an agent's own outside call.

The dialplan (``ccd_agents.xml``) parks the phone's call with ``ccd_action``: ``*21`` login,
``*22`` logout, ``*23`` break, ``*24`` ready, ``*25`` next callback (passive strategy),
``*7 NN #`` a disposition code, and ``outbound_check`` before an agent dials a customer (the
do-not-call list, R-DISPO). The phone hears two rising beeps for done, one low tone for
refused; an outside call is transferred on to be dialled, or to the refusal prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from ccd.core import events as ev
from ccd.core import presence
from ccd.engine.disposition import DispositionService
from ccd.engine.io import CallIo
from ccd.store.agent import Agent

log = structlog.get_logger()

#: Feature-code answers: two rising beeps = done, one low tone = refused.
TONE_OK = "tone_stream://%(120,60,880);%(180,0,1320)"
TONE_REFUSED = "tone_stream://%(600,0,330)"


class FeatureCodes:
    def __init__(
        self,
        *,
        io: CallIo,
        next_callback: Callable[[Agent, str, float], None],
        disposition: DispositionService | None = None,
    ) -> None:
        self.io = io
        self.next_callback = next_callback
        self.disposition = disposition

    def on_feature_code(self, e: ev.FeatureCode, now: float) -> None:
        if not self.io.lease(f"chan.{e.uuid}"):
            return
        agent = self.io.agent_for(e.extension)
        if e.action == "outbound_check":
            return self._outbound_check(e, agent)
        ok = False
        if agent is None:
            log.warning(
                "agent.feature_code_refused",
                extension=e.extension,
                action=e.action,
                reason="unknown_extension",
            )
        elif e.action == "next_callback":
            self.next_callback(agent, e.uuid, now)
            return None
        elif e.action == "dispo" and self.disposition is not None:
            ok, said = self.disposition.agent_code(agent.id, e.digits, None, now)
            event = "agent.disposition" if ok else "agent.feature_code_refused"
            log.info(event, agent=agent.id, action=e.action, result=said)
        elif e.action in ("login", "logout", "break", "ready"):
            try:
                self.io.presence(agent.id, lambda s: presence.set_login(s, e.action, now), now)
                ok = True
            except presence.IllegalTransition as exc:
                log.info(
                    "agent.feature_code_refused", agent=agent.id, action=e.action, reason=str(exc)
                )
        else:
            log.info(
                "agent.feature_code_refused",
                agent=agent.id,
                action=e.action,
                reason="not_supported",
            )
        if ok:
            log.info("agent.feature_code", agent=agent.id if agent else None, action=e.action)
        self.io.execute(e.uuid, "playback", TONE_OK if ok else TONE_REFUSED)
        self.io.execute(e.uuid, "hangup", "NORMAL_CLEARING")

    def _outbound_check(self, e: ev.FeatureCode, agent: Agent | None) -> None:
        """An agent's outside call waits parked for the do-not-call check (R-DISPO)."""
        allowed = bool(e.dialed) and (
            self.disposition is None or self.disposition.outbound_allowed(e.dialed)
        )
        agent_id = agent.id if agent else None
        if allowed and ev.fell_through(e):
            # The dialplan dialled the number already (it fails open): a transfer now would
            # dial the customer a second time. A refused number is still cut off below.
            log.warning(
                "agent.outbound_late",
                agent=agent_id,
                extension=e.extension,
                waited=round(e.waited, 3),
            )
            return
        if not allowed:
            reason = "do_not_call" if e.dialed else "bad_number"
            log.info("agent.outbound_refused", agent=agent_id, extension=e.extension, reason=reason)
        target = "ccd_outbound_go" if allowed else "ccd_outbound_refused"
        self.io.execute(e.uuid, "transfer", f"{target} XML ccd_agents")
