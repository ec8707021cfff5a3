"""ESC/POS bytes -> the picture a thermal printer would print. Pure.

The preview of a slip is drawn from the exact bytes sent to the printer, so
it shows what the paper will show: text in the selected code page with its
styles (bold, underline, double size, font B, reverse, alignment, wrapping
at the paper edge), raster images (``GS v 0``, ``GS ( L``/``GS 8 L``,
``ESC *``), native barcodes (``GS k``, with the human-readable line) and QR
codes (``GS ( k``) drawn from their data, and cuts. Unknown commands are
skipped like ``escpos_to_text`` skips them.

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
from .codepages import decode_byte
from .escpos_text import _BARCODE_NAMES, _ESC_PARAMS, _GS_PARAMS, EPSON_CODE_PAGES, _dle, _fs
from .raster_text import FONT_DIR

__all__ = ["escpos_to_png", "png_bytes"]

ESC, GS, FS, DLE, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x0A
_CELLS = {False: (12, 24, 20, 19), True: (9, 17, 15, 14)}  # font B? -> w, h, font px, baseline
_MAX_HEIGHT = 40_000  # dots; a runaway job stops being drawn, not the daemon
_MARGIN = 16
_CUT_H = 24


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
    spacing: int = 30
    codec: str | None = "cp437"
    bar: dict = field(default_factory=lambda: {"h": 162, "w": 3, "hri": 0, "font_b": False})
    qr: dict = field(default_factory=lambda: {"size": 3, "ec": "L", "data": ""})
    graphic: Image.Image | None = None
    after_column_image: bool = False

    @property
    def height(self) -> int:
        return sum(s.height for s in self.strips)

    def reset(self) -> None:
        self.style, self.align, self.spacing = _Style(), "left", 30
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
    i, n = 0, len(data)
    while i < n and pr.height < _MAX_HEIGHT:
        b = data[i]
        if b == ESC:
            i = _esc(pr, data, i)
        elif b == GS:
            i = _gs(pr, data, i)
        elif b == FS:
            i = _fs(data, i)
        elif b == DLE:
            i = _dle(data, i)
        elif b == LF:
            pr.print_line()
            i += 1
        elif b < 0x20 or b == 0x7F:
            i += 1
        else:
            pr.after_column_image = False
            pr.put(decode_byte(b, pr.codec))
            i += 1
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


def _arg(data: bytes, i: int) -> int:
    return data[i] if i < len(data) else 0


def _esc(pr: _Printer, data: bytes, i: int) -> int:
    cmd, p = _arg(data, i + 1), _arg(data, i + 2)
    s = pr.style
    if cmd == ord("@"):
        if pr.line:
            pr.print_line()
        pr.reset()
    elif cmd == ord("t"):
        pr.codec = pr.code_pages.get(p)
    elif cmd == ord("!"):
        s.font_b, s.bold, s.underline = bool(p & 1), bool(p & 8), bool(p & 0x80)
        s.height, s.width = (2 if p & 0x10 else 1), (2 if p & 0x20 else 1)
    elif cmd == ord("E"):
        s.bold = bool(p & 1)
    elif cmd == ord("-"):
        s.underline = p in (1, 2, 49, 50)
    elif cmd == ord("M"):
        s.font_b = p in (1, 49)
    elif cmd == ord("a"):
        pr.align = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}.get(p, "left")
    elif cmd == ord("2"):
        pr.spacing = 30
    elif cmd == ord("3"):
        pr.spacing = p
    elif cmd == ord("d"):
        pr.print_line()
        pr.feed(pr.spacing * max(0, p - 1))
    elif cmd == ord("J"):
        if pr.line:
            pr.print_line()
        pr.feed(p)
    elif cmd == ord("*"):
        return _column_image(pr, data, i)
    elif cmd == ord("D"):
        end = data.find(b"\x00", i + 2)
        return len(data) if end < 0 else end + 1
    return i + 2 + _ESC_PARAMS.get(cmd, 0)


def _column_image(pr: _Printer, data: bytes, i: int) -> int:
    """ESC * m nL nH d...: one stripe of 8 or 24 dots, column by column."""
    m, width = _arg(data, i + 2), _arg(data, i + 3) + 256 * _arg(data, i + 4)
    rows_bytes = 3 if m >= 32 else 1
    body = data[i + 5 : i + 5 + width * rows_bytes]
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
    return i + 5 + width * rows_bytes


def _gs(pr: _Printer, data: bytes, i: int) -> int:
    cmd, p = _arg(data, i + 1), _arg(data, i + 2)
    if cmd == ord("!"):
        pr.style.width, pr.style.height = ((p >> 4) & 7) + 1, (p & 7) + 1
    elif cmd == ord("B"):
        pr.style.reverse = bool(p & 1)
    elif cmd == ord("V"):
        if pr.line:
            pr.print_line()
        if p in (65, 66, 97, 98, 103, 104):  # feed n dots, then cut
            pr.feed(_arg(data, i + 3))
        pr.cut()
        return i + 3 + (1 if p in (65, 66, 97, 98, 103, 104) else 0)
    elif cmd == ord("h"):
        pr.bar["h"] = p
    elif cmd == ord("w"):
        pr.bar["w"] = p
    elif cmd == ord("H"):
        pr.bar["hri"] = p & 3 if p < 48 else (p - 48) & 3
    elif cmd == ord("f"):
        pr.bar["font_b"] = p in (1, 49)
    elif cmd == ord("k"):
        return _barcode(pr, data, i)
    elif cmd == ord("v") and p == ord("0"):
        return _raster(pr, data, i)
    elif cmd == ord("(") and i + 4 < len(data):
        return _gs_paren(pr, data, i)
    elif cmd == ord("8") and p == ord("L"):
        size = int.from_bytes(data[i + 3 : i + 7], "little")
        _graphics(pr, data[i + 7 : i + 7 + size])
        return i + 7 + size
    return i + 2 + _GS_PARAMS.get(cmd, 0)


def _bitmap(raw: bytes, xbytes: int, rows: int, max_width: int) -> Image.Image | None:
    """Packed rows (1 = black) as an image, cropped to the paper."""
    rows = min(rows, len(raw) // xbytes) if xbytes else 0
    if rows <= 0:
        return None
    keep = min(xbytes, (max_width + 7) // 8)
    packed = b"".join(raw[r * xbytes : r * xbytes + keep] for r in range(rows))
    return Image.frombytes("1", (keep * 8, rows), bytes(b ^ 0xFF for b in packed))


def _raster(pr: _Printer, data: bytes, i: int) -> int:
    """GS v 0 m xL xH yL yH d..."""
    xbytes = _arg(data, i + 4) + 256 * _arg(data, i + 5)
    rows = _arg(data, i + 6) + 256 * _arg(data, i + 7)
    end = i + 8 + xbytes * rows
    if pr.line:
        pr.print_line()
    img = _bitmap(data[i + 8 : end], xbytes, rows, pr.width)
    if img is not None:
        pr.add(img)
    return end


def _gs_paren(pr: _Printer, data: bytes, i: int) -> int:
    fn_class = data[i + 2]
    size = data[i + 3] + 256 * data[i + 4]
    body = data[i + 5 : i + 5 + size]
    if fn_class == ord("k") and len(body) >= 2 and body[0] == 0x31:  # QR
        fn = body[1]
        if fn == 67 and len(body) >= 3:
            pr.qr["size"] = max(1, min(body[2], 16))
        elif fn == 69 and len(body) >= 3:
            pr.qr["ec"] = {48: "L", 49: "M", 50: "Q", 51: "H"}.get(body[2], "L")
        elif fn == 80:
            pr.qr["data"] = body[3:].decode("utf-8", "replace")
        elif fn == 81:
            if pr.line:
                pr.print_line()
            pr.print_qr()
    elif fn_class == ord("L"):
        _graphics(pr, body)
    return i + 5 + size


def _graphics(pr: _Printer, body: bytes) -> None:
    """GS ( L / GS 8 L: store (fn 112) then print (fn 50) a raster image."""
    if len(body) >= 10 and body[1] == 112:  # m fn a bx by c xL xH yL yH d...
        width, rows = body[6] + 256 * body[7], body[8] + 256 * body[9]
        pr.graphic = _bitmap(body[10:], (width + 7) // 8, rows, pr.width)
    elif len(body) >= 2 and body[1] == 50 and pr.graphic is not None:
        if pr.line:
            pr.print_line()
        pr.add(pr.graphic)


def _barcode(pr: _Printer, data: bytes, i: int) -> int:
    m = _arg(data, i + 2)
    if m <= 6:  # function A: NUL-terminated
        end = data.find(b"\x00", i + 3)
        end = len(data) if end < 0 else end
        payload, nxt = data[i + 3 : end], end + 1
    else:  # function B: length byte
        length = _arg(data, i + 3)
        payload, nxt = data[i + 4 : i + 4 + length], i + 4 + length
    name = _BARCODE_NAMES.get(m, "")
    text = payload.decode("latin-1")
    if name in ("CODE128", "GS1-128"):
        text = _strip_code_sets(text)
    if pr.line:
        pr.print_line()
    if name:
        pr.barcode("CODE128" if name == "GS1-128" else name, text)
    return nxt


def _strip_code_sets(text: str) -> str:
    """Epson's CODE128 data: drop the {A {B {C selectors, '{{' is '{'."""
    out, j = [], 0
    while j < len(text):
        if text[j] == "{" and j + 1 < len(text):
            if text[j + 1] == "{":
                out.append("{")
            j += 2
            continue
        out.append(text[j])
        j += 1
    return "".join(out)
