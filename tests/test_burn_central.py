"""Burn authorisation at the reference central: check and reserve atomically, confirm by the outbox
event, expire what is never confirmed; vouchers registered from redemptions and valid at every lane.

Real HTTP on loopback to the reference central, real SQLite, the lane's real client.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from posd.sync.lane.authoriser import BurnAuthoriser
from posd.sync.lane.errors import CentralRequestRejected, CentralUnavailable, SyncError
from posd.sync.protocol import DECLINE_CODES, MAX_UNSYNCED_EVENTS, parse_authorisation, release_json, signed_headers
from posd.sync.protocol.errors import CentralProtocolError, RequestRejected
from tests.conftest import ENGINES
from tests.support.central_fixture import SECRET, default_seed, make_client, make_event

AT = "2026-11-24T09:15:00Z"


def redemption(auth: str, points: int, member: str = "M0001", **extra: Any) -> dict[str, Any]:
    return {"authorisation_id": auth, "kind": "redemption", "member_id": member, "occurred_at": AT,
            "points": {"points": points}, "reward_id": "free-coffee", **extra}


def use(auth: str, code: str, member: str | None = "M0001", once_per: str = "code") -> dict[str, Any]:
    return {"authorisation_id": auth, "kind": "voucher_use", "member_id": member, "occurred_at": AT,
            "voucher_code": code, "voucher_once_per": once_per}


def voucher(code: str, member: str = "M0001", expires: str = "2099-01-01T00:00:00Z") -> dict[str, Any]:
    return {"code": code, "member_id": member, "reward_id": "free-coffee",
            "title": {"en": "Free coffee", "pl": "Kawa gratis"},
            "benefit": {"kind": "free_item", "value_minor": None, "money": None, "percent": None, "sku": "COFFEE",
                        "applies_to": {"skus": [], "categories": []}, "category": None},
            "issued_at": AT, "expires_at": expires}


CENTRAL_ENGINES = ENGINES  # every test here that uses central's database runs on both engines
CENTRAL_ON_FAKE_CLOCK = True  # central and its clients run on the ``clock`` fixture, moved by hand


def states(central, member: str = "M0001") -> list[tuple[str, str]]:
    return sorted((r["authorisation_id"], r["state"]) for r in central.store.reservations(member))


# --- checking and reserving ------------------------------------------------------------------------------


def test_an_approval_reserves_and_a_retry_gets_the_same_reservation(central, lanes):
    one, _ = lanes
    first = one.authorise(redemption("redemption:R1", 1000))
    assert first["status"] == "approved" and first["available"] == {"points": 1840}
    again = one.authorise(redemption("redemption:R1", 1000))
    assert (again["status"], again["reservation_id"], again["expires_at"]) == \
        ("approved", first["reservation_id"], first["expires_at"])
    assert states(central) == [("redemption:R1", "open")]
    clash = one.authorise(redemption("redemption:R1", 900))
    assert (clash["status"], clash["code"]) == ("declined", "authorisation_conflict")


def test_the_balance_is_net_of_every_lanes_open_reservations(central, lanes):
    one, two = lanes
    assert one.authorise(redemption("redemption:R1", 1000))["status"] == "approved"
    declined = two.authorise(redemption("redemption:R1", 1000))  # the same POS id on another lane: its own
    assert (declined["status"], declined["code"], declined["available"]) == \
        ("declined", "insufficient_balance", {"points": 840})
    assert two.authorise(redemption("redemption:R2", 840))["status"] == "approved"
    assert one.authorise(redemption("redemption:R3", 1))["code"] == "insufficient_balance"


def test_the_lanes_own_events_central_has_not_received_count_once(central, lanes):
    one, _ = lanes
    one.push_batch("b1", [make_event(1, points={"points": 160}), make_event(2, points={"points": 500})])
    # 1840 + 160 + 500 = 2500 known; seq 2 is listed again by a lane that has not heard the ack: not twice
    unsynced = [{"seq": 3, "points": {"points": 300}}, {"seq": 2, "points": {"points": 500}}]
    assert one.authorise(redemption("redemption:R1", 2801, unsynced=unsynced))["available"] == {"points": 2800}
    assert one.authorise(redemption("redemption:R2", 2800, unsynced=unsynced))["status"] == "approved"


def test_unsynced_credits_in_a_currency_an_earlier_program_had_count(central, lanes):
    """A push takes a currency the program before had (a sale rung before the rename); a burn's
    authorisation counts the lane's unsynced credits in it alike, not insufficient_balance."""
    one, _ = lanes
    program, _ = central.store.program()
    central.store.set_program({**program, "version": program["version"] + "-next",
                               "currencies": [{**c, "code": "points2"} if c["code"] == "points" else c
                                              for c in program["currencies"]]})
    unsynced = [{"seq": 1, "points": {"points": 300}}]
    assert one.authorise(redemption("redemption:R1", 2140, unsynced=unsynced))["status"] == "approved"


def test_points_still_pending_are_not_spendable_at_central(central, lanes, clock):
    """A lot whose available_at is ahead counts in the published balance and not in what a burn
    may take: earned, redeemed at once, then returned would leave a voucher and a debt. The
    lane's unsynced credits still pending are not in its list either (posd.storage.entries)."""
    one, _ = lanes
    soon = datetime.fromtimestamp(clock.now + 3 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    one.push_batch("b1", [make_event(1, points={"points": 600},
                                     lots={"points": {"available_at": soon, "expires_at": None}})])
    member = next(m for m in central.store.member_changes("S001", 0, 100)[0] if m["member_id"] == "M0001")
    assert member["balances"]["points"] == 2440  # the feed still shows it: one number per currency
    declined = one.authorise(redemption("redemption:R1", 1841))
    assert (declined["status"], declined["code"], declined["available"]) == \
        ("declined", "insufficient_balance", {"points": 1840})
    clock.now += 3 * 86400 + 1  # its pending days are over
    assert one.authorise(redemption("redemption:R1", 2440))["status"] == "approved"


def test_members_central_refuses_and_members_it_does_not_know_yet(central, lanes):
    one, _ = lanes
    assert one.authorise(redemption("redemption:R2", 1, member="M0003"))["code"] == "member_ineligible"
    central.store.upsert_member({"member_id": "M0002", "status": "deleted"})
    assert one.authorise(redemption("redemption:R3", 1, member="M0002"))["code"] == "member_deleted"
    assert set(DECLINE_CODES) >= {"unknown_member", "member_ineligible", "member_deleted"}
    # enrolled at the lane, its events on their way: what they give, and nothing more
    assert one.authorise(redemption("redemption:R1", 1, member="M0404"))["code"] == "insufficient_balance"
    new = [{"seq": 7, "points": {"points": 250}}]
    assert one.authorise(redemption("redemption:R4", 251, member="M0404", unsynced=new))["code"] == \
        "insufficient_balance"
    assert one.authorise(redemption("redemption:R5", 250, member="M0404", unsynced=new))["status"] == "approved"
    # a voucher's use is a burn too: eligibility is checked at every burn (spent, or its reservation)
    assert one.authorise(use("voucher_use:C1:T", "C1", member="M0003"))["code"] == "member_ineligible"
    assert one.authorise(use("voucher_use:C2:T", "C2", member="M0002"))["code"] == "member_deleted"
    assert one.authorise(use("voucher_use:C3:T", "C3", member="M0001"))["status"] == "approved"


def test_a_rewards_daily_limit_counts_every_lane_and_offline_burns(central, lanes):
    one, two = lanes
    limit = {"per_member": 2, "since": "2026-11-23T23:00:00Z"}
    assert one.authorise(redemption("redemption:R1", 10, limit=limit))["status"] == "approved"
    # an offline redemption at lane 2 reaches central through the outbox: it counts too
    two.push_batch("b", [make_event(1, lane_id="L02", type="redemption", points={"points": -10},
                                    reward_id="free-coffee", authorisation_id="redemption:OFF")])
    assert one.authorise(redemption("redemption:R2", 10, limit=limit))["code"] == "reward_limit_reached"
    later = {"per_member": 2, "since": "2026-11-24T10:00:00Z"}  # a new day: nothing counted before it
    assert one.authorise(redemption("redemption:R3", 10, limit=later))["status"] == "approved"


def test_concurrent_authorisations_never_promise_more_than_the_balance(central, clock):
    clients = [make_client(central, lane_id=f"L{n:02d}", clock=clock) for n in range(1, 5)]
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: clients[n % 4].authorise(redemption(f"redemption:C{n}", 300)),
                                    range(16)))
    finally:
        for c in clients:
            c.close()
    approved = [a for a in answers if a["status"] == "approved"]
    assert len(approved) == 1840 // 300  # 6 of 16: never a seventh
    assert all(a["code"] == "insufficient_balance" for a in answers if a["status"] == "declined")


# --- confirming and expiring ---------------------------------------------------------------------------------


def test_the_outbox_event_confirms_its_reservation_and_its_points_are_debited_once(central, lanes):
    one, two = lanes
    one.authorise(redemption("redemption:R1", 1000))
    event = make_event(1, type="redemption", points={"points": -1000}, reward_id="free-coffee",
                       authorisation_id="redemption:R1", reservation_id="ignored-by-central",
                       voucher=voucher("VCONFIRM0001"))
    assert one.push_batch("b", [event])[0].status == "accepted"
    assert states(central) == [("redemption:R1", "confirmed")]
    assert central.store.member("M0001")["balances"] == {"points": 840}
    assert two.authorise(redemption("redemption:R9", 840))["status"] == "approved"  # not held twice


def test_a_second_event_under_an_authorisation_already_burnt_is_refused(central, lanes):
    """One burn per authorisation: a lane (not posd's: its ledger writes one event a request) that sent
    a second redemption under an authorisation_id its first event confirmed, with a new seq, event_id
    and voucher, was accepted. The member paid twice for one approval and held a second voucher; three
    uses of a single-use voucher under one authorisation were all taken. The second is
    authorisation_used now, applying nothing, whether the first was approved online or recorded
    offline."""
    one, two = lanes
    assert one.authorise(redemption("redemption:TWICE", 500))["status"] == "approved"
    first = make_event(1, type="redemption", points={"points": -500}, reward_id="free-coffee",
                       authorisation_id="redemption:TWICE", voucher=voucher("VTWICE000001"))
    again = make_event(2, type="redemption", points={"points": -500}, reward_id="free-coffee",
                       authorisation_id="redemption:TWICE", voucher=voucher("VTWICE000002"))
    assert [(r.status, r.code) for r in one.push_batch("b1", [first, again])] == [
        ("accepted", None), ("rejected", "authorisation_used")]
    assert central.store.member("M0001")["balances"] == {"points": 1340}
    assert two.voucher("VTWICE000002", None) is None and two.voucher("VTWICE000001", None) is not None
    offline = make_event(3, type="redemption", points={"points": -100}, reward_id="free-coffee",
                         authorisation_id="redemption:OFF", offline=True)
    offline_again = make_event(4, type="redemption", points={"points": -100}, reward_id="free-coffee",
                               authorisation_id="redemption:OFF", offline=True)
    assert one.push_batch("b2", [offline])[0].status == "accepted"
    assert one.push_batch("b3", [offline_again])[0].code == "authorisation_used"
    assert central.store.member("M0001")["balances"] == {"points": 1240}
    # a voucher used once, then twice more under the same authorisation
    assert one.authorise(use("voucher_use:VTWICE000001:T1", "VTWICE000001"))["status"] == "approved"
    uses = [make_event(seq, type="voucher_use", points={}, voucher_code="VTWICE000001", voucher_once_per="code",
                       authorisation_id="voucher_use:VTWICE000001:T1", transaction_id=f"T{seq}")
            for seq in (5, 6, 7)]
    assert [(r.status, r.code) for r in one.push_batch("b4", uses)] == [
        ("accepted", None), ("rejected", "authorisation_used"), ("rejected", "authorisation_used")]
    # the same event again is still a duplicate, not a refusal
    assert one.push_batch("b5", [first])[0].status == "duplicate"


def test_an_approval_that_comes_after_the_offline_event_holds_nothing(central, lanes):
    """The lane gave up waiting for central and recorded the burn offline; its event reached central
    before the slow approval did. The approval finds the burn done: no second hold on the member's
    points until the reservation's time to live (it declined the member's next burn meanwhile)."""
    one, two = lanes
    event = make_event(1, type="redemption", points={"points": -1000}, reward_id="free-coffee",
                       authorisation_id="redemption:LATE", offline=True, voucher=voucher("VLATE0001"))
    assert one.push_batch("b", [event])[0].status == "accepted"
    late = one.authorise(redemption("redemption:LATE", 1000))
    assert late["status"] == "approved"
    assert states(central) == [("redemption:LATE", "offline")]  # nothing open
    assert central.store.member("M0001")["balances"] == {"points": 840}
    assert two.authorise(redemption("redemption:R9", 840))["status"] == "approved"
    other = one.authorise(redemption("redemption:LATE", 1, member="M0002"))  # the same id, another burn
    assert (other["status"], other["code"]) == ("declined", "authorisation_conflict")


def test_an_approval_that_comes_after_an_offline_voucher_use_finds_it_done(central, lanes):
    """As a redemption: a voucher use recorded offline under its authorisation_id, the approval for
    that id coming after it is answered approved and holds nothing; the voucher stays used."""
    one, two = lanes
    issue(one, 1, "VLATEUSE0001")
    used = make_event(2, type="voucher_use", points={}, voucher_code="VLATEUSE0001", voucher_once_per="code",
                      authorisation_id="voucher_use:VLATEUSE0001:T1", offline=True)
    assert one.push_batch("u", [used])[0].status == "accepted"
    late = one.authorise(use("voucher_use:VLATEUSE0001:T1", "VLATEUSE0001"))
    assert late["status"] == "approved", late
    assert states(central) == [("event:1", "offline"), ("voucher_use:VLATEUSE0001:T1", "offline")]  # none open
    assert two.authorise(use("voucher_use:VLATEUSE0001:T2", "VLATEUSE0001"))["code"] == "voucher_used"
    assert one.authorise(use("voucher_use:VLATEUSE0001:T3", "VLATEUSE0001"))["code"] == "voucher_used"
    assert two.voucher("VLATEUSE0001", None)["used"] is True


def test_an_unconfirmed_reservation_expires_and_frees_its_points(central, lanes, clock):
    one, two = lanes
    one.authorise(redemption("redemption:R1", 1800))
    assert two.authorise(redemption("redemption:R2", 100))["code"] == "insufficient_balance"
    clock.now += 61  # past the 60 s time to live: the lane never confirmed
    assert two.authorise(redemption("redemption:R2", 100))["status"] == "approved"
    assert ("redemption:R1", "expired") in states(central)
    # the lane comes back and retries the same redemption: reserved again under the same id
    again = one.authorise(redemption("redemption:R1", 1740))
    assert (again["status"], again["code"] if "code" in again else None) == ("declined", "authorisation_conflict")
    assert one.authorise(redemption("redemption:R1", 1800))["code"] == "insufficient_balance"  # 100 held by L02
    assert one.authorise(redemption("redemption:R3", 1740))["status"] == "approved"


def test_an_event_after_its_reservation_expired_still_applies_once(central, lanes, clock):
    one, _ = lanes
    one.authorise(redemption("redemption:R1", 500))
    clock.now += 61
    event = make_event(1, type="redemption", points={"points": -500}, authorisation_id="redemption:R1")
    assert one.push_batch("b", [event])[0].status == "accepted"  # the burn happened: central takes it
    assert states(central) == [("redemption:R1", "confirmed")]
    assert central.store.member("M0001")["balances"] == {"points": 1340}


def test_a_released_reservation_frees_its_points_at_once_and_a_retry_reserves_again(central, lanes):
    """A lane whose own re-check refused a burn central approved gives the reservation back."""
    one, two = lanes
    one.authorise(redemption("redemption:R1", 1800))
    assert two.authorise(redemption("redemption:R2", 100))["code"] == "insufficient_balance"
    assert one.release("redemption:R1") == {"authorisation_id": "redemption:R1", "state": "released"}
    assert one.release("redemption:R1")["state"] == "released"  # asked again: the same answer
    assert ("redemption:R1", "released") in states(central)
    assert two.authorise(redemption("redemption:R2", 100))["status"] == "approved"  # no TTL to wait out
    assert one.release("redemption:R404")["state"] == "unknown"
    assert two.release("redemption:R1")["state"] == "unknown"  # another lane cannot release lane 1's
    # the POS retries the same redemption later: reserved again under the same id, and confirmed by its event
    assert one.authorise(redemption("redemption:R1", 1700))["code"] == "authorisation_conflict"
    assert one.authorise(redemption("redemption:R1", 1800))["code"] == "insufficient_balance"  # 100 held by L02
    assert two.release("redemption:R2")["state"] == "released"
    assert one.authorise(redemption("redemption:R1", 1800))["status"] == "approved"
    event = make_event(1, type="redemption", points={"points": -1800}, authorisation_id="redemption:R1")
    assert one.push_batch("b", [event])[0].status == "accepted"
    assert one.release("redemption:R1")["state"] == "confirmed"  # a recorded burn is never given back
    assert ("redemption:R1", "confirmed") in states(central)
    assert central.store.member("M0001")["balances"] == {"points": 40}


def test_a_release_that_overtakes_its_slow_authorisation_leaves_nothing_held(central, lanes, clock):
    """A lane stopped reading a slow authorisation after 5 s and gave it back (it had refused the burn
    offline): central answered the release unknown, having not read the authorisation yet, then approved
    it, and the points stayed held at every lane for the reservation's 900 s, for a burn never made."""
    one, two = lanes
    asked = clock.now
    clock.advance(5)
    assert one.release("redemption:R1")["state"] == "unknown"
    clock.now = asked  # the authorisation, signed before the release, read by central after it
    late = one.authorise(redemption("redemption:R1", 1800))
    assert (late["status"], late["code"]) == ("declined", "authorisation_conflict"), late
    clock.now = asked + 5
    assert two.authorise(redemption("redemption:R2", 1840))["status"] == "approved"  # nothing held
    assert two.release("redemption:R2")["state"] == "released"
    clock.advance(1)  # the POS retries the burn after the release: it reserves as any retry does
    assert one.authorise(redemption("redemption:R1", 1800))["status"] == "approved"
    assert one.release("redemption:R1")["state"] == "released"


def test_a_replayed_release_frees_nothing_the_pos_reserved_after_it(central, lanes, clock):
    """A release signed before the authorisation that made the reservation (a byte-for-byte replay within
    the clock window, or a release delayed past the POS's retry) gave back an earlier reservation of the
    id: the new one stays open, holding its points at every lane, until its own lane gives it back."""
    one, two = lanes
    assert one.authorise(redemption("redemption:R1", 1800))["status"] == "approved"
    released_at = int(clock.now)
    assert one.release("redemption:R1")["state"] == "released"
    clock.advance(2)
    assert one.authorise(redemption("redemption:R1", 1800))["status"] == "approved"  # the POS retries
    path, body = "/v1/lanes/S001/L01/releases", release_json("redemption:R1")
    headers = signed_headers(SECRET, "S001", "L01", released_at, "POST", path, body)
    replay = requests.post(central.url + path, data=body, headers=headers, timeout=5)
    assert (replay.status_code, replay.json()) == (200, {"authorisation_id": "redemption:R1", "state": "open"})
    assert two.authorise(redemption("redemption:R2", 100))["code"] == "insufficient_balance"  # still held
    assert one.release("redemption:R1")["state"] == "released"  # its lane's own release, signed after it
    assert two.authorise(redemption("redemption:R2", 100))["status"] == "approved"


def test_a_release_replayed_in_the_second_it_was_signed_frees_nothing_the_retry_reserved(central, lanes, clock):
    """Signed timestamps are whole seconds: the release, the POS's retry and the replay all in one second.
    The replay is the release that gave the earlier reservation back, not one of the retry's; a release of
    the retry signed in that same second is the same request, so the reservation waits for a release
    signed later (or its expiry): held a while longer, never spent twice."""
    one, two = lanes
    clock.now = float(int(clock.now))
    second = int(clock.now)
    assert one.authorise(redemption("redemption:R1", 1800))["status"] == "approved"
    assert one.release("redemption:R1")["state"] == "released"
    assert one.authorise(redemption("redemption:R1", 1800))["status"] == "approved"  # the POS retries
    path, body = "/v1/lanes/S001/L01/releases", release_json("redemption:R1")
    headers = signed_headers(SECRET, "S001", "L01", second, "POST", path, body)
    replay = requests.post(central.url + path, data=body, headers=headers, timeout=5)
    assert (replay.status_code, replay.json()["state"]) == (200, "open")
    assert two.authorise(redemption("redemption:R2", 100))["code"] == "insufficient_balance"
    assert one.release("redemption:R1")["state"] == "open"  # the same second: that release again
    clock.advance(1)
    assert one.release("redemption:R1")["state"] == "released"
    assert two.authorise(redemption("redemption:R2", 100))["status"] == "approved"
    assert two.release("redemption:R2")["state"] == "released"
    # a release that reached central before its authorisation (unknown then), the retry and the replay
    clock.advance(1)
    second = int(clock.now)
    assert one.release("redemption:R3")["state"] == "unknown"
    assert one.authorise(redemption("redemption:R3", 1800))["status"] == "approved"  # signed in that second
    headers = signed_headers(SECRET, "S001", "L01", second, "POST", path, release_json("redemption:R3"))
    replay = requests.post(central.url + path, data=release_json("redemption:R3"), headers=headers, timeout=5)
    assert (replay.status_code, replay.json()["state"]) == (200, "open")
    assert two.authorise(redemption("redemption:R4", 100))["code"] == "insufficient_balance"


def test_a_released_voucher_hold_is_free_again_and_back_in_the_feed(central, lanes, clock):
    one, two = lanes
    issue(one, 1, "VFREE0000001")
    assert two.authorise(use("voucher_use:VFREE0000001:T2", "VFREE0000001"))["status"] == "approved"
    _, cursor, _ = one.member_changes(None, 1000)
    assert one.authorise(use("voucher_use:VFREE0000001:T1", "VFREE0000001"))["code"] == "voucher_used"
    assert two.release("voucher_use:VFREE0000001:T2")["state"] == "released"
    changed, _, _ = one.member_changes(cursor, 1000)
    assert [v["code"] for m in changed if m["member_id"] == "M0001" for v in m.get("vouchers", [])] == \
        ["VFREE0000001"]
    assert one.authorise(use("voucher_use:VFREE0000001:T1", "VFREE0000001"))["status"] == "approved"
    clock.now += 61
    assert one.release("voucher_use:VFREE0000001:T1")["state"] == "expired"


def test_a_retry_after_the_ledger_was_replaced_is_counted_once(central, clock):
    """A POS retrying a sale, a return or a redemption that the lane's lost ledger.db had answered reaches
    central under the lane's new identity (L01.2, then L01.3): central counts it once, refusing the
    event (counted_by_earlier_identity, quarantined at the lane) and declining the redemption's
    authorisation (authorisation_conflict: the lane answers redemption_id_conflict), also after the lane
    gave it back unread. New sales and returns, a transaction_id the POS numbers again at another moment,
    the same transaction_id for another member, and another lane's own numbering count as usual."""
    with make_client(central, clock=clock) as old, make_client(central, lane_id="L01.2", clock=clock) as new, \
            make_client(central, lane_id="L01.3", clock=clock) as newer, \
            make_client(central, lane_id="L02", clock=clock) as other:
        assert old.authorise(redemption("redemption:R1", 1000))["status"] == "approved"
        first = [make_event(1, points={"points": 160}, transaction_id="T-7"),
                 make_event(2, type="redemption", points={"points": -1000}, reward_id="free-coffee",
                            authorisation_id="redemption:R1", voucher=voucher("VREPLACED001")),
                 make_event(3, type="return", points={"points": -60}, transaction_id="T-7", return_id="RT-7"),
                 make_event(4, points={"points": 7}, transaction_id="T-9", occurred_at="2025-11-24T09:15:00Z"),
                 make_event(5, type="redemption", points={"points": -100}, reward_id="free-coffee", offline=True,
                            authorisation_id="redemption:R2", voucher=voucher("VREPLACED003"))]
        assert [r.status for r in old.push_batch("b", first)] == ["accepted"] * 5
        assert central.store.member("M0001")["balances"] == {"points": 1840 + 160 - 1000 - 60 + 7 - 100}

        again = [make_event(1, lane_id="L01.2", points={"points": 160}, transaction_id="T-7"),
                 make_event(2, lane_id="L01.2", points={"points": 20}, transaction_id="T-8"),
                 make_event(3, lane_id="L01.2", member_id="M0002", points={"points": 30}, transaction_id="T-7"),
                 make_event(4, lane_id="L01.2", type="return", points={"points": -60}, transaction_id="T-7",
                            return_id="RT-7"),
                 make_event(5, lane_id="L01.2", type="return", points={"points": -10}, transaction_id="T-7",
                            return_id="RT-7b"),
                 make_event(6, lane_id="L01.2", points={"points": 9}, transaction_id="T-9")]  # numbered again
        assert [(r.status, r.code) for r in new.push_batch("b", again)] == [
            ("rejected", "counted_by_earlier_identity"), ("accepted", None), ("accepted", None),
            ("rejected", "counted_by_earlier_identity"), ("accepted", None), ("accepted", None)]
        retried = new.authorise(redemption("redemption:R1", 1000))
        assert (retried["status"], retried["code"]) == ("declined", "authorisation_conflict")
        assert retried["message"].endswith("earlier identity L01"), retried["message"]
        assert new.release("redemption:R2")["state"] == "unknown"  # given back before central read it
        assert new.authorise(redemption("redemption:R2", 100))["code"] == "authorisation_conflict"
        offline = make_event(7, lane_id="L01.2", type="redemption", points={"points": -1000},
                             reward_id="free-coffee", authorisation_id="redemption:R1", offline=True,
                             voucher=voucher("VREPLACED002"))
        assert [(r.status, r.code) for r in new.push_batch("c", [offline])] == [
            ("rejected", "counted_by_earlier_identity")]
        # the voucher that copy issued is void: used at once (offline), the use is refused, not a second voucher
        spent = make_event(8, lane_id="L01.2", type="voucher_use", points={}, transaction_id="T-v",
                           voucher_code="VREPLACED002", voucher_once_per="code")
        assert [(r.status, r.code) for r in new.push_batch("c2", [spent])] == [("rejected", "voucher_used")]
        assert new.authorise(use("voucher_use:VREPLACED002:T-w", "VREPLACED002"))["code"] == "voucher_used"
        balance = 1840 + 160 - 1000 - 60 + 7 - 100 + 20 - 10 + 9
        assert central.store.member("M0001")["balances"] == {"points": balance}

        # two replacements on: L01.3 knows both earlier histories
        # (the same instant written otherwise, as another platform's lane may: the same sale)
        spelt = make_event(3, lane_id="L01.3", points={"points": 7}, transaction_id="T-9",
                           occurred_at="2025-11-24T09:15:00.000+00:00")
        assert [r.code for r in newer.push_batch("d", [
            make_event(1, lane_id="L01.3", points={"points": 160}, transaction_id="T-7"),
            make_event(2, lane_id="L01.3", points={"points": 20}, transaction_id="T-8"), spelt])] == [
            "counted_by_earlier_identity", "counted_by_earlier_identity", "counted_by_earlier_identity"]
        # another lane numbers its own sales: the same transaction_id there is its own sale
        assert other.push_batch("e", [make_event(1, lane_id="L02", points={"points": 5}, transaction_id="T-7")]
                                )[0].status == "accepted"
        assert central.store.member("M0001")["balances"] == {"points": balance + 5}
        assert central.store.member("M0002")["balances"] == {"points": 420 + 30}
        assert other.authorise(redemption("redemption:R1", 500))["status"] == "approved"


# --- vouchers at every lane ---------------------------------------------------------------------------------


def issue(lane, seq: int, code: str, member: str = "M0001", **kw: Any) -> None:
    event = make_event(seq, lane_id=lane.lane_id, member_id=member, type="redemption", points={"points": -10},
                       reward_id="free-coffee", voucher=voucher(code, member, **kw))
    assert lane.push_batch(f"b{seq}", [event])[0].status == "accepted"


def test_the_voucher_an_approved_redemption_will_issue_is_known_everywhere_at_once(central, lanes, clock):
    """Registered with central's approval, pending: every lane finds it and may use it before the
    issuing lane's event arrives. Not in the member's feed until then; a retry's voucher replaces the
    one asked with before; gone when its reservation is released or expires; the event makes it the
    registered voucher."""
    one, two = lanes
    asked = one.authorise(redemption("redemption:RP1", 300, voucher=voucher("VPENDING0001")))
    assert asked["status"] == "approved"
    assert two.voucher("VPENDING0001", None)["voucher"]["issued_by"] == "S001/L01"
    assert "vouchers" not in {m["member_id"]: m for m in two.member_changes(None, 1000)[0]}["M0001"]
    again = one.authorise(redemption("redemption:RP1", 300, voucher=voucher("VPENDING0002")))  # the lane's retry
    assert again["reservation_id"] == asked["reservation_id"]
    assert two.voucher("VPENDING0001", None) is None and two.voucher("VPENDING0002", None) is not None
    assert two.authorise(use("voucher_use:VPENDING0002:T1", "VPENDING0002"))["status"] == "approved"
    assert one.authorise(use("voucher_use:VPENDING0002:T2", "VPENDING0002"))["code"] == "voucher_used"
    event = make_event(1, type="redemption", points={"points": -300}, reward_id="free-coffee",
                       voucher=voucher("VPENDING0002"), authorisation_id="redemption:RP1")
    assert one.push_batch("b1", [event])[0].status == "accepted"
    assert two.voucher("VPENDING0002", None)["voucher"]["issued_by"] == "S001/L01"
    assert states(central) == [("redemption:RP1", "confirmed"), ("voucher_use:VPENDING0002:T1", "open")]
    # released: never issued, so unknown again
    assert one.authorise(redemption("redemption:RP2", 300, voucher=voucher("VPENDING0003")))["status"] == "approved"
    assert two.voucher("VPENDING0003", None) is not None
    assert one.release("redemption:RP2")["state"] == "released"
    assert two.voucher("VPENDING0003", None) is None
    # expired: the same
    assert one.authorise(redemption("redemption:RP3", 300, voucher=voucher("VPENDING0004")))["status"] == "approved"
    clock.advance(3600)
    assert two.voucher("VPENDING0004", None) is None
    # a member central does not know yet: its event registers the voucher, as before
    unknown = one.authorise(redemption("redemption:RP4", 10, member="P-0000000000000abc",
                                       voucher=voucher("VPENDING0005", "P-0000000000000abc"),
                                       unsynced=[{"seq": 7, "points": {"points": 50}}]))
    assert unknown["status"] == "approved" and two.voucher("VPENDING0005", None) is None


def test_a_voucher_pending_under_one_lanes_approval_is_not_taken_by_another_lanes_redemption(central, lanes):
    """Another lane's redemption (another member's) issuing the code of a voucher still pending under an
    approval took the code over: the approved lane's event was then voucher_code_taken and its member's
    printed voucher was the other's. The first approved keeps it; the other is voucher_code_taken and
    debits nothing."""
    one, two = lanes
    assert one.authorise(redemption("redemption:RC1", 10, voucher=voucher("VCLASH000001")))["status"] == "approved"
    before = central.store.member("M0002")["balances"]
    taken = make_event(1, lane_id="L02", member_id="M0002", type="redemption", points={"points": -10},
                       reward_id="free-coffee", voucher=voucher("VCLASH000001", "M0002"))
    assert [(r.status, r.code) for r in two.push_batch("t", [taken])] == [("rejected", "voucher_code_taken")]
    assert central.store.member("M0002")["balances"] == before
    # asked online by the other lane too: its event is refused the same
    assert two.authorise(redemption("redemption:RC2", 10, member="M0002",
                                    voucher=voucher("VCLASH000001", "M0002")))["status"] == "approved"
    again = make_event(2, lane_id="L02", member_id="M0002", type="redemption", points={"points": -10},
                       reward_id="free-coffee", voucher=voucher("VCLASH000001", "M0002"),
                       authorisation_id="redemption:RC2")
    assert two.push_batch("t2", [again])[0].code == "voucher_code_taken"
    issued = make_event(1, type="redemption", points={"points": -10}, reward_id="free-coffee",
                        voucher=voucher("VCLASH000001"), authorisation_id="redemption:RC1")
    assert one.push_batch("b1", [issued])[0].status == "accepted"
    assert two.voucher("VCLASH000001", None)["voucher"]["member_id"] == "M0001"


def test_a_voucher_pending_under_the_lanes_earlier_id_is_its_own(central, lanes, clock):
    """Asked under L01 before the lane found central holding another history for it (it syncs as L01.2
    from then on): the event under L01.2 registers the voucher its own approval left pending."""
    one, _ = lanes
    assert one.authorise(redemption("redemption:RI1", 10, voucher=voucher("VINCARN00001")))["status"] == "approved"
    with make_client(central, lane_id="L01.2", clock=clock) as successor:
        issued = make_event(1, lane_id="L01.2", type="redemption", points={"points": -10}, reward_id="free-coffee",
                            voucher=voucher("VINCARN00001"), authorisation_id="redemption:RI1")
        assert successor.push_batch("i1", [issued])[0].status == "accepted"
        clock.advance(3600)  # the reservation asked under L01 expires: the voucher issued stays
        assert successor.voucher("VINCARN00001", None)["voucher"]["issued_by"] == "S001/L01.2"


def test_a_voucher_from_a_redemption_is_known_everywhere_and_used_once(central, lanes):
    one, two = lanes
    issue(one, 1, "VANYLANE0001")
    found = two.voucher("VANYLANE0001", None)
    assert found["used"] is False and found["voucher"]["issued_by"] == "S001/L01"
    assert found["voucher"]["benefit"]["sku"] == "COFFEE"
    feed = {m["member_id"]: m for m in two.member_changes(None, 1000)[0]}
    assert [v["code"] for v in feed["M0001"]["vouchers"]] == ["VANYLANE0001"]
    assert "vouchers" not in feed["M0002"]  # only members who hold one carry the field
    # lane 2 uses it (held), lane 1 is refused while the hold lasts and once it is used
    assert two.authorise(use("voucher_use:VANYLANE0001:T2", "VANYLANE0001"))["status"] == "approved"
    assert one.authorise(use("voucher_use:VANYLANE0001:T1", "VANYLANE0001"))["code"] == "voucher_used"
    assert two.voucher("VANYLANE0001", None)["used"] is True
    used = make_event(1, lane_id="L02", type="voucher_use", points={}, voucher_code="VANYLANE0001",
                      voucher_once_per="code", authorisation_id="voucher_use:VANYLANE0001:T2")
    assert two.push_batch("u", [used])[0].status == "accepted"
    cursor = two.member_changes(None, 1000)[1]
    assert "vouchers" not in central.store.member("M0001")
    offline_use = make_event(2, type="voucher_use", points={}, voucher_code="VANYLANE0001", voucher_once_per="code")
    assert (one.push_batch("x", [offline_use])[0].code) == "voucher_used"  # quarantined at lane 1
    assert two.member_changes(cursor, 1000)[0] == []  # nothing changed since


def test_a_pushed_use_of_another_members_voucher_is_refused_as_an_authorisation_is(central, lanes):
    """A voucher is its member's alone: a use pushed naming another member (an old or foreign lane,
    offline) is rejected voucher_other_member, as central declines the same use asked online, and the
    voucher stays free for its member. Its member named by a provisional id central mapped is its member."""
    one, two = lanes
    issue(one, 1, "VOWNER000001")
    asked = two.authorise(use("voucher_use:VOWNER000001:T0", "VOWNER000001", member="M0002"))
    assert (asked["status"], asked["code"]) == ("declined", "voucher_other_member")
    other = make_event(1, lane_id="L02", member_id="M0002", type="voucher_use", points={},
                       voucher_code="VOWNER000001", voucher_once_per="code")
    assert two.push_batch("o1", [other])[0].code == "voucher_other_member"
    assert two.voucher("VOWNER000001", None)["used"] is False
    enrolled = make_event(2, lane_id="L02", member_id="P-L02-1", type="member_enrolled", points={},
                          provisional=True, identifiers=["2900000099991"])
    assert two.push_batch("o2", [enrolled])[0].status == "accepted"
    issue(two, 3, "VOWNER000002", member="P-L02-1")
    own = make_event(4, lane_id="L02", member_id="P-L02-1", type="voucher_use", points={},
                     voucher_code="VOWNER000002", voucher_once_per="code")
    assert two.push_batch("o3", [own])[0].status == "accepted"
    mine = make_event(2, member_id="M0001", type="voucher_use", points={}, voucher_code="VOWNER000001",
                      voucher_once_per="code")
    assert one.push_batch("o4", [mine])[0].status == "accepted"
    assert two.voucher("VOWNER000001", None)["used"] is True


def test_an_erased_members_voucher_is_unknown_to_every_lane(central, lanes):
    """Central forgets an erased member for lanes: its vouchers are unknown_voucher, as the member is."""
    one, two = lanes
    issue(one, 1, "VERASED00001", member="M0002")
    assert two.voucher("VERASED00001", None)["voucher"]["member_id"] == "M0002"
    central.store.upsert_member({"member_id": "M0002", "status": "deleted"})
    assert two.voucher("VERASED00001", None) is None
    assert two.voucher("VERASED00001", "M0002") is None


def test_a_pushed_use_is_keyed_as_central_knows_the_code_not_as_the_event_claims(central, lanes):
    """A use pushed by a lane (offline, or an old or foreign one) of a voucher in central's registry is
    once per code whatever voucher_once_per it claims and however the code is typed; a program coupon
    follows its kind; an unknown voucher_once_per is malformed."""
    one, two = lanes
    issue(one, 1, "VPASH00000001")
    first = make_event(1, lane_id="L02", type="voucher_use", points={}, voucher_code="VPASH00000001",
                       voucher_once_per="code")
    assert two.push_batch("p1", [first])[0].status == "accepted"
    again = [make_event(seq, lane_id="L02", type="voucher_use", points={}, member_id=member, voucher_code=code,
                        voucher_once_per=once_per)
             for seq, member, code, once_per in ((2, "M0002", "VPASH00000001", "member"),
                                                 (3, "M0001", "vpash-0000-0001", "code"),
                                                 (4, "M0001", "VPASHOOOOOOOI", "member"))]
    assert [r.code for r in two.push_batch("p2", again)] == ["voucher_other_member", "voucher_used", "voucher_used"]
    odd = make_event(5, lane_id="L02", type="voucher_use", points={}, voucher_code="VPASH00000001",
                     voucher_once_per="lane")
    assert two.push_batch("p3", [odd])[0].code == "malformed_event"


def _seed_with_coupon() -> dict[str, Any]:
    seed = default_seed()
    seed["program"]["coupons"] = [{"code": "STAFF20", "kind": "campaign", "title": {"en": "Staff 20%"},
                                   "percent": 20, "category": "staff"}]
    return seed


def _seed_with_personal_coupon() -> dict[str, Any]:
    seed = default_seed()
    seed["program"]["coupons"] = [{"code": "M1-CAKE", "kind": "personal", "member_id": "M0001",
                                   "title": {"en": "Cake"}, "percent": 50}]
    return seed


@pytest.mark.parametrize("central_seed", [_seed_with_personal_coupon()])
def test_a_personal_coupon_is_used_by_its_member_alone_at_central(central, lanes):
    """Central approved another member's (or no member's) use of a program's personal coupon and took
    the event: the coupon's own member was then refused voucher_used."""
    one, two = lanes
    for member in ("M0002", None):
        asked = two.authorise(use(f"voucher_use:M1-CAKE:{member}", "m1-cake", member))
        assert (asked["status"], asked["code"]) == ("declined", "voucher_other_member"), asked
    other = make_event(1, lane_id="L02", member_id="M0002", type="voucher_use", points={}, voucher_code="M1-CAKE",
                       voucher_once_per="code")
    assert two.push_batch("o", [other])[0].code == "voucher_other_member"
    assert one.authorise(use("voucher_use:M1-CAKE:T1", "M1-CAKE"))["status"] == "approved"
    mine = make_event(1, type="voucher_use", points={}, voucher_code="M1-CAKE", voucher_once_per="code",
                      authorisation_id="voucher_use:M1-CAKE:T1")
    assert one.push_batch("m", [mine])[0].status == "accepted"


@pytest.mark.parametrize("central_seed", [_seed_with_coupon()])
def test_a_redemption_never_issues_a_voucher_under_a_coupons_code_or_one_no_lookup_finds(central, lanes):
    """A redemption (a buggy or foreign lane's) whose voucher carried a program coupon's code registered
    that coupon as one member's voucher: every other member was refused it from then on. One under a
    lane voucher's code written other than as issued registered a voucher no lookup found. Both are
    malformed (the event) or malformed_authorisation (asked online), and the coupon stays everyone's."""
    one, two = lanes
    for seq, code in enumerate(("STAFF20", "staff20", "v7wq-gses-f03xt"), start=1):
        event = make_event(seq, lane_id="L01", member_id="M0001", type="redemption", points={"points": -10},
                           reward_id="free-coffee", voucher=voucher(code))
        assert one.push_batch(f"c{seq}", [event])[0].code == "malformed_event", code
        with pytest.raises(CentralRequestRejected) as refused:
            one.authorise(redemption(f"redemption:C{seq}", 10, voucher=voucher(code)))
        assert (refused.value.status, refused.value.code) == (400, "malformed_authorisation"), code
    assert two.voucher("STAFF20", "M0002")["voucher"] is None  # the program's coupon, no one's voucher
    assert two.authorise(use("voucher_use:STAFF20:T2", "STAFF20", "M0002", "member"))["status"] == "approved"
    assert two.voucher("V7WQGSESF03XT", None) is None
    issue(one, 4, "V7WQGSESF03XT")  # as issued: registered, found however it is typed
    assert two.voucher("v7wq-gses-f03xt", None)["voucher"]["member_id"] == "M0001"


def test_a_redemption_whose_voucher_code_another_voucher_has_is_refused_and_debits_nothing(central, lanes):
    """A second redemption issuing a code central had registered for another member's voucher was
    accepted: the member paid 10 points for a voucher no lane honours (its uses were the first
    member's). It is voucher_code_taken now, applying nothing; an event whose voucher_code is not its
    voucher's code is malformed (the code it names was never issued)."""
    one, two = lanes
    issue(one, 1, "VTAKEN000001")
    before = central.store.member("M0002")["balances"]
    again = make_event(1, lane_id="L02", member_id="M0002", type="redemption", points={"points": -10},
                       reward_id="free-coffee", voucher_code="VTAKEN000001", voucher=voucher("VTAKEN000001", "M0002"))
    assert [(r.status, r.code) for r in two.push_batch("t", [again])] == [("rejected", "voucher_code_taken")]
    assert central.store.member("M0002")["balances"] == before
    assert two.voucher("VTAKEN000001", None)["voucher"]["member_id"] == "M0001"
    split = make_event(2, lane_id="L02", member_id="M0002", type="redemption", points={"points": -10},
                       reward_id="free-coffee", voucher_code="VSPLIT000001", voucher=voucher("VSPLIT000002", "M0002"))
    assert two.push_batch("s", [split])[0].code == "malformed_event"
    assert two.voucher("VSPLIT000002", None) is None and central.store.member("M0002")["balances"] == before


def test_an_authorisation_keys_a_use_as_central_knows_the_code_not_as_the_lane_claims(central, lanes):
    """A lane's voucher held once per code at one lane and "once per member" at another was held
    twice, and once used, asked for again per member, approved a second time."""
    one, two = lanes
    issue(one, 1, "VKEY00000001")
    assert one.authorise(use("voucher_use:VKEY00000001:T1", "VKEY00000001"))["status"] == "approved"
    claimed = use("voucher_use:VKEY00000001:T2", "VKEY00000001", once_per="member")
    assert two.authorise(claimed)["code"] == "voucher_used"
    used = make_event(2, type="voucher_use", points={}, voucher_code="VKEY00000001", voucher_once_per="code",
                      authorisation_id="voucher_use:VKEY00000001:T1")
    assert one.push_batch("u", [used])[0].status == "accepted"
    assert two.authorise({**claimed, "authorisation_id": "voucher_use:VKEY00000001:T3"})["code"] == "voucher_used"


def test_a_voucher_hold_that_expires_is_free_again_and_back_in_the_feed(central, lanes, clock):
    one, two = lanes
    issue(one, 1, "VHOLD0000001")
    assert two.authorise(use("voucher_use:VHOLD0000001:T2", "VHOLD0000001"))["status"] == "approved"
    _, cursor, _ = one.member_changes(None, 1000)
    assert "vouchers" not in central.store.member("M0001")
    clock.now += 61
    changed, _, _ = one.member_changes(cursor, 1000)
    assert [v["code"] for m in changed if m["member_id"] == "M0001" for v in m.get("vouchers", [])] == \
        ["VHOLD0000001"]
    assert one.authorise(use("voucher_use:VHOLD0000001:T1", "VHOLD0000001"))["status"] == "approved"
    late = make_event(1, lane_id="L02", type="voucher_use", points={}, voucher_code="VHOLD0000001",
                      voucher_once_per="code", authorisation_id="voucher_use:VHOLD0000001:T2")
    assert two.push_batch("late", [late])[0].code == "voucher_used"  # lane 1 holds it now


def test_registry_refusals_and_campaign_coupons(central, lanes):
    one, two = lanes
    issue(one, 1, "VOLD00000001", expires="2000-01-01T00:00:00Z")
    issue(one, 2, "VANNA0000001")
    assert two.authorise(use("voucher_use:VOLD00000001:T", "VOLD00000001"))["code"] == "voucher_expired"
    assert two.authorise(use("voucher_use:VANNA0000001:T", "VANNA0000001", member="M0002"))["code"] == \
        "voucher_other_member"
    # a campaign coupon central never registered: once per member, at any lane
    assert one.authorise(use("voucher_use:WELCOME:T1", "WELCOME", "M0001", "member"))["status"] == "approved"
    assert two.authorise(use("voucher_use:WELCOME:T2", "WELCOME", "M0002", "member"))["status"] == "approved"
    assert two.authorise(use("voucher_use:WELCOME:T3", "WELCOME", "M0001", "member"))["code"] == "voucher_used"
    assert two.voucher("NEVERSEEN", None) is None


# --- the wire ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"kind": "redemption"}',
    json.dumps(redemption("a", -5)).encode(), json.dumps(redemption("a", 5, member=None)).encode(),
    json.dumps({**redemption("a", 5), "kind": "refund"}).encode(),
    json.dumps({**redemption("a", 5), "occurred_at": "yesterday"}).encode(),
    json.dumps({**redemption("a", 5), "limit": {"per_member": 0, "since": AT}}).encode(),
    json.dumps(use("a", "X" * 65)).encode(), json.dumps(use("a", "C", None, "member")).encode(),
    json.dumps({**redemption("a", 5), "unsynced": [{"seq": 0, "points": {}}]}).encode(),
    json.dumps({**redemption("a", 5), "unsynced": [{"seq": n + 1, "points": {}}
                                                   for n in range(MAX_UNSYNCED_EVENTS + 1)]}).encode(),
    json.dumps({**redemption("a", 5), "voucher": {"code": "VX", "title": "t", "benefit": {"kind": "gift"}}}).encode(),
    json.dumps({**redemption("a", 5), "voucher": "VPENDING0001"}).encode(),
    json.dumps({**use("a", "VPENDING0001"), "voucher": voucher("VFORGED00001")}).encode(),  # a use names a code
    json.dumps({**use("a", "VPENDING0001"), "voucher": "x"}).encode(),
])
def test_a_malformed_authorisation_is_a_400_and_reserves_nothing(central, body):
    with pytest.raises(RequestRejected) as err:
        parse_authorisation(body)
    assert err.value.code == "malformed_authorisation"
    path = "/v1/lanes/S001/L01/authorisations"
    headers = signed_headers(SECRET, "S001", "L01", int(central.clock()), "POST", path, body)
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_authorisation")
    assert central.store.reservations("M0001") == []


def test_an_authorisation_in_a_currency_no_program_had_is_a_400_and_reserves_nothing(central):
    """No balance holds such a currency, as no event may move it (bad_points): a lane bug, not a short
    balance. A currency of the program in force beside it changes nothing."""
    body = json.dumps({**redemption("redemption:G1", 5), "points": {"points": 5, "gold": 1}}).encode()
    path = "/v1/lanes/S001/L01/authorisations"
    headers = signed_headers(SECRET, "S001", "L01", int(central.clock()), "POST", path, body)
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_authorisation")
    assert "'gold'" in resp.json()["message"]
    assert central.store.reservations("M0001") == []


def test_an_unsigned_authorisation_is_refused(central):
    resp = requests.post(central.url + "/v1/lanes/S001/L01/authorisations", json=redemption("a", 1), timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (401, "missing_signature")


def test_faults_delay_refuse_and_lose_the_answer(central, clock):
    with make_client(central, clock=clock, timeout=(1.0, 0.5)) as lane:
        central.inject("authorise", "slow", delay=1.5)
        with pytest.raises(CentralUnavailable):  # no answer within the client's budget
            lane.authorise(redemption("redemption:R1", 100), timeout=0.5)
        central.inject("authorise", "503")
        with pytest.raises(CentralUnavailable):
            lane.authorise(redemption("redemption:R2", 100))
        central.inject("authorise", "applied_then_lost")
        with pytest.raises(CentralUnavailable):
            lane.authorise(redemption("redemption:R3", 100))
        assert ("redemption:R3", "open") in states(central)  # reserved, the answer lost on the way
        again = lane.authorise(redemption("redemption:R3", 100))  # the retry finds the same reservation
        assert again["status"] == "approved" and len([s for s in states(central) if s[0] == "redemption:R3"]) == 1
        central.inject("vouchers", "reset")
        with pytest.raises(CentralUnavailable):
            lane.voucher("ANY", None)
        assert central.request_count("authorise") >= 4 and central.request_count("vouchers") == 1


def test_an_answer_that_is_not_the_protocol_is_a_protocol_error(central, clock):
    with make_client(central, clock=clock) as lane:
        with pytest.raises(CentralProtocolError):
            from posd.sync.protocol import parse_authorisation_answer
            parse_authorisation_answer({"authorisation_id": "x", "status": "maybe"}, "x")
        with pytest.raises(CentralProtocolError):  # a decline code that is not text
            parse_authorisation_answer({"authorisation_id": "x", "status": "declined", "code": {"a": 1}}, "x")
        assert lane.authorise(redemption("redemption:OK", 1))["status"] == "approved"


def test_an_approval_without_its_reservation_is_no_answer_and_said_so(central, clock, caplog):
    """A central answering approvals without reservation_id and expires_at (the schema once let it)
    sent every burn the offline way, said only in an info line: now a warning names why."""
    real = central.app.store

    class Unreserved:
        def __getattr__(self, name):
            return getattr(real, name)

        def authorise(self, *args):
            answer = real.authorise(*args)
            return {k: v for k, v in answer.items() if k not in ("reservation_id", "expires_at")}

    central.app.store = Unreserved()
    authoriser = BurnAuthoriser(lambda: make_client(central, clock=clock), budget_s=2.0)
    try:
        with pytest.raises(CentralProtocolError, match="an approval needs reservation_id and expires_at"):
            authoriser.authorise(redemption("redemption:U1", 100)).result(10)
    finally:
        authoriser.close()
    warned = [r for r in caplog.records if getattr(r, "event", "") == "sync-authorise.unreadable"]
    assert len(warned) == 1 and warned[0].levelname == "WARNING", caplog.records
    assert "decided by the lane alone" in warned[0].getMessage()


class _Lost(Exception):
    """What the database raises when it gives a transaction up for another's sake (a deadlock)."""


def _losing(central, monkeypatch, method: str, times: int) -> list[int]:
    """``central``'s store whose ``method`` loses its transaction ``times`` times before it is made."""
    store, calls = central.store, []
    real = getattr(store, method)

    def losing(*args):
        calls.append(1)
        if len(calls) <= times:
            raise _Lost("deadlock detected")
        return real(*args)

    monkeypatch.setattr(store, method, losing)
    monkeypatch.setattr(store, "is_conflict", lambda exc: isinstance(exc, _Lost))
    monkeypatch.setattr(store, "is_transient", lambda exc: isinstance(exc, _Lost))
    monkeypatch.setattr(store, "CONFLICT_WAIT_S", 0.001)
    return calls


def test_an_authorisation_or_release_the_database_gives_up_for_another_is_made_again(central, clock, monkeypatch):
    """On PostgreSQL a deadlock between writers rolled an authorisation back, and its lane was answered
    503: only batches were made again. Authorisations and releases are now too."""
    calls = _losing(central, monkeypatch, "_authorise", 2)
    with make_client(central, clock=clock) as lane:
        assert lane.authorise(redemption("redemption:LOST", 100))["status"] == "approved"
        assert len(calls) == 3
        calls = _losing(central, monkeypatch, "_release_one", 3)
        assert lane.release("redemption:LOST")["state"] == "released" and len(calls) == 4


def test_a_write_lost_on_every_try_is_a_503_that_names_the_contention(central, clock, monkeypatch, caplog):
    from posd.sync.central import app

    monkeypatch.setitem(app._said, "lost", 0.0)  # said at most every 10 s: the other engine's run said it
    calls = _losing(central, monkeypatch, "_authorise", 100)
    with make_client(central, clock=clock) as lane:
        with pytest.raises(CentralUnavailable) as err:
            lane.authorise(redemption("redemption:LOST2", 100))
    assert err.value.status == 503 and len(calls) == central.store.CONFLICT_TRIES
    said = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "central.writes_lost"]
    assert said and "lost to concurrent writes" in said[0], caplog.records
    assert not any("database not answering" in r.getMessage() for r in caplog.records)


def test_the_authoriser_answers_through_futures_and_stops_its_threads(central, clock):
    authoriser = BurnAuthoriser(lambda: make_client(central, clock=clock), budget_s=2.0)
    try:
        futures = [authoriser.authorise(redemption(f"redemption:F{n}", 100)) for n in range(3)]
        assert [f.result(10)["status"] for f in futures] == ["approved"] * 3
        assert authoriser.lookup("NOPE", None).result(10) is None
    finally:
        authoriser.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("sync-authorise")]


def test_the_authoriser_asks_only_once_the_lane_id_is_settled(central, clock, tmp_path):
    """A new ledger's lane id is checked by the relay first: until then a burn waits, within the budget,
    and then fails (the lane goes its offline way) without central being asked, or anything given back;
    a claim() or a parked identity (a person must act) lets the questions go."""
    from posd.storage.ledger import LaneIdentity, Ledger

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    identity = ledger.sync_identity
    authoriser = BurnAuthoriser(lambda: make_client(central, identity=identity, clock=clock), budget_s=0.2,
                                identity=identity)
    try:
        asked = central.request_count("authorise")
        with pytest.raises(SyncError, match="not checked"):
            authoriser.authorise(redemption("redemption:W1", 10)).result(10)
        assert central.request_count("authorise") == asked
        # the lane's side: offline, and nothing given back for a question that never left
        import asyncio

        from posd.lane.authority import CentralAuthority

        authority = CentralAuthority(authoriser.authorise, authoriser.lookup, 0.2, release=authoriser.release)
        decision = asyncio.run(authority.authorise(redemption("redemption:W3", 10)))
        assert decision.status == "unavailable" and asyncio.run(authority.release(decision)) is None
        decision.asked.exception(10)
        time.sleep(0.5)  # the question's done-callbacks (a release would be one) run just after it ends
        authoriser.close()  # every question it had, answered: a release would have been asked by now
        assert central.request_count("authorise") == asked and central.request_count("release") == 0
        authoriser = BurnAuthoriser(lambda: make_client(central, identity=identity, clock=clock), budget_s=0.2,
                                    identity=identity)
        identity.claim("L01")
        assert authoriser.authorise(redemption("redemption:W2", 10)).result(10)["status"] == "approved"
    finally:
        authoriser.close()
        ledger.close()
    other = Ledger(tmp_path / "other.db", LaneIdentity("S001", "L02"))
    try:
        other.sync_identity.park()
        assert other.sync_identity.wait_settled(0) and other.sync_identity.lane_id == "L02"
    finally:
        other.close()
