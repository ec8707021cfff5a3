"""Central's lots: expiry, debit order, returns and debts, over real HTTP on 127.0.0.1, on both engines.

Central's clock is a FakeClock shared with the client (requests are signed
with the sender's clock and checked against central's), so a test moves time
by hours or months without waiting.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from posd.sync.central import lots as lots_module
from posd.sync.central.burns import reservation_id
from posd.sync.central.store_sqlite import SqliteStore
from tests.conftest import ENGINES
from tests.support.central_fixture import LANE_ID, STORE_ID, default_seed, make_client, make_event, running_central

HOUR = 3600.0
DAY = 24 * HOUR


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def central_seed() -> dict:
    """The default seed with a stamps currency beside points: central refuses points in a currency
    its program does not have (bad_points)."""
    seed = default_seed()
    seed["program"]["currencies"].append({"code": "stamps", "kind": "stamps"})
    return seed


def accrual(seq: int, points: int, expires_ts: float | None, member_id: str = "M0002", **kw) -> dict:
    """An accrual as the lane sends it: its lot's dates under "lots"."""
    lot = {"available_at": None, "expires_at": None if expires_ts is None else iso(expires_ts)}
    return make_event(seq, member_id=member_id, points={"points": points}, lots={"points": lot}, **kw)


CENTRAL_ENGINES = ENGINES  # every test here that uses central's database runs on both engines
CENTRAL_ON_FAKE_CLOCK = True  # central and its clients run on the ``clock`` fixture, moved by hand



def push(client, *events) -> list[str]:
    return [r.status for r in client.push_batch(f"B-{events[0]['seq']}", list(events))]


def remaining(central, member_id: str = "M0002") -> dict:
    """{transaction_id or source: remaining} of a member's lots."""
    return {lot["transaction_id"] or lot["source"]: lot["remaining"] for lot in central.store.lots(member_id)}


def test_seed_balances_are_one_never_expiring_lot_and_reseeding_adds_none(tmp_path, central_db):
    with running_central(tmp_path, db_path=central_db) as central:
        lots = central.store.lots("M0002")
        assert [(lot["points"], lot["remaining"], lot["expires_at"], lot["source"]) for lot in lots] == [
            (420, 420, None, "seed")]
        assert central.store.lots("M0003") == []  # no balance, no lot
    with running_central(tmp_path, default_seed(), db_path=central_db) as central:
        assert len(central.store.lots("M0002")) == 1
        assert central.store.member("M0002")["balances"] == {"points": 420}


def test_each_accrual_becomes_a_lot_with_the_expiry_it_carried(central, client, clock):
    expires = clock.now + 30 * DAY
    assert push(client, accrual(1, 100, expires), make_event(2, member_id="M0002", points={"points": 5}),
                make_event(3, member_id="M0100", type="member_enrolled", points={"points": 50},
                           transaction_id=None)) == ["accepted"] * 3
    lots = {lot["transaction_id"]: lot for lot in central.store.lots("M0002")}
    assert (lots["T-L01-1"]["points"], lots["T-L01-1"]["expires_at"]) == (100, iso(expires))
    assert lots["T-L01-1"]["source"] == f"{STORE_ID}/{LANE_ID}/1"
    assert lots["T-L01-2"]["expires_at"] is None  # no "lots" field: never expires
    assert [(lot["points"], lot["expires_at"]) for lot in central.store.lots("M0100")] == [(50, None)]
    assert central.store.member("M0002")["balances"] == {"points": 525}


def test_debits_take_the_soonest_expiring_lots_first_and_never_expiring_last(central, client, clock):
    push(client, accrual(1, 100, clock.now + 30 * DAY), accrual(2, 100, clock.now + 10 * DAY))
    push(client, make_event(3, member_id="M0002", type="redemption", points={"points": -150}))
    assert remaining(central) == {"seed": 420, "T-L01-1": 50, "T-L01-2": 0}
    push(client, make_event(4, member_id="M0002", type="redemption", points={"points": -100}))
    assert remaining(central) == {"seed": 370, "T-L01-1": 0, "T-L01-2": 0}
    assert central.store.member("M0002")["balances"] == {"points": 370}


def test_a_debit_drawing_more_lots_than_a_page_keeps_the_draw_order(central, client, clock):
    """A debit reads lots a page at a time (lots.DRAW_PAGE): across pages it still takes the
    soonest-expiring first (lot order among equal expiries), then never-expiring ones, oldest first."""
    page = lots_module.DRAW_PAGE
    expiring = [accrual(seq, 10, clock.now + (1 + seq % 3) * DAY) for seq in range(1, page + 9)]  # ties
    forever = [accrual(seq, 10, None) for seq in range(page + 9, 2 * page + 20)]
    assert push(client, *expiring, *forever) == ["accepted"] * len(expiring + forever)
    in_order = sorted(expiring, key=lambda e: (e["lots"]["points"]["expires_at"], e["seq"]))
    assert push(client, make_event(2 * page + 20, member_id="M0002", type="redemption",
                                   points={"points": -(10 * (page + 2) + 3)})) == ["accepted"]
    left = remaining(central)
    assert [left[f"T-L01-{e['seq']}"] for e in in_order] == [0] * (page + 2) + [7] + [10] * 5
    # the rest of the expiring lots, the seed lot (never expiring, oldest) and page + 5 of the later ones
    taken = 10 * 5 + 7 + 420 + 10 * (page + 5) - 4
    assert push(client, make_event(2 * page + 21, member_id="M0002", type="redemption",
                                   points={"points": -taken})) == ["accepted"]
    left = remaining(central)
    assert all(left[f"T-L01-{e['seq']}"] == 0 for e in expiring) and left["seed"] == 0
    assert [left[f"T-L01-{e['seq']}"] for e in forever] == [0] * (page + 4) + [4] + [10] * 6
    assert central.store.member("M0002")["balances"] == {"points": 64}


def test_a_return_takes_back_its_own_sales_lot_first(central, client, clock):
    push(client, accrual(1, 100, clock.now + 10 * DAY), accrual(2, 100, clock.now + 60 * DAY))
    push(client, make_event(3, member_id="M0002", type="return", transaction_id="T-L01-2", points={"points": -60}))
    assert remaining(central) == {"seed": 420, "T-L01-1": 100, "T-L01-2": 40}  # not the sooner-expiring lot
    # a redemption spends the sooner-expiring lot, then some of the returned sale's
    push(client, make_event(4, member_id="M0002", type="redemption", transaction_id=None, points={"points": -120}))
    assert remaining(central) == {"seed": 420, "T-L01-1": 0, "T-L01-2": 20}
    # the rest of the sale returned, more than is left of its own lot: the rest as a redemption would take it
    push(client, make_event(5, member_id="M0002", type="return", transaction_id="T-L01-2", points={"points": -40}))
    assert remaining(central) == {"seed": 400, "T-L01-1": 0, "T-L01-2": 0}
    assert central.store.member("M0002")["balances"] == {"points": 400}


def test_returning_an_expired_sale_takes_its_expired_points_not_the_members_others(central, client, clock):
    push(client, accrual(1, 100, clock.now + HOUR))
    clock.advance(2 * HOUR)
    assert central.store.member("M0002")["balances"] == {"points": 420}
    push(client, make_event(2, member_id="M0002", type="return", transaction_id="T-L01-1", points={"points": -100}))
    assert remaining(central) == {"seed": 420, "T-L01-1": 0}
    assert central.store.member("M0002")["balances"] == {"points": 420}


def test_a_return_takes_back_its_own_lanes_sale_not_another_lanes_with_the_same_id(central, client, clock):
    """Transaction ids are the POS's, one lane's: another lane's sale with the same id (its points
    expired) was taken back instead, and the member kept the returned points."""
    with make_client(central, lane_id="L02", clock=clock) as other:
        assert push(other, accrual(1, 100, clock.now + HOUR, transaction_id="dup-1")) == ["accepted"]
        clock.advance(2 * HOUR)  # lane 2's lot has expired
        assert push(client, accrual(1, 500, clock.now + 60 * DAY, transaction_id="dup-1")) == ["accepted"]
        assert central.store.member("M0002")["balances"] == {"points": 920}
        push(client, make_event(2, member_id="M0002", type="return", transaction_id="dup-1",
                                points={"points": -500}))
    assert central.store.member("M0002")["balances"] == {"points": 420}
    assert sorted(lot["remaining"] for lot in central.store.lots("M0002") if lot["transaction_id"] == "dup-1") \
        == [0, 100]  # lane 1's lot emptied; lane 2's expired lot as it was


def test_a_return_at_the_lanes_new_identity_takes_back_the_sale_its_earlier_one_rang(central, client, clock):
    """The sale rung as L01, its points expired; the ledger archived, the lane is L01.2, where the POS's
    retry of the sale was recorded again (central refused it, counted before) and then returned. The
    return takes back the sale's own expired lot, as the same return sent as L01 does, not the member's
    live points."""
    assert push(client, accrual(1, 100, clock.now + HOUR, transaction_id="T-9")) == ["accepted"]
    clock.advance(2 * HOUR)
    assert central.store.member("M0002")["balances"] == {"points": 420}
    with make_client(central, lane_id=f"{LANE_ID}.2", clock=clock) as renamed:
        again = accrual(1, 100, clock.now - HOUR, transaction_id="T-9", lane_id=f"{LANE_ID}.2",
                        occurred_at=make_event(1)["occurred_at"])
        taken_back = make_event(2, member_id="M0002", type="return", transaction_id="T-9", lane_id=f"{LANE_ID}.2",
                                points={"points": -100}, occurred_at=iso(clock.now))
        assert push(renamed, again, taken_back) == ["rejected", "accepted"]
    assert central.store.member("M0002")["balances"] == {"points": 420}
    assert remaining(central) == {"seed": 420, "T-9": 0}


def test_a_new_identitys_own_sale_under_an_old_id_is_the_one_its_returns_take_back(central, client, clock):
    """After the archive the POS numbered its sales again: L01.2 rang a new T-5 (200 points) while L01's
    T-5 (100 points, expired) was still on file. L01.2's returns of T-5 are of its own sale: they take
    back its 200 points, at most, not the old sale's expired lot first."""
    assert push(client, accrual(1, 100, clock.now + HOUR, transaction_id="T-5")) == ["accepted"]
    clock.advance(2 * HOUR)
    renamed_id = f"{LANE_ID}.2"
    with make_client(central, lane_id=renamed_id, clock=clock) as renamed:
        new_sale = accrual(1, 200, clock.now + 60 * DAY, transaction_id="T-5", lane_id=renamed_id,
                           occurred_at=iso(clock.now))
        returned = [make_event(seq, member_id="M0002", type="return", transaction_id="T-5", lane_id=renamed_id,
                               points={"points": -points}, occurred_at=iso(clock.now))
                    for seq, points in ((2, 200), (3, 100))]
        assert push(renamed, new_sale, *returned) == ["accepted", "accepted", "rejected"]
    assert central.store.member("M0002")["balances"] == {"points": 420}
    assert sorted(lot["remaining"] for lot in central.store.lots("M0002") if lot["transaction_id"] == "T-5") \
        == [0, 100]  # the new sale's lot emptied; the old sale's expired lot as it was


def test_returns_are_of_the_newest_sale_of_an_id_and_of_none_before_it(central, client, clock):
    """L01's T-5 (100 points) is returned in part at L01.2 (-60: L01.2 rang no T-5, so it is L01's sale);
    then the POS, numbering again, rings a new T-5 at L01.2 (200). Its full return is of the new sale and
    fits it: the return of the old sale made before it does not count against it. At L01.3, which rang
    none, a return of T-5 is of L01.2's, the newest: it takes that sale's lot, and no more than it gave."""
    assert push(client, accrual(1, 100, clock.now + HOUR, transaction_id="T-5")) == ["accepted"]
    two, three = f"{LANE_ID}.2", f"{LANE_ID}.3"

    def back(seq: int, lane: str, points: int) -> dict:
        return make_event(seq, member_id="M0002", type="return", transaction_id="T-5", lane_id=lane,
                          points={"points": -points}, occurred_at=iso(clock.now))

    with make_client(central, lane_id=two, clock=clock) as renamed:
        new_sale = accrual(2, 200, clock.now + 60 * DAY, transaction_id="T-5", lane_id=two,
                           occurred_at=iso(clock.now))
        assert push(renamed, back(1, two, 60), new_sale, back(3, two, 150)) == ["accepted"] * 3
    with make_client(central, lane_id=three, clock=clock) as again:
        assert push(again, back(1, three, 50), back(2, three, 1)) == ["accepted", "rejected"]
    assert central.store.member("M0002")["balances"] == {"points": 420 + 100 - 60 + 200 - 150 - 50}
    assert sorted(lot["remaining"] for lot in central.store.lots("M0002") if lot["transaction_id"] == "T-5") \
        == [0, 40]  # L01.2's sale taken back whole; L01's keeps what its own return left


def test_expiry_sweep_bumps_the_member_and_the_feed_shows_the_lower_balance(central, client, clock):
    push(client, accrual(1, 100, clock.now + HOUR))
    members, cursor, _ = client.member_changes(None, 100)
    assert {m["member_id"]: m["balances"] for m in members}["M0002"] == {"points": 520}
    assert client.member_changes(cursor, 100)[0] == []

    clock.advance(HOUR - 1)
    assert client.member_changes(cursor, 100)[0] == []  # not yet

    clock.advance(2)
    members, cursor2, _ = client.member_changes(cursor, 100)
    assert [(m["member_id"], m["balances"], m["applied_seq"]) for m in members] == [
        ("M0002", {"points": 420}, {LANE_ID: 1})]
    assert int(cursor2) > int(cursor)
    assert client.member_changes(cursor2, 100)[0] == []  # swept once: no bump on every poll
    assert central.store.sweep_expired() == 0


def test_a_batch_sweeps_too_and_a_lot_spent_before_it_expired_bumps_nobody(central, client, clock):
    push(client, accrual(1, 100, clock.now + HOUR), accrual(2, 30, clock.now + HOUR, member_id="M0001"))
    push(client, make_event(3, member_id="M0001", type="redemption", points={"points": -30}))
    _, cursor, _ = client.member_changes(None, 100)
    clock.advance(2 * HOUR)
    push(client, make_event(4, member_id="M0003", points={"points": 1}))  # another member's sale
    members, _, _ = client.member_changes(cursor, 100)
    # M0002 before M0003: the batch swept before applying its events (a feed sweep would order it after)
    assert [(m["member_id"], m["balances"]) for m in members] == [("M0002", {"points": 420}),
                                                                  ("M0003", {"points": 1})]


def test_a_sale_synced_after_its_lot_expired_never_counts(central, client, clock):
    push(client, accrual(1, 100, clock.now - DAY))
    assert central.store.member("M0002")["balances"] == {"points": 420}
    _, cursor, _ = client.member_changes(None, 100)
    clock.advance(DAY)
    assert client.member_changes(cursor, 100)[0] == []


def live_balances(central, member_id: str, now: float) -> dict:
    """What the lots say a member has now: unexpired remainders per currency, less debts."""
    out: dict = {}
    for lot in central.store.lots(member_id):
        expires = lot["expires_at"] and datetime.fromisoformat(lot["expires_at"].replace("Z", "+00:00")).timestamp()
        out.setdefault(lot["currency"], 0)
        if lot["remaining"] > 0 and (not expires or expires > now):
            out[lot["currency"]] += lot["remaining"]
    for currency, points in central.store.debts(member_id).items():
        out[currency] = out.get(currency, 0) - points
    return out


def test_a_batch_of_credits_publishes_what_the_lots_sum_to(central, client, clock):
    """A member who only gains credits in a batch is published as its stored balance plus the credits
    still unexpired: the same figure as summing every live lot, also after earlier lots expired."""
    push(client, accrual(1, 100, clock.now + HOUR), accrual(2, 7, None, member_id="M0001"))
    clock.advance(2 * HOUR)  # lot 1 expired: the next batch sweeps it first
    stamps = {"available_at": None, "expires_at": None}
    push(client, accrual(3, 40, clock.now - DAY), accrual(4, 25, None), accrual(5, 10, clock.now + DAY),
         make_event(6, member_id="M0002", points={"stamps": 3}, lots={"stamps": stamps}),
         accrual(7, 5, clock.now + HOUR, member_id="M0001"))
    for member_id in ("M0001", "M0002"):
        assert central.store.member(member_id)["balances"] == live_balances(central, member_id, clock.now)
    assert central.store.member("M0002")["balances"] == {"points": 420 + 25 + 10, "stamps": 3}
    before = central.store.member("M0001")["balances"]["points"]
    clock.advance(2 * HOUR)  # M0001's 5 expire; the batch's sweep takes them off before its credits
    push(client, accrual(8, 1, None, member_id="M0001"))
    assert central.store.member("M0001")["balances"] == {"points": before - 5 + 1} \
        == live_balances(central, "M0001", clock.now)


def test_a_debit_takes_the_lots_that_were_unexpired_when_it_happened(central, client, clock):
    # Spent at an offline till half an hour before the lot's end, synced after it:
    # those points were spent, not lost, and the member keeps the rest.
    start = clock.now
    push(client, accrual(1, 100, start + HOUR))
    clock.advance(2 * HOUR)
    push(client, make_event(2, member_id="M0002", type="redemption", points={"points": -100},
                            occurred_at=iso(start + HOUR / 2)))
    assert remaining(central) == {"seed": 420, "T-L01-1": 0}
    assert central.store.member("M0002")["balances"] == {"points": 420}


def test_a_debit_beyond_every_lot_is_a_debt_that_later_credits_repay(central, client, clock):
    push(client, accrual(1, 100, None))
    push(client, make_event(2, member_id="M0002", type="redemption", points={"points": -520}))
    push(client, make_event(3, member_id="M0002", type="return", transaction_id="T-L01-1", points={"points": -100}))
    assert central.store.member("M0002")["balances"] == {"points": -100}
    assert central.store.debts("M0002") == {"points": 100}

    push(client, accrual(4, 30, None))
    assert (central.store.member("M0002")["balances"], central.store.debts("M0002")) == ({"points": -70},
                                                                                          {"points": 70})
    push(client, accrual(5, 100, clock.now + HOUR))
    assert (central.store.member("M0002")["balances"], central.store.debts("M0002")) == ({"points": 30}, {})
    clock.advance(2 * HOUR)
    # the debt was paid out of that lot before it expired: nothing is owed twice
    assert central.store.member("M0002")["balances"] == {"points": 0}


def test_lots_with_an_unreadable_expiry_are_refused_and_apply_nothing(central, client):
    bad = make_event(1, member_id="M0002", points={"points": 100},
                     lots={"points": {"available_at": None, "expires_at": "next month"}})
    answer = client.push_batch("B-1", [bad, accrual(2, 5, None)])
    assert [(r.status, r.code) for r in answer] == [("rejected", "malformed_event"), ("accepted", None)]
    assert remaining(central) == {"seed": 420, "T-L01-2": 5}
    assert central.store.member("M0002")["balances"] == {"points": 425}


def test_upsert_member_replaces_its_lots(central, client, clock):
    push(client, accrual(1, 100, clock.now + HOUR))
    central.store.upsert_member({"member_id": "M0002", "display_name": "Reza K.", "balances": {"points": -7}})
    assert central.store.lots("M0002") == [] and central.store.debts("M0002") == {"points": 7}
    assert central.store.member("M0002")["balances"] == {"points": -7}


def test_a_central_db_from_before_lots_is_migrated_once(tmp_path):
    db = tmp_path / "central.db"
    store = SqliteStore(db)
    store.seed(default_seed())
    store.close()
    conn = sqlite3.connect(db)  # back to the old schema: balances only, no lots
    conn.executescript("DROP TABLE lots; DROP TABLE lot_debts; DELETE FROM meta WHERE key = 'lots_v1';"
                       "UPDATE members SET balances = '{\"points\": -5}' WHERE member_id = 'M0002';")
    conn.close()

    for _ in range(2):  # opening again changes nothing
        with running_central(tmp_path, default_seed(), db_path=db) as central:
            assert [(lot["remaining"], lot["expires_at"], lot["source"]) for lot in central.store.lots("M0001")] == [
                (1840, None, "migrated")]
            assert central.store.lots("M0002") == [] and central.store.debts("M0002") == {"points": 5}
            assert central.store.member("M0001")["balances"] == {"points": 1840}
            assert central.store.member("M0002")["balances"] == {"points": -5}


def test_the_feed_lists_a_members_lots_still_pending_until_they_mature(central, client, clock):
    """The balance counts a pending lot (one number per currency); the feed says which part of it is
    not spendable yet and until when, so a lane holds it back by its own clock once the sale synced."""
    pending = {"available_at": iso(clock.now + 14 * DAY), "expires_at": None}
    push(client, make_event(1, member_id="M0002", points={"points": 250}, lots={"points": pending}))
    members, _, _ = client.member_changes(None, 100)
    entry = {m["member_id"]: m for m in members}["M0002"]
    assert entry["balances"] == {"points": 670}
    assert entry["maturing"] == [{"currency": "points", "points": 250, "available_at": pending["available_at"]}]
    assert "maturing" not in {m["member_id"]: m for m in members}["M0001"]  # left out when there is none
    assert central.store.member("M0002")["maturing"] == entry["maturing"]
    clock.advance(14 * DAY + 1)
    assert "maturing" not in central.store.member("M0002")


def test_a_burn_spends_spendable_points_before_points_still_pending(central, client, clock):
    """The soonest-expiring lot was drawn first even while pending: the spendable points stayed
    spendable, a second burn was approved, and returning the sale left vouchers and a debt."""
    pending = {"available_at": iso(clock.now + 14 * DAY), "expires_at": iso(clock.now + 30 * DAY)}
    push(client, make_event(1, member_id="M0002", points={"points": 1100}, lots={"points": pending}))
    push(client, make_event(2, member_id="M0002", type="redemption", points={"points": -300}))
    lots = {lot["transaction_id"] or lot["source"]: lot["remaining"] for lot in central.store.lots("M0002")}
    assert lots == {"T-L01-1": 1100, "seed": 120}, lots
    entry = central.store.member("M0002")
    assert entry["balances"] == {"points": 1220} and entry["maturing"][0]["points"] == 1100
    push(client, make_event(3, member_id="M0002", type="return", transaction_id="T-L01-1",
                            points={"points": -1100}))
    assert central.store.member("M0002")["balances"] == {"points": 120}  # no debt


def test_lots_maturing_at_one_moment_are_listed_in_the_order_they_were_earned(central, client, clock):
    """Three sales whose points mature at the same moment, the middle one partly returned: the feed
    listed them in whatever order the database read them (PostgreSQL's after the return's update,
    SQLite's another), so one member read differently by engine and from one read to the next."""
    pending = {"available_at": iso(clock.now + 14 * DAY), "expires_at": None}
    for seq, points in ((1, 27), (2, 77), (3, 50)):
        push(client, make_event(seq, member_id="M0002", points={"points": points}, lots={"points": pending}))
    push(client, make_event(4, member_id="M0002", type="return", transaction_id="T-L01-2", return_id="R-1",
                            points={"points": -10}))
    listed = [lot["points"] for lot in central.store.member("M0002")["maturing"]]
    assert listed == [27, 67, 50]
    members, _, _ = client.member_changes(None, 100)
    assert [lot["points"] for lot in {m["member_id"]: m for m in members}["M0002"]["maturing"]] == listed


def test_a_central_db_from_before_signed_reservations_is_migrated_once(tmp_path):
    """A reservations table without the authorisation's signed timestamp gains it; a reservation made
    before has none, and its lane's release still gives it back."""
    db = tmp_path / "central.db"
    store = SqliteStore(db)
    store.seed(default_seed())
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE reservations DROP COLUMN release_from")
    conn.execute("DELETE FROM meta WHERE key = 'reservations_release_from_v1'")
    conn.execute("INSERT INTO reservations (reservation_id, store_id, lane_id, authorisation_id, request_hash, "
                 "kind, member_id, points, occurred_at, created_ts, expires_ts, state) VALUES (?, "
                 "'S001', 'L01', 'r:1', 'h', 'redemption', 'M0001', '{\"points\": 5}', '', 0, 1e12, 'open')",
                 (reservation_id("S001", "L01", "r:1"),))
    conn.commit()
    conn.close()
    for expected in ("released", "released"):  # opening again changes nothing; asked again, the same state
        store = SqliteStore(db)
        assert store.release("S001", "L01", "r:1", 1) == expected
        store.close()
    conn = sqlite3.connect(db)
    assert "release_from" in {row[1] for row in conn.execute("PRAGMA table_info(reservations)")}
    conn.close()
