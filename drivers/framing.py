"""Scanner framing: a byte stream in, whole codes out. Pure; ``now`` passed in.

Serial, pty and TCP scanners send each code followed by a suffix (CR by
default). Reads split codes anywhere, and one read may hold several codes,
so the framer buffers until a suffix. Scanners configured without a suffix
are framed by silence: ``flush_if_idle`` emits what arrived once the line
has been quiet for ``idle_flush_s``.

Codes are ASCII. Bytes are read as UTF-8 with digits of any script folded
to 0-9, else as latin-1 (never a decode error), the prefix is stripped, and
non-printable bytes are dropped except GS (0x1D), the GS1 field separator
that member and voucher codes may carry. A frame with nothing readable left
is delivered as UNREADABLE (the POS gets an invalid scan), never dropped
in silence.
"""

from __future__ import annotations

from posd.core.identify import fold_ascii

__all__ = ["GS", "SUFFIXES", "UNREADABLE", "ScanFramer", "clean_code", "make_framer", "parse_suffix"]

GS = "\x1d"

SUFFIXES: dict[str, bytes] = {
    "CR": b"\r",
    "LF": b"\n",
    "CRLF": b"\r\n",
    "TAB": b"\t",
    "NONE": b"",
}


def parse_suffix(name: str) -> bytes:
    """``"cr"`` -> ``b"\\r"``; raises ValueError naming the accepted names."""
    try:
        return SUFFIXES[name.strip().upper()]
    except KeyError:
        known = ", ".join(SUFFIXES)
        raise ValueError(f"unknown suffix {name!r}; use one of {known}") from None


# What a frame with nothing readable in it is delivered as (bytes at a wrong baud rate, a symbology the
# scanner mangles): a code that identifies as invalid, so the POS hears of the scan; never its bytes.
UNREADABLE = "\ufffd"


def clean_code(frame: bytes) -> str:
    """Printable ASCII plus GS, digits of any script as 0-9 (a scanner sending UTF-8 Persian digits);
    everything else (CR, LF, NUL, 8-bit noise) dropped."""
    try:
        text = fold_ascii(frame.decode("utf-8"))
    except UnicodeDecodeError:
        text = frame.decode("latin-1")
    return "".join(c for c in text if " " <= c <= "~" or c == GS)


class ScanFramer:
    """Turns scanner bytes into codes.

    ``feed`` returns the codes completed by ``data``; ``flush_if_idle``
    returns a code ended by silence (suffix NONE) or drops a stale partial
    code (with a suffix). Why a frame was dropped is kept for the caller to
    log via ``take_drops`` (reasons only, never the data: it may be a card
    number).
    """

    def __init__(
        self,
        prefix: bytes = b"",
        suffix: bytes = b"\r",
        max_len: int = 4096,
        idle_flush_s: float | None = None,
    ) -> None:
        if max_len < 1:
            raise ValueError("max_len must be positive")
        if not suffix and idle_flush_s is None:
            raise ValueError("a scanner without a suffix needs idle_flush_s")
        self.prefix = prefix
        self.suffix = suffix
        self.max_len = max_len
        self.idle_flush_s = idle_flush_s
        self._buf = bytearray()
        self._last_byte: float | None = None
        self._discarding = False  # inside an over-long frame, until the next suffix
        self._drops: list[str] = []
        self._unreadable = 0

    @property
    def pending(self) -> bool:
        """True while a partial frame is buffered."""
        return bool(self._buf) or self._discarding

    def reset(self) -> None:
        """Forget any partial frame (after a reconnect it belongs to nobody)."""
        if self._buf:
            self._drops.append("partial code discarded on reconnect")
        self._buf.clear()
        self._discarding = False
        self._last_byte = None

    def take_drops(self) -> list[str]:
        drops, self._drops = self._drops, []
        return drops

    def take_unreadable(self) -> int:
        """How many frames were delivered as UNREADABLE since the last call (for a log line)."""
        count, self._unreadable = self._unreadable, 0
        return count

    def feed(self, data: bytes, now: float) -> list[str]:
        if not data:
            return []
        self._last_byte = now
        if not self.suffix:
            self._buf += data
            self._limit_unsuffixed()
            return []
        self._buf += data
        codes: list[str] = []
        while True:
            idx, end = self._next_end()
            if idx < 0:
                break
            frame = bytes(self._buf[:idx])
            del self._buf[:end]
            if self._discarding:
                self._discarding = False
                continue
            code = self._finish(frame)
            if code:
                codes.append(code)
        if len(self._buf) > self.max_len:
            if not self._discarding:
                self._drop(f"code longer than {self.max_len} bytes without a suffix")
            self._discarding = True
            # Keep a tail that could be the start of a split suffix.
            keep = len(self.suffix) - 1
            self._buf = self._buf[-keep:] if keep else bytearray()
        return codes

    def _next_end(self) -> tuple[int, int]:
        """Where the next frame ends and where the one after it starts; (-1, -1) when no end arrived.
        CRLF is ended by CR, LF or both: a scanner set to CRLF that sends one of them (a keyboard
        profile, a bridge that drops one) still completes every code; the empty frame between a CR
        and its LF is nothing."""
        if self.suffix != b"\r\n":
            idx = self._buf.find(self.suffix)
            return (idx, idx + len(self.suffix)) if idx >= 0 else (-1, -1)
        cr, lf = self._buf.find(b"\r"), self._buf.find(b"\n")
        idx = min(i for i in (cr, lf) if i >= 0) if cr >= 0 or lf >= 0 else -1
        if idx < 0:
            return -1, -1
        return idx, idx + (2 if self._buf[idx:idx + 2] == b"\r\n" else 1)

    def flush_if_idle(self, now: float) -> list[str]:
        if self.idle_flush_s is None or self._last_byte is None or not self.pending:
            return []
        if now - self._last_byte < self.idle_flush_s:
            return []
        frame = bytes(self._buf)
        self._buf.clear()
        self._last_byte = None
        if self._discarding:
            self._discarding = False
            return []
        if self.suffix:
            if clean_code(frame):
                self._drop("incomplete code (no suffix before the line went quiet)")
            return []
        code = self._finish(frame)
        return [code] if code else []

    def _limit_unsuffixed(self) -> None:
        if len(self._buf) > self.max_len:
            if not self._discarding:
                self._drop(f"code longer than {self.max_len} bytes")
            self._buf.clear()
            self._discarding = True

    def _finish(self, frame: bytes) -> str:
        if len(frame) > self.max_len:
            self._drop(f"code longer than {self.max_len} bytes")
            return ""
        code = clean_code(frame)
        prefix = clean_code(self.prefix)
        if prefix and code.startswith(prefix):
            code = code[len(prefix) :]
        if not code and frame.strip(b" \t\r\n\x00") and frame != self.prefix:
            self._unreadable += 1  # bytes, none readable: the POS hears of an invalid scan
            return UNREADABLE
        return code

    def _drop(self, reason: str) -> None:
        self._drops.append(reason)


def make_framer(
    prefix: bytes = b"",
    suffix: bytes = b"\r",
    idle_ms: int = 50,
    max_len: int = 4096,
) -> ScanFramer:
    """The framer for a scanner's URL options: silence ends a code when there is no suffix; with a
    suffix, a partial code the line has been quiet after for STALE_PARTIAL_S is dropped (a scanner
    sends a code's bytes back to back), so it never runs into the next scan: a member card turned
    away, or a payment card's digits carried inside a longer "code" past the card check."""
    idle = idle_ms / 1000.0 if not suffix else STALE_PARTIAL_S
    return ScanFramer(prefix=prefix, suffix=suffix, max_len=max_len, idle_flush_s=idle)


STALE_PARTIAL_S = 1.0
