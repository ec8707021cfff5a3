"""The rules engine: a basket and a program in, points and a trace out.

Pure and deterministic. Arithmetic is exact (Fraction) until the single,
named rounding at the end, and the trace records every rule that fired with
its inputs, so "why did I get these points" always has an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from posd.core.program import Program, Rounding


class RuleError(ValueError):
    """A basket the program cannot evaluate; `code` is the API's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BasketLine:
    sku: str
    category: str | None
    quantity: Decimal
    unit_price: int  # minor units
    discount: int = 0  # minor units, for the whole line

    @property
    def amount(self) -> int:
        """Line amount in minor units; half-up is the till's money rounding."""
        gross = (self.quantity * self.unit_price).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return int(gross) - self.discount


@dataclass(frozen=True)
class Basket:
    currency: str
    total: int  # minor units
    lines: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class Accrual:
    points: dict[str, int]
    trace: list[dict[str, Any]] = field(default_factory=list)
    program_version: str = ""


def round_points(value: Fraction, mode: Rounding) -> int:
    if mode == "floor":
        return value.numerator // value.denominator
    # half_up, for non-negative values (earn is never negative)
    return int((value + Fraction(1, 2)).__floor__())


def check_basket(basket: Basket) -> None:
    if basket.total < 0:
        raise RuleError("negative_total", "total must not be negative; use a return instead")
    if basket.lines:
        line_sum = sum(line.amount for line in basket.lines)
        if line_sum != basket.total:
            raise RuleError(
                "total_mismatch",
                f"lines add up to {line_sum} but total is {basket.total} (minor units)",
            )
        for i, line in enumerate(basket.lines):
            if line.amount < 0:
                raise RuleError("negative_line", f"lines[{i}]: discount exceeds the line amount")


def compute_accrual(program: Program, basket: Basket, tier_id: str | None) -> Accrual:
    check_basket(basket)
    rate = program.rates.get(basket.currency)
    if rate is None:
        raise RuleError(
            "unsupported_currency",
            f"the program earns on {', '.join(sorted(program.rates)) or 'no currency'}, not {basket.currency}",
        )
    trace: list[dict[str, Any]] = []
    exact = Fraction(basket.total * rate.points, rate.spend_minor)
    trace.append(
        {
            "rule": "base_rate",
            "spend_minor": basket.total,
            "rate": f"{rate.points} per {rate.spend_minor}",
            "points": str(exact),
        }
    )
    tier = program.tier(tier_id)
    if tier is not None and tier.multiplier != 1:
        exact *= tier.multiplier
        trace.append({"rule": "tier_multiplier", "tier": tier.tier_id,
                      "multiplier": str(tier.multiplier), "points": str(exact)})
    points = round_points(exact, program.rounding)
    trace.append({"rule": "rounding", "mode": program.rounding, "exact": str(exact), "points": points})
    return Accrual(points={program.earn_currency: points}, trace=trace, program_version=program.version)
