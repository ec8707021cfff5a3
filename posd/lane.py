"""Lane services: identify a member from a scan, show a member, record a sale.

Orchestration only: the rules engine and slip layout are pure (posd.core),
storage is posd.storage, and devices reach us as typed ScanData.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from posd.core.identify import identify_code
from posd.core.program import Program, ProgramError, parse_program
from posd.core.rules import Basket, BasketLine, RuleError, compute_accrual
from posd.core.slip import SlipData
from posd.events import EventBus
from posd.faults import crash_point
from posd.storage.cache import Cache, CachedMember
from posd.storage.db import iso, parse_iso, utcnow_iso
from posd.storage.ledger import Ledger

log = logging.getLogger("posd.lane")

STALE_AFTER = timedelta(hours=24)


class LaneError(Exception):
    """An error the POS caused or can act on: HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class TransactionInput:
    transaction_id: str
    member: str | None
    occurred_at: datetime
    currency: str
    total: int
    lines: tuple[BasketLine, ...]
    request_hash: str


@dataclass(frozen=True)
class Recorded:
    response: dict[str, Any]
    replayed: bool


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Lane:
    def __init__(self, *, store_id: str, lane_id: str, locale: str, ledger: Ledger, cache: Cache,
                 bus: EventBus, printer_enabled: bool, is_offline=lambda: False, timezone: str = "UTC"):
        self.store_id, self.lane_id, self.locale = store_id, lane_id, locale
        self.tz = ZoneInfo(timezone)
        self.ledger, self.cache, self.bus = ledger, cache, bus
        self.printer_enabled = printer_enabled
        self.is_offline = is_offline
        self._program: tuple[str, Program] | None = None
        self._program_lock = threading.Lock()
        self.print_wakeups: list = []

    # -- program ----------------------------------------------------------
    def program(self) -> Program | None:
        row = self.cache.program_row()
        if row is None:
            return None
        with self._program_lock:
            if self._program is None or self._program[0] != row["etag"]:
                try:
                    self._program = (row["etag"], parse_program(json.loads(row["body"])))
                except (ProgramError, ValueError) as exc:
                    log.error("cached program unusable: %s", exc)
                    return self._program[1] if self._program else None
            return self._program[1]

    # -- identify (runs in the device's reader thread) --------------------
    def on_scan(self, device: str, data: str, symbology: str | None = None) -> None:
        found = identify_code(data)
        if found.kind == "payment_card":
            # The digits stop here: no log line, no event field, no table carries them.
            self.bus.publish("card.rejected", {"device": device, "reason": "payment_card"})
            return
        if found.kind == "invalid":
            self.bus.publish("scan", {"device": device, "symbology": symbology, "kind": "invalid"})
            return
        code = found.code or ""
        self.bus.publish("scan", {"device": device, "symbology": symbology, "kind": "code", "data": code})
        member = self.cache.find_member(code)
        if member is None or member.status == "deleted":
            self.bus.publish("member.unknown", {"device": device, "identifier": code})
        else:
            self.bus.publish("member.identified", {"device": device, "identifier": code,
                                                   "member": self.member_view(member)})

    # -- member view ------------------------------------------------------
    def find_member(self, identifier: str) -> CachedMember:
        found = identify_code(identifier)
        if found.kind == "payment_card":
            raise LaneError(422, "payment_card", "that is a payment card number; it was not stored")
        member = self.cache.find_member(identifier) if found.kind == "member_code" else None
        if member is None or member.status == "deleted":
            raise LaneError(404, "unknown_member", "not a member")
        return member

    def balances(self, member: CachedMember, conn: sqlite3.Connection | None = None) -> dict[str, dict[str, int]]:
        local = self.ledger.local_points(member.member_id, member.applied_seq, conn)
        out = {}
        for cur in sorted(set(member.balances) | set(local)):
            confirmed, pending = member.balances.get(cur, 0), local.get(cur, 0)
            out[cur] = {"confirmed": confirmed, "pending": pending, "total": confirmed + pending}
        return out

    def member_view(self, member: CachedMember) -> dict[str, Any]:
        program = self.program()
        tier = program.tier(member.tier) if program else None
        nxt = program.next_tier(member.tier) if program else None
        synced = self.cache.state("members_synced_at") or member.updated_at
        stale = not synced or datetime.now(UTC) - parse_iso(synced) > STALE_AFTER
        return {
            "member_id": member.member_id,
            "display_name": member.display_name,
            "locale": member.locale,
            "status": member.status,
            "tier": {"id": member.tier, "name": tier.name(self.locale) if tier else member.tier,
                     "multiplier": str(tier.multiplier) if tier else "1"},
            "progress": None if nxt is None else {
                "next_tier": {"id": nxt.tier_id, "name": nxt.name(self.locale)},
                "qualifying": member.qualifying,
                "threshold": nxt.threshold,
                "points_needed": max(0, nxt.threshold - member.qualifying),
            },
            "balances": self.balances(member),
            "rewards_available": [],
            "offers": member.offers,
            "as_of": synced,
            "stale": stale,
        }

    # -- checkout ---------------------------------------------------------
    def replayed(self, tx: TransactionInput) -> Recorded | None:
        row = self.ledger.reader().execute(
            "SELECT request_hash, response FROM transactions WHERE transaction_id = ?", (tx.transaction_id,)
        ).fetchone()
        return _replay(row, tx) if row else None

    async def record_transaction(self, tx: TransactionInput) -> Recorded:
        earlier = self.replayed(tx)
        if earlier:
            return earlier
        member = self.find_member(tx.member) if tx.member else None
        if member is not None and member.status != "active":
            raise LaneError(422, "member_ineligible", f"the member's account is {member.status}")
        program = self.program()
        if program is None:
            raise LaneError(503, "program_unavailable", "no loyalty program yet: the lane has not synced once")
        basket = Basket(currency=tx.currency, total=tx.total, lines=tx.lines)
        try:
            accrual = compute_accrual(program, basket, member.tier if member else None)
        except RuleError as exc:
            raise LaneError(422, exc.code, str(exc)) from exc
        offline = self.is_offline()
        recorded = await self.ledger.awrite(lambda conn: self._write_sale(conn, tx, member, accrual, program, offline))
        crash_point("after_commit_before_answer")
        if not recorded.replayed:
            self.ledger.outbox_written()
            if recorded.response["slip"]["state"] == "queued":
                for wake in self.print_wakeups:
                    wake()
        return recorded

    def _write_sale(self, conn, tx: TransactionInput, member, accrual, program: Program, offline: bool) -> Recorded:
        row = conn.execute("SELECT request_hash, response FROM transactions WHERE transaction_id = ?",
                           (tx.transaction_id,)).fetchone()
        if row:  # a concurrent retry won the race: answer what it answered
            return _replay(row, tx)
        now = utcnow_iso()
        occurred = iso(tx.occurred_at)
        seq = None
        points = {c: p for c, p in accrual.points.items() if p}
        if member is not None:
            seq = self.ledger.append_event(conn, "accrual", {
                "transaction_id": tx.transaction_id, "member_id": member.member_id, "occurred_at": occurred,
                "currency": tx.currency, "total": tx.total,
                "lines": [_line_json(line) for line in tx.lines],
                "points": accrual.points, "program_version": accrual.program_version, "offline": offline,
            })
            conn.executemany(
                "INSERT INTO ledger_entries (kind, member_id, currency, points, transaction_id, seq, "
                "occurred_at, recorded_at, program_version) VALUES ('earn', ?, ?, ?, ?, ?, ?, ?, ?)",
                [(member.member_id, cur, pts, tx.transaction_id, seq, occurred, now, accrual.program_version)
                 for cur, pts in points.items()],
            )
        balance = self.balances(member, conn) if member else {}
        slip_state = "none"
        if member is not None and self.printer_enabled:
            slip_state = "queued"
            self._queue_slip(conn, tx, member, accrual.points, balance, program, occurred, now)
        response = {
            "transaction_id": tx.transaction_id,
            "member_id": member.member_id if member else None,
            "accrual": {"points": accrual.points, "trace": accrual.trace,
                        "program_version": accrual.program_version},
            "balance": balance,
            "slip": {"slip_id": tx.transaction_id if slip_state == "queued" else None, "state": slip_state},
            "seq": seq,
            "offline": offline,
            "recorded_at": now,
        }
        conn.execute(
            "INSERT INTO transactions (transaction_id, request_hash, member_id, occurred_at, currency, "
            "total_minor, program_version, seq, response, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (tx.transaction_id, tx.request_hash, member.member_id if member else None, occurred, tx.currency,
             tx.total, accrual.program_version, seq, json.dumps(response), now),
        )
        return Recorded(response, replayed=False)

    def _queue_slip(self, conn, tx, member: CachedMember, earned, balance, program: Program, occurred, now) -> None:
        tier = program.tier(member.tier)
        nxt = program.next_tier(member.tier)
        slip = SlipData(
            slip_id=tx.transaction_id, store_id=self.store_id, lane_id=self.lane_id,
            transaction_id=tx.transaction_id, member_name=member.display_name,
            occurred_at=tx.occurred_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M"),
            tier_name=tier.name(self.locale) if tier else None, earned=earned,
            balance={c: b["total"] for c, b in balance.items()},
            pending={c: b["pending"] for c, b in balance.items()},
            next_tier=None if nxt is None else {"name": nxt.name(self.locale),
                                                "points_needed": max(0, nxt.threshold - member.qualifying)},
        )
        conn.execute(
            "INSERT INTO print_jobs (job_id, slip_id, kind, slip, created_at) VALUES (?, ?, 'slip', ?, ?)",
            (tx.transaction_id, tx.transaction_id, json.dumps(slip.to_json()), now),
        )


def _replay(row, tx: TransactionInput) -> Recorded:
    if row["request_hash"] != tx.request_hash:
        raise LaneError(409, "transaction_id_conflict",
                        "this transaction_id was already used for a different transaction")
    return Recorded(json.loads(row["response"]), replayed=True)


def _line_json(line: BasketLine) -> dict[str, Any]:
    return {"sku": line.sku, "category": line.category, "quantity": str(line.quantity),
            "unit_price": line.unit_price, "discount": line.discount}
