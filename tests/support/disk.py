"""A small tmpfs: a real file system that really fills, for full-disk tests (needs root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mount: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``mount`` (created), unmounted afterwards; skips the test
    where mounting is not possible (not root, no mount)."""
    mount.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount)],
                         capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def fill(path: Path, most: int = 256 * 2**20) -> int:
    """Write ``path`` until its file system is full (``most`` bytes at most), as a runaway log
    would, down to its last block; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 4096, 512):
            try:
                while written < most:
                    written += f.write(b"\0" * size)
            except OSError:
                continue
    return written
