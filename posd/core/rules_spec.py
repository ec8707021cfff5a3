"""Earning rules as data: one frozen dataclass per rule type, parsed from the
program's "rules" array (docs/program.md describes the JSON).

Every bonus is additive: a rule contributes its own points, computed from the
base rate's points or from the basket, never from another bonus. That keeps
each rule's effect readable on its own in the trace, lets each rule carry its
own cap, and keeps points monotone in the basket (removing a line never adds
points), which returns rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from fractions import Fraction
from typing import Any, Callable, ClassVar, Union

from posd.core.rules_json import (
    ProgramError,
    array,
    clock,
    fraction,
    integer,
    listed,
    mapping,
    obj,
    shown,
    strings,
    text,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_BIRTHDAY_WINDOW = 31


@dataclass(frozen=True)
class Match:
    """Which lines a rule is about: a line matches by SKU or by category; no list matches every line."""

    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not self.skus and not self.categories

    def matches(self, sku: str | None, category: str | None) -> bool:
        return self.everything or sku in self.skus or category in self.categories


@dataclass(frozen=True)
class Window:
    """When a promotion runs, in the store's wall-clock time; every bound is [from, until)."""

    starts: datetime | None = None  # naive store-local
    ends: datetime | None = None
    weekdays: frozenset[int] = frozenset()  # 0 = Monday; empty = every day
    time_from: time = time(0)
    time_until: time | None = None  # None = end of day

    def contains(self, local: datetime) -> bool:
        return self.holds(local.replace(tzinfo=None))

    def holds(self, wall: datetime) -> bool:
        """``contains`` for a naive store-local moment."""
        if self.starts is not None and wall < self.starts:
            return False
        if self.ends is not None and wall >= self.ends:
            return False
        if self.weekdays and wall.weekday() not in self.weekdays:
            return False
        now = wall.time()
        return now >= self.time_from and (self.time_until is None or now < self.time_until)

    def describe(self) -> dict[str, Any]:
        """The window as the program wrote it, for the trace."""
        out: dict[str, Any] = {}
        if self.starts or self.ends:
            out["dates"] = {k: v.isoformat(timespec="minutes") for k, v in (("from", self.starts),
                                                                             ("until", self.ends)) if v}
        if self.weekdays:
            out["weekdays"] = [WEEKDAYS[d] for d in sorted(self.weekdays)]
        if self.time_from != time(0) or self.time_until is not None:
            until = self.time_until.strftime("%H:%M") if self.time_until else "24:00"
            out["hours"] = {"from": self.time_from.strftime("%H:%M"), "until": until}
        return out


@dataclass(frozen=True)
class Rate:
    spend_minor: int  # this much spend, in minor units of the money currency...
    points: int  # ...earns this many points


@dataclass(frozen=True)
class BaseRate:
    type: ClassVar[str] = "base_rate"
    rule_id: str
    currency: str
    rates: dict[str, Rate]  # money currency (ISO 4217) -> rate


@dataclass(frozen=True)
class Exclude:
    type: ClassVar[str] = "exclude"
    rule_id: str
    match: Match


@dataclass(frozen=True)
class MinBasket:
    type: ClassVar[str] = "min_basket"
    rule_id: str
    min_spend_minor: dict[str, int]  # money currency -> minimum eligible spend
    currencies: frozenset[str] | None  # None: every loyalty currency


@dataclass(frozen=True)
class Multiplier:
    type: ClassVar[str] = "multiplier"
    rule_id: str
    currency: str
    multiplier: Fraction  # x2 adds one more time the matching lines' base points
    match: Match
    when: Window | None
    cap: int | None


@dataclass(frozen=True)
class PerUnit:
    type: ClassVar[str] = "per_unit"
    rule_id: str
    currency: str
    points_per_unit: int
    match: Match
    when: Window | None
    cap: int | None


@dataclass(frozen=True)
class ThresholdBonus:
    type: ClassVar[str] = "threshold_bonus"
    rule_id: str
    currency: str
    points: int
    min_spend_minor: dict[str, int]
    match: Match
    when: Window | None


@dataclass(frozen=True)
class Birthday:
    type: ClassVar[str] = "birthday"
    rule_id: str
    currency: str
    points: int
    window_days: int


Rule = Union[BaseRate, Exclude, MinBasket, Multiplier, PerUnit, ThresholdBonus, Birthday]


# -- parsing ----------------------------------------------------------------

def _match(raw: dict[str, Any], path: str, *, required: bool) -> Match:
    match = Match(skus=listed(raw, "skus", path), categories=listed(raw, "categories", path))
    if required and match.everything:
        raise ProgramError(f"{path}: name the lines with \"skus\" or \"categories\"")
    return match


def _moment(value: Any, path: str) -> datetime:
    raw = text(value, path)
    try:
        moment = datetime.fromisoformat(raw) if "T" in raw else datetime.combine(date.fromisoformat(raw), time(0))
    except ValueError as exc:
        raise ProgramError(f"{path}: {shown(raw)} is not a date such as \"2026-11-03\" or \"2026-11-03T10:00\"") from exc
    if moment.tzinfo is not None:
        raise ProgramError(f"{path}: write store-local time without an offset")
    return moment


def _dates(value: Any, path: str) -> tuple[datetime | None, datetime | None]:
    dates = obj(value, path, optional=("from", "until"))
    starts = _moment(dates["from"], f"{path}.from") if "from" in dates else None
    ends = _moment(dates["until"], f"{path}.until") if "until" in dates else None
    if starts and ends and ends <= starts:
        raise ProgramError(f"{path}.until: must be after from (the window is [from, until))")
    return starts, ends


def _weekdays(value: Any, path: str) -> frozenset[int]:
    days = array(value, path)
    if not days:
        raise ProgramError(f"{path}: an empty list is no day, so the rule would never apply; leave weekdays out "
                           "for every day")
    for i, day in enumerate(days):
        if day not in WEEKDAYS:
            raise ProgramError(f"{path}[{i}]: {shown(day)} is not one of {', '.join(WEEKDAYS)}")
    return frozenset(WEEKDAYS.index(d) for d in days)


def _hours(value: Any, path: str) -> tuple[time, time | None]:
    hours = obj(value, path, required=("from", "until"))
    time_from = clock(hours["from"], f"{path}.from")
    if time_from is None:
        raise ProgramError(f"{path}.from: a window cannot start at 24:00")
    time_until = clock(hours["until"], f"{path}.until")
    if time_until is not None and time_until <= time_from:
        raise ProgramError(f"{path}.until: must be after from on the same day (split a window "
                           "that crosses midnight into two rules)")
    return time_from, time_until


def _window(value: Any, path: str) -> Window:
    raw = obj(value, path, optional=("dates", "weekdays", "hours"))
    if not raw:
        raise ProgramError(f"{path}: give at least one of dates, weekdays, hours")
    starts, ends = _dates(raw["dates"], f"{path}.dates") if "dates" in raw else (None, None)
    weekdays = _weekdays(raw["weekdays"], f"{path}.weekdays") if "weekdays" in raw else frozenset()
    time_from, time_until = _hours(raw["hours"], f"{path}.hours") if "hours" in raw else (time(0), None)
    return Window(starts, ends, weekdays, time_from, time_until)


def _spend(value: Any, path: str) -> dict[str, int]:
    raw = mapping(value, path, '{"PLN": 20000}')
    return {money: integer(v, f"{path}.{money}") for money, v in raw.items()}


def _cap(raw: dict[str, Any], path: str) -> int | None:
    return integer(raw["cap"], f"{path}.cap") if "cap" in raw else None


def _when(raw: dict[str, Any], path: str) -> Window | None:
    return _window(raw["when"], f"{path}.when") if "when" in raw else None


def _base_rate(raw: dict[str, Any], path: str) -> BaseRate:
    obj(raw, path, required=("id", "type", "currency", "rates"))
    rates = mapping(raw["rates"], f"{path}.rates", '{"PLN": {"spend_minor": 100, "points": 1}}')
    parsed = {}
    for money, rate in rates.items():
        where = f"{path}.rates.{money}"
        obj(rate, where, required=("spend_minor", "points"))
        parsed[money] = Rate(integer(rate["spend_minor"], f"{where}.spend_minor", minimum=1),
                             integer(rate["points"], f"{where}.points"))
    return BaseRate(raw["id"], text(raw["currency"], f"{path}.currency"), parsed)


def _exclude(raw: dict[str, Any], path: str) -> Exclude:
    obj(raw, path, required=("id", "type"), optional=("skus", "categories"))
    return Exclude(raw["id"], _match(raw, path, required=True))


def _min_basket(raw: dict[str, Any], path: str) -> MinBasket:
    obj(raw, path, required=("id", "type", "min_spend_minor"), optional=("currencies",))
    currencies = strings(raw["currencies"], f"{path}.currencies") if "currencies" in raw else None
    return MinBasket(raw["id"], _spend(raw["min_spend_minor"], f"{path}.min_spend_minor"), currencies)


def _multiplier(raw: dict[str, Any], path: str) -> Multiplier:
    obj(raw, path, required=("id", "type", "currency", "multiplier"), optional=("skus", "categories", "when", "cap"))
    return Multiplier(raw["id"], text(raw["currency"], f"{path}.currency"),
                      fraction(raw["multiplier"], f"{path}.multiplier", minimum=Fraction(1)),
                      _match(raw, path, required=False), _when(raw, path), _cap(raw, path))


def _per_unit(raw: dict[str, Any], path: str) -> PerUnit:
    obj(raw, path, required=("id", "type", "currency", "points_per_unit"),
        optional=("skus", "categories", "when", "cap"))
    return PerUnit(raw["id"], text(raw["currency"], f"{path}.currency"),
                   integer(raw["points_per_unit"], f"{path}.points_per_unit", minimum=1),
                   _match(raw, path, required=True), _when(raw, path), _cap(raw, path))


def _threshold_bonus(raw: dict[str, Any], path: str) -> ThresholdBonus:
    obj(raw, path, required=("id", "type", "currency", "points", "min_spend_minor"),
        optional=("skus", "categories", "when"))
    return ThresholdBonus(raw["id"], text(raw["currency"], f"{path}.currency"),
                          integer(raw["points"], f"{path}.points", minimum=1),
                          _spend(raw["min_spend_minor"], f"{path}.min_spend_minor"),
                          _match(raw, path, required=False), _when(raw, path))


def _birthday(raw: dict[str, Any], path: str) -> Birthday:
    obj(raw, path, required=("id", "type", "currency", "points"), optional=("window_days",))
    window = integer(raw.get("window_days", 0), f"{path}.window_days")
    if window > MAX_BIRTHDAY_WINDOW:
        raise ProgramError(f"{path}.window_days: at most {MAX_BIRTHDAY_WINDOW}")
    return Birthday(raw["id"], text(raw["currency"], f"{path}.currency"),
                    integer(raw["points"], f"{path}.points", minimum=1), window)


PARSERS: dict[str, Callable[[dict[str, Any], str], Rule]] = {
    "base_rate": _base_rate,
    "exclude": _exclude,
    "min_basket": _min_basket,
    "multiplier": _multiplier,
    "per_unit": _per_unit,
    "threshold_bonus": _threshold_bonus,
    "birthday": _birthday,
}


def parse_rule(raw: Any, path: str) -> Rule:
    if not isinstance(raw, dict):
        raise ProgramError(f"{path}: must be an object")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in PARSERS:
        raise ProgramError(f"{path}.type: unknown rule type {shown(kind)}; known types are {', '.join(PARSERS)}")
    text(raw.get("id"), f"{path}.id")
    return PARSERS[kind](raw, path)


def parse_rules(value: Any, currencies: dict[str, str]) -> tuple[Rule, ...]:
    """The "rules" array; `currencies` maps each code to its kind, for cross-checks."""
    rules = tuple(parse_rule(raw, f"rules[{i}]") for i, raw in enumerate(array(value, "rules")))
    seen: set[str] = set()
    based: set[str] = set()
    for i, rule in enumerate(rules):
        path = f"rules[{i}]"
        if rule.rule_id in seen:
            raise ProgramError(f"{path}.id: duplicate id {shown(rule.rule_id)}")
        seen.add(rule.rule_id)
        for key, code in _currencies_of(rule):
            if code not in currencies:
                raise ProgramError(f"{path}.{key}: {shown(code)} is not in currencies ({', '.join(currencies)})")
        if isinstance(rule, BaseRate):
            if rule.currency in based:
                raise ProgramError(f"{path}: a second base_rate for {shown(rule.currency)}; "
                                   "put every money currency in one rule's rates")
            based.add(rule.currency)
    for i, rule in enumerate(rules):
        if isinstance(rule, Multiplier) and rule.currency not in based:
            raise ProgramError(f"rules[{i}].currency: no base_rate earns {shown(rule.currency)}, "
                               "so this multiplier would have nothing to multiply")
    return rules


def _currencies_of(rule: Rule) -> list[tuple[str, str]]:
    """(JSON key, currency code) for every loyalty currency the rule names."""
    if isinstance(rule, MinBasket):
        return [("currencies", code) for code in sorted(rule.currencies or ())]
    code = getattr(rule, "currency", None)
    return [("currency", code)] if code is not None else []
