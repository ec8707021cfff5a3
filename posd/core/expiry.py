"""When a lot of points becomes spendable and when it expires. Pure.

Days and month ends are the store's: "pending 14 days" means the same wall-clock
time 14 days later, and "end of month" is the last instant of the month in the
store's timezone, whatever DST does in between. Results are aware UTC, as the
ledger stores them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from posd.core.program import Currency, ExpiryPolicy

__all__ = ["lot_dates"]

_INSTANT = timedelta(microseconds=1)


def _add_days(local: datetime, days: int) -> datetime:
    # Wall-clock arithmetic: aware + timedelta keeps the local time and re-reads the offset.
    # It also resets `fold`, so the second 02:30 of a DST fall-back day would move back an
    # hour: zero days is the instant itself.
    return local if days == 0 else local + timedelta(days=days)


def _first_of_month(local: datetime, months_ahead: int) -> datetime:
    """Local midnight on the 1st, `months_ahead` months after the month of `local`."""
    index = local.year * 12 + (local.month - 1) + months_ahead
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=local.tzinfo)


def _period_end(policy: ExpiryPolicy, local: datetime) -> datetime | None:
    if policy.policy == "never":
        return None
    if policy.policy == "rolling_days":
        return _add_days(local, policy.days).astimezone(UTC)
    if policy.policy == "end_of_month":
        # months=0: this month; months=N: N months later. The end is the instant before the next 1st.
        boundary = _first_of_month(local, policy.months + 1)
    else:  # end_of_year: the year holding `local` + months; months=12 is "end of next year"
        target = _first_of_month(local, policy.months)
        boundary = datetime(target.year + 1, 1, 1, tzinfo=local.tzinfo)
    return boundary.astimezone(UTC) - _INSTANT


def lot_dates(currency: Currency, earned_local: datetime) -> tuple[datetime, datetime | None]:
    """(available_at, expires_at) in aware UTC for points earned at `earned_local` (store time).

    Points never expire before they become spendable: when the period ends during
    the pending days, they expire at the end of the period in which they become
    available instead. A qualifying currency's points never expire: the tier moves
    only with sales and returns, and central's ``qualifying`` figure, one with that
    currency's balance, has no expiry (docs/program.md).
    """
    if earned_local.tzinfo is None or earned_local.utcoffset() is None:
        raise ValueError("earned_local must be aware, in the store's timezone")
    available_local = _add_days(earned_local, currency.pending_days)
    # never before the sale itself (a wall-clock day count can land in a DST fold)
    available = max(available_local.astimezone(UTC), earned_local.astimezone(UTC))
    if currency.kind == "qualifying":
        return available, None
    expires = _period_end(currency.expiry, earned_local)
    if expires is not None and expires < available:
        expires = _period_end(currency.expiry, available_local)
    return available, expires
