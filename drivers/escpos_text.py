"""ESC/POS bytes -> readable text lines. Pure.

The slip preview is produced from the exact bytes a printer would get, so
it shows what the printer will do (code page switches included), not what
we meant to send. The bytes are read by ``escpos_tokens.tokenize``, the
same reader the PNG preview draws from; codes and images show as one-line
markers such as ``[barcode EAN13: 5901234123457]``.

``code_pages`` maps ``ESC t n`` slots to a Python codec name or to a
128-character string decoding bytes 0x80-0xFF; by default Epson's slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .codepages import EPSON_CODE_PAGES, decode_byte
from .escpos_tokens import (
    PDF417, QR, Align, Barcode, CharSize, Code2DPrint, Code2DStore, ColumnImage, Cut, FeedDots, FeedLines,
    GraphicsPrint, GraphicsStore, Init, LineFeed, PrintMode, Raster, SelectCodePage, Tab, Text, tokenize,
)

__all__ = ["escpos_to_text", "SCISSORS"]

SCISSORS = "\u2702"


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

    def cut(self) -> None:
        self.flush()
        line = (SCISSORS + " " + "- " * self.width)[: self.width].rstrip()
        self.emit(line, "left", len(line))


def escpos_to_text(
    data: bytes, width_chars: int, *, code_pages: Mapping[int, str] | None = None
) -> str:
    """Render ESC/POS ``data`` as text lines ``width_chars`` wide."""
    page = _Page(width=max(1, width_chars), code_pages=code_pages or EPSON_CODE_PAGES)
    page.reset()
    for command in tokenize(data):
        _show(page, command)
    page.flush()
    return "\n".join(page.lines) + ("\n" if page.lines else "")


def _show(page: _Page, command: object) -> None:
    match command:  # the commands a slip is made of most, first
        case PrintMode(double_width=wide):
            page.double_width = wide
        case Align(align):
            page.align = align
        case Text(data):
            # the PNG preview decodes with the same function: .txt and .png never disagree
            page.put("".join(decode_byte(b, page.codec) for b in data))
        case LineFeed():
            page.newline()
        case SelectCodePage(slot):
            page.codec = page.code_pages.get(slot)  # unknown slot: "?", as the PNG preview shows it
        case CharSize(width):
            page.double_width = width > 1
        case Raster(width_bytes, rows, data):
            if data.strip(b"\x00"):  # a raster without ink is white paper fed, nothing to show
                page.block(f"[image {width_bytes * 8}x{rows}]")
        case Tab():
            page.put(" " * (8 - page.cols % 8))
        case Init():
            page.flush()
            page.reset()
        case FeedLines(lines):
            for _ in range(lines):
                page.newline()
        case FeedDots():
            page.flush()
        case Cut():
            page.cut()
        case Barcode():
            _barcode(page, command)
        case ColumnImage():
            page.block(f"[image {command.width}x{8 * command.column_bytes}]")
        case GraphicsStore(width, rows):
            page.image_size = (width, rows)
        case GraphicsPrint():
            w, h = page.image_size
            page.block(f"[image {w}x{h}]")
        case Code2DStore(_, stored):
            page.qr_data = stored.decode("utf-8", "replace")
        case Code2DPrint(symbol):
            kind = {QR: "qr", PDF417: "pdf417"}.get(symbol, "2d code")
            page.block(f"[{kind}: {page.qr_data}]")

def _barcode(page: _Page, code: Barcode) -> None:
    name = code.symbology or f"type {code.kind}"
    text = code.text(fnc1="\x1d")  # FNC1 as GS, as a scanner would report it
    if name in ("CODE128", "GS1-128"):
        text = text.replace("\x1d", "<GS>")
    page.block(f"[barcode {name}: {text}]")
