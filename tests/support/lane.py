"""A real posd daemon in a child process, for end-to-end tests.

It gets its own config, storage folder, pty scanner and API port; tests talk
to it over real HTTP and read its SSE stream over a real socket. It runs with
the loop guard (tests.support.guarded_posd): a blocking call on the daemon's
event loop fails the test, when the daemon stops or when the test ends.
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
import weakref
from pathlib import Path
from typing import Any

import requests

from tests.support import loop_guard
from tests.support.contract import check_answer, check_event
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


ANNA = "2900000000018"  # the demo seed's gold member (config/demo-seed.json)


def sale_body(transaction_id: str, member: str | None = ANNA, total: int = 5000) -> dict[str, Any]:
    """A POST /v1/transactions body: one grocery line worth ``total``."""
    return {"transaction_id": transaction_id, "member": member, "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": total,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": total}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lane_config(tmp: Path, *, central_url: str, secret: str, printer: str, port: int,
                locale: str = "pl", store_id: str = "S001", lane_id: str = "L01",
                scanner: str = "pty://scanner0?suffix=CR", intervals: tuple[float, float] | None = (0.2, 0.5),
                storage_dir: str = "state", country: str | None = None) -> Path:
    """``intervals``: the relay's push and the puller's pull interval, short for tests; None keeps
    the shipped defaults (the bench measures the lane as it ships). ``storage_dir``: storage.dir,
    under the config's folder when relative."""
    tmp.mkdir(parents=True, exist_ok=True)
    sync = "" if intervals is None else f"push_interval_s = {intervals[0]}\npull_interval_s = {intervals[1]}\n"
    path = tmp / "posd.toml"
    path.write_text(f"""
[lane]
store_id = "{store_id}"
lane_id = "{lane_id}"
locale = "{locale}"
currency = "PLN"
timezone = "Europe/Warsaw"
{f'country = "{country}"' if country else ""}

[api]
listen = "127.0.0.1:{port}"
allowed_origins = ["https://pos.example.com"]

[storage]
dir = "{storage_dir}"

[central]
url = "{central_url}"
store_secret = "{secret}"
{sync}
[[scanner]]
name = "front"
url = "{scanner}"

[printer]
url = "{printer}"
profile = "TM-T88V"
""")
    return path


def launch_lane(folder: Path, central: Any, *, printer: str = "none", extra_config: str = "",
                **kwargs: Any) -> LaneProcess:
    """A daemon on a free port, configured for ``central`` (store S001's secret), started and synced."""
    port = free_port()
    secret = kwargs.pop("secret", None) or _store_secret(central, kwargs.get("store_id", "S001"))
    cfg = lane_config(folder, central_url=central.url, secret=secret, printer=printer, port=port, **kwargs)
    if extra_config:
        cfg.write_text(cfg.read_text() + extra_config)
    lane = LaneProcess(cfg, port, state=folder / kwargs.get("storage_dir", "state")).start()
    try:
        lane.wait_synced(timeout=30)
    except BaseException:
        lane.stop()
        raise
    return lane


def _store_secret(central: Any, store_id: str) -> str:
    secret = central.store.store_secret(store_id)
    assert secret is not None, f"central has no store {store_id}"
    return "hex:" + secret.hex()


class LaneProcess:
    running: weakref.WeakSet[LaneProcess] = weakref.WeakSet()  # for the conftest's loop guard

    def __init__(self, config: Path, port: int, state: Path | None = None):
        self.config, self.port = config, port
        self.base = f"http://127.0.0.1:{port}"
        self.state = state or config.parent / "state"
        self.proc: subprocess.Popen | None = None
        self.log = config.parent / "posd.log"
        self._log_read = 0  # how far the log was searched for LOOP_GUARD lines

    # -- lifecycle ----------------------------------------------------------
    def spawn(self, **env: str) -> None:
        """Start `posd run` with extra environment (e.g. a crash point); do not wait."""
        full = {**os.environ, "POSD_LOG_LEVEL": "info"}
        full.pop("POSD_CRASH_AT", None)
        full.update(env)
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full.get("PYTHONPATH")]))
        self._log_file = open(self.log, "ab")
        self._log_read = self.log.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.guarded_posd", "run", "--config", str(self.config)],
            stdout=self._log_file, stderr=subprocess.STDOUT, env=full)
        LaneProcess.running.add(self)

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
        try:
            self.wait_healthy(timeout)
        except BaseException:  # a daemon that never became healthy is not left running
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as a power cut or OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._ended()

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._ended()
        return self.proc.returncode if self.proc else 0

    def _ended(self) -> None:
        """The process is gone: close its log; a blocking call its loop made fails the test
        (the conftest's guard, or the session's end for a lane that outlived its tests)."""
        self._log_file.close()
        LaneProcess.running.discard(self)
        for line in self.loop_guard_violations():
            loop_guard.record(line)

    def loop_guard_violations(self) -> list[str]:
        """LOOP_GUARD lines the daemon wrote since the last look."""
        with open(self.log, "rb") as f:
            f.seek(self._log_read)
            text = f.read()
        complete = text.rfind(b"\n") + 1  # a line still being written is read next time
        self._log_read += complete
        lines = text[:complete].decode("utf-8", "replace").splitlines()
        return [line for line in lines if line.startswith(loop_guard.MARKER)]

    # -- API ------------------------------------------------------------------
    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def get(self, path: str, **kw: Any) -> requests.Response:
        return _checked(requests.get(self.base + path, headers=kw.pop("headers", self.headers()), timeout=10, **kw))

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return _checked(requests.post(self.base + path, json=body, headers=kw.pop("headers", self.headers()),
                                      timeout=10, **kw))

    def health(self) -> dict[str, Any]:
        return _checked(requests.get(f"{self.base}/v1/health", timeout=5)).json()

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


def _checked(resp: requests.Response) -> requests.Response:
    """Every answer a test gets is checked against the API's declared shapes (tests/support/contract.py)."""
    check_answer(resp.request.method or "GET", resp.url, resp.status_code, resp.headers.get("content-type", ""),
                 resp.text)
    return resp


class SSEClient:
    """Reads text/event-stream over a raw HTTP connection in a thread; checks each event's shape."""

    def __init__(self, port: int, token: str, last_event_id: int | None = None):
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.malformed: list[str] = []  # events whose data did not match their type's schema
        self.seen: list[dict[str, Any]] = []  # events next() skipped
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
                        try:
                            check_event(event.get("event", ""), json.dumps(event["data"]))
                        except (AssertionError, ValueError) as exc:  # pydantic's ValidationError too
                            self.malformed.append(str(exc))
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
        """The next event of that type (the others it skips are kept in .seen, and named when none comes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert not self.malformed, self.malformed
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event.get("event") == type_:
                assert not self.malformed, self.malformed
                return event
            self.seen.append(event)
        skipped = [(e.get("event"), str(e.get("data"))[:200]) for e in self.seen[-20:]]
        raise AssertionError(f"no {type_} event within {timeout}s; the last events skipped: {skipped}")

    def close(self) -> None:
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
