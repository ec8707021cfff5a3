"""Burning points: rewards to vouchers, voucher and coupon use, offline caps.

Eligibility is checked again at every burn, inside the same unit of work
that debits the points, so two tills cannot both spend the same balance here
and a voucher is consumed by exactly one INSERT. Offline, the lane caps what
can be redeemed, like a card terminal's floor limit: per member, per lane,
and not at all once it has been out of touch too long.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from posd.core.program import Coupon, Program, Reward
from posd.lane.context import LaneContext, Recorded, earlier_answer
from posd.lane.errors import LaneError, raises
from posd.lane.members import Identification, Members
from posd.lane.slips import Slips
from posd.storage.cache import CachedMember
from posd.storage.db import iso, parse_iso
from posd.storage.entries import Entry
from posd.storage.tx import LedgerTx, LedgerView

# Crockford base32 without I, L, O, U: unambiguous when read aloud or typed.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_voucher_code() -> str:
    """12 random characters (60 bits) behind a fixed 'V': unguessable and Code 128-friendly."""
    return "V" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


@dataclass(frozen=True)
class OfflineLimits:
    member_points: int = 1000  # per member, redeemed while offline and not yet synced
    lane_points: int = 5000  # all members on this lane, same window
    max_hours: float = 24.0  # out of touch longer than this: no redemptions at all


@dataclass(frozen=True)
class RedemptionInput:
    redemption_id: str
    member: str
    reward_id: str | None
    points: int | None
    transaction_id: str | None
    request_hash: str


@dataclass(frozen=True)
class _Redemption:
    """A redemption priced before its write."""

    req: RedemptionInput
    member: CachedMember
    ident: Identification
    program: Program
    reward: Reward
    offline: bool


@dataclass(frozen=True)
class Usable:
    """A voucher issued here or a coupon from the program, as the till sees it."""

    code: str
    source: str  # redemption | coupon
    description: str
    member_id: str | None = None
    reward_id: str | None = None
    value_minor: int | None = None
    percent: int | None = None
    sku: str | None = None
    valid_from: datetime | None = None
    expires_at: datetime | None = None
    voided: bool = False
    campaign: bool = False  # once per member rather than once

    @classmethod
    def from_voucher(cls, row: dict[str, Any]) -> Usable:
        return cls(code=row["code"], source=row["source"], description=row["description"],
                   member_id=row["member_id"], reward_id=row["reward_id"], value_minor=row["value_minor"],
                   percent=row["percent"], sku=row["sku"],
                   expires_at=parse_iso(row["expires_at"]) if row["expires_at"] else None,
                   voided=bool(row.get("voided_at")))

    @classmethod
    def from_coupon(cls, coupon: Coupon) -> Usable:
        return cls(code=coupon.code, source="coupon", description=coupon.title, member_id=coupon.member_id,
                   value_minor=coupon.value_minor, percent=coupon.percent, sku=coupon.sku,
                   valid_from=coupon.valid_from, expires_at=coupon.valid_to, campaign=coupon.campaign)

    def public(self) -> dict[str, Any]:
        return {"source": self.source, "member_id": self.member_id, "reward_id": self.reward_id,
                "description": self.description, "value_minor": self.value_minor, "percent": self.percent,
                "sku": self.sku, "expires_at": iso(self.expires_at) if self.expires_at else None}


class Rewards:
    def __init__(self, ctx: LaneContext, members: Members, slips: Slips, limits: OfflineLimits = OfflineLimits(),
                 last_sync: Callable[[], datetime | None] = lambda: None):
        self.ctx, self.members, self.slips = ctx, members, slips
        self.limits, self.last_sync = limits, last_sync

    # -- redeem -----------------------------------------------------------------
    @raises("redemption_id_conflict", "payment_card", "unknown_member", "member_ineligible", "program_unavailable",
            "unknown_reward", "reward_not_eligible", "reward_required", "insufficient_balance",
            "reward_limit_reached", "offline_too_long", "offline_cap_member", "offline_cap_lane",
            "member_token_invalid", "member_token_expired", "member_token_not_yet_valid", "member_token_replayed")
    async def redeem(self, req: RedemptionInput) -> Recorded:
        ctx = self.ctx
        earlier = earlier_answer(ctx.ledger.view(), "redemption_id", req.redemption_id, req.request_hash)
        if earlier:
            return earlier
        ident = self.members.find_active(req.member)
        member = ident.member
        program = ctx.require_program()
        redemption = _Redemption(req, member, ident, program, self._reward(program, member, req),
                                 ctx.is_offline())
        return await ctx.ledger.awrite(lambda unit: self._write_redemption(unit, redemption))

    @staticmethod
    @raises("unknown_reward", "reward_not_eligible", "reward_required")
    def _reward(program: Program, member: CachedMember, req: RedemptionInput) -> Reward:
        if not req.reward_id:
            raise LaneError("reward_required",
                            "redeem a reward from the catalog (reward_id); free-form point amounts are not offered")
        reward = program.reward(req.reward_id)
        if reward is None:
            raise LaneError("unknown_reward", "no such reward in the current program")
        if reward.price_for(member.tier) is None:
            raise LaneError("reward_not_eligible", "this reward is not offered to the member's tier")
        return reward

    @raises("redemption_id_conflict", "insufficient_balance", "reward_limit_reached", "offline_too_long",
            "offline_cap_member", "offline_cap_lane", "member_token_replayed")
    def _write_redemption(self, unit: LedgerTx, r: _Redemption) -> Recorded:
        req, member, reward = r.req, r.member, r.reward
        earlier = earlier_answer(unit, "redemption_id", req.redemption_id, req.request_hash)
        if earlier:
            return earlier
        self.members.accept(unit, r.ident)
        now = self.ctx.clock()  # one clock for expiry decisions: the lane's
        currency, price = reward.currency, reward.price_for(member.tier) or 0
        available = self.members.balances(member, unit).get(currency, {}).get("available", 0)
        if available < price:
            raise LaneError("insufficient_balance", f"the reward costs {price} {currency}; {available} available")
        if reward.limit_per_member_per_day:
            self._check_daily_limit(unit, member, reward, now)
        if r.offline:
            self._check_offline_caps(unit, member, price, now)
        code = new_voucher_code()
        expires = now + timedelta(days=reward.valid_days)
        description = reward.name(self.ctx.locale)
        seq = unit.append_event("redemption", {
            "transaction_id": req.transaction_id, "redemption_id": req.redemption_id,
            "member_id": member.member_id, "occurred_at": iso(now), "points": {currency: -price},
            "reward_id": reward.reward_id, "voucher_code": code,
            "program_version": r.program.version, "offline": r.offline,
        })
        unit.debit(Entry("redeem", member.member_id, currency, -price, req.transaction_id, seq, iso(now), iso(now),
                         r.program.version, req.redemption_id),
                   member.balances.get(currency, 0), member.applied_seq, now, member.aliases)
        unit.issue_voucher(code=code, member_id=member.member_id, reward_id=reward.reward_id,
                           description=description, value_minor=reward.value_minor, percent=reward.percent,
                           sku=reward.sku, issued_at=iso(now), expires_at=iso(expires))
        balance = self.members.balances(member, unit)
        voucher = {"code": code, "title": description, "symbology": "CODE128", "expires_at": iso(expires),
                   "valid_until": expires.astimezone(self.ctx.tz).date().isoformat(),
                   "reward_id": reward.reward_id, "kind": reward.kind, "value_minor": reward.value_minor,
                   "percent": reward.percent, "sku": reward.sku}
        slip_id = f"{req.redemption_id}~r"  # "~" is never in a POS id: no sale's slip can collide
        slip = self.slips.queue(unit, self.slips.compose(
            slip_id, member, r.program, occurred_at=now, earned={}, balance=balance, vouchers=[voucher],
            kind="redemption"), member.member_id)
        response = {"redemption_id": req.redemption_id, "member_id": member.member_id,
                    "points": {currency: -price}, "voucher": voucher, "balance": balance, "slip": slip,
                    "seq": seq, "offline": r.offline, "recorded_at": iso(now)}
        unit.store_redemption(
            redemption_id=req.redemption_id, request_hash=req.request_hash, member_id=member.member_id,
            reward_id=reward.reward_id, currency=currency, points=price, voucher_code=code, offline=r.offline,
            seq=seq, occurred_at=iso(now), response=response, recorded_at=iso(now))
        return Recorded(response, replayed=False)

    @raises("reward_limit_reached")
    def _check_daily_limit(self, view: LedgerView, member: CachedMember, reward: Reward, now: datetime) -> None:
        day_start = now.astimezone(self.ctx.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        used = view.redemptions_since(member.member_id, reward.reward_id, iso(day_start))
        if used >= (reward.limit_per_member_per_day or 0):
            raise LaneError("reward_limit_reached", "the member has had this reward as often as allowed today")

    @raises("offline_too_long", "offline_cap_member", "offline_cap_lane")
    def _check_offline_caps(self, view: LedgerView, member: CachedMember, price: int, now: datetime) -> None:
        last = self.last_sync()
        if last is None or (now - last).total_seconds() > self.limits.max_hours * 3600:
            raise LaneError("offline_too_long",
                            "the lane has been out of touch with central too long to redeem offline")
        if view.unsynced_redeemed(member.member_id) + price > self.limits.member_points:
            raise LaneError("offline_cap_member",
                            f"offline redemptions for this member are capped at {self.limits.member_points} points")
        if view.unsynced_redeemed() + price > self.limits.lane_points:
            raise LaneError("offline_cap_lane",
                            f"offline redemptions on this lane are capped at {self.limits.lane_points} points")

    # -- vouchers and coupons ---------------------------------------------------
    @raises("unknown_voucher", "voucher_void", "voucher_not_yet_valid", "voucher_expired", "voucher_other_member")
    def _usable(self, view: LedgerView, code: str, member_id: str | None) -> Usable:
        """The voucher or coupon behind a code, or a LaneError saying why it can't be used."""
        row = view.voucher(code)
        program = self.ctx.program()
        coupon = program.coupon(code) if program and row is None else None
        if row is None and coupon is None:
            raise LaneError("unknown_voucher", "no voucher or coupon with that code")
        v = Usable.from_voucher(row) if row is not None else Usable.from_coupon(coupon)  # type: ignore[arg-type]
        now = self.ctx.clock()
        if v.voided:
            raise LaneError("voucher_void", "central refused the redemption behind this voucher")
        if v.valid_from and v.valid_from > now:
            raise LaneError("voucher_not_yet_valid", "this coupon is not valid yet")
        if v.expires_at and v.expires_at <= now:
            raise LaneError("voucher_expired", "this voucher has expired")
        if v.member_id and member_id and v.member_id != member_id:
            raise LaneError("voucher_other_member", "this voucher belongs to another member")
        return v

    @staticmethod
    @raises("member_required")
    def _use_key(v: Usable, member_id: str | None) -> str:
        if not (v.member_id or member_id):
            # central records every use against a member, so a use across lanes is caught there too
            raise LaneError("member_required", "identify the member to use this coupon")
        return member_id or "" if v.campaign else ""

    @raises("payment_card", "unknown_member", "unknown_voucher", "voucher_void", "voucher_not_yet_valid",
            "voucher_expired", "voucher_other_member", "member_required", "voucher_used", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_token_replayed")
    def validate(self, code: str, member: str | None) -> dict[str, Any]:
        view = self.ctx.ledger.view()
        ident = self.members.find(member) if member else None
        member_id = ident.member.member_id if ident else None
        v = self._usable(view, code, member_id)
        used = view.voucher_use(code, self._use_key(v, member_id))
        if used:
            raise LaneError("voucher_used", f"already used at {used.used_at}")
        if ident is not None:
            self.members.accept_now(ident)  # a token is used once the answer is yes (a sync route: not the loop)
        return {"code": code, "valid": True, **v.public()}

    @raises("payment_card", "unknown_member", "unknown_voucher", "voucher_void", "voucher_not_yet_valid",
            "voucher_expired", "voucher_other_member", "member_required", "voucher_used", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_token_replayed")
    async def use(self, code: str, transaction_id: str, member: str | None) -> Recorded:
        ident = self.members.find(member) if member else None
        return await self.ctx.ledger.awrite(lambda unit: self._write_use(unit, code, transaction_id, ident))

    @raises("unknown_voucher", "voucher_void", "voucher_not_yet_valid", "voucher_expired", "voucher_other_member",
            "member_required", "voucher_used", "member_token_replayed")
    def _write_use(self, unit: LedgerTx, code: str, transaction_id: str, ident: Identification | None) -> Recorded:
        earlier = unit.voucher_use_in(code, transaction_id)
        if earlier:  # the POS retried after a lost answer: the first answer, even if the voucher has expired since
            return Recorded(earlier.response, replayed=True)
        member_id = ident.member.member_id if ident else None
        if ident is not None:
            self.members.accept(unit, ident)
        v = self._usable(unit, code, member_id)
        key = self._use_key(v, member_id)
        used = unit.voucher_use(code, key)
        if used:
            if used.transaction_id == transaction_id:  # the POS retried the same use
                return Recorded(used.response, replayed=True)
            raise LaneError("voucher_used", "this voucher was already used")
        now = iso(self.ctx.clock())
        program = self.ctx.program()
        seq = unit.append_event("voucher_use", {
            "transaction_id": transaction_id, "member_id": v.member_id or member_id, "occurred_at": now,
            "voucher_code": code, "voucher_once_per": "member" if v.campaign else "code",
            "points": {}, "program_version": program.version if program else "",
            "offline": self.ctx.is_offline(),
        })
        response = {"code": code, "used": True, "transaction_id": transaction_id, "used_at": now, "seq": seq,
                    **v.public()}
        # The primary key (code, member) makes a second use fail even if two requests race here.
        unit.record_voucher_use(code=code, key=key, transaction_id=transaction_id, seq=seq, response=response,
                                used_at=now)
        return Recorded(response, replayed=False)
