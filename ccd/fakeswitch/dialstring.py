"""Argument parsing as FreeSWITCH does it (switch_separate_string): api arguments, dial
strings with their ``{var=value}`` blocks, originate lines."""

from __future__ import annotations

from typing import Any

from ccd.fakeswitch.dialplan import Action


class OriginateError(ValueError):
    """An originate line FreeSWITCH would refuse before creating any channel."""


# -- argument parsing, as FreeSWITCH's switch_separate_string does it ---------


def split_args(text: str, delim: str = " ") -> list[str]:
    """Split at ``delim`` outside single quotes; quotes are removed and ``\\'``
    is a literal quote. Empty fields are dropped when splitting at spaces."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
            cur.append(text[i + 1])
            i += 2
            continue
        if c == "'" and (quoted or "'" in text[i + 1 :]):
            quoted = not quoted
        elif c == delim and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [p for p in out if p] if delim == " " else out


def parse_dial_string(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b,c='x, y'}[d=e]endpoint`` -> (variables, endpoint)."""
    variables: dict[str, str] = {}
    rest = dial.strip()
    while rest[:1] in ("{", "["):
        close = "}" if rest[0] == "{" else "]"
        end, quoted = -1, False
        for i, c in enumerate(rest):
            if c == "'":
                quoted = not quoted
            elif c == close and not quoted:
                end = i
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
