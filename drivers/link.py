"""A link: one open connection to a device over one medium, bytes in and out.

Each medium has one module, used by scanners and printers alike:
``link_serial`` (pyserial), ``link_tcp``, ``link_pty`` (the virtual
scanner), ``link_usb`` (pyusb), ``link_file`` (a printer device file) and
``link_input`` (evdev, keyboard wedges). A link raises only ``DeviceError``
(its medium's ``ErrorMap`` translates the library's errors at the call);
what the bytes mean is the driver's business.
"""

from __future__ import annotations

import os
import select

from .errors import DeviceError

__all__ = ["Link", "READ_CHUNK", "StopPipe", "wait_for_input"]

READ_CHUNK = 4096


def wait_for_input(fds: list[int], timeout: float) -> set[int]:
    """Which of ``fds`` have input within ``timeout`` seconds (none at the timeout)."""
    return set(select.select(fds, [], [], timeout)[0])


class StopPipe:
    """A descriptor that turns readable once ``set()``: a device thread waiting on its own descriptor
    waits on this one too, so a stop ends the wait at once instead of at its timeout."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()

    def set(self) -> None:
        try:
            os.write(self._w, b"\0")
        except OSError:  # full: set already
            pass

    def close(self) -> None:
        """Only once the thread waiting on it has ended."""
        os.close(self.fd)
        os.close(self._w)


class Link:
    """One open connection; a driver opens one per session (scanner) or per job (printer)."""

    readable = True  # False: a write-only channel (a spool file), so status is never asked
    bytes_per_s: float | None = None  # the line's own rate when the medium has one (a serial port's baud rate)
    # The reader's stop pipe, readable once its reader is to stop: a read waiting on a descriptor
    # waits on this one too and ends at once with nothing, so a service stop does not sit out the
    # read's timeout. A serial port's read (pyserial's own wait) ends within its timeout instead.
    stop_fd: int | None = None

    def _readable(self, fd: int, timeout: float) -> bool:
        """True once ``fd`` has input within ``timeout``; False at the timeout or when stopping."""
        return fd in wait_for_input([fd] if self.stop_fd is None else [fd, self.stop_fd], timeout)

    def read(self, timeout: float, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` bytes that arrive within ``timeout`` seconds; b"" if none.

        Raise ``DeviceError("offline")`` when the device is gone.
        """
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send all of ``data``, or raise ``DeviceError`` when the device takes nothing for the link's
        write timeout: the timeout bounds a stall, not the whole write, which takes as long as the
        device needs (a Persian slip at 9600 baud: about 24 s)."""
        raise NotImplementedError

    def unsent(self) -> int | None:
        """Bytes written that the device has not taken in yet (a TCP send queue), or None: unknown."""
        return None

    def read_byte(self, timeout: float) -> int | None:
        """One answer byte (a DLE EOT status), or None."""
        data = self.read(timeout, 1)
        return data[0] if data else None

    def drain(self) -> None:
        """Discard unread input (late answers, automatic status) before asking anew."""
        try:
            for _ in range(READ_CHUNK):  # bounded: a chatty device cannot keep us here
                if not self.read(0.0):
                    return
        except DeviceError:
            return

    def check(self) -> None:
        """Called while reads are quiet: raise ``DeviceError`` if the device vanished without an error."""

    def close(self) -> None:
        """Release the connection; never raises."""
        raise NotImplementedError

    def discard(self) -> None:
        """Close, dropping what the device has not taken in yet (it is sent again, whole, later): never
        delivered after the close, when the device reads again. Never raises."""
        self.close()
