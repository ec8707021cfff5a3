"""Burning points: rewards to vouchers, voucher and coupon use, offline caps.

Eligibility is checked again at every burn, inside the same write
transaction that debits the points, so two tills cannot both spend the same
balance here and a voucher is consumed by exactly one INSERT. Offline, the
lane caps what can be redeemed, like a card terminal's floor limit: per
member, per lane, and not at all once it has been out of touch too long.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from posd.core.program import Program, Reward
from posd.lane import Lane, LaneError, Recorded, earlier_answer
from posd.storage import lots
from posd.storage.cache import CachedMember
from posd.storage.db import iso

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


class Redemptions:
    def __init__(self, lane: Lane, limits: OfflineLimits, last_sync: Any = lambda: None):
        self.lane, self.limits, self.last_sync = lane, limits, last_sync
        self.ledger = lane.ledger

    # -- redeem -----------------------------------------------------------------
    async def redeem(self, req: RedemptionInput) -> Recorded:
        earlier = earlier_answer(self.ledger.reader(), "redemption_id", req.redemption_id, req.request_hash)
        if earlier:
            return earlier
        member = self.lane.find_member(req.member)
        if member.status != "active":
            raise LaneError(422, "member_ineligible", f"the member's account is {member.status}")
        program = self.lane.require_program()
        reward, currency, price = self._price(program, member, req)
        offline = self.lane.is_offline()
        recorded = await self.ledger.awrite(
            lambda conn: self._write(conn, req, member, program, reward, currency, price, offline))
        if not recorded.replayed:
            self.lane.after_write(recorded.response["slip"]["state"] == "queued")
        return recorded

    def _price(self, program: Program, member: CachedMember, req: RedemptionInput) -> tuple[Reward | None, str, int]:
        if req.reward_id:
            reward = program.reward(req.reward_id)
            if reward is None:
                raise LaneError(404, "unknown_reward", "no such reward in the current program")
            price = reward.price_for(member.tier)
            if price is None:
                raise LaneError(422, "reward_not_eligible", "this reward is not offered to the member's tier")
            return reward, reward.currency, price
        raise LaneError(422, "reward_required",
                        "redeem a reward from the catalog (reward_id); free-form point amounts are not offered")

    def _write(self, conn: sqlite3.Connection, req: RedemptionInput, member: CachedMember, program: Program,
               reward: Reward | None, currency: str, price: int, offline: bool) -> Recorded:
        earlier = earlier_answer(conn, "redemption_id", req.redemption_id, req.request_hash)
        if earlier:
            return earlier
        now = self.lane.clock()  # one clock for expiry decisions: the lane's
        balance = self.lane.balances(member, conn)
        available = balance.get(currency, {}).get("available", 0)
        if available < price:
            raise LaneError(422, "insufficient_balance",
                            f"the reward costs {price} {currency}; {available} available")
        if reward is not None and reward.limit_per_member_per_day:
            self._check_daily_limit(conn, member, reward, now)
        if offline:
            self._check_offline_caps(conn, member, price, now)
        code = new_voucher_code()
        expires = now + timedelta(days=reward.valid_days if reward else 30)
        description = reward.name(self.lane.locale) if reward else f"{price} {currency}"
        seq = self.ledger.append_event(conn, "redemption", {
            "transaction_id": req.transaction_id, "redemption_id": req.redemption_id,
            "member_id": member.member_id, "occurred_at": iso(now), "points": {currency: -price},
            "reward_id": reward.reward_id if reward else None, "voucher_code": code,
            "program_version": program.version, "offline": offline,
        })
        entry = conn.execute(
            "INSERT INTO ledger_entries (kind, member_id, currency, points, transaction_id, seq, occurred_at, "
            "recorded_at, program_version, ref_id) VALUES ('redeem', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (member.member_id, currency, -price, req.transaction_id, seq, iso(now), iso(now), program.version,
             req.redemption_id))
        plan = lots.draw(conn, member.member_id, currency, price, member.balances.get(currency, 0),
                         member.applied_seq, now)
        lots.allocate(conn, entry.lastrowid, plan)
        conn.execute(
            "INSERT INTO vouchers (code, source, member_id, reward_id, description, value_minor, percent, sku, "
            "issued_at, expires_at) VALUES (?, 'redemption', ?, ?, ?, ?, ?, ?, ?, ?)",
            (code, member.member_id, reward.reward_id if reward else None, description,
             reward.value_minor if reward else None, reward.percent if reward else None,
             reward.sku if reward else None, iso(now), iso(expires)))
        balance = self.lane.balances(member, conn)
        voucher = {"code": code, "title": description, "symbology": "CODE128", "expires_at": iso(expires),
                   "valid_until": expires.astimezone(self.lane.tz).date().isoformat(),
                   "reward_id": reward.reward_id if reward else None, "kind": reward.kind if reward else None,
                   "value_minor": reward.value_minor if reward else None,
                   "percent": reward.percent if reward else None, "sku": reward.sku if reward else None}
        slip_id = f"{req.redemption_id}~r"  # "~" is never in a POS id: no sale's slip can collide
        slip_state = "none"
        if self.lane.printer_enabled:
            slip_state = "queued"
            self.lane.queue_slip(conn, slip_id, member, program, occurred_at=now, earned={},
                                 balance=balance, vouchers=[voucher], kind="redemption")
        response = {"redemption_id": req.redemption_id, "member_id": member.member_id,
                    "points": {currency: -price}, "voucher": voucher, "balance": balance,
                    "slip": {"slip_id": slip_id if slip_state == "queued" else None, "state": slip_state},
                    "seq": seq, "offline": offline, "recorded_at": iso(now)}
        conn.execute(
            "INSERT INTO redemptions (redemption_id, request_hash, member_id, reward_id, currency, points, "
            "voucher_code, offline, seq, occurred_at, response, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (req.redemption_id, req.request_hash, member.member_id, reward.reward_id if reward else None,
             currency, price, code, int(offline), seq, iso(now), json.dumps(response), iso(now)))
        return Recorded(response, replayed=False)

    def _check_daily_limit(self, conn, member: CachedMember, reward: Reward, now: datetime) -> None:
        local = now.astimezone(self.lane.tz)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        used = conn.execute(
            "SELECT COUNT(*) FROM redemptions WHERE member_id = ? AND reward_id = ? AND occurred_at >= ?",
            (member.member_id, reward.reward_id, iso(day_start))).fetchone()[0]
        if used >= reward.limit_per_member_per_day:
            raise LaneError(422, "reward_limit_reached", "the member has had this reward as often as allowed today")

    def _check_offline_caps(self, conn, member: CachedMember, price: int, now: datetime) -> None:
        last = self.last_sync()
        if last is None or (now - last).total_seconds() > self.limits.max_hours * 3600:
            raise LaneError(422, "offline_too_long",
                            "the lane has been out of touch with central too long to redeem offline")
        # every redemption central has not confirmed counts, whatever the lane believed when it was made:
        # the link may have dropped before the lane noticed
        unsynced = ("SELECT COALESCE(SUM(r.points), 0) FROM redemptions r JOIN outbox o ON o.seq = r.seq "
                    "WHERE o.state = 'pending'")
        by_member = conn.execute(unsynced + " AND r.member_id = ?", (member.member_id,)).fetchone()[0]
        if by_member + price > self.limits.member_points:
            raise LaneError(422, "offline_cap_member",
                            f"offline redemptions for this member are capped at {self.limits.member_points} points")
        by_lane = conn.execute(unsynced).fetchone()[0]
        if by_lane + price > self.limits.lane_points:
            raise LaneError(422, "offline_cap_lane",
                            f"offline redemptions on this lane are capped at {self.limits.lane_points} points")

    # -- vouchers and coupons ---------------------------------------------------
    def _voucher(self, conn: sqlite3.Connection, code: str, member_id: str | None) -> dict[str, Any]:
        """The voucher or coupon behind a code, or a LaneError saying why it can't be used."""
        row = conn.execute("SELECT * FROM vouchers WHERE code = ?", (code,)).fetchone()
        if row is not None:
            v = dict(row)
        else:
            v = self._coupon(code)
            if v is None:
                raise LaneError(404, "unknown_voucher", "no voucher or coupon with that code")
        now = iso(self.lane.clock())
        if v.get("voided_at"):
            raise LaneError(422, "voucher_void", "central refused the redemption behind this voucher")
        if v.get("valid_from") and v["valid_from"] > now:
            raise LaneError(422, "voucher_not_yet_valid", "this coupon is not valid yet")
        if v.get("expires_at") and v["expires_at"] <= now:
            raise LaneError(422, "voucher_expired", "this voucher has expired")
        if v.get("member_id") and member_id and v["member_id"] != member_id:
            raise LaneError(422, "voucher_other_member", "this voucher belongs to another member")
        return v

    def _coupon(self, code: str) -> dict[str, Any] | None:
        program = self.lane.program()
        for c in (program.raw.get("coupons") or []) if program else []:
            if c.get("code") == code:
                return {"code": code, "source": "coupon", "campaign": c.get("kind", "campaign") == "campaign",
                        "member_id": c.get("member_id"), "description": c.get("title") or code,
                        "value_minor": c.get("value_minor"), "percent": c.get("percent"), "sku": c.get("sku"),
                        "valid_from": c.get("valid_from"), "expires_at": c.get("valid_to")}
        return None

    def _use_key(self, v: dict[str, Any], member_id: str | None) -> str:
        if not (v.get("member_id") or member_id):
            # central records every use against a member, so a use across lanes is caught there too
            raise LaneError(422, "member_required", "identify the member to use this coupon")
        return member_id if v.get("campaign") else ""

    def validate(self, code: str, member: str | None) -> dict[str, Any]:
        conn = self.ledger.reader()
        member_id = self.lane.find_member(member).member_id if member else None
        v = self._voucher(conn, code, member_id)
        used = conn.execute("SELECT used_at, transaction_id FROM voucher_uses WHERE code = ? AND member_id = ?",
                            (code, self._use_key(v, member_id))).fetchone()
        if used:
            raise LaneError(409, "voucher_used", f"already used at {used['used_at']}")
        return {"code": code, "valid": True, **_public(v)}

    async def use(self, code: str, transaction_id: str, member: str | None) -> Recorded:
        member_id = self.lane.find_member(member).member_id if member else None
        recorded = await self.ledger.awrite(lambda conn: self._write_use(conn, code, transaction_id, member_id))
        if not recorded.replayed:
            self.lane.after_write(False)
        return recorded

    def _write_use(self, conn: sqlite3.Connection, code: str, transaction_id: str, member_id: str | None) -> Recorded:
        earlier = conn.execute("SELECT response FROM voucher_uses WHERE code = ? AND transaction_id = ?",
                               (code, transaction_id)).fetchone()
        if earlier:  # the POS retried after a lost answer: the first answer, even if the voucher has expired since
            return Recorded(json.loads(earlier["response"]), replayed=True)
        v = self._voucher(conn, code, member_id)
        key = self._use_key(v, member_id)
        used = conn.execute("SELECT transaction_id, response FROM voucher_uses WHERE code = ? AND member_id = ?",
                            (code, key)).fetchone()
        if used:
            if used["transaction_id"] == transaction_id:  # the POS retried the same use
                return Recorded(json.loads(used["response"]), replayed=True)
            raise LaneError(409, "voucher_used", "this voucher was already used")
        now = iso(self.lane.clock())
        seq = self.ledger.append_event(conn, "voucher_use", {
            "transaction_id": transaction_id, "member_id": v.get("member_id") or member_id, "occurred_at": now,
            "voucher_code": code, "voucher_once_per": "member" if v.get("campaign") else "code",
            "points": {}, "program_version": (self.lane.program() or _NoProgram).version,
            "offline": self.lane.is_offline(),
        })
        response = {"code": code, "used": True, "transaction_id": transaction_id, "used_at": now, "seq": seq,
                    **_public(v)}
        # The primary key (code, member) makes a second use fail even if two requests race here.
        conn.execute("INSERT INTO voucher_uses (code, member_id, transaction_id, seq, response, used_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (code, key, transaction_id, seq, json.dumps(response), now))
        return Recorded(response, replayed=False)


class _NoProgram:
    version = ""


def _public(v: dict[str, Any]) -> dict[str, Any]:
    keys = ("source", "member_id", "reward_id", "description", "value_minor", "percent", "sku", "expires_at")
    return {k: v.get(k) for k in keys}
