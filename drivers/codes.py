"""Barcodes and QR codes as printer dots, drawn from their modules.

Used twice: by the slip renderer when a profile has no native barcode/QR
command (the code is sent as a raster image), and by the ESC/POS -> PNG
renderer to draw what a printer's native ``GS k`` / ``GS ( k`` would print.
The modules come from zxing-cpp's writer, so both agree with the reader the
tests decode them with.
"""

from __future__ import annotations

import functools

import zxingcpp
from PIL import Image

__all__ = ["bar_modules", "qr_matrix", "barcode_image", "qr_image", "QR_QUIET", "BAR_QUIET"]

QR_QUIET = 4  # modules of white around a QR (ISO/IEC 18004)
BAR_QUIET = 10  # modules of white either side of a 1-D code

_FORMATS = {
    "CODE128": zxingcpp.BarcodeFormat.Code128,
    "EAN13": zxingcpp.BarcodeFormat.EAN13,
    "EAN8": zxingcpp.BarcodeFormat.EAN8,
    "UPC-A": zxingcpp.BarcodeFormat.UPCA,
    "CODE39": zxingcpp.BarcodeFormat.Code39,
    "ITF": zxingcpp.BarcodeFormat.ITF,
}


def _bitmap(fmt: zxingcpp.BarcodeFormat, data: str, ec_level: str | None = None) -> memoryview:
    if hasattr(zxingcpp, "create_barcode"):  # zxing-cpp >= 3
        kwargs = {"ec_level": ec_level} if ec_level else {}
        code = zxingcpp.create_barcode(data, fmt, **kwargs)
        return memoryview(code.to_image(scale=1, add_quiet_zones=False))
    level = {"L": 0, "M": 1, "Q": 2, "H": 3}.get(ec_level or "", -1)  # zxing-cpp 2.x
    return memoryview(zxingcpp.write_barcode(fmt, data, width=0, height=0, quiet_zone=0, ec_level=level))


@functools.lru_cache(maxsize=256)
def bar_modules(data: str, symbology: str = "CODE128") -> tuple[bool, ...]:
    """The bars of a 1-D code, one flag per module (True = black).

    Raises ValueError when the data cannot be encoded in that symbology."""
    fmt = _FORMATS.get(symbology.upper())
    if fmt is None:
        raise ValueError(f"unsupported barcode symbology {symbology!r}")
    try:
        view = _bitmap(fmt, data)
    except Exception as exc:  # zxing-cpp raises its own error types
        raise ValueError(f"cannot encode {data!r} as {symbology}: {exc}") from exc
    width = view.shape[1]
    row = view.tobytes()[:width]
    return tuple(v < 128 for v in row)


@functools.lru_cache(maxsize=256)
def qr_matrix(data: str, ec_level: str = "M") -> tuple[tuple[bool, ...], ...]:
    """The QR modules of ``data`` (rows of flags, True = black), no quiet zone."""
    view = _bitmap(zxingcpp.BarcodeFormat.QRCode, data, ec_level)
    h, w = view.shape[0], view.shape[1]
    raw = view.tobytes()
    return tuple(tuple(v < 128 for v in raw[r * w : (r + 1) * w]) for r in range(h))


def barcode_image(modules: tuple[bool, ...], module_dots: int, height: int) -> Image.Image:
    """Bars ``module_dots`` wide and ``height`` tall, white background, mode L."""
    row = bytes(0 if black else 255 for black in modules for _ in range(module_dots))
    line = Image.frombytes("L", (len(row), 1), row)
    return line.resize((len(row), max(1, height)), Image.Resampling.NEAREST)


def qr_image(matrix: tuple[tuple[bool, ...], ...], module_dots: int) -> Image.Image:
    """The QR with ``module_dots`` per module and its quiet zone, mode L."""
    n = len(matrix)
    side = n + 2 * QR_QUIET
    raw = bytearray(b"\xff" * side * side)
    for r, row in enumerate(matrix):
        for c, black in enumerate(row):
            if black:
                raw[(r + QR_QUIET) * side + c + QR_QUIET] = 0
    img = Image.frombytes("L", (side, side), bytes(raw))
    return img.resize((side * module_dots, side * module_dots), Image.Resampling.NEAREST)
