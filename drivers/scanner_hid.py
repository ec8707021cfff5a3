"""Keyboard-wedge scanners through evdev: ``hid:///dev/input/by-id/...-event-kbd``.

The device is grabbed (``link_input``) so scans never type into another
program, and its key events are decoded with our own keymap for the layout
the scanner is programmed for (``layout=us|pl|de|fr-azerty``): no X display
and no host keymap involved. The decoded characters go through the same
framing as serial scanners (``suffix`` defaults to CR, the Enter key).

Unplugging makes reads fail with ENODEV: state ``error``/``offline`` until
the by-id path opens again (hot-plug kicks the reconnect).
"""

from __future__ import annotations

from typing import Any

from . import link_input
from .keymaps import KeyDecoder
from .scanner_serial import LinkScanner

__all__ = ["HidScanner"]


class HidScanner(LinkScanner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decoder = KeyDecoder(self.options.get("layout", "us"))

    def _connect(self) -> link_input.InputLink:
        link = link_input.open_input(self.url.fs_path, grab=bool(self.options.get("grab", True)))
        self.decoder.reset()
        return link

    def _read(self, timeout: float) -> bytes:
        keys = self._current_link().read_keys(timeout)
        text = "".join(self.decoder.feed(code, value) for code, value in keys)
        # Codes are ASCII; characters of a mis-set layout are dropped by the framer.
        return text.encode("latin-1", errors="ignore")
