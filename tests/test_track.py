"""ISO 7813 track parsing and the swipe decision: byte fixtures, pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posd.core.identify import gtin_ok, luhn_ok
from posd.drivers.track import classify_swipe, parse_tracks

VISA_T1 = "%B4111111111111111^DOE/JOHN^2512101000000000000000000?"
VISA_T2 = ";4111111111111111=25121010000000000000?"


def test_parses_financial_track_1_and_2():
    t1, t2 = parse_tracks(VISA_T1 + VISA_T2)
    assert (t1.number, t1.format_code, t1.primary, t1.name) == (1, "B", "4111111111111111", "DOE/JOHN")
    assert (t2.number, t2.primary, t2.rest[:4]) == (2, "4111111111111111", "2512")
    assert "4111" not in repr(t1) and "4111" not in repr(t2)


def test_payment_card_is_rejected_without_data():
    for swipe in (VISA_T1, VISA_T2, VISA_T1 + VISA_T2, VISA_T1 + ";E?", "%E?" + VISA_T2,
                  "garbage 4111111111111111 garbage"):
        result = classify_swipe(swipe)
        assert result.kind == "payment_card" and result.code is None, swipe
        assert "4111" not in repr(result)


def test_track_1_format_b_is_financial_even_without_luhn():
    assert classify_swipe("%B1234567890123^X/Y^2512?").kind == "payment_card"


def test_a_payment_track_2_with_a_misread_digit_is_still_a_payment_card():
    """One misread digit fails the Luhn check: the swipe went out as a scan of 16 card digits. A brand's
    number followed by an expiry and a service code is a payment track whatever its check digit."""
    assert not luhn_ok("4111111111111112")
    for swipe in (";4111111111111112=25121010000000000000?", ";5500000000000005=2812201?"):
        assert classify_swipe(swipe).kind == "payment_card", swipe
    assert classify_swipe(";4006381333931=25121010000?").kind == "member"  # a valid EAN-13 card's number
    assert classify_swipe(";4111111111111112?").kind == "member"  # no expiry, no service code: not a track


def test_loyalty_cards_give_their_number():
    assert classify_swipe(";2900000000018?").code == "2900000000018"
    assert classify_swipe(";2900000000018=2512?").code == "2900000000018"
    assert classify_swipe("%ML123456^ANNA K^?;2900000000025?").code == "2900000000025"
    assert classify_swipe("%M1234567^ANNA K^?").code == "1234567"  # M: the format code
    assert classify_swipe("2900000000032").code == "2900000000032"  # reader set to bare data


def test_unreadable_swipes():
    for swipe in ("%E?;E?", ";E?", "", "?", "%^^?"):
        assert classify_swipe(swipe).kind == "unreadable", swipe


def test_ean13_product_codes_on_a_stripe_are_not_cards():
    # A valid EAN-13 starting with 4 that passes Luhn is a product code, not a card.
    found = 0
    for n in range(5000):
        body = f"40{n:010d}"
        for check in "0123456789":
            ean = body + check
            if gtin_ok(ean) and luhn_ok(ean):
                assert classify_swipe(f";{ean}?").kind == "member"
                found += 1
    assert found > 100


@given(st.text(max_size=200))
def test_never_crashes_and_never_leaks_a_pan(text):
    result = classify_swipe(text)
    assert result.kind in ("member", "payment_card", "unreadable")
    if result.kind == "member":
        from posd.core.identify import looks_like_pan

        assert not looks_like_pan(result.code)


def test_track_2_digits_without_their_separator_are_a_payment_card():
    """A reader (or a mangled swipe) that drops track 2's "=": the card number runs on into its expiry,
    service code and discretionary data. It was taken for a member number, streamed and enrolled."""
    for text in ("41111111111111112512101000", ";41111111111111112512101000?", "4111111111111111251210100000000000000",
                 "55555555555544441225"):
        assert classify_swipe(text).kind == "payment_card", text
    assert classify_swipe("2900000000018").code == "2900000000018"  # a loyalty card's number stays one
