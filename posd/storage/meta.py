"""ledger.db's small tables: `meta` (who this ledger is, boot counter, sync identity, the printers that
answer their status) and `programs`
(every program version an accrual used, so a return re-evaluates under the sale's own rules)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def read(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def write(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def printer_answered_key(address: str) -> str:
    """The key under which ledger.db keeps when the printer at ``address`` (DeviceURL.address) first
    answered its status (DLE EOT): its silence after a restart is then a printer not listening."""
    return f"printer_answered {address}"


def store_program(conn: sqlite3.Connection, version: str, body: dict[str, Any], at: str) -> None:
    """Keep a program version's document; the first use's time stays."""
    conn.execute("INSERT OR IGNORE INTO programs (version, body, first_used_at) VALUES (?, ?, ?)",
                 (version, json.dumps(body, sort_keys=True), at))


def program_body(conn: sqlite3.Connection, version: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM programs WHERE version = ?", (version,)).fetchone()
    return json.loads(row[0]) if row else None
