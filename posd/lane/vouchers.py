"""Vouchers and coupons as the till sees them: where a code comes from, whose it is, what it is worth.

A code is looked up, in order: a voucher this lane issued (ledger.db), a
coupon in the program, an open voucher from central's member feed (issued at
any lane, cache.db), then central itself (a voucher the feed has not brought
yet). What it is worth is a benefit (posd.core.benefit): its effect on a
basket is computed by posd.core.effects.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from posd.core.benefit import Benefit
from posd.core.identify import voucher_code
from posd.core.program import Coupon, Program, Reward
from posd.lane.authority import Authority, VoucherLookup
from posd.lane.context import LaneContext
from posd.lane.errors import LaneError, raises
from posd.storage.db import iso, parse_iso
from posd.storage.tx import LedgerView


# A voucher issued at another lane a moment ago: central knows it once that lane's push of the
# redemption lands, which its relay sends at once (posd.sync.lane.relay.OutboxRelay.hurry). A code in a
# lane voucher's form that central has not heard of is asked again after each of these pauses (1.5 s in
# all, each answer within the authorisation budget) before it is unknown.
ASK_AGAIN_AFTER_S = (0.1, 0.2, 0.4, 0.8)


def _benefit_of_row(row: dict[str, Any]) -> Benefit:
    """A voucher issued here; one issued before vouchers kept their benefit reads its columns."""
    stored = (row.get("details") or {}).get("benefit")
    if stored:
        return Benefit.from_json(stored)
    if row.get("sku") and row.get("value_minor") is None and row.get("percent") is None:
        return Benefit("free_item", sku=row["sku"])
    if row.get("percent") is not None:
        return Benefit("percent_off", percent=row["percent"])
    return Benefit("amount_off", value_minor=row.get("value_minor"))


@dataclass(frozen=True)
class Usable:
    """A voucher or coupon: who may use it, until when, and what it takes off a basket."""

    code: str
    source: str  # redemption (issued here) | coupon (the program) | feed (issued at another lane) | central
    description: str  # its title in the lane's language
    benefit: Benefit
    title: Any = None  # every language central or the program gave
    member_id: str | None = None
    reward_id: str | None = None
    valid_from: datetime | None = None
    expires_at: datetime | None = None
    voided: bool = False
    campaign: bool = False  # once per member rather than once
    issued_by: str | None = None  # "store/lane" of a voucher issued elsewhere
    wire: dict[str, Any] = field(default_factory=dict, compare=False)  # as it travels to central

    @classmethod
    def from_voucher(cls, row: dict[str, Any], locale: str) -> Usable:
        title = (row.get("details") or {}).get("title") or row["description"]
        return cls(code=row["code"], source=row["source"], description=_text(title, locale, row["description"]),
                   benefit=_benefit_of_row(row), title=title, member_id=row["member_id"],
                   reward_id=row["reward_id"],
                   expires_at=parse_iso(row["expires_at"]) if row["expires_at"] else None,
                   voided=bool(row.get("voided_at")))

    @classmethod
    def from_coupon(cls, coupon: Coupon, locale: str) -> Usable:
        return cls(code=coupon.code, source="coupon", description=coupon.name(locale), benefit=coupon.benefit,
                   title=coupon.names or coupon.title, member_id=coupon.member_id, valid_from=coupon.valid_from,
                   expires_at=coupon.valid_to, campaign=coupon.campaign)

    @classmethod
    def from_wire(cls, voucher: dict[str, Any], source: str, locale: str) -> Usable:
        """A voucher as central registers it (the member feed, a lookup)."""
        expires = voucher.get("expires_at")
        return cls(code=voucher["code"], source=source,
                   description=_text(voucher.get("title"), locale, voucher["code"]),
                   benefit=Benefit.from_json(voucher["benefit"]), title=voucher.get("title"),
                   member_id=voucher.get("member_id"), reward_id=voucher.get("reward_id"),
                   expires_at=parse_iso(expires) if expires else None, issued_by=voucher.get("issued_by"))

    def public(self) -> dict[str, Any]:
        """What the POS is told about it (VoucherOut's fields)."""
        b = self.benefit
        return {"source": self.source, "member_id": self.member_id, "reward_id": self.reward_id,
                "description": self.description, "value_minor": b.value_minor, "percent": b.percent,
                "sku": b.sku, "expires_at": iso(self.expires_at) if self.expires_at else None,
                "benefit": b.to_json(), "issued_by": self.issued_by}


def _text(title: Any, locale: str, fallback: str) -> str:
    if isinstance(title, dict):
        return title.get(locale) or title.get("en") or next(iter(title.values()), fallback)
    return str(title) if title else fallback


def voucher_wire(code: str, member_id: str, reward: Reward, issued_at: datetime, expires_at: datetime
                 ) -> dict[str, Any]:
    """A voucher issued for a reward, as it is stored here and travels to central (a redemption's event)."""
    return {"code": code, "member_id": member_id, "reward_id": reward.reward_id,
            "title": reward.names or reward.reward_id, "benefit": reward.benefit.to_json(),
            "issued_at": iso(issued_at), "expires_at": iso(expires_at)}


def offered_code(code: str, program: Program | None) -> str | None:
    """``code`` as the lane keeps it when it is a program coupon's (read case-insensitively) or a lane
    voucher's (as issued: Crockford, any case, O=0, I=L=1); None when it is neither."""
    coupon = program.coupon(code) if program else None
    return coupon.code if coupon is not None else voucher_code(code)


class VoucherBook:
    """Finds codes and checks they may be used now; lists what a member holds."""

    def __init__(self, ctx: LaneContext, authority: Authority):
        self.ctx, self.authority = ctx, authority

    def canonical(self, code: str) -> str:
        """The code as the lane keeps it, however it was typed: a program coupon's own spelling (coupons
        are read case-insensitively), a lane voucher's as issued (Crockford: any case, O=0, I=L=1)."""
        return offered_code(code, self.ctx.program()) or code

    def local(self, view: LedgerView, code: str, program: Program | None) -> Usable | None:
        """A code this lane knows without asking central: issued here, a coupon, or from the feed."""
        locale = self.ctx.locale
        row = view.voucher(code)
        if row is not None:
            return Usable.from_voucher(row, locale)
        coupon = program.coupon(code) if program else None
        if coupon is not None:
            return Usable.from_coupon(coupon, locale)
        fed = self.ctx.cache.member_voucher(code)
        return Usable.from_wire(fed, "feed", locale) if fed is not None else None

    async def ask(self, code: str, member_id: str | None, *, grace: bool = False) -> VoucherLookup:
        """What central knows of ``code``. With ``grace`` (a code this lane does not know), a code in a
        lane voucher's form that central answers is unknown is asked again after each ASK_AGAIN_AFTER_S
        pause, while the first answer's time plus the pauses stays within their sum: it may have been
        issued at another lane a moment ago. A central that does not answer is not asked again."""
        started = time.monotonic()
        answer = await self.authority.lookup(code, member_id)
        if not grace or voucher_code(code) != code:
            return answer
        deadline = started + sum(ASK_AGAIN_AFTER_S)
        for pause in ASK_AGAIN_AFTER_S:
            if answer.status != "unknown" or time.monotonic() + pause > deadline:
                break
            await asyncio.sleep(pause)
            answer = await self.authority.lookup(code, member_id)
        return answer

    @raises("unknown_voucher", "voucher_unavailable")
    async def find_usable(self, view: LedgerView, code: str, member_id: str | None, *, ask: bool,
                          grace: bool = False) -> Usable:
        """The code's voucher or coupon; central is asked (``ask``) only for a code the lane does not
        know (``grace``: see ask). unknown_voucher, or voucher_unavailable (not_found)."""
        found = self.local(view, code, self.ctx.program())
        return found if found is not None else await self.from_central(code, member_id, ask=ask, grace=grace)

    @raises("unknown_voucher", "voucher_unavailable")
    async def from_central(self, code: str, member_id: str | None, *, ask: bool, grace: bool = False) -> Usable:
        """A code the lane does not know itself, as central answers it (``ask``: False when central is
        known to be out of reach)."""
        answer = await self.ask(code, member_id, grace=grace) if ask else VoucherLookup("unavailable")
        if answer.status == "found" and answer.voucher is not None:
            return Usable.from_wire(answer.voucher, "central", self.ctx.locale)
        raise not_found(code, answered=answer.status != "unavailable")

    @raises("voucher_void", "voucher_not_yet_valid", "voucher_expired", "voucher_other_member")
    def check_usable(self, v: Usable, member_id: str | None, now: datetime, aliases: tuple[str, ...] = ()) -> None:
        """Can it be used now, by this member (``aliases``: the provisional ids central mapped to
        them)? A LaneError saying why not."""
        why = why_not(v, member_id, now, aliases)
        if why == "voucher_void":
            raise LaneError("voucher_void", "central refused the redemption behind this voucher")
        if why == "voucher_not_yet_valid":
            raise LaneError("voucher_not_yet_valid", "this coupon is not valid yet")
        if why == "voucher_expired":
            raise LaneError("voucher_expired", "this voucher has expired")
        if why == "voucher_other_member":
            raise LaneError("voucher_other_member", "this voucher belongs to another member")

    def held_by(self, view: LedgerView, member_id: str, program: Program | None, now: datetime,
                aliases: tuple[str, ...] = (), applied_seq: int = 0) -> list[Usable]:
        """What a member could use now: vouchers issued here (to them, or to a provisional id central
        mapped to them) or anywhere (the feed), personal and campaign coupons not used by them on this lane.

        ``applied_seq``: the member's watermark read before the feed. A voucher issued here whose
        redemption central had applied by then is open only if the feed lists it: else another lane
        used it (or holds it for a use under way)."""
        locale = self.ctx.locale
        found: dict[str, Usable] = {}
        fed = self.ctx.cache.member_vouchers(member_id)
        open_codes = {v["code"] for v in fed}
        for row in view.vouchers_of(member_id, aliases):
            if row["seq"] is None or row["seq"] > applied_seq or row["code"] in open_codes:
                found[row["code"]] = Usable.from_voucher(row, locale)
        for wire in fed:
            found.setdefault(wire["code"], Usable.from_wire(wire, "feed", locale))
        for coupon in program.coupons if program else ():
            if coupon.member_id in (None, member_id, *aliases):
                found.setdefault(coupon.code, Usable.from_coupon(coupon, locale))
        return [v for v in found.values() if why_not(v, member_id, now, aliases) is None
                and view.voucher_use(v.code, member_id if v.campaign else "", aliases) is None]


def unknown_code(code: str, answered: bool) -> str:
    """Why a code found nowhere here cannot be used: unknown_voucher, or voucher_unavailable when it is
    a lane voucher's code that central could not be asked about (another lane may have issued it a
    moment ago: "no such voucher" would send a member with a valid one away). A coupon's code is
    the program's, which this lane has: unknown is unknown."""
    return "voucher_unavailable" if not answered and voucher_code(code) == code else "unknown_voucher"


@raises("unknown_voucher", "voucher_unavailable")
def not_found(code: str, *, answered: bool) -> LaneError:
    if unknown_code(code, answered) == "voucher_unavailable":
        return LaneError("voucher_unavailable", "this lane does not know that voucher and central cannot be asked "
                                                "now whether another lane issued it; try again when central answers")
    return LaneError("unknown_voucher", "no voucher or coupon with that code")


def needs_member(v: Usable, member_id: str | None) -> bool:
    """A coupon anyone may use, with no member named: central records every use against a member,
    so a use across lanes is caught there too (use and validate refuse it; a quote leaves it out).
    So is a program's personal coupon: its member's alone, under a code the program publishes (a
    reward's voucher, under a code no one can guess, is used by whoever hands it over with no member
    named; with a member named it must be theirs: why_not)."""
    return not member_id and (not v.member_id or v.source == "coupon")


def why_not(v: Usable, member_id: str | None, now: datetime, aliases: tuple[str, ...] = ()) -> str | None:
    """The code of the reason it cannot be used now by this member (``aliases``: the provisional
    ids central mapped to them), or None."""
    if v.voided:
        return "voucher_void"
    if v.valid_from and v.valid_from > now:
        return "voucher_not_yet_valid"
    if v.expires_at and v.expires_at <= now:
        return "voucher_expired"
    if v.member_id and member_id and v.member_id != member_id and v.member_id not in aliases:
        return "voucher_other_member"
    return None
