"""What a scanned or typed code is: a member identifier, or payment card data.

Pure. Payment card data must never travel further than the driver that read
it, so this runs before anything is logged, stored or published. Luhn alone
is not a card test: about one in ten EAN-13 product codes that start with 4
pass it, so a code that is a valid EAN-13 is never taken for a card number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from posd.core.member_tokens import looks_like_qr_token

Kind = Literal["member_code", "qr_token", "payment_card", "invalid"]

# ISO 7813 track 1 (%B...^...^) and track 2 (;PAN=...) as a reader emits them.
_TRACK1 = re.compile(r"%?B\d{12,19}\^")
_TRACK2 = re.compile(r";?\d{12,19}=\d{4}")
_DIGITS = re.compile(r"\d+")
# Card-brand prefixes (IIN ranges) of the networks a till meets.
_BRAND = re.compile(
    r"^(4|5[1-5]|2(2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|3[0689]|35|6011|64[4-9]|65|62|50|5[6-9]|6[0-9])"
)
_MEMBER_CODE = re.compile(r"^[A-Za-z0-9._:/+-]{4,64}$")
# A phone number in E.164 form: card readers never put "+" before a card number, and a phone
# number of 13-15 digits can pass a brand prefix and Luhn as often as any other number.
_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")


@dataclass(frozen=True)
class Identified:
    kind: Kind
    code: str | None  # None for payment cards: the digits never leave here


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def gtin_ok(digits: str) -> bool:
    """EAN-8/UPC-A/EAN-13/GTIN-14 check digit."""
    if len(digits) not in (8, 12, 13, 14):
        return False
    body, check = digits[:-1], ord(digits[-1]) - 48
    weights = (3, 1) if len(body) % 2 == 1 else (1, 3)
    total = sum((ord(c) - 48) * weights[i % 2] for i, c in enumerate(body))
    return (10 - total % 10) % 10 == check


def looks_like_pan(digits: str) -> bool:
    if not 13 <= len(digits) <= 19 or not _BRAND.match(digits):
        return False
    if len(digits) == 13 and gtin_ok(digits):
        return False  # an EAN-13 product or member barcode, not a card (14 digits: Diners-length, no exemption)
    return luhn_ok(digits)


def identify_code(raw: str) -> Identified:
    text = raw.strip().replace("\x1d", "")
    if _TRACK1.search(text) or _TRACK2.search(text):
        return Identified("payment_card", None)
    if _PHONE.match(text):
        return Identified("member_code", text)
    compact = re.sub(r"[\s./-]", "", text)  # typed with any separator: 4111.1111.1111.1111
    if compact.isdigit() and looks_like_pan(compact):
        return Identified("payment_card", None)
    # a PAN embedded in a longer string (e.g. a typed "card: 4111...")
    for run in _DIGITS.findall(text):
        if len(run) >= 13 and looks_like_pan(run):
            return Identified("payment_card", None)
    if looks_like_qr_token(text):
        return Identified("qr_token", text)  # a signed phone token (posd.core.member_tokens)
    if not _MEMBER_CODE.match(text):
        return Identified("invalid", None)
    return Identified("member_code", text)
