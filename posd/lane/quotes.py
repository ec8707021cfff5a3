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

from typing import Any

from posd.core.effects import apply_stack, basket_effect, discounted
from posd.core.program import Program
from posd.core.rules import Basket, RuleError, compute_accrual
from posd.lane.context import LaneContext
from posd.lane.errors import LaneError, raises, rule_error
from posd.lane.members import Members
from posd.lane.rewards import Rewards
from posd.lane.sales import Sales, TransactionInput
from posd.storage.cache import CachedMember
from posd.storage.tx import LedgerView


# What a quote can be refused, as asked first and again after a member pull (posd.lane.members.arefreshed).
QUOTE_CODES = (
    "occurred_in_future", "occurred_too_old", "payment_card", "unknown_member", "ambiguous_member",
    "member_unavailable", "member_ineligible", "program_unavailable", "negative_total", "negative_line",
    "total_mismatch", "unsupported_currency", "points_out_of_range", "member_token_invalid",
    "member_token_expired", "member_token_not_yet_valid", "member_token_replayed", "transaction_id_conflict",
)


class Quotes:
    def __init__(self, ctx: LaneContext, members: Members, sales: Sales, rewards: Rewards):
        self.ctx, self.members, self.sales, self.rewards = ctx, members, sales, rewards

    @raises(*QUOTE_CODES)
    async def quote(self, tx: TransactionInput, codes: tuple[str, ...] = ()) -> dict[str, Any]:
        return await self.members.after_pull(lambda: self._quote(tx, codes))  # a member not pulled yet: again

    @raises(*QUOTE_CODES)
    async def _quote(self, tx: TransactionInput, codes: tuple[str, ...] = ()) -> dict[str, Any]:
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
                                 | {"limit_reached": self.members.used_up_today(view, member, reward, now)}
                                 for reward in program.rewards if reward.price_for(member.tier) is not None]
            answer["vouchers"] = [{"code": v.code, "description": v.description, "source": v.source,
                                   "expires_at": v.public()["expires_at"], "benefit": v.benefit.to_json(),
                                   "effect": basket_effect(v.benefit, basket, rounding=rounding).to_json()}
                                  for v in self.rewards.book.held_by(view, member.member_id, program, now,
                                                                     member.aliases, member.applied_seq)]
        if codes:
            scanned = [self.rewards.book.canonical(c) for c in codes]
            member_id, aliases = (member.member_id, member.aliases) if member else (None, ())
            found = await self.rewards.usable_codes(view, list(dict.fromkeys(scanned)), member_id, aliases)
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

    def _reward_entry(self, program: Program, reward_id: str, available: dict[str, int], tier: str | None,
                basket: Basket) -> dict[str, Any]:
        reward = program.reward(reward_id)
        assert reward is not None
        price = reward.price_for(tier) or 0
        return {"reward_id": reward.reward_id, "title": reward.name(self.ctx.locale), "currency": reward.currency,
                "points": price, "kind": reward.kind, "affordable": available.get(reward.currency, 0) >= price,
                "benefit": reward.benefit.to_json(),
                "effect": basket_effect(reward.benefit, basket, rounding=program.discount_rounding).to_json()}
