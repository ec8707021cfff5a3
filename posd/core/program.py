"""The loyalty program as central publishes it, parsed and validated.

Pure: a dict in, frozen dataclasses out. Rates and multipliers are exact
fractions (never floats), so evaluating the same basket against the same
program version always gives the same points. docs/program.md describes the
JSON; a document posd cannot evaluate raises ProgramError naming the path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from math import gcd
from typing import Any, Literal

from posd.core.benefit import Benefit, Stacking
from posd.core.identify import typed_code
from posd.core.member_tokens import TokenSettings, parse_member_tokens
from posd.core.messages import CATALOGS, format_decimal, message, plural_form
from posd.core.rules_json import (
    ProgramError,
    array,
    choice,
    fraction,
    ident,
    instant,
    integer,
    listed,
    mapping,
    money_code,
    names,
    plural_names,
    obj,
    refuse_floats,
    shown,
    strings,
    text,
    unique_ids,
)
from posd.core.rules_spec import BaseRate, Match, MinBasket, Rule, ThresholdBonus, parse_rules

__all__ = ["Benefit", "Coupon", "Currency", "ExpiryPolicy", "Program", "ProgramError", "Reward", "Stacking", "Tier",
           "parse_program", "vet_program"]

Rounding = Literal["floor", "half_up"]
ROUNDINGS: tuple[str, ...] = ("floor", "half_up")
CURRENCY_KINDS = ("redeemable", "qualifying", "stamps")
EXPIRY_POLICIES = ("never", "rolling_days", "end_of_month", "end_of_year")
REWARD_KINDS = ("discount", "free_item", "fixed_value")
COUPON_KINDS = ("campaign", "personal")


def _localised(names_: dict[str, str], locale: str, fallback: str) -> str:
    return names_.get(locale) or names_.get("en") or fallback


def _benefit(kind: str, value_minor: int | None, money: str | None, percent: int | None, sku: str | None,
             applies_to: Match, category: str | None) -> Benefit:
    """A catalog kind (discount, free_item, fixed_value) as the effect it has on a basket."""
    if kind == "free_item" or (sku is not None and value_minor is None and percent is None):
        return Benefit("free_item", sku=sku, category=category)
    if percent is not None:
        return Benefit("percent_off", percent=percent, applies_to=applies_to, category=category)
    return Benefit("amount_off", value_minor=value_minor, money=money, applies_to=applies_to, category=category)


@dataclass(frozen=True)
class ExpiryPolicy:
    policy: Literal["never", "rolling_days", "end_of_month", "end_of_year"]
    days: int = 0  # rolling_days: lifetime in days
    months: int = 0  # end_of_month / end_of_year: how far past the earning month the period ends


MAX_VOUCHER_MINOR = 10**12  # as central's most points in one event: far above a voucher, exact in JavaScript
MAX_REQUEST_POINTS = 10**9  # the most points a POS request names (posd.api.models.Points)


@dataclass(frozen=True)
class MoneyValue:
    """What a redeemable currency's points are worth as money off, for a redemption that names a
    number of points rather than a catalog reward: ``points`` of them are worth ``value_minor`` of
    ``money``. A redemption takes at least ``min_points``, in steps that make a whole minor unit."""

    points: int
    value_minor: int
    money: str
    min_points: int
    valid_days: int = 30

    @property
    def step(self) -> int:
        """The fewest points worth a whole number of minor units."""
        return self.points // gcd(self.points, self.value_minor)

    def worth(self, points: int) -> int | None:
        """``points`` in minor units of ``money``; None below the minimum, between steps, or worth more
        than MAX_VOUCHER_MINOR (what a POS reads exactly, and SQLite stores)."""
        if points < self.min_points or points % self.step:
            return None
        value = points * self.value_minor // self.points
        return value if value <= MAX_VOUCHER_MINOR else None

    @property
    def max_points(self) -> int:
        """The most points one voucher takes: MAX_VOUCHER_MINOR's worth, or as many as a request may
        name, on a step."""
        most = min(MAX_VOUCHER_MINOR * self.points // self.value_minor, MAX_REQUEST_POINTS)
        return most - most % self.step


@dataclass(frozen=True)
class Currency:
    code: str
    kind: Literal["redeemable", "qualifying", "stamps"]
    names: dict[str, Any]  # per language a name, or its plural forms (rules_json.plural_names)
    pending_days: int
    expiry: ExpiryPolicy
    money_value: MoneyValue | None = None  # redeemable only: its points spent as money off

    def name(self, locale: str) -> str:
        """Its name in ``locale`` (else en) without a figure: messages.plural_form's other form."""
        name = self.names.get(locale) or self.names.get("en")
        return plural_form(name, locale) if name else self.code


@dataclass(frozen=True)
class Tier:
    tier_id: str
    threshold: int
    multiplier: Fraction
    names: dict[str, str]

    def name(self, locale: str) -> str:
        return _localised(self.names, locale, self.tier_id)


@dataclass(frozen=True)
class Reward:
    reward_id: str
    names: dict[str, str]
    kind: Literal["discount", "free_item", "fixed_value"]
    currency: str
    price: int
    tier_prices: dict[str, int]
    value_minor: int | None = None  # discount (amount off) / fixed_value, in `money`
    percent: int | None = None  # discount (percent off)
    sku: str | None = None  # free_item
    valid_days: int = 30  # voucher validity
    limit_per_member_per_day: int | None = None
    min_tier: str | None = None
    money: str | None = None  # ISO currency of value_minor
    allowed_tiers: frozenset[str] | None = field(default=None, repr=False)  # from min_tier; None = everyone
    applies_to: Match = field(default_factory=Match)  # discount / fixed_value: which lines; none = the basket
    category: str | None = None  # stacking category (Program.stacking)

    def name(self, locale: str) -> str:
        return _localised(self.names, locale, self.reward_id)

    @property
    def benefit(self) -> Benefit:
        """What its voucher takes off a basket."""
        return _benefit(self.kind, self.value_minor, self.money, self.percent, self.sku, self.applies_to,
                        self.category)

    def price_for(self, tier_id: str | None) -> int | None:
        """The price for a member of `tier_id`; None when that tier may not redeem it."""
        if self.allowed_tiers is not None and tier_id not in self.allowed_tiers:
            return None
        return self.tier_prices.get(tier_id, self.price) if tier_id is not None else self.price


@dataclass(frozen=True)
class Coupon:
    """A code central publishes with the program: a campaign's (once per member) or one member's (once)."""

    code: str
    kind: Literal["campaign", "personal"]
    title: str
    member_id: str | None = None  # personal coupons: whose it is
    value_minor: int | None = None
    money: str | None = None  # ISO currency of value_minor
    percent: int | None = None
    sku: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    names: dict[str, str] = field(default_factory=dict)  # the title per language, when given as an object
    applies_to: Match = field(default_factory=Match)
    category: str | None = None  # stacking category (Program.stacking)

    @property
    def campaign(self) -> bool:
        return self.kind == "campaign"

    def name(self, locale: str) -> str:
        return _localised(self.names, locale, self.title)

    @property
    def benefit(self) -> Benefit:
        """What the coupon takes off a basket."""
        return _benefit("coupon", self.value_minor, self.money, self.percent, self.sku, self.applies_to,
                        self.category)


@dataclass(frozen=True)
class Program:
    version: str
    currencies: tuple[Currency, ...]
    tiers: tuple[Tier, ...]  # ascending threshold
    tier_currency: str
    rounding: Rounding
    rewards: tuple[Reward, ...]
    rules: tuple[Rule, ...]
    transaction_caps: dict[str, int]  # loyalty currency -> most points one transaction earns
    earn_currency: str  # the main redeemable currency
    raw: dict[str, Any]
    coupons: tuple[Coupon, ...] = ()
    stacking: Stacking = Stacking()
    discount_rounding: Rounding = "half_up"  # percent discounts, once per effect
    member_tokens: TokenSettings = TokenSettings()  # keys for phone QR tokens, wallet pass TOTP
    # What is worked out from the program once per version rather than once per sale (the rules
    # engine's compiled plans, posd.core.rules_eval.compiled): not part of the program's value.
    derived: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def currency(self, code: str) -> Currency | None:
        by_code = self.derived.get("currencies")
        if by_code is None:  # made once per version: a sale asks three times (its lots, its balance)
            by_code = {}
            for c in self.currencies:
                by_code.setdefault(c.code, c)  # the first of a code, as a search in order finds it
            self.derived["currencies"] = by_code
        return by_code.get(code)

    def tier(self, tier_id: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.tier_id == tier_id), None)

    def tier_ahead(self, tier_id: str | None, points: int) -> Tier | None:
        """The tier to show progress toward: the first above ``tier_id`` that ``points`` have not
        reached, else the highest one they have (central has not moved the member up yet: reached,
        not the member's tier yet, and never "the top tier" for a lower one); None in the top tier."""
        current = self.tier(tier_id)
        above = [t for t in self.tiers if current is None or t.threshold > current.threshold]
        return next((t for t in above if t.threshold > points), above[-1] if above else None)

    def reward(self, reward_id: str) -> Reward | None:
        return next((r for r in self.rewards if r.reward_id == reward_id), None)

    def points_reward(self, points: int, places: int = 2) -> Reward | None:
        """``points`` of the main currency as a money-off voucher (a redemption by points, not from the
        catalog); None when the program gives them no money value or ``points`` is not a whole step at
        least the minimum (the currency's ``money_value`` says which). ``places``: the decimal places of
        the money's minor unit (ISO 4217's exponent: 2 for PLN, 0 for JPY), for the voucher's title."""
        currency = self.currency(self.earn_currency)
        value = currency.money_value if currency else None
        worth = value.worth(points) if value else None
        if currency is None or value is None or worth is None:
            return None
        amount = f"{worth // 10 ** places}.{worth % 10 ** places:0{places}d}" if places else str(worth)
        titles = {locale: message(locale, "voucher.points_title", value=format_decimal(locale, amount),
                                  money=value.money) for locale in CATALOGS}
        return Reward(reward_id=f"{currency.code}:{points}", names=titles, kind="fixed_value", currency=currency.code,
                      price=points, tier_prices={}, value_minor=worth, money=value.money,
                      valid_days=value.valid_days)

    def coupon(self, code: str) -> Coupon | None:
        """The coupon with this code, read case-insensitively (shoppers type them): WELCOME10 = welcome10."""
        wanted = typed_code(code).strip().casefold()
        return next((c for c in self.coupons if c.code == code), None) or \
            next((c for c in self.coupons if c.code.casefold() == wanted), None)

    def affordable_rewards(self, tier_id: str | None, available: dict[str, int]) -> list[tuple[Reward, int]]:
        """The rewards a member of `tier_id` can redeem now with `available` points, and their price."""
        out = []
        for reward in self.rewards:
            price = reward.price_for(tier_id)
            if price is not None and available.get(reward.currency, 0) >= price:
                out.append((reward, price))
        return out


# -- parsing ----------------------------------------------------------------

def _expiry(value: Any, path: str, pending_days: int) -> ExpiryPolicy:
    raw = obj(value, path, required=("policy",), optional=("days", "months", "years"))
    policy = choice(raw["policy"], f"{path}.policy", EXPIRY_POLICIES)
    allowed = {"never": (), "rolling_days": ("days",), "end_of_month": ("months",), "end_of_year": ("years",)}[policy]
    for key in ("days", "months", "years"):
        if key in raw and key not in allowed:
            raise ProgramError(f"{path}.{key}: not used by the {policy} policy")
    if policy == "rolling_days":
        days = integer(raw.get("days"), f"{path}.days", minimum=1)
        if days <= pending_days:
            raise ProgramError(f"{path}.days: must exceed pending_days ({pending_days}), "
                               "or the points expire before they can be spent")
        return ExpiryPolicy("rolling_days", days=days)
    if policy == "end_of_month":
        return ExpiryPolicy("end_of_month", months=integer(raw.get("months", 0), f"{path}.months"))
    if policy == "end_of_year":
        return ExpiryPolicy("end_of_year", months=12 * integer(raw.get("years", 0), f"{path}.years"))
    return ExpiryPolicy("never")


def _money_value(value: Any, path: str) -> MoneyValue:
    raw = obj(value, path, required=("points", "value_minor", "money"), optional=("min_points", "valid_days"))
    points = integer(raw["points"], f"{path}.points", minimum=1)
    money = money_code(raw["money"], f"{path}.money")
    value = MoneyValue(points=points, value_minor=integer(raw["value_minor"], f"{path}.value_minor", minimum=1),
                       money=money, min_points=integer(raw.get("min_points", points), f"{path}.min_points", minimum=1),
                       valid_days=integer(raw.get("valid_days", 30), f"{path}.valid_days", minimum=1))
    minimum, step = value.min_points, value.step
    if minimum % step:  # refused on the very number its message names
        raise ProgramError(f"{path}.min_points: {minimum} is between steps of {step} (the points worth a whole "
                           f"minor unit): {minimum + step - minimum % step} or {minimum - minimum % step or step}")
    return value


def _currency(raw: Any, path: str) -> Currency:
    obj(raw, path, required=("code", "kind"), optional=("name", "pending_days", "expiry", "money_value"))
    pending = integer(raw.get("pending_days", 0), f"{path}.pending_days")
    kind = choice(raw["kind"], f"{path}.kind", CURRENCY_KINDS)
    if "money_value" in raw and kind != "redeemable":
        raise ProgramError(f"{path}.money_value: only a redeemable currency is spent as money")
    return Currency(
        code=text(raw["code"], f"{path}.code"),
        kind=kind,  # type: ignore[arg-type]
        names=plural_names(raw["name"], f"{path}.name") if "name" in raw else {},
        pending_days=pending,
        expiry=_expiry(raw.get("expiry", {"policy": "never"}), f"{path}.expiry", pending),
        money_value=_money_value(raw["money_value"], f"{path}.money_value") if "money_value" in raw else None,
    )


def _tier(raw: Any, path: str) -> Tier:
    obj(raw, path, required=("id",), optional=("threshold", "multiplier", "name"))
    return Tier(
        tier_id=text(raw["id"], f"{path}.id"),
        threshold=integer(raw.get("threshold", 0), f"{path}.threshold"),
        multiplier=fraction(raw.get("multiplier", "1"), f"{path}.multiplier", minimum=Fraction(1)),
        names=names(raw["name"], f"{path}.name") if "name" in raw else {},
    )


def _parse_tiers(value: Any) -> tuple[Tier, ...]:
    tiers = [_tier(raw, f"tiers[{i}]") for i, raw in enumerate(array(value, "tiers"))]
    unique_ids(tiers, "tier_id", "tiers")
    thresholds: set[int] = set()
    for i, tier in enumerate(tiers):
        if tier.threshold in thresholds:
            raise ProgramError(f"tiers[{i}].threshold: another tier already starts at {tier.threshold}")
        thresholds.add(tier.threshold)
    return tuple(sorted(tiers, key=lambda t: t.threshold))


def _parse_currencies(value: Any) -> tuple[Currency, ...]:
    currencies = [_currency(raw, f"currencies[{i}]") for i, raw in enumerate(array(value, "currencies"))]
    unique_ids(currencies, "code", "currencies", "code")
    if not any(c.kind == "redeemable" for c in currencies):
        raise ProgramError("currencies: at least one currency must be of kind redeemable")
    return tuple(currencies)


def _caps(value: Any, currencies: dict[str, str]) -> dict[str, int]:
    caps = mapping(value, "transaction_caps", '{"points": 5000}')
    for code in caps:
        if code not in currencies:
            raise ProgramError(f"transaction_caps.{code}: not in currencies ({', '.join(currencies)})")
    return {code: integer(cap, f"transaction_caps.{code}") for code, cap in caps.items()}


def _reward_value(raw: dict[str, Any], path: str, kind: str) -> dict[str, Any]:
    """The kind-specific fields: what the voucher is worth or gives."""
    needs = {"discount": ("value_minor", "percent"), "fixed_value": ("value_minor",), "free_item": ("sku",)}[kind]
    for key in ("value_minor", "percent", "sku"):
        if key in raw and key not in needs:
            raise ProgramError(f"{path}.{key}: not used by a {kind} reward")
    given = [key for key in needs if key in raw]
    if len(given) != 1:
        raise ProgramError(f"{path}: a {kind} reward needs exactly one of {', '.join(needs)}")
    out: dict[str, Any] = {}
    if "value_minor" in raw:
        out["value_minor"] = integer(raw["value_minor"], f"{path}.value_minor", minimum=1)
        out["money"] = text(raw.get("money"), f"{path}.money")
    elif "money" in raw:
        raise ProgramError(f"{path}.money: only used with value_minor")
    if "percent" in raw:
        out["percent"] = integer(raw["percent"], f"{path}.percent", minimum=1)
        if out["percent"] > 100:
            raise ProgramError(f"{path}.percent: at most 100")
    if "sku" in raw:
        out["sku"] = text(raw["sku"], f"{path}.sku")
    return out


def _reward(raw: Any, path: str, kinds: dict[str, str], tiers: tuple[Tier, ...]) -> Reward:
    obj(raw, path, required=("id", "kind", "currency", "price"),
        optional=("name", "tier_prices", "value_minor", "money", "percent", "sku", "valid_days",
                  "limit_per_member_per_day", "min_tier", "applies_to", "category"))
    kind = choice(raw["kind"], f"{path}.kind", REWARD_KINDS)
    if kind == "free_item" and "applies_to" in raw:
        raise ProgramError(f"{path}.applies_to: a free_item reward names its item with sku")
    currency = text(raw["currency"], f"{path}.currency")
    if kinds.get(currency) not in ("redeemable", "stamps"):
        spendable = [code for code, k in kinds.items() if k != "qualifying"]
        raise ProgramError(f"{path}.currency: {shown(currency)} cannot be spent; use one of {', '.join(spendable)}")
    tier_ids = [t.tier_id for t in tiers]
    prices = mapping(raw["tier_prices"], f"{path}.tier_prices", '{"gold": 400}') if "tier_prices" in raw else {}
    for tier_id in prices:
        if tier_id not in tier_ids:
            raise ProgramError(f"{path}.tier_prices.{tier_id}: not a tier ({', '.join(tier_ids)})")
    min_tier = raw.get("min_tier")
    allowed = None
    if min_tier is not None:
        if min_tier not in tier_ids:
            raise ProgramError(f"{path}.min_tier: {shown(min_tier)} is not a tier ({', '.join(tier_ids)})")
        allowed = frozenset(tier_ids[tier_ids.index(min_tier):])  # tiers ascend by threshold
    limit = raw.get("limit_per_member_per_day")
    return Reward(
        reward_id=ident(raw["id"], f"{path}.id"),
        names=names(raw["name"], f"{path}.name") if "name" in raw else {},
        kind=kind,  # type: ignore[arg-type]
        currency=currency,
        price=integer(raw["price"], f"{path}.price", minimum=1),
        tier_prices={t: integer(p, f"{path}.tier_prices.{t}", minimum=1) for t, p in prices.items()},
        valid_days=integer(raw.get("valid_days", 30), f"{path}.valid_days", minimum=1),
        limit_per_member_per_day=None if limit is None else integer(limit, f"{path}.limit_per_member_per_day",
                                                                     minimum=1),
        min_tier=min_tier,
        allowed_tiers=allowed,
        applies_to=_applies_to(raw.get("applies_to"), f"{path}.applies_to"),
        category=text(raw["category"], f"{path}.category") if "category" in raw else None,
        **_reward_value(raw, path, kind),
    )


def _applies_to(value: Any, path: str) -> Match:
    """Which lines a discount applies to: {"skus": [...], "categories": [...]}; absent: the whole basket."""
    if value is None:
        return Match()
    raw = obj(value, path, optional=("skus", "categories"))
    match = Match(skus=listed(raw, "skus", path), categories=listed(raw, "categories", path))
    if match.everything:
        raise ProgramError(f"{path}: name the lines with \"skus\" or \"categories\" (or leave applies_to out)")
    return match


def _parse_rewards(value: Any, kinds: dict[str, str], tiers: tuple[Tier, ...]) -> tuple[Reward, ...]:
    rewards = [_reward(raw, f"rewards[{i}]", kinds, tiers) for i, raw in enumerate(array(value, "rewards"))]
    unique_ids(rewards, "reward_id", "rewards")
    return tuple(rewards)


def _coupon(raw: Any, path: str) -> Coupon:
    obj(raw, path, required=("code",),
        optional=("kind", "title", "member_id", "value_minor", "money", "percent", "sku", "valid_from", "valid_to",
                  "applies_to", "category"))
    code = text(raw["code"], f"{path}.code")
    kind = choice(raw.get("kind", "campaign"), f"{path}.kind", COUPON_KINDS)
    member_id = text(raw["member_id"], f"{path}.member_id") if "member_id" in raw else None
    if kind == "personal" and member_id is None:
        raise ProgramError(f"{path}.member_id: required for a personal coupon")
    if kind == "campaign" and member_id is not None:
        raise ProgramError(f"{path}.member_id: a campaign coupon is for every member; make it personal")
    worth = [key for key in ("value_minor", "percent", "sku") if key in raw]
    if len(worth) != 1:
        raise ProgramError(f"{path}: a coupon needs exactly one of value_minor, percent, sku")
    if "money" in raw and "value_minor" not in raw:
        raise ProgramError(f"{path}.money: only used with value_minor")
    percent = integer(raw["percent"], f"{path}.percent", minimum=1) if "percent" in raw else None
    if percent is not None and percent > 100:
        raise ProgramError(f"{path}.percent: at most 100")
    valid_from = instant(raw["valid_from"], f"{path}.valid_from") if "valid_from" in raw else None
    valid_to = instant(raw["valid_to"], f"{path}.valid_to") if "valid_to" in raw else None
    if valid_from and valid_to and valid_to <= valid_from:
        raise ProgramError(f"{path}.valid_to: must be after valid_from")
    if "sku" in raw and "applies_to" in raw:
        raise ProgramError(f"{path}.applies_to: a free-item coupon names its item with sku")
    title = raw.get("title", code)
    titles = names(title, f"{path}.title") if isinstance(title, dict) else {}
    return Coupon(
        code=code, kind=kind,  # type: ignore[arg-type]
        title=_localised(titles, "en", code) if titles else text(title, f"{path}.title"), member_id=member_id,
        value_minor=integer(raw["value_minor"], f"{path}.value_minor", minimum=1) if "value_minor" in raw else None,
        money=text(raw["money"], f"{path}.money") if "money" in raw else None,
        percent=percent, sku=text(raw["sku"], f"{path}.sku") if "sku" in raw else None,
        valid_from=valid_from, valid_to=valid_to, names=titles,
        applies_to=_applies_to(raw.get("applies_to"), f"{path}.applies_to"),
        category=text(raw["category"], f"{path}.category") if "category" in raw else None,
    )


def _parse_coupons(value: Any) -> tuple[Coupon, ...]:
    coupons = [_coupon(raw, f"coupons[{i}]") for i, raw in enumerate(array(value, "coupons"))]
    unique_ids(coupons, "code", "coupons", "code")
    folded: dict[str, int] = {}  # shoppers' spelling is read case-insensitively, at the lane and at central
    for i, coupon in enumerate(coupons):
        first = folded.setdefault(coupon.code.strip().casefold(), i)
        if first != i:
            raise ProgramError(f"coupons[{i}].code: {shown(coupon.code)} is coupons[{first}]'s code "
                               f"{shown(coupons[first].code)} in other letters; codes are read case-insensitively")
    return tuple(coupons)


def _stacking(value: Any) -> Stacking:
    if value is None:
        return Stacking()
    raw = obj(value, "stacking", optional=("max_per_basket", "exclusive_categories"))
    most = raw.get("max_per_basket")
    return Stacking(
        max_per_basket=None if most is None else integer(most, "stacking.max_per_basket", minimum=1),
        exclusive_categories=strings(raw["exclusive_categories"], "stacking.exclusive_categories")
        if "exclusive_categories" in raw else frozenset(),
    )


def parse_program(doc: dict[str, Any]) -> Program:
    if not isinstance(doc, dict):
        raise ProgramError("program: must be a JSON object")
    refuse_floats(doc, "")
    if "earn" in doc:
        raise ProgramError("earn: the \"earn\" object was replaced by \"currencies\" and a base_rate rule "
                           "(docs/program.md)")
    version = text(doc.get("version"), "version")
    rounding = choice(doc.get("rounding", "floor"), "rounding", ROUNDINGS)
    currencies = _parse_currencies(doc.get("currencies"))
    kinds = {c.code: c.kind for c in currencies}
    earn_currency = next(c.code for c in currencies if c.kind == "redeemable")
    qualifying = [c.code for c in currencies if c.kind == "qualifying"]
    tier_currency = doc.get("tier_currency", qualifying[0] if qualifying else earn_currency)
    if not isinstance(tier_currency, str) or tier_currency not in kinds:
        raise ProgramError(f"tier_currency: {shown(tier_currency)} is not in currencies ({', '.join(kinds)})")
    tiers = _parse_tiers(doc.get("tiers", []))
    return Program(
        version=version,
        currencies=currencies,
        tiers=tiers,
        tier_currency=tier_currency,
        rounding=rounding,  # type: ignore[arg-type]
        rewards=_parse_rewards(doc.get("rewards", []), kinds, tiers),
        rules=parse_rules(doc.get("rules", []), kinds),
        transaction_caps=_caps(doc["transaction_caps"], kinds) if "transaction_caps" in doc else {},
        earn_currency=earn_currency,
        raw=doc,
        coupons=_parse_coupons(doc.get("coupons", [])),
        stacking=_stacking(doc.get("stacking")),
        discount_rounding=choice(doc.get("discount_rounding", "half_up"), "discount_rounding",  # type: ignore[arg-type]
                                 ROUNDINGS),
        member_tokens=parse_member_tokens(doc["member_tokens"]) if "member_tokens" in doc else TokenSettings(),
    )


def vet_program(program: Program) -> None:
    """What a program central sends must pass beyond parse_program, which also reads the programs a lane
    kept from before these checks (cache.db's, ledger.db's for returns: read as they were, never refused
    on an upgrade). ProgramError naming the path:
    - every money is written as a sale names it, ISO 4217's three capitals: a rate or a minimum keyed
      "jpy" never applied, a voucher in "yen" took nothing off any basket;
    - every money a voucher or coupon is worth is one the base rates earn on: a sale in any other is
      refused (unsupported_currency), so a member would spend points on it for nothing (a minimum or
      threshold in another money is left alone: one document may serve several countries);
    - a min_basket's currencies list names one at least (empty, it held back nothing);
    - a coupon's code is 1-64 characters with no control character nor a space at either end: every
      use's event carries it, and central refuses a longer voucher_code or a control character (each
      use would be quarantined); a code typed is read without the spaces."""
    earned = {m for rule in program.rules if isinstance(rule, BaseRate) for m in rule.rates}
    named: list[tuple[str, str]] = []
    for i, rule in enumerate(program.rules):
        if isinstance(rule, BaseRate):
            named += [(f"rules[{i}].rates.{m}", m) for m in rule.rates]
        if isinstance(rule, (MinBasket, ThresholdBonus)):
            named += [(f"rules[{i}].min_spend_minor.{m}", m) for m in rule.min_spend_minor]
        if isinstance(rule, MinBasket) and rule.currencies is not None and not rule.currencies:
            raise ProgramError(f"rules[{i}].currencies: an empty list names no currency; leave currencies out "
                               "(every currency)")
    voucher_money = [(f"currencies[{i}].money_value.money", c.money_value.money)
                     for i, c in enumerate(program.currencies) if c.money_value is not None]
    voucher_money += [(f"rewards[{i}].money", r.money) for i, r in enumerate(program.rewards) if r.money is not None]
    voucher_money += [(f"coupons[{i}].money", c.money) for i, c in enumerate(program.coupons) if c.money is not None]
    for path, money in named + voucher_money:
        money_code(money, path)
    for path, money in voucher_money:
        if money not in earned:
            raise ProgramError(f"{path}: {money} is no money the program earns on (its base_rate rates: "
                               f"{', '.join(sorted(earned)) or 'none'}): a sale in it is refused")
    for i, coupon in enumerate(program.coupons):
        ident(coupon.code, f"coupons[{i}].code", limit=64)
        if coupon.code != coupon.code.strip():  # a code typed is read without them: validate never found it
            raise ProgramError(f"coupons[{i}].code: {shown(coupon.code)} begins or ends with a space")
