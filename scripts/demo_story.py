"""The demo's story as a newcomer reads it: the fake FreeSWITCH's trace and the daemon's JSON
log lines turned into one line per meaningful step, in switch seconds (scripts/demo.py).

Both sides are read after the fact. The trace says what the callers, the desk phones and the
customers' phones did; the daemon's log says what ccd decided. Names come from the scenario
(callers' names) and the configuration (agents, their extensions and tags); a number is shown
with the name of whoever it belongs to, however it was dialled (+36..., 06...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Desk-phone feature codes (freeswitch_conf/dialplan/ccd_agents.xml).
FEATURE_CODES = {"*21": "log in", "*22": "log out", "*23": "break", "*24": "ready"}


@dataclass(frozen=True, order=True)
class Line:
    t: float  # switch seconds since the fake started, to the tenth shown
    # Within one tenth of a second the switch's fact comes before the daemon's reaction:
    # the fake writes some trace lines just after the events the daemon reacts to.
    rank: int
    seq: int  # then each side's own order
    source: str
    text: str


def number_key(number: str) -> str:
    """The last 9 digits: +3612345607 and 0612345607 are the same customer."""
    return "".join(c for c in number if c.isdigit())[-9:]


@dataclass
class Cast:
    """Who is who: callers by call uuid and number, agents by extension, from the config,
    the scenario and the trace."""

    agents: dict[str, dict[str, Any]]  # id -> {"extension", "tags"}
    ring_time: float
    callers: dict[str, str] = field(default_factory=dict)  # uuid -> "Anna Kovacs (+36...)"
    short: dict[str, str] = field(default_factory=dict)  # uuid -> "Anna Kovacs"
    names: dict[str, str] = field(default_factory=dict)  # number_key -> "Anna Kovacs"

    def agent_at(self, ext: str) -> str:
        return next((a for a, v in self.agents.items() if v["extension"] == ext), "")

    def tags(self, agent: str) -> str:
        return ",".join(self.agents.get(agent, {}).get("tags", [])) or "no tags"

    def who(self, uuid: str) -> str:
        return self.short.get(uuid, "a caller")

    def named(self, number: str) -> str:
        """``Anna Kovacs (+3612345601)``, or the number alone when nobody in the story has it."""
        name = self.names.get(number_key(number))
        return f"{name} ({number})" if name else number

    def party(self, party: str) -> str:
        """A trace party: an agent's desk phone, or a customer."""
        return self.agent_at(party) or self.names.get(number_key(party)) or party


def trace_lines(entries: Sequence[dict[str, Any]], cast: Cast, t0: float) -> list[Line]:
    """The fake FreeSWITCH's side: callers, menus, desk phones, customers' phones."""
    out: list[Line] = []
    for e in entries:  # every customer's name first: a number may be dialled before it calls
        if e["kind"] == "call" and e.get("name"):
            cast.names[number_key(e["party"])] = e["name"]
    phones = [e for e in entries if e["kind"] == "register"]
    if phones:
        names = ", ".join(f"{e['ext']} ({cast.agent_at(e['ext'])})" for e in phones)
        out.append(Line(round(phones[0]["t"] - t0, 1), 0, 0, "switch", f"desk phones: {names}"))

    def add(e: dict[str, Any], text: str) -> None:
        out.append(Line(round(e["t"] - t0, 1), 0, len(out), "switch", text))

    for e in entries:
        kind, party = e["kind"], str(e.get("party", ""))
        if kind == "call" and e.get("context") == "ccd_agents":
            to, agent = e.get("to", ""), cast.agent_at(party)
            cast.short[e["uuid"]] = agent
            if to.startswith("*7"):
                code = to.removeprefix("*7").rstrip("#")
                add(e, f"{agent} keys {to} on the desk phone: disposition {code} of the last call")
            elif to.startswith("*"):
                add(e, f"{agent} dials {to} ({FEATURE_CODES.get(to, 'feature code')})")
            else:
                add(e, f"{agent} calls {cast.named(to)} from the desk phone")
        elif kind == "call":
            name = e.get("name") or party
            cast.short[e["uuid"]] = name
            cast.callers[e["uuid"]] = f"{name} ({party})"
            add(e, f"{name} ({party}) calls {e.get('to')}")
        elif kind == "ivr_choice":
            param = str(e.get("param", ""))
            department = param.split()[1].removeprefix("ccd_queue_") if " " in param else param
            add(e, f"{cast.who(e['uuid'])} presses {e['digits']} in the menu ({department})")
        elif kind == "answer" and e.get("leg") == "phone":
            add(e, f"{cast.agent_at(party)} picks up the phone")
        elif kind == "answer" and e.get("leg") == "outside":
            add(e, f"{cast.party(party)} answers the phone")
        elif kind == "dial_failed":
            why = {"USER_BUSY": "busy", "CALL_REJECTED": "rejected"}.get(
                e.get("cause"), "no answer"
            )
            add(e, f"{cast.named(party)}: {why}, not reached")
        elif kind == "abandon":
            add(e, f"{cast.who(e['uuid'])} gives up and hangs up")
        elif kind == "voicemail_left":
            add(e, f"{cast.who(e['uuid'])} leaves a message in voicemail box {e.get('box')}")
        elif kind == "party_hangup" and e.get("why") == "talk_done":
            add(e, f"{cast.party(party)} hangs up: conversation over")
        elif kind == "scenario_end":
            add(e, "end of the scenario")
    return out


class _Daemon:
    """Turns the daemon's log records into lines; remembers what later lines refer to."""

    def __init__(self, cast: Cast, scale: float) -> None:
        self.cast, self.scale = cast, scale
        self.offers: dict[str, int] = {}  # call -> agents rung so far
        self.direct: set[str] = set()  # calls routed by a direct-callback binding
        self.requests: dict[str, str] = {}  # callback id -> number
        self.callback_agent: dict[str, str] = {}  # callback id -> the agent rung for it
        self.refused: str = ""  # the number of the last outbound call refused (do not call)
        self.resynced = False

    def text(self, r: dict[str, Any]) -> str:
        name, cast = r.get("event", ""), self.cast
        call, agent = str(r.get("call", "")), str(r.get("agent", ""))
        who = cast.who(call)
        handler = _HANDLERS.get(name)
        if handler is not None:
            return handler(self, r, who, agent)
        if r.get("level") in ("warning", "error", "critical") and not name.startswith("esl."):
            details = ", ".join(
                f"{k}={v}"
                for k, v in r.items()
                if k not in ("event", "level", "timestamp", "wall", "logger")
            )
            return f"{r['level'].upper()} {name}: {details}"
        return ""

    # -- routing -------------------------------------------------------------------------
    def queued(self, r: dict[str, Any], who: str, _agent: str) -> str:
        return f"{who} waits in queue {r.get('queue')} (music on hold)"

    def announced(self, r: dict[str, Any], who: str, _agent: str) -> str:
        said = f"you are number {r.get('position')}"
        estimate = r.get("estimate")
        if estimate is not None:
            minutes = max(1, round(float(estimate) / 60))
            said += f", about {minutes} minute{'s' if minutes > 1 else ''}"
        return f'{who} hears (music paused, place kept): "{said}"'

    def sticky_routed(self, r: dict[str, Any], who: str, agent: str) -> str:
        self.direct.add(str(r.get("call")))
        return f"{who} was called by {agent}: past the menu, to {agent} first (direct callback)"

    def offered(self, r: dict[str, Any], who: str, agent: str) -> str:
        call = str(r.get("call"))
        n = self.offers[call] = self.offers.get(call, 0) + 1
        if call in self.direct and n == 1:
            why = "direct callback"
        elif n == 1:
            why = f"fewest tags: {self.cast.tags(agent)}"
        else:
            why = f"next, tags {self.cast.tags(agent)}"
        return f"{agent}'s phone rings for {who} ({why})"

    def no_answer(self, r: dict[str, Any], _who: str, agent: str) -> str:
        if r.get("cause") == "RING_TIMEOUT":
            return f"{agent} did not answer in {self.cast.ring_time:g} s: the next agent"
        return f"{agent}'s phone refused the call ({r.get('outcome') or r.get('cause')}): next"

    def bridged(self, _r: dict[str, Any], who: str, agent: str) -> str:
        return f"{agent} answered: {who} talks to {agent}"

    def voicemail(self, r: dict[str, Any], who: str, _agent: str) -> str:
        return f"nobody free in queue {r.get('queue')}: {who} goes to voicemail box {r.get('box')}"

    def abandoned(self, r: dict[str, Any], who: str, _agent: str) -> str:
        waited = float(r.get("waited", 0))
        return f"{who} left queue {r.get('queue')} after {waited:.0f} s: abandoned"

    def ended(self, r: dict[str, Any], who: str, agent: str) -> str:
        return f"{who}'s call with {agent} is over ({r.get('by')} hung up)"

    # -- overflow and callbacks ----------------------------------------------------------
    def overflow(self, r: dict[str, Any], who: str, _agent: str) -> str:
        waited = float(r.get("waited", 0))
        if r.get("why") == "estimate":
            return (f"{who} would wait past the overflow time (estimate after {waited:.0f} s):"
                    " offer 1 = call me back, 2 = keep waiting")  # fmt: skip
        return f"{who} has waited {waited:.0f} s: offer 1 = call me back, 2 = keep waiting"

    def declined(self, r: dict[str, Any], who: str, _agent: str) -> str:
        if r.get("reason") == "keep_waiting":
            return f"{who} pressed 2: keeps waiting, with the same place in the queue"
        return f"{who} did not take the callback offer ({r.get('reason')}): keeps waiting"

    def stored(self, r: dict[str, Any], _who: str, _agent: str) -> str:
        number = str(r.get("number"))
        self.requests[str(r.get("callback"))] = number
        who = self.cast.who(str(r.get("call_uuid", "")))
        if r.get("reason") == "abandoned":
            return f"{who} hung up after abandoned_after: callback stored for {number} (abandoned)"
        if r.get("reason") == "voicemail":
            return f"{who}'s message: callback stored for {number} (voicemail)"
        return f"{who} pressed 1: callback stored for {number}"

    def callback_offered(self, r: dict[str, Any], _who: str, agent: str) -> str:
        request = str(r.get("callback"))
        self.callback_agent[request] = agent
        number = self.requests.get(request, "a customer")
        return f"callback for {self.cast.named(number)}: {agent}'s phone rings first"

    def callback_dialing(self, r: dict[str, Any], _who: str, _agent: str) -> str:
        request = str(r.get("callback"))
        number = self.requests.get(request, "the customer")
        agent = self.callback_agent.get(request, "the agent")
        return f"{agent} is on the line: dialling {self.cast.named(number)} through the gateway"

    def callback_connected(self, r: dict[str, Any], _who: str, agent: str) -> str:
        number = self.requests.get(str(r.get("callback")), "the customer")
        return f"callback done: {self.cast.named(number)} talks to {agent}"

    # -- direct callback, dispositions, do not call --------------------------------------
    def sticky_bound(self, r: dict[str, Any], _who: str, agent: str) -> str:
        expiry = float(r.get("expiry", 0)) * self.scale  # logged in real seconds
        return (
            f"{self.cast.named(str(r.get('number')))} is bound to {agent} for {expiry:.0f} s: "
            f"a call back reaches {agent} first"
        )

    def disposition(self, r: dict[str, Any], who: str, agent: str) -> str:
        if not str(r.get("set_by", "")).startswith("agent:"):
            return ""  # the daemon's own codes (busy, abandoned, ...): not news here
        codes = ", ".join(str(c).replace("_", " ") for c in r.get("codes") or [])
        return f"{agent} files the call with {who} as: {codes}"

    def dnc(self, r: dict[str, Any], _who: str, _agent: str) -> str:
        days = float(r.get("ttl_seconds") or 0) / 86400
        number = self.cast.named(str(r.get("number")))
        return f"{number} is on the do-not-call list for {days:.0f} days ({r.get('reason')})"

    def outbound_refused(self, r: dict[str, Any], _who: str, _agent: str) -> str:
        self.refused = str(r.get("number", ""))
        return ""

    def agent_refused(self, r: dict[str, Any], _who: str, agent: str) -> str:
        if r.get("reason") == "do_not_call":
            number = self.cast.named(self.refused)
            return f"{agent}'s call to {number} refused: the number is on the do-not-call list"
        return f"{agent}'s outside call refused ({r.get('reason')})"

    # -- presence --------------------------------------------------------------------------
    def resynced(self, r: dict[str, Any], _who: str, _agent: str) -> str:
        if self.resynced:
            return ""  # later ones are the periodic reconciliation: not news
        self.resynced = True
        phones = r.get("registrations")
        return f"connected to FreeSWITCH, subscribed, resynchronised ({phones} phones registered)"

    def presence(self, r: dict[str, Any], _who: str, agent: str) -> str:
        reason = r.get("reason")
        if reason == "break":
            return f"{agent} is on break: no calls offered"
        if reason == "ready":
            return f"{agent} is ready again: calls are offered"
        if reason in ("login", "logout"):
            return f"{agent} logged {reason.removeprefix('log')}"
        if r.get("activity") == "wrapup":
            return f"{agent} in wrap-up (after-call work)"
        if reason == "wrapup_done":
            return f"{agent} is free for the next call"
        return ""


_HANDLERS: dict[str, Callable[[_Daemon, dict[str, Any], str, str], str]] = {
    "daemon.resynced": _Daemon.resynced,
    "call.queued": _Daemon.queued,
    "sticky.routed": _Daemon.sticky_routed,
    "agent.offered": _Daemon.offered,
    "agent.no_answer": _Daemon.no_answer,
    "call.bridged": _Daemon.bridged,
    "call.voicemail": _Daemon.voicemail,
    "call.abandoned": _Daemon.abandoned,
    "call.ended": _Daemon.ended,
    "call.overflow": _Daemon.overflow,
    "callback.declined_offer": _Daemon.declined,
    "callback.stored": _Daemon.stored,
    "callback.agent_offered": _Daemon.callback_offered,
    "callback.dialing": _Daemon.callback_dialing,
    "callback.connected": _Daemon.callback_connected,
    "sticky.bound": _Daemon.sticky_bound,
    "disposition.recorded": _Daemon.disposition,
    "dnc.added": _Daemon.dnc,
    "disposition.outbound_refused": _Daemon.outbound_refused,
    "agent.outbound_refused": _Daemon.agent_refused,
    "agent.state": _Daemon.presence,
    "call.announced": _Daemon.announced,
}


def daemon_lines(
    records: Iterable[dict[str, Any]], cast: Cast, scale: float
) -> list[tuple[float, str]]:
    """The daemon's side as (wall-clock epoch, text)."""
    reader = _Daemon(cast, scale)
    out = []
    for r in records:
        text = reader.text(r)
        if text:
            out.append((r["wall"], text))
    return out


def align(
    trace: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], scale: float
) -> Callable[[float], float]:
    """Wall-clock epoch -> the fake's switch epoch (see scripts/demo.py's docstring).

    switch = wall * scale + offset. Every ``call.queued`` happens just after its caller's
    first ``park`` in a queue, so each pair bounds ``offset`` from below; the largest bound
    keeps every reaction after its cause and is off by the daemon's reaction time.
    """
    # A caller's first park with a queue: later ones (the callback offer) are not entries.
    parked: dict[str, float] = {}
    for e in trace:
        if e["kind"] == "park" and e.get("queue"):
            parked.setdefault(e["uuid"], e["t"])
    bounds = [
        parked[r["call"]] - r["wall"] * scale
        for r in records
        if r.get("event") == "call.queued" and r.get("call") in parked
    ]
    if bounds:
        offset = max(bounds)
    else:  # no call reached the daemon: assume the fake's clock started at its first line
        t0 = trace[0]["t"] if trace else 0.0
        offset = t0 * (1 - scale)
    return lambda wall: wall * scale + offset


def timeline(
    trace: list[dict[str, Any]],
    records: list[dict[str, Any]],
    operator: list[tuple[float, str]],
    cast: Cast,
    scale: float,
) -> list[Line]:
    """Both sides (and the operator's commands, by wall-clock time) in one time order."""
    t0 = trace[0]["t"] if trace else 0.0
    end = next((e["t"] - t0 for e in trace if e["kind"] == "scenario_end"), float("inf"))
    lines = trace_lines(trace, cast, t0)
    to_switch = align(trace, records, scale)
    for source, rank, items in (
        ("ops", 1, operator),
        ("ccd", 2, daemon_lines(records, cast, scale)),
    ):
        for seq, (wall, text) in enumerate(items):
            t = to_switch(wall) - t0
            # Before 0: the daemon retrying the socket before the fake was up; at the end: the
            # fake going away (the half second absorbs the alignment's few milliseconds).
            if 0 <= t < end - 0.5:
                lines.append(Line(round(t, 1), rank, seq, source, text))
    return sorted(lines)


NOT_QUEUED, WAITING = "never queued by the daemon", "still waiting"


@dataclass
class Outcome:
    caller: str
    queue: str = ""
    result: str = NOT_QUEUED


def outcomes(records: list[dict[str, Any]], cast: Cast, scale: float) -> dict[str, Outcome]:
    """Per caller's uuid: where they went and how it ended, from the daemon's log."""
    result = {uuid: Outcome(label) for uuid, label in cast.callers.items()}
    queued: dict[str, float] = {}
    requests: dict[str, str] = {}  # callback id -> the caller's uuid
    for r in records:
        name = r.get("event")
        if name == "callback.stored":
            requests[str(r.get("callback"))] = str(r.get("call_uuid"))
        if name == "callback.connected":
            o = result.get(requests.get(str(r.get("callback")), ""))
            if o is not None:
                o.result += f"; called back, talked to {r.get('agent')}"
            continue
        o = result.get(str(r.get("call", "")))
        if o is None:
            continue
        waited = (r["wall"] - queued.get(r["call"], r["wall"])) * scale
        if name == "call.queued":
            queued[r["call"]], o.queue, o.result = r["wall"], str(r.get("queue")), WAITING
        elif name == "call.bridged":
            o.result = f"talked to {r.get('agent')} after waiting {waited:.0f} s"
        elif name == "call.voicemail":
            o.result = f"voicemail box {r.get('box')} after {waited:.0f} s"
        elif name == "call.abandoned":
            o.result = f"gave up after waiting {waited:.0f} s"
        elif name == "call.callback_requested":
            o.result = f"asked for a callback after waiting {waited:.0f} s"
    return result
