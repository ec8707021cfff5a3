"""The birthday bonus once a year per member across the chain, through real daemons and a real central.

Two lanes of a store, one member on their birthday: online the second lane's sale earns without the
bonus; both lanes cut off from central both give it and central flags the second as information; a
sale retried after a lost answer keeps its bonus and claims once; a member enrolled at the till under
a provisional id. Central runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ENGINES
from tests.support.central_fixture import demo_seed

CENTRAL_ENGINES = ENGINES  # every test here runs against central on both engines

CARD = "2900000001107"  # Ola, whose birthday is 17 November
DAY = "2026-11-17T10:15:00+01:00"
FAULTS = 1000


@pytest.fixture
def central_seed() -> dict[str, Any]:
    seed = demo_seed()  # the program's birthday rule: +200 points within 3 days, once a year
    seed["members"].append({"member_id": "M0100", "display_name": "Ola B.", "locale": "pl",
                            "identifiers": [CARD], "balances": {"points": 0}, "birth_date": "1990-11-17"})
    return seed


def sale(tid: str, member: str = CARD, occurred_at: str = DAY) -> dict[str, Any]:
    return {"transaction_id": tid, "member": member, "occurred_at": occurred_at, "currency": "PLN", "total": 5000,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 5000}]}


def birthday(answer: dict[str, Any]) -> bool:
    """Did the accrual (a sale's or a quote's) give the birthday bonus?"""
    return any(step.get("rule", step["type"]) == "birthday" and step["status"] == "applied"
               for step in answer["accrual"]["trace"])


def flags(central) -> list[dict[str, Any]]:
    return [r["payload"] for r in central.store.outbox(0, 100_000) if r["type"] == "member.birthday_repeated"]


@pytest.mark.long  # two lanes on each engine, about 10 s: CI runs it with the fault runs (make test-faults)
def test_online_the_second_lane_earns_without_the_bonus_the_first_gave(tmp_path, central, start_lane):
    one = start_lane(tmp_path / "one")
    two = start_lane(tmp_path / "two", lane_id="L02")
    first = one.post("/v1/transactions", sale("T-b-1")).json()
    assert birthday(first) and first["offline"] is False
    second = two.post("/v1/transactions", sale("T-b-2")).json()  # before lane one's accrual reached central
    assert not birthday(second) and second["member_id"] == "M0100"
    assert sum(second["accrual"]["points"].values()) < sum(first["accrual"]["points"].values())
    one.wait_drained()
    two.wait_drained()
    assert [(a["year"], a["lane"], a["transaction_id"]) for a in central.store.birthday_awards("M0100")] == [
        (2026, "S001/L01", "T-b-1")]
    assert flags(central) == []  # nothing given twice
    # the member feed tells lane two the year was given: its quote says so too, and lane one's own ledger does
    two.wait_for(lambda: not birthday(two.post("/v1/quotes", sale("Q-1")).json()), 30, "the feed's birthday year")
    assert not birthday(one.post("/v1/quotes", sale("Q-2")).json())
    back = one.post("/v1/transactions/T-b-1/returns", {"return_id": "R-b-1", "amount": 5000})
    assert back.status_code == 200 and back.json()["reversed"]["points"] == first["accrual"]["points"]["points"]
    assert not birthday(one.post("/v1/transactions", sale("T-b-3")).json())  # a return does not free the year
    assert two.health()["sync"]["birthday_repeats_flagged"] == 0


@pytest.mark.long  # two lanes on each engine, about 11 s: CI runs it with the fault runs (make test-faults)
def test_two_lanes_cut_off_both_give_it_and_central_flags_the_second(tmp_path, central, start_lane):
    one = start_lane(tmp_path / "one")
    two = start_lane(tmp_path / "two", lane_id="L02")
    streams = {lane.port: lane.sse() for lane in (one, two)}
    try:
        central.inject("push", "503", count=100 * FAULTS)  # neither lane's accrual reaches central yet
        central.inject("birthday_awards", "timeout", count=2, delay=3.0)  # no answer within the budget
        answers = [lane.post("/v1/transactions", sale(f"T-off-{n}")).json() for n, lane in enumerate((one, two))]
        assert all(birthday(a) for a in answers), answers  # each lane decides from what it knows
        central.store.clear_faults()  # central hears both
        for lane in (one, two):
            lane.wait_drained(timeout=120)
        [flag] = flags(central)
        assert (flag["member_id"], flag["year"]) == ("M0100", 2026)
        assert {flag["lane"], flag["first_lane"]} == {"S001/L01", "S001/L02"}
        flagged = one if flag["lane"] == "S001/L01" else two
        event = streams[flagged.port].next("member.birthday_flagged", timeout=30)["data"]
        assert (event["member_id"], event["year"], event["code"]) == ("M0100", 2026, "birthday_repeated")
        assert event["transaction_id"] == flag["transaction_id"]
    finally:
        for stream in streams.values():
            stream.close()
    healths = [lane.health() for lane in (one, two)]
    assert sorted(h["sync"]["birthday_repeats_flagged"] for h in healths) == [0, 1]
    assert all(h["status"] == "ok" and h["sync"]["quarantined"] == 0 for h in healths), healths  # information
    assert "posd_birthday_repeats_flagged_total 1.0" in flagged.get("/metrics").text
    assert 'id="row-birthday_repeats"' in flagged.get("/").text  # information on the status page
    # both accruals stand at central, bonus included: an accrual is a fact at the till
    assert central.store.member("M0100")["balances"]["points"] == sum(a["accrual"]["points"]["points"] for a in answers)


@pytest.mark.long  # about 11 s on each engine: CI runs it with the fault runs (make test-faults)
def test_a_retried_sale_after_a_lost_answer_keeps_its_bonus_and_claims_once(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    other = start_lane(tmp_path / "other", lane_id="L02")
    central.inject("birthday_awards", "applied_then_lost")  # central holds the year; its answer never comes
    first = lane.post("/v1/transactions", sale("T-r-1"))
    assert first.status_code == 200 and birthday(first.json())
    retry = lane.post("/v1/transactions", sale("T-r-1"))  # the POS lost the lane's answer too, and retries
    assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
    assert central.request_count("birthday_awards") == 1  # claimed once: the retry is answered from the ledger
    assert not birthday(other.post("/v1/transactions", sale("T-r-2")).json())  # central: taken
    lane.wait_drained()
    other.wait_drained()
    assert [(a["lane"], a["transaction_id"]) for a in central.store.birthday_awards("M0100")] == [
        ("S001/L01", "T-r-1")]
    assert flags(central) == []  # the lane's own claim: no flag for its accrual


@pytest.mark.long  # about 12 s on each engine: CI runs it with the fault runs (make test-faults)
def test_a_member_enrolled_at_the_till_gets_it_once_under_either_id(tmp_path, central, start_lane):
    one = start_lane(tmp_path / "one")
    two = start_lane(tmp_path / "two", lane_id="L02")
    enrolled = one.post("/v1/members", {"card": "2900000001206", "display_name": "Iga P.", "birth_date": "1991-11-17"})
    provisional = enrolled.json()["member_id"]
    assert provisional.startswith("P-")
    first = one.post("/v1/transactions", sale("T-p-1", provisional)).json()
    assert birthday(first) and first["member_id"] == provisional
    one.wait_drained()
    real = central.store.member(provisional, "S001")["member_id"]
    assert real != provisional
    two.wait_for(lambda: two.get("/v1/members/2900000001206").status_code == 200, 30, "the new member")
    second = two.post("/v1/transactions", sale("T-p-2", "2900000001206")).json()
    assert second["member_id"] == real and not birthday(second)
    two.wait_drained()
    assert [a["year"] for a in central.store.birthday_awards(real)] == [2026] and flags(central) == []
