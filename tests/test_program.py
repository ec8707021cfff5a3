"""Parsing the program: every rule type, every error names its JSON path, lot dates per policy."""

import copy
import json
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core.expiry import lot_dates
from posd.core.program import Currency, ExpiryPolicy, ProgramError, parse_program, vet_program
from posd.core.rules_spec import (
    BaseRate,
    Birthday,
    Exclude,
    MinBasket,
    Multiplier,
    PerUnit,
    ThresholdBonus,
)

ROOT = Path(__file__).parent.parent
WARSAW = ZoneInfo("Europe/Warsaw")
INSTANT = timedelta(microseconds=1)

FULL = {
    "version": "full-1",
    "rounding": "half_up",
    "currencies": [
        {"code": "points", "kind": "redeemable", "name": {"en": "points", "pl": "punkty"}, "pending_days": 14,
         "expiry": {"policy": "end_of_month", "months": 12}},
        {"code": "tier", "kind": "qualifying", "expiry": {"policy": "never"}},
        {"code": "coffee", "kind": "stamps", "expiry": {"policy": "rolling_days", "days": 180}},
        {"code": "bonus", "kind": "redeemable", "expiry": {"policy": "end_of_year", "years": 1}},
    ],
    "tiers": [
        {"id": "gold", "threshold": 5000, "multiplier": "3/2", "name": {"en": "Gold", "fa": "طلایی"}},
        {"id": "basic", "threshold": 0},
    ],
    "rules": [
        {"id": "r0", "type": "exclude", "categories": ["tobacco"], "skus": ["LOTTO"]},
        {"id": "r1", "type": "min_basket", "min_spend_minor": {"PLN": 500}, "currencies": ["points"]},
        {"id": "r2", "type": "base_rate", "currency": "points",
         "rates": {"PLN": {"spend_minor": 100, "points": 1}, "EUR": {"spend_minor": 25, "points": 1}}},
        {"id": "r3", "type": "multiplier", "currency": "points", "multiplier": "2", "categories": ["fruit"],
         "when": {"dates": {"from": "2026-11-01", "until": "2026-12-01T06:00"}, "weekdays": ["tue", "sat"],
                  "hours": {"from": "10:00", "until": "24:00"}}, "cap": 500},
        {"id": "r4", "type": "per_unit", "currency": "coffee", "categories": ["coffee"], "points_per_unit": 1,
         "cap": 10},
        {"id": "r5", "type": "threshold_bonus", "currency": "points", "points": 100,
         "min_spend_minor": {"PLN": 20000}, "when": {"weekdays": ["fri"]}},
        {"id": "r6", "type": "birthday", "currency": "points", "points": 200, "window_days": 3,
         "description": "once a year"},
    ],
    "transaction_caps": {"points": 5000},
    "rewards": [
        {"id": "w0", "kind": "free_item", "sku": "COFFEE", "currency": "coffee", "price": 9,
         "limit_per_member_per_day": 1, "name": {"en": "10th coffee free"}},
        {"id": "w1", "kind": "discount", "percent": 5, "currency": "points", "price": 300, "min_tier": "gold",
         "valid_days": 7},
        {"id": "w2", "kind": "fixed_value", "value_minor": 1000, "money": "PLN", "currency": "points",
         "price": 1000, "tier_prices": {"gold": 800}},
    ],
    "offers": [{"id": "not ours to check"}],
    "coupons": [
        {"code": "WELCOME10", "title": "10% off", "percent": 10,
         "valid_from": "2026-11-01T00:00:00Z", "valid_to": "2026-12-31T23:59:59+01:00"},
        {"code": "ANNA-BDAY", "kind": "personal", "member_id": "M0001", "title": "Birthday cake", "sku": "5900"},
        {"code": "TENNER", "kind": "campaign", "value_minor": 1000, "money": "PLN"},
    ],
}


def full(**changes):
    doc = copy.deepcopy(FULL)
    doc.update(changes)
    return doc


def test_every_rule_type_parses():
    prog = parse_program(full())
    assert [type(r) for r in prog.rules] == [Exclude, MinBasket, BaseRate, Multiplier, PerUnit, ThresholdBonus,
                                             Birthday]
    exclude, minimum, base, multiplier, per_unit, threshold, birthday = prog.rules
    assert exclude.match.categories == {"tobacco"} and exclude.match.skus == {"LOTTO"}
    assert minimum.min_spend_minor == {"PLN": 500} and minimum.currencies == {"points"}
    assert base.rates["EUR"].spend_minor == 25
    assert multiplier.multiplier == 2 and multiplier.cap == 500
    assert multiplier.when.weekdays == {1, 5} and multiplier.when.time_from == time(10)
    assert multiplier.when.time_until is None and multiplier.when.ends == datetime(2026, 12, 1, 6)
    assert per_unit.points_per_unit == 1 and per_unit.cap == 10
    assert threshold.points == 100 and threshold.match.everything
    assert birthday.window_days == 3


def test_program_shape():
    prog = parse_program(full())
    assert prog.version == "full-1" and prog.rounding == "half_up"
    assert prog.earn_currency == "points" and prog.tier_currency == "tier"  # the qualifying currency by default
    assert [t.tier_id for t in prog.tiers] == ["basic", "gold"]  # ascending threshold
    assert prog.tier("gold").multiplier == Fraction(3, 2) and prog.tier("gold").name("fa") == "طلایی"
    assert prog.tier("basic").name("pl") == "basic"
    assert prog.tier_ahead("basic", 10).tier_id == "gold" and prog.tier_ahead("gold", 10) is None
    assert prog.tier_ahead(None, -1).tier_id == "basic"
    assert prog.tier_ahead("basic", 6000).tier_id == "gold"  # reached, central not there yet: never "top tier"
    assert prog.currency("coffee").kind == "stamps" and prog.currency("nope") is None
    assert prog.currency("points").expiry == ExpiryPolicy("end_of_month", months=12)
    assert prog.currency("bonus").expiry == ExpiryPolicy("end_of_year", months=12)
    assert prog.currency("points").pending_days == 14 and prog.currency("points").name("pl") == "punkty"
    assert prog.transaction_caps == {"points": 5000}
    assert prog.raw["offers"] == FULL["offers"]  # other sections ride along for the rest of posd


def test_rewards_prices_per_tier():
    prog = parse_program(full())
    coffee, discount, voucher = prog.rewards
    assert coffee.kind == "free_item" and coffee.sku == "COFFEE" and coffee.valid_days == 30
    assert coffee.name("pl") == "10th coffee free" and coffee.limit_per_member_per_day == 1
    assert discount.percent == 5 and discount.value_minor is None and discount.valid_days == 7
    assert discount.price_for("gold") == 300 and discount.price_for("basic") is None
    assert discount.price_for(None) is None
    assert voucher.value_minor == 1000 and voucher.money == "PLN"
    assert voucher.price_for("gold") == 800 and voucher.price_for("basic") == 1000 and voucher.price_for(None) == 1000
    assert prog.reward("w1") is discount and prog.reward("nope") is None


def test_coupons_are_part_of_the_program():
    prog = parse_program(full())
    welcome, cake, tenner = prog.coupons
    assert welcome.campaign and welcome.kind == "campaign" and welcome.percent == 10 and welcome.member_id is None
    assert welcome.valid_from == datetime(2026, 11, 1, tzinfo=UTC)
    assert welcome.valid_to == datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC)  # the same instant, in UTC
    assert not cake.campaign and cake.member_id == "M0001" and cake.sku == "5900" and cake.title == "Birthday cake"
    assert tenner.title == "TENNER" and (tenner.value_minor, tenner.money) == (1000, "PLN")  # the code by default
    assert prog.coupon("ANNA-BDAY") is cake and prog.coupon("nope") is None
    assert parse_program({k: v for k, v in full().items() if k != "coupons"}).coupons == ()


def test_rewards_a_member_can_afford_now():
    prog = parse_program(full())
    assert [(r.reward_id, price) for r, price in prog.affordable_rewards("gold", {"points": 900, "coffee": 9})] == [
        ("w0", 9), ("w1", 300), ("w2", 800)]
    assert [(r.reward_id, price) for r, price in prog.affordable_rewards("basic", {"points": 900})] == []
    assert [r.reward_id for r, _ in prog.affordable_rewards(None, {"points": 1000, "coffee": 8})] == ["w2"]


def test_points_have_a_money_value_only_where_the_program_gives_one():
    assert parse_program(full()).points_reward(500) is None  # no money_value: points buy catalog rewards only
    doc = full()
    doc["currencies"][0]["money_value"] = {"points": 3, "value_minor": 2, "money": "PLN", "min_points": 30,
                                           "valid_days": 7}
    prog = parse_program(doc)
    assert [prog.points_reward(n) for n in (27, 31, 32)] == [None, None, None]  # below 30; not whole grosze
    reward = prog.points_reward(300)
    assert (reward.reward_id, reward.currency, reward.price_for("gold"), reward.value_minor, reward.money,
            reward.valid_days) == ("points:300", "points", 300, 200, "PLN", 7)
    assert reward.benefit.to_json()["kind"] == "amount_off" and reward.benefit.value_minor == 200
    assert (reward.name("en"), reward.name("pl"), reward.name("fa")) == (
        "2.00 PLN voucher", "Bon 2,00 PLN", "کوپن ۲٫۰۰ PLN")
    doc["currencies"][0]["money_value"] = {"points": 1000, "value_minor": 1000, "money": "PLN"}
    prog = parse_program(doc)  # at least one block of points unless min_points says otherwise
    assert prog.points_reward(999) is None and prog.points_reward(1001).value_minor == 1001
    doc["currencies"][0]["money_value"] = {"points": 1, "value_minor": 10**6, "money": "PLN"}
    prog = parse_program(doc)  # more than 10^12 minor units is no voucher (a POS reads it inexactly)
    assert prog.points_reward(10**6).value_minor == 10**12 and prog.points_reward(10**6 + 1) is None
    doc["currencies"][0]["money_value"] = {"points": 4, "value_minor": 1, "money": "PLN", "min_points": 102}
    with pytest.raises(ProgramError, match="min_points: 102 is between steps of 4"):
        parse_program(doc)  # it would refuse the very number its message names
    from posd.lane.rewards import minor_places

    base = next(rule for rule in doc["rules"] if rule["type"] == "base_rate")
    base["rates"] |= {money: {"spend_minor": 100, "points": 1} for money in ("JPY", "KWD")}
    doc["currencies"][0]["money_value"] = {"points": 10, "value_minor": 1, "money": "JPY"}  # no minor unit
    assert parse_program(doc).points_reward(500, minor_places("JPY")).name("en") == "50 JPY voucher"
    doc["currencies"][0]["money_value"] = {"points": 1, "value_minor": 1, "money": "KWD"}  # fils: thousandths
    assert parse_program(doc).points_reward(1500, minor_places("KWD")).name("en") == "1.500 KWD voucher"


def test_the_demo_program_parses_and_shows_the_product():
    prog = parse_program(json.loads((ROOT / "config" / "demo-seed.json").read_text())["program"])
    assert isinstance(prog.version, str) and len(prog.tiers) == 3
    assert {c.kind for c in prog.currencies} == {"redeemable", "qualifying", "stamps"}
    assert any(getattr(r, "when", None) for r in prog.rules)  # a promotion
    assert {r.kind for r in prog.rewards} == {"free_item", "fixed_value", "discount"}
    assert prog.points_reward(500).value_minor == 500  # points by number: 100 are 1 PLN off


def _mutate(path_parts, value):
    doc = copy.deepcopy(FULL)
    node = doc
    for part in path_parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[path_parts[-1]]
    else:
        node[path_parts[-1]] = value
    return doc


_DELETE = object()

ERRORS = [
    (("version",), _DELETE, "version: "),
    (("version",), 3, "version: "),
    (("rounding",), "bankers", "rounding: "),
    (("currencies",), [], "currencies: "),
    (("currencies", 0, "kind"), "cash", "currencies[0].kind: "),
    (("currencies", 1, "code"), "points", "currencies[1].code: duplicate"),
    (("currencies", 0, "pending_days"), -1, "currencies[0].pending_days: "),
    (("currencies", 0, "expiry"), {"policy": "soon"}, "currencies[0].expiry.policy: "),
    (("currencies", 0, "expiry"), {"policy": "never", "days": 3}, "currencies[0].expiry.days: "),
    (("currencies", 0, "expiry"), {"policy": "rolling_days", "days": 14}, "currencies[0].expiry.days: must exceed"),
    (("currencies", 0, "name"), {"en": ""}, "currencies[0].name.en: "),
    (("currencies", 0, "colour"), "red", "currencies[0].colour: unknown key"),
    (("tier_currency",), "miles", "tier_currency: "),
    (("tiers", 0, "multiplier"), "0.5", "tiers[0].multiplier: must be at least 1"),
    (("tiers", 0, "multiplier"), "x", "tiers[0].multiplier: "),
    (("tiers", 1, "id"), "gold", "tiers[1].id: duplicate"),
    (("tiers", 1, "threshold"), 5000, "tiers[1].threshold: "),
    (("rules", 0, "type"), "lottery", "rules[0].type: unknown rule type 'lottery'"),
    (("rules", 0, "id"), _DELETE, "rules[0].id: "),
    (("rules", 1, "id"), "r0", "rules[1].id: duplicate"),
    (("rules", 4, "categories"), _DELETE, "rules[4]: name the lines"),
    (("rules", 0, "skus"), "LOTTO", "rules[0].skus: must be an array"),
    (("rules", 1, "min_spend_minor"), {}, "rules[1].min_spend_minor: "),
    (("rules", 1, "currencies"), ["air"], "rules[1].currencies: 'air' is not in currencies"),
    (("rules", 2, "rates", "PLN", "spend_minor"), 0, "rules[2].rates.PLN.spend_minor: "),
    (("rules", 2, "rates", "PLN", "points"), "1", "rules[2].rates.PLN.points: "),
    (("rules", 2, "currency"), "air", "rules[2].currency: 'air' is not in currencies"),
    (("rules", 3, "multiplier"), "abc", "rules[3].multiplier: "),
    (("rules", 3, "multiplier"), "0.9", "rules[3].multiplier: must be at least 1"),
    (("rules", 3, "multipler"), "2", "rules[3].multipler: unknown key"),
    (("rules", 3, "currency"), "coffee", "rules[3].currency: no base_rate earns 'coffee'"),
    (("rules", 3, "cap"), -1, "rules[3].cap: "),
    (("rules", 3, "when"), {}, "rules[3].when: "),
    (("rules", 3, "when", "weekdays"), ["tuesday"], "rules[3].when.weekdays[0]: "),
    (("rules", 3, "when", "hours"), {"from": "12:00", "until": "10:00"}, "rules[3].when.hours.until: "),
    (("rules", 3, "when", "hours"), {"from": "9", "until": "10:00"}, "rules[3].when.hours.from: "),
    (("rules", 3, "when", "hours"), {"from": "24:00", "until": "24:00"}, "rules[3].when.hours.from: "),
    (("rules", 3, "when", "dates"), {"from": "2026-12-01", "until": "2026-11-01"}, "rules[3].when.dates.until: "),
    (("rules", 3, "when", "dates"), {"from": "2026-13-01"}, "rules[3].when.dates.from: "),
    (("rules", 3, "when", "dates"), {"from": "2026-11-01T10:00+01:00"}, "rules[3].when.dates.from: "),
    (("rules", 4, "points_per_unit"), 0, "rules[4].points_per_unit: "),
    (("rules", 5, "points"), _DELETE, "rules[5].points: required"),
    (("rules", 6, "window_days"), 90, "rules[6].window_days: "),
    (("rules", 6, "currency"), _DELETE, "rules[6].currency: required"),
    (("rules",), {"r0": {}}, "rules: must be an array"),
    (("rules", 7), {"id": "again", "type": "base_rate", "currency": "points", "rates": {"PLN": {
        "spend_minor": 1, "points": 1}}}, "rules[7]: a second base_rate"),
    (("transaction_caps",), {"air": 1}, "transaction_caps.air: "),
    (("transaction_caps",), {"points": -5}, "transaction_caps.points: "),
    (("rewards", 0, "kind"), "cash", "rewards[0].kind: "),
    (("rewards", 0, "sku"), _DELETE, "rewards[0]: a free_item reward needs"),
    (("rewards", 0, "percent"), 5, "rewards[0].percent: not used"),
    (("rewards", 0, "currency"), "tier", "rewards[0].currency: 'tier' cannot be spent"),
    (("rewards", 0, "price"), 0, "rewards[0].price: "),
    (("rewards", 1, "value_minor"), 100, "rewards[1]: a discount reward needs exactly one"),
    (("rewards", 1, "percent"), 101, "rewards[1].percent: "),
    (("rewards", 1, "min_tier"), "platinum", "rewards[1].min_tier: "),
    (("rewards", 2, "money"), _DELETE, "rewards[2].money: "),
    (("rewards", 2, "tier_prices"), {"platinum": 5}, "rewards[2].tier_prices.platinum: "),
    (("rewards", 2, "valid_days"), 0, "rewards[2].valid_days: "),
    (("rewards", 2, "id"), "w0", "rewards[2].id: duplicate"),
    (("rewards", 2, "id"), "w" * 129, "rewards[2].id: must be 1-128 characters"),
    (("rewards", 2, "id"), "w\x85", "rewards[2].id: must be 1-128 characters, none of them a control"),
    (("currencies", 0, "money_value"), {"points": 100, "value_minor": 100}, "currencies[0].money_value.money: "
                                                                             "required"),
    (("currencies", 0, "money_value"), {"points": 0, "value_minor": 1, "money": "PLN"},
     "currencies[0].money_value.points: "),
    (("currencies", 0, "money_value"), {"points": 1, "value_minor": 1, "money": "PLN", "step": 5},
     "currencies[0].money_value.step: unknown key"),
    (("currencies", 2, "money_value"), {"points": 1, "value_minor": 1, "money": "PLN"},
     "currencies[2].money_value: only a redeemable currency"),
    (("currencies", 0, "money_value"), {"points": 1, "value_minor": 1, "money": "zł"},
     "currencies[0].money_value.money: 'zł' is not an ISO 4217 code"),
    # a sale is never in "yen" or "jpy", nor in a money no base rate earns on: a voucher in one took
    # nothing off any basket, after the member paid points for it
    (("rewards", 2, "money"), "yen", "rewards[2].money: 'yen' is not an ISO 4217 code"),
    (("coupons", 2, "money"), "pln", "coupons[2].money: 'pln' is not an ISO 4217 code"),
    (("rules", 2, "rates", "jpy"), {"spend_minor": 1, "points": 1}, "rules[2].rates.jpy: 'jpy' is not an ISO"),
    (("rules", 5, "min_spend_minor", "eur"), 100, "rules[5].min_spend_minor.eur: 'eur' is not an ISO"),
    (("rewards", 2, "money"), "XYZ", "rewards[2].money: XYZ is no money the program earns on (its base_rate "
                                     "rates: EUR, PLN)"),
    (("coupons", 2, "money"), "CZK", "coupons[2].money: CZK is no money the program earns on"),
    (("currencies", 0, "money_value"), {"points": 1, "value_minor": 1, "money": "JPY"},
     "currencies[0].money_value.money: JPY is no money the program earns on"),
    (("coupons",), {"WELCOME10": {}}, "coupons: must be an array"),
    (("coupons", 0, "code"), _DELETE, "coupons[0].code: required"),
    # no till can type it, and each use's event (voucher_code) would be refused by central
    (("coupons", 0, "code"), "AB\nC", "coupons[0].code: must be 1-64 characters, none of them a control"),
    (("coupons", 0, "code"), "C" * 65, "coupons[0].code: must be 1-64 characters"),
    (("coupons", 0, "code"), " WELCOME10", "coupons[0].code: ' WELCOME10' begins or ends with a space"),
    (("coupons", 0, "kind"), "secret", "coupons[0].kind: "),
    (("coupons", 0, "percent"), 101, "coupons[0].percent: at most 100"),
    (("coupons", 0, "sku"), "X", "coupons[0]: a coupon needs exactly one of value_minor, percent, sku"),
    (("coupons", 0, "percent"), _DELETE, "coupons[0]: a coupon needs exactly one of"),
    (("coupons", 0, "member_id"), "M1", "coupons[0].member_id: a campaign coupon is for every member"),
    (("coupons", 0, "valid_to"), "2026-12-31", "coupons[0].valid_to: '2026-12-31' needs an offset"),
    (("coupons", 0, "valid_to"), "soon", "coupons[0].valid_to: 'soon' is not an instant"),
    (("coupons", 0, "valid_to"), "2026-10-01T00:00:00Z", "coupons[0].valid_to: must be after valid_from"),
    (("coupons", 0, "percnt"), 5, "coupons[0].percnt: unknown key"),
    (("coupons", 1, "member_id"), _DELETE, "coupons[1].member_id: required for a personal coupon"),
    (("coupons", 1, "money"), "PLN", "coupons[1].money: only used with value_minor"),
    (("coupons", 2, "code"), "WELCOME10", "coupons[2].code: duplicate"),
    # read case-insensitively at every till and at central: one of the two could never be told apart
    (("coupons", 2, "code"), "welcome10", "coupons[2].code: 'welcome10' is coupons[0]'s code 'WELCOME10' in other"),
    # an empty list named no line and was read as no list: a promotion for nothing paid on every line
    (("rules", 3, "skus"), [], "rules[3].skus: an empty list names no line"),
    (("rules", 5, "categories"), [], "rules[5].categories: an empty list names no line"),
    (("rules", 0, "skus"), [], "rules[0].skus: an empty list names no line"),
    (("rules", 1, "currencies"), [], "rules[1].currencies: an empty list names no currency"),
    # the lane's JSON reader makes an integer past 64 bits a float: "is a float" named the wrong mistake
    (("rules", 2, "rates", "PLN", "points"), 1e30, "rules[2].rates.PLN.points: 1e+30 is past the largest whole"),
    (("coupons", 0, "applies_to"), {"skus": []}, "coupons[0].applies_to.skus: an empty list names no line"),
    (("rules", 5, "when", "weekdays"), [], "rules[5].when.weekdays: an empty list is no day"),
    (("rules", 3, "multiplier"), "1e2", "rules[3].multiplier: '1e2' is not a number written as"),
    (("rules", 3, "multiplier"), " 2", "rules[3].multiplier: ' 2' is not a number written as"),
    (("tiers", 1, "multiplier"), "1_5", "tiers[1].multiplier: '1_5' is not a number written as"),
    # past Python's 4300 digits it read as "not a number", the whole 5000 digits quoted in the message
    (("rules", 3, "multiplier"), "1" + "0" * 5000, "rules[3].multiplier: '1" + "0" * 37 + "… (5003 characters) "
                                                   "is too long for a number: at most 64"),
    (("coupons", 0, "kind"), "k" * 500, "coupons[0].kind: 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk… (502 "),
]


@pytest.mark.parametrize("where, value, message", ERRORS, ids=[e[2].split(":")[0] + "/" + str(i)
                                                                for i, e in enumerate(ERRORS)])
def test_every_error_names_its_json_path(where, value, message):
    doc = _mutate(list(where), value) if where != ("rules", 7) else full(rules=FULL["rules"] + [value])
    with pytest.raises(ProgramError) as err:
        vet_program(parse_program(doc))  # as a lane takes central's program (cache.db's store_program)
    assert str(err.value).startswith(message) and len(str(err.value)) < 200, str(err.value)


@pytest.mark.parametrize("where", [("rules", 0, "type"), ("rules", 5, "when", "weekdays", 0), ("rules", 2, "currency"),
                                   ("tier_currency",), ("coupons", 0, "valid_to")])
def test_an_error_quotes_a_long_value_cut_short(where):
    """Health and the log carried the whole value of a refused program's key: 5,000 characters."""
    with pytest.raises(ProgramError) as err:
        vet_program(parse_program(_mutate(list(where), "x" * 5000)))
    assert len(str(err.value)) < 300 and "(5002 characters)" in str(err.value), str(err.value)


def test_a_program_kept_from_before_the_checks_central_programs_pass_is_still_read():
    """cache.db's program and ledger.db's bodies (returns) are read with parse_program: a check added
    later refuses only what central sends from then on, never the program in force after an upgrade
    (the lane would have none: every sale refused)."""
    doc = _mutate(["rewards", 2, "money"], "pln")
    assert parse_program(doc).rewards[2].money == "pln"
    with pytest.raises(ProgramError, match="rewards\\[2\\].money: 'pln' is not an ISO 4217 code"):
        vet_program(parse_program(doc))


@pytest.mark.parametrize("where", [
    ("rules", 3, "multiplier"), ("tiers", 0, "multiplier"), ("rules", 2, "rates", "PLN", "points"),
    ("transaction_caps", "points"), ("offers", 0, "weight"),
])
def test_floats_are_refused_anywhere_with_their_path(where):
    doc = _mutate(list(where), 1.5)
    with pytest.raises(ProgramError) as err:
        parse_program(doc)
    path = ".".join(str(p) for p in where).replace(".0", "[0]").replace(".2", "[2]").replace(".3", "[3]")
    assert str(err.value).startswith(f"{path}: 1.5 is a float")


def test_the_old_earn_object_is_refused_with_a_pointer():
    with pytest.raises(ProgramError, match=r"^earn: .*docs/program.md"):
        parse_program(full(earn={"currency": "points"}))


def test_not_an_object():
    with pytest.raises(ProgramError, match="^program: "):
        parse_program([])  # type: ignore[arg-type]


def _paths(node, prefix=()):
    if prefix:
        yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 30) | st.text(max_size=5)
    | st.sampled_from(["1.5", "points", "tue", "10:00", "2026-01-01", "gold", "PLN", "base_rate", "free_item"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "type", "currency", "PLN", "from", "until", "points", "code", "kind"]), inner,
        max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(where=st.sampled_from(list(_paths(FULL))), value=JSON_VALUES | st.just(_DELETE))
def test_any_damage_to_the_document_is_a_program_error_never_a_crash(where, value):
    try:
        parse_program(_mutate(list(where), value))
    except ProgramError as exc:
        assert str(exc).split(":")[0]  # names a path


# -- lot dates ---------------------------------------------------------------------

def currency(policy, pending=0, **kw):
    return Currency("points", "redeemable", {}, pending, ExpiryPolicy(policy, **kw))


def w(*args):
    return datetime(*args, tzinfo=WARSAW)


@pytest.mark.parametrize("cur, earned, available, expires", [
    (currency("never"), w(2026, 3, 10, 12), w(2026, 3, 10, 12), None),
    (currency("never", 14), w(2026, 3, 20, 12), w(2026, 4, 3, 12), None),  # same wall time across DST
    (currency("rolling_days", days=365), w(2026, 3, 10, 12), w(2026, 3, 10, 12), w(2027, 3, 10, 12)),
    (currency("end_of_month"), w(2026, 3, 10, 12), w(2026, 3, 10, 12), w(2026, 4, 1) - INSTANT),
    (currency("end_of_month", months=12), w(2026, 3, 10), w(2026, 3, 10), w(2027, 4, 1) - INSTANT),
    (currency("end_of_month", months=1), w(2026, 12, 31, 23), w(2026, 12, 31, 23), w(2027, 2, 1) - INSTANT),
    (currency("end_of_year"), w(2026, 3, 10), w(2026, 3, 10), w(2027, 1, 1) - INSTANT),
    (currency("end_of_year", months=12), w(2026, 3, 10), w(2026, 3, 10), w(2028, 1, 1) - INSTANT),
    # pending past the month end: the points live until the end of the month they become available
    (currency("end_of_month", 14), w(2026, 3, 25), w(2026, 4, 8), w(2026, 5, 1) - INSTANT),
])
def test_lot_dates(cur, earned, available, expires):
    got = lot_dates(cur, earned)
    assert got == (available, expires)
    assert got[0].tzinfo is UTC and (got[1] is None or got[1].tzinfo is UTC)


def test_qualifying_points_never_expire_whatever_the_currency_says():
    """Central moves `qualifying` with sales and returns only, one figure with the tier currency's
    balance: the lane expired a qualifying lot and showed 0 while central showed 100 and a higher tier."""
    tier = Currency("qpts", "qualifying", {}, 3, ExpiryPolicy("rolling_days", days=60))
    assert lot_dates(tier, w(2026, 9, 25, 12)) == (w(2026, 9, 28, 12).astimezone(UTC), None)


def test_end_of_march_is_in_summer_time():
    _, expires = lot_dates(currency("end_of_month"), w(2026, 3, 1, 9))
    assert expires == datetime(2026, 3, 31, 21, 59, 59, 999999, tzinfo=UTC)  # 23:59:59.999999 CEST
    assert expires.astimezone(WARSAW).date() == date(2026, 3, 31)


def test_lot_dates_need_an_aware_time():
    with pytest.raises(ValueError):
        lot_dates(currency("never"), datetime(2026, 3, 1))
