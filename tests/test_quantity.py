"""One quantity parser for sales, returns, quotes and baskets (posd.core.quantity), as documented."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.api.models import BasketIn, LineIn, ReturnLineIn
from posd.core.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize("value, expected", [
    (1, "1"), (2, "2"), (0.25, "0.25"), (1.0, "1"), ("2", "2"), ("0.250", "0.250"), ("100000", "100000"),
    (100000, "100000"), ("0.001", "0.001"), (Decimal("1.5"), "1.5"),
])
def test_numbers_and_plain_decimal_strings_are_quantities(value, expected):
    assert parse_quantity(value) == Decimal(expected)


@pytest.mark.parametrize("value", [
    "１", " 1 ", "1 ", "+1", "-1", "1e0", "1_0", "٣", "۲", "1,5", "", ".5", "1.", "0x1", "NaN", "Infinity",
    0, -1, "0", "0.000", 100001, "100000.001", "1.2345", 1.2345, 1e-5, float("nan"), float("inf"), True, None,
    [1], {"q": 1},
])
def test_anything_else_is_refused(value):
    with pytest.raises(QuantityError):
        parse_quantity(value)


@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=12), st.decimals(allow_nan=True)))
def test_the_parser_answers_every_input_with_a_quantity_or_quantity_error(value):
    try:
        quantity = parse_quantity(value)
    except QuantityError:
        return
    assert Decimal(0) < quantity <= Decimal(100_000) and quantity == quantity.quantize(Decimal("0.001"))


@pytest.mark.parametrize("value", ["１", " 1 ", "2", 0.5, "1e0", "0.1234"])
def test_sales_returns_and_baskets_read_a_quantity_the_same_way(value):
    """The defect: a sale took "１" and " 1 " that a return refused. Now one parser decides for all."""
    outcomes = set()
    for model, extra in ((LineIn, {"unit_price": 100}), (ReturnLineIn, {})):
        try:
            outcomes.add(model.model_validate({"sku": "A", "quantity": value, **extra}).quantity)
        except ValueError:
            outcomes.add("refused")
    try:
        basket = BasketIn.model_validate({"currency": "PLN", "total": 100,
                                          "lines": [{"sku": "A", "quantity": value, "unit_price": 100}]})
        outcomes.add(basket.lines[0].quantity)
    except ValueError:
        outcomes.add("refused")
    assert len(outcomes) == 1, outcomes
