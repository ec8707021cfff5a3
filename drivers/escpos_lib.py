"""python-escpos, imported the way a daemon needs it.

``escpos.capabilities`` calls ``logging.basicConfig()`` at import and keeps a
pickled profile cache in a fresh temp directory per process unless told
otherwise; this module points the cache at a private directory and undoes
the logging side effects. Everything in posd imports python-escpos from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
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
    """A private directory for python-escpos' pickled capabilities.

    Without one it creates a new temp dir per process; and a pickle loaded
    from a directory others can write to would run their code.
    """
    if os.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
        path = os.path.join(os.environ["CACHE_DIRECTORY"].split(":")[0], "escpos")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "posd", "escpos")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="posd-escpos-")


# Order matters: the variable is read when escpos.capabilities is first imported.
if "ESCPOS_CAPABILITIES_PICKLE_DIR" not in os.environ:
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = _capabilities_cache_dir()

with keep_root_logger():
    from escpos.capabilities import CAPABILITIES, get_profile
    from escpos.exceptions import Error as EscposError
    from escpos.printer import Dummy
