"""The rules engine as it was before it compiled programs into plans: the reference the
property tests hold the compiled engine to (tests/test_rules_reference.py), rule by rule,
trace entry by trace entry, byte for byte. Kept as it was written; not used by posd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from fractions import Fraction
from typing import Any

from posd.core.program import Program, Rounding
from posd.core.rules import Accrual, Basket, EarnContext, RuleError
from posd.core.rules_eval import _near_birthday  # unchanged: the compiled engine's birthday window is this one
from posd.core.rules_spec import BaseRate, Birthday, Exclude, Match, MinBasket, Multiplier, PerUnit, Rule, \
    ThresholdBonus, Window


def show(value: Fraction) -> str:
    """An exact number for people: "194.985" when it is a finite decimal, else "1/3"."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = value.numerator * (10**places // value.denominator)  # exact: the denominator divides 10**places
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    return sign + (f"{digits[:-places]}.{digits[-places:]}" if places else digits)


@dataclass(frozen=True)
class Line:
    index: int | None  # position in the basket; None for a basket given as a total only
    sku: str | None
    category: str | None
    quantity: Fraction
    amount: int  # minor units, after the line discount


@dataclass
class Evaluation:
    program: Program
    money: str
    occurred_local: datetime
    tier_id: str | None
    birth_date: date | None
    birthday_bonus_used: bool
    lines: list[Line]  # eligible lines only: exclusions already removed
    trace: list[dict[str, Any]] = field(default_factory=list)
    exact: dict[str, Fraction] = field(default_factory=dict)
    base: dict[str, dict[int, Fraction]] = field(default_factory=dict)  # currency -> line position -> points
    blocked: set[str] = field(default_factory=set)  # currencies a minimum basket stopped
    birthday_bonus: bool = False

    @property
    def spend(self) -> int:
        return sum(line.amount for line in self.lines)

    def matching(self, match: Match) -> list[int]:
        return [pos for pos, line in enumerate(self.lines) if match.matches(line.sku, line.category)]

    def indexes(self, positions: list[int]) -> list[int]:
        return [i for i in (self.lines[p].index for p in positions) if i is not None]

    def credit(self, rule: Rule | str, currency: str, points: Fraction, **inputs: Any) -> None:
        """Add `points` (exact) to `currency`; `rule` is a rule or, for the tier bonus, a type name."""
        self.exact[currency] = self.exact.get(currency, Fraction(0)) + points
        self.trace.append({**_head(rule, currency, "applied"), **inputs, "points": show(points)})

    def skip(self, rule: Rule, currency: str, reason: str, **inputs: Any) -> None:
        """A rule considered but not applicable, where saying so answers "why not?"."""
        self.trace.append({**_head(rule, currency, "skipped"), "reason": reason, **inputs, "points": "0"})


def _head(rule: Rule | str, currency: str, status: str) -> dict[str, Any]:
    named = {"type": rule} if isinstance(rule, str) else {"rule": rule.rule_id, "type": rule.type}
    return {**named, "currency": currency, "status": status}


def split_excluded(program: Program, lines: list[Line], trace: list[dict[str, Any]]) -> list[Line]:
    """Drop excluded lines (they earn nothing and count toward no minimum or threshold)."""
    kept = list(lines)
    for rule in program.rules:
        if not isinstance(rule, Exclude):
            continue
        out = [line for line in kept if rule.match.matches(line.sku, line.category)]
        if out:
            kept = [line for line in kept if not rule.match.matches(line.sku, line.category)]
            trace.append({"rule": rule.rule_id, "type": rule.type, "status": "applied",
                          "lines": [line.index for line in out if line.index is not None],
                          "excluded_spend_minor": sum(line.amount for line in out)})
    return kept


def apply_min_baskets(ev: Evaluation) -> None:
    for rule in ev.program.rules:
        if not isinstance(rule, MinBasket) or ev.money not in rule.min_spend_minor:
            continue
        need = rule.min_spend_minor[ev.money]
        if ev.spend < need:
            everything = [c.code for c in ev.program.currencies]
            stopped = sorted(rule.currencies) if rule.currencies is not None else everything
            ev.blocked.update(stopped)
            ev.trace.append({"rule": rule.rule_id, "type": rule.type, "status": "not_met",
                             "eligible_spend_minor": ev.spend, "min_spend_minor": need,
                             "money": ev.money, "nothing_earned_in": stopped})


def compute_base(ev: Evaluation) -> None:
    """Base points per line, kept apart so multipliers and the tier bonus read them."""
    for rule in ev.program.rules:
        if isinstance(rule, BaseRate) and ev.money in rule.rates:
            rate = rule.rates[ev.money]
            ev.base[rule.currency] = {pos: Fraction(line.amount * rate.points, rate.spend_minor)
                                      for pos, line in enumerate(ev.lines)}


def _open(ev: Evaluation, rule: Rule, when: Window | None) -> bool:
    if when is None or when.contains(ev.occurred_local):
        return True
    ev.skip(rule, rule.currency, "outside_window", window=when.describe(),  # type: ignore[union-attr]
            occurred_local=ev.occurred_local.replace(tzinfo=None).isoformat(timespec="minutes"))
    return False


def _capped(points: Fraction, cap: int | None) -> tuple[Fraction, dict[str, Any]]:
    if cap is None or points <= cap:
        return points, {} if cap is None else {"cap": cap}
    return Fraction(cap), {"cap": cap, "uncapped": show(points), "cap_applied": True}


def eval_base_rate(ev: Evaluation, rule: BaseRate) -> None:
    rate = rule.rates.get(ev.money)
    if rate is None:
        ev.skip(rule, rule.currency, "no_rate_for_money", money=ev.money)
        return
    # the sum of the lines' base points (compute_base), added over their one denominator
    points = Fraction(ev.spend * rate.points, rate.spend_minor)
    ev.credit(rule, rule.currency, points, money=ev.money, rate=f"{rate.points} per {rate.spend_minor}",
              eligible_spend_minor=ev.spend)
    if ev.program.currency(rule.currency).kind == "redeemable":  # type: ignore[union-attr]
        eval_tier_bonus(ev, rule.currency, points)


def eval_tier_bonus(ev: Evaluation, currency: str, base: Fraction) -> None:
    """Additive: a x1.5 tier adds half the base again, whatever else fired."""
    tier = ev.program.tier(ev.tier_id)
    if tier is None:
        if ev.tier_id is not None:
            ev.trace.append({**_head("tier_bonus", currency, "skipped"), "reason": "unknown_tier",
                             "tier": ev.tier_id, "points": "0"})
        return
    if tier.multiplier != 1:
        ev.credit("tier_bonus", currency, base * (tier.multiplier - 1), tier=tier.tier_id,
                  multiplier=show(tier.multiplier), base=show(base))


def eval_multiplier(ev: Evaluation, rule: Multiplier) -> None:
    if not _open(ev, rule, rule.when):
        return
    hits = ev.matching(rule.match)
    if not hits or rule.currency not in ev.base:
        return
    base = sum((ev.base[rule.currency][pos] for pos in hits), Fraction(0))
    points, cap = _capped(base * (rule.multiplier - 1), rule.cap)
    ev.credit(rule, rule.currency, points, multiplier=show(rule.multiplier), base=show(base),
              lines=ev.indexes(hits), **cap)


def eval_per_unit(ev: Evaluation, rule: PerUnit) -> None:
    if not _open(ev, rule, rule.when):
        return
    hits = ev.matching(rule.match)
    if not hits:
        return
    units = sum((ev.lines[pos].quantity for pos in hits), Fraction(0))
    points, cap = _capped(units * rule.points_per_unit, rule.cap)
    ev.credit(rule, rule.currency, points, units=show(units), points_per_unit=rule.points_per_unit,
              lines=ev.indexes(hits), **cap)


def eval_threshold_bonus(ev: Evaluation, rule: ThresholdBonus) -> None:
    need = rule.min_spend_minor.get(ev.money)
    if need is None or not _open(ev, rule, rule.when):
        return
    hits = ev.matching(rule.match)
    spend = sum(ev.lines[pos].amount for pos in hits)
    inputs = {"money": ev.money, "spend_minor": spend, "min_spend_minor": need}
    if spend <= 0 or spend < need:
        ev.skip(rule, rule.currency, "below_threshold", **inputs)
        return
    ev.credit(rule, rule.currency, Fraction(rule.points), **inputs)


def eval_birthday(ev: Evaluation, rule: Birthday) -> None:
    today = ev.occurred_local.date()
    if ev.birth_date is None or not _near_birthday(ev.birth_date, today, rule.window_days):
        return
    if ev.birthday_bonus_used:
        ev.skip(rule, rule.currency, "already_used_this_year")
    elif ev.spend <= 0:  # so a full return takes the bonus back too
        ev.skip(rule, rule.currency, "no_eligible_spend")
    else:
        ev.birthday_bonus = True
        ev.credit(rule, rule.currency, Fraction(rule.points), window_days=rule.window_days)


EVALUATORS: dict[type, Any] = {
    BaseRate: eval_base_rate,
    Multiplier: eval_multiplier,
    PerUnit: eval_per_unit,
    ThresholdBonus: eval_threshold_bonus,
    Birthday: eval_birthday,
}


def evaluate_rules(ev: Evaluation) -> None:
    """Every earning rule in program order; exclusions and minimum baskets ran before."""
    for rule in ev.program.rules:
        evaluator = EVALUATORS.get(type(rule))
        if evaluator is not None and getattr(rule, "currency", None) not in ev.blocked:
            evaluator(ev, rule)


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
