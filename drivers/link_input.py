"""Input-device links through evdev: keyboard wedges, ``hid:///dev/input/by-id/...-event-kbd``.

The device is grabbed (``EVIOCGRAB``) so its keystrokes reach posd only,
never the POS window. It yields key events, not bytes: what a key means
depends on the layout the scanner is programmed for, which the driver
decodes (``keymaps``). Unplugging makes ``read`` fail with ENODEV.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .errors import DeviceError, ErrorMap
from .link import Link

__all__ = ["InputLink", "open_input", "EV_KEY"]

EV_KEY = 1  # evdev.ecodes.EV_KEY
_MAX_EVENTS_PER_READ = 4096
ERRORS = ErrorMap()


def open_input(path: str, *, grab: bool) -> InputLink:
    import evdev

    with ERRORS("open"):
        dev = evdev.InputDevice(path)
    if grab:
        try:
            dev.grab()
        except OSError as exc:
            dev.close()
            raise DeviceError("io_error", "grab: another program holds the device") from exc
    return InputLink(dev, grab)


class InputLink(Link):
    """An open input device; ``read_keys`` gives its key events as (code, value) pairs (not bytes:
    ``read`` is not one of its ways)."""

    def __init__(self, dev: Any, grabbed: bool) -> None:
        self.dev, self.grabbed = dev, grabbed

    def read_keys(self, timeout: float) -> list[tuple[int, int]]:
        """Key events (key code, 0 up / 1 down / 2 repeat) that arrive within ``timeout``."""
        keys: list[tuple[int, int]] = []
        with ERRORS("read"):
            if not self._readable(self.dev.fd, timeout):
                return keys
            try:
                for count, event in enumerate(self.dev.read(), 1):
                    if event.type == EV_KEY:
                        keys.append((event.code, event.value))
                    if count >= _MAX_EVENTS_PER_READ:
                        break
            except BlockingIOError:
                return keys
        return keys

    def close(self) -> None:
        if self.grabbed:
            with contextlib.suppress(OSError):  # already gone
                self.dev.ungrab()
        self.dev.close()
