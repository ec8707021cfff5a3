"""Magnetic stripe readers: ``msr+hid://`` (keyboard wedge) and ``msr+serial://``.

The bytes arrive exactly as from a scanner of the same transport; what
differs is what may leave the driver. Each swipe goes through
``classify_swipe``: a loyalty card's number goes on as ``ScanData`` (symbology
``MSR``); a payment card becomes a ``CardRejected`` with no data in it and
the raw swipe is forgotten here; an unreadable swipe is logged by length only.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import CardRejected, RejectCallback
from .scanner_hid import HidScanner
from .scanner_serial import SerialScanner
from .track import classify_swipe

__all__ = ["MsrHidReader", "MsrSerialReader"]

log = logging.getLogger(__name__)


class _SwipeDecision:
    """Mixed into a scanner: turns framed swipes into member codes or rejections."""

    kind = "card_reader"
    symbology = "MSR"
    _on_rejected: RejectCallback | None = None

    def _init_swipes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._on_rejected = kwargs.pop("on_rejected", None)
        return kwargs

    def _deliver(self, code: str, symbology: str | None, now: float) -> None:
        swipe = classify_swipe(code)
        if swipe.kind == "payment_card":
            log.info("%s: payment card swiped; its data was dropped", self.label)  # type: ignore[attr-defined]
            self._call(self._on_rejected, CardRejected(self.name, "payment_card"))  # type: ignore[attr-defined]
        elif swipe.kind == "member" and swipe.code:
            super()._deliver(swipe.code, "MSR", now)  # type: ignore[misc]
        else:
            log.warning("%s: unreadable swipe (%d track(s)); ask for another swipe",
                        self.label, len(swipe.tracks))  # type: ignore[attr-defined]


class MsrHidReader(_SwipeDecision, HidScanner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._init_swipes(kwargs))


class MsrSerialReader(_SwipeDecision, SerialScanner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._init_swipes(kwargs))
