"""Member and scan input is read the way enrolment reads it: a phone number in any of the forms people
type it (in the lane's country), digits of any script; and a scanner frame with nothing readable in it
is an invalid scan the POS hears of, with a log line that carries no data."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.drivers.framing import UNREADABLE, ScanFramer, clean_code
from posd.config import load
from posd.drivers.url import parse_device_url
from tests.support.central_fixture import demo_seed
from tests.support.lane import ANNA

PERSIAN, ARABIC_INDIC, FULLWIDTH = 0x06F0, 0x0660, 0xFF10


def in_script(digits: str, zero: int) -> str:
    return "".join(chr(zero + int(d)) if d.isdigit() else d for d in digits)


@pytest.fixture
def central_seed():
    return demo_seed()


@pytest.fixture
def lane(tmp_path, start_lane):
    lane = start_lane(tmp_path / "lane")
    text = lane.config.read_text().replace('currency = "PLN"', 'currency = "PLN"\ncountry = "PL"')
    lane.config.write_text(text)
    lane.stop()
    lane.start()
    lane.wait_synced()  # the scanner's pty too: health answers before the scanners are open
    return lane


def test_a_phone_number_is_found_in_every_form_enrolment_accepts(lane):
    enrolled = lane.post("/v1/members", {"phone": "600 123 456", "display_name": "Ola"})
    assert enrolled.status_code == 200, enrolled.text
    member_id = enrolled.json()["member_id"]
    assert enrolled.json()["identifiers"] == ["+48600123456"]
    for typed in ("600 123 456", "600123456", "48600123456", "+48 600 123 456", "+48600123456",
                  "+48 (600) 123-456", "0048 600 123 456", in_script("600 123 456", PERSIAN),
                  in_script("+48600123456", FULLWIDTH), "tel:+48-600-123-456", "TEL:600123456",
                  "tel:+48.600.123.456;phone-context=+48"):
        found = lane.get(f"/v1/members/{typed}")
        assert found.status_code == 200 and found.json()["member_id"] == member_id, (typed, found.text)
    sale = lane.post("/v1/transactions", {"transaction_id": "T-phone-1", "member": "600 123 456",
                                          "occurred_at": "2026-11-17T10:15:00+01:00", "currency": "PLN",
                                          "total": 1000, "lines": [{"sku": "5901234123457", "quantity": 1,
                                                                    "unit_price": 1000}]})
    assert sale.status_code == 200 and sale.json()["member_id"] == member_id, sale.text
    for other in ("600 123 457", "+48 600 123", "601 123 456", "tel:+48600123456;ext=12", "tel:", "tel:ola"):
        missing = lane.get(f"/v1/members/{other}")
        assert (missing.status_code, missing.json()["code"]) == (404, "unknown_member"), other


def test_digits_that_read_as_a_national_number_and_as_a_calling_code_and_number_prefer_the_calling_code():
    """At a German lane (German landline numbers take almost any digits), 4915112345673 read as the
    landline +49 4915112345673: enrolment stored a number the member does not have, and their mobile
    +49 1511 2345673 found nobody. 48501234567 read only as a German landline too, never the Polish
    mobile a lookup of bare digits finds at a Polish lane."""
    from posd.lane.members import phone_e164, phone_readings

    assert phone_readings("4915112345673", "DE") == ["+4915112345673", "+494915112345673"]
    assert phone_e164("4915112345673", "DE", other_countries=False) == "+4915112345673"
    assert phone_e164("49 1511 2345673", "DE") == phone_e164("01511 2345673", "DE") == "+4915112345673"
    assert phone_readings("48501234567", "DE") == ["+4948501234567", "+48501234567"]
    assert phone_e164("48501234567", "DE", other_countries=False) == "+4948501234567"  # enrolled: its own only
    assert phone_readings("48600123456", "PL") == ["+48600123456"]
    assert phone_e164("600123456", "PL") == "+48600123456" and phone_e164("2025550123", "US") == "+12025550123"
    # where national numbers have no trunk prefix, digits beginning with the calling code are national first
    assert phone_e164("3901234567", "IT", other_countries=False) == "+393901234567"  # a mobile, not +39 01234567
    assert phone_e164("486407015", "PL", other_countries=False) == "+48486407015"  # a Radom landline
    assert phone_e164("12025550123", "US") == "+12025550123" and phone_e164("33612345678", "FR") == "+33612345678"


def test_a_german_lane_finds_the_member_by_a_number_typed_with_its_calling_code(tmp_path, start_lane):
    lane = start_lane(tmp_path / "lane")
    lane.config.write_text(lane.config.read_text().replace('currency = "PLN"', 'currency = "PLN"\ncountry = "DE"'))
    lane.stop()
    lane.start()
    enrolled = lane.post("/v1/members", {"phone": "4915112345673", "display_name": "Jonas"})
    assert enrolled.status_code == 200 and enrolled.json()["identifiers"] == ["+4915112345673"], enrolled.text
    polish = lane.post("/v1/members", {"phone": "+48 501 234 567", "display_name": "Ola"})
    assert polish.status_code == 200, polish.text
    for typed, member in (("+49 1511 2345673", enrolled), ("015112345673", enrolled), ("4915112345673", enrolled),
                          ("48501234567", polish), ("0048 501 234 567", polish)):
        found = lane.get(f"/v1/members/{typed}")
        assert found.status_code == 200 and found.json()["member_id"] == member.json()["member_id"], (typed, found.text)


def test_enrolment_reads_a_phone_number_in_every_form_a_lookup_reads(lane):
    """One reading of a phone number: what finds a member is what a member can enrol with."""
    for n, typed in enumerate((in_script("601 234 567", PERSIAN), "48 602 345 678", "0048 603 456 789",
                               in_script("+48 604 567 890", FULLWIDTH), "tel:+48-605-678-901")):
        e164 = "+4860" + str(n + 1) + ("234567", "345678", "456789", "567890", "678901")[n]
        enrolled = lane.post("/v1/members", {"phone": typed, "display_name": f"Ola {n}"})
        assert enrolled.status_code == 200 and enrolled.json()["identifiers"] == [e164], (typed, enrolled.text)
        found = lane.get(f"/v1/members/{typed}")
        assert found.status_code == 200 and found.json()["member_id"] == enrolled.json()["member_id"], typed
    for wrong in ("600 123", "+48 12", "12345678901234567890"):
        refused = lane.post("/v1/members", {"phone": wrong, "display_name": "Nobody"})
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_phone"), (wrong, refused.text)


def test_a_card_number_in_any_digit_script_finds_the_member(lane):
    for zero in (PERSIAN, ARABIC_INDIC, FULLWIDTH):
        found = lane.get(f"/v1/members/{in_script(ANNA, zero)}")
        assert found.status_code == 200 and found.json()["member_id"] == "M0001", (zero, found.text)


def pty_link(lane) -> Path:
    config = load(str(lane.config))
    _, scanner = config.scanners()[0]
    return Path(parse_device_url(config.device_url(scanner.url)).fs_path)


def write_frame(lane, payload: bytes) -> None:
    """The scanner sends raw bytes: what a wrong baud rate or a UTF-8 scanner puts on the line."""
    fd = os.open(pty_link(lane), os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)


def test_scanned_persian_digits_identify_and_an_unreadable_frame_is_an_invalid_scan(lane):
    stream = lane.sse()
    try:
        write_frame(lane, in_script(ANNA, PERSIAN).encode("utf-8") + b"\r")
        assert stream.next("member.identified")["data"]["member"]["member_id"] == "M0001"
        garbage = bytes([0xFF, 0xFE, 0x9C, 0xE3, 0x80, 0xF0, 0xA5, 0xB7])
        write_frame(lane, garbage + b"\r")
        event = stream.next("scan")
        while event["data"].get("kind") != "invalid":  # the Persian scan's own scan event came first
            event = stream.next("scan")
        assert event["data"]["device"] == "front" and event["data"].get("data") is None
    finally:
        stream.close()
    lane.wait_for(lambda: "unreadable scan" in lane.log.read_text(), what="the log line")
    log = lane.log.read_bytes()
    assert garbage not in log and garbage.decode("latin-1").encode() not in log


def test_a_readable_code_no_member_is_known_by_is_an_invalid_scan_with_a_log_line(lane):
    """A product's URL at the scanner was kind invalid with nothing in the log: store IT looking for why a
    correctly set up scanner says invalid found no trace. The line gives its length, never its text."""
    stream = lane.sse()
    try:
        write_frame(lane, b"https://shop.example/p?id=5\r")
        event = stream.next("scan")
        assert (event["data"]["kind"], event["data"].get("data")) == ("invalid", None)
    finally:
        stream.close()
    lane.wait_for(lambda: "a scan of 27 characters is no member code" in lane.log.read_text(), what="the log line")
    assert b"shop.example" not in lane.log.read_bytes()


@given(st.binary(min_size=1, max_size=40).filter(lambda b: not clean_code(b)))
def test_a_frame_with_nothing_readable_is_delivered_as_unreadable_never_dropped(frame):
    framer = ScanFramer()
    codes = framer.feed(frame.replace(b"\r", b"") + b"\r", now=0.0)
    if frame.replace(b"\r", b"").strip(b" \t\r\n\x00"):
        assert codes == [UNREADABLE] and framer.take_unreadable() == 1
    else:
        assert codes == [] and framer.take_unreadable() == 0


def test_a_card_and_a_phone_number_that_one_lookup_would_confuse_are_never_two_members(lane):
    """A lookup reads a code as a card first, then as a phone number of the lane's country: a new
    card 600123456 would take the sales of the member whose phone is +48 600 123 456 (typed as
    600123456), and a new phone number whose national digits are a card would be found as the
    card's member. Either enrolment is refused, 409 identifier_in_use; the first member keeps them."""
    ola = lane.post("/v1/members", {"phone": "+48 600 123 456", "display_name": "Ola"}).json()["member_id"]
    for card in ("600123456", "48600123456"):  # (0048600123456 is refused as a GTIN-13 with a wrong check digit)
        taken = lane.post("/v1/members", {"card": card})
        assert (taken.status_code, taken.json()["code"]) == (409, "identifier_in_use"), (card, taken.text)
        assert lane.get(f"/v1/members/{card}").json()["member_id"] == ola
    card = lane.post("/v1/members", {"card": "600123457"})  # no member has that phone: a card like any other
    assert card.status_code == 200, card.text
    for phone in ("+48 600 123 457", "600 123 457"):
        taken = lane.post("/v1/members", {"phone": phone})
        assert (taken.status_code, taken.json()["code"]) == (409, "identifier_in_use"), (phone, taken.text)
    assert lane.get("/v1/members/600123457").json()["member_id"] == card.json()["member_id"]
    # what no lookup here confuses is no conflict: a card with letters around a phone's digits, a
    # phone of another country whose national digits are a card (this lane reads them as Polish)
    for card in ("LC600123456", "600123456X", "M-600123456", "7911123456"):
        assert lane.post("/v1/members", {"card": card}).status_code == 200, card
        assert lane.get(f"/v1/members/{card}").json()["member_id"] != ola, card
    assert lane.post("/v1/members", {"phone": "+44 7911 123456"}).status_code == 200
    both = lane.post("/v1/members", {"card": "600123458", "phone": "600 123 458"})  # one member, both ways
    assert both.status_code == 200, both.text
    assert lane.post("/v1/members", {"card": "600123458", "phone": "600 123 458"}).headers["Idempotent-Replayed"] == "true"


def test_a_blank_member_is_not_taken_for_no_member(lane):
    """A cleared member field ("" or spaces) names no member: the sale is refused as unknown_member, as
    a redemption and a lookup refuse it, never recorded as an anonymous sale whose points nobody gets."""
    sale = {"occurred_at": datetime.now(UTC).isoformat(), "currency": "PLN", "total": 1000,
            "lines": [{"sku": "5901234123457", "quantity": 1, "unit_price": 1000}]}
    for blank in ("", "   "):
        for path, body in (("/v1/transactions", {"transaction_id": "T-blank", "member": blank, **sale}),
                           ("/v1/quotes", {"transaction_id": "T-blank", "member": blank, **sale}),
                           ("/v1/vouchers/validate", {"code": "WELCOME10", "member": blank})):
            answer = lane.post(path, body)
            assert (answer.status_code, answer.json().get("code")) == (404, "unknown_member"), (path, blank, answer.text)
    anonymous = lane.post("/v1/transactions", {"transaction_id": "T-blank", "member": None, **sale})
    assert anonymous.status_code == 200 and anonymous.json()["member_id"] is None, anonymous.text
