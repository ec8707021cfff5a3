"""A lane's earlier identities: what a sale retried after its ledger.db was replaced looks like.

A lane whose ledger.db was lost or archived sends its new history under the
next free lane id, ``L01.2``, ``L01.3``, ... (docs/sync-protocol.md, lane
identity). A sale is idempotent at the lane within one ledger only, so a POS
retrying a sale the lost ledger had answered gets it recorded again under the
new id. Central knows both histories: an accrual for the same member under the
same ``transaction_id``, or a redemption under the same ``authorisation_id``,
that an earlier identity of the lane already delivered is that retry, and is
counted once (``counted_by_earlier_identity``).

The earlier identities of ``L01.3`` are ``L01`` and ``L01.2``; a lane id
without a ``.N`` suffix (N >= 2) has none. Only the newest ``LOOKBACK`` are
asked about.
"""

from __future__ import annotations

import re
from typing import Any

LOOKBACK = 100
_SUCCESSOR = re.compile(r"(.+)\.([2-9]|[1-9][0-9]{1,8})")
COUNTED = "counted_by_earlier_identity"
SETTLED = ("confirmed", "offline")  # a burn that happened (an open or expired reservation may not have)


def earlier_lane_ids(lane_id: str) -> list[str]:
    """The lane ids this one succeeded, newest first (at most LOOKBACK)."""
    match = _SUCCESSOR.fullmatch(lane_id)
    if match is None:
        return []
    base, n = match.group(1), int(match.group(2))
    return ([f"{base}.{k}" for k in range(n - 1, max(1, n - 1 - LOOKBACK), -1)] + [base])[:LOOKBACK]


def accrual_counted(conn: Any, store_id: str, earlier: list[str], member_id: str, transaction_id: Any) -> str | None:
    """The earlier lane id that already credited ``member_id`` for ``transaction_id``, if any (a lot's
    source is ``store/lane/seq``)."""
    if not earlier or not isinstance(transaction_id, str):
        return None
    lanes = {f"{store_id}/{lane}" for lane in earlier}
    for row in conn.execute("SELECT source FROM lots WHERE member_id = ? AND transaction_id = ?",
                            (member_id, transaction_id)).fetchall():
        lane_key = row["source"].rpartition("/")[0]
        if lane_key in lanes:
            return lane_key.partition("/")[2]
    return None


def redemption_counted(conn: Any, store_id: str, earlier: list[str], authorisation_id: Any) -> str | None:
    """The earlier lane id whose redemption under ``authorisation_id`` happened (confirmed by its event,
    or recorded offline), if any."""
    if not earlier or not isinstance(authorisation_id, str) or not authorisation_id:
        return None
    row = conn.execute(
        f"SELECT lane_id FROM reservations WHERE store_id = ? AND authorisation_id = ? AND kind = 'redemption' "
        f"AND state IN ('confirmed', 'offline') AND lane_id IN ({', '.join('?' for _ in earlier)}) LIMIT 1",
        (store_id, authorisation_id, *earlier)).fetchone()
    return None if row is None else row["lane_id"]
