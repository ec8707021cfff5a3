"""Shapes on the wire that both sides name: event types and the per-event answer to a push."""

from __future__ import annotations

import json
from dataclasses import dataclass
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

    @property
    def flagged(self) -> bool:
        """Rejected as a flag (errors.FLAG_CODES): central has the event, nothing to repair on the lane."""
        return self.status == "rejected" and self.code in FLAG_CODES


def compact_json(doc: dict[str, Any]) -> bytes:
    """A small request body (an authorisation, a token claim): compact UTF-8 JSON, keys sorted."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def check_ids(doc: dict[str, Any], keys: tuple[str, ...], malformed: str) -> None:
    """Each of ``keys`` is an id of 1-MAX_ID_LEN characters, or RequestRejected(``malformed``)."""
    for key in keys:
        if not isinstance(doc.get(key), str) or not 0 < len(doc[key]) <= MAX_ID_LEN:
            raise RequestRejected(malformed, f"{key} must be a string of 1-{MAX_ID_LEN} characters")


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
