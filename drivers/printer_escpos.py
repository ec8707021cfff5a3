"""ESC/POS slip printers: one link class per transport under one printer base.

- ``tcp://host:port?timeout=``  ``TcpPrinter``, raw port 9100, connect per job
- ``file:///dev/usb/lp0``       ``FilePrinter``, a printer device file
- ``serial://`` and ``usb://``  ``printer_serial`` and ``printer_usb``
- ``none``                      ``NullPrinter``, accepts and discards

Every job reads the printer's real-time status (DLE EOT, ``printer_status``)
before the first byte and after the last, on the same connection: a job is
never sent to a printer that says it is offline, and a condition that
appears during the job is reported. The transports are our own small links
rather than python-escpos' printer classes, whose status calls trust no
answer as "paper OK" and whose USB class resets the device on every open.
Rendering lives in ``escpos_render``; ``preview://`` in ``printer_preview``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import time
from typing import Any, Callable, Mapping

from posd.core.slip_doc import SlipDocument

from .base import DeviceState, Printer, PrinterError, StatusCallback
from .escpos_render import (
    _OFFLINE_ERRNOS,
    _SlipRenderer,
    check_printer_settings,
    columns_for,
    profile_code_pages,
)
from .escpos_text import escpos_to_text
from .printer_status import PrinterStatus, query_status
from .url import DeviceURL

__all__ = ["EscposPrinter", "Link", "LinkPrinter", "TcpPrinter", "FilePrinter", "NullPrinter"]

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


CLEAR_BUFFERS = b"\x10\x14\x08\x01\x03\x14\x01\x06\x02\x08"  # DLE DC4 fn=8
DRAWER_KICK = b"\x1bp\x00\x19\xfa"  # ESC p: pin 2, 50 ms on, 500 ms off


class Link:
    """One open connection to a printer: write bytes, read status bytes."""

    readable = True  # False: a write-only channel, so status is never asked

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read_byte(self, timeout: float) -> int | None:
        raise NotImplementedError

    def drain(self) -> None:
        """Discard unread input (late answers, automatic status) before asking anew."""
        while self.read_byte(0.0) is not None:
            pass

    def close(self) -> None:
        raise NotImplementedError


class LinkPrinter(EscposPrinter):
    """A printer reached through a ``Link`` per job, with DLE EOT before and after.

    Subclasses implement ``_connect()`` and translate their errors into
    ``PrinterError`` there and in the link. ``status=0`` in the URL skips
    the status reads for printers that misbehave on them.
    """

    STATUS_TIMEOUT_S = 0.5  # per answer; a printer that answers at all does so in milliseconds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = float(self.options.get("timeout", 5.0))  # never 0: that blocks forever
        self.ask_status = bool(self.options.get("status", True))
        self.reachable: bool | None = None
        self._link: Link | None = None

    def _connect(self) -> Link:
        raise NotImplementedError

    def _query(self, link: Link) -> PrinterStatus | None:
        if not self.ask_status or not link.readable:
            return None
        link.drain()

        def exchange(query: bytes) -> int | None:
            link.write(query)
            return link.read_byte(self.STATUS_TIMEOUT_S)

        return query_status(exchange)

    def _begin_job(self) -> PrinterStatus | None:
        self._link = self._connect()
        return self._query(self._link)

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        if self._link is None:
            raise PrinterError("offline", "not connected")
        self._link.write(data)

    def _end_job(self) -> PrinterStatus | None:
        link, self._link = self._link, None
        if link is None:
            return None
        try:
            return self._query(link)
        except PrinterError:
            return PrinterStatus(answered=False)  # unconfirmed: the base decides
        finally:
            link.close()

    def _abort_job(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                link.close()

    def check_ready(self) -> str | None:
        """Blocking: connect, read the status, disconnect. The reason it cannot print, or None.

        ``reachable`` tells afterwards whether the printer could be connected to at all.
        """
        with self._job_lock:
            try:
                link = self._connect()
            except PrinterError as exc:
                self.reachable = False
                self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
                return exc.reason
            self.reachable = True
            try:
                status = self._query(link)
            except PrinterError as exc:
                self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
                return exc.reason
            finally:
                link.close()
            self.last_status = status
            if status is not None and status.reason:
                self._set_state(DeviceState.ERROR, status.reason)
                return status.reason
            self._set_state(DeviceState.IDLE, status.warning if status else None)
            return None

    def clear_buffers(self) -> None:
        """DLE DC4 8: drop what is left of an interrupted job in the printer (real-time command)."""
        with self._job_lock:
            link = self._connect()
            try:
                link.write(CLEAR_BUFFERS)
            finally:
                link.close()

    def kick_drawer(self, *, before_send: Callable[[], None] | None = None) -> None:
        """Open the cash drawer (ESC p 0): only when the status says the printer is ready."""
        with self._job_lock:
            link = self._connect()
            try:
                status = self._query(link)
                if status is not None and status.reason:
                    raise PrinterError(status.reason, "status before the drawer kick")
                if before_send is not None:
                    before_send()
                link.write(DRAWER_KICK)
            finally:
                link.close()

    def probe(self) -> DeviceState:
        """Blocking reachability and status check; updates and returns the state."""
        self.check_ready()
        return self.state


class _SocketLink(Link):
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock, self.timeout = sock, timeout

    def write(self, data: bytes) -> None:
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except OSError as exc:  # timeouts included: a printer whose buffer stays full
            raise PrinterError("offline", f"send failed: {type(exc).__name__}", sent=True) from exc

    def read_byte(self, timeout: float) -> int | None:
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
            data = self.sock.recv(1)
        except OSError:
            return None
        return data[0] if data else None

    def drain(self) -> None:
        for _ in range(4096):  # bounded: a chatty printer cannot keep us here
            if self.read_byte(0.0) is None:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class TcpPrinter(LinkPrinter):
    """A network printer's raw port (9100), one connection per job.

    Connecting per job means a printer restarted between slips just works;
    every socket error (refused, unreachable, reset, timed out) is ``offline``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = self.url.host or ""
        self.port = self.url.port or 9100

    def _connect(self) -> Link:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise PrinterError("offline", f"connect to {self.host}:{self.port} failed") from exc
        return _SocketLink(sock, self.timeout)


class _FdLink(Link):
    """A device file (``/dev/usb/lp0``): non-blocking writes bounded by ``timeout``."""

    def __init__(self, fd: int, path: str, timeout: float, readable: bool) -> None:
        self.fd, self.path, self.timeout, self.readable = fd, path, timeout, readable

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        try:
            while view:
                left = deadline - time.monotonic()
                _, ready, _ = select.select([], [self.fd], [], max(0.0, left))
                if not ready:
                    raise PrinterError("offline", f"{self.path}: write timed out", sent=True)
                try:
                    view = view[os.write(self.fd, view):]
                except BlockingIOError:
                    continue
        except OSError as exc:
            raise _file_error(exc, self.path) from exc

    def read_byte(self, timeout: float) -> int | None:
        if not self.readable:
            return None
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            data = os.read(self.fd, 1)
        except OSError:
            return None
        return data[0] if data else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _file_error(exc: OSError, path: str) -> PrinterError:
    code = _errno_of(exc)
    reason = "offline" if code in _OFFLINE_ERRNOS else "io_error"
    detail = os.strerror(code) if code else type(exc).__name__
    return PrinterError(reason, f"{path}: {detail}", sent=True)


def _errno_of(exc: BaseException) -> int | None:
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
    return None


class FilePrinter(LinkPrinter):
    """A printer device file (``/dev/usb/lp0``); status is read back when the device answers.

    A regular file (tests, a spool) is truncated per job and has no status.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = self.url.fs_path

    def _connect(self) -> Link:
        try:
            is_device = os.path.exists(self.path) and stat.S_ISCHR(os.stat(self.path).st_mode)
            if not is_device:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                return _FdLink(fd, self.path, self.timeout, readable=False)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
                readable = True
            except PermissionError:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
                readable = False
        except OSError as exc:
            error = _file_error(exc, self.path)
            error.sent = False
            raise error from exc
        return _FdLink(fd, self.path, self.timeout, readable)


class NullPrinter(EscposPrinter):
    """``none``: renders (so a bad document fails the same way) and discards.

    ``print_document`` returns the bytes a printer would have been sent.
    """

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        return None
