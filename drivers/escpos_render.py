"""ESC/POS rendering: a SlipDocument to bytes, per capability profile and paper width.

``render_slip`` turns a ``SlipDocument`` into ESC/POS bytes with python-escpos'
``Dummy`` printer, the configured capability profile and the paper width.

- Text prints as text through one code page chosen from the profile for the
  whole slip (CP852, Mazovia, Windows-1250 or ISO 8859-2 for Polish); a block
  that page cannot print, and every block of a right-to-left slip, is drawn
  as a raster image (``raster_text``) instead.
- Barcodes and QR codes use the printer's own commands when the profile has
  them, an image drawn from the code's modules otherwise; either way sized
  to fit the paper with a quiet zone, so they scan.

Rendering is deterministic: a fresh ``Dummy`` per document, so the same
document always gives the same bytes (previews, tests and reprints agree).
Pure apart from python-escpos itself: no device I/O here.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import logging
import re
import textwrap
import threading
import unicodedata
from typing import Iterator, Mapping

from PIL import Image

from posd.core.slip_doc import (
    Barcode, Block, CodePageTable, Columns, Feed, Progress, QRCode, Rule, SlipDocument, Text,
)

from . import codes, escpos_raster
from .codepages import CodePage, choose_code_page, code_pages_for, encode
from .escpos_lib import CAPABILITIES, Dummy, EscposError, get_profile
from .raster_text import CELL_W, RasterText, has_rtl

__all__ = [
    "PAPER_CHARS",
    "PAPER_DOTS",
    "render_slip",
    "columns_for",
    "dots_for",
    "check_printer_settings",
    "known_profiles",
    "profile_code_pages",
]

log = logging.getLogger(__name__)

PAPER_CHARS: dict[int, int] = {58: 32, 80: 48}  # font A characters per line
PAPER_DOTS: dict[int, int] = {58: 384, 80: 576}  # printable dots per line at 203 dpi

_STDOUT_LOCK = threading.Lock()
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Bidi embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): U+202E in a name
# printed it backwards and moved the text beside it. The marks (LRM, RLM, ALM) stay.
_BIDI_CONTROL_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
_ESC = b"\x1b"
_BAR_HEIGHT = 80


# -- profiles --------------------------------------------------------------
def known_profiles() -> list[str]:
    return sorted(CAPABILITIES["profiles"])


def check_printer_settings(profile: str, width_mm: int) -> None:
    """Raise ValueError naming the bad setting (unknown profile, odd width)."""
    if profile not in CAPABILITIES["profiles"]:
        near = difflib.get_close_matches(profile, known_profiles(), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ValueError(f"unknown printer profile {profile!r}{hint}")
    if width_mm not in PAPER_CHARS:
        widths = ", ".join(str(w) for w in PAPER_CHARS)
        raise ValueError(f"printer width_mm must be one of {widths}, got {width_mm!r}")


def columns_for(profile: str, width_mm: int) -> int:
    """Characters per line: 48 on 80 mm, 32 on 58 mm.

    A profile describing a real model (it knows its paper width) caps this
    at its own font A columns: a TM-T88V prints 42 on 80 mm paper, and a
    longer line would wrap on the printer.
    """
    check_printer_settings(profile, width_mm)
    columns = PAPER_CHARS[width_mm]
    prof = get_profile(profile)
    media_mm = prof.profile_data.get("media", {}).get("width", {}).get("mm")
    if isinstance(media_mm, (int, float)):
        columns = min(columns, prof.get_columns(0))
    return columns


def dots_for(profile: str, width_mm: int) -> int:
    """Printable dots per line: the model's own (512 on a TM-T88V) when the
    profile knows it, else what the paper width gives at 203 dpi."""
    check_printer_settings(profile, width_mm)
    pixels = get_profile(profile).profile_data.get("media", {}).get("width", {}).get("pixels")
    dots = PAPER_DOTS[width_mm]
    if isinstance(pixels, int) and pixels > 0:
        dots = min(dots, pixels)
    return max(dots, columns_for(profile, width_mm) * CELL_W)


def profile_code_pages(profile: str, table: Mapping[int, str] | None = None) -> dict[int, str]:
    """``ESC t`` slot -> Python codec (or 128-char table) for ``escpos_to_text`` and
    ``escpos_to_png``: the profile's slots, or ``table``'s (the printer's own, from the config)."""
    return _page_codecs(profile, tuple(sorted(table.items())) if table is not None else None)


@functools.lru_cache(maxsize=64)
def _page_codecs(profile: str, table: tuple[tuple[int, str], ...] | None) -> dict[int, str]:
    pages = code_pages_for(profile, dict(table) if table is not None else None)
    return {slot: page.codec for slot, page in pages.items()}


# -- rendering -------------------------------------------------------------
@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    # barcode() prints "Using hardware barcode renderer" to stdout; the lock
    # keeps concurrent swaps from tangling.
    with _STDOUT_LOCK, contextlib.redirect_stdout(io.StringIO()):
        yield


def _clean(text: str) -> str:
    """Strip control characters: slip text (a member's name from central)
    must never smuggle printer commands such as a drawer kick, nor reorder
    what prints around it (a bidi override or isolate in a name)."""
    return _CONTROL_RE.sub(" ", _BIDI_CONTROL_RE.sub("", text))


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(_clean(paragraph), width, break_on_hyphens=False) or [""])
    return lines


class _SlipRenderer:
    def __init__(self, doc: SlipDocument, profile: str, width_mm: int, *,
                 code_pages: Mapping[int, str] | None = None) -> None:
        self.doc = doc
        self.columns = columns_for(profile, width_mm)
        self.p = Dummy(profile=profile)
        # Everything is laid out on the text columns' dots (504 of a TM-T88V's
        # 512) from the left edge, so a printer driver and a preview give the
        # very same bytes; ``paper`` is the print area that ESC a justifies in.
        self.dots = self.columns * CELL_W
        self.paper = dots_for(profile, width_mm)
        self.rtl = doc.direction == "rtl"
        self.pages = code_pages_for(profile, code_pages)
        # Right-to-left text is always drawn, so it must not pull the page
        # towards CP864/CP1256 (a Persian name on a Polish slip).
        texts = [t for t in _doc_texts(doc) if not has_rtl(t)]
        self.page: CodePage | None = choose_code_page(texts, self.pages)
        self.can_raster = bool(self.p.profile.supports("bitImageRaster"))
        # Raster text spans the text columns, so it lines up with printed text.
        self.raster = RasterText(self.dots, self.rtl)
        # What the printer is set to, so a line sends only what changes.
        self.bold, self.double, self.align = False, False, "left"  # as ESC @ leaves it
        self.blank = 0  # white rows owed to the paper before the next thing printed

    def render(self) -> bytes:
        self.p.hw("INIT")
        for block in self.doc.blocks:
            self.block(block)
        self.flush_blank()
        if self.doc.cut:
            self.p.cut()
        return self.p.output

    def block(self, block: Block) -> None:
        if isinstance(block, Text):
            self.text(block)
        elif isinstance(block, Columns):
            self.columns_line(block)
        elif isinstance(block, Rule):
            self.style("left", False, False)
            self.p._raw(((_clean(block.char)[:1] or "-") * self.columns).encode("ascii", "replace") + b"\n")
        elif isinstance(block, Barcode):
            self.barcode(block)
        elif isinstance(block, QRCode):
            self.qr(block)
        elif isinstance(block, Feed):
            self.flush_blank()
            self.p.ln(max(0, min(block.lines, 255)))
        elif isinstance(block, Progress):
            self.progress(block)
        elif isinstance(block, CodePageTable):
            self.code_page_table(block)
        else:
            raise TypeError(f"unknown slip block {type(block).__name__}")

    def style(self, align: str, bold: bool, double: bool) -> None:
        """Set up a text line: only what differs from the printer's state is sent."""
        self.flush_blank()
        if self.double != double:  # ESC ! also ends emphasis
            self.p._raw(_ESC + b"!" + (b"\x30" if double else b"\x00"))
            self.double, self.bold = double, False
        if self.bold != bold:
            self.p._raw(_ESC + b"E" + (b"\x01" if bold else b"\x00"))
            self.bold = bold
        self.justify(align)
        # Re-select the code page before every text line: clone printers
        # forget it on a font/mode switch, after images, and after ESC @.
        if self.page is not None:
            self.p._raw(_ESC + b"t" + bytes([self.page.slot]))

    def justify(self, align: str) -> None:
        """ESC a: text lines, and images too, are placed by the printer."""
        if self.align != align:
            self.p._raw(_ESC + b"a" + {"left": b"\x00", "center": b"\x01", "right": b"\x02"}[align])
            self.align = align

    def flush_blank(self) -> None:
        """Feed the white rows images left below them, before anything else prints."""
        if self.blank:
            self.p._raw(escpos_raster.blank_feed(self.blank))
            self.blank = 0

    # -- text -------------------------------------------------------------
    def _encoded(self, lines: list[str]) -> list[bytes] | None:
        """The lines in the slip's code page, or None: draw them instead.

        On a right-to-left slip only lines that read the same in either
        direction print as text (Latin from a letter to a letter or digit: a
        voucher code, a Latin name); anything else is drawn with bidi."""
        if any(has_rtl(line) for line in lines):
            return None
        if self.rtl and not all(_reads_the_same_rtl(line) for line in lines):
            return None
        out = [encode(line, self.page) for line in lines]
        return None if any(b is None for b in out) else out  # type: ignore[return-value]

    def _send_lines(self, lines: list[str], encoded: list[bytes] | None) -> None:
        if encoded is None:  # no raster on this model: the best text it has
            codec = self.page.codec if self.page and len(self.page.codec) != 128 else "ascii"
            encoded = [line.encode(codec, "replace") for line in lines]
        for data in encoded:
            self.p._raw(data + b"\n")

    def text(self, block: Text) -> None:
        width = self.columns // 2 if block.double else self.columns
        lines = _wrap(block.text, width)
        encoded = self._encoded(lines)
        if encoded is None and self.can_raster:
            return self.image(self.raster.text(Text(_clean(block.text), block.align, block.bold, block.double)),
                              prefer=self.raster.side(block.align))
        self.style(self.raster.side(block.align), block.bold, block.double)
        self._send_lines(lines, encoded)

    def columns_line(self, block: Columns) -> None:
        left, right = _clean(block.left), _clean(block.right)
        lines = _wrap(left, self.columns)
        last = lines[-1]
        if len(last) + 1 + len(right) <= self.columns:
            lines[-1] = last + " " * (self.columns - len(last) - len(right)) + right
        else:  # a long value (a member's double-barrelled name) wraps at its words, never cut off
            lines.extend(part.rjust(self.columns) for part in _wrap(right, self.columns))
        encoded = None if self.rtl else self._encoded(lines)  # an RTL line's label is on the right
        if encoded is None and self.can_raster:
            return self.image(self.raster.columns(Columns(left, _clean(block.right), block.bold)))
        self.style("left", block.bold, False)
        self._send_lines(lines, encoded)

    def progress(self, block: Progress) -> None:
        if self.can_raster:
            return self.image(self.raster.progress(block.fraction), prefer="center")
        self.style("left", False, False)
        inner = self.columns - 2
        filled = int(round(inner * max(0.0, min(1.0, block.fraction))))
        self.p._raw(b"[" + b"#" * filled + b"-" * (inner - filled) + b"]\n")

    # -- images and codes -------------------------------------------------
    def image(self, img: Image.Image, align: str = "left", prefer: str | None = None) -> None:
        """``img`` on the text columns (from their left edge, or centred on
        them), sent as its inked bands only (``escpos_raster``)."""
        if img.width > self.dots:
            img = img.crop((0, 0, self.dots, img.height))
        x = (self.dots - img.width) // 2 if align == "center" else 0
        bands, after = escpos_raster.ink_bands(img, x, self.paper, prefer or align)
        for band in bands:
            self.blank += band.feed
            self.flush_blank()
            self.justify(band.align)
            self.p._raw(escpos_raster.raster_bytes(band))
        self.blank += after

    def barcode(self, block: Barcode) -> None:
        self.style("center", False, False)
        try:
            modules = codes.bar_modules(block.data, block.symbology)
        except ValueError:
            modules = None
        module = self.dots // (len(modules) + 2 * codes.BAR_QUIET) if modules else 0
        if modules and module < 2:  # too long for this paper as bars: a QR still scans
            if self.qr(QRCode(block.data, size=4)):  # and under it the code, as under bars
                self.style("center", False, False)
                self._send_lines([_clean(block.data)[: self.columns]], None)
            return None
        feature = "barcodeB" if block.symbology == "CODE128" else "barcodeA"
        if modules and self.p.profile.supports(feature):
            return self._native_barcode(block, min(module, 3))
        if modules and self.can_raster:
            bars = codes.barcode_image(modules, min(module, 3), _BAR_HEIGHT)
            self.image(bars, align="center")
            self.style("center", False, False)  # the code under the bars, as a printer's own HRI
            return self._send_lines([_clean(block.data)[: self.columns]], None)
        # Better a code the cashier can type than no slip at all.
        log.warning("slip %s: %s barcode not printable; printing it as text", self.doc.slip_id, block.symbology)
        self._send_lines([_clean(block.data)[: self.columns]], None)

    def _native_barcode(self, block: Barcode, module: int) -> None:
        # Epson's CODE128 wants a code-set selector first; '{' itself is '{{'.
        code = "{B" + block.data.replace("{", "{{") if block.symbology == "CODE128" else block.data
        try:
            with _quiet_stdout():
                self.p.barcode(code, block.symbology, height=_BAR_HEIGHT, width=max(2, module), pos="BELOW",
                               font="A", align_ct=True)
            self.align = "center"  # align_ct sends ESC a 1
        except EscposError as exc:
            log.warning("slip %s: %s barcode not printable (%s); printing it as text",
                        self.doc.slip_id, block.symbology, type(exc).__name__)
            self._send_lines([_clean(block.data)[: self.columns]], None)

    def qr(self, block: QRCode) -> bool:
        """The QR symbol (True), or its data as text on a printer that can draw neither (False)."""
        self.style("center", False, False)
        side = len(codes.qr_matrix(block.data)) + 2 * codes.QR_QUIET
        size = max(1, min(block.size, 16, self.dots // side))
        if self.p.profile.supports("qrCode"):
            from escpos.constants import QR_ECLEVEL_M

            self.p.qr(block.data, size=size, ec=QR_ECLEVEL_M, native=True)
        elif self.can_raster:
            self.image(codes.qr_image(codes.qr_matrix(block.data), size), align="center")
        else:
            self._send_lines([_clean(block.data)[: self.columns]], None)
            return False
        return True

    def code_page_table(self, block: CodePageTable) -> None:
        """Bytes 0x80-0xFF under ``ESC t slot``, 16 to a row, or the sample in that slot's page."""
        self.style("left", True, False)
        label = _clean(block.label or f"ESC t {block.slot}")[: self.columns]
        self.p._raw(label.encode("ascii", "replace") + b"\n")
        self.style("left", False, False)
        self.p._raw(_ESC + b"t" + bytes([block.slot & 0xFF]))
        page = self.pages.get(block.slot)
        sample = encode(_clean(block.sample), page) if block.sample else None
        if sample is not None:
            self.p._raw(sample + b"\n")
        else:
            spaced = self.columns >= 36
            for high in range(8, 16):
                row = bytes(range(high * 16, high * 16 + 16))
                body = b" ".join(bytes([c]) for c in row) if spaced else row
                self.p._raw(f"{high:X}x  ".encode() + body + b"\n")
        if self.page is not None:  # back to the slip's own page
            self.p._raw(_ESC + b"t" + bytes([self.page.slot]))


def _reads_the_same_rtl(line: str) -> bool:
    """Whether ``line`` looks the same laid out right to left (Unicode bidi):
    no right-to-left or Arabic-number characters, and it starts with a
    left-to-right letter and ends with one or a digit, so the neutrals
    between them stay in place (``V7K3-M9`` yes; ``10% off`` or ``Thanks!`` no)."""
    text = line.strip()
    if not text or any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in text):
        return False
    return unicodedata.bidirectional(text[0]) == "L" and unicodedata.bidirectional(text[-1]) in ("L", "EN")


def _doc_texts(doc: SlipDocument) -> Iterator[str]:
    for b in doc.blocks:
        if isinstance(b, Text):
            yield b.text
        elif isinstance(b, Columns):
            yield b.left
            yield b.right
        elif isinstance(b, Rule):
            yield b.char


def render_slip(doc: SlipDocument, profile: str = "default", width_mm: int = 80, *,
                code_pages: Mapping[int, str] | None = None) -> bytes:
    """The ESC/POS bytes for ``doc`` on this profile and paper width.

    ``code_pages`` (slot -> page name) replaces the profile's code-page table
    for clone printers whose slots differ from their model's."""
    return _SlipRenderer(doc, profile, width_mm, code_pages=code_pages).render()
