"""Serial ESC/POS printers: ``serial:///dev/serial/by-id/...?baudrate=38400``.

Opened per job through pyserial with real read and write timeouts (a
printer holding CTS low while its cover is open must not hang the worker);
DLE EOT status is read on the same port before and after each job.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .base import PrinterError
from .printer_escpos import Link, LinkPrinter
from .scanner_serial import translate_os_error

__all__ = ["SerialPrinter"]


class _SerialLink(Link):
    def __init__(self, port: Any, serial_module: Any) -> None:
        self.port, self._serial = port, serial_module

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except (self._serial.SerialTimeoutException, self._serial.SerialException, OSError) as exc:
            error = translate_os_error(exc, "write")
            reason = "offline" if isinstance(exc, self._serial.SerialTimeoutException) else error.reason
            raise PrinterError(reason, error.detail, sent=True) from exc

    def read_byte(self, timeout: float) -> int | None:
        try:
            self.port.timeout = timeout
            data = self.port.read(1)
        except (self._serial.SerialException, OSError):
            return None
        return data[0] if data else None

    def drain(self) -> None:
        with contextlib.suppress(self._serial.SerialException, OSError):
            self.port.reset_input_buffer()

    def close(self) -> None:
        with contextlib.suppress(self._serial.SerialException, OSError):
            self.port.close()


class SerialPrinter(LinkPrinter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import serial  # lazily: the registry says "install pyserial"

        super().__init__(*args, **kwargs)
        self._serial = serial
        self.path = self.url.fs_path

    def _connect(self) -> Link:
        try:
            port = self._serial.serial_for_url(
                self.path,
                baudrate=self.options.get("baudrate", 9600),
                bytesize=self.options.get("bytesize", 8),
                parity=self.options.get("parity", "N"),
                stopbits=self.options.get("stopbits", 1),
                timeout=self.STATUS_TIMEOUT_S,
                write_timeout=self.timeout,
            )
        except (self._serial.SerialException, OSError, ValueError) as exc:
            error = translate_os_error(exc, "open")
            raise PrinterError(error.reason, error.detail) from exc
        return _SerialLink(port, self._serial)
