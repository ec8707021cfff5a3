"""Import boundaries (docs/architecture.md) and every module importing on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = {"posd": ROOT / "posd", "posd.drivers": ROOT / "drivers", "posd.sync": ROOT / "sync"}

# package prefix -> what it may import from posd.*
ALLOWED = {
    "posd.core": ("posd.core",),
    "posd.storage": ("posd.core", "posd.storage", "posd.sync.lane.ports", "posd.sync.protocol.ids"),
    "posd.drivers": ("posd.core", "posd.drivers"),
    # the wire protocol imports neither side
    "posd.sync.protocol": ("posd.sync.protocol",),
    # the lane's side never imports the reference central
    "posd.sync.lane": ("posd.core", "posd.sync.protocol", "posd.sync.lane", "posd.faults"),
    # the reference central is a service of its own: nothing of the lane, the API or the daemon
    "posd.sync.central": ("posd.sync.protocol", "posd.sync.central"),
    # the conformance kit speaks the protocol only: it checks any central, the reference one included
    "posd.sync.conformance": ("posd.sync.protocol", "posd.sync.conformance"),
    "posd.lane": ("posd.core", "posd.storage", "posd.lane", "posd.faults"),
    # the API answers a request HTTP cannot parse as central does (posd.sync.protocol.http.unparseable_answer)
    "posd.api": ("posd.core", "posd.lane", "posd.api", "posd.sync.protocol.http"),
    # store IT's checks read what the daemon uses, never the lane's services or the API
    "posd.doctor": ("posd.core", "posd.config", "posd.storage", "posd.drivers", "posd.sync.lane",
                    "posd.sync.protocol", "posd.doctor"),
}
# Who may import the reference central besides itself: the `posd central` command.
CENTRAL_USERS = ("posd.cli",)
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


def test_only_the_cli_imports_the_reference_central():
    users = {module for module, path in modules()
             if not module.startswith("posd.sync.central")
             and any(i.startswith("posd.sync.central") for i in posd_imports(path))}
    assert users <= set(CENTRAL_USERS), f"{sorted(users - set(CENTRAL_USERS))} import the reference central"


@pytest.mark.parametrize("folder", [ROOT / "posd" / "core", ROOT / "sync" / "protocol"], ids=["core", "protocol"])
def test_imports_only_the_standard_library(folder):
    third_party = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                third_party |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                third_party.add(node.module.split(".")[0])
    assert third_party - {"posd"} <= set(sys.stdlib_module_names)


@pytest.mark.long  # seconds of real time: CI runs it with the fault runs (make test-faults)
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


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (drivers import their libraries lazily)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# How bytes reach a device. Only the link modules (one per medium) open one; discovery only lists them.
DEVICE_IO = {"socket", "select", "tty", "termios", "serial", "usb", "evdev"}
LINK_USERS = {"discovery"}
# Byte-level protocols: pure functions from bytes or events to values (ENGINEERING.md habit 4).
PURE_PROTOCOLS = ["escpos_tokens", "escpos_text", "printer_status", "framing", "track", "keymaps", "symbology"]


def test_only_the_link_modules_reach_devices():
    for path in sorted((ROOT / "drivers").glob("*.py")):
        if path.stem.startswith("link") or path.stem in LINK_USERS:
            continue
        io = {n for n in imported_names(path) if n.split(".")[0] in DEVICE_IO}
        assert not io, f"drivers/{path.name} imports {sorted(io)}: open devices through a drivers/link_*.py module"


@pytest.mark.parametrize("stem", PURE_PROTOCOLS)
def test_byte_protocols_do_no_io(stem):
    names = imported_names(ROOT / "drivers" / f"{stem}.py")
    io = {n for n in names if n.split(".")[0] in DEVICE_IO | {"os", "threading", "subprocess", "time"}}
    drivers = {n for n in names if n.startswith("posd.drivers")}
    assert not io and not drivers, f"{stem} is a pure protocol but imports {sorted(io | drivers)}"
    relative = [node.module for node in ast.walk(ast.parse((ROOT / "drivers" / f"{stem}.py").read_text()))
                if isinstance(node, ast.ImportFrom) and node.level == 1]
    assert set(relative) <= {"codepages", "escpos_tokens", "framing", "symbology"}, (stem, relative)


def test_every_folder_of_the_tree_is_an_installed_package():
    """A folder missing from pyproject's package list works in the editable checkout and is
    absent from the wheel (and setuptools warns about it): list every folder that holds files."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {name: str(folder.relative_to(ROOT)) for name, folder in PACKAGES.items()}
    folders = set()
    for package, root in PACKAGES.items():
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.parent.relative_to(root).parts
                if not (package == "posd" and rel[:1] in (("drivers",), ("sync",))):
                    folders.add(".".join([package, *rel]))
    assert folders == set(setuptools["packages"])


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
