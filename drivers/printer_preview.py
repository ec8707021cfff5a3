"""``preview://DIR``: keep each slip's exact ESC/POS bytes and a readable rendering."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Any

from posd.core.slip_doc import SlipDocument

from .base import DeviceState, PrinterError
from .escpos_render import _SLIP_ID_RE
from .printer_escpos import EscposPrinter

__all__ = ["PreviewPrinter"]

log = logging.getLogger(__name__)


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


