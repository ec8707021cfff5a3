"""Properties of the rules engine and lot dates over random programs, baskets and moments.

Returns re-evaluate the basket the member kept and reverse the difference, so
points must be monotone in the basket: no rule in the engine makes removing a
line earn more, and these tests hold for every program they generate.
"""

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core.expiry import lot_dates
from posd.core.program import Currency, ExpiryPolicy, parse_program
from posd.core.rules import Basket, BasketLine, EarnContext, compute_accrual, round_points

WARSAW = ZoneInfo("Europe/Warsaw")
CATEGORIES = ["food", "fruit", "coffee", "tobacco", "toys"]
SKUS = ["A", "B", "C", "COFFEE", "CIG"]
CURRENCIES = [{"code": "points", "kind": "redeemable"}, {"code": "tier", "kind": "qualifying"},
              {"code": "coffee", "kind": "stamps"}]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

fractions = st.fractions(min_value=1, max_value=4, max_denominator=8).map(str)
caps = st.none() | st.integers(0, 300)
matches = st.fixed_dictionaries({}, optional={
    "categories": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True),
    "skus": st.lists(st.sampled_from(SKUS), min_size=1, max_size=2, unique=True),
})


@st.composite
def windows(draw):
    start = draw(st.integers(0, 22))
    return draw(st.fixed_dictionaries({}, optional={
        "weekdays": st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True),
        "hours": st.just({"from": f"{start:02d}:00", "until": f"{draw(st.integers(start + 1, 24)):02d}:00"}),
    }).filter(bool))


def _rate():
    return st.fixed_dictionaries({"spend_minor": st.integers(1, 1000), "points": st.integers(0, 5)})


@st.composite
def rules(draw):
    out = [{"type": "base_rate", "currency": "points", "rates": {"PLN": draw(_rate())}},
           {"type": "base_rate", "currency": "tier", "rates": {"PLN": draw(_rate())}}]
    if draw(st.booleans()):
        out.append({"type": "exclude", "categories": ["tobacco"]})
    if draw(st.booleans()):
        out.append({"type": "min_basket", "min_spend_minor": {"PLN": draw(st.integers(0, 5000))},
                    **draw(st.fixed_dictionaries({}, optional={"currencies": st.just(["points"])}))})
    for _ in range(draw(st.integers(0, 2))):
        rule = {"type": "multiplier", "currency": draw(st.sampled_from(["points", "tier"])),
                "multiplier": draw(fractions), **draw(matches)}
        out.append(_with(rule, draw(windows()) if draw(st.booleans()) else None, draw(caps)))
    if draw(st.booleans()):
        rule = {"type": "per_unit", "currency": draw(st.sampled_from(["points", "coffee"])),
                "categories": ["coffee"], "points_per_unit": draw(st.integers(1, 20))}
        out.append(_with(rule, None, draw(caps)))
    if draw(st.booleans()):
        out.append({"type": "threshold_bonus", "currency": "points", "points": draw(st.integers(1, 200)),
                    "min_spend_minor": {"PLN": draw(st.integers(0, 30000))}, **draw(matches)})
    if draw(st.booleans()):
        out.append({"type": "birthday", "currency": "points", "points": 200, "window_days": draw(st.integers(0, 3))})
    draw(st.randoms(use_true_random=False)).shuffle(out)
    return [{"id": f"r{i}", **rule} for i, rule in enumerate(out)]


def _with(rule, when, cap):
    return {**rule, **({"when": when} if when else {}), **({"cap": cap} if cap is not None else {})}


programs = st.builds(
    lambda rounding, silver, rules, tx_caps: {
        "version": "prop-1", "rounding": rounding, "currencies": CURRENCIES,
        "tiers": [{"id": "basic", "threshold": 0}, {"id": "silver", "threshold": 1000, "multiplier": silver}],
        "rules": rules, **({"transaction_caps": tx_caps} if tx_caps else {}),
    },
    st.sampled_from(["floor", "half_up"]), fractions, rules(),
    st.fixed_dictionaries({}, optional={"points": st.integers(0, 2000), "coffee": st.integers(0, 5)}),
)


@st.composite
def basket_lines(draw):
    quantity = Decimal(draw(st.sampled_from(["0", "0.25", "0.5", "1", "1", "2", "3", "1.375"])))
    unit_price = draw(st.integers(0, 20000))
    gross = int((quantity * unit_price).to_integral_value())
    discount = draw(st.integers(0, max(0, gross)))
    return BasketLine(draw(st.sampled_from(SKUS)), draw(st.sampled_from(CATEGORIES)), quantity, unit_price, discount)


baskets = st.lists(basket_lines(), max_size=6).map(
    lambda lines: Basket("PLN", sum(x.amount for x in lines), tuple(lines)))

contexts = st.builds(
    EarnContext,
    tier_id=st.sampled_from([None, "basic", "silver", "platinum"]),
    occurred_local=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(WARSAW),
                                allow_imaginary=False),
    birth_date=st.none() | st.dates(date(1940, 1, 1), date(2010, 12, 31)),
    birthday_bonus_used=st.booleans(),
)


def _exact(entry):
    return Fraction(entry["points"])


@settings(max_examples=150, deadline=None)
@given(doc=programs, basket=baskets, ctx=contexts)
def test_deterministic_non_negative_and_capped(doc, basket, ctx):
    program = parse_program(doc)
    acc = compute_accrual(program, basket, ctx)
    assert acc == compute_accrual(parse_program(doc), basket, ctx)
    assert list(acc.points) == ["points", "tier", "coffee"]
    assert all(p >= 0 for p in acc.points.values())
    for code, cap in program.transaction_caps.items():
        assert acc.points[code] <= cap
    for entry in acc.trace:
        if "cap" in entry and entry["type"] != "transaction_cap":
            assert _exact(entry) <= entry["cap"]


@settings(max_examples=150, deadline=None)
@given(doc=programs, basket=baskets, ctx=contexts)
def test_removing_a_line_never_increases_points(doc, basket, ctx):
    program = parse_program(doc)
    full = compute_accrual(program, basket, ctx).points
    for i in range(len(basket.lines)):
        kept = basket.lines[:i] + basket.lines[i + 1:]
        smaller = compute_accrual(program, Basket("PLN", sum(x.amount for x in kept), kept), ctx).points
        assert all(smaller[c] <= full[c] for c in full), (i, smaller, full)


@settings(max_examples=150, deadline=None)
@given(doc=programs, basket=baskets, ctx=contexts)
def test_one_rounding_per_currency_over_the_exact_sum(doc, basket, ctx):
    program = parse_program(doc)
    acc = compute_accrual(program, basket, ctx)
    for code, points in acc.points.items():
        contributions = [e for e in acc.trace if e.get("currency") == code and e["type"] not in
                         ("rounding", "transaction_cap") and e["status"] == "applied"]
        exact = sum((_exact(e) for e in contributions), Fraction(0))
        roundings = [e for e in acc.trace if e["type"] == "rounding" and e.get("currency") == code]
        assert len(roundings) == (1 if contributions else 0)
        if roundings:
            assert Fraction(roundings[0]["exact"]) == exact
            assert roundings[0].get("rounded_to_zero", False) == (exact > 0 and roundings[0]["points"] == 0)
        cap = program.transaction_caps.get(code)
        rounded = round_points(exact, program.rounding)
        assert points == (rounded if cap is None else min(cap, rounded))


@given(rate=_rate(), rounding=st.sampled_from(["floor", "half_up"]), lines=st.lists(basket_lines(), max_size=8))
def test_base_points_are_the_rounded_sum_of_exact_line_points(rate, rounding, lines):
    doc = {"version": "v", "rounding": rounding, "currencies": CURRENCIES[:1],
           "rules": [{"id": "b", "type": "base_rate", "currency": "points", "rates": {"PLN": rate}}]}
    basket = Basket("PLN", sum(x.amount for x in lines), tuple(lines))
    acc = compute_accrual(parse_program(doc), basket, EarnContext(None, datetime(2026, 5, 5, tzinfo=WARSAW)))
    exact = sum((Fraction(x.amount * rate["points"], rate["spend_minor"]) for x in lines), Fraction(0))
    assert acc.points["points"] == round_points(exact, rounding)
    assert acc.points["points"] >= sum(round_points(Fraction(x.amount * rate["points"], rate["spend_minor"]),
                                                    "floor") for x in lines)


# -- lot dates ---------------------------------------------------------------------

policies = st.one_of(
    st.just(ExpiryPolicy("never")),
    st.integers(1, 800).map(lambda d: ExpiryPolicy("rolling_days", days=d)),
    st.integers(0, 24).map(lambda m: ExpiryPolicy("end_of_month", months=m)),
    st.integers(0, 3).map(lambda y: ExpiryPolicy("end_of_year", months=12 * y)),
)
earned_times = st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31), timezones=st.just(WARSAW),
                            allow_imaginary=False)


@given(policy=policies, pending=st.integers(0, 60), earned=earned_times)
def test_lots_become_available_before_they_expire(policy, pending, earned):
    if policy.policy == "rolling_days" and policy.days <= pending:
        policy = ExpiryPolicy("rolling_days", days=pending + 1)  # what the parser demands
    available, expires = lot_dates(Currency("p", "redeemable", {}, pending, policy), earned)
    assert available.tzinfo is UTC and available >= earned
    assert expires is None or available <= expires
    assert (expires is None) == (policy.policy == "never")


@given(months=st.integers(0, 24), earned=earned_times)
def test_end_of_month_is_the_last_instant_of_the_month_in_warsaw(months, earned):
    _, expires = lot_dates(Currency("p", "redeemable", {}, 0, ExpiryPolicy("end_of_month", months=months)), earned)
    local = expires.astimezone(WARSAW)
    index = earned.year * 12 + earned.month - 1 + months
    assert (local.year, local.month) == (index // 12, index % 12 + 1)
    assert local.day == calendar.monthrange(local.year, local.month)[1]
    assert (local.hour, local.minute, local.second, local.microsecond) == (23, 59, 59, 999999)
    after = (expires + timedelta(microseconds=1)).astimezone(WARSAW)
    assert (after.day, after.hour, after.minute) == (1, 0, 0)  # the next instant starts the next month


@given(years=st.integers(0, 3), earned=earned_times)
def test_end_of_year_is_new_years_eve_last_instant(years, earned):
    _, expires = lot_dates(Currency("p", "redeemable", {}, 0, ExpiryPolicy("end_of_year", months=12 * years)),
                           earned)
    local = expires.astimezone(WARSAW)
    assert (local.year, local.month, local.day) == (earned.year + years, 12, 31)
    assert (local.hour, local.minute, local.second, local.microsecond) == (23, 59, 59, 999999)


def test_points_earned_in_the_second_hour_of_a_dst_fold_are_not_available_before_the_sale():
    earned = datetime(2021, 10, 31, 2, 0, fold=1, tzinfo=WARSAW)  # 01:00 UTC, the repeated hour
    for pending in (0, 1):
        available, _ = lot_dates(Currency("p", "redeemable", {}, pending, ExpiryPolicy("never")), earned)
        assert available >= earned


@settings(max_examples=150, deadline=None)
@given(doc=programs, basket=baskets, ctx=contexts)
def test_the_slips_breakdown_adds_up_to_what_the_sale_earned(doc, basket, ctx):
    """Each trace entry is exact; the slip prints whole points per line, and they sum to the total."""
    from posd.core.slip import SlipData, build_slip
    from posd.core.slip_doc import Columns

    program = parse_program(doc)
    acc = compute_accrual(program, basket, ctx)
    for currency in ("points", "coffee"):
        if not acc.points[currency]:
            continue
        only = {currency: acc.points[currency]}
        data = SlipData("S1", "S001", "L01", "T1", "2026-11-24 10:15", "M", None, only, only,
                        breakdown=[e for e in acc.trace if e.get("currency") in (currency, None)])
        doc_ = build_slip(data, "en")
        start = next(i for i, b in enumerate(doc_.blocks) if isinstance(b, Columns) and b.left == "Points earned")
        printed = []
        for block in doc_.blocks[start + 1:]:
            if not (isinstance(block, Columns) and block.left.startswith("  ")):
                break
            printed.append(int(block.right.replace(",", "")))
        assert sum(printed) == acc.points[currency], (currency, printed, acc.trace)


@settings(max_examples=150, deadline=None)
@given(doc=programs, basket=baskets, ctx=contexts)
def test_every_currency_on_one_slip_has_its_own_breakdown_that_adds_up(doc, basket, ctx):
    """All the sale's currencies on one slip, in the program's order: under each one's header,
    only its own lines, and they sum to it (a stamp rule is never counted among the points)."""
    from posd.core.slip import SlipData, build_slip
    from posd.core.slip_doc import Columns

    program = parse_program(doc)
    acc = compute_accrual(program, basket, ctx)
    names = {c.code: {"en": f"{c.code} units"} for c in program.currencies}
    data = SlipData("S1", "S001", "L01", "T1", "2026-11-24 10:15", "M", None, dict(acc.points),
                    dict(acc.points), breakdown=list(acc.trace), currencies=names)
    sums: dict[str, list[int]] = {}
    current = None
    for block in build_slip(data, "en").blocks:
        if isinstance(block, Columns) and block.left == "Points earned":
            number, _, name = block.right.partition(" ")
            current = name.removesuffix(" units")
            assert name == f"{current} units", block.right  # the program's name, never the bare code
            assert int(number.replace(",", "")) == acc.points.get(current, 0)
            sums[current] = []
        elif isinstance(block, Columns) and block.left.startswith("  ") and current is not None:
            sums[current].append(int(block.right.replace(",", "")))
        else:
            current = None
    shown = {c: n for c, n in acc.points.items() if n and c != "qualifying"}
    if not shown:  # nothing earned: one currency says so (0), and what is under it adds up to 0
        assert len(sums) == 1 and all(sum(lines) == 0 for lines in sums.values()), sums
        return
    assert set(sums) == set(shown)
    assert list(sums) == [c.code for c in program.currencies if c.code in shown]
    for currency, lines in sums.items():
        if lines:
            assert sum(lines) == shown[currency], (currency, lines, acc.trace)
