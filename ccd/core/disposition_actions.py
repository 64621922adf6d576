"""What disposition codes ask for (R-DISPO), planned: pure, the engine runs the plan.

:func:`plan_actions`, per new code: ``dnc`` → :class:`AddToDnc` for ``dnc_days``; ``callback``
→ :class:`ScheduleCallback` after ``callback_delay`` seconds; ``webhook`` → :class:`PostWebhook`
(only when a URL is configured); ``final`` → :class:`MarkFinal` (no further automatic dialing
of the number). A call that carries any ``final`` or ``dnc`` code never gets a callback
planned: "do not contact" beats "needs follow-up". Actions that need the customer's number are
skipped (:class:`Skipped`, for the log) when the call has none (``anonymous``).
:mod:`ccd.engine.disposition_actions` carries them out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ccd.core.disposition import (
    DEFAULT_CALLBACK_DELAY,
    DEFAULT_DNC_DAYS,
    CodeSet,
    Disposition,
    positive_number,
)

__all__ = [
    "Action",
    "AddToDnc",
    "DispositionSettings",
    "MarkFinal",
    "PostWebhook",
    "ScheduleCallback",
    "Skipped",
    "plan_actions",
]


@dataclass(frozen=True, slots=True)
class DispositionSettings:
    """``disposition.*`` configuration the actions need; seconds, days as configured."""

    dnc_days: float = DEFAULT_DNC_DAYS
    callback_delay: float = DEFAULT_CALLBACK_DELAY
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        positive_number("dnc_days", self.dnc_days)
        if not (isinstance(self.callback_delay, int | float) and self.callback_delay >= 0):
            raise ValueError(f"callback_delay must be >= 0, got {self.callback_delay!r}")


@dataclass(frozen=True, slots=True)
class AddToDnc:
    """Put ``number`` on the do-not-call list for ``ttl_seconds`` (ccd.store.dnc.DncList.add)."""

    number: str
    ttl_seconds: float
    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class ScheduleCallback:
    """Ask the callback machinery to call ``number`` back after ``delay`` seconds."""

    number: str
    delay: float
    queue: str | None
    reason: str
    call_uuid: str
    agent: str | None


@dataclass(frozen=True, slots=True)
class PostWebhook:
    """POST ``payload`` as JSON to ``url`` (ccd.adapters.webhook: never blocks the caller)."""

    url: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MarkFinal:
    """No further automatic dialing of ``number`` (pending callbacks cancelled)."""

    number: str
    reason: str
    call_uuid: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """An action a code asks for that cannot be done; logged (``disposition.action_skipped``)."""

    action: str
    code: str
    why: str


Action = AddToDnc | ScheduleCallback | PostWebhook | MarkFinal | Skipped


def plan_actions(
    disposition: Disposition,
    codes: CodeSet,
    settings: DispositionSettings = DispositionSettings(),
    *,
    new: Iterable[str] | None = None,
    all_codes: Iterable[str] | None = None,
) -> list[Action]:
    """The actions of the codes in ``new`` (default: every code of ``disposition``).

    ``all_codes``: every code the call carries now (default: the disposition's), so a
    ``final``/``dnc`` code set earlier still stops a callback asked for now. One webhook per
    disposition at most, carrying all its codes. Order: dnc, final, callback, webhook.
    """
    active = list(disposition.codes if new is None else (c for c in disposition.codes if c in new))
    carried = set(disposition.codes if all_codes is None else all_codes) | set(active)
    stopping = any(
        code is not None and ("final" in code.actions or "dnc" in code.actions)
        for code in map(codes.by_name, carried)
    )
    number = disposition.number
    dnc: list[Action] = []
    final: list[Action] = []
    callbacks: list[Action] = []
    hooks = False
    skipped: list[Action] = []
    for name in active:
        code = codes.by_name(name)
        if code is None:
            skipped.append(Skipped("*", name, "not a configured code"))
            continue
        for action in code.actions:
            if action == "webhook":
                if settings.webhook_url:
                    hooks = True
                else:
                    skipped.append(Skipped(action, name, "no webhook url configured"))
                continue
            if number is None:
                skipped.append(Skipped(action, name, "the call has no usable number"))
                continue
            if action == "dnc":
                days = code.dnc_days if code.dnc_days is not None else settings.dnc_days
                dnc.append(AddToDnc(number, days * 86400.0, code.label, disposition.set_by))
            elif action == "final":
                if not any(isinstance(a, MarkFinal) for a in final):
                    final.append(MarkFinal(number, name, disposition.call_uuid))
            elif action == "callback":
                if stopping:
                    skipped.append(Skipped(action, name, "the call carries a final or dnc code"))
                    continue
                delay = (
                    code.callback_delay
                    if code.callback_delay is not None
                    else settings.callback_delay
                )
                callbacks.append(
                    ScheduleCallback(
                        number,
                        delay,
                        disposition.queue,
                        name,
                        disposition.call_uuid,
                        disposition.agent,
                    )
                )
    # Two codes asking for the list: the longest period wins; one callback per disposition.
    longest = sorted(dnc, key=lambda a: a.ttl_seconds, reverse=True)[:1]  # type: ignore[union-attr]
    planned: list[Action] = [*longest, *final, *callbacks[:1]]
    if hooks and settings.webhook_url:
        payload = {
            "event": "disposition",
            **disposition.to_dict(),
            "new_codes": active,
            "labels": {name: codes.label(name) for name in disposition.codes},
        }
        planned.append(PostWebhook(settings.webhook_url, payload))
    return planned + skipped
