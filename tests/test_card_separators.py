"""A card number is refused whatever a person or a POS put between its digit groups, in any digit
script, in any field of a request: underscores, every Unicode dash and space, invisible marks."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core.identify import FOURTEEN_DIGIT_BRANDS, find_card_data, gtin_ok, identify_code, is_card_data, luhn_ok
from tests.support.lane import sale_body

# Every character Unicode calls a space, a dash, a connector (underscore), other punctuation
# (dots, slashes, bullets), a format character (zero-width space, soft hyphen, direction marks)
# a control (tab, newline) or a math sign (minus): what can sit between digit groups.
SEPARATORS = [chr(c) for c in range(sys.maxunicode + 1)
              if unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp", "Pd", "Pc", "Po", "Cf", "Cc", "Sm")
              and not unicodedata.normalize("NFKC", chr(c)).isalnum()]
# The zero of every decimal digit script (ASCII, Arabic-Indic, Persian, Devanagari, fullwidth...).
ZEROS = [chr(c) for c in range(sys.maxunicode + 1)
         if unicodedata.category(chr(c)) == "Nd" and unicodedata.decimal(chr(c)) == 0]


def test_the_sets_are_the_ones_the_review_named():
    for sep in ("_", "\u2013", "\u2014", "\u2212", "\u00a0", "\u2009", "\u3000", "\u200b", "\u00ad", "\t",
                "\u2011", "\u30fb", "\uff3f", "\u2022"):
        assert sep in SEPARATORS, ascii(sep)
    assert {"\u0660", "\u06f0", "\uff10", "0"} <= set(ZEROS)


def in_script(digits: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in digits)


@st.composite
def pans(draw) -> str:
    prefix = draw(st.sampled_from(["4", "51", "55", "2221", "34", "37", "6011", "65", "35", "36"]))
    length = draw(st.integers(13, 19))
    body = prefix + draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                                 max_size=length - len(prefix) - 1))
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


@st.composite
def written(draw) -> tuple[str, str]:
    """(the PAN, as written: split into groups of 1-6 digits, joined by 1-3 separators, in one script)."""
    pan = draw(pans())
    zero = draw(st.sampled_from(ZEROS))
    groups, i = [], 0
    while i < len(pan):
        size = draw(st.integers(1, 6))
        groups.append(in_script(pan[i:i + size], zero))
        i += size
    out = groups[0]
    for group in groups[1:]:
        out += "".join(draw(st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3))) + group
    return pan, out


@settings(max_examples=600, deadline=None)
@given(written(), st.sampled_from(["{}", "card: {}", "{} thanks", "x {} y"]))
def test_a_card_number_with_any_separators_in_any_script_is_card_data(case, template):
    pan, text = case
    if len(pan) in (13, 14) and gtin_ok(pan) and (len(pan) == 13 or not FOURTEEN_DIGIT_BRANDS.match(pan)):
        return  # a valid EAN-13, or a GTIN-14 under a prefix no network issues 14 digits in: a product code
    assert is_card_data(template.format(text)), ascii(text)
    assert find_card_data({"lines": [{"sku": template.format(text)}]})
    if template == "{}":
        found = identify_code(text)
        assert (found.kind, found.code) == ("payment_card", None)


def test_phone_numbers_are_still_phone_numbers():
    for phone in ("+48 600 123 456", "+48 (12) 345-67-89", "+49 1512 3456789", "+441234567890"):
        assert not is_card_data(phone), phone
    assert is_card_data("+4111 1111 1111 1111")  # more digits than any phone number: a card
    # dialled with 00 and typed in groups: a phone number (4915112345678 passes a brand prefix and Luhn)
    assert not is_card_data("0049 1511 2345678") and not is_card_data("0049-1511-2345678")
    assert not is_card_data("0049 3012 34567803")  # a Berlin number: 14 digits after the 00
    # a zero-padded field, a card number typed behind "00 " or one with more digits than a phone: cards
    for card in ("004915112345678", "00 4111 1111 1111 1111", "004111111111111111", "0037 8282 2463 10005"):
        assert is_card_data(card), card
    # a contact QR's tel: link (RFC 3966) with its +country: 4915112345678 passed as a Visa number
    for link in ("tel:+49-1511-2345678", "tel:+4915112345678", "TEL:+49 1511 2345678;phone-context=example.com",
                 "tel:+48 600 123 456;ext=2"):
        assert not is_card_data(link), link
    # ...but never a link around a card number, nor one hiding it in its parameters, nor one whose digit
    # groups run on past the ";" (the whole text is read like any other then)
    for card in ("tel:4111111111111111", "tel:+4111111111111111", "tel:+4915112345678;ext=4111111111111111",
                 "tel:+49 1511 2345678 4111 1111 1111 1111", "tel:+4111 1111;1111 1111", "tel:+411111111111;1111",
                 "TEL:+4111111111;111111"):
        assert is_card_data(card), card


def test_a_gtin_14_is_a_product_code_unless_its_prefix_issues_14_digit_cards():
    """40000000000077, a case's ITF-14 code with its GS1 check digit, passes a Visa prefix and Luhn:
    a sale ringing it up was refused whole as payment_card. No network issues 14-digit numbers
    under 4; Diners, Maestro and the 6-series do, and stay cards."""
    for product in ("40000000000077", "40727875038515", "52676541745026", "81737967449348"):
        assert gtin_ok(product) and luhn_ok(product) and not is_card_data(product), product
    for card in ("36861720402315", "30392228300880"):  # Diners: 14 digits, whatever the GS1 digit says
        assert gtin_ok(card) and luhn_ok(card) and is_card_data(card), card
    assert is_card_data("40000000000069")  # no GS1 check digit: Luhn alone decides, as before


def test_a_sale_with_a_card_number_behind_underscores_or_en_dashes_is_refused_and_kept_nowhere(
        tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    sku, category = "4111_1111_1111_1111", "4111\u20131111\u20131111\u20131111"
    body = sale_body("T-card-sep")
    body["lines"] = [{**body["lines"][0], "sku": sku, "category": category}]
    resp = lane.post("/v1/transactions", body)
    assert (resp.status_code, resp.json()["code"]) == (422, "payment_card"), resp.text
    assert "4111" not in resp.text
    for field, value in (("sku", "5555\u00a05555\u20025555\u20034444"), ("category", "5555\u20145555\u20145555\u20144444")):
        other = sale_body(f"T-card-{field}")
        other["lines"] = [{**other["lines"][0], field: value}]
        resp = lane.post("/v1/transactions", other)
        assert (resp.status_code, resp.json()["code"]) == (422, "payment_card"), (field, resp.text)
    lane.stop()
    for path in lane.state.iterdir():
        if path.is_file():
            data = path.read_bytes()
            for needle in (sku, category, "5555\u00a05555", "5555\u20145555"):
                assert needle.encode() not in data, (path.name, needle)
    assert "4111" not in lane.log.read_text()
    assert not [e for e in central.store.events("S001", "L01") if e.get("transaction_id", "").startswith("T-card")]


def test_any_run_of_separators_and_digits_around_a_card_number_are_still_caught():
    """More than three separators between groups inside a longer text, a card number followed by
    its expiry, or zero-padded: each was stored, synced, printed and streamed."""
    for text in ("Jan 4111    1111    1111    1111", "x 4111\t\t\t\t1111 1111 1111",
                 "x 4111 .. 1111 .. 1111 .. 1111", "Jan 4111 - - 1111 1111 1111",
                 "x 4111\u200b\u200b\u200b\u200b111111111111", "41111111111111112512",
                 "0004111111111111111", "note 00005555555555554444 end",
                 # track 2 whose "=" was lost: the card number, its expiry, service code, discretionary data
                 "41111111111111112512101000", "411111111111111125121010000000000000", "5555555555554444 1225 123"):
        assert is_card_data(text) and identify_code(text).kind == "payment_card", ascii(text)
        body = sale_body("T1", "CARD-1")
        body["lines"][0]["sku"] = text
        assert find_card_data(body), ascii(text)


def test_long_numbers_that_hold_no_card_number_pass():
    for text in ("00000000000000123456", "12345678901234567890", "5901234123457", "000005901234123457",
                 "1234567890123456789012345678901234567890", "59012341234571299999",
                 "2026-12-04T17:22:03.000907+00:00", "order 12 - - - 2026 - - - 500"):
        assert not is_card_data(text), ascii(text)


_CARDS = ["4111111111111111", "4111 1111 1111 1111", "۴۱۱۱۱۱۱۱۱۱۱۱۱۱۱۱", "%B4111111111111111^X/Y^2512?",
          "card 5500-0000-0000-0004", "5901234123457", "590123412345700", "T-0000000000001"]
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                    st.sampled_from([4111111111111111, 5500000000000004, 10**12, 10**12 - 1]),
                    st.text(max_size=24), st.sampled_from(_CARDS), st.decimals(allow_nan=False, places=3),
                    st.floats(allow_nan=False), st.datetimes(), st.dates(),
                    st.lists(st.one_of(st.text(max_size=20), st.sampled_from(_CARDS), st.integers()), max_size=3))


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({"transaction_id": _VALUES, "member": _VALUES, "currency": _VALUES, "total": _VALUES}),
       st.lists(st.fixed_dictionaries({"sku": _VALUES, "category": _VALUES, "quantity": _VALUES}), max_size=3))
def test_the_request_scan_finds_what_find_card_data_finds_in_any_field(fields, lines):
    """The models' scan answers as find_card_data on the model's dump does, whatever a field holds."""
    from posd.api.models import LineIn, TransactionIn, _card_data_in
    model = TransactionIn.model_construct(**fields, lines=[LineIn.model_construct(**line) for line in lines])
    assert _card_data_in(model) == find_card_data(model.model_dump(warnings=False))


@pytest.mark.long  # a daemon on each engine, about 6 s: CI runs it with the fault runs (make test-faults)
def test_a_tel_link_finds_its_member_and_a_gtin_14_rings_up(tmp_path, central, start_lane):
    """Through the POS API: a member enrolled by a German mobile number whose digits pass Luhn was
    `422 payment_card` when looked up by the tel: link a contact QR carries; a sale of a case's
    GTIN-14 was refused whole."""
    from urllib.parse import quote

    lane = start_lane(tmp_path / "lane", country="PL")
    enrolled = lane.post("/v1/members", {"phone": "+49 1511 2345678"})
    assert enrolled.status_code in (200, 201), enrolled.text
    member_id = enrolled.json()["member_id"]
    found = lane.get("/v1/members/" + quote("tel:+49-1511-2345678", safe=""))
    assert found.status_code == 200 and found.json()["member_id"] == member_id, found.text
    body = sale_body("T-gtin14", member=None)
    body["lines"] = [{**body["lines"][0], "sku": "40000000000077"}]
    resp = lane.post("/v1/transactions", body)
    assert resp.status_code == 200, resp.text


def test_an_amex_or_diners_number_behind_a_plus_is_a_card_and_national_networks_are_cards():
    """"+340109281590131" (an Amex number) passed as a phone written with its +, in any field: a SKU, a
    display name, a tel: link; it was stored and synced. No country's numbers of 15 digits begin 34/37,
    nor of 14 digits 30/36/38/39. Napas, Borica, Belkart, Prostir, GPN and UATP numbers were no cards."""
    for card in ("+340109281590131", "tel:+377741215472808", "+3782 822463 10005", "+36 2538 8853 9338",
                 "tel:+3005-7553-7990-77", "9704037614365379", "2205000000000009", "9112000000000006",
                 "9804000000000009", "1946000000000005", "100000000000009", "x-9704037614365379"):
        digits = "".join(ch for ch in card if ch.isdigit())
        assert luhn_ok(digits), card  # a number that passes Luhn, as a card's does
        assert is_card_data(card), card
        assert find_card_data({"lines": [{"sku": card}], "display_name": card}), card
    for phone in ("+34 612 345 678", "+39 06 1234 5678", "+381 11 1234567", "+36 1 234 5678", "+49 1511 2345678"):
        assert not is_card_data(phone), phone
