"""Two lanes of a store and one central, real processes: spending that is safe across the chain.

A voucher issued at one lane is used at the other; the same voucher at both at once is used once;
the same member redeeming at both at once never goes below zero at central; with central stopped
both lanes fall back to their caps and say so; a lane killed between central's approval and its own
commit leaves nothing reserved once the reservation expires.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.support.central_fixture import running_central
from tests.support.lane import LaneProcess, free_port, lane_config, launch_lane

SECRET = "chain-secret"
TTL_S = 4.0  # reservations the lanes never confirm expire this fast here (900 s by default)

PROGRAM = {
    "version": "chain-1",
    "currencies": [{"code": "points", "kind": "redeemable"}],
    "rules": [{"id": "base", "type": "base_rate", "currency": "points",
               "rates": {"PLN": {"spend_minor": 100, "points": 1}}}],
    "rewards": [{"id": "coffee", "kind": "free_item", "sku": "COFFEE", "currency": "points", "price": 300,
                 "name": {"en": "Free coffee", "pl": "Kawa gratis"}}],
}
MEMBERS = ["voucher", "now", "race", "duo", "cut", "crash", "recheck", "late", "nopush"]
SEED = {"stores": {"S001": {"secret": SECRET}}, "program": PROGRAM,
        "members": [{"member_id": m, "display_name": m.title(), "locale": "pl", "identifiers": [f"CARD-{m}"],
                     "balances": {"points": 1000}} for m in MEMBERS]}
CAPS = ("\n[offline]\nmax_redeem_points_per_member = 300\nmax_redeem_points_per_lane = 600\n"
        "max_voucher_uses_per_member = 1\nmax_voucher_uses_per_lane = 5\nmax_hours = 24\n")


def redeem(lane: LaneProcess, rid: str, who: str) -> requests.Response:
    return lane.post("/v1/redemptions", {"redemption_id": rid, "member": f"CARD-{who}", "reward_id": "coffee"})


def use(lane: LaneProcess, code: str, tid: str, who: str | None = None) -> requests.Response:
    return lane.post(f"/v1/vouchers/{code}/use", {"transaction_id": tid, **({"member": f"CARD-{who}"} if who else {})})


def central_points(central, who: str) -> int:
    return central.store.member(who)["balances"]["points"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    with running_central(tmp / "central", copy.deepcopy(SEED), reservation_ttl_s=TTL_S) as central:
        one = launch_lane(tmp / "L01", central, lane_id="L01", extra_config=CAPS)
        two = launch_lane(tmp / "L02", central, lane_id="L02", extra_config=CAPS)
        yield central, one, two
        one.stop()
        two.stop()


def test_a_voucher_issued_at_one_lane_is_used_at_the_other(chain):
    central, one, two = chain
    issued = redeem(one, "RDM-V1", "voucher")
    assert issued.status_code == 200 and issued.json()["authorised"] == "online"
    code = issued.json()["voucher"]["code"]
    one.wait_drained()  # central has the redemption, and with it the voucher

    def offered_at_one() -> set[str]:  # what a quote at the issuing lane says the member could use
        quote = one.post("/v1/quotes", {"transaction_id": "Q-V1", "member": "CARD-voucher", "currency": "PLN",
                                        "occurred_at": datetime.now(UTC).isoformat(), "total": 0})
        assert quote.status_code == 200, quote.text
        return {v["code"] for v in quote.json()["vouchers"]}

    assert code in offered_at_one()
    used = use(two, code, "T-L02-1")
    assert used.status_code == 200, used.text
    assert (used.json()["authorised"], used.json()["issued_by"]) == ("online", "S001/L01")
    assert used.json()["source"] in ("central", "feed") and used.json()["benefit"]["sku"] == "COFFEE"
    again_there = use(two, code, "T-L02-2")
    again_here = use(one, code, "T-L01-1")
    assert [(r.status_code, r.json()["code"]) for r in (again_there, again_here)] == [(409, "voucher_used")] * 2
    assert one.post("/v1/vouchers/validate", {"code": code}).json()["code"] == "voucher_used"
    # the issuing lane's quotes stop offering it once the member feed says it is no longer open
    one.wait_for(lambda: code not in offered_at_one(), what="the used voucher out of L01's quote")


def test_a_voucher_is_good_at_the_other_lane_the_moment_it_is_issued(chain):
    central, one, two = chain
    for n in range(3):  # the till's sales, then the redemption: L01's relay lingers after each push
        sold = one.post("/v1/transactions", {"transaction_id": f"T-now-sale-{n}", "member": "CARD-now",
                                             "occurred_at": datetime.now(UTC).isoformat(), "currency": "PLN",
                                             "total": 1000})
        assert sold.status_code == 200, sold.text
    code = redeem(one, "RDM-V0", "now").json()["voucher"]["code"]
    valid = two.post("/v1/vouchers/validate", {"code": code})  # no wait for L01's push
    assert valid.status_code == 200 and valid.json()["source"] == "central", valid.text
    used = use(two, code, "T-now-1")
    assert (used.status_code, used.json()["authorised"]) == (200, "online"), used.text
    # a code in a voucher's form that no lane issued is still unknown, once central had its moment
    unknown = use(two, "V" + "0" * 12, "T-now-2")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_voucher")


def test_a_voucher_is_good_at_the_other_lane_before_its_redemption_reaches_central(chain):
    """L02 redeemed online and answered with a voucher, then could not push (central's push route
    failing; a kill after the answer does the same): central had the reservation but no voucher, so
    L01 answered 404 unknown_voucher and sent the member away with a valid one. Central registers
    the voucher with its approval now, pending until the redemption's event arrives."""
    central, one, two = chain
    central.inject("push", "503", count=100_000)
    try:
        issued = redeem(two, "RDM-nopush", "nopush")
        assert (issued.status_code, issued.json()["authorised"]) == (200, "online"), issued.text
        code = issued.json()["voucher"]["code"]
        valid = one.post("/v1/vouchers/validate", {"code": code})
        assert valid.status_code == 200 and valid.json()["source"] == "central", valid.text
        used = use(one, code, "T-nopush-1", "nopush")
        assert (used.status_code, used.json()["authorised"]) == (200, "online"), used.text
        # L01's own push of the use fails too: out of touch, it still knows it used that code itself
        one.wait_for(lambda: {i["code"] for i in one.health()["issues"]} & {"central_error", "central_unreachable"},
                     what="L01 out of touch")
        again = use(one, code, "T-nopush-2")
        assert (again.status_code, again.json()["code"]) == (409, "voucher_used"), again.text
        checked = one.post("/v1/vouchers/validate", {"code": code})
        assert (checked.status_code, checked.json()["code"]) == (409, "voucher_used"), checked.text
        assert "vouchers" not in central.store.member("nopush") or all(  # pending: not in the member's feed yet
            v["code"] != code for v in central.store.member("nopush")["vouchers"])
    finally:
        central.faults.clear()
    for lane in (one, two):
        lane.wait_drained()
    events = {lane_id: [(e["type"], e["status"]) for e in central.store.events("S001", lane_id)
                        if e["member_id"] == "nopush"] for lane_id in ("L01", "L02")}
    assert events == {"L01": [("voucher_use", "accepted")], "L02": [("redemption", "accepted")]}, events
    assert central_points(central, "nopush") == 700
    assert [r["state"] for r in central.store.reservations("nopush")] == ["confirmed", "confirmed"]


def test_the_same_voucher_at_both_lanes_at_once_is_used_exactly_once(chain):
    central, one, two = chain
    code = redeem(one, "RDM-V2", "race").json()["voucher"]["code"]
    one.wait_drained()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: use((one, two)[n % 2], code, f"T-race-{n}"), range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"voucher_used"}
    for lane in (one, two):
        lane.wait_drained()
    accepted = [e for lane_id in ("L01", "L02") for e in central.store.events("S001", lane_id)
                if e["type"] == "voucher_use" and e["event"]["voucher_code"] == code]
    assert [e["status"] for e in accepted] == ["accepted"]  # one use reached central, and it was the one


def test_the_same_member_redeeming_at_both_lanes_at_once_never_goes_below_zero_at_central(chain):
    central, one, two = chain
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: redeem((one, two)[n % 2], f"RDM-duo-{n}", "duo"), range(8)))
    approved = [a for a in answers if a.status_code == 200]
    assert len(approved) == 3  # 1000 points, 300 each: never a fourth, whichever lane asked
    assert all(a.json()["authorised"] == "online" for a in approved)
    assert {a.json()["code"] for a in answers if a.status_code != 200} == {"insufficient_balance"}
    for lane in (one, two):
        lane.wait_drained()
    assert central_points(central, "duo") == 100
    assert [r["state"] for r in central.store.reservations("duo")] == ["confirmed"] * 3


def test_points_earned_at_one_lane_are_spent_at_the_next_before_its_pull(tmp_path):
    """A member who paid at lane 1 and walked to lane 2 to take a reward was refused there
    (insufficient_balance, "100 available") until lane 2's next member pull, up to pull_interval_s
    (30 s as shipped): lane 2's own view refused the burn without asking central, which had the
    points. Short on its own view while central answers, the lane pulls the member changes now and
    checks again; the balance in its answer is central's, the points just earned included."""
    seed = copy.deepcopy(SEED)
    seed["members"].append({"member_id": "walk", "display_name": "Walk", "locale": "pl",
                            "identifiers": ["CARD-walk"], "balances": {"points": 100}})
    with running_central(tmp_path / "central", seed) as central:
        one = launch_lane(tmp_path / "L01", central, lane_id="L01")
        two = launch_lane(tmp_path / "L02", central, lane_id="L02", intervals=(0.2, 3600))  # pulls only at start
        try:
            sale = one.post("/v1/transactions", {
                "transaction_id": "T-walk-1", "member": "CARD-walk", "occurred_at": datetime.now(UTC).isoformat(),
                "currency": "PLN", "total": 30000,
                "lines": [{"sku": "590", "category": "grocery", "quantity": 1, "unit_price": 30000}]})
            assert sale.status_code == 200 and sale.json()["accrual"]["points"] == {"points": 300}, sale.text
            one.wait_drained()
            taken = redeem(two, "RDM-walk-1", "walk")
            assert taken.status_code == 200, taken.text
            assert taken.json()["authorised"] == "online"
            assert taken.json()["balance"]["points"]["available"] == 100
            two.wait_drained()
            assert central_points(central, "walk") == 100
            # still short after the pull: refused, with central's figure
            short = redeem(two, "RDM-walk-2", "walk")
            assert (short.status_code, short.json()["code"]) == (422, "insufficient_balance"), short.text
            assert "100 available" in short.json()["message"]
            # a member enrolled at lane 1 a moment ago is a member at lane 2 too: sale, quote, lookup
            enrolled = one.post("/v1/members", {"card": "CARD-fresh", "display_name": "Fresh"})
            assert enrolled.status_code in (200, 201), enrolled.text
            one.wait_drained()
            body = {"transaction_id": "T-fresh-1", "member": "CARD-fresh", "currency": "PLN", "total": 1000,
                    "occurred_at": datetime.now(UTC).isoformat()}
            quote = two.post("/v1/quotes", body)
            assert quote.status_code == 200 and quote.json()["accrual"]["points"] == {"points": 10}, quote.text
            assert two.get("/v1/members/CARD-fresh").json()["display_name"] == "Fresh"
            fresh = two.post("/v1/transactions", body)
            assert fresh.status_code == 200 and fresh.json()["accrual"]["points"] == {"points": 10}, fresh.text
            # a pull just made for another refusal: the next one still comes within the budget
            later = one.post("/v1/members", {"card": "CARD-later", "display_name": "Later"})
            assert later.status_code in (200, 201), later.text
            one.wait_drained()
            assert two.get("/v1/members/CARD-nobody-1").json()["code"] == "unknown_member"
            assert two.get("/v1/members/CARD-later").json()["display_name"] == "Later"
            # a member enrolled at lane 1 who earned there takes a reward at lane 2 at once
            redeemer = one.post("/v1/members", {"card": "CARD-redeemer", "display_name": "Redeemer"})
            assert redeemer.status_code in (200, 201), redeemer.text
            earned = one.post("/v1/transactions", {**body, "transaction_id": "T-redeemer-1", "member": "CARD-redeemer",
                                                   "total": 30000})
            assert earned.status_code == 200, earned.text
            one.wait_drained()
            taken = redeem(two, "RDM-redeemer-1", "redeemer")
            assert (taken.status_code, taken.json().get("authorised")) == (200, "online"), taken.text
            # at lane 2's scanner, a code found nowhere is unknown at once and central is not asked (a
            # scanner reads products too); the sale naming the card looks again after a pull
            scanned = one.post("/v1/members", {"card": "CARD-scanned", "display_name": "Scanned"})
            assert scanned.status_code in (200, 201), scanned.text
            one.wait_drained()
            one.stop()  # it pulls every 0.5 s: only lane 2 asks central now
            stream = two.sse()
            try:
                pulls = central.request_count("members")
                two.scan("CARD-scanned")
                assert stream.next("member.unknown")["data"]["identifier"] == "CARD-scanned"
                assert central.request_count("members") == pulls
            finally:
                stream.close()
            sold = two.post("/v1/transactions", {**body, "transaction_id": "T-scanned-1", "member": "CARD-scanned"})
            assert sold.status_code == 200 and sold.json()["member_id"] != "CARD-scanned", sold.text
            # a card nobody holds is still unknown, after one more pull
            assert two.get("/v1/members/CARD-nobody").json()["code"] == "unknown_member"
        finally:
            one.stop()
            two.stop()


@pytest.mark.fault
def test_with_central_stopped_both_lanes_fall_back_to_their_caps_and_say_offline(tmp_path):
    with running_central(tmp_path / "central", copy.deepcopy(SEED), reservation_ttl_s=TTL_S) as central:
        one = launch_lane(tmp_path / "L01", central, lane_id="L01", extra_config=CAPS)
        two = launch_lane(tmp_path / "L02", central, lane_id="L02", extra_config=CAPS)
        try:
            codes = [redeem(one, f"RDM-cut-{n}", "cut").json()["voucher"]["code"] for n in range(2)]
            one.wait_drained()
            # lane 2 learns lane 1's vouchers from the member feed: it can honour them offline
            two.wait_for(lambda: {v["code"] for v in two.post("/v1/quotes", {
                "transaction_id": "Q", "member": "CARD-cut", "occurred_at": "2026-11-24T10:00:00+01:00",
                "currency": "PLN", "total": 0}).json()["vouchers"]} >= set(codes), what="the feed's vouchers")
            central.stop()
            for lane in (one, two):
                lane.wait_for(lambda lane=lane: lane.health()["sync"]["online"] is False, what="offline")
            first = [redeem(lane, f"RDM-off-{lane.port}", "duo") for lane in (one, two)]
            assert [(r.status_code, r.json()["offline"], r.json()["authorised"]) for r in first] == \
                [(200, True, "offline")] * 2
            capped = [redeem(lane, f"RDM-off2-{lane.port}", "duo") for lane in (one, two)]
            assert [(r.status_code, r.json()["code"]) for r in capped] == [(422, "offline_cap_member")] * 2
            honoured = use(two, codes[0], "T-off-1")
            assert honoured.status_code == 200, honoured.text
            assert (honoured.json()["authorised"], honoured.json()["source"]) == ("offline", "feed")
            assert use(two, codes[1], "T-off-2").json()["code"] == "offline_cap_member"
            assert use(two, "VUNKNOWN00000", "T-off-3", "cut").json()["code"] == "unknown_voucher"
            # lane 2 killed and started again during the outage: its offline window still counts from its
            # last contact with central (kept in cache.db), not from a start that never reached central
            two.kill()
            two.start()
            assert two.health()["sync"]["last_sync_at"] is not None
            after = redeem(two, "RDM-off-restarted", "race")
            assert (after.status_code, after.json().get("authorised")) == (200, "offline"), after.text
        finally:
            one.stop()
            two.stop()


@pytest.mark.fault
def test_a_lane_killed_between_approval_and_commit_leaves_nothing_reserved(tmp_path):
    with running_central(tmp_path / "central", copy.deepcopy(SEED), reservation_ttl_s=TTL_S) as central:
        port = free_port()
        cfg = lane_config(tmp_path / "L01", central_url=central.url, secret=SECRET, printer="none", port=port)
        lane = LaneProcess(cfg, port)
        lane.spawn(POSD_CRASH_AT="after_authorised_before_commit")
        try:
            lane.wait_healthy(30)
            lane.wait_synced(30)
            with pytest.raises(requests.ConnectionError):  # the lane dies after central's approval
                redeem(lane, "RDM-crash", "crash")
            lane.proc.wait(15)
            lane.stop()
            assert [r["state"] for r in central.store.reservations("crash")] == ["open"]  # held for now
            held = _authorise(central, "crash", 1000)
            assert (held["status"], held["code"]) == ("declined", "insufficient_balance")
            lane.wait_for(lambda: [r["state"] for r in central.store.reservations("crash")] == ["expired"],
                          timeout=TTL_S + 10, what="the reservation expired")
            assert central_points(central, "crash") == 1000  # nothing was spent
            assert _authorise(central, "crash", 1000, "probe")["status"] == "approved"  # and nothing is held
            # the lane comes back; the POS retries the same redemption: recorded once, confirmed once
            lane.start()  # its cache.db (members, program) survived the kill
            again = redeem(lane, "RDM-crash", "crash")
            assert again.status_code == 200 and again.json()["authorised"] == "online", again.text
            assert redeem(lane, "RDM-crash", "crash").json() == again.json()
            lane.wait_drained()
            states = {r["authorisation_id"]: r["state"] for r in central.store.reservations("crash")}
            assert states["redemption:RDM-crash"] == "confirmed"
            assert central_points(central, "crash") == 700
        finally:
            lane.stop()


@pytest.mark.fault
def test_a_burn_the_lanes_recheck_refuses_after_approval_gives_its_reservation_back(tmp_path):
    """Central approved, then a return recorded on this lane while central was answering took the
    points the burn needed: the lane refuses the burn and gives the reservation back at once."""
    seed = copy.deepcopy(SEED)
    next(m for m in seed["members"] if m["member_id"] == "recheck")["balances"] = {"points": 200}
    with running_central(tmp_path / "central", seed) as central:  # 900 s reservations: only a release frees them
        port = free_port()
        cfg = lane_config(tmp_path / "L01", central_url=central.url, secret=SECRET, printer="none", port=port)
        cfg.write_text(cfg.read_text().replace("[central]\n", "[central]\nauthorise_timeout_ms = 10000\n"))
        lane = LaneProcess(cfg, port).start()
        try:
            lane.wait_synced(30)
            sale = {"transaction_id": "T-recheck", "member": "CARD-recheck", "occurred_at": "2026-11-24T10:15:00+01:00",
                    "currency": "PLN", "total": 15000,
                    "lines": [{"sku": "SKU-1", "category": "grocery", "quantity": 1, "unit_price": 15000}]}
            central.inject("push", "slow", delay=8.0)  # the sale reaches central late: only the lane's unsynced list has it
            assert lane.post("/v1/transactions", sale).json()["accrual"]["points"]["points"] == 150  # 350 now: enough for 300
            asked = central.request_count("authorise")
            central.inject("authorise", "slow", delay=2.0)  # central takes its time to approve
            with ThreadPoolExecutor(1) as pool:
                burn = pool.submit(redeem, lane, "RDM-recheck", "recheck")
                lane.wait_for(lambda: central.request_count("authorise") > asked, what="the authorisation asked")
                back = lane.post("/v1/transactions/T-recheck/returns", {"return_id": "RET-recheck", "amount": 15000})
                assert back.status_code == 200 and back.json()["reversed"] == {"points": 150}, back.text
                refused = burn.result(timeout=60)
            assert (refused.status_code, refused.json()["code"]) == (422, "insufficient_balance"), refused.text
            states = {r["authorisation_id"]: r["state"] for r in central.store.reservations("recheck")}
            assert states == {"redemption:RDM-recheck": "released"}  # nothing held for 15 minutes
            lane.wait_drained()
            assert central_points(central, "recheck") == 200  # the sale and its return: nothing spent
            assert _authorise(central, "recheck", 200, "probe")["status"] == "approved"  # and nothing held
        finally:
            lane.stop()


@pytest.mark.fault
def test_a_burn_refused_offline_after_central_approved_it_late_gives_the_reservation_back(tmp_path):
    """Central approved after the lane stopped waiting; the lane went its offline way, and its caps
    refused the burn. The reservation central made for it held the member's points at every lane for
    15 minutes. It is given back once central's late answer is in."""
    with running_central(tmp_path / "central", copy.deepcopy(SEED)) as central:  # 900 s reservations
        port = free_port()
        cfg = lane_config(tmp_path / "L01", central_url=central.url, secret=SECRET, printer="none", port=port)
        cfg.write_text(cfg.read_text().replace("[central]\n", "[central]\nauthorise_timeout_ms = 300\n")
                       + "\n[offline]\nmax_redeem_points_per_member = 0\n")
        lane = LaneProcess(cfg, port).start()
        try:
            lane.wait_synced(30)
            central.inject("authorise", "slow", delay=1.5)  # the answer comes after the lane's 0.3 s
            refused = redeem(lane, "RDM-late", "late")
            assert (refused.status_code, refused.json()["code"]) == (422, "offline_cap_member"), refused.text
            lane.wait_for(lambda: [(r["authorisation_id"], r["state"]) for r in central.store.reservations("late")]
                          == [("redemption:RDM-late", "released")], timeout=20, what="the late reservation given back")
            assert _authorise(central, "late", 1000, "probe-late")["status"] == "approved"  # nothing held
        finally:
            lane.stop()


def _authorise(central, who: str, points: int, auth: str = "probe-held") -> dict[str, Any]:
    """Another lane asking central for the member's whole balance; its reservation (if any) lapses at once."""
    return central.store.authorise("S001", "L09", {"authorisation_id": auth, "kind": "redemption", "member_id": who,
                                                   "occurred_at": "2026-11-24T09:00:00Z",
                                                   "points": {"points": points}}, 0.001)
