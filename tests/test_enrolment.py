"""Enrolment at the till (offline, then mapped by central, no point lost) and erasure of deleted members."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from posd.core.slip import SlipData, build_slip
from posd.drivers.escpos_render import render_slip
from posd.drivers.escpos_text import escpos_to_text
from tests.conftest import ENGINES
from tests.support.central_fixture import default_seed, make_client, make_event
from tests.support.printer_emulator import PrinterEmulator

CARD = "2900000001008"


def sale(tid: str, member: str, total: int) -> dict[str, Any]:
    return {"transaction_id": tid, "member": member, "occurred_at": "2026-11-17T10:15:00+01:00", "currency": "PLN",
            "total": total, "lines": [{"sku": "5901234123457", "quantity": 1, "unit_price": total}]}


def points(answer) -> int:
    return answer.json()["balance"]["points"]["total"]


CENTRAL_ENGINES = ENGINES  # every test here that uses central's database runs on both engines


@pytest.fixture
def central_seed() -> dict[str, Any]:
    seed = default_seed()
    seed["members"].append({"member_id": "M0100", "display_name": "Erin Forgotten", "locale": "en",
                            "identifiers": ["2900000001015"], "balances": {"points": 300},
                            "offers": [{"title": "Erin's own offer"}]})
    # A card's code that is another member's phone number written without its +48 (lanes apart enrolled them)
    seed["members"] += [{"member_id": "M0101", "display_name": "Card Holder", "identifiers": ["602987654"],
                         "balances": {"points": 0}},
                        {"member_id": "M0102", "display_name": "Phone Holder", "identifiers": ["+48602987654"],
                         "balances": {"points": 0}},
                        # an EAN-13 card (check digit 7) whose digits are also a German mobile with its +49
                        {"member_id": "M0103", "display_name": "Barcode Card", "identifiers": ["4917612340003"],
                         "balances": {"points": 0}},
                        {"member_id": "M0104", "display_name": "Berlin Phone", "identifiers": ["+4917612340003"],
                         "balances": {"points": 0}}]
    return seed


def test_enrolled_offline_then_mapped_by_central_without_losing_a_point(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "one")
    for route in ("push", "members", "program"):
        central.inject(route, "503", count=10_000)  # central is out of reach

    enrolled = lane.post("/v1/members", {"card": CARD, "phone": "+48 600 123 456", "display_name": "Ola N.",
                                         "locale": "pl"})
    assert enrolled.status_code == 200, enrolled.text
    body = enrolled.json()
    provisional = body["member_id"]
    assert provisional.startswith("P-") and body["provisional"] and body["member"]["provisional"]
    assert body["identifiers"] == [CARD, "+48600123456"]
    again = lane.post("/v1/members", {"card": CARD, "phone": "+48 600 123 456", "display_name": "Ola N.",
                                      "locale": "pl"})
    assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"

    first = lane.post("/v1/transactions", sale("T-new-1", CARD, 12000))  # the sale names the new card
    assert first.status_code == 200, first.text
    assert (first.json()["member_id"], points(first)) == (provisional, 120)
    second = lane.post("/v1/transactions", sale("T-new-2", provisional, 5000))  # or the provisional id
    assert points(second) == 170
    assert lane.get("/v1/members/+48600123456").json()["balances"]["points"]["total"] == 170
    assert lane.health()["sync"]["pending"] == 3

    central.faults.clear()  # central answers again: it maps the member and the lane pulls it
    lane.wait_drained()
    real = central.store.member(provisional, "S001")
    assert real["member_id"] != provisional and real["aliases"] == [provisional]
    assert real["balances"] == {"points": 170} and real["identifiers"] == [CARD, "+48600123456"]
    [answer] = [e for e in central.store.events("S001", "L01") if e["type"] == "member_enrolled"]
    assert answer["status"] == "accepted"

    def mapped():
        view = lane.get(f"/v1/members/{CARD}").json()
        return view if view["member_id"] == real["member_id"] else None

    view = lane.wait_for(mapped, 20, "the lane to pull the member central made")
    assert view["provisional"] is False
    assert view["balances"]["points"] == {**view["balances"]["points"], "confirmed": 170, "pending": 0, "total": 170}
    later = lane.post("/v1/transactions", sale("T-new-3", provisional, 1000))  # the POS kept the provisional id
    assert (later.json()["member_id"], points(later)) == (real["member_id"], 180)
    back = lane.post("/v1/transactions/T-new-1/returns", {"return_id": "R-new-1", "amount": 12000})
    assert back.status_code == 200 and back.json()["reversed"] == {"points": 120}
    assert points(back) == 60
    lane.wait_drained()
    assert central.store.member(real["member_id"])["balances"] == {"points": 60}

    other = start_lane(tmp_path / "two", lane_id="L02")  # the member's next visit, at another lane
    assert other.get(f"/v1/members/{CARD}").json()["balances"]["points"]["total"] == 60
    elsewhere = other.post("/v1/transactions", sale("T-two-1", CARD, 2000))
    assert (elsewhere.json()["member_id"], points(elsewhere)) == (real["member_id"], 80)


def test_enrolment_checks_what_it_is_given(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    cases = [
        ({"card": "2900000001009"}, 422, "invalid_card"),  # check digit
        ({"card": "a b"}, 422, "invalid_card"),
        ({"card": "4111111111111111"}, 422, "payment_card"),
        ({"phone": "4111111111111111"}, 422, "payment_card"),
        ({"phone": "+48 12"}, 422, "invalid_phone"),
        ({"phone": "+48 600 000 001 ext 5"}, 422, "invalid_phone"),  # an extension E.164 cannot keep
        ({"phone": "600 123 456"}, 422, "invalid_phone"),  # no country configured: needs +48
        ({"card": "2900000000018"}, 409, "identifier_in_use"),  # Anna's
        ({}, 422, "invalid_request"),
        ({"card": CARD, "pan": "4111111111111111"}, 422, "invalid_request"),
        ({"card": CARD, "birth_date": "2090-01-01"}, 422, "invalid_request"),  # not born yet
        ({"card": CARD, "birth_date": "0001-01-01"}, 422, "invalid_request"),
        # seconds since 1970, as pydantic would read them (0: born on New Year's Day, a bonus every 1 January)
        ({"card": CARD, "birth_date": 0}, 422, "invalid_request"),
        ({"card": CARD, "birth_date": "946684800"}, 422, "invalid_request"),
        ({"card": CARD, "birth_date": "1990-12-05T00:00:00+05:00"}, 422, "invalid_request"),
        ({"card": CARD, "birth_date": "1990-12-5"}, 422, "invalid_request"),
        ({"card": CARD, "display_name": "Ola \u202eN."}, 422, "invalid_request"),  # reorders the slip's text
    ]
    for body, status, code in cases:
        answer = lane.post("/v1/members", body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
    first = lane.post("/v1/members", {"phone": "+44 20 7946 0958", "display_name": "Ola N."})
    assert first.status_code == 200
    for written in ("+442079460958", "+44 (20) 7946-0958", "tel:+44-20-7946-0958"):  # the same request, by meaning
        again = lane.post("/v1/members", {"phone": written, "display_name": "Ola N."})
        assert (again.status_code, again.json()) == (200, first.json()), (written, again.text)
        assert again.headers.get("Idempotent-Replayed") == "true"
    other = lane.post("/v1/members", {"phone": "+442079460958", "display_name": "Ola M."})  # another request
    assert (other.status_code, other.json()["code"]) == (409, "identifier_in_use")
    assert lane.post("/v1/members", {"card": CARD, "phone": "+44 20 7946 0958"}).json()["code"] == \
        "identifier_in_use"
    lane.stop()
    for db in ("ledger.db", "cache.db"):
        assert "4111111111111111" not in "\n".join(sqlite3.connect(lane.state / db).iterdump())
    assert "4111111111111111" not in lane.log.read_text()


def test_a_deleted_member_leaves_the_cache_and_the_slip_data(tmp_path, central, start_lane):
    printer = PrinterEmulator()
    try:
        lane = start_lane(tmp_path / "lane", printer=f"tcp://127.0.0.1:{printer.port}")
        assert lane.post("/v1/transactions", sale("T-erin-1", "2900000001015", 4000)).status_code == 200
        enrolled = lane.post("/v1/members", {"card": CARD, "phone": "+48 600 123 457", "display_name": "Zed Gone",
                                             "birth_date": "1990-05-05"})
        provisional = enrolled.json()["member_id"]
        assert lane.post("/v1/transactions", sale("T-zed-1", CARD, 1000)).status_code == 200
        printer.wait_for_jobs(2, timeout=15)
        lane.wait_drained()
        zed = lane.wait_for(lambda: central.store.member(provisional), 10, "central to map the enrolment")
        lane.wait_for(lambda: lane.get(f"/v1/members/{CARD}").json()["member_id"] == zed["member_id"], 20,
                      "the lane to pull the mapped member")
        before = lane.get("/v1/slips/T-erin-1.png").content

        for member_id in ("M0100", zed["member_id"]):  # central erases both
            member = central.store.member(member_id)
            central.store.upsert_member({**member, "status": "deleted", "display_name": "", "identifiers": [],
                                         "offers": [], "balances": {}})
        lane.wait_for(lambda: lane.get("/v1/members/2900000001015").status_code == 404, 20, "Erin forgotten")
        lane.wait_for(lambda: lane.get(f"/v1/members/{CARD}").status_code == 404, 20, "Zed forgotten")
        for gone in ("M0100", zed["member_id"], provisional, "+48600123457"):
            assert lane.get(f"/v1/members/{gone}").json()["code"] == "unknown_member", gone
        after = lane.get("/v1/slips/T-erin-1.png")
        assert after.status_code == 200 and after.content != before  # the preview no longer shows the name
        # the goods still come back: the return is recorded, reversing nothing (the points left with her)
        back = lane.post("/v1/transactions/T-erin-1/returns", {"return_id": "R-erin-1", "amount": 1000})
        assert back.status_code == 200, back.text
        assert set(back.json()["reversed"].values()) <= {0} and back.json()["seq"] is None
        assert lane.get("/v1/slips/T-zed-1.png").status_code == 200
        lane.stop()
        ledger = "\n".join(sqlite3.connect(lane.state / "ledger.db").iterdump())
        cache = "\n".join(sqlite3.connect(lane.state / "cache.db").iterdump())
        for personal in ("Erin Forgotten", "Erin's own offer", "Zed Gone", "+48600123457", "1990-05-05"):
            assert personal not in ledger and personal not in cache, personal
        for identifier in ("2900000001015", CARD):
            assert identifier not in cache
        assert "M0100" in ledger  # the entries keep the member id as central knows it
        row = sqlite3.connect(lane.state / "ledger.db").execute(
            "SELECT slip FROM print_jobs WHERE slip_id = 'T-erin-1'").fetchone()
        printed = escpos_to_text(render_slip(build_slip(SlipData.from_json(json.loads(row[0])), "pl"), "TM-T88V"), 48)
        assert "M0100" not in printed and "Erin" not in printed and "T-erin-1" in printed
    finally:
        printer.close()


def test_a_product_barcode_at_the_scanner_is_no_phone_number(tmp_path, central, start_lane):
    """A code read with an EAN/UPC check digit is a barcode's number: 4915123456787 (an EAN-13) found
    the member whose phone is +49 1512 3456787, and the EAN-13 of the UPC-A 048600123453 the member
    whose phone is +48 600 123 453. Typed, the same digits are still the phone (the cashier's input)."""
    lane = start_lane(tmp_path / "lane", country="PL")
    enrolled = lane.post("/v1/members", {"phone": "+49 1512 3456787", "display_name": "Klaus"})
    assert enrolled.status_code == 200, enrolled.text
    assert lane.post("/v1/members", {"phone": "+48 600 123 453", "display_name": "Ewa"}).status_code == 200
    stream = lane.sse()
    try:
        for product in ("4915123456787", "0048600123453"):
            lane.scan(product)
            assert stream.next("scan")["data"]["data"] == product
            assert stream.next("member.unknown")["data"]["identifier"] == product
        lane.scan("600123453")  # national digits with no check digit: still the phone, as before
        assert stream.next("member.identified")["data"]["identified_by"] == "phone"
    finally:
        stream.close()
    assert lane.get("/v1/members/4915123456787").json()["display_name"] == "Klaus"
    # enrolled, bare digits are this lane's country's number: a Polish number with a digit too many is
    # refused, not enrolled as the valid Malaysian +60 123456789 it also reads as; 00 dials another country
    for typo in ("600123456789", "6001234567890", "4915123456787"):
        refused = lane.post("/v1/members", {"phone": typo})
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_phone"), typo
    for written, e164 in (("48 600 123 454", "+48600123454"), ("0049 1511 2345678", "+4915112345678")):
        enrolled = lane.post("/v1/members", {"phone": written})
        assert enrolled.status_code == 200 and enrolled.json()["identifiers"] == [e164], enrolled.text


def test_a_card_is_found_as_upc_a_and_as_its_ean_13(tmp_path, central, start_lane):
    """PITFALLS: EAN-13 may come back as UPC-A (12 digits) and vice versa. A card enrolled in one
    form was unknown when read in the other (a camera reports every UPC-A as its EAN-13)."""
    lane = start_lane(tmp_path / "lane", country="PL")
    upc = lane.post("/v1/members", {"card": "036000291452", "display_name": "A"})
    ean = lane.post("/v1/members", {"card": "0012345678905", "display_name": "B"})
    assert (upc.status_code, ean.status_code) == (200, 200), (upc.text, ean.text)

    def same(found: str, enrolled) -> bool:  # the provisional id, or central's once it mapped it (any moment)
        provisional = enrolled.json()["member_id"]
        return found in (provisional, lane.get(f"/v1/members/{provisional}").json()["member_id"])
    stream = lane.sse()
    try:
        lane.scan("0036000291452")
        assert same(stream.next("member.identified")["data"]["member"]["member_id"], upc)
    finally:
        stream.close()
    assert same(lane.get("/v1/members/012345678905").json()["member_id"], ean)
    sale = {"transaction_id": "T-upc", "member": "012345678905", "occurred_at": "2026-12-01T10:00:00Z",
            "currency": "PLN", "total": 1000,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 1000}]}
    assert same(lane.post("/v1/transactions", sale).json()["member_id"], ean)
    again = lane.post("/v1/members", {"card": "0036000291452", "display_name": "C"})
    assert (again.status_code, again.json()["code"]) == (409, "identifier_in_use")


def test_a_card_code_with_a_slash_is_found_by_its_code(tmp_path, central, start_lane):
    """Enrolment takes `/` in a card's code; looked up by it (`%2F` in the path), the router read
    a separator and answered its bare 404, so the POS could not show that member by card."""
    lane = start_lane(tmp_path / "lane")
    enrolled = lane.post("/v1/members", {"card": "AB/1234", "display_name": "Slash"})
    assert enrolled.status_code == 200, enrolled.text
    member_id = enrolled.json()["member_id"]
    found = lane.get("/v1/members/AB%2F1234")
    assert found.status_code == 200, found.text
    assert found.json()["member_id"] in (member_id, lane.get(f"/v1/members/{member_id}").json()["member_id"])
    unknown = lane.get("/v1/members/ZZ%2F9999")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_member")
    metrics = lane.get("/metrics").text
    assert 'route="/v1/members/{identifier}"' in metrics and "identifier:text" not in metrics


def test_a_member_enrolled_without_a_name_keeps_no_name_once_central_maps_it(tmp_path, central, start_lane):
    """The lane's cache wrote a member's id as the name of one central had no name for: the till showed
    and printed a member enrolled without a name as "M0000010" once central mapped it."""
    lane = start_lane(tmp_path / "lane")
    enrolled = lane.post("/v1/members", {"card": "2900000000261"})
    assert (enrolled.status_code, enrolled.json()["member"]["display_name"]) == (200, ""), enrolled.text
    lane.wait_drained()
    view = lane.wait_for(lambda: (v := lane.get("/v1/members/2900000000261").json())["provisional"] is False and v,
                         20, "the lane to pull the member central made")
    assert view["member_id"] != enrolled.json()["member_id"] and view["display_name"] == ""


def test_a_tel_link_is_a_phone_number_everywhere_never_a_card(tmp_path, central, start_lane):
    """"tel:+48600123458" was enrolled as a card, and the phone +48 600 123 458 then as another member:
    the scanner found the phone's member, a sale naming the link credited the card's. A tel: link is
    refused as a card, and a lookup or a sale reads it as its phone number, as the scanner does."""
    lane = start_lane(tmp_path / "lane", country="PL")
    card = lane.post("/v1/members", {"card": "tel:+48600123458", "display_name": "A"})
    assert (card.status_code, card.json()["code"]) == (422, "invalid_card"), card.text
    assert "phone" in card.json()["message"]
    for written in ("tel:+48 600 123 458;ext=12", "+48 600 123 458 ext. 12", "+48 600 123 458 x12", "600123458#12",
                    "+48 600 123 458 extension 12"):
        desk = lane.post("/v1/members", {"phone": written, "display_name": "B"})
        assert (desk.status_code, desk.json()["code"]) == (422, "invalid_phone"), (written, desk.text)
        assert "extension" in desk.json()["message"], written  # the number exists: the extension is refused
    hidden = lane.post("/v1/members", {"phone": "#31#600123458", "display_name": "B"})  # caller-id prefix
    assert "extension" not in hidden.json().get("message", ""), hidden.text
    phone = lane.post("/v1/members", {"phone": "+48600123458", "display_name": "B"})
    assert phone.status_code == 200, phone.text
    member = phone.json()["member_id"]

    def same(found: str) -> bool:  # the provisional id, or central's once it mapped it (any moment)
        return found in (member, lane.get(f"/v1/members/{member}").json()["member_id"])

    for written in ("tel:+48600123458", "TEL:+48-600-123-458", "tel:+48 600 123 458;phone-context=x"):
        found = lane.get(f"/v1/members/{written}")
        assert found.status_code == 200 and same(found.json()["member_id"]), (written, found.text)
    sale = {"transaction_id": "T-tel", "member": "tel:+48600123458", "occurred_at": "2026-12-01T10:00:00Z",
            "currency": "PLN", "total": 1000,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 1000}]}
    assert same(lane.post("/v1/transactions", sale).json()["member_id"])
    stream = lane.sse()
    try:
        lane.scan("tel:+48600123458")
        assert same(stream.next("member.identified")["data"]["member"]["member_id"])
    finally:
        stream.close()
    assert lane.get("/v1/members/tel:+48600999999").json()["code"] == "unknown_member"


def test_a_members_id_typed_is_that_member_even_where_it_is_another_members_card(tmp_path, central, start_lane):
    """A lane that had not heard of member M0100 yet enrolled a card printed "M0100" for someone else, and
    central keeps a card with its holder. The POS names a member by the member_id its answers give, and a
    sale naming "M0100" credited the card's holder, a stranger. Typed, a member's id is that member;
    at the scanner the code is the card, as every card is."""
    with make_client(central, lane_id="L09") as other:
        enrolled = other.push_batch("B-clash", [make_event(1, lane_id="L09", member_id="P-00000000000000c1",
                                                           type="member_enrolled", transaction_id=None,
                                                           identifiers=["M0100"], points={"points": 0},
                                                           provisional=True)])
    assert enrolled[0].status == "accepted"
    holder = central.store.member("P-00000000000000c1")["member_id"]
    assert holder != "M0100" and central.store.member(holder)["identifiers"] == ["M0100"]
    lane = start_lane(tmp_path / "lane")
    found = lane.get("/v1/members/M0100")
    assert (found.status_code, found.json()["member_id"]) == (200, "M0100"), found.text
    credited = lane.post("/v1/transactions", sale("T-id", "M0100", 1000))
    assert (credited.status_code, credited.json()["member_id"]) == (200, "M0100"), credited.text
    assert lane.get(f"/v1/members/{holder}").json()["member_id"] == holder
    stream = lane.sse()
    try:
        lane.scan("M0100")  # the card at the scanner is the card
        assert stream.next("member.identified")["data"]["member"]["member_id"] == holder
    finally:
        stream.close()


def test_a_cards_code_that_is_another_members_phone_typed_names_neither(tmp_path, central, start_lane):
    """Card 602987654 is one member's, +48 602 987 654 another's (two lanes enrolled them apart, central
    holds both). Typed bare, the number credited the card's member, while the same number with spaces
    found the phone's: a cashier typing a phone number credited a stranger. Typed, it now names neither
    (409 ambiguous_member, nothing written); the phone in any other form, the member id and the card at
    the scanner each find their own member."""
    lane = start_lane(tmp_path / "lane", country="PL")
    found = lane.get("/v1/members/602987654")
    assert (found.status_code, found.json()["code"]) == (409, "ambiguous_member"), found.text
    assert "602987654" not in found.text
    for written in ("602 987 654", "+48602987654", "0048602987654", "tel:602987654", "602-987-654"):
        by_phone = lane.get(f"/v1/members/{written}")
        assert (by_phone.status_code, by_phone.json()["member_id"]) == (200, "M0102"), (written, by_phone.text)
    assert lane.get("/v1/members/M0101").json()["member_id"] == "M0101"
    refused = lane.post("/v1/transactions", sale("T-amb", "602987654", 1000))
    assert (refused.status_code, refused.json()["code"]) == (409, "ambiguous_member"), refused.text
    assert lane.post("/v1/quotes", sale("T-amb", "602987654", 1000) | {"codes": []}).json()["code"] == \
        "ambiguous_member"
    credited = lane.post("/v1/transactions", sale("T-amb", "+48 602 987 654", 1000))  # nothing kept under T-amb
    assert (credited.status_code, credited.json()["member_id"]) == (200, "M0102"), credited.text
    # a card's barcode with its check digit is the card, typed as scanned; the phone with its + is the phone
    assert lane.get("/v1/members/4917612340003").json()["member_id"] == "M0103"
    assert lane.get("/v1/members/+4917612340003").json()["member_id"] == "M0104"
    stream = lane.sse()
    try:
        lane.scan("602987654")  # a card at the scanner is the card
        assert stream.next("member.identified")["data"]["member"]["member_id"] == "M0101"
    finally:
        stream.close()
