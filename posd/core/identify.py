"""What a scanned or typed code is: a member identifier, or payment card data.

Pure. Payment card data must never travel further than the driver that read
it, so this runs before anything is logged, stored or published. Luhn alone
is not a card test: about one in ten EAN-13 product codes that start with 4
pass it, so a code that is a valid EAN-13 is never taken for a card number.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from posd.core.member_tokens import looks_like_qr_token

Kind = Literal["member_code", "qr_token", "payment_card", "invalid"]

# ISO 7813 track 1 (%B...^...^) and track 2 (;PAN=...) as a reader emits them.
_TRACK1 = re.compile(r"%?B\d{12,19}\^")
_TRACK2 = re.compile(r";?\d{12,19}=\d{4}")
# The shortest text and the smallest whole number that can hold card data (track data has 12 digits at
# least, a card number 13): anything shorter or smaller is answered without a look.
CARD_TEXT_MIN = 12
CARD_NUMBER_MIN = 10**12
_DIGITS = re.compile(r"[0-9]+")
_ASCII_DIGIT = re.compile(r"[0-9]")
# What a person or a POS puts between a card number's digit groups: anything that is neither a
# letter nor a digit, in any script: spaces of every width, tabs, every Unicode dash, underscores,
# dots, slashes, commas, bullets, invisible format characters (a zero-width space, a soft hyphen,
# a direction mark), any number of them in a row ("4111 - 1111", "4111    1111"); letters end a number.
_SEPARATOR = re.compile(r"[\W_]+")
_SEPARATED = re.compile(r"[0-9]+(?:[\W_]+[0-9]+)+")  # 4111–1111–1111–1111 inside a longer text
_NOT_ALNUM = re.compile(r"[\W_]+")
# Every dash a voucher code may be written with: pasted from a document or an app, a code's hyphen is
# often a non-breaking one (U+2011), a hyphen (U+2010), an en dash or a minus sign.
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
# Card-brand prefixes (IIN ranges) of the networks a till meets.
# Issuer prefixes: Visa, Mastercard (51-55, 2221-2720), Mir (2200-2204), Amex, Diners, JCB, Discover,
# UnionPay (62, 81), Maestro, RuPay (60, 65, 81, 82), Shetab (6...), UzCard (8600), Troy (9792), Humo (9860),
# and the national networks Borica (2205), GPN (1946), Belkart (9112), Napas (9704), Prostir (9804).
_BRAND = re.compile(
    r"^(4|5[1-5]|2(20[0-5]|2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|3[0689]|35|6011|64[4-9]|65|62|50"
    r"|5[6-9]|6[0-9]|8[12]|8600|9792|9860|1946|9112|9704|9804)"
)
UATP_LENGTH = 15  # UATP (airline) numbers: 15 digits beginning with 1
_MEMBER_CODE = re.compile(r"^[A-Za-z0-9._:/+-]{4,64}$")
# A phone number in E.164 form: card readers never put "+" before a card number, and a phone
# number of 13-15 digits can pass a brand prefix and Luhn as often as any other number.
_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")
# A phone number as people type it (+49 1512 3456789, +48 (12) 345-67-89): never a card's form.
# Written with 00, the international prefix most of the world dials, too (0049 1511 2345678), when
# digit groups are typed apart: a run of bare digits with leading zeros is a zero-padded field.
_TYPED_PHONE = re.compile(r"^(?:\+|00(?=[1-9][0-9]*[ ().-]))[1-9][0-9 ().-]{6,24}$")
E164_MAX_DIGITS = 15  # a "+" before more digits than a phone number has is no phone number
# The networks that issue 14-digit card numbers: Diners (30, 36, 38, 39), Maestro (50, 56-69, 12-19
# digits) and the 6-series (UnionPay, Discover, RuPay). Any other 14 digits with a GS1 check digit are
# a GTIN-14, a case's ITF-14 code rung up as a product: no card number.
FOURTEEN_DIGIT_BRANDS = re.compile(r"^(3[0689]|5[06-9]|6)")
# Track 2 holds 37 digits at most (ISO 7813: 40 characters with its sentinels, separator and LRC):
# a longer run of digits is no card's track, however it starts.
TRACK2_MAX_DIGITS = 37


# The lane's own voucher codes: "V" and 12 Crockford base32 characters (no I, L, O, U), as issued.
VOUCHER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
VOUCHER_LENGTH = 13
_CROCKFORD_READS = str.maketrans("OIL", "011")  # what a person types for 0 and 1


def typed_code(text: str) -> str:
    """A voucher or coupon code as typed, read as its writer meant it: as member codes are (fold_ascii:
    digits of any script as 0-9, fullwidth letters as ASCII), and invisible format characters (a
    zero-width space, a left-to-right mark that a right-to-left keyboard adds) dropped."""
    if text.isascii():
        return text
    return fold_ascii("".join(ch for ch in text if unicodedata.category(ch) != "Cf"))


def voucher_code(text: str) -> str | None:
    """A lane voucher's code as issued, from however it was typed or read: any case, O for 0, I and L
    for 1, digits of any script, hyphens, spaces and format characters ignored (Crockford's decoding
    rules, and typed_code); None when it is not one."""
    compact = "".join(ch for ch in typed_code(text) if not (ch.isspace() or ch in _DASHES)).upper()
    if len(compact) != VOUCHER_LENGTH or compact[0] != "V":
        return None
    body = compact[1:].translate(_CROCKFORD_READS)
    return "V" + body if all(ch in VOUCHER_ALPHABET for ch in body) else None


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


def gtin_twin(code: str) -> str | None:
    """The same EAN/UPC number in the other form scanners report it in: a UPC-A's 12 digits and the
    EAN-13 that is those digits behind a 0 (a camera reports every UPC-A as that EAN-13, a serial
    scanner as it was set up). None for any other code."""
    if not (code.isascii() and code.isdigit() and gtin_ok(code)):
        return None
    if len(code) == 12:
        return "0" + code
    return code[1:] if len(code) == 13 and code[0] == "0" else None


def has_brand_prefix(digits: str) -> bool:
    """13-19 digits starting as a card network's numbers do (Luhn not asked)."""
    return 13 <= len(digits) <= 19 and (_BRAND.match(digits) is not None
                                        or len(digits) == UATP_LENGTH and digits[0] == "1")


def looks_like_pan(digits: str) -> bool:
    if not has_brand_prefix(digits):
        return False
    if len(digits) == 13 and gtin_ok(digits):
        return False  # an EAN-13 product or member barcode, not a card
    if len(digits) == 14 and gtin_ok(digits) and not FOURTEEN_DIGIT_BRANDS.match(digits):
        return False  # a GTIN-14 under a prefix no network issues 14-digit numbers in
    return luhn_ok(digits)


def pan_in_digits(run: str) -> bool:
    """A card number as a run of digits holds it: the whole run, the run without its leading zeros
    (a zero-padded field), or a card number followed by its expiry (YYMM, or MMYY as printed) and
    whatever follows that on a track: a card number and its expiry keyed in one go
    (4111111111111111 2512), or track 2 without its separator (4111111111111111 2512 101 000...)."""
    if looks_like_pan(run):
        return True
    if run[:1] == "0":
        bare = run.lstrip("0")
        if 13 <= len(bare) <= 19 and looks_like_pan(bare):
            return True
    if not 17 <= len(run) <= TRACK2_MAX_DIGITS:
        return False
    for length in range(13, min(19, len(run) - 4) + 1):
        expiry = run[length:length + 4]
        if ("01" <= expiry[2:] <= "12" or "01" <= expiry[:2] <= "12") and looks_like_pan(run[:length]):
            return True
    return False


def fold_ascii(text: str) -> str:
    """Fullwidth, Persian, Arabic-Indic... digits as 0-9 (and fullwidth letters and signs as ASCII): a card
    or member number typed in any script is still one. Character by character (NFKC of the text would
    turn one separator into several: "…" into "...")."""
    if text.isascii():
        return text
    return "".join(_ascii_char(ch) for ch in text)


def _ascii_char(ch: str) -> str:
    if ch.isascii():
        return ch
    if ch.isdecimal():
        return str(unicodedata.decimal(ch))
    folded = unicodedata.normalize("NFKC", ch)  # fullwidth ％Ｂ＾, superscript and circled digits
    return folded if folded.isascii() and (len(folded) == 1 or folded.isalnum()) else ch


def is_card_data(raw: str) -> bool:
    """Track data, a card number typed with or without separators, or one inside a longer string
    (a typed "card: 4111..."); never a valid EAN-13 (posd.core.identify.looks_like_pan)."""
    if raw.isascii():  # the common case, answered without the general path below (same answer)
        if raw.isdigit():  # a SKU, a card code: no separators, no track sentinels, no "+"
            return pan_in_digits(raw)
        if len(_ASCII_DIGIT.findall(raw)) < 12:  # track data needs 12 digits, a card number 13
            return False
    return _card_data_anywhere(raw)


def _dialled_digits(text: str) -> int:
    """The digits of a number typed as a phone's (_TYPED_PHONE): after its + or its 00. A country code
    and number an Amex (15 digits, 34/37) or a Diners card (14, 30/36/38/39) could be are counted as
    more than a phone has: no country's numbers that long begin so (+34 Spain and +39 Italy have at
    most 11 and 13 digits)."""
    digits = _NOT_ALNUM.sub("", text)
    number = digits[2:] if digits.startswith("00") else digits
    if (len(number) == 15 and number[:2] in ("34", "37")) or (len(number) == 14 and number[:2] in ("30", "36", "38",
                                                                                                   "39")):
        return E164_MAX_DIGITS + 1
    return len(number)


def _card_data_anywhere(raw: str) -> bool:
    """is_card_data's general path: any script, any separators, track sentinels, a number in a text."""
    text = fold_ascii(raw).strip().replace("\x1d", "")
    if _TRACK1.search(text) or _TRACK2.search(text):
        return True
    if _TYPED_PHONE.match(text) and _dialled_digits(text) <= E164_MAX_DIGITS:
        return False  # a phone number (enrolment): no card is written with a leading "+"
    if text[:4].lower() == "tel:":  # a phone's contact QR (RFC 3966): tel:+49-1511-2345678;phone-context=...
        number, _, params = text[4:].partition(";")
        number = number.strip()
        if _TYPED_PHONE.match(number) and number[:1] == "+" and _dialled_digits(number) <= E164_MAX_DIGITS \
                and not _ASCII_DIGIT.search(params):  # digits after it (;ext=12): the whole text is read below
            return False
    compact = _NOT_ALNUM.sub("", text)  # typed with any separators: 4111_1111_1111_1111
    if compact.isascii() and compact.isdigit() and pan_in_digits(compact):
        return True
    if any(len(run) >= 13 and pan_in_digits(run) for run in _DIGITS.findall(text)):
        return True
    for match in _SEPARATED.finditer(text):  # groups joined, wherever a card number could start
        groups = _SEPARATOR.split(match.group())
        for start in range(len(groups)):
            joined = ""
            for group in groups[start:]:
                joined += group
                if len(joined) > 19:
                    break
                if len(joined) >= 13 and looks_like_pan(joined):
                    return True
    return False


def find_card_data(value: Any, _depth: int = 0) -> bool:
    """Is there payment card data anywhere in a request: any string or whole number, at any depth, keys too."""
    if isinstance(value, str):
        return len(value) >= CARD_TEXT_MIN and is_card_data(value)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= CARD_NUMBER_MIN and is_card_data(str(value))
    if _depth > 32:  # deeper than any request posd takes: refused as a whole elsewhere
        return False
    if isinstance(value, dict):
        return any(find_card_data(k, _depth + 1) or find_card_data(v, _depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(find_card_data(item, _depth + 1) for item in value)
    return False


def identify_code(raw: str) -> Identified:
    """What ``raw`` is; a member code comes back with its digits in ASCII (typed in Persian digits too),
    without the invisible format characters around or inside it (a QR code's byte-order mark, a
    zero-width space or a direction mark that a right-to-left keyboard adds: typed_code)."""
    text = typed_code(raw).strip().replace("\x1d", "")
    if is_card_data(text):
        return Identified("payment_card", None)
    if _PHONE.match(text):
        return Identified("member_code", text)
    if looks_like_qr_token(text):
        return Identified("qr_token", text)  # a signed phone token (posd.core.member_tokens)
    if not _MEMBER_CODE.match(text):
        return Identified("invalid", None)
    return Identified("member_code", text)
