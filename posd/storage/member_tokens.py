"""Member tokens this lane accepted: a token is accepted once, also across a restart.

A row is kept while the token could still be valid (``valid_until``, the
token's expiry plus the clock-skew allowance); after that the token is refused
as expired anyway, so old rows are forgotten a few at a time by later uses.

Wallet passes also keep, per member, when the time step of the last code
accepted here began (``wallet_steps``): a code is accepted only when its step
is later (RFC 6238 section 5.2), so a code shown earlier and scanned after a
newer one is a replay too. One row per member with a wallet pass, kept.
"""

from __future__ import annotations

import sqlite3

FORGET_BATCH = 100  # rows dropped per new use: bounded work inside a scan's write


def used(conn: sqlite3.Connection, token_id: str) -> bool:
    return conn.execute("SELECT 1 FROM member_token_uses WHERE token_id = ?", (token_id,)).fetchone() is not None


def record(conn: sqlite3.Connection, *, token_id: str, scheme: str, member_id: str, valid_until: str,
           used_at: str, seq: int | None) -> bool:
    """Record a use; False when the token was used here before (a replay)."""
    conn.execute(
        "DELETE FROM member_token_uses WHERE token_id IN (SELECT token_id FROM member_token_uses "
        "WHERE valid_until < ? ORDER BY valid_until LIMIT ?)", (used_at, FORGET_BATCH))
    inserted = conn.execute(
        "INSERT OR IGNORE INTO member_token_uses (token_id, scheme, member_id, valid_until, used_at, seq) "
        "VALUES (?, ?, ?, ?, ?, ?)", (token_id, scheme, member_id, valid_until, used_at, seq)).rowcount
    return inserted == 1


def last_wallet_step(conn: sqlite3.Connection, member_id: str) -> int | None:
    """When the time step of the member's last wallet code accepted here began (unix seconds)."""
    row = conn.execute("SELECT step_start FROM wallet_steps WHERE member_id = ?", (member_id,)).fetchone()
    return None if row is None else row[0]


def record_wallet_step(conn: sqlite3.Connection, member_id: str, step_start: int, used_at: str) -> None:
    conn.execute(
        "INSERT INTO wallet_steps (member_id, step_start, used_at) VALUES (?, ?, ?) "
        "ON CONFLICT (member_id) DO UPDATE SET step_start = excluded.step_start, used_at = excluded.used_at",
        (member_id, step_start, used_at))
