"""The reference central's store on SQLite: the embedded default (``make run``, most tests).

One connection behind a lock: simple and obviously correct beats concurrent
for development, demos and tests. Every method is the shared SQL store's
(store_sql.py); what is SQLite's own is here: the connection (WAL,
synchronous=FULL, since an acked batch must survive a crash), one writer at a
time (``BEGIN IMMEDIATE``), a member's version as one more than the highest,
and the schema (migrations.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from posd.sync.central.migrations import migrate
from posd.sync.central.store_sql import SqlStore


class SqliteStore(SqlStore):
    """Central's database in one SQLite file. Every method is safe to call from any thread."""

    def __init__(self, path: str | Path, clock: Any = time.time) -> None:
        self.path = Path(path)
        self._clock = clock  # unix seconds; expiry is judged by central's clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acked batch must survive a crash
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            migrate(self._conn)
        self._ensure_signing_key()

    SALE_OF_SQL = "json_extract(body, '$.transaction_id')"
    HOLDER_SQL = ("SELECT m.member_id FROM members m, json_each(m.identifiers) i WHERE i.value = ? "
                  "AND m.status != 'deleted' LIMIT 1")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def _next_versions(self, conn: sqlite3.Connection, count: int) -> list[int]:
        # One writer at a time: the next numbers are also the next commit's.
        top = self._feed_end(conn)
        return list(range(top + 1, top + 1 + count))

    def _feed_end(self, conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT coalesce(max(version), 0) AS v FROM members").fetchone()["v"]

    def _feed_rows(self, conn: sqlite3.Connection, cursor: int, limit: int) -> list[Any]:
        return conn.execute("SELECT * FROM members WHERE version > ? ORDER BY version LIMIT ?",
                            (cursor, limit)).fetchall()
