"""Members enrolled at this till under a provisional id, until central's feed names them.

ledger.db keeps them (not cache.db, which is rebuildable): a card handed out
while central was unreachable must keep working, whatever happens to the cache.
Once central mapped the provisional id, the member feed brings the member with
the card and the provisional id as an alias, and cache.db answers first.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from posd.storage.db import compact_json


def store(conn: sqlite3.Connection, *, member_id: str, request_hash: str, identifiers: list[str],
          display_name: str | None, locale: str | None, birth_date: str | None, seq: int,
          response: dict[str, Any], recorded_at: str) -> None:
    conn.execute(
        "INSERT INTO enrolments (member_id, request_hash, display_name, locale, birth_date, seq, response, "
        "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (member_id, request_hash, display_name, locale, birth_date, seq, compact_json(response), recorded_at))
    conn.executemany("INSERT INTO enrolment_identifiers (identifier, member_id) VALUES (?, ?)",
                     [(identifier, member_id) for identifier in identifiers])


def find(conn: sqlite3.Connection, identifier: str) -> dict[str, Any] | None:
    """The enrolment holding ``identifier``, or whose provisional id it is."""
    row = conn.execute(
        "SELECT e.* FROM enrolment_identifiers i JOIN enrolments e ON e.member_id = i.member_id "
        "WHERE i.identifier = ?", (identifier,)).fetchone()
    if row is None:
        row = conn.execute("SELECT * FROM enrolments WHERE member_id = ?", (identifier,)).fetchone()
    if row is None:
        return None
    found = dict(row)
    found["response"] = json.loads(found["response"])
    found["identifiers"] = [r[0] for r in conn.execute(
        "SELECT identifier FROM enrolment_identifiers WHERE member_id = ? ORDER BY identifier", (row["member_id"],))]
    return found


def forget(conn: sqlite3.Connection, member_ids: list[str]) -> int:
    """Erasure: the personal data of these enrolments (identifiers, name, birth date, the answer's
    copies of them); the provisional id stays, as the ledger entries name it."""
    done = 0
    for member_id in member_ids:
        conn.execute("DELETE FROM enrolment_identifiers WHERE member_id = ?", (member_id,))
        done += conn.execute(
            "UPDATE enrolments SET display_name = NULL, birth_date = NULL, locale = NULL, "
            "response = json_set(response, '$.identifiers', json('[]'), '$.member.display_name', '', "
            "'$.erased', json('true')) "
            "WHERE member_id = ?", (member_id,)).rowcount
    return done
