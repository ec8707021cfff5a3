"""Sales and returns: accrue points, and take back exactly what a return undoes.

A return never computes "points per returned line" on its own: it re-runs
the rules engine on what the member kept, against the very program version
the sale earned under, and reverses the difference. So basket bonuses,
thresholds, caps and rounding all unwind correctly, a return can never take
back more than the sale earned, and buy-return-keep-the-bonus does not work.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from posd.core.expiry import lot_dates
from posd.core.program import Program, parse_program
from posd.core.rules import Accrual, Basket, BasketLine, EarnContext, RuleError, compute_accrual
from posd.faults import crash_point
from posd.lane import Lane, LaneError, Recorded, TransactionInput, earlier_answer
from posd.storage import lots
from posd.storage.cache import CachedMember
from posd.storage.db import iso


# A POS clock a little ahead is normal; a sale hours in the future would mature and expire wrongly.
FUTURE_TOLERANCE = timedelta(minutes=10)
# A POS that was offline may upload old sales; a year back is the most a lane accepts.
PAST_TOLERANCE = timedelta(days=366)


@dataclass(frozen=True)
class ReturnInput:
    transaction_id: str
    return_id: str
    lines: tuple[tuple[str, Decimal], ...] | None  # (sku, quantity returned)
    amount: int | None
    request_hash: str


def _line_json(line: BasketLine) -> dict[str, Any]:
    return {"sku": line.sku, "category": line.category, "quantity": str(line.quantity),
            "unit_price": line.unit_price, "discount": line.discount}


def _line_from_json(d: dict[str, Any]) -> BasketLine:
    return BasketLine(sku=d["sku"], category=d.get("category"), quantity=Decimal(d["quantity"]),
                      unit_price=int(d["unit_price"]), discount=int(d.get("discount", 0)))


class Checkout:
    def __init__(self, lane: Lane):
        self.lane = lane
        self.ledger = lane.ledger
        self._stored_programs: set[str] = set()

    # -- sales ----------------------------------------------------------------
    def earn_context(self, member: CachedMember | None, occurred_at: datetime) -> EarnContext:
        local = occurred_at.astimezone(self.lane.tz)
        birth = date.fromisoformat(member.birth_date) if member and member.birth_date else None
        ctx = EarnContext(tier_id=member.tier if member else None, occurred_local=local,
                          birth_date=birth, birthday_bonus_used=False)
        if member is not None and birth is not None and self._birthday_given(self.ledger.reader(), member, ctx):
            ctx = replace(ctx, birthday_bonus_used=True)
        return ctx

    def _birthday_given(self, conn: sqlite3.Connection, member: CachedMember, ctx: EarnContext) -> bool:
        """Has this member had this (store-local) year's birthday bonus on this lane?"""
        return conn.execute("SELECT 1 FROM birthday_awards WHERE member_id = ? AND year = ?",
                            (member.member_id, ctx.occurred_local.year)).fetchone() is not None

    async def record_sale(self, tx: TransactionInput) -> Recorded:
        earlier = self.lane.replayed(tx)
        if earlier:
            return earlier
        if tx.occurred_at - self.lane.clock() > FUTURE_TOLERANCE:
            raise LaneError(422, "occurred_in_future", "occurred_at is ahead of the lane's clock; check the POS clock")
        if self.lane.clock() - tx.occurred_at > PAST_TOLERANCE:
            raise LaneError(422, "occurred_too_old",
                            f"sales older than {PAST_TOLERANCE.days} days cannot earn here; central can adjust")
        member = self.lane.find_member(tx.member) if tx.member else None
        if member is not None and member.status != "active":
            raise LaneError(422, "member_ineligible", f"the member's account is {member.status}")
        program = self.lane.require_program()
        ctx = self.earn_context(member, tx.occurred_at)
        try:
            accrual = compute_accrual(program, Basket(tx.currency, tx.total, tx.lines), ctx)
        except RuleError as exc:
            raise LaneError(422, exc.code, str(exc)) from exc
        offline = self.lane.is_offline()
        recorded = await self.ledger.awrite(
            lambda conn: self._write_sale(conn, tx, member, ctx, accrual, program, offline))
        crash_point("after_commit_before_answer")
        if not recorded.replayed:
            self._stored_programs.add(program.version)  # committed: later sales need not write it again
            self.lane.after_write(recorded.response["slip"]["state"] == "queued")
        return recorded

    def _write_sale(self, conn: sqlite3.Connection, tx: TransactionInput, member: CachedMember | None,
                    ctx: EarnContext, accrual: Accrual, program: Program, offline: bool) -> Recorded:
        earlier = earlier_answer(conn, "transaction_id", tx.transaction_id, tx.request_hash)
        if earlier:  # a concurrent retry won the race: answer what it answered
            return earlier
        now = self.lane.clock()  # one clock for expiry decisions: the lane's
        occurred = iso(tx.occurred_at)
        lines = [_line_json(ln) for ln in tx.lines]  # for the event and the idempotency record
        seq = None
        points = {c: p for c, p in accrual.points.items() if p}
        if program.version not in self._stored_programs:  # serialise a program once, not per sale
            conn.execute("INSERT OR IGNORE INTO programs (version, body, first_used_at) VALUES (?, ?, ?)",
                         (program.version, json.dumps(program.raw, sort_keys=True), iso(now)))
        if member is not None and not ctx.birthday_bonus_used and accrual.birthday_bonus \
                and self._birthday_given(conn, member, ctx):
            # a concurrent sale got this year's bonus first: evaluate again without it
            ctx = replace(ctx, birthday_bonus_used=True)
            accrual = compute_accrual(program, Basket(tx.currency, tx.total, tx.lines), ctx)
            points = {c: p for c, p in accrual.points.items() if p}
        if member is not None:
            lot_info = {}
            for cur in points:
                currency = program.currency(cur)
                if currency is not None:
                    available_at, expires_at = lot_dates(currency, ctx.occurred_local)
                    lot_info[cur] = (iso(available_at) if currency.pending_days else None,
                                     iso(expires_at) if expires_at else None)
            seq = self.ledger.append_event(conn, "accrual", {
                "transaction_id": tx.transaction_id, "member_id": member.member_id, "occurred_at": occurred,
                "currency": tx.currency, "total": tx.total, "lines": lines,
                "points": accrual.points, "program_version": accrual.program_version, "offline": offline,
                "lots": {c: {"available_at": a, "expires_at": e} for c, (a, e) in lot_info.items()},
            })
            conn.executemany(
                "INSERT INTO ledger_entries (kind, member_id, currency, points, transaction_id, seq, occurred_at, "
                "recorded_at, program_version, pending_until, expires_at, ref_id) "
                "VALUES ('earn', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(member.member_id, cur, pts, tx.transaction_id, seq, occurred, iso(now), accrual.program_version,
                  *lot_info.get(cur, (None, None)), tx.transaction_id) for cur, pts in points.items()],
            )
        balance = self.lane.balances(member, conn) if member else {}
        slip_state = "none"
        if member is not None and self.lane.printer_enabled:
            slip_state = "queued"
            self.lane.queue_slip(conn, tx.transaction_id, member, program, occurred_at=tx.occurred_at,
                                 earned=accrual.points, balance=balance, trace=accrual.trace)
        response = {
            "transaction_id": tx.transaction_id,
            "member_id": member.member_id if member else None,
            "accrual": {"points": accrual.points, "trace": accrual.trace,
                        "program_version": accrual.program_version},
            "balance": balance,
            "slip": {"slip_id": tx.transaction_id if slip_state == "queued" else None, "state": slip_state},
            "seq": seq,
            "offline": offline,
            "recorded_at": iso(now),
        }
        birthday = accrual.birthday_bonus
        if birthday and member is not None:
            conn.execute("INSERT INTO birthday_awards (member_id, year, transaction_id) VALUES (?, ?, ?)",
                         (member.member_id, ctx.occurred_local.year, tx.transaction_id))
        context = {"tier_id": ctx.tier_id, "occurred_local": ctx.occurred_local.isoformat(),
                   "birth_date": ctx.birth_date.isoformat() if ctx.birth_date else None,
                   "birthday_bonus_used": ctx.birthday_bonus_used, "birthday_awarded": birthday}
        conn.execute(
            "INSERT INTO transactions (transaction_id, request_hash, member_id, occurred_at, currency, "
            "total_minor, program_version, seq, response, recorded_at, basket, earn_context) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (tx.transaction_id, tx.request_hash, member.member_id if member else None, occurred, tx.currency,
             tx.total, accrual.program_version, seq, json.dumps(response), iso(now),
             json.dumps(lines), json.dumps(context)),
        )
        return Recorded(response, replayed=False)

    # -- returns --------------------------------------------------------------
    async def record_return(self, ret: ReturnInput) -> Recorded:
        earlier = earlier_answer(self.ledger.reader(), "return_id", ret.return_id, ret.request_hash)
        if earlier:
            return earlier
        sale = self.ledger.reader().execute("SELECT * FROM transactions WHERE transaction_id = ?",
                                            (ret.transaction_id,)).fetchone()
        if sale is None:
            raise LaneError(404, "unknown_transaction", "no sale with that transaction_id on this lane")
        member = None
        if sale["member_id"]:
            member = self.lane.cache.member_by_id(sale["member_id"])
            if member is None:  # never record a reversal we could not write to the member's ledger
                raise LaneError(503, "member_unavailable",
                                "the sale's member is not in this lane's cache yet; try again after sync")
        recorded = await self.ledger.awrite(lambda conn: self._write_return(conn, ret, member))
        if not recorded.replayed:
            self.lane.after_write(False)
        return recorded

    def _write_return(self, conn: sqlite3.Connection, ret: ReturnInput, member: CachedMember | None) -> Recorded:
        earlier = earlier_answer(conn, "return_id", ret.return_id, ret.request_hash)
        if earlier:
            return earlier
        sale = conn.execute("SELECT * FROM transactions WHERE transaction_id = ?", (ret.transaction_id,)).fetchone()
        earned = json.loads(sale["response"])["accrual"]["points"]
        earlier = conn.execute("SELECT lines, amount, points FROM returns WHERE transaction_id = ?",
                               (ret.transaction_id,)).fetchall()
        reversed_before: dict[str, int] = {}
        for r in earlier:
            for cur, pts in json.loads(r["points"]).items():
                reversed_before[cur] = reversed_before.get(cur, 0) + pts
        kept_points = self._points_kept(conn, sale, ret, earlier, earned)
        reversal = {cur: max(0, min(earned.get(cur, 0) - kept_points.get(cur, 0) - reversed_before.get(cur, 0),
                                    earned.get(cur, 0) - reversed_before.get(cur, 0)))
                    for cur in earned}
        now = self.lane.clock()  # one clock for expiry decisions: the lane's
        seq = None
        if member is not None and any(reversal.values()):
            seq = self.ledger.append_event(conn, "return", {
                "transaction_id": ret.transaction_id, "return_id": ret.return_id, "member_id": member.member_id,
                "occurred_at": iso(now), "points": {c: -p for c, p in reversal.items() if p},
                "program_version": sale["program_version"], "offline": self.lane.is_offline(),
            })
            for cur, pts in reversal.items():
                if pts:
                    self._reverse(conn, member, sale, cur, pts, seq, now, ret.return_id)
        balance = self.lane.balances(member, conn) if member else {}
        response = {"transaction_id": ret.transaction_id, "return_id": ret.return_id,
                    "reversed": {c: p for c, p in reversal.items()}, "balance": balance, "seq": seq,
                    "recorded_at": iso(now)}
        conn.execute(
            "INSERT INTO returns (return_id, transaction_id, request_hash, lines, amount, points, seq, response, "
            "recorded_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (ret.return_id, ret.transaction_id, ret.request_hash,
             json.dumps([[s, str(q)] for s, q in ret.lines]) if ret.lines is not None else None,
             ret.amount, json.dumps(reversal), seq, json.dumps(response), iso(now)),
        )
        return Recorded(response, replayed=False)

    def _points_kept(self, conn, sale: sqlite3.Row, ret: ReturnInput, earlier, earned: dict[str, int]) -> dict[str, int]:
        """What the sale would have earned on what the member still keeps after this return."""
        if ret.lines is None:
            returned = sum(r["amount"] or 0 for r in earlier) + (ret.amount or 0)
            if any(r["lines"] is not None for r in earlier):
                raise LaneError(422, "mixed_return", "this sale was returned by lines; return the rest by lines too")
            if returned > sale["total_minor"]:
                raise LaneError(422, "return_exceeds_sale", "the returns would exceed the sale's total")
            kept = Fraction(sale["total_minor"] - returned, sale["total_minor"] or 1)
            # proportional, half-up once on the cumulative figure so repeated returns never drift
            return {cur: int(pts * kept + Fraction(1, 2)) for cur, pts in earned.items()}
        if any(r["amount"] is not None for r in earlier):
            raise LaneError(422, "mixed_return", "this sale was returned by amount; return the rest by amount too")
        lines = [_line_from_json(d) for d in json.loads(sale["basket"] or "[]")]
        if not lines:
            raise LaneError(422, "return_by_amount", "the sale had no lines: return it by amount")
        returned: dict[str, Decimal] = {}
        for r in earlier:
            for sku, qty in json.loads(r["lines"]):
                returned[sku] = returned.get(sku, Decimal(0)) + Decimal(qty)
        for sku, qty in ret.lines:
            returned[sku] = returned.get(sku, Decimal(0)) + qty
        kept_lines = []
        for line in lines:
            back = min(returned.get(line.sku, Decimal(0)), line.quantity)
            returned[line.sku] = returned.get(line.sku, Decimal(0)) - back
            if line.quantity - back > 0:
                share = (line.quantity - back) / line.quantity
                kept_lines.append(BasketLine(line.sku, line.category, line.quantity - back, line.unit_price,
                                             int((line.discount * share).to_integral_value())))
        over = {sku: q for sku, q in returned.items() if q > 0}
        if over:
            raise LaneError(422, "return_exceeds_sale",
                            f"more returned than sold for {', '.join(sorted(over))}")
        program = self._program_of(conn, sale["program_version"])
        ctx_json = json.loads(sale["earn_context"] or "{}")
        ctx = EarnContext(tier_id=ctx_json.get("tier_id"),
                          occurred_local=datetime.fromisoformat(ctx_json["occurred_local"]),
                          birth_date=date.fromisoformat(ctx_json["birth_date"]) if ctx_json.get("birth_date") else None,
                          birthday_bonus_used=bool(ctx_json.get("birthday_bonus_used")))
        total = sum(line.amount for line in kept_lines)
        return compute_accrual(program, Basket(sale["currency"], total, tuple(kept_lines)), ctx).points

    @staticmethod
    def _program_of(conn: sqlite3.Connection, version: str) -> Program:
        row = conn.execute("SELECT body FROM programs WHERE version = ?", (version,)).fetchone()
        if row is None:
            raise LaneError(409, "program_version_unknown",
                            f"program {version} that the sale earned under is not on this lane")
        return parse_program(json.loads(row[0]))

    def _reverse(self, conn, member: CachedMember, sale, currency: str, points: int, seq: int,
                 now: datetime, ref: str) -> None:
        lot_ids = [r[0] for r in conn.execute(
            "SELECT entry_id FROM ledger_entries WHERE transaction_id = ? AND kind = 'earn' AND currency = ? "
            "AND seq > ?", (sale["transaction_id"], currency, member.applied_seq))]
        cur = conn.execute(
            "INSERT INTO ledger_entries (kind, member_id, currency, points, transaction_id, seq, occurred_at, "
            "recorded_at, program_version, ref_id) VALUES ('reversal', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (member.member_id, currency, -points, sale["transaction_id"], seq, iso(now), iso(now),
             sale["program_version"], ref))
        lots.allocate(conn, cur.lastrowid, lots.reverse_from(conn, lot_ids, points))


