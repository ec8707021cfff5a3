"""ESC/POS bytes -> typed commands. Pure.

The one reader of the printer's byte stream: ``tokenize(data)`` yields what
a printer would act on, in order, and both previews are drawn from it
(``escpos_text`` as readable lines, ``escpos_png`` as the paper). Commands
carry their meaning, already decoded from the parameter bytes (an alignment
is ``"center"``, not 49); printable text stays bytes, because what they
mean depends on the code page selected at that point.

Every command the slip renderer sends is understood, and the common ones
around it; others are skipped by their known length or, failing that, by
their two command bytes, and control bytes with no meaning for the paper
(CR, a bare DLE) are dropped. Truncated or random input never raises: a
parameter past the end reads as 0, a payload past the end is cut short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

__all__ = [
    "tokenize",
    "Command",
    "Text", "LineFeed", "Tab", "Init", "SelectCodePage", "PrintMode", "Emphasis", "Underline",
    "SelectFont", "Align", "LineSpacing", "FeedLines", "FeedDots", "CharSize", "Reverse", "Cut",
    "BarcodeHeight", "BarcodeWidth", "HriPosition", "HriFont", "Barcode",
    "ColumnImage", "Raster", "GraphicsStore", "GraphicsPrint",
    "Code2DSize", "Code2DErrorLevel", "Code2DStore", "Code2DPrint", "QR", "PDF417",
    "strip_code_sets",
]

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
LF, HT = 0x0A, 0x09
QR, PDF417 = 0x31, 0x30  # GS ( k symbol bytes (cn)

BARCODE_NAMES = {
    0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF",
    71: "CODABAR", 72: "CODE93", 73: "CODE128", 74: "GS1-128", 75: "GS1 DATABAR",
    76: "GS1 DATABAR", 77: "GS1 DATABAR", 78: "GS1 DATABAR",
}
_CUT_WITH_FEED = (65, 66, 97, 98, 103, 104)  # GS V m n: feed n dots, then cut


# -- the commands ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Text:
    """A run of printable bytes, to be read in the code page selected now."""

    data: bytes


@dataclass(frozen=True, slots=True)
class LineFeed:
    """LF: print the buffered line (an empty one feeds a line)."""


@dataclass(frozen=True, slots=True)
class Tab:
    """HT: to the next tab stop (every 8 columns)."""


@dataclass(frozen=True, slots=True)
class Init:
    """ESC @: the printer's initial state (styles, alignment, code page slot 0)."""


@dataclass(frozen=True, slots=True)
class SelectCodePage:
    """ESC t n: bytes 0x80-0xFF from now on mean slot ``slot`` of the printer's table."""

    slot: int


@dataclass(frozen=True, slots=True)
class PrintMode:
    """ESC ! n: font, emphasis, double height and width, underline at once."""

    font_b: bool
    bold: bool
    double_height: bool
    double_width: bool
    underline: bool


@dataclass(frozen=True, slots=True)
class Emphasis:
    """ESC E n."""

    on: bool


@dataclass(frozen=True, slots=True)
class Underline:
    """ESC - n."""

    on: bool


@dataclass(frozen=True, slots=True)
class SelectFont:
    """ESC M n: font A (12 x 24) or font B (9 x 17)."""

    font_b: bool


@dataclass(frozen=True, slots=True)
class Align:
    """ESC a n: ``left``, ``center`` or ``right``."""

    align: str


@dataclass(frozen=True, slots=True)
class LineSpacing:
    """ESC 3 n (``dots``) or ESC 2 (None: the printer's default)."""

    dots: int | None


@dataclass(frozen=True, slots=True)
class FeedLines:
    """ESC d n: print the buffer and feed ``lines`` lines."""

    lines: int


@dataclass(frozen=True, slots=True)
class FeedDots:
    """ESC J n: print the buffer and feed ``dots`` dots."""

    dots: int


@dataclass(frozen=True, slots=True)
class CharSize:
    """GS ! n: character width and height multipliers (1-8)."""

    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Reverse:
    """GS B n: white on black."""

    on: bool


@dataclass(frozen=True, slots=True)
class Cut:
    """GS V: cut the paper, after feeding ``feed`` dots (0: none)."""

    feed: int


@dataclass(frozen=True, slots=True)
class BarcodeHeight:
    """GS h n."""

    dots: int


@dataclass(frozen=True, slots=True)
class BarcodeWidth:
    """GS w n: the module width in dots."""

    dots: int


@dataclass(frozen=True, slots=True)
class HriPosition:
    """GS H n: the human-readable line: 0 none, 1 above, 2 below, 3 both."""

    position: int


@dataclass(frozen=True, slots=True)
class HriFont:
    """GS f n."""

    font_b: bool


@dataclass(frozen=True, slots=True)
class Barcode:
    """GS k m: a 1D code; ``kind`` is ``m``, ``payload`` the data bytes as sent."""

    kind: int
    payload: bytes

    @property
    def symbology(self) -> str | None:
        """``EAN13``, ``CODE128``, ... or None for a type this reader does not know."""
        return BARCODE_NAMES.get(self.kind)

    def text(self, fnc1: str = "") -> str:
        """The code's data: Latin-1, and for Code 128 without Epson's code-set selectors."""
        text = self.payload.decode("latin-1")
        if self.symbology in ("CODE128", "GS1-128"):
            text = strip_code_sets(text, fnc1)
        return text


@dataclass(frozen=True, slots=True)
class ColumnImage:
    """ESC * m: one stripe of ``width`` columns, 8 dots high (m < 32) or 24, as sent."""

    mode: int
    width: int
    data: bytes

    @property
    def column_bytes(self) -> int:
        return 3 if self.mode >= 32 else 1


@dataclass(frozen=True, slots=True)
class Raster:
    """GS v 0: ``rows`` rows of ``width_bytes`` packed bytes (1 = black); ``data`` may be short."""

    width_bytes: int
    rows: int
    data: bytes


@dataclass(frozen=True, slots=True)
class GraphicsStore:
    """GS ( L / GS 8 L fn 112: keep an image of ``width`` x ``rows`` dots for GraphicsPrint."""

    width: int
    rows: int
    data: bytes


@dataclass(frozen=True, slots=True)
class GraphicsPrint:
    """GS ( L / GS 8 L fn 50: print the kept image."""


@dataclass(frozen=True, slots=True)
class Code2DSize:
    """GS ( k fn 67: the module size of a 2D code (``symbol`` QR or PDF417)."""

    symbol: int
    size: int


@dataclass(frozen=True, slots=True)
class Code2DErrorLevel:
    """GS ( k fn 69: the error correction parameter byte."""

    symbol: int
    level: int


@dataclass(frozen=True, slots=True)
class Code2DStore:
    """GS ( k fn 80: the data of the next 2D code."""

    symbol: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Code2DPrint:
    """GS ( k fn 81: print the stored 2D code."""

    symbol: int


Command = (
    Text | LineFeed | Tab | Init | SelectCodePage | PrintMode | Emphasis | Underline | SelectFont | Align
    | LineSpacing | FeedLines | FeedDots | CharSize | Reverse | Cut | BarcodeHeight | BarcodeWidth
    | HriPosition | HriFont | Barcode | ColumnImage | Raster | GraphicsStore | GraphicsPrint
    | Code2DSize | Code2DErrorLevel | Code2DStore | Code2DPrint
)
_Step = tuple["Command | None", int]  # a command (None: nothing to act on) and where the next one starts

_LINE_FEED, _TAB, _INIT, _GRAPHICS_PRINT = LineFeed(), Tab(), Init(), GraphicsPrint()


def strip_code_sets(text: str, fnc1: str = "") -> str:
    """Epson's Code 128 data: drop the {A {B {C selectors, '{{' is '{', FNC1 ('{1') as ``fnc1``."""
    out, j = [], 0
    while j < len(text):
        if text[j] == "{" and j + 1 < len(text):
            nxt = text[j + 1]
            if nxt == "{":
                out.append("{")
            elif nxt == "1":
                out.append(fnc1)
            j += 2
            continue
        out.append(text[j])
        j += 1
    return "".join(out)


# -- the reader -------------------------------------------------------------------
def tokenize(data: bytes) -> Iterator[Command]:
    """The commands in ``data``, in order; lazily, so a reader may stop early."""
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        command: Command | None = None
        if b == ESC:
            command, i = _esc(data, i)
        elif b == GS:
            command, i = _gs(data, i)
        elif b == FS:
            i = _fs(data, i)
        elif b == DLE:
            i = _dle(data, i)
        elif b == LF:
            command, i = _LINE_FEED, i + 1
        elif b == HT:
            command, i = _TAB, i + 1
        elif b < 0x20 or b == 0x7F:
            i += 1  # CR and other controls: nothing on paper
        else:
            start = i
            while i < n and data[i] >= 0x20 and data[i] != 0x7F:
                i += 1
            command = Text(data[start:i])
        if command is not None:
            yield command


def _arg(data: bytes, i: int) -> int:
    return data[i] if i < len(data) else 0


def _word(data: bytes, i: int) -> int:
    """A little-endian 16-bit parameter (nL nH)."""
    return _arg(data, i) + 256 * _arg(data, i + 1)


def _align(p: int) -> Align:
    return Align({0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}.get(p, "left"))


def _print_mode(p: int) -> PrintMode:
    return PrintMode(font_b=bool(p & 1), bold=bool(p & 8), double_height=bool(p & 0x10),
                     double_width=bool(p & 0x20), underline=bool(p & 0x80))


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
# Fixed-length commands the previews act on: command byte -> its meaning from the parameter byte.
_ESC_MEANINGS: dict[int, Callable[[int], Command]] = {
    ord("@"): lambda p: _INIT,
    ord("t"): SelectCodePage,
    ord("!"): _print_mode,
    ord("E"): lambda p: Emphasis(bool(p & 1)),
    ord("-"): lambda p: Underline(p in (1, 2, 49, 50)),
    ord("M"): lambda p: SelectFont(p in (1, 49)),
    ord("a"): _align,
    ord("2"): lambda p: LineSpacing(None),
    ord("3"): LineSpacing,
    ord("d"): FeedLines,
    ord("J"): FeedDots,
}
_GS_MEANINGS: dict[int, Callable[[int], Command]] = {
    ord("!"): lambda p: CharSize(((p >> 4) & 7) + 1, (p & 7) + 1),
    ord("B"): lambda p: Reverse(bool(p & 1)),
    ord("h"): BarcodeHeight,
    ord("w"): BarcodeWidth,
    ord("H"): lambda p: HriPosition(p & 3 if p < 48 else (p - 48) & 3),
    ord("f"): lambda p: HriFont(p in (1, 49)),
}
# Commands are immutable: each one's 256 possible values are built once, not per byte read.
_ESC_COMMANDS = {cmd: tuple(make(p) for p in range(256)) for cmd, make in _ESC_MEANINGS.items()}
_GS_COMMANDS = {cmd: tuple(make(p) for p in range(256)) for cmd, make in _GS_MEANINGS.items()}


def _esc(data: bytes, i: int) -> _Step:
    cmd, p = _arg(data, i + 1), _arg(data, i + 2)
    if cmd == ord("*"):  # column bit image: m nL nH data
        width = _word(data, i + 3)
        end = i + 5 + width * (3 if p >= 32 else 1)
        return ColumnImage(p, width, data[i + 5 : end]), end
    if cmd == ord("D"):  # tab stops, NUL-terminated
        end = data.find(b"\x00", i + 2)
        return None, len(data) if end < 0 else end + 1
    known = _ESC_COMMANDS.get(cmd)
    return (known[p] if known else None), i + 2 + _ESC_PARAMS.get(cmd, 0)


def _gs(data: bytes, i: int) -> _Step:
    cmd, p = _arg(data, i + 1), _arg(data, i + 2)
    if cmd == ord("V"):
        with_feed = p in _CUT_WITH_FEED
        return Cut(_arg(data, i + 3) if with_feed else 0), i + 3 + with_feed
    if cmd == ord("k"):
        return _barcode(data, i)
    if cmd == ord("v") and p == ord("0"):  # GS v 0 m xL xH yL yH data
        xbytes, rows = _word(data, i + 4), _word(data, i + 6)
        end = i + 8 + xbytes * rows
        return Raster(xbytes, rows, data[i + 8 : end]), end
    if cmd == ord("(") and i + 4 < len(data):  # GS ( fn pL pH body
        end = i + 5 + _word(data, i + 3)
        return _gs_paren(data[i + 2], data[i + 5 : end]), end
    if cmd == ord("8") and p == ord("L"):  # GS 8 L p1..p4 body
        end = i + 7 + int.from_bytes(data[i + 3 : i + 7], "little")
        return _graphics(data[i + 7 : end]), end
    known = _GS_COMMANDS.get(cmd)
    return (known[p] if known else None), i + 2 + _GS_PARAMS.get(cmd, 0)


def _gs_paren(fn_class: int, body: bytes) -> Command | None:
    if fn_class == ord("L"):
        return _graphics(body)
    if fn_class != ord("k") or len(body) < 2:
        return None
    symbol, fn = body[0], body[1]  # cn fn [m] ...
    if fn == 67 and len(body) >= 3:
        return Code2DSize(symbol, body[2])
    if fn == 69 and len(body) >= 3:
        return Code2DErrorLevel(symbol, body[2])
    if fn == 80:  # store: cn fn m data
        return Code2DStore(symbol, body[3:])
    if fn == 81:
        return Code2DPrint(symbol)
    return None


def _graphics(body: bytes) -> Command | None:
    """GS ( L / GS 8 L: m fn ...; store (fn 112: a bx by c xL xH yL yH data) or print (fn 50)."""
    if len(body) >= 10 and body[1] == 112:
        return GraphicsStore(_word(body, 6), _word(body, 8), body[10:])
    if len(body) >= 2 and body[1] == 50:
        return _GRAPHICS_PRINT
    return None


def _barcode(data: bytes, i: int) -> _Step:
    m = _arg(data, i + 2)
    if m <= 6:  # function A: NUL-terminated
        end = data.find(b"\x00", i + 3)
        end = len(data) if end < 0 else end
        return Barcode(m, data[i + 3 : end]), end + 1
    length = _arg(data, i + 3)  # function B: a length byte
    return Barcode(m, data[i + 4 : i + 4 + length]), i + 4 + length


def _fs(data: bytes, i: int) -> int:
    cmd = _arg(data, i + 1)
    if cmd == ord("(") and i + 4 < len(data):
        return i + 5 + _word(data, i + 3)
    return i + 2 + {ord("!"): 1, ord("-"): 1, ord("C"): 1, ord("p"): 2, ord("W"): 1}.get(cmd, 0)


def _dle(data: bytes, i: int) -> int:
    cmd = _arg(data, i + 1)
    if cmd in (0x04, 0x05):  # DLE EOT n, DLE ENQ n
        return i + 3
    if cmd == 0x14:  # DLE DC4 fn ...
        return i + 3 + (6 if _arg(data, i + 2) == 8 else 2)
    return i + 1  # a bare DLE byte: drop it
