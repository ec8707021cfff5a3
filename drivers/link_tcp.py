"""TCP links: a printer's raw port (9100) or a scanner bridge, ``tcp://HOST:PORT``.

Any socket error means the peer cannot be reached (``offline``): refused,
reset, unreachable, timed out. A write fails when the peer takes nothing for
the link's timeout (a printer whose buffer stays full must not hang the print
worker), however long the whole write takes; reads wait with ``select`` and
never block beyond the timeout they are given.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
import time

from .errors import DeviceError, ErrorMap
from .link import READ_CHUNK, Link

__all__ = ["TcpLink", "connect"]

ERRORS = ErrorMap(default="offline", denied="permission denied")


def connect(host: str, port: int, *, timeout: float) -> TcpLink:
    """Connect within ``timeout`` seconds; later writes get the same bound."""
    with ERRORS(f"connect to {host}:{port}"):
        sock = socket.create_connection((host, port), timeout=timeout)
    return TcpLink(sock, timeout)


class TcpLink(Link):
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock, self.timeout = sock, timeout
        self.began: float | None = None  # when the first write began (monotonic)
        self.drained_at: float | None = None  # the last time a blocked write was let on (the peer read)

    def read(self, timeout: float, size: int = READ_CHUNK) -> bytes:
        with ERRORS("read"):
            if not self._readable(self.sock.fileno(), timeout):
                return b""
            try:
                data = self.sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return b""
        if not data:
            raise DeviceError("offline", "connection closed by the peer")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        with ERRORS("send"):
            self.sock.settimeout(self.timeout)
            if self.began is None:
                self.began = time.monotonic()
            blocked = False
            while view:  # send, not sendall: sendall's timeout is the whole write's, a stall's here
                took = self.sock.send(view)
                if blocked:  # the send queue was full: the peer reading is what let this send on
                    self.drained_at = time.monotonic()
                view = view[took:]
                blocked = bool(view)

    def unsent(self) -> int | None:
        """The send queue: bytes not yet acknowledged by the peer (SIOCOUTQ)."""
        try:
            return struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def discard(self) -> None:
        # A plain close leaves the send queue to the kernel, which delivers it once the printer reads
        # again: with the resent job, two slips. Linger 0 resets the connection and drops it.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()
