"""The quote before payment: what a basket would earn, and what the member could take off it.

A quote runs the very evaluation a sale runs (Sales.evaluate: the same
checks, program, moment, tier and birthday state) and nothing else: no
write, no event, no slip; a member token is checked, not accepted (the sale
that follows accepts it). A sale of the same basket right after earns what
the quote said. It also lists the rewards the member could redeem and the
vouchers and coupons they hold, each with its effect on this basket, and,
for the codes the cashier scanned, how they stack.
"""

from __future__ import annotations

import asyncio
from typing import Any

from posd.core.effects import apply_stack, basket_effect, discounted
from posd.core.program import Program
from posd.core.rules import Basket, RuleError, compute_accrual
from posd.lane.authority import VoucherLookup
from posd.lane.context import LaneContext
from posd.lane.errors import LaneError, raises, rule_error
from posd.lane.members import Members
from posd.lane.rewards import Rewards
from posd.lane.sales import Sales, TransactionInput
from posd.lane.vouchers import Usable, needs_member, unknown_code, why_not
from posd.storage.cache import CachedMember
from posd.storage.tx import LedgerView


class Quotes:
    def __init__(self, ctx: LaneContext, members: Members, sales: Sales, rewards: Rewards):
        self.ctx, self.members, self.sales, self.rewards = ctx, members, sales, rewards

    @raises("occurred_in_future", "occurred_too_old", "payment_card", "unknown_member", "ambiguous_member",
            "member_unavailable", "member_ineligible", "program_unavailable", "negative_total", "negative_line",
            "total_mismatch", "unsupported_currency", "points_out_of_range", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_token_replayed", "transaction_id_conflict")
    async def quote(self, tx: TransactionInput, codes: tuple[str, ...] = ()) -> dict[str, Any]:
        ctx = self.ctx
        view = ctx.ledger.view()
        if view.sale(tx.transaction_id) is not None:
            # the sale "right after" would answer its first answer or a conflict, not what a quote says now
            raise LaneError("transaction_id_conflict", f"sale {tx.transaction_id} is already recorded: a quote is "
                                                       "for a sale not recorded yet (GET its answer by posting "
                                                       "the same sale again)")
        sale = self.sales.evaluate(tx, view)
        token = sale.ident.token if sale.ident is not None else None
        if token is not None and view.token_used(token.token_id):
            # spent here already: the sale after would be refused, and a screenshot of a used code
            # must not show the member's balance and vouchers either
            raise LaneError("member_token_replayed", "this member token was accepted before; ask for a fresh one")
        program, member = sale.program, sale.member
        basket = Basket(tx.currency, tx.total, tx.lines)
        rounding = program.discount_rounding
        now = ctx.clock()
        answer: dict[str, Any] = {
            "transaction_id": tx.transaction_id,
            "member_id": member.member_id if member else None,
            "accrual": sale.accrual.to_json(),
            "balance": self.members.balances(member, view) if member else {},
            "rewards": [],
            "vouchers": [],
            "discounts": None,
            "accrual_with_discounts": None,
        }
        if member is not None:
            available = {cur: b.get("available", 0) for cur, b in answer["balance"].items()}
            answer["rewards"] = [self._reward_entry(program, reward.reward_id, available, member.tier, basket)
                                 for reward in program.rewards if reward.price_for(member.tier) is not None]
            answer["vouchers"] = [{"code": v.code, "description": v.description, "source": v.source,
                                   "expires_at": v.public()["expires_at"], "benefit": v.benefit.to_json(),
                                   "effect": basket_effect(v.benefit, basket, rounding=rounding).to_json()}
                                  for v in self.rewards.book.held_by(view, member.member_id, program, now,
                                                                     member.aliases, member.applied_seq)]
        if codes:
            scanned = [self.rewards.book.canonical(c) for c in codes]
            found = await self._usable(view, list(dict.fromkeys(scanned)), member)  # scanned twice: one code
            used = {code for code, _, why in found if why == "voucher_used"}
            answer["vouchers"] = [v for v in answer["vouchers"] if v["code"] not in used]
            offers = [(code, v.benefit) for code, v, why in found if v is not None and why is None]
            stack = apply_stack(program.stacking, offers, basket, rounding=rounding)
            answer["discounts"] = {**stack.to_json(), "not_usable": [{"id": code, "reason": why}
                                                                     for code, _, why in found if why]
                                   + [{"id": code, "reason": "duplicate_code"}  # a code applies once
                                      for i, code in enumerate(scanned) if code in scanned[:i]]}
            if stack.amount_off_minor:
                try:
                    after = compute_accrual(program, discounted(basket, stack.taken), sale.ctx)
                except RuleError as exc:  # the discounted basket is smaller, never invalid; kept as a guard
                    raise rule_error(exc) from exc
                answer["accrual_with_discounts"] = after.to_json()
        return answer

    async def _usable(self, view: LedgerView, wanted: list[str], member: CachedMember | None
                      ) -> list[tuple[str, Usable | None, str | None]]:
        """(code, its voucher or coupon, why it cannot be used now) for each code of ``wanted`` (canonical,
        each once), in order.

        As validate judges a code: while central answers it is asked about every code, also one
        issued here (another lane may have used it), all at once, so the quote waits one budget
        however many codes were scanned; offline, the lane's own records decide."""
        member_id, aliases = (member.member_id, member.aliases) if member else (None, ())
        book, program = self.rewards.book, self.ctx.program()
        now, out = self.ctx.clock(), []
        if self.ctx.is_offline():
            asked = [VoucherLookup("unavailable")] * len(wanted)
        else:
            asked = await asyncio.gather(*(self.rewards.authority.lookup(code, member_id) for code in wanted))
        for code, answer in zip(wanted, asked, strict=True):
            v = book.local(view, code, program)
            if v is None and answer.status == "found" and answer.voucher is not None:
                v = Usable.from_wire(answer.voucher, "central", self.ctx.locale)
            why = unknown_code(code, answer.status != "unavailable") if v is None else \
                why_not(v, member_id, now, aliases)
            if v is not None and why is None:  # as validate and use refuse it
                why = self._burn_refused(v, member_id)
            if v is not None and why is None and (answer.status == "found" and answer.used or view.voucher_use(
                    code, member_id or "" if v.campaign else "", aliases)):
                why = "voucher_used"
            out.append((code, v, why))
        return out

    def _burn_refused(self, v: Usable, member_id: str | None) -> str | None:
        """member_required for a coupon anyone may use on a basket with no member; member_ineligible
        for a personal voucher, quoted without its member, whose member's account is not active."""
        if needs_member(v, member_id):
            return "member_required"
        if member_id is None and self.rewards.holder_status(v) not in (None, "active"):
            return "member_ineligible"
        return None

    def _reward_entry(self, program: Program, reward_id: str, available: dict[str, int], tier: str | None,
                basket: Basket) -> dict[str, Any]:
        reward = program.reward(reward_id)
        assert reward is not None
        price = reward.price_for(tier) or 0
        return {"reward_id": reward.reward_id, "title": reward.name(self.ctx.locale), "currency": reward.currency,
                "points": price, "kind": reward.kind, "affordable": available.get(reward.currency, 0) >= price,
                "benefit": reward.benefit.to_json(),
                "effect": basket_effect(reward.benefit, basket, rounding=program.discount_rounding).to_json()}
