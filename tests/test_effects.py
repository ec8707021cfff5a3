"""Basket effects of rewards, vouchers and coupons, and how they stack: hand-computed figures.

Pure (posd.core.effects, posd.core.program): every figure below was worked out
on paper from the rules in docs/program.md ("Basket effects").
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from posd.core.benefit import Benefit, Stacking
from posd.core.effects import apply_stack, basket_effect, discounted, split
from posd.core.program import ProgramError, parse_program
from posd.core.rules import Basket, BasketLine
from posd.core.rules_spec import Match

ROOT = Path(__file__).parent.parent


def basket(*lines: tuple[str, str, str, int, int]) -> Basket:
    parsed = tuple(BasketLine(sku, cat, Decimal(q), price, disc) for sku, cat, q, price, disc in lines)
    return Basket("PLN", sum(ln.amount for ln in parsed), parsed)


GROCERIES = basket(("BREAD", "bakery", "1", 3000, 0), ("MILK", "dairy", "1", 2000, 0), ("GUM", "sweets", "1", 1000, 0))


def offs(effect) -> list[tuple[int, int]]:
    return [(ln.index, ln.amount_off_minor) for ln in effect.lines]


# --- one effect -----------------------------------------------------------------------------------


def test_amount_off_the_basket_is_shared_by_largest_remainder():
    # 1000 over 3000/2000/1000: 500, 333.33, 166.67 -> floors 500, 333, 166 (999); the last point
    # goes to the largest remainder (.67, GUM): 500 + 333 + 167 = 1000.
    effect = basket_effect(Benefit("amount_off", value_minor=1000, money="PLN"), GROCERIES)
    assert effect.applicable and effect.amount_off_minor == 1000
    assert offs(effect) == [(0, 500), (1, 333), (2, 167)]


def test_amount_off_is_capped_at_what_its_lines_cost():
    on_sweets = Benefit("amount_off", value_minor=1500, applies_to=Match(categories=frozenset({"sweets"})))
    effect = basket_effect(on_sweets, GROCERIES)
    assert effect.amount_off_minor == 1000 and offs(effect) == [(2, 1000)]


def test_amount_off_by_sku_skips_other_lines():
    effect = basket_effect(Benefit("amount_off", value_minor=250, applies_to=Match(skus=frozenset({"MILK"}))),
                           GROCERIES)
    assert offs(effect) == [(1, 250)]


def test_percent_off_rounds_once_with_the_programs_rounding():
    one = basket(("TV", "electronics", "1", 12999, 0))
    # 5% of 129.99 PLN is 649.95 minor units: half_up 650, floor 649
    assert basket_effect(Benefit("percent_off", percent=5), one, rounding="half_up").amount_off_minor == 650
    assert basket_effect(Benefit("percent_off", percent=5), one, rounding="floor").amount_off_minor == 649


def test_percent_off_lines_add_up():
    # 10% of 6000 = 600 over 3000/2000/1000: 300, 200, 100 exactly
    assert offs(basket_effect(Benefit("percent_off", percent=10), GROCERIES)) == [(0, 300), (1, 200), (2, 100)]
    # 7% of 6000 = 420: 210, 140, 70
    assert offs(basket_effect(Benefit("percent_off", percent=7), GROCERIES)) == [(0, 210), (1, 140), (2, 70)]
    # 33% of 1000 + 999 (a discounted line: 1999 - 1000) = 659.67 -> 660 half up; split 330 + 329.67 -> 330, 330
    b = basket(("A", "x", "1", 1000, 0), ("B", "x", "1", 1999, 1000))
    effect = basket_effect(Benefit("percent_off", percent=33), b)
    assert effect.amount_off_minor == 660 and offs(effect) == [(0, 330), (1, 330)]


def test_a_percent_on_a_category_reads_what_the_line_costs_after_its_discount():
    b = basket(("COFFEE", "coffee", "2", 800, 100), ("BREAD", "bakery", "1", 3000, 0))
    effect = basket_effect(Benefit("percent_off", percent=50, applies_to=Match(categories=frozenset({"coffee"}))), b)
    assert effect.amount_off_minor == 750 and offs(effect) == [(0, 750)]  # 50% of (1600 - 100)


def test_the_free_item_is_the_cheapest_unit_in_the_basket():
    b = basket(("COFFEE", "coffee", "2", 800, 0), ("BREAD", "bakery", "1", 3000, 0), ("COFFEE", "coffee", "1", 600, 0))
    effect = basket_effect(Benefit("free_item", sku="COFFEE"), b)
    assert effect.amount_off_minor == 600 and offs(effect) == [(2, 600)]
    assert effect.free_item == {"sku": "COFFEE", "quantity": "1"}


def test_a_free_unit_of_a_discounted_line_is_its_share_of_the_line():
    b = basket(("COFFEE", "coffee", "2", 800, 100))  # 1500 for two: one unit is 750
    assert basket_effect(Benefit("free_item", sku="COFFEE"), b).amount_off_minor == 750
    weighed = basket(("CHEESE", "dairy", "0.25", 4000, 0))  # less than one unit: all of it
    effect = basket_effect(Benefit("free_item", sku="CHEESE"), weighed)
    assert effect.amount_off_minor == 1000 and effect.free_item == {"sku": "CHEESE", "quantity": "0.25"}


@pytest.mark.parametrize("benefit, reason", [
    (Benefit("free_item", sku="COFFEE"), "item_not_in_basket"),
    (Benefit("amount_off", value_minor=500, money="EUR"), "other_currency"),
    (Benefit("percent_off", percent=10, applies_to=Match(categories=frozenset({"tobacco"}))), "no_matching_lines"),
])
def test_effects_that_do_not_apply_say_why(benefit, reason):
    effect = basket_effect(benefit, GROCERIES)
    assert (effect.applicable, effect.amount_off_minor, effect.reason, effect.lines) == (False, 0, reason, ())


def test_a_basket_given_as_a_total_takes_basket_wide_effects_only():
    total = Basket("PLN", 5000)
    assert basket_effect(Benefit("percent_off", percent=10), total).amount_off_minor == 500
    assert basket_effect(Benefit("amount_off", value_minor=9000), total).amount_off_minor == 5000
    assert basket_effect(Benefit("free_item", sku="X"), total).reason == "item_not_in_basket"
    assert basket_effect(Benefit("amount_off", value_minor=1, applies_to=Match(skus=frozenset({"A"}))),
                         total).reason == "no_matching_lines"


def test_split_always_adds_up():
    for total in range(0, 50):
        shares = split(total, [(0, 3), (1, 3), (2, 3)])
        assert sum(shares.values()) == total and max(shares.values()) - min(shares.values()) <= 1
    assert split(2, [(0, 3), (1, 3), (2, 3)]) == {0: 1, 1: 1, 2: 0}  # ties: the first lines


# --- several on one basket ----------------------------------------------------------------------------------

TEN_OFF = Benefit("amount_off", value_minor=1000, money="PLN")
TEN_PERCENT = Benefit("percent_off", percent=10)


def test_effects_apply_in_order_each_on_what_the_earlier_left():
    stack = apply_stack(Stacking(), [("V10", TEN_OFF), ("P10", TEN_PERCENT)], GROCERIES)
    # 10 PLN off 60 PLN leaves 50 PLN (2500/1667/833); 10% of that is 500 -> 250, 167, 83 (largest remainder)
    assert [e.effect.amount_off_minor for e in stack.entries] == [1000, 500]
    assert offs(stack.entries[1].effect) == [(0, 250), (1, 167), (2, 83)]
    assert stack.amount_off_minor == 1500 and stack.taken == {0: 750, 1: 500, 2: 250}
    after = discounted(GROCERIES, stack.taken)
    assert after.total == 4500 and [ln.discount for ln in after.lines] == [750, 500, 250]


def test_at_most_n_per_basket():
    stack = apply_stack(Stacking(max_per_basket=2), [("A", TEN_OFF), ("B", TEN_OFF), ("C", TEN_PERCENT)], GROCERIES)
    assert [(e.ident, e.applied, e.reason) for e in stack.entries] == [
        ("A", True, None), ("B", True, None), ("C", False, "max_per_basket")]
    assert stack.amount_off_minor == 2000


def test_an_exclusive_category_goes_alone_first_come_first_served():
    rules = Stacking(exclusive_categories=frozenset({"staff"}))
    staff = Benefit("percent_off", percent=20, category="staff")
    first = apply_stack(rules, [("STAFF", staff), ("V10", TEN_OFF)], GROCERIES)
    assert [(e.ident, e.applied, e.reason) for e in first.entries] == [("STAFF", True, None),
                                                                      ("V10", False, "exclusive_category")]
    assert first.amount_off_minor == 1200  # 20% of 6000
    later = apply_stack(rules, [("V10", TEN_OFF), ("STAFF", staff)], GROCERIES)
    assert [(e.ident, e.applied, e.reason) for e in later.entries] == [("V10", True, None),
                                                                      ("STAFF", False, "exclusive_category")]
    assert later.amount_off_minor == 1000


def test_nothing_left_after_a_full_discount_and_not_applied_effects_take_nothing():
    stack = apply_stack(Stacking(), [("ALL", Benefit("percent_off", percent=100)), ("V10", TEN_OFF),
                                     ("FREE", Benefit("free_item", sku="GUM"))], GROCERIES)
    assert [(e.applied, e.reason) for e in stack.entries] == [(True, None), (False, "nothing_left"),
                                                               (False, "nothing_left")]
    assert stack.amount_off_minor == 6000 and discounted(GROCERIES, stack.taken).total == 0


# --- the program model ---------------------------------------------------------------------------------------


def demo_program() -> dict:
    return copy.deepcopy(json.loads((ROOT / "config" / "demo-seed.json").read_text())["program"])


def test_rewards_and_coupons_carry_their_benefit_and_stacking():
    doc = demo_program()
    doc["stacking"] = {"max_per_basket": 2, "exclusive_categories": ["staff"]}
    doc["discount_rounding"] = "floor"
    doc["rewards"][2]["applies_to"] = {"categories": ["bakery"]}
    doc["rewards"][2]["category"] = "vouchers"
    doc["coupons"] = [{"code": "STAFF20", "title": {"en": "Staff 20%", "pl": "Rabat 20%"}, "percent": 20,
                       "category": "staff"},
                      {"code": "BAKE5", "value_minor": 500, "money": "PLN", "applies_to": {"skus": ["BREAD"]}}]
    program = parse_program(doc)
    assert program.stacking == Stacking(2, frozenset({"staff"})) and program.discount_rounding == "floor"
    rewards = {r.reward_id: r.benefit for r in program.rewards}
    assert rewards["free-coffee"] == Benefit("free_item", sku="5900000002014")
    assert rewards["voucher-10-pln"] == Benefit("amount_off", value_minor=1000, money="PLN",
                                                applies_to=Match(categories=frozenset({"bakery"})), category="vouchers")
    assert rewards["silver-5-percent"] == Benefit("percent_off", percent=5)
    staff, bake = program.coupons
    assert staff.benefit == Benefit("percent_off", percent=20, category="staff")
    assert (staff.name("pl"), staff.name("fa"), staff.title) == ("Rabat 20%", "Staff 20%", "Staff 20%")
    assert bake.benefit == Benefit("amount_off", value_minor=500, money="PLN", applies_to=Match(skus=frozenset({"BREAD"})))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(stacking={"max_per_basket": 0}), "stacking.max_per_basket: must be an integer >= 1"),
    (lambda d: d.update(stacking={"exclusive": []}), "stacking.exclusive: unknown key"),
    (lambda d: d.update(discount_rounding="bankers"), "discount_rounding: 'bankers' is not one of floor, half_up"),
    (lambda d: d["rewards"][1].update(applies_to={"skus": ["X"]}), "rewards[1].applies_to: a free_item reward"),
    (lambda d: d["rewards"][2].update(applies_to={}), "rewards[2].applies_to: name the lines"),
    (lambda d: d.update(coupons=[{"code": "C", "sku": "X", "applies_to": {"skus": ["Y"]}}]),
     "coupons[0].applies_to: a free-item coupon"),
])
def test_program_errors_name_the_path(change, message):
    doc = demo_program()
    change(doc)
    with pytest.raises(ProgramError) as err:
        parse_program(doc)
    assert str(err.value).startswith(message), str(err.value)


def test_a_benefit_travels_as_json_and_back():
    benefit = Benefit("amount_off", value_minor=250, money="PLN", applies_to=Match(frozenset({"A"}), frozenset({"b"})),
                      category="c")
    assert Benefit.from_json(json.loads(json.dumps(benefit.to_json()))) == benefit
    with pytest.raises(ValueError):
        Benefit.from_json({"kind": "cashback"})
