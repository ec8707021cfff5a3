"""Decoding barcodes in camera frames: zxing-cpp first, pyzbar second; debouncing.

``FrameDecoder.decode(gray)`` runs zxing-cpp on the grayscale frame; only
when it finds nothing does pyzbar (zbar) get the same frame, so the common
case costs one decoder and the union of both is read. zbar has no
DataMatrix, zxing-cpp covers it. pyzbar is optional: without libzbar0 the
pipeline is zxing-cpp alone (logged once).

``Debouncer`` is pure (``now`` passed in): a code held in front of the camera
is reported once; it is reported again only after it was out of sight for
the whole window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .symbology import from_zbar, from_zxing, normalize

__all__ = ["Decoded", "FrameDecoder", "Debouncer", "zxing_decode", "zbar_decode"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    text: str
    symbology: str
    decoder: str  # "zxing-cpp" or "zbar"


def zxing_decode(gray: Any, zxingcpp: Any) -> list[Decoded]:
    found = zxingcpp.read_barcodes(gray, text_mode=zxingcpp.TextMode.Plain)
    out = []
    for barcode in found:
        if not barcode.valid or not barcode.text:
            continue
        name, text = normalize(from_zxing(str(barcode.format), barcode.symbology_identifier), barcode.text)
        out.append(Decoded(text, name, "zxing-cpp"))
    return out


def zbar_decode(gray: Any, pyzbar: Any) -> list[Decoded]:
    out = []
    for symbol in pyzbar.decode(gray):
        text = symbol.data.decode("latin-1")
        if text:
            name, text = normalize(from_zbar(symbol.type), text)
            out.append(Decoded(text, name, "zbar"))
    return out


class FrameDecoder:
    """The two decoders behind one call. Use ``zxing=False`` / ``zbar=False`` to measure one alone."""

    def __init__(self, *, zxing: bool = True, zbar: bool = True) -> None:
        self._zxing = self._zbar = None
        if zxing:
            import zxingcpp

            self._zxing = zxingcpp
        if zbar:
            try:
                from pyzbar import pyzbar

                self._zbar = pyzbar
            except (ImportError, OSError) as exc:  # pyzbar raises ImportError without libzbar0
                log.warning("pyzbar unavailable (%s): decoding with zxing-cpp alone", exc)
        if self._zxing is None and self._zbar is None:
            raise RuntimeError("no barcode decoder available (install zxing-cpp, or pyzbar and libzbar0)")

    @property
    def decoders(self) -> list[str]:
        return [n for n, lib in (("zxing-cpp", self._zxing), ("zbar", self._zbar)) if lib is not None]

    def decode(self, gray: Any) -> list[Decoded]:
        if self._zxing is not None:
            found = zxing_decode(gray, self._zxing)
            if found:
                return found
        if self._zbar is not None:
            return zbar_decode(gray, self._zbar)
        return []


class Debouncer:
    """Suppresses a code seen again within ``window_s`` of its last sighting."""

    def __init__(self, window_s: float, max_codes: int = 256) -> None:
        self.window_s = window_s
        self.max_codes = max_codes
        self._last_seen: dict[str, float] = {}

    def accept(self, code: str, now: float) -> bool:
        last = self._last_seen.get(code)
        self._last_seen[code] = now  # still in view: the window starts again
        if len(self._last_seen) > self.max_codes:
            self._forget(now)
        return last is None or now - last >= self.window_s

    def _forget(self, now: float) -> None:
        for code, seen in list(self._last_seen.items()):
            if now - seen >= self.window_s:
                del self._last_seen[code]
