"""The layering of swarm/ and workers/ stays true: imports point one way, no module imports itself
back through others, and no module grows past what one reader can hold.

docs/architecture.md draws the same layers. Every import counts, including the ones inside
functions and under ``TYPE_CHECKING``: a lazy import is still a dependency, it only hides it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Each unit (a top-level module of ``swarm``, a subpackage of it, or ``workers``) and its layer.
#: A unit may import only units of a strictly lower layer: two units on one layer know nothing of
#: each other (the store does not call the model client, the API does not render the terminal).
LAYERS: dict[str, int] = {
    "constants": 0,
    "exceptions": 0,
    "provider_profiles": 0,
    "config": 1,
    "retry": 1,
    "logs": 1,
    "hardening": 1,
    "threaded_server": 1,
    # The package itself re-exports the settings and the error root for library users.
    "swarm": 2,
    "domain": 2,
    "store": 3,
    "llm": 3,
    "tools": 4,
    "sim": 4,
    "engine": 5,
    "dispatch": 6,
    "runtime": 7,
    "workers": 7,
    "runs": 8,
    "api": 9,
    # The CLI is the outermost shell: `swarm serve` starts the API, so it may import it (never the
    # other way round).
    "cli": 10,
    "__main__": 11,
}

#: No module of swarm/ or workers/ is longer than this many lines (~400; static assets aside).
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in ("swarm", "workers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return "workers" if parts[0] == "workers" else ("swarm" if len(parts) == 1 else parts[1])


def _imports(module: str, path: Path) -> Iterator[str]:
    """The swarm/workers modules that *module* imports (``from pkg import mod`` names the module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            target = name
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                yield target


GRAPH = {module: sorted(set(_imports(module, path))) for module, path in MODULES.items()}


def test_every_unit_has_a_layer() -> None:
    assert {_unit(m) for m in MODULES} <= set(LAYERS), "add the new unit to LAYERS (and to docs/architecture.md)"


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{m} → {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if _unit(m) != _unit(t) and LAYERS[_unit(t)] >= LAYERS[_unit(m)]
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module: str) -> None:
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concern"


def test_the_checker_sees_a_known_edge() -> None:
    # Guards the parser itself: if it stopped resolving imports, every test above would pass.
    assert "swarm.store.statements" in GRAPH["swarm.store.store"] or any(
        "swarm.store" in t for t in GRAPH.get("swarm.engine.executor", [])
    )
