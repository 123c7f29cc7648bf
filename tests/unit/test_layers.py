"""The house's shape, checked: pdr's import graph is layered and every module stays small.

Layers, top to bottom (docs/extending.md):

    entry points (run, report, review, dryrun, export, rollout)
      -> runner (runner, results)
        -> executor
          -> strategies
            -> engines, evaluation, data, tracking
              -> config, errors, seeding, jsonl

A module may import from its own unit and from any lower layer; units of the same layer may
import each other only without forming a cycle. Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pdr

PKG = Path(pdr.__file__).parent

# unit (first component below pdr) -> layer rank; higher imports lower.
RANK = {
    "run": 6,
    "report": 6,
    "review": 6,
    "dryrun": 6,
    "export": 6,
    "rollout": 6,
    "runner": 5,
    "results": 5,
    "execution_guard": 5,
    "executor": 4,
    "strategies": 3,
    "engines": 2,
    "evaluation": 2,
    "data": 2,
    "tracking": 2,
    "config": 1,
    "errors": 0,
    "jsonl": 0,
    "seeding": 0,
    "__init__": 0,
}
MAX_LINES = 600


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else parts
    return ".".join(parts)


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Every pdr module imported anywhere in `path` (function bodies included)."""
    module = module or _module_name(path)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "pdr")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "pdr":
                out.add(target)
    return out


def _graph() -> dict[str, set[tuple[str, str]]]:
    """unit -> {(imported unit, 'file: module')}"""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in sorted(PKG.rglob("*.py")):
        src = _module_name(path)
        for target in _imports(path):
            a, b = _unit(src), _unit(target)
            if a != b and b != "__init__":
                edges[a].add((b, f"{path.relative_to(PKG.parent)} imports {target}"))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in PKG.rglob("*.py")}
    unknown = sorted(units - set(RANK))
    assert not unknown, f"place these in a layer (RANK in {__file__}): {unknown}"


def test_no_import_runs_up_the_layers():
    upward = [
        why
        for a, targets in _graph().items()
        for b, why in targets
        if RANK.get(b, 99) > RANK.get(a, -1)
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(sorted(upward))


def test_no_cycle_between_units():
    edges = {a: {b for b, _ in t} for a, t in _graph().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted({f"{a} <-> {b}" for a, bs in edges.items() for b in bs if reaches(b, a, {b})})
    assert not cycles, f"import cycles between units: {cycles}"


def test_modules_stay_small():
    big = {
        str(p.relative_to(PKG.parent)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines (split them): {big}"


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    # A check that cannot fail is no check: imports inside functions and relative ones are found.
    src = tmp_path / "fake.py"
    src.write_text("import os\n\ndef f():\n    from pdr.runner import run\n    from ..executor import Executor\n")
    assert _imports(src, "pdr.tracking.fake") == {"pdr.runner", "pdr.executor"}
