"""Sales and returns: accrue points, and take back exactly what a return undoes.

A return never computes "points per returned line" on its own: it re-runs
the rules engine on what the member kept, against the very program version
the sale earned under, and reverses the difference. So basket bonuses,
thresholds, caps and rounding all unwind correctly, a return can never take
back more than the sale earned, and buy-return-keep-the-bonus does not work.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from posd.core.expiry import lot_dates
from posd.core.program import Program, parse_program
from posd.core.rules import Accrual, Basket, BasketLine, EarnContext, RuleError, compute_accrual
from posd.core.rules_eval import birthday_year
from posd.faults import crash_point
from posd.lane.birthdays import Birthdays
from posd.lane.context import LaneContext, Recorded, earlier_answer
from posd.lane.errors import CODES, FUTURE_TOLERANCE, PAST_TOLERANCE, LaneError, raises, rule_error
from posd.lane.members import Identification, Members
from posd.lane.slips import Slips
from posd.storage.cache import CachedMember
from posd.storage.db import iso
from posd.storage.entries import Entry
from posd.storage.records import AlreadyRecorded, ReturnRecord, SaleRecord
from posd.storage.tx import LedgerTx, LedgerView

# Program versions a lane keeps parsed for returns (posd.lane.sales.Sales._stored_program).
KEPT_PROGRAMS = 4


@dataclass(frozen=True)
class TransactionInput:
    transaction_id: str
    member: str | None
    occurred_at: datetime
    currency: str
    total: int
    lines: tuple[BasketLine, ...]
    request_hash: str
    legacy_hash: Callable[[], tuple[str, ...]] | None = None  # hashes older posd versions made, when asked


@dataclass(frozen=True)
class ReturnInput:
    transaction_id: str
    return_id: str
    lines: tuple[tuple[str, Decimal], ...] | None  # (sku, quantity returned)
    amount: int | None
    request_hash: str
    legacy_hash: Callable[[], tuple[str, ...]] | None = None


@dataclass(frozen=True)
class _Sale:
    """A sale evaluated before its write: who, under which rules, earning what."""

    tx: TransactionInput
    member: CachedMember | None
    ident: Identification | None  # how the member was identified; a token is accepted with the sale
    ctx: EarnContext
    accrual: Accrual
    program: Program
    offline: bool

    def without_birthday_bonus(self) -> _Sale:
        """The same sale evaluated again as if the member's birthday bonus were given already this year."""
        earn, tx = replace(self.ctx, birthday_bonus_used=True), self.tx
        return replace(self, ctx=earn, accrual=compute_accrual(self.program, Basket(tx.currency, tx.total, tx.lines),
                                                               earn))


# What a sale can be refused, as asked first and again after a member pull (posd.lane.members.arefreshed).
SALE_CODES = (
    "transaction_id_conflict", "occurred_in_future", "occurred_too_old", "payment_card", "unknown_member",
    "ambiguous_member", "member_unavailable", "member_ineligible", "program_unavailable", "negative_total",
    "negative_line", "total_mismatch", "unsupported_currency", "points_out_of_range", "member_token_invalid",
    "member_token_expired", "member_token_not_yet_valid", "member_token_replayed", "storage_full",
    "storage_failed",
)


class Sales:
    def __init__(self, ctx: LaneContext, members: Members, slips: Slips, birthdays: Birthdays | None = None):
        self.ctx, self.members, self.slips = ctx, members, slips
        self.birthdays = birthdays or Birthdays(ctx)
        self._earned_under: dict[str, Program] = {}  # program versions returns evaluated against, parsed

    # -- sales ----------------------------------------------------------------
    def earn_context(self, member: CachedMember | None, occurred_at: datetime,
                     view: LedgerView | None = None) -> EarnContext:
        local = occurred_at.astimezone(self.ctx.tz)
        birth = _birth_date(member.birth_date) if member and member.birth_date else None
        used = member is not None and birth is not None and \
            self.birthdays.given(member, birthday_year(birth, local.date()), view or self.ctx.ledger.view())
        return EarnContext(tier_id=member.tier if member else None, occurred_local=local,
                           birth_date=birth, birthday_bonus_used=used)

    @raises("occurred_in_future", "occurred_too_old", "payment_card", "unknown_member", "ambiguous_member",
            "member_unavailable", "member_ineligible", "program_unavailable", "negative_total", "negative_line",
            "total_mismatch", "unsupported_currency", "points_out_of_range", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid")
    def evaluate(self, tx: TransactionInput, view: LedgerView | None = None) -> _Sale:
        """What the sale earns, checked and computed, nothing written (a member's token is checked,
        not accepted): the sale and its quote share this."""
        ctx = self.ctx
        now = ctx.clock()
        if tx.occurred_at - now > FUTURE_TOLERANCE:
            raise LaneError("occurred_in_future", CODES["occurred_in_future"])
        if now - tx.occurred_at > PAST_TOLERANCE:
            raise LaneError("occurred_too_old",
                            f"sales older than {PAST_TOLERANCE.days} days cannot earn here; central can adjust")
        ident = self.members.find_active(tx.member) if tx.member is not None else None
        member = ident.member if ident else None
        program = ctx.require_program()
        earn = self.earn_context(member, tx.occurred_at, view)
        try:
            accrual = compute_accrual(program, Basket(tx.currency, tx.total, tx.lines), earn)
        except RuleError as exc:
            raise rule_error(exc) from exc
        return _Sale(tx, member, ident, earn, accrual, program, ctx.is_offline())

    def herald(self) -> AbstractContextManager[Any]:
        """A sale that arrived, to be given to record_sale inside ``with`` in moments: the ledger's
        writer may wait for it, to commit it with another (posd.storage.ledger.Herald)."""
        return self.ctx.ledger.herald()

    @raises(*SALE_CODES)
    async def record_sale(self, tx: TransactionInput) -> Recorded:
        # a refused sale wrote nothing: a member this lane has not pulled yet is looked up again after a pull
        return await self.members.after_pull(lambda: self._record_sale(tx))

    @raises(*SALE_CODES)
    async def _record_sale(self, tx: TransactionInput) -> Recorded:
        ctx = self.ctx
        try:
            # The usual sale is evaluated and written in one unit, on the writer's thread: one hand-off
            # to the writer and one back, and the loop is free for the next request meanwhile. A sale
            # central must hear of first (a member token, a birthday bonus, central in reach) comes
            # back evaluated and unwritten, and is written once central answered.
            outcome = await ctx.acommit(lambda unit: self._record_unless_central(unit, tx))
            if isinstance(outcome, Recorded):
                crash_point("after_commit_before_answer")
                return outcome
            sale = outcome
            await self.members.aclaim_at_central(sale.ident)  # a token another lane used (central asked)
            sale = await self._claim_birthday(sale)
            recorded = await ctx.acommit(lambda unit: self._write_sale(unit, sale))
        except (LaneError, AlreadyRecorded):
            # A retry gets its first answer even when today's checks would refuse it (the member
            # blocked since, the sale now too old, its QR token expired); a new id gets the refusal.
            # Checked only here: a sale that passes learns from its own record's insert whether it
            # is a retry (AlreadyRecorded: its unit rolled back whole, also when a concurrent retry
            # recorded it while central was asked), and reads nothing before.
            earlier = self._first_answer(tx)
            if earlier:
                return earlier
            raise
        crash_point("after_commit_before_answer")
        return recorded

    @raises("transaction_id_conflict")
    def _first_answer(self, tx: TransactionInput) -> Recorded | None:
        return earlier_answer(self.ctx.ledger.view(), "transaction_id", tx.transaction_id, tx.request_hash,
                              tx.legacy_hash)

    @raises("occurred_in_future", "occurred_too_old", "payment_card", "unknown_member", "ambiguous_member",
            "member_unavailable", "member_ineligible", "program_unavailable", "negative_total", "negative_line",
            "total_mismatch", "unsupported_currency", "points_out_of_range", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_token_replayed")
    def _record_unless_central(self, unit: LedgerTx, tx: TransactionInput) -> Recorded | _Sale:
        """Inside the writer's unit: the sale evaluated against this very ledger and written, or, when
        central must be asked first, the evaluated sale with nothing written."""
        sale = self.evaluate(tx, unit)
        if self.members.asks_central(sale.ident) or (
                sale.member is not None and sale.accrual.birthday_bonus and self.birthdays.asks_central()):
            return sale
        return self._write_sale(unit, sale)

    async def _claim_birthday(self, sale: _Sale) -> _Sale:
        """Central first: a bonus another lane gave the member this year is not given again here."""
        if sale.member is None or not sale.accrual.birthday_bonus or \
                await self.birthdays.claim(sale.member, sale.ctx.birthday_year, sale.tx.transaction_id):
            return sale
        return sale.without_birthday_bonus()

    @raises("member_token_replayed")
    def _write_sale(self, unit: LedgerTx, sale: _Sale) -> Recorded:
        """The sale's write; AlreadyRecorded (from its record's insert, the last statement) when a
        concurrent retry recorded the transaction id first: the unit then keeps nothing."""
        tx, member, program = sale.tx, sale.member, sale.program
        if sale.ident is not None:
            self.members.accept(unit, sale.ident)  # a token named in the sale is used by it, or not at all
        now = self.ctx.clock()  # one clock for expiry decisions: the lane's
        recorded_at, occurred_at = iso(now), iso(tx.occurred_at)  # each formatted once per sale
        unit.store_program(program, recorded_at)
        if member is not None and not sale.ctx.birthday_bonus_used and sale.accrual.birthday_bonus \
                and unit.birthday_awarded(member.member_id, sale.ctx.birthday_year, member.aliases):
            sale = sale.without_birthday_bonus()  # a concurrent sale got this year's bonus first
        earn, accrual = sale.ctx, sale.accrual
        seq = self._earn(unit, sale, earn, accrual, occurred_at, recorded_at) if member is not None else None
        balance = self.members.balances(member, unit) if member else {}
        slip = {"slip_id": None, "state": "none"}
        if member is not None and self.ctx.printer_enabled:  # a lane without a printer composes no slip
            slip = self.slips.queue(unit, self.slips.compose(
                tx.transaction_id, member, program, occurred_at=tx.occurred_at, earned=accrual.points,
                balance=balance, trace=accrual.trace, view=unit), member.member_id)
        response = {
            "transaction_id": tx.transaction_id,
            "member_id": member.member_id if member else None,
            "accrual": accrual.to_json(),
            "balance": balance,
            "slip": slip,
            "seq": seq,
            "offline": sale.offline,
            "recorded_at": recorded_at,
        }
        birthday = accrual.birthday_bonus and member is not None
        if birthday:
            unit.award_birthday(member.member_id, earn.birthday_year, tx.transaction_id)
        body = unit.store_sale(
            transaction_id=tx.transaction_id, request_hash=tx.request_hash,
            member_id=member.member_id if member else None, occurred_at=occurred_at,
            currency=tx.currency, total=tx.total, program_version=accrual.program_version, seq=seq,
            points=accrual.points, basket=tx.lines, context=earn, birthday_awarded=birthday,
            response=response, recorded_at=recorded_at)
        return Recorded(response, replayed=False, body=body)

    def _earn(self, unit: LedgerTx, sale: _Sale, earn: EarnContext, accrual: Accrual, occurred: str,
              recorded_at: str) -> int:
        """The accrual event and its lots (each with its own maturity and expiry); the event's seq."""
        tx, member = sale.tx, sale.member
        points = {c: p for c, p in accrual.points.items() if p}
        lots = {}
        for cur in points:
            currency = sale.program.currency(cur)
            if currency is not None:
                available_at, expires_at = lot_dates(currency, earn.occurred_local)
                lots[cur] = (iso(available_at) if currency.pending_days else None,
                             iso(expires_at) if expires_at else None)
        seq = unit.append_event("accrual", {
            "transaction_id": tx.transaction_id, "member_id": member.member_id, "occurred_at": occurred,
            "currency": tx.currency, "total": tx.total, "lines": [line.to_json() for line in tx.lines],
            "points": accrual.points, "program_version": accrual.program_version, "offline": sale.offline,
            "lots": {c: {"available_at": a, "expires_at": e} for c, (a, e) in lots.items()},
            **({"birthday_award_year": earn.birthday_year} if accrual.birthday_bonus else {}),
        })
        unit.add_entries([
            Entry("earn", member.member_id, cur, pts, tx.transaction_id, seq, occurred, recorded_at,
                  accrual.program_version, tx.transaction_id, *lots.get(cur, (None, None)))
            for cur, pts in points.items()])
        return seq

    # -- returns --------------------------------------------------------------
    @raises("return_id_conflict", "unknown_transaction", "member_unavailable", "mixed_return", "return_exceeds_sale",
            "return_by_amount", "program_version_unknown", "negative_total", "negative_line", "total_mismatch",
            "unsupported_currency", "points_out_of_range", "storage_full", "storage_failed")
    async def record_return(self, ret: ReturnInput) -> Recorded:
        ctx = self.ctx
        view = ctx.ledger.view()
        earlier = earlier_answer(view, "return_id", ret.return_id, ret.request_hash, ret.legacy_hash)
        if earlier:
            return earlier
        sale = view.sale(ret.transaction_id)
        if sale is None:
            raise LaneError("unknown_transaction", "no sale with that transaction_id on this lane")
        member = None
        if sale.member_id:
            member = self.members.by_id(sale.member_id)
            if member is None and not sale.member_erased:  # never record a reversal we could not write
                raise LaneError("member_unavailable",
                                "the sale's member is not in this lane's cache yet; try again after sync")
        return await ctx.acommit(lambda unit: self._write_return(unit, ret, member))

    @raises("return_id_conflict", "mixed_return", "return_exceeds_sale", "return_by_amount", "program_version_unknown",
            "negative_total", "negative_line", "total_mismatch", "unsupported_currency", "points_out_of_range")
    def _write_return(self, unit: LedgerTx, ret: ReturnInput, member: CachedMember | None) -> Recorded:
        earlier = earlier_answer(unit, "return_id", ret.return_id, ret.request_hash, ret.legacy_hash)
        if earlier:
            return earlier
        sale = unit.sale(ret.transaction_id)
        earned = sale.points
        before = unit.returns_of(ret.transaction_id)
        reversed_before: dict[str, int] = {}
        for r in before:
            for cur, pts in r.points.items():
                reversed_before[cur] = reversed_before.get(cur, 0) + pts
        kept_points = self._points_kept(unit, sale, ret, before)
        reversal = {cur: max(0, min(earned.get(cur, 0) - kept_points.get(cur, 0) - reversed_before.get(cur, 0),
                                    earned.get(cur, 0) - reversed_before.get(cur, 0)))
                    for cur in earned}
        if sale.member_erased or sale.member_id is None:  # nobody holds its points: nothing to take back
            reversal = {cur: 0 for cur in earned}
        now = self.ctx.clock()  # one clock for expiry decisions: the lane's
        seq = None
        if member is not None and any(reversal.values()):
            seq = unit.append_event("return", {
                "transaction_id": ret.transaction_id, "return_id": ret.return_id, "member_id": member.member_id,
                "occurred_at": iso(now), "points": {c: -p for c, p in reversal.items() if p},
                "program_version": sale.program_version, "offline": self.ctx.is_offline(),
            })
            for cur, pts in reversal.items():
                if pts:
                    unit.reverse(Entry("reversal", member.member_id, cur, -pts, sale.transaction_id, seq, iso(now),
                                       iso(now), sale.program_version, ret.return_id),
                                 sale, member.applied_seq)
        balance = self.members.balances(member, unit) if member else {}
        response = {"transaction_id": ret.transaction_id, "return_id": ret.return_id, "reversed": dict(reversal),
                    "balance": balance, "seq": seq, "recorded_at": iso(now)}
        unit.store_return(
            return_id=ret.return_id, transaction_id=ret.transaction_id, request_hash=ret.request_hash,
            lines=None if ret.lines is None else tuple((s, str(q)) for s, q in ret.lines), amount=ret.amount,
            points=reversal, seq=seq, response=response, recorded_at=iso(now))
        return Recorded(response, replayed=False)

    @raises("mixed_return", "return_exceeds_sale", "return_by_amount", "program_version_unknown", "negative_total",
            "negative_line", "total_mismatch", "unsupported_currency", "points_out_of_range")
    def _points_kept(self, view: LedgerView, sale: SaleRecord, ret: ReturnInput,
                     before: list[ReturnRecord]) -> dict[str, int]:
        """What the sale would have earned on what the member still keeps after this return."""
        if ret.lines is None:
            returned = sum(r.amount or 0 for r in before) + (ret.amount or 0)
            if any(r.lines is not None for r in before):
                raise LaneError("mixed_return", "this sale was returned by lines; return the rest by lines too")
            if returned > sale.total:
                raise LaneError("return_exceeds_sale", "the returns would exceed the sale's total")
            return self._kept_by_amount(view, sale, returned)
        if any(r.amount is not None for r in before):
            raise LaneError("mixed_return", "this sale was returned by amount; return the rest by amount too")
        if not sale.basket:
            raise LaneError("return_by_amount", "the sale had no lines: return it by amount")
        kept_lines = _kept_lines(sale.basket, before, ret.lines)
        program = self._program_of(view, sale.program_version)
        total = sum(line.amount for line in kept_lines)
        try:
            return compute_accrual(program, Basket(sale.currency, total, kept_lines), sale.context).points
        except RuleError as exc:
            raise rule_error(exc) from exc

    def _kept_by_amount(self, view: LedgerView, sale: SaleRecord, returned: int) -> dict[str, int]:
        """What the member keeps after returns of ``returned`` (all amount returns so far, this one too).

        Pro rata, floored: the returns take back floor(earned x returned / total), computed on the
        cumulative amount so no sequence of returns drifts from one return of the same total. And
        never more than re-running the rules would: the kept basket is the sale's lines scaled to
        what was kept, evaluated against the sale's own program and moment, and the member keeps
        at least what it earns (a capped sale, or a flat bonus the kept basket still reaches).
        """
        share = Fraction(returned, sale.total or 1)
        kept = {cur: pts - (pts * share).__floor__() for cur, pts in sale.points.items()}
        if sale.context is None or returned >= sale.total:
            return kept
        program = self._stored_program(view, sale.program_version)
        if program is None:
            return kept
        scaled = _scaled(sale, 1 - share)
        try:
            by_rules = compute_accrual(program, scaled, sale.context).points
        except RuleError:  # a basket the sale's program evaluated once evaluates again; kept as a guard
            return kept
        return {cur: min(pts, max(kept[cur], by_rules.get(cur, 0))) for cur, pts in sale.points.items()}

    @raises("program_version_unknown")
    def _program_of(self, view: LedgerView, version: str | None) -> Program:
        program = self._stored_program(view, version)
        if program is None:
            raise LaneError("program_version_unknown",
                            f"program {version} that the sale earned under is not on this lane")
        return program

    def _stored_program(self, view: LedgerView, version: str | None) -> Program | None:
        """The program a sale earned under, as the ledger keeps it; None when it has no such version.
        A version's body never changes once stored (the first one is kept), so its parse, and the
        rules compiled from it, serve every later return of its sales."""
        if not version:
            return None
        program = self._earned_under.get(version)
        if program is None:
            body = view.program_body(version)
            if body is None:
                return None
            program = parse_program(body)
            if len(self._earned_under) >= KEPT_PROGRAMS:
                self._earned_under.pop(next(iter(self._earned_under)))  # the oldest one parsed
            self._earned_under[version] = program
        return program


def _scaled(sale: SaleRecord, share: Fraction) -> Basket:
    """The sale's basket with every line's quantity and discount scaled by ``share`` (what was kept)."""
    if not sale.basket:
        return Basket(sale.currency, (sale.total * share).__floor__())
    factor = Decimal(share.numerator) / Decimal(share.denominator)
    lines = []
    for line in sale.basket:
        quantity = line.quantity * factor
        gross = int((quantity * line.unit_price).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        lines.append(BasketLine(line.sku, line.category, quantity, line.unit_price,
                                min(gross, (line.discount * share).__floor__())))
    return Basket(sale.currency, sum(line.amount for line in lines), tuple(lines))


def _dearest_first(line: BasketLine) -> tuple[Any, ...]:
    """The order a SKU's units come back in: the highest price per unit net of the line's discount
    first; lines alike in that by their other fields, so that the order the sale listed them in
    never decides."""
    net = (line.unit_price * line.quantity - line.discount) / line.quantity if line.quantity else Decimal(0)
    return (-net, -line.unit_price, line.category or "", line.quantity, line.discount)


@raises("return_exceeds_sale")
def _kept_lines(sold: tuple[BasketLine, ...], before: list[ReturnRecord],
                now_returned: tuple[tuple[str, Decimal], ...]) -> tuple[BasketLine, ...]:
    """The sale's lines less everything returned so far, discounts in proportion.

    A return names SKUs, not lines: where a SKU is on several lines (a markdown, a price override),
    the units come back from its dearest line first (net of its discount), so what a return takes
    back never depends on the order the POS listed the lines in, and the cheap unit's points are not
    taken while the dear one's stay."""
    returned: dict[str, Decimal] = {}
    for r in before:
        for sku, qty in r.lines or ():
            returned[sku] = returned.get(sku, Decimal(0)) + Decimal(qty)
    for sku, qty in now_returned:
        returned[sku] = returned.get(sku, Decimal(0)) + qty
    back_of: dict[int, Decimal] = {}
    for i in sorted(range(len(sold)), key=lambda i: _dearest_first(sold[i])):
        line = sold[i]
        back = min(returned.get(line.sku, Decimal(0)), line.quantity)
        returned[line.sku] = returned.get(line.sku, Decimal(0)) - back
        back_of[i] = back
    kept = []
    for i, line in enumerate(sold):
        back = back_of[i]
        if line.quantity - back > 0:
            share = (line.quantity - back) / line.quantity
            kept_line = BasketLine(line.sku, line.category, line.quantity - back, line.unit_price, 0)
            # the discount in proportion, never more than the kept part's own amount (a line discounted to
            # nothing: the two roundings must not leave it below zero)
            kept.append(replace(kept_line, discount=min(int((line.discount * share).to_integral_value()),
                                                        kept_line.amount)))
    over = {sku: q for sku, q in returned.items() if q > 0}
    if over:
        on_sale = {line.sku for line in sold}
        missing = sorted(sku for sku in over if sku not in on_sale)
        said = [f"more returned than sold for {', '.join(sorted(sku for sku in over if sku in on_sale))}"] \
            if len(missing) < len(over) else []
        if missing:
            said.append(f"not on that sale: {', '.join(missing)}")
        raise LaneError("return_exceeds_sale", "; ".join(said))
    return tuple(kept)


def _birth_date(text: str) -> date | None:
    """A member's birth date as central's feed gave it; None for one that is no date (1990-02-29):
    the sale earns without a birthday bonus rather than failing."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        return None
