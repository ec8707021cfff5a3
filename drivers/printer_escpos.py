"""ESC/POS slip printers on python-escpos: rendering and four transports.

``render_slip`` turns a ``SlipDocument`` into ESC/POS bytes with python-escpos'
``Dummy`` printer, the configured capability profile and the paper width.
Rendering is deterministic: a fresh ``Dummy`` per document, so the same
document always gives the same bytes (previews, tests and reprints agree).

Transports (one class each, as python-escpos has one per connection):

- ``tcp://host:port?timeout=``  ``TcpPrinter``, raw port 9100, connect per job
- ``file:///dev/usb/lp0``       ``FilePrinter``, a printer device file
- ``preview://DIR``             ``PreviewPrinter``, DIR/<slip_id>.bin + .txt
- ``none``                      ``NullPrinter``, accepts and discards
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
from typing import Any, Iterator, Mapping

from posd.core.slip_doc import Barcode, Block, Columns, Feed, QRCode, Rule, SlipDocument, Text

from .base import DeviceState, Printer, PrinterError, StatusCallback
from .escpos_text import escpos_to_text
from .url import DeviceURL

__all__ = [
    "PAPER_CHARS",
    "render_slip",
    "columns_for",
    "check_printer_settings",
    "known_profiles",
    "profile_code_pages",
    "EscposPrinter",
    "TcpPrinter",
    "FilePrinter",
    "PreviewPrinter",
    "NullPrinter",
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


if "ESCPOS_CAPABILITIES_PICKLE_DIR" not in os.environ:
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = _capabilities_cache_dir()

with _keep_root_logger():
    from escpos.capabilities import CAPABILITIES, get_profile
    from escpos.exceptions import DeviceNotFoundError
    from escpos.exceptions import Error as EscposError
    from escpos.printer import Dummy, File, Network

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


# -- printers --------------------------------------------------------------
class EscposPrinter(Printer):
    """Base for ESC/POS printers: renders with the profile and paper width."""

    def __init__(
        self,
        name: str,
        url: DeviceURL,
        *,
        profile: str = "default",
        width_mm: int = 80,
        on_status: StatusCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        check_printer_settings(profile, width_mm)
        super().__init__(name, url, profile=profile, width_mm=width_mm, on_status=on_status)
        self.columns = columns_for(profile, width_mm)
        self.options = dict(options or {})

    def render(self, doc: SlipDocument) -> bytes:
        return _SlipRenderer(doc, self.profile, self.columns).render()

    def preview_text(self, data: bytes) -> str:
        """A readable rendering of ESC/POS ``data`` as this printer would print it."""
        return escpos_to_text(data, self.columns, code_pages=profile_code_pages(self.profile))


def _errno_of(exc: BaseException) -> int | None:
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
    return None


class TcpPrinter(EscposPrinter):
    """A network printer's raw port (9100), through ``escpos.printer.Network``.

    Connects per job so a printer restarted between slips just works; every
    socket error (refused, unreachable, reset, timed out) is ``offline``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = self.url.host or ""
        self.port = self.url.port or 9100
        self.timeout = float(self.options.get("timeout", 5.0))  # never 0: that blocks forever

    def _connect(self) -> Any:
        net = Network(host=self.host, port=self.port, timeout=self.timeout, profile=self.profile)
        try:
            with _keep_root_logger():
                net.open()
        except (DeviceNotFoundError, OSError) as exc:
            raise PrinterError("offline", f"connect to {self.host}:{self.port} failed") from exc
        return net

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        net = self._connect()
        try:
            net._raw(data)  # python-escpos' transport hook: sendall on the socket
        except OSError as exc:
            raise PrinterError("offline", f"send failed: {type(exc).__name__}") from exc
        finally:
            with _keep_root_logger():
                net.close()

    def probe(self) -> DeviceState:
        """Blocking reachability check (connect, close); updates and returns the state."""
        try:
            net = self._connect()
        except PrinterError as exc:
            self._set_state(DeviceState.ERROR, exc.reason)
        else:
            with _keep_root_logger():
                net.close()
            self._set_state(DeviceState.IDLE)
        return self.state


class FilePrinter(EscposPrinter):
    """A printer device file (``/dev/usb/lp0``) through ``escpos.printer.File``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = self.url.fs_path

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        dev = File(devfile=self.path, auto_flush=False, profile=self.profile)
        try:
            with _keep_root_logger():
                dev.open()
            dev._raw(data)
            dev.flush()
        except (DeviceNotFoundError, OSError) as exc:
            code = _errno_of(exc)
            reason = "offline" if code in _OFFLINE_ERRNOS else "io_error"
            detail = os.strerror(code) if code else type(exc).__name__
            raise PrinterError(reason, f"{self.path}: {detail}") from exc
        finally:
            with _keep_root_logger(), contextlib.suppress(OSError):
                dev.close()


class PreviewPrinter(EscposPrinter):
    """Writes DIR/<slip_id>.bin (the exact bytes) and DIR/<slip_id>.txt.

    The text is rendered from the bytes by ``escpos_to_text``, so the preview
    shows what a printer would make of them. Both files appear atomically.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.directory = self.url.fs_path

    def open(self) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            log.warning("printer %s: cannot create %s: %s", self.name, self.directory, exc.strerror)
            self._set_state(DeviceState.ERROR, "io_error")
            return
        self._set_state(DeviceState.IDLE)

    def paths_for(self, slip_id: str) -> tuple[str, str]:
        if not _SLIP_ID_RE.match(slip_id):
            raise PrinterError("io_error", "slip id is not a safe file name")
        base = os.path.join(self.directory, slip_id)
        return base + ".bin", base + ".txt"

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        bin_path, txt_path = self.paths_for(doc.slip_id)
        text = self.preview_text(data)
        try:
            os.makedirs(self.directory, exist_ok=True)
            _atomic_write(bin_path, data)
            _atomic_write(txt_path, text.encode("utf-8"))
        except OSError as exc:
            raise PrinterError("io_error", f"{self.directory}: {exc.strerror}") from exc


def _atomic_write(path: str, data: bytes) -> None:
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NullPrinter(EscposPrinter):
    """``none``: renders (so a bad document fails the same way) and discards.

    ``print_document`` returns the bytes a printer would have been sent.
    """

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        return None
