"""The outbox: every event central must receive, with the lane's gap-free seq.

The SQL on the outbox table, and the outbox as the sync relay sees it
(posd.sync.lane.ports.OutboxPort). seq is max + 1 under BEGIN IMMEDIATE and rows
are never deleted, so a rolled-back write leaves no hole.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posd.storage import vouchers
from posd.storage.db import compact_json, parse_iso, utcnow_iso
from posd.sync.lane.ports import EventResult, OutboxEvent, OutboxStats
from posd.sync.protocol.ids import UuidV7

if TYPE_CHECKING:
    from posd.storage.ledger import Ledger


class SeqCounter:
    """The outbox's last seq, carried by the writer from one event to the next instead of read (MAX + 1)
    for each: the writer is the ledger's one writer, so the last seq it appended is the outbox's
    MAX. Forgotten whenever a unit or its transaction rolls back (the seqs it took were not kept), and
    then read again from the outbox, inside the transaction that appends."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def take(self, conn: sqlite3.Connection) -> int:
        if self.last is None:
            self.last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
        self.last += 1
        return self.last

    def forget(self) -> None:
        self.last = None


_EVENT_IDS = UuidV7()


def new_event_id() -> str:
    """32 hex digits, a version 7 UUID (posd.sync.protocol.ids): time-ordered, so the outbox's event_id
    index grows at its right edge instead of taking a random leaf per event, as a version 4 id did."""
    return f"{_EVENT_IDS.take(1).start:032x}"


def append(conn: sqlite3.Connection, event_type: str, fields: dict[str, Any], seqs: SeqCounter | None = None) -> int:
    """Append one event; its seq (``seqs``: the writer's carried counter, else read here)."""
    seq = (seqs or SeqCounter()).take(conn)
    event_id = new_event_id()
    body = {"seq": seq, "event_id": event_id, "type": event_type, **fields}
    conn.execute(
        "INSERT INTO outbox (seq, event_id, type, body, created_at) VALUES (?, ?, ?, ?, ?)",
        (seq, event_id, event_type, compact_json(body, sort_keys=True, ensure_ascii=True), utcnow_iso()),
    )
    return seq


def stats(conn: sqlite3.Connection) -> OutboxStats:
    # each of these reads the (state, seq) index, not the whole outbox: health is polled often
    pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
    first = conn.execute("SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1").fetchone()
    quarantined = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'quarantined'").fetchone()[0]
    acked = conn.execute(
        "SELECT COALESCE(MAX(m), 0) FROM (SELECT MAX(seq) AS m FROM outbox WHERE state = 'acked' "
        "UNION ALL SELECT MAX(seq) FROM outbox WHERE state = 'quarantined')").fetchone()[0]
    return OutboxStats(pending=pending, oldest_pending_at=parse_iso(first[0]) if first else None,
                       quarantined=quarantined, last_acked_seq=acked)


# Beside ledger.db: the highest seq of the quarantined events store IT has acknowledged
# (`posd ledger quarantine --acknowledge`). Health and doctor warn only about those above it; the
# events stay in ledger.db and in the list. A file, not a column: the daemon never writes it, and
# acknowledging needs no write to the ledger the daemon holds.
ACK_FILE = "quarantine-acknowledged"


def read_acknowledgement(folder: Path) -> tuple[int, str] | None:
    """The acknowledgement noted in ``folder`` (ledger.db's): the seq and event id of the newest
    quarantined event acknowledged; None when there is none or it cannot be read."""
    try:
        seq, event_id = (folder / ACK_FILE).read_text(encoding="ascii").split()
        return int(seq), event_id
    except (OSError, ValueError):
        return None


def acknowledged_seq(folder: Path, conn: sqlite3.Connection) -> int:
    """The highest quarantined seq acknowledged in ``folder`` for the ledger ``conn`` reads; 0 when none.
    An acknowledgement names its event by id too: one left beside a ledger that replaced its ledger (the
    old one archived or restored aside) names an event this ledger does not have, and acknowledges nothing
    here, rather than hiding this ledger's refusals up to the same seq."""
    noted = read_acknowledgement(folder)
    if noted is None or conn.execute("SELECT 1 FROM outbox WHERE seq = ? AND event_id = ?", noted).fetchone() is None:
        return 0
    return noted[0]


def acknowledge(folder: Path, seq: int, event_id: str) -> None:
    """Note the quarantined event ``seq`` (``event_id``) as acknowledged, with every one before it
    (written whole, then renamed: never half a note)."""
    temporary = folder / f".{ACK_FILE}.tmp"
    with open(temporary, "w", encoding="ascii") as f:
        f.write(f"{seq} {event_id}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, folder / ACK_FILE)


# Refusals that leave nobody anything to do: central counted the original of the event (a POS's retry of
# what an archived or lost ledger.db had answered, recorded again), and the lane took the copy out of its
# balances when it was quarantined. `posd ledger quarantine` lists them; health and doctor do not warn.
SETTLED_CODES = ("counted_by_earlier_identity",)


def quarantined_after(conn: sqlite3.Connection, seq: int) -> int:
    """How many quarantined events have a seq above ``seq`` (not acknowledged yet) and need a person
    (SETTLED_CODES left out)."""
    return conn.execute(f"SELECT COUNT(*) FROM outbox WHERE state = 'quarantined' AND seq > ? "
                        f"AND COALESCE(result_code, '') NOT IN ({', '.join('?' * len(SETTLED_CODES))})",
                        (seq, *SETTLED_CODES)).fetchone()[0]


def pending(conn: sqlite3.Connection, max_events: int, max_bytes: int, after: int = 0) -> list[OutboxEvent]:
    """Pending events with a seq above ``after``, lowest seq first; at least one, then as many as fit in
    max_bytes."""
    rows = conn.execute("SELECT seq, event_id, body FROM outbox WHERE state = 'pending' AND seq > ? ORDER BY seq "
                        "LIMIT ?", (after, max_events))
    batch: list[OutboxEvent] = []
    size = 0
    for seq, event_id, body in rows:
        if batch and size + len(body) > max_bytes:
            break
        size += len(body)
        batch.append(OutboxEvent(seq=seq, event_id=event_id, size=len(body), text=body))  # body: decoded if asked
    return batch


def record_results(conn: sqlite3.Connection, results: list[EventResult]) -> None:
    """Central's answers: accepted and duplicate are acked, and so is a rejection that is central's flag
    (result_code names it: central has the event); any other final rejection is quarantined."""
    now = utcnow_iso()
    # a batch's acks in a statement per run of consecutive seqs with one code: a drain records a
    # thousand of them per push, mostly one run
    codes: dict[int, str | None] = {}
    for r in results:
        if r.status in ("accepted", "duplicate") or r.flagged:
            codes.setdefault(r.seq, r.code if r.flagged else r.status)  # answered twice: the first counts
    acks = sorted(codes.items())
    conn.executemany("UPDATE outbox SET state = 'acked', result_code = ?, acked_at = ? "
                     "WHERE seq BETWEEN ? AND ? AND state = 'pending'",
                     [(code, now, first, last) for first, last, code in _runs(acks)])
    refused = [(r.code or "rejected", now, r.seq) for r in results
               if r.status == "rejected" and not r.retryable and not r.flagged]
    if refused:  # rare on a lane; a whole batch of them when central does not know its members yet
        conn.executemany("UPDATE outbox SET state = 'quarantined', result_code = ?, acked_at = ? "
                         "WHERE seq = ? AND state = 'pending'", refused)
        vouchers.void_redeemed_by(conn, [seq for _, _, seq in refused], now)


def _runs(acks: list[tuple[int, str | None]]) -> list[tuple[int, int, str | None]]:
    """(first, last, code) for each run of consecutive seqs answered with the same code."""
    runs: list[tuple[int, int, str | None]] = []
    for seq, code in acks:
        if runs and runs[-1][1] == seq - 1 and runs[-1][2] == code:
            runs[-1] = (runs[-1][0], seq, code)
        else:
            runs.append((seq, seq, code))
    return runs


def scrub_enrolments(conn: sqlite3.Connection, member_ids: list[str]) -> int:
    """Erasure: the personal fields of member_enrolled events central already answered (the
    outbox keeps every row; a pending one still has to reach central whole)."""
    done = 0
    for member_id in member_ids:
        done += conn.execute(
            "UPDATE outbox SET body = json_remove(body, '$.display_name', '$.identifiers', '$.birth_date', "
            "'$.locale') WHERE type = 'member_enrolled' AND state != 'pending' "
            "AND json_extract(body, '$.member_id') = ?", (member_id,)).rowcount
    return done


def event_id_at(conn: sqlite3.Connection, seq: int) -> str | None:
    row = conn.execute("SELECT event_id FROM outbox WHERE seq = ?", (seq,)).fetchone()
    return row[0] if row else None


class LedgerOutbox:
    """posd.sync.lane.ports.OutboxPort over ledger.db."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def pending_batch(self, max_events: int, max_bytes: int, after: int = 0) -> list[OutboxEvent]:
        return self.ledger.view().pending_events(max_events, max_bytes, after)

    def record_results(self, results: list[EventResult]) -> None:
        if results:
            self.ledger.write(lambda tx: tx.record_results(results))

    def stats(self) -> OutboxStats:
        return self.ledger.view().outbox_stats()

    def event_id_at(self, seq: int) -> str | None:
        return self.ledger.view().event_id_at(seq)


@dataclass(frozen=True)
class Quarantined:
    """An event central refused for good: kept in ledger.db, never resent, its points left out of the
    local balance. ``ref`` is what the till knows it by (the sale, redemption or voucher)."""

    seq: int
    type: str
    code: str | None
    refused_at: str | None
    created_at: str
    member_id: str | None
    ref: str | None
    event_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "code": self.code, "refused_at": self.refused_at,
                "created_at": self.created_at, "member_id": self.member_id, "ref": self.ref}


def quarantined_events(conn: sqlite3.Connection, limit: int | None = None) -> list[Quarantined]:
    """The outbox's quarantined events, newest first."""
    rows = conn.execute("SELECT seq, type, body, result_code, acked_at, created_at, event_id FROM outbox "
                        "WHERE state = 'quarantined' ORDER BY seq DESC LIMIT ?", (-1 if limit is None else limit,))
    out = []
    for seq, kind, body, code, refused_at, created_at, event_id in rows:
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        ref = next((str(event[k]) for k in ("redemption_id", "return_id", "transaction_id", "voucher_code",
                                            "enrolment_id") if event.get(k)), None)
        out.append(Quarantined(seq, kind, code, refused_at, created_at, event.get("member_id"), ref, event_id))
    return out
