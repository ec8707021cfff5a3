"""Tests look into ledger.db with SQL of their own, on their own connections.

posd itself runs SQL only in posd/storage; a test reads the real file (a
read-only connection per call) or arranges a state the lane cannot reach by
itself (a connection that commits at once, while the lane's writer is idle).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from posd.storage.db import connect


def reader(ledger: Any) -> sqlite3.Connection:
    """A read-only connection to the ledger's file, as the lane's readers have."""
    return connect(ledger.path, durable=True, readonly=True)


def execute(ledger: Any, sql: str, params: tuple | list = (), *, many: bool = False) -> int:
    """Run one statement in its own transaction; the number of rows it changed."""
    with closing(connect(ledger.path, durable=True)) as conn:
        cur = conn.executemany(sql, params) if many else conn.execute(sql, params)
        return cur.rowcount
