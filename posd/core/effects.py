"""What a reward, voucher or coupon takes off a basket: its effect, and how several stack.

Pure. A ``Benefit`` is the value a reward, voucher or coupon carries (amount
off, percent off, a free item), optionally only on some lines (by SKU or
category). ``basket_effect`` answers what it takes off one basket, line by
line, in minor units, so the POS applies it to its own total (and each
line's tax); ``apply_stack`` applies several in the order given under the
program's stacking rules and says, for each one not applied, why.

Arithmetic: money is integer minor units. A percent is computed exactly and
rounded once with the program's ``discount_rounding``; an amount is capped at
what the lines it applies to still cost; every split across lines is by
largest remainder, so the lines always add up to the effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Mapping

from posd.core.benefit import Benefit, Stacking
from posd.core.rules import Basket, BasketLine, round_points

# Why an effect did not apply (the answer's `reason`).
REASONS: dict[str, str] = {
    "no_matching_lines": "no line of the basket is one this applies to",
    "item_not_in_basket": "the free item is not in the basket: add it first",
    "nothing_left": "the lines this applies to cost nothing any more",
    "other_currency": "its value is in another money currency than the basket's",
    "max_per_basket": "the program allows no more rewards, vouchers or coupons on one basket",
    "exclusive_category": "its category, or one already applied, is exclusive: it is applied alone",
}


@dataclass(frozen=True)
class LineEffect:
    index: int  # position in the basket's lines
    sku: str
    amount_off_minor: int


@dataclass(frozen=True)
class Effect:
    """What one benefit takes off one basket; ``applicable`` False says why not (``reason``)."""

    applicable: bool
    amount_off_minor: int = 0
    lines: tuple[LineEffect, ...] = ()
    free_item: dict[str, Any] | None = None  # {"sku", "quantity"} for a free item
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"applicable": self.applicable, "amount_off_minor": self.amount_off_minor,
                               "lines": [{"index": ln.index, "sku": ln.sku, "amount_off_minor": ln.amount_off_minor}
                                         for ln in self.lines],
                               "free_item": self.free_item, "reason": self.reason}
        return out


def not_applicable(reason: str) -> Effect:
    return Effect(applicable=False, reason=reason)


@dataclass(frozen=True)
class _Line:
    index: int | None  # None: a basket given as a total only
    sku: str | None
    category: str | None
    quantity: Decimal
    net: int  # what it still costs, after its discount and earlier effects


def _lines(basket: Basket, taken: Mapping[int, int]) -> list[_Line]:
    if not basket.lines:
        return [_Line(None, None, None, Decimal(1), basket.total - taken.get(-1, 0))]
    return [_Line(i, ln.sku, ln.category, ln.quantity, ln.amount - taken.get(i, 0))
            for i, ln in enumerate(basket.lines)]


def split(total: int, weights: list[tuple[int, Fraction]]) -> dict[int, int]:
    """``total`` split over keys in proportion to their weights, by largest remainder (ties: first key)."""
    weight_sum = sum((w for _, w in weights), Fraction(0))
    if total == 0 or weight_sum == 0:
        return {key: 0 for key, _ in weights}
    exact = [(key, total * w / weight_sum) for key, w in weights]
    shares = {key: share.numerator // share.denominator for key, share in exact}
    left = total - sum(shares.values())
    by_remainder = sorted(range(len(exact)), key=lambda n: (-(exact[n][1] - shares[exact[n][0]]), n))
    for n in by_remainder[:left]:
        shares[exact[n][0]] += 1
    return shares


def basket_effect(benefit: Benefit, basket: Basket, *, rounding: str = "half_up",
                  taken: Mapping[int, int] | None = None) -> Effect:
    """What ``benefit`` takes off ``basket`` (after ``taken``: line index -> minor units earlier effects took;
    -1 for a basket without lines)."""
    lines = _lines(basket, taken or {})
    if benefit.kind == "free_item":
        return _free_item(benefit, lines)
    if benefit.money and benefit.money != basket.currency and benefit.kind == "amount_off":
        return not_applicable("other_currency")
    matched = [ln for ln in lines if ln.index is None and benefit.applies_to.everything
               or ln.index is not None and benefit.applies_to.matches(ln.sku, ln.category)]
    if not matched:
        return not_applicable("no_matching_lines")
    base = sum(ln.net for ln in matched)
    if base <= 0:
        return not_applicable("nothing_left")
    if benefit.kind == "amount_off":
        off = min(int(benefit.value_minor or 0), base)
    else:
        off = min(round_points(Fraction(base * int(benefit.percent or 0), 100), rounding), base)  # type: ignore[arg-type]
    shares = split(off, [(pos, Fraction(ln.net)) for pos, ln in enumerate(matched) if ln.net > 0])
    per_line = tuple(LineEffect(ln.index, ln.sku or "", shares[pos])
                     for pos, ln in enumerate(matched) if ln.index is not None and shares.get(pos))
    return Effect(applicable=off > 0, amount_off_minor=off, lines=per_line,
                  reason=None if off > 0 else "nothing_left")


def _free_item(benefit: Benefit, lines: list[_Line]) -> Effect:
    candidates = [ln for ln in lines if ln.index is not None and ln.sku == benefit.sku]
    if not candidates:
        return not_applicable("item_not_in_basket")
    left = [ln for ln in candidates if ln.net > 0]
    if not left:
        return not_applicable("nothing_left")

    def unit_net(ln: _Line) -> int:
        """One unit's share of what the line still costs (a line of less than one unit: all of it)."""
        if ln.quantity <= 1:
            return ln.net
        share = (Decimal(ln.net) / ln.quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return min(ln.net, int(share))

    line = min(left, key=lambda ln: (unit_net(ln), ln.index))  # the cheapest unit goes free
    off = unit_net(line)
    quantity = min(line.quantity, Decimal(1))
    return Effect(applicable=True, amount_off_minor=off, lines=(LineEffect(line.index, line.sku or "", off),),  # type: ignore[arg-type]
                  free_item={"sku": benefit.sku, "quantity": str(quantity)})


@dataclass(frozen=True)
class Stacked:
    """One entry of a stack: its id (code or reward id), its effect and whether it was applied."""

    ident: str
    applied: bool
    effect: Effect
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ident, "applied": self.applied, "reason": self.reason, "effect": self.effect.to_json()}


@dataclass(frozen=True)
class StackResult:
    entries: tuple[Stacked, ...]
    amount_off_minor: int
    taken: dict[int, int]  # line index -> minor units taken off (-1: a basket without lines)

    def to_json(self) -> dict[str, Any]:
        return {"amount_off_minor": self.amount_off_minor,
                "applied": [e.to_json() for e in self.entries if e.applied],
                "not_applied": [e.to_json() for e in self.entries if not e.applied]}


def apply_stack(stacking: Stacking, offers: list[tuple[str, Benefit]], basket: Basket, *,
                rounding: str = "half_up") -> StackResult:
    """Apply ``offers`` in the order given: each on what the earlier ones left of the basket,
    within ``max_per_basket``; an exclusive category's offer goes alone (first come first served)."""
    taken: dict[int, int] = {}
    entries: list[Stacked] = []
    applied_categories: list[str | None] = []
    for ident, benefit in offers:
        effect = basket_effect(benefit, basket, rounding=rounding, taken=taken)
        reason = None
        exclusive_now = benefit.category in stacking.exclusive_categories
        if stacking.max_per_basket is not None and len(applied_categories) >= stacking.max_per_basket:
            reason = "max_per_basket"
        elif applied_categories and (exclusive_now or
                                     any(c in stacking.exclusive_categories for c in applied_categories)):
            reason = "exclusive_category"
        elif not effect.applicable:
            reason = effect.reason
        if reason is not None:
            entries.append(Stacked(ident, False, effect, reason))
            continue
        for ln in effect.lines:
            taken[ln.index] = taken.get(ln.index, 0) + ln.amount_off_minor
        if not effect.lines:  # a basket without lines
            taken[-1] = taken.get(-1, 0) + effect.amount_off_minor
        applied_categories.append(benefit.category)
        entries.append(Stacked(ident, True, effect))
    return StackResult(tuple(entries), sum(taken.values()), taken)


def discounted(basket: Basket, taken: Mapping[int, int]) -> Basket:
    """The basket as the POS rings it after applying ``taken`` (each line's discount grows by it)."""
    if not basket.lines:
        return Basket(basket.currency, basket.total - taken.get(-1, 0))
    lines = tuple(BasketLine(ln.sku, ln.category, ln.quantity, ln.unit_price, ln.discount + taken.get(i, 0))
                  for i, ln in enumerate(basket.lines))
    return Basket(basket.currency, basket.total - sum(v for k, v in taken.items() if k >= 0), lines)

