"""Images as few raster bytes as draw the same paper. Pure.

A slip line drawn as an image is mostly white: a Persian label on the right,
a number on the left, blank rows above and below the letters. Sent whole
(``GS v 0`` as wide as the paper) a Persian slip is about 56 KB, a minute on
a 9600-baud serial printer. ``ink_bands`` cuts an image placed on the paper
into what must be sent:

- bands of inked rows; the white rows between them are fed as a one-byte-wide
  blank raster (``blank_feed``), which moves the paper by exactly that many
  dots on every printer, unlike ``ESC J`` / ``ESC 3`` whose units differ
  between models (1/180, 1/203, 1/360 inch...);
- each band only as wide as its ink, placed where it was drawn by the
  printer's justification (``ESC a``, effective for raster images): from the
  left edge, centred on the print area, or against its right edge, whichever
  needs the fewest bytes. The print area is the profile's (``dots_for``),
  the width the previews draw.

Neighbouring bands are merged when one image costs less than two plus the
feed between them. Nothing here is lossy: the previews draw the same dots.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

__all__ = ["Band", "ink_bands", "raster_bytes", "blank_feed", "RASTER_ROWS"]

RASTER_ROWS = 256  # rows per GS v 0 command: small enough for any printer's buffer
_GS_V0 = b"\x1dv0\x00"
_HEADER = 8  # GS v 0 m xL xH yL yH
_ALIGN = 3  # ESC a n, when the band's justification differs from the last one


@dataclass(frozen=True)
class Band:
    """Inked rows of an image, packed 1 = ink, ``feed`` white rows above them."""

    feed: int
    align: str  # "left" | "center" | "right": ESC a places the band where it was drawn
    width_bytes: int
    rows: int
    data: bytes


@dataclass
class _Run:
    top: int
    bottom: int
    x0: int
    x1: int


def ink_bands(img: Image.Image, x: int, paper: int, prefer: str = "left") -> tuple[list[Band], int]:
    """``img`` placed ``x`` dots from the left of a print area ``paper`` dots
    wide, as inked bands; also the white rows after the last band (all of
    them for an image without ink). ``prefer`` breaks ties between
    justifications (the block's own alignment keeps its place on a printer
    whose print area differs from its profile's)."""
    img = img.convert("1")
    ink = Image.frombytes("1", img.size, img.tobytes("raw", "1;I"))  # 1 = ink, so getbbox() finds it
    runs = _merge([r for r in _row_runs(ink) if r.x1 > r.x0], x, paper)
    bands: list[Band] = []
    row = 0
    for run in runs:
        align, start, width = _window(run.x0 + x, run.x1 + x, paper, prefer)
        band = Image.new("1", (width, run.bottom - run.top), 0)
        band.paste(ink.crop((start - x, run.top, start - x + width, run.bottom)), (0, 0))
        bands.append(Band(run.top - row, align, width // 8, run.bottom - run.top, band.tobytes()))
        row = run.bottom
    return bands, img.height - row


def raster_bytes(band: Band) -> bytes:
    """``GS v 0`` commands for ``band``, at most ``RASTER_ROWS`` rows each."""
    out = bytearray()
    step = band.width_bytes
    for top in range(0, band.rows, RASTER_ROWS):
        rows = min(RASTER_ROWS, band.rows - top)
        out += _GS_V0 + step.to_bytes(2, "little") + rows.to_bytes(2, "little")
        out += band.data[top * step : (top + rows) * step]
    return bytes(out)


def blank_feed(rows: int) -> bytes:
    """White paper ``rows`` dots high: a raster one byte wide with no ink."""
    out = bytearray()
    for top in range(0, max(0, rows), RASTER_ROWS):
        n = min(RASTER_ROWS, rows - top)
        out += _GS_V0 + b"\x01\x00" + n.to_bytes(2, "little") + bytes(n)
    return bytes(out)


# -- geometry ------------------------------------------------------------------
def _row_runs(ink: Image.Image) -> list[_Run]:
    """Maximal runs of rows holding ink, each with its horizontal extent."""
    width_bytes = (ink.width + 7) // 8
    packed = ink.tobytes()
    blank = bytes(width_bytes)
    runs: list[_Run] = []
    top = None
    for y in range(ink.height + 1):
        inked = y < ink.height and packed[y * width_bytes : (y + 1) * width_bytes] != blank
        if inked and top is None:
            top = y
        elif not inked and top is not None:
            box = ink.crop((0, top, ink.width, y)).getbbox()
            runs.append(_Run(top, y, box[0], box[2]) if box else _Run(top, y, 0, 0))
            top = None
    return runs


def _window(x0: int, x1: int, paper: int, prefer: str) -> tuple[str, int, int]:
    """The narrowest byte-wide window holding ink [x0, x1) that a justification
    puts back at the same place: (align, left edge, width)."""
    options = []
    left = _bytes_wide(x1)
    options.append(("left", 0, left))
    right = _bytes_wide(paper - x0)
    if right <= paper:
        options.append(("right", paper - right, right))
    if paper % 2 == 0:
        half = max(paper // 2 - x0, x1 - paper // 2)
        centre = _bytes_wide(2 * half)
        if centre <= paper:
            options.append(("center", (paper - centre) // 2, centre))
    order = {prefer: 0}
    return min(options, key=lambda o: (o[2], order.get(o[0], 1)))


def _bytes_wide(dots: int) -> int:
    return max(8, (dots + 7) // 8 * 8)


def _cost(run: _Run, x: int, paper: int) -> int:
    _, _, width = _window(run.x0 + x, run.x1 + x, paper, "left")
    return _HEADER + _ALIGN + width // 8 * (run.bottom - run.top)


def _merge(runs: list[_Run], x: int, paper: int) -> list[_Run]:
    """Join neighbouring runs when one image is cheaper than two plus the feed."""
    out: list[_Run] = []
    for run in runs:
        if out:
            last = out[-1]
            joined = _Run(last.top, run.bottom, min(last.x0, run.x0), max(last.x1, run.x1))
            gap = run.top - last.bottom
            if _cost(joined, x, paper) <= _cost(last, x, paper) + _HEADER + gap + _cost(run, x, paper):
                out[-1] = joined
                continue
        out.append(run)
    return out
