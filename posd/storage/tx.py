"""The unit of work over ledger.db: what a lane service may read and write, as verbs.

A service never holds a connection. It reads through a ``LedgerView`` (a
reader's connection, or the writer's inside a unit) and writes inside one
unit of work, a function the ledger's writer runs under BEGIN IMMEDIATE with
a ``LedgerTx``: the view's reads plus the writes. The SQL behind each verb
lives once, in the module of its tables (entries, outbox, print_queue,
records, vouchers, meta). The unit also notes what happened, so after the
COMMIT the ledger tells whoever subscribed (the relay, the print worker).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from posd.core.program import Program
from posd.storage import enrolments, entries, member_tokens, meta, outbox, print_queue, records, vouchers
from posd.storage.entries import Entry
from posd.storage.print_queue import PrintJob
from posd.storage.records import Earlier, ReturnRecord, SaleRecord
from posd.storage.vouchers import Use
from posd.sync.lane.ports import EventResult, OutboxEvent, OutboxStats

# What a unit can announce after its commit.
OUTBOX = "outbox"  # an event for central was appended
PRINT = "print"  # a print job was queued
VOUCHER = "voucher"  # a voucher was issued: other lanes know it once central has its redemption
TOPICS = (OUTBOX, PRINT, VOUCHER)


class LedgerView:
    """Reads over one connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    # -- idempotency records --------------------------------------------------
    def earlier(self, what: str, key: str, request_hash: str) -> Earlier | None:
        """The first answer to a request id (`what` is transaction_id, return_id or redemption_id)."""
        return records.earlier(self._conn, what, key, request_hash)

    def sale(self, transaction_id: str) -> SaleRecord | None:
        return records.sale(self._conn, transaction_id)

    def returns_of(self, transaction_id: str) -> list[ReturnRecord]:
        return records.returns_of(self._conn, transaction_id)

    # ``aliases`` (here and below): the provisional ids central mapped to the member; what the lane
    # recorded under them is the member's (a birthday, a daily limit, an offline cap, a coupon).
    def birthday_awarded(self, member_id: str, year: int, aliases: tuple[str, ...] = ()) -> bool:
        return records.birthday_awarded(self._conn, member_id, year, aliases)

    def redemptions_since(self, member_id: str, reward_id: str, since: str, aliases: tuple[str, ...] = ()) -> int:
        return records.redemptions_since(self._conn, member_id, reward_id, since, aliases)

    def voucher_issue_seq(self, code: str) -> int | None:
        return records.voucher_issue_seq(self._conn, code)

    def unsynced_redeemed(self, member_id: str | None = None, aliases: tuple[str, ...] = ()) -> int:
        return records.unsynced_redeemed(self._conn, member_id, aliases)

    def unsynced_offline_uses(self, member_id: str | None = None, aliases: tuple[str, ...] = ()) -> int:
        return vouchers.unsynced_offline_uses(self._conn, member_id, aliases)

    def program_body(self, version: str) -> dict[str, Any] | None:
        return meta.program_body(self._conn, version)

    def last_sale_at(self) -> str | None:
        """When the latest sale was recorded (UTC ISO), for health; None before the first."""
        return records.last_sale_at(self._conn)

    def meta(self, key: str) -> str | None:
        return meta.read(self._conn, key)

    # -- members at the till ---------------------------------------------------
    def enrolment(self, identifier: str) -> dict[str, Any] | None:
        """A member enrolled here under a provisional id, by identifier or by that id."""
        return enrolments.find(self._conn, identifier)

    def token_used(self, token_id: str) -> bool:
        return member_tokens.used(self._conn, token_id)

    # -- balances -------------------------------------------------------------
    def balance(self, member_id: str, confirmed: dict[str, int], watermark: int,
                now: datetime, aliases: tuple[str, ...] = (), held: dict[str, int] | None = None
                ) -> dict[str, dict[str, int]]:
        """``aliases``: provisional ids central mapped to this member; their entries are the member's.
        ``held``: central's points still pending (entries.balance)."""
        return entries.balance(self._conn, member_id, confirmed, watermark, now, aliases, held)

    def unsynced_entries(self, member_id: str, watermark: int, now: datetime, limit: int,
                         aliases: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The member's entries above central's watermark that central's own balance may lack, per event."""
        return entries.unsynced(self._conn, member_id, watermark, now, limit, aliases)

    # -- vouchers -------------------------------------------------------------
    def voucher(self, code: str) -> dict[str, Any] | None:
        return vouchers.find(self._conn, code)

    def vouchers_of(self, member_id: str, aliases: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return vouchers.of_member(self._conn, member_id, aliases)

    def voucher_use(self, code: str, key: str, aliases: tuple[str, ...] = ()) -> Use | None:
        return vouchers.use_of(self._conn, code, key, aliases)

    def voucher_use_in(self, code: str, transaction_id: str) -> Use | None:
        return vouchers.use_in(self._conn, code, transaction_id)

    # -- print queue and outbox -----------------------------------------------
    def slip(self, slip_id: str) -> dict[str, Any] | None:
        return print_queue.slip_of(self._conn, slip_id)

    def slip_jobs(self, slip_id: str) -> list[dict[str, Any]]:
        return print_queue.jobs_of(self._conn, slip_id)

    def outbox_stats(self) -> OutboxStats:
        return outbox.stats(self._conn)

    def quarantined(self, limit: int | None = None) -> list[outbox.Quarantined]:
        return outbox.quarantined_events(self._conn, limit)

    def quarantined_after(self, seq: int) -> int:
        return outbox.quarantined_after(self._conn, seq)

    def acknowledged_seq(self, folder: Path) -> int:
        """The quarantined seq acknowledged in ``folder`` for this ledger (outbox.acknowledged_seq)."""
        return outbox.acknowledged_seq(folder, self._conn)

    def pending_events(self, max_events: int, max_bytes: int, after: int = 0) -> list[OutboxEvent]:
        return outbox.pending(self._conn, max_events, max_bytes, after)

    def event_id_at(self, seq: int) -> str | None:
        return outbox.event_id_at(self._conn, seq)

    def print_job_state(self, job_id: str) -> str | None:
        """queued, printing, printed, failed or expired; None for a job this ledger does not hold."""
        return print_queue.job_state(self._conn, job_id)

    def queued_print_jobs(self) -> list[PrintJob]:
        """Jobs waiting for the printer, oldest first."""
        return print_queue.queued(self._conn)

    def next_print_job(self, whole_queue: bool = True) -> tuple[list[PrintJob], PrintJob | None]:
        """(queued jobs past their time, the oldest queued job in time): the print worker's read."""
        return print_queue.next_job(self._conn, whole_queue)


class LedgerTx(LedgerView):
    """One unit of work: the reads of a view plus the writes, inside the writer's transaction."""

    __slots__ = ("happened", "programs", "_known_programs", "_seqs")

    def __init__(self, conn: sqlite3.Connection, known_programs: frozenset[str] | set[str] = frozenset(),
                 seqs: outbox.SeqCounter | None = None):
        super().__init__(conn)
        self.happened: set[str] = set()  # topics to announce after the commit
        self.programs: set[str] = set()  # program versions this unit stored
        self._known_programs = known_programs
        self._seqs = seqs or outbox.SeqCounter()  # the writer's, carried across its units

    # -- outbox ---------------------------------------------------------------
    def append_event(self, event_type: str, fields: dict[str, Any]) -> int:
        """An event for central; its seq."""
        self.happened.add(OUTBOX)
        return outbox.append(self._conn, event_type, fields, self._seqs)

    def record_results(self, results: list[EventResult]) -> None:
        outbox.record_results(self._conn, results)

    # -- entries and lots -----------------------------------------------------
    def add_entries(self, new: list[Entry]) -> None:
        entries.add(self._conn, new)

    def debit(self, entry: Entry, confirmed: int, watermark: int, now: datetime,
              aliases: tuple[str, ...] = ()) -> None:
        """A debit drawn from central's confirmed points first, then local lots soonest-expiring first."""
        entry_id = entries.add_one(self._conn, entry)
        plan = entries.draw(self._conn, entry.member_id, entry.currency, -entry.points, confirmed, watermark, now,
                            aliases)
        entries.allocate(self._conn, entry_id, plan)

    def reverse(self, entry: Entry, sale: SaleRecord, watermark: int) -> None:
        """A reversal taken from the sale's own lots first, the rest from the pool."""
        lots = entries.earned_lots(self._conn, sale.member_id, sale.seq, entry.currency, watermark) \
            if sale.member_id and sale.seq is not None else []
        entry_id = entries.add_one(self._conn, entry)
        entries.allocate(self._conn, entry_id, entries.reverse_from(self._conn, lots, -entry.points))

    # -- members at the till ---------------------------------------------------
    def record_token_use(self, *, token_id: str, scheme: str, member_id: str, valid_until: str, used_at: str,
                         event: dict[str, Any], step_start: int | None = None) -> int | None:
        """A member token accepted here, with its token_use event for central; the event's seq,
        or None when this lane accepted the token before (a replay: nothing is written).
        ``step_start`` (wallet codes): when the code's time step began; a step not later than
        the member's last accepted one is a replay too."""
        if member_tokens.used(self._conn, token_id):
            return None
        if step_start is not None:
            last = member_tokens.last_wallet_step(self._conn, member_id)
            if last is not None and step_start <= last:
                return None
            member_tokens.record_wallet_step(self._conn, member_id, step_start, used_at)
        seq = self.append_event("token_use", event)
        member_tokens.record(self._conn, token_id=token_id, scheme=scheme, member_id=member_id,
                             valid_until=valid_until, used_at=used_at, seq=seq)
        return seq

    def store_enrolment(self, **fields: Any) -> None:
        """A member enrolled here (posd.storage.enrolments.store names the fields)."""
        enrolments.store(self._conn, **fields)

    def forget_members(self, member_ids: list[str]) -> int:
        """Erasure of members central deleted: their names and offers leave the slips kept here,
        their enrolment data, the enrolment events central already has, and their sales' birth
        dates. Ledger entries keep the member id only. The number of rows scrubbed."""
        return (print_queue.scrub_member(self._conn, member_ids) + enrolments.forget(self._conn, member_ids)
                + outbox.scrub_enrolments(self._conn, member_ids) + records.scrub_birth_dates(self._conn, member_ids))

    # -- idempotency records --------------------------------------------------
    def store_sale(self, **fields: Any) -> str:
        """The sale's idempotency record (posd.storage.records.record_sale names the fields); the
        answer's JSON as stored, to be sent as it is. ``records.AlreadyRecorded`` when the transaction
        id has its record already (the unit must then fail, so that nothing of it is kept)."""
        return records.record_sale(self._conn, **fields)

    def award_birthday(self, member_id: str, year: int, transaction_id: str) -> None:
        records.award_birthday(self._conn, member_id, year, transaction_id)

    def store_return(self, **fields: Any) -> None:
        records.record_return(self._conn, **fields)

    def store_redemption(self, **fields: Any) -> None:
        records.record_redemption(self._conn, **fields)

    def store_program(self, program: Program, at: str) -> None:
        """Keep the program version a sale earned under (once: later sales skip the serialisation)."""
        if program.version not in self._known_programs:
            meta.store_program(self._conn, program.version, program.raw, at)
            self.programs.add(program.version)

    def set_meta(self, key: str, value: str) -> None:
        meta.write(self._conn, key, value)

    # -- vouchers -------------------------------------------------------------
    def issue_voucher(self, **fields: Any) -> None:
        self.happened.add(VOUCHER)
        vouchers.issue(self._conn, **fields)

    def record_voucher_use(self, *, code: str, key: str, transaction_id: str, seq: int,
                           response: dict[str, Any], used_at: str, holder: str | None = None,
                           offline: bool = False, request_hash: str | None = None) -> None:
        vouchers.record_use(self._conn, code=code, key=key, transaction_id=transaction_id, seq=seq,
                            response=response, used_at=used_at, holder=holder, offline=offline,
                            request_hash=request_hash)

    # -- print queue ----------------------------------------------------------
    def queue_print_job(self, *, slip_id: str, kind: str, slip: dict[str, Any], client_job_id: str | None = None,
                        ttl_s: float | None = None, member_id: str | None = None) -> tuple[str, bool]:
        job_id, created = print_queue.queue(self._conn, slip_id=slip_id, kind=kind, slip=slip,
                                            client_job_id=client_job_id, ttl_s=ttl_s, member_id=member_id)
        if created:
            self.happened.add(PRINT)
        return job_id, created

    def queue_reprint(self, slip_id: str, client_job_id: str | None = None) -> str | None:
        queued = print_queue.queue_reprint(self._conn, slip_id, client_job_id)
        if queued is None:
            return None
        if queued[1]:
            self.happened.add(PRINT)
        return queued[0]

    def claim_print_job(self) -> tuple[list[PrintJob], PrintJob | None]:
        return print_queue.claim_next(self._conn)

    def update_print_job(self, job_id: str, *, count_attempt: bool = False, **fields: Any) -> None:
        print_queue.update(self._conn, job_id, fields, count_attempt)

    def forget_finished_jobs(self, before: datetime) -> int:
        return print_queue.forget_finished(self._conn, before)
