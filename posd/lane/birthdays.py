"""The birthday bonus, once a year per member across the chain.

A sale gives the program's birthday bonus only when neither this lane's ledger
(the member's id or its provisional aliases) nor central's member feed (the
last year a lane gave it, in cache.db) says the member's store-local year was
given. While central answers within the burn budget, a sale that would give it
claims the year at central first: another lane holding it means the sale earns
without the bonus. Without an answer the lane decides from what it knows, and
central flags a second lane's bonus later as information (the accrual event
names its year). A return never frees the year (docs/program.md, birthday).
"""

from __future__ import annotations

from posd.lane.authority import Authority, LocalAuthority
from posd.lane.context import LaneContext
from posd.storage.cache import CachedMember
from posd.storage.tx import LedgerView


class Birthdays:
    def __init__(self, ctx: LaneContext, authority: Authority | None = None):
        self.ctx = ctx
        self.authority: Authority = authority or LocalAuthority()

    def given(self, member: CachedMember, year: int, view: LedgerView) -> bool:
        """Was the member's ``year`` bonus given: at another lane (central's feed says so) or here?"""
        return member.birthday_award_year == year or view.birthday_awarded(member.member_id, year, member.aliases)

    def asks_central(self) -> bool:
        """Would ``claim`` ask central (rather than answer at once)?"""
        return not self.ctx.is_offline()

    async def claim(self, member: CachedMember, year: int, transaction_id: str) -> bool:
        """May this sale give the bonus? False only when central says another lane holds the year; the
        same transaction asking again is answered the same. Central known to be out of reach, or no
        answer within the budget: True (the lane gave what it knew; central flags a double later)."""
        if self.ctx.is_offline():
            return True
        claim = {"member_id": member.member_id, "year": year, "transaction_id": transaction_id}
        return await self.authority.claim_birthday(claim) != "taken"
