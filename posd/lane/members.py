"""Members at the till: find one by any identifier, show them, and identify scans.

Scans run in the device's reader thread: identification (posd.core.identify)
and the cache lookup are quick and read-only, and a payment card stops here.

A member token (a phone's signed QR, a wallet pass's TOTP code) is checked
first (posd.lane.member_tokens) and then *accepted* in the unit of work of
whatever accepts it: the sale, the redemption, the scan's own write. Accepting
records it (a second time is a replay) and queues a token_use event, so central
sees a token used at two lanes. Before that, while central answers, the lane
claims the token at central (``claim_at_central``, within the burn budget): a
token another lane used is refused at once; without an answer in time it is
accepted offline and central flags a replay from the token_use event. Members
enrolled here and not yet named by central are found in ledger.db
(posd.lane.enrolment).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import phonenumbers

from posd.core.identify import fold_ascii, gtin_ok, gtin_twin, identify_code
from posd.core.member_tokens import Accepted, Rejected
from posd.core.program import Program, Reward
from posd.core.rules_eval import show
from posd.lane.authority import Authority, LocalAuthority
from posd.lane.context import LaneContext
from posd.lane.errors import LaneError, raises
from posd.lane.member_tokens import MemberTokens
from posd.lane.vouchers import offered_code
from posd.storage.cache import CachedMember
from posd.storage.db import iso, parse_iso
from posd.storage.tx import LedgerTx, LedgerView

T = TypeVar("T")
log = logging.getLogger("posd.lane")

STALE_AFTER = timedelta(hours=24)
# How a member was identified (member.identified's identified_by): a scanner's barcode is a card.
IDENTIFIED_BY = ("card", "qr_token", "wallet_totp", "msr", "nfc", "phone", "typed")
_BY_SYMBOLOGY = {"MSR": "msr", "NFC_UID": "nfc"}


@dataclass(frozen=True)
class Identification:
    member: CachedMember
    how: str  # one of IDENTIFIED_BY
    token: Accepted | None = None  # a checked token, accepted only in the unit that uses it


@dataclass(frozen=True)
class _Refused:
    code: str  # unknown_member | member_unavailable | ambiguous_member | member_token_*
    identifier: str  # what member.unknown names: the code, or a token's member id
    reason: str | None = None  # a token's: posd.core.member_tokens.REASONS
    scheme: str | None = None


class Members:
    def __init__(self, ctx: LaneContext, tokens: MemberTokens | None = None, authority: Authority | None = None,
                 country: str | None = None):
        """``authority``: asks central whether a token is unused at every lane (None: never asked);
        ``country``: where a phone number given without its country code is from (config lane.country)."""
        self.ctx = ctx
        self.tokens = tokens or MemberTokens(ctx)
        self.authority: Authority = authority or LocalAuthority()
        self.country = country

    @raises("payment_card", "unknown_member", "ambiguous_member", "member_unavailable", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid")
    def find(self, identifier: str, how: str = "typed") -> Identification:
        """Who ``identifier`` is, and how they were identified; a token is checked, not yet accepted."""
        found = identify_code(identifier)
        if found.kind == "payment_card":
            raise LaneError("payment_card", "that is a payment card number; it was not stored")
        resolved = self._resolve(found.kind, found.code, how, identifier)
        if isinstance(resolved, _Refused):
            raise refusal(resolved)
        return resolved

    @raises("payment_card", "unknown_member", "ambiguous_member", "member_unavailable", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_token_replayed", "storage_full",
            "storage_failed")
    def identify(self, identifier: str) -> CachedMember:
        """Find the member and accept their token now (a write: never call this on the event loop)."""
        try:
            ident = self.find(identifier)
        except LaneError as exc:
            if not self.refreshed(_asked_as(exc)):
                raise
            ident = self.find(identifier)
        self.claim_at_central(ident)
        self.accept_now(ident)
        return ident.member

    def refreshed(self, code: str, *codes: str) -> bool:
        """After a refusal (``code``) of what this lane's view of central's members does not hold (an
        identifier it does not know: unknown_member, or a ``codes`` refusal such as a balance short of a
        burn) while central answers: its member changes pulled now, True when they were, and the caller
        looks once more. A member enrolled at another lane, or points earned there, since the last
        pull are then known here too, rather than only after pull_interval_s. From a thread that may
        wait (never the event loop's), at most the burn budget."""
        return self._may_pull(code, codes) and self.authority.refresh_members_waiting()

    async def arefreshed(self, code: str, *codes: str) -> bool:
        """``refreshed`` for the event loop: the pull is awaited off the loop, within the budget."""
        return self._may_pull(code, codes) and await self.authority.refresh_members()

    def _may_pull(self, code: str, codes: tuple[str, ...]) -> bool:
        return (code == "unknown_member" or code in codes) and not self.ctx.is_offline()

    async def after_pull(self, attempt: Callable[[], Awaitable[T]], *codes: str) -> T:
        """``attempt()``, made once more after a member pull when it was refused for what this lane's view
        may lack (``arefreshed``: an unknown member, or ``codes``). The attempt must have changed nothing
        when it raises: a refused sale, quote or lookup."""
        try:
            return await attempt()
        except LaneError as exc:
            if not await self.arefreshed(_asked_as(exc), *codes):
                raise
        return await attempt()

    @raises("payment_card", "unknown_member", "ambiguous_member", "member_unavailable", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_ineligible")
    async def afind_active(self, identifier: str) -> Identification:
        """find_active, looked up again after a pull when the lane does not know the identifier yet."""
        async def find() -> Identification:
            return self.find_active(identifier)

        return await self.after_pull(find)

    @raises("member_token_replayed")
    def claim_at_central(self, ident: Identification | None) -> None:
        """Before accepting a token, while central answers: is it unused at every other lane? From a
        thread that may wait (never the event loop's), at most the burn budget."""
        claim = self._claim_request(ident)
        if claim is not None and self.authority.claim_token_waiting(claim) == "replayed":
            raise _replayed_elsewhere()

    @raises("member_token_replayed")
    async def aclaim_at_central(self, ident: Identification | None) -> None:
        """``claim_at_central`` for the event loop: the question is awaited off the loop, within the budget."""
        claim = self._claim_request(ident)
        if claim is not None and await self.authority.claim_token(claim) == "replayed":
            raise _replayed_elsewhere()

    def asks_central(self, ident: Identification | None) -> bool:
        """Would ``aclaim_at_central`` ask central about this identification?"""
        return self._claim_request(ident) is not None

    def _claim_request(self, ident: Identification | None) -> dict[str, Any] | None:
        """What central is asked; None when there is no token, or central is known to be out of reach
        (the lane does not spend the budget on a question nobody answers: it accepts offline)."""
        if ident is None or ident.token is None or self.ctx.is_offline():
            return None
        return {"token_id": ident.token.token_id, "member_id": ident.member.member_id,
                "identified_by": ident.token.scheme}

    @raises("payment_card", "unknown_member", "ambiguous_member", "member_unavailable", "member_token_invalid",
            "member_token_expired", "member_token_not_yet_valid", "member_ineligible")
    def find_active(self, identifier: str) -> Identification:
        """A member who may earn and burn now; their token is accepted in the caller's unit."""
        ident = self.find(identifier)
        if ident.member.status != "active":
            raise LaneError("member_ineligible", f"the member's account is {ident.member.status}")
        return ident

    @raises("member_token_replayed")
    def accept(self, unit: LedgerTx, ident: Identification) -> int | None:
        """Accept the identification's token inside ``unit``: recorded once, with its token_use event
        for central (its seq). A token this lane accepted before is a replay."""
        if ident.token is None:
            return None
        seq = self._record_token(unit, ident)
        if seq is None:
            raise LaneError("member_token_replayed", "this member token was accepted before; ask for a fresh one")
        return seq

    def _record_token(self, unit: LedgerTx, ident: Identification) -> int | None:
        """The token_use event's seq; None for a token accepted here before (nothing written)."""
        token, member_id, ctx = ident.token, ident.member.member_id, self.ctx
        assert token is not None
        now = iso(ctx.clock())
        program = ctx.program()
        return unit.record_token_use(
            token_id=token.token_id, scheme=token.scheme, member_id=member_id,
            valid_until=iso(datetime.fromtimestamp(token.valid_until, UTC)), used_at=now,
            step_start=token.step_start,
            event={"transaction_id": None, "member_id": member_id, "occurred_at": now,
                   "identified_by": token.scheme, "token_id": token.token_id, "key_id": token.kid, "points": {},
                   "program_version": program.version if program else "", "offline": ctx.is_offline()})

    @raises("member_token_replayed", "storage_failed", "storage_full")
    def accept_now(self, ident: Identification) -> None:
        """Accept a token in a write of its own (from a thread other than the event loop's)."""
        if ident.token is not None:
            self.ctx.commit(lambda unit: self.accept(unit, ident))

    def _resolve(self, kind: str, code: str | None, how: str, raw: str) -> Identification | _Refused:
        if kind == "qr_token" and code:
            return self._checked(self.tokens.verify_qr(code))
        if is_tel_link(raw) and (linked := phone_e164(raw, self.country)) is not None:
            # a phone's QR link is its phone number first, as at the scanner (on_scan): never a card's code
            member = self.lookup(linked) or (self.lookup(code) if kind == "member_code" and code else None)
            return self._not_found(linked) if member is None else Identification(member, "phone")
        if kind != "member_code" or not code:
            phone, member = self._by_phone(raw) if kind == "invalid" else (None, None)
            if phone is None:
                # Not a code a card carries, but a platform's member id may be any text (X1, 42, an id
                # with @ or #): named by the POS, it is looked up as a member id, never as a card's code.
                member = self.by_id(raw.strip()) if kind == "invalid" and how == "typed" and raw.strip() else None
                return Identification(member, how) if member is not None else _Refused("unknown_member", code or "")
            # typed with spaces or brackets: 600 123 456, +48 (600) 123-456
            return self._not_found(phone) if member is None else Identification(member, how)
        scheme = self.tokens.wallet()
        shown = scheme.match(code) if scheme else None
        if scheme is not None and shown is not None:
            holder = self.lookup(shown[0])
            if holder is not None:  # else a plain code that happens to look like a wallet value
                return self._checked(self.tokens.verify_wallet(scheme, holder.member_id, shown[1]), holder)
        member = self.lookup(code)
        if how == "typed" and member is not None and member.member_id != code:
            # A member's id, named by the POS as an answer gave it, is that member, even where a lane that
            # had not heard of it yet enrolled a card printed with that code (central keeps the card with
            # its holder); at the scanner the code is the card.
            named = self.ctx.cache.member_by_id(code)
            if named is not None and named.status != "deleted":
                return Identification(named, how)
        # A phone number without its +country, or without its +: asked only when no card has the code, and
        # not for a number a scanner read with an EAN/UPC check digit (4915123456787 is a barcode, not +49...).
        # Typed, it is asked even so: a card's code that is another member's phone written without its
        # + or +country (two lanes enrolled them apart) names neither, rather than one the cashier may not
        # mean. Not for a card's EAN-13 or UPC-A (a barcode with its check digit): the card, as scanned.
        typed = how in ("typed", "phone")
        if member is None:
            as_phone = typed or not gtin_ok(code)
        else:
            as_phone = typed and not (len(code) in (12, 13) and gtin_ok(code))
        if as_phone:
            phone, holder = self._by_phone(code, but=code)
            if holder is not None and member is None:
                return Identification(holder, "phone")
            if holder is not None and member is not None and holder.member_id != member.member_id:
                return _Refused("ambiguous_member", code)
        return self._not_found(code) if member is None else Identification(member, how)

    def _by_phone(self, text: str, but: str | None = None) -> tuple[str | None, CachedMember | None]:
        """The phone number ``text`` reads as and the member who has it: the first reading a member has
        (phone_readings: 48501234567 at a German lane is a landline there, or a Polish mobile), else the
        likeliest with None. ``but``: a reading not to ask for (the code itself, already looked up)."""
        first = None
        for phone in _readings(text, self.country):  # the second parsed only when the first finds nobody
            first = first or phone
            member = self.lookup(phone) if phone != but else None
            if member is not None:
                return phone, member
        return first, None

    def _checked(self, verdict: Accepted | Rejected,
                 member: CachedMember | None = None) -> Identification | _Refused:
        if isinstance(verdict, Rejected):
            return _Refused(_TOKEN_CODES.get(verdict.reason, "member_token_invalid"), "", verdict.reason,
                            verdict.scheme)
        member = member or self.by_id(verdict.member)
        if member is None:
            return self._not_found(verdict.member)
        return Identification(member, verdict.scheme, verdict)

    def _not_found(self, identifier: str) -> _Refused:
        """No member here: "not a member" only once the member cache has loaded from central; before
        that (central refused our credentials, was never reached, cache.db was rebuilt) nobody can
        tell, and a real member must not hear they are not one."""
        if self.ctx.cache.state("members_synced_at") is None:
            return _Refused("member_unavailable", identifier)
        return _Refused("unknown_member", identifier)

    def lookup(self, code: str | None) -> CachedMember | None:
        """The one lookup behind a scan and an API call: the normalised code, deleted = unknown;
        then the members enrolled here that central has not named yet."""
        if not code:
            return None
        member = self.ctx.cache.find_member(code)
        if member is None:
            twin = gtin_twin(code)  # a card enrolled as UPC-A read as its EAN-13, or the reverse
            member = self.ctx.cache.find_member(twin) if twin else None
            if member is None:
                view = self.ctx.ledger.view()
                return self._provisional(view.enrolment(code) or (view.enrolment(twin) if twin else None))
        return None if member.status == "deleted" else member

    def by_id(self, member_id: str) -> CachedMember | None:
        """By central's member id (or a provisional id it mapped, or one enrolled here)."""
        member = self.ctx.cache.member_by_id(member_id)
        if member is None:
            return self._provisional(self.ctx.ledger.view().enrolment(member_id))
        return None if member.status == "deleted" else member

    def _provisional(self, enrolment: dict[str, Any] | None) -> CachedMember | None:
        if enrolment is None or enrolment["response"].get("erased"):
            return None  # erased: central deleted the member it became
        program = self.ctx.program()
        first_tier = program.tiers[0].tier_id if program and program.tiers else None
        return CachedMember(
            member_id=enrolment["member_id"], display_name=enrolment["display_name"] or "", locale=enrolment["locale"],
            tier=first_tier, qualifying=0, balances={}, applied_seq=0, status="active",
            birth_date=enrolment["birth_date"], updated_at=enrolment["recorded_at"], provisional=True)

    def balances(self, member: CachedMember, view: LedgerView | None = None) -> dict[str, dict[str, int]]:
        """Central's confirmed balance plus this lane's entries central has not applied yet.

        Tier points (a ``qualifying`` tier currency) are confirmed as central's ``qualifying``:
        the figure central decides the tier from, so the balance and the progress to the next
        tier are one number (docs/sync-protocol.md, member wire shape)."""
        view = view or self.ctx.ledger.view()
        program = self.ctx.program()
        # every currency of the program, 0 where the member has nothing yet: the same keys in every answer
        confirmed = {c.code: 0 for c in program.currencies} | member.balances if program else member.balances
        tier_points = _tier_points_currency(program)
        if tier_points is not None and confirmed.get(tier_points, 0) != member.qualifying:
            confirmed = {**confirmed, tier_points: member.qualifying}
        now = self.ctx.clock()
        held = member.maturing_at(now) if member.maturing else None
        return view.balance(member.member_id, confirmed, member.applied_seq, now, member.aliases, held)

    @staticmethod
    def tier_progress(member: CachedMember, program: Program, balance: dict[str, dict[str, int]]) -> int:
        """The points toward the next tier, as the member view and the slip show them: tier points'
        balance (central's figure plus this lane's unsynced entries); for a spendable tier currency,
        central's ``qualifying`` (spending does not lower it)."""
        tier_points = _tier_points_currency(program)
        if tier_points is None:
            return member.qualifying
        return max(0, balance.get(tier_points, {}).get("total", member.qualifying))

    def rewards_available(self, member: CachedMember, program: Program, balance: dict[str, dict[str, int]],
                          view: LedgerView | None = None, taken: str | None = None) -> list[dict[str, Any]]:
        """The rewards the member could take now: affordable, and not had as often as allowed today here
        (``taken``: a reward redeemed in the unit asking, not recorded yet, counts once more)."""
        available = {cur: b.get("available", 0) for cur, b in balance.items()}
        view, now = view or self.ctx.ledger.view(), self.ctx.clock()
        return [{"reward_id": reward.reward_id, "title": reward.name(self.ctx.locale), "currency": reward.currency,
                 "points": price, "kind": reward.kind}
                for reward, price in program.affordable_rewards(member.tier, available)
                if not self.used_up_today(view, member, reward, now, 1 if reward.reward_id == taken else 0)]

    def used_up_today(self, view: LedgerView, member: CachedMember, reward: Reward, now: datetime,
                      more: int = 0) -> bool:
        """The member had ``reward`` (and ``more`` times not recorded yet) as often as its daily limit
        allows: redemptions on this lane since midnight in the store's timezone (central counts every
        lane's when it authorises)."""
        limit = reward.limit_per_member_per_day
        return bool(limit) and more + view.redemptions_since(
            member.member_id, reward.reward_id, iso(self.day_start(now)), member.aliases) >= limit

    def day_start(self, now: datetime) -> datetime:
        """Midnight of ``now``'s day in the store's timezone: where a reward's daily limit starts."""
        return now.astimezone(self.ctx.tz).replace(hour=0, minute=0, second=0, microsecond=0)

    def member_view(self, member: CachedMember, view: LedgerView | None = None) -> dict[str, Any]:
        """What the POS shows (GET /v1/members/{identifier}, member.identified)."""
        ctx = self.ctx
        program = ctx.program()
        tier = program.tier(member.tier) if program else None
        synced = ctx.cache.state("members_synced_at") or member.updated_at
        stale = not synced or ctx.clock() - parse_iso(synced) > STALE_AFTER
        balance = self.balances(member, view)
        progress = self.tier_progress(member, program, balance) if program else 0
        nxt = program.tier_ahead(member.tier, progress) if program else None  # or the highest reached
        return {
            "member_id": member.member_id,
            "display_name": member.display_name,
            "locale": member.locale,
            "status": member.status,
            "tier": {"id": member.tier, "name": tier.name(ctx.locale) if tier else member.tier,
                     "multiplier": show(tier.multiplier) if tier else "1"},
            "progress": None if nxt is None else {
                "next_tier": {"id": nxt.tier_id, "name": nxt.name(ctx.locale)},
                "qualifying": progress,
                "threshold": nxt.threshold,
                "points_needed": max(0, nxt.threshold - progress),
            },
            "balances": balance,
            "rewards_available": self.rewards_available(member, program, balance, view) if program else [],
            "offers": member.offers,
            "as_of": None if member.provisional else synced,
            "stale": False if member.provisional else stale,
            "provisional": member.provisional,
        }

    # -- identify (runs in the device's reader thread) --------------------
    @raises("storage_failed", "storage_full", "member_token_replayed")
    def on_scan(self, device: str, data: str, symbology: str | None = None) -> None:
        bus = self.ctx.bus
        found = identify_code(data)
        if found.kind == "payment_card":
            # The digits stop here: no log line, no event field, no table carries them.
            bus.publish("card.rejected", {"device": device, "reason": "payment_card"})
            return
        linked = is_tel_link(data)  # a phone's QR: tel:+48-600-123-456
        phone = phone_e164(data, self.country) if linked or found.kind == "invalid" else None
        if (found.kind == "invalid" or linked) and phone is None:
            # readable, yet in no form a member is known by (a product's URL, "ABC 123"): its length only
            log.info("%s: a scan of %d characters is no member code, phone number or member token",
                     device, len(data))
            bus.publish("scan", {"device": device, "symbology": symbology, "kind": "invalid"})
            return
        code = phone or found.code or ""
        scheme = self.tokens.wallet()
        how = _BY_SYMBOLOGY.get(symbology or "", "card")
        if phone is not None or _PHONE_CODE.match(code):  # a phone number, typed or linked
            scan = {"device": device, "symbology": symbology, "kind": "phone"}  # number not repeated
            how = "phone"
        elif found.kind == "qr_token" or (scheme is not None and scheme.match(code)):
            # a member token is not repeated on the stream: another till could still replay it
            scan = {"device": device, "symbology": symbology, "kind": "token"}
        else:  # GS1's field separator as the scanner sent it (docs/devices.md); the lookup goes without it
            shown = fold_ascii(data).strip() if "\x1d" in data else code
            scan = {"device": device, "symbology": symbology, "kind": "code", "data": shown}
        # The scan event goes out with the answer, in one handoff to the loop (and alone if no
        # answer comes: the cache could not be read).
        held: list[tuple[str, dict[str, Any]]] = [("scan", scan)]
        try:
            resolved = self._resolve(found.kind, code, how, data)
            # a voucher slip or a coupon at the scanner: no member, nothing unknown. A code found nowhere is
            # unknown at once (a scanner also reads products): a sale naming it looks again after a pull.
            offered = offered_code(code, self.ctx.program()) if scan["kind"] == "code" and isinstance(
                resolved, _Refused) and resolved.code in ("unknown_member", "member_unavailable") else None
            if offered is not None:
                held[0] = ("scan", {"device": device, "symbology": symbology, "kind": "voucher", "data": offered})
                return
            if isinstance(resolved, Identification) and resolved.token is not None:
                bus.publish_many(held)  # before anything slow: the token's claim at central and its write
                held = []
                ident = resolved  # accepted in a write of its own, from this device thread
                try:
                    self.claim_at_central(ident)
                    if self.ctx.commit(lambda unit: self._record_token(unit, ident)) is None:
                        resolved = _Refused("member_token_replayed", "", "replayed", resolved.token.scheme)
                except LaneError as exc:  # the disk: the token is not used up, the member shows it again later
                    replayed = exc.code == "member_token_replayed"  # central: another lane used it
                    resolved = _Refused(exc.code, "", "replayed" if replayed else "not_recorded",
                                        resolved.token.scheme)
            if isinstance(resolved, _Refused):
                if resolved.code == "unknown_member":
                    held.append(("member.unknown", {"device": device, "identifier": resolved.identifier}))
                elif resolved.code == "member_unavailable":
                    held.append(("member.unavailable", {"device": device, "identifier": resolved.identifier,
                                                        "code": "member_unavailable"}))
                else:
                    held.append(("member.token_rejected", {"device": device, "scheme": resolved.scheme,
                                                           "reason": resolved.reason, "code": resolved.code}))
                return
            member, token = resolved.member, resolved.token
            if resolved.how == "phone" and scan["kind"] == "code":  # found by the number read: not repeated
                held[0] = ("scan", {"device": device, "symbology": symbology, "kind": "phone"})
                code = phone_e164(code, self.country) or code
            held.append(("member.identified", {
                "device": device, "identifier": member.member_id if token else code, "identified_by": resolved.how,
                "token_id": token.token_id if token else None, "member": self.member_view(member)}))
        finally:
            if held:
                bus.publish_many(held)


_PHONE_CODE = re.compile(r"^\+[0-9]+$")  # a member code that is a phone number in E.164 (identify_code)


def is_tel_link(text: str) -> bool:
    """A phone number as a link (RFC 3966), as a contact QR code carries it: tel:+48-600-123-456."""
    return fold_ascii(text).strip()[:4].lower() == "tel:"


def phone_e164(text: str, country: str | None, *, other_countries: bool = True) -> str | None:
    """``text`` as the E.164 number enrolment stores (posd.lane.enrolment), when it reads as a valid phone
    number: written with or without its +country (in the lane's ``country``; with ``other_countries``
    False, digits without + or 00 are only the lane country's number, or its calling code and number),
    spaces, brackets, dashes, digits of any script, or as a phone's QR code links it (RFC 3966: tel:+48-600-123-456); None otherwise."""
    return next(_readings(text, country, other_countries), None)


def phone_readings(text: str, country: str | None, *, other_countries: bool = True) -> list[str]:
    """Every valid E.164 number ``text`` reads as (phone_e164), the likeliest first. Digits without + or 00
    may read both as a national number and as a calling code and number (4915112345673 at a German lane:
    a landline +49 4915..., and the mobile +49 1511...): one that begins with the lane's own calling code
    and reads as its country's number is that, first; a lookup asks for each in turn."""
    return list(dict.fromkeys(_readings(text, country, other_countries)))


def _readings(text: str, country: str | None, other_countries: bool = True) -> Iterator[str]:
    """phone_readings one at a time, each parsed only when asked for: the first is most often the one."""
    written = fold_ascii(text).strip()
    if is_tel_link(written):
        written, _, params = written[4:].partition(";")  # ;phone-context=... names no digit of the number
        if any(p.strip().lower().startswith(("ext=", "isub=")) for p in params.split(";")):
            return  # an extension or subaddress: not the number a member is found by
        written = written.strip()
    if any(ch.isalpha() for ch in written):  # phonenumbers drops letters around the digits: LC600123456 is a card
        return
    digits = sum(ch.isdigit() for ch in written)
    if not 6 <= digits <= 17:  # E.164 has at most 15 digits, a trunk or international prefix adds two
        return
    own = phonenumbers.country_code_for_region(country) if country else 0
    if written.startswith("+"):
        tries = [written]
    elif _calling_code_first(written, country, own):
        tries = ["+" + written, written]
    else:
        tries = [written, "+" + written]
    for attempt in tries:
        try:
            number = phonenumbers.parse(attempt, country)
        except phonenumbers.NumberParseException:
            continue
        if number.extension:  # "+48 600 000 001 ext 5": E.164 would drop the extension, and a member with it
            return
        if attempt is not written and not other_countries and own and number.country_code != own:
            continue  # 48600123456 is +48 at a Polish lane; 600123456789 (a digit too many) is no Malaysian +60
        if phonenumbers.is_valid_number(number):
            yield phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _calling_code_first(written: str, country: str | None, own: int) -> bool:
    """Read digits as the lane country's calling code and number before reading them as a national
    number? Where national numbers are written with a trunk prefix (0 in Germany, France, the UK) and
    these digits begin with the calling code but not with that prefix: 4915112345673 is +49 1511...,
    though German landlines would take it whole. Not where national numbers have no such prefix, as
    in Italy or Poland (3901234567 is an Italian mobile, 486407015 a Polish landline), nor where the
    prefix is the calling code itself (1 in North America)."""
    if not own or country is None:
        return False
    digits = "".join(ch for ch in written if ch.isdigit())
    trunk = phonenumbers.PhoneMetadata.metadata_for_region(country.upper())
    prefix = trunk.national_prefix if trunk is not None else None
    return bool(prefix) and digits.startswith(str(own)) and not digits.startswith(prefix)  # type: ignore[arg-type]


def _asked_as(exc: LaneError) -> str:
    """The refusal a pull may answer, as ``refreshed`` reads codes: a wallet pass the lane holds no secret
    for is asked as a member it does not know (the member feed brings both)."""
    return "unknown_member" if getattr(exc, "view_may_lack", False) else exc.code


@raises("member_token_replayed")
def _replayed_elsewhere() -> LaneError:
    return LaneError("member_token_replayed", "this member token was used at another lane; ask for a fresh one")


# A refused token's reason -> the code the POS gets.
_TOKEN_CODES = {"expired": "member_token_expired", "not_yet_valid": "member_token_not_yet_valid"}


@raises("unknown_member", "member_unavailable", "ambiguous_member", "member_token_invalid", "member_token_expired",
        "member_token_not_yet_valid")
def refusal(refused: _Refused) -> LaneError:
    """The error a refused identification is, for the POS."""
    if refused.code == "unknown_member":
        return LaneError("unknown_member", "not a member")
    if refused.code == "ambiguous_member":
        return LaneError("ambiguous_member", "that number is one member's card and another member's phone number: "
                         "give the phone with its +country code, or the member's id")
    if refused.code == "member_unavailable":
        return LaneError("member_unavailable", "members have not loaded from central yet, so the lane cannot tell "
                         "whether this is a member; try again after sync (health says why)")
    if refused.code == "member_token_expired":
        return LaneError("member_token_expired", "the member token has expired; ask the member to show a fresh one")
    if refused.code == "member_token_not_yet_valid":
        return LaneError("member_token_not_yet_valid",
                         "the member token was issued in the future; check the lane's clock")
    error = LaneError("member_token_invalid", f"the member token was refused ({refused.reason})")
    # A wallet pass whose secret this lane has not pulled yet (the pass was added since): central's
    # member feed brings it, as it brings a member enrolled at another lane.
    error.view_may_lack = refused.scheme == "wallet_totp" and refused.reason == "unknown_key"  # type: ignore[attr-defined]
    return error


def _tier_points_currency(program: Program | None) -> str | None:
    """The program's tier currency when it is a ``qualifying`` one (never spent), else None."""
    if program is None:
        return None
    currency = program.currency(program.tier_currency)
    return currency.code if currency is not None and currency.kind == "qualifying" else None
