"""Device errors: our small hierarchy, and the one mapping of foreign errors into it.

Everything that talks to a device (``link_*`` modules, the printers' job
code) raises ``DeviceError(reason, detail)``; a failed print job raises its
subclass ``PrinterError``, which also says how far the job got. The reason
is what store IT sees in ``GET /v1/health`` (``docs/devices.md``); the
detail only goes to the log and never carries data read from a device.

Foreign errors (``OSError`` and what pyserial, pyusb and evdev derive from
it) are translated in one place, at the edge of each link, with
``raise ... from exc`` so the log keeps the original (httpx's
``map_httpcore_exceptions``): each medium declares once, as an ``ErrorMap``,
what its library raises and what an error with no known errno means there.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from typing import Iterator

__all__ = ["DeviceError", "PrinterError", "ErrorMap", "printer_errors", "OFFLINE_ERRNOS", "DENIED_ERRNOS"]

# The device is gone, unplugged, switched off or unreachable: posd retries by itself.
OFFLINE_ERRNOS = frozenset({
    errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO, errno.EBADF, errno.EPIPE,
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.ETIMEDOUT,
})
# Store IT must act: a udev rule or a group is missing.
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
# pyserial's wording for a device that vanished (it carries no errno).
_UNPLUG_MESSAGES = ("returned no data", "device reports error", "device disconnected")


class DeviceError(Exception):
    """A device failure with a UnifiedPOS-style reason.

    Reasons: ``offline`` (gone, unplugged, refused, timed out), ``io_error``
    (anything else at the transport, permissions included: ``detail`` says
    which), ``service_unavailable`` (pcscd), and for printers ``paper_out``,
    ``cover_open`` and ``printer_error``. ``detail`` goes to logs.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PrinterError(DeviceError):
    """A print job failed; ``reason`` is offline | paper_out | cover_open | printer_error | io_error.

    ``sent`` says whether any byte of the job may have reached the printer
    (False: refused by the status check or the connection, nothing left);
    ``delivered`` that every byte did (the printer holds the whole job and
    finishes it once the condition is cleared). The print worker decides
    from these whether a job may be sent again.
    """

    def __init__(self, reason: str, detail: str | None = None, *, sent: bool = False,
                 delivered: bool = False) -> None:
        super().__init__(reason, detail)
        self.sent = sent or delivered
        self.delivered = delivered


@dataclass(frozen=True)
class ErrorMap:
    """How one medium's library fails, and the reason each failure means.

    ``foreign``: the exception types its calls raise (pyserial's, pyusb's
    and evdev's errors are all ``OSError``); ``timeouts``: those of them
    that mean "gave up waiting" without saying so by errno (pyserial's write
    timeout); ``default``: the reason for one with no errno we know (a
    network peer that fails is unreachable, a local device that fails has an
    I/O problem); ``denied``: what a permission error means on this medium.
    """

    foreign: tuple[type[BaseException], ...] = (OSError,)
    timeouts: tuple[type[BaseException], ...] = ()
    default: str = "io_error"
    denied: str = "permission denied (udev rule, group posd)"

    @contextlib.contextmanager
    def __call__(self, action: str) -> Iterator[None]:
        """Translate what the library raises while doing ``action``."""
        try:
            yield
        except DeviceError:
            raise
        except self.foreign as exc:
            raise self.translate(exc, action) from exc

    def translate(self, exc: BaseException, action: str) -> DeviceError:
        code = errno_of(exc)
        if code in DENIED_ERRNOS:
            return DeviceError("io_error", f"{action}: {self.denied}")
        if isinstance(exc, (TimeoutError, *self.timeouts)) or code == errno.ETIMEDOUT:
            return DeviceError("offline", f"{action}: timed out")
        if code in OFFLINE_ERRNOS:
            return DeviceError("offline", f"{action}: {os.strerror(code)}")
        if code is None and any(m in str(exc) for m in _UNPLUG_MESSAGES):
            return DeviceError("offline", f"{action}: device disconnected")
        return DeviceError(self.default, f"{action}: {_what(exc, code)}")


def _what(exc: BaseException, code: int | None) -> str:
    """What went wrong, for the log line store IT reads: the OS's words for an errno; a resolver's
    own (its codes are negative: "Unknown error -2" said nothing of a host name that does not
    resolve); else the library's message (pyserial's "Could not configure port: ... Inappropriate
    ioctl for device" for a path that is no serial port), which names no card data."""
    if code is not None and code > 0:
        return os.strerror(code)
    words = getattr(exc, "strerror", None) or str(exc).strip()
    if code is not None and code < 0:  # socket.gaierror's EAI_* codes, the only negative ones
        return f"host name not found ({words})"
    return f"{type(exc).__name__}: {words[:200]}" if words else type(exc).__name__


def errno_of(exc: BaseException) -> int | None:
    """The errno of ``exc`` or of the OS error it was raised from (pyserial wraps them)."""
    for e in (exc, exc.__cause__, exc.__context__):
        code = getattr(e, "errno", None)
        if isinstance(code, int):
            return code
    return None


@contextlib.contextmanager
def printer_errors(*, sent: bool) -> Iterator[None]:
    """Device errors in a print job become ``PrinterError``s; ``sent``: bytes of the job may have left."""
    try:
        yield
    except PrinterError as exc:
        exc.sent = exc.sent or sent
        raise
    except DeviceError as exc:
        raise PrinterError(exc.reason, exc.detail, sent=sent) from exc
