"""Real-time printer status (ESC/POS ``DLE EOT n``), read and interpreted by us. Pure.

python-escpos 3.1 reports "paper OK" when a printer does not answer and its
``is_online()`` depends on the brand, so we ask ourselves and read the
Epson bits:

- ``DLE EOT 1`` (printer): bit 3 offline;
- ``DLE EOT 2`` (offline cause): bit 2 cover open, bit 5 printing stopped by
  paper end, bit 6 error;
- ``DLE EOT 4`` (paper sensors): bits 2-3 paper near end, bits 5-6 paper end.

Every valid answer has bits 1 and 4 set and bits 0 and 7 clear; anything
else is no answer (a printer that ignores DLE EOT, or line noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["QUERIES", "PrinterStatus", "parse_status", "status_query", "query_status"]

QUERIES = (1, 2, 4)


def status_query(n: int) -> bytes:
    return bytes((0x10, 0x04, n))


def _valid(byte: int | None) -> bool:
    return byte is not None and byte & 0x93 == 0x12


@dataclass(frozen=True)
class PrinterStatus:
    answered: bool  # False: the printer said nothing we understand
    offline: bool = False
    cover_open: bool = False
    paper_out: bool = False
    paper_near_end: bool = False
    error: bool = False

    @property
    def reason(self) -> str | None:
        """Why the printer cannot print now, most useful to store staff first; None when it can."""
        if not self.answered:
            return None  # unknown: let the transport tell (connect, write timeouts)
        if self.cover_open:
            return "cover_open"
        if self.paper_out:
            return "paper_out"
        if self.error:
            return "printer_error"
        if self.offline:
            return "offline"
        return None

    @property
    def warning(self) -> str | None:
        """A condition that still prints but needs attention soon."""
        if self.answered and self.reason is None and self.paper_near_end:
            return "paper_near_end"
        return None

    @property
    def ok(self) -> bool:
        return self.reason is None


def parse_status(answers: dict[int, int | None]) -> PrinterStatus:
    """Turn the answers to DLE EOT 1, 2 and 4 (each a byte or None) into a status."""
    printer, cause, paper = (answers.get(n) for n in QUERIES)
    if not _valid(printer):
        return PrinterStatus(answered=False)
    cause = cause if _valid(cause) else 0x12
    paper = paper if _valid(paper) else 0x12
    assert printer is not None and cause is not None and paper is not None
    return PrinterStatus(
        answered=True,
        offline=bool(printer & 0x08),
        cover_open=bool(cause & 0x04),
        paper_out=bool(cause & 0x20) or bool(paper & 0x60),
        paper_near_end=bool(paper & 0x0C),
        error=bool(cause & 0x40),
    )


def query_status(exchange: Callable[[bytes], int | None]) -> PrinterStatus:
    """Ask DLE EOT 1, 2, 4 through ``exchange(query) -> answer byte or None``.

    Stops at the first silence: a printer that ignores DLE EOT costs one
    timeout, not three.
    """
    answers: dict[int, int | None] = {}
    for n in QUERIES:
        answer = exchange(status_query(n))
        answers[n] = answer
        if not _valid(answer):
            break
    return parse_status(answers)
