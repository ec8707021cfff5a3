"""The lane's retry policy: how long to wait after each answer from central. Pure.

No clock, no thread, no I/O: the sync workers (worker.py) ask it in their
thread, and the fleet simulation (bench/fleet.py) asks the very same object
with a simulated clock, so what is measured for 20,000 lanes is what a lane
runs. docs/sync-protocol.md (Retries) is the prose version.

- A failure central did not pace (no answer, a reset, a timeout, a 5xx,
  a 429 without Retry-After): full-jitter exponential backoff, the n-th
  consecutive one waits ``uniform(0, min(cap, base * 2**(n-1)))``. The cap
  bounds what a fleet sends into an outage: N lanes at their cap make
  about ``2N / cap`` requests a second (bench/fleet.py chose 300 s: 20,000
  lanes then ask less often in an outage than they push in trading).
  ``Retry-After`` on such a failure is a floor on that wait.
- A 429 with ``Retry-After`` is central handing out a slot (central-paced
  admission): the lane comes back at that time plus a little jitter (at
  most 10 % of it, at most ``PACED_JITTER_S``), not later: a wait drawn
  from a long backoff would leave the slot empty. It still counts as a
  failure (health shows it), but its wait does not depend on the count.
  A slot under ``MIN_SLOT_S`` (``Retry-After: 0``, a date past) is no slot:
  that 429 backs off as any failure, or a proxy answering it would bring
  the lane back about 20 times a second.
- 401/403 (and an identity conflict) park the lane for
  ``auth_retry_interval``: a person must act.
- Any Retry-After is capped at MAX_RETRY_AFTER (a far-future date must not
  park a lane for days).
"""

from __future__ import annotations

import random

MAX_RETRY_AFTER = 3600.0
PACED_JITTER_S = 2.0
MIN_SLOT_S = 1.0  # HTTP's Retry-After counts whole seconds: less is no slot central handed out
DEFAULT_BASE_S = 0.5
DEFAULT_CAP_S = 300.0
DEFAULT_AUTH_RETRY_S = 300.0


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None,
    *, spread_at_cap: bool = True,
) -> float:
    """Full-jitter exponential backoff for the ``failures``-th consecutive failure (1-based);
    ``retry_after`` is a floor."""
    ceiling = base * 2 ** min(max(failures - 1, 0), 32)
    # Below the cap: full jitter, quick retries after a blip. At the cap the lane is in an outage:
    # uniform(cap/2, cap) spreads a fleet's first contact after it evenly over the cap, where a
    # draw from 0 would bring a third more lanes in its first seconds (bench/fleet.py).
    # spread_at_cap=False is the policy before that change (the simulation's "before").
    if ceiling < cap or not spread_at_cap:
        delay = rng.uniform(0, min(cap, ceiling))
    else:
        delay = rng.uniform(cap / 2, cap)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def paced_delay(retry_after: float, rng: random.Random) -> float:
    """The wait for a slot central handed out: its Retry-After and a little jitter."""
    slot = min(max(0.0, retry_after), MAX_RETRY_AFTER)
    return slot + rng.uniform(0, min(PACED_JITTER_S, 0.1 * slot))


class RetryPolicy:
    """One worker's retry state: consecutive failures, and the wait each outcome earns."""

    def __init__(self, base: float = DEFAULT_BASE_S, cap: float = DEFAULT_CAP_S,
                 auth_retry_interval: float = DEFAULT_AUTH_RETRY_S, rng: random.Random | None = None,
                 *, spread_at_cap: bool = True, paced_429: bool = True) -> None:
        """``spread_at_cap`` and ``paced_429`` False: the policy lanes ran before central-paced
        admission (bench/fleet.py simulates both with this one object)."""
        self.base, self.cap, self.auth_retry_interval = base, cap, auth_retry_interval
        self.rng = rng if rng is not None else random.Random()
        self.spread_at_cap, self.paced_429 = spread_at_cap, paced_429
        self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, retry_after: float | None = None, *, status: int | None = None) -> float:
        """The wait after a failed attempt (``status`` None: no answer at all)."""
        self.failures += 1
        if status == 429 and retry_after is not None and retry_after >= MIN_SLOT_S and self.paced_429:
            return paced_delay(retry_after, self.rng)
        return backoff_delay(self.failures, self.base, self.cap, self.rng, retry_after,
                             spread_at_cap=self.spread_at_cap)

    def parked(self) -> float:
        """The wait after 401/403 or an identity conflict: a person must act."""
        self.failures += 1
        return self.auth_retry_interval
