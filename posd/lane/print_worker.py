"""The print worker: takes jobs from ledger.db's print queue to the printer, once.

Jobs are rows written in the same transaction as the sale, so a slip is never
lost to a crash. Each job has a time to live (a slip printed for the next
customer, or a cash drawer opening minutes late, is worse than none) and, when
the POS sent one, its own idempotent job id (the same id twice is one job).

Exactly once. The printer's status is read before and after every job
(``Printer.print_document``). The row's ``send_state`` records how far a job
got, committed before the first byte leaves:

- nothing left (the printer said offline / cover open / paper out before
  the job): held, sent normally once the printer is ready;
- ``delivered`` (every byte accepted, then a paper-out or cover-open): the
  printer holds the job and finishes it itself when the condition is
  cleared, so the job is marked printed when the printer reports ready
  again, without sending it a second time;
- ``sending`` (the connection broke mid-job, e.g. the printer lost power):
  the printer lost what it had; on its return we clear its buffers
  (DLE DC4 8) and send the whole job again.

Two durable commits per printed slip, both on the ledger's writer: the one
before the first byte (``state = 'printing'``, ``send_state = 'sending'``,
``attempts + 1``) and ``printed``. Taking the next job is a read on the
worker's own connection (``LedgerView.next_print_job``); the writer is asked
only when a job waited past its time (``claim_print_job`` expires it, and the
POS is told). The whole queue is looked through for such jobs at most every
EXPIRY_SCAN_S; in between only the job about to be printed is judged, so a
long queue drained after the printer was offline costs a lookup per slip, a
job behind it is told expired at most that much later, and none is ever
printed late (the deadline is checked again before the first byte).

A job stays ``queued`` until the commit before its first byte, which is
true: nothing of it has left while the printer's status is read, and a crash
then leaves it queued with nothing sent, to be sent once after the restart.
Every attempt is counted (``attempts + 1``) by its first commit, whichever it
is: the one before the first byte, or the one that puts the job back, sets it
aside or expires it when the attempt ends earlier (the printer offline before
the job, a slip that cannot be built), so a job that keeps failing for its
own reasons is still set aside after its attempts. A crash before an
attempt's first commit loses only that attempt's count, never a byte:
nothing was sent and nothing was decided.

After a crash of posd itself a job is back in the queue (``Ledger`` resets
``printing``); its ``send_state`` decides as above. Residual risks, by
design on the side of never twice: a crash between the last byte and the
``printed`` (or ``delivered``) commit resends (the printer may print twice);
a printer power-cycled while holding a ``delivered`` job is only noticed if
we saw it unreachable (else the slip is lost: the POS can reprint); a job cut
mid-way may leave a partial slip before the complete one.

A job that takes posd down with it (a crash in a printer's driver while it
is sent, a slip whose drawing exhausts memory) would be taken again after
every restart and bring the lane down again until its time ran out. The
worker notes the job in hand in a file beside ledger.db (``print-in-hand``,
its id and how many times posd died holding it) when it takes it, and clears
it once the attempt is over. A file, not a commit: it costs a slip no sync,
and it only has to outlive the process, which the page cache does. Found at
start, the note means posd died with that job in hand; the job that did so
MAX_CRASHES times running is set aside as ``failed`` (reason ``crashed``)
when it is next taken, and the lane goes on with the slips behind it.

A disk that refuses the worker's commits (full, failing, read-only: what
the storage layer calls a refusal, ``posd.storage.db.refusal_of``) is expected
on a lane, not a bug. No byte of a job leaves before its first commit is
made; the job is left as its last commit made it (queued, neither held for
the printer nor set aside: it is tried again at the worker's backoff; when
the refusal came after its first byte, ``printing``, taken again after a
restart as after a crash). The log says so in one line when the refusal
starts, again only when it changes or every REFUSAL_NOTE_S, and in one line
when a commit succeeds again; health names the disk meanwhile
(``ledger_unwritable``, from the ledger itself).

Printing blocks (sockets, USB), so the worker is a thread of its own.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from time import monotonic
from typing import Any

from posd.core.slip import SlipData, build_slip
from posd.faults import crash_point
from posd.lane.events import EventBus
from posd.storage.db import parse_iso, refusal_of, utcnow, utcnow_iso
from posd.storage.ledger import Ledger
from posd.storage.print_queue import PrintJob
from posd.storage.tx import PRINT

log = logging.getLogger("posd.print")

# Reprints and previews of a slip are possible for this long after it printed.
JOB_RETENTION = timedelta(days=30)
# How often at most the whole queue is looked through for jobs past their time; in between only the
# job about to be printed is judged (it never prints late: the check before its first byte is exact).
EXPIRY_SCAN_S = 1.0
# A job in hand when posd died this many times running is set aside, not taken again.
MAX_CRASHES = 3
IN_HAND_FILE = "print-in-hand"
# While the ledger refuses the worker's commits (a full disk), the log says so again this often.
REFUSAL_NOTE_S = 300.0


class JobExpired(Exception):
    """The job's time ran out while it waited; nothing was sent."""


IDLE_CHECK_S = 30.0  # how often an idle printer is asked its status


class PrintWorker:
    def __init__(self, ledger: Ledger, printer: Any, bus: EventBus, locale: str, *,
                 retry_base: float = 0.5, retry_cap: float = 5.0,
                 on_outcome: Callable[[str], None] | None = None, idle_check_s: float = IDLE_CHECK_S):
        """``on_outcome(state)`` for every print.status told (printed, held, expired, failed): metrics.
        ``idle_check_s``: with nothing to print, the printer's status is asked this often."""
        self.ledger, self.printer, self.bus, self.locale = ledger, printer, bus, locale
        self.on_outcome = on_outcome
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.idle_check_s = idle_check_s
        self._last_check = monotonic()  # the daemon asks once at start (posd.daemon)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_housekeeping = float("-inf")
        self._last_expiry_scan = float("-inf")
        self._failures = 0
        self._held: dict[str, str] = {}  # job_id -> reason already told to the POS
        self._counted = False  # the job in hand: its attempt already counted by a commit
        self._hand = InHand(ledger.path.parent / IN_HAND_FILE)
        # the refusal of the worker's commits in force (a full disk): (what it says, since, last logged)
        self._refusal: tuple[str, float, float] | None = None
        self.printed = 0
        ledger.subscribe(PRINT, self.wake)  # the ledger says when a committed unit queued a job

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
            if not self._thread.is_alive():
                self._hand.close()

    # -- the loop -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            expired, job = self._next_job()
            for row in expired:
                self._publish(row, "expired", "ttl")
            if job is None:
                self._housekeeping()
                self._check_when_idle()
                self._wake.wait(min(5.0, self.idle_check_s))
                self._wake.clear()
                continue
            self._counted = False
            if self._hand.take(job.job_id) >= MAX_CRASHES:
                self._set_aside_crashed(job)
                continue
            try:
                printed = self._print(job)
            except Exception as exc:  # a bug or a broken disk must not end the thread: later slips still print
                if not self._refused(exc):  # a refused commit: the job stays queued as it was, tried again
                    log.exception("slip %s: unexpected error while printing", job.slip_id)
                    self._set_aside_or_retry(job)
                printed = False
            self._hand.done()
            self._last_check = monotonic()  # a job is a status check: before and after it
            if printed:
                self._failures = 0
                continue
            self._failures += 1
            cap = min(self.retry_cap, self.retry_base * 2 ** min(self._failures, 10))
            # A job queued meanwhile ends the wait: the printer is asked again and the new slip,
            # still held, is told so at once rather than at the next retry.
            if self._wake.wait(random.uniform(cap / 2, cap)):
                self._wake.clear()

    def _next_job(self) -> tuple[list[PrintJob], PrintJob | None]:
        """(jobs just expired, the next job): a read, and a write only when something waited too long."""
        now = monotonic()
        whole_queue = now - self._last_expiry_scan >= EXPIRY_SCAN_S
        try:
            overdue, job = self.ledger.view().next_print_job(whole_queue)
            if whole_queue:
                self._last_expiry_scan = now
            if not overdue:
                return [], job
            expired_and_next = self._commit(lambda tx: tx.claim_print_job())  # looks through it all
            self._last_expiry_scan = now
            return expired_and_next
        except Exception as exc:
            if not self._refused(exc):  # refused: the queue waits, the jobs stay queued
                log.exception("print queue unreadable")
            return [], None

    def _check_when_idle(self) -> None:
        """Ask an idle printer how it is, every ``idle_check_s``: one switched off, out of paper or
        unplugged while nothing printed showed ready in health and on the status page until the
        next customer's slip was held."""
        check = getattr(self.printer, "check_ready", None)
        if check is None or not getattr(self.printer, "checks_when_idle", False) \
                or monotonic() - self._last_check < self.idle_check_s:
            return
        self._last_check = monotonic()
        try:
            check()  # sets the printer's state: health, the status page and device.status hear it
        except Exception:
            log.exception("printer status check failed")

    def _housekeeping(self) -> None:
        """When idle, at most hourly: forget finished jobs older than JOB_RETENTION.

        A slip's data is about 40% of what ledger.db grows by per sale; once it is long
        printed it serves only reprints and previews. The ledger, the outbox and the
        idempotency records are never pruned here.
        """
        now = monotonic()
        if now - self._last_housekeeping < 3600:
            return
        self._last_housekeeping = now
        try:
            removed = self._commit(lambda tx: tx.forget_finished_jobs(utcnow() - JOB_RETENTION))
        except Exception as exc:
            if not self._refused(exc):  # refused: the next idle hour tries again
                log.exception("print job housekeeping failed")
            return
        if removed:
            log.info("forgot %d finished print jobs older than %d days", removed, JOB_RETENTION.days)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set_aside_or_retry(self, job: PrintJob, max_attempts: int = 3) -> None:
        """A job that fails for its own reasons is retried a few times, then set aside as failed,
        so it cannot hold every later slip behind it (the POS can still reprint it)."""
        give_up = job.attempts >= max_attempts
        try:
            self._set(job.job_id, state="failed" if give_up else "queued", last_error="internal")
        except Exception as exc:
            if not self._refused(exc):
                log.exception("print queue unwritable")
            return
        if give_up:
            self._publish(job, "failed", "internal")

    def _set_aside_crashed(self, job: PrintJob) -> None:
        """posd died MAX_CRASHES times running with this job in hand: it is not sent again."""
        log.error("print job %s set aside: posd stopped %d times running while printing it", job.job_id,
                  MAX_CRASHES)
        try:
            self._set(job.job_id, state="failed", last_error="crashed")
        except Exception as exc:
            if not self._refused(exc):
                log.exception("print queue unwritable")
            return
        self._hand.done()
        self._publish(job, "failed", "crashed")

    def _print(self, job: PrintJob) -> bool:
        """One attempt; True when the job is done (printed or expired)."""
        job_id = job.job_id
        if job.send_state == "delivered":
            return self._finish_delivered(job)
        if job.send_state == "sending":
            self._clear_printer_buffers()
        try:
            self._send(job)
        except JobExpired:
            self._set(job_id, state="expired", last_error="ttl")
            self._publish(job, "expired", "ttl")
            return True
        except Exception as exc:
            if refusal_of(exc, self.ledger.path) is not None:
                raise  # the commit before the first byte, refused: nothing was sent, it is not the printer's
            return self._failed(job, exc)
        crash_point("after_print_before_mark")
        self._mark_printed(job)
        return True

    def _send(self, job: PrintJob) -> None:
        deadline = parse_iso(job.expires_at)

        def before_send() -> None:
            # Checked again here: the job may have waited on a slow status read or reconnect.
            if utcnow() >= deadline:
                raise JobExpired(job.job_id)
            crash_point("before_print_send_commit")
            # the attempt counted, the job marked being sent: one commit, before the first byte
            self._set(job.job_id, state="printing", send_state="sending")
            crash_point("after_print_send_commit")

        if job.kind == "drawer":
            kick = getattr(self.printer, "kick_drawer", None)
            if kick is None:
                raise JobExpired(job.job_id)  # this printer has no drawer port: never fire later
            kick(before_send=before_send)
            return
        doc = build_slip(SlipData.from_json(json.loads(job.slip)), self.locale)
        if job.job_id != job.slip_id:
            # a copy is a document of its own (slip#reprint1 -> slip~reprint1): a preview
            # keeps the original's files and adds the copy's beside them
            doc = replace(doc, slip_id=job.job_id.replace("#", "~"))
        self.printer.print_document(doc, before_send=before_send)

    def _failed(self, job: PrintJob, exc: Exception) -> bool:
        if isinstance(exc.__cause__, JobExpired) or isinstance(exc, JobExpired):
            self._set(job.job_id, state="expired", last_error="ttl")
            self._publish(job, "expired", "ttl")
            return True
        if getattr(exc, "reason", None) is None and not isinstance(exc, OSError):
            # not the printer's doing (a slip that cannot be built): retry a little, then set it aside
            log.error("slip %s cannot be printed: %s", job.slip_id, type(exc).__name__)
            self._set_aside_or_retry(job)
            return False
        reason = getattr(exc, "reason", None) or "io_error"
        if getattr(exc, "delivered", False):
            send_state = "delivered"  # the printer holds the whole job
        elif getattr(exc, "sent", False):
            send_state = "sending"  # part of it may have gone: clear and resend
        else:
            send_state = job.send_state
        self._set(job.job_id, state="queued", last_error=reason, send_state=send_state)
        self._hold(job, reason)
        return False

    def _finish_delivered(self, job: PrintJob) -> bool:
        """The printer has the whole job: done once it says it is ready, never sent again."""
        check = getattr(self.printer, "check_ready", None)
        reason = check() if check else None
        if reason is None:
            self._mark_printed(job)
            return True
        if getattr(self.printer, "reachable", True) is False:
            # Unreachable: most likely switched off, and its buffer went with it.
            self._set(job.job_id, state="queued", last_error=reason, send_state="sending")
        else:
            self._set(job.job_id, state="queued", last_error=reason)
        self._hold(job, reason)
        return False

    def _clear_printer_buffers(self) -> None:
        clear = getattr(self.printer, "clear_buffers", None)
        if clear is not None:
            try:
                clear()
            except Exception as exc:  # the job attempt that follows reports the problem
                log.debug("clearing printer buffers failed: %s", type(exc).__name__)

    # -- bookkeeping ------------------------------------------------------------
    def _mark_printed(self, job: PrintJob) -> None:
        self._set(job.job_id, state="printed", printed_at=utcnow_iso(), last_error=None)
        self.printed += 1
        self._held.pop(job.job_id, None)
        self._publish(job, "printed", None)

    def _hold(self, job: PrintJob, reason: str) -> None:
        """The job waits for the printer, and so does every slip queued behind it: the POS hears
        about each of them (once per reason, not per retry), and again when each prints."""
        self._tell_held(job, reason)
        try:
            waiting = self.ledger.view().queued_print_jobs()
        except Exception:
            log.exception("print queue unreadable")
            return
        for other in waiting:
            if other.job_id != job.job_id:
                self._tell_held(other, reason)

    def _tell_held(self, job: PrintJob, reason: str) -> None:
        if self._held.get(job.job_id) != reason:
            self._held[job.job_id] = reason
            self._publish(job, "held", reason)
            log.warning("print job %s held: %s", job.job_id, reason)

    def _publish(self, job: PrintJob, state: str, reason: str | None) -> None:
        if state != "held":
            self._held.pop(job.job_id, None)
        self.bus.publish("print.status", {
            "job_id": job.job_id, "slip_id": job.slip_id, "kind": job.kind,
            "client_job_id": job.client_job_id, "state": state, "reason": reason,
        })
        if state != "held":
            log.info("print job %s %s%s", job.job_id, state, f": {reason}" if reason else "")
        if self.on_outcome is not None:
            try:
                self.on_outcome(state)
            except Exception:
                log.exception("print outcome callback failed")

    def _set(self, job_id: str, **fields: Any) -> None:
        """A durable change to the job in hand; the attempt's first one also counts the attempt."""
        count = not self._counted
        self._commit(lambda tx: tx.update_print_job(job_id, count_attempt=count, **fields))
        self._counted = True

    def _commit(self, fn: Callable[[Any], Any]) -> Any:
        """A commit of the worker's; the first to succeed after a refusal says the queue is writable again."""
        result = self.ledger.write(fn)
        if self._refusal is not None:
            since = self._refusal[1]
            self._refusal = None
            log.info("print queue writable again after %.0f s: the slips waiting in it print now", monotonic() - since)
        return result

    def _refused(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the storage refusing a write (a full disk: expected, not a bug), logged
        in one line without a traceback when the refusal starts or changes, and every REFUSAL_NOTE_S
        while it lasts: not on every retry."""
        why = refusal_of(exc, self.ledger.path)
        if why is None:
            return False
        now = monotonic()
        if self._refusal is None or self._refusal[0] != why:
            self._refusal = (why, now if self._refusal is None else self._refusal[1], now)
            log.warning("print queue cannot be written: %s; slips wait in the queue, none is sent before "
                        "its commit is made, and they print once the disk takes writes again", why)
        elif now - self._refusal[2] >= REFUSAL_NOTE_S:
            self._refusal = (why, self._refusal[1], now)
            log.warning("print queue still cannot be written after %.0f s: %s", now - self._refusal[1], why)
        return True


class InHand:
    """The print job in the worker's hands, noted in a file (``job_id crashes``) that outlives the
    process but is never synced: a note found at start says posd died holding that job."""

    def __init__(self, path: Path):
        self.path = path
        self._died: tuple[str, int] | None = None  # (job id, times posd died holding it), read at start
        try:
            job_id, _, crashes = path.read_text(encoding="ascii").strip().rpartition(" ")
            if job_id:
                self._died = (job_id, int(crashes) + 1)
                log.warning("posd stopped while print job %s was in hand (%d time(s) running)", *self._died)
        except (OSError, ValueError):  # no note (the usual start), or one cut short: nothing to count
            pass
        self._fd: int | None = None

    def take(self, job_id: str) -> int:
        """Note ``job_id`` in hand; how many times running posd died holding it."""
        crashes = self._died[1] if self._died and self._died[0] == job_id else 0
        self._put_note(f"{job_id} {crashes}".encode("ascii", "replace"))
        return crashes

    def done(self) -> None:
        """The attempt is over, whatever became of it: no job in hand. (What posd's earlier deaths
        say of a job still counts when it is taken again, after being held.)"""
        self._put_note(b"")

    def _put_note(self, note: bytes) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(self._fd, 0)
            if note:
                os.pwrite(self._fd, note, 0)
        except OSError as exc:  # a full or read-only disk: the lane prints on, without the guard
            log.debug("print-in-hand note not written: %s", exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
