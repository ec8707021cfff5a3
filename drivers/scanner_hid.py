"""Keyboard-wedge scanners through evdev: ``hid:///dev/input/by-id/...-event-kbd``.

The device is grabbed (``EVIOCGRAB``) so scans never type into another
program, and its key events are decoded with our own keymap for the layout
the scanner is programmed for (``layout=us|pl|de|fr-azerty``): no X display
and no host keymap involved. The decoded characters go through the same
framing as serial scanners (``suffix`` defaults to CR, the Enter key).

Unplugging makes ``read`` fail with ENODEV: state ``error``/``offline``
until the by-id path opens again (hot-plug kicks the reconnect).
"""

from __future__ import annotations

import logging
import select
from typing import Any

from .base import DeviceError
from .keymaps import KeyDecoder
from .scanner_serial import StreamScanner, translate_os_error

__all__ = ["HidScanner"]

log = logging.getLogger(__name__)

EV_KEY = 1  # evdev.ecodes.EV_KEY
_MAX_EVENTS_PER_READ = 4096


class HidScanner(StreamScanner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import evdev  # lazily: the registry turns a missing module into "install evdev"

        super().__init__(*args, **kwargs)
        self._evdev = evdev
        self.path = self.url.fs_path
        self.decoder = KeyDecoder(self.options.get("layout", "us"))
        self.grab = bool(self.options.get("grab", True))
        self._dev: Any = None

    def _open(self) -> None:
        try:
            dev = self._evdev.InputDevice(self.path)
        except OSError as exc:
            raise translate_os_error(exc, "open") from exc
        if self.grab:
            try:
                dev.grab()
            except OSError as exc:
                dev.close()
                raise DeviceError("io_error", "grab: another program holds the device") from exc
        self.decoder.reset()
        self._dev = dev

    def _read(self, timeout: float) -> bytes:
        dev = self._dev
        if dev is None:
            raise DeviceError("offline", "not open")
        try:
            ready, _, _ = select.select([dev.fd], [], [], timeout)
            if not ready:
                return b""
            events = []
            for event in dev.read():
                events.append(event)
                if len(events) >= _MAX_EVENTS_PER_READ:
                    break
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise translate_os_error(exc, "read") from exc
        text = "".join(self.decoder.feed(e.code, e.value) for e in events if e.type == EV_KEY)
        # Codes are ASCII; characters of a mis-set layout are dropped by the framer.
        return text.encode("latin-1", errors="ignore")

    def _close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is None:
            return
        try:
            if self.grab:
                dev.ungrab()
        except OSError:
            pass  # already gone
        dev.close()
