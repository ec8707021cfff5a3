"""Acting as another user: a posd command run as ``nobody`` (setpriv), on files in a folder that user
can reach (pytest's own tmp_path is its owner's alone). Needs root, as CI has."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
NOBODY = pwd.getpwnam("nobody")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user (setpriv) needs root")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder every user may enter and read (0755), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="posd-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def posd_as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m posd ARGS`` as nobody:nogroup, exactly as store IT would run it with setpriv."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--init-groups",
                           sys.executable, "-m", "posd", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
