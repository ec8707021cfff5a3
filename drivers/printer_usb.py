"""USB ESC/POS printers through pyusb (libusb1): ``usb://04b8:0202?serial=...``.

Found by VID:PID (and the USB serial number when a lane has two of a kind),
never by bus/address, which change on replug. Every pyusb call gets keyword
arguments and a real timeout (``timeout=0`` would block forever when the
cover is open). The kernel's usblp driver is detached from the interface,
and ``set_configuration()`` is only called on a device that has none: on
every open it can reset the printer. Needs the udev rule in
``systemd/posd-devices.rules`` so the posd group may open the device.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from typing import Any

from .base import PrinterError
from .printer_escpos import Link, LinkPrinter
from .registry import parse_usb_id

__all__ = ["UsbPrinter"]

log = logging.getLogger(__name__)

_GONE = {errno.ENODEV, errno.ENOENT, errno.EIO, errno.EPIPE}


class _UsbLink(Link):
    def __init__(self, dev: Any, out_ep: int, in_ep: int | None, timeout: float, usb: Any) -> None:
        self.dev, self.out_ep, self.in_ep, self.timeout, self._usb = dev, out_ep, in_ep, timeout, usb
        self.readable = in_ep is not None

    def write(self, data: bytes) -> None:
        try:
            written = self.dev.write(self.out_ep, data, timeout=int(self.timeout * 1000))
        except self._usb.core.USBTimeoutError as exc:
            raise PrinterError("offline", "write timed out (printer not accepting data)", sent=True) from exc
        except self._usb.core.USBError as exc:
            raise _usb_error(exc, "write", sent=True) from exc
        if written != len(data):
            raise PrinterError("io_error", f"short write ({written} of {len(data)} bytes)", sent=True)

    def read_byte(self, timeout: float) -> int | None:
        if self.in_ep is None:
            return None
        try:
            data = self.dev.read(self.in_ep, 64, timeout=max(1, int(timeout * 1000)))
        except self._usb.core.USBError:  # timeouts included: no answer
            return None
        return data[-1] if len(data) else None  # the newest answer: stale ones came first

    def drain(self) -> None:
        for _ in range(8):
            if self.read_byte(0.001) is None:
                return

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._usb.util.dispose_resources(self.dev)


def _usb_error(exc: Any, action: str, *, sent: bool = False) -> PrinterError:
    code = getattr(exc, "errno", None)
    if code in (errno.EACCES, errno.EPERM):
        return PrinterError("io_error", f"{action}: permission denied (udev rule, group posd)", sent=sent)
    if code in _GONE:
        return PrinterError("offline", f"{action}: device gone", sent=sent)
    return PrinterError("io_error", f"{action}: {exc}", sent=sent)


class UsbPrinter(LinkPrinter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import usb.core  # lazily: the registry says "install pyusb"
        import usb.util

        super().__init__(*args, **kwargs)
        self._usb = usb
        self.vid, self.pid = parse_usb_id(self.url.netloc)
        self.serial = self.options.get("serial")
        self.interface = int(self.options.get("interface", 0))

    def _find(self) -> Any:
        usb = self._usb
        wanted = self.serial

        def ours(dev: Any) -> bool:
            if wanted is None:
                return True
            try:
                return dev.serial_number == wanted
            except (ValueError, usb.core.USBError):
                return False  # no serial string, or no permission to read it

        try:
            import usb.backend.libusb1 as libusb1

            backend = libusb1.get_backend()
            return usb.core.find(idVendor=self.vid, idProduct=self.pid, custom_match=ours, backend=backend)
        except usb.core.NoBackendError as exc:
            raise PrinterError("io_error", "libusb is not installed (apt-get install libusb-1.0-0)") from exc
        except usb.core.USBError as exc:
            raise _usb_error(exc, "find") from exc

    def _connect(self) -> Link:
        dev = self._find()
        if dev is None:
            raise PrinterError("offline", f"USB {self.vid:04x}:{self.pid:04x} not connected")
        usb = self._usb
        try:
            with contextlib.suppress(NotImplementedError):
                if dev.is_kernel_driver_active(self.interface):
                    dev.detach_kernel_driver(self.interface)
            try:
                config = dev.get_active_configuration()
            except usb.core.USBError:
                dev.set_configuration()
                config = dev.get_active_configuration()
            intf = config[(self.interface, 0)]
            out_ep = self.options.get("out_ep") or _endpoint(usb, intf, usb.util.ENDPOINT_OUT)
            in_ep = self.options.get("in_ep") or _endpoint(usb, intf, usb.util.ENDPOINT_IN)
        except usb.core.USBError as exc:
            raise _usb_error(exc, "open") from exc
        if out_ep is None:
            raise PrinterError("io_error", "no bulk OUT endpoint on the interface (set out_ep=)")
        return _UsbLink(dev, out_ep, in_ep, self.timeout, usb)


def _endpoint(usb: Any, intf: Any, direction: int) -> int | None:
    def match(ep: Any) -> bool:
        return (usb.util.endpoint_direction(ep.bEndpointAddress) == direction
                and usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK)

    ep = usb.util.find_descriptor(intf, custom_match=match)
    return ep.bEndpointAddress if ep is not None else None
