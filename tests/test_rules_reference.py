"""The compiled rules engine against the engine it replaced (tests/support/rules_reference.py).

A sale's answer carries the accrual's trace and is compared byte for byte on
a retry, and ledgers keep answers written by the engine before: the compiled
plans must give the same points, the same trace entries with their keys in the
same order, the same birthday flag and the same refusals, for every program,
basket, money and moment, including baskets only a return makes (a quantity
scaled to what the member kept has up to 28 digits).
"""

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core.program import parse_program
from posd.core.rules import Basket, BasketLine, EarnContext, RuleError, compute_accrual
from posd.core.rules_eval import show, show_ratio
from posd.core.rules_spec import WEEKDAYS
from tests.support import rules_reference

WARSAW = ZoneInfo("Europe/Warsaw")
CURRENCIES = [{"code": code, "kind": kind} for code, kind in
              (("points", "redeemable"), ("tier", "qualifying"), ("coffee", "stamps"), ("extra", "redeemable"))]
MONEYS = ["PLN", "EUR", "USD"]  # USD: no base rate earns on it
NAMES = {"categories": ["food", "fruit", "coffee", "tobacco", "toys"], "skus": ["A", "B", "C", "COFFEE", "CIG"]}
CATEGORIES, SKUS = NAMES["categories"], NAMES["skus"]

multipliers = st.fractions(min_value=1, max_value=4, max_denominator=12).map(str)
caps = st.none() | st.integers(0, 300)
matches = st.fixed_dictionaries({}, optional={key: st.lists(st.sampled_from(values), min_size=1, max_size=2,
                                                            unique=True) for key, values in NAMES.items()})
spends = st.dictionaries(st.sampled_from(["PLN", "EUR"]), st.integers(0, 30000), min_size=1)
rates = st.dictionaries(st.sampled_from(["PLN", "EUR"]),
                        st.fixed_dictionaries({"spend_minor": st.integers(1, 1000), "points": st.integers(0, 7)}),
                        min_size=1)


@st.composite
def windows(draw):
    start = draw(st.integers(0, 22))
    first = draw(st.dates(date(2026, 1, 1), date(2027, 6, 1)))
    until = f"{(first + timedelta(days=draw(st.integers(1, 400)))).isoformat()}T10:30"
    return draw(st.fixed_dictionaries({}, optional={
        "weekdays": st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True),
        "hours": st.just({"from": f"{start:02d}:00", "until": f"{draw(st.integers(start + 1, 24)):02d}:00"}),
        "dates": st.just({"from": first.isoformat(), "until": until}),
    }).filter(bool))


def _with(rule, draw):
    when = draw(windows()) if draw(st.booleans()) else None
    cap = draw(caps)
    return {**rule, **({"when": when} if when else {}), **({"cap": cap} if cap is not None else {})}


@st.composite
def rules(draw):
    based = draw(st.lists(st.sampled_from(["points", "tier", "extra"]), min_size=1, max_size=3, unique=True))
    out = [{"type": "base_rate", "currency": code, "rates": draw(rates)} for code in based]
    for _ in range(draw(st.integers(0, 2))):
        out.append({"type": "exclude", **draw(matches.filter(bool))})
    for _ in range(draw(st.integers(0, 2))):
        out.append({"type": "min_basket", "min_spend_minor": draw(spends),
                    **draw(st.fixed_dictionaries({}, optional={
                        "currencies": st.lists(st.sampled_from(["points", "tier", "coffee", "extra"]), min_size=1,
                                               max_size=2, unique=True)}))})
    for _ in range(draw(st.integers(0, 3))):
        out.append(_with({"type": "multiplier", "currency": draw(st.sampled_from(based)),
                          "multiplier": draw(multipliers), **draw(matches)}, draw))
    for _ in range(draw(st.integers(0, 2))):
        out.append(_with({"type": "per_unit", "currency": draw(st.sampled_from(["points", "coffee", "extra"])),
                          "points_per_unit": draw(st.integers(1, 20)), **draw(matches.filter(bool))}, draw))
    for _ in range(draw(st.integers(0, 2))):
        when = draw(windows()) if draw(st.booleans()) else None
        out.append({"type": "threshold_bonus", "currency": draw(st.sampled_from(["points", "coffee"])),
                    "points": draw(st.integers(1, 200)), "min_spend_minor": draw(spends), **draw(matches),
                    **({"when": when} if when else {})})
    if draw(st.booleans()):
        out.append({"type": "birthday", "currency": "points", "points": 200, "window_days": draw(st.integers(0, 3))})
    draw(st.randoms(use_true_random=False)).shuffle(out)
    return [{"id": f"r{i}", **rule} for i, rule in enumerate(out)]


programs = st.builds(
    lambda rounding, tiers, rules, tx_caps: {
        "version": "ref-1", "rounding": rounding, "currencies": CURRENCIES,
        "tiers": [{"id": "basic", "threshold": 0}, *({"id": f"t{i}", "threshold": 1000 * (i + 1), "multiplier": m}
                                                     for i, m in enumerate(tiers))],
        "rules": rules, **({"transaction_caps": tx_caps} if tx_caps else {}),
    },
    st.sampled_from(["floor", "half_up"]), st.lists(multipliers, max_size=2), rules(),
    st.fixed_dictionaries({}, optional={"points": st.integers(0, 2000), "coffee": st.integers(0, 5),
                                        "tier": st.integers(0, 50)}),
)

quantities = st.one_of(
    st.sampled_from(["0", "0.25", "0.5", "1", "2", "3", "1.375", "0.001"]).map(Decimal),
    # a return keeps a share of a line: the quantity times numerator/denominator, in Decimal's 28 digits
    st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)).map(
        lambda t: Decimal(t[0]) * (Decimal(min(t[1], t[2])) / Decimal(max(t[1], t[2])))),
)


@st.composite
def basket_lines(draw):
    quantity = draw(quantities)
    unit_price = draw(st.integers(0, 20000))
    gross = int((quantity * unit_price).to_integral_value())
    over = draw(st.integers(0, 29)) == 0  # now and then a discount larger than the line
    discount = gross + 1 if over else draw(st.integers(0, max(0, gross)))
    return BasketLine(draw(st.sampled_from(SKUS + [None])), draw(st.sampled_from(CATEGORIES + [None])), quantity,
                      unit_price, discount)


@st.composite
def baskets(draw):
    money = draw(st.sampled_from(MONEYS))
    lines = tuple(draw(st.lists(basket_lines(), max_size=6)))
    total = sum(x.amount for x in lines) if lines else draw(st.integers(0, 50000))
    return Basket(money, total + draw(st.sampled_from([0, 0, 0, 0, 1])), lines)  # now and then a wrong total


@st.composite
def contexts(draw):
    local = draw(st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(WARSAW),
                              allow_imaginary=False))
    near = local.date() + timedelta(days=draw(st.integers(-4, 4)))  # within a birthday window, or just outside
    birth = draw(st.none() | st.dates(date(1940, 1, 1), date(2010, 12, 31))
                 | st.integers(20, 70).map(lambda years: _years_before(near, years)))
    return EarnContext(tier_id=draw(st.sampled_from([None, "basic", "t0", "t1", "platinum"])), occurred_local=local,
                       birth_date=birth, birthday_bonus_used=draw(st.booleans()))


def _years_before(day, years):
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _outcome(fn, program, basket, ctx):
    try:
        acc = fn(program, basket, ctx)
    except RuleError as exc:
        return ("refused", exc.code, str(exc))
    return ("earned", json.dumps(acc.to_json()), acc.birthday_bonus)


@pytest.mark.long  # 400 programs and baskets, 6-8 s: CI runs it with the fault runs (make test-faults)
@settings(max_examples=400, deadline=None)
@given(doc=programs, basket=baskets(), ctx=contexts())
def test_the_compiled_engine_answers_as_the_reference_does_byte_for_byte(doc, basket, ctx):
    program = parse_program(doc)
    expected = _outcome(rules_reference.compute_accrual, program, basket, ctx)
    assert _outcome(compute_accrual, program, basket, ctx) == expected
    assert _outcome(compute_accrual, program, basket, ctx) == expected  # the compiled plan, used again


@given(value=st.fractions(min_value=0, max_value=10**6))
def test_show_ratio_shows_what_show_shows(value):
    assert show(value) == rules_reference.show(value)
    scale = value.denominator * 7  # not reduced: the engine keeps ratios as they come
    assert show_ratio(value.numerator * scale, value.denominator * scale) == rules_reference.show(value)
    assert show(Fraction(0)) == "0"
