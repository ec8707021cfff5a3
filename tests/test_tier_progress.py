"""One figure for the points toward the next tier: the member view's progress is the tier-points
balance, seeded, after a sale still unsynced, and once central applied it, on both central engines."""

from __future__ import annotations

import pytest

from posd.sync.central.members import member_row
from tests.conftest import ENGINES
from tests.support.central_fixture import demo_seed

CENTRAL_ENGINES = ENGINES
LUKASZ = "2900000000025"  # silver; seeded with 1450 tier points and 420 points


@pytest.fixture
def central_seed():
    return demo_seed()


def one_figure(view: dict) -> int:
    """The member view's tier progress, checked against its tier-points balance; that figure."""
    progress, balance = view["progress"], view["balances"]["qualifying"]
    assert progress["qualifying"] == balance["total"], view
    assert progress["points_needed"] == progress["threshold"] - balance["total"]
    return balance["total"]


def test_the_member_view_shows_one_tier_points_figure(tmp_path, start_lane, central, central_seed):
    seeded = next(m for m in central_seed["members"] if m["member_id"] == "M0002")["qualifying"]
    wire = central.store.member("M0002")
    assert wire["qualifying"] == wire["balances"]["qualifying"] == seeded  # central: one figure too

    lane = start_lane(tmp_path / "lane", printer="none")
    assert one_figure(lane.get(f"/v1/members/{LUKASZ}").json()) == seeded

    sale = {"transaction_id": "T-tier-1", "member": LUKASZ, "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": 12999,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 12999}]}
    resp = lane.post("/v1/transactions", sale)
    assert resp.status_code == 200, resp.text
    earned = resp.json()["accrual"]["points"]["qualifying"]
    assert earned > 0
    assert resp.json()["balance"]["qualifying"]["total"] == seeded + earned
    assert one_figure(lane.get(f"/v1/members/{LUKASZ}").json()) == seeded + earned  # before central has it

    lane.wait_drained()
    lane.wait_for(lambda: lane.get(f"/v1/members/{LUKASZ}").json()["balances"]["qualifying"]["pending"] == 0,
                  what="central's confirmation")
    assert one_figure(lane.get(f"/v1/members/{LUKASZ}").json()) == seeded + earned
    wire = central.store.member("M0002")
    assert wire["qualifying"] == wire["balances"]["qualifying"] == seeded + earned


def test_a_seed_gives_tier_points_by_either_field_and_never_two_figures():
    program = demo_seed()["program"]
    by_qualifying = member_row({"member_id": "A", "qualifying": 1200, "balances": {"points": 5}}, program)
    assert by_qualifying["balances"] == {"points": 5, "qualifying": 1200}
    assert by_qualifying["tier"] == "silver"
    by_balance = member_row({"member_id": "B", "balances": {"qualifying": 6000}}, program)
    assert by_balance["qualifying"] == 6000 and by_balance["tier"] == "gold"
    with pytest.raises(ValueError, match="qualifying.*balances.qualifying.*same figure"):
        member_row({"member_id": "C", "qualifying": 10, "balances": {"qualifying": 20}}, program)
    # a spendable tier currency: spending does not lower the tier figure, so the two may differ
    spendable = {**program, "tier_currency": "points"}
    row = member_row({"member_id": "D", "qualifying": 900, "balances": {"points": 100}}, spendable)
    assert (row["qualifying"], row["balances"]) == (900, {"points": 100})
