"""Configuration: documented defaults in one schema, one TOML file, secrets from the environment.

Theory of operation
-------------------
The schema below (``_SECTIONS``) and its tables (``_QUEUE_OPTIONS``, ``_AGENT_OPTIONS`` in
:mod:`ccd.config.schema_tables`) are the only place where a key, its default and its one-line
doc are written; ``defaults_table()`` there prints it (``ccd config defaults``, the README).

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

import re
from dataclasses import dataclass
from typing import Any

from ccd.config import sections
from ccd.config.checks import (
    _CONTEXT_RE,
    _HOST_RE,
    _PREFIX_RE,
    Check,
    _boolean,
    _business_hours,
    _choice,
    _codes_table,
    _integer,
    _nonempty_line,
    _number,
    _password,
    _redis_url,
    _seconds,
    _string,
    _string_list,
    _tags,
    _template,
    _timezone,
    _token,
    _webhook_url,
    _windows,
)
from ccd.core.sticky import StickyType

ENV_ESL_PASSWORD = "CCD_ESL_PASSWORD"
ENV_REDIS_URL = "CCD_REDIS_URL"
ENV_HTTP_TOKEN = "CCD_HTTP_TOKEN"


# --- the schema ---------------------------------------------------------------------------

_STICKY_TYPES = tuple(str(t) for t in StickyType)


@dataclass(frozen=True)
class _Option:
    name: str
    default: Any
    check: Check
    doc: str
    secret: bool = False
    env: str | None = None


_SECTIONS: dict[str, tuple[type, tuple[_Option, ...]]] = {
    "esl": (
        sections.EslConfig,
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
        sections.RedisConfig,
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
        sections.HttpConfig,
        (
            _Option(
                "host",
                "127.0.0.1",
                _string(_HOST_RE, "a host name or address"),
                "HTTP listen address (health, metrics, JSON views)",
            ),
            _Option("port", 8086, _integer(0, 65535), "HTTP listen port; 0 picks a free port"),
            _Option(
                "token",
                "",
                _token,
                f"bearer token of the endpoints with customer data or changes (environment "
                f'{ENV_HTTP_TOKEN} overrides); "" = those endpoints answer 403',
                secret=True,
                env=ENV_HTTP_TOKEN,
            ),
            _Option(
                "max_connections",
                256,
                _integer(1, 65536),
                "open HTTP connections at most; past it the longest-idle one is closed",
            ),
            _Option(
                "read_timeout",
                5.0,
                _seconds(positive=True),
                "seconds a client may take to send a request (idle connections are closed)",
            ),
        ),
    ),
    "log": (
        sections.LogConfig,
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
        sections.DaemonConfig,
        (
            _Option(
                "node_id",
                "",
                _string(
                    re.compile(r"^[A-Za-z0-9_.:\-]{0,64}$"), "letters, digits, _ . : - (up to 64)"
                ),
                'this daemon\'s name in leases and heartbeats; "" means the host name',
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
            _Option(
                "inbox_limit",
                50_000,
                _integer(100, 1_000_000),
                "events waiting for the dispatcher at most in each lane (urgent: work already "
                "started; the others: new callers...); then the event socket waits",
            ),
        ),
    ),
    "routing": (
        sections.RoutingConfig,
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
        sections.VoicemailConfig,
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
        sections.StickyConfig,
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
    "callback": (
        sections.CallbackConfig,
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
                "max_open_per_queue",
                2000,
                _integer(1, 1_000_000),
                "open callback requests one queue may have (callers past it keep waiting)",
            ),
            _Option(
                "max_open_total",
                20000,
                _integer(1, 10_000_000),
                "open callback requests in all, every queue together",
            ),
            _Option(
                "max_open_anonymous",
                50,
                _integer(0, 1_000_000),
                "open requests per queue from callers without a usable number (typed numbers)",
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

_SECTIONS["disposition"] = (
    sections.DispositionConfig,
    (
        _Option(
            "codes",
            None,
            _codes_table,
            "codes agents key after *7: [disposition.codes.<name>] number (2 digits), label, "
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
        _Option("timezone", "Europe/Budapest", _timezone, "report days' time zone (IANA name)"),
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

_SECTIONS["stats"] = (
    sections.StatsConfig,
    (
        _Option(
            "service_level_time",
            20.0,
            _seconds(positive=True),
            "service level: calls answered within this many seconds (per queue: queues.<q>)",
        ),
        _Option(
            "short_abandon_time",
            5.0,
            _seconds(),
            "callers hanging up sooner are short abandons, counted apart; 0 = none",
        ),
        _Option("windows", [15, 60], _windows, "sliding windows of the statistics, in minutes"),
    ),
)

_SECTIONS["feed"] = (
    sections.FeedConfig,
    (
        _Option(
            "max_len",
            100_000,
            _integer(0, 100_000_000),
            "events kept in the shared Redis stream of GET /events (about: MAXLEN ~); 0 = no feed",
        ),
        _Option(
            "max_clients",
            32,
            _integer(0, 4096),
            "GET /events clients at most, counted apart from http.max_connections",
        ),
        _Option(
            "keepalive",
            15.0,
            _seconds(positive=True),
            "seconds between keep-alive comments on a quiet /events stream",
        ),
    ),
)
