"""Members at the till: find one by any identifier, show them, and identify scans.

Scans run in the device's reader thread: identification (posd.core.identify)
and the cache lookup are quick and read-only, and a payment card stops here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from posd.core.identify import identify_code
from posd.core.program import Program
from posd.lane.context import LaneContext
from posd.lane.errors import LaneError, raises
from posd.storage.cache import CachedMember
from posd.storage.db import parse_iso
from posd.storage.tx import LedgerView

STALE_AFTER = timedelta(hours=24)


class Members:
    def __init__(self, ctx: LaneContext):
        self.ctx = ctx

    @raises("payment_card", "unknown_member")
    def identify(self, identifier: str) -> CachedMember:
        found = identify_code(identifier)
        if found.kind == "payment_card":
            raise LaneError("payment_card", "that is a payment card number; it was not stored")
        member = self.lookup(found.code) if found.kind == "member_code" else None
        if member is None:
            raise LaneError("unknown_member", "not a member")
        return member

    @raises("payment_card", "unknown_member", "member_ineligible")
    def identify_active(self, identifier: str) -> CachedMember:
        """A member who may earn and burn now."""
        member = self.identify(identifier)
        if member.status != "active":
            raise LaneError("member_ineligible", f"the member's account is {member.status}")
        return member

    def lookup(self, code: str | None) -> CachedMember | None:
        """The one lookup behind a scan and an API call: the normalised code, deleted = unknown."""
        member = self.ctx.cache.find_member(code) if code else None
        return None if member is None or member.status == "deleted" else member

    def balances(self, member: CachedMember, view: LedgerView | None = None) -> dict[str, dict[str, int]]:
        """Central's confirmed balance plus this lane's entries central has not applied yet."""
        view = view or self.ctx.ledger.view()
        return view.balance(member.member_id, member.balances, member.applied_seq, self.ctx.clock())

    def rewards_available(self, member: CachedMember, program: Program,
                          balance: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
        available = {cur: b.get("available", 0) for cur, b in balance.items()}
        return [{"reward_id": reward.reward_id, "title": reward.name(self.ctx.locale), "currency": reward.currency,
                 "points": price, "kind": reward.kind}
                for reward, price in program.affordable_rewards(member.tier, available)]

    def member_view(self, member: CachedMember) -> dict[str, Any]:
        """What the POS shows (GET /v1/members/{identifier}, member.identified)."""
        ctx = self.ctx
        program = ctx.program()
        tier = program.tier(member.tier) if program else None
        nxt = program.next_tier(member.tier) if program else None
        synced = ctx.cache.state("members_synced_at") or member.updated_at
        stale = not synced or ctx.clock() - parse_iso(synced) > STALE_AFTER
        balance = self.balances(member)
        return {
            "member_id": member.member_id,
            "display_name": member.display_name,
            "locale": member.locale,
            "status": member.status,
            "tier": {"id": member.tier, "name": tier.name(ctx.locale) if tier else member.tier,
                     "multiplier": str(tier.multiplier) if tier else "1"},
            "progress": None if nxt is None else {
                "next_tier": {"id": nxt.tier_id, "name": nxt.name(ctx.locale)},
                "qualifying": member.qualifying,
                "threshold": nxt.threshold,
                "points_needed": max(0, nxt.threshold - member.qualifying),
            },
            "balances": balance,
            "rewards_available": self.rewards_available(member, program, balance) if program else [],
            "offers": member.offers,
            "as_of": synced,
            "stale": stale,
        }

    # -- identify (runs in the device's reader thread) --------------------
    def on_scan(self, device: str, data: str, symbology: str | None = None) -> None:
        bus = self.ctx.bus
        found = identify_code(data)
        if found.kind == "payment_card":
            # The digits stop here: no log line, no event field, no table carries them.
            bus.publish("card.rejected", {"device": device, "reason": "payment_card"})
            return
        if found.kind == "invalid":
            bus.publish("scan", {"device": device, "symbology": symbology, "kind": "invalid"})
            return
        code = found.code or ""
        bus.publish("scan", {"device": device, "symbology": symbology, "kind": "code", "data": code})
        member = self.lookup(code)
        if member is None:
            bus.publish("member.unknown", {"device": device, "identifier": code})
        else:
            bus.publish("member.identified", {"device": device, "identifier": code,
                                              "member": self.member_view(member)})
