"""A return is evaluated against the program version its sale earned under, whatever is in force now.

In process, a real ledger.db and cache.db: the sale earns under one version, central then publishes
another with other rates, and the returns (by lines and by amount, several of them, so the parsed
version is used again) reverse what the first version gave; a sale whose version the ledger does not
hold is refused with program_version_unknown, and stays refused.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from posd.core.rules import BasketLine
from posd.lane import Lane
from posd.lane.errors import LaneError
from posd.lane.events import EventBus
from posd.lane.sales import ReturnInput, TransactionInput
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger
from tests.support import ledger_sql

NOW = datetime(2026, 11, 18, 14, tzinfo=UTC)
V1 = {"version": "v1", "rounding": "floor", "currencies": [{"code": "points", "kind": "redeemable"}],
      "rules": [{"id": "base", "type": "base_rate", "currency": "points",
                 "rates": {"PLN": {"spend_minor": 100, "points": 1}}}]}
V2 = {**copy.deepcopy(V1), "version": "v2"}
V2["rules"][0]["rates"]["PLN"]["points"] = 5  # five times the points for the same spend

LINES = (BasketLine("A", "grocery", Decimal(4), 2500), BasketLine("B", "grocery", Decimal(1), 5000))


@pytest.fixture
def lane(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(copy.deepcopy(V1), "e1")
    cache.apply_member_changes([{"member_id": "m", "display_name": "M", "tier": None, "identifiers": ["CARD-m"],
                                 "balances": {"points": 0}}], "1")
    yield Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache, bus=EventBus(ledger.boot),
               printer_enabled=False, timezone="Europe/Warsaw", clock=lambda: NOW)
    cache.close()
    ledger.close()


def _sale(lane, tid):
    tx = TransactionInput(tid, "CARD-m", NOW - timedelta(hours=1), "PLN", 15000, LINES, f"h-{tid}")
    return asyncio.run(lane.sales.record_sale(tx)).response


def _return(lane, tid, rid, lines=None, amount=None):
    return asyncio.run(lane.sales.record_return(ReturnInput(tid, rid, lines, amount, f"h-{rid}"))).response


def test_returns_reverse_what_the_sales_own_program_version_gave(lane):
    assert _sale(lane, "T1")["accrual"]["points"] == {"points": 150}
    assert _sale(lane, "T2")["accrual"]["points"] == {"points": 150}
    lane.context.cache.store_program(copy.deepcopy(V2), "e2")
    assert _sale(lane, "T3")["accrual"]["points"] == {"points": 750}  # the new version is in force
    # v1's points per line: A 4 x 25.00 = 100, B 50; v2 would say 500 and 250
    assert _return(lane, "T1", "R1", lines=(("A", Decimal(2)),))["reversed"] == {"points": 50}
    assert _return(lane, "T1", "R2", lines=(("B", Decimal(1)),))["reversed"] == {"points": 50}
    assert _return(lane, "T2", "R3", amount=3000)["reversed"] == {"points": 30}
    assert _return(lane, "T3", "R4", lines=(("B", Decimal(1)),))["reversed"] == {"points": 250}
    assert _return(lane, "T1", "R5", lines=(("A", Decimal(2)),))["reversed"] == {"points": 50}


def test_a_sale_whose_program_version_is_not_on_the_lane_cannot_be_returned_by_lines(lane):
    _sale(lane, "T1")
    ledger_sql.execute(lane.context.ledger, "DELETE FROM programs WHERE version = 'v1'")
    for rid in ("R1", "R2"):  # asked again: still unknown, nothing reversed meanwhile
        with pytest.raises(LaneError) as refused:
            _return(lane, "T1", rid, lines=(("A", Decimal(1)),))
        assert refused.value.code == "program_version_unknown"
    assert lane.context.ledger.view().returns_of("T1") == []
