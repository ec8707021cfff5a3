"""What every burn shares: the offline limits, the question to central, and its refusals.

A burn (a redemption, a voucher or coupon use) is asked of central first
(posd.lane.authority); when central answers in time its answer decides, and
when it does not, the lane decides alone within its offline limits, like a
card terminal's floor limit: per member, per lane, and not at all once the
lane has been out of touch too long. The POS hears which in ``authorised``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from posd.lane.authority import Decision
from posd.lane.errors import LaneError, raises

# Central's refusals as the POS hears them (posd.sync.protocol.DECLINE_CODES); an erased member is
# "not a member" at the lane too, and a conflicting authorisation is the request id's conflict.
_DECLINED_AS = {
    "insufficient_balance": "insufficient_balance", "reward_limit_reached": "reward_limit_reached",
    "unknown_member": "unknown_member", "member_deleted": "unknown_member",
    "member_ineligible": "member_ineligible", "voucher_used": "voucher_used", "voucher_expired": "voucher_expired",
    "voucher_other_member": "voucher_other_member",
}
# A member's events central may lack that the lane lists with a redemption (posd.sync.protocol.MAX_UNSYNCED_EVENTS).
MAX_UNSYNCED_EVENTS = 500


@dataclass(frozen=True)
class OfflineLimits:
    member_points: int = 1000  # per member, redeemed without central and not yet synced
    lane_points: int = 5000  # all members on this lane, same window
    max_hours: float = 24.0  # out of touch longer than this: no burn without central at all
    member_uses: int = 3  # voucher and coupon uses per member, without central and not yet synced
    lane_uses: int = 20  # all members on this lane, same window


def authorised(decision: Decision) -> str:
    """The ``authorised`` of an answer: online when central approved it, offline when the lane decided."""
    return "online" if decision.status == "approved" else "offline"


@raises("unknown_member", "member_ineligible")
def member_declined(decision: Decision) -> LaneError | None:
    """Central's refusal because of the member, for the POS; None when it was for another reason."""
    code = _DECLINED_AS.get(decision.code or "")
    if code == "unknown_member":
        return LaneError("unknown_member", "not a member (central)")
    if code == "member_ineligible":
        return LaneError("member_ineligible", f"central declined: {decision.message or 'account not active'}")
    return None


@raises("redemption_id_conflict", "insufficient_balance", "reward_limit_reached", "unknown_member",
        "member_ineligible")
def redemption_declined(decision: Decision) -> LaneError:
    """Central's refusal of a redemption, for the POS."""
    code = _DECLINED_AS.get(decision.code or "", "redemption_id_conflict")
    if code == "insufficient_balance":
        return LaneError("insufficient_balance", f"central declined: {decision.message or 'balance too low'}")
    if code == "reward_limit_reached":
        return LaneError("reward_limit_reached", "the member had this reward as often as allowed today (all lanes)")
    return member_declined(decision) or LaneError(
        "redemption_id_conflict", "this redemption_id was already used for a different redemption")


@raises("voucher_used", "voucher_expired", "voucher_other_member", "unknown_member", "member_ineligible")
def use_declined(decision: Decision) -> LaneError:
    """Central's refusal of a voucher or coupon use, for the POS."""
    code = _DECLINED_AS.get(decision.code or "", "voucher_used")
    if code == "voucher_expired":
        return LaneError("voucher_expired", "this voucher has expired (central)")
    if code == "voucher_other_member":
        return LaneError("voucher_other_member", "this voucher belongs to another member (central)")
    return member_declined(decision) or LaneError(
        "voucher_used", "this voucher was already used, or is being used at another lane")


@raises("offline_too_long")
def check_in_touch(limits: OfflineLimits, last_sync: Callable[[], datetime | None], now: datetime) -> None:
    """No burn without central once the lane has been out of touch longer than ``max_hours``."""
    last = last_sync()
    if last is None or (now - last).total_seconds() > limits.max_hours * 3600:
        raise LaneError("offline_too_long", "the lane has been out of touch with central too long to burn offline")


def authorisation_request(kind: str, authorisation_id: str, member_id: str | None, occurred_at: str,
                          **fields: Any) -> dict[str, Any]:
    """An authorisation request in wire shape (docs/sync-protocol.md, burn authorisation)."""
    return {"authorisation_id": authorisation_id, "kind": kind, "member_id": member_id,
            "occurred_at": occurred_at, **{k: v for k, v in fields.items() if v is not None}}
