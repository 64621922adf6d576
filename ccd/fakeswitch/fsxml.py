"""FreeSWITCH's XML pre-processor: `X-PRE-PROCESS` set/include and `$${var}` expansion.

Theory of operation
-------------------
FreeSWITCH reads its configuration line by line before any XML parsing:

- `$${name}` anywhere on a line (comments included) is replaced by the pre-process
  variable `name`;
- a line holding `<X-PRE-PROCESS cmd="set" data="name=value"/>` sets a variable for
  every line read after it, in every file (the variables are global);
- a line holding `<X-PRE-PROCESS cmd="include" data="glob"/>` is replaced by the content
  of the matching files, relative to the including file's directory, each file's own
  `<include>` wrapper dropped.

This module does the same per file, but keeps each file a separate XML tree so every
element can be traced back to the file it came from (error messages name the file).
`preprocess_file` returns the parsed root with includes spliced in as elements.

Deliberately stricter than FreeSWITCH, because a bad conf must fail here, before it
reaches a real switch: an undefined `$${var}`, an `X-PRE-PROCESS` that is not alone on
its line or sits inside a comment, an include of a missing file and an unknown `cmd`
are all refused with `PreprocessError` naming the file and line.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_GLOBAL_VAR = re.compile(r"\$\$\{([^}]*)\}")
_PRE_TAG = re.compile(r"<X-PRE-PROCESS\b([^>]*?)/?>", re.IGNORECASE)
_ATTR = re.compile(r'([A-Za-z_-]+)\s*=\s*"([^"]*)"')
_PLACEHOLDER = "ccd-preprocess-include"
_MAX_DEPTH = 20  # FreeSWITCH also bounds include recursion


class PreprocessError(Exception):
    """The conf cannot be pre-processed or parsed; the message names the file."""


@dataclass
class Preprocessor:
    """Global pre-process state shared by every file read, in reading order.

    `overrides` win over any `set` in the files (deployment settings, tests).
    `origin` maps id(element) -> file it was read from, for error messages.
    """

    overrides: Mapping[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    origin: dict[int, Path] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vars.update(self.overrides)

    def file_of(self, element: ET.Element) -> Path | None:
        return self.origin.get(id(element))

    def preprocess_file(self, path: Path, depth: int = 0) -> ET.Element:
        """Read, pre-process and parse one file; includes are spliced in as elements."""
        if depth > _MAX_DEPTH:
            raise PreprocessError(f"{path}: includes nested deeper than {_MAX_DEPTH}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PreprocessError(f"{path}: cannot read: {exc}") from exc
        self.files.append(path)
        included: list[list[ET.Element]] = []
        out_lines: list[str] = []
        in_comment = False
        for lineno, line in enumerate(text.splitlines(), start=1):
            where = f"{path}:{lineno}"
            line = self._expand(line, where)
            tag = _PRE_TAG.search(line)
            if tag is None:
                in_comment = _comment_state(line, in_comment)
                out_lines.append(line)
                continue
            if in_comment or "<!--" in line[: tag.start()]:
                raise PreprocessError(
                    f"{where}: X-PRE-PROCESS inside a comment (FreeSWITCH "
                    "would still run it); delete the line instead"
                )
            if line[: tag.start()].strip() or line[tag.end() :].strip():
                raise PreprocessError(f"{where}: X-PRE-PROCESS must be alone on its line")
            attrs = dict(_ATTR.findall(tag.group(1)))
            cmd, data = attrs.get("cmd", ""), attrs.get("data", "")
            if cmd == "set":
                name, sep, value = data.partition("=")
                if not sep or not name.strip():
                    raise PreprocessError(f'{where}: set needs data="name=value"')
                if name.strip() not in self.overrides:
                    self.vars[name.strip()] = value
                out_lines.append("")
            elif cmd == "include":
                elements: list[ET.Element] = []
                for target in self._include_targets(path, data, where):
                    root = self.preprocess_file(target, depth + 1)
                    elements.extend(list(root) if root.tag == "include" else [root])
                out_lines.append(f'<{_PLACEHOLDER} n="{len(included)}"/>')
                included.append(elements)
            else:
                raise PreprocessError(f"{where}: unsupported X-PRE-PROCESS cmd={cmd!r}")
        try:
            root = ET.fromstring("\n".join(out_lines))
        except ET.ParseError as exc:
            raise PreprocessError(f"{path}: malformed XML: {exc}") from exc
        self._splice(root, included)
        for element in root.iter():
            self.origin.setdefault(id(element), path)
        return root

    def _expand(self, line: str, where: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.vars:
                raise PreprocessError(f"{where}: undefined pre-process variable $${{{name}}}")
            return self.vars[name]

        return _GLOBAL_VAR.sub(replace, line)

    def _include_targets(self, path: Path, pattern: str, where: str) -> list[Path]:
        if not pattern:
            raise PreprocessError(f"{where}: include without data")
        base = Path(pattern) if Path(pattern).is_absolute() else path.parent / pattern
        if any(ch in pattern for ch in "*?["):
            # Sorted so the reading order (and so `set` order) is reproducible.
            return sorted(p for p in base.parent.glob(base.name) if p.is_file())
        if not base.is_file():
            raise PreprocessError(f"{where}: include of missing file {pattern!r}")
        return [base]

    def _splice(self, root: ET.Element, included: list[list[ET.Element]]) -> None:
        for parent in list(root.iter()):
            for index, child in reversed(list(enumerate(parent))):
                if child.tag == _PLACEHOLDER:
                    parent.remove(child)
                    for offset, element in enumerate(included[int(child.get("n", "0"))]):
                        parent.insert(index + offset, element)


def _comment_state(line: str, in_comment: bool) -> bool:
    """Whether a comment is still open after this line."""
    pos = 0
    while True:
        if in_comment:
            end = line.find("-->", pos)
            if end < 0:
                return True
            in_comment, pos = False, end + 3
        else:
            start = line.find("<!--", pos)
            if start < 0:
                return False
            in_comment, pos = True, start + 4
