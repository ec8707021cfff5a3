"""Payment card data is recognised and dropped; product and member codes are not cards."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.core.identify import Identified, gtin_ok, identify_code, luhn_ok


@pytest.mark.parametrize("raw", [
    "4111111111111111",                      # Visa test PAN
    "5555555555554444",                      # Mastercard test PAN
    "378282246310005",                       # Amex test PAN
    "%B4111111111111111^DOE/JOHN^2912101?",  # track 1
    ";4111111111111111=29121010000000000?",  # track 2
    "4111 1111 1111 1111",                   # typed with spaces
])
def test_payment_cards_are_recognised_and_carry_no_digits(raw):
    found = identify_code(raw)
    assert found.kind == "payment_card"
    assert found.code is None


def luhn_complete(body: str) -> str:
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


@pytest.mark.parametrize("prefix", ["2200", "2201", "2204", "8100", "8171", "8200", "8600", "9792", "9860"],
                         ids=["mir", "mir-2201", "mir-2204", "unionpay-81", "unionpay-8171", "rupay-82", "uzcard",
                              "troy", "humo"])
def test_the_networks_beyond_visa_and_mastercard_are_cards_too(prefix):
    """Mir (2200-2204) passed as a member code: scanned, enrolled, streamed and synced to central."""
    pan = luhn_complete(prefix + "00000000012")
    for raw in (pan, f"{pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}", f";{pan}=29121010000000000?"):
        found = identify_code(raw)
        assert (found.kind, found.code) == ("payment_card", None), raw


def ean13(body: str) -> str:
    return next(body + str(d) for d in range(10) if gtin_ok(body + str(d)))


@given(st.from_regex(r"4[0-9]{11}", fullmatch=True))
def test_ean13_product_codes_starting_with_4_are_never_cards(body):
    code = ean13(body)
    found = identify_code(code)
    assert found.kind == "member_code"
    assert found.code == code


def test_some_ean13_codes_do_pass_luhn_which_is_why_luhn_is_not_enough():
    passing = [c for c in (ean13(f"4{n:011d}") for n in range(0, 2000)) if luhn_ok(c)]
    assert passing  # the pitfall is real
    assert all(identify_code(c).kind == "member_code" for c in passing)


def test_member_codes_and_garbage():
    assert identify_code("2900000000018").code == "2900000000018"
    assert identify_code("MBR-00042").kind == "member_code"
    assert identify_code("").kind == "invalid"
    assert identify_code("a b c; DROP TABLE").kind == "invalid"


@pytest.mark.parametrize("raw", ["4111.1111.1111.1111", "4111/1111/1111/1111", "5555-5555-5555-4444"])
def test_separators_do_not_hide_a_card_number(raw):
    assert identify_code(raw).kind == "payment_card"


def test_a_14_digit_diners_number_is_a_card_even_if_it_looks_like_a_gtin14():
    from posd.core.identify import gtin_ok

    for n in range(0, 100000):
        pan = f"3600{n:09d}"
        pan = next((pan + str(d) for d in range(10) if luhn_ok(pan + str(d))), None)
        if pan and gtin_ok(pan):
            break
    assert gtin_ok(pan) and luhn_ok(pan)
    assert identify_code(pan).kind == "payment_card"


# --- card data in any field of a request ------------------------------------------------------------------

from posd.core.identify import find_card_data, is_card_data  # noqa: E402


@pytest.mark.parametrize("value", [
    {"sku": "4111111111111111"},
    {"lines": [{"sku": "A"}, {"category": "x 5555 5555 5555 4444"}]},
    {"transaction_id": "T-4111111111111111"},
    {"code": "%B4111111111111111^DOE/JOHN^2912101?"},
    {"member": "４１１１１１１１１１１１１１１１"},          # fullwidth digits are still digits
    {"member": "۴۱۱۱۱۱۱۱۱۱۱۱۱۱۱۱"},                      # so are Persian ones
    {"total": 4111111111111111},                            # a number, not a string
    {"4111111111111111": 1},                                # a key
    ["378282246310005"],
])
def test_card_numbers_are_found_anywhere_in_a_request(value):
    assert find_card_data(value)


@given(st.from_regex(r"4[0-9]{11}", fullmatch=True))
def test_ean13_codes_in_any_field_are_never_card_data(body):
    code = ean13(body)
    assert not find_card_data({"lines": [{"sku": code, "category": f"cat-{code}"}], "transaction_id": f"T-{code}"})


def test_ordinary_fields_are_not_card_data():
    assert not find_card_data({"transaction_id": "T-2026-11-24-0001", "total": 12999, "quantity": "0.250",
                               "occurred_at": "2026-11-24T10:15:00+01:00", "sku": "5901234123457"})
    assert not is_card_data("2900000000018") and is_card_data("4111-1111-1111-1111")


# ASCII text as requests carry it: digits (runs long enough to be card numbers), separators, track
# sentinels, a phone's "+", letters and spaces.
_ascii_fields = st.lists(st.one_of(st.from_regex(r"[0-9]{1,19}", fullmatch=True),
                                   st.sampled_from(list(" ./-+%B^=;?\x1dA:x"))), max_size=12).map("".join)


@given(st.one_of(_ascii_fields, st.from_regex(r"[0-9]{1,20}", fullmatch=True), st.text(max_size=30)))
def test_the_quick_answer_for_ascii_text_is_the_general_one(text):
    """is_card_data answers plain ASCII (every SKU, id and code a till sends) without the general
    path: it must answer exactly what the general path does."""
    from posd.core.identify import _card_data_anywhere

    assert is_card_data(text) == _card_data_anywhere(text)


@pytest.mark.parametrize("text", ["4111111111111111", "5901234123457", "41111111111", "B4111111111111111^X^",
                                  ";4111111111111111=2912", "+48 4111111111111111", " 4111111111111111 "])
def test_the_quick_answer_agrees_on_the_edges(text):
    from posd.core.identify import _card_data_anywhere

    assert is_card_data(text) == _card_data_anywhere(text)


def test_invisible_format_characters_around_a_member_code_are_dropped():
    """A QR code's byte-order mark, a zero-width space, a direction mark: "\ufeff2900000000018" was not
    the card 2900000000018 (404), while voucher codes were read without them."""
    for text in ("\ufeff2900000000018", "2900000000018\u200b", "\u200e2900000000018\u200f", "29000\u200b00000018"):
        assert identify_code(text) == Identified("member_code", "2900000000018"), ascii(text)
    assert identify_code("\ufeff4111111111111111").kind == "payment_card"

