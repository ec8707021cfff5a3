"""Test doubles at the device boundary: a USB-serial scanner on a pty, a recorder of a
driver's data and status callbacks. Shared by the scanner, hot-plug and daemon tests."""

from __future__ import annotations

import os
import queue
import threading
import tty
from pathlib import Path

from posd.drivers.base import DeviceState, DeviceStatus, ScanData

WAIT = 10.0  # generous bound for every wait; tests never assert on timing


class Recorder:
    """Collects on_data / on_status calls from the reader thread."""

    def __init__(self) -> None:
        self.scans: queue.Queue[ScanData] = queue.Queue()
        self.statuses: list[DeviceStatus] = []
        self._cond = threading.Condition()

    def on_data(self, scan: ScanData) -> None:
        self.scans.put(scan)

    def on_status(self, status: DeviceStatus) -> None:
        with self._cond:
            self.statuses.append(status)
            self._cond.notify_all()

    def next_scan(self) -> ScanData:
        return self.scans.get(timeout=WAIT)

    def wait_state(self, state: DeviceState, reason: str | None = None, after: int = 0) -> int:
        """Wait for a status (from index ``after`` on); return the index after it."""
        def find() -> int | None:
            for i, s in enumerate(self.statuses[after:], start=after):
                if s.state is state and (reason is None or s.reason == reason):
                    return i + 1
            return None

        with self._cond:
            assert self._cond.wait_for(lambda: find() is not None, timeout=WAIT), (
                f"no {state.value} status; got {[(s.state.value, s.reason) for s in self.statuses]}")
            return find()  # type: ignore[return-value]


class FakeSerialDevice:
    """A 'USB serial scanner': a pty pair whose slave is reachable at a by-id style link."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = link.with_name(link.name + ".tmp")
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, link)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.unlink(self.link)  # udev removes the by-id link...
        os.close(self.slave)
        os.close(self.master)  # ...and the tty is gone: readers get EOF/EIO
