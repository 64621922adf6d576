"""Configuration: documented defaults in one schema, one TOML file, secrets from the environment.

Theory of operation
-------------------
The schema below (``_SECTIONS``, ``_QUEUE_OPTIONS``, ``_AGENT_OPTIONS``) is the only place
where a key, its default and its one-line doc are written; ``defaults_table()`` prints it
(``ccd config defaults``, the README).

Layers, lowest first: schema defaults → the TOML file → environment (``CCD_ESL_PASSWORD``,
``CCD_REDIS_URL``; an empty variable counts as unset). The result is validated once into a
frozen :class:`Config`. Every problem found is collected and reported together in one
:class:`ConfigError`, each line naming the dotted key, e.g.
``queues.sales.ring_time: expected a number of seconds > 0, got "abc"``.

Durations are kept as configured, in seconds. ``daemon.time_scale`` (tests, the demo)
divides them at run time: use ``config.daemon.scale(seconds)``.

Secrets (the ESL password, a password inside the Redis URL) never appear in an error
message, a ``repr`` or ``Config.redacted()``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "AgentConfig",
    "CallbacksConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DispositionsConfig",
    "EslConfig",
    "HttpConfig",
    "LogConfig",
    "QueueConfig",
    "RedisConfig",
    "RoutingConfig",
    "StickyConfig",
    "VoicemailConfig",
    "defaults_table",
    "load_config",
    "redact_url",
]

ENV_ESL_PASSWORD = "CCD_ESL_PASSWORD"
ENV_REDIS_URL = "CCD_REDIS_URL"

#: Queue and agent names, and tags.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
EXTENSION_RE = re.compile(r"^[0-9]{1,16}$")
_CONTEXT_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\-\[\]]{1,253}$")
_MASK = "***"
#: A normalised number prefix: "+" and 1-15 digits.
_PREFIX_RE = re.compile(r"^\+[1-9][0-9]{0,14}$")


class ConfigError(Exception):
    """The configuration is wrong (the operator's mistake, not a fault of ccd).

    ``problems`` holds one line per problem, each starting with the dotted key.
    """

    def __init__(self, problems: list[str] | tuple[str, ...] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


class _Invalid(Exception):
    """One value is wrong; the message is completed with the key by the caller."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and messages)."""
    return _USERINFO_RE.sub(_mask_userinfo, url)


# scheme://userinfo@ — greedy up to the last "@" before the path, so a password holding an
# unescaped "@" is masked whole.
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s]*)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    # No colon: a lone userinfo is taken as a password by some clients; mask it all.
    shown = f"{user}:{_MASK}" if colon else _MASK
    return f"{match.group('scheme')}{shown}@"


def _show(value: object) -> str:
    """A short, safe rendering of a rejected value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


# --- value checkers: each returns the normalised value or raises _Invalid ---------------

Check = Callable[[Any], Any]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(*, positive: bool = False) -> Check:
    bound = "> 0" if positive else ">= 0"

    def check(value: Any) -> float:
        if not _is_number(value) or value < 0 or (positive and value == 0):
            raise _Invalid(f"expected a number of seconds {bound}, got {_show(value)}")
        return float(value)

    return check


def _number(*, positive: bool = True) -> Check:
    def check(value: Any) -> float:
        if not _is_number(value) or value < 0 or (positive and value == 0):
            raise _Invalid(f"expected a number {'> 0' if positive else '>= 0'}, got {_show(value)}")
        return float(value)

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"expected a whole number from {low} to {high}, got {_show(value)}")
        return value

    return check


def _choice(*choices: str) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            listed = ", ".join(f'"{c}"' for c in choices)
            raise _Invalid(f"expected one of {listed}, got {_show(value)}")
        return value

    return check


def _string(pattern: re.Pattern[str] | None = None, what: str = "a string") -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            raise _Invalid(f"expected {what}, got {_show(value)}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _string_list(pattern: re.Pattern[str], what: str) -> Check:
    """A list of strings each matching ``pattern``; kept as a tuple, order and all."""

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Invalid(f"expected a list of {what}")
        for item in value:
            if not pattern.match(item):
                raise _Invalid(f"{_show(item)} is not {what[:-1] if what.endswith('s') else what}")
        return tuple(value)

    return check


def _business_hours(value: Any) -> tuple[str, ...]:
    """Windows like "mon-fri 08:00-18:00"; ccd.core.callback owns the syntax."""
    from ccd.core.callback import parse_business_hours

    if not isinstance(value, list):
        raise _Invalid(f'expected a list like ["mon-fri 08:00-18:00"], got {_show(value)}')
    try:
        parse_business_hours(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return tuple(value)


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$", value):
        raise _Invalid(f'expected a time zone name like "Europe/Budapest", got {_show(value)}')
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid(f'unknown time zone {_show(value)} (e.g. "Europe/Budapest")') from None
    return value


def _line(value: Any) -> str:
    """A string that may go into an ESL command: no line breaks, no NUL."""
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise _Invalid(f"expected a single-line string, got {_show(value)}")
    return value


def _nonempty_line(value: Any) -> str:
    if _line(value) == "":
        raise _Invalid('expected a non-empty string, got ""')
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise _Invalid(
            "expected a name of 1-32 characters a-z 0-9 _ - starting with a letter or digit, "
            f"got {_show(value)}"
        )
    return value


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _Invalid("expected a list of strings")
    for tag in value:
        if not NAME_RE.match(tag):
            raise _Invalid(
                f"tag {_show(tag)} is not valid: tags are 1-32 lower-case characters a-z 0-9 _ -"
            )
    # Order is irrelevant and duplicates carry no meaning; a canonical form compares equal.
    return tuple(sorted(set(value)))


def _password(value: Any) -> str:
    # The value is never echoed: it is a secret even when it is wrong. It travels as the rest
    # of the line `auth <password>`, so inner spaces are fine but line breaks are not.
    if (
        not isinstance(value, str)
        or value.strip() != value
        or value == ""
        or any(c in value for c in "\r\n\0")
    ):
        raise _Invalid(
            "expected a non-empty string without line breaks or surrounding spaces (value hidden)"
        )
    return value


def _redis_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a redis:// URL, got {_show(value)}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _Invalid(f"not a valid URL ({exc}): {_show(redact_url(value))}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise _Invalid(
            f"expected a redis://, rediss:// or unix:// URL, got {_show(redact_url(value))}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise _Invalid(f"the URL has no host: {_show(redact_url(value))}")
    return value


def _webhook_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f'expected an http(s) URL or "", got {_show(value)}')
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise _Invalid(f'expected an http(s) URL or "", got {_show(redact_url(value))}')
    return value


def _codes_table(value: Any) -> Any:
    """``[dispositions.codes.<name>]`` tables; checked whole by ccd.core.disposition in _build,
    whose messages name the code's own key."""
    if not isinstance(value, Mapping) or not value:
        raise _Invalid(
            "expected one table per code, [dispositions.codes.<name>] with number and label"
        )
    return value


def _template(value: Any) -> str:
    """The caller-id template; ccd.core.screenpop owns the list of placeholders and the rules
    (plain names only: the template is applied to caller-controlled values)."""
    from ccd.core.screenpop import validate_template

    try:
        return validate_template(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


# --- the schema ---------------------------------------------------------------------------

# ccd.core.sticky.StickyType's values (config stays free of the domain modules' imports).
_STICKY_TYPES = ("disabled", "type1", "type2", "type3", "type4")


@dataclass(frozen=True)
class _Option:
    name: str
    default: Any
    check: Check
    doc: str
    secret: bool = False
    env: str | None = None


def _masked_repr(self: Any) -> str:
    parts = []
    for f in dataclasses.fields(self):
        value = getattr(self, f.name)
        if f.metadata.get("secret") == "value":
            shown = repr(_MASK)
        elif f.metadata.get("secret") == "url":
            shown = repr(redact_url(value))
        else:
            shown = repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(self).__name__}({', '.join(parts)})"


def _secret(kind: str = "value") -> Any:
    return dataclasses.field(metadata={"secret": kind})


@dataclass(frozen=True, repr=False)
class EslConfig:
    host: str
    port: int
    password: str = _secret()
    connect_timeout: float = 5.0
    command_timeout: float = 10.0
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    event_format: str = "json"

    __repr__ = _masked_repr


@dataclass(frozen=True, repr=False)
class RedisConfig:
    url: str = _secret("url")
    prefix: str = "ccd:"
    socket_timeout: float = 2.0

    __repr__ = _masked_repr


@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int


@dataclass(frozen=True)
class LogConfig:
    format: str
    level: str


@dataclass(frozen=True)
class DaemonConfig:
    node_id: str
    time_scale: float
    dialplan_context: str

    def scale(self, seconds: float) -> float:
        """A configured duration in real seconds (configured / time_scale)."""
        return seconds / self.time_scale


@dataclass(frozen=True)
class RoutingConfig:
    ring_time: float
    wrapup_time: float
    max_missed_offers: int
    moh: str
    caller_id_template: str
    webhook_url: str
    webhook_timeout: float
    originate_timeout_margin: float
    resync_interval: float


@dataclass(frozen=True)
class VoicemailConfig:
    profile: str
    domain: str
    boxes: tuple[str, ...]


@dataclass(frozen=True)
class StickyConfig:
    """Direct callback (R-STICKY, ccd.core.sticky): the default for agents without their own."""

    default_type: str
    default_expiry: float


@dataclass(frozen=True)
class CallbacksConfig:
    """Callback requests (R-OVERFLOW, R-CALLBACK; ccd.core.callback, ccd.store.callback)."""

    max_attempts: int
    min_interval: float
    agent_poll_interval: float
    max_open_per_caller: int
    offer_retries: int
    lease_time: float
    timezone: str
    business_hours: tuple[str, ...]
    country_code: str
    min_digits: int
    max_digits: int
    allowed_prefixes: tuple[str, ...]
    blocked_prefixes: tuple[str, ...]
    premium_prefixes: tuple[str, ...]
    emergency_numbers: tuple[str, ...]
    allow_international: bool
    gateway: str
    customer_ring_time: float
    caller_id: str


@dataclass(frozen=True)
class DispositionsConfig:
    """Call dispositions (R-DISPO; ccd.core.disposition, ccd.dispo_service). ``codes`` is a
    :class:`ccd.core.disposition.CodeSet` (typed Any: config stays free of domain imports)."""

    codes: Any
    dnc_days: float
    callback_delay: float
    callback_queue: str
    webhook_url: str
    webhook_timeout: float
    timezone: str
    retention_days: int
    refuse_dnc_outbound: bool


@dataclass(frozen=True)
class QueueConfig:
    name: str
    tags: tuple[str, ...]
    ring_time: float
    voicemail: str
    on_exhausted: str
    priority: int
    overflow_time: float
    callback_strategy: str
    business_hours: tuple[str, ...] | None = None  # None: callbacks.business_hours


@dataclass(frozen=True)
class AgentConfig:
    id: str
    extension: str
    tags: tuple[str, ...]
    sticky_type: str | None = None  # None: sticky.default_type
    sticky_expiry: float | None = None  # None: sticky.default_expiry


_SECTIONS: dict[str, tuple[type, tuple[_Option, ...]]] = {
    "esl": (
        EslConfig,
        (
            _Option(
                "host",
                "127.0.0.1",
                _string(_HOST_RE, "a host name or address"),
                "FreeSWITCH event socket host",
            ),
            _Option("port", 8021, _integer(1, 65535), "FreeSWITCH event socket port"),
            _Option(
                "password",
                "ClueCon",
                _password,
                f"event socket password (environment {ENV_ESL_PASSWORD} overrides)",
                secret=True,
                env=ENV_ESL_PASSWORD,
            ),
            _Option(
                "connect_timeout",
                5.0,
                _seconds(positive=True),
                "seconds to connect and authenticate",
            ),
            _Option(
                "command_timeout",
                10.0,
                _seconds(positive=True),
                "seconds to wait for any command's reply before failing it",
            ),
            _Option(
                "backoff_min",
                0.5,
                _seconds(positive=True),
                "first reconnect delay in seconds (doubles, with jitter)",
            ),
            _Option(
                "backoff_max", 30.0, _seconds(positive=True), "largest reconnect delay in seconds"
            ),
            _Option(
                "event_format",
                "json",
                _choice("plain", "json"),
                "event format: json (parses ~4x faster) or plain",
            ),
        ),
    ),
    "redis": (
        RedisConfig,
        (
            _Option(
                "url",
                "redis://127.0.0.1:6379/0",
                _redis_url,
                f"Redis URL, may hold a password (environment {ENV_REDIS_URL} overrides)",
                secret=True,
                env=ENV_REDIS_URL,
            ),
            _Option(
                "prefix",
                "ccd:",
                _string(re.compile(r"^[A-Za-z0-9_.\-]{0,32}:$"), 'a short prefix ending in ":"'),
                "prefix of every Redis key",
            ),
            _Option(
                "socket_timeout",
                2.0,
                _seconds(positive=True),
                "seconds before a Redis command is declared failed",
            ),
        ),
    ),
    "http": (
        HttpConfig,
        (
            _Option(
                "host",
                "127.0.0.1",
                _string(_HOST_RE, "a host name or address"),
                "HTTP listen address (health, metrics, JSON views)",
            ),
            _Option("port", 8086, _integer(0, 65535), "HTTP listen port; 0 picks a free port"),
        ),
    ),
    "log": (
        LogConfig,
        (
            _Option(
                "format",
                "auto",
                _choice("auto", "json", "console"),
                "auto: JSON lines unless the output is a terminal",
            ),
            _Option(
                "level",
                "info",
                _choice("debug", "info", "warning", "error", "critical"),
                "lowest level logged",
            ),
        ),
    ),
    "daemon": (
        DaemonConfig,
        (
            _Option(
                "node_id",
                "",
                _string(
                    re.compile(r"^[A-Za-z0-9_.:\-]{0,64}$"), "letters, digits, _ . : - (up to 64)"
                ),
                'this daemon\'s name in leases; "" means hostname:pid at run time',
            ),
            _Option(
                "time_scale",
                1.0,
                _number(positive=True),
                "every configured duration is divided by this (tests, demo); > 0",
            ),
            _Option(
                "dialplan_context",
                "ccd",
                _string(_CONTEXT_RE, "a dialplan context name"),
                "dialplan context for transfers",
            ),
        ),
    ),
    "routing": (
        RoutingConfig,
        (
            _Option(
                "ring_time",
                15.0,
                _seconds(positive=True),
                "seconds an agent's phone rings before the next agent is tried",
            ),
            _Option("wrapup_time", 10.0, _seconds(), "seconds of wrap-up after each call"),
            _Option(
                "max_missed_offers",
                0,
                _integer(0, 1000),
                "missed offers in a row before an agent is put on break; 0 = off",
            ),
            _Option(
                "moh", "local_stream://moh", _nonempty_line, "music on hold for waiting callers"
            ),
            _Option(
                "caller_id_template",
                "{direct}{vip}{name}",
                _template,
                "caller-id name shown on the agent's phone (screen pop)",
            ),
            _Option("webhook_url", "", _webhook_url, 'CRM webhook URL; "" = off'),
            _Option("webhook_timeout", 2.0, _seconds(positive=True), "seconds per webhook request"),
            _Option(
                "originate_timeout_margin",
                2.0,
                _seconds(),
                "seconds added to originate_timeout above the daemon's own ring timer",
            ),
            _Option(
                "resync_interval",
                60.0,
                _seconds(positive=True),
                "seconds between full resynchronisations with FreeSWITCH",
            ),
        ),
    ),
    "voicemail": (
        VoicemailConfig,
        (
            _Option(
                "profile",
                "default",
                _string(_CONTEXT_RE, "a voicemail profile name"),
                "mod_voicemail profile",
            ),
            _Option(
                "domain",
                "",
                _string(re.compile(r"^[A-Za-z0-9_.\-]{0,253}$"), "a domain name"),
                'voicemail domain; "" = the call\'s domain_name at run time',
            ),
            _Option(
                "boxes",
                [],
                _tags,
                "known voicemail boxes; when set, every queue's voicemail must be one of them",
            ),
        ),
    ),
    "sticky": (
        StickyConfig,
        (
            _Option(
                "default_type",
                "disabled",
                _choice(*_STICKY_TYPES),
                "direct callback type of agents without their own: disabled, type1..type4",
            ),
            _Option(
                "default_expiry",
                86400.0,
                _seconds(),
                "seconds a direct-callback binding lasts; 0 = disabled",
            ),
        ),
    ),
    "callbacks": (
        CallbacksConfig,
        (
            _Option(
                "max_attempts",
                3,
                _integer(1, 100),
                "dial attempts of a callback request before it is kept as unreached",
            ),
            _Option(
                "min_interval",
                600.0,
                _seconds(),
                "seconds between two attempts of one callback request",
            ),
            _Option(
                "agent_poll_interval",
                60.0,
                _seconds(positive=True),
                "active strategy: seconds between rounds of ringing a free agent",
            ),
            _Option(
                "max_open_per_caller",
                2,
                _integer(1, 1000),
                "open callback requests one number (calling or to call) may have",
            ),
            _Option(
                "offer_retries",
                2,
                _integer(0, 10),
                "re-prompts of the callback offer after no key or a wrong key",
            ),
            _Option(
                "lease_time",
                30.0,
                _seconds(positive=True),
                "seconds a daemon's claim on a request lasts unless renewed",
            ),
            _Option(
                "gateway",
                "ccd_trunk",
                _string(_CONTEXT_RE, "a gateway name"),
                "FreeSWITCH gateway that dials customers (sofia/gateway/<gateway>/<number>)",
            ),
            _Option(
                "customer_ring_time",
                30.0,
                _seconds(positive=True),
                "seconds a customer's phone rings on a callback before it counts as no answer",
            ),
            _Option(
                "caller_id",
                "+15550100",
                _string(re.compile(r"^\+?[0-9]{3,15}$"), "a phone number"),
                "caller-id number customers see on a callback",
            ),
            _Option(
                "timezone",
                "Europe/Budapest",
                _timezone,
                "time zone of the business hours (IANA name)",
            ),
            _Option(
                "business_hours",
                ["mon-fri 08:00-18:00"],
                _business_hours,
                'local windows when callbacks are dialed, e.g. "mon-fri 08:00-18:00"; [] = always',
            ),
            _Option(
                "country_code",
                "36",
                _string(re.compile(r"^[1-9][0-9]{0,2}$"), "a country code of 1-3 digits"),
                "country of numbers written without + (06... is national)",
            ),
            _Option(
                "min_digits",
                10,
                _integer(1, 15),
                "fewest digits of a callback number, country code included",
            ),
            _Option(
                "max_digits",
                15,
                _integer(1, 15),
                "most digits of a callback number, country code included",
            ),
            _Option(
                "allowed_prefixes",
                [],
                _string_list(_PREFIX_RE, "prefixes like +3630"),
                "numbers starting so are accepted even if international, premium or blocked",
            ),
            _Option(
                "blocked_prefixes",
                [],
                _string_list(_PREFIX_RE, "prefixes like +3651"),
                "numbers starting so are refused as callback numbers",
            ),
            _Option(
                "premium_prefixes",
                ["+3690", "+3691"],
                _string_list(_PREFIX_RE, "prefixes like +3690"),
                "premium-rate prefixes, refused as callback numbers",
            ),
            _Option(
                "emergency_numbers",
                ["112", "104", "105", "107", "911", "999", "110", "118", "119", "000"],
                _string_list(re.compile(r"^[0-9]{2,6}$"), "short codes of 2-6 digits"),
                "emergency numbers, refused as callback numbers (also after the country code)",
            ),
            _Option(
                "allow_international",
                False,
                _boolean,
                "accept callback numbers of other countries",
            ),
        ),
    ),
}

_SECTIONS["dispositions"] = (
    DispositionsConfig,
    (
        _Option(
            "codes",
            None,
            _codes_table,
            "codes agents key after *7: [dispositions.codes.<name>] number (2 digits), label, "
            "actions (dnc, callback, webhook, final), dnc_days?, callback_delay?",
        ),
        _Option(
            "dnc_days",
            180.0,
            _number(),
            "days a number stays on the do-not-call list after a dnc code (and ccd dnc add)",
        ),
        _Option(
            "callback_delay",
            86400.0,
            _seconds(),
            "seconds after a callback code (needs follow-up) before the callback is due",
        ),
        _Option(
            "callback_queue",
            "",
            _string(re.compile(r"^$|^[a-z0-9][a-z0-9_\-]{0,31}$"), 'a queue name or ""'),
            'queue of follow-up callbacks of calls that had none (agents\' own calls); "" = none',
        ),
        _Option(
            "webhook_url",
            "",
            _webhook_url,
            'URL the dispositions of webhook codes are POSTed to as JSON; "" = off',
        ),
        _Option(
            "webhook_timeout",
            2.0,
            _seconds(positive=True),
            "seconds per disposition webhook request (retried, never blocks calls)",
        ),
        _Option(
            "timezone",
            "Europe/Budapest",
            _timezone,
            "time zone of the report days (IANA name)",
        ),
        _Option(
            "retention_days",
            400,
            _integer(1, 36600),
            "days a day's dispositions and report counters are kept",
        ),
        _Option(
            "refuse_dnc_outbound",
            True,
            _boolean,
            "refuse (with a prompt) agents' own calls to numbers on the do-not-call list",
        ),
    ),
)

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
    _Option("priority", 0, _integer(-1000, 1000), "higher priority queues are served first"),
    _Option(
        "overflow_time",
        30.0,
        _seconds(),
        "seconds of waiting before the callback offer; 0 = off",
    ),
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
        "callback dialing windows of this queue (default: callbacks.business_hours)",
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


@dataclass(frozen=True)
class Config:
    esl: EslConfig
    redis: RedisConfig
    http: HttpConfig
    log: LogConfig
    daemon: DaemonConfig
    routing: RoutingConfig
    voicemail: VoicemailConfig
    sticky: StickyConfig
    callbacks: CallbacksConfig
    dispositions: DispositionsConfig
    queues: Mapping[str, QueueConfig]
    agents: Mapping[str, AgentConfig]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
        """Validate a parsed TOML document (plus environment overrides) into a Config."""
        return _build(data, os.environ if env is None else env)

    def redacted(self) -> dict[str, Any]:
        """Plain dict of the whole configuration with secrets masked (for logs, `ccd config`)."""
        out: dict[str, Any] = {}
        for section in _SECTIONS:
            obj = getattr(self, section)
            values: dict[str, Any] = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                kind = f.metadata.get("secret")
                if kind == "value":
                    value = _MASK
                elif kind == "url":
                    value = redact_url(value)
                if section == "dispositions" and f.name == "codes":
                    value = {c.name: {k: v for k, v in c.to_dict().items() if k != "name"}
                             for c in value}  # fmt: skip
                values[f.name] = list(value) if isinstance(value, tuple) else value
            out[section] = values
        out["queues"] = {
            name: {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(q).items()
                if k != "name"
            }
            for name, q in self.queues.items()
        }
        out["agents"] = {
            aid: {
                "extension": a.extension,
                "tags": list(a.tags),
                "sticky_type": a.sticky_type,
                "sticky_expiry": a.sticky_expiry,
            }
            for aid, a in self.agents.items()
        }
        return out


def _unknown(key_path: str, name: str, known: tuple[str, ...] | list[str], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"{key_path}: unknown {what}{hint}"


def _read_options(
    path: str, table: Mapping[str, Any], options: tuple[_Option, ...], problems: list[str]
) -> dict[str, Any]:
    """Checked values of one table; unknown keys and bad values become problems."""
    known = [o.name for o in options]
    for key in table:
        if key not in known:
            problems.append(_unknown(f"{path}.{key}", key, known, "key"))
    values: dict[str, Any] = {}
    for option in options:
        raw = table.get(option.name, option.default)
        if raw is None:
            values[option.name] = None
            continue
        try:
            values[option.name] = option.check(raw)
        except _Invalid as exc:
            values[option.name] = None
            problems.append(f"{path}.{option.name}: {exc}")
    return values


def _build(data: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ConfigError("configuration: expected a table at the top level")
    for key in data:
        if key not in _TOP_LEVEL:
            problems.append(_unknown(key, key, _TOP_LEVEL, "section"))

    sections: dict[str, dict[str, Any]] = {}
    for section, (_, options) in _SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, Mapping):
            problems.append(f"{section}: expected a table, got {_show(table)}")
            table = {}
        table = dict(table)
        for option in options:
            if option.env and env.get(option.env):
                table[option.name] = env[option.env]
        sections[section] = _read_options(section, table, options, problems)

    esl = sections["esl"]
    if esl["backoff_min"] and esl["backoff_max"] and esl["backoff_min"] > esl["backoff_max"]:
        problems.append(
            f"esl.backoff_max: must be >= esl.backoff_min ({esl['backoff_min']:g}), "
            f"got {esl['backoff_max']:g}"
        )

    callbacks = sections["callbacks"]
    if (
        callbacks["min_digits"]
        and callbacks["max_digits"]
        and callbacks["min_digits"] > callbacks["max_digits"]
    ):
        problems.append(
            f"callbacks.max_digits: must be >= callbacks.min_digits ({callbacks['min_digits']}), "
            f"got {callbacks['max_digits']}"
        )

    dispositions = sections["dispositions"]
    dispositions_table = data.get("dispositions")
    dispositions["codes"] = _code_set(
        dispositions["codes"],
        isinstance(dispositions_table, Mapping) and "codes" in dispositions_table,
        problems,
    )

    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for top, (options, what) in _TABLES.items():
        tables[top] = {}
        group = data.get(top, {})
        if not isinstance(group, Mapping):
            problems.append(f"{top}: expected a table of {what}s, got {_show(group)}")
            continue
        for name, table in group.items():
            path = f"{top}.{name}"
            try:
                _name(name)
            except _Invalid as exc:
                problems.append(f"{path}: bad {what} name: {exc}")
                continue
            if not isinstance(table, Mapping):
                problems.append(f"{path}: expected a table, got {_show(table)}")
                continue
            tables[top][name] = _read_options(path, table, options, problems)

    routing = sections["routing"]
    boxes = sections["voicemail"]["boxes"] or ()
    queues: dict[str, QueueConfig] = {}
    for name, values in tables["queues"].items():
        if values["ring_time"] is None and "ring_time" not in data["queues"][name]:
            values["ring_time"] = routing["ring_time"]
        if values["voicemail"] is None and "voicemail" not in data["queues"][name]:
            values["voicemail"] = name
        if boxes and values["voicemail"] and values["voicemail"] not in boxes:
            problems.append(
                _unknown(
                    f"queues.{name}.voicemail",
                    values["voicemail"],
                    list(boxes),
                    "voicemail box (not in voicemail.boxes)",
                )
                + f': "{values["voicemail"]}"'
            )
        queues[name] = values  # type: ignore[assignment]

    callback_queue = dispositions["callback_queue"]
    if callback_queue and callback_queue not in queues:
        problems.append(
            _unknown("dispositions.callback_queue", callback_queue, list(queues), "queue")
            + f': "{callback_queue}"'
        )

    agents: dict[str, AgentConfig] = {}
    owner_of_extension: dict[str, str] = {}
    for agent_id, values in tables["agents"].items():
        extension = values["extension"]
        if extension is None:
            if "extension" not in data["agents"][agent_id]:
                problems.append(f"agents.{agent_id}.extension: required")
            continue
        if extension in owner_of_extension:
            other = owner_of_extension[extension]
            problems.append(
                f"agents.{agent_id}.extension: {extension} is already the extension of "
                f"agents.{other}"
            )
        owner_of_extension[extension] = agent_id
        agents[agent_id] = values  # type: ignore[assignment]

    if problems:
        raise ConfigError(problems)

    def make(cls: type, values: Mapping[str, Any], **extra: Any) -> Any:
        return cls(**extra, **values)

    return Config(
        **{s: make(cls, sections[s]) for s, (cls, _) in _SECTIONS.items()},
        queues=MappingProxyType(
            {n: make(QueueConfig, v, name=n) for n, v in sorted(queues.items())}
        ),
        agents=MappingProxyType({a: make(AgentConfig, v, id=a) for a, v in sorted(agents.items())}),
    )


def _code_set(table: Any, configured: bool, problems: list[str]) -> Any:
    """The configured codes as a CodeSet (ccd.core.disposition owns the rules), else defaults."""
    from ccd.core.disposition import DEFAULT_CODES, CodeSet

    if table is None:
        return None if configured else DEFAULT_CODES  # None: its problem is already listed
    try:
        return CodeSet.from_mapping(table)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        if not message.startswith("dispositions.codes."):
            message = f"dispositions.codes: {message}"
        problems.append(message)
        return None


def load_config(path: Path | str | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the TOML file at ``path`` (None: defaults and environment only)."""
    env = os.environ if env is None else env
    if path is None:
        return Config.from_dict({}, env=env)
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line N, column M)" and never the offending text.
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return Config.from_dict(data, env=env)


def defaults_table() -> list[tuple[str, Any, str]]:
    """Every key as (dotted key, default, one-line doc), in schema order."""
    rows: list[tuple[str, Any, str]] = []
    for section, (_, options) in _SECTIONS.items():
        rows.extend(
            (
                f"{section}.{o.name}",
                "(seed 001's 13 codes)" if (section, o.name) == ("dispositions", "codes")
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
                    "business_hours": "callbacks.business_hours",
                }.get(o.name, "(required)")
            rows.append((f"{top}.<{what}>.{o.name}", default, o.doc))
    return rows
