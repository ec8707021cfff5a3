"""kill -9 under POS traffic: at random moments and at the named crash points.

A real daemon subprocess, the reference central on loopback, a POS that
retries a failed sale with the same transaction_id until it is answered. At
the end: none lost, none duplicated, central's events equal the lane's outbox,
balances equal the ledger sum, integrity_check ok. The default run is a
bounded slice; `make soak` runs the full size (POSD_SOAK_TRANSACTIONS,
POSD_SOAK_KILLS override it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.central_fixture import demo_seed, running_central
from tests.support.crash import NAMED_POINTS, CrashRun

SEED = demo_seed()


def crash_run(tmp_path: Path, transactions: int, kills: int, rng_seed: int) -> dict:
    with running_central(tmp_path / "central", SEED) as central:
        report = CrashRun(tmp_path / "lane", central, SEED, transactions=transactions, kills=kills,
                          rng_seed=rng_seed).run()
    summary = report.summary()
    print("crash harness:", json.dumps(summary))
    assert report.problems == [], summary
    assert (report.lost, report.duplicated) == (0, 0), summary
    assert report.transactions == transactions and report.kills >= kills
    assert report.outbox_events == report.central_events > 0
    return summary


@pytest.mark.fault
def test_crash_slice_loses_and_duplicates_nothing(tmp_path):
    summary = crash_run(tmp_path, transactions=1000, kills=20, rng_seed=1)
    for point in NAMED_POINTS:
        assert summary["named_fired"].get(point, 0) >= 1, (point, summary)


@pytest.mark.slow
def test_crash_soak_ten_thousand_transactions_a_hundred_kills(tmp_path):
    transactions = int(os.environ.get("POSD_SOAK_TRANSACTIONS", "10000"))
    kills = int(os.environ.get("POSD_SOAK_KILLS", "100"))
    summary = crash_run(tmp_path, transactions, kills, rng_seed=int(os.environ.get("POSD_SOAK_SEED", "7")))
    out = os.environ.get("POSD_SOAK_REPORT")
    if out:
        Path(out).write_text(json.dumps(summary, indent=2))
