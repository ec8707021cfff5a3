"""ledger.db: the lane's precious record, its one writer, and what it announces.

Every write is a unit of work (posd.storage.tx.LedgerTx) that runs on one
dedicated thread, on one connection, inside BEGIN IMMEDIATE ... COMMIT
(Datasette's execute_write_fn): the event loop never waits on fsync, and
there is never a second writer to race the seq counter. After the COMMIT the
ledger tells the subscribers of what the unit did (an outbox event: the
relay; a print job: the print worker), so no caller has to remember to.
Readers get a connection of their own per thread (WAL lets them run beside
the writer).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from posd.storage import meta, print_queue
from posd.storage.db import StorageError, ThreadReaders, connect, quick_check
from posd.storage.identity import SyncIdentity
from posd.storage.schema import ledger_migrations
from posd.storage.tx import TOPICS, LedgerTx, LedgerView

log = logging.getLogger("posd.ledger")
T = TypeVar("T")


@dataclass(frozen=True)
class LaneIdentity:
    store_id: str
    lane_id: str


class Ledger:
    """Owns ledger.db: migrations, the writer thread, per-thread readers, announcements."""

    def __init__(self, path: Path, lane: LaneIdentity):
        self.path = path
        self.lane = lane
        self._readers = ThreadReaders(path, durable=True)
        self._subscribers: dict[str, list[Callable[[], None]]] = {topic: [] for topic in TOPICS}
        self._programs: set[str] = set()  # program versions known to be stored
        # Why the last write failed in SQLite itself (disk full, I/O error), None once one succeeds:
        # health turns red on it, since sales cannot be recorded.
        self.write_failure: str | None = None
        existed = path.exists()
        try:
            self._conn = connect(path, durable=True)
            if existed:
                problem = quick_check(self._conn)
                if problem:
                    raise StorageError(f"{path} failed its integrity check ({problem})")
            ledger_migrations.apply(self._conn)
            self.boot, claimed = self._start(self._conn)
        except sqlite3.DatabaseError as exc:
            # Never "repair" the precious file by recreating it: stop and say so.
            raise StorageError(
                f"{path} cannot be opened as a posd ledger ({exc}); it was left untouched. "
                "Restore it from backup or move it aside to start a new lane history."
            ) from exc
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self.sync_identity = SyncIdentity(self, lane.lane_id, claimed)

    def _start(self, conn: sqlite3.Connection) -> tuple[int, str | None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            store, lane = meta.read(conn, "store_id"), meta.read(conn, "lane_id")
            if store is None:
                meta.write(conn, "store_id", self.lane.store_id)
                meta.write(conn, "lane_id", self.lane.lane_id)
            elif (store, lane) != (self.lane.store_id, self.lane.lane_id):
                raise StorageError(
                    f"{self.path} belongs to store {store} lane {lane}, but the config says "
                    f"store {self.lane.store_id} lane {self.lane.lane_id}; refusing to mix lane histories"
                )
            boot = int(meta.read(conn, "boot") or 0) + 1
            meta.write(conn, "boot", str(boot))
            print_queue.requeue_interrupted(conn)
            claimed = meta.read(conn, SyncIdentity.META_KEY)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return boot, claimed

    # -- writing ----------------------------------------------------------
    def _run_write(self, fn: Callable[[LedgerTx], T]) -> T:
        """One unit in its own transaction. Group commit (several units, each in a SAVEPOINT, one
        COMMIT) changes only this bracket: announcements and answers already wait for the COMMIT."""
        conn = self._conn
        tx = LedgerTx(conn, self._programs)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(tx)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                self.write_failure = str(exc)
            raise
        if self.write_failure is not None:
            self.write_failure = None
        self._programs |= tx.programs
        self._announce(tx.happened)
        return result

    def submit(self, fn: Callable[[LedgerTx], T]) -> Future[T]:
        return self._executor.submit(self._run_write, fn)

    def write(self, fn: Callable[[LedgerTx], T]) -> T:
        """Blocking write, for threads other than the event loop's."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[LedgerTx], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn))

    # -- announcements ----------------------------------------------------
    def subscribe(self, topic: str, callback: Callable[[], None]) -> None:
        """Call `callback` (on the writer thread, so it must be quick) after every commit that did `topic`."""
        if topic not in self._subscribers:
            raise ValueError(f"unknown ledger topic {topic!r}; known: {', '.join(TOPICS)}")
        self._subscribers[topic].append(callback)

    def _announce(self, topics: Iterable[str]) -> None:
        for topic in topics:
            for callback in self._subscribers[topic]:
                try:
                    callback()
                except Exception:  # a listener's bug must not fail a committed write
                    log.exception("ledger %s listener failed", topic)

    # -- reading ----------------------------------------------------------
    def view(self) -> LedgerView:
        """Reads on this thread's own connection."""
        return LedgerView(self._readers.get())

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._readers.close()
        self._conn.close()
