"""The slip as a document: blocks of text, codes and rules, no bytes, no I/O.

The slip layout (posd.core.slip) produces a SlipDocument; a printer driver
turns it into ESC/POS for its capability profile and paper width. Keeping the
document abstract lets one slip print on 58 mm and 80 mm paper, as text or as
raster, and be previewed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

Align = Literal["left", "center", "right"]


@dataclass(frozen=True)
class Text:
    """One paragraph of text; the renderer wraps it to the paper width."""

    text: str
    align: Align = "left"
    bold: bool = False
    double: bool = False  # double width and height (headings)


@dataclass(frozen=True)
class Columns:
    """A label on the left and a value on the right of one line."""

    left: str
    right: str
    bold: bool = False


@dataclass(frozen=True)
class Rule:
    """A horizontal separator across the paper."""

    char: str = "-"


@dataclass(frozen=True)
class Barcode:
    """A one-dimensional code (voucher, member card)."""

    data: str
    symbology: Literal["CODE128", "EAN13"] = "CODE128"


@dataclass(frozen=True)
class QRCode:
    data: str
    size: int = 6  # module size in dots


@dataclass(frozen=True)
class Feed:
    lines: int = 1


@dataclass(frozen=True)
class Progress:
    """A bar filled to ``fraction`` (0..1): progress to the next tier.
    It fills from the line's start, so from the right on a right-to-left slip."""

    fraction: float


@dataclass(frozen=True)
class CodePageTable:
    """Bytes 0x80-0xFF printed under ``ESC t slot`` (print-test): shows
    which characters the printer really has in that slot. With ``sample``,
    only that text is printed, in the page the profile names for the slot:
    a one-line check that the slot holds that page."""

    slot: int
    label: str = ""
    sample: str = ""


Block = Union[Text, Columns, Rule, Barcode, QRCode, Feed, Progress, CodePageTable]


@dataclass(frozen=True)
class SlipDocument:
    slip_id: str
    locale: str
    direction: Literal["ltr", "rtl"] = "ltr"
    blocks: tuple[Block, ...] = field(default_factory=tuple)
    cut: bool = True

    def plain_lines(self) -> list[str]:
        """The text content, one entry per block, for logs-free previews and tests."""
        out: list[str] = []
        for b in self.blocks:
            if isinstance(b, Text):
                out.append(b.text)
            elif isinstance(b, Columns):
                out.append(f"{b.left}  {b.right}")
            elif isinstance(b, (Barcode, QRCode)):
                out.append(f"[{type(b).__name__}:{b.data}]")
            elif isinstance(b, Progress):
                out.append(f"[Progress:{round(b.fraction * 100)}%]")
            elif isinstance(b, CodePageTable):
                out.append(f"[CodePageTable:{b.slot}]")
        return out
