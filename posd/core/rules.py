"""The rules engine: a basket, a program and the moment of sale in; points and a trace out.

Pure and deterministic. Arithmetic is exact (Fraction) until the single,
named rounding per currency at the end, then per-transaction caps; the trace
records every rule that fired with its inputs, so "why did I get these
points" always has an answer. docs/program.md explains each rule.

Points are monotone in the basket: removing a line never raises any
currency's points. Returns rely on that: they re-evaluate what the member
kept and reverse the difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Mapping

from posd.core.program import Program, Rounding
from posd.core.rules_eval import (
    Evaluation,
    Line,
    apply_min_baskets,
    compute_base,
    evaluate_rules,
    show,
    split_excluded,
)
from posd.core.rules_spec import BaseRate

__all__ = ["RULE_ERROR_CODES", "Accrual", "Basket", "BasketLine", "EarnContext", "RuleError", "compute_accrual",
           "round_points"]

# Every code a RuleError carries: the lane passes them on to the POS as they are.
RULE_ERROR_CODES = ("negative_total", "negative_line", "total_mismatch", "unsupported_currency",
                    "invalid_occurred_at")


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
        gross = (self.quantity * self.unit_price).quantize(Decimal(1), rounding=ROUND_HALF_UP)
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
    if mode == "floor":
        return value.numerator // value.denominator
    # half_up, for non-negative values (earn is never negative)
    return (value + Fraction(1, 2)).__floor__()


def check_basket(basket: Basket) -> None:
    if basket.total < 0:
        raise RuleError("negative_total", "total must not be negative; use a return instead")
    for i, line in enumerate(basket.lines):
        if line.quantity < 0 or line.unit_price < 0 or line.discount < 0:
            raise RuleError("negative_line", f"lines[{i}]: quantity, unit_price and discount must not be "
                                             "negative; use a return instead")
        if line.amount < 0:
            raise RuleError("negative_line", f"lines[{i}]: discount exceeds the line amount")
    if basket.lines:
        line_sum = sum(line.amount for line in basket.lines)
        if line_sum != basket.total:
            raise RuleError(
                "total_mismatch",
                f"lines add up to {line_sum} but total is {basket.total} (minor units)",
            )


def earned_on(program: Program) -> list[str]:
    """The money currencies a sale earns on: those of the program's base rates."""
    return sorted({m for r in program.rules if isinstance(r, BaseRate) for m in r.rates})


def _check_money(program: Program, money: str) -> None:
    if money not in (earned := earned_on(program)):
        raise RuleError("unsupported_currency",
                        f"the program earns on {', '.join(earned) or 'no currency'}, not {money}")


def _lines(basket: Basket) -> list[Line]:
    if not basket.lines:  # a total without lines: one anonymous line no SKU rule can match
        return [Line(None, None, None, Fraction(0), basket.total)] if basket.total else []
    return [Line(i, line.sku, line.category, Fraction(line.quantity), line.amount)
            for i, line in enumerate(basket.lines)]


def _finish(ev: Evaluation) -> dict[str, int]:
    """One rounding per currency over the exact sum, then the per-transaction cap."""
    points: dict[str, int] = {}
    for currency in ev.program.currencies:
        code = currency.code
        exact = ev.exact.get(code, Fraction(0))
        rounded = round_points(exact, ev.program.rounding)
        if code in ev.exact:
            entry: dict[str, Any] = {"type": "rounding", "currency": code, "status": "applied",
                                     "mode": ev.program.rounding, "exact": show(exact), "points": rounded}
            if exact > 0 and rounded == 0:
                entry["rounded_to_zero"] = True
                entry["note"] = f"{show(exact)} {code} round down to 0 with {ev.program.rounding} rounding"
            ev.trace.append(entry)
        cap = ev.program.transaction_caps.get(code)
        if cap is not None and rounded > cap:
            ev.trace.append({"type": "transaction_cap", "currency": code, "status": "applied", "cap": cap,
                             "before": rounded, "points": cap})
            rounded = cap
        points[code] = rounded
    return points


def compute_accrual(program: Program, basket: Basket, ctx: EarnContext) -> Accrual:
    check_basket(basket)
    _check_money(program, basket.currency)
    if ctx.occurred_local.tzinfo is None or ctx.occurred_local.utcoffset() is None:
        raise RuleError("invalid_occurred_at", "occurred_local must be aware, in the store's timezone")
    trace: list[dict[str, Any]] = []
    eligible = split_excluded(program, _lines(basket), trace)
    ev = Evaluation(program=program, money=basket.currency, occurred_local=ctx.occurred_local,
                    tier_id=ctx.tier_id, birth_date=ctx.birth_date,
                    birthday_bonus_used=ctx.birthday_bonus_used, lines=eligible, trace=trace)
    apply_min_baskets(ev)
    compute_base(ev)
    evaluate_rules(ev)
    points = _finish(ev)
    return Accrual(points=points, trace=ev.trace, program_version=program.version,
                   birthday_bonus=ev.birthday_bonus)
