"""File links: a printer device file (``/dev/usb/lp0``) or, for tests and spools, a plain file.

A path under /dev (but /dev/shm) that does not exist is a printer unplugged (offline), never a file to create.

A character device is opened read-write and non-blocking, so status answers
can be read back; write-only when the posd user may only write to it. A
regular file is truncated and written (one job per open), with no status.
Writes are bounded by the link's timeout: a printer that stops taking data
(cover open) must not hang the print worker.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time

from .errors import DeviceError, ErrorMap
from .link import READ_CHUNK, Link

__all__ = ["FdLink", "open_file"]

ERRORS = ErrorMap()


def open_file(path: str, *, timeout: float) -> FdLink:
    with ERRORS(path):
        mode = os.stat(path).st_mode if os.path.exists(path) else 0
        if stat.S_ISFIFO(mode):
            # A named pipe (a print spooler's): opened blocking, it waited for a reader for ever and the
            # print worker with it. Without a reader this is ENXIO: offline, held, tried again.
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            return FdLink(fd, path, timeout, readable=False)
        if not stat.S_ISCHR(mode):
            # A device node that is gone (the printer unplugged or switched off) is offline: a plain
            # file made in its place took the slips as printed and stood where the node comes back.
            real = os.path.realpath(path)
            node = real.startswith("/dev/") and not real.startswith("/dev/shm/")  # /dev/shm: files, not nodes
            create = 0 if mode == 0 and node else os.O_CREAT
            fd = os.open(path, os.O_WRONLY | create | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            return FdLink(fd, path, timeout, readable=False)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            readable = True
        except PermissionError:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            readable = False
    return FdLink(fd, path, timeout, readable)


class FdLink(Link):
    def __init__(self, fd: int, path: str, timeout: float, readable: bool) -> None:
        self.fd, self.path, self.timeout, self.readable = fd, path, timeout, readable

    def read(self, timeout: float, size: int = READ_CHUNK) -> bytes:
        if not self.readable:
            return b""
        with ERRORS(f"{self.path}: read"):
            if not self._readable(self.fd, timeout):
                return b""
            try:
                return os.read(self.fd, size)
            except BlockingIOError:
                return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        with ERRORS(self.path):
            while view:
                _, ready, _ = select.select([], [self.fd], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise DeviceError("offline", f"{self.path}: write timed out")
                try:
                    view = view[os.write(self.fd, view):]
                except BlockingIOError:
                    continue

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
