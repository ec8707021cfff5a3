"""``preview://DIR``: keep each slip's exact ESC/POS bytes, a readable text and a picture."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import Mapping

from posd.core.slip_doc import SlipDocument

from .base import DeviceState
from .errors import PrinterError
from .escpos_png import escpos_to_png, png_bytes
from .escpos_render import dots_for, profile_code_pages, render_slip
from .printer_escpos import EscposPrinter

__all__ = ["PreviewPrinter", "slip_png", "bytes_png"]


_SLIP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")  # "~" marks lane-made slips (never in a POS id)


class PreviewPrinter(EscposPrinter):
    """Writes DIR/<slip_id>.bin (the exact bytes), .txt and .png.

    The text and the picture are rendered from the bytes (``escpos_to_text``,
    ``escpos_to_png``), so the preview shows what a printer would make of
    them, not what we meant to send. Each file appears atomically.
    """

    def _configure(self) -> None:
        super()._configure()
        self.directory = self.url.fs_path

    def open(self) -> None:
        if self.check_ready() is None:
            self._set_state(DeviceState.IDLE)

    @property
    def checks_when_idle(self) -> bool:
        return True  # looking at a folder is free, and fixes show without waiting for the next slip

    def check_ready(self) -> str | None:
        """Blocking: is the folder there (made when missing) and writable? The reason it cannot print,
        or None. A folder mended while nothing printed no longer leaves the printer red until the next
        slip (health, the status page)."""
        with self._job_lock:
            try:
                os.makedirs(self.directory, exist_ok=True)
                if not os.access(self.directory, os.W_OK | os.X_OK):
                    raise PermissionError(13, "Permission denied")
            except OSError as exc:
                self._set_state(DeviceState.ERROR, "io_error", f"{self.directory}: {exc.strerror}")
                return "io_error"
            if self.state is DeviceState.ERROR:
                self._set_state(DeviceState.IDLE)
            return None

    def paths_for(self, slip_id: str) -> tuple[str, str]:
        if not _SLIP_ID_RE.match(slip_id):
            raise PrinterError("io_error", "slip id is not a safe file name")
        base = os.path.join(self.directory, slip_id)
        return base + ".bin", base + ".txt"

    def preview_png(self, data: bytes) -> bytes:
        """The paper ``data`` would print on this printer, as a PNG."""
        return bytes_png(data, self.profile, self.width_mm, self.code_pages)

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        bin_path, txt_path = self.paths_for(doc.slip_id)
        png_path = bin_path[: -len(".bin")] + ".png"
        text = self.preview_text(data)
        png = self.preview_png(data)
        try:
            os.makedirs(self.directory, exist_ok=True)
            _atomic_write(bin_path, data)
            _atomic_write(txt_path, text.encode("utf-8"))
            _atomic_write(png_path, png)
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


def bytes_png(data: bytes, profile: str = "default", width_mm: int = 80,
              code_pages: Mapping[int, str] | None = None) -> bytes:
    """The paper ESC/POS ``data`` would print on this printer model and paper, as a PNG;
    ``code_pages``: the printer's own ESC t table, when the config gives one."""
    return png_bytes(escpos_to_png(data, dots_for(profile, width_mm),
                                   code_pages=profile_code_pages(profile, code_pages)))


def slip_png(doc: SlipDocument, profile: str = "default", width_mm: int = 80,
             code_pages: Mapping[int, str] | None = None) -> bytes:
    """The PNG of ``doc`` as this printer would print it: rendered to the very
    bytes a printer gets, then drawn from those bytes."""
    return bytes_png(render_slip(doc, profile, width_mm, code_pages=code_pages), profile, width_mm, code_pages)
