"""The outbox as the sync relay sees it (posd.sync.ports.OutboxPort).

Also the lane's sync identity: the lane id this ledger's seqs are sent under.
It is the configured lane id unless central already holds another history
under that id (ledger.db lost or restored from an old backup); then the relay
claims ``<lane_id>.2``, ``.3``, ... so a (lane, seq) is never used twice.
"""

from __future__ import annotations

import json
import sqlite3

from posd.storage.db import utcnow_iso
from posd.storage.ledger import Ledger, _read_meta, _write_meta
from posd.sync.lane.ports import EventResult, OutboxEvent, OutboxStats


class LedgerOutbox:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def pending_batch(self, max_events: int, max_bytes: int) -> list[OutboxEvent]:
        rows = self.ledger.reader().execute(
            "SELECT seq, event_id, body FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
            (max_events,),
        )
        batch: list[OutboxEvent] = []
        size = 0
        for seq, event_id, body in rows:
            if batch and size + len(body) > max_bytes:
                break
            size += len(body)
            batch.append(OutboxEvent(seq=seq, event_id=event_id, body=json.loads(body), size=len(body)))
        return batch

    def record_results(self, results: list[EventResult]) -> None:
        if not results:
            return
        now = utcnow_iso()

        def mark(conn: sqlite3.Connection) -> None:
            for r in results:
                if r.status in ("accepted", "duplicate"):
                    conn.execute(
                        "UPDATE outbox SET state = 'acked', result_code = ?, acked_at = ? "
                        "WHERE seq = ? AND state = 'pending'",
                        (r.status, now, r.seq),
                    )
                elif r.status == "rejected" and not r.retryable:
                    conn.execute(
                        "UPDATE outbox SET state = 'quarantined', result_code = ?, acked_at = ? "
                        "WHERE seq = ? AND state = 'pending'",
                        (r.code or "rejected", now, r.seq),
                    )
                    # central refused the redemption: its points are back, so its voucher must go
                    conn.execute(
                        "UPDATE vouchers SET voided_at = ? WHERE voided_at IS NULL AND code = "
                        "(SELECT json_extract(body, '$.voucher_code') FROM outbox WHERE seq = ? AND type = 'redemption')",
                        (now, r.seq),
                    )

        self.ledger.write(mark)

    def stats(self) -> OutboxStats:
        return OutboxStats(**self.ledger.counts())

    # -- sync identity -----------------------------------------------------
    def sync_lane_id(self) -> str | None:
        """The lane id claimed for this ledger's history, None before the first claim."""
        return _read_meta(self.ledger.reader(), "sync_lane_id")

    def claim_lane_id(self, lane_id: str) -> None:
        self.ledger.write(lambda conn: _write_meta(conn, "sync_lane_id", lane_id))

    def event_id_at(self, seq: int) -> str | None:
        row = self.ledger.reader().execute("SELECT event_id FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None
