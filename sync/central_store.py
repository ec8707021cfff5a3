"""SQLite state of the reference central: stores, lanes, events, members, program.

One connection behind a lock: the reference central is for development,
demos and tests, so simple and obviously correct beats concurrent. A batch is
applied in ONE transaction, which is what makes "applied then the answer was
lost" safe: the retry finds every seq already stored and answers duplicate.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from posd.sync.protocol import program_etag, result_wire, secret_from_text, validate_event

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stores (store_id TEXT PRIMARY KEY, secret BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lanes (
    store_id TEXT NOT NULL, lane_id TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (store_id, lane_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    store_id TEXT NOT NULL, lane_id TEXT NOT NULL, seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, status TEXT NOT NULL, code TEXT, type TEXT, member_id TEXT,
    body TEXT NOT NULL, batch_id TEXT NOT NULL, received_at TEXT NOT NULL,
    PRIMARY KEY (store_id, lane_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, locale TEXT, tier TEXT,
    qualifying INTEGER NOT NULL, identifiers TEXT NOT NULL, balances TEXT NOT NULL,
    status TEXT NOT NULL, birth_date TEXT, offers TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS members_by_version ON members (version);
CREATE TABLE IF NOT EXISTS member_lanes (
    member_id TEXT NOT NULL, store_id TEXT NOT NULL, lane_id TEXT NOT NULL,
    applied_seq INTEGER NOT NULL,
    PRIMARY KEY (member_id, store_id, lane_id)) WITHOUT ROWID;
"""

MEMBER_STATUSES = ("active", "blocked", "deleted")
_JSON_COLUMNS = ("identifiers", "balances", "offers")


class CentralStore:
    """Central's database. Every method is safe to call from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acked batch must survive a crash
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._conn.executescript(SCHEMA)  # idempotent: every statement is IF NOT EXISTS
        self._program, self._etag = self._load_program()

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

    # --- seed, stores, program -------------------------------------------------------

    def seed(self, seed: dict[str, Any]) -> None:
        """Load a seed file's content. Safe to repeat: existing members keep their
        balances; store secrets and the program are replaced (they are config)."""
        stores, members = seed.get("stores", {}), seed.get("members", [])
        if not isinstance(stores, dict) or not isinstance(members, list):
            raise ValueError("seed needs 'stores' as an object and 'members' as a list")
        secrets = {}
        for store_id, entry in stores.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
                raise ValueError(f"seed store {store_id!r} needs a 'secret' string")
            secrets[store_id] = secret_from_text(entry["secret"])
        program = seed.get("program")
        if program is not None and not isinstance(program, dict):
            raise ValueError("seed 'program' must be an object")
        with self._write() as conn:
            for store_id, secret in secrets.items():
                conn.execute(
                    "INSERT INTO stores VALUES (?, ?) ON CONFLICT (store_id) DO UPDATE SET secret = excluded.secret",
                    (store_id, secret),
                )
            if program is not None:
                self._save_program(conn, program)
            for member in members:
                row = _member_row(member, self._program or {})
                if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (row["member_id"],)).fetchone():
                    continue
                self._write_member(conn, row)

    def store_secret(self, store_id: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT secret FROM stores WHERE store_id = ?", (store_id,)).fetchone()
        return None if row is None else bytes(row["secret"])

    def program(self) -> tuple[dict[str, Any] | None, str | None]:
        """(program, etag); (None, None) before a program is seeded."""
        with self._lock:
            return self._program, self._etag

    def set_program(self, program: dict[str, Any]) -> str:
        with self._write() as conn:
            self._save_program(conn, program)
        return self._etag or ""

    def _save_program(self, conn: sqlite3.Connection, program: dict[str, Any]) -> None:
        text = json.dumps(program, sort_keys=True, ensure_ascii=False)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('program', ?)", (text,))
        self._program, self._etag = json.loads(text), program_etag(program)

    def _load_program(self) -> tuple[dict[str, Any] | None, str | None]:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'program'").fetchone()
        if row is None:
            return None, None
        program = json.loads(row["value"])
        return program, program_etag(program)

    # --- members -------------------------------------------------------------------

    def member(self, member_id: str, store_id: str | None = None) -> dict[str, Any] | None:
        """A member in wire shape. applied_seq lists the lanes of ``store_id``, or
        every lane as "store/lane" when no store is given."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
            if row is None:
                return None
            marks = self._applied_seqs([member_id], store_id)
        return _member_wire(row, marks.get(member_id, {}))

    def upsert_member(self, member: dict[str, Any]) -> None:
        """Create or replace a member's profile (not its lane watermarks); bumps its version."""
        with self._write() as conn:
            self._write_member(conn, _member_row(member, self._program or {}))

    def member_changes(self, store_id: str, cursor: int, limit: int) -> tuple[list[dict[str, Any]], str, bool]:
        """Members with version > cursor, oldest change first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM members WHERE version > ? ORDER BY version LIMIT ?", (cursor, limit + 1)
            ).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            marks = self._applied_seqs([r["member_id"] for r in rows], store_id)
        members = [_member_wire(r, marks.get(r["member_id"], {})) for r in rows]
        next_cursor = str(rows[-1]["version"]) if rows else str(cursor)
        return members, next_cursor, has_more

    def _applied_seqs(self, member_ids: list[str], store_id: str | None) -> dict[str, dict[str, int]]:
        marks: dict[str, dict[str, int]] = {}
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start : start + 500]
            marks_sql = ",".join("?" * len(chunk))
            where, args = f"member_id IN ({marks_sql})", list(chunk)
            if store_id is not None:
                where, args = where + " AND store_id = ?", args + [store_id]
            for r in self._conn.execute(f"SELECT * FROM member_lanes WHERE {where}", args):
                key = r["lane_id"] if store_id is not None else f"{r['store_id']}/{r['lane_id']}"
                marks.setdefault(r["member_id"], {})[key] = r["applied_seq"]
        return marks

    def _write_member(self, conn: sqlite3.Connection, row: dict[str, Any]) -> None:
        version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM members").fetchone()[0]
        values = dict(row, version=version)
        for column in _JSON_COLUMNS:
            values[column] = json.dumps(values[column], ensure_ascii=False)
        columns = ", ".join(values)
        conn.execute(
            f"INSERT OR REPLACE INTO members ({columns}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )

    # --- lanes and events ------------------------------------------------------------

    def last_seq(self, store_id: str, lane_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?", (store_id, lane_id)
            ).fetchone()
        return 0 if row is None else row["last_seq"]

    def lane_head(self, store_id: str, lane_id: str) -> tuple[int, str | None]:
        """(last_seq, event_id at last_seq); (0, None) for a lane central has never heard from."""
        with self._lock:
            row = self._conn.execute(
                "SELECT l.last_seq, e.event_id FROM lanes l LEFT JOIN events e ON e.store_id = l.store_id "
                "AND e.lane_id = l.lane_id AND e.seq = l.last_seq WHERE l.store_id = ? AND l.lane_id = ?",
                (store_id, lane_id),
            ).fetchone()
        return (0, None) if row is None or row["last_seq"] == 0 else (row["last_seq"], row["event_id"])

    def events(self, store_id: str, lane_id: str) -> list[dict[str, Any]]:
        """Every seq central has consumed for a lane, with its outcome, in seq order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM events WHERE store_id = ? AND lane_id = ? ORDER BY seq", (store_id, lane_id)
            ).fetchall()
        listed = []
        for r in rows:
            body = json.loads(r["body"])
            listed.append({
                "seq": r["seq"],
                "event_id": r["event_id"],
                "status": r["status"],
                "code": r["code"],
                "type": r["type"],
                "member_id": r["member_id"],
                "transaction_id": body.get("transaction_id"),
                "batch_id": r["batch_id"],
                "received_at": r["received_at"],
                "event": body,
            })
        return listed

    def apply_batch(
        self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]], received_at: str
    ) -> list[dict[str, Any]]:
        """Apply a decoded batch in one transaction; the per-event answers in wire shape."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?", (store_id, lane_id)
            ).fetchone()
            last = 0 if row is None else row["last_seq"]
            work = _BatchWork(conn, self._program or {})
            results = []
            for event in events:
                seq, event_id = event["seq"], event["event_id"]
                if seq <= last:
                    results.append(self._answer_again(conn, store_id, lane_id, seq, event_id))
                    continue
                if seq > last + 1:
                    # Not consumed: the lane must first deliver the seqs in between.
                    results.append(result_wire(seq, event_id, "rejected", "seq_gap"))
                    continue
                code = validate_event(event) or work.apply(event, seq)
                status = "rejected" if code else "accepted"
                conn.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (store_id, lane_id, seq, event_id, status, code, _str_or_none(event.get("type")),
                     _str_or_none(event.get("member_id")), json.dumps(event, ensure_ascii=False),
                     batch_id, received_at),
                )
                last = seq
                results.append(result_wire(seq, event_id, status, code))
            work.flush(store_id, lane_id, self._write_member)
            conn.execute(
                "INSERT INTO lanes VALUES (?, ?, ?) ON CONFLICT (store_id, lane_id) DO UPDATE SET last_seq = ?",
                (store_id, lane_id, last, last),
            )
        return results

    @staticmethod
    def _answer_again(conn: sqlite3.Connection, store_id: str, lane_id: str, seq: int, event_id: str) -> dict:
        """A seq central already consumed: same event -> same outcome, else a conflict."""
        stored = conn.execute(
            "SELECT event_id, status, code FROM events WHERE store_id = ? AND lane_id = ? AND seq = ?",
            (store_id, lane_id, seq),
        ).fetchone()
        if stored is None or stored["event_id"] != event_id:
            return result_wire(seq, event_id, "rejected", "seq_conflict")
        if stored["status"] == "accepted":
            return result_wire(seq, event_id, "duplicate")
        return result_wire(seq, event_id, "rejected", stored["code"])


class _BatchWork:
    """Members touched by one batch, changed in memory and written once at the end."""

    def __init__(self, conn: sqlite3.Connection, program: dict[str, Any]) -> None:
        self.conn = conn
        self.program = program
        self.members: dict[str, dict[str, Any]] = {}
        self.marks: dict[str, int] = {}  # member_id -> highest seq of this lane applied

    def apply(self, event: dict[str, Any], seq: int) -> str | None:
        """Apply one valid event; a rejection code when central's own facts forbid it."""
        member_id = event["member_id"]
        member = self._load(member_id)
        if member is None:
            if event["type"] != "member_enrolled":
                return "unknown_member"
            member = _member_row({"member_id": member_id, **_enrolment_profile(event)}, self.program)
            self.members[member_id] = member
        if member["status"] == "deleted":
            return "member_deleted"
        tier_currency = self.program.get("tier_currency")
        for currency, delta in event["points"].items():
            member["balances"][currency] = member["balances"].get(currency, 0) + delta
            if currency == tier_currency and event["type"] in ("accrual", "return"):
                member["qualifying"] = max(0, member["qualifying"] + delta)
        member["tier"] = _upgraded_tier(member["tier"], member["qualifying"], self.program)
        self.marks[member_id] = seq
        return None

    def _load(self, member_id: str) -> dict[str, Any] | None:
        if member_id not in self.members:
            row = self.conn.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
            if row is None:
                return None
            member = {k: row[k] for k in row.keys() if k != "version"}
            for column in _JSON_COLUMNS:
                member[column] = json.loads(member[column])
            self.members[member_id] = member
        return self.members[member_id]

    def flush(self, store_id: str, lane_id: str, write_member: Any) -> None:
        for member_id, seq in self.marks.items():
            write_member(self.conn, self.members[member_id])
            self.conn.execute(
                "INSERT INTO member_lanes VALUES (?, ?, ?, ?) "
                "ON CONFLICT (member_id, store_id, lane_id) DO UPDATE SET applied_seq = excluded.applied_seq",
                (member_id, store_id, lane_id, seq),
            )


def _member_row(member: Any, program: dict[str, Any]) -> dict[str, Any]:
    """A member as stored, defaults filled in, or ValueError naming the bad field."""
    if not isinstance(member, dict) or not isinstance(member.get("member_id"), str) or not member["member_id"]:
        raise ValueError("every member needs a 'member_id' string")
    qualifying = member.get("qualifying", 0)
    balances = member.get("balances", {})
    if not isinstance(qualifying, int) or not isinstance(balances, dict):
        raise ValueError(f"member {member['member_id']!r}: bad 'qualifying' or 'balances'")
    if any(not isinstance(v, int) for v in balances.values()):
        raise ValueError(f"member {member['member_id']!r}: balances must be integers")
    status = member.get("status", "active")
    if status not in MEMBER_STATUSES:
        raise ValueError(f"member {member['member_id']!r}: status must be one of {MEMBER_STATUSES}")
    return {
        "member_id": member["member_id"],
        "display_name": str(member.get("display_name", "")),
        "locale": member.get("locale"),
        "tier": member.get("tier") or _upgraded_tier(None, qualifying, program),
        "qualifying": qualifying,
        "identifiers": [str(i) for i in member.get("identifiers", [])],
        "balances": dict(balances),
        "status": status,
        "birth_date": member.get("birth_date"),
        "offers": list(member.get("offers", [])),
    }


def _enrolment_profile(event: dict[str, Any]) -> dict[str, Any]:
    """The few profile fields a till may send with member_enrolled."""
    profile = {}
    for key in ("display_name", "locale", "identifiers", "birth_date"):
        if event.get(key) is not None:
            profile[key] = event[key]
    if not isinstance(profile.get("identifiers", []), list):
        profile.pop("identifiers")
    return profile


def _upgraded_tier(current: str | None, qualifying: int, program: dict[str, Any]) -> str | None:
    """The highest tier reached by ``qualifying``; never lower than ``current``
    (downgrades are a periodic platform job, not a side effect of a return)."""
    tiers = [t for t in program.get("tiers", []) if isinstance(t, dict) and isinstance(t.get("threshold"), int)]
    thresholds = {t.get("id"): t["threshold"] for t in tiers}
    best = current
    for tier in sorted(tiers, key=lambda t: t["threshold"]):
        if tier["threshold"] <= qualifying and tier["threshold"] > thresholds.get(best, -1):
            best = tier.get("id")
    return best


def _member_wire(row: sqlite3.Row, applied_seq: dict[str, int]) -> dict[str, Any]:
    return {
        "member_id": row["member_id"],
        "display_name": row["display_name"],
        "locale": row["locale"],
        "tier": row["tier"],
        "qualifying": row["qualifying"],
        "identifiers": json.loads(row["identifiers"]),
        "balances": json.loads(row["balances"]),
        "applied_seq": applied_seq,
        "status": row["status"],
        "birth_date": row["birth_date"],
        "offers": json.loads(row["offers"]),
    }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
