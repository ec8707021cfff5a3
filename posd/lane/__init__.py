"""The lane's services: what a checkout lane does with loyalty, one module each.

context (ids, clock, time zone, program), members (find, view, scans),
member_tokens (phone QR and wallet pass checks), enrolment (new members at the till),
sales (sales and returns), quotes (what a basket would earn and take off,
before payment), rewards (redemptions, voucher and coupon uses), vouchers
(where a code comes from and what it is worth), burn and authority (asking
central before a burn, the offline caps when it does not answer), slips
(composition, reprint, preview), print_worker, events (the stream the POS
reads), errors (the codes the POS can get). ``Lane`` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from posd.core.member_tokens import KeySpec
from posd.lane.authority import Authority
from posd.lane.birthdays import Birthdays
from posd.lane.context import LaneContext
from posd.lane.enrolment import Enrolments
from posd.lane.events import EventBus
from posd.lane.member_tokens import DEFAULT_SKEW_S, MemberTokens
from posd.lane.members import Members
from posd.lane.quotes import Quotes
from posd.lane.rewards import OfflineLimits, Rewards
from posd.lane.sales import Sales
from posd.lane.slips import PngRenderer, Slips
from posd.storage.cache import Cache
from posd.storage.ledger import Ledger


class Lane:
    """The services of one lane over its ledger, cache and event stream."""

    def __init__(self, *, store_id: str, lane_id: str, locale: str, ledger: Ledger, cache: Cache, bus: EventBus,
                 printer_enabled: bool, is_offline: Callable[[], bool] = lambda: False, timezone: str = "UTC",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 offline_limits: OfflineLimits = OfflineLimits(),
                 last_sync: Callable[[], datetime | None] = lambda: None, render_png: PngRenderer | None = None,
                 token_keys: tuple[KeySpec, ...] = (), token_skew_s: float = DEFAULT_SKEW_S,
                 country: str | None = None, authority: Authority | None = None):
        """``token_keys``: the config's member-token keys, replacing the program's when given;
        ``country``: where phone numbers given without a country code are from; ``authority``: who
        authorises burns (posd.lane.authority.CentralAuthority in the daemon); without one the
        lane's own checks are the only ones (tests, tools)."""
        self.context = LaneContext(store_id=store_id, lane_id=lane_id, locale=locale, ledger=ledger, cache=cache,
                                   bus=bus, printer_enabled=printer_enabled, is_offline=is_offline,
                                   timezone=timezone, clock=clock)
        self.members = Members(self.context, MemberTokens(self.context, override=token_keys, skew_s=token_skew_s),
                               authority, country)
        self.enrolments = Enrolments(self.context, self.members, country)
        self.slips = Slips(self.context, self.members, render_png)
        self.sales = Sales(self.context, self.members, self.slips, Birthdays(self.context, authority))
        self.rewards = Rewards(self.context, self.members, self.slips, offline_limits, last_sync, authority)
        self.quotes = Quotes(self.context, self.members, self.sales, self.rewards)

    @property
    def locale(self) -> str:
        return self.context.locale
