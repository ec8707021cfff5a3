"""Ledger entries, lots and balances, derived from ledger.db and central's confirmed balance.

Entries are append-only (a trigger refuses updates and deletes): an earn, a
redemption's debit, a return's reversal.

A member's balance is never one stored number. It is central's confirmed
balance plus this lane's entries central has not applied yet (seq above the
member's watermark, quarantined events excluded). Each local credit is a lot
with its own available_at (pending days) and expires_at; each debit records
the lots it drew from, so expiry and returns are exact.

Spending order: central's confirmed points first, then local lots soonest-
expiring first. Central draws soonest-expiring first across all lots, but the
member feed carries no expiry dates for confirmed points, so the lane cannot.
Usually the same: confirmed points were mostly earned before anything still
local. Not when a local lot expires sooner (a sale dated in the past, an expiry
policy that changed) and expires before it syncs: the lane then shows less than
central until central's figure comes with the next pull (docs/sync-protocol.md,
"Lots and expiry").
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from posd.storage.db import iso, member_is


@dataclass(frozen=True)
class Entry:
    kind: str  # earn | redeem | reversal
    member_id: str
    currency: str
    points: int  # credits positive, debits negative
    transaction_id: str | None
    seq: int  # the outbox event that carries it to central
    occurred_at: str
    recorded_at: str
    program_version: str | None
    ref_id: str | None  # the request it answers: transaction, return or redemption id
    pending_until: str | None = None  # a lot: not spendable before
    expires_at: str | None = None  # a lot: gone after


_INSERT = ("INSERT INTO ledger_entries (kind, member_id, currency, points, transaction_id, seq, occurred_at, "
           "recorded_at, program_version, pending_until, expires_at, ref_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


def _row(e: Entry) -> tuple:
    return (e.kind, e.member_id, e.currency, e.points, e.transaction_id, e.seq, e.occurred_at, e.recorded_at,
            e.program_version, e.pending_until, e.expires_at, e.ref_id)


def add(conn: sqlite3.Connection, entries: list[Entry]) -> None:
    conn.executemany(_INSERT, [_row(e) for e in entries])


def add_one(conn: sqlite3.Connection, entry: Entry) -> int:
    """One entry; its id, for the lot allocations of a debit."""
    return conn.execute(_INSERT, _row(entry)).lastrowid


def earned_lots(conn: sqlite3.Connection, member_id: str, sale_seq: int, currency: str, above_seq: int) -> list[int]:
    """A sale's own earn entries (lots) of one currency that central has not applied yet. The sale's
    record names its member and its accrual's seq, which its earn entries carry: the member index
    (member_id, seq) finds them, so no index on transaction_id is written by every sale for returns."""
    if sale_seq <= above_seq:
        return []
    return [r[0] for r in conn.execute(
        "SELECT entry_id FROM ledger_entries WHERE member_id = ? AND seq = ? AND kind = 'earn' AND currency = ? "
        "ORDER BY entry_id", (member_id, sale_seq, currency))]


# Allocations drawn by debits central refused (quarantined) no longer hold their lots.
LIVE_ALLOCATIONS = (
    "(SELECT SUM(a.points) FROM lot_allocations a JOIN ledger_entries d ON d.entry_id = a.debit_entry_id "
    "JOIN outbox od ON od.seq = d.seq WHERE a.lot_entry_id = {lot} AND od.state != 'quarantined')"
)
_LIVE_E = LIVE_ALLOCATIONS.format(lot="e.entry_id")


@dataclass(frozen=True)
class LocalLot:
    entry_id: int
    points: int
    remaining: int
    available_at: str | None
    expires_at: str | None


def _local_lots(conn: sqlite3.Connection, member_id: str, currency: str, watermark: int,
                aliases: tuple[str, ...] = ()) -> list[LocalLot]:
    who, ids = member_is("e.member_id", member_id, aliases)
    rows = conn.execute(
        f"""
        SELECT e.entry_id, e.points, e.pending_until, e.expires_at,
               e.points - COALESCE({_LIVE_E}, 0) AS remaining
        FROM ledger_entries e JOIN outbox o ON o.seq = e.seq
        WHERE {who} AND e.currency = ? AND e.seq > ? AND e.points > 0
          AND o.state != 'quarantined'
        ORDER BY e.expires_at IS NULL, e.expires_at, e.entry_id
        """,
        (ids, currency, watermark),
    ).fetchall()
    return [LocalLot(r[0], r[1], r[4], r[2], r[3]) for r in rows]


def _pool_drawn(conn: sqlite3.Connection, member_id: str, currency: str, watermark: int,
                aliases: tuple[str, ...] = ()) -> int:
    """Confirmed points already drawn by local debits central has not applied yet."""
    who, ids = member_is("d.member_id", member_id, aliases)
    return conn.execute(
        f"""
        SELECT COALESCE(SUM(a.points), 0) FROM lot_allocations a
        JOIN ledger_entries d ON d.entry_id = a.debit_entry_id JOIN outbox o ON o.seq = d.seq
        WHERE a.lot_entry_id IS NULL AND {who} AND d.currency = ? AND d.seq > ?
          AND o.state != 'quarantined'
        """,
        (ids, currency, watermark),
    ).fetchone()[0]


@functools.lru_cache(maxsize=4)
def _balance_sql(who: str) -> str:
    """The balance query for one member condition (member_is: a member's own id, or with its aliases):
    its text made once, not on every sale."""
    return f"""
        SELECT currency, SUM(points),
               SUM(CASE WHEN expires_at IS NOT NULL AND expires_at <= ?3 THEN remaining ELSE 0 END),
               SUM(CASE WHEN pending_until IS NOT NULL AND pending_until > ?3
                         AND NOT (expires_at IS NOT NULL AND expires_at <= ?3) THEN remaining ELSE 0 END),
               SUM(kind = 'reversal')
        FROM (
            SELECT e.currency, e.points, e.pending_until, e.expires_at, e.kind,
                   CASE WHEN e.points > 0 THEN e.points - COALESCE({_LIVE_E}, 0) ELSE 0 END AS remaining
            FROM ledger_entries e JOIN outbox o ON o.seq = e.seq
            WHERE {who} AND e.seq > ?2 AND o.state != 'quarantined'
        ) GROUP BY currency
        """


def balance(conn: sqlite3.Connection, member_id: str, confirmed: dict[str, int], watermark: int,
            now: datetime, aliases: tuple[str, ...] = (), held: dict[str, int] | None = None
            ) -> dict[str, dict[str, int]]:
    """Per currency: confirmed, pending (local, unsynced), total, available, maturing, expired.

    One query (a second only while central holds points pending): this runs inside every sale's write
    transaction. ``aliases``: provisional ids central mapped to the member (their entries are the
    member's, under the same watermark).
    ``held``: what of ``confirmed`` central still holds pending at ``now`` (CachedMember.maturing_at):
    in the total, not available.
    ``pending`` is what the unsynced entries will change at central: a return of a synced sale whose
    lots had expired takes back nothing central still counts (_expired_taken_back).
    """
    stamp = iso(now)
    who, ids = member_is("e.member_id", member_id, aliases, "?1")
    # One pass over the member's unsynced entries: each credit (a lot) also says what is left of it
    # after the live allocations that drew from it, and that remainder counts as expired or maturing.
    rows = conn.execute(_balance_sql(who), (ids, watermark, stamp)).fetchall()
    pending: dict[str, int] = {}
    expired: dict[str, int] = {}
    maturing: dict[str, int] = {}
    returns = False
    for cur, net, gone, later, reversals in rows:
        pending[cur] = pending.get(cur, 0) + int(net or 0)
        expired[cur] = expired.get(cur, 0) + int(gone or 0)
        maturing[cur] = maturing.get(cur, 0) + int(later or 0)
        returns = returns or bool(reversals)
    back = _expired_taken_back(conn, member_id, watermark, aliases) if returns else {}
    for cur, points in _per_currency(back).items():  # taken back of expired lots: nothing central counts
        pending[cur] += points
    out = {}
    held = held or {}
    if any(p > 0 for p in held.values()):  # only while central holds some of the member's points pending
        back = _pending_taken_back(conn, member_id, watermark, stamp, aliases)
        held = {cur: pts - back.get(cur, 0) for cur, pts in held.items()}
    for cur in sorted(set(confirmed) | set(pending)):
        conf, pend, gone, later = confirmed.get(cur, 0), pending.get(cur, 0), expired.get(cur, 0), maturing.get(cur, 0)
        later += max(0, min(held.get(cur, 0), conf))  # central's pending lots: at most what it confirms
        if gone:  # some of it may repay a debt first, central's or one this lane's own debits leave
            gone = _expired_after_debt(conn, member_id, cur, watermark, stamp, conf, back, aliases)
        total = conf + pend - gone
        out[cur] = {"confirmed": conf, "pending": pend, "total": total,
                    "available": total - later, "maturing": later, "expired": gone}
    return out


def _expired_taken_back(conn: sqlite3.Connection, member_id: str, watermark: int,
                        aliases: tuple[str, ...] = ()) -> dict[int, tuple[int, str, int]]:
    """{reversal entry_id: (seq, currency, points)}: what this lane's unsynced returns take back of
    synced sales' lots that had expired when the return was rung (the lane's copy of their dates).
    Central takes a return from its sale's own lots first, expired or not (docs/sync-protocol.md,
    lots): those points left central's balance when they expired, so taking them back changes nothing
    there, while the lane's reversal drew them from central's confirmed pool (reverse_from: a synced
    sale has no local lots). Per sale, at most its expired points less what its synced returns took
    back before (they took the sale's soonest-expiring lots first).

    Decided by the return's own time, not the balance's: a lot that expires after its return was rung
    would otherwise raise the balance as time passes, while the lane's confirmed figure still counts
    the lot until the next pull. Left to central's figure, after the push and pull: a lot that expires
    between the return and its sync, and the part of an expired lot central spent before it expired
    (the feed carries no lot dates)."""
    who, ids = member_is("r.member_id", member_id, aliases, "?1")
    sale_of = member_is("s.member_id", member_id, aliases, "?1")[0]
    before = member_is("p.member_id", member_id, aliases, "?1")[0]
    rows = conn.execute(
        f"""
        SELECT r.entry_id, r.seq, r.currency, r.transaction_id,
               (SELECT COALESCE(SUM(a.points), 0) FROM lot_allocations a
                WHERE a.debit_entry_id = r.entry_id AND a.lot_entry_id IS NULL),
               (SELECT COALESCE(SUM(s.points), 0) FROM ledger_entries s JOIN outbox so ON so.seq = s.seq
                WHERE {sale_of} AND s.transaction_id = r.transaction_id AND s.kind = 'earn'
                  AND s.currency = r.currency AND s.seq <= ?2 AND so.state != 'quarantined'
                  AND s.expires_at IS NOT NULL AND s.expires_at <= r.occurred_at),
               (SELECT COALESCE(-SUM(p.points), 0) FROM ledger_entries p JOIN outbox po ON po.seq = p.seq
                WHERE {before} AND p.transaction_id = r.transaction_id AND p.kind = 'reversal'
                  AND p.currency = r.currency AND p.seq <= ?2 AND po.state != 'quarantined')
        FROM ledger_entries r JOIN outbox o ON o.seq = r.seq
        WHERE {who} AND r.kind = 'reversal' AND r.seq > ?2 AND o.state != 'quarantined'
        ORDER BY r.seq, r.entry_id
        """,
        (ids, watermark),
    ).fetchall()
    left: dict[tuple[str, str], int] = {}
    out: dict[int, tuple[int, str, int]] = {}
    for entry_id, seq, cur, tid, from_pool, expired, returned_before in rows:
        key = (tid, cur)
        left.setdefault(key, max(0, int(expired) - int(returned_before)))
        take = min(left[key], int(from_pool))
        if take > 0:
            left[key] -= take
            out[entry_id] = (seq, cur, take)
    return out


def _per_currency(taken: dict[int, tuple[int, str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _seq, cur, points in taken.values():
        out[cur] = out.get(cur, 0) + points
    return out


def _pending_taken_back(conn: sqlite3.Connection, member_id: str, watermark: int, stamp: str,
                        aliases: tuple[str, ...] = ()) -> dict[str, int]:
    """Per currency, what this lane's unsynced returns take back of sales central already has whose
    lots are still pending: central takes a return from its sale's own lots first (docs/sync-protocol.md,
    lots), so those points leave central's ``maturing`` with the return, not the spendable rest. The
    part of a reversal drawn from central's pool (its sale synced, not refused) whose sale earned pending
    points. Not capped sale by sale: should central have spent part of a sale's pending lot (a debit
    beyond every spendable point), the return's overflow comes off central's spendable points, and
    this holds back that much less until the next pull."""
    who, ids = member_is("r.member_id", member_id, aliases, "?1")
    sale_of = member_is("s.member_id", member_id, aliases, "?1")[0]
    rows = conn.execute(
        f"""
        SELECT r.currency, SUM(a.points) FROM ledger_entries r JOIN outbox o ON o.seq = r.seq
        JOIN lot_allocations a ON a.debit_entry_id = r.entry_id AND a.lot_entry_id IS NULL
        WHERE {who} AND r.kind = 'reversal' AND r.seq > ?2 AND o.state != 'quarantined'
          AND EXISTS (SELECT 1 FROM ledger_entries s JOIN outbox so ON so.seq = s.seq
                      WHERE {sale_of} AND s.seq <= ?2 AND s.kind = 'earn' AND so.state != 'quarantined'
                      AND s.transaction_id = r.transaction_id AND s.currency = r.currency
                      AND s.pending_until > ?3)
        GROUP BY r.currency
        """,
        (ids, watermark, stamp),
    ).fetchall()
    return {cur: int(points or 0) for cur, points in rows}


def _expired_after_debt(conn: sqlite3.Connection, member_id: str, currency: str, watermark: int, stamp: str,
                        confirmed: int, back: dict[int, tuple[int, str, int]],
                        aliases: tuple[str, ...] = ()) -> int:
    """Expired local points once debits are drawn and debts repaid as central will do it.

    What a debit drew from central's pool beyond what it holds (a return of points already spent;
    ``back``: what returns took back of expired synced lots, no draw at central) central takes from
    the member's other lots unexpired at the debit's time, spendable first, soonest-expiring first
    (the lane's earlier unsynced lots among them), and only the rest is a debt. Central repays a debt,
    its own (a negative confirmed balance) or that one, from each new credit before the credit
    becomes a lot that can expire (docs/sync-protocol.md, lots). Walked in the order central will
    apply the entries, from what the lane's allocations left in each lot; read only while some local
    lot has expired, so it may read entry by entry.
    """
    who, ids = member_is("e.member_id", member_id, aliases)
    rows = conn.execute(
        f"""
        SELECT e.entry_id, e.points, e.occurred_at, e.pending_until, e.expires_at,
               CASE WHEN e.points > 0 THEN e.points - COALESCE({_LIVE_E}, 0) ELSE 0 END,
               CASE WHEN e.points < 0 THEN (SELECT COALESCE(SUM(a.points), 0) FROM lot_allocations a
                                            WHERE a.debit_entry_id = e.entry_id AND a.lot_entry_id IS NULL)
                    ELSE 0 END
        FROM ledger_entries e JOIN outbox o ON o.seq = e.seq
        WHERE {who} AND e.currency = ? AND e.seq > ? AND o.state != 'quarantined'
        ORDER BY e.seq, e.entry_id
        """,
        (ids, currency, watermark),
    ).fetchall()
    pool, debt = max(0, confirmed), max(0, -confirmed)
    lots: list[list] = []  # [pending_until, expires_at, entry_id, what is left of it]
    for entry_id, points, occurred_at, pending_until, expires_at, remaining, from_pool in rows:
        if points > 0:
            repay = min(debt, points)
            debt -= repay
            lots.append([pending_until, expires_at, entry_id, max(0, remaining - repay)])
        elif from_pool:
            owed = from_pool - back.get(entry_id, (0, currency, 0))[2]
            spent = min(pool, owed)
            pool -= spent
            owed -= spent
            live = [lot for lot in lots if lot[3] > 0 and not (lot[1] and lot[1] <= occurred_at)]
            live.sort(key=lambda lot: (bool(lot[0] and lot[0] > occurred_at), lot[1] is None, lot[1] or "", lot[2]))
            for lot in live:
                if not owed:
                    break
                take = min(lot[3], owed)
                lot[3] -= take
                owed -= take
            debt += owed
    return sum(lot[3] for lot in lots if lot[1] and lot[1] <= stamp)


def draw(conn: sqlite3.Connection, member_id: str, currency: str, points: int, confirmed: int,
         watermark: int, now: datetime, aliases: tuple[str, ...] = ()) -> list[tuple[int | None, int]]:
    """Which lots pay for a debit of `points`: [(lot entry_id or None for central's pool, points)].

    Only called after the caller checked the available balance covers it.
    """
    stamp = iso(now)
    plan: list[tuple[int | None, int]] = []
    left = points
    back = _per_currency(_expired_taken_back(conn, member_id, watermark, aliases)).get(currency, 0)
    pool = max(0, confirmed - _pool_drawn(conn, member_id, currency, watermark, aliases) + back)
    if pool and left:
        take = min(pool, left)
        plan.append((None, take))
        left -= take
    for lot in _local_lots(conn, member_id, currency, watermark, aliases):
        if not left:
            break
        usable = lot.remaining > 0 and not (lot.expires_at and lot.expires_at <= stamp) \
            and not (lot.available_at and lot.available_at > stamp)
        if usable:
            take = min(lot.remaining, left)
            plan.append((lot.entry_id, take))
            left -= take
    if left:
        raise ValueError("draw exceeds the available balance")  # a caller bug: checked before
    return plan


def reverse_from(conn: sqlite3.Connection, lot_entry_ids: list[int], points: int) -> list[tuple[int | None, int]]:
    """A reversal takes back from the sale's own lots first; what was already
    spent or synced comes out of the pool (the balance may then go negative:
    the member spent points a return takes back)."""
    plan: list[tuple[int | None, int]] = []
    left = points
    for entry_id in lot_entry_ids:
        if not left:
            break
        remaining = conn.execute(
            f"SELECT e.points - COALESCE({_LIVE_E}, 0) "
            "FROM ledger_entries e WHERE e.entry_id = ?", (entry_id,)).fetchone()[0]
        if remaining > 0:
            take = min(remaining, left)
            plan.append((entry_id, take))
            left -= take
    if left:
        plan.append((None, left))
    return plan


def allocate(conn: sqlite3.Connection, debit_entry_id: int, plan: list[tuple[int | None, int]]) -> None:
    conn.executemany(
        "INSERT INTO lot_allocations (debit_entry_id, lot_entry_id, points) VALUES (?, ?, ?)",
        [(debit_entry_id, lot, pts) for lot, pts in plan if pts > 0],
    )


def unsynced(conn: sqlite3.Connection, member_id: str, watermark: int, now: datetime,
             limit: int, aliases: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """A member's entries central may not have applied yet, per event, newest first: what central
    adds to the balance it knows when it authorises a burn (docs/sync-protocol.md, authorisations).

    Left out: quarantined events, lots already expired (central would add nothing for them), lots
    still pending and the reversals of their sales in that currency (not spendable yet: earned,
    redeemed at once and returned would leave a voucher and a debt; central keeps its own pending
    lots out the same way), and redemptions central reserved itself (its reservation already holds
    their points). A return counts for what it takes from central's live points: not what it takes
    back of a synced sale's expired lots (_expired_taken_back). ``aliases``: the provisional ids
    central mapped to the member, whose entries are the member's.
    """
    who, ids = member_is("e.member_id", member_id, aliases, param="?1")
    mine, _ = member_is("p.member_id", member_id, aliases, param="?1")
    rows = conn.execute(
        f"""
        SELECT e.seq, e.currency, SUM(e.points) FROM ledger_entries e JOIN outbox o ON o.seq = e.seq
        WHERE {who} AND e.seq > ?2 AND o.state != 'quarantined'
          AND NOT (e.points > 0 AND e.expires_at IS NOT NULL AND e.expires_at <= ?3)
          AND NOT (e.points > 0 AND e.pending_until IS NOT NULL AND e.pending_until > ?3)
          AND NOT (e.kind = 'reversal' AND EXISTS (
              SELECT 1 FROM ledger_entries p WHERE {mine} AND p.seq > ?2 AND p.transaction_id = e.transaction_id
                AND p.currency = e.currency AND p.points > 0 AND p.pending_until > ?3))
          AND NOT EXISTS (SELECT 1 FROM redemptions r WHERE r.seq = e.seq AND r.reservation_id IS NOT NULL)
        GROUP BY e.seq, e.currency ORDER BY e.seq DESC
        """,
        (ids, watermark, iso(now)),
    ).fetchall()
    back: dict[tuple[int, str], int] = {}
    for seq, cur, points in _expired_taken_back(conn, member_id, watermark, aliases).values():
        back[(seq, cur)] = back.get((seq, cur), 0) + points
    events: dict[int, dict[str, int]] = {}
    for seq, currency, points in rows:
        points = int(points) + back.get((seq, currency), 0)
        if not points and (seq, currency) in back:
            continue  # a return of expired points only: central adds nothing for it
        if seq not in events and len(events) >= limit:
            break
        events.setdefault(seq, {})[currency] = points
    return [{"seq": seq, "points": points} for seq, points in events.items()]
