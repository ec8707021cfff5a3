"""Shapes on the wire that both sides name: event types and the per-event answer to a push."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from posd.sync.protocol.errors import FLAG_CODES, RequestRejected
from posd.sync.protocol.limits import MAX_ID_LEN

EventStatus = Literal["accepted", "duplicate", "rejected"]

EVENT_TYPES = frozenset({"accrual", "return", "redemption", "voucher_use", "member_enrolled", "token_use"})
# How a token_use event says the member was identified (docs/member-tokens.md).
TOKEN_SCHEMES = frozenset({"qr_token", "wallet_totp"})
RESULT_STATUSES = frozenset({"accepted", "duplicate", "rejected"})


@dataclass(frozen=True)
class EventResult:
    """Central's answer for one event of a push."""

    seq: int
    status: EventStatus
    code: str | None = None  # set on rejected
    retryable: bool = False  # a rejected event that central asks us to send again (e.g. seq_gap)
    flag: str | None = None  # an accepted event central noticed something about (birthday_repeated)
    event_id: str | None = field(default=None, compare=False)  # the event the answer names, when central names it

    def answers(self, event_id: str) -> bool:
        """Is this the answer for the event ``event_id``? (One that names no event is taken by its seq.)"""
        return self.event_id is None or self.event_id == event_id

    @property
    def flagged(self) -> bool:
        """Rejected as a flag (errors.FLAG_CODES): central has the event, nothing to repair on the lane."""
        return self.status == "rejected" and self.code in FLAG_CODES


def compact_json(doc: dict[str, Any]) -> bytes:
    """A small request body (an authorisation, a token claim): compact UTF-8 JSON, keys sorted."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


# Control characters (C0, DEL, C1) and unpaired surrogates: refused in every id and in the strings of
# an event (but inside a redemption's ``voucher``, whose title is program text and may break lines).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def is_id(value: Any, limit: int = MAX_ID_LEN) -> bool:
    """An id: a string of 1-``limit`` characters, none of them a control character."""
    return isinstance(value, str) and 0 < len(value) <= limit and not CONTROL.search(value)


def check_ids(doc: dict[str, Any], keys: tuple[str, ...], malformed: str) -> None:
    """Each of ``keys`` is an id (is_id), or RequestRejected(``malformed``)."""
    for key in keys:
        if not is_id(doc.get(key)):
            raise RequestRejected(malformed, f"{key} must be a string of 1-{MAX_ID_LEN} characters, "
                                             "without control characters")


def json_object(body: bytes, limit: int, malformed: str, what: str) -> dict[str, Any]:
    """A small request body read back: a JSON object of at most ``limit`` bytes, or RequestRejected
    (``batch_too_large`` when longer, else the route's ``malformed`` code)."""
    if len(body) > limit:
        raise RequestRejected("batch_too_large", f"{what} is at most {limit} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestRejected(malformed, "body is not JSON") from exc
    if not isinstance(doc, dict):
        raise RequestRejected(malformed, "body must be an object")
    return doc


def card_forms(identifier: str) -> tuple[str, ...]:
    """The forms one card's number is reported in: a UPC-A's 12 digits and the EAN-13 that is those
    digits behind a 0 are one card (scanners report either, a camera always the EAN-13); any other
    identifier has one form. The first form is the card's EAN-13, the one a lock is taken on."""
    if identifier.isascii() and identifier.isdigit() and _gtin_ok(identifier):
        if len(identifier) == 12:
            return "0" + identifier, identifier
        if len(identifier) == 13 and identifier[0] == "0":
            return identifier, identifier[1:]
    return (identifier,)


def _gtin_ok(digits: str) -> bool:
    """The GS1 check digit: weights 3 and 1 from the right, the last digit making the sum a multiple of 10."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits[:-1]), start=1))
    return (10 - total % 10) % 10 == int(digits[-1])
