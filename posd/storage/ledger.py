"""ledger.db: the lane's precious record, and its one writer.

Every write runs on one dedicated thread, on one connection, inside
BEGIN IMMEDIATE ... COMMIT (Datasette's execute_write_fn): the event loop
never waits on fsync, and there is never a second writer to race the seq
counter. Readers get a connection of their own per thread (WAL lets them run
beside the writer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from posd.storage.db import StorageError, ThreadReaders, connect, parse_iso, quick_check, utcnow_iso
from posd.storage.schema import ledger_migrations

log = logging.getLogger("posd.ledger")
T = TypeVar("T")


def _read_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _write_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


@dataclass(frozen=True)
class LaneIdentity:
    store_id: str
    lane_id: str


class Ledger:
    """Owns ledger.db: migrations, the writer thread, per-thread readers."""

    def __init__(self, path: Path, lane: LaneIdentity):
        self.path = path
        self.lane = lane
        self._readers = ThreadReaders(path, durable=True)
        self._on_outbox: list[Callable[[], None]] = []
        existed = path.exists()
        try:
            self._conn = connect(path, durable=True)
            if existed:
                problem = quick_check(self._conn)
                if problem:
                    raise StorageError(f"{path} failed its integrity check ({problem})")
            ledger_migrations.apply(self._conn)
            self.boot = self._start(self._conn)
        except sqlite3.DatabaseError as exc:
            # Never "repair" the precious file by recreating it: stop and say so.
            raise StorageError(
                f"{path} cannot be opened as a posd ledger ({exc}); it was left untouched. "
                "Restore it from backup or move it aside to start a new lane history."
            ) from exc
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")

    def _start(self, conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            store, lane = _read_meta(conn, "store_id"), _read_meta(conn, "lane_id")
            if store is None:
                _write_meta(conn, "store_id", self.lane.store_id)
                _write_meta(conn, "lane_id", self.lane.lane_id)
            elif (store, lane) != (self.lane.store_id, self.lane.lane_id):
                raise StorageError(
                    f"{self.path} belongs to store {store} lane {lane}, but the config says "
                    f"store {self.lane.store_id} lane {self.lane.lane_id}; refusing to mix lane histories"
                )
            boot = int(_read_meta(conn, "boot") or 0) + 1
            _write_meta(conn, "boot", str(boot))
            # A job that was being sent when the process died goes back in the queue.
            conn.execute("UPDATE print_jobs SET state = 'queued' WHERE state = 'printing'")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return boot

    # -- writing ----------------------------------------------------------
    def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        return self._executor.submit(self._run_write, fn)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking write, for threads other than the event loop's."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn))

    def on_outbox_write(self, callback: Callable[[], None]) -> None:
        self._on_outbox.append(callback)

    def outbox_written(self) -> None:
        for cb in self._on_outbox:
            try:
                cb()
            except Exception:  # a listener's bug must not fail a committed write
                log.exception("outbox listener failed")

    # -- reading ----------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        return self._readers.get()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._readers.close()
        self._conn.close()

    # -- the outbox -------------------------------------------------------
    def append_event(self, conn: sqlite3.Connection, event_type: str, fields: dict[str, Any]) -> int:
        """Append one outbox event inside the caller's write transaction; returns its seq."""
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0]
        event_id = uuid.uuid4().hex
        body = {"seq": seq, "event_id": event_id, "type": event_type, **fields}
        conn.execute(
            "INSERT INTO outbox (seq, event_id, type, body, created_at) VALUES (?, ?, ?, ?, ?)",
            (seq, event_id, event_type, json.dumps(body, separators=(",", ":"), sort_keys=True), utcnow_iso()),
        )
        return seq

    def counts(self) -> dict[str, Any]:
        conn = self.reader()
        # each of these reads the (state, seq) index, not the whole outbox: health is polled often
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        first = conn.execute(
            "SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1").fetchone()
        oldest = first[0] if first else None
        quarantined = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'quarantined'").fetchone()[0]
        acked = conn.execute(
            "SELECT COALESCE(MAX(m), 0) FROM (SELECT MAX(seq) AS m FROM outbox WHERE state = 'acked' "
            "UNION ALL SELECT MAX(seq) FROM outbox WHERE state = 'quarantined')").fetchone()[0]
        return {
            "pending": pending,
            "oldest_pending_at": parse_iso(oldest) if oldest else None,
            "quarantined": quarantined,
            "last_acked_seq": acked,
        }
