"""The birthday bonus once a year per member across the chain, at the reference central (both engines).

Real HTTP on loopback to the reference central, the lane's real client: a claim before a sale gives
the bonus, the accrual that names the year, the flag on a second lane's offline bonus, the member feed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from posd.sync.lane.authoriser import BurnAuthoriser
from posd.sync.lane.errors import CentralUnavailable
from posd.sync.protocol import signed_headers
from tests.conftest import ENGINES
from tests.support.central_fixture import SECRET, make_client, make_event

CENTRAL_ENGINES = ENGINES
CENTRAL_ON_FAKE_CLOCK = True


def claim(member: str, year: int, txn: str) -> dict[str, Any]:
    return {"member_id": member, "year": year, "transaction_id": txn}


def feed_year(lane, member: str = "M0001") -> int | None:
    members, _, _ = lane.member_changes(None, 500)
    return next(m for m in members if m["member_id"] == member).get("birthday_award_year")


def birthday_flags(central) -> list[dict[str, Any]]:
    return [r["payload"] for r in central.store.outbox(0, 100_000) if r["type"] == "member.birthday_repeated"]


def test_the_first_lane_holds_the_year_and_every_other_is_told_it_is_taken(central, lanes):
    one, two = lanes
    assert one.claim_birthday(claim("M0001", 2026, "T1"))["status"] == "awarded"
    assert one.claim_birthday(claim("M0001", 2026, "T1"))["status"] == "awarded"  # a retry: the same answer
    taken = two.claim_birthday(claim("M0001", 2026, "T9"))
    assert taken == {"member_id": "M0001", "year": 2026, "status": "taken", "code": "birthday_taken",
                     "message": taken["message"]} and taken["message"]
    assert two.claim_birthday(claim("M0001", 2027, "T10"))["status"] == "awarded"  # next year is free again
    assert two.claim_birthday(claim("M0002", 2026, "T11"))["status"] == "awarded"  # another member
    assert [(a["year"], a["lane"], a["transaction_id"]) for a in central.store.birthday_awards("M0001")] == [
        (2026, "S001/L01", "T1"), (2027, "S001/L02", "T10")]
    assert feed_year(one) == 2027  # the feed carries the member's last awarded year
    admin = requests.get(f"{central.url}/_admin/members/M0001", timeout=10).json()  # the member in wire shape
    assert admin["birthday_award_year"] == 2027


def test_an_accrual_naming_its_year_records_it_and_a_second_lanes_is_flagged_not_refused(central, lanes):
    one, two = lanes
    assert feed_year(one) is None and "birthday_award_year" not in json.dumps(one.member_changes(None, 500)[0])
    first = make_event(1, lane_id="L01", points={"points": 120}, birthday_award_year=2026)
    [result] = one.push_batch("b1", [first])
    assert (result.status, result.flag) == ("accepted", None)
    # both lanes offline: the second lane gave the bonus too; central takes the points and flags it
    second = make_event(1, lane_id="L02", points={"points": 130}, birthday_award_year=2026)
    [result] = two.push_batch("b2", [second])
    assert (result.status, result.code, result.flag) == ("accepted", None, "birthday_repeated")
    assert central.store.member("M0001")["balances"] == {"points": 1840 + 120 + 130}
    [flag] = birthday_flags(central)
    assert flag == {"member_id": "M0001", "year": 2026, "lane": "S001/L02", "seq": 1, "transaction_id": "T-L02-1",
                    "first_lane": "S001/L01", "first_transaction_id": "T-L01-1"}
    # the same batch again is a duplicate: not flagged twice
    assert [(r.status, r.flag) for r in two.push_batch("b2", [second])] == [("duplicate", None)]
    assert len(birthday_flags(central)) == 1
    # the lane that claimed online then pushes its accrual: its own year, no flag
    assert one.claim_birthday(claim("M0001", 2027, "T-L01-2"))["status"] == "awarded"
    [result] = one.push_batch("b3", [make_event(2, lane_id="L01", birthday_award_year=2027)])
    assert (result.status, result.flag) == ("accepted", None)
    assert feed_year(two) == 2027


def test_older_accruals_without_the_year_apply_as_before(central, lanes):
    one, _ = lanes
    [result] = one.push_batch("b1", [make_event(1, points={"points": 50})])
    assert (result.status, result.flag) == ("accepted", None)
    assert central.store.birthday_awards("M0001") == [] and feed_year(one) is None


@pytest.mark.parametrize("bad", [{"birthday_award_year": "2026"}, {"birthday_award_year": 1999},
                                 {"birthday_award_year": True}, {"birthday_award_year": 2026, "transaction_id": None}])
def test_an_accrual_with_a_year_that_is_not_one_is_malformed(central, lanes, bad):
    one, _ = lanes
    [result] = one.push_batch("b1", [make_event(1, **bad)])
    assert (result.status, result.code) == ("rejected", "malformed_event")
    assert central.store.birthday_awards("M0001") == []


def test_a_provisional_id_counts_as_its_member(central, lanes):
    one, two = lanes
    enrol = make_event(1, member_id="P-00000000000000b1", type="member_enrolled", transaction_id=None,
                       identifiers=["2900000000179"], points={"points": 0}, display_name="New M.",
                       provisional=True, birth_date="1990-11-24")
    [enrolled] = one.push_batch("b1", [enrol])
    assert enrolled.status == "accepted", central.store.events("S001", "L01")
    member_id = _member_of_alias(one, "P-00000000000000b1")
    assert one.claim_birthday(claim("P-00000000000000b1", 2026, "T1"))["status"] == "awarded"
    assert two.claim_birthday(claim(member_id, 2026, "T2"))["status"] == "taken"
    [result] = two.push_batch("b2", [make_event(1, lane_id="L02", member_id=member_id, birthday_award_year=2026)])
    assert (result.status, result.flag) == ("accepted", "birthday_repeated")
    assert [a["year"] for a in central.store.birthday_awards("P-00000000000000b1")] == [2026]


def _member_of_alias(lane, alias: str) -> str:
    members, _, _ = lane.member_changes(None, 500)
    return next(m["member_id"] for m in members if alias in m.get("aliases", ()))


@pytest.mark.parametrize("body", [b"", b"[]", b'{"member_id": "M0001", "year": 2026}',
                                  b'{"member_id": "", "year": 2026, "transaction_id": "T"}',
                                  b'{"member_id": "M0001", "year": "2026", "transaction_id": "T"}',
                                  b'{"member_id": "M0001", "year": 12026, "transaction_id": "T"}'])
def test_a_malformed_claim_is_a_400_and_holds_nothing(central, body):
    path = "/v1/lanes/S001/L01/birthday-awards"
    headers = signed_headers(SECRET, "S001", "L01", int(central.clock()), "POST", path, body)
    resp = requests.post(central.url + path, data=body, headers={**headers, "Content-Type": "application/json"},
                         timeout=10)
    assert resp.status_code == 400 and resp.json()["code"] == "malformed_birthday_claim", resp.text
    assert central.store.birthday_awards("M0001") == []


def test_a_lost_answer_is_found_again_by_the_retry_and_the_authoriser_stops_its_threads(central, clock):
    with make_client(central, clock=clock, timeout=(1.0, 0.5)) as lane:
        central.inject("birthday_awards", "applied_then_lost")
        with pytest.raises(CentralUnavailable):
            lane.claim_birthday(claim("M0001", 2026, "T1"))
        assert len(central.store.birthday_awards("M0001")) == 1  # held, the answer lost on the way
        assert lane.claim_birthday(claim("M0001", 2026, "T1"))["status"] == "awarded"
    authoriser = BurnAuthoriser(lambda: make_client(central, lane_id="L02", clock=clock), budget_s=5.0)
    try:
        assert authoriser.claim_birthday(claim("M0001", 2026, "T2")).result(timeout=10)["status"] == "taken"
    finally:
        authoriser.close()


def test_a_year_claimed_under_a_provisional_id_before_central_named_the_member_is_the_members(central, lanes):
    one, two = lanes
    assert one.claim_birthday(claim("P-00000000000000b2", 2026, "T1"))["status"] == "awarded"  # not known yet
    enrol = make_event(1, member_id="P-00000000000000b2", type="member_enrolled", transaction_id=None,
                       identifiers=["2900000000186"], points={"points": 0}, display_name="New N.", provisional=True)
    assert one.push_batch("b1", [enrol])[0].status == "accepted"
    member_id = _member_of_alias(one, "P-00000000000000b2")
    assert two.claim_birthday(claim(member_id, 2026, "T2"))["status"] == "taken"
    assert [(a["year"], a["lane"]) for a in central.store.birthday_awards(member_id)] == [(2026, "S001/L01")]
