"""Agents' SIP desk phones and outside parties, as the fake FreeSWITCH sees them.

Theory of operation
-------------------
A :class:`Phone` is a directory user (extension) with a scripted behaviour:
how it answers a call (``answer_after`` seconds, ``ring_forever``, ``busy`` =
486 -> USER_BUSY, ``reject`` = 603 -> CALL_REJECTED), how long it talks
(``hangup_after``, None = until the other side hangs up) and whether it is
registered. Tests change a phone at run time with ``phone.set(...)``; a change
of ``registered`` fires the registration events through the :class:`Registrar`.

:class:`Registrar` fires what mod_sofia fires (capture 13):

* register:   ``sofia::pre_register``, ``sofia::register_attempt``, ``sofia::register``;
* unregister: ``sofia::pre_register``, ``sofia::register_attempt``, ``PRESENCE_IN``
  (status Unregistered), ``sofia::unregister``;
* expire:     ``sofia::expire`` (``expires`` is an epoch time) and ``PRESENCE_IN``.

An :class:`OutsideParty` is a customer reached through a gateway (a number,
not an extension) with the same kind of behaviour script plus ``digits`` it
presses when prompted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

#: Behaviour fields a phone or outside party accepts (scenario files and set()).
BEHAVIOUR_FIELDS = (
    "answer_after",
    "ring_forever",
    "reject",
    "busy",
    "hangup_after",
    "registered",
)


class BehaviourError(ValueError):
    """A phone / party was given a behaviour that does not exist or is invalid."""


@dataclass
class Behaviour:
    """How a phone or outside party reacts to a call."""

    answer_after: float = 1.0
    ring_forever: bool = False
    reject: bool = False
    busy: bool = False
    hangup_after: float | None = None
    digits: list[str] = field(default_factory=list)

    def outcome(self) -> str:
        """``busy`` | ``reject`` | ``ring_forever`` | ``answer``."""
        if self.busy:
            return "busy"
        if self.reject:
            return "reject"
        if self.ring_forever:
            return "ring_forever"
        return "answer"

    def update(self, changes: Mapping[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise BehaviourError(f"unknown behaviour {key!r}")
            if key in ("answer_after", "hangup_after") and value is not None:
                value = float(value)
                if value < 0:
                    raise BehaviourError(f"{key} must be >= 0")
            if key in ("ring_forever", "reject", "busy") and not isinstance(value, bool):
                raise BehaviourError(f"{key} must be true or false")
            setattr(self, key, value)
        chosen = [k for k in ("ring_forever", "reject", "busy") if getattr(self, k)]
        if len(chosen) > 1:
            raise BehaviourError("choose one of ring_forever/reject/busy, got %s" % chosen)


@dataclass(eq=False)
class Phone:
    """A desk phone registered (or not) as directory user ``ext``."""

    ext: str
    domain: str
    port: int
    behaviour: Behaviour
    registered: bool = False
    agent: str | None = None
    user_agent: str = "fakephone"
    call_id: str = ""
    expires: int = 3600
    registered_at: float = 0.0
    directory: dict[str, str] = field(default_factory=dict)
    _on_registration: Callable[[Phone, bool], None] | None = None

    @property
    def contact(self) -> str:
        return f'"" <sip:{self.ext}@127.0.0.1:{self.port}>'

    @property
    def context(self) -> str:
        return self.directory.get("user_context", "default")

    @property
    def caller_id_name(self) -> str:
        return self.directory.get("effective_caller_id_name", f"Extension {self.ext}")

    @property
    def caller_id_number(self) -> str:
        return self.directory.get("effective_caller_id_number", self.ext)

    def set(self, **changes: Any) -> None:
        """Change behaviour at run time; ``registered=True/False`` (un)registers."""
        registered = changes.pop("registered", None)
        self.behaviour.update(changes)
        if registered is not None and bool(registered) != self.registered:
            if self._on_registration is None:
                self.registered = bool(registered)
            else:
                self._on_registration(self, bool(registered))


@dataclass(eq=False)
class OutsideParty:
    """A customer number reached through a gateway."""

    number: str
    behaviour: Behaviour


class Registrar:
    """Fires mod_sofia's registration events for phones."""

    def __init__(
        self, make: Callable[..., Any], fire: Callable[[Any], None], now: Callable[[], float]
    ):
        self._make = make
        self._fire = fire
        self._now = now
        #: Moves with every registration change (what ``show registrations`` caches on).
        self.version = 0

    def _base(self, phone: Phone, expires: int, *, status: str = "Registered(UDP)") -> list:
        return [
            ("profile-name", "internal"),
            ("from-user", phone.ext),
            ("from-host", phone.domain),
            ("contact", phone.contact),
            ("call-id", phone.call_id),
            ("rpid", "unknown"),
            ("status", status),
            ("expires", str(expires)),
            ("to-user", phone.ext),
            ("to-host", phone.domain),
            ("network-ip", "127.0.0.1"),
            ("network-port", str(phone.port)),
        ]

    def _custom(self, subclass: str, headers: list, line: int, func: str) -> None:
        self._fire(
            self._make(
                "CUSTOM",
                headers,
                subclass=subclass,
                calling_file="sofia_reg.c",
                calling_function=func,
                calling_line=line,
            )
        )

    def _directory(self, phone: Phone) -> list:
        d = {
            "sip_number_alias": phone.ext,
            "sip_auth_username": phone.ext,
            "sip_auth_realm": phone.domain,
            "number_alias": phone.ext,
            "user_name": phone.ext,
            "domain_name": phone.domain,
            "user_context": phone.context,
            "effective_caller_id_name": phone.caller_id_name,
            "effective_caller_id_number": phone.caller_id_number,
        }
        d.update({k: v for k, v in phone.directory.items() if k not in ("password",)})
        return list(d.items())

    def _attempts(self, phone: Phone, expires: int) -> None:
        func = "sofia_reg_handle_register_token"
        base = self._base(phone, expires)
        self._custom("sofia::pre_register", [*base, ("user-agent", phone.user_agent)], 1810, func)
        self._custom(
            "sofia::register_attempt",
            [
                *base,
                ("username", phone.ext),
                ("realm", phone.domain),
                ("user-agent", phone.user_agent),
                ("auth-result", "RENEWED"),
            ],
            1606,
            func,
        )

    def register(self, phone: Phone) -> None:
        self.version += 1
        phone.registered = True
        phone.registered_at = self._now()
        self._attempts(phone, phone.expires)
        base = self._base(phone, phone.expires)
        base.insert(3, ("presence-hosts", f"{phone.domain},{phone.domain}"))
        headers = [
            *base,
            ("username", phone.ext),
            ("realm", phone.domain),
            ("user-agent", phone.user_agent),
            *self._directory(phone),
        ]
        self._custom("sofia::register", headers, 2059, "sofia_reg_handle_register_token")

    def unregister(self, phone: Phone) -> None:
        self.version += 1
        phone.registered = False
        self._attempts(phone, 0)
        self._presence_unregistered(phone, 2103, "sofia_reg_handle_register_token")
        headers = [
            ("profile-name", "internal"),
            ("username", phone.ext),
            ("from-user", phone.ext),
            ("from-host", phone.domain),
            ("contact", phone.contact),
            ("call-id", phone.call_id),
            ("rpid", "unknown"),
            ("realm", phone.domain),
            ("network-ip", "127.0.0.1"),
            ("network-port", str(phone.port)),
            ("user-agent", phone.user_agent),
            ("expires", "0"),
            *self._directory(phone),
        ]
        self._custom("sofia::unregister", headers, 2213, "sofia_reg_handle_register_token")

    def expire(self, phone: Phone) -> None:
        self.version += 1
        phone.registered = False
        headers = [
            ("profile-name", "internal"),
            ("call-id", phone.call_id),
            ("user", phone.ext),
            ("username", phone.ext),
            ("host", phone.domain),
            ("contact", phone.contact),
            ("expires", str(int(phone.registered_at + phone.expires))),
            ("user-agent", phone.user_agent),
            ("realm", phone.domain),
            ("network-ip", "127.0.0.1"),
            ("network-port", str(phone.port)),
        ]
        self._custom("sofia::expire", headers, 726, "sofia_reg_del_callback")
        self._presence_unregistered(phone, 741, "sofia_reg_del_callback")

    def _presence_unregistered(self, phone: Phone, line: int, func: str) -> None:
        headers = [
            ("proto", "sip"),
            ("rpid", "unknown"),
            ("login", f"sip:mod_sofia@{phone.domain}:5060"),
            ("user-agent", phone.user_agent),
            ("from", f"{phone.ext}@{phone.domain}"),
            ("status", "Unregistered"),
            ("presence-source", "register"),
            ("event_type", "presence"),
        ]
        self._fire(
            self._make(
                "PRESENCE_IN",
                headers,
                calling_file="sofia_reg.c",
                calling_function=func,
                calling_line=line,
            )
        )
