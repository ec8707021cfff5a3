"""Burns on the wire: authorisations, their answers, and vouchers as central registers them.

Pure functions, no I/O. The lane asks central to authorise a redemption or a
voucher/coupon use before it records it (``POST .../authorisations``); central
checks and reserves in one transaction and answers approved (a reservation
and its expiry) or declined (a code). docs/sync-protocol.md, "Burn
authorisation", is the prose version.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable
from typing import Any

from posd.sync.protocol.batch import parse_utc
from posd.sync.protocol.errors import CentralProtocolError, RequestRejected
from posd.sync.protocol.limits import MAX_AUTHORISATION_ID_LEN, MAX_CODE_LEN, MAX_ID_LEN, MAX_POINTS
from posd.sync.protocol.shapes import compact_json, is_id, json_object

AUTHORISATION_KINDS = ("redemption", "voucher_use")
VOUCHER_ONCE_PER = ("code", "member")
AUTHORISATION_STATUSES = ("approved", "declined")
MAX_AUTHORISATION_BYTES = 65_536
MAX_UNSYNCED_EVENTS = 500  # the newest of a member's events the lane lists for central's balance check
# A lane's voucher code: "V" and 12 Crockford base32 characters. People type them in any case, with
# O for 0 and I or L for 1, and with hyphens or any whitespace between: central reads them exactly as
# the lane does (posd.core.identify.voucher_code, the lane's copy: neither side may import the other;
# tests/test_voucher_codes.py holds the two equal on any text), and coupon codes case-insensitively.
_CROCKFORD = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_TYPED_AS = {"O": "0", "I": "1", "L": "1"}


def never_spent(program: Any) -> set[str]:
    """The program's ``qualifying`` currencies: tier points, earned and returned, never spent (central
    refuses a burn or a redemption of them)."""
    currencies = program.get("currencies") if isinstance(program, dict) else None
    return {c["code"] for c in currencies or []
            if isinstance(c, dict) and c.get("kind") == "qualifying" and isinstance(c.get("code"), str)}


def _typed(text: str) -> str:
    """Digits of any script as 0-9, fullwidth letters as ASCII, format characters (U+200B, U+200E...)
    dropped: the lane's typed_code."""
    if text.isascii():
        return text
    return "".join(_ascii(ch) for ch in text if unicodedata.category(ch) != "Cf")


def _ascii(ch: str) -> str:
    if ch.isascii():
        return ch
    if ch.isdecimal():
        return str(unicodedata.decimal(ch))
    folded = unicodedata.normalize("NFKC", ch)
    return folded if folded.isascii() and (len(folded) == 1 or folded.isalnum()) else ch


# Every dash a voucher code may be written with (a non-breaking hyphen pasted from an app, an en dash):
# the same set as the lane's (posd.core.identify), which this package may not import.
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")


def canonical_code(code: str, coupons: Iterable[str] = ()) -> str:
    """A voucher or coupon code as issued or published, however it was typed: a coupon of ``coupons``
    in its own spelling, a lane voucher's code as issued, anything else as it is."""
    typed = _typed(code)
    folded = typed.strip().casefold()
    for coupon in coupons:
        if coupon == code or coupon.casefold() == folded:
            return coupon
    chars = [_TYPED_AS.get(ch, ch) for ch in "".join(c for c in typed if not (c.isspace() or c in _DASHES)).upper()]
    if len(chars) == 13 and chars[0] == "V" and _CROCKFORD.issuperset(chars[1:]):
        return "".join(chars)
    return code

def issuable_code(code: str, coupons: Collection[str] = ()) -> bool:
    """May a redemption issue a voucher under ``code``? Only one every lookup and use reads as itself
    (canonical_code): not a coupon of ``coupons`` (the program's) in any spelling, which registered as
    one member's voucher would take the coupon from every other member, and not a lane voucher's code
    other than as issued (``v7wq-gses-f03xt``), which no one could find."""
    return canonical_code(code, coupons) == code and code not in coupons


# code -> what a declined authorisation means; the lane answers the POS with the same code.
DECLINE_CODES: dict[str, str] = {
    "insufficient_balance": "central's balance for the member, less what open reservations hold, plus the "
                            "lane's events central has not applied yet, does not cover the points",
    "reward_limit_reached": "the member had this reward as often as the limit allows in the window, at any lane",
    "unknown_member": "central has no such member (the reference central does not send it: a member it does "
                      "not know yet, enrolled at a lane, has what the lane's unsynced events give it)",
    "member_ineligible": "the member's account is blocked",
    "member_deleted": "the member was erased",
    "voucher_used": "the voucher or coupon was used, or is held for a use, at another lane",
    "voucher_expired": "the voucher has expired (central's registry)",
    "voucher_other_member": "the voucher belongs to another member (central's registry)",
    "authorisation_conflict": "this authorisation_id was used for a different request",
}

# The fields of a voucher as central registers it, keeps it, and lists it in the member feed.
VOUCHER_FIELDS = ("code", "member_id", "reward_id", "title", "benefit", "issued_at", "expires_at", "issued_by")
BENEFIT_KINDS = ("amount_off", "percent_off", "free_item")


def _malformed(message: str) -> RequestRejected:
    return RequestRejected("malformed_authorisation", message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _points(value: Any, *, positive: bool) -> bool:
    if not isinstance(value, dict):
        return False
    for currency, amount in value.items():
        if not is_id(currency, 32) or not _is_int(amount) or abs(amount) > MAX_POINTS:
            return False
        if positive and amount <= 0:
            return False
    return True


def authorisation_json(request: dict[str, Any]) -> bytes:
    """The body of an authorisation request: compact UTF-8 JSON."""
    return compact_json(request)


def parse_authorisation(body: bytes) -> dict[str, Any]:
    """An authorisation request from its body, checked; RequestRejected(malformed_authorisation) if not."""
    doc = json_object(body, MAX_AUTHORISATION_BYTES, "malformed_authorisation", "an authorisation")
    if not is_id(doc.get("authorisation_id"), MAX_AUTHORISATION_ID_LEN):
        raise _malformed(f"authorisation_id must be a string of 1-{MAX_AUTHORISATION_ID_LEN} characters")
    kind = doc.get("kind")
    if kind not in AUTHORISATION_KINDS:
        raise _malformed(f"kind must be one of {', '.join(AUTHORISATION_KINDS)}")
    member = doc.get("member_id")
    if member is not None and not is_id(member):
        raise _malformed(f"member_id must be a string of 1-{MAX_ID_LEN} characters or null")
    if parse_utc(doc.get("occurred_at"), strict=True) is None:
        raise _malformed("occurred_at must be ISO-8601 UTC (RFC 3339, Z or +00:00)")
    if doc.get("reward_id") is not None and not is_id(doc["reward_id"]):
        raise _malformed(f"reward_id must be a string of 1-{MAX_ID_LEN} characters or null")
    if doc.get("voucher_code") is not None and not is_id(doc["voucher_code"], MAX_CODE_LEN):
        raise _malformed("voucher_code must be a string of at most 64 characters")
    if kind == "redemption":
        if member is None:
            raise _malformed("a redemption names its member")
        if not _points(doc.get("points"), positive=True) or not doc["points"]:
            raise _malformed("points must be {currency: positive integer}")
        limit = doc.get("limit")
        if limit is not None and not (isinstance(limit, dict) and is_id(doc.get("reward_id"))
                                      and _is_int(limit.get("per_member")) and limit["per_member"] >= 1
                                      and parse_utc(limit.get("since")) is not None):
            raise _malformed("limit must be {per_member: integer >= 1, since: ISO-8601 UTC} with a reward_id")
        if doc.get("voucher") is not None and not check_voucher(doc["voucher"]):
            raise _malformed("voucher must be the voucher the redemption will issue, in wire shape")
    else:
        if doc.get("voucher") is not None:
            raise _malformed("voucher is the voucher a redemption will issue: a use names voucher_code")
        if not is_id(doc.get("voucher_code"), MAX_CODE_LEN):
            raise _malformed("voucher_code must be a string of at most 64 characters")
        if doc.get("voucher_once_per") not in VOUCHER_ONCE_PER:
            raise _malformed("voucher_once_per must be code or member")
        if doc["voucher_once_per"] == "member" and member is None:
            raise _malformed("a use once per member names its member")
    unsynced = doc.get("unsynced", [])
    if not isinstance(unsynced, list) or len(unsynced) > MAX_UNSYNCED_EVENTS:
        raise _malformed(f"unsynced must be a list of at most {MAX_UNSYNCED_EVENTS} events")
    for event in unsynced:
        if not (isinstance(event, dict) and _is_int(event.get("seq")) and event["seq"] > 0
                and _points(event.get("points"), positive=False)):
            raise _malformed("each unsynced event is {seq, points: {currency: integer}}")
    return doc


RELEASE_STATES = ("released", "confirmed", "expired", "unknown", "open")


def release_json(authorisation_id: str) -> bytes:
    """The body of a release: the lane gives back a reservation it will not record a burn for."""
    return compact_json({"authorisation_id": authorisation_id})


def parse_release(body: bytes) -> dict[str, Any]:
    """A release request from its body, checked; RequestRejected(malformed_authorisation) if not."""
    doc = json_object(body, MAX_AUTHORISATION_BYTES, "malformed_authorisation", "a release")
    if not is_id(doc.get("authorisation_id"), MAX_AUTHORISATION_ID_LEN):
        raise _malformed(f"authorisation_id must be a string of 1-{MAX_AUTHORISATION_ID_LEN} characters")
    return doc


def release_answer(authorisation_id: str, state: str) -> dict[str, Any]:
    if state not in RELEASE_STATES:
        raise ValueError(f"{state!r} is not a release state")
    return {"authorisation_id": authorisation_id, "state": state}


def parse_release_answer(answer: Any, authorisation_id: str) -> dict[str, Any]:
    """Central's answer to a release, checked; CentralProtocolError when it is not one."""
    if not isinstance(answer, dict) or answer.get("authorisation_id") != authorisation_id \
            or answer.get("state") not in RELEASE_STATES:
        raise CentralProtocolError("a release answer is {authorisation_id, state: released|confirmed|expired|unknown|open}")
    return answer


def approved(authorisation_id: str, reservation_id: str, expires_at: str,
             available: dict[str, int]) -> dict[str, Any]:
    return {"authorisation_id": authorisation_id, "status": "approved", "reservation_id": reservation_id,
            "expires_at": expires_at, "available": available}


def declined(authorisation_id: str, code: str, message: str, available: dict[str, int] | None = None
             ) -> dict[str, Any]:
    if code not in DECLINE_CODES:
        raise ValueError(f"{code!r} is not a decline code")
    return {"authorisation_id": authorisation_id, "status": "declined", "code": code, "message": message,
            "available": available or {}}


def parse_authorisation_answer(answer: Any, authorisation_id: str) -> dict[str, Any]:
    """Central's answer to an authorisation, checked; CentralProtocolError when it is not one."""
    if not isinstance(answer, dict) or answer.get("authorisation_id") != authorisation_id:
        raise CentralProtocolError("authorisation answer is for another request")
    status = answer.get("status")
    if status == "approved":
        if not is_id(answer.get("reservation_id")) or parse_utc(answer.get("expires_at")) is None:
            raise CentralProtocolError("an approval needs reservation_id and expires_at")
    elif status == "declined":
        if not isinstance(answer.get("code"), str) or answer["code"] not in DECLINE_CODES:
            raise CentralProtocolError(f"unknown decline code {str(answer.get('code'))[:64]!r}")
    else:
        raise CentralProtocolError("authorisation status must be approved or declined")
    available = answer.get("available", {})
    if not _points(available, positive=False):
        raise CentralProtocolError("available must be {currency: integer}")
    return answer


def check_voucher(voucher: Any) -> bool:
    """Is this a voucher in wire shape (a redemption event's ``voucher``, a feed entry, a lookup)?"""
    if not isinstance(voucher, dict) or not is_id(voucher.get("code"), MAX_CODE_LEN):
        return False
    if voucher.get("member_id") is not None and not is_id(voucher["member_id"]):
        return False
    if voucher.get("reward_id") is not None and not is_id(voucher["reward_id"]):
        return False
    title = voucher.get("title")
    if not (isinstance(title, str) or isinstance(title, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in title.items())):
        return False
    benefit = voucher.get("benefit")
    if not isinstance(benefit, dict) or benefit.get("kind") not in BENEFIT_KINDS:
        return False
    for key in ("value_minor", "percent"):
        if benefit.get(key) is not None and (not _is_int(benefit[key]) or benefit[key] < 0):
            return False
    applies = benefit.get("applies_to")
    if applies is not None and not (isinstance(applies, dict) and all(
            isinstance(applies.get(k, []), list) and all(isinstance(x, str) for x in applies.get(k, []))
            for k in ("skus", "categories"))):
        return False
    return all(voucher.get(k) is None or parse_utc(voucher[k]) is not None for k in ("issued_at", "expires_at"))


def parse_voucher_answer(answer: Any, code: str) -> dict[str, Any]:
    """Central's answer to a voucher lookup, checked; CentralProtocolError when it is not one."""
    answered = answer.get("code") if isinstance(answer, dict) else None
    same = isinstance(answered, str) and (canonical_code(answered) == canonical_code(code)
                                          or answered.casefold() == code.strip().casefold())
    if not isinstance(answer, dict) or not same or not isinstance(answer.get("used"), bool):
        raise CentralProtocolError("voucher answer needs code and used")
    voucher = answer.get("voucher")
    if voucher is not None and not check_voucher(voucher):
        raise CentralProtocolError("voucher answer's voucher is malformed")
    return answer
