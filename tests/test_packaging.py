"""The Debian package's inputs agree with the project: the lock pins every runtime
dependency (and nothing for tests), the tests run what the lock pins, the package
version is posd's. The package itself is built and installed in test_install.py.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import posd

ROOT = Path(__file__).parent.parent
LOCK = (ROOT / "packaging" / "requirements.txt").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, str]:
    return {canonicalize_name(name): version
            for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", LOCK, re.M)}


def test_the_lock_pins_every_runtime_dependency_with_hashes():
    pinned = pins()
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in packaging/requirements.txt: run `make lock`"
        assert req.specifier.contains(Version(pinned[name]), prereleases=True), \
            f"{req.name}=={pinned[name]} in the lock does not satisfy {req}: run `make lock`"
    # every pin carries hashes: pip --require-hashes refuses the lock otherwise
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.split("\n", 2)[2])
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)


def test_the_lock_has_no_test_tools():
    test_only = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert not test_only & pins().keys()


def test_the_tests_run_the_versions_the_package_ships():
    """scripts/bootstrap installs the venv with the lock as constraints."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {name: (version, installed.get(name)) for name, version in pins().items()
              if installed.get(name) != version}
    assert not differ, f"lock vs installed: {differ}: run scripts/bootstrap"


def test_package_version_is_posds_version():
    changelog = (ROOT / "debian" / "changelog").read_text().split("\n", 1)[0]
    version = re.match(r"posd \(([^)]+)\)", changelog).group(1)
    assert version.split("-")[0].split("+")[0] == posd.__version__ == PYPROJECT["project"]["version"]
