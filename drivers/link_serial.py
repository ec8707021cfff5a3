"""Serial links through pyserial: ``serial:///dev/serial/by-id/...`` (or any pyserial URL such as ``loop://``).

pyserial is imported on first open, so the other media work without it.
Unplugging shows up as ``SerialException("device reports readiness to read
but returned no data")`` or EIO, and some USB-serial adapters just go quiet:
``check()`` then looks for the device node itself. The port's timeout is
set at open and changed only when a caller asks for another one (changing
it reconfigures the port); writes have their own timeout, so a printer
holding CTS low while its cover is open cannot hang the print worker.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Mapping

from .errors import DeviceError, ErrorMap
from .link import READ_CHUNK, Link

__all__ = ["SerialLink", "open_port"]


def open_port(path: str, settings: Mapping[str, Any], *, timeout: float,
              write_timeout: float | None = None) -> SerialLink:
    """Open ``path`` with the URL's ``baudrate``, ``bytesize``, ``parity`` and ``stopbits``."""
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
            write_timeout=write_timeout,
        )
        port.open()
    return SerialLink(port, path, errors)


class SerialLink(Link):
    def __init__(self, port: Any, path: str, errors: ErrorMap) -> None:
        self.port, self.path, self.errors = port, path, errors

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
            self.port.write(data)
            self.port.flush()

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            self.port.reset_input_buffer()

    def check(self) -> None:
        if self.path.startswith("/") and not os.path.exists(self.path):
            raise DeviceError("offline", "read: device node vanished")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.port.close()
