"""A real posd daemon in a child process, for end-to-end tests.

It gets its own config, storage folder, pty scanner and API port; tests talk
to it over real HTTP and read its SSE stream over a real socket.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.wait import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lane_config(tmp: Path, *, central_url: str, secret: str, printer: str, port: int,
                locale: str = "pl", store_id: str = "S001", lane_id: str = "L01") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "posd.toml"
    path.write_text(f"""
[lane]
store_id = "{store_id}"
lane_id = "{lane_id}"
locale = "{locale}"
currency = "PLN"
timezone = "Europe/Warsaw"

[api]
listen = "127.0.0.1:{port}"
allowed_origins = ["https://pos.example.com"]

[storage]
dir = "state"

[central]
url = "{central_url}"
store_secret = "{secret}"
push_interval_s = 0.2
pull_interval_s = 0.5

[[scanner]]
name = "front"
url = "pty://scanner0?suffix=CR"

[printer]
url = "{printer}"
profile = "TM-T88V"
""")
    return path


class LaneProcess:
    def __init__(self, config: Path, port: int):
        self.config, self.port = config, port
        self.base = f"http://127.0.0.1:{port}"
        self.state = config.parent / "state"
        self.proc: subprocess.Popen | None = None
        self.log = config.parent / "posd.log"

    # -- lifecycle ----------------------------------------------------------
    def spawn(self, **env: str) -> None:
        """Start `posd run` with extra environment (e.g. a crash point); do not wait."""
        full = {**os.environ, "POSD_LOG_LEVEL": "info"}
        full.pop("POSD_CRASH_AT", None)
        full.update(env)
        self._log_file = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "posd", "run", "--config", str(self.config)],
                                     stdout=self._log_file, stderr=subprocess.STDOUT, env=full)

    def wait_healthy(self, timeout: float, *, sigkill_ok: bool = False) -> bool:
        """True once /v1/health answers; False if it SIGKILLed itself first and that was allowed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log_file.close()
                if sigkill_ok and self.proc.returncode == -signal.SIGKILL:
                    return False
                raise RuntimeError(f"posd exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.base}/v1/health", timeout=2).status_code == 200:
                    self.token = (self.state / "api.token").read_text().strip()
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"posd did not become healthy:\n{self.log.read_text()[-3000:]}")

    def start(self, timeout: float = 20.0) -> LaneProcess:
        self.spawn()
        self.wait_healthy(timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as a power cut or OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log_file.close()

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode if self.proc else 0

    # -- API ------------------------------------------------------------------
    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.base + path, headers=kw.pop("headers", self.headers()), timeout=10, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=kw.pop("headers", self.headers()),
                             timeout=10, **kw)

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.base}/v1/health", timeout=5).json()

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "condition") -> Any:
        return wait_until(predicate, timeout, what, detail=lambda: f"; log:\n{self.log.read_text()[-3000:]}")

    def wait_synced(self, timeout: float = 15.0) -> None:
        def ready() -> bool:
            h = self.health()
            scanners = [d for d in h["devices"] if d["kind"] == "scanner"]
            scanners_up = bool(scanners) and all(d["state"] == "idle" for d in scanners)
            return bool(h["cache"]["members"] > 0 and h["cache"]["program_version"] and scanners_up)

        self.wait_for(ready, timeout, "members, program and scanners ready")

    def wait_drained(self, timeout: float = 30.0) -> None:
        self.wait_for(lambda: self.health()["sync"]["pending"] == 0, timeout, "outbox drained")

    def scan(self, code: str) -> None:
        """Type a code into the pty scanner, as `posd scan` does."""
        subprocess.run([sys.executable, "-m", "posd", "scan", code, "--config", str(self.config)],
                       check=True, timeout=10)

    def sse(self, last_event_id: int | None = None) -> SSEClient:
        return SSEClient(self.port, self.token, last_event_id)


class SSEClient:
    """Reads text/event-stream over a raw HTTP connection in a thread."""

    def __init__(self, port: int, token: str, last_event_id: int | None = None):
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", "/v1/events", headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event: dict[str, Any] = {}
        try:
            while True:
                line = self.response.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if not line:
                    if "data" in event:
                        self.events.put(event)
                    event = {}
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(": ")
                    if key == "data":
                        event["data"] = json.loads(value)
                    elif key == "id":
                        event["id"] = int(value)
                    else:
                        event[key] = value
        except Exception:  # the stream was closed under us (http.client raises odd things then)
            return

    def next(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of that type (others are skipped and kept in .seen)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event.get("event") == type_:
                return event
        raise AssertionError(f"no {type_} event within {timeout}s")

    def close(self) -> None:
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
