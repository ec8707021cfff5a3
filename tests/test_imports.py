"""Import boundaries (docs/architecture.md) and every module importing on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = {"posd": ROOT / "posd", "posd.drivers": ROOT / "drivers", "posd.sync": ROOT / "sync"}

# package prefix -> what it may import from posd.*
ALLOWED = {
    "posd.core": ("posd.core",),
    "posd.storage": ("posd.core", "posd.storage", "posd.sync.ports"),
    "posd.drivers": ("posd.core", "posd.drivers"),
    "posd.sync": ("posd.core", "posd.sync", "posd.faults"),
    "posd.lane": ("posd.core", "posd.storage", "posd.lane", "posd.faults"),
    "posd.api": ("posd.core", "posd.lane", "posd.api"),
}
# The reference central keeps its own database (docs/sync-protocol.md); it is not the lane's.
REFERENCE_CENTRAL = ("posd.sync.central",)


def modules() -> list[tuple[str, Path]]:
    found = []
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "posd" and parts and parts[0] in ("drivers", "sync"):
                continue
            found.append((".".join([package, *parts]), path))
    return found


def posd_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n == "posd" or n.startswith("posd.")}


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_import_boundaries(module, path):
    for prefix, allowed in ALLOWED.items():
        if module == prefix or module.startswith(prefix + "."):
            bad = {i for i in posd_imports(path) if i != "posd" and not i.startswith(allowed)}
            assert not bad, f"{module} may not import {sorted(bad)}"


def test_core_imports_only_the_standard_library():
    third_party = set()
    for path in (ROOT / "posd" / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                third_party |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                third_party.add(node.module.split(".")[0])
    assert third_party - {"posd"} <= set(sys.stdlib_module_names)


def test_every_module_imports_alone():
    """A fresh interpreter per module, so an import cycle hidden by import order shows."""
    names = [m for m, _ in modules() if not m.endswith("__main__")]
    procs = {n: subprocess.Popen([sys.executable, "-c", f"import {n}"], stderr=subprocess.PIPE, text=True)
             for n in names}
    failures = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        if proc.returncode:
            failures[name] = err[-1500:]
    assert not failures, failures


def _sql_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("execute", "executemany", "executescript"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n == "sqlite3" or n.startswith(("sqlite3.", "sqlite_utils")) for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {names[0]}")
    return found


def test_only_storage_runs_sql():
    """Every statement against the lane's databases is in posd/storage, one module per table group."""
    outside = []
    for module, path in modules():
        if module.startswith("posd.storage") or module.startswith(REFERENCE_CENTRAL):
            continue
        outside += _sql_calls(path)
    assert not outside, f"SQL outside posd/storage: {outside}"
    in_tx = [c for c in _sql_calls(ROOT / "posd" / "storage" / "tx.py") if "imports" not in c]
    assert in_tx == []  # the unit of work names verbs; each table group's module holds their SQL


def test_the_lane_speaks_no_http():
    """No status codes, no FastAPI, no pydantic in the lane's services: the API translates."""
    for path in (ROOT / "posd" / "lane").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"fastapi", "starlette", "pydantic", "uvicorn", "http"}, path
