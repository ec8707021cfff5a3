"""Bugs found in review, each pinned by a test: money never miscounted at the edges."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from posd.api.errors import STATUS
from posd.core.rules import BasketLine
from posd.lane import Lane
from posd.lane.authority import Decision, LocalAuthority
from posd.lane.errors import LaneError
from posd.lane.events import EventBus
from posd.lane.rewards import RedemptionInput
from posd.lane.sales import ReturnInput, TransactionInput
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.sync.lane.ports import EventResult
from tests.support.ledger_sql import execute, reader
from tests.test_loyalty_scenarios import PROGRAM

NOW = datetime(2026, 11, 18, 14, tzinfo=UTC)
BIRTHDAY = date(1990, 11, 18)


@pytest.fixture
def lane(request, tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(copy.deepcopy(getattr(request, "param", PROGRAM)), "e1")
    cache.apply_member_changes([
        {"member_id": "m1", "display_name": "M1", "tier": "basic", "identifiers": ["CARD-m1"],
         "balances": {"points": 0}},
        {"member_id": "bday", "display_name": "B", "tier": "basic", "identifiers": ["CARD-bday"],
         "balances": {"points": 0}, "birth_date": BIRTHDAY.isoformat()},
        # a member whose id equals another member's card number must not be confused with it
        {"member_id": "CARD-m1x", "display_name": "X", "tier": "basic", "identifiers": ["CARD-x"],
         "balances": {"points": 0}},
    ], "1")
    lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
                printer_enabled=True, timezone="Europe/Warsaw", clock=lambda: NOW)
    yield lane
    cache.close()
    ledger.close()


def sale(tid: str, member: str | None, *amounts: int, at: datetime = NOW - timedelta(hours=1)) -> TransactionInput:
    lines = tuple(BasketLine(f"S{i}", "grocery", Decimal(1), a, 0) for i, a in enumerate(amounts))
    return TransactionInput(tid, member, at, "PLN", sum(amounts), lines, f"h-{tid}")


def run(coro):
    return asyncio.run(coro)


def test_a_first_sale_without_a_member_does_not_break_later_returns(lane):
    run(lane.sales.record_sale(sale("anon", None, 1000)))
    run(lane.sales.record_sale(sale("T1", "CARD-m1", 10000, 5000)))
    back = run(lane.sales.record_return(ReturnInput("T1", "R1", (("S1", Decimal(1)),), None, "hr1")))
    assert back.response["reversed"]["points"] == 50
    # and the anonymous sale itself can be returned by lines
    assert run(lane.sales.record_return(ReturnInput("anon", "R0", (("S0", Decimal(1)),), None, "hr0"))).response


def test_a_return_by_sku_takes_back_the_same_whatever_the_order_of_the_sales_lines(lane):
    """The same SKU on two lines at different prices (a markdown, a price override): the return names the
    SKU, not the line, so which unit came back is not known. It takes back from the dearest unit first,
    whatever the order the POS listed the lines in: never the cheap unit's points while the dear one's stay."""
    def same_sku(tid: str, *prices: int) -> TransactionInput:
        lines = tuple(BasketLine("X1", "grocery", Decimal(1), p, 0) for p in prices)
        return TransactionInput(tid, "CARD-m1", NOW - timedelta(hours=1), "PLN", sum(prices), lines, f"h-{tid}")

    cheap_first = run(lane.sales.record_sale(same_sku("SK1", 1000, 100000))).response["accrual"]["points"]["points"]
    dear_first = run(lane.sales.record_sale(same_sku("SK2", 100000, 1000))).response["accrual"]["points"]["points"]
    cheap_alone = run(lane.sales.record_sale(same_sku("SK3", 1000))).response["accrual"]["points"]["points"]
    assert cheap_first == dear_first
    back = [run(lane.sales.record_return(ReturnInput(tid, f"R-{tid}", (("X1", Decimal(1)),), None, f"hr-{tid}")))
            .response["reversed"]["points"] for tid in ("SK1", "SK2")]
    assert back == [cheap_first - cheap_alone] * 2, back
    # the second unit back takes the rest, in either order
    rest = [run(lane.sales.record_return(ReturnInput(tid, f"R2-{tid}", (("X1", Decimal(1)),), None, f"hr2-{tid}")))
            .response["reversed"]["points"] for tid in ("SK1", "SK2")]
    assert rest == [cheap_alone] * 2, rest


def test_a_partial_return_of_a_line_discounted_to_nothing_keeps_no_negative_line(lane):
    """A weighed line whose discount takes its whole amount (1.25 kg at 25.99, 32.49 off): the kept part
    of a partial return had its amount rounded half up and its discount half even, and came out at -1:
    the return was refused as negative_line, where returning everything at once was taken."""
    lines = (BasketLine("A", "grocery", Decimal("1.25"), 2599, 3249), BasketLine("B", "grocery", Decimal(1), 2000, 0))
    run(lane.sales.record_sale(TransactionInput("N1", "CARD-m1", NOW - timedelta(hours=1), "PLN",
                                                sum(x.amount for x in lines), lines, "h-N1")))
    back = run(lane.sales.record_return(ReturnInput("N1", "RN1", (("A", Decimal("0.136")),), None, "hrn1")))
    assert not any(back.response["reversed"].values())  # the line earned nothing: nothing to take back
    rest = run(lane.sales.record_return(ReturnInput("N1", "RN2", (("A", Decimal("1.114")),), None, "hrn2")))
    assert not any(rest.response["reversed"].values())


def test_concurrent_birthday_sales_get_the_bonus_once(lane):
    at = datetime(2026, 11, 18, 10, tzinfo=UTC)

    async def burst():
        return await asyncio.gather(*(lane.sales.record_sale(sale(f"B{i}", "CARD-bday", 2000, at=at))
                                      for i in range(4)))

    points = sorted(r.response["accrual"]["points"]["points"] for r in run(burst()))
    assert points == [20, 20, 20, 220]


def test_a_return_is_refused_not_faked_when_the_member_is_not_cached(lane):
    run(lane.sales.record_sale(sale("T2", "CARD-m1", 10000)))
    lane.context.cache._conn.execute("DELETE FROM members WHERE member_id = 'm1'")
    with pytest.raises(LaneError) as err:
        run(lane.sales.record_return(ReturnInput("T2", "R2", None, 10000, "hr2")))
    assert (STATUS[err.value.code], err.value.code) == (503, "member_unavailable")
    assert reader(lane.context.ledger).execute("SELECT COUNT(*) FROM returns").fetchone()[0] == 0


def test_member_id_lookups_never_match_a_card_number(lane):
    assert lane.context.cache.member_by_id("CARD-m1x").display_name == "X"
    assert lane.context.cache.member_by_id("CARD-m1") is None


def test_a_redemption_central_refused_gives_back_its_points_and_voids_its_voucher(lane):
    run(lane.sales.record_sale(sale("T3", "CARD-m1", 60000)))
    rdm = run(lane.rewards.redeem(RedemptionInput("D1", "CARD-m1", "free-coffee", None, None, "hd1"))).response
    LedgerOutbox(lane.context.ledger).record_results([EventResult(rdm["seq"], "rejected", "member_blocked")])
    view = lane.members.member_view(lane.context.cache.find_member("CARD-m1"))["balances"]["points"]
    assert view["available"] == 700  # 600 + the 200 PLN threshold bonus 100: the refused 500 came back
    again = run(lane.rewards.redeem(RedemptionInput("D2", "CARD-m1", "free-coffee", None, None, "hd2")))
    assert again.response["points"] == {"points": -500}  # no 500: the lots the refused debit held are free
    with pytest.raises(LaneError) as err:
        run(lane.rewards.use(rdm["voucher"]["code"], "pos-1", None))
    assert err.value.code == "voucher_void"


def test_a_push_answer_refusing_several_events_voids_only_their_vouchers(lane):
    sold = run(lane.sales.record_sale(sale("T6", "CARD-m1", 200000))).response  # 1000 points: two coffees
    run(lane.sales.record_sale(sale("T7", "CARD-x", 60000)))
    redeemed = [run(lane.rewards.redeem(RedemptionInput(rid, card, "free-coffee", None, None, f"h{rid}"))).response
                for rid, card in (("D11", "CARD-m1"), ("D12", "CARD-m1"), ("D13", "CARD-x"))]
    refused, kept = [sold, redeemed[0], redeemed[2]], redeemed[1]
    LedgerOutbox(lane.context.ledger).record_results(
        [EventResult(r["seq"], "rejected", "member_blocked") for r in refused] + [EventResult(kept["seq"], "accepted")])
    states = dict(reader(lane.context.ledger).execute("SELECT seq, state FROM outbox").fetchall())
    assert [states[r["seq"]] for r in refused] == ["quarantined"] * 3 and states[kept["seq"]] == "acked"
    for r in redeemed[0], redeemed[2]:
        with pytest.raises(LaneError) as err:
            run(lane.rewards.use(r["voucher"]["code"], "pos-1", None))
        assert err.value.code == "voucher_void"
    assert not run(lane.rewards.use(kept["voucher"]["code"], "pos-1", None)).replayed


def test_a_retried_voucher_use_gets_its_first_answer(lane):
    run(lane.sales.record_sale(sale("T4", "CARD-m1", 60000)))
    code = run(lane.rewards.redeem(RedemptionInput("D3", "CARD-m1", "free-coffee", None, None, "hd3"))
               ).response["voucher"]["code"]
    first = run(lane.rewards.use(code, "pos-9", None))
    execute(lane.context.ledger, "UPDATE vouchers SET expires_at = '2000-01-01T00:00:00.000Z'")
    again = run(lane.rewards.use(code, "pos-9", None))
    assert again.replayed and again.response == first.response


def test_credits_still_pending_are_not_offered_to_central_for_a_burn(tmp_path):
    """A burn's authorisation lists the lane's unsynced credits: a pending one was among them, so
    central approved redeeming points still pending, and returning the sale left a voucher and a
    debt. Pending credits are left out, and so is a return of one (never a debit without its credit)."""
    program = copy.deepcopy(PROGRAM)
    program["currencies"][0]["pending_days"] = 14
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(program, "e1")
    cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "tier": "basic",
                                 "identifiers": ["CARD-m1"], "balances": {"points": 0}}], "1")
    lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
                printer_enabled=False, timezone="Europe/Warsaw", clock=lambda: NOW)
    try:
        earned = run(lane.sales.record_sale(sale("T-p1", "CARD-m1", 20000, 10000))).response
        assert earned["accrual"]["points"]["points"] > 0
        run(lane.sales.record_return(ReturnInput("T-p1", "R-p1", (("S1", Decimal(1)),), None, "hrp1")))
        listed = ledger.view().unsynced_entries("m1", 0, NOW, 100)
        assert all(e["points"].get("points", 0) == 0 for e in listed), listed
        assert any(e["points"].get("coffee", 0) > 0 for e in listed) or not any(e["points"] for e in listed)
        later = NOW + timedelta(days=15)  # matured: spendable, and listed with its return
        matured = ledger.view().unsynced_entries("m1", 0, later, 100)
        assert sum(e["points"].get("points", 0) for e in matured) == \
            earned["accrual"]["points"]["points"] - sum(-e["points"].get("points", 0) for e in matured
                                                        if e["points"].get("points", 0) < 0)
        assert sum(e["points"].get("points", 0) for e in matured) > 0
    finally:
        cache.close()
        ledger.close()


def test_a_platforms_short_or_odd_member_id_is_found_by_the_pos(lane):
    """The sync protocol lets a platform's member ids be any text up to 128 characters: X1, 42 or
    an id with @ were unknown_member at the lane, by id, in a sale and in a redemption alike. They
    are found as member ids; never as a card's code."""
    lane.context.cache.apply_member_changes([
        {"member_id": mid, "display_name": mid, "tier": "basic", "identifiers": [f"CARD-{i}"],
         "balances": {"points": 0}} for i, mid in enumerate(("X1", "42", "anna@shop"))], "3")
    for mid in ("X1", "42", "anna@shop", " 42 "):
        assert lane.members.find(mid).member.member_id == mid.strip()
    answer = run(lane.sales.record_sale(sale("T-42", "42", 20000))).response
    assert answer["member_id"] == "42" and answer["accrual"]["points"]["points"] > 0
    with pytest.raises(LaneError) as err:
        lane.members.find("X9")
    assert err.value.code == "unknown_member"


def test_a_member_not_active_uses_no_voucher_or_coupon(lane):
    """Eligibility is checked at every burn: a blocked member's voucher (named or not) and a campaign
    coupon for them are member_ineligible at validate and at use, and nothing is written."""
    run(lane.sales.record_sale(sale("T5", "CARD-m1", 60000)))
    code = run(lane.rewards.redeem(RedemptionInput("D5", "CARD-m1", "free-coffee", None, None, "hd5"))
               ).response["voucher"]["code"]
    lane.context.cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "tier": "basic",
                                              "identifiers": ["CARD-m1"], "balances": {"points": 0},
                                              "status": "blocked"}], "2")
    attempts = [lambda: lane.rewards.use(code, "pos-1", "CARD-m1"), lambda: lane.rewards.use(code, "pos-2", None),
                lambda: lane.rewards.use("WELCOME10", "pos-3", "CARD-m1"),
                lambda: lane.rewards.validate(code, None), lambda: lane.rewards.validate("WELCOME10", "CARD-m1")]
    for attempt in attempts:
        with pytest.raises(LaneError) as refused:
            run(attempt())
        assert refused.value.code == "member_ineligible"
    assert reader(lane.context.ledger).execute("SELECT COUNT(*) FROM voucher_uses").fetchone()[0] == 0
    assert run(lane.rewards.validate("WELCOME10", "CARD-bday"))["valid"]  # an active member still may
    quoted = run(lane.quotes.quote(sale("Q5", None, 5000), (code,)))  # the voucher without its member
    assert quoted["discounts"]["not_usable"] == [{"id": code, "reason": "member_ineligible"}]


@pytest.mark.parametrize("lane", [{**PROGRAM, "coupons": [
    *PROGRAM["coupons"], {"code": "M1-CAKE", "kind": "personal", "member_id": "m1", "title": "Cake", "percent": 50}]}],
    indirect=True)
def test_a_personal_coupon_is_its_members_alone_never_used_with_no_member_named(lane):
    """A program's personal coupon was used by a sale naming no member (its code is the program's, not
    a secret): the member's own use was then voucher_used. It needs its member named, as a campaign
    coupon needs one; a reward's voucher (a code no one can guess) is still used by whoever hands it."""
    for attempt in (lambda: lane.rewards.validate("M1-CAKE", None), lambda: lane.rewards.use("M1-CAKE", "pc1", None)):
        with pytest.raises(LaneError) as refused:
            run(attempt())
        assert refused.value.code == "member_required"
    quoted = run(lane.quotes.quote(sale("Q8", None, 5000), ("M1-CAKE",)))
    assert quoted["discounts"]["not_usable"] == [{"id": "M1-CAKE", "reason": "member_required"}]
    assert reader(lane.context.ledger).execute("SELECT COUNT(*) FROM voucher_uses").fetchone()[0] == 0
    with pytest.raises(LaneError) as other:
        run(lane.rewards.use("M1-CAKE", "pc2", "CARD-bday"))
    assert other.value.code == "voucher_other_member"
    assert run(lane.rewards.use("M1-CAKE", "pc3", "CARD-m1")).response["used"] is True


def test_a_quote_takes_no_campaign_coupon_off_a_basket_with_no_member(lane):
    """validate and use say member_required for it: the quote must not show a discount the sale
    then cannot have."""
    quoted = run(lane.quotes.quote(sale("Q6", None, 5000), ("WELCOME10",)))
    assert quoted["discounts"]["not_usable"] == [{"id": "WELCOME10", "reason": "member_required"}]
    assert quoted["discounts"]["amount_off_minor"] == 0 and quoted["accrual_with_discounts"] is None
    with pytest.raises(LaneError) as refused:
        run(lane.rewards.validate("WELCOME10", None))
    assert refused.value.code == "member_required"
    member = run(lane.quotes.quote(sale("Q7", "CARD-m1", 5000), ("WELCOME10",)))
    assert member["discounts"]["not_usable"] == [] and member["discounts"]["amount_off_minor"] == 500


@pytest.mark.parametrize("at, code", [
    (datetime(1, 1, 2, tzinfo=UTC), "occurred_too_old"),
    (NOW - timedelta(days=400), "occurred_too_old"),
    (NOW + timedelta(hours=2), "occurred_in_future"),
])
def test_sales_outside_the_accepted_window_are_refused(lane, at, code):
    with pytest.raises(LaneError) as err:
        run(lane.sales.record_sale(sale("T5", "CARD-m1", 1000, at=at)))
    assert err.value.code == code


def test_a_redemption_slip_never_collides_with_a_sale_slip(lane):
    run(lane.sales.record_sale(sale("D9", "CARD-m1", 60000)))  # the same id as the redemption below
    rdm = run(lane.rewards.redeem(RedemptionInput("D9", "CARD-m1", "free-coffee", None, None, "hd9")))
    assert rdm.response["slip"]["slip_id"] == "D9~r"


def test_a_birthday_window_across_new_year_gives_the_bonus_once(tmp_path):
    """Born on 1 January, window 3 days: a sale on 30 December and one on 2 January are near the
    same birthday, so only the first earns the bonus; the next birthday's window earns it again."""
    program = copy.deepcopy(PROGRAM)
    for rule in program["rules"]:
        if rule["type"] == "birthday":
            rule["window_days"] = 3
    now = datetime(2027, 1, 5, 12, tzinfo=UTC)
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(program, "e1")
    cache.apply_member_changes([
        {"member_id": "ny", "display_name": "N", "tier": "basic", "identifiers": ["CARD-ny"],
         "balances": {"points": 0}, "birth_date": "1990-01-01"}], "1")
    clock = [now]
    lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
                printer_enabled=True, timezone="Europe/Warsaw", clock=lambda: clock[0])
    try:
        points = [run(lane.sales.record_sale(sale(tid, "CARD-ny", 2000, at=at))).response["accrual"]["points"]
                  ["points"] for tid, at in (("D30", datetime(2026, 12, 30, 12, tzinfo=UTC)),
                                             ("J02", datetime(2027, 1, 2, 12, tzinfo=UTC)))]
        assert points == [220, 20]
        clock[0] = datetime(2027, 12, 31, 12, tzinfo=UTC)  # next birthday's window, still in 2027
        again = run(lane.sales.record_sale(sale("D31", "CARD-ny", 2000, at=clock[0] - timedelta(hours=1))))
        assert again.response["accrual"]["points"]["points"] == 220
        years = reader(lane.context.ledger).execute(
            "SELECT year, transaction_id FROM birthday_awards ORDER BY year").fetchall()
        assert [tuple(r) for r in years] == [(2027, "D30"), (2028, "D31")]
    finally:
        cache.close()
        ledger.close()


@pytest.fixture
def tier_points_lane(tmp_path):
    """tier_points_lane(tier, qualifying): a lane whose program earns tier points (a qualifying
    currency) beside points, with member "up" (card CARD-up) in ``tier`` at ``qualifying``."""
    made = []

    def make(tier: str, qualifying: int) -> Lane:
        program = copy.deepcopy(PROGRAM)
        program["currencies"].append({"code": "tierpts", "kind": "qualifying"})
        program["rules"].append({"id": "tier-base", "type": "base_rate", "currency": "tierpts",
                                 "rates": {"PLN": {"spend_minor": 100, "points": 1}}})
        ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
        cache = Cache(tmp_path / "cache.db", "L01")
        made.extend((cache, ledger))
        cache.store_program(program, "e1")
        cache.apply_member_changes([{"member_id": "up", "display_name": "U", "tier": tier, "qualifying": qualifying,
                                     "identifiers": ["CARD-up"], "balances": {"points": 0}}], "1")
        return Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache,
                    bus=EventBus(ledger.boot), printer_enabled=True, timezone="Europe/Warsaw", clock=lambda: NOW)

    yield make
    for opened in made:
        opened.close()


def slips_of(lane: Lane) -> list[dict]:
    return [json.loads(row[0]) for row in reader(lane.context.ledger).execute("SELECT slip FROM print_jobs")]


def test_tier_progress_names_the_next_tier_not_yet_reached(tier_points_lane):
    """A sale whose tier points pass silver's threshold, before central moves the member up: the
    member view and the slip said "0 points to Silver" with a full bar; they now name gold."""
    lane = tier_points_lane("basic", 0)
    run(lane.sales.record_sale(sale("UP1", "CARD-up", 120000)))
    view = lane.members.member_view(lane.context.cache.find_member("CARD-up"))
    assert view["tier"]["id"] == "basic"  # central's until it moves the member up
    assert view["progress"]["next_tier"]["id"] == "gold"
    assert (view["progress"]["qualifying"], view["progress"]["points_needed"]) == (1200, 3800)
    slips = slips_of(lane)
    assert [s["next_tier"]["points_needed"] for s in slips] == [3800]
    assert "silver" not in json.dumps([s["next_tier"] for s in slips]).lower()
    # tier points under any code are the progress line, never an amount or a balance on the slip
    assert all("tierpts" not in s["earned"] and "tierpts" not in s["balance"] for s in slips), slips


def test_a_sale_passing_the_top_threshold_says_the_tier_is_reached_not_that_silver_is_the_top(tier_points_lane):
    """Every threshold above a silver member passed by the sale, before central moves them up: the
    slip said "you are in the top tier" under "Tier: Silver", and the member view had no progress."""
    lane = tier_points_lane("silver", 4900)
    run(lane.sales.record_sale(sale("UP2", "CARD-up", 120000)))
    view = lane.members.member_view(lane.context.cache.find_member("CARD-up"))
    assert view["tier"]["id"] == "silver"  # central's until it moves the member up
    assert (view["progress"]["next_tier"]["id"], view["progress"]["points_needed"]) == ("gold", 0)
    [slip] = slips_of(lane)
    assert slip["next_tier"]["points_needed"] == 0 and "gold" in json.dumps(slip["next_tier"]).lower()


def test_points_central_holds_pending_are_not_available_once_the_sale_synced(lane):
    """Central's balance counts a lot still pending; the lane took the whole figure as spendable once
    the sale synced: the member view offered the points, and an offline redemption spent them."""
    until = (NOW + timedelta(days=14)).isoformat().replace("+00:00", "Z")
    lane.context.cache.apply_member_changes([
        {"member_id": "m1", "display_name": "M1", "tier": "basic", "identifiers": ["CARD-m1"],
         "balances": {"points": 800}, "applied_seq": {"L01": 0},
         "maturing": [{"currency": "points", "points": 500, "available_at": until}]}], "2")
    member = lane.context.cache.find_member("CARD-m1")
    points = lane.members.member_view(member)["balances"]["points"]
    assert (points["total"], points["available"], points["maturing"]) == (800, 300, 500)
    with pytest.raises(LaneError) as err:  # 500 asked, 300 spendable: refused offline as online
        run(lane.rewards.redeem(RedemptionInput("D-m", "CARD-m1", "free-coffee", None, None, "hd-m")))
    assert err.value.code == "insufficient_balance"
    lane.context.clock = lambda: NOW + timedelta(days=15)  # matured by the lane's own clock
    points = lane.members.member_view(member)["balances"]["points"]
    assert (points["total"], points["available"], points["maturing"]) == (800, 800, 0)


def test_a_return_of_a_synced_sale_takes_back_its_own_pending_points_not_the_spendable_ones(lane):
    """A sale central already had, its points still pending there (in the feed's maturing), then
    returned here: the lane took the return off the total and still held central's whole pending lot
    back, so the points came off twice: available fell from 1840 to 240 (below zero for a part return
    offline) and a redemption the member could pay was refused. Central takes a return from its sale's
    own lots first; so does the lane's balance now."""
    program = copy.deepcopy(PROGRAM)
    program["currencies"][0]["pending_days"] = 14
    cache = lane.context.cache
    cache.store_program(program, "e2")
    cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "tier": "basic", "identifiers": ["CARD-m1"],
                                 "balances": {"points": 1840}}], "2")
    earned = run(lane.sales.record_sale(sale("T-pend", "CARD-m1", 100000))).response["accrual"]["points"]["points"]
    seq = reader(lane.context.ledger).execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
    LedgerOutbox(lane.context.ledger).record_results([EventResult(seq, "accepted")])
    until = (NOW + timedelta(days=14)).isoformat().replace("+00:00", "Z")
    cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "tier": "basic", "identifiers": ["CARD-m1"],
                                 "balances": {"points": 1840 + earned}, "applied_seq": {"L01": seq},
                                 "maturing": [{"currency": "points", "points": earned, "available_at": until}]}], "3")

    def points() -> tuple[int, int, int]:
        view = lane.members.member_view(cache.find_member("CARD-m1"))["balances"]["points"]
        return view["total"], view["available"], view["maturing"]

    assert points() == (1840 + earned, 1840, earned)
    half = run(lane.sales.record_return(ReturnInput("T-pend", "R-half", None, 50000, "hr-half")))
    half = half.response["reversed"]["points"]
    assert 0 < half < earned
    assert points() == (1840 + earned - half, 1840, earned - half)
    back = run(lane.sales.record_return(ReturnInput("T-pend", "R-rest", None, 50000, "hr-rest"))).response
    assert back["balance"]["points"]["available"] == 1840
    assert points() == (1840, 1840, 0)
    spent = run(lane.rewards.redeem(RedemptionInput("D-pend", "CARD-m1", "free-coffee", None, None, "hd-pend")))
    assert spent.response["redemption_id"] == "D-pend"


def test_a_return_of_a_sale_central_refused_gives_back_none_of_centrals_pending_points(lane):
    """A sale central refused (quarantined) has no lot at central: its return takes back nothing of the
    points central holds pending for the member's other sales, which stay held back."""
    program = copy.deepcopy(PROGRAM)
    program["currencies"][0]["pending_days"] = 14
    cache = lane.context.cache
    cache.store_program(program, "e2")
    run(lane.sales.record_sale(sale("T-refused", "CARD-m1", 100000)))
    seq = reader(lane.context.ledger).execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
    LedgerOutbox(lane.context.ledger).record_results([EventResult(seq, "rejected", "member_blocked")])
    until = (NOW + timedelta(days=14)).isoformat().replace("+00:00", "Z")
    cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "tier": "basic", "identifiers": ["CARD-m1"],
                                 "balances": {"points": 2000}, "applied_seq": {"L01": seq},
                                 "maturing": [{"currency": "points", "points": 500, "available_at": until}]}], "3")
    run(lane.sales.record_return(ReturnInput("T-refused", "R-refused", None, 100000, "hr-refused")))
    view = lane.members.member_view(cache.find_member("CARD-m1"))["balances"]["points"]
    assert view["maturing"] == 500 and view["available"] == view["total"] - 500, view


def test_a_maturing_lot_posd_cannot_read_refuses_the_page(lane):
    from posd.storage.cache import MalformedMember
    for bad in ([{"currency": "points", "points": "5", "available_at": "2026-12-01T00:00:00Z"}],
                [{"currency": "points", "points": 5, "available_at": "soon"}], [{"currency": "points"}], [5]):
        with pytest.raises(MalformedMember):
            lane.context.cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "balances": {},
                                                      "maturing": bad}], "9")
    assert lane.members.member_view(lane.context.cache.find_member("CARD-m1"))["balances"]["points"]["total"] == 0


def test_a_voucher_issued_here_that_central_no_longer_lists_is_refused_offline(lane):
    """The issuing lane took its own ledger's word: a voucher used online at another lane, gone from
    this lane's member feed since, was used again here while central could not be asked."""
    run(lane.sales.record_sale(sale("T-v", "CARD-m1", 60000)))
    rdm = run(lane.rewards.redeem(RedemptionInput("D-v", "CARD-m1", "free-coffee", None, None, "hd-v"))).response
    code, seq = rdm["voucher"]["code"], rdm["seq"]
    wire = {"code": code, "member_id": "m1", "reward_id": "free-coffee", "title": "Free coffee",
            "benefit": {"kind": "free_item", "sku": "COFFEE"}, "expires_at": rdm["voucher"]["expires_at"]}

    def feed(applied: int, vouchers: list, cursor: str) -> None:
        lane.context.cache.apply_member_changes([
            {"member_id": "m1", "display_name": "M1", "tier": "basic", "identifiers": ["CARD-m1"],
             "balances": {"points": 200}, "applied_seq": {"L01": applied}, "vouchers": vouchers}], cursor)

    feed(seq - 1, [], "2")  # central has not applied the redemption yet: its absence says nothing
    assert run(lane.rewards.validate(code, "CARD-m1"))["valid"] is True
    feed(seq, [wire], "3")  # registered and open at central
    assert run(lane.rewards.validate(code, "CARD-m1"))["valid"] is True
    feed(seq, [], "4")  # used, or held, at another lane since
    lane.context.is_offline = lambda: True  # central cannot be asked
    for attempt in (lambda: lane.rewards.validate(code, "CARD-m1"),
                    lambda: lane.rewards.use(code, "pos-v", "CARD-m1")):
        with pytest.raises(LaneError) as err:
            run(attempt())
        assert err.value.code == "voucher_used"


def test_a_birth_date_that_is_no_date_earns_without_the_bonus(tmp_path):
    """Central's feed gave a member 1990-02-29 (1990 is no leap year): every sale and quote for them
    was a 500. The sale earns as for a member with no birth date."""
    now = datetime(2027, 2, 28, 12, tzinfo=UTC)
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(copy.deepcopy(PROGRAM), "e1")
    cache.apply_member_changes([
        {"member_id": "leap", "display_name": "L", "tier": "basic", "identifiers": ["CARD-leap"],
         "balances": {"points": 0}, "birth_date": "1990-02-29"}], "1")
    lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
                printer_enabled=True, timezone="Europe/Warsaw", clock=lambda: now)
    try:
        recorded = run(lane.sales.record_sale(sale("LEAP-1", "CARD-leap", 2000, at=now - timedelta(hours=1))))
        assert recorded.response["accrual"]["points"]["points"] == 20  # the base rate, no birthday bonus
    finally:
        cache.close()
        ledger.close()


class _Approving(LocalAuthority):
    """Central approving every burn it is asked, with a reservation: the questions it got."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def authorise(self, request: dict) -> Decision:
        self.asked.append(request["authorisation_id"])
        return Decision("approved", reservation_id=f"res-{len(self.asked)}", expires_at="2026-11-18T14:15:00Z",
                        authorisation_id=request["authorisation_id"])


@pytest.fixture
def asked_lane(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(copy.deepcopy(PROGRAM), "e1")
    cache.apply_member_changes([{"member_id": "m1", "display_name": "M1", "tier": "basic",
                                 "identifiers": ["CARD-m1"], "balances": {"points": 5000}}], "1")
    central = _Approving()
    lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
                printer_enabled=True, timezone="Europe/Warsaw", clock=lambda: NOW, authority=central,
                last_sync=lambda: NOW - timedelta(minutes=5))
    yield lane, central
    cache.close()
    ledger.close()


def back_when_written(lane: Lane) -> None:
    """Central out of reach when the burn decides, answering the lane again by the time its unit
    runs: a push answered meanwhile, whose acks freed the offline caps the burn would spend."""
    reach = iter([True])
    lane.context.is_offline = lambda: next(reach, False)


def test_a_redemption_that_skipped_central_asks_it_when_central_answered_before_its_write(asked_lane):
    lane, central = asked_lane
    back_when_written(lane)
    rdm = run(lane.rewards.redeem(RedemptionInput("D-back", "CARD-m1", "free-coffee", None, None, "hd-back")))
    assert rdm.response["authorised"] == "online" and central.asked == ["redemption:D-back"]
    assert rdm.response["balance"]["points"]["available"] == 4500  # debited once


def test_a_voucher_use_that_skipped_central_asks_it_when_central_answered_before_its_write(asked_lane):
    lane, central = asked_lane
    code = run(lane.rewards.redeem(RedemptionInput("D-v", "CARD-m1", "free-coffee", None, None, "hd-v"))
               ).response["voucher"]["code"]
    back_when_written(lane)
    use = run(lane.rewards.use(code, "pos-back", "CARD-m1"))
    assert use.response["authorised"] == "online" and central.asked[-1] == f"voucher_use:{code}:pos-back"


def test_a_burn_with_central_out_of_reach_throughout_is_decided_by_the_lane_alone(asked_lane):
    lane, central = asked_lane
    lane.context.is_offline = lambda: True
    rdm = run(lane.rewards.redeem(RedemptionInput("D-off", "CARD-m1", "free-coffee", None, None, "hd-off")))
    assert rdm.response["authorised"] == "offline" and central.asked == []
