"""Burning points: rewards to vouchers, voucher and coupon use, and what they take off a basket.

Every burn is asked of central first (posd.lane.burn, posd.lane.authority):
central checks and reserves across every lane and answers in time, or the
lane decides alone within its offline caps. Either way the lane's own checks
run again inside the unit of work that records the burn, so two tills of
this lane cannot both spend the same balance and a voucher is consumed by
exactly one INSERT here; central's reservation makes that true across lanes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from posd.core.benefit import Stacking
from posd.core.effects import REASONS, apply_stack
from posd.core.identify import VOUCHER_ALPHABET, VOUCHER_LENGTH
from posd.core.program import Program, Reward
from posd.core.rules import Basket, RuleError, check_basket
from posd.faults import crash_point
from posd.lane.authority import NOT_ASKED, Authority, Decision, LocalAuthority, VoucherLookup
from posd.lane.burn import (
    MAX_UNSYNCED_EVENTS,
    OfflineLimits,
    authorisation_request,
    authorised,
    check_in_touch,
    redemption_declined,
    use_declined,
)
from posd.lane.context import LaneContext, Recorded, earlier_answer
from posd.lane.errors import LaneError, basket_error, raises
from posd.lane.members import Identification, Members
from posd.lane.slips import Slips
from posd.lane.vouchers import Usable, VoucherBook, needs_member, not_found, unknown_code, voucher_wire, why_not
from posd.storage.cache import CachedMember
from posd.storage.db import iso
from posd.storage.entries import Entry
from posd.storage.tx import LedgerTx, LedgerView
from posd.storage.vouchers import Use as VoucherUse

__all__ = ["OfflineLimits", "RedemptionInput", "Rewards", "Usable", "new_voucher_code"]

def new_voucher_code() -> str:
    """12 random characters (60 bits) behind a fixed 'V': unguessable and Code 128-friendly. Crockford
    base32 without I, L, O, U: unambiguous when read aloud or typed, and read back in any case
    (posd.core.identify.voucher_code)."""
    return "V" + "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(VOUCHER_LENGTH - 1))


@dataclass(frozen=True)
class RedemptionInput:
    redemption_id: str
    member: str
    reward_id: str | None
    points: int | None
    transaction_id: str | None
    request_hash: str
    legacy_hash: Callable[[], tuple[str, ...]] | None = None  # hashes older posd versions made, when asked


class _CentralBack(Exception):
    """A burn's unit found central answering the lane again after the burn decided not to ask it."""


@dataclass(frozen=True)
class _Redemption:
    """A redemption priced and authorised before its write."""

    req: RedemptionInput
    member: CachedMember
    ident: Identification
    program: Program
    reward: Reward
    decision: Decision
    code: str  # the voucher's code, made before central was asked: registered there as pending


@dataclass(frozen=True)
class _Use:
    """A voucher or coupon use checked and authorised before its write."""

    usable: Usable
    transaction_id: str
    ident: Identification | None  # the member, and a token accepted with the use
    decision: Decision
    effect: dict[str, Any] | None
    request_hash: str | None = None

    @property
    def member_id(self) -> str | None:
        return self.ident.member.member_id if self.ident else None

    @property
    def aliases(self) -> tuple[str, ...]:
        """The provisional ids central mapped to the member: their uses are the member's."""
        return self.ident.member.aliases if self.ident else ()


def minor_places(money: str) -> int:
    """The decimal places of ``money``'s minor unit (ISO 4217's exponent: 2 for PLN, 0 for JPY, 3 for KWD);
    2 for a code the table does not know."""
    import iso4217

    try:
        exponent = iso4217.Currency(money).exponent
    except ValueError:
        return 2
    return 2 if exponent is None else exponent


@raises("reward_required", "invalid_points")
def _points_reward(program: Program, points: int | None) -> Reward:
    """A redemption by points: the main currency's points as a money-off voucher, at the value the
    program gives them (currencies[].money_value)."""
    currency = program.currency(program.earn_currency)
    value = currency.money_value if currency else None
    if points is None:
        raise LaneError("reward_required", "give reward_id (a reward from the catalog), or points"
                        + ("" if value is not None else "; this program gives its points no money value, so only "
                                                        "reward_id"))
    if value is None:
        raise LaneError("reward_required", "redeem a reward from the catalog (reward_id); this program gives "
                                           f"{program.earn_currency} no money value, so points alone buy nothing")
    reward = program.points_reward(points, minor_places(value.money))
    if reward is None:
        raise LaneError("invalid_points", f"redeem at least {value.min_points} {program.earn_currency}, "
                                          f"in steps of {value.step}, at most {value.max_points}")
    return reward


class Rewards:
    def __init__(self, ctx: LaneContext, members: Members, slips: Slips, limits: OfflineLimits = OfflineLimits(),
                 last_sync: Callable[[], datetime | None] = lambda: None, authority: Authority | None = None):
        self.ctx, self.members, self.slips = ctx, members, slips
        self.limits, self.last_sync = limits, last_sync
        self.authority: Authority = authority or LocalAuthority()
        self.book = VoucherBook(ctx, self.authority)

    # -- redeem -----------------------------------------------------------------
    @raises("redemption_id_conflict", "payment_card", "unknown_member", "ambiguous_member", "member_unavailable",
            "member_ineligible", "program_unavailable", "unknown_reward", "reward_not_eligible", "reward_required",
            "invalid_points",
            "insufficient_balance", "reward_limit_reached", "offline_too_long", "offline_cap_member",
            "offline_cap_lane", "member_token_invalid", "member_token_expired", "member_token_not_yet_valid",
            "member_token_replayed", "storage_full", "storage_failed")
    async def redeem(self, req: RedemptionInput) -> Recorded:
        ctx = self.ctx
        view = ctx.ledger.view()
        earlier = earlier_answer(view, "redemption_id", req.redemption_id, req.request_hash,
                                 req.legacy_hash)
        if earlier:
            return earlier
        now = ctx.clock()

        async def check() -> tuple[Identification, Program, Reward]:  # what the lane refuses alone, before asking
            ident = self.members.find_active(req.member)
            program = ctx.require_program()
            reward = self._reward(program, ident.member, req)
            self._check_redemption(view, ident.member, reward, now)
            return ident, program, reward

        # Unknown here, or short on this lane's view, which may be behind central's (a member enrolled, or
        # points earned, at another lane since the last pull): checked once more after one pull.
        ident, program, reward = await self.members.after_pull(check, "insufficient_balance")
        member = ident.member
        await self.members.aclaim_at_central(ident)
        # Made before asking: central registers the voucher with its approval, so it is good at every
        # lane at once, before this lane's redemption event reaches central.
        code = new_voucher_code()
        for back in (False, True):  # back: central answered the lane after this burn had not asked it
            decision = await self._ask_central(view, member, reward, req, now,
                                               voucher_wire(code, member.member_id, reward, now,
                                                            now + timedelta(days=reward.valid_days)), back)
            if decision.status == "declined":
                raise redemption_declined(decision)
            redemption = _Redemption(req, member, ident, program, reward, decision, code)
            try:
                return await self._record(decision, lambda unit, r=redemption: self._write_redemption(unit, r))
            except _CentralBack:  # central answered the lane meanwhile: it is asked after all,
                await self.members.aclaim_at_central(ident)  # the member's token first, as online
        raise AssertionError("unreachable: the second attempt asked central")

    @raises("storage_failed", "storage_full")
    async def _record(self, decision: Decision, write: Callable[[LedgerTx], Recorded]) -> Recorded:
        """Record a burn central approved or the lane decided alone, in one unit of work. When the
        lane's own re-check in that unit refuses a burn central approved (another till of this lane
        spent first), the reservation is given back before the POS hears the refusal."""
        if decision.reservation_id:  # approved and reserved at central, not yet recorded here
            crash_point("after_authorised_before_commit")
        try:
            return await self.ctx.acommit(write)
        except LaneError as exc:
            # A conflicting id may name a burn recorded earlier under the same authorisation: keep it.
            if exc.code not in ("redemption_id_conflict", "transaction_id_conflict"):
                await self.authority.release(decision)  # approved, or asked with no answer in time
            raise

    @staticmethod
    @raises("unknown_reward", "reward_not_eligible", "reward_required", "invalid_points")
    def _reward(program: Program, member: CachedMember, req: RedemptionInput) -> Reward:
        if not req.reward_id:
            return _points_reward(program, req.points)
        reward = program.reward(req.reward_id)
        if reward is None:
            raise LaneError("unknown_reward", "no such reward in the current program")
        if reward.price_for(member.tier) is None:
            raise LaneError("reward_not_eligible", "this reward is not offered to the member's tier")
        return reward

    @raises("insufficient_balance", "reward_limit_reached")
    def _check_redemption(self, view: LedgerView, member: CachedMember, reward: Reward, now: datetime) -> None:
        """The member's balance on this lane covers the price, and today's limit is not reached."""
        currency, price = reward.currency, reward.price_for(member.tier) or 0
        available = self.members.balances(member, view).get(currency, {}).get("available", 0)
        if available < price:
            by_points = reward.reward_id == f"{currency}:{price}"  # points alone, no reward named (_points_reward)
            asked = f"{price} {currency} asked" if by_points else f"the reward costs {price} {currency}"
            raise LaneError("insufficient_balance", f"{asked}; {available} available")
        if self.members.used_up_today(view, member, reward, now):
            raise LaneError("reward_limit_reached", "the member has had this reward as often as allowed today")

    async def _ask_central(self, view: LedgerView, member: CachedMember, reward: Reward, req: RedemptionInput,
                           now: datetime, voucher: dict[str, Any], back: bool = False) -> Decision:
        """Central's decision; unavailable at once when the lane knows central is out of reach (unless
        ``back``: central answered the lane since this burn last looked)."""
        if not back and self.ctx.is_offline():
            return NOT_ASKED
        limit = reward.limit_per_member_per_day
        return await self.authority.authorise(authorisation_request(
            "redemption", f"redemption:{req.redemption_id}", member.member_id, iso(now),
            points={reward.currency: reward.price_for(member.tier) or 0}, reward_id=reward.reward_id,
            limit={"per_member": limit, "since": iso(self.members.day_start(now))} if limit else None, voucher=voucher,
            unsynced=view.unsynced_entries(member.member_id, member.applied_seq, now, MAX_UNSYNCED_EVENTS,
                                           member.aliases)))

    @raises("redemption_id_conflict", "insufficient_balance", "reward_limit_reached", "offline_too_long",
            "offline_cap_member", "offline_cap_lane", "member_token_replayed")
    def _write_redemption(self, unit: LedgerTx, r: _Redemption) -> Recorded:
        req, member, reward = r.req, r.member, r.reward
        earlier = earlier_answer(unit, "redemption_id", req.redemption_id, req.request_hash,
                                 req.legacy_hash)
        if earlier:
            return earlier
        self.members.accept(unit, r.ident)
        now = self.ctx.clock()  # one clock for expiry decisions: the lane's
        currency, price = reward.currency, reward.price_for(member.tier) or 0
        self._check_redemption(unit, member, reward, now)  # again: another till of this lane may have spent
        offline = r.decision.status != "approved"
        if offline:
            self._still_out_of_reach(r.decision)
            self._check_offline_caps(unit, member, price, now)
        code = r.code
        expires = now + timedelta(days=reward.valid_days)
        wire = voucher_wire(code, member.member_id, reward, now, expires)
        seq = unit.append_event("redemption", {
            "transaction_id": req.transaction_id, "redemption_id": req.redemption_id,
            "member_id": member.member_id, "occurred_at": iso(now), "points": {currency: -price},
            "reward_id": reward.reward_id, "voucher_code": code, "voucher": wire,
            "program_version": r.program.version, "offline": offline,
            "authorisation_id": f"redemption:{req.redemption_id}", "reservation_id": r.decision.reservation_id,
        })
        unit.debit(Entry("redeem", member.member_id, currency, -price, req.transaction_id, seq, iso(now), iso(now),
                         r.program.version, req.redemption_id),
                   member.balances.get(currency, 0), member.applied_seq, now, member.aliases)
        title = reward.name(self.ctx.locale)
        unit.issue_voucher(code=code, member_id=member.member_id, reward_id=reward.reward_id,
                           description=title, value_minor=reward.value_minor, percent=reward.percent,
                           sku=reward.sku, issued_at=iso(now), expires_at=iso(expires),
                           details={"benefit": wire["benefit"], "title": wire["title"]})
        balance = self.members.balances(member, unit)
        voucher = {"code": code, "title": title, "symbology": "CODE128", "expires_at": iso(expires),
                   "valid_until": expires.astimezone(self.ctx.tz).date().isoformat(),
                   "reward_id": reward.reward_id, "kind": reward.kind, "value_minor": reward.value_minor,
                   "percent": reward.percent, "sku": reward.sku, "benefit": wire["benefit"]}
        slip = self.slips.queue(unit, self.slips.compose(
            f"{req.redemption_id}~r", member, r.program, occurred_at=now, earned={currency: -price}, balance=balance,
            vouchers=[{**voucher, "title": wire["title"]}], kind="redemption",  # the slip picks the member's language
            transaction_id=req.transaction_id or "", redemption_id=req.redemption_id, view=unit,
            taken=reward.reward_id), member.member_id)
        response = {"redemption_id": req.redemption_id, "member_id": member.member_id,
                    "points": {currency: -price}, "voucher": voucher, "balance": balance, "slip": slip,
                    "seq": seq, "offline": offline, "authorised": authorised(r.decision), "recorded_at": iso(now)}
        unit.store_redemption(
            redemption_id=req.redemption_id, request_hash=req.request_hash, member_id=member.member_id,
            reward_id=reward.reward_id, currency=currency, points=price, voucher_code=code, offline=offline,
            seq=seq, occurred_at=iso(now), response=response, recorded_at=iso(now),
            authorisation_id=f"redemption:{req.redemption_id}", reservation_id=r.decision.reservation_id)
        return Recorded(response, replayed=False)

    def _still_out_of_reach(self, decision: Decision) -> None:
        """Inside the burn's unit, before the offline caps: a burn that did not ask central because the
        lane knew it out of reach is asked again (_CentralBack) when central answered the lane since.
        Its push answered may have just freed the caps: the burn is central's to decide, not theirs."""
        if decision is NOT_ASKED and not self.ctx.is_offline():
            raise _CentralBack()

    @raises("offline_too_long", "offline_cap_member", "offline_cap_lane")
    def _check_offline_caps(self, view: LedgerView, member: CachedMember, price: int, now: datetime) -> None:
        check_in_touch(self.limits, self.last_sync, now)
        if view.unsynced_redeemed(member.member_id, member.aliases) + price > self.limits.member_points:
            raise LaneError("offline_cap_member",
                            f"offline redemptions for this member are capped at {self.limits.member_points} points")
        if view.unsynced_redeemed() + price > self.limits.lane_points:
            raise LaneError("offline_cap_lane",
                            f"offline redemptions on this lane are capped at {self.limits.lane_points} points")

    # -- vouchers and coupons ---------------------------------------------------
    @raises("member_ineligible")
    def holder_may_burn(self, v: Usable, ident: Identification | None) -> None:
        """A personal voucher used without naming its member is still its member's burn: a member
        whose account is not active (blocked, erased) uses none (one named was found active)."""
        status = None if ident is not None else self.holder_status(v)
        if status is not None and status != "active":
            raise LaneError("member_ineligible", f"the voucher's member's account is {status}")

    def holder_status(self, v: Usable) -> str | None:
        """The account status of a personal voucher's member (an erased one too); None when it is
        anyone's or its member is not cached."""
        holder = self.ctx.cache.member_by_id(v.member_id) if v.member_id else None
        return holder.status if holder is not None else None

    @staticmethod
    @raises("member_required")
    def _use_key(v: Usable, member_id: str | None) -> str:
        if needs_member(v, member_id):
            raise LaneError("member_required", "identify the member to use this coupon")
        return member_id or "" if v.campaign else ""

    @raises("payment_card", "unknown_member", "ambiguous_member", "member_unavailable", "unknown_voucher",
            "voucher_unavailable", "voucher_void", "voucher_not_yet_valid", "voucher_expired", "voucher_other_member",
            "member_required", "voucher_used", "negative_total", "negative_line", "total_mismatch",
            "member_token_invalid", "member_token_expired", "member_token_not_yet_valid", "member_token_replayed",
            "storage_full", "storage_failed", "member_ineligible")
    async def validate(self, code: str, member: str | None, basket: Basket | None = None,
                       applied: tuple[str, ...] = ()) -> dict[str, Any]:
        """Is this voucher or coupon usable now (asking central whether it was used at another lane),
        and, given the basket and the codes already applied to it, what it takes off. A member token
        is accepted once the answer is yes."""
        ctx = self.ctx
        code, applied = self.book.canonical(code), tuple(self.book.canonical(c) for c in applied)
        view = ctx.ledger.view()
        ident = await self.members.afind_active(member) if member is not None else None
        member_id, aliases = (ident.member.member_id, ident.member.aliases) if ident else (None, ())
        v = self.book.local(view, code, ctx.program())
        if v is None:
            self._used_here(view, code, aliases)
        asked = VoucherLookup("unavailable") if ctx.is_offline() else \
            await self.book.ask(code, member_id, grace=v is None)
        if v is None and asked.status == "found" and asked.voucher is not None:
            v = Usable.from_wire(asked.voucher, "central", ctx.locale)
        if v is None:
            raise not_found(code, answered=asked.status != "unavailable")
        self.book.check_usable(v, member_id, ctx.clock(), aliases)
        self.holder_may_burn(v, ident)
        used = view.voucher_use(code, self._use_key(v, member_id), aliases)
        if used:
            raise LaneError("voucher_used", f"already used at {used.used_at}")
        if asked.status == "found" and asked.used or asked.status != "found" and self._gone(view, v):
            raise LaneError("voucher_used", "already used, or being used, at another lane")
        # a coupon anyone may use is the named member's use of it
        out = {"code": code, "valid": True, **v.public(), "member_id": v.member_id or member_id,
               "authorised": "online" if asked.status != "unavailable" else "offline"}
        if basket is not None:
            out["effect"] = await self._effect(view, v, basket, applied, member_id, aliases)
        if ident is not None and ident.token is not None:
            await self.members.aclaim_at_central(ident)
            await ctx.acommit(lambda unit: self.members.accept(unit, ident))
        return out

    @raises("negative_total", "negative_line", "total_mismatch")
    async def _effect(self, view: LedgerView, v: Usable, basket: Basket, applied: tuple[str, ...],
                      member_id: str | None, aliases: tuple[str, ...],
                      transaction_id: str | None = None) -> dict[str, Any]:
        """What ``v`` takes off ``basket`` after the codes already applied to it, under the program's
        stacking. An applied code that cannot be used (unknown, expired, for a member not named, used by
        another sale, given twice or the voucher itself) takes nothing off, and is named, as a quote
        names it."""
        try:
            check_basket(basket)
        except RuleError as exc:
            raise basket_error(exc) from exc
        program = self.ctx.program()
        firsts = [code for code in dict.fromkeys(applied) if code != v.code]
        found = await self.usable_codes(view, firsts, member_id, aliases, on_basket=True,
                                        transaction_id=transaction_id)
        offers = [(code, u.benefit) for code, u, why in found if u is not None and why is None]
        not_usable = [{"id": code, "reason": why} for code, _, why in found if why] + [
            {"id": code, "reason": "duplicate_code"}  # a code applies once, at its first place
            for i, code in enumerate(applied) if code == v.code or code in applied[:i]]
        stack = apply_stack(program.stacking if program else Stacking(), [*offers, (v.code, v.benefit)], basket,
                            rounding=program.discount_rounding if program else "half_up")
        mine = stack.entries[-1]
        return {**mine.effect.to_json(), "applied": mine.applied, "reason": mine.reason, "not_usable": not_usable}

    async def usable_codes(self, view: LedgerView, wanted: list[str], member_id: str | None,
                           aliases: tuple[str, ...] = (), *, on_basket: bool = False,
                           transaction_id: str | None = None) -> list[tuple[str, Usable | None, str | None]]:
        """(code, its voucher or coupon, why it cannot be used now) for each code of ``wanted`` (canonical,
        each once), in order.

        What a quote says of its codes and validate and use of the codes already applied. As validate
        judges a code: while central answers it is asked about every code, also one
        issued here (another lane may have used it), all at once, so the quote waits one budget
        however many codes were scanned; offline, the lane's own records decide."""
        book, program = self.book, self.ctx.program()
        now, out = self.ctx.clock(), []
        if self.ctx.is_offline():
            asked = [VoucherLookup("unavailable")] * len(wanted)
        else:
            asked = await asyncio.gather(*(self.authority.lookup(code, member_id) for code in wanted))
        for code, answer in zip(wanted, asked, strict=True):
            v = book.local(view, code, program)
            if v is None and answer.status == "found" and answer.voucher is not None:
                v = Usable.from_wire(answer.voucher, "central", self.ctx.locale)
            why = unknown_code(code, answer.status != "unavailable") if v is None else \
                why_not(v, member_id, now, aliases)
            if v is not None and why is None:  # as validate and use refuse it
                why = self._burn_refused(v, member_id)
            if v is not None and why is None:
                spent = view.voucher_use(code, member_id or "" if v.campaign else "", aliases)
                gone = answer.status == "found" and answer.used or spent is not None
                if on_basket:  # codes the POS says are on this basket: used by this sale, most often
                    gone = gone and transaction_id is not None and (spent is None
                                                                    or spent.transaction_id != transaction_id)
                if gone:
                    why = "voucher_used"
            out.append((code, v, why))
        return out

    def _burn_refused(self, v: Usable, member_id: str | None) -> str | None:
        """member_required for a coupon anyone may use on a basket with no member; member_ineligible
        for a personal voucher, quoted without its member, whose member's account is not active."""
        if needs_member(v, member_id):
            return "member_required"
        if member_id is None and self.holder_status(v) not in (None, "active"):
            return "member_ineligible"
        return None

    @raises("payment_card", "unknown_member", "ambiguous_member", "member_unavailable", "unknown_voucher",
            "voucher_unavailable", "voucher_void", "voucher_not_yet_valid", "voucher_expired", "voucher_other_member",
            "member_required", "voucher_used", "member_ineligible", "offline_too_long", "offline_cap_member",
            "offline_cap_lane", "negative_total", "negative_line", "total_mismatch", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_token_replayed", "storage_full",
            "storage_failed", "voucher_not_applicable", "transaction_id_conflict")
    async def use(self, code: str, transaction_id: str, member: str | None, basket: Basket | None = None,
                  applied: tuple[str, ...] = (), request_hash: str | None = None,
                  legacy_hash: Callable[[], tuple[str, ...]] | None = None) -> Recorded:
        """Check, ask central, and consume in one write: a voucher is used once, also under concurrent
        requests and across lanes while central answers; a member token is accepted with the use.
        ``request_hash``: the request's; the same transaction and code again with another request
        (member, basket, codes applied) is transaction_id_conflict, not the first answer.
        ``legacy_hash``: the same request's hashes as older posd versions recorded it, asked only when
        the recorded one is not ``request_hash``."""
        ctx = self.ctx
        code, applied = self.book.canonical(code), tuple(self.book.canonical(c) for c in applied)
        ident = await self.members.afind_active(member) if member is not None else None
        member_id, aliases = (ident.member.member_id, ident.member.aliases) if ident else (None, ())
        view = ctx.ledger.view()
        earlier = view.voucher_use_in(code, transaction_id)
        if earlier:  # the POS retried after a lost answer: the first answer, even if the voucher has expired since
            return _replayed(earlier, request_hash, legacy_hash)
        offline = ctx.is_offline()
        v = self.book.local(view, code, ctx.program())
        if v is None:
            self._used_here(view, code, aliases)
            v = await self.book.from_central(code, member_id, ask=not offline, grace=True)
        now = ctx.clock()
        self.book.check_usable(v, member_id, now, aliases)
        self.holder_may_burn(v, ident)
        used = view.voucher_use(code, self._use_key(v, member_id), aliases)
        if used and used.transaction_id != transaction_id:
            raise LaneError("voucher_used", "this voucher was already used")
        effect = await self._effect(view, v, basket, applied, member_id, aliases, transaction_id) \
            if basket is not None else None
        if effect is not None and not effect["applied"]:  # used up for nothing: the member would lose it
            raise LaneError("voucher_not_applicable", f"{code} takes nothing off this basket: "
                                                      f"{REASONS.get(effect['reason'], effect['reason'])}")
        await self.members.aclaim_at_central(ident)
        for _ in range(2):  # the second time, central answered the lane since: it is asked
            decision = NOT_ASKED if offline else await self.authority.authorise(authorisation_request(
                "voucher_use", f"voucher_use:{code}:{transaction_id}", v.member_id or member_id, iso(now),
                voucher_code=code, voucher_once_per="member" if v.campaign else "code"))
            if decision.status == "declined":
                raise use_declined(decision)
            if decision.status != "approved" and self._gone(view, v):
                await self.authority.release(decision)  # a question central answered too late
                raise LaneError("voucher_used", "already used, or being used, at another lane")
            use = _Use(v, transaction_id, ident, decision, effect, request_hash)
            try:
                return await self._record(decision, lambda unit, u=use: self._write_use(unit, u))
            except _CentralBack:  # central answered the lane meanwhile: it is asked after all,
                offline = False
                await self.members.aclaim_at_central(ident)  # the member's token first, as online
        raise AssertionError("unreachable: the second attempt asked central")

    @staticmethod
    @raises("voucher_used")
    def _used_here(view: LedgerView, code: str, aliases: tuple[str, ...]) -> None:
        """A voucher this lane knew only from central (issued at another lane) and used already: used,
        also when central cannot be asked again (the lane keeps the use, not the voucher)."""
        here = view.voucher_use(code, "", aliases)
        if here is not None:
            raise LaneError("voucher_used", f"already used at {here.used_at}")

    def _gone(self, view: LedgerView, v: Usable) -> bool:
        """Does central's member feed say a voucher issued here is no longer open (used, or held for a
        use, at another lane)? Only once the feed has applied the redemption that issued it: before
        that, its absence says nothing. What the lane knows when central cannot be asked."""
        if v.source != "redemption" or not v.member_id:
            return False
        seq = view.voucher_issue_seq(v.code)
        holder = self.ctx.cache.member_by_id(v.member_id)
        return seq is not None and holder is not None and holder.applied_seq >= seq \
            and self.ctx.cache.member_voucher(v.code) is None

    @raises("voucher_void", "voucher_not_yet_valid", "voucher_expired", "voucher_other_member", "member_required",
            "voucher_used", "offline_too_long", "offline_cap_member", "offline_cap_lane", "member_token_replayed",
            "transaction_id_conflict")
    def _write_use(self, unit: LedgerTx, u: _Use) -> Recorded:
        v, code = u.usable, u.usable.code
        earlier = unit.voucher_use_in(code, u.transaction_id)
        if earlier:
            return _replayed(earlier, u.request_hash)
        if u.ident is not None:
            self.members.accept(unit, u.ident)
        now = self.ctx.clock()
        self.book.check_usable(v, u.member_id, now, u.aliases)
        key = self._use_key(v, u.member_id)
        used = unit.voucher_use(code, key, u.aliases)
        if used:
            if used.transaction_id == u.transaction_id:  # the POS retried the same use
                return _replayed(used, u.request_hash)
            raise LaneError("voucher_used", "this voucher was already used")
        holder = v.member_id or u.member_id
        offline = u.decision.status != "approved"
        if offline:
            self._still_out_of_reach(u.decision)
            self._check_offline_uses(unit, holder, now)
        program = self.ctx.program()
        seq = unit.append_event("voucher_use", {
            "transaction_id": u.transaction_id, "member_id": holder, "occurred_at": iso(now),
            "voucher_code": code, "voucher_once_per": "member" if v.campaign else "code",
            "points": {}, "program_version": program.version if program else "", "offline": offline,
            "authorisation_id": f"voucher_use:{code}:{u.transaction_id}", "reservation_id": u.decision.reservation_id,
        })
        response = {"code": code, "used": True, "transaction_id": u.transaction_id, "used_at": iso(now), "seq": seq,
                    **v.public(), "member_id": holder, "authorised": authorised(u.decision)}
        if u.effect is not None:
            response["effect"] = u.effect
        # The primary key (code, member) makes a second use fail even if two requests race here.
        unit.record_voucher_use(code=code, key=key, transaction_id=u.transaction_id, seq=seq, response=response,
                                used_at=iso(now), holder=holder, offline=offline, request_hash=u.request_hash)
        return Recorded(response, replayed=False)

    @raises("offline_too_long", "offline_cap_member", "offline_cap_lane")
    def _check_offline_uses(self, view: LedgerView, holder: str | None, now: datetime) -> None:
        check_in_touch(self.limits, self.last_sync, now)
        if holder and view.unsynced_offline_uses(*self._member_and_aliases(holder)) + 1 > self.limits.member_uses:
            raise LaneError("offline_cap_member",
                            f"offline voucher uses for this member are capped at {self.limits.member_uses}")
        if view.unsynced_offline_uses() + 1 > self.limits.lane_uses:
            raise LaneError("offline_cap_lane", f"offline voucher uses on this lane are capped at {self.limits.lane_uses}")

    def _member_and_aliases(self, member_id: str) -> tuple[str, tuple[str, ...]]:
        """A voucher holder's id as central names them, with the provisional ids it mapped to them:
        a voucher issued to a provisional id is the member's once central named them."""
        member = self.ctx.cache.member_by_id(member_id)
        return (member.member_id, member.aliases) if member is not None else (member_id, ())


@raises("transaction_id_conflict")
def _replayed(earlier: VoucherUse, request_hash: str | None,
              legacy_hash: Callable[[], tuple[str, ...]] | None = None) -> Recorded:
    """The first answer of a use the POS asks for again; a conflict when it asks with another request
    (a use recorded before requests were kept is answered as before; one recorded under an older
    posd's hash of the request is matched by ``legacy_hash``)."""
    if earlier.request_hash is not None and request_hash is not None and earlier.request_hash != request_hash \
            and (legacy_hash is None or earlier.request_hash not in legacy_hash()):
        raise LaneError("transaction_id_conflict", "this transaction used this code already, with another "
                                                   "member, basket or codes applied")
    return Recorded(earlier.response, replayed=True)
