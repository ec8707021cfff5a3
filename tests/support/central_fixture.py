"""The reference central for tests: real HTTP on 127.0.0.1, real SQLite in tmp_path.

    with running_central(tmp_path, seed) as central:
        client = make_client(central)
        central.inject("push", "503")
        central.store.events("S001", "L01")

Also in-memory OutboxPort / CachePort implementations, for testing the relay
and the puller without posd.storage.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from posd.sync.central.server import CentralServer
from posd.sync.lane.client import CentralClient
from posd.sync.lane.ports import EventResult, OutboxEvent, OutboxStats

STORE_ID = "S001"
LANE_ID = "L01"
SECRET_TEXT = "test-secret-S001"
SECRET = SECRET_TEXT.encode("utf-8")

_SEED: dict[str, Any] = {
    "stores": {STORE_ID: {"secret": SECRET_TEXT}, "S002": {"secret": "hex:" + "ab" * 32}},
    "program": {
        "version": "test-1",
        "tier_currency": "points",
        "currencies": [{"code": "points", "kind": "redeemable"}],
        "rules": [{"id": "base", "type": "base_rate", "currency": "points",
                   "rates": {"PLN": {"spend_minor": 100, "points": 1}}}],
        "tiers": [
            {"id": "basic", "threshold": 0},
            {"id": "silver", "threshold": 1000},
            {"id": "gold", "threshold": 5000},
        ],
    },
    "members": [
        {"member_id": "M0001", "display_name": "Anna K.", "locale": "pl", "tier": "gold", "qualifying": 6200,
         "identifiers": ["2900000000018"], "balances": {"points": 1840}, "birth_date": "1988-03-14"},
        {"member_id": "M0002", "display_name": "Reza K.", "locale": "fa", "qualifying": 900,
         "identifiers": ["2900000000025"], "balances": {"points": 420}},
        {"member_id": "M0003", "display_name": "Grace O.", "locale": "en",
         "identifiers": ["2900000000032"], "balances": {}, "status": "blocked"},
    ],
}


def default_seed() -> dict[str, Any]:
    """A fresh copy of the default seed: stores S001 (text secret) and S002 (hex), three members."""
    return copy.deepcopy(_SEED)


DEMO_SEED_FILE = Path(__file__).resolve().parent.parent.parent / "config" / "demo-seed.json"


def demo_seed() -> dict[str, Any]:
    """A fresh copy of the demo's seed (config/demo-seed.json): the demo program and members."""
    return json.loads(DEMO_SEED_FILE.read_text(encoding="utf-8"))


@contextmanager
def running_central(tmp_path: Path, seed: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[CentralServer]:
    """A started CentralServer on 127.0.0.1:0 with its db in ``tmp_path`` (created if
    missing); stopped, with every handler thread joined, on exit. Pass ``db_path=``
    to reuse a db across restarts; other kwargs go to CentralServer."""
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    db_path = kwargs.pop("db_path", tmp_path / "central.db")
    server = CentralServer(db_path, default_seed() if seed is None else seed, host="127.0.0.1", port=0, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FakeClock:
    """A clock a test moves by hand, shared by central and its clients (requests are signed with
    the sender's clock and checked against central's)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_client(central: CentralServer, store_id: str = STORE_ID, lane_id: str = LANE_ID,
                secret: bytes = SECRET, **kwargs: Any) -> CentralClient:
    """A CentralClient for ``central``; short timeouts unless given."""
    kwargs.setdefault("timeout", (2.0, 2.0))
    return CentralClient(central.url, store_id, lane_id, secret, **kwargs)


def make_event(seq: int, member_id: str = "M0001", type: str = "accrual", points: dict[str, int] | None = None,
               lane_id: str = LANE_ID, **overrides: Any) -> dict[str, Any]:
    """An event in wire shape; event_id is derived from lane and seq unless given."""
    event = {
        "seq": seq,
        "event_id": f"E-{lane_id}-{seq}",
        "type": type,
        "transaction_id": f"T-{lane_id}-{seq}",
        "member_id": member_id,
        "occurred_at": "2026-11-24T09:15:00Z",
        "lines": [{"sku": "5901234123457", "quantity": 1, "unit_price": 1000}],
        "points": {"points": 10} if points is None else points,
        "program_version": "test-1",
        "offline": False,
    }
    if type == "return":
        event["return_id"] = f"RET-{lane_id}-{seq}"
    event.update(overrides)
    return event


class MemoryOutbox:
    """OutboxPort in memory: the lane's gap-free seq, pending -> acked | quarantined."""

    def __init__(self, lane_id: str = LANE_ID) -> None:
        self.lane_id = lane_id
        self.events: dict[int, OutboxEvent] = {}
        self.state: dict[int, str] = {}
        self.codes: dict[int, str | None] = {}
        self.recorded: list[list[EventResult]] = []
        self._lock = threading.Lock()

    def add(self, **kwargs: Any) -> OutboxEvent:
        with self._lock:
            seq = len(self.events) + 1
            body = make_event(seq, lane_id=self.lane_id, **kwargs)
            event = OutboxEvent(seq, body["event_id"], body, len(json.dumps(body, separators=(",", ":")).encode()))
            self.events[seq] = event
            self.state[seq] = "pending"
            return event

    def pending_batch(self, max_events: int, max_bytes: int, after: int = 0) -> list[OutboxEvent]:
        with self._lock:
            batch, size = [], 0
            for seq in sorted(s for s, st in self.state.items() if st == "pending" and s > after):
                event = self.events[seq]
                if batch and (len(batch) >= max_events or size + event.size > max_bytes):
                    break
                batch.append(event)
                size += event.size
            return batch

    def record_results(self, results: list[EventResult]) -> None:
        with self._lock:
            self.recorded.append(list(results))
            for result in results:
                if result.status in ("accepted", "duplicate"):
                    self.state[result.seq] = "acked"
                elif not result.retryable:
                    self.state[result.seq] = "quarantined"
                    self.codes[result.seq] = result.code

    def stats(self) -> OutboxStats:
        with self._lock:
            pending = [s for s, st in self.state.items() if st == "pending"]
            acked = [s for s, st in self.state.items() if st != "pending"]
            return OutboxStats(
                pending=len(pending),
                oldest_pending_at=datetime.now(timezone.utc) if pending else None,
                quarantined=sum(1 for st in self.state.values() if st == "quarantined"),
                last_acked_seq=max(acked, default=0),
            )

    def count(self, state: str) -> int:
        with self._lock:
            return sum(1 for st in self.state.values() if st == state)


class MemoryCache:
    """CachePort in memory: members by id, the cursor, the program and its ETag."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.cursor: str | None = None
        self.program: dict[str, Any] | None = None
        self.etag: str | None = None
        self.pages: list[tuple[int, str]] = []  # (members in page, next_cursor) per apply
        self.program_stores = 0

    def member_cursor(self) -> str | None:
        return self.cursor

    def apply_member_changes(self, members: list[dict[str, Any]], next_cursor: str) -> None:
        for member in members:
            self.members[member["member_id"]] = member
        self.cursor = next_cursor
        self.pages.append((len(members), next_cursor))

    def program_etag(self) -> str | None:
        return self.etag

    def store_program(self, program: dict[str, Any], etag: str) -> None:
        self.program, self.etag = program, etag
        self.program_stores += 1
