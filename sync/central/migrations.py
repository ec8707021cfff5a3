"""The SQLite store's schema and its registered migrations.

Every open creates what the schema lacks (every statement is ``IF NOT
EXISTS``); then each registered step that this db has not had runs once, in
its own write transaction, and is recorded under its name in ``meta`` (the
first, ``lots_v1``, was recorded under that name before the registry).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from posd.sync.central.lots import reset_lots

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS.append((name, fn))
        return fn
    return register


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Create what the schema lacks, then apply the steps this db has not had, in order;
    the names of the steps applied."""
    conn.executescript(SCHEMA)
    applied = []
    for name, step in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM meta WHERE key = ?", (name,)).fetchone() is None:
                step(conn)
                conn.execute("INSERT INTO meta VALUES (?, '1')", (name,))
                applied.append(name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied


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
CREATE INDEX IF NOT EXISTS events_by_event_id ON events (store_id, lane_id, event_id);
CREATE INDEX IF NOT EXISTS events_returns ON events (store_id, member_id) WHERE type = 'return';
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
CREATE TABLE IF NOT EXISTS lots (
    lot_id INTEGER PRIMARY KEY, member_id TEXT NOT NULL, currency TEXT NOT NULL,
    transaction_id TEXT, points INTEGER NOT NULL, remaining INTEGER NOT NULL,
    available_at TEXT, expires_at TEXT, expires_ts REAL,
    swept INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL);
DROP INDEX IF EXISTS lots_by_member;
CREATE INDEX IF NOT EXISTS lots_live ON lots (member_id, currency, expires_ts, lot_id) WHERE remaining > 0;
CREATE INDEX IF NOT EXISTS lots_of_member ON lots (member_id);
CREATE INDEX IF NOT EXISTS lots_by_transaction ON lots (member_id, transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS lots_to_sweep ON lots (expires_ts) WHERE swept = 0 AND expires_ts IS NOT NULL;
CREATE TABLE IF NOT EXISTS lot_debts (
    member_id TEXT NOT NULL, currency TEXT NOT NULL, points INTEGER NOT NULL,
    PRIMARY KEY (member_id, currency)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS central_outbox (
    position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, aggregatetype TEXT NOT NULL,
    aggregateid TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS central_faults (
    id INTEGER PRIMARY KEY, route TEXT NOT NULL, fault TEXT NOT NULL, remaining INTEGER NOT NULL,
    delay REAL NOT NULL);
CREATE INDEX IF NOT EXISTS central_faults_by_route ON central_faults (route, id);
CREATE TABLE IF NOT EXISTS member_aliases (
    alias TEXT PRIMARY KEY, member_id TEXT NOT NULL, source TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS member_aliases_member ON member_aliases (member_id);
CREATE TABLE IF NOT EXISTS member_token_keys (
    kid TEXT PRIMARY KEY, private_key BLOB NOT NULL, public_key TEXT NOT NULL,
    created_at REAL NOT NULL, retired_at REAL);
CREATE TABLE IF NOT EXISTS token_uses (
    token_id TEXT PRIMARY KEY, lane_key TEXT NOT NULL, source TEXT NOT NULL, member_id TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS birthday_awards (
    member_id TEXT NOT NULL, year INTEGER NOT NULL, lane_key TEXT NOT NULL, transaction_id TEXT NOT NULL,
    source TEXT NOT NULL, PRIMARY KEY (member_id, year)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS voucher_uses (
    code TEXT NOT NULL, member_key TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (code, member_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, lane_id TEXT NOT NULL,
    authorisation_id TEXT NOT NULL, request_hash TEXT NOT NULL, kind TEXT NOT NULL, member_id TEXT,
    points TEXT NOT NULL, reward_id TEXT, voucher_code TEXT, voucher_key TEXT,
    occurred_at TEXT NOT NULL, created_ts REAL NOT NULL, expires_ts REAL, state TEXT NOT NULL, release_from REAL,
    UNIQUE (store_id, lane_id, authorisation_id));
CREATE INDEX IF NOT EXISTS reservations_member ON reservations (member_id, state);
CREATE INDEX IF NOT EXISTS reservations_due ON reservations (expires_ts) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS vouchers (
    code TEXT PRIMARY KEY, member_id TEXT, body TEXT NOT NULL, expires_ts REAL,
    registered_by TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vouchers_member ON vouchers (member_id);
"""


@migration("lots_v1")
def members_to_lots(conn: sqlite3.Connection) -> None:
    """A db from before lots: each member's balance becomes one never-expiring
    lot (or a debt when negative). Central kept no expiry then, so there is
    none to recover."""
    for row in conn.execute("SELECT member_id, balances FROM members").fetchall():
        if not conn.execute("SELECT 1 FROM lots WHERE member_id = ? LIMIT 1", (row[0],)).fetchone():
            reset_lots(conn, row[0], json.loads(row[1]), "migrated")


@migration("members_totp_secret_v1")
def members_totp_secret(conn: sqlite3.Connection) -> None:
    """Wallet passes: a member's TOTP secret travels in the member feed (hex, or NULL)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(members)")}
    if "totp_secret" not in columns:
        conn.execute("ALTER TABLE members ADD COLUMN totp_secret TEXT")


@migration("voucher_holds_v1")
def voucher_holds(conn: sqlite3.Connection) -> None:
    """A voucher use is held by an open reservation (state 'held', freed when it expires) until the
    lane's event confirms it ('used'); every use recorded before reservations is 'used'."""
    conn.execute("ALTER TABLE voucher_uses ADD COLUMN state TEXT NOT NULL DEFAULT 'used'")
    conn.execute("ALTER TABLE voucher_uses ADD COLUMN reservation_id TEXT")
    conn.execute("ALTER TABLE voucher_uses ADD COLUMN expires_ts REAL")
    conn.execute("CREATE INDEX IF NOT EXISTS voucher_holds_due ON voucher_uses (expires_ts) WHERE state = 'held'")


@migration("reservations_release_from_v1")
def reservations_release_from(conn: sqlite3.Connection) -> None:
    """A reservation keeps the earliest signed timestamp (the lane's clock) a release of it may carry:
    one signed before gave back an earlier reservation of the same id, and leaves this one open."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(reservations)")}
    if "release_from" not in columns:
        conn.execute("ALTER TABLE reservations ADD COLUMN release_from REAL")
