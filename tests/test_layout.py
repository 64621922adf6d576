"""The layout as rules (README, theory of operation): layers, no import cycles, small modules.

Every ``import`` in ``ccd/`` counts, wherever it stands: at the top, inside a function, under
``if TYPE_CHECKING``. The layers, lowest first, and what each may import besides itself:

* ``core``: the pure rules. Nothing else of ccd, and nothing that does I/O, reads a clock or
  keeps global state (no sockets, Redis, gevent, logging, ``time``, ``os``, random uuids).
* ``config``: the configuration, checked with the core's rules.
* ``store``: Redis; ``adapters``: ESL, HTTP, webhooks.
* ``engine``: call control over the core, the stores and the adapters. Its parts never import
  the facade (``ccd.engine.control``): it wires them.
* ``supervisor``: operations around the dispatcher (systemd, reload, metrics wiring); it
  drives the engine only through the daemon's inbox, so it needs no engine import.
* ``daemon``: the composition root; ``cli``: the command line.
* ``fakeswitch``: the fake FreeSWITCH, beside the others: only the core's wire format.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CCD = Path(__file__).resolve().parent.parent / "ccd"

#: What each layer may import besides itself.
LAYERS: dict[str, set[str]] = {
    "ccd.core": set(),
    "ccd.config": {"ccd.core"},
    "ccd.logging": {"ccd.config"},
    "ccd.store": {"ccd.core", "ccd.config"},
    "ccd.adapters": {"ccd.core"},
    "ccd.engine": {"ccd.core", "ccd.config", "ccd.store", "ccd.adapters"},
    "ccd.supervisor": {"ccd.core", "ccd.config", "ccd.store", "ccd.adapters"},
    "ccd.daemon": {
        "ccd.core",
        "ccd.config",
        "ccd.store",
        "ccd.adapters",
        "ccd.engine",
        "ccd.supervisor",
    },
    "ccd.cli": {
        "ccd.core",
        "ccd.config",
        "ccd.logging",
        "ccd.store",
        "ccd.adapters",
        "ccd.engine",
        "ccd.supervisor",
        "ccd.daemon",
    },
    "ccd.fakeswitch": {"ccd.core"},
}
#: Modules the core may not import: I/O, clocks, randomness, globals, logging.
CORE_FORBIDDEN = (
    "asyncio",
    "gevent",
    "greenswitch",
    "http",
    "logging",
    "msgpack",
    "os",
    "random",
    "redis",
    "select",
    "selectors",
    "signal",
    "socket",
    "ssl",
    "structlog",
    "subprocess",
    "sys",
    "threading",
    "time",
    "urllib.request",
    "uuid",
)
MAX_LINES = 600
#: Longer modules allowed, with their limit: data tables only.
LONGER: dict[str, int] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(CCD.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(CCD.rglob("*.py"))}


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _imported(module: str, tree: ast.Module) -> set[str]:
    """Every module ``module`` imports (ccd's resolved to a module of MODULES)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from ccd.core import presence` names a module; `from x import y` an attribute.
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return found


IMPORTS = {module: _imported(module, tree) for module, tree in TREES.items()}


def _ccd_imports(module: str) -> set[str]:
    out = set()
    for name in IMPORTS[module]:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("ccd.") and name != module:
            out.add(name)
    return out


def _layer(module: str) -> str | None:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def test_every_module_is_in_a_layer():
    assert [m for m in MODULES if m != "ccd" and _layer(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_imports_follow_the_layers(module):
    layer = _layer(module)
    allowed = LAYERS[layer] | {layer}
    wrong = sorted(n for n in _ccd_imports(module) if _layer(n) not in allowed)
    assert wrong == [], f"{module} ({layer}) may import only {sorted(allowed)}"


def test_engine_parts_never_import_the_facade():
    parts = [m for m in MODULES if _layer(m) == "ccd.engine" and m != "ccd.engine.control"]
    assert [m for m in parts if "ccd.engine.control" in _ccd_imports(m)] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "ccd.core"))
def test_the_core_does_no_io_reads_no_clock_keeps_no_globals(module):
    banned = sorted(
        name
        for name in IMPORTS[module]
        if any(name == f or name.startswith(f + ".") for f in CORE_FORBIDDEN)
    )
    assert banned == [], f"{module} imports {banned}"
    clock_reads = [
        f"line {node.lineno}"
        for node in ast.walk(TREES[module])
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("now", "utcnow", "today")
    ]
    assert clock_reads == [], f"{module} reads the clock: {clock_reads}"
    assert not any(isinstance(node, ast.Global) for node in ast.walk(TREES[module]))


def test_no_import_cycles():
    graph = {module: _ccd_imports(module) for module in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_module_is_longer_than_a_reader_takes_in():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > LONGER.get(name, MAX_LINES)
    }
    assert long == {}, f"split these modules (at most {MAX_LINES} lines): {long}"
