"""The rules engine: exact arithmetic, one named rounding, a trace that explains."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.core.program import ProgramError, parse_program
from posd.core.rules import Basket, BasketLine, RuleError, compute_accrual

PROGRAM = {
    "version": "t-1",
    "earn": {"currency": "points", "rounding": "floor", "rates": {"PLN": {"spend_minor": 100, "points": 1}}},
    "tiers": [
        {"id": "basic", "threshold": 0, "multiplier": "1"},
        {"id": "gold", "threshold": 5000, "multiplier": "1.5"},
    ],
}


def test_points_per_spend_unit_floor():
    acc = compute_accrual(parse_program(PROGRAM), Basket("PLN", 12999), "basic")
    assert acc.points == {"points": 129}
    assert acc.program_version == "t-1"
    assert [t["rule"] for t in acc.trace] == ["base_rate", "rounding"]


def test_tier_multiplier_applies_before_the_single_rounding():
    # 129.99 * 1.5 = 194.985 -> 194; rounding first would give 129 * 1.5 = 193.5 -> 193
    acc = compute_accrual(parse_program(PROGRAM), Basket("PLN", 12999), "gold")
    assert acc.points == {"points": 194}
    rules = {t["rule"]: t for t in acc.trace}
    assert rules["tier_multiplier"]["multiplier"] == "3/2"
    assert rules["rounding"]["exact"] == "38997/200"


def test_half_up_rounding_is_named_in_program():
    prog = dict(PROGRAM, earn=dict(PROGRAM["earn"], rounding="half_up"))
    assert compute_accrual(parse_program(prog), Basket("PLN", 150), "basic").points == {"points": 2}
    assert compute_accrual(parse_program(prog), Basket("PLN", 149), "basic").points == {"points": 1}


def test_lines_must_add_up_to_total():
    lines = (BasketLine("A", "food", Decimal("2"), 500, 100),)
    assert compute_accrual(parse_program(PROGRAM), Basket("PLN", 900, lines), None).points == {"points": 9}
    with pytest.raises(RuleError) as err:
        compute_accrual(parse_program(PROGRAM), Basket("PLN", 1000, lines), None)
    assert err.value.code == "total_mismatch"


def test_unknown_currency_is_a_clear_error():
    with pytest.raises(RuleError) as err:
        compute_accrual(parse_program(PROGRAM), Basket("USD", 100), None)
    assert err.value.code == "unsupported_currency"


def test_floats_in_program_are_refused():
    bad = dict(PROGRAM, tiers=[{"id": "gold", "threshold": 0, "multiplier": 1.1}])
    with pytest.raises(ProgramError, match="tiers\\[0\\].multiplier"):
        parse_program(bad)


@given(total=st.integers(0, 10**9), tier=st.sampled_from(["basic", "gold", None, "unknown"]))
def test_same_basket_same_program_same_points(total, tier):
    prog = parse_program(PROGRAM)
    a = compute_accrual(prog, Basket("PLN", total), tier)
    b = compute_accrual(parse_program(PROGRAM), Basket("PLN", total), tier)
    assert a == b
    assert a.points["points"] >= 0
    assert a.points["points"] <= total  # at most 1.5 points per 100 minor units
