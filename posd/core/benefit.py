"""The value a reward, voucher or coupon carries, and the program's stacking rules. Pure data.

posd.core.effects computes what a benefit takes off a basket; this module only
names it, so the program model (posd.core.program) can carry it without the
rules engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from posd.core.rules_spec import Match

BenefitKind = Literal["amount_off", "percent_off", "free_item"]
BENEFIT_KINDS: tuple[str, ...] = ("amount_off", "percent_off", "free_item")


@dataclass(frozen=True)
class Benefit:
    """The value a reward, voucher or coupon carries."""

    kind: BenefitKind
    value_minor: int | None = None  # amount_off
    money: str | None = None  # ISO currency of value_minor; None = the basket's
    percent: int | None = None  # percent_off, 1-100
    sku: str | None = None  # free_item
    applies_to: Match = field(default_factory=Match)  # amount_off / percent_off: which lines; none = all
    category: str | None = None  # its stacking category (Program.stacking)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value_minor": self.value_minor, "money": self.money, "percent": self.percent,
                "sku": self.sku, "applies_to": {"skus": sorted(self.applies_to.skus),
                                                "categories": sorted(self.applies_to.categories)},
                "category": self.category}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Benefit:
        target = data.get("applies_to") or {}
        kind = data.get("kind")
        if kind not in BENEFIT_KINDS:
            raise ValueError(f"benefit kind {kind!r} is not one of {', '.join(BENEFIT_KINDS)}")
        return cls(kind=kind, value_minor=_opt_int(data.get("value_minor")), money=data.get("money"),
                   percent=_opt_int(data.get("percent")), sku=data.get("sku"),
                   applies_to=Match(frozenset(target.get("skus") or ()), frozenset(target.get("categories") or ())),
                   category=data.get("category"))


@dataclass(frozen=True)
class Stacking:
    """How many rewards, vouchers and coupons one basket takes, and which go alone."""

    max_per_basket: int | None = None  # None: no limit
    exclusive_categories: frozenset[str] = frozenset()


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
