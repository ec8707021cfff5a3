"""What the benches share: percentiles and ratios, a process's CPU and memory, the
reference central and the daemon as child processes, and a POS posting sales.

Every figure goes next to its floor, measured in the same run: on a shared
2-core machine an absolute figure alone says more about the neighbours than
about posd.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.lane import LaneProcess, free_port, lane_config  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 4), "p99_ms": round(pct(ms, 99), 4),
            "max_ms": round(max(ms), 3), "mean_ms": round(statistics.fmean(ms), 4)}


def ratio(value: float, floor: float) -> float | None:
    return round(value / floor, 2) if floor else None


def combined_rate(*rates: float) -> float:
    """Two stages in series, each alone at its own rate: what they can do together."""
    return 1 / sum(1 / r for r in rates) if all(rates) else 0.0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and of the children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def proc_mem_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def emit(report: dict[str, Any], out: str | None) -> int:
    """A bench's report as indented JSON: to ``out`` when given, and on stdout."""
    text = json.dumps(report, indent=2)
    if out:
        Path(out).write_text(text)
    print(text)
    return 0


def machine() -> dict[str, Any]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "interpreter": os.path.realpath(sys.executable), "platform": platform.platform(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --- the reference central -------------------------------------------------------------------


class Central:
    def __init__(self, url: str, proc: subprocess.Popen):
        self.url, self.proc = url, proc

    def lane_events(self, store: str = "S001", lane: str = "L01") -> list[dict[str, Any]]:
        resp = requests.get(f"{self.url}/_admin/events", params={"store": store, "lane": lane}, timeout=120)
        resp.raise_for_status()
        return resp.json()["events"]


@contextlib.contextmanager
def central_process(tmp: Path, seed: dict, name: str = "central") -> Iterator[Central]:
    """`posd central` (the SQLite reference central `make run` uses) as a child process on a free
    loopback port: a central in the bench's own process would share its GIL."""
    tmp.mkdir(parents=True, exist_ok=True)
    seed_file = tmp / f"{name}-seed.json"
    seed_file.write_text(json.dumps(seed))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "posd", "central", "--listen", f"127.0.0.1:{port}",
                             "--db", str(tmp / f"{name}.db"), "--seed", str(seed_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(f"http://127.0.0.1:{port}/v1/program")
        yield Central(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        proc.wait(30)


# --- the daemon ------------------------------------------------------------------------------------


class BenchLane(LaneProcess):
    """`posd run` as store IT runs it (no test guard), with a NOTIFY_SOCKET of our own so start
    to READY=1 is measured as systemd sees it. ``module`` runs another entry point (the profiler)."""

    def __init__(self, config: Path, port: int, module: tuple[str, ...] = ("posd",)):
        super().__init__(config, port)
        self.module = module
        self.ready_s: float | None = None

    def spawn(self, **env: str) -> None:  # type: ignore[override]
        sock_path = self.config.parent / "notify.sock"
        sock_path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(sock_path))
        full = {**os.environ, "POSD_LOG_LEVEL": "warning", "NOTIFY_SOCKET": str(sock_path), **env}
        full.pop("POSD_CRASH_AT", None)
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full.get("PYTHONPATH")]))
        self._log_file = open(self.log, "ab")
        self._log_read = self.log.stat().st_size
        self._spawned = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", *self.module, "run", "--config", str(self.config)],
                                     stdout=self._log_file, stderr=subprocess.STDOUT, env=full)
        LaneProcess.running.add(self)

    def start(self, timeout: float = 120.0) -> BenchLane:  # type: ignore[override]
        self.spawn()
        self._notify.settimeout(timeout)
        try:
            while True:
                message = self._notify.recv(4096)
                if b"READY=1" in message:
                    self.ready_s = time.perf_counter() - self._spawned
                    break
        finally:
            self._notify.close()
        self.wait_healthy(timeout)
        return self


class EventLines:
    """The lane's event stream read in the measuring thread itself, as a POS reads it.

    The tests' SSE client hands each event through a queue to another thread after
    checking its shape: in one process, each handoff can wait for the GIL (up to its
    5 ms switch interval) and the clock is read late. Here the clock is read as the
    event's line arrives, so what is measured is the daemon, not this process.
    """

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}",
                                                        "Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()

    def until(self, kinds: tuple[str, ...], deadline: float) -> tuple[str, dict, float] | None:
        """The next event of one of ``kinds`` (its kind, data and arrival time); None past the deadline."""
        wanted = {k.encode() for k in kinds}
        kind = b""
        while time.perf_counter() < deadline:
            try:
                line = self.response.readline()
            except OSError:  # the socket's timeout too
                return None
            if not line:
                return None
            if line.startswith(b"event: "):
                kind = line[7:].strip()
            elif line.startswith(b"data: ") and kind in wanted:
                arrived = time.perf_counter()
                return kind.decode(), json.loads(line[6:]), arrived
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def bench_config(folder: Path, *, central_url: str, secret: str, port: int, printer: str = "none") -> Path:
    """A lane as shipped (config/posd.example.toml's push and pull intervals), a pty scanner."""
    return lane_config(folder, central_url=central_url, secret=secret, printer=printer, port=port, intervals=None)


def wait_listening(url: str, timeout: float = 60.0) -> None:
    """Until an HTTP server answers at ``url`` (any status), or ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)


# --- a POS ------------------------------------------------------------------------------------------


def sale(tid: str, member: str) -> dict:
    return {"transaction_id": tid, "member": member, "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "PLN", "total": 4599,
            "lines": [{"sku": "590123", "category": "grocery", "quantity": 1, "unit_price": 4599}]}


def post_loop(port: int, token: str, prefix: str, member: str | list[str], n: int, out=None,
              start_at: float = 0.0) -> list[float]:
    """A POS on one keep-alive connection: n sales one after another, latency of each in ms.
    Sale i is member[i % len(member)]'s when given a list (a till serves many members).

    http.client rather than requests: on 2 cores the client shares the CPU with
    the daemon, and requests' own per-call overhead would be measured as posd's.
    ``start_at`` (perf_counter) lines several POS processes up to start together.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    members = [member] if isinstance(member, str) else member
    bodies = [json.dumps(sale(f"{prefix}-{i}", members[i % len(members)])).encode() for i in range(n)]
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    ms = []
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/transactions", body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        ms.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, payload[:200]
    conn.close()
    if out is not None:
        out.put(ms)
    return ms


def concurrent_posts(port: int, token: str, prefix: str, member: str | list[str], n: int,
                     clients: int) -> tuple[list[float], float]:
    """``clients`` POS processes (so they do not queue behind one GIL) posting n sales between them;
    (latencies, seconds from the common start to the last answer)."""
    import multiprocessing

    queue: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.perf_counter() + 1.0  # every process started and its bodies built by then
    procs = [multiprocessing.Process(target=post_loop, args=(port, token, f"{prefix}{k}", member[k::clients]
                                                             if isinstance(member, list) else member,
                                                             n // clients, queue, start_at)) for k in range(clients)]
    for proc in procs:
        proc.start()
    ms = [x for _ in procs for x in queue.get(timeout=900)]
    elapsed = time.perf_counter() - start_at
    for proc in procs:
        proc.join(30)
    return ms, elapsed
