"""The driver base: UnifiedPOS states, status events, the scanner reader loop.

A device is ``closed``, ``idle``, ``busy`` or ``error`` (with a reason such
as ``offline``). Every change is reported once through ``on_status``. The
base class owns state, the reader thread and reconnects; a driver fills in
a few hooks (pyserial's ``SerialBase`` vs ``serialposix``):

- scanners: ``_open()``, ``_read(timeout) -> bytes``, ``_close()`` (a
  driver that yields whole codes, such as a camera, overrides
  ``_read_scans(timeout)`` instead of ``_read``); one reached through a
  link (``link_*``) only says how to open it: ``LinkScanner._connect()``;
- card readers: the same hooks; ``_deliver`` decides what may leave the
  driver (a payment card becomes a ``CardRejected`` with no data in it);
- printers: ``_configure()``, ``render(doc) -> bytes`` and ``_send(data)``;
  transports with a status channel also ``_begin_job()`` / ``_end_job()``
  (DLE EOT before and after), all of which ``LinkPrinter`` does over a link
  from its ``_connect()``.

The base also owns validation: the registry hands every driver its URL
options already parsed (``options``), a scanner's framer is built from them
here, and a printer checks its settings in ``_configure()``. Links
translate foreign exceptions into ``DeviceError(reason)`` at their edge
(``errors``); the base turns those into states, and in a print job into
``PrinterError``s that say how far the job got. Callbacks run in the
device's own thread and never take it down: their exceptions are logged.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

from posd.core.slip_doc import SlipDocument

from .errors import DeviceError, PrinterError, printer_errors
from .framing import ScanFramer, make_framer
from .link import StopPipe
from .printer_status import PrinterStatus
from .symbology import split_aim
from .url import DeviceURL

__all__ = [
    "DeviceState",
    "DeviceStatus",
    "ScanData",
    "CardRejected",
    "DeviceError",
    "PrinterError",
    "Device",
    "Scanner",
    "Printer",
    "StatusCallback",
    "DataCallback",
    "RejectCallback",
]

log = logging.getLogger(__name__)

_FRAMING = ("prefix", "suffix", "idle_ms", "max_len")  # the URL options a framer is made of


class DeviceState(str, enum.Enum):
    CLOSED = "closed"
    IDLE = "idle"
    BUSY = "busy"
    ERROR = "error"


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    kind: str
    url: str  # redacted
    state: DeviceState
    reason: str | None = None


@dataclass(frozen=True)
class ScanData:
    device: str
    data: str
    symbology: str | None
    received_mono: float

    def __repr__(self) -> str:
        # The data may be a payment card number: keep it out of reprs/logs.
        return (
            f"ScanData(device={self.device!r}, data=<{len(self.data)} chars>, "
            f"symbology={self.symbology!r}, received_mono={self.received_mono!r})"
        )


@dataclass(frozen=True)
class CardRejected:
    """A card the driver refused to pass on; never carries any of its data."""

    device: str
    reason: str  # "payment_card"


StatusCallback = Callable[[DeviceStatus], None]
DataCallback = Callable[[ScanData], None]
RejectCallback = Callable[[CardRejected], None]


class _BeforeSendFailed(Exception):
    def __init__(self, original: Exception) -> None:
        super().__init__(type(original).__name__)
        self.original = original


class Device:
    kind: ClassVar[str] = "device"

    def __init__(self, name: str, url: DeviceURL, on_status: StatusCallback | None = None) -> None:
        self.name = name
        self.url = url
        self._on_status = on_status
        self._state = DeviceState.CLOSED
        self._reason: str | None = None
        self._state_lock = threading.RLock()

    @property
    def label(self) -> str:
        """How log lines name the device: ``scanner front``, but ``printer`` (not ``printer printer``)."""
        return self.name if self.name == self.kind else f"{self.kind} {self.name}"

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def status(self) -> DeviceStatus:
        with self._state_lock:
            return DeviceStatus(self.name, self.kind, self.url.redacted(), self._state, self._reason)

    def _set_state(
        self, state: DeviceState, reason: str | None = None, detail: str | None = None
    ) -> None:
        """Record and report a change; ``detail`` (errno text, never data) is only logged."""
        # The lock is held while emitting so observers see changes in order.
        with self._state_lock:
            if (state, reason) == (self._state, self._reason):
                return
            was = self._state
            self._state, self._reason = state, reason
            status = DeviceStatus(self.name, self.kind, self.url.redacted(), state, reason)
            if state is DeviceState.ERROR:
                log.warning("%s: error %s (%s)", self.label, reason, detail or "-")
            else:
                # busy and back to idle happen with every slip: only the others are worth a line
                routine = state is DeviceState.BUSY or (was is DeviceState.BUSY and state is DeviceState.IDLE)
                (log.debug if routine else log.info)("%s: %s%s", self.label, state.value,
                                                     f" ({reason})" if reason else "")
            self._call(self._on_status, status)

    def _call(self, callback: Callable | None, arg: object) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("%s: callback %r failed", self.label, callback)


class Scanner(Device):
    """A scanner with its own daemon reader thread and reconnect loop.

    ``start()`` returns at once; the thread opens the device, reads, frames
    and calls ``on_data(ScanData)`` for each code. When the device goes away
    the state becomes ``error`` (reason ``offline`` / ``io_error``) and the
    thread keeps trying to reopen it with capped exponential backoff; once
    reopened it is ``idle`` again, no daemon restart needed.
    """

    kind = "scanner"
    symbology: str | None = None
    aim_ids = False  # codes start with an AIM identifier (]E0...): strip it, name the symbology

    def __init__(
        self,
        name: str,
        url: DeviceURL,
        on_data: DataCallback,
        on_status: StatusCallback | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        read_timeout: float = 0.25,
        backoff_min: float = 0.1,
        backoff_max: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, url, on_status)
        self._on_data = on_data
        self.options = dict(options or {})
        self.framer: ScanFramer = make_framer(**{k: v for k, v in self.options.items() if k in _FRAMING})
        self.aim_ids = bool(self.options.get("aim", self.aim_ids))
        self.read_timeout = read_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._clock = clock
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_pipe: StopPipe | None = None  # readable once stopping: a link's read ends at once

    # -- hooks -------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _read_scans(self, timeout: float) -> list[tuple[str, str | None]]:
        """Whole codes with their symbology; by default framed from ``_read``'s bytes."""
        data = self._read(timeout)
        now = self._clock()
        codes = self.framer.feed(data, now) if data else self.framer.flush_if_idle(now)
        self._log_drops()
        if not self.aim_ids:
            return [(code, self.symbology) for code in codes]
        return [(text, name or self.symbology) for name, text in map(split_aim, codes)]

    def _deliver(self, code: str, symbology: str | None, now: float) -> None:
        """Hand one code on. Card readers override this to drop payment cards."""
        self._call(self._on_data, ScanData(self.name, code, symbology, now))

    def _read(self, timeout: float) -> bytes:
        """Return the bytes available within ``timeout`` (b"" if none).

        Raise ``DeviceError("offline")`` when the device is gone.
        """
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._close_stop_pipe()  # a new one each run: the last run's stop byte would end every read
        self._stop_pipe = StopPipe()
        self._thread = threading.Thread(
            target=self._run, name=f"posd-scanner-{self.name}", daemon=True
        )
        self._thread.start()

    def begin_stop(self) -> None:
        """Ask the reader thread to end, without waiting for it: it ends within one read's timeout.
        Stopping several devices, ask them all first, then ``stop()`` each: the waits overlap."""
        self._stop.set()
        self._kick.set()
        if self._stop_pipe is not None:
            self._stop_pipe.set()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop the reader thread; True when it has ended within ``timeout``."""
        self.begin_stop()
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False  # called from a callback: the loop ends on its own
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._close_stop_pipe()
        return True

    def _close_stop_pipe(self) -> None:
        """Only with the reader thread ended: it may be waiting on the pipe."""
        pipe, self._stop_pipe = self._stop_pipe, None
        if pipe is not None:
            pipe.close()

    @property
    def stop_fd(self) -> int | None:
        """The descriptor a link's read waits on beside its own (``Link.stop_fd``)."""
        return self._stop_pipe.fd if self._stop_pipe else None

    def kick(self) -> None:
        """Retry opening now instead of after the backoff (hot-plug saw the device)."""
        self._kick.set()

    # -- the loop ----------------------------------------------------------
    def _run(self) -> None:
        delay = self.backoff_min
        try:
            while not self._stop.is_set():
                if self._open_once():
                    delay = self.backoff_min
                    self._pump_until_failure()
                    self._close_quietly()
                if self._wait_backoff(delay):
                    break
                delay = min(delay * 2, self.backoff_max)
        finally:
            self._close_quietly()
            self._set_state(DeviceState.CLOSED)

    def _wait_backoff(self, delay: float) -> bool:
        """Sleep ``delay`` unless kicked; True when stopping."""
        if self._kick.wait(delay):
            self._kick.clear()
        return self._stop.is_set()

    def _open_once(self) -> bool:
        try:
            self._open()
        except DeviceError as exc:
            self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
            return False
        except Exception:
            log.exception("%s: unexpected error opening", self.label)
            self._set_state(DeviceState.ERROR, "io_error")
            return False
        self.framer.reset()
        self._log_drops()
        self._set_state(DeviceState.IDLE)
        return True

    def _pump_until_failure(self) -> None:
        while not self._stop.is_set():
            timeout = self.read_timeout
            if self.framer.pending and self.framer.idle_flush_s is not None:
                timeout = min(timeout, self.framer.idle_flush_s)
            try:
                scans = self._read_scans(timeout)
            except DeviceError as exc:
                self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
                return
            except Exception:
                log.exception("%s: unexpected error reading", self.label)
                self._set_state(DeviceState.ERROR, "io_error")
                return
            now = self._clock()
            for code, symbology in scans:
                self._deliver(code, symbology, now)

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception:
            log.debug("%s: error while closing", self.label, exc_info=True)

    def _log_drops(self) -> None:
        for reason in self.framer.take_drops():
            log.warning("%s: scan dropped: %s", self.label, reason)
        unreadable = self.framer.take_unreadable()
        if unreadable:  # the count only: the bytes could be anything, a card number too
            log.info("%s: %d unreadable scan(s), nothing printable in them (a wrong baud rate, or a symbology "
                     "the scanner mangles?)", self.label, unreadable)


class Printer(Device):
    """A slip printer: renders a ``SlipDocument`` and sends it, one job at a time.

    ``print_document`` is blocking (call it from the print worker's thread):
    state is ``busy`` while sending, ``idle`` after, ``error`` with the
    reason when the job failed, and the ``PrinterError`` is raised.
    """

    kind = "printer"

    def __init__(
        self,
        name: str,
        url: DeviceURL,
        *,
        profile: str = "default",
        width_mm: int = 80,
        code_pages: Mapping[int, str] | None = None,
        on_status: StatusCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, url, on_status)
        self.profile = profile
        self.width_mm = width_mm
        # The printer's own ESC t table (slot -> page name) when it is not the profile's: a clone's
        self.code_pages = dict(code_pages) if code_pages is not None else None
        self.options = dict(options or {})
        self._job_lock = threading.Lock()
        self.last_status: PrinterStatus | None = None
        # This printer has answered a status query: from then on its silence means it is not listening
        # (stalled, lost power behind a switch that still takes the connection). The owner may set it
        # from what an earlier run saw, and keep it when ``on_first_answer`` is called (posd: ledger.db),
        # so a restart in front of a silent printer never sends its held slips blind.
        self.answers_status = False
        self.on_first_answer: Callable[[], None] | None = None
        self._answer_kept = False  # on_first_answer returned: asked again at the next answer until it does
        self._configure()

    # -- hooks ---------------------------------------------------------------
    def _configure(self) -> None:
        """Check the settings and derive what the driver needs; raise ValueError naming a bad one."""

    def render(self, doc: SlipDocument) -> bytes:
        raise NotImplementedError

    def _send(self, data: bytes, doc: SlipDocument) -> None:
        """Deliver ``data``; raise ``DeviceError(reason)`` on failure."""
        raise NotImplementedError

    def open(self) -> None:
        """Get ready for jobs. Printers that connect per job just go idle."""
        self._set_state(DeviceState.IDLE)

    # -- job hooks (a transport with a status channel fills them in) -----------
    def _begin_job(self) -> PrinterStatus | None:
        """Connect and read the status before a job; None when the printer has no status channel."""
        return None

    def _end_job(self) -> PrinterStatus | None:
        """Read the status after the job and disconnect."""
        return None

    def _abort_job(self) -> None:
        """Disconnect after a failure; must not raise."""

    def _fell_silent(self, status: PrinterStatus | None) -> bool:
        """Notes whether ``status`` (a status query's outcome, None when none was asked) answered; True
        when it did not, from a printer that answered before: it is not listening, it is offline."""
        if status is None:
            return False
        if status.answered:
            self.answers_status = True
            if self.on_first_answer is not None and not self._answer_kept:
                try:
                    self.on_first_answer()
                    self._answer_kept = True
                except Exception as exc:  # known for this run all the same, tried again at the next answer
                    log.warning("%s: could not keep that the printer answers its status (%s); trying again at its "
                                "next answer", self.label, exc)
        return not status.answered and self.answers_status

    def print_document(self, doc: SlipDocument, *, before_send: Callable[[], None] | None = None) -> bytes:
        """Print ``doc``; ``before_send`` runs after the status check, just before the first byte."""
        with self._job_lock:
            try:
                data = self._run_job(doc, before_send)
            except _BeforeSendFailed as wrapped:
                # The job was called off (it expired) or could not be rendered: nothing was sent.
                self._abort_job()
                self._set_state(DeviceState.IDLE)
                raise wrapped.original from None
            except PrinterError as exc:
                self._abort_job()
                self._set_state(DeviceState.ERROR, exc.reason, exc.detail)
                raise
            except Exception as exc:
                self._abort_job()
                log.exception("%s: unexpected error sending", self.label)
                self._set_state(DeviceState.ERROR, "io_error", type(exc).__name__)
                raise PrinterError("io_error", type(exc).__name__, sent=True) from exc
            self._set_state(DeviceState.IDLE, self.last_status.warning if self.last_status else None)
        return data

    def _run_job(self, doc: SlipDocument, before_send: Callable[[], None] | None) -> bytes:
        with printer_errors(sent=False):
            before = self._begin_job()
        self.last_status = before
        if self._fell_silent(before):
            # A job sent blind would be taken by the connection and counted printed with nothing on
            # paper. Held until it answers again.
            raise PrinterError("offline", "no status answer before the job")
        if before is not None and before.reason:
            raise PrinterError(before.reason, "status before the job")
        # busy once the printer said it can take the job: a printer that stays offline or out of paper
        # is one error while its job is retried, not busy and error again on every retry. So is one that
        # fails past that point (a spool folder that is a file, a connection closed mid-job): a retry
        # in error stays error until the job is through (then idle), never busy and error again.
        if self._state is not DeviceState.ERROR:
            self._set_state(DeviceState.BUSY)
        try:
            # Rendered only once the printer can take it: a job held by paper out costs
            # no raster work per retry. Nothing has been sent if this fails.
            data = self.render(doc)
            if before_send is not None:
                before_send()
        except Exception as exc:
            raise _BeforeSendFailed(exc) from exc
        with printer_errors(sent=True):  # some bytes may have left before a failure
            self._send(data, doc)
        after = self._end_job()
        if before is not None and before.answered and not (after and after.answered):
            # The printer answered before but not after: TCP and USB buffers accepted the
            # bytes, yet nothing proves the printer got them all (it may have lost power).
            raise PrinterError("offline", "no status answer after the job", sent=True)
        self.last_status = after or before
        if after is not None and after.reason:
            raise PrinterError(after.reason, "status after the job", delivered=True)
        return data

    def close(self) -> None:
        self._set_state(DeviceState.CLOSED)
