"""Central's lot engine: every credit is a lot with its expiry; debits draw from lots.

Balances are kept as lots, per member and currency: every credit is a lot with
the expiry its event carried (``lots[currency].expires_at``, none = never),
debits draw from them soonest-expiring first, and the published balance is
the sum of what remains in unexpired lots (minus any debt: points taken back
after they were spent). A lot expiring changes a balance without any event,
so the store's expiry sweep bumps those members' versions and the lanes pull
the new balance through the ordinary change feed.

SQL both engines run (store_sql.py; ``?`` placeholders), always inside the caller's write
transaction. lots.expires_ts is unix seconds (None = never),
the comparable form of expires_at. swept = 1 once a lot can no longer change
a balance by expiring (expired and reported, or nothing left in it), so the
sweep reads only the partial index. lot_debts holds a debit larger than every
lot left (a return of points already spent): a negative remainder, repaid by
the member's next credits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from posd.sync.protocol import parse_utc

# The soonest expiry not swept yet, compared with now by the caller. No parameter: with one
# (expires_ts <= ?), PostgreSQL's generic plan for the prepared statement guessed a third of the
# rows due and read the whole table instead of the partial index, on every push (a 240 ms probe at
# 230,000 lots). Read this way it is one step into lots_to_sweep on both engines.
NEXT_DUE_LOT = "SELECT expires_ts FROM lots WHERE swept = 0 AND expires_ts IS NOT NULL ORDER BY expires_ts LIMIT 1"


def lot_dates(event: dict[str, Any]) -> dict[str, tuple[str | None, str | None]] | None:
    """{currency: (available_at, expires_at)} from the event's optional ``lots``;
    None when the field is there but malformed (its expiry is authoritative,
    so a date central cannot read is refused, not guessed)."""
    lots = event.get("lots")
    if lots is None:
        return {}
    if not isinstance(lots, dict):
        return None
    dates = {}
    for currency, entry in lots.items():
        if entry is None:
            continue
        if not isinstance(entry, dict):
            return None
        available_at, expires_at = entry.get("available_at"), entry.get("expires_at")
        for value in (available_at, expires_at):
            if value is not None and parse_utc(value, strict=True) is None:
                return None
        dates[currency] = (available_at, expires_at)
    return dates


def credit(conn: Any, member_id: str, currency: str, points: int, transaction_id: str | None,
            available_at: str | None, expires_at: str | None, source: str, now: float,
            in_debt: bool = True) -> None:
    """A new lot; it first repays any debt, since the member owes those points.
    ``in_debt=False``: the caller knows the member owes nothing in any currency (no lookup)."""
    debt_row = conn.execute("SELECT points FROM lot_debts WHERE member_id = ? AND currency = ?",
                            (member_id, currency)).fetchone() if in_debt else None
    repay = min(points, debt_row["points"]) if debt_row else 0
    if repay:
        conn.execute("UPDATE lot_debts SET points = points - ? WHERE member_id = ? AND currency = ?",
                     (repay, member_id, currency))
        conn.execute("DELETE FROM lot_debts WHERE member_id = ? AND currency = ? AND points = 0",
                     (member_id, currency))
    insert_lots(conn, [lot_row(member_id, currency, points - repay, points, transaction_id, available_at, expires_at,
                               source, now)])


LOT_COLUMNS = ("member_id, currency, transaction_id, points, remaining, available_at, expires_at, expires_ts, "
               "swept, source")


def lot_row(member_id: str, currency: str, remaining: int, points: int, transaction_id: str | None,
            available_at: str | None, expires_at: str | None, source: str, now: float) -> tuple[Any, ...]:
    """A new lot's row (LOT_COLUMNS) holding ``remaining`` of the ``points`` credited."""
    parsed = parse_utc(expires_at)
    expires_ts = parsed.timestamp() if parsed is not None else None
    # Already expired (a sale synced after its lot's end) or already empty: nothing for the sweep to report.
    swept = int(remaining == 0 or (expires_ts is not None and expires_ts <= now))
    return (member_id, currency, transaction_id, points, remaining, available_at, expires_at, expires_ts, swept,
            source)


def insert_lots(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """New lots, in order (lot_id follows it: a debit draws the oldest of equal expiry first)."""
    if rows:
        conn.executemany(f"INSERT INTO lots ({LOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def sale_of(sources: Iterable[str], own_lanes: tuple[str, ...]) -> tuple[int, int] | None:
    """Whose sale a return of ``own_lanes[0]`` names, among the lots of its transaction id credited from
    ``sources`` (``store/lane/seq``): (the index in ``own_lanes`` of the identity that rang it, the seq of
    its first lot of it), or None. The returning lane's own sale when it rang one under that id, else
    the newest earlier identity's that did (``own_lanes[1:]``, newest first: a sale rung as L01,
    returned at L01.2 after an archive). A POS that numbered its sales again after an archive rings a
    new sale under an old id: the returns that follow are of that sale, not the old one."""
    for index, lane in enumerate(own_lanes):
        seqs = [int(seq) for lane_key, _, seq in (source.rpartition("/") for source in sources)
                if lane_key == lane and seq.isdigit()]
        if seqs:
            return index, min(seqs)
    return None


def debit(conn: Any, member_id: str, currency: str, points: int, own_transaction: str | None,
           as_of: float, own_lanes: tuple[str, ...] = (), debt: bool = True) -> None:
    """Take ``points``: a return first from its own sale's lots (expired or not,
    as the lane does: taking back expired points costs the member nothing more;
    ``own_lanes``: the ``store/lane`` keys whose sale it may be, the returning lane's, then its
    earlier identities' newest first (sale_of: its own sale of that id first):
    transaction ids are the POS's, one lane's, and another lane's sale may carry the same one),
    then unexpired lots spendable at the time (not pending) soonest-expiring first, never-expiring
    last, then those still pending in the same order; what no
    lot covers becomes debt (``debt=False``, tier points that are never spent: ``qualifying`` never
    goes below 0, and their balance is the same figure, so nothing is owed). Lots are read a page at
    a time, in that order, until the points are covered: a busy member's thousands of live lots are not all read
    for a debit that one or two of them cover."""
    left = points
    taken: dict[int, int] = {}

    def draw(lots: Iterable[Any]) -> None:
        nonlocal left
        for lot in lots:
            if not left:
                return
            usable = lot["remaining"] - taken.get(lot["lot_id"], 0)  # a return's own lot is listed twice
            take = min(usable, left)
            if take > 0:
                taken[lot["lot_id"]] = taken.get(lot["lot_id"], 0) + take
                left -= take

    if own_transaction is not None:
        lots = conn.execute(
            "SELECT lot_id, remaining, source FROM lots WHERE member_id = ? AND transaction_id = ? AND currency = ? "
            "ORDER BY expires_ts IS NULL, expires_ts, lot_id", (member_id, own_transaction, currency)).fetchall()
        sale = sale_of([lot["source"] for lot in lots], own_lanes)
        if sale is not None:
            draw(lot for lot in lots if lot["source"].startswith(f"{own_lanes[sale[0]]}/"))
    if left:
        draw(_live_lots(conn, member_id, currency, as_of, lambda: left > 0))
    for lot_id, take in taken.items():
        conn.execute("UPDATE lots SET remaining = remaining - ?, swept = CASE WHEN remaining - ? = 0 THEN 1 "
                     "ELSE swept END WHERE lot_id = ?", (take, take, lot_id))
    if left and debt:
        conn.execute("INSERT INTO lot_debts (member_id, currency, points) VALUES (?, ?, ?) "
                     "ON CONFLICT (member_id, currency) DO UPDATE SET points = lot_debts.points + excluded.points",
                     (member_id, currency, left))


DRAW_PAGE = 32  # lots read at a time by a debit


def _live_lots(conn: Any, member_id: str, currency: str, as_of: float, wanted: Any) -> Iterator[Any]:
    """The member's lots in ``currency`` with points left that were unexpired at ``as_of``, in the order
    a debit draws them: those spendable at ``as_of`` first, then those still pending (``available_at``
    ahead), each in _unexpired_lots' order. A burn spends what was spendable; drawing a pending lot
    first left the spendable points spendable again, and a second burn, then a return of the sale,
    left a voucher and a debt."""
    pending = []
    for lot in _unexpired_lots(conn, member_id, currency, as_of, wanted):
        when = parse_utc(lot["available_at"]) if lot["available_at"] is not None else None
        if when is not None and when.timestamp() > as_of:
            pending.append(lot)
        else:
            yield lot
    yield from pending


def _unexpired_lots(conn: Any, member_id: str, currency: str, as_of: float, wanted: Any) -> Iterator[Any]:
    """The lots unexpired at ``as_of`` soonest-expiring first by expiry then lot_id, never-expiring last
    by lot_id, a page at a time while ``wanted()``: each page continues after the last lot of the one before."""
    live = ("SELECT lot_id, remaining, expires_ts, available_at FROM lots WHERE member_id = ? AND currency = ? "
            "AND remaining > 0 ")
    expiring: tuple[float, int] | None = None
    while wanted():
        after, args = ("AND expires_ts > ? ", [as_of]) if expiring is None else \
            ("AND (expires_ts, lot_id) > (?, ?) ", list(expiring))
        page = conn.execute(live + after + "ORDER BY expires_ts, lot_id LIMIT ?",
                            [member_id, currency, *args, DRAW_PAGE]).fetchall()
        yield from page
        if len(page) < DRAW_PAGE:
            break
        expiring = (page[-1]["expires_ts"], page[-1]["lot_id"])
    forever = 0
    while wanted():
        page = conn.execute(live + "AND expires_ts IS NULL AND lot_id > ? ORDER BY lot_id LIMIT ?",
                            [member_id, currency, forever, DRAW_PAGE]).fetchall()
        yield from page
        if len(page) < DRAW_PAGE:
            break
        forever = page[-1]["lot_id"]


def lot_balances(conn: Any, current: dict[str, dict[str, int]], now: float) -> dict[str, dict[str, int]]:
    """The published balances of members {member_id: their current balances}: per currency,
    unexpired lots' remaining minus debt, two grouped queries per 500 members. Currencies
    already listed stay listed (at 0 when nothing is left)."""
    out = {member_id: {currency: 0 for currency in balances} for member_id, balances in current.items()}
    ids = list(current)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for r in conn.execute(
                "SELECT member_id, currency, CAST(SUM(remaining) AS BIGINT) AS total FROM lots "
                f"WHERE member_id IN ({marks}) AND remaining > 0 AND (expires_ts IS NULL OR expires_ts > ?) "
                "GROUP BY member_id, currency", [*chunk, now]).fetchall():
            out[r["member_id"]][r["currency"]] = r["total"]
        for r in conn.execute(f"SELECT member_id, currency, points FROM lot_debts WHERE member_id IN ({marks})",
                              chunk).fetchall():
            out[r["member_id"]][r["currency"]] = out[r["member_id"]].get(r["currency"], 0) - r["points"]
    return out


def maturing(conn: Any, member_id: str, now: float) -> dict[str, int]:
    """Per currency, what the member's unexpired lots still pending (``available_at`` after
    ``now``) have left: in the published balance, not spendable yet."""
    out: dict[str, int] = {}
    for lot in maturing_lots(conn, [member_id], now).get(member_id, ()):
        out[lot["currency"]] = out.get(lot["currency"], 0) + lot["points"]
    return out


def maturing_lots(conn: Any, member_ids: list[str], now: float) -> dict[str, list[dict[str, Any]]]:
    """{member_id: its unexpired lots still pending at ``now``, as the feed lists them: currency, what
    is left of it (points) and available_at}, for the members that have one. The published balance
    counts them; a lane holds them back from what it may spend until available_at, by its own clock."""
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(member_ids), 500):
        chunk = member_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        # lot_id last: lots maturing at one moment in the order earned, whatever order the engine reads
        for r in conn.execute(f"SELECT member_id, currency, remaining, available_at FROM lots WHERE member_id IN "
                              f"({marks}) AND remaining > 0 AND available_at IS NOT NULL "
                              "AND (expires_ts IS NULL OR expires_ts > ?) "
                              "ORDER BY member_id, currency, available_at, lot_id",
                              (*chunk, now)).fetchall():
            when = parse_utc(r["available_at"])
            if when is not None and when.timestamp() > now:
                found.setdefault(r["member_id"], []).append(
                    {"currency": r["currency"], "points": int(r["remaining"]), "available_at": r["available_at"]})
    return found


def reset_lots(conn: Any, member_id: str, balances: dict[str, int], source: str) -> None:
    """Replace a member's lots by its given balances: never-expiring lots, debts for negatives."""
    conn.execute("DELETE FROM lots WHERE member_id = ?", (member_id,))
    conn.execute("DELETE FROM lot_debts WHERE member_id = ?", (member_id,))
    for currency, points in balances.items():
        if points > 0:
            conn.execute(
                "INSERT INTO lots (member_id, currency, transaction_id, points, remaining, available_at, "
                "expires_at, expires_ts, swept, source) VALUES (?, ?, NULL, ?, ?, NULL, NULL, NULL, 0, ?)",
                (member_id, currency, points, points, source))
        elif points < 0:
            conn.execute("INSERT INTO lot_debts (member_id, currency, points) VALUES (?, ?, ?)",
                         (member_id, currency, -points))
