"""ESC/POS bytes -> the picture a thermal printer would print. Pure.

The preview of a slip is drawn from the exact bytes sent to the printer, so
it shows what the paper will show: text in the selected code page with its
styles (bold, underline, double size, font B, reverse, alignment, wrapping
at the paper edge), raster images (``GS v 0``, ``GS ( L``/``GS 8 L``,
``ESC *``), native barcodes (``GS k``, with the human-readable line) and QR
codes (``GS ( k``) drawn from their data, and cuts. The bytes are read by
``escpos_tokens.tokenize``, as for the text preview.

Text uses DejaVu Sans Mono in the printer's 12 x 24 (font A) and 9 x 17
(font B) cells; dots are on or off, as on thermal paper.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Mapping

import unicodedata

from PIL import Image, ImageDraw, ImageFont

from . import codes
from .codepages import EPSON_CODE_PAGES, decode_byte
from .escpos_tokens import (
    QR, Align, Barcode, BarcodeHeight, BarcodeWidth, CharSize, Code2DErrorLevel, Code2DPrint, Code2DSize,
    Code2DStore, ColumnImage, Cut, Emphasis, FeedDots, FeedLines, GraphicsPrint, GraphicsStore, HriFont,
    HriPosition, Init, LineFeed, LineSpacing, PrintMode, Raster, Reverse, SelectCodePage, SelectFont, Text,
    Underline, tokenize,
)
from .raster_text import FONT_DIR

__all__ = ["escpos_to_png", "png_bytes"]

_CELLS = {False: (12, 24, 20, 19), True: (9, 17, 15, 14)}  # font B? -> w, h, font px, baseline
_MAX_HEIGHT = 40_000  # dots; a runaway job stops being drawn, not the daemon
_MARGIN = 16
_CUT_H = 24
_SPACING = 30  # the default line spacing (ESC 2), in dots


@dataclass
class _Style:
    bold: bool = False
    underline: bool = False
    font_b: bool = False
    width: int = 1
    height: int = 1
    reverse: bool = False


@dataclass
class _Printer:
    width: int
    code_pages: Mapping[int, str]
    strips: list[Image.Image] = field(default_factory=list)
    line: list[tuple[str, _Style]] = field(default_factory=list)
    line_dots: int = 0
    style: _Style = field(default_factory=_Style)
    align: str = "left"
    spacing: int = _SPACING
    codec: str | None = "cp437"
    bar: dict = field(default_factory=lambda: {"h": 162, "w": 3, "hri": 0, "font_b": False})
    qr: dict = field(default_factory=lambda: {"size": 3, "ec": "L", "data": ""})
    graphic: Image.Image | None = None
    after_column_image: bool = False

    @property
    def height(self) -> int:
        return sum(s.height for s in self.strips)

    def reset(self) -> None:
        self.style, self.align, self.spacing = _Style(), "left", _SPACING
        self.codec = self.code_pages.get(0, "cp437")

    # -- output ------------------------------------------------------------
    def add(self, img: Image.Image, align: str | None = None) -> None:
        if self.height >= _MAX_HEIGHT:
            return
        img = img.crop((0, 0, min(img.width, self.width), img.height)) if img.width > self.width else img
        strip = Image.new("1", (self.width, img.height), 1)
        x = {"left": 0, "center": (self.width - img.width) // 2, "right": self.width - img.width}[align or self.align]
        strip.paste(img.convert("1"), (x, 0))
        self.strips.append(strip)

    def feed(self, dots: int) -> None:
        if dots > 0:
            self.add(Image.new("1", (1, dots), 1))

    def put(self, ch: str) -> None:
        w = _CELLS[self.style.font_b][0] * self.style.width
        if self.line_dots + w > self.width:  # the printer wraps at the paper edge
            self.print_line()
        self.line.append((ch, _Style(**vars(self.style))))
        self.line_dots += w

    def print_line(self, advance: bool = True) -> None:
        """Print the buffered line; an empty buffer just feeds one line."""
        if not self.line:
            if advance and not self.after_column_image:
                self.feed(self.spacing)
            self.after_column_image = False
            return
        tallest = max(_CELLS[s.font_b][1] * s.height for _, s in self.line)
        img = Image.new("1", (self.line_dots, max(self.spacing, tallest)), 1)
        x = 0
        for ch, s in self.line:
            cell = _glyph(ch, s.bold, s.font_b, s.width, s.height, s.underline, s.reverse)
            img.paste(cell, (x, tallest - cell.height))
            x += cell.width
        self.line, self.line_dots = [], 0
        self.add(img)

    def barcode(self, name: str, text: str) -> None:
        try:
            modules = codes.bar_modules(text, name)
        except ValueError:
            return  # a printer prints nothing for data its symbology cannot hold
        img = codes.barcode_image(modules, max(1, min(self.bar["w"], 6)), max(1, self.bar["h"]))
        hri = _hri(text, self.bar["font_b"]) if self.bar["hri"] else None
        if hri is not None and self.bar["hri"] in (1, 3):
            self.add(hri)
        self.add(img)
        if hri is not None and self.bar["hri"] in (2, 3):
            self.add(hri)

    def print_qr(self) -> None:
        data = self.qr["data"]
        if not data:
            return
        try:
            matrix = codes.qr_matrix(data, self.qr["ec"])
        except Exception:
            return
        quiet = codes.QR_QUIET * self.qr["size"]
        img = codes.qr_image(matrix, self.qr["size"])  # native codes print no quiet zone
        self.add(img.crop((quiet, quiet, img.width - quiet, img.height - quiet)))

    def cut(self) -> None:
        img = Image.new("1", (self.width, _CUT_H), 1)
        draw = ImageDraw.Draw(img)
        for x in range(28, self.width, 12):
            draw.line((x, _CUT_H // 2, x + 5, _CUT_H // 2), fill=0, width=2)
        draw.text((2, _CUT_H // 2), "\u2702", font=_cell_font(False, 20), fill=0, anchor="lm")
        self.strips.append(img)


@functools.lru_cache(maxsize=8)
def _cell_font(bold: bool, size: int) -> ImageFont.FreeTypeFont:
    # One glyph per cell needs no shaping: the basic layout, also for bytes
    # a code page maps to combining or control characters.
    name = "DejaVuSansMono-Bold.ttf" if bold else "DejaVuSansMono.ttf"
    return ImageFont.truetype(str(FONT_DIR / name), size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=4096)
def _glyph(ch: str, bold: bool, font_b: bool, wmul: int, hmul: int, underline: bool, reverse: bool) -> Image.Image:
    w, h, size, baseline = _CELLS[font_b]
    cell = Image.new("L", (w, h), 255)
    if ch != " " and unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"):
        ImageDraw.Draw(cell).text((w / 2, baseline), ch, font=_cell_font(bold, size), fill=0, anchor="ms")
    if underline:
        ImageDraw.Draw(cell).line((0, h - 2, w, h - 2), fill=0, width=1 + bold)
    cell = cell.point(lambda v: (0 if v > 140 else 255) if reverse else (255 if v > 140 else 0)).convert("1")
    if wmul > 1 or hmul > 1:  # printers scale their font dots
        cell = cell.resize((w * wmul, h * hmul), Image.Resampling.NEAREST)
    return cell


def _hri(text: str, font_b: bool) -> Image.Image:
    w, h, _, _ = _CELLS[font_b]
    img = Image.new("1", (w * len(text), h), 1)
    for i, ch in enumerate(text):
        img.paste(_glyph(ch, False, font_b, 1, 1, False, False), (i * w, 0))
    return img


def escpos_to_png(data: bytes, width_dots: int, *, code_pages: Mapping[int, str] | None = None,
                  margin: int = _MARGIN) -> Image.Image:
    """The paper ``data`` prints on a printer ``width_dots`` wide, as a 1-bit image."""
    pr = _Printer(width=max(8, width_dots), code_pages=code_pages or EPSON_CODE_PAGES)
    pr.reset()
    for command in tokenize(data):
        if pr.height >= _MAX_HEIGHT:
            break
        _draw(pr, command)
    if pr.line:
        pr.print_line()
    body = pr.strips or [Image.new("1", (pr.width, pr.spacing), 1)]
    paper = Image.new("1", (pr.width + 2 * margin, sum(s.height for s in body) + 2 * margin), 1)
    y = margin
    for strip in body:
        paper.paste(strip, (margin, y))
        y += strip.height
    return paper


def png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _draw(pr: _Printer, command: object) -> None:
    s = pr.style
    match command:
        case Text(data):
            for b in data:
                if pr.height >= _MAX_HEIGHT:
                    return
                pr.after_column_image = False
                pr.put(decode_byte(b, pr.codec))
        case LineFeed():
            pr.print_line()
        case Init():
            if pr.line:
                pr.print_line()
            pr.reset()
        case SelectCodePage(slot):
            pr.codec = pr.code_pages.get(slot)
        case PrintMode():
            s.font_b, s.bold, s.underline = command.font_b, command.bold, command.underline
            s.height, s.width = (2 if command.double_height else 1), (2 if command.double_width else 1)
        case Emphasis(on):
            s.bold = on
        case Underline(on):
            s.underline = on
        case SelectFont(font_b):
            s.font_b = font_b
        case CharSize(width, height):
            s.width, s.height = width, height
        case Reverse(on):
            s.reverse = on
        case Align(align):
            pr.align = align
        case LineSpacing(dots):
            pr.spacing = _SPACING if dots is None else dots
        case FeedLines(lines):
            pr.print_line()
            pr.feed(pr.spacing * max(0, lines - 1))
        case FeedDots(dots):
            if pr.line:
                pr.print_line()
            pr.feed(dots)
        case Cut(feed):
            if pr.line:
                pr.print_line()
            pr.feed(feed)
            pr.cut()
        case _:
            _draw_graphics(pr, command)


def _draw_graphics(pr: _Printer, command: object) -> None:
    """Images and codes: each starts on a line of its own."""
    match command:
        case BarcodeHeight(dots):
            pr.bar["h"] = dots
        case BarcodeWidth(dots):
            pr.bar["w"] = dots
        case HriPosition(position):
            pr.bar["hri"] = position
        case HriFont(font_b):
            pr.bar["font_b"] = font_b
        case Barcode():
            if pr.line:
                pr.print_line()
            if command.symbology:
                pr.barcode("CODE128" if command.symbology == "GS1-128" else command.symbology, command.text())
        case Raster(width_bytes, rows, data):
            if pr.line:
                pr.print_line()
            img = _bitmap(data, width_bytes, rows, pr.width)
            if img is not None:
                pr.add(img)
        case ColumnImage():
            _column_image(pr, command)
        case GraphicsStore(width, rows, data):
            pr.graphic = _bitmap(data, (width + 7) // 8, rows, pr.width)
        case GraphicsPrint() if pr.graphic is not None:
            if pr.line:
                pr.print_line()
            pr.add(pr.graphic)
        case Code2DSize(symbol, size) if symbol == QR:
            pr.qr["size"] = max(1, min(size, 16))
        case Code2DErrorLevel(symbol, level) if symbol == QR:
            pr.qr["ec"] = {48: "L", 49: "M", 50: "Q", 51: "H"}.get(level, "L")
        case Code2DStore(symbol, data) if symbol == QR:
            pr.qr["data"] = data.decode("utf-8", "replace")
        case Code2DPrint(symbol) if symbol == QR:
            if pr.line:
                pr.print_line()
            pr.print_qr()


def _column_image(pr: _Printer, image: ColumnImage) -> None:
    """ESC * m nL nH d...: one stripe of 8 or 24 dots, column by column."""
    rows_bytes, width, body = image.column_bytes, image.width, image.data
    img = Image.new("1", (max(1, width), 8 * rows_bytes), 1)
    px = img.load()
    for col in range(min(width, len(body) // rows_bytes, pr.width)):
        for k in range(rows_bytes):
            byte = body[col * rows_bytes + k]
            for bit in range(8):
                if byte & (0x80 >> bit):
                    px[col, k * 8 + bit] = 0
    pr.add(img)
    pr.after_column_image = True  # its LF moves to the next stripe, not a blank line


def _bitmap(raw: bytes, xbytes: int, rows: int, max_width: int) -> Image.Image | None:
    """Packed rows (1 = black) as an image, cropped to the paper."""
    rows = min(rows, len(raw) // xbytes) if xbytes else 0
    if rows <= 0:
        return None
    keep = min(xbytes, (max_width + 7) // 8)
    packed = b"".join(raw[r * xbytes : r * xbytes + keep] for r in range(rows))
    return Image.frombytes("1", (keep * 8, rows), bytes(b ^ 0xFF for b in packed))
