"""python-escpos, imported the way a daemon needs it.

``escpos.capabilities`` calls ``logging.basicConfig()`` at import and keeps a
pickled profile cache in a fresh temp directory per process unless told
otherwise; this module points the cache at a private directory and undoes
the logging side effects. Everything in posd imports python-escpos from here.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from typing import Iterator

__all__ = ["CAPABILITIES", "get_profile", "EscposError", "Dummy", "keep_root_logger"]


@contextlib.contextmanager
def keep_root_logger() -> Iterator[None]:
    """Undo handlers python-escpos adds to the root logger.

    ``escpos.capabilities`` calls ``logging.basicConfig()`` at import, and the
    printer classes log through module-level ``logging.info()``, which does
    the same when the root logger has no handler yet. Logging setup is the
    daemon's business, not a library's.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)


def _capabilities_cache_dir() -> str:
    """A private directory for python-escpos' pickled capabilities, one per Python environment.

    Without one it creates a new temp dir per process; and a pickle loaded
    from a directory others can write to would run their code. Per
    environment (sys.prefix), because python-escpos trusts any pickle newer
    than its own capabilities file: another install's pickle would hand this
    one that install's printer profiles.
    """
    if os.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
        base = os.path.join(os.environ["CACHE_DIRECTORY"].split(":")[0], "escpos")
    else:
        home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(home, "posd", "escpos")
    path = os.path.join(base, hashlib.sha256(sys.prefix.encode()).hexdigest()[:16])
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        pass
    if _private(path):
        return path
    scratch = tempfile.mkdtemp(prefix="posd-escpos-")  # this process's alone, gone when it ends
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


def _private(path: str) -> bool:
    """A folder this user owns and no one else may write: its pickle is ours to load and to write."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


# Order matters: the variable is read when escpos.capabilities is first imported. One inherited from a
# posd process of another user (`posd doctor` run through setpriv or sudo -u from a root posd's child) is
# not this user's to write: python-escpos would fail its import writing the pickle there.
if not _private(os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR") or ""):
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = _capabilities_cache_dir()


@contextlib.contextmanager
def _pickle_lock(folder: str) -> Iterator[None]:
    """Held while python-escpos reads or writes its pickle: it writes the file in place (open "wb"),
    so a process starting while another writes it would read a truncated pickle and fail to import."""
    try:
        fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:  # a read-only cache: python-escpos falls back on its own
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _temp_folders_within(folder: str) -> Iterator[None]:
    """escpos.capabilities makes a temp folder at import even with the variable set (it is the default
    of its ``environ.get``): each posd process, a `posd doctor` too, left an empty /tmp/tmpXXXXXXXX.
    Made inside a folder of ours instead, it goes with that folder once the import is done."""
    try:
        scratch = tempfile.mkdtemp(prefix=".import-", dir=folder)
    except OSError:  # a read-only cache: the import makes its folder where it would
        yield
        return
    saved, tempfile.tempdir = tempfile.tempdir, scratch
    try:
        yield
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch, ignore_errors=True)


with keep_root_logger(), _pickle_lock(os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"]), \
        _temp_folders_within(os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"]):
    from escpos.capabilities import CAPABILITIES, get_profile
    from escpos.exceptions import Error as EscposError
    from escpos.printer import Dummy
