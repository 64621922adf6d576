"""Resync: after every (re)connect, and periodically, reconcile with what FreeSWITCH has live.

The daemon reads ``show channels as json`` and the registrations into a
:class:`LiveSnapshot`. Agents' registrations and calls are reconciled with it (a call that
ended while nobody listened frees its agent); every live call record in Redis whose lease is
free is resumed (a crashed daemon's calls are taken over once their leases expire); and a
channel parked while no daemon listened, a caller or a desk phone's feature code, is adopted
as if its event had just come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ccd.adapters.esl_connection import EslError
from ccd.core import events as ev
from ccd.core import presence
from ccd.core.commands import is_uuid
from ccd.core.hunt import Hunt, Phase, Step
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.store.agent import AgentRepository
from ccd.store.call import CallRepository
from ccd.store.routing import Routing

log = structlog.get_logger()


@dataclass(slots=True)
class LiveSnapshot:
    """What FreeSWITCH said was live at the last resync."""

    channels: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, str]] = field(default_factory=list)
    at: float = 0.0


class Resync:
    def __init__(
        self,
        *,
        io: CallIo,
        agents: AgentRepository,
        calls: CallRepository,
        hunting: Hunting,
        on_parked: Callable[[ev.CallParked, float], None],
        on_feature_code: Callable[[ev.FeatureCode, float], None],
    ) -> None:
        self.io = io
        self.agents = agents
        self.calls = calls
        self.hunting = hunting
        self.on_parked = on_parked
        self.on_feature_code = on_feature_code

    def on_resync(self, snapshot: LiveSnapshot, now: float) -> None:
        """Registrations, agents' live channels, orphaned hunts, channels left parked."""
        registered = {str(r.get("reg_user", "")) for r in snapshot.registrations}
        live = {str(row.get("uuid", "")) for row in snapshot.channels}
        per_ext: dict[str, list[str]] = {}
        for row in snapshot.channels:
            ext = ev.extension_of_channel_name(str(row.get("name", "")))
            if ext:
                per_ext.setdefault(ext, []).append(str(row.get("uuid", "")))
        for agent in self.agents.all():
            if agent.state.registered != (agent.extension in registered):
                self.io.presence(
                    agent.id,
                    lambda s, a=agent: presence.set_registered(s, a.extension in registered, now),
                )
            self.io.presence(
                agent.id,
                lambda s, a=agent: presence.reconcile(
                    s, per_ext.get(a.extension, []), now, self.io.rules
                ),
            )
        for call_uuid in self.calls.live():
            self._resume(call_uuid, live, now)
        for row in snapshot.channels:
            if row.get("application") == "park" and str(row.get("uuid")) not in self.hunting.hunts:
                self._adopt_parked(row, now)

    def _adopt_parked(self, row: dict[str, Any], now: float) -> None:
        """A channel parked while no daemon listened (down, or FreeSWITCH reconnecting):
        a caller waiting for a queue, or a desk phone waiting for a feature code's answer.
        Its variables tell which; without this it would wait for the dialplan's timeouts."""
        uuid = str(row.get("uuid", ""))
        if not is_uuid(uuid) or self.calls.get(uuid) is not None:
            return
        if self._getvar(uuid, "ccd_call"):
            return  # one of our offer legs; its hunt (if any) was resumed from Redis
        queue, action = self._getvar(uuid, "ccd_queue"), self._getvar(uuid, "ccd_action")
        if action:
            ext = self._getvar(uuid, "ccd_agent_ext")
            decoded: Any = ev.FeatureCode(
                uuid,
                ext,
                action,
                self._getvar(uuid, "ccd_digits"),
                self._getvar(uuid, "ccd_dialed"),
            )
            handler = self.on_feature_code
        elif queue:
            decoded = ev.CallParked(
                uuid=uuid,
                caller_number=str(row.get("cid_num", "")),
                caller_name=str(row.get("cid_name", "")),
                destination=str(row.get("dest", "")),
                queue=queue,
                tags=ev.parse_tags(self._getvar(uuid, "ccd_tags")),
            )
            handler = self.on_parked
        else:
            return
        log.info("call.adopted", call=uuid, queue=queue or None, action=action or None)
        handler(decoded, now)

    def _getvar(self, uuid: str, name: str) -> str:
        """A channel variable, "" when unset (FreeSWITCH answers ``_undef_``) or unknown."""
        try:
            value = self.io.esl.api(f"uuid_getvar {uuid} {name}").strip()
        except EslError:
            return ""
        return "" if value == "_undef_" else value

    def _resume_offer(self, hunt: Hunt) -> None:
        """The record says waiting, but routing may have reserved an agent and the ring
        begun (a ring is not saved: the offer routing keeps tells): it goes on."""
        offer = self.calls.offer(hunt.call_uuid)
        if not offer:
            return
        agent = self.agents.get(str(offer.get("agent", "")))
        leg = str(offer.get("leg", ""))
        if agent is None or agent.call != hunt.call_uuid or agent.state.offer_leg != leg:
            return
        at = float(offer.get("at") or 0.0)
        hunt.on_offer_resumed(agent.id, agent.extension, leg, str(offer.get("job", "")), at)
        self.hunting.adopt(hunt, self.hunting.records[hunt.call_uuid])

    def _resume(self, call_uuid: str, live: set[str], now: float) -> None:
        hunt = self.hunting.hunts.get(call_uuid)
        if hunt is None:
            if not self.io.routing.one(Routing.lease(call_uuid), now):
                return
            record = self.calls.get(call_uuid)
            if record is None or not record.hunt:
                return
            try:
                hunt = Hunt.from_dict(record.hunt)
            except (KeyError, ValueError) as exc:
                log.error("call.resume_failed", call=call_uuid, error=str(exc))
                return
            record.node = self.io.node_id
            self.hunting.adopt(hunt, record)
            if hunt.done:
                self.hunting.drive(hunt, Step(), now)
                return
            if hunt.waiting:
                self._resume_offer(hunt)
            log.info("call.resumed", call=call_uuid, queue=record.queue, phase=str(hunt.phase))
            if hunt.phase is Phase.OFFERING and call_uuid in live:
                # The caller's answer to a callback prompt may have come while no daemon
                # followed the call: rather than leave them parked in silence, they wait
                # in the queue again (music, same place); the offer is not made twice.
                self.hunting.drive(hunt, hunt.on_offer_declined(now, "resumed"), now)
                return
        self.hunting.drive(hunt, hunt.on_resync(live, now), now)
