"""A reload: which settings of a new configuration apply at run time, which need a restart.

:func:`plan_reload` compares the running :class:`Config` with a candidate read from the same
file and returns the configuration to run with: the candidate, except the settings that
cannot change under a running daemon (:data:`RESTART_ONLY`), which keep their running values
and are listed, each with one line, in ``restart_needed``. ``changes`` says in a few lines
what the reload changes (for the log, ``ccd reload`` and ``systemctl status``). Secret values
are never shown, only that they changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ccd.config.loading import Config

__all__ = ["RESTART_ONLY", "ReloadPlan", "plan_reload"]

#: Settings a running daemon keeps until it is restarted: the connections it holds, its
#: listening port, its identity and clock, its log output, and the webhook senders it started.
#: A section name stands for all of its keys.
RESTART_ONLY: tuple[str, ...] = (
    "esl",
    "redis",
    "http",
    "feed",
    "log",
    "daemon.node_id",
    "daemon.time_scale",
    "daemon.inbox_limit",
    "routing.webhook_url",
    "routing.webhook_timeout",
    "disposition.webhook_url",
    "disposition.webhook_timeout",
)
_SECRET_KEYS = frozenset({"esl.password", "redis.url", "http.token"})


@dataclass(frozen=True)
class ReloadPlan:
    config: Config  # what to run with from now on
    restart_needed: tuple[str, ...]  # one line per setting kept at its running value
    changes: tuple[str, ...]  # what the reload changes, in short lines


def plan_reload(running: Config, candidate: Config) -> ReloadPlan:
    restart_needed: list[str] = []
    config = candidate
    for entry in RESTART_ONLY:
        section, _, key = entry.partition(".")
        old, new = getattr(running, section), getattr(candidate, section)
        keys = [key] if key else [f.name for f in dataclasses.fields(old)]
        kept = {}
        for name in keys:
            if getattr(old, name) != getattr(new, name):
                kept[name] = getattr(old, name)
                restart_needed.append(_restart_line(f"{section}.{name}", old, new, name))
        if kept:
            config = dataclasses.replace(
                config, **{section: dataclasses.replace(getattr(config, section), **kept)}
            )
    return ReloadPlan(config, tuple(restart_needed), tuple(_changes(running, config)))


def _restart_line(key: str, old: object, new: object, name: str) -> str:
    if key in _SECRET_KEYS:
        return f"{key}: changed; needs a restart (the running value stays; values hidden)"
    return f"{key}: {getattr(new, name)!r} needs a restart; running with {getattr(old, name)!r}"


def _changes(old: Config, new: Config) -> list[str]:
    lines: list[str] = []
    for what, before, after in (("queues", old.queues, new.queues),
                                ("agents", old.agents, new.agents)):  # fmt: skip
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(n for n in set(before) & set(after) if before[n] != after[n])
        for verb, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                lines.append(f"{what} {verb}: {', '.join(names)}")
    for section in ("routing", "voicemail", "sticky", "callback", "disposition", "stats", "daemon"):
        before, after = getattr(old, section), getattr(new, section)
        for f in dataclasses.fields(before):
            if getattr(before, f.name) != getattr(after, f.name):
                shown = "(changed)" if f.name == "codes" else repr(getattr(after, f.name))
                lines.append(f"{section}.{f.name}: {shown}")
    return lines
