"""Every package tunelab imports is declared in pyproject.toml and pinned in constraints.txt.

A user who installs tunelab with pip into their own environment gets only what is declared:
an import that works here because librosa happened to pull it in (numba, scipy, tqdm were
such) breaks for them after a dependency changes. The imports are read from the source, those
inside functions included.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _top_level_imports() -> dict[str, str]:
    """{top-level module: first file importing it} over the tunelab package."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "tunelab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in deps}


def _pinned() -> set[str]:
    pins = set()
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            pins.add(_norm(line.split("==")[0]))
    return pins


def test_every_imported_package_is_declared_and_pinned():
    dists = metadata.packages_distributions()  # import name -> distributions providing it
    declared, pinned = _declared(), _pinned()
    missing, unpinned = [], []
    for module, where in _top_level_imports().items():
        if module == "tunelab" or module in sys.stdlib_module_names:
            continue
        names = {_norm(d) for d in dists.get(module, [])}
        assert names, f"{module} (imported in {where}) is not installed by any distribution"
        if not names & declared:
            missing.append(f"{module} ({where}; from {sorted(names)})")
        if not names & pinned:
            unpinned.append(module)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert not unpinned, f"imported but not pinned in constraints.txt: {unpinned}"


def test_torch_stays_pinned_to_the_cpu_build():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
