"""Argument parsing as FreeSWITCH does it (switch_separate_string): api arguments, dial
strings with their ``{var=value}`` blocks, originate lines."""

from __future__ import annotations

import re
from typing import Any

from ccd.fakeswitch.dialplan import Action


class OriginateError(ValueError):
    """An originate line FreeSWITCH would refuse before creating any channel."""


# -- argument parsing, as FreeSWITCH's switch_separate_string does it ---------


#: What split_args stops at: an escaped quote or backslash, a quote, the delimiter.
_SPLIT_TOKENS: dict[str, re.Pattern[str]] = {}


def split_args(text: str, delim: str = " ") -> list[str]:
    """Split at ``delim`` outside single quotes; quotes are removed and ``\\'``
    is a literal quote. Empty fields are dropped when splitting at spaces.

    A quote with no other quote after it is a literal one."""
    if len(delim) != 1 or delim in "'\\":
        raise ValueError(f"split_args needs one delimiter character other than ' and \\: {delim!r}")
    if "'" not in text and "\\" not in text:
        out = text.split(delim)
    else:
        tokens = _SPLIT_TOKENS.get(delim)
        if tokens is None:
            tokens = _SPLIT_TOKENS[delim] = re.compile(r"\\['\\]|'|" + re.escape(delim))
        out = []
        cur: list[str] = []
        quoted = False
        pos = 0
        for match in tokens.finditer(text):
            start, pos_next = match.span()
            if start > pos:
                cur.append(text[pos:start])
            token = match.group()
            if len(token) == 2:  # \' or \\: the second character, as is
                cur.append(token[1])
            elif token == "'" and (quoted or text.find("'", pos_next) >= 0):
                quoted = not quoted
            elif token == delim and not quoted:
                out.append("".join(cur))
                cur = []
            else:
                cur.append(token)
            pos = pos_next
        cur.append(text[pos:])
        out.append("".join(cur))
    return [p for p in out if p] if delim == " " else out


_BLOCK_END = {"{": re.compile("['}]"), "[": re.compile(r"['\]]")}


def parse_dial_string(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b,c='x, y'}[d=e]endpoint`` -> (variables, endpoint)."""
    variables: dict[str, str] = {}
    rest = dial.strip()
    while rest[:1] in ("{", "["):
        end, quoted = -1, False
        for match in _BLOCK_END[rest[0]].finditer(rest):
            if match.group() == "'":
                quoted = not quoted
            elif not quoted:
                end = match.start()
                break
        if end < 0:
            raise OriginateError("unterminated variable block")
        for item in split_args(rest[1:end], ","):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                variables[name.strip()] = value
        rest = rest[end + 1 :]
    return variables, rest


def parse_originate(args: str) -> dict[str, Any]:
    """``<dial> <&app(arg)|exten> [dialplan] [context] [cid_name] [cid_num] [timeout]``."""
    argv = split_args(args)
    if len(argv) < 2:
        raise OriginateError("originate needs a dial string and an application")
    variables, endpoint = parse_dial_string(argv[0])
    target = argv[1]
    req: dict[str, Any] = {"vars": variables, "endpoint": endpoint}
    if target.startswith("&"):
        app, _, data = target[1:].partition("(")
        req["program"] = [Action(app, data[:-1] if data.endswith(")") else data)]
    else:
        req["extension"] = target
        req["context"] = argv[3] if len(argv) > 3 else "default"
    if len(argv) > 4 and argv[4] != "undef":
        variables.setdefault("origination_caller_id_name", argv[4])
    if len(argv) > 5 and argv[5] != "undef":
        variables.setdefault("origination_caller_id_number", argv[5])
    if len(argv) > 6:
        variables.setdefault("originate_timeout", argv[6])
    return req


def number_or(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)
