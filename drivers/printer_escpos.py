"""ESC/POS slip printers: one small class per transport under one printer base.

- ``tcp://host:port?timeout=``  ``TcpPrinter``, raw port 9100
- ``file:///dev/usb/lp0``       ``FilePrinter``, a printer device file
- ``serial:///dev/...``         ``SerialPrinter``, pyserial with real read and write timeouts
- ``usb://VID:PID?serial=``     ``UsbPrinter``, pyusb (libusb1)
- ``none``                      ``NullPrinter``, accepts and discards

A transport is only how a job's link is opened (``link_tcp``, ``link_file``,
``link_serial``, ``link_usb``); everything else is ``LinkPrinter``'s. A link
is opened per job, so a printer restarted between slips just works. Every
job reads the printer's real-time status (DLE EOT, ``printer_status``)
before the first byte and after the last, on the same link: a job is never
sent to a printer that says it is offline, and a condition that appears
during the job is reported. The links are our own rather than
python-escpos' printer classes, whose status calls trust no answer as
"paper OK" and whose USB class resets the device on every open. Rendering
lives in ``escpos_render``; ``preview://`` in ``printer_preview``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable

from posd.core.slip_doc import SlipDocument

from . import link_file, link_serial, link_tcp, link_usb
from .base import DeviceState, Printer
from .errors import DeviceError, PrinterError, printer_errors
from .escpos_render import check_printer_settings, columns_for, profile_code_pages, render_slip
from .escpos_text import escpos_to_text
from .link import Link
from .printer_status import PrinterStatus, query_status
from .registry import parse_usb_id

__all__ = ["EscposPrinter", "LinkPrinter", "TcpPrinter", "FilePrinter", "SerialPrinter", "UsbPrinter",
           "NullPrinter"]

log = logging.getLogger(__name__)

CLEAR_BUFFERS = b"\x10\x14\x08\x01\x03\x14\x01\x06\x02\x08"  # DLE DC4 fn=8
DRAWER_KICK = b"\x1bp\x00\x19\xfa"  # ESC p: pin 2, 50 ms on, 500 ms off


class EscposPrinter(Printer):
    """Base for ESC/POS printers: renders with the profile and paper width."""

    def _configure(self) -> None:
        check_printer_settings(self.profile, self.width_mm)
        self.columns = columns_for(self.profile, self.width_mm)

    def render(self, doc: SlipDocument) -> bytes:
        return render_slip(doc, self.profile, self.width_mm, code_pages=self.code_pages)

    def preview_text(self, data: bytes) -> str:
        """A readable rendering of ESC/POS ``data`` as this printer would print it."""
        return escpos_to_text(data, self.columns, code_pages=profile_code_pages(self.profile, self.code_pages))


class NullPrinter(EscposPrinter):
    """``none``: renders (so a bad document fails the same way) and discards.

    ``print_document`` returns the bytes a printer would have been sent.
    """

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        return None


class LinkPrinter(EscposPrinter):
    """A printer reached through a ``Link`` per job, with DLE EOT before and after.

    Subclasses implement ``_connect()``. ``status=0`` in the URL skips the
    status reads for printers that misbehave on them.
    """

    STATUS_TIMEOUT_S = 0.5  # per answer; a printer that answers at all does so in milliseconds
    # The status asked after a job waits in line behind the job's bytes (in the socket, the printer's
    # input buffer): the first answer may take as long as a slow printer needs to take in the whole
    # job. Waiting only STATUS_TIMEOUT_S called a slow printer lost and printed the slip again, six
    # times over for a Persian raster slip at 20 KB/s. So posd first waits while the link's send
    # queue still shrinks (TCP: the printer is taking the job in, however slowly), then for the
    # answer as long as the bytes sent take at this rate, or at a serial line's own rate when that is
    # slower. A printer that goes quiet after the job is still reported offline after the wait.
    # The rate is a 2400-baud line's, the slowest a receipt printer is set to: a serial printer
    # behind a network print server takes a job in at once and prints it at its line's rate, which
    # nothing on the network tells. At 5,000, a 1 KB slip on a 9600-baud printer was called offline
    # before it answered and sent again after every wait: a dozen copies of one sale; at 960 (9600
    # baud 8N1), a 4800-baud printer got 8 copies of one slip and one at 9600 8E1 (873 bytes a
    # second) 36 copies of a Persian slip. Waiting longer only delays calling a printer offline
    # that went quiet after a job; sending a slip again that is printing prints it twice.
    AFTER_JOB_BYTES_PER_S = 240.0
    AFTER_JOB_MAX_WAIT_S = 120.0
    TAKE_IN_MAX_WAIT_S = 600.0  # the send queue shrinking this long: a printer taking in bytes a second
    # A printer that took part of a slip and then nothing for its timeout may be a print server in front
    # of a slow line, whose TCP window reopens only in bursts (and TCP's zero-window probes back off, so
    # a burst is seen up to twice its gap late): a pause, not a stop. That slip's next attempt may pause
    # twice as long. Beyond that, only a printer seen reading (taking bytes READING_S after the job
    # began: what its network stack takes at once into its buffer says nothing) gets more: twice the
    # pause per cut, and within an attempt twice the longest pause it has shown, up to MAX_PAUSE_S; and
    # the printer's next slips twice the longest pause the last slip printed whole showed (a slip
    # without a long pause sets it back to the timeout). A printer that reads nothing waits twice its
    # timeout at most.
    MAX_PAUSE_S = 60.0
    READING_S = 1.0

    def _configure(self) -> None:
        super()._configure()
        self.timeout = float(self.options.get("timeout", 5.0))  # never 0: that blocks forever
        self.ask_status = bool(self.options.get("status", True))
        self.reachable: bool | None = None
        self._link: Link | None = None
        self._sent = 0  # bytes of the job on the link now
        self._job = ""  # the digest of the job on the link now
        self._pause = self.timeout  # the longest pause its printer may take before it is called stopped
        self._patience: dict[str, float] = {}  # a slip cut after its printer took part of it -> its pause
        self._read_at: float | None = None  # the last time the printer was seen taking this job in
        self._longest = 0.0  # the longest pause between bytes taken of this job, by a printer seen reading
        self._learned = self.timeout  # the pause the last slip printed whole needed: the next one's too

    def _connect(self) -> Link:
        """Open this job's link; raise ``DeviceError`` when the printer cannot be reached."""
        raise NotImplementedError

    @property
    def checks_when_idle(self) -> bool:
        """May the print worker ask this printer its status while nothing prints (status=0: no)."""
        return self.ask_status

    def _query(self, link: Link, first_wait: float | None = None) -> PrinterStatus | None:
        """The printer's status; ``first_wait``: how long its first answer may take (after a job)."""
        if not self.ask_status or not link.readable:
            return None
        link.drain()
        waits = iter([first_wait or self.STATUS_TIMEOUT_S])

        def exchange(query: bytes) -> int | None:
            with printer_errors(sent=True):  # as with any write, part of it may have reached the printer
                link.write(query)
            try:
                return link.read_byte(next(waits, self.STATUS_TIMEOUT_S))
            except DeviceError:
                return None  # no answer: the status says so, the transport has the last word

        return query_status(exchange)

    def _begin_job(self) -> PrinterStatus | None:
        self._link = self._connect()
        self._sent = 0
        return self._query(self._link)

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        if self._link is None:
            raise DeviceError("offline", "not connected")
        self._job = hashlib.blake2b(data, digest_size=16).hexdigest()
        self._pause = max(self._patience.get(self._job, self.timeout), self._learned)
        if isinstance(self._link, link_tcp.TcpLink):
            self._link.timeout = self._pause  # a write's stall: the same pause
        self._read_at, self._longest = None, 0.0
        try:
            self._link.write(data)
        except DeviceError as exc:
            if isinstance(exc.__cause__, TimeoutError):  # a stall; a reset or a refusal is no pause
                self._cut()
            raise
        self._sent = len(data)

    def _reading(self) -> bool:
        """Was the printer seen taking this job in a while after it began (not only its buffer filling)?"""
        link = self._link
        began = getattr(link, "began", None)
        seen = max(filter(None, (getattr(link, "drained_at", None), self._read_at)), default=None)
        return began is not None and seen is not None and seen - began >= self.READING_S

    def _cut(self) -> None:
        """The job stalled after its printer took part of it: a pause, maybe. Its next attempt may pause
        twice as long: once for any printer (one that reads nothing looks the same until it resumes),
        again and again for one seen reading a while before it paused, up to MAX_PAUSE_S."""
        taken = self._read_at is not None or getattr(self._link, "drained_at", None) is not None
        if self._reading():
            pause = min(self.MAX_PAUSE_S, 2 * self._pause)
        elif taken and self._job not in self._patience:
            pause = min(self.MAX_PAUSE_S, 2 * self.timeout)
        else:
            return
        if self._job not in self._patience and len(self._patience) >= 16:  # cut and never sent again
            self._patience.pop(next(iter(self._patience)))
        self._patience[self._job] = pause
        log.info("printer %s took part of a slip, then nothing for %g s; its next attempt may pause up to %g s",
                 self.name, self._pause, self._patience[self._job])

    def _end_job(self) -> PrinterStatus | None:
        link, self._link = self._link, None
        if link is None:
            return None
        rate = min(self.AFTER_JOB_BYTES_PER_S, link.bytes_per_s or self.AFTER_JOB_BYTES_PER_S)
        wait = min(self.AFTER_JOB_MAX_WAIT_S, self.STATUS_TIMEOUT_S + self._sent / rate)
        self._link = link  # still this job's while it is taken in (_reading)
        try:
            self._wait_taken_in(link)
            stuck = link.unsent()
            if stuck:
                self._cut()
        finally:
            self._link = None
        if stuck:  # never left this PC: the printer stopped taking the job in (its status aside)
            link.discard()  # dropped here, not delivered beside the job sent again once it reads
            raise PrinterError("offline", f"the printer took in nothing more for {self._pause:g} s "
                               f"({stuck} bytes of the job not taken)", sent=True)
        self._patience.pop(self._job, None)
        learned = max(self.timeout, min(self.MAX_PAUSE_S, 2 * self._longest))  # what this printer's line needs
        if learned > self._learned:
            log.info("printer %s paused up to %.1f s between bytes of a slip: its slips may pause up to %g s",
                     self.name, self._longest, learned)
        self._learned = learned
        try:
            return self._query(link, first_wait=wait)
        except DeviceError:
            return PrinterStatus(answered=False)  # unconfirmed: the base decides
        finally:
            link.close()

    def _wait_taken_in(self, link: Link) -> None:
        """Until the link's send queue is empty, or has not shrunk for the link's timeout: the printer
        is still taking the job in, and the status answer is behind it. Bytes still queued after that
        never reached the printer, whether or not it answers status."""
        left = link.unsent()
        start = moved = time.monotonic()
        while left:
            time.sleep(0.05)
            now, still = time.monotonic(), link.unsent()
            if still is None or now - start >= self.TAKE_IN_MAX_WAIT_S:
                return
            if still < left:
                self._read_at = now
                if self._reading():  # a pause between bytes taken, not its buffer filling at once
                    self._longest = max(self._longest, now - moved)
                    self._pause = max(self._pause, min(self.MAX_PAUSE_S, 2 * self._longest))
                moved = now
            elif now - moved >= self._pause:
                return  # the printer stopped taking bytes: its status (or its silence) says why
            left = still

    def _abort_job(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def check_ready(self) -> str | None:
        """Blocking: connect, read the status, disconnect. The reason it cannot print, or None.

        ``reachable`` tells afterwards whether the printer could be connected to at all.
        """
        with self._job_lock:
            try:
                link = self._connect()
            except DeviceError as exc:
                self.reachable = False
                self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
                return exc.reason
            self.reachable = True
            try:
                status = self._query(link)
            except DeviceError as exc:
                self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
                return exc.reason
            finally:
                link.close()
            self.last_status = status
            if self._fell_silent(status):
                self._set_state(DeviceState.ERROR, "offline", "no status answer")
                return "offline"
            if status is not None and status.reason:
                self._set_state(DeviceState.ERROR, status.reason)
                return status.reason
            self._set_state(DeviceState.IDLE, status.warning if status else None)
            return None

    def clear_buffers(self) -> None:
        """DLE DC4 8: drop what is left of an interrupted job in the printer (real-time command)."""
        with self._job_lock:
            link = self._connect()
            try:
                link.write(CLEAR_BUFFERS)
            finally:
                link.close()

    def kick_drawer(self, *, before_send: Callable[[], None] | None = None) -> None:
        """Open the cash drawer (ESC p 0): only when the status says the printer is ready."""
        with self._job_lock:
            with printer_errors(sent=False):
                link = self._connect()
            try:
                status = self._query(link)
                if status is not None and status.reason:
                    raise PrinterError(status.reason, "status before the drawer kick")
                if before_send is not None:
                    before_send()
                with printer_errors(sent=True):
                    link.write(DRAWER_KICK)
            finally:
                link.close()

    def probe(self) -> DeviceState:
        """Blocking reachability and status check; updates and returns the state."""
        self.check_ready()
        return self.state


class TcpPrinter(LinkPrinter):
    """A network printer's raw port (9100); every socket error is ``offline``."""

    def _connect(self) -> Link:
        return link_tcp.connect(self.url.host or "", self.url.port or 9100, timeout=self.timeout)


class FilePrinter(LinkPrinter):
    """A printer device file (``/dev/usb/lp0``); status is read back when the device answers.

    A regular file (tests, a spool) is truncated per job and has no status.
    """

    def _connect(self) -> Link:
        return link_file.open_file(self.url.fs_path, timeout=self.timeout)

    @property
    def checks_when_idle(self) -> bool:
        return False  # opening a regular file (a spool) truncates it: its last job would be lost


class SerialPrinter(LinkPrinter):
    """A printer on a serial port; a printer holding CTS low (cover open) meets the write timeout."""

    def _connect(self) -> Link:
        return link_serial.open_port(self.url.fs_path, self.options, timeout=self.STATUS_TIMEOUT_S,
                                     write_timeout=self.timeout)


class UsbPrinter(LinkPrinter):
    """A USB printer, found by VID:PID (and ``serial=`` when a lane has two of a kind)."""

    def _connect(self) -> Link:
        vid, pid = parse_usb_id(self.url.netloc)
        return link_usb.open_usb(vid, pid, serial=self.options.get("serial"),
                                 interface=int(self.options.get("interface", 0)),
                                 out_ep=self.options.get("out_ep"), in_ep=self.options.get("in_ep"),
                                 timeout=self.timeout)
