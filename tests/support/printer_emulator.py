"""A network receipt printer on loopback, for tests.

``PrinterEmulator`` listens on 127.0.0.1 (port 0 = any free port), records
every byte of every connection (one connection = one job, as on port 9100)
and answers ``DLE EOT n`` real-time status requests with Epson status bytes
for its current ``state``: online, offline, paper_near_end, paper_out,
cover_open. ``respond_to_status = False`` makes it silent, like printers
that ignore DLE EOT. Everything is bounded: per-job size, waits, shutdown.
"""

from __future__ import annotations

import select
import socket
import threading
import time

__all__ = ["PrinterEmulator", "STATES", "status_byte"]

DLE_EOT = b"\x10\x04"
STATES = ("online", "offline", "paper_near_end", "paper_out", "cover_open")
_FIXED = 0x12  # bits 1 and 4 are always set in Epson status bytes


def status_byte(state: str, n: int) -> int:
    """The Epson answer to DLE EOT n (1 printer, 2 offline cause, 3 error, 4 paper)."""
    if state not in STATES:
        raise ValueError(f"unknown printer state {state!r}")
    value = _FIXED
    offline = state in ("offline", "paper_out", "cover_open")
    if n == 1 and offline:
        value |= 0x08  # bit 3: offline
    elif n == 2:
        if state == "cover_open":
            value |= 0x04  # bit 2: cover open
        if state == "paper_out":
            value |= 0x20  # bit 5: printing stopped by paper end
    elif n == 4:
        if state in ("paper_near_end", "paper_out"):
            value |= 0x0C  # bits 2-3: near end
        if state == "paper_out":
            value |= 0x60  # bits 5-6: paper end
    return value


class PrinterEmulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state: str = "online",
        max_job_bytes: int = 16 * 1024 * 1024,
        idle_timeout: float = 10.0,
    ) -> None:
        self.state = state
        self.respond_to_status = True
        self.max_job_bytes = max_job_bytes
        self.idle_timeout = idle_timeout  # a connection silent this long is closed
        self.jobs: list[bytes] = []
        self.status_queries: list[int] = []
        self.connections = 0
        self._current = bytearray()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.1)
        self.host, self.port = self._server.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="printer-emulator", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def received(self) -> bytes:
        """Every byte received so far, the job in progress included."""
        with self._lock:
            return b"".join(self.jobs) + bytes(self._current)

    def wait_for_jobs(self, n: int, timeout: float = 5.0) -> list[bytes]:
        """The first ``n`` finished jobs; TimeoutError if they don't arrive in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.jobs) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.jobs)} of {n} print jobs arrived in {timeout}s")
                self._lock.wait(left)
            return list(self.jobs[:n])

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._server.close()

    def __enter__(self) -> "PrinterEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server thread -----------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        """One job at a time, like the printer's single raw port."""
        conn.setblocking(False)
        pending = b""  # an incomplete DLE EOT at the end of a read
        last = time.monotonic()
        try:
            while not self._stop.is_set() and time.monotonic() - last < self.idle_timeout:
                ready, _, _ = select.select([conn], [], [], 0.05)
                if not ready:
                    continue
                try:
                    chunk = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                last = time.monotonic()
                with self._lock:
                    room = self.max_job_bytes - len(self._current)
                    self._current += chunk[: max(0, room)]
                pending = self._answer_status(conn, pending + chunk)
        finally:
            with self._lock:
                self.connections += 1
                if self._current:  # a bare connect (reachability probe) is no job
                    self.jobs.append(bytes(self._current))
                self._current.clear()
                self._lock.notify_all()

    def _answer_status(self, conn: socket.socket, data: bytes) -> bytes:
        start = 0
        while True:
            idx = data.find(DLE_EOT, start)
            if idx < 0:
                return data[-1:] if data.endswith(b"\x10") else b""
            if idx + 2 >= len(data):
                return data[idx:]
            n = data[idx + 2]
            self.status_queries.append(n)
            if self.respond_to_status and n in (1, 2, 3, 4):
                try:
                    conn.sendall(bytes([status_byte(self.state, n)]))
                except OSError:
                    return b""
            start = idx + 3
