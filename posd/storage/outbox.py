"""The outbox as the sync relay sees it (posd.sync.ports.OutboxPort)."""

from __future__ import annotations

import json
import sqlite3

from posd.storage.db import utcnow_iso
from posd.storage.ledger import Ledger
from posd.sync.ports import EventResult, OutboxEvent, OutboxStats


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

        self.ledger.write(mark)

    def stats(self) -> OutboxStats:
        return OutboxStats(**self.ledger.counts())
