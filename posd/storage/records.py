"""Idempotency records: the first answer to every sale, return and redemption, kept forever.

A record is written in the same unit as what it answers for, so a retry finds
either nothing (the write never happened) or the answer (it did). Each record
also keeps what later requests need from it: a sale its basket, earn context
and points (returns re-run the rules on them), a redemption its points and
offline flag (offline caps), a sale with a birthday bonus its year's award.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from posd.core.rules import BasketLine, EarnContext
from posd.storage.db import compact_json, member_is

# The idempotency record of each kind of request: its table and the POS's id column.
IDEMPOTENT = {"transaction_id": "transactions", "return_id": "returns", "redemption_id": "redemptions"}
_EARLIER = {what: f"SELECT request_hash, response FROM {table} WHERE {what} = ?" for what, table in IDEMPOTENT.items()}


@dataclass(frozen=True)
class Earlier:
    """What was answered the first time a request id was used."""

    response: dict[str, Any]
    conflict: bool  # the id was used for a different request
    text: str = ""  # the answer as stored: a retry gets these very bytes


def encode_answer(response: dict[str, Any]) -> str:
    """An answer as stored and as sent, once: compact UTF-8 JSON, as the API's JSON responses are."""
    return compact_json(response)


def earlier(conn: sqlite3.Connection, what: str, key: str, request_hash: str) -> Earlier | None:
    row = conn.execute(_EARLIER[what], (key,)).fetchone()
    if row is None:
        return None
    return Earlier(json.loads(row["response"]), conflict=row["request_hash"] != request_hash, text=row["response"])


# -- sales ------------------------------------------------------------------------

@dataclass(frozen=True)
class SaleRecord:
    transaction_id: str
    member_id: str | None
    occurred_at: str
    currency: str
    total: int
    program_version: str | None
    seq: int | None
    points: dict[str, int]  # what the accrual computed, every currency of its program
    basket: tuple[BasketLine, ...]
    context: EarnContext | None
    member_erased: bool = False  # central deleted the member since: its returns reverse nothing


class AlreadyRecorded(Exception):
    """A request id already has its record: the unit that tried to record it again must roll back, and
    its caller answers with the record's first answer (a concurrent retry won the race)."""

    def __init__(self, what: str, key: str):
        super().__init__(f"{what} {key} is already recorded")
        self.what, self.key = what, key


def record_sale(conn: sqlite3.Connection, *, transaction_id: str, request_hash: str, member_id: str | None,
                occurred_at: str, currency: str, total: int, program_version: str, seq: int | None,
                points: dict[str, int], basket: tuple[BasketLine, ...], context: EarnContext,
                birthday_awarded: bool, response: dict[str, Any], recorded_at: str) -> str:
    """The sale's record; the answer's JSON as stored (the API sends the same bytes). AlreadyRecorded
    when the transaction id has its record already: the primary key tells, in the insert itself, so
    the sale's unit reads nothing before it writes."""
    answer = encode_answer(response)
    inserted = conn.execute(
        "INSERT INTO transactions (transaction_id, request_hash, member_id, occurred_at, currency, "
        "total_minor, program_version, seq, response, recorded_at, basket, earn_context, points) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (transaction_id) DO NOTHING",
        (transaction_id, request_hash, member_id, occurred_at, currency, total, program_version, seq,
         answer, recorded_at, compact_json([line.to_json() for line in basket]),
         compact_json({**context.to_json(), "birthday_awarded": birthday_awarded}), compact_json(points)),
    ).rowcount
    if not inserted:
        raise AlreadyRecorded("transaction_id", transaction_id)
    return answer


def sale(conn: sqlite3.Connection, transaction_id: str) -> SaleRecord | None:
    row = conn.execute(
        "SELECT transaction_id, member_id, occurred_at, currency, total_minor, program_version, seq, points, "
        "basket, earn_context FROM transactions WHERE transaction_id = ?", (transaction_id,)).fetchone()
    if row is None:
        return None
    context = json.loads(row["earn_context"] or "{}")
    return SaleRecord(
        transaction_id=row["transaction_id"], member_id=row["member_id"], occurred_at=row["occurred_at"],
        currency=row["currency"], total=row["total_minor"], program_version=row["program_version"],
        seq=row["seq"], points={c: int(p) for c, p in json.loads(row["points"]).items()},
        basket=tuple(BasketLine.from_json(d) for d in json.loads(row["basket"] or "[]")),
        context=EarnContext.from_json(context) if context.get("occurred_local") else None,
        member_erased=bool(context.get("member_erased")),
    )


def last_sale_at(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT recorded_at FROM transactions ORDER BY rowid DESC LIMIT 1").fetchone()
    return row[0] if row else None


def birthday_awarded(conn: sqlite3.Connection, member_id: str, year: int, aliases: tuple[str, ...] = ()) -> bool:
    """Has this member had this (store-local) year's birthday bonus on this lane, under its own id
    or a provisional one central mapped to it (``aliases``)?"""
    who, ids = member_is("member_id", member_id, aliases)
    return conn.execute(f"SELECT 1 FROM birthday_awards WHERE {who} AND year = ?", (ids, year)).fetchone() is not None


def award_birthday(conn: sqlite3.Connection, member_id: str, year: int, transaction_id: str) -> None:
    conn.execute("INSERT INTO birthday_awards (member_id, year, transaction_id) VALUES (?, ?, ?)",
                 (member_id, year, transaction_id))


# -- returns ----------------------------------------------------------------------

@dataclass(frozen=True)
class ReturnRecord:
    lines: tuple[tuple[str, str], ...] | None  # (sku, quantity as a decimal string)
    amount: int | None
    points: dict[str, int]  # what it reversed


def returns_of(conn: sqlite3.Connection, transaction_id: str) -> list[ReturnRecord]:
    rows = conn.execute("SELECT lines, amount, points FROM returns WHERE transaction_id = ?", (transaction_id,))
    return [ReturnRecord(lines=None if r["lines"] is None else tuple((s, q) for s, q in json.loads(r["lines"])),
                         amount=r["amount"], points=json.loads(r["points"])) for r in rows]


def record_return(conn: sqlite3.Connection, *, return_id: str, transaction_id: str, request_hash: str,
                  lines: tuple[tuple[str, str], ...] | None, amount: int | None, points: dict[str, int],
                  seq: int | None, response: dict[str, Any], recorded_at: str) -> None:
    conn.execute(
        "INSERT INTO returns (return_id, transaction_id, request_hash, lines, amount, points, seq, response, "
        "recorded_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (return_id, transaction_id, request_hash, json.dumps([list(x) for x in lines]) if lines is not None else None,
         amount, json.dumps(points), seq, compact_json(response), recorded_at),
    )


# -- redemptions ------------------------------------------------------------------

def record_redemption(conn: sqlite3.Connection, *, redemption_id: str, request_hash: str, member_id: str,
                      reward_id: str | None, currency: str, points: int, voucher_code: str, offline: bool,
                      seq: int, occurred_at: str, response: dict[str, Any], recorded_at: str,
                      authorisation_id: str | None = None, reservation_id: str | None = None) -> None:
    """``offline``: not authorised by central (its offline caps applied); ``reservation_id``: central's
    reservation when it was."""
    conn.execute(
        "INSERT INTO redemptions (redemption_id, request_hash, member_id, reward_id, currency, points, "
        "voucher_code, offline, seq, occurred_at, response, recorded_at, authorised, authorisation_id, "
        "reservation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (redemption_id, request_hash, member_id, reward_id, currency, points, voucher_code, int(offline), seq,
         occurred_at, compact_json(response), recorded_at, "offline" if offline else "online", authorisation_id,
         reservation_id))


def redemptions_since(conn: sqlite3.Connection, member_id: str, reward_id: str, since: str,
                      aliases: tuple[str, ...] = ()) -> int:
    """The member's redemptions of a reward since ``since``, its provisional ids' included."""
    who, ids = member_is("member_id", member_id, aliases)
    return conn.execute(
        f"SELECT COUNT(*) FROM redemptions WHERE {who} AND reward_id = ? AND occurred_at >= ?",
        (ids, reward_id, since)).fetchone()[0]


def voucher_issue_seq(conn: sqlite3.Connection, code: str) -> int | None:
    """The outbox seq of the redemption that issued voucher ``code`` here, if one did."""
    row = conn.execute("SELECT seq FROM redemptions WHERE voucher_code = ?", (code,)).fetchone()
    return None if row is None else row[0]


_UNSYNCED = ("SELECT COALESCE(SUM(r.points), 0) FROM redemptions r JOIN outbox o ON o.seq = r.seq "
             "WHERE o.state = 'pending' AND r.authorised = 'offline'")


def unsynced_redeemed(conn: sqlite3.Connection, member_id: str | None = None, aliases: tuple[str, ...] = ()) -> int:
    """Points redeemed here without central's authorisation that central has not received yet:
    one member's (its provisional ids' included), or the whole lane's (the offline caps).

    Every redemption central did not authorise counts, whatever the lane believed
    about the link when it was made; one central approved and reserved does not.
    """
    if member_id is None:
        return conn.execute(_UNSYNCED).fetchone()[0]
    who, ids = member_is("r.member_id", member_id, aliases)
    return conn.execute(f"{_UNSYNCED} AND {who}", (ids,)).fetchone()[0]


# transactions is append-only (its trigger refuses every UPDATE); erasure alone lifts it, inside its own
# unit, for the one change below, and puts it back before the unit commits.
TRANSACTIONS_NO_UPDATE = ("CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions "
                          "BEGIN SELECT RAISE(ABORT, 'transactions is append-only'); END")


def scrub_birth_dates(conn: sqlite3.Connection, member_ids: list[str]) -> int:
    """Erasure: the birth date each of these members' sales kept in its earn context (to evaluate its
    returns) leaves, and the context says the member was erased. Nothing else of a sale changes; an
    erased member's sales are returned for no points (their balance is gone), never refused."""
    if not member_ids:
        return 0
    conn.execute("DROP TRIGGER IF EXISTS transactions_no_update")
    try:
        return conn.execute(
            "UPDATE transactions SET earn_context = json_set(json_remove(coalesce(earn_context, '{}'), "
            "'$.birth_date'), '$.member_erased', json('true')) "
            "WHERE member_id IN (SELECT value FROM json_each(?))", (json.dumps(member_ids),)).rowcount
    finally:
        conn.execute(TRANSACTIONS_NO_UPDATE)
