"""A network receipt printer on loopback, for tests.

``PrinterEmulator`` listens on 127.0.0.1 (port 0 = any free port), records
every byte of every connection (one connection = one job, as on port 9100)
and answers ``DLE EOT n`` real-time status requests with Epson status bytes
for its current ``state``: online, offline, paper_near_end, paper_out,
cover_open. ``respond_to_status = False`` makes it silent, like printers
that ignore DLE EOT. Everything is bounded: per-job size, waits, shutdown.

``jobs`` holds what would be printed: each connection's bytes without the
real-time commands (DLE EOT n, DLE DC4 8 "clear buffers"); a connection that
only asked for status is no job (``raw`` keeps every byte). Faults for tests:

- ``fail_after(n, state)``: after n more job bytes the printer turns to
  ``state`` (paper_out, cover_open) and keeps the connection, answering
  status, like a printer that holds the rest of the job in its buffer;
- ``fail_after(n, "offline", drop=True)``: power lost after n bytes: the
  connection is cut and the port refuses connections until ``power_on()``;
- ``power_off()`` / ``power_on()``: the same, at once.
"""

from __future__ import annotations

import select
import socket
import threading
import time

__all__ = ["PrinterEmulator", "STATES", "status_byte"]

DLE_EOT = b"\x10\x04"
CLEAR_BUFFERS = b"\x10\x14\x08\x01\x03\x14\x01\x06\x02\x08"  # DLE DC4 fn=8
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
        bytes_per_s: float | None = None,
        receive_buffer: int | None = None,
        pauses: tuple[int, float] | None = None,
    ) -> None:
        self.state = state
        # a print server in front of a slow line: takes in ``pauses[0]`` bytes, then nothing for ``pauses[1]`` s
        self.pauses = pauses
        self.bytes_per_s = bytes_per_s  # a slow printer: takes in at most this many bytes a second
        self.receive_buffer = receive_buffer  # a printer's small input buffer (SO_RCVBUF), not loopback's
        self.respond_to_status = True
        self.max_job_bytes = max_job_bytes
        self.idle_timeout = idle_timeout  # a connection silent this long is closed
        self.jobs: list[bytes] = []
        self.raw: list[bytes] = []
        self.status_queries: list[int] = []
        self.buffer_clears = 0
        self.connections = 0
        self._current = bytearray()
        self._fault: tuple[int, str, bool] | None = None
        self._powered = threading.Event()
        self._powered.set()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._server: socket.socket | None = self._listen(host, port)
        self._server.settimeout(0.1)
        self.host, self.port = self._server.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="printer-emulator", daemon=True)
        self._thread.start()

    def _listen(self, host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.receive_buffer is not None:  # before listen: accepted connections inherit it, window included
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.bind((host, port))
        sock.listen()
        return sock

    # -- faults ------------------------------------------------------------
    def fail_after(self, n_bytes: int, state: str, *, drop: bool = False) -> None:
        """After ``n_bytes`` more job bytes, turn to ``state`` (and cut the power if ``drop``)."""
        if state not in STATES:
            raise ValueError(f"unknown printer state {state!r}")
        with self._lock:
            self._fault = (len(self._current) + n_bytes, state, drop)

    def power_off(self) -> None:
        """Cut the connection and refuse new ones, as a printer switched off."""
        with self._lock:
            self.state = "offline"
            self._powered.clear()
            server, self._server = self._server, None
        if server is not None:
            server.close()

    def power_on(self, state: str = "online") -> None:
        with self._lock:
            if self._server is None:
                self._server = self._listen(self.host, self.port)
                self._server.settimeout(0.1)
            self.state = state
            self._powered.set()

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

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:
        """Until ``n`` connections have ended (their bytes are then in ``raw`` and ``jobs``)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.connections >= n, timeout):
                raise TimeoutError(f"{self.connections} of {n} connections ended in {timeout}s")

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._server is not None:
            self._server.close()

    def __enter__(self) -> "PrinterEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server thread -----------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            server = self._server
            if server is None:
                self._stop.wait(0.05)
                continue
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._server is server:
                    return
                continue  # powered off under us
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        """One job at a time, like the printer's single raw port."""
        conn.setblocking(False)
        pending = b""  # an incomplete real-time command at the end of a read
        raw = bytearray()
        last = time.monotonic()
        since_pause = 0
        try:
            while not self._stop.is_set() and time.monotonic() - last < self.idle_timeout:
                if not self._powered.is_set():
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    break  # power cut: the connection dies with a reset
                ready, _, _ = select.select([conn], [], [], 0.05)
                if not ready:
                    continue
                try:
                    chunk = conn.recv(65536 if self.bytes_per_s is None else max(1, int(self.bytes_per_s / 20)))
                    if self.bytes_per_s is not None and chunk:
                        time.sleep(len(chunk) / self.bytes_per_s)
                    since_pause += len(chunk)
                    if self.pauses is not None and since_pause >= self.pauses[0]:
                        since_pause = 0
                        time.sleep(self.pauses[1])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                last = time.monotonic()
                raw += chunk[: max(0, self.max_job_bytes - len(raw))]
                data, pending = self._realtime(conn, pending + chunk)
                if self._take(data):
                    break
        finally:
            with self._lock:
                self.connections += 1
                self.raw.append(bytes(raw))
                if self._current:  # a bare connect or a status check is no job
                    self.jobs.append(bytes(self._current))
                self._current.clear()
                self._lock.notify_all()

    def _take(self, data: bytes) -> bool:
        """Keep job bytes, applying a pending fault; True when the power was cut."""
        with self._lock:
            fault = self._fault
            if fault is not None and len(self._current) + len(data) >= fault[0]:
                keep = max(0, fault[0] - len(self._current))
                self._fault = None
                at, state, drop = fault
                if drop:
                    self._current += data[:keep]
                    self.state = "offline"
                    self._powered.clear()
                    server, self._server = self._server, None
                    if server is not None:
                        server.close()
                    return True
                self.state = state
            room = self.max_job_bytes - len(self._current)
            self._current += data[: max(0, room)]
        return False

    def _realtime(self, conn: socket.socket, data: bytes) -> tuple[bytes, bytes]:
        """Answer and strip real-time commands; returns (job bytes, incomplete tail)."""
        out = bytearray()
        i = 0
        while i < len(data):
            if data[i] != 0x10:
                j = data.find(b"\x10", i)
                j = len(data) if j < 0 else j
                out += data[i:j]
                i = j
                continue
            rest = data[i:]
            if rest.startswith(CLEAR_BUFFERS):
                self.buffer_clears += 1
                with self._lock:
                    self._current.clear()
                i += len(CLEAR_BUFFERS)
            elif CLEAR_BUFFERS.startswith(rest) or DLE_EOT.startswith(rest) or (
                    rest.startswith(DLE_EOT) and len(rest) == 2):
                return bytes(out), bytes(rest)  # wait for the rest of the command
            elif rest.startswith(DLE_EOT):
                n = rest[2]
                self.status_queries.append(n)
                if self.respond_to_status and n in (1, 2, 3, 4):
                    try:
                        conn.sendall(bytes([status_byte(self.state, n)]))
                    except OSError:
                        pass
                i += 3
            else:
                out.append(0x10)
                i += 1
        return bytes(out), b""
