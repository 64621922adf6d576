"""Loading: the TOML file and the environment over the schema's defaults, into one Config."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ccd.config.checks import _MASK, ConfigError, _Invalid, _name, _show, redact_url
from ccd.config.schema import _SECTIONS, _Option
from ccd.config.schema_tables import _TABLES, _TOP_LEVEL
from ccd.config.sections import (
    AgentConfig,
    CallbackConfig,
    DaemonConfig,
    DispositionConfig,
    EslConfig,
    FeedConfig,
    HttpConfig,
    LogConfig,
    QueueConfig,
    RedisConfig,
    RoutingConfig,
    StatsConfig,
    StickyConfig,
    VoicemailConfig,
)
from ccd.core.disposition import DEFAULT_CODES, CodeSet


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
    callback: CallbackConfig
    disposition: DispositionConfig
    stats: StatsConfig
    feed: FeedConfig
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
                if section == "disposition" and f.name == "codes":
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
    path: str,
    table: Mapping[str, Any],
    options: tuple[_Option, ...],
    problems: list[str],
    from_env: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Checked values of one table; unknown keys and bad values become problems. A bad value
    that came from the environment (``from_env``: option names) is blamed on its variable."""
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
            where = f"{path}.{option.name}"
            if option.name in from_env:
                where = f"environment variable {option.env} (overrides {where})"
            problems.append(f"{where}: {exc}")
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
        from_env = frozenset(o.name for o in options if o.env and env.get(o.env))
        for option in options:
            if option.name in from_env:
                table[option.name] = env[option.env]  # type: ignore[index]
        sections[section] = _read_options(section, table, options, problems, from_env)

    esl = sections["esl"]
    if esl["backoff_min"] and esl["backoff_max"] and esl["backoff_min"] > esl["backoff_max"]:
        problems.append(
            f"esl.backoff_max: must be >= esl.backoff_min ({esl['backoff_min']:g}), "
            f"got {esl['backoff_max']:g}"
        )

    callback = sections["callback"]
    if (
        callback["min_digits"]
        and callback["max_digits"]
        and callback["min_digits"] > callback["max_digits"]
    ):
        problems.append(
            f"callback.max_digits: must be >= callback.min_digits ({callback['min_digits']}), "
            f"got {callback['max_digits']}"
        )

    disposition = sections["disposition"]
    disposition_table = data.get("disposition")
    disposition["codes"] = _code_set(
        disposition["codes"],
        isinstance(disposition_table, Mapping) and "codes" in disposition_table,
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

    callback_queue = disposition["callback_queue"]
    if callback_queue and callback_queue not in queues:
        problems.append(
            _unknown("disposition.callback_queue", callback_queue, list(queues), "queue")
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
    if table is None:
        return None if configured else DEFAULT_CODES  # None: its problem is already listed
    try:
        return CodeSet.from_mapping(table)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        if not message.startswith("disposition.codes."):
            message = f"disposition.codes: {message}"
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
