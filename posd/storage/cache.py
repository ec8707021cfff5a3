"""cache.db: members and the program as central last published them.

Rebuildable by design: a corrupt cache.db is moved aside and a fresh one is
pulled from central, while ledger.db (the precious file) is never touched.
Lookups run on a per-thread read-only connection, so a scanner thread can
identify a member without a hop through the event loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posd.core.program import parse_program
from posd.storage.db import ThreadReaders, connect, quick_check, utcnow_iso
from posd.storage.schema import cache_migrations

log = logging.getLogger("posd.cache")

APPLY_CHUNK = 2000  # rows per write transaction: short enough that a refresh never holds the file long
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_UPSERT_MEMBER = (
    "INSERT INTO members VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (member_id) DO UPDATE SET "
    "display_name=excluded.display_name, locale=excluded.locale, tier=excluded.tier, "
    "qualifying=excluded.qualifying, balances=excluded.balances, "
    "applied_seq=excluded.applied_seq, status=excluded.status, "
    "birth_date=excluded.birth_date, offers=excluded.offers, updated_at=excluded.updated_at"
)


@dataclass(frozen=True)
class CachedMember:
    member_id: str
    display_name: str
    locale: str | None
    tier: str | None
    qualifying: int
    balances: dict[str, int]  # confirmed by central
    applied_seq: int  # central has applied this lane's events up to this seq for the member
    status: str
    birth_date: str | None
    offers: list[dict[str, Any]] = field(default_factory=list)
    updated_at: str = ""


class LaneChanged(Exception):
    """cache.db now follows another lane id than this writer's: its pages would carry the wrong watermarks."""


class Cache:
    def __init__(self, path: Path, lane_id: str, *, checked: bool = False):
        """``checked``: the file was already checked and migrated by the daemon, which owns it; this
        is a second writer for the member feed (posd.member_pull), so it opens it as it is."""
        self.path = path
        self.lane_id = lane_id
        self._readers = ThreadReaders(path, durable=False)
        self._lock = threading.Lock()
        self.rebuilt_from: Path | None = None
        self._conn = connect(path, durable=False) if checked else self._open()
        if not checked:
            recorded = self._recorded_lane()
            if recorded is None:  # a new file, or one from before lanes were recorded: it is this lane's
                with self._lock:
                    self._set_state(self._conn, "lane_id", lane_id)
            elif recorded != lane_id:
                self.use_lane(lane_id)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = connect(self.path, durable=False)
            problem = quick_check(conn)
            if problem is None:
                cache_migrations.apply(conn)
                return conn
            conn.close()
            reason = problem
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        # Rebuildable: move the bad file aside (kept for diagnosis) and start empty.
        aside = self.path.with_name(f"{self.path.name}.corrupt-{utcnow_iso().replace(':', '')}")
        log.warning("cache.db unusable (%s); moved to %s and rebuilding from central", reason, aside.name)
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{aside}{suffix}")
        self.rebuilt_from = aside
        conn = connect(self.path, durable=False)
        cache_migrations.apply(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        return self._readers.get()

    def close(self) -> None:
        self._readers.close()
        with self._lock:
            self._conn.close()

    # -- lookups (any thread) --------------------------------------------
    def find_member(self, identifier: str) -> CachedMember | None:
        conn = self.reader()
        row = conn.execute(
            "SELECT m.* FROM member_identifiers i JOIN members m ON m.member_id = i.member_id "
            "WHERE i.identifier = ?",
            (identifier,),
        ).fetchone()
        if row is None:
            row = conn.execute("SELECT * FROM members WHERE member_id = ?", (identifier,)).fetchone()
        return _member(row) if row else None

    def member_by_id(self, member_id: str) -> CachedMember | None:
        """By central's member_id only (never by a card identifier that might equal it)."""
        row = self.reader().execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
        return _member(row) if row else None

    def member_count(self) -> int:
        return self.reader().execute("SELECT COUNT(*) FROM members").fetchone()[0]

    def program_row(self) -> sqlite3.Row | None:
        return self.reader().execute("SELECT * FROM program WHERE id = 1").fetchone()

    def state(self, key: str) -> str | None:
        row = self.reader().execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- CachePort (called by the sync puller thread) --------------------
    def member_cursor(self) -> str | None:
        return self.state("member_cursor")

    def program_version(self) -> str | None:
        row = self.reader().execute("SELECT version FROM program WHERE id = 1").fetchone()
        return row[0] if row else None

    def program_etag(self) -> str | None:
        """Just the etag: asked on every scan and sale, so the program body is not read."""
        row = self.reader().execute("SELECT etag FROM program WHERE id = 1").fetchone()
        return row[0] if row else None

    def apply_member_changes(self, members: list[dict[str, Any]], next_cursor: str) -> None:
        """Upsert members; the cursor moves with the last chunk.

        A snapshot of a million members arrives as many pages; each page (and
        any longer list, cut in APPLY_CHUNK rows) is its own short write
        transaction. Lookups read on their own WAL connections, so they never
        wait for a refresh; the GIL is handed back between chunks so a scanner
        thread is not held behind a long Python loop. A crash mid-list leaves
        the old cursor, and the upserts are safe to repeat.
        """
        now = utcnow_iso()
        if not members:
            self._write_chunk([], [], [], next_cursor, now)
            return
        for start in range(0, len(members), APPLY_CHUNK):
            chunk = members[start : start + APPLY_CHUNK]
            rows, idents, ids = self._rows(chunk, now)
            last = start + APPLY_CHUNK >= len(members)
            self._write_chunk(rows, idents, ids, next_cursor if last else None, now)
            if not last:
                time.sleep(0)  # let a waiting lookup thread take the GIL

    def _rows(self, members: list[dict[str, Any]], now: str) -> tuple[list[tuple], list[tuple], list[tuple]]:
        rows, idents, ids = [], [], []
        lane = self.lane_id
        for m in members:
            mid = str(m["member_id"])
            ids.append((mid,))
            status = m.get("status") or "active"
            applied = (m.get("applied_seq") or {}).get(lane, 0)
            offers = m.get("offers")
            rows.append((
                mid, m.get("display_name") or mid, m.get("locale"), m.get("tier"),
                int(m.get("qualifying") or 0), _encode(m.get("balances") or {}), int(applied),
                status, m.get("birth_date"), _encode(offers) if offers else "[]", now,
            ))
            if status != "deleted":
                idents.extend((str(i), mid) for i in m.get("identifiers") or ())
        return rows, idents, ids

    def _write_chunk(self, rows: list[tuple], idents: list[tuple], ids: list[tuple],
                     cursor: str | None, now: str) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._recorded_lane() != self.lane_id:
                    raise LaneChanged(f"cache.db follows lane {self._recorded_lane()}, this writer {self.lane_id}")
                conn.executemany("DELETE FROM member_identifiers WHERE member_id = ?", ids)
                conn.executemany(_UPSERT_MEMBER, rows)
                conn.executemany("INSERT OR REPLACE INTO member_identifiers VALUES (?, ?)", idents)
                if cursor is not None:
                    self._set_state(conn, "member_cursor", cursor)
                    self._set_state(conn, "members_synced_at", now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def use_lane(self, lane_id: str) -> None:
        """Sync as another lane id from now on (the ledger moved to a new identity).

        Watermarks of the old id say nothing about the new one, and central
        has applied none of the new id's events yet, so 0 is right until the
        full re-pull this forces brings central's own.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("UPDATE members SET applied_seq = 0")
                conn.execute("DELETE FROM sync_state WHERE key = 'member_cursor'")
                self._set_state(conn, "lane_id", lane_id)  # a member pull still writing for the old id stops
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.lane_id = lane_id

    def store_program(self, program: dict[str, Any], etag: str) -> None:
        parse_program(program)  # a program we cannot evaluate never replaces the one in force
        with self._lock:
            self._conn.execute(
                "INSERT INTO program (id, version, etag, body, fetched_at) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET version=excluded.version, etag=excluded.etag, "
                "body=excluded.body, fetched_at=excluded.fetched_at",
                (str(program.get("version", "")), etag, json.dumps(program), utcnow_iso()),
            )

    def _recorded_lane(self) -> str | None:
        row = self._conn.execute("SELECT value FROM sync_state WHERE key = 'lane_id'").fetchone()
        return row[0] if row else None

    @staticmethod
    def _set_state(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _member(row: sqlite3.Row) -> CachedMember:
    return CachedMember(
        member_id=row["member_id"],
        display_name=row["display_name"],
        locale=row["locale"],
        tier=row["tier"],
        qualifying=row["qualifying"],
        balances={k: int(v) for k, v in json.loads(row["balances"]).items()},
        applied_seq=row["applied_seq"],
        status=row["status"],
        birth_date=row["birth_date"],
        offers=json.loads(row["offers"]),
        updated_at=row["updated_at"],
    )
