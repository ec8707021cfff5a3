"""The rules engine: exact arithmetic, one named rounding, a trace that explains."""

import copy
import json
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.core.program import parse_program
from posd.core.rules import Basket, BasketLine, EarnContext, RuleError, compute_accrual

WARSAW = ZoneInfo("Europe/Warsaw")
TUESDAY_1015 = datetime(2026, 11, 24, 10, 15, tzinfo=WARSAW)
WEDNESDAY = datetime(2026, 11, 25, 10, 15, tzinfo=WARSAW)

PROGRAM = {
    "version": "t-1",
    "rounding": "floor",
    "currencies": [{"code": "points", "kind": "redeemable"}],
    "tiers": [
        {"id": "basic", "threshold": 0, "multiplier": "1"},
        {"id": "gold", "threshold": 5000, "multiplier": "1.5"},
    ],
    "rules": [{"id": "base", "type": "base_rate", "currency": "points",
               "rates": {"PLN": {"spend_minor": 100, "points": 1}}}],
}


def program(*rules, **top):
    doc = copy.deepcopy(PROGRAM)
    doc["rules"] += list(rules)
    doc.update(top)
    return parse_program(doc)


def ctx(tier="basic", at=WEDNESDAY, **kw):
    return EarnContext(tier_id=tier, occurred_local=at, **kw)


def line(sku, category, quantity, unit_price, discount=0):
    return BasketLine(sku, category, Decimal(quantity), unit_price, discount)


def basket(*lines, money="PLN"):
    return Basket(money, sum(x.amount for x in lines), tuple(lines))


def by_rule(acc):
    return {t.get("rule") or t["type"]: t for t in acc.trace}


# -- base rate, tiers, rounding ------------------------------------------------

def test_points_per_spend_unit_floor():
    acc = compute_accrual(program(), Basket("PLN", 12999), ctx())
    assert acc.points == {"points": 129}
    assert acc.program_version == "t-1"
    assert [t["type"] for t in acc.trace] == ["base_rate", "rounding"]


def test_tier_multiplier_applies_before_the_single_rounding():
    # 129.99 * 1.5 = 194.985 -> 194; rounding first would give 129 * 1.5 = 193.5 -> 193
    acc = compute_accrual(program(), Basket("PLN", 12999), ctx("gold"))
    assert acc.points == {"points": 194}
    rules = by_rule(acc)
    assert rules["tier_bonus"]["multiplier"] == "1.5"
    assert rules["tier_bonus"]["points"] == "64.995"
    assert rules["rounding"]["exact"] == "194.985"


def test_half_up_rounding_is_named_in_program():
    prog = program(rounding="half_up")
    assert compute_accrual(prog, Basket("PLN", 150), ctx()).points == {"points": 2}
    assert compute_accrual(prog, Basket("PLN", 149), ctx()).points == {"points": 1}


def test_rounding_happens_once_per_currency_never_per_line():
    # five lines each worth 0.6 points: per-line flooring would earn 0
    acc = compute_accrual(program(), basket(*[line(f"S{i}", "food", 1, 60) for i in range(5)]), ctx())
    assert acc.points == {"points": 3}


def test_a_positive_earn_rounded_to_zero_says_so():
    acc = compute_accrual(program(), Basket("PLN", 60), ctx())
    assert acc.points == {"points": 0}
    rounding = by_rule(acc)["rounding"]
    assert rounding["rounded_to_zero"] is True and rounding["exact"] == "0.6"
    assert "0.6" in rounding["note"]


def test_unknown_tier_and_no_member_earn_the_base_rate():
    assert compute_accrual(program(), Basket("PLN", 1000), ctx(None)).points == {"points": 10}
    acc = compute_accrual(program(), Basket("PLN", 1000), ctx("platinum"))
    assert acc.points == {"points": 10}
    assert by_rule(acc)["tier_bonus"]["reason"] == "unknown_tier"


# -- basket validation -----------------------------------------------------------

def test_lines_must_add_up_to_total():
    lines = (line("A", "food", 2, 500, 100),)
    assert compute_accrual(program(), Basket("PLN", 900, lines), ctx(None)).points == {"points": 9}
    with pytest.raises(RuleError) as err:
        compute_accrual(program(), Basket("PLN", 1000, lines), ctx(None))
    assert err.value.code == "total_mismatch"


@pytest.mark.parametrize("bad, code", [
    (Basket("PLN", -1), "negative_total"),
    (Basket("PLN", 0, (line("A", None, 1, 100, 200), line("B", None, 1, 100))), "negative_line"),
    (Basket("PLN", 100, (line("A", None, -1, -100),)), "negative_line"),
    (Basket("USD", 100), "unsupported_currency"),
])
def test_bad_baskets_have_error_codes(bad, code):
    with pytest.raises(RuleError) as err:
        compute_accrual(program(), bad, ctx())
    assert err.value.code == code


def test_a_sale_earning_more_than_one_event_may_carry_is_refused_before_anything_is_recorded():
    """points_per_unit 10**12 passed the program check, and a sale of 2 units earned 2,000,000,000,002
    points: recorded and shown at the lane, refused by central for good (bad_points), quarantined."""
    from posd.core.rules import MAX_SALE_POINTS
    from posd.sync.protocol import MAX_POINTS
    assert MAX_SALE_POINTS == MAX_POINTS
    huge = program({"id": "big", "type": "per_unit", "currency": "points", "skus": ["X"],
                    "points_per_unit": MAX_POINTS - 1})
    assert compute_accrual(huge, basket(line("X", None, 1, 100)), ctx()).points["points"] == MAX_POINTS  # + 1 base
    with pytest.raises(RuleError) as err:
        compute_accrual(huge, basket(line("X", None, 2, 100)), ctx())
    assert err.value.code == "points_out_of_range" and "2000000000000 points" in str(err.value)


def test_the_moment_of_sale_must_be_store_local_and_aware():
    with pytest.raises(RuleError) as err:
        compute_accrual(program(), Basket("PLN", 100), EarnContext("basic", datetime(2026, 11, 24, 10)))
    assert err.value.code == "invalid_occurred_at"


# -- exclusions and minimum basket -----------------------------------------------

EXCLUDE = {"id": "no-tobacco", "type": "exclude", "categories": ["tobacco"]}
MIN_BASKET = {"id": "min", "type": "min_basket", "min_spend_minor": {"PLN": 2000}}


def test_excluded_lines_earn_nothing():
    acc = compute_accrual(program(EXCLUDE), basket(line("CIG", "tobacco", 1, 2000), line("A", "food", 1, 500)),
                          ctx())
    assert acc.points == {"points": 5}
    assert by_rule(acc)["no-tobacco"] == {"rule": "no-tobacco", "type": "exclude", "status": "applied",
                                          "lines": [0], "excluded_spend_minor": 2000}


def test_excluded_lines_do_not_count_toward_the_minimum_basket():
    prog = program(EXCLUDE, MIN_BASKET)
    acc = compute_accrual(prog, basket(line("CIG", "tobacco", 1, 5000), line("A", "food", 1, 1500)), ctx())
    assert acc.points == {"points": 0}
    entry = by_rule(acc)["min"]
    assert entry["status"] == "not_met" and entry["eligible_spend_minor"] == 1500
    assert compute_accrual(prog, basket(line("A", "food", 1, 2000)), ctx()).points == {"points": 20}


# -- promotions, multipliers, fixed points -----------------------------------------

DOUBLE_TUESDAY = {"id": "double-tue", "type": "multiplier", "currency": "points", "multiplier": "2",
                  "when": {"weekdays": ["tue"], "hours": {"from": "10:00", "until": "12:00"}}}


@pytest.mark.parametrize("at, points", [
    (datetime(2026, 11, 24, 9, 59, 59, tzinfo=WARSAW), 100),
    (datetime(2026, 11, 24, 10, 0, tzinfo=WARSAW), 200),
    (datetime(2026, 11, 24, 11, 59, 59, tzinfo=WARSAW), 200),
    (datetime(2026, 11, 24, 12, 0, tzinfo=WARSAW), 100),  # the window is [10:00, 12:00)
    (datetime(2026, 7, 7, 10, 30, tzinfo=WARSAW), 200),  # summer time: still wall-clock 10:30
    (WEDNESDAY, 100),
])
def test_double_points_tuesdays_ten_to_noon_store_time(at, points):
    assert compute_accrual(program(DOUBLE_TUESDAY), Basket("PLN", 10000), ctx(at=at)).points == {"points": points}


def test_a_promotion_outside_its_window_says_why():
    entry = by_rule(compute_accrual(program(DOUBLE_TUESDAY), Basket("PLN", 10000), ctx()))["double-tue"]
    assert entry["status"] == "skipped" and entry["reason"] == "outside_window"
    assert entry["window"] == {"weekdays": ["tue"], "hours": {"from": "10:00", "until": "12:00"}}


def test_date_range_promotion_is_half_open():
    promo = {"id": "xmas", "type": "multiplier", "currency": "points", "multiplier": "3", "categories": ["toys"],
             "when": {"dates": {"from": "2026-12-07", "until": "2026-12-24"}}}
    toys = basket(line("T", "toys", 1, 1000))
    at = [datetime(2026, 12, 6, 23, 59, tzinfo=WARSAW), datetime(2026, 12, 7, tzinfo=WARSAW),
          datetime(2026, 12, 23, 23, 59, tzinfo=WARSAW), datetime(2026, 12, 24, tzinfo=WARSAW)]
    assert [compute_accrual(program(promo), toys, ctx(at=a)).points["points"] for a in at] == [10, 30, 30, 10]


def test_bonuses_stack_additively_gold_and_double_points_make_two_and_a_half():
    acc = compute_accrual(program(DOUBLE_TUESDAY), Basket("PLN", 10000), ctx("gold", at=TUESDAY_1015))
    assert acc.points == {"points": 250}  # 100 base + 50 gold + 100 promotion, not 100 * 1.5 * 2
    earned = [(t["type"], t["points"]) for t in acc.trace if t["status"] == "applied"]
    assert earned == [("base_rate", "100"), ("tier_bonus", "50"), ("multiplier", "100"), ("rounding", 250)]


def test_category_multiplier_touches_only_its_lines():
    rule = {"id": "organic", "type": "multiplier", "currency": "points", "multiplier": "3/2",
            "categories": ["organic"], "skus": ["SPECIAL"]}
    b = basket(line("A", "organic", 1, 1000), line("B", "food", 1, 1000), line("SPECIAL", None, 1, 1000))
    acc = compute_accrual(program(rule), b, ctx())
    assert acc.points == {"points": 40}
    assert by_rule(acc)["organic"]["lines"] == [0, 2]


def test_fixed_points_per_unit_including_weighed_goods():
    rule = {"id": "beans", "type": "per_unit", "currency": "points", "skus": ["BEANS"], "points_per_unit": 50}
    acc = compute_accrual(program(rule), basket(line("BEANS", "coffee", 2, 2500), line("X", "x", 1, 100)), ctx())
    assert acc.points == {"points": 151}
    weighed = compute_accrual(program(rule), basket(line("BEANS", "coffee", "0.25", 4000)), ctx())
    assert weighed.points == {"points": 22}  # 10 base + 12.5 -> 22.5 floored once


def test_per_rule_cap_limits_only_that_rule():
    rule = dict(DOUBLE_TUESDAY, cap=30)
    acc = compute_accrual(program(rule), Basket("PLN", 10000), ctx(at=TUESDAY_1015))
    assert acc.points == {"points": 130}
    entry = by_rule(acc)["double-tue"]
    assert entry["cap_applied"] is True and entry["uncapped"] == "100" and entry["points"] == "30"


def test_per_transaction_cap_applies_after_rounding():
    acc = compute_accrual(program(transaction_caps={"points": 500}), Basket("PLN", 100000), ctx())
    assert acc.points == {"points": 500}
    assert acc.trace[-1] == {"type": "transaction_cap", "currency": "points", "status": "applied", "cap": 500,
                             "before": 1000, "points": 500}


# -- threshold and birthday ---------------------------------------------------------

THRESHOLD = {"id": "big", "type": "threshold_bonus", "currency": "points", "points": 100,
             "min_spend_minor": {"PLN": 20000}}


def test_threshold_bonus_from_200_pln_of_eligible_spend():
    prog = program(EXCLUDE, THRESHOLD)
    assert compute_accrual(prog, Basket("PLN", 20000), ctx()).points == {"points": 300}
    assert compute_accrual(prog, Basket("PLN", 19999), ctx()).points == {"points": 199}
    mixed = basket(line("A", "food", 1, 15000), line("CIG", "tobacco", 1, 10000))
    acc = compute_accrual(prog, mixed, ctx())
    assert acc.points == {"points": 150}
    assert by_rule(acc)["big"]["reason"] == "below_threshold"


BIRTHDAY = {"id": "bday", "type": "birthday", "currency": "points", "points": 200, "window_days": 2}


@pytest.mark.parametrize("born, used, at, bonus", [
    (date(1990, 11, 25), False, WEDNESDAY, True),
    (date(1990, 11, 27), False, WEDNESDAY, True),  # inside the two-day window
    (date(1990, 11, 28), False, WEDNESDAY, False),
    (date(1990, 11, 25), True, WEDNESDAY, False),  # this year's bonus already given
    (date(1990, 12, 31), False, datetime(2027, 1, 1, 9, tzinfo=WARSAW), True),  # window crosses new year
    (date(1992, 2, 29), False, datetime(2027, 2, 28, 9, tzinfo=WARSAW), True),  # leap-day birthday
    (None, False, WEDNESDAY, False),
])
def test_birthday_bonus(born, used, at, bonus):
    acc = compute_accrual(program(BIRTHDAY), Basket("PLN", 1000), ctx(at=at, birth_date=born,
                                                                         birthday_bonus_used=used))
    assert acc.points == {"points": 210 if bonus else 10}
    assert acc.birthday_bonus is bonus


def test_birthday_bonus_needs_eligible_spend_so_a_full_return_takes_it_back():
    acc = compute_accrual(program(BIRTHDAY), Basket("PLN", 0), ctx(birth_date=date(1990, 11, 25)))
    assert acc.points == {"points": 0} and acc.birthday_bonus is False


# -- currencies: qualifying points and stamps ----------------------------------------

def test_qualifying_points_and_stamps_come_out_of_the_same_accrual():
    prog = program(
        {"id": "q", "type": "base_rate", "currency": "tier", "rates": {"PLN": {"spend_minor": 100, "points": 1}}},
        {"id": "stamp", "type": "per_unit", "currency": "coffee", "categories": ["coffee"], "points_per_unit": 1},
        currencies=[{"code": "points", "kind": "redeemable"}, {"code": "tier", "kind": "qualifying"},
                    {"code": "coffee", "kind": "stamps"}],
    )
    b = basket(line("LATTE", "coffee", 3, 1200), line("BUN", "bakery", 1, 400))
    acc = compute_accrual(prog, b, ctx("gold"))
    # the tier bonus applies to the redeemable currency only
    assert acc.points == {"points": 60, "tier": 40, "coffee": 3}


def test_minimum_basket_can_spare_the_stamps():
    prog = program(
        {"id": "min", "type": "min_basket", "min_spend_minor": {"PLN": 1000}, "currencies": ["points"]},
        {"id": "stamp", "type": "per_unit", "currency": "coffee", "categories": ["coffee"], "points_per_unit": 1},
        currencies=[{"code": "points", "kind": "redeemable"}, {"code": "coffee", "kind": "stamps"}],
    )
    acc = compute_accrual(prog, basket(line("ESPRESSO", "coffee", 1, 800)), ctx())
    assert acc.points == {"points": 0, "coffee": 1}


@given(total=st.integers(0, 10**9), tier=st.sampled_from(["basic", "gold", None, "unknown"]))
def test_same_basket_same_program_same_points(total, tier):
    a = compute_accrual(program(), Basket("PLN", total), ctx(tier))
    b = compute_accrual(program(), Basket("PLN", total), ctx(tier))
    assert a == b
    assert 0 <= a.points["points"] <= total  # at most 1.5 points per 100 minor units


@given(sku=st.text(min_size=1, max_size=8), category=st.none() | st.text(max_size=8),
       quantity=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100_000), places=3),
       unit_price=st.integers(0, 10**9), discount=st.integers(0, 10**6))
def test_a_basket_line_comes_back_from_its_json_exactly(sku, category, quantity, unit_price, discount):
    stored = BasketLine(sku, category, quantity, unit_price, discount)
    again = BasketLine.from_json(json.loads(json.dumps(stored.to_json())))
    assert again == stored and again.amount == stored.amount
    assert isinstance(stored.to_json()["quantity"], str)  # an exact decimal, never a float


@pytest.mark.parametrize("earn", [
    EarnContext("gold", TUESDAY_1015, date(1990, 11, 24), True),
    EarnContext(None, datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=WARSAW)),  # the repeated hour
])
def test_an_earn_context_comes_back_from_its_json_to_the_same_instant(earn):
    again = EarnContext.from_json(json.loads(json.dumps({**earn.to_json(), "birthday_awarded": True})))
    assert (again.tier_id, again.birth_date, again.birthday_bonus_used) == (
        earn.tier_id, earn.birth_date, earn.birthday_bonus_used)
    # the same instant and wall clock (an inter-zone == is never true for a fold=1 time: PEP 495)
    assert again.occurred_local.timestamp() == earn.occurred_local.timestamp()
    assert again.occurred_local.utcoffset() == earn.occurred_local.utcoffset()
    assert again.occurred_local.replace(tzinfo=None) == earn.occurred_local.replace(tzinfo=None)
    assert compute_accrual(program(), basket(line("A", "grocery", 1, 1000)), again).points == \
        compute_accrual(program(), basket(line("A", "grocery", 1, 1000)), earn).points
