"""ESC/POS bytes -> readable text lines. Pure.

The slip preview is produced from the exact bytes a printer would get, so
it shows what the printer will do (code page switches included), not what
we meant to send. Walks the commands the renderer uses and the common
ones around them; unknown commands are skipped by their known length or,
failing that, by their two command bytes.

``code_pages`` maps ``ESC t n`` slots to a Python codec name or to a
128-character string decoding bytes 0x80-0xFF; by default Epson's slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .codepages import decode_byte

__all__ = ["escpos_to_text", "EPSON_CODE_PAGES", "SCISSORS"]

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
LF, CR, HT = 0x0A, 0x0D, 0x09
SCISSORS = "\u2702"

EPSON_CODE_PAGES: dict[int, str] = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865",
    13: "cp857", 14: "cp737", 15: "iso8859_7", 16: "cp1252", 17: "cp866",
    18: "cp852", 19: "cp858", 21: "cp874", 32: "cp720", 33: "cp775",
    34: "cp855", 35: "cp861", 36: "cp862", 37: "cp864", 38: "cp869",
    39: "iso8859_2", 40: "iso8859_15", 44: "cp1125", 45: "cp1250",
    46: "cp1251", 47: "cp1253", 48: "cp1254", 49: "cp1255", 50: "cp1256",
    51: "cp1257", 52: "cp1258",
}

_BARCODE_NAMES = {
    0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF",
    71: "CODABAR", 72: "CODE93", 73: "CODE128", 74: "GS1-128", 75: "GS1 DATABAR",
    76: "GS1 DATABAR", 77: "GS1 DATABAR", 78: "GS1 DATABAR",
}

# Parameter byte counts of fixed-length commands (after the two command bytes).
_ESC_PARAMS = {
    ord(" "): 1, ord("!"): 1, ord("$"): 2, ord("%"): 1, ord("-"): 1, ord("2"): 0,
    ord("3"): 1, ord("<"): 0, ord("="): 1, ord("?"): 1, ord("@"): 0, ord("E"): 1,
    ord("G"): 1, ord("J"): 1, ord("K"): 1, ord("L"): 0, ord("M"): 1, ord("R"): 1,
    ord("S"): 0, ord("T"): 1, ord("U"): 1, ord("V"): 1, ord("W"): 8, ord("\\"): 2,
    ord("a"): 1, ord("c"): 2, ord("d"): 1, ord("e"): 1, ord("i"): 0, ord("m"): 0,
    ord("p"): 3, ord("r"): 1, ord("t"): 1, ord("u"): 1, ord("v"): 0, ord("{"): 1,
}
_GS_PARAMS = {
    ord("!"): 1, ord("$"): 2, ord("*"): 2, ord("/"): 1, ord(":"): 0, ord("B"): 1,
    ord("H"): 1, ord("I"): 1, ord("L"): 2, ord("P"): 2, ord("T"): 1, ord("W"): 2,
    ord("\\"): 2, ord("^"): 3, ord("a"): 1, ord("b"): 1, ord("c"): 0, ord("f"): 1,
    ord("g"): 2, ord("h"): 1, ord("j"): 1, ord("r"): 1, ord("w"): 1,
}


@dataclass
class _Page:
    width: int
    code_pages: Mapping[int, str]
    lines: list[str] = field(default_factory=list)
    buf: list[str] = field(default_factory=list)
    cols: int = 0
    line_align: str | None = None
    align: str = "left"
    double_width: bool = False
    codec: str | None = "cp437"  # None: a slot this profile does not define
    qr_data: str = ""
    image_size: tuple[int, int] = (0, 0)

    def reset(self) -> None:
        self.align, self.double_width = "left", False
        self.codec = self.code_pages.get(0, "cp437")

    def put(self, text: str) -> None:
        step = 2 if self.double_width else 1
        for ch in text:
            if self.cols + step > self.width:  # the printer wraps too
                self.newline()
            if self.line_align is None:
                self.line_align = self.align
            self.buf.append(ch)
            self.cols += step

    def newline(self) -> None:
        self.emit("".join(self.buf), self.line_align or self.align, self.cols)

    def flush(self) -> None:
        if self.buf:
            self.newline()

    def block(self, text: str) -> None:
        """A non-text item (barcode, code, image, cut) on its own line."""
        self.flush()
        self.emit(text, self.align, len(text))

    def emit(self, text: str, align: str, cols: int) -> None:
        pad = max(0, self.width - cols)
        if align == "center":
            text = " " * (pad // 2) + text
        elif align == "right":
            text = " " * pad + text
        self.lines.append(text.rstrip())
        self.buf, self.cols, self.line_align = [], 0, None

    def decode(self, byte: int) -> str:
        # the PNG preview decodes with the same function: .txt and .png never disagree
        return decode_byte(byte, self.codec)


def escpos_to_text(
    data: bytes, width_chars: int, *, code_pages: Mapping[int, str] | None = None
) -> str:
    """Render ESC/POS ``data`` as text lines ``width_chars`` wide."""
    page = _Page(width=max(1, width_chars), code_pages=code_pages or EPSON_CODE_PAGES)
    page.reset()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == ESC:
            i = _esc(page, data, i)
        elif b == GS:
            i = _gs(page, data, i)
        elif b == FS:
            i = _fs(data, i)
        elif b == DLE:
            i = _dle(data, i)
        elif b == LF:
            page.newline()
            i += 1
        elif b == HT:
            page.put(" " * (8 - page.cols % 8))
            i += 1
        elif b < 0x20 or b == 0x7F:
            i += 1  # CR and other controls: nothing to show
        else:
            start = i
            while i < n and (data[i] >= 0x20 and data[i] != 0x7F):
                i += 1
            page.put("".join(page.decode(x) for x in data[start:i]))
    page.flush()
    return "\n".join(page.lines) + ("\n" if page.lines else "")


def _arg(data: bytes, i: int) -> int:
    return data[i] if i < len(data) else 0


def _esc(page: _Page, data: bytes, i: int) -> int:
    cmd, p = _arg(data, i + 1), _arg(data, i + 2)
    if cmd == ord("@"):
        page.flush()
        page.reset()
    elif cmd == ord("t"):
        page.codec = page.code_pages.get(p)  # unknown slot: "?", as the PNG preview shows it
    elif cmd == ord("!"):
        page.double_width = bool(p & 0x20)
    elif cmd == ord("a"):
        page.align = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}.get(p, "left")
    elif cmd == ord("d"):
        for _ in range(p):
            page.newline()
    elif cmd == ord("J"):
        page.flush()
    elif cmd == ord("*"):  # column bit image: m nL nH data
        m, width = p, _arg(data, i + 3) + 256 * _arg(data, i + 4)
        page.block(f"[image {width}x{24 if m >= 32 else 8}]")
        return i + 5 + width * (3 if m >= 32 else 1)
    elif cmd == ord("D"):  # tab stops, NUL-terminated
        end = data.find(b"\x00", i + 2)
        return len(data) if end < 0 else end + 1
    return i + 2 + _ESC_PARAMS.get(cmd, 0)


def _gs(page: _Page, data: bytes, i: int) -> int:
    cmd, p = _arg(data, i + 1), _arg(data, i + 2)
    if cmd == ord("!"):
        page.double_width = bool(p & 0x70)
    elif cmd == ord("V"):
        page.flush()
        line = (SCISSORS + " " + "- " * page.width)[: page.width].rstrip()
        page.emit(line, "left", len(line))
        return i + 3 + (1 if p in (65, 66, 97, 98, 103, 104) else 0)
    elif cmd == ord("k"):
        return _barcode(page, data, i)
    elif cmd == ord("v") and p == ord("0"):  # GS v 0 m xL xH yL yH data
        xbytes = _arg(data, i + 4) + 256 * _arg(data, i + 5)
        height = _arg(data, i + 6) + 256 * _arg(data, i + 7)
        page.block(f"[image {xbytes * 8}x{height}]")
        return i + 8 + xbytes * height
    elif cmd == ord("(") and i + 4 < len(data):
        return _gs_paren(page, data, i)
    elif cmd == ord("8") and p == ord("L"):  # GS 8 L p1..p4 m fn ...
        size = int.from_bytes(data[i + 3 : i + 7], "little")
        _graphics(page, data[i + 7 : i + 7 + size])
        return i + 7 + size
    return i + 2 + _GS_PARAMS.get(cmd, 0)


def _gs_paren(page: _Page, data: bytes, i: int) -> int:
    fn_class = data[i + 2]
    size = data[i + 3] + 256 * data[i + 4]
    body = data[i + 5 : i + 5 + size]
    if fn_class == ord("k") and len(body) >= 2:
        cn, fn = body[0], body[1]
        kind = {0x31: "qr", 0x30: "pdf417"}.get(cn, "2d code")
        if fn == 80:  # store: cn fn m data
            page.qr_data = body[3:].decode("utf-8", "replace")
        elif fn == 81:  # print what was stored
            page.block(f"[{kind}: {page.qr_data}]")
    elif fn_class == ord("L"):
        _graphics(page, body)
    return i + 5 + size


def _graphics(page: _Page, body: bytes) -> None:
    """GS ( L / GS 8 L: store (fn 'p') then print (fn '2') a raster image."""
    if len(body) >= 2 and body[1] == ord("p") and len(body) >= 10:
        page.image_size = (body[6] + 256 * body[7], body[8] + 256 * body[9])
    elif len(body) >= 2 and body[1] in (ord("2"), 50):
        w, h = page.image_size
        page.block(f"[image {w}x{h}]")


def _barcode(page: _Page, data: bytes, i: int) -> int:
    m = _arg(data, i + 2)
    if m <= 6:  # function A: NUL-terminated
        end = data.find(b"\x00", i + 3)
        end = len(data) if end < 0 else end
        payload, nxt = data[i + 3 : end], end + 1
    else:  # function B: length byte
        length = _arg(data, i + 3)
        payload, nxt = data[i + 4 : i + 4 + length], i + 4 + length
    name = _BARCODE_NAMES.get(m, f"type {m}")
    text = payload.decode("latin-1")
    if name in ("CODE128", "GS1-128"):
        text = _code128_text(text)
    page.block(f"[barcode {name}: {text}]")
    return nxt


def _code128_text(text: str) -> str:
    """Drop Epson's code-set selectors ({A {B {C) and unescape '{{'."""
    out, j = [], 0
    while j < len(text):
        if text[j] == "{" and j + 1 < len(text):
            nxt = text[j + 1]
            if nxt == "{":
                out.append("{")
            elif nxt == "1":
                out.append("\x1d")  # FNC1 as GS, as a scanner would report it
            j += 2
            continue
        out.append(text[j])
        j += 1
    return "".join(out).replace("\x1d", "<GS>")


def _fs(data: bytes, i: int) -> int:
    cmd = _arg(data, i + 1)
    if cmd == ord("(") and i + 4 < len(data):
        return i + 5 + data[i + 3] + 256 * data[i + 4]
    return i + 2 + {ord("!"): 1, ord("-"): 1, ord("C"): 1, ord("p"): 2, ord("W"): 1}.get(cmd, 0)


def _dle(data: bytes, i: int) -> int:
    cmd = _arg(data, i + 1)
    if cmd == 0x04:  # DLE EOT n
        return i + 3
    if cmd == 0x05:  # DLE ENQ n
        return i + 3
    if cmd == 0x14:  # DLE DC4 fn ...
        return i + 3 + (6 if _arg(data, i + 2) == 8 else 2)
    return i + 1  # a bare DLE byte: drop it
