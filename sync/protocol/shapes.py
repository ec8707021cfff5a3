"""Shapes on the wire that both sides name: event types and the per-event answer to a push."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
