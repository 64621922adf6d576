"""Configuration values: the checkers the schema names, and the errors they raise.

Each checker returns the normalised value or raises ``_Invalid``; the loader completes the
message with the dotted key and collects every problem into one :class:`ConfigError`. Secrets
never reach a message: :func:`redact_url` masks a URL's password, ``_show`` keeps a rejected
value short.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ccd.core.business_hours import parse_business_hours
from ccd.core.routing import TAG_RE
from ccd.core.screenpop import validate_template

#: Queue and agent names (tags: ccd.core.routing.TAG_RE, the same grammar).
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
    """The URL with any password replaced by ``***`` (for logs and messages): the userinfo's
    (``redis://user:***@host``) and a ``password=`` query parameter's (``?password=***``)."""
    url = _USERINFO_RE.sub(_mask_userinfo, url)
    return _QUERY_SECRET_RE.sub(lambda m: m.group(1) + _MASK, url)


# scheme://userinfo@ — greedy up to the last "@" before the path, so a password holding an
# unescaped "@" is masked whole.
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s]*)@")
# ?password=... or &password=... (redis-py reads these too), up to the next & or # or space.
_QUERY_SECRET_RE = re.compile(r"([?&;](?:password|passwd|pass|pwd|token)=)[^&#\s]*", re.I)


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
    if not isinstance(value, list):
        raise _Invalid(f'expected a list like ["mon-fri 08:00-18:00"], got {_show(value)}')
    try:
        parse_business_hours(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return tuple(value)


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$", value):
        raise _Invalid(f'expected a time zone name like "Europe/Budapest", got {_show(value)}')
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid(f'unknown time zone {_show(value)} (e.g. "Europe/Budapest")') from None
    return value


def _windows(value: Any) -> tuple[int, ...]:
    """Sliding windows of the statistics: 1-8 whole numbers of minutes (1-1440), sorted."""
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 8
        or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1440 for v in value)
    ):
        raise _Invalid(f"expected a list of 1-8 whole minutes (1-1440), got {_show(value)}")
    return tuple(sorted(set(value)))


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
        if not TAG_RE.match(tag):
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
    # Never echoed, not even redacted: a password with an unescaped "/" or "?" defeats any
    # masking, and the URL may have come from the environment (CCD_REDIS_URL).
    hidden = "(value not shown: it may hold a password)"
    if not isinstance(value, str):
        raise _Invalid(f"expected a redis://, rediss:// or unix:// URL, got {_show(value)}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _Invalid(f"not a valid URL: bad host or port {hidden}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise _Invalid(f"expected a redis://, rediss:// or unix:// URL {hidden}")
    if parts.scheme != "unix" and not parts.hostname:
        raise _Invalid(f"the URL has no host {hidden}")
    if parts.scheme == "unix" and not parts.path:
        raise _Invalid(
            f"a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock {hidden}"
        )
    return value


def _token(value: Any) -> str:
    """The HTTP bearer token: "" (none) or 16-256 printable ASCII characters, never echoed."""
    if not isinstance(value, str) or (
        value and not (16 <= len(value) <= 256 and value.isascii() and value.isprintable()
                       and " " not in value)
    ):  # fmt: skip
        raise _Invalid(
            'expected "" or 16-256 printable ASCII characters without spaces (value hidden)'
        )
    return value


def _webhook_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f'expected an http(s) URL or "", got {_show(value)}')
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise _Invalid(f'expected an http(s) URL or "", got {_show(redact_url(value))}')
    return value


def _codes_table(value: Any) -> Any:
    """``[disposition.codes.<name>]`` tables; checked whole by ccd.core.disposition in _build,
    whose messages name the code's own key."""
    if not isinstance(value, Mapping) or not value:
        raise _Invalid(
            "expected one table per code, [disposition.codes.<name>] with number and label"
        )
    return value


def _template(value: Any) -> str:
    """The caller-id template; ccd.core.screenpop owns the list of placeholders and the rules
    (plain names only: the template is applied to caller-controlled values)."""
    try:
        return validate_template(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
