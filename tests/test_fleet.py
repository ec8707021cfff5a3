"""The fleet simulation at small scale: the properties the policy promises, not timings.

bench/fleet.py runs the lane's real RetryPolicy on a simulated clock (no
sleeps: what is asserted here are outcomes of the model, which are the same
on any machine). `make bench` runs it at 20,000 lanes with the capacity the
central bench measured; here 1,000 lanes against a central of the same
capacity per lane.
"""

from __future__ import annotations

import pytest

from bench import fleet
from posd.sync.lane import retry

LANES = 1000
MEASURED_PER_20K = 3013.0  # events/s, bench/central.json on this project's 2-core machines (2 workers)


@pytest.fixture(scope="module")
def runs():
    return fleet.before_and_after(LANES, MEASURED_PER_20K * LANES / 20_000)


def test_the_simulated_lanes_run_the_relays_own_retry_policy(monkeypatch):
    asked = []

    class Spy(retry.RetryPolicy):
        def failed(self, retry_after=None, *, status=None):
            asked.append(status)
            return super().failed(retry_after, status=status)

    monkeypatch.setattr(fleet, "RetryPolicy", Spy)
    assert fleet.RetryPolicy is Spy and retry.RetryPolicy is not Spy
    fleet.simulate(fleet.Fleet(lanes=50, capacity_events_s=6.0, outage_s=600, warmup_s=120, after_s=900))
    assert asked and None in asked  # refused connections during the outage went through the policy
    assert fleet.Fleet().backoff_cap_s == retry.DEFAULT_CAP_S  # the simulated "after" is what lanes run


def test_after_an_hours_outage_every_backlog_drains_within_ten_minutes_without_a_herd(runs):
    after = runs["after: new policy + central-paced admission"]
    assert after.starved_lanes == 0 and after.drained_s is not None and after.drained_s <= 600
    assert after.peak_over_steady <= 2.0  # requests reaching central, against trading's steady state
    assert after.timed_out == 0 and after.resent_events == 0  # nothing applied twice, nothing lost in a queue
    assert after.backlog_events > LANES * 30  # an hour of trading really was waiting


def test_before_the_change_the_same_outage_ends_in_congestion_collapse(runs):
    before = runs["before: lanes' old policy, no admission"]
    after = runs["after: new policy + central-paced admission"]
    assert before.drained_s is None and before.starved_lanes > LANES // 2
    assert before.timed_out > 0 and before.resent_events > before.backlog_events  # work done again and again
    assert before.peak_over_steady > after.peak_over_steady
    assert before.refused > 3 * after.refused  # a 60 s cap sends more into the outage than a 300 s one
