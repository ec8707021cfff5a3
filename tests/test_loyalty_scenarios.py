"""The loyalty program at the till, scenario by scenario, through the real HTTP API.

One daemon process, the reference central, a program with every kind of rule.
Dates are relative to today (a past Tuesday, a past Wednesday...), so the
table means the same whatever day it runs.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.support.central_fixture import running_central
from tests.support.lane import LaneProcess, launch_lane

WARSAW = ZoneInfo("Europe/Warsaw")
SECRET = "scenario-secret"


def recent(weekday: int, hour: int, minute: int = 0, *, weeks_back: int = 0) -> datetime:
    """The latest such weekday strictly before today, at that Warsaw wall-clock time."""
    today = datetime.now(WARSAW).date()
    days = (today.weekday() - weekday) % 7 or 7
    day = today - timedelta(days=days + 7 * weeks_back)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=WARSAW)


TUESDAY = 1
WEDNESDAY = recent(2, 15, 0)  # a plain moment: no promotion runs then

PROGRAM = {
    "version": "scenario-1",
    "rounding": "floor",
    "currencies": [
        {"code": "points", "kind": "redeemable", "expiry": {"policy": "end_of_month", "months": 1}},
        {"code": "coffee", "kind": "stamps"},
    ],
    "tiers": [
        {"id": "basic", "threshold": 0},
        {"id": "silver", "threshold": 1000, "multiplier": "1.25"},
        {"id": "gold", "threshold": 5000, "multiplier": "1.5"},
    ],
    "rules": [
        {"id": "no-tobacco", "type": "exclude", "categories": ["tobacco"]},
        {"id": "min-basket", "type": "min_basket", "min_spend_minor": {"PLN": 500}, "currencies": ["points"]},
        {"id": "base", "type": "base_rate", "currency": "points", "rates": {"PLN": {"spend_minor": 100, "points": 1}}},
        {"id": "tue-double", "type": "multiplier", "currency": "points", "multiplier": "2",
         "when": {"weekdays": ["tue"], "hours": {"from": "10:00", "until": "12:00"}}},
        {"id": "coffee-stamp", "type": "per_unit", "currency": "coffee", "categories": ["coffee_to_go"],
         "points_per_unit": 1},
        {"id": "big-basket", "type": "threshold_bonus", "currency": "points", "points": 100,
         "min_spend_minor": {"PLN": 20000}},
        {"id": "birthday", "type": "birthday", "currency": "points", "points": 200},
    ],
    "transaction_caps": {"points": 1000},
    "rewards": [
        {"id": "tenth-coffee", "kind": "free_item", "sku": "COFFEE", "currency": "coffee", "price": 9,
         "name": {"en": "10th coffee free", "pl": "10. kawa gratis"}},
        {"id": "free-coffee", "kind": "free_item", "sku": "COFFEE", "currency": "points", "price": 500,
         "tier_prices": {"gold": 400}, "limit_per_member_per_day": 2, "name": {"en": "Free coffee"}},
    ],
    "coupons": [{"code": "WELCOME10", "kind": "campaign", "title": "10% off", "percent": 10}],
}


def member(mid: str, tier: str = "basic", points: int = 0, **extra) -> dict:
    return {"member_id": mid, "display_name": mid.title(), "locale": "en", "tier": tier, "qualifying": 0,
            "identifiers": [f"CARD-{mid}"], "balances": {"points": points}, "status": "active", **extra}


MEMBERS = [
    member("basic1"), member("basic2"), member("basic3"), member("gold1", "gold", 1000),
    member("bday1", birth_date=f"1990-{WEDNESDAY.month:02d}-{WEDNESDAY.day:02d}"),
    member("stamps1"), member("rich1", "silver", 5000), member("rich2", "gold", 5000),
    member("exp1"), member("limit1", "gold", 5000), member("ret1"), member("ret2"), member("round1"), member("offline1", "silver", 5000),
    member("exp2"),
]
SEED = {"stores": {"S001": {"secret": SECRET}}, "program": PROGRAM, "members": MEMBERS}


def line(sku: str, unit_price: int, quantity: int | str = 1, category: str = "grocery") -> dict:
    return {"sku": sku, "category": category, "quantity": quantity, "unit_price": unit_price}


def sale(tid: str, who: str, lines: list[dict], at: datetime = WEDNESDAY) -> dict:
    total = sum(int(round(float(ln["quantity"]) * ln["unit_price"])) for ln in lines)
    return {"transaction_id": tid, "member": f"CARD-{who}", "occurred_at": at.isoformat(), "currency": "PLN",
            "total": total, "lines": lines}


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenarios")
    with running_central(tmp / "central", copy.deepcopy(SEED)) as central:
        proc = launch_lane(tmp / "lane", central, locale="en")
        yield proc
        proc.stop()


def earn(lane: LaneProcess, body: dict) -> dict:
    resp = lane.post("/v1/transactions", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def fired(answer: dict) -> set[str]:
    return {t.get("rule") for t in answer["accrual"]["trace"] if t.get("status") == "applied"}


# -- earning ------------------------------------------------------------------
def test_double_points_on_tuesdays_10_to_12_warsaw(lane):
    inside = earn(lane, sale("tue-1", "basic1", [line("A", 10000)], at=recent(TUESDAY, 10, 30)))
    assert inside["accrual"]["points"]["points"] == 200
    assert "tue-double" in fired(inside)
    at_noon = earn(lane, sale("tue-2", "basic1", [line("A", 10000)], at=recent(TUESDAY, 12, 0)))
    assert at_noon["accrual"]["points"]["points"] == 100  # [10:00, 12:00): noon is out
    before = earn(lane, sale("tue-3", "basic1", [line("A", 10000)], at=recent(TUESDAY, 9, 59)))
    assert before["accrual"]["points"]["points"] == 100


def test_gold_tier_earns_one_and_a_half(lane):
    answer = earn(lane, sale("gold-1", "gold1", [line("A", 10000)]))
    assert answer["accrual"]["points"]["points"] == 150
    assert answer["balance"]["points"]["total"] == 1150


def test_tobacco_earns_nothing(lane):
    answer = earn(lane, sale("tob-1", "basic2", [line("A", 5000), line("CIG", 3000, category="tobacco")]))
    assert answer["accrual"]["points"]["points"] == 50
    assert "no-tobacco" in fired(answer)


def test_birthday_bonus_once_a_year(lane):
    first = earn(lane, sale("bday-1", "bday1", [line("A", 2000)]))
    assert first["accrual"]["points"]["points"] == 220
    second = earn(lane, sale("bday-2", "bday1", [line("A", 2000)], at=WEDNESDAY + timedelta(hours=1)))
    assert second["accrual"]["points"]["points"] == 20


def test_per_transaction_cap(lane):
    answer = earn(lane, sale("cap-1", "basic3", [line("TV", 200000)]))
    assert answer["accrual"]["points"]["points"] == 1000  # 2000 + 100 bonus, capped
    assert any(t.get("type") == "transaction_cap" for t in answer["accrual"]["trace"])


def test_minimum_basket(lane):
    answer = earn(lane, sale("min-1", "basic3", [line("GUM", 499)]))
    assert answer["accrual"]["points"]["points"] == 0
    assert any(t.get("rule") == "min-basket" for t in answer["accrual"]["trace"])


def test_rounding_once_per_sale_not_per_line(lane):
    answer = earn(lane, sale("round-1", "round1", [line(f"L{i}", 160) for i in range(5)]))
    assert answer["accrual"]["points"]["points"] == 8  # 5 x 1.6 = 8; per-line floors would give 5


def test_retry_after_lost_response_is_never_a_second_accrual(lane):
    body = sale("retry-1", "basic3", [line("A", 3000)])
    first, again = earn(lane, body), earn(lane, body)
    assert first == again
    clash = lane.post("/v1/transactions", {**body, "total": 3100, "lines": [line("A", 3100)]})
    assert (clash.status_code, clash.json()["code"]) == (409, "transaction_id_conflict")


# -- stamps, rewards, vouchers --------------------------------------------------
def test_tenth_coffee_free_with_stamps(lane):
    answer = earn(lane, sale("cof-1", "stamps1", [line("COFFEE", 800, 9, category="coffee_to_go")]))
    assert answer["accrual"]["points"]["coffee"] == 9
    member = lane.get("/v1/members/CARD-stamps1").json()
    assert "tenth-coffee" in {r["reward_id"] for r in member["rewards_available"]}
    redeemed = lane.post("/v1/redemptions", {"redemption_id": "cof-r1", "member": "CARD-stamps1",
                                             "reward_id": "tenth-coffee"})
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["balance"]["coffee"]["available"] == 0
    again = lane.post("/v1/redemptions", {"redemption_id": "cof-r2", "member": "CARD-stamps1",
                                          "reward_id": "tenth-coffee"})
    assert (again.status_code, again.json()["code"]) == (422, "insufficient_balance")


def test_redeem_a_free_coffee_and_use_its_voucher_once(lane):
    r = lane.post("/v1/redemptions", {"redemption_id": "rdm-1", "member": "CARD-rich1", "reward_id": "free-coffee"})
    assert r.status_code == 200, r.text
    voucher = r.json()["voucher"]["code"]
    assert r.json()["points"] == {"points": -500}
    assert r.json()["balance"]["points"]["total"] == 4500
    assert lane.post("/v1/redemptions", {"redemption_id": "rdm-1", "member": "CARD-rich1",
                                         "reward_id": "free-coffee"}).json() == r.json()  # retried: same voucher
    ok = lane.post("/v1/vouchers/validate", {"code": voucher})
    assert ok.status_code == 200 and ok.json()["valid"] is True
    used = lane.post(f"/v1/vouchers/{voucher}/use", {"transaction_id": "pos-77"})
    assert used.status_code == 200, used.text
    retried = lane.post(f"/v1/vouchers/{voucher}/use", {"transaction_id": "pos-77"})
    assert retried.status_code == 200 and retried.headers.get("Idempotent-Replayed") == "true"
    twice = lane.post(f"/v1/vouchers/{voucher}/use", {"transaction_id": "pos-78"})
    assert (twice.status_code, twice.json()["code"]) == (409, "voucher_used")
    assert lane.post("/v1/vouchers/validate", {"code": voucher}).json()["code"] == "voucher_used"


def test_a_voucher_used_by_concurrent_tills_is_used_once(lane):
    r = lane.post("/v1/redemptions", {"redemption_id": "rdm-c", "member": "CARD-rich2", "reward_id": "free-coffee"})
    assert r.json()["points"] == {"points": -400}  # gold price
    code = r.json()["voucher"]["code"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: lane.post(f"/v1/vouchers/{code}/use", {"transaction_id": f"race-{i}"}),
                                range(16)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 15


def test_campaign_coupon_once_per_member_and_unknown_codes(lane):
    assert lane.post("/v1/vouchers/WELCOME10/use", {"transaction_id": "cp-1", "member": "CARD-basic1"}).status_code == 200
    again = lane.post("/v1/vouchers/WELCOME10/use", {"transaction_id": "cp-2", "member": "CARD-basic1"})
    assert again.json()["code"] == "voucher_used"
    assert lane.post("/v1/vouchers/WELCOME10/use", {"transaction_id": "cp-3", "member": "CARD-basic2"}).status_code == 200
    assert lane.post("/v1/vouchers/validate", {"code": "NOPE"}).json()["code"] == "unknown_voucher"


def test_reward_limit_per_day_and_tier_price(lane):
    def offered() -> tuple[bool, bool]:
        """Is the coffee in the member view's rewards_available, and is the quote's limit_reached?"""
        view = lane.get("/v1/members/CARD-limit1").json()
        quote = lane.post("/v1/quotes", {"transaction_id": "lim-q", "member": "CARD-limit1", "currency": "PLN",
                                         "total": 0, "occurred_at": datetime.now(WARSAW).isoformat()}).json()
        coffee = next(r for r in quote["rewards"] if r["reward_id"] == "free-coffee")
        return "free-coffee" in {r["reward_id"] for r in view["rewards_available"]}, coffee["limit_reached"]

    for i in range(2):
        assert offered() == (True, False)
        ok = lane.post("/v1/redemptions", {"redemption_id": f"lim-{i}", "member": "CARD-limit1",
                                           "reward_id": "free-coffee"})
        assert ok.status_code == 200 and ok.json()["points"] == {"points": -400}  # gold price
    # had twice today: no longer offered (it was, and the redemption was then refused)
    assert offered() == (False, True)
    third = lane.post("/v1/redemptions", {"redemption_id": "lim-3", "member": "CARD-limit1", "reward_id": "free-coffee"})
    assert (third.status_code, third.json()["code"]) == (422, "reward_limit_reached")
    assert lane.get("/v1/members/CARD-limit1").json()["balances"]["points"]["total"] == 4200


# -- returns ----------------------------------------------------------------------
def test_partial_return_of_one_line(lane):
    earn(lane, sale("ret-1", "ret1", [line("A", 10000), line("B", 5000)]))
    back = lane.post("/v1/transactions/ret-1/returns", {"return_id": "ret-1-r1", "lines": [{"sku": "B", "quantity": 1}]})
    assert back.status_code == 200, back.text
    assert back.json()["reversed"]["points"] == 50
    assert back.json()["balance"]["points"]["total"] == 100


def test_buy_return_keep_the_bonus_does_not_work(lane):
    first = earn(lane, sale("brk-1", "ret2", [line("A", 10000), line("B", 10000)]))
    assert first["accrual"]["points"]["points"] == 300  # 200 + threshold bonus 100
    back = lane.post("/v1/transactions/brk-1/returns", {"return_id": "brk-r1", "lines": [{"sku": "B", "quantity": 1}]})
    assert back.json()["reversed"]["points"] == 200  # the line's 100 and the bonus it no longer reaches
    assert back.json()["balance"]["points"]["total"] == 100
    # a line the sale never had is named as such, not as "more returned than sold"
    stray = lane.post("/v1/transactions/brk-1/returns", {"return_id": "brk-r2", "lines": [
        {"sku": "A", "quantity": 2}, {"sku": "NOPE", "quantity": 1}]})
    assert (stray.status_code, stray.json()["code"]) == (422, "return_exceeds_sale")
    assert stray.json()["message"] == "more returned than sold for A; not on that sale: NOPE", stray.text


def test_a_refund_is_never_deducted_twice(lane):
    earn(lane, sale("rf-1", "basic2", [line("A", 4000)]))
    first = lane.post("/v1/transactions/rf-1/returns", {"return_id": "rf-r1", "amount": 4000})
    again = lane.post("/v1/transactions/rf-1/returns", {"return_id": "rf-r1", "amount": 4000})
    assert first.json() == again.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["reversed"]["points"] == 40
    more = lane.post("/v1/transactions/rf-1/returns", {"return_id": "rf-r2", "amount": 1})
    assert (more.status_code, more.json()["code"]) == (422, "return_exceeds_sale")
    assert lane.post("/v1/transactions/nope/returns", {"return_id": "x", "amount": 1}).json()["code"] == \
        "unknown_transaction"


# -- expiry --------------------------------------------------------------------------
def test_points_expire_at_month_end(lane):
    today = datetime.now(WARSAW).date()
    two_months_ago = (date(today.year, today.month, 1) - timedelta(days=40)).replace(day=10)
    at = datetime(two_months_ago.year, two_months_ago.month, 10, 12, tzinfo=WARSAW)
    answer = earn(lane, sale("exp-1", "exp1", [line("A", 10000)], at=at))
    assert answer["accrual"]["points"]["points"] == 100
    # end_of_month, months 1: expired at the end of last month
    assert answer["balance"]["points"]["expired"] == 100
    assert answer["balance"]["points"]["total"] == 0
    refused = lane.post("/v1/redemptions", {"redemption_id": "exp-r", "member": "CARD-exp1", "reward_id": "free-coffee"})
    assert refused.json()["code"] == "insufficient_balance"


def test_expired_points_stay_expired_once_central_holds_the_sale(lane):
    # Central, not the lane, owns the lot once it applied the accrual: its balance
    # must leave the expired lot out, or the synced view would show the points again.
    today = datetime.now(WARSAW).date()
    two_months_ago = (date(today.year, today.month, 1) - timedelta(days=40)).replace(day=10)
    at = datetime(two_months_ago.year, two_months_ago.month, 10, 12, tzinfo=WARSAW)
    answer = earn(lane, sale("exp-2", "exp2", [line("A", 10000)], at=at))
    assert answer["balance"]["points"]["total"] == 0
    lane.wait_drained()

    def pulled_after_push() -> dict | None:
        # pending drops to 0 only once a pulled page carries central's watermark past the sale
        view = lane.get("/v1/members/CARD-exp2").json()
        return view if view["balances"]["points"]["pending"] == 0 else None

    view = lane.wait_for(pulled_after_push, timeout=30, what="the member pulled after central applied the sale")
    assert view["as_of"] > answer["recorded_at"]  # a pull made after the sale, not the seed's
    assert view["balances"]["points"]["total"] == 0
    assert view["balances"]["points"]["confirmed"] == 0


# -- offline caps ----------------------------------------------------------------------
@pytest.fixture
def central_seed():
    return copy.deepcopy(SEED)


def test_redemptions_offline_are_capped(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane", locale="en", extra_config=(
        "\n[offline]\nmax_redeem_points_per_member = 600\nmax_redeem_points_per_lane = 900\nmax_hours = 24\n"))
    for route in ("push", "members", "program"):
        central.inject(route, "503", count=100_000)
    lane.wait_for(lambda: lane.health()["sync"]["online"] is False, timeout=30, what="the lane offline")
    first = lane.post("/v1/redemptions", {"redemption_id": "off-1", "member": "CARD-offline1",
                                          "reward_id": "free-coffee"})
    assert first.status_code == 200, first.text
    assert first.json()["offline"] is True
    second = lane.post("/v1/redemptions", {"redemption_id": "off-2", "member": "CARD-offline1",
                                           "reward_id": "free-coffee"})
    assert (second.status_code, second.json()["code"]) == (422, "offline_cap_member")
    other = lane.post("/v1/redemptions", {"redemption_id": "off-3", "member": "CARD-rich1",
                                          "reward_id": "free-coffee"})
    assert (other.status_code, other.json()["code"]) == (422, "offline_cap_lane")
    # accruals are never refused offline
    assert lane.post("/v1/transactions", sale("off-sale", "offline1", [line("A", 1000)])).status_code == 200

