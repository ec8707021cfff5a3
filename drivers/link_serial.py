"""Serial links through pyserial: ``serial:///dev/serial/by-id/...`` (or any pyserial URL such as ``loop://``).

pyserial is imported on first open, so the other media work without it.
Unplugging shows up as ``SerialException("device reports readiness to read
but returned no data")`` or EIO, and some USB-serial adapters just go quiet:
``check()`` then looks for the device node itself. The port's timeout is
set at open and changed only when a caller asks for another one (changing
it reconfigures the port). A write fails when the port takes nothing for its
write timeout (a printer holding CTS low while its cover is open cannot hang
the print worker), however long the whole write takes at the line's rate.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Mapping

from .errors import DeviceError, ErrorMap
from .link import READ_CHUNK, Link

__all__ = ["SerialLink", "open_port"]


def open_port(path: str, settings: Mapping[str, Any], *, timeout: float,
              write_timeout: float | None = None) -> SerialLink:
    """Open ``path`` with the URL's ``baudrate``, ``bytesize``, ``parity`` and ``stopbits``.
    ``write_timeout``: how long a write may go without the port taking a byte (None: no bound)."""
    import serial

    errors = ErrorMap(foreign=(OSError, ValueError), timeouts=(serial.SerialTimeoutException,))
    with errors("open"):
        port = serial.serial_for_url(
            path,
            do_not_open=True,
            baudrate=settings.get("baudrate", 9600),
            bytesize=settings.get("bytesize", 8),
            parity=settings.get("parity", "N"),
            stopbits=settings.get("stopbits", 1),
            timeout=timeout,
            write_timeout=write_timeout,  # for a pyserial URL handler (socket://...): SerialLink.write's own
        )
        port.open()
    return SerialLink(port, path, errors, stall=write_timeout)


def _bits_a_byte(port: Any) -> float:
    """Bits on the line per byte: a start bit, the data bits, a parity bit unless none, the stop
    bits (8N1: 10; 8E1: 11, so 9600 baud carries 873 bytes a second, not 960)."""
    return 1 + port.bytesize + (port.parity != "N") + port.stopbits


class SerialLink(Link):
    WRITE_CHUNK = 1024
    POLL_S = 0.01  # a pty (or an adapter) may not say when it has room again: ask anew this often

    def __init__(self, port: Any, path: str, errors: ErrorMap, *, stall: float | None = None) -> None:
        self.port, self.path, self.errors = port, path, errors
        self.stall = stall
        baud = getattr(port, "baudrate", None)
        self.bytes_per_s = baud / _bits_a_byte(port) if isinstance(baud, (int, float)) and baud > 0 else None

    def read(self, timeout: float, size: int = READ_CHUNK) -> bytes:
        with self.errors("read"):
            if timeout != self.port.timeout:
                self.port.timeout = timeout
            data = self.port.read(1)
            if data and size > 1:
                waiting = self.port.in_waiting  # raises EIO once the device is gone
                if waiting:
                    data += self.port.read(min(waiting, size - 1))
            return data

    def write(self, data: bytes) -> None:
        with self.errors("write"):
            fd = getattr(self.port, "fd", None)  # a device node (pyserial keeps it non-blocking)
            if self.stall is None or not isinstance(fd, int):
                self.port.write(data)
            else:
                self._write_while_taken(fd, memoryview(data))
            self.port.flush()

    def _write_while_taken(self, fd: int, view: memoryview) -> None:
        """pyserial's write timeout is the whole write's (and it may raise it after writing): a slip
        longer than it on the line failed every time, and was sent again. This writes what the port
        takes as it takes it, and gives up only after ``stall`` seconds in which it took nothing."""
        taken_at = time.monotonic()
        while view:
            try:
                n = os.write(fd, view[:self.WRITE_CHUNK])  # what the port took now
            except BlockingIOError:  # no room
                n = 0
            if n:
                view, taken_at = view[n:], time.monotonic()
            elif time.monotonic() - taken_at >= self.stall:  # type: ignore[operator]
                raise TimeoutError("write: the port took nothing")  # the ErrorMap's timeout, as pyserial's
            else:
                time.sleep(self.POLL_S)

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            self.port.reset_input_buffer()

    def check(self) -> None:
        if self.path.startswith("/") and not os.path.exists(self.path):
            raise DeviceError("offline", "read: device node vanished")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.port.close()
