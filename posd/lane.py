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
from posd.core.rules import BasketLine
from posd.core.slip import SlipData
from posd.events import EventBus
from posd.storage import lots
from posd.storage.cache import Cache, CachedMember
from posd.storage.db import parse_iso, utcnow_iso
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
                 bus: EventBus, printer_enabled: bool, is_offline=lambda: False, timezone: str = "UTC",
                 clock=lambda: datetime.now(UTC)):
        self.store_id, self.lane_id, self.locale = store_id, lane_id, locale
        self.tz = ZoneInfo(timezone)
        self.ledger, self.cache, self.bus = ledger, cache, bus
        self.printer_enabled = printer_enabled
        self.is_offline = is_offline
        self.clock = clock
        self._program: tuple[str, Program] | None = None
        self._program_lock = threading.Lock()
        self.print_wakeups: list = []

    # -- program ----------------------------------------------------------
    def program(self) -> Program | None:
        etag = self.cache.program_etag()  # the body is read and parsed only when it changed
        if etag is None:
            return None
        with self._program_lock:
            if self._program is None or self._program[0] != etag:
                row = self.cache.program_row()
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
        member = self._lookup(code)
        if member is None:
            self.bus.publish("member.unknown", {"device": device, "identifier": code})
        else:
            self.bus.publish("member.identified", {"device": device, "identifier": code,
                                                   "member": self.member_view(member)})

    # -- member view ------------------------------------------------------
    def find_member(self, identifier: str) -> CachedMember:
        found = identify_code(identifier)
        if found.kind == "payment_card":
            raise LaneError(422, "payment_card", "that is a payment card number; it was not stored")
        member = self._lookup(found.code) if found.kind == "member_code" else None
        if member is None:
            raise LaneError(404, "unknown_member", "not a member")
        return member

    def _lookup(self, code: str | None) -> CachedMember | None:
        """The one lookup behind a scan and an API call: the normalised code, deleted = unknown."""
        member = self.cache.find_member(code) if code else None
        return None if member is None or member.status == "deleted" else member

    def balances(self, member: CachedMember, conn: sqlite3.Connection | None = None) -> dict[str, dict[str, int]]:
        return lots.balance(conn or self.ledger.reader(), member.member_id, member.balances,
                            member.applied_seq, self.clock())

    def member_view(self, member: CachedMember) -> dict[str, Any]:
        program = self.program()
        tier = program.tier(member.tier) if program else None
        nxt = program.next_tier(member.tier) if program else None
        synced = self.cache.state("members_synced_at") or member.updated_at
        stale = not synced or self.clock() - parse_iso(synced) > STALE_AFTER
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
            "balances": (balance := self.balances(member)),
            "rewards_available": self.rewards_available(member, program, balance) if program else [],
            "offers": member.offers,
            "as_of": synced,
            "stale": stale,
        }

    # -- shared by the services --------------------------------------------
    def require_program(self) -> Program:
        program = self.program()
        if program is None:
            raise LaneError(503, "program_unavailable", "no loyalty program yet: the lane has not synced once")
        return program

    def replayed(self, tx: TransactionInput) -> Recorded | None:
        return earlier_answer(self.ledger.reader(), "transaction_id", tx.transaction_id, tx.request_hash)

    def after_write(self, slip_queued: bool) -> None:
        """After a commit: wake the relay, and the printer if a slip was queued."""
        self.ledger.outbox_written()
        if slip_queued:
            for wake in self.print_wakeups:
                wake()

    def queue_slip(self, conn: sqlite3.Connection, slip_id: str, member: CachedMember, program: Program, *,
                   occurred_at: datetime, earned: dict[str, int], balance: dict[str, dict[str, int]],
                   trace: list[dict[str, Any]] | None = None, vouchers: list[dict[str, Any]] | None = None,
                   kind: str = "sale") -> None:
        """The slip's data goes into ledger.db with the sale; names stay multilingual so the
        slip prints in the member's own language when the catalogs have it."""
        tier = program.tier(member.tier)
        nxt = program.next_tier(member.tier)
        slip = SlipData(
            slip_id=slip_id, store_id=self.store_id, lane_id=self.lane_id, transaction_id=slip_id,
            member_name=member.display_name, kind=kind, locale=member.locale,
            occurred_at=occurred_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M"),
            tier_name=(tier.names or tier.tier_id) if tier else None, earned=earned,
            balance={c: b["total"] for c, b in balance.items()},
            pending={c: b["pending"] for c, b in balance.items()},
            next_tier=None if nxt is None else {"name": nxt.names or nxt.tier_id, "threshold": nxt.threshold,
                                                "points_needed": max(0, nxt.threshold - member.qualifying)},
            breakdown=list(trace or []),
            rewards_available=[{**r, "title": program.reward(r["reward_id"]).names or r["title"]}
                               for r in self.rewards_available(member, program, balance)],
            vouchers=vouchers or [],
            offers=[o for o in member.offers if isinstance(o, dict)],
        )
        conn.execute(
            "INSERT INTO print_jobs (job_id, slip_id, kind, slip, created_at) VALUES (?, ?, ?, ?, ?)",
            (slip_id, slip_id, "slip" if kind == "sale" else kind, json.dumps(slip.to_json()), utcnow_iso()),
        )

    def rewards_available(self, member: CachedMember, program: Program,
                          balance: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
        out = []
        for reward in program.rewards:
            price = reward.price_for(member.tier)
            if price is None:
                continue
            if balance.get(reward.currency, {}).get("available", 0) >= price:
                out.append({"reward_id": reward.reward_id, "title": reward.name(self.locale),
                            "currency": reward.currency, "points": price, "kind": reward.kind})
        return out


# The idempotency record of each kind of request: its table and the POS's id column.
IDEMPOTENT = {"transaction_id": "transactions", "return_id": "returns", "redemption_id": "redemptions"}


def earlier_answer(conn: sqlite3.Connection, what: str, key: str, request_hash: str) -> Recorded | None:
    """The first answer to a retried request id; a conflict when the id was reused for
    something else; None when the id is new. Called before the write (fast answer) and
    again inside it (a concurrent retry may have won)."""
    row = conn.execute(f"SELECT request_hash, response FROM {IDEMPOTENT[what]} WHERE {what} = ?",
                       (key,)).fetchone()
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise LaneError(409, f"{what}_conflict", f"this {what} was already used for a different request")
    return Recorded(json.loads(row["response"]), replayed=True)
