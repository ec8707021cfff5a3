"""NFC card readers through PC/SC (pyscard): ``nfc+pcsc://<reader name>``.

The reader is found by name among ``smartcard.System.readers()``; the name
may leave out pcsc-lite's trailing slot numbers ("ACS ACR122U PICC
Interface" matches "... 00 00"), which depend on plug order. An empty name
takes the first reader.

A card placed on the reader is read once: its UID through the PC/SC pseudo
APDU ``FF CA 00 00 00`` (answer UID + ``90 00``), sent on as ``ScanData``
(symbology ``NFC_UID``, the UID in upper-case hex). The same card is read
again only after it was taken away. Only the UID is ever asked for: no
payment application is selected, so no card number can reach us.

Insertion and removal come from ``CardRequest.waitforcardevent()`` (PC/SC
``SCardGetStatusChange``) in the driver's own thread. pyscard's
``CardMonitor`` is not used: it is a process-wide singleton whose thread
prints tracebacks and stops for good when pcscd goes away, so it could not
recover by itself. Without pcscd the state is ``error``/``service_unavailable``
and the driver keeps retrying; an unplugged reader is ``error``/``offline``.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import DeviceError, Scanner
from .url import DeviceURL

__all__ = ["NfcReader", "UID_APDU", "uid_from_response", "match_reader"]

log = logging.getLogger(__name__)

UID_APDU = [0xFF, 0xCA, 0x00, 0x00, 0x00]
_NO_SERVICE = {0x8010001D, 0x8010001E}  # SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED
_READER_GONE = {0x80100017, 0x80100009, 0x8010002E, 0x80100069}  # unavailable, unknown, no readers, removed


def uid_from_response(data: list[int], sw1: int, sw2: int) -> str | None:
    """The UID in upper-case hex, or None when the reader refused the APDU."""
    if (sw1, sw2) != (0x90, 0x00) or not 4 <= len(data) <= 10:
        return None
    return bytes(data).hex().upper()


def match_reader(wanted: str, names: list[str]) -> str | None:
    """The reader called ``wanted``: exact name first, then by prefix (slot numbers differ)."""
    if not names:
        return None
    if not wanted:
        return sorted(names)[0]
    if wanted in names:
        return wanted
    prefixed = sorted(n for n in names if n.startswith(wanted))
    return prefixed[0] if prefixed else None


class NfcReader(Scanner):
    kind = "card_reader"
    symbology = "NFC_UID"
    CHECK_EVERY_S = 2.0

    def __init__(self, name: str, url: DeviceURL, on_data, on_status=None, *,
                 options: dict[str, Any] | None = None, on_rejected=None, **kwargs: Any) -> None:
        import smartcard.CardRequest  # lazily: the registry says "install pyscard"
        import smartcard.Exceptions
        import smartcard.System
        from smartcard.pcsc.PCSCExceptions import BaseSCardException

        super().__init__(name, url, on_data, on_status, **kwargs)
        self.options = dict(options or {})
        self.wanted = url.fs_path.strip("/")
        self._sc_system = smartcard.System
        self._sc_request = smartcard.CardRequest
        self._sc_errors: tuple[type[BaseException], ...] = (
            smartcard.Exceptions.SmartcardException, BaseSCardException)
        self._timeout_error = smartcard.Exceptions.CardRequestTimeoutException
        self.reader_name: str | None = None
        self._request: Any = None
        self._card_present = False
        self._next_check = 0.0

    # -- hooks ----------------------------------------------------------------
    def _open(self) -> None:
        try:
            names = [str(r) for r in self._sc_system.readers()]
        except self._sc_errors as exc:
            raise self._translate(exc, "list readers") from exc
        found = match_reader(self.wanted, names)
        if found is None:
            raise DeviceError("offline", "reader not connected")
        try:
            self._request = self._sc_request.CardRequest(readers=[found], timeout=self.read_timeout)
        except self._sc_errors as exc:
            raise self._translate(exc, "watch reader") from exc
        self.reader_name = found
        self._card_present = False

    def _read_scans(self, timeout: float) -> list[tuple[str, str | None]]:
        request = self._request
        if request is None:
            raise DeviceError("offline", "not open")
        try:
            cards = request.waitforcardevent()
        except self._timeout_error:
            self._check_reader()
            return []
        except self._sc_errors as exc:
            raise self._translate(exc, "wait for card") from exc
        ours = [c for c in cards if str(getattr(c, "reader", self.reader_name)) == self.reader_name]
        if not ours:
            if self._card_present:
                log.debug("%s: card removed", self.label)
            self._card_present = False
            return []
        if self._card_present:
            return []  # still the same card on the reader
        self._card_present = True
        uid = self._read_uid(ours[0])
        return [(uid, self.symbology)] if uid else []

    def _check_reader(self) -> None:
        """pyscard's wait swallows SCARD_E_NO_SERVICE as a timeout: look for pcscd and the reader."""
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self.CHECK_EVERY_S
        try:
            names = [str(r) for r in self._sc_system.readers()]
        except self._sc_errors as exc:
            raise self._translate(exc, "list readers") from exc
        if self.reader_name not in names:
            raise DeviceError("offline", "reader gone")

    def _read_uid(self, card: Any) -> str | None:
        connection = card.createConnection()
        try:
            connection.connect()
            data, sw1, sw2 = connection.transmit(UID_APDU)
        except self._sc_errors as exc:
            # Taken away too fast, or a card the reader cannot talk to: wait for the next one.
            log.info("%s: card not read (%s)", self.label, type(exc).__name__)
            self._card_present = False
            return None
        finally:
            try:
                connection.disconnect()
            except self._sc_errors:
                pass
        uid = uid_from_response(list(data), sw1, sw2)
        if uid is None:
            log.info("%s: reader refused the UID request (SW %02X%02X)", self.label, sw1, sw2)
        return uid

    def _close(self) -> None:
        request, self._request = self._request, None
        if request is not None:
            try:
                request.__exit__(None, None, None)  # releases its PC/SC context
            except self._sc_errors:
                pass

    @staticmethod
    def _translate(exc: BaseException, action: str) -> DeviceError:
        code = getattr(exc, "hresult", -1) & 0xFFFFFFFF
        if code in _NO_SERVICE:
            return DeviceError("service_unavailable", f"{action}: pcscd is not running")
        if code in _READER_GONE:
            return DeviceError("offline", f"{action}: reader gone")
        return DeviceError("io_error", f"{action}: {type(exc).__name__} 0x{code:08X}")
