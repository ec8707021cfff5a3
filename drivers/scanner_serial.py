"""Byte-stream scanners: a serial port, a pseudo-terminal, a TCP bridge.

- ``serial://<path>?baudrate=&bytesize=&parity=&stopbits=&suffix=&prefix=``
  reads a serial scanner through pyserial; unplugging shows up as
  ``SerialException("device reports readiness to read but returned no
  data")`` or EIO and becomes state ``error``/``offline`` until the path
  (best a /dev/serial/by-id link) opens again.
- ``pty://<link path>?suffix=`` creates a pseudo-terminal and points
  ``<link path>`` at its slave, so anything can play the scanner by writing
  codes into that tty (``posd scan`` does, through ``write_scan``). Used for
  demos, tests and benchmarks; the data path is the same as a real scanner.
- ``tcp://host:port`` connects to a scanner bridge and frames its stream.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import stat
import threading
import tty
from typing import Any, Mapping

from .base import DataCallback, DeviceError, Scanner, StatusCallback
from .framing import make_framer
from .url import DeviceURL

__all__ = ["StreamScanner", "SerialScanner", "PtyScanner", "TcpScanner", "write_scan", "translate_os_error"]

log = logging.getLogger(__name__)

_READ_CHUNK = 4096
_OFFLINE_ERRNOS = {
    errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO, errno.EBADF,
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
    errno.ENOTCONN, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
}
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM}
# pyserial's wording for a device that vanished (it carries no errno).
_UNPLUG_MESSAGES = ("returned no data", "device reports error", "device disconnected")


def translate_os_error(exc: BaseException, action: str) -> DeviceError:
    """Map pyserial/OS errors to our reasons: offline or io_error (detail for the log)."""
    code = getattr(exc, "errno", None)
    if code is None and isinstance(exc.__context__, OSError):
        code = exc.__context__.errno
    if code in _DENIED_ERRNOS:  # a udev rule / group problem: say so in the log
        return DeviceError("io_error", f"{action}: {os.strerror(code)}")
    if code in _OFFLINE_ERRNOS or any(m in str(exc) for m in _UNPLUG_MESSAGES):
        detail = os.strerror(code) if code else "device disconnected"
        return DeviceError("offline", f"{action}: {detail}")
    if isinstance(exc, socket.timeout):
        return DeviceError("offline", f"{action}: timed out")
    return DeviceError("io_error", f"{action}: {type(exc).__name__}")


class StreamScanner(Scanner):
    """A scanner whose bytes go through the framer built from its URL options."""

    def __init__(
        self,
        name: str,
        url: DeviceURL,
        on_data: DataCallback,
        on_status: StatusCallback | None = None,
        *,
        options: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        framer = make_framer(
            prefix=options.get("prefix", b""),
            suffix=options.get("suffix", b"\r"),
            idle_ms=options.get("idle_ms", 50),
            max_len=options.get("max_len", 4096),
        )
        super().__init__(name, url, on_data, on_status, framer=framer, **kwargs)
        self.options = dict(options)
        self.aim_ids = bool(options.get("aim", False))


class SerialScanner(StreamScanner):
    """A scanner on a serial port (or any pyserial URL such as ``loop://``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Imported here so pty:// and tcp:// work without pyserial; the
        # registry turns a missing module into "install pyserial".
        import serial

        super().__init__(*args, **kwargs)
        self._serial = serial
        self.port_name = self.url.fs_path
        self._port: Any = None
        self._next_node_check = 0.0

    def _open(self) -> None:
        timeout = self.read_timeout
        if self.framer.idle_flush_s is not None:
            timeout = min(timeout, self.framer.idle_flush_s)
        try:
            port = self._serial.serial_for_url(
                self.port_name,
                do_not_open=True,
                baudrate=self.options.get("baudrate", 9600),
                bytesize=self.options.get("bytesize", 8),
                parity=self.options.get("parity", "N"),
                stopbits=self.options.get("stopbits", 1),
                timeout=timeout,  # set once: changing it reconfigures the port
            )
            port.open()
        except (self._serial.SerialException, OSError, ValueError) as exc:
            raise translate_os_error(exc, "open") from exc
        self._port = port

    def _read(self, timeout: float) -> bytes:
        port = self._port
        if port is None:
            raise DeviceError("offline", "not open")
        try:
            data = port.read(1)
            if data:
                waiting = port.in_waiting  # raises EIO once the device is gone
                if waiting:
                    data += port.read(min(waiting, _READ_CHUNK))
            elif self._node_vanished():
                raise DeviceError("offline", "read: device node vanished")
            return data
        except (self._serial.SerialException, OSError) as exc:
            raise translate_os_error(exc, "read") from exc

    def _node_vanished(self) -> bool:
        """Some USB-serial drivers just go quiet on unplug: check the path once a second."""
        now = self._clock()
        if not self.port_name.startswith("/") or now < self._next_node_check:
            return False
        self._next_node_check = now + 1.0
        return not os.path.exists(self.port_name)

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()


class PtyScanner(StreamScanner):
    """A pseudo-terminal whose slave is reachable through a symlink.

    The slave is put in raw mode (no CR/NL translation, no echo) and kept
    open by us, so the master never sees EIO when writers come and go.
    """

    RELINK_CHECK_S = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.link_path = self.url.fs_path
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name: str | None = None
        self._next_link_check = 0.0
        self._warned_foreign_link = False

    def _open(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            name = os.ttyname(slave)
            parent = os.path.dirname(os.path.abspath(self.link_path))
            os.makedirs(parent, exist_ok=True)
            _point_symlink(self.link_path, name)
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise translate_os_error(exc, "create pty") from exc
        self._master, self._slave, self.slave_name = master, slave, name
        self._warned_foreign_link = False
        log.info("scanner %s: pty %s linked at %s", self.name, name, self.link_path)

    def _read(self, timeout: float) -> bytes:
        master = self._master
        if master is None:
            raise DeviceError("offline", "not open")
        try:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                self._check_link()
                return b""
            return os.read(master, _READ_CHUNK)
        except OSError as exc:
            raise translate_os_error(exc, "read") from exc

    def _check_link(self) -> None:
        """Re-create our symlink if someone removed it (e.g. /run was cleaned)."""
        now = self._clock()
        if now < self._next_link_check or self.slave_name is None:
            return
        self._next_link_check = now + self.RELINK_CHECK_S
        try:
            target = os.readlink(self.link_path)
        except FileNotFoundError:
            log.warning("scanner %s: %s vanished, re-creating it", self.name, self.link_path)
            _point_symlink(self.link_path, self.slave_name)
            return
        except OSError:
            return
        if target != self.slave_name and not self._warned_foreign_link:
            self._warned_foreign_link = True
            log.warning("scanner %s: %s now points elsewhere; leaving it", self.name, self.link_path)

    def _close(self) -> None:
        name = self.slave_name
        if name is not None:
            try:
                if os.readlink(self.link_path) == name:
                    os.unlink(self.link_path)
            except OSError:
                pass
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        self.slave_name = None


def _point_symlink(link_path: str, target: str) -> None:
    """Atomically make ``link_path`` a symlink to ``target`` (temp link + rename)."""
    directory, base = os.path.split(os.path.abspath(link_path))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link_path)
    except OSError:
        os.unlink(tmp)
        raise


class TcpScanner(StreamScanner):
    """A client of a scanner bridge: frames the byte stream, reconnects on close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = self.url.host or ""
        self.port = self.url.port or 0
        self.connect_timeout = float(self.options.get("timeout", 2.0))
        self._sock: socket.socket | None = None

    def _open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise translate_os_error(exc, "connect") from exc
        sock.setblocking(False)
        self._sock = sock

    def _read(self, timeout: float) -> bytes:
        sock = self._sock
        if sock is None:
            raise DeviceError("offline", "not connected")
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
            if not ready:
                return b""
            data = sock.recv(_READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise translate_os_error(exc, "read") from exc
        if not data:
            raise DeviceError("offline", "connection closed by the bridge")
        return data

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def write_scan(link_path: str, code: str, suffix: bytes = b"\r") -> int:
    """Play the scanner: write ``code`` + ``suffix`` into the tty at ``link_path``.

    Returns the number of bytes written. Refuses anything but a character
    device, so a misconfigured path never blocks on a FIFO or edits a file.
    """
    payload = code.encode("ascii") + suffix
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
