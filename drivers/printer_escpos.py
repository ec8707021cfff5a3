"""ESC/POS slip printers on python-escpos: one class per transport.

- ``tcp://host:port?timeout=``  ``TcpPrinter``, raw port 9100, connect per job
- ``file:///dev/usb/lp0``       ``FilePrinter``, a printer device file
- ``none``                      ``NullPrinter``, accepts and discards

Rendering lives in ``escpos_render``; ``preview://`` in ``printer_preview``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any, Mapping

from posd.core.slip_doc import SlipDocument

from .base import DeviceState, Printer, PrinterError, StatusCallback
from .escpos_render import (
    _OFFLINE_ERRNOS,
    _SlipRenderer,
    _keep_root_logger,
    check_printer_settings,
    columns_for,
    profile_code_pages,
)
from .escpos_text import escpos_to_text
from .url import DeviceURL

with _keep_root_logger():
    from escpos.exceptions import DeviceNotFoundError
    from escpos.printer import File, Network

__all__ = ["EscposPrinter", "TcpPrinter", "FilePrinter", "NullPrinter"]

log = logging.getLogger(__name__)


# -- printers --------------------------------------------------------------
class EscposPrinter(Printer):
    """Base for ESC/POS printers: renders with the profile and paper width."""

    def __init__(
        self,
        name: str,
        url: DeviceURL,
        *,
        profile: str = "default",
        width_mm: int = 80,
        on_status: StatusCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        check_printer_settings(profile, width_mm)
        super().__init__(name, url, profile=profile, width_mm=width_mm, on_status=on_status)
        self.columns = columns_for(profile, width_mm)
        self.options = dict(options or {})

    def render(self, doc: SlipDocument) -> bytes:
        return _SlipRenderer(doc, self.profile, self.columns).render()

    def preview_text(self, data: bytes) -> str:
        """A readable rendering of ESC/POS ``data`` as this printer would print it."""
        return escpos_to_text(data, self.columns, code_pages=profile_code_pages(self.profile))


class _Network(Network):
    """``escpos.printer.Network`` with its 3.1 ``open()`` replaced: that one
    leaks the socket when connect fails and speaks IPv4 only."""

    def open(self, raise_not_found: bool = True) -> None:
        self.device = socket.create_connection((self.host, self.port), timeout=self.timeout)


def _errno_of(exc: BaseException) -> int | None:
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
    return None


class TcpPrinter(EscposPrinter):
    """A network printer's raw port (9100), through ``escpos.printer.Network``.

    Connects per job so a printer restarted between slips just works; every
    socket error (refused, unreachable, reset, timed out) is ``offline``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = self.url.host or ""
        self.port = self.url.port or 9100
        self.timeout = float(self.options.get("timeout", 5.0))  # never 0: that blocks forever

    def _connect(self) -> Any:
        net = _Network(host=self.host, port=self.port, timeout=self.timeout, profile=self.profile)
        try:
            net.open()
        except OSError as exc:
            raise PrinterError("offline", f"connect to {self.host}:{self.port} failed") from exc
        return net

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        net = self._connect()
        try:
            net._raw(data)  # python-escpos' transport hook: sendall on the socket
        except OSError as exc:
            raise PrinterError("offline", f"send failed: {type(exc).__name__}") from exc
        finally:
            with _keep_root_logger():
                net.close()

    def probe(self) -> DeviceState:
        """Blocking reachability check (connect, close); updates and returns the state."""
        try:
            net = self._connect()
        except PrinterError as exc:
            self._set_state(DeviceState.ERROR, exc.reason)
        else:
            with _keep_root_logger():
                net.close()
            self._set_state(DeviceState.IDLE)
        return self.state


class FilePrinter(EscposPrinter):
    """A printer device file (``/dev/usb/lp0``) through ``escpos.printer.File``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = self.url.fs_path

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        dev = File(devfile=self.path, auto_flush=False, profile=self.profile)
        try:
            with _keep_root_logger():
                dev.open()
            dev._raw(data)
            dev.flush()
        except (DeviceNotFoundError, OSError) as exc:
            code = _errno_of(exc)
            reason = "offline" if code in _OFFLINE_ERRNOS else "io_error"
            detail = os.strerror(code) if code else type(exc).__name__
            raise PrinterError(reason, f"{self.path}: {detail}") from exc
        finally:
            with _keep_root_logger(), contextlib.suppress(OSError):
                dev.close()


class NullPrinter(EscposPrinter):
    """``none``: renders (so a bad document fails the same way) and discards.

    ``print_document`` returns the bytes a printer would have been sent.
    """

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        return None
