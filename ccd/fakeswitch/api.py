"""The fake switch's API commands (``api <cmd> <args>`` / ``bgapi``).

Theory of operation
-------------------
:class:`ApiRegistry` maps command names to handlers ``handler(args) -> body``.
FreeSWITCH splits an api line at the first space into command and argument;
the registry does the same for the error text and the API / BACKGROUND_JOB
event headers, but a registered *name* may also hold several words
(``"sofia status profile internal reg"``, ``"show channels"``): the longest
registered name that is a word-prefix of the line wins, and its handler gets
the remainder. That lets the call model own ``show channels`` and the
registration list while this module owns ``sofia status`` and ``status``.

Exact FreeSWITCH 1.10.12 texts (capture 02):

* unknown command: ``-ERR <cmd> Command not found!\\n``;
* ``version``, ``status``, ``sofia status``, ``sofia status profile internal``,
  ``sofia status profile <other>`` -> ``Invalid Profile!\\n``,
  ``global_getvar domain`` -> ``127.0.0.1`` (no newline).

An empty body is returned as is; the ESL server turns it into FreeSWITCH's
``-ERR no reply\\n`` for ``api``. A handler that raises is a bug in the fake:
it is logged and answered with ``-ERR <cmd> internal error\\n`` so a test sees
it instead of a hung socket.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields

import structlog

__all__ = [
    "FS_VERSION",
    "ApiRegistry",
    "ApiResult",
    "SofiaRegistration",
    "SwitchStats",
    "format_sofia_registrations",
    "register_static_commands",
]

log = structlog.get_logger()

FS_VERSION = (
    "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"
    " (git a88d069 2024-08-02 21:02:27Z 64bit)"
)
_FS_VERSION_SHORT = "1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit"
_RULE = "=" * 97

ApiHandler = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class ApiResult:
    """One executed api line. ``args`` is None when the line had no space."""

    command: str
    args: str | None
    found: bool
    body: str


class ApiRegistry:
    """Command name -> handler; see the module docstring for name matching."""

    def __init__(self) -> None:
        self._handlers: dict[str, ApiHandler] = {}
        self._most_words = 0
        self._last: tuple[str, tuple[ApiHandler | None, str]] | None = None

    def register(self, name: str, handler: Callable[[str], str]) -> None:
        """Add or replace ``name`` (one or more space-separated words)."""
        key = " ".join(name.split())
        if not key:
            raise ValueError("empty api command name")
        self._handlers[key] = handler
        self._most_words = max(self._most_words, len(key.split(" ")))
        self._last = None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: str) -> bool:
        return " ".join(name.split()) in self._handlers

    def exists(self, line: str) -> bool:
        """Whether ``line`` names a registered command (FreeSWITCH fires API events only then)."""
        return self._resolve(line)[0] is not None

    def execute(self, line: str) -> ApiResult:
        """Run one api line and say whether the command exists."""
        command, sep, rest = line.partition(" ")
        args = rest if sep else None
        handler, handler_args = self._resolve(line)
        if handler is None:
            return ApiResult(command, args, False, f"-ERR {command} Command not found!\n")
        try:
            body = handler(handler_args)
        except Exception:
            log.exception("fakeswitch.api.handler_failed", command=command)
            body = f"-ERR {command} internal error\n"
        return ApiResult(command, args, True, body)

    def run(self, line: str) -> str:
        """The body FreeSWITCH would answer for ``api <line>``."""
        return self.execute(line).body

    def _resolve(self, line: str) -> tuple[ApiHandler | None, str]:
        # exists() then execute() ask for the same line: the last answer is kept.
        last = self._last
        if last is not None and last[0] == line:
            return last[1]
        found = self._find(line)
        self._last = (line, found)
        return found

    def _find(self, line: str) -> tuple[ApiHandler | None, str]:
        # Try every cut at a space, longest first: the longest registered
        # word-prefix wins and its handler gets the rest of the line verbatim.
        # A prefix of more words than the longest name cannot match, so the cuts
        # are gathered only while the prefix has few enough words.
        cuts: list[tuple[int, str]] = []
        most = self._most_words
        cut = line.find(" ")
        while True:
            end = len(line) if cut < 0 else cut
            words = line[:end].split()
            if len(words) > most:
                break
            cuts.append((end, " ".join(words)))
            if cut < 0:
                break
            cut = line.find(" ", cut + 1)
        for end, key in reversed(cuts):
            handler = self._handlers.get(key) if key else None
            if handler is not None:
                return handler, line[end + 1 :]
        return None, ""


@dataclass(frozen=True, slots=True)
class SwitchStats:
    """Counters the call model reports for ``status`` and ``sofia status``."""

    sessions_since_startup: int = 0
    sessions: int = 0
    sessions_peak: int = 0
    sessions_peak_5min: int = 0
    sps: int = 0
    sps_peak: int = 0
    sps_peak_5min: int = 0
    sps_max: int = 30
    sessions_max: int = 1000
    internal_in_use: int = 0
    external_in_use: int = 0
    calls_in: int = 0
    failed_calls_in: int = 0
    calls_out: int = 0
    failed_calls_out: int = 0
    registrations: int = 0

    @classmethod
    def coerce(cls, value: SwitchStats | Mapping[str, int]) -> SwitchStats:
        if isinstance(value, SwitchStats):
            return value
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in value.items() if k in known})


@dataclass(frozen=True, slots=True)
class SofiaRegistration:
    """One row of ``sofia status profile internal reg``."""

    user: str  # "1000@127.0.0.1"
    contact: str  # '"" <sip:1000@127.0.0.1:5070>'
    call_id: str = ""
    agent: str = "fakephone"
    status: str = "Registered(UDP)(unknown)"
    expires_local: str = ""  # "2026-11-22 21:58:27"
    expires_in: int = 3600
    host: str = "fakeswitch"
    ip: str = "127.0.0.1"
    port: int = 5060
    auth_user: str = ""
    auth_realm: str = "127.0.0.1"


def format_sofia_registrations(rows: Iterable[SofiaRegistration]) -> str:
    """The body of ``sofia status profile internal reg`` as FreeSWITCH prints it."""
    out = ["\nRegistrations:\n", _RULE, "\n"]
    count = 0
    for r in rows:
        count += 1
        user_part = r.user.split("@", 1)[0]
        call_id = r.call_id or f"{uuidlib.uuid5(uuidlib.NAMESPACE_URL, r.user)}@{r.ip}"
        out.append(
            f"Call-ID:    \t{call_id}\nUser:       \t{r.user}\nContact:    \t{r.contact}\n"
            f"Agent:      \t{r.agent}\n"
            f"Status:     \t{r.status} EXP({r.expires_local}) EXPSECS({r.expires_in})\n"
            "Ping-Status:\tReachable\nPing-Time:\t0.00\n"
            f"Host:       \t{r.host}\nIP:         \t{r.ip}\nPort:       \t{r.port}\n"
            f"Auth-User:  \t{r.auth_user or user_part}\nAuth-Realm: \t{r.auth_realm}\n"
            f"MWI-Account:\t{r.user}\n\n"
        )
    out.append(f"Total items returned: {count}\n{_RULE}\n")
    return "".join(out)


def _uptime_line(seconds: float) -> str:
    micros_total = max(0, round(seconds * 1_000_000))
    secs, micros = divmod(micros_total, 1_000_000)
    millis, micros = divmod(micros, 1000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    days, hours = divmod(hours, 24)
    years, days = divmod(days, 365)
    return (
        f"UP {years} years, {days} days, {hours} hours, {mins} minutes, {secs} seconds, "
        f"{millis} milliseconds, {micros} microseconds"
    )


def register_static_commands(
    reg: ApiRegistry,
    *,
    clock: Callable[[], float],
    switch_stats: Callable[[], SwitchStats | Mapping[str, int]],
    started_at: float | None = None,
    global_vars: Mapping[str, str] | None = None,
    sip_ip: str = "127.0.0.1",
    hostname: str = "fakeswitch",
) -> None:
    """Register the commands whose answers do not depend on live calls.

    ``switch_stats()`` is called on every ``status`` / ``sofia status`` and may
    return a :class:`SwitchStats` or a mapping of its field names. The call
    model registers the call-dependent ones (``show channels``, ``uuid_*``,
    ``originate``, ``sofia status profile internal reg`` ...) on the same
    registry; a later registration of the same name replaces this one.
    """
    start = clock() if started_at is None else started_at
    variables: dict[str, str] = {"domain": sip_ip, "hostname": hostname, "local_ip_v4": sip_ip}
    if global_vars:
        variables.update(global_vars)

    def stats() -> SwitchStats:
        return SwitchStats.coerce(switch_stats())

    def version(_args: str) -> str:
        return FS_VERSION + "\n"

    def status(_args: str) -> str:
        s = stats()
        # The trailing spaces on the two "peak" lines are FreeSWITCH's.
        return (
            f"{_uptime_line(clock() - start)}\n"
            f"FreeSWITCH (Version {_FS_VERSION_SHORT}) is ready\n"
            f"{s.sessions_since_startup} session(s) since startup\n"
            f"{s.sessions} session(s) - peak {s.sessions_peak}, last 5min {s.sessions_peak_5min} \n"
            f"{s.sps} session(s) per Sec out of max {s.sps_max}, peak {s.sps_peak}, "
            f"last 5min {s.sps_peak_5min} \n"
            f"{s.sessions_max} session(s) max\n"
            "min idle cpu 0.00/99.00\n"
            "Current Stack Size/Max 240K/8192K\n"
        )

    def global_getvar(args: str) -> str:
        if not args:
            return "".join("{}={}\n".format(*kv) for kv in sorted(variables.items()))
        return variables.get(args, "")

    def global_setvar(args: str) -> str:
        name, sep, value = args.partition("=")
        name = name.strip()
        if not name:
            return "-ERR Usage: global_setvar <var>=<value>\n"
        variables[name] = value.strip() if sep else ""
        return "+OK"

    def sofia_status(args: str) -> str:
        if args.strip():
            return "Invalid Profile!\n"
        s = stats()
        external = f"sip:mod_sofia@{sip_ip}:5080"
        internal = f"sip:mod_sofia@{sip_ip}:5060"
        return (
            f"{'Name':>25}\t{'Type':>7}\t{'Data':>42}\tState\n"
            f"{_RULE}\n"
            f"{sip_ip:>25}\t{'alias':>7}\t{'internal':>42}\tALIASED\n"
            f"{'external':>25}\tprofile\t{external:>42}\tRUNNING ({s.external_in_use})\n"
            f"{'internal':>25}\tprofile\t{internal:>42}\tRUNNING ({s.internal_in_use})\n"
            f"{_RULE}\n"
            "2 profiles 1 alias\n"
        )

    def sofia_status_profile(args: str) -> str:
        words = args.split()
        if not words or words[0] != "internal":
            return "Invalid Profile!\n"
        if words[1:2] == ["reg"]:
            return format_sofia_registrations(())
        s = stats()
        url = f"sip:mod_sofia@{sip_ip}:5060"
        rows = [
            ("Name", "internal"),
            ("Domain Name", "N/A"),
            ("Auto-NAT", "false"),
            ("DBName", "sofia_reg_internal"),
            ("Pres Hosts", f"{sip_ip},{sip_ip}"),
            ("Dialplan", "XML"),
            ("Context", "public"),
            ("Challenge Realm", "auto_from"),
            ("RTP-IP", sip_ip),
            ("Ext-RTP-IP", sip_ip),
            ("SIP-IP", sip_ip),
            ("Ext-SIP-IP", sip_ip),
            ("URL", url),
            ("BIND-URL", f"{url};maddr={sip_ip};transport=udp,tcp"),
            ("HOLD-MUSIC", "local_stream://moh"),
            ("OUTBOUND-PROXY", "N/A"),
            ("CODECS IN", "OPUS,G722,PCMU,PCMA,H264,VP8"),
            ("CODECS OUT", "OPUS,G722,PCMU,PCMA,H264,VP8"),
            ("TEL-EVENT", "101"),
            ("DTMF-MODE", "rfc2833"),
            ("CNG", "13"),
            ("SESSION-TO", "0"),
            ("MAX-DIALOG", "0"),
            ("MAX-RECV-RPS", "1000"),
            ("NOMEDIA", "false"),
            ("LATE-NEG", "true"),
            ("PROXY-MEDIA", "false"),
            ("AGGRESSIVENAT", "false"),
            ("CALLS-IN", str(s.calls_in)),
            ("FAILED-CALLS-IN", str(s.failed_calls_in)),
            ("CALLS-OUT", str(s.calls_out)),
            ("FAILED-CALLS-OUT", str(s.failed_calls_out)),
            ("REGISTRATIONS", str(s.registrations)),
        ]
        return _RULE + "\n" + "".join(f"{name:<17}\t{value}\n" for name, value in rows)

    reg.register("version", version)
    reg.register("status", status)
    reg.register("global_getvar", global_getvar)
    reg.register("global_setvar", global_setvar)
    reg.register("hostname", lambda _args: hostname)
    reg.register("sofia status", sofia_status)
    reg.register("sofia status profile", sofia_status_profile)
