"""Evaluating each earning rule against a basket: exact contributions and trace entries.

A program is compiled once per version (``compiled``: kept on the Program
object) into one plan per money currency: the exclusions, the minimum baskets
and one step per earning rule, in program order, with everything a step needs
that does not depend on the sale worked out already (its rate for this money,
its base rate's, its window as the trace describes it, its multiplier as text).
A sale then runs its plan: each step adds its exact points to one currency and
appends one trace entry saying what it saw and what it gave. Rounding happens
once per currency afterwards (``Plan.finish``), never in a step.

Exact arithmetic on integers: a contribution is a pair (numerator, denominator),
never rounded; the trace shows it with ``show_ratio``, as ``show`` shows a
Fraction. The trace's precomputed parts (a window's description) are shared by
every sale's trace: nothing changes a trace entry once it is built.
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from math import gcd
from typing import TYPE_CHECKING, Any

from posd.core.rules_spec import (
    BaseRate,
    Birthday,
    Exclude,
    Match,
    MinBasket,
    Multiplier,
    PerUnit,
    Rule,
    ThresholdBonus,
    Window,
)

if TYPE_CHECKING:
    from posd.core.program import Program

# A basket line as a plan reads it: (position in the basket or None for a total-only basket, sku,
# category, quantity, amount in minor units after the line discount).
Line = tuple[int | None, str | None, str | None, Decimal | int, int]
Ratio = tuple[int, int]  # exact points: (numerator, denominator > 0), not necessarily reduced


def show(value: Fraction) -> str:
    """An exact number for people: "194.985" when it is a finite decimal, else "1/3"."""
    return show_ratio(value.numerator, value.denominator)


def show_ratio(numerator: int, denominator: int) -> str:
    """``show`` of numerator/denominator (denominator > 0)."""
    g = gcd(numerator, denominator)
    if g != 1:
        numerator, denominator = numerator // g, denominator // g
    if denominator == 1:
        return str(numerator)
    decimal = _decimal_places(denominator)
    if decimal is None:
        return f"{numerator}/{denominator}"
    places, factor = decimal
    scaled = numerator * factor  # exact: the denominator divides 10**places
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


@functools.lru_cache(maxsize=256)
def _decimal_places(denominator: int) -> tuple[int, int] | None:
    """(places, 10**places // denominator) when 1/denominator is a finite decimal, else None."""
    den, twos, fives = denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return None
    places = max(twos, fives)
    return places, 10**places // denominator


def round_ratio(numerator: int, denominator: int, mode: str) -> int:
    """numerator/denominator rounded by the program's named mode: floor, or half_up (floor of x + 1/2;
    points earned are never negative)."""
    if mode == "floor":
        return numerator // denominator
    return (2 * numerator + denominator) // (2 * denominator)


class Run:
    """One sale going through its plan: what the steps read, and what they add up."""

    __slots__ = ("money", "lines", "spend", "tier_id", "local", "wall", "_when", "birth_date", "bonus_used",
                 "trace", "exact", "blocked", "birthday_bonus")

    def __init__(self, money: str, lines: list[Line], tier_id: str | None, local: datetime,
                 birth_date: date | None, bonus_used: bool):
        self.money, self.lines, self.tier_id, self.local = money, lines, tier_id, local
        self.spend = 0
        self.wall = local.replace(tzinfo=None)
        self._when: str | None = None
        self.birth_date, self.bonus_used = birth_date, bonus_used
        self.trace: list[dict[str, Any]] = []
        self.exact: dict[str, Ratio] = {}
        self.blocked: set[str] = set()
        self.birthday_bonus = False

    def add(self, currency: str, numerator: int, denominator: int) -> None:
        """Add numerator/denominator points (exact) to ``currency``."""
        before = self.exact.get(currency)
        if before is None:
            self.exact[currency] = (numerator, denominator)
        elif before[1] == denominator:
            self.exact[currency] = (before[0] + numerator, denominator)
        else:
            num, den = before[0] * denominator + numerator * before[1], before[1] * denominator
            g = gcd(num, den)
            self.exact[currency] = (num // g, den // g)

    def when(self) -> str:
        """The sale's store-local minute, as a window's skip shows it."""
        if self._when is None:
            self._when = self.wall.isoformat(timespec="minutes")
        return self._when


def _indexes(lines: list[Line]) -> list[int]:
    out = []
    for line in lines:  # loops rather than comprehensions here: no frame per call (CPython 3.11)
        if line[0] is not None:
            out.append(line[0])
    return out


def _spend(lines: list[Line]) -> int:
    spend = 0
    for line in lines:
        spend += line[4]
    return spend


def _capped(num: int, den: int, cap: int | None) -> tuple[int, int, dict[str, Any]]:
    if cap is None:
        return num, den, {}
    if num <= cap * den:
        return num, den, {"cap": cap}
    return cap, 1, {"cap": cap, "uncapped": show_ratio(num, den), "cap_applied": True}


class Step:
    """One earning rule, ready for one money currency."""

    __slots__ = ("rule_id", "type", "currency", "everything", "skus", "categories", "window", "window_text")

    def __init__(self, rule: Rule, match: Match | None = None, window: Window | None = None):
        self.rule_id, self.type, self.currency = rule.rule_id, rule.type, getattr(rule, "currency", None)
        match = match or Match()
        self.everything, self.skus, self.categories = match.everything, match.skus, match.categories
        self.window = window
        self.window_text = window.describe() if window is not None else None

    def run(self, r: Run) -> None:
        raise NotImplementedError

    def hits(self, lines: list[Line]) -> list[Line]:
        if self.everything:
            return lines
        skus, categories, out = self.skus, self.categories, []
        for line in lines:
            if line[1] in skus or line[2] in categories:
                out.append(line)
        return out

    def open(self, r: Run) -> bool:
        """Is the sale inside the rule's window? Saying so in the trace when it is not."""
        if self.window is None or self.window.holds(r.wall):
            return True
        r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "skipped",
                        "reason": "outside_window", "window": self.window_text, "occurred_local": r.when(),
                        "points": "0"})
        return False

    def skip(self, r: Run, reason: str) -> None:
        r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "skipped",
                        "reason": reason, "points": "0"})


class BaseStep(Step):
    __slots__ = ("rate", "rate_text", "tiers")

    def __init__(self, rule: BaseRate, money: str, tiers: dict[str, tuple[str, int, int, str]] | None):
        """``tiers``: tier id -> (id, multiplier numerator, denominator, as text), for a redeemable
        currency, whose base earns the tier bonus; None for another kind."""
        super().__init__(rule)
        rate = rule.rates.get(money)
        self.rate = (rate.points, rate.spend_minor) if rate else None
        self.rate_text = f"{rate.points} per {rate.spend_minor}" if rate else ""
        self.tiers = tiers

    def run(self, r: Run) -> None:
        if self.rate is None:
            r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "skipped",
                            "reason": "no_rate_for_money", "money": r.money, "points": "0"})
            return
        num, den = r.spend * self.rate[0], self.rate[1]  # the lines' base points over their one denominator
        r.add(self.currency, num, den)
        base = show_ratio(num, den)
        r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "applied",
                        "money": r.money, "rate": self.rate_text, "eligible_spend_minor": r.spend, "points": base})
        if self.tiers is not None:
            self.tier_bonus(r, num, den, base)

    def tier_bonus(self, r: Run, num: int, den: int, base: str) -> None:
        """Additive: a x1.5 tier adds half the base again, whatever else fired."""
        tier = self.tiers.get(r.tier_id) if r.tier_id is not None else None  # type: ignore[union-attr]
        if tier is None:
            if r.tier_id is not None:
                r.trace.append({"type": "tier_bonus", "currency": self.currency, "status": "skipped",
                                "reason": "unknown_tier", "tier": r.tier_id, "points": "0"})
            return
        tier_id, m_num, m_den, m_text = tier
        if m_num != m_den:
            num, den = num * (m_num - m_den), den * m_den
            r.add(self.currency, num, den)
            r.trace.append({"type": "tier_bonus", "currency": self.currency, "status": "applied", "tier": tier_id,
                            "multiplier": m_text, "base": base, "points": show_ratio(num, den)})


class MultiplierStep(Step):
    __slots__ = ("base_rate", "extra", "multiplier_text", "cap")

    def __init__(self, rule: Multiplier, base_rate: tuple[int, int] | None):
        """``base_rate``: (points, spend_minor) of the currency's base rate in this money, if it has one."""
        super().__init__(rule, rule.match, rule.when)
        self.base_rate = base_rate
        extra = rule.multiplier - 1
        self.extra = (extra.numerator, extra.denominator)
        self.multiplier_text = show(rule.multiplier)
        self.cap = rule.cap

    def run(self, r: Run) -> None:
        if not self.open(r):
            return
        hits = self.hits(r.lines)
        if not hits or self.base_rate is None:
            return
        num, den = _spend(hits) * self.base_rate[0], self.base_rate[1]
        num2, den2, cap = _capped(num * self.extra[0], den * self.extra[1], self.cap)
        r.add(self.currency, num2, den2)
        r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "applied",
                        "multiplier": self.multiplier_text, "base": show_ratio(num, den), "lines": _indexes(hits),
                        **cap, "points": show_ratio(num2, den2)})


class PerUnitStep(Step):
    __slots__ = ("points_per_unit", "cap")

    def __init__(self, rule: PerUnit):
        super().__init__(rule, rule.match, rule.when)
        self.points_per_unit, self.cap = rule.points_per_unit, rule.cap

    def run(self, r: Run) -> None:
        if not self.open(r):
            return
        hits = self.hits(r.lines)
        if not hits:
            return
        num, den = 0, 1
        for line in hits:
            n, d = line[3].as_integer_ratio()
            num, den = (num + n, den) if d == den else (num * d + n * den, den * d)
        num2, den2, cap = _capped(num * self.points_per_unit, den, self.cap)
        r.add(self.currency, num2, den2)
        r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "applied",
                        "units": show_ratio(num, den), "points_per_unit": self.points_per_unit,
                        "lines": _indexes(hits), **cap, "points": show_ratio(num2, den2)})


class ThresholdStep(Step):
    __slots__ = ("need", "points")

    def __init__(self, rule: ThresholdBonus, need: int):
        super().__init__(rule, rule.match, rule.when)
        self.need, self.points = need, rule.points

    def run(self, r: Run) -> None:
        if not self.open(r):
            return
        spend = _spend(self.hits(r.lines))
        if spend <= 0 or spend < self.need:
            status, reason, points = "skipped", "below_threshold", "0"
        else:
            status, reason, points = "applied", None, str(self.points)
            r.add(self.currency, self.points, 1)
        entry = {"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": status}
        if reason:
            entry["reason"] = reason
        entry |= {"money": r.money, "spend_minor": spend, "min_spend_minor": self.need, "points": points}
        r.trace.append(entry)


class BirthdayStep(Step):
    __slots__ = ("points", "window_days")

    def __init__(self, rule: Birthday):
        super().__init__(rule)
        self.points, self.window_days = rule.points, rule.window_days

    def run(self, r: Run) -> None:
        if r.birth_date is None or not _near_birthday(r.birth_date, r.local.date(), self.window_days):
            return
        if r.bonus_used:
            self.skip(r, "already_used_this_year")
        elif r.spend <= 0:  # so a full return takes the bonus back too
            self.skip(r, "no_eligible_spend")
        else:
            r.birthday_bonus = True
            r.add(self.currency, self.points, 1)
            r.trace.append({"rule": self.rule_id, "type": self.type, "currency": self.currency, "status": "applied",
                            "window_days": self.window_days, "points": str(self.points)})


def _near_birthday(birth: date, today: date, window_days: int) -> bool:
    return abs((today - _nearest_birthday(birth, today)).days) <= window_days


def birthday_year(birth: date, today: date) -> int:
    """The year of the member's birthday nearest ``today``: the year whose bonus a sale on ``today``
    gives, so a window across New Year is one birthday (30 December near a 1 January birthday is
    next year's bonus, 2 January near it this year's)."""
    return _nearest_birthday(birth, today).year


def _nearest_birthday(birth: date, today: date) -> date:
    return min((_birthday_in(birth, year) for year in (today.year - 1, today.year, today.year + 1)),
               key=lambda day: abs((today - day).days))


def _birthday_in(birth: date, year: int) -> date:
    try:
        return birth.replace(year=year)
    except ValueError:  # 29 February in a common year: the 28th
        return date(year, 2, 28)


class Plan:
    """A program's rules for sales in one money currency."""

    def __init__(self, program: Program, money: str):
        self.money = money
        codes = [c.code for c in program.currencies]
        self.exclusions = [(rule.rule_id, rule.match.skus, rule.match.categories)
                           for rule in program.rules if isinstance(rule, Exclude)]
        self.minimums = [(rule.rule_id, rule.min_spend_minor[money],
                          sorted(rule.currencies) if rule.currencies is not None else codes)
                         for rule in program.rules if isinstance(rule, MinBasket) and money in rule.min_spend_minor]
        tiers: dict[str, tuple[str, int, int, str]] = {}
        for tier in program.tiers:  # the first of a tier id, as Program.tier finds it
            tiers.setdefault(tier.tier_id, (tier.tier_id, tier.multiplier.numerator, tier.multiplier.denominator,
                                            show(tier.multiplier)))
        kinds = {c.code: c.kind for c in program.currencies}
        bases = {rule.currency: (rule.rates[money].points, rule.rates[money].spend_minor)
                 for rule in program.rules if isinstance(rule, BaseRate) and money in rule.rates}
        steps: list[Step] = []
        for rule in program.rules:
            if isinstance(rule, BaseRate):
                steps.append(BaseStep(rule, money, tiers if kinds.get(rule.currency) == "redeemable" else None))
            elif isinstance(rule, Multiplier):
                steps.append(MultiplierStep(rule, bases.get(rule.currency)))
            elif isinstance(rule, PerUnit):
                steps.append(PerUnitStep(rule))
            elif isinstance(rule, ThresholdBonus):
                if money in rule.min_spend_minor:  # a threshold in another money never applies to this one
                    steps.append(ThresholdStep(rule, rule.min_spend_minor[money]))
            elif isinstance(rule, Birthday):
                steps.append(BirthdayStep(rule))
        self.steps = steps
        self.rounding = program.rounding
        self.caps = [(code, program.transaction_caps.get(code)) for code in codes]

    def run(self, r: Run) -> dict[str, int]:
        """The sale's points per currency (program order); its trace grows on ``r``."""
        lines, trace = r.lines, r.trace
        for rule_id, skus, categories in self.exclusions:  # excluded lines earn nothing, count for nothing
            kept, out = [], []
            for line in lines:
                (out if line[1] in skus or line[2] in categories else kept).append(line)
            if out:
                lines = kept
                trace.append({"rule": rule_id, "type": Exclude.type, "status": "applied", "lines": _indexes(out),
                              "excluded_spend_minor": _spend(out)})
        r.lines = lines
        r.spend = spend = _spend(lines)
        for rule_id, need, stopped in self.minimums:
            if spend < need:
                r.blocked.update(stopped)
                trace.append({"rule": rule_id, "type": MinBasket.type, "status": "not_met",
                              "eligible_spend_minor": spend, "min_spend_minor": need, "money": self.money,
                              "nothing_earned_in": list(stopped)})
        blocked = r.blocked
        for step in self.steps:
            if not blocked or step.currency not in blocked:
                step.run(r)
        return self.finish(r)

    def finish(self, r: Run) -> dict[str, int]:
        """One rounding per currency over the exact sum, then the per-transaction cap."""
        points: dict[str, int] = {}
        mode = self.rounding
        for code, cap in self.caps:
            exact = r.exact.get(code)
            if exact is None:
                rounded = 0
            else:
                num, den = exact
                rounded = round_ratio(num, den, mode)
                text = show_ratio(num, den)
                entry: dict[str, Any] = {"type": "rounding", "currency": code, "status": "applied", "mode": mode,
                                         "exact": text, "points": rounded}
                if num > 0 and rounded == 0:
                    entry["rounded_to_zero"] = True
                    entry["note"] = f"{text} {code} round down to 0 with {mode} rounding"
                r.trace.append(entry)
            if cap is not None and rounded > cap:
                r.trace.append({"type": "transaction_cap", "currency": code, "status": "applied", "cap": cap,
                                "before": rounded, "points": cap})
                rounded = cap
            points[code] = rounded
        return points


def earned_on(program: Program) -> list[str]:
    """The money currencies a sale earns on: those of the program's base rates."""
    return sorted({m for r in program.rules if isinstance(r, BaseRate) for m in r.rates})


class Compiled:
    """A program ready to evaluate sales: its plans, made once per money currency."""

    def __init__(self, program: Program):
        self.program = program
        self.earned = earned_on(program)
        self._plans: dict[str, Plan] = {}

    def plan(self, money: str) -> Plan:
        plan = self._plans.get(money)
        if plan is None:  # two threads may both build it: the same plan, either one kept
            plan = self._plans[money] = Plan(self.program, money)
        return plan


def compiled(program: Program) -> Compiled:
    """The program's compiled rules, made the first time a sale asks (Program.derived keeps them)."""
    found = program.derived.get("rules")
    if found is None:
        found = program.derived["rules"] = Compiled(program)
    return found
