"""Returns by amount: pro rata, floored, and never more than re-running the rules on the kept basket.

In process, a real ledger.db; the scenario program has what makes points not proportional to spend
(a per-transaction cap, a threshold bonus, a minimum basket, a birthday bonus).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posd.core.program import parse_program
from posd.core.rules import Basket, BasketLine, compute_accrual
from posd.lane import Lane
from posd.lane.events import EventBus
from posd.lane.sales import ReturnInput, TransactionInput, _scaled
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger
from tests.test_loyalty_scenarios import PROGRAM

NOW = datetime(2026, 11, 18, 14, tzinfo=UTC)
_ids = itertools.count()


@pytest.fixture
def lane(tmp_path):
    tmp = tmp_path
    ledger = Ledger(tmp / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp / "cache.db", "L01")
    cache.store_program(copy.deepcopy(PROGRAM), "e1")
    cache.apply_member_changes([
        {"member_id": "m", "display_name": "M", "tier": "gold", "identifiers": ["CARD-m"], "balances": {"points": 0},
         "birth_date": date(1990, 11, 18).isoformat()}], "1")
    yield Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
               printer_enabled=False, timezone="Europe/Warsaw", clock=lambda: NOW)
    cache.close()
    ledger.close()


lines = st.lists(st.tuples(st.sampled_from(["A", "COFFEE", "CIG"]), st.sampled_from(["1", "2", "0.5", "3"]),
                           st.integers(1, 60_000)), min_size=1, max_size=4)
shares = st.lists(st.integers(1, 100), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=lines, shares=shares, birthday=st.booleans())
def test_no_sequence_of_amount_returns_takes_back_more_than_the_rules_allow(lane, lines, shares, birthday):
    basket = tuple(BasketLine(sku, "tobacco" if sku == "CIG" else "coffee_to_go" if sku == "COFFEE" else "grocery",
                              Decimal(q), price, 0) for sku, q, price in lines)
    total = sum(ln.amount for ln in basket)
    tid = f"T{next(_ids)}"
    at = NOW - timedelta(hours=1) if birthday else NOW - timedelta(days=40)
    sale = asyncio.run(lane.sales.record_sale(TransactionInput(tid, "CARD-m", at, "PLN", total, basket, f"h{tid}")))
    earned = sale.response["accrual"]["points"]
    record = lane.context.ledger.view().sale(tid)
    program = parse_program(copy.deepcopy(PROGRAM))
    returned = taken = 0
    for share in shares:
        amount = min(total - returned, max(1, total * share // 100))
        if amount <= 0:
            break
        back = asyncio.run(lane.sales.record_return(ReturnInput(tid, f"R{next(_ids)}", None, amount, f"hr{tid}{returned}")))
        returned += amount
        taken += back.response["reversed"].get("points", 0)
        pro_rata = (earned["points"] * Fraction(returned, total)).__floor__()
        assert 0 <= taken <= pro_rata, (taken, pro_rata)
        if returned < total:
            kept = compute_accrual(program, _scaled(record, 1 - Fraction(returned, total)), record.context).points
            assert taken <= earned["points"] - min(earned["points"], kept["points"]), (taken, earned, kept)
    if returned == total:
        assert taken == earned["points"]  # the whole amount back: everything back


def test_a_capped_sale_keeps_its_cap_while_the_kept_amount_still_earns_it(lane):
    basket = (BasketLine("TV", "electronics", Decimal(1), 300_000, 0),)  # 3000 + 1500 gold + 100 bonus: capped 1000
    asyncio.run(lane.sales.record_sale(TransactionInput("T-cap", "CARD-m", NOW - timedelta(days=40), "PLN", 300_000,
                                                        basket, "h-cap")))
    answers = [asyncio.run(lane.sales.record_return(ReturnInput("T-cap", f"R-cap-{n}", None, amount, f"h-cap-{n}")))
               .response["reversed"]["points"] for n, amount in enumerate([100_000, 150_000, 50_000])]
    # kept 2000 PLN earns 2000 + 1000 + 100, capped 1000: nothing back (pro rata would take 333);
    # kept 500 PLN earns 500 + 250 + 100 = 850: 150 back (pro rata would take 833); the rest: the last 850
    assert answers == [0, 150, 850]


def test_the_kept_basket_is_the_sale_scaled_to_what_was_kept():
    from posd.storage.records import SaleRecord

    sale = SaleRecord("T", "m", "", "PLN", 4500, "v", 1, {"points": 45},
                      (BasketLine("A", "x", Decimal(2), 1500, 300), BasketLine("B", "y", Decimal("0.5"), 3000, 0)),
                      None)
    kept = _scaled(sale, Fraction(1, 3))
    assert [abs(Fraction(ln.quantity) - exact) < Fraction(1, 10**20)
            for ln, exact in zip(kept.lines, (Fraction(2, 3), Fraction(1, 6)))] == [True, True]
    assert [ln.discount for ln in kept.lines] == [100, 0] and kept.total == sum(ln.amount for ln in kept.lines)
    assert kept.total == 1000 + 500 - 100  # a third of 2 x 15.00 less 3.00, and of half of 30.00
    assert _scaled(SaleRecord("T", "m", "", "PLN", 999, "v", 1, {}, (), None), Fraction(1, 2)) == Basket("PLN", 499)


def test_a_return_of_a_sale_without_a_member_reverses_nothing(lane):
    """Nobody earned the points of a sale without a member: its return says it took none back."""
    basket = (BasketLine("A", "grocery", Decimal(2), 2500, 0),)
    sold = asyncio.run(lane.sales.record_sale(TransactionInput("T-anon", None, NOW, "PLN", 5000, basket, "h-anon")))
    assert sold.response["member_id"] is None
    for ret in (ReturnInput("T-anon", "R-anon-1", None, 2000, "hr1"), ReturnInput("T-anon", "R-anon-2", None, 3000, "hr2")):
        back = asyncio.run(lane.sales.record_return(ret)).response
        assert not any(back["reversed"].values()) and back["seq"] is None and back["balance"] == {}, back
