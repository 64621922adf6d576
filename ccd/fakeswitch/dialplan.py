"""Load `freeswitch_conf/` and route calls through its XML dialplan and IVR menus.

Theory of operation
-------------------
`load_conf(dir)` reads the tree the way FreeSWITCH's own `freeswitch.xml` would:
`ccd_vars.xml` first (pre-process variables), then `autoload_configs/*.xml`,
`dialplan/*.xml`, the users in `directory/default/*.xml` and the gateways in
`sip_profiles/<profile>/*.xml`, all through the pre-processor in `fsxml.py`. It
then checks cross references (transfer targets, `ivr` and `menu-sub` names) and
refuses a broken conf with `ConfError` naming the file.

`Dialplan.route()` is mod_dialplan_xml's hunt, sans-IO:

- extensions of the context are tried in order; in each, conditions in order;
- a condition is true when it has no `field`, or when the field's value (a caller
  profile field or channel variable, or a `${...}` expression) matches `expression`
  (a regex, itself `${}`-expanded); its actions are collected when true, its
  anti-actions when false, at once: they stay collected even if a later condition
  of the same extension fails (FreeSWITCH behaves so; that is how anti-actions work);
- `break` decides whether to stop the extension: `on-false` (default), `on-true`,
  `always`, `never`; the extension matched when its last evaluated condition was true;
- a matched extension ends the hunt unless it has `continue="true"`;
- `$1`..`$N` in action data are the captures of the action's own condition; `${var}`
  is left for the executor, which expands it at execution time with `expand_vars`;
- `inline="true"` actions (`set`, `unset`, `export`) run during the hunt: their effect
  is visible to later `${var}` conditions, and they come back as `Action(inline=True)`
  with their data already expanded, for the executor to apply without re-expanding.
- nothing collected at all → `NoRoute` (FreeSWITCH: NO_ROUTE_DESTINATION).

Exactly what FreeSWITCH documents (https://freeswitch.org/confluence "XML Dialplan",
"Conditions", "Actions and anti-actions", "inline"); the regex flavour is Python's,
which agrees with PCRE on everything this project's dialplan uses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ccd.fakeswitch.fsxml import PreprocessError, Preprocessor

BREAK_MODES = ("on-false", "on-true", "always", "never")
INLINE_APPS = ("set", "unset", "export")
IVR_ACTIONS = (
    "menu-exec-app",
    "menu-sub",
    "menu-top",
    "menu-back",
    "menu-exit",
    "menu-play-sound",
)
# Condition attributes FreeSWITCH has and this loader does not implement: refused, so a
# conf using them fails loudly instead of routing differently here than on the switch.
_UNSUPPORTED_CONDITION_ATTRS = (
    "regex",
    "wday",
    "mon",
    "mday",
    "yday",
    "week",
    "mweek",
    "hour",
    "minute",
    "minute-of-day",
    "time-of-day",
    "date-time",
    "year",
    "tz",
)
_CAPTURE = re.compile(r"\$(\d+)")
# Pre-process variables FreeSWITCH defines before reading any conf (local_ip_v4) or that
# its stock vars.xml sets (domain); ccd_vars.xml builds on them. Overridable.
BUILTIN_VARS = {"local_ip_v4": "127.0.0.1", "domain": "127.0.0.1"}


class ConfError(Exception):
    """The configuration is unusable (bad XML, dangling reference); names the file."""


class NoRoute(Exception):
    """No extension in `context` matched `destination_number`."""

    def __init__(self, context: str, number: str) -> None:
        super().__init__(f"no route for {number!r} in context {context!r}")
        self.context = context
        self.number = number


@dataclass(frozen=True)
class Action:
    """One dialplan application: `$N` captures substituted, `${var}` left for execution time.

    `inline` actions already ran during the hunt: their data is fully expanded.
    """

    app: str
    data: str
    inline: bool = False


@dataclass(frozen=True)
class IvrEntry:
    action: str  # one of IVR_ACTIONS
    digits: str  # literal digits, or /regex/
    param: str


@dataclass(frozen=True)
class IvrMenu:
    name: str
    greet_long: str
    greet_short: str
    invalid_sound: str
    exit_sound: str
    timeout_ms: int
    inter_digit_timeout_ms: int
    max_failures: int
    max_timeouts: int
    digit_len: int
    entries: tuple[IvrEntry, ...]

    def entry_for(self, digits: str) -> IvrEntry | None:
        """The entry the caller's digits select, `$N` of a /regex/ entry substituted."""
        for entry in self.entries:
            if (
                len(entry.digits) > 2
                and entry.digits.startswith("/")
                and entry.digits.endswith("/")
            ):
                match = re.search(entry.digits[1:-1], digits)
                if match:
                    return IvrEntry(entry.action, entry.digits, _substitute(entry.param, match))
            elif entry.digits == digits:
                return entry
        return None


def expand_vars(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand `${var}` like FreeSWITCH: innermost first (`${a_${b}}`), unknown → ''.

    `$${var}` was done by the pre-processor; a `$` not followed by `{` stays as is.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        end, depth = start + 2, 1
        while end < len(text) and depth:
            if text.startswith("${", end):
                depth, end = depth + 1, end + 2
                continue
            if text[end] == "}":
                depth -= 1
            end += 1
        if depth:  # unterminated: FreeSWITCH leaves it verbatim
            out.append(text[start:])
            break
        name = expand_vars(text[start + 2 : end - 1], lookup)
        out.append(lookup(name) or "")
        i = end
    return "".join(out)


@dataclass(frozen=True)
class _Item:
    app: str
    data: str
    inline: bool


@dataclass(frozen=True)
class _Condition:
    field: str | None
    expression: str | None
    break_mode: str
    actions: tuple[_Item, ...]
    anti_actions: tuple[_Item, ...]


@dataclass(frozen=True)
class _Extension:
    name: str
    continue_on_match: bool
    conditions: tuple[_Condition, ...]
    file: Path | None


class Dialplan:
    """The contexts of the XML dialplan; `route` is the hunt."""

    def __init__(self, contexts: Mapping[str, tuple[_Extension, ...]]) -> None:
        self._contexts = dict(contexts)

    @property
    def contexts(self) -> list[str]:
        return list(self._contexts)

    def route(
        self, context: str, destination_number: str, variables: Mapping[str, str]
    ) -> list[Action]:
        """The actions to execute; raises NoRoute(context, number) when nothing matches.

        `variables` holds channel variables and caller-profile fields by name
        (`caller_id_number`, `caller_id_name`, ...); `destination_number` wins over any
        entry of that name.
        """
        extensions = self._contexts.get(context)
        if extensions is None:
            raise NoRoute(context, destination_number)
        hunt_vars = dict(variables)
        hunt_vars["destination_number"] = destination_number
        hunt_vars.setdefault("context", context)
        actions: list[Action] = []
        for extension in extensions:
            if _hunt_extension(extension, hunt_vars, actions) and not extension.continue_on_match:
                break
        if not any(not action.inline for action in actions):
            raise NoRoute(context, destination_number)
        return actions

    def extensions(self, context: str) -> tuple[_Extension, ...]:
        return self._contexts.get(context, ())


def _hunt_extension(ext: _Extension, hunt_vars: dict[str, str], out: list[Action]) -> bool:
    matched = False
    for cond in ext.conditions:
        match: re.Match[str] | None = None
        if cond.field is None:
            matched = True
        else:
            value = _field_value(cond.field, hunt_vars)
            pattern = expand_vars(cond.expression or "", hunt_vars.get)
            match = re.search(pattern, value)
            matched = match is not None
        for item in cond.actions if matched else cond.anti_actions:
            data = _substitute(item.data, match) if match is not None else item.data
            if item.inline:
                data = expand_vars(data, hunt_vars.get)
                _run_inline(item.app, data, hunt_vars)
            out.append(Action(item.app, data, item.inline))
        if cond.break_mode == "always":
            break
        if cond.break_mode == "on-true" and matched:
            break
        if cond.break_mode == "on-false" and not matched:
            break
    return matched


def _field_value(field_name: str, hunt_vars: Mapping[str, str]) -> str:
    if "$" in field_name:
        return expand_vars(field_name, hunt_vars.get)
    return hunt_vars.get(field_name, "")


def _substitute(data: str, match: re.Match[str]) -> str:
    if not match.re.groups:  # FreeSWITCH substitutes only when the regex captures
        return data

    def group(m: re.Match[str]) -> str:
        index = int(m.group(1))
        if index > (match.re.groups or 0):
            return ""
        return match.group(index) or ""

    return _CAPTURE.sub(group, data)


def _run_inline(app: str, data: str, hunt_vars: dict[str, str]) -> None:
    if app in ("set", "export"):
        name, _, value = data.partition("=")
        if value:
            hunt_vars[name] = value
        else:
            hunt_vars.pop(name, None)  # `set x=` unsets in FreeSWITCH
    elif app == "unset":
        hunt_vars.pop(data, None)


@dataclass
class Conf:
    dialplan: Dialplan
    menus: dict[str, IvrMenu] = field(default_factory=dict)
    directory: dict[str, dict[str, str]] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    event_socket: dict[str, str] = field(default_factory=dict)
    # Settings of other autoload configs by config name (`switch.conf` -> params).
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    # Directory users that are voicemail boxes, not phones (variable ccd_voicemail_box).
    voicemail_boxes: dict[str, dict[str, str]] = field(default_factory=dict)
    # Directory `<params>` (password, vm-password) by user id, phones and boxes.
    directory_params: dict[str, dict[str, str]] = field(default_factory=dict)
    # SIP gateways (sip_profiles/<profile>/*.xml) by name: their params.
    gateways: dict[str, dict[str, str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def load_conf(conf_dir: Path, overrides: Mapping[str, str] = {}) -> Conf:
    """Load a FreeSWITCH conf tree; `overrides` replace `X-PRE-PROCESS set` values.

    Raises ConfError (message names the file) for unreadable or malformed XML, a
    dialplan/menu this loader cannot execute faithfully, or a dangling reference.
    """
    conf_dir = Path(conf_dir)
    if not conf_dir.is_dir():
        raise ConfError(f"{conf_dir}: not a directory")
    pre = Preprocessor(overrides=dict(overrides), vars=dict(BUILTIN_VARS))
    try:
        roots: dict[str, list[ET.Element]] = {
            "vars": [],
            "configs": [],
            "dialplan": [],
            "directory": [],
            "gateways": [],
        }
        if (conf_dir / "ccd_vars.xml").is_file():
            roots["vars"].append(pre.preprocess_file(conf_dir / "ccd_vars.xml"))
        for section, pattern in (
            ("configs", "autoload_configs/*.xml"),
            ("dialplan", "dialplan/*.xml"),
            ("directory", "directory/default/*.xml"),
            ("gateways", "sip_profiles/*/*.xml"),
        ):
            for path in sorted(conf_dir.glob(pattern)):
                root = pre.preprocess_file(path)
                roots[section].extend(list(root) if root.tag == "include" else [root])
    except PreprocessError as exc:
        raise ConfError(str(exc)) from exc

    builder = _Builder(pre)
    conf = Conf(
        dialplan=Dialplan(builder.contexts(roots["dialplan"])),
        vars=dict(pre.vars),
        files=list(pre.files),
    )
    for config in roots["configs"]:
        builder.config(config, conf)
    builder.users(roots["directory"], conf)
    builder.gateways(roots["gateways"], conf)
    builder.problems.extend(check_references(conf, builder))
    if builder.problems:
        raise ConfError("\n".join(builder.problems))
    return conf


class _Builder:
    """Turns pre-processed elements into the Conf, collecting problems by file."""

    def __init__(self, pre: Preprocessor) -> None:
        self.pre = pre
        self.problems: list[str] = []
        self.menu_files: dict[str, Path | None] = {}

    def where(self, element: ET.Element) -> str:
        path = self.pre.file_of(element)
        return str(path) if path else "<conf>"

    def problem(self, element: ET.Element, text: str) -> None:
        self.problems.append(f"{self.where(element)}: {text}")

    # dialplan ---------------------------------------------------------------
    def contexts(self, elements: list[ET.Element]) -> dict[str, tuple[_Extension, ...]]:
        contexts: dict[str, tuple[_Extension, ...]] = {}
        for element in elements:
            if element.tag != "context":
                self.problem(element, f"dialplan files hold <context>, not <{element.tag}>")
                continue
            name = element.get("name", "")
            if not name:
                self.problem(element, "<context> without a name")
            elif name in contexts:
                # FreeSWITCH would silently use only the first one.
                self.problem(element, f"context {name!r} defined twice")
            else:
                contexts[name] = tuple(self.extension(x) for x in element.iter("extension"))
        return contexts

    def extension(self, element: ET.Element) -> _Extension:
        conditions = []
        for cond in element.findall("condition"):
            for attr in _UNSUPPORTED_CONDITION_ATTRS:
                if attr in cond.attrib:
                    self.problem(cond, f"condition attribute {attr!r} is not supported here")
            break_mode = cond.get("break", "on-false")
            if break_mode not in BREAK_MODES:
                self.problem(cond, f"break={break_mode!r}; expected one of {BREAK_MODES}")
            field_name, expression = cond.get("field"), cond.get("expression")
            if field_name is not None and expression is None:
                self.problem(cond, f"condition on {field_name!r} has no expression")
            if expression is not None and "${" not in expression:
                try:
                    re.compile(expression)
                except re.error as exc:
                    self.problem(cond, f"bad expression {expression!r}: {exc}")
            conditions.append(
                _Condition(
                    field=field_name,
                    expression=expression,
                    break_mode=break_mode,
                    actions=tuple(self.item(a) for a in cond.findall("action")),
                    anti_actions=tuple(self.item(a) for a in cond.findall("anti-action")),
                )
            )
        return _Extension(
            name=element.get("name", ""),
            continue_on_match=element.get("continue", "false") == "true",
            conditions=tuple(conditions),
            file=self.pre.file_of(element),
        )

    def item(self, element: ET.Element) -> _Item:
        app = element.get("application", "")
        if not app:
            self.problem(element, f"<{element.tag}> without application")
        inline = element.get("inline", "false") == "true"
        if inline and app not in INLINE_APPS:
            self.problem(element, f"application {app!r} cannot run inline")
        return _Item(app, element.get("data", ""), inline)

    # autoload configs -------------------------------------------------------
    def config(self, element: ET.Element, conf: Conf) -> None:
        if element.tag != "configuration":
            self.problem(
                element, f"autoload_configs files hold <configuration>, not <{element.tag}>"
            )
            return
        name = element.get("name", "")
        params = {p.get("name", ""): p.get("value", "") for p in element.iter("param")}
        if name == "event_socket.conf":
            conf.event_socket = params
        elif name == "ivr.conf":
            for menu in element.iter("menu"):
                self.menu(menu, conf)
        else:
            conf.settings[name] = params

    def menu(self, element: ET.Element, conf: Conf) -> None:
        name = element.get("name", "")
        if not name or name in conf.menus:
            self.problem(element, f"menu name {name!r} missing or defined twice")
            return

        def number(attr: str, default: int) -> int:
            raw = element.get(attr)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                self.problem(element, f"menu {name}: {attr}={raw!r} is not a number")
                return default

        entries = []
        for entry in element.findall("entry"):
            action = entry.get("action", "")
            if action not in IVR_ACTIONS:
                self.problem(entry, f"menu {name}: unknown entry action {action!r}")
            entries.append(IvrEntry(action, entry.get("digits", ""), entry.get("param", "")))
        timeout = number("timeout", 10000)
        conf.menus[name] = IvrMenu(
            name=name,
            greet_long=element.get("greet-long", ""),
            greet_short=element.get("greet-short", element.get("greet-long", "")),
            invalid_sound=element.get("invalid-sound", ""),
            exit_sound=element.get("exit-sound", ""),
            timeout_ms=timeout,
            inter_digit_timeout_ms=number("inter-digit-timeout", timeout // 2),
            max_failures=number("max-failures", 3),
            max_timeouts=number("max-timeouts", 3),
            digit_len=number("digit-len", 1),
            entries=tuple(entries),
        )
        self.menu_files[name] = self.pre.file_of(element)

    # directory ----------------------------------------------------------------
    def users(self, elements: list[ET.Element], conf: Conf) -> None:
        for element in elements:
            for user in [element] if element.tag == "user" else list(element.iter("user")):
                uid = user.get("id", "")
                if not uid or uid in conf.directory_params:
                    self.problem(user, f"user id {uid!r} missing or defined twice")
                    continue
                variables = {v.get("name", ""): v.get("value", "") for v in user.iter("variable")}
                conf.directory_params[uid] = {
                    p.get("name", ""): p.get("value", "") for p in user.iter("param")
                }
                if variables.get("ccd_voicemail_box") == "true":
                    conf.voicemail_boxes[uid] = variables
                else:
                    conf.directory[uid] = variables

    # gateways -----------------------------------------------------------------
    def gateways(self, elements: list[ET.Element], conf: Conf) -> None:
        for element in elements:
            if element.tag != "gateway":
                self.problem(element, f"sip_profiles files hold <gateway>, not <{element.tag}>")
                continue
            name = element.get("name", "")
            if not name or name in conf.gateways:
                self.problem(element, f"gateway name {name!r} missing or defined twice")
                continue
            conf.gateways[name] = {
                p.get("name", ""): p.get("value", "") for p in element.iter("param")
            }


# --- cross references --------------------------------------------------------------


def transfer_target(data: str, current_context: str) -> tuple[str, str] | None:
    """(extension, context) of a `transfer` argument, or None when not XML / not static."""
    parts = data.split()
    if not parts or len(parts) > 3:
        return None
    dialplan = parts[1] if len(parts) > 1 else "XML"
    context = parts[2] if len(parts) > 2 else current_context
    if dialplan != "XML" or any("$" in p for p in (parts[0], context)):
        return None
    return parts[0], context


def check_references(conf: Conf, builder: _Builder | None = None) -> list[str]:
    """Dangling transfer targets and menu names, each message naming its file."""
    problems: list[str] = []
    menu_files = builder.menu_files if builder else {}

    def check_transfer(data: str, context: str, where: str) -> None:
        target = transfer_target(data, context)
        if target is None:
            return
        try:
            conf.dialplan.route(target[1], target[0], {})
        except NoRoute:
            problems.append(f"{where}: transfer to {target[0]}@{target[1]} routes nowhere")

    for context in conf.dialplan.contexts:
        for ext in conf.dialplan.extensions(context):
            where = f"{ext.file or '<conf>'}: extension {ext.name}"
            for cond in ext.conditions:
                for item in cond.actions + cond.anti_actions:
                    if item.app == "transfer":
                        check_transfer(item.data, context, where)
                    elif item.app == "sched_transfer":
                        check_transfer(item.data.partition(" ")[2], context, where)
                    elif (
                        item.app == "ivr" and "$" not in item.data and (item.data not in conf.menus)
                    ):
                        problems.append(f"{where}: ivr {item.data!r} is not a menu")
    for menu in conf.menus.values():
        where = f"{menu_files.get(menu.name) or '<conf>'}: menu {menu.name}"
        for entry in menu.entries:
            if entry.action == "menu-sub" and entry.param not in conf.menus:
                problems.append(f"{where}: menu-sub {entry.param!r} is not a menu")
            elif entry.action == "menu-exec-app":
                app, _, data = entry.param.partition(" ")
                if app == "transfer" and "$" not in data:
                    # A menu runs in the context of the call that entered it; ours are
                    # reached from context ccd, and every menu transfer names its context.
                    check_transfer(data, "ccd", where)
    return problems
