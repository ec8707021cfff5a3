"""429 with Retry-After, whenever central said it during the run.

A central need not rate-limit a kit that sends a few dozen requests, and the
kit does not flood a foreign central to find out: it checks every 429 it met
(a Retry-After the lane can read) and says "not observed" when there was none.
"""

from __future__ import annotations

import time

from posd.sync.conformance.kit import Context, Failed, NotObserved, check
from posd.sync.protocol import parse_retry_after


@check("rate_limit", "429.retry_after")
def rate_limited(ctx: Context) -> str:
    """Every 429 carries a Retry-After the lane can read (delay-seconds or HTTP-date)."""
    seen = ctx.client.seen_429
    if not seen:
        raise NotObserved("central answered no 429 during the run")
    bad = [s.path for s in seen if parse_retry_after(s.retry_after, time.time()) is None]
    if bad:
        raise Failed(f"429 without a readable Retry-After on {bad[:3]}")
    return f"{len(seen)} seen, each with Retry-After ({seen[0].retry_after})"
