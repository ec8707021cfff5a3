"""A lane's earlier identities: what a sale retried after its ledger.db was replaced looks like.

A lane whose ledger.db was lost or archived sends its new history under the
next free lane id, ``L01.2``, ``L01.3``, ... (docs/sync-protocol.md, lane
identity). A sale is idempotent at the lane within one ledger only, so a POS
retrying a sale the lost ledger had answered gets it recorded again under the
new id. Central knows both histories, and counts such a retry once
(``counted_by_earlier_identity``):

- an accrual for the same member under the same ``transaction_id`` and the same
  ``occurred_at`` (a retry sends the same body; a POS whose numbering started
  again names another moment, and is a new sale);
- a return of the same sale under the same ``return_id`` (returns.py, which bounds every return);
- a redemption under the same ``authorisation_id`` that happened (confirmed or
  recorded offline).

The lane's own sale sent again (the same member, ``transaction_id`` and
``occurred_at`` under a new seq and ``event_id``) is ``accrual_repeated``
(sales_rung), as a return sent again is ``return_repeated`` (returns.py).

The earlier identities of ``L01.3`` are ``L01`` and ``L01.2``: a lane id ending
in ``.N`` (N >= 2) is an identity posd claimed, which is why configured lane ids
may not end so. Only the newest ``LOOKBACK`` are asked about.
"""

from __future__ import annotations

import json
import re
from typing import Any

from posd.sync.protocol.batch import parse_utc

LOOKBACK = 100
_SUCCESSOR = re.compile(r"(.+)\.([2-9]|[1-9][0-9]{1,8})")
COUNTED = "counted_by_earlier_identity"


def earlier_lane_ids(lane_id: str) -> list[str]:
    """The lane ids this one succeeded, newest first (at most LOOKBACK)."""
    match = _SUCCESSOR.fullmatch(lane_id)
    if match is None:
        return []
    base, n = match.group(1), int(match.group(2))
    return ([f"{base}.{k}" for k in range(n - 1, max(1, n - 1 - LOOKBACK), -1)] + [base])[:LOOKBACK]


def stored_body(value: Any) -> dict[str, Any]:
    body = json.loads(value) if isinstance(value, (str, bytes)) else value  # PostgreSQL's jsonb comes decoded
    return body if isinstance(body, dict) else {}


def placeholders(items: list[Any]) -> str:
    return ", ".join("?" for _ in items)


def accrual_counted(conn: Any, store_id: str, earlier: list[str], member_id: str, event: dict[str, Any]) -> bool:
    """Did an earlier identity credit ``member_id`` for this very sale (its ``transaction_id`` and
    ``occurred_at``)? Found through the lots the sale credited (a lot's source is ``store/lane/seq``)."""
    transaction_id = event.get("transaction_id")
    if not earlier or not isinstance(transaction_id, str):
        return False
    lanes = {f"{store_id}/{lane}" for lane in earlier}
    for row in conn.execute("SELECT source FROM lots WHERE member_id = ? AND transaction_id = ?",
                            (member_id, transaction_id)).fetchall():
        lane_key, _, seq = row["source"].rpartition("/")
        if lane_key not in lanes or not seq.isdigit():
            continue
        first = conn.execute("SELECT body FROM events WHERE store_id = ? AND lane_id = ? AND seq = ?",
                             (store_id, lane_key.partition("/")[2], int(seq))).fetchone()
        if first is not None and same_instant(stored_body(first["body"]).get("occurred_at"), event.get("occurred_at")):
            return True
    return False


def sales_rung(conn: Any, store_id: str, lane_id: str, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], list[Any]]:
    """{(member, transaction_id): the ``occurred_at`` of each of this lane's sales that credited that
    member under that id}, for the given pairs (a batch's accruals): the lots they credited, in one
    query per 400 pairs, and the bodies of the few events that rang them. A lane sending one of those
    sales again under a new seq and ``event_id`` (a queue renumbered, a retry written as a new event)
    would credit it twice: central refuses it (``accrual_repeated``)."""
    prefix = f"{store_id}/{lane_id}/"
    ordered = sorted(pairs)
    seqs: dict[int, set[tuple[str, str]]] = {}
    for start in range(0, len(ordered), 400):  # at most 800 parameters a query (SQLite's old limit: 999)
        chunk = ordered[start:start + 400]
        members, transactions = sorted({m for m, _ in chunk}), sorted({t for _, t in chunk})
        for row in conn.execute(
                f"SELECT DISTINCT member_id, transaction_id, source FROM lots WHERE member_id IN ({placeholders(members)}) "
                f"AND transaction_id IN ({placeholders(transactions)})", (*members, *transactions)).fetchall():
            pair, source = (row["member_id"], row["transaction_id"]), row["source"]
            if pair in pairs and source.startswith(prefix) and source[len(prefix):].isdigit():
                seqs.setdefault(int(source[len(prefix):]), set()).add(pair)
    rung: dict[tuple[str, str], list[Any]] = {}
    found = sorted(seqs)
    for start in range(0, len(found), 500):
        chunk = found[start:start + 500]
        for row in conn.execute(f"SELECT seq, body FROM events WHERE store_id = ? AND lane_id = ? "
                                f"AND seq IN ({placeholders(chunk)})",
                                (store_id, lane_id, *chunk)).fetchall():
            for pair in seqs[row["seq"]]:
                rung.setdefault(pair, []).append(stored_body(row["body"]).get("occurred_at"))
    return rung


def same_instant(first: Any, again: Any) -> bool:
    """The same moment, however each is written (``...T06:00:00Z`` and ``...T06:00:00.000+00:00``)."""
    if first == again:
        return True
    a, b = parse_utc(first), parse_utc(again)
    return a is not None and a == b


def redemption_counted(conn: Any, store_id: str, earlier: list[str], authorisation_id: Any) -> str | None:
    """The earlier lane id whose redemption under ``authorisation_id`` happened (confirmed by its event,
    or recorded offline), if any."""
    if not earlier or not isinstance(authorisation_id, str) or not authorisation_id:
        return None
    row = conn.execute(
        f"SELECT lane_id FROM reservations WHERE store_id = ? AND authorisation_id = ? AND kind = 'redemption' "
        f"AND state IN ('confirmed', 'offline') AND lane_id IN ({placeholders(earlier)}) LIMIT 1",
        (store_id, authorisation_id, *earlier)).fetchone()
    return None if row is None else row["lane_id"]
