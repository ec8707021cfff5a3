"""ledger.db's print queue: jobs written with the sale, claimed by the print worker, kept for reprints.

Each job has a time to live (a slip printed for the next customer, or a cash
drawer opening minutes late, is worse than none) and, when the POS sent one,
its own idempotent job id (the same id twice is one job). ``send_state``
records how far a job got towards the printer (posd/lane/print_worker.py).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from posd.storage.db import compact_json, iso, parse_iso, utcnow, utcnow_iso

# Seconds a job may wait for the printer before it is dropped as expired.
DEFAULT_TTL_S = {"slip": 900.0, "redemption": 900.0, "reprint": 300.0, "drawer": 10.0}  # a voucher's slip is a slip
FALLBACK_TTL_S = 300.0
# The queued jobs, oldest first. The first term is print_jobs_open's own condition, word for word: SQLite
# uses a partial index only when the query's WHERE names it so, and without it every claim scanned every
# job kept for reprints.
_QUEUED = ("SELECT * FROM print_jobs WHERE state IN ('queued', 'printing') AND state = 'queued' "
           "ORDER BY created_at, job_id")
# What the worker may change on a job.
_FIELDS = frozenset({"state", "send_state", "last_error", "printed_at"})


class ClientJobIdReused(ValueError):
    """The POS's job id names a job for another slip (or another kind of job): not a retry."""


def ttl_for(kind: str) -> float:
    return DEFAULT_TTL_S.get(kind, FALLBACK_TTL_S)


@dataclass(frozen=True)
class PrintJob:
    job_id: str
    slip_id: str
    kind: str  # slip | redemption | reprint | drawer
    slip: str  # the slip's data as stored (JSON): parsed by the worker, so a bad one is set aside, not fatal
    attempts: int
    created_at: str
    expires_at: str  # after this it is never printed
    send_state: str | None  # None, sending, delivered
    client_job_id: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PrintJob:
        expires = row["expires_at"] or iso(parse_iso(row["created_at"]) + timedelta(seconds=ttl_for(row["kind"])))
        return cls(job_id=row["job_id"], slip_id=row["slip_id"], kind=row["kind"], slip=row["slip"],
                   attempts=row["attempts"], created_at=row["created_at"], expires_at=expires,
                   send_state=row["send_state"], client_job_id=row["client_job_id"])


def queue(conn: sqlite3.Connection, *, slip_id: str, kind: str, slip: dict[str, Any],
          client_job_id: str | None = None, ttl_s: float | None = None,
          member_id: str | None = None) -> tuple[str, bool]:
    """Queue a job; ``(job_id, created)``.

    The same ``client_job_id`` again returns the first job and queues nothing,
    so a POS retrying a request never gets two slips (or two drawer kicks). The id
    already naming a job for another slip or kind is ClientJobIdReused: answering with
    that job would tell the POS a slip it asked for is printing when nothing is.
    """
    if client_job_id is not None:
        row = conn.execute("SELECT job_id, slip_id, kind FROM print_jobs WHERE client_job_id = ?",
                           (client_job_id,)).fetchone()
        if row is not None:
            if (row["slip_id"], row["kind"]) != (slip_id, kind):
                raise ClientJobIdReused(client_job_id)
            return row["job_id"], False
    created = utcnow()
    ttl = ttl_s if ttl_s is not None else ttl_for(kind)
    row = [slip_id, slip_id, kind, compact_json(slip), iso(created), iso(created + timedelta(seconds=ttl)),
           client_job_id, member_id]
    # A slip's first job is named after it, its later ones by how many jobs it has. A new slip (a sale's,
    # a redemption's) has none yet: its job is inserted under the slip's name at once, one statement
    # instead of a count and an insert. A reprint always counts (its slip's first job may be forgotten).
    if kind != "reprint" and _insert_new(conn, row):
        return slip_id, True
    n = conn.execute("SELECT COUNT(*) FROM print_jobs WHERE slip_id = ?", (slip_id,)).fetchone()[0]
    # once finished jobs are forgotten the count can name a job still kept: the next free number then
    for n in range(n, n + _MAX_JOBS_PER_SLIP):
        row[0] = f"{slip_id}#{kind}{n}"
        if _insert_new(conn, row):
            return row[0], True
    raise ValueError(f"slip {slip_id} has {_MAX_JOBS_PER_SLIP} jobs named after it; no more are queued")


_MAX_JOBS_PER_SLIP = 10_000
_INSERT = ("INSERT INTO print_jobs (job_id, slip_id, kind, slip, created_at, expires_at, client_job_id, member_id) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING")


def _insert_new(conn: sqlite3.Connection, row: list[Any]) -> bool:
    """Insert the job unless its id is taken; whether it was."""
    return conn.execute(_INSERT, row).rowcount == 1


def member_of(conn: sqlite3.Connection, slip_id: str) -> str | None:
    row = conn.execute("SELECT member_id FROM print_jobs WHERE slip_id = ? ORDER BY created_at LIMIT 1",
                       (slip_id,)).fetchone()
    return row[0] if row else None


# What a slip says about the member personally: erasure blanks these and keeps the rest (points, ids).
PERSONAL_FIELDS = ("member_name", "offers")


def scrub_member(conn: sqlite3.Connection, member_ids: list[str]) -> int:
    """Erasure: the member's name and personal offers leave every slip kept for them."""
    done = 0
    for member_id in member_ids:
        done += conn.execute(
            "UPDATE print_jobs SET slip = json_set(slip, '$.member_name', '', '$.offers', json('[]')) "
            "WHERE member_id = ?", (member_id,)).rowcount
    return done


def slip_of(conn: sqlite3.Connection, slip_id: str) -> dict[str, Any] | None:
    """The slip's data as first queued (a reprint repeats it); None when unknown or forgotten."""
    row = conn.execute(
        "SELECT slip FROM print_jobs WHERE slip_id = ? ORDER BY created_at LIMIT 1", (slip_id,)
    ).fetchone()
    return json.loads(row[0]) if row else None


def jobs_of(conn: sqlite3.Connection, slip_id: str) -> list[dict[str, Any]]:
    """A slip's print jobs, first queued first: what a POS reads back after the stream said reset."""
    rows = conn.execute("SELECT job_id, kind, state, attempts, created_at, printed_at, last_error FROM print_jobs "
                        "WHERE slip_id = ? ORDER BY created_at, job_id", (slip_id,)).fetchall()
    keys = ("job_id", "kind", "state", "attempts", "created_at", "printed_at", "last_error")
    return [dict(zip(keys, row)) for row in rows]


def queue_reprint(conn: sqlite3.Connection, slip_id: str, client_job_id: str | None = None) -> tuple[str, bool] | None:
    """A copy of a slip, as a new job; ``(job_id, created)``, None when the slip is unknown."""
    data = slip_of(conn, slip_id)
    if data is None:
        return None
    data["reprint"] = True
    return queue(conn, slip_id=slip_id, kind="reprint", slip=data, client_job_id=client_job_id,
                 member_id=member_of(conn, slip_id))


def job_state(conn: sqlite3.Connection, job_id: str) -> str | None:
    row = conn.execute("SELECT state FROM print_jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else row[0]


def next_job(conn: sqlite3.Connection, whole_queue: bool = True) -> tuple[list[PrintJob], PrintJob | None]:
    """A read: ``(overdue, None)`` when queued jobs waited past their time (the writer expires them
    first: ``claim_next``), else ``([], the oldest queued job)``.

    The print worker takes its next job with this alone, on its own read connection, so a slip
    that prints costs the writer no commit for being taken. ``whole_queue=False`` judges only the
    oldest job (one indexed lookup): the worker looks through a long queue (a printer back after an
    hour offline) for overdue jobs now and then, not before every slip it drains."""
    now = utcnow_iso()
    overdue = _overdue(conn, now) if whole_queue else []
    if overdue:
        return overdue, None
    job = _oldest(conn)
    if job is not None and job.expires_at <= now:
        return [job], None
    return [], job


def claim_next(conn: sqlite3.Connection) -> tuple[list[PrintJob], PrintJob | None]:
    """Expire what waited too long; ``(expired, the oldest queued job still in time)``.

    The job is not marked: its attempt is made durable by the attempt's first commit (the one
    before its first byte leaves, or the one that puts it back: ``update(count_attempt=True)``)."""
    expired = _overdue(conn, utcnow_iso())
    for queued in expired:
        conn.execute("UPDATE print_jobs SET state = 'expired', last_error = 'ttl' WHERE job_id = ?",
                     (queued.job_id,))
    return expired, _oldest(conn)


# Queued jobs that may be past their time: a job queued before expires_at was always written has
# none, and is judged by its kind's time to live (PrintJob.from_row).
_MAYBE_OVERDUE = _QUEUED.replace(" ORDER BY", " AND (expires_at IS NULL OR expires_at <= ?) ORDER BY")


def _overdue(conn: sqlite3.Connection, now: str) -> list[PrintJob]:
    jobs = (PrintJob.from_row(row) for row in conn.execute(_MAYBE_OVERDUE, (now,)).fetchall())
    return [job for job in jobs if job.expires_at <= now]


def _oldest(conn: sqlite3.Connection) -> PrintJob | None:
    row = conn.execute(_QUEUED + " LIMIT 1").fetchone()
    return PrintJob.from_row(row) if row else None


def queued(conn: sqlite3.Connection) -> list[PrintJob]:
    return [PrintJob.from_row(row) for row in conn.execute(_QUEUED).fetchall()]


def update(conn: sqlite3.Connection, job_id: str, fields: dict[str, Any], count_attempt: bool = False) -> None:
    """Set the worker's fields of a job; ``count_attempt`` counts one more attempt at it in the same
    statement (the attempt's first commit)."""
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"print jobs have no field {', '.join(sorted(unknown))} to set")
    cols = ", ".join([f"{name} = ?" for name in fields] + (["attempts = attempts + 1"] if count_attempt else []))
    conn.execute(f"UPDATE print_jobs SET {cols} WHERE job_id = ?", (*fields.values(), job_id))


def requeue_interrupted(conn: sqlite3.Connection) -> None:
    """After a restart: a job that was being sent when the process died goes back in the queue."""
    conn.execute("UPDATE print_jobs SET state = 'queued' WHERE state = 'printing'")


def forget_finished(conn: sqlite3.Connection, before: datetime) -> int:
    """Delete printed, expired and failed jobs created before `before`; queued ones stay."""
    return conn.execute(
        "DELETE FROM print_jobs WHERE state IN ('printed', 'expired', 'failed') "
        "AND COALESCE(printed_at, created_at) < ?",
        (iso(before),)).rowcount
