"""Byte-stream scanners: a serial port, a pseudo-terminal, a TCP bridge.

- ``serial://<path>?baudrate=&bytesize=&parity=&stopbits=&suffix=&prefix=``
  reads a serial scanner through pyserial (``link_serial``); unplugging
  becomes state ``error``/``offline`` until the path (best a
  /dev/serial/by-id link) opens again.
- ``pty://<link path>?suffix=`` creates a pseudo-terminal and points
  ``<link path>`` at its slave (``link_pty``), so anything can play the
  scanner by writing codes into that tty (``posd scan`` does, through
  ``write_scan``). Used for demos, tests and benchmarks; the data path is
  the same as a real scanner's.
- ``tcp://host:port`` connects to a scanner bridge (``link_tcp``).

Each is a ``LinkScanner``: the link is the medium, the base frames its bytes.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from . import link_pty, link_serial, link_tcp
from .base import Scanner
from .errors import DeviceError
from .link import READ_CHUNK, Link

__all__ = ["LinkScanner", "SerialScanner", "PtyScanner", "TcpScanner", "write_scan"]


class LinkScanner(Scanner):
    """A scanner whose bytes come through a ``Link``; a driver fills in ``_connect()``.

    While reads are quiet the link is asked, every ``LINK_CHECK_S``, whether
    its device vanished without an error (``Link.check``).
    """

    LINK_CHECK_S = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._link: Any = None
        self._next_check = 0.0

    def _connect(self) -> Any:
        """Open the link to the scanner; raise ``DeviceError`` when it cannot be reached."""
        raise NotImplementedError

    def _open(self) -> None:
        self._link = self._connect()
        self._link.stop_fd = self.stop_fd

    def _current_link(self) -> Any:
        if self._link is None:
            raise DeviceError("offline", "not open")
        return self._link

    def _read(self, timeout: float) -> bytes:
        link: Link = self._current_link()
        data = link.read(timeout, READ_CHUNK)
        if not data:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self.LINK_CHECK_S
                link.check()
        return data

    def _close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()


class SerialScanner(LinkScanner):
    """A scanner on a serial port (or any pyserial URL such as ``loop://``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The port's timeout is set once (changing it reconfigures the port):
        # the shortest wait the framer can need.
        if self.framer.idle_flush_s is not None:
            self.read_timeout = min(self.read_timeout, self.framer.idle_flush_s)

    def _connect(self) -> Link:
        return link_serial.open_port(self.url.fs_path, self.options, timeout=self.read_timeout)


class PtyScanner(LinkScanner):
    """A pseudo-terminal whose slave is reachable through a symlink at the URL's path."""

    @property
    def slave_name(self) -> str | None:
        return self._link.slave_name if self._link is not None else None

    def _connect(self) -> Link:
        return link_pty.open_pty(self.url.fs_path)


class TcpScanner(LinkScanner):
    """A client of a scanner bridge: frames the byte stream, reconnects on close."""

    def _connect(self) -> Link:
        return link_tcp.connect(self.url.host or "", self.url.port or 0,
                                timeout=float(self.options.get("timeout", 2.0)))


def write_scan(link_path: str, code: str, suffix: bytes = b"\r") -> int:
    """Play the scanner: write ``code`` + ``suffix`` into the tty at ``link_path``.

    Returns the number of bytes written. Refuses anything but a character
    device, so a misconfigured path never blocks on a FIFO or edits a file.
    """
    payload = code.encode("utf-8", "surrogateescape") + suffix  # as a scanner sends a QR's text; the framer folds any digits
    if not stat.S_ISCHR(os.stat(link_path).st_mode):
        raise ValueError(f"{link_path} is not a terminal device")
    fd = os.open(link_path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not os.isatty(fd):
            raise ValueError(f"{link_path} is not a terminal device")
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return len(payload)
