"""The configuration's tables: the options of each ``[queues.<name>]`` and
``[agents.<id>]``, and :func:`defaults_table`, every key of the schema with its default and
doc (``ccd config defaults``, the README).

The sections (``[esl]`` ... ``[stats]``) and the option record are in :mod:`ccd.config.schema`;
:mod:`ccd.config.loading` reads both.
"""

from __future__ import annotations

from typing import Any

from ccd.config.checks import (
    EXTENSION_RE,
    _boolean,
    _business_hours,
    _choice,
    _integer,
    _name,
    _seconds,
    _string,
    _tags,
    _timezone,
)
from ccd.config.schema import _SECTIONS, _STICKY_TYPES, _Option

__all__ = ["defaults_table"]

_QUEUE_OPTIONS: tuple[_Option, ...] = (
    _Option("tags", [], _tags, "agent tags required for this queue"),
    _Option(
        "ring_time",
        None,
        _seconds(positive=True),
        "seconds each agent rings (default: routing.ring_time)",
    ),
    _Option("voicemail", None, _name, "voicemail box when no agent answers (default: queue name)"),
    _Option(
        "on_exhausted",
        "voicemail",
        _choice("voicemail", "hangup"),
        "after the last candidate: voicemail or hangup",
    ),
    _Option(
        "no_agents",
        "wait",
        _choice("wait", "voicemail"),
        "nobody logged in who could answer: wait (for an agent or the callback offer) "
        "or voicemail at once",
    ),
    _Option("priority", 0, _integer(-1000, 1000), "higher priority queues are served first"),
    _Option("overflow_time", 30.0, _seconds(), "seconds waited before the callback offer; 0 = off"),
    _Option(
        "callback_strategy",
        "active",
        _choice("active", "passive", "customer_first"),
        "how callback requests of this queue are dialed",
    ),
    _Option(
        "business_hours",
        None,
        _business_hours,
        "callback dialing windows of this queue (default: callback.business_hours)",
    ),
    _Option("abandoned_callback", False, _boolean, "call back callers who hang up waiting"),
    _Option("abandoned_after", 20.0, _seconds(), "seconds waited before a hangup is called back"),
    _Option("voicemail_callback", False, _boolean, "call back messages left in its voicemail"),
    _Option(
        "service_level_time",
        None,
        _seconds(positive=True),
        "service level time of this queue (default: stats.service_level_time)",
    ),
    _Option(
        "timezone", None, _timezone, "zone of this queue's days (default: disposition.timezone)"
    ),
)

_AGENT_OPTIONS: tuple[_Option, ...] = (
    _Option(
        "extension",
        None,
        _string(EXTENSION_RE, "a string of 1-16 digits"),
        "the agent's desk phone extension (required, unique)",
    ),
    _Option("tags", [], _tags, "the agent's tags (skills, departments, languages...)"),
    _Option(
        "sticky_type",
        None,
        _choice(*_STICKY_TYPES),
        "this agent's direct callback type (default: sticky.default_type)",
    ),
    _Option(
        "sticky_expiry",
        None,
        _seconds(),
        "this agent's binding expiry in seconds (default: sticky.default_expiry)",
    ),
)

_TABLES = {"queues": (_QUEUE_OPTIONS, "queue"), "agents": (_AGENT_OPTIONS, "agent")}
_TOP_LEVEL = (*_SECTIONS, *_TABLES)


def defaults_table() -> list[tuple[str, Any, str]]:
    """Every key as (dotted key, default, one-line doc), in schema order."""
    rows: list[tuple[str, Any, str]] = []
    for section, (_, options) in _SECTIONS.items():
        rows.extend(
            (
                f"{section}.{o.name}",
                "(seed 001's 13 codes)" if (section, o.name) == ("disposition", "codes")
                else o.default,
                o.doc,
            )
            for o in options
        )  # fmt: skip
    for top, (options, what) in _TABLES.items():
        for o in options:
            default = o.default
            if default is None:
                default = {
                    "ring_time": "routing.ring_time",
                    "voicemail": "<queue name>",
                    "sticky_type": "sticky.default_type",
                    "sticky_expiry": "sticky.default_expiry",
                    "business_hours": "callback.business_hours",
                    "service_level_time": "stats.service_level_time",
                    "timezone": "disposition.timezone",
                }.get(o.name, "(required)")
            rows.append((f"{top}.<{what}>.{o.name}", default, o.doc))
    return rows
