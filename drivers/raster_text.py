"""Slip text drawn as printer dots, for what a printer cannot print as text.

Persian and Arabic have no usable printer code page (letters come out
unjoined, left to right, with ``?`` for ی and Persian digits), and some
models have no Polish page: those blocks are drawn here and sent as raster
images. Shaping and bidi come from Pillow's raqm layout (HarfBuzz + FriBiDi),
with Vazirmatn (SIL OFL) for Arabic script and DejaVu Sans Mono, sized to
the printer's 12 x 24 font A cell, for Latin text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, features

from posd.core.slip_doc import Columns, Text

__all__ = ["RasterText", "has_rtl", "font", "FONT_DIR", "CELL_W", "CELL_H", "LINE_H", "RasterUnavailable"]

FONT_DIR = Path(str(resources.files("posd") / "assets" / "fonts"))
CELL_W, CELL_H, LINE_H = 12, 24, 30  # font A and the default line spacing (1/6 inch at 180 dpi)
_MONO_SIZE = 20  # DejaVu Sans Mono advances 0.602 em: 12 dots at 20 px
_ARABIC_SIZE = 22
_THRESHOLD = 140  # thermal dots are on or off; a touch above half keeps strokes whole
_RTL_RE = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")


class RasterUnavailable(RuntimeError):
    """Right-to-left text needs Pillow's raqm layout (libraqm + libfribidi)."""


def has_rtl(text: str) -> bool:
    return bool(_RTL_RE.search(text))


@functools.lru_cache(maxsize=32)
def font(kind: str, bold: bool, size: int) -> ImageFont.FreeTypeFont:
    """``kind`` "arabic" (Vazirmatn) or "mono" (DejaVu Sans Mono)."""
    name = {("arabic", False): "Vazirmatn-Regular.ttf", ("arabic", True): "Vazirmatn-Bold.ttf",
            ("mono", False): "DejaVuSansMono.ttf", ("mono", True): "DejaVuSansMono-Bold.ttf"}[(kind, bold)]
    if not features.check("raqm"):
        raise RasterUnavailable("Pillow's raqm layout is not available: install libfribidi0 (Debian) "
                                "so Persian and Arabic can be shaped")
    return ImageFont.truetype(str(FONT_DIR / name), size, layout_engine=ImageFont.Layout.RAQM)


@functools.lru_cache(maxsize=4096)
def _drawn_by(kind: str, ch: str) -> bool:
    """Does the font have a glyph for ``ch`` (spaces and format characters, such as Persian's ZWNJ,
    need none)? A missing glyph draws the font's .notdef, as a code point no font has does."""
    if unicodedata.category(ch) in ("Zs", "Cf", "Cc", "Mn"):
        return True
    face = font(kind, False, _ARABIC_SIZE)
    missing = face.getmask("\U0010fffd")
    mask = face.getmask(ch)
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


# A piece of a line drawn in one call: its text (logical order), font, direction and language.
_Piece = tuple[str, ImageFont.FreeTypeFont, str, "str | None"]


class _Run:
    """One string with the font and direction it is drawn in.

    Vazirmatn draws Arabic script and Latin but no Cyrillic, Greek or symbols such as ✓: a name in
    those on a Persian slip, or beside Persian words, came out blank. A line holding characters
    Vazirmatn lacks and DejaVu Sans Mono has is drawn in pieces, each in the font that has it, laid
    out in the line's direction (runs of one direction keep their order; the line's runs reverse
    on a right-to-left line)."""

    def __init__(self, text: str, bold: bool, scale: int, rtl_doc: bool) -> None:
        self.text = text
        arabic = rtl_doc or has_rtl(text)
        self.kind = "arabic" if arabic else "mono"
        self.font = font(self.kind, bold, (_ARABIC_SIZE if arabic else _MONO_SIZE) * scale)
        # Only a line Vazirmatn cannot draw whole needs the fallback; a part of it (a wrapped line, a
        # word measured) then may, and any part of a line it draws whole it draws whole too.
        self.fallback = None if not arabic or all(_drawn_by(self.kind, ch) for ch in text) else \
            font("mono", bold, _MONO_SIZE * scale)
        self.direction = "rtl" if has_rtl(text) else "ltr"
        self.language = "fa" if self.direction == "rtl" else None

    def width(self, text: str | None = None) -> int:
        return sum(self._length(piece) for piece in self.pieces(self.text if text is None else text))

    @staticmethod
    def _length(piece: _Piece) -> int:
        text, face, direction, language = piece
        return int(round(face.getlength(text, direction=direction, language=language)))

    def pieces(self, text: str) -> list[_Piece]:
        """``text`` as pieces in visual order, left to right; one piece when the run's font has it all."""
        fallback = self.fallback
        if fallback is None:
            return [(text, self.font, self.direction, self.language)]
        segments: list[list[Any]] = []  # [text, font: 0 the run's, 1 the fallback, None spaces]
        for ch in text:
            # DejaVu has what Vazirmatn lacks, or at least shows its box where Vazirmatn draws nothing
            which = None if unicodedata.category(ch) == "Zs" else int(not _drawn_by(self.kind, ch))
            if segments and segments[-1][1] == which:
                segments[-1][0] += ch
            else:
                segments.append([ch, which])
        directions = ["ltr" if which == 1 else "rtl" if which == 0 and has_rtl(part) else
                      None if which is None else "ltr" for part, which in segments]
        for i, direction in enumerate(directions):  # spaces: their neighbours', the line's between two
            if direction is None:
                around = {d for d in (directions[i - 1] if i else None,
                                      directions[i + 1] if i + 1 < len(directions) else None) if d}
                directions[i] = around.pop() if len(around) == 1 else self.direction
        pieces: list[_Piece] = [(part, fallback if which == 1 else self.font, direction,
                                 "fa" if direction == "rtl" else None)
                                for (part, which), direction in zip(segments, directions)]
        groups: list[list[_Piece]] = []  # neighbours of one direction
        for piece in pieces:
            if groups and groups[-1][0][2] == piece[2]:
                groups[-1].append(piece)
            else:
                groups.append([piece])
        if self.direction == "rtl":
            groups.reverse()
        return [piece for group in groups for piece in (reversed(group) if group[0][2] == "rtl" else group)]


class RasterText:
    """Draws Text and Columns blocks ``width`` dots wide, in the document's direction."""

    def __init__(self, width: int, rtl: bool) -> None:
        self.width, self.rtl = width, rtl

    # -- blocks -----------------------------------------------------------
    def text(self, block: Text) -> Image.Image:
        scale = 2 if block.double else 1
        lines: list[tuple[_Run, str]] = []
        for paragraph in block.text.split("\n"):
            run = _Run(paragraph, block.bold, scale, self.rtl)
            lines += [(run, line) for line in self._wrap(run, paragraph)]
        align = self.side(block.align)
        return self._draw([[(run, line, align)] for run, line in lines], scale)

    def columns(self, block: Columns) -> Image.Image:
        left, right = _Run(block.left, block.bold, 1, self.rtl), _Run(block.right, block.bold, 1, self.rtl)
        start, end = self.side("left"), self.side("right")
        if left.width() + 2 * CELL_W + right.width() <= self.width:
            return self._draw([[(left, block.left, start), (right, block.right, end)]], 1)
        rows = [[(left, line, start)] for line in self._wrap(left, block.left)]
        rows += [[(right, line, end)] for line in self._wrap(right, block.right)]
        return self._draw(rows, 1)

    def progress(self, fraction: float) -> Image.Image:
        """A bar filled from the line's start (the right on an RTL slip)."""
        pad, bar_h = 7, 16
        img = Image.new("1", (self.width, bar_h + 2 * pad), 1)
        draw = ImageDraw.Draw(img)
        x0, x1 = CELL_W, self.width - CELL_W - 1
        draw.rectangle((x0, pad, x1, pad + bar_h - 1), outline=0, width=2)
        filled = int(round((x1 - x0 - 4) * max(0.0, min(1.0, fraction))))
        if filled > 0:
            if self.rtl:
                draw.rectangle((x1 - 2 - filled, pad + 3, x1 - 3, pad + bar_h - 4), fill=0)
            else:
                draw.rectangle((x0 + 3, pad + 3, x0 + 2 + filled, pad + bar_h - 4), fill=0)
        return img

    # -- layout -----------------------------------------------------------
    def side(self, align: str) -> str:
        """Slip alignment in the document's direction: "left" means the start."""
        if self.rtl and align in ("left", "right"):
            return "right" if align == "left" else "left"
        return align

    def _wrap(self, run: _Run, text: str) -> list[str]:
        words, lines, line = text.split(" "), [], ""
        for word in words:
            candidate = f"{line} {word}" if line else word
            if run.width(candidate) <= self.width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            while run.width(line) > self.width and len(line) > 1:  # one word wider than the paper
                cut = len(line) - 1
                while cut > 1 and run.width(line[:cut]) > self.width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
        return lines

    def _draw(self, rows: list[list[tuple[_Run, str, str]]], scale: int) -> Image.Image:
        heights = [max(self._line_height(run, scale) for run, _, _ in row) for row in rows]
        img = Image.new("L", (self.width, sum(heights)), 255)
        draw = ImageDraw.Draw(img)
        y = 0
        for row, h in zip(rows, heights):
            for run, text, align in row:
                w = run.width(text)
                x = {"left": 0, "center": (self.width - w) // 2, "right": self.width - w}[align]
                ascent, descent = run.font.getmetrics()
                baseline = y + (h - (ascent + descent)) // 2 + ascent
                for piece in run.pieces(text):
                    part, face, direction, language = piece
                    draw.text((x, baseline), part, font=face, fill=0, anchor="ls", direction=direction,
                              language=language)
                    x += run._length(piece)
            y += h
        return img.point(lambda v: 255 if v > _THRESHOLD else 0).convert("1")

    @staticmethod
    def _line_height(run: _Run, scale: int) -> int:
        ascent, descent = run.font.getmetrics()
        return max(LINE_H * scale, ascent + descent + 2 * scale)
