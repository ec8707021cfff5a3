"""The rules engine: a basket, a program and the moment of sale in; points and a trace out.

Pure and deterministic. Arithmetic is exact (integer ratios: points/spend
in minor units, multipliers as fractions) until the single, named rounding per
currency at the end, then per-transaction caps; the trace
records every rule that fired with its inputs, so "why did I get these
points" always has an answer. docs/program.md explains each rule.

Points are monotone in the basket: removing a line never raises any
currency's points. Returns rely on that: they re-evaluate what the member
kept and reverse the difference.

The program is compiled once per version into plans (posd.core.rules_eval);
a sale runs the plan of its money currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Mapping

from posd.core.program import Program, Rounding
from posd.core.rules_eval import Line, Run, birthday_year, compiled, earned_on, round_ratio

__all__ = ["RULE_ERROR_CODES", "Accrual", "Basket", "BasketLine", "EarnContext", "RuleError", "compute_accrual",
           "earned_on", "round_points"]

# Every code a RuleError carries: the lane passes them on to the POS as they are.
RULE_ERROR_CODES = ("negative_total", "negative_line", "total_mismatch", "unsupported_currency",
                    "invalid_occurred_at", "points_out_of_range")


_ONE = Decimal(1)


# The most one event may carry in a currency: the sync protocol's MAX_POINTS (posd.sync.protocol.limits;
# a test holds them equal). A sale over it would be recorded here and refused by central for good.
MAX_SALE_POINTS = 10**12


class RuleError(ValueError):
    """A basket the program cannot evaluate; `code` (one of RULE_ERROR_CODES) is the API's error code."""

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
        gross = (self.quantity * self.unit_price).quantize(_ONE, rounding=ROUND_HALF_UP)
        return int(gross) - self.discount

    def to_json(self) -> dict[str, Any]:
        """As stored with the sale and sent in its event; the quantity as an exact decimal string."""
        return {"sku": self.sku, "category": self.category, "quantity": str(self.quantity),
                "unit_price": self.unit_price, "discount": self.discount}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BasketLine:
        return cls(sku=data["sku"], category=data.get("category"), quantity=Decimal(data["quantity"]),
                   unit_price=int(data["unit_price"]), discount=int(data.get("discount", 0)))


@dataclass(frozen=True)
class Basket:
    currency: str
    total: int  # minor units
    lines: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class EarnContext:
    tier_id: str | None
    occurred_local: datetime  # aware, in the store's timezone: promotions read its wall clock
    birth_date: date | None = None
    birthday_bonus_used: bool = False  # the lane knows whether this year's bonus was given

    @property
    def birthday_year(self) -> int:
        """The year whose birthday bonus this sale would give (the year of the birthday nearest it;
        the sale's own year when no birth date is known)."""
        today = self.occurred_local.date()
        return today.year if self.birth_date is None else birthday_year(self.birth_date, today)

    def to_json(self) -> dict[str, Any]:
        """As stored with the sale, so a return evaluates the very same moment and member."""
        return {"tier_id": self.tier_id, "occurred_local": self.occurred_local.isoformat(),
                "birth_date": self.birth_date.isoformat() if self.birth_date else None,
                "birthday_bonus_used": self.birthday_bonus_used}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EarnContext:
        # Unknown keys are ignored: the sale's record keeps a little more than the context.
        birth = data.get("birth_date")
        return cls(tier_id=data.get("tier_id"), occurred_local=datetime.fromisoformat(data["occurred_local"]),
                   birth_date=date.fromisoformat(birth) if birth else None,
                   birthday_bonus_used=bool(data.get("birthday_bonus_used")))


@dataclass(frozen=True)
class Accrual:
    points: dict[str, int]  # every program currency, in program order; 0 when nothing earned
    trace: list[dict[str, Any]] = field(default_factory=list)
    program_version: str = ""
    birthday_bonus: bool = False  # this accrual includes the birthday bonus: the lane records it as used

    def to_json(self) -> dict[str, Any]:
        """What the POS is told: points per currency, the rule trace, the program version."""
        return {"points": self.points, "trace": self.trace, "program_version": self.program_version}


def round_points(value: Fraction, mode: Rounding) -> int:
    return round_ratio(value.numerator, value.denominator, mode)


def check_basket(basket: Basket) -> None:
    checked_lines(basket)


def checked_lines(basket: Basket) -> list[Line]:
    """The basket's lines as the rules engine reads them, each amount worked out once, after the
    checks every evaluation makes (RuleError if one fails)."""
    if basket.total < 0:
        raise RuleError("negative_total", "total must not be negative; use a return instead")
    lines: list[Line] = []
    line_sum = 0
    for i, line in enumerate(basket.lines):
        if line.quantity < 0 or line.unit_price < 0 or line.discount < 0:
            raise RuleError("negative_line", f"lines[{i}]: quantity, unit_price and discount must not be "
                                             "negative; use a return instead")
        amount = line.amount
        if amount < 0:
            raise RuleError("negative_line", f"lines[{i}]: discount exceeds the line amount")
        lines.append((i, line.sku, line.category, line.quantity, amount))
        line_sum += amount
    if not basket.lines:  # a total without lines: one anonymous line no SKU rule can match
        return [(None, None, None, 0, basket.total)] if basket.total else []
    if line_sum != basket.total:
        raise RuleError("total_mismatch", f"lines add up to {line_sum} but total is {basket.total} (minor units)")
    return lines


def compute_accrual(program: Program, basket: Basket, ctx: EarnContext) -> Accrual:
    lines = checked_lines(basket)
    rules = compiled(program)
    money = basket.currency
    if money not in rules.earned:
        raise RuleError("unsupported_currency",
                        f"the program earns on {', '.join(rules.earned) or 'no currency'}, not {money}")
    local = ctx.occurred_local
    if local.tzinfo is None or local.utcoffset() is None:
        raise RuleError("invalid_occurred_at", "occurred_local must be aware, in the store's timezone")
    run = Run(money, lines, ctx.tier_id, local, ctx.birth_date, ctx.birthday_bonus_used)
    points = rules.plan(money).run(run)
    for currency, earned in points.items():
        if abs(earned) > MAX_SALE_POINTS:
            raise RuleError("points_out_of_range",
                            f"the program gives this sale {earned} {currency}, more than one sale may carry "
                            f"({MAX_SALE_POINTS}): the program needs mending at central")
    return Accrual(points=points, trace=run.trace, program_version=program.version,
                   birthday_bonus=run.birthday_bonus)
