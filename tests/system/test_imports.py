"""The package's layers, checked over its own source: who may import whom, no import cycles,
and no module grown past what one reading holds.

Every ``import`` statement counts, at module level and inside functions (a lazy import is
still an arrow: it runs, and it couples the two modules). Imports are read with ``ast``, never
executed. ``importlib.import_module`` with a constant string counts too; one built from a
variable (``f"tunelab.kinds.{name}"``) cannot be resolved and is left out.

An import names its target: ``from tunelab.data.midi import grid`` is an arrow to the submodule
``tunelab.data.midi.grid``; ``from tunelab.models import build_model`` is an arrow to the package
``tunelab.models`` (its ``__init__``). Parent packages run on the way are not arrows: Python
imports a submodule of a package that is still initialising without trouble.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "tunelab"

# The house aims at ~400 lines a module (one reading); the test fails only past this.
MAX_LINES = 450

COMMANDS = ("tunelab.train", "tunelab.generate", "tunelab.evaluate", "tunelab.ranking")


@dataclass(frozen=True)
class Arrow:
    """One import: ``source`` (a module) imports ``target`` at ``line``."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} imports {self.target} ({module_path(self.source)}:{self.line})"


def module_name(path: Path, root: Path) -> str:
    """tunelab/data/midi/grid.py -> tunelab.data.midi.grid; a package's __init__.py -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_path(name: str, root: Path = ROOT) -> str:
    """The file of a module name, relative to the repository (for messages)."""
    rel = Path(*name.split("."))
    file = rel / "__init__.py" if (root.parent / rel).is_dir() else rel.with_suffix(".py")
    return str(file)


def find_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``: {dotted name: file}."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve_relative(source: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``source``."""
    base = source.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


def imports_of(source: str, file: Path, modules: dict[str, Path], top: str) -> list[Arrow]:
    """The arrows out of one module: every import of a module of package ``top``, anywhere in
    the file (module level, functions, ``if TYPE_CHECKING``, try blocks)."""
    tree = ast.parse(file.read_text(), filename=str(file))
    is_package = file.name == "__init__.py"
    arrows = []

    def add(target: str, line: int) -> None:
        if target == top or target.startswith(top + "."):
            arrows.append(Arrow(source, target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(source, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from pkg import sub` imports the submodule when there is one
                add(sub if sub in modules else base, node.lineno)
        elif isinstance(node, ast.Call) and _is_import_module(node.func):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value, node.lineno)
    return arrows


def _is_import_module(func: ast.expr) -> bool:
    """importlib.import_module(...) or a bare import_module(...)."""
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id == "import_module"


def import_graph(root: Path) -> list[Arrow]:
    """All arrows between the modules of the package at ``root``, self-imports left out."""
    modules = find_modules(root)
    arrows = []
    for name, file in modules.items():
        for a in imports_of(name, file, modules, root.name):
            if a.target != a.source:
                arrows.append(a)
    return arrows


def cycles(arrows: list[Arrow]) -> list[list[str]]:
    """The import cycles: each strongly connected component of more than one module, as one
    closed path through it (first module repeated at the end), found with Tarjan's algorithm."""
    graph: dict[str, list[str]] = {}
    for a in arrows:
        graph.setdefault(a.source, []).append(a.target)
        graph.setdefault(a.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:  # recursion depth is bounded by the package's ~70 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(graph, comp) for comp in sorted(components)]


def _cycle_path(graph: dict[str, list[str]], comp: list[str]) -> list[str]:
    """A closed path from comp[0] back to itself inside the component (breadth first, so the
    shortest such path)."""
    inside = set(comp)
    start = comp[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in graph[v]:
                if w not in inside:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {comp}")  # Tarjan says there is one


def in_layer(name: str, *layers: str) -> bool:
    """Whether module ``name`` is one of ``layers`` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in layers)


def broken(arrows: list[Arrow], sources: tuple[str, ...], allowed) -> list[str]:
    """The arrows out of ``sources`` whose target ``allowed(target)`` refuses, as messages."""
    return [str(a) for a in arrows if in_layer(a.source, *sources) and not allowed(a.target)]


def explain(rule: str, messages: list[str]) -> str:
    return rule + ":\n  " + "\n  ".join(messages)


# -- the checker checks what it claims (a package made for the test) -----------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checker_sees_every_form_of_import_and_finds_cycles(tmp_path):
    root = _package(
        tmp_path,
        {
            "a/__init__.py": "from pkg.a.b import f\n",
            "a/b.py": "def f():\n    from pkg.c import g\n    return g\n",
            "a/rel.py": "from . import b\nfrom .. import c\nfrom .b import f\n",
            "c.py": (
                "import importlib\nimport os\n\n"
                "def g():\n    import pkg.a as a\n    return a\n\n"
                "def h(name):\n"
                "    importlib.import_module('pkg.d')\n"
                "    return importlib.import_module(f'pkg.{name}')\n"
            ),
            "d.py": "from pkg.a import b, f\nif False:\n    from pkg import e\n",
            "e.py": "",
        },
    )
    arrows = import_graph(root)
    edges = {(a.source, a.target) for a in arrows}
    assert edges == {
        ("pkg.a", "pkg.a.b"),
        ("pkg.a.b", "pkg.c"),  # inside a function
        ("pkg.a.rel", "pkg.a.b"),  # `from . import b` and `from .b import f`
        ("pkg.a.rel", "pkg.c"),  # `from .. import c`
        ("pkg.c", "pkg.a"),  # `import pkg.a as a`: the package's __init__
        ("pkg.c", "pkg.d"),  # import_module with a constant; the f-string is left out
        ("pkg.d", "pkg.a.b"),  # `from pkg.a import b`: the submodule
        ("pkg.d", "pkg.a"),  # `from pkg.a import f`: a name of the __init__
        ("pkg.d", "pkg.e"),  # under `if`
    }
    found = cycles(arrows)
    assert found == [["pkg.a", "pkg.a.b", "pkg.c", "pkg.a"]]
    assert cycles([a for a in arrows if a.source != "pkg.c"]) == []  # every loop runs through c
    line = next(a for a in arrows if a.source == "pkg.a.b")
    assert str(line) == "pkg.a.b imports pkg.c (pkg/a/b.py:2)"


def test_two_cycles_are_reported_apart(tmp_path):
    root = _package(
        tmp_path,
        {
            "x.py": "import pkg.y\n",
            "y.py": "def f():\n    import pkg.x\n",
            "p.py": "from pkg import q\n",
            "q.py": "from pkg import r\n",
            "r.py": "from pkg import p\n",
        },
    )
    assert cycles(import_graph(root)) == [
        ["pkg.p", "pkg.q", "pkg.r", "pkg.p"],
        ["pkg.x", "pkg.y", "pkg.x"],
    ]


# -- the rules, over tunelab ----------------------------------------------------------


@pytest.fixture(scope="module")
def arrows() -> list[Arrow]:
    found = import_graph(ROOT)
    assert len(found) > 50, "the checker found too few imports: is ROOT the package?"
    return found


def test_models_import_no_config_cli_data_metrics_runs_or_kinds(arrows):
    above = (
        "tunelab.config",
        "tunelab.cli",
        "tunelab.data",
        "tunelab.metrics",
        "tunelab.run",
        "tunelab.kinds",
        "tunelab.report",
        *COMMANDS,
    )
    bad = broken(arrows, ("tunelab.models",), lambda t: not in_layer(t, *above))
    assert not bad, explain("models/ takes plain arguments and imports nothing above it", bad)


def test_metrics_import_only_metrics(arrows):
    bad = broken(arrows, ("tunelab.metrics",), lambda t: in_layer(t, "tunelab.metrics"))
    assert not bad, explain(
        "metrics/ holds pure functions and imports no other part of tunelab "
        "(models, kinds, run, data, cli, config or the commands)",
        bad,
    )


def test_nothing_imports_the_cli(arrows):
    bad = [
        str(a)
        for a in arrows
        if in_layer(a.target, "tunelab.cli")
        and not in_layer(a.source, "tunelab.cli")
        and a.source != "tunelab.__main__"
    ]
    assert not bad, explain("only cli/ and tunelab/__main__.py import tunelab.cli", bad)


def test_no_import_cycles(arrows):
    found = cycles(arrows)
    where = {(a.source, a.target): a.line for a in arrows}
    described = [
        " -> ".join(
            f"{m} (line {where[(m, path[i + 1])]})" if i + 1 < len(path) else m
            for i, m in enumerate(path)
        )
        for path in found
    ]
    assert not found, explain(
        "import cycles (imports inside functions count); each path starts and ends at the "
        "same module, with the line of each import",
        described,
    )


def test_modules_fit_in_one_reading():
    sizes = {name: len(p.read_text().splitlines()) for name, p in find_modules(ROOT).items()}
    big = [f"{module_path(n)}: {k} lines" for n, k in sorted(sizes.items()) if k >= MAX_LINES]
    assert not big, explain(
        f"modules stay under {MAX_LINES} lines (the house aims at ~400: split by topic)", big
    )
