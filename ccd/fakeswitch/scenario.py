"""TOML scenarios for the fake FreeSWITCH: phones, outside parties and callers.

Example::

    duration = 120            # optional: stop after this many switch seconds
    [[phones]]
    ext = "1001"
    agent = "alice"           # optional, only for the trace
    answer_after = 2
    hangup_after = 20         # talk seconds; omit = talks until the other side hangs up
    # ring_forever / reject / busy = true, registered = false

    [[outside]]
    number = "0612345678"
    answer_after = 3
    digits = ["1"]

    [[calls]]                 # a desk phone dialling (feature code, outside number)
    at = 5
    phone = "1002"            # the phone's extension: dials through its user_context
    to = "*23"

    [[calls]]
    at = 0                    # switch seconds after the start
    from = "+3612345678"
    name = "Doe, John"
    to = "5000"               # default 5000, context default "ccd"
    digits = ["1"]            # one entry per prompt ("" = press nothing)
    patience = 60
    hangup_after = 30

:func:`load_scenario` validates the file and raises :class:`ScenarioError`
with one clear line; :func:`run_scenario` places everything at its time and
returns when every call is over (or at ``duration``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent

from ccd.fakeswitch.phones import Behaviour, BehaviourError

_PHONE_KEYS = {
    "ext",
    "agent",
    "answer_after",
    "ring_forever",
    "reject",
    "busy",
    "hangup_after",
    "registered",
}
_OUTSIDE_KEYS = {
    "number",
    "answer_after",
    "ring_forever",
    "reject",
    "busy",
    "hangup_after",
    "digits",
}
_CALL_KEYS = {"at", "from", "phone", "name", "to", "context", "digits", "patience", "hangup_after"}


class ScenarioError(ValueError):
    """The scenario file is unusable; the message says where and why."""


@dataclass
class Scenario:
    phones: list[dict[str, Any]] = field(default_factory=list)
    outside: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    duration: float | None = None


def _check(items: Any, section: str, keys: set[str], required: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise ScenarioError(f"[[{section}]] must be an array of tables")
    for i, item in enumerate(items):
        where = f"{section}[{i}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: must be a table")
        unknown = set(item) - keys
        if unknown:
            raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(item.get(required), str) or not item[required]:
            raise ScenarioError(f"{where}: '{required}' must be a non-empty string")
        behaviour = {k: v for k, v in item.items() if k in Behaviour.__dataclass_fields__}
        try:
            Behaviour().update(behaviour)
        except (BehaviourError, TypeError, ValueError) as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        for key in ("at", "patience"):
            if key in item and (not isinstance(item[key], int | float) or item[key] < 0):
                raise ScenarioError(f"{where}: '{key}' must be a number >= 0")
        if "digits" in item and not (
            isinstance(item["digits"], list) and all(isinstance(d, str) for d in item["digits"])
        ):
            raise ScenarioError(f"{where}: 'digits' must be a list of strings")
    return items


def _desk_phone_calls(calls: Any) -> Any:
    """A call with ``phone`` is made by that desk phone: it is its own ``from``."""
    if not isinstance(calls, list):
        return calls
    out = []
    for call in calls:
        if isinstance(call, dict) and "phone" in call:
            if not isinstance(call["phone"], str) or not call["phone"].isdigit():
                raise ScenarioError("calls: 'phone' must be a desk phone's extension (digits)")
            if "to" not in call:
                raise ScenarioError(f"calls: the call from phone {call['phone']} needs 'to'")
            call = {"from": call["phone"], **call}
        out.append(call)
    return out


def parse_scenario(data: dict[str, Any]) -> Scenario:
    unknown = set(data) - {"phones", "outside", "calls", "duration"}
    if unknown:
        raise ScenarioError(f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    duration = data.get("duration")
    if duration is not None and (not isinstance(duration, int | float) or duration <= 0):
        raise ScenarioError("'duration' must be a number > 0")
    return Scenario(
        phones=_check(data.get("phones", []), "phones", _PHONE_KEYS, "ext"),
        outside=_check(data.get("outside", []), "outside", _OUTSIDE_KEYS, "number"),
        calls=_check(_desk_phone_calls(data.get("calls", [])), "calls", _CALL_KEYS, "from"),
        duration=duration,
    )


def load_scenario(path: str | Path) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: bad TOML ({exc})") from None
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def run_scenario(switch: Any, scenario: Scenario, *, poll: float = 0.01) -> None:
    """Set up phones/outside parties, place calls at their times, wait for the end."""
    for p in scenario.phones:
        switch.add_phone(p["ext"], **{k: v for k, v in p.items() if k != "ext"})
    for o in scenario.outside:
        switch.add_outside(o["number"], **{k: v for k, v in o.items() if k != "number"})
    start = switch.clock.now()
    pending = sorted(scenario.calls, key=lambda c: c.get("at", 0))
    placed = []

    def place(call: dict[str, Any]) -> None:
        if "phone" in call:
            placed.append(
                switch.phone_call(
                    call["phone"],
                    call["to"],
                    hangup_after=call.get("hangup_after"),
                    digits=call.get("digits", []),
                )
            )
            return
        placed.append(
            switch.place_call(
                call["from"],
                call.get("name", ""),
                call.get("to", "5000"),
                call.get("context", "ccd"),
                call.get("digits", []),
                call.get("patience"),
                call.get("hangup_after"),
            )
        )

    for call in pending:
        switch.spawn_later(call.get("at", 0), place, call)
    while True:
        elapsed = switch.clock.now() - start
        if scenario.duration is not None and elapsed >= scenario.duration:
            break
        if (
            scenario.duration is None
            and len(placed) == len(pending)
            and not any(u in switch.channels for u in placed if u)
        ):
            break
        gevent.sleep(poll)
    switch.trace.record("scenario_end", calls=len(placed))
