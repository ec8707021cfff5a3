"""The print worker: takes slips from ledger.db's print queue to the printer.

Jobs are rows written in the same transaction as the sale, so a slip is never
lost to a crash: a job still marked `printing` at start goes back to the queue.
Printing blocks (sockets, USB), so the worker is a thread of its own.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from typing import Any

from posd.core.slip import SlipData, build_slip
from posd.events import EventBus
from posd.faults import crash_point
from posd.storage.db import utcnow_iso
from posd.storage.ledger import Ledger

log = logging.getLogger("posd.print")


class PrintWorker:
    def __init__(self, ledger: Ledger, printer: Any, bus: EventBus, locale: str, *,
                 retry_base: float = 0.5, retry_cap: float = 15.0):
        self.ledger, self.printer, self.bus, self.locale = ledger, printer, bus, locale
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.printed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="print-worker", daemon=True)
        self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.ledger.write(_claim_next)
            except Exception:
                log.exception("print queue unreadable")
                job = None
            if job is None:
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            if not self._print(job):
                self._failures += 1
                delay = random.uniform(0, min(self.retry_cap, self.retry_base * 2 ** min(self._failures, 10)))
                self._stop.wait(delay)
            else:
                self._failures = 0

    def _print(self, job: sqlite3.Row) -> bool:
        job_id, slip_id = job["job_id"], job["slip_id"]
        try:
            doc = build_slip(SlipData.from_json(json.loads(job["slip"])), self.locale)
            self.printer.print_document(doc)
            crash_point("after_print_before_mark")
        except Exception as exc:
            reason = getattr(exc, "reason", None) or "io_error"
            self.ledger.write(lambda conn: conn.execute(
                "UPDATE print_jobs SET state = 'queued', last_error = ? WHERE job_id = ?", (reason, job_id)))
            self.bus.publish("print.status", {"job_id": job_id, "slip_id": slip_id, "state": "held",
                                              "reason": reason})
            log.warning("slip %s held: %s", slip_id, reason)
            return False
        self.ledger.write(lambda conn: conn.execute(
            "UPDATE print_jobs SET state = 'printed', printed_at = ?, last_error = NULL WHERE job_id = ?",
            (utcnow_iso(), job_id)))
        self.printed += 1
        self.bus.publish("print.status", {"job_id": job_id, "slip_id": slip_id, "state": "printed"})
        return True


def _claim_next(conn: sqlite3.Connection) -> sqlite3.Row | None:
    job = conn.execute(
        "SELECT * FROM print_jobs WHERE state = 'queued' ORDER BY created_at, job_id LIMIT 1"
    ).fetchone()
    if job is None:
        return None
    conn.execute("UPDATE print_jobs SET state = 'printing', attempts = attempts + 1 WHERE job_id = ?",
                 (job["job_id"],))
    return job


def queue_reprint(conn: sqlite3.Connection, slip_id: str) -> str | None:
    """A copy of a printed slip, as a new job; None when the slip is unknown."""
    row = conn.execute(
        "SELECT slip FROM print_jobs WHERE slip_id = ? ORDER BY created_at LIMIT 1", (slip_id,)
    ).fetchone()
    if row is None:
        return None
    n = conn.execute("SELECT COUNT(*) FROM print_jobs WHERE slip_id = ?", (slip_id,)).fetchone()[0]
    data = json.loads(row[0])
    data["reprint"] = True
    job_id = f"{slip_id}#copy{n}"
    conn.execute(
        "INSERT INTO print_jobs (job_id, slip_id, kind, slip, created_at) VALUES (?, ?, 'reprint', ?, ?)",
        (job_id, slip_id, json.dumps(data), utcnow_iso()),
    )
    return job_id
