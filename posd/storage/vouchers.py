"""Vouchers issued on this lane and every use of a voucher or coupon code.

One row per use, keyed (code, member): the primary key is what makes a
second use impossible, also when two requests race (campaign coupons key on
the member, so each member may use one once; everything else keys on '').
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from posd.storage.db import compact_json, member_is


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    voucher = dict(row)
    voucher["details"] = json.loads(voucher.get("details") or "{}")
    return voucher


def find(conn: sqlite3.Connection, code: str) -> dict[str, Any] | None:
    """A voucher issued here (``details``: its benefit and titles, decoded)."""
    return _row(conn.execute("SELECT * FROM vouchers WHERE code = ?", (code,)).fetchone())


def of_member(conn: sqlite3.Connection, member_id: str, aliases: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Vouchers issued here to a member (or to a provisional id central mapped to it) that are not
    void and have no use on this lane; ``seq``: the outbox seq of the redemption that issued each."""
    who, ids = member_is("v.member_id", member_id, aliases)
    rows = conn.execute(
        "SELECT v.*, (SELECT r.seq FROM redemptions r WHERE r.member_id = v.member_id AND r.voucher_code = v.code) "
        f"AS seq FROM vouchers v WHERE {who} AND v.voided_at IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM voucher_uses u WHERE u.code = v.code) ORDER BY v.issued_at", (ids,))
    return [_row(r) for r in rows]  # type: ignore[misc]


def issue(conn: sqlite3.Connection, *, code: str, member_id: str, reward_id: str | None, description: str,
          value_minor: int | None, percent: int | None, sku: str | None, issued_at: str, expires_at: str,
          details: dict[str, Any] | None = None) -> None:
    conn.execute(
        "INSERT INTO vouchers (code, source, member_id, reward_id, description, value_minor, percent, sku, "
        "issued_at, expires_at, details) VALUES (?, 'redemption', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (code, member_id, reward_id, description, value_minor, percent, sku, issued_at, expires_at,
         json.dumps(details or {}, ensure_ascii=False, sort_keys=True)))


def void_redeemed_by(conn: sqlite3.Connection, seqs: list[int], at: str) -> None:
    """Central refused the events ``seqs``: the points of each redemption among them are back, so its
    voucher must go. One statement for them all (the seqs as a JSON array: no limit on their number)."""
    conn.execute(
        "UPDATE vouchers SET voided_at = ? WHERE voided_at IS NULL AND code IN "
        "(SELECT json_extract(body, '$.voucher_code') FROM outbox "
        "WHERE seq IN (SELECT value FROM json_each(?)) AND type = 'redemption')",
        (at, json.dumps(seqs)))


@dataclass(frozen=True)
class Use:
    transaction_id: str
    used_at: str
    response: dict[str, Any]
    request_hash: str | None = None  # the POS's request that made the use (None: recorded before it was kept)


def _use(row: sqlite3.Row | None) -> Use | None:
    return None if row is None else Use(row["transaction_id"], row["used_at"], json.loads(row["response"]),
                                        row["request_hash"])


def use_of(conn: sqlite3.Connection, code: str, key: str, aliases: tuple[str, ...] = ()) -> Use | None:
    """The use of `code` under `key` (a member for campaign coupons, its provisional ids
    ``aliases`` included; else '')."""
    who, ids = member_is("member_id", key, aliases if key else ())
    return _use(conn.execute(f"SELECT transaction_id, used_at, response, request_hash FROM voucher_uses WHERE code = ? AND {who}",
                             (code, ids)).fetchone())


def use_in(conn: sqlite3.Connection, code: str, transaction_id: str) -> Use | None:
    """The use of `code` by this transaction, whoever's it was (a retry of the same use)."""
    return _use(conn.execute("SELECT transaction_id, used_at, response, request_hash FROM voucher_uses "
                             "WHERE code = ? AND transaction_id = ?", (code, transaction_id)).fetchone())


def record_use(conn: sqlite3.Connection, *, code: str, key: str, transaction_id: str, seq: int,
               response: dict[str, Any], used_at: str, holder: str | None = None, offline: bool = False,
               request_hash: str | None = None) -> None:
    """``holder``: the member the use is for; ``offline``: not authorised by central (its caps applied);
    ``request_hash``: the request's (a retry with another body is a conflict, not a replay)."""
    conn.execute("INSERT INTO voucher_uses (code, member_id, transaction_id, seq, response, used_at, holder, "
                 "authorised, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (code, key, transaction_id, seq, compact_json(response), used_at, holder,
                  "offline" if offline else "online", request_hash))


_OFFLINE_USES = ("SELECT COUNT(*) FROM voucher_uses u JOIN outbox o ON o.seq = u.seq "
                 "WHERE o.state = 'pending' AND u.authorised = 'offline'")


def unsynced_offline_uses(conn: sqlite3.Connection, member_id: str | None = None,
                          aliases: tuple[str, ...] = ()) -> int:
    """Voucher and coupon uses made without central's authorisation that central has not received
    yet: one member's (its provisional ids' included), or the whole lane's (the offline caps)."""
    if member_id is None:
        return conn.execute(_OFFLINE_USES).fetchone()[0]
    who, ids = member_is("u.holder", member_id, aliases)
    return conn.execute(f"{_OFFLINE_USES} AND {who}", (ids,)).fetchone()[0]
