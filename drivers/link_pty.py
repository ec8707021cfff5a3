"""Pseudo-terminal links: the virtual scanner of ``pty://PATH``.

posd creates a pseudo-terminal and points ``PATH`` (a symlink) at its slave,
so anything can play the scanner by writing codes into that tty (``posd
scan`` does). The slave is put in raw mode (no CR/NL translation, no echo)
and kept open by us, so the master never sees EIO when writers come and go.
``check()`` puts the symlink back if someone removed it (``/run`` cleaned).

A symlink already at ``PATH`` is replaced: it is the link of a posd that was
killed (SIGKILL, a power cut) and points at a pseudo-terminal that died with
it, or one somebody left there. Anything else at ``PATH`` (a file, a folder,
a device node) is not posd's to overwrite: the scanner stays in error, and
the log says what is in the way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import tty

from .errors import DeviceError, ErrorMap
from .link import READ_CHUNK, Link

__all__ = ["PtyLink", "open_pty"]

log = logging.getLogger(__name__)

# The link is a file posd makes in a folder store IT chose, not a device node behind a udev rule.
ERRORS = ErrorMap(denied="permission denied (posd must be able to write the link's folder; in a sticky "
                         "folder such as /tmp, a link another user left there cannot be replaced)")


def open_pty(link_path: str) -> PtyLink:
    """A new pseudo-terminal whose slave ``link_path`` points at (a symlink there is replaced)."""
    _check_link_path(link_path)
    with ERRORS("create pty"):
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            name = os.ttyname(slave)
            os.makedirs(os.path.dirname(os.path.abspath(link_path)), exist_ok=True)
            _point_symlink(link_path, name)
        except OSError:
            os.close(master)
            os.close(slave)
            raise
    log.info("pty %s linked at %s", name, link_path)
    return PtyLink(master, slave, name, link_path)


class PtyLink(Link):
    def __init__(self, master: int, slave: int, slave_name: str, link_path: str) -> None:
        self.master, self.slave, self.slave_name, self.link_path = master, slave, slave_name, link_path
        self._last_foreign: str | None = None

    def read(self, timeout: float, size: int = READ_CHUNK) -> bytes:
        with ERRORS("read"):
            return os.read(self.master, size) if self._readable(self.master, timeout) else b""

    def check(self) -> None:
        """Re-create our symlink if someone removed it, or point it back if it points elsewhere now (a
        link at the path is replaced, as at the start: what is typed into it must reach posd).
        Something else put in its place (a file, a folder) is this scanner's error, as at the start:
        nothing typed can reach posd until it is moved away, and then the link is made again."""
        try:
            target = os.readlink(self.link_path)
        except FileNotFoundError:
            log.warning("%s vanished, re-creating it", self.link_path)
            with ERRORS("re-create the link"):
                _point_symlink(self.link_path, self.slave_name)
            return
        except OSError:
            _check_link_path(self.link_path)  # raises, naming what is there; an unreadable folder passes
            return
        if target != self.slave_name:
            if target != self._last_foreign:  # once per other target: two posds given one path would fight
                self._last_foreign = target
                log.warning("%s pointed at %s, not at this scanner's pty %s: pointing it back", self.link_path,
                            target, self.slave_name)
            with ERRORS("point the link back"):
                _point_symlink(self.link_path, self.slave_name)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if os.readlink(self.link_path) == self.slave_name:
                os.unlink(self.link_path)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device node"),
          (stat.S_ISBLK, "a device node"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def link_path_holder(link_path: str) -> str | None:
    """What holds a pty's link path that posd does not replace ("a file", "a folder", ...); None when
    nothing or a symlink is there (posd replaces a link). posd doctor and posd scan say the same."""
    try:
        mode = os.lstat(link_path).st_mode
    except OSError:
        return None  # nothing there (or its folder is unreadable: creating the link says so)
    if stat.S_ISLNK(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "something else")


def _check_link_path(link_path: str) -> None:
    """Refuse a path that holds something other than a symlink; say what a replaced link pointed at."""
    kind = link_path_holder(link_path)
    if kind is None and os.path.islink(link_path):
        with contextlib.suppress(OSError):
            target = os.readlink(link_path)
            if os.path.exists(link_path):
                log.warning("%s points at %s, which exists (its number used again, or another posd "
                            "running on this config): replacing it", link_path, target)
            else:
                log.info("%s points at %s, which is gone (posd was not stopped cleanly): replacing it",
                         link_path, target)
    if kind is None:
        return
    raise DeviceError("io_error", f"create pty: {link_path} is {kind}, not a link posd made; posd does not "
                                  "replace it: move it away or name another path in the config")


def _point_symlink(link_path: str, target: str) -> None:
    """Atomically make ``link_path`` a symlink to ``target`` (temp link + rename)."""
    directory, base = os.path.split(os.path.abspath(link_path))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link_path)
    except OSError:
        os.unlink(tmp)
        raise
