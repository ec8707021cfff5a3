"""USB links through pyusb (libusb1): a printer's bulk endpoints, ``usb://VID:PID?serial=...``.

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
from typing import Any

from .errors import DeviceError, ErrorMap
from .link import READ_CHUNK, Link

__all__ = ["UsbLink", "open_usb"]

ERRORS = ErrorMap()
_PACKET = 64  # a full-speed bulk packet: one status answer (and stale ones before it) fits


def open_usb(vid: int, pid: int, *, serial: str | None = None, interface: int = 0,
             out_ep: int | None = None, in_ep: int | None = None, timeout: float) -> UsbLink:
    """Claim the printer's interface; endpoints from the descriptor unless given."""
    import usb.core
    import usb.util

    dev = _find(usb, vid, pid, serial)
    if dev is None:
        raise DeviceError("offline", f"USB {vid:04x}:{pid:04x} not connected")
    with ERRORS("open"):
        with contextlib.suppress(NotImplementedError):
            if dev.is_kernel_driver_active(interface):
                dev.detach_kernel_driver(interface)
        try:
            config = dev.get_active_configuration()
        except usb.core.USBError:
            dev.set_configuration()
            config = dev.get_active_configuration()
        intf = config[(interface, 0)]
        out_ep = out_ep or _endpoint(usb, intf, usb.util.ENDPOINT_OUT)
        in_ep = in_ep or _endpoint(usb, intf, usb.util.ENDPOINT_IN)
    if out_ep is None:
        raise DeviceError("io_error", "no bulk OUT endpoint on the interface (set out_ep=)")
    return UsbLink(dev, out_ep, in_ep, timeout, usb)


def _find(usb: Any, vid: int, pid: int, wanted: str | None) -> Any:
    def ours(dev: Any) -> bool:
        if wanted is None:
            return True
        try:
            return dev.serial_number == wanted
        except (ValueError, usb.core.USBError):
            return False  # no serial string, or no permission to read it

    import usb.backend.libusb1 as libusb1

    try:
        with ERRORS("find"):
            return usb.core.find(idVendor=vid, idProduct=pid, custom_match=ours, backend=libusb1.get_backend())
    except usb.core.NoBackendError as exc:
        raise DeviceError("io_error", "libusb is not installed (apt-get install libusb-1.0-0)") from exc


def _endpoint(usb: Any, intf: Any, direction: int) -> int | None:
    def match(ep: Any) -> bool:
        return (usb.util.endpoint_direction(ep.bEndpointAddress) == direction
                and usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK)

    ep = usb.util.find_descriptor(intf, custom_match=match)
    return ep.bEndpointAddress if ep is not None else None


class UsbLink(Link):
    def __init__(self, dev: Any, out_ep: int, in_ep: int | None, timeout: float, usb: Any) -> None:
        self.dev, self.out_ep, self.in_ep, self.timeout, self._usb = dev, out_ep, in_ep, timeout, usb
        self.readable = in_ep is not None

    def read(self, timeout: float, size: int = READ_CHUNK) -> bytes:
        if self.in_ep is None:
            return b""
        with ERRORS("read"):
            try:
                # A bulk read takes whole packets, whatever was asked for.
                data = self.dev.read(self.in_ep, max(size, _PACKET), timeout=max(1, int(timeout * 1000)))
            except self._usb.core.USBTimeoutError:
                return b""  # nothing arrived: not an error when reading
        return bytes(data)

    def read_byte(self, timeout: float) -> int | None:
        data = self.read(timeout, _PACKET)
        return data[-1] if data else None  # the newest answer: stale ones came first

    def write(self, data: bytes) -> None:
        with ERRORS("write"):
            written = self.dev.write(self.out_ep, data, timeout=int(self.timeout * 1000))
        if written != len(data):
            raise DeviceError("io_error", f"short write ({written} of {len(data)} bytes)")

    def drain(self) -> None:
        with contextlib.suppress(DeviceError):
            for _ in range(8):
                if self.read_byte(0.001) is None:
                    return

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._usb.util.dispose_resources(self.dev)
