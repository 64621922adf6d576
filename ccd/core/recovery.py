"""No call lost, caller side (issue 13, seed 003): the pure rules. No Redis, no clock.

Theory of operation
-------------------
Two kinds of caller leave the queue without talking to anyone and without asking for a
callback, yet expect to hear from the center:

* an **abandoned** caller hung up after waiting at least the queue's ``abandoned_after``
  seconds, before an agent answered (:func:`abandoned_candidate`, fed by the hunt's
  ``call.abandoned`` fact);
* a **voicemail** caller left a message in the queue's voicemail box
  (:func:`voicemail_candidate`, fed by mod_voicemail's ``vm::maintenance`` /
  ``leave-message`` event).

Each becomes a callback request marked with its :class:`~ccd.core.callback.Reason`, if the
queue has it switched on (:class:`RecoveryPolicy`) and the caller's own number passes the
callback number rules (:func:`ccd.core.callback.check_number`): a withheld, anonymous or
refused number leaves nothing to dial, so nothing is stored. Two further facts need Redis
and are settled afterwards (:func:`settle`): a number on the do-not-call list is never
stored, and neither is a second request for a number that has an open one already (the
store's per-caller cap of one backs this up atomically against a race).

An abandoned request stands only while the caller stays away: when the same number enters a
queue again, or is bridged to an agent, its pending ``abandoned`` requests are closed
(:func:`to_close`) with the reason why. A request already being dialed (``working``) is left
to its dialer, whose outcome decides it.

Every answer is a :class:`Decision`: the number to store, or the stable reason why not (the
engine logs it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from ccd.core.callback import (
    CallbackRequest,
    NumberRefused,
    NumberRules,
    Reason,
    Status,
    check_number,
)

__all__ = [
    "AGENT_PHASES",
    "Decision",
    "RecoveryPolicy",
    "abandoned_candidate",
    "close",
    "own_number",
    "request_id",
    "settle",
    "to_close",
    "voicemail_candidate",
]

#: Hunt phases (ccd.core.hunt_step.Phase values) in which an agent had answered the caller.
AGENT_PHASES = frozenset({"answered", "bridging", "bridged"})
#: Prefixes of the requests' ids: one request per call (abandoned) or message (voicemail),
#: so a decision taken twice (two daemons, a resumed call) stores one request.
_ID_PREFIX = {Reason.ABANDONED: "ab-", Reason.VOICEMAIL: "vm-"}


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """One queue's settings (``queues.<q>.abandoned_callback``, ``abandoned_after``,
    ``voicemail_callback``)."""

    abandoned: bool = False
    abandoned_after: float = 20.0
    voicemail: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """``number`` (normalised) to store a request for, or ``why`` not (``""`` when stored).

    Reasons: ``off`` (the queue does not want it), ``short_wait``, ``agent_reached``,
    ``no_number`` (withheld or anonymous), ``refused:<check_number reason>``,
    ``do_not_call``, ``open_request`` (the number has an open request already)."""

    number: str | None
    why: str = ""

    @property
    def store(self) -> bool:
        return self.number is not None and not self.why


def own_number(raw: str | None, rules: NumberRules) -> Decision:
    """The caller's own number as a callback number (normalised), or why it is none."""
    text = (raw or "").strip()
    # FreeSWITCH shows a withheld caller id as "anonymous" or "0000000000", or nothing.
    if not text or not any(ch.isdigit() for ch in text) or set(text) <= {"0"}:
        return Decision(None, "no_number")
    try:
        return Decision(check_number(text, rules))
    except NumberRefused as refused:
        return Decision(None, f"refused:{refused.reason}")


def abandoned_candidate(
    policy: RecoveryPolicy,
    *,
    phase: str,
    waited: float,
    caller_number: str | None,
    rules: NumberRules,
) -> Decision:
    """Whether a caller who hung up in hunt ``phase`` after ``waited`` seconds in the queue
    should be called back (before the do-not-call list and open requests: :func:`settle`)."""
    if not policy.abandoned:
        return Decision(None, "off")
    if phase in AGENT_PHASES:
        return Decision(None, "agent_reached")
    if waited < policy.abandoned_after:
        return Decision(None, "short_wait")
    return own_number(caller_number, rules)


def voicemail_candidate(
    policy: RecoveryPolicy, *, caller_number: str | None, rules: NumberRules
) -> Decision:
    """Whether a message left in the queue's voicemail should be called back (before
    :func:`settle`)."""
    if not policy.voicemail:
        return Decision(None, "off")
    return own_number(caller_number, rules)


def settle(candidate: Decision, *, do_not_call: bool, open_requests: int) -> Decision:
    """The final decision once Redis told whether the number is on the do-not-call list and
    how many open requests it has."""
    if not candidate.store:
        return candidate
    if do_not_call:
        return Decision(None, "do_not_call")
    if open_requests > 0:
        return Decision(None, "open_request")
    return candidate


def request_id(reason: Reason, source: str) -> str:
    """The request's id for one call uuid (abandoned) or one message uuid (voicemail)."""
    ident = "".join(ch for ch in source if ch.isalnum() or ch in "-_")[:60]
    return _ID_PREFIX[reason] + ident


def to_close(requests: Iterable[CallbackRequest], number: str) -> list[CallbackRequest]:
    """The requests to close because ``number`` came back (entered a queue, or was bridged
    to an agent): its pending abandoned ones."""
    return [
        r
        for r in requests
        if r.reason is Reason.ABANDONED and r.status is Status.PENDING and r.number == number
    ]


def close(request: CallbackRequest, why: str) -> CallbackRequest:
    """``request`` closed without dialing (cancelled, ``closed_reason`` = ``why``)."""
    if request.status is not Status.PENDING:
        return request  # changed meanwhile (taken by a dialer, closed): left as it is
    return dataclasses.replace(request, status=Status.CANCELLED, next_due_at=None,
                               closed_reason=why)  # fmt: skip
