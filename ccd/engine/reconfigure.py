"""A configuration reload applied to the running engine, between two events.

The dispatcher calls :meth:`Reconfigure.apply` (through ``CallControl.reconfigure``) with the
configuration to run with (already checked, restart-only settings already kept: see
:mod:`ccd.config.reload`). Nothing is dropped or restarted:

* the one :class:`~ccd.config.live.LiveConfig` every part reads through now holds the new
  configuration: queues, ring times, codes, business hours... apply at each part's next
  decision;
* what parts derived from the configuration when they were built is derived again: presence
  rules (wrap-up), callback number rules, disposition codes and actions, sticky settings;
* the calls this daemon is hunting keep their place, priority, tags and the offer ringing
  now; their queue's ring time, overflow time, voicemail and music apply from their next
  offer (a call whose queue was removed keeps the rules it had);
* agents added to the file are created, a configured extension that changed is applied, and
  an agent whose tags changed IN THE FILE gets the file's tags (tags changed at run time with
  ``ccd agent tags`` stay while the file says the same as before); agents removed from the
  file stay in Redis (``ccd agent remove``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from ccd.config import Config
from ccd.config.live import LiveConfig
from ccd.core import presence
from ccd.engine.entry import Entry
from ccd.engine.hunting import Hunting
from ccd.engine.io import CallIo
from ccd.store.agent import AgentError, AgentRepository
from ccd.store.redis_store import RedisUnavailable

log = structlog.get_logger()

__all__ = ["Reconfigure"]


class Reconfigure:
    def __init__(
        self,
        *,
        config: LiveConfig,
        io: CallIo,
        entry: Entry,
        hunting: Hunting,
        agents: AgentRepository,
        derived: list[Any],
    ) -> None:
        self.config = config
        self.io = io
        self.entry = entry
        self.hunting = hunting
        self.agents = agents
        #: Parts with an ``apply_config(config)`` that derive values from the configuration.
        self.derived = derived

    def apply(self, config: Config, now: float) -> list[str]:
        """Run with ``config`` from now on; returns what was done, in short lines."""
        old = self.config.swap(config)
        routing = config.routing
        self.io.rules = presence.PresenceRules(
            wrapup_time=routing.wrapup_time, max_missed_offers=routing.max_missed_offers
        )
        for part in self.derived:
            if part is not None:
                part.apply_config(self.config)
        done = [f"calls updated: {n}" for n in [self._hunts(config)] if n]
        try:
            done += self._agents(old, config, now)
        except RedisUnavailable as exc:  # the next resync seeds them (ccd.engine.control)
            log.warning("config.agents_not_synced", error=str(exc))
            done.append("agents: not synced yet (Redis unavailable), at the next resync")
        return done

    def _hunts(self, config: Config) -> int:
        """The calls this daemon hunts take their queue's new rules for their next offer."""
        updated = kept = 0
        for hunt in list(self.hunting.hunts.values()):
            name = hunt.rules.name
            if name not in config.queues:
                kept += 1
                continue
            fresh = self.entry.queue_rules(name, ())
            rules = dataclasses.replace(
                fresh,
                required_tags=hunt.rules.required_tags,  # the call's own (channel, customer)
                retry_delay=hunt.rules.retry_delay,
                max_retries=hunt.rules.max_retries,
            )
            if rules == hunt.rules:
                continue
            hunt.rules = rules
            record = self.hunting.records.get(hunt.call_uuid)
            if record is not None:
                self.hunting.save(record, hunt)  # in the reload's unit of work
            updated += 1
        if kept:
            log.warning("config.queue_removed_with_calls", calls=kept)
        return updated

    def _agents(self, old: Config, new: Config, now: float) -> list[str]:
        added, retagged = [], []
        for agent_id, agent in new.agents.items():
            before = old.agents.get(agent_id)
            try:
                if before is None or before.extension != agent.extension:
                    if self.agents.get(agent_id) is None:
                        added.append(agent_id)
                    self.agents.ensure(agent_id, agent.extension, agent.tags, now)
                if before is not None and before.tags != agent.tags:
                    self.agents.set_tags(agent_id, agent.tags)
                    retagged.append(agent_id)
            except AgentError as exc:
                log.error("agent.config_conflict", agent=agent_id, error=str(exc))
        for agent_id in (*added, *retagged):
            # New agents or tags may take waiting calls now (routing checks they are free).
            agent = self.agents.cached(agent_id)
            if agent is not None:
                self.hunting.agent_free(agent, now)
        lines = []
        if added:
            lines.append(f"agents created: {', '.join(added)}")
        if retagged:
            lines.append(f"agent tags set from the file: {', '.join(retagged)}")
        return lines
