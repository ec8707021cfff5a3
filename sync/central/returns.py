"""What a return may take back at central: its sale once, and never more than the sale credited.

A lane numbers its events and central dedupes on (store, lane, seq) and on
``event_id``; a return is also named by its sale's ``transaction_id`` and its
own ``return_id``. So a lane that sends a return again under a new seq and a
new ``event_id`` (a foreign lane renumbering its queue, or writing a retry as a
new event) would take the points back twice, and a lane whose arithmetic is
wrong could take back more than the sale ever gave, leaving the member a debt
and a tier they did not earn. Central checks both, against the sale's own
lane and its earlier identities (identities.py: ``L01`` for ``L01.2``). The
sale is the returning lane's own of that id, else the newest earlier
identity's that rang one (lots.sale_of: a POS that numbered its sales again
after an archive rings a new sale under an old id), and its returns are those
sent since it was rung, by that identity or a later one:

- ``return_repeated``: an accepted return of the sale under the same
  ``return_id``, delivered by this lane (an earlier identity's is
  ``counted_by_earlier_identity``);
- ``return_exceeds_sale``: in some currency, the return with the sale's
  earlier accepted returns takes back more than the sale credited (its lots'
  points, expired or spent or not).

A sale central holds no lot of (its accrual named no transaction, or a
balance central was told to set started the member's lots again) bounds
nothing: the return applies as the lane computed it, as it always has.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from posd.sync.central.identities import COUNTED, placeholders, stored_body
from posd.sync.central.lots import sale_of

REPEATED = "return_repeated"
EXCEEDS = "return_exceeds_sale"


def return_refusal(conn: Any, store_id: str, lane_id: str, seq: int, earlier: list[str], member_id: str,
                   event: dict[str, Any], sale_sql: str) -> str | None:
    """Why central refuses this return (``counted_by_earlier_identity``, ``return_repeated``,
    ``return_exceeds_sale``), or None. ``member_id`` is central's member (an alias resolved), ``earlier``
    the lane's earlier identities, ``sale_sql`` the engine's SQL for a stored event body's
    ``transaction_id`` (the member's returns of other sales are not read); the sale's lots are already
    inserted. The return itself and those after it in its batch, stored before any is applied, are
    left out."""
    transaction_id, return_id = event.get("transaction_id"), event.get("return_id")
    if not isinstance(transaction_id, str):
        return None
    lanes, names = [lane_id, *earlier], _names(conn, member_id, event)
    lots = conn.execute("SELECT currency, points, source FROM lots WHERE member_id = ? AND transaction_id = ?",
                        (member_id, transaction_id)).fetchall()
    # the sale: this lane's own of that id, else the newest earlier identity's (lots.sale_of); its returns
    # are those sent since it was rung, by the lane that rang it or by a later identity of that lane
    sale = sale_of([lot["source"] for lot in lots], tuple(f"{store_id}/{lane}" for lane in lanes))
    credited: dict[str, int] = {}
    for lot in lots:
        if sale is not None and lot["source"].rpartition("/")[0] == f"{store_id}/{lanes[sale[0]]}":
            credited[lot["currency"]] = credited.get(lot["currency"], 0) + lot["points"]
    its_lanes = lanes if sale is None else lanes[:sale[0] + 1]
    taken: dict[str, int] = {}
    for row in conn.execute(
            f"SELECT lane_id, seq, body FROM events WHERE store_id = ? AND member_id IN ({placeholders(names)}) "
            f"AND type = 'return' AND status = 'accepted' AND lane_id IN ({placeholders(lanes)}) AND {sale_sql} = ?",
            (store_id, *names, *lanes, transaction_id)).fetchall():
        if row["lane_id"] == lane_id and row["seq"] >= seq:
            continue  # this very return, or one after it in its batch (a batch's events are stored first)
        body = stored_body(row["body"])
        if body.get("transaction_id") != transaction_id:
            continue
        if row["lane_id"] not in its_lanes or (sale is not None and row["lane_id"] == lanes[sale[0]]
                                               and row["seq"] < sale[1]):
            continue  # a return of an older sale of that id (before an archive, or before the POS renumbered)
        if isinstance(return_id, str) and body.get("return_id") == return_id:
            # sent again by this lane, or a POS's retry the lane's new ledger recorded again
            return REPEATED if row["lane_id"] == lane_id else COUNTED
        for currency, delta in _points(body):
            taken[currency] = taken.get(currency, 0) - min(delta, 0)
    if not credited:
        return None
    for currency, delta in _points(event):
        if delta < 0 and taken.get(currency, 0) - delta > credited.get(currency, 0):
            return EXCEEDS
    return None


def _names(conn: Any, member_id: str, event: dict[str, Any]) -> list[str]:
    """Every id the member's returns may have been stored under: central's, the event's, its aliases
    (a provisional id a lane used before it learnt central's)."""
    aliases = [r["alias"] for r in conn.execute("SELECT alias FROM member_aliases WHERE member_id = ?",
                                                (member_id,)).fetchall()]
    return sorted({member_id, str(event.get("member_id")), *aliases})


def _points(event: dict[str, Any]) -> Iterable[tuple[str, int]]:
    points = event.get("points")
    return ((c, d) for c, d in points.items() if isinstance(d, int)) if isinstance(points, dict) else ()
