"""Time-ordered ids: UUID version 7 (RFC 9562), for the rows a lane's outbox and central's outbox add.

An id that starts with the unix milliseconds lands at the right edge of its index (one page the
next row writes again) where a random (v4) id takes a random leaf per row, written to the WAL and
again at the checkpoint. They are still uuids, unique across processes and lanes by their random bits.
"""

from __future__ import annotations

import os
import threading
import time

_COUNTER_END = 1 << 64  # the variant's two bits and the 62-bit counter, full
_COUNTER_START = (1 << 61) - 1  # a new millisecond's counter starts at random in the lower half of its range


class UuidV7:
    """UUIDv7 values (48 bits of unix milliseconds, version 7, 12 random bits, the variant, then a
    62-bit counter: RFC 9562's method 1), ascending across every call on this generator: within one
    millisecond (or if the clock steps back) the counter carries on from the last id given; a new
    millisecond starts a new random field and a random counter start in the lower half of its range."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._millis = -1
        self._high = 0  # milliseconds, version, random field: the top 64 bits
        self._next = 0

    def take(self, count: int) -> range:
        """``count`` ids, as the range of their 128-bit values."""
        with self._lock:
            millis = time.time_ns() // 1_000_000
            if millis > self._millis or self._next + count > _COUNTER_END:
                self._millis = max(millis, self._millis + 1)
                random = int.from_bytes(os.urandom(10))  # one system call: 12 bits for the field, 61 for the counter
                self._high = (self._millis & 0xFFFF_FFFF_FFFF) << 16 | 0x7 << 12 | random >> 68
                self._next = (0b10 << 62) | random & _COUNTER_START  # the variant; half the range left to count
            start, self._next = self._next, self._next + count
            high = self._high << 64
        return range(high | start, high | (start + count))


def hyphenated(value: int) -> str:
    """The uuid's usual text: 8-4-4-4-12 hex digits."""
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
