"""ESC/POS rendering: a SlipDocument to bytes, per capability profile and paper width.

``render_slip`` turns a ``SlipDocument`` into ESC/POS bytes with python-escpos'
``Dummy`` printer, the configured capability profile and the paper width.
Rendering is deterministic: a fresh ``Dummy`` per document, so the same
document always gives the same bytes (previews, tests and reprints agree).
Pure apart from python-escpos itself: no device I/O here.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import functools
import io
import logging
import os
import re
import stat
import tempfile
import textwrap
import threading
from typing import Iterator

from posd.core.slip_doc import Barcode, Block, Columns, Feed, QRCode, Rule, SlipDocument, Text

__all__ = [
    "PAPER_CHARS",
    "render_slip",
    "columns_for",
    "check_printer_settings",
    "known_profiles",
    "profile_code_pages",
]

log = logging.getLogger(__name__)



@contextlib.contextmanager
def _keep_root_logger() -> Iterator[None]:
    """Undo handlers python-escpos adds to the root logger.

    ``escpos.capabilities`` calls ``logging.basicConfig()`` at import, and the
    printer classes log through module-level ``logging.info()``, which does
    the same when the root logger has no handler yet. Logging setup is the
    daemon's business, not a library's.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)


def _capabilities_cache_dir() -> str:
    """A private directory for python-escpos' pickled capabilities.

    Without one it creates a new temp dir per process; and a pickle loaded
    from a directory others can write to would run their code.
    """
    if os.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
        path = os.path.join(os.environ["CACHE_DIRECTORY"].split(":")[0], "escpos")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "posd", "escpos")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="posd-escpos-")


# Order matters: the variable is read when escpos.capabilities is first imported.
if "ESCPOS_CAPABILITIES_PICKLE_DIR" not in os.environ:
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = _capabilities_cache_dir()

with _keep_root_logger():
    from escpos.capabilities import CAPABILITIES, get_profile
    from escpos.exceptions import Error as EscposError
    from escpos.printer import Dummy

PAPER_CHARS: dict[int, int] = {58: 32, 80: 48}  # font A characters per line

_STDOUT_LOCK = threading.Lock()
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SLIP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_OFFLINE_ERRNOS = {errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO, errno.EPIPE}


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


@functools.lru_cache(maxsize=None)
def profile_code_pages(profile: str) -> dict[int, str]:
    """``ESC t`` slot -> Python codec (or 128-char table) for ``escpos_to_text``."""
    encodings = CAPABILITIES["encodings"]
    pages: dict[int, str] = {}
    for slot, name in get_profile(profile).codePages.items():
        enc = encodings.get(name, {})
        if "python_encode" in enc:
            pages[int(slot)] = enc["python_encode"]
        elif "data" in enc:
            pages[int(slot)] = "".join(enc["data"])
    return pages


# -- rendering -------------------------------------------------------------
@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    # barcode() and image() print notes such as "Using hardware barcode
    # renderer" to stdout; the lock keeps concurrent swaps from tangling.
    with _STDOUT_LOCK, contextlib.redirect_stdout(io.StringIO()):
        yield


def _clean(text: str) -> str:
    """Strip control characters: slip text (a member's name from central)
    must never smuggle printer commands such as a drawer kick."""
    return _CONTROL_RE.sub(" ", text)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(_clean(paragraph), width, break_on_hyphens=False) or [""])
    return lines


class _SlipRenderer:
    def __init__(self, doc: SlipDocument, profile: str, columns: int) -> None:
        self.doc = doc
        self.columns = columns
        self.p = Dummy(profile=profile)
        self.code_page = self._preferred_code_page()

    def render(self) -> bytes:
        self.p.hw("INIT")
        for block in self.doc.blocks:
            self.block(block)
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
            self.p.text(((_clean(block.char)[:1] or "-") * self.columns) + "\n")
        elif isinstance(block, Barcode):
            self.barcode(block)
        elif isinstance(block, QRCode):
            self.qr(block)
        elif isinstance(block, Feed):
            self.p.ln(max(0, min(block.lines, 255)))
        else:
            raise TypeError(f"unknown slip block {type(block).__name__}")

    def style(self, align: str, bold: bool, double: bool) -> None:
        self.p.set(
            align=align, bold=bold, double_width=double, double_height=double,
            normal_textsize=not double,
        )
        # Re-select the code page after every style change: clone printers
        # forget it on a font/mode switch (and always after ESC @).
        if self.code_page:
            self.p.magic.encoding = None
            self.p.magic.write_with_encoding(self.code_page, None)

    def text(self, block: Text) -> None:
        width = self.columns // 2 if block.double else self.columns
        self.style(block.align, block.bold, block.double)
        for line in _wrap(block.text, width):
            self.p.text(line + "\n")

    def columns_line(self, block: Columns) -> None:
        self.style("left", block.bold, False)
        left, right = _clean(block.left), _clean(block.right)[: self.columns]
        lines = _wrap(left, self.columns)
        last = lines[-1]
        if len(last) + 1 + len(right) <= self.columns:
            lines[-1] = last + " " * (self.columns - len(last) - len(right)) + right
        else:
            lines.append(right.rjust(self.columns))
        for line in lines:
            self.p.text(line + "\n")

    def barcode(self, block: Barcode) -> None:
        self.style("center", False, False)
        symbology = block.symbology
        hw_feature = "barcodeB" if symbology == "CODE128" else "barcodeA"
        native = bool(self.p.profile.supports(hw_feature))
        # Epson's CODE128 wants a code-set selector first; '{' itself is '{{'.
        code = "{B" + block.data.replace("{", "{{") if native and symbology == "CODE128" else block.data
        try:
            with _quiet_stdout():
                self.p.barcode(code, symbology, height=64, width=2, pos="BELOW", font="A",
                               align_ct=True, force_software=not native)
        except EscposError as exc:
            # Better a code the cashier can type than no slip at all.
            log.warning("slip %s: %s barcode not printable (%s); printing it as text",
                        self.doc.slip_id, symbology, type(exc).__name__)
            self.p.text(_clean(block.data)[: self.columns] + "\n")

    def qr(self, block: QRCode) -> None:
        size = max(1, min(block.size, 16))
        self.style("center", False, False)
        if self.p.profile.supports("qrCode"):
            self.p.qr(block.data, size=size, native=True)
        else:
            with _quiet_stdout():
                self.p.qr(block.data, size=size, native=False, center=False)

    def _preferred_code_page(self) -> str | None:
        """The profile's code page covering most of the document's non-ASCII
        characters (lowest ESC t slot on ties); MagicEncode switches for the rest."""
        chars = {c for text in _doc_texts(self.doc) for c in text if ord(c) >= 0x80}
        encoder = self.p.magic.encoder
        best, best_score = None, -1
        for name, slot in sorted(encoder.codepages.items(), key=lambda kv: int(kv[1])):
            if not encoder.can_encode(name, "A"):
                continue  # unknown / unimplemented page
            score = sum(1 for c in chars if encoder.can_encode(name, c))
            if score > best_score:
                best, best_score = name, score
            if score == len(chars):
                break
        return best


def _doc_texts(doc: SlipDocument) -> Iterator[str]:
    for b in doc.blocks:
        if isinstance(b, Text):
            yield b.text
        elif isinstance(b, Columns):
            yield b.left
            yield b.right
        elif isinstance(b, Rule):
            yield b.char


def render_slip(doc: SlipDocument, profile: str = "default", width_mm: int = 80) -> bytes:
    """The ESC/POS bytes for ``doc`` on this profile and paper width."""
    return _SlipRenderer(doc, profile, columns_for(profile, width_mm)).render()
