"""What the PostgreSQL engine promises beyond the shared suite: concurrent lanes, a feed
ordered by commit, partitions, the outbox, and `posd central --workers N`.

Real concurrent transactions on the session's throwaway cluster, real worker
processes, real sockets; no test here measures time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg_pool import PoolTimeout

from posd.sync.central.burns import reservation_id
from posd.sync.central.store_pg import PgStore
from posd.sync.lane.client import CentralClient
from posd.sync.lane.errors import CentralUnavailable
from posd.sync.protocol import encode_batch, signed_headers
from tests.support.central_fixture import LANE_ID, SECRET, STORE_ID, default_seed, make_event
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pg_db(make_central_db):
    return make_central_db("postgresql")


@pytest.fixture
def store(pg_db):
    s = PgStore(pg_db, pool_size=8)
    s.seed(default_seed())
    yield s
    s.close()


def test_lanes_of_one_member_pushing_at_once_never_deadlock_or_lose_an_update(store):
    """Four lanes push batches touching the same two members in opposite orders, at once:
    every batch is answered, and the balances are the seed plus every delta."""
    lanes, batches, errors = ["L1", "L2", "L3", "L4"], 12, []

    def lane(name: str, index: int) -> None:
        seq = 0
        try:
            for b in range(batches):
                members = ["M0001", "M0002"] if (index + b) % 2 else ["M0002", "M0001"]
                events = []
                for member in members * 3:
                    seq += 1
                    delta = -3 if seq % 4 == 0 else 5  # redemptions draw lots while others credit them
                    kind = "redemption" if delta < 0 else "accrual"
                    events.append(make_event(seq, member_id=member, lane_id=name, type=kind,
                                             points={"points": delta}))
                results = store.apply_batch(STORE_ID, name, f"{name}-{b}", events, "2026-11-24T09:15:00Z")
                assert [r["status"] for r in results] == ["accepted"] * len(events)
        except Exception as exc:  # reported below, with the lane
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=lane, args=(name, i), name=f"lane-{name}") for i, name in enumerate(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    per_lane, last_of_m1 = {"M0001": 0, "M0002": 0}, {}
    for name in lanes:
        for event in store.events(STORE_ID, name):
            per_lane[event["member_id"]] += event["event"]["points"]["points"]
            if event["member_id"] == "M0001":
                last_of_m1[name] = event["seq"]
        assert store.last_seq(STORE_ID, name) == batches * 6
    assert store.member("M0001")["balances"] == {"points": 1840 + per_lane["M0001"]}
    assert store.member("M0002")["balances"] == {"points": 420 + per_lane["M0002"]}
    lots = sum(lot["remaining"] for lot in store.lots("M0001"))
    assert lots == 1840 + per_lane["M0001"] and store.debts("M0001") == {}
    assert store.member("M0001", STORE_ID)["applied_seq"] == last_of_m1


def test_lanes_enrolling_one_card_and_phone_at_once_are_all_applied(store):
    """Six new lanes at once, each enrolling offline the same card, the same phone or both, then
    crediting its provisional id. The holder one batch creates is locked by the others out of the
    sorted order, and PostgreSQL broke the cycle by refusing a batch: the lane was told 503 (the
    database is not answering) and had to resend it. Central applies such a batch again itself now."""
    for round_ in range(8):
        card, phone = f"29{round_:02d}{os.urandom(4).hex()}", f"+48600{round_:02d}{os.getpid() % 10000:04d}"
        kinds = [[card], [phone], [card, phone]] * 2
        enrolled = enrolling_at_once(store, [(f"EN{round_}-{i}", f"P-{os.urandom(8).hex()}", ids, 100)
                                             for i, ids in enumerate(kinds)])
        held = [store.member(m) for m in enrolled]
        assert sum(m["balances"]["points"] for m in held) == 600, held  # every credit, once


def enrolling_at_once(store, lanes: list[tuple[str, str, list[str], int]]) -> set[str]:
    """Each (lane, provisional id, identifiers, points) enrols its id and credits it in one batch, all
    lanes at once; every batch accepted whole. The members central named."""
    errors: list[str] = []
    enrolled: set[str] = set()

    def lane(name: str, provisional: str, identifiers: list[str], points: int) -> None:
        try:
            events = [make_event(1, member_id=provisional, lane_id=name, type="member_enrolled", transaction_id=None,
                                 identifiers=identifiers, points={"points": 0}, provisional=True),
                      make_event(2, member_id=provisional, lane_id=name, points={"points": points})]
            results = store.apply_batch(STORE_ID, name, f"{name}-1", events, "2026-11-24T09:15:00Z")
            assert [r["status"] for r in results] == ["accepted"] * 2, results
            enrolled.add(results[0]["member_id"])
        except Exception as exc:  # reported below, with the lane
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=lane, args=args) for args in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    return enrolled


def test_lanes_enrolling_one_provisional_id_at_once_all_find_the_one_member(store):
    """Eight lanes at once enrol the same provisional id (a foreign lane's ids need not be unique) and
    credit it. The aliases were read before the lock on the id was taken, so every batch that waited
    for the first enrolled the id again: a unique violation, 500 to the lane. SQLite, one writer at a
    time, mapped them all to the first one's member; PostgreSQL does too now."""
    for round_ in range(4):
        provisional = f"P-{os.urandom(8).hex()}"
        enrolled = enrolling_at_once(store, [(f"PR{round_}-{i}", provisional, [], 10) for i in range(8)])
        assert len(enrolled) == 1, enrolled
        assert store.member(enrolled.pop())["balances"] == {"points": 80}


def test_the_change_feed_never_hands_out_a_cursor_past_a_change_still_committing(store, pg_db):
    """Transaction ids are handed out at start: a transaction that started first and commits
    last must not land behind a cursor the feed already gave out."""
    _, cursor, _ = store.member_changes(STORE_ID, 0, 1000)
    with psycopg.connect(pg_db, autocommit=True) as slow:
        with slow.transaction():
            xid = slow.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]  # starts first
            store.upsert_member({"member_id": "M0002", "display_name": "Reza K.", "balances": {"points": 5}})
            members, cursor_during, has_more = store.member_changes(STORE_ID, int(cursor), 1000)
            assert (members, cursor_during, has_more) == ([], cursor, False)  # M0002 waits behind the horizon
            slow.execute("UPDATE members SET version = %s, display_name = 'Anna (changed first)' "
                         "WHERE member_id = 'M0001'", ((xid << 20) | 1,))
        members, _, _ = store.member_changes(STORE_ID, int(cursor), 1000)
    assert [m["member_id"] for m in members] == ["M0001", "M0002"]  # nothing lost, commit order kept


def test_a_feed_page_reads_balances_and_watermarks_from_one_snapshot(store, pg_db):
    """A batch that commits while a page is being read (after its member rows, before their
    watermarks) is on that page wholly or not at all: every event at or below a member's
    applied_seq is in the balance beside it (docs/sync-protocol.md)."""
    def anna(members):
        return next(m for m in members if m["member_id"] == "M0001")

    seeded = anna(store.member_changes(STORE_ID, 0, 1000)[0])["balances"]["points"]
    store.apply_batch(STORE_ID, LANE_ID, "b-1", [make_event(1, points={"points": 10})], "2026-11-24T09:15:00Z")
    _, cursor, _ = store.member_changes(STORE_ID, 0, 1000)
    store.apply_batch(STORE_ID, LANE_ID, "b-2", [make_event(2, points={"points": 7})], "2026-11-24T09:15:00Z")
    other = PgStore(pg_db, pool_size=2)
    read_marks = PgStore._applied_seqs
    pushed = []

    def marks_after_a_push(conn, ids, store_id):
        if not pushed:  # between the page's member rows and its watermarks, another worker commits a batch
            pushed.append(other.apply_batch(STORE_ID, LANE_ID, "b-3", [make_event(3, points={"points": 5})],
                                            "2026-11-24T09:15:00Z"))
        return read_marks(conn, ids, store_id)

    try:
        store._applied_seqs = marks_after_a_push
        members, _, _ = store.member_changes(STORE_ID, int(cursor), 1000)
    finally:
        del store._applied_seqs
        other.close()
    assert [r["status"] for r in pushed[0]] == ["accepted"]
    page = anna(members)
    held = {2: 17, 3: 22}  # what the balance has moved by once the events up to this seq are in
    assert page["balances"]["points"] == seeded + held[page["applied_seq"][LANE_ID]]


def _counting_advisory_locks(store, pg_db: str, method: str, lane_id: str, events: list[dict]) -> tuple[list, list[int]]:
    """One batch of ``events`` from ``lane_id``; its answers, and the advisory locks its transaction
    held after each call of the store's ``method`` (a way it takes locks)."""
    taking = getattr(PgStore, method)
    held: list[int] = []
    with psycopg.connect(pg_db, autocommit=True) as watcher:
        def counted(conn, *args):
            outcome = taking(store, conn, *args)
            conn.execute("SELECT 1").fetchone()  # the pipeline's statements before it have run
            held.append(watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                                        (conn.raw.info.backend_pid,)).fetchone()[0])
            return outcome

        setattr(store, method, counted)
        try:
            results = store.apply_batch(STORE_ID, lane_id, f"{lane_id}-1", events, "2026-11-24T09:15:00Z")
        finally:
            delattr(store, method)
    return results, held


def test_writing_many_members_takes_a_bounded_number_of_shared_locks(store, pg_db):
    """Each advisory lock is an entry of PostgreSQL's shared lock table (64 x max_connections by
    default): one per member ran it out when a few lanes pushed 1000-member batches at once, and
    those pushes answered 500. A member's lock is one of 128 buckets."""
    members = [{"member_id": f"LK{i:05d}", "display_name": f"Member {i}", "identifiers": [f"99{i:011d}"]}
               for i in range(3000)]
    store.seed({**default_seed(), "members": members})
    events = [make_event(i + 1, member_id=f"LK{i:05d}", lane_id="LBIG") for i in range(1000)]
    results, held = _counting_advisory_locks(store, pg_db, "_lock_members", "LBIG", events)
    assert [r["status"] for r in results] == ["accepted"] * 1000
    assert held and max(held) <= 128


def _by_bucket(pg_db: str, keys: list[str]) -> dict[int, list[str]]:
    """The keys in each of the 128 lock buckets, as store_pg hashes them."""
    buckets: dict[int, list[str]] = {}
    with psycopg.connect(pg_db, autocommit=True) as admin:
        for key, bucket in admin.execute("SELECT k, (hashtextextended(k, 0) & 127)::int FROM unnest(%s::text[]) AS k "
                                         "ORDER BY k", (keys,)):
            buckets.setdefault(bucket, []).append(key)
    return buckets


@contextlib.contextmanager
def _held_by_another(store, pg_db: str, keys: list[str]):
    """``keys`` locked by a write under way; a second connection (lock_timeout 3 s, so a lock it
    would wait for raises LockNotAvailable) and its _Conn, to lock with."""
    from psycopg.rows import dict_row

    from posd.sync.central.store_pg import _Conn

    with store._write() as holding, psycopg.connect(pg_db, autocommit=True, row_factory=dict_row) as other:
        store._lock_members(holding, keys)
        holding.execute("SELECT 1").fetchone()  # the pipeline's statements before it have run
        other.execute("SET lock_timeout = '3s'")
        yield other, _Conn(other)


def test_writers_of_different_members_never_wait_for_each_other(store, pg_db):
    """Every member took one of 128 lock buckets, so a 1000-member batch covered them all and every
    two lanes' full batches took turns, even with no member in common (8 lanes: answers one after
    another). Members that exist are held by their rows alone: a writer of another member in the
    same bucket goes on at once. A member about to be created still takes its bucket."""
    members = [{"member_id": f"BK{i:04d}", "display_name": f"Member {i}", "identifiers": [f"98{i:011d}"]}
               for i in range(300)]
    store.seed({**default_seed(), "members": members})
    buckets = _by_bucket(pg_db, [m["member_id"] for m in members])
    first, second = next(ids for ids in buckets.values() if len(ids) >= 2)[:2]
    with _held_by_another(store, pg_db, [first]) as (other, conn):
        with other.transaction():
            store._lock_members(conn, [second])  # lock_timeout would raise, were it made to wait
            with pytest.raises(psycopg.errors.LockNotAvailable):
                with other.transaction():  # a savepoint: the same member is still one at a time
                    store._lock_members(conn, [first])


def test_writers_of_different_new_keys_never_wait_for_each_other(store, pg_db):
    """Keys with no member row (a card or phone an enrolment claims, a provisional id, a voucher code,
    a reservation) each took one of 128 buckets until their write committed: a fleet's enrolments and
    voucher uses queued on them (every connection waiting, pushes 25 s at the 99th percentile). Each
    key is locked itself now, its bucket held shared; a write of more keys than KEYS_ONE_BY_ONE takes
    the buckets whole and still waits for a writer of one key in them."""
    from posd.sync.central.store_pg import KEYS_ONE_BY_ONE

    buckets = _by_bucket(pg_db, [f"V:{i:05d}" for i in range(2000)])
    first, second = next(ids for ids in buckets.values() if len(ids) >= 2)[:2]
    many = sorted({ids[0] for ids in buckets.values()} - {first})[:KEYS_ONE_BY_ONE] + [second]
    with _held_by_another(store, pg_db, [first]) as (other, conn):
        with other.transaction():
            store._lock_members(conn, [second])  # lock_timeout would raise, were it made to wait
        for waiting in ([first], many):  # the same key; a whole-bucket writer of a key in its bucket
            with pytest.raises(psycopg.errors.LockNotAvailable), other.transaction():
                store._lock_members(conn, waiting)


def test_a_batch_enrolling_many_members_takes_a_bounded_number_of_shared_locks(store, pg_db):
    """Each new member id central gives is claimed with a lock of its own: a batch of a hundred
    enrolments held a hundred of them beside its buckets, and lanes catching up on such batches
    could run PostgreSQL's shared lock table out again. Past 32 claims a batch takes the bucket."""
    from posd.sync.central.store_pg import KEYS_ONE_BY_ONE, MEMBER_LOCK_BUCKETS

    events = []
    for i in range(100):
        provisional = f"P-{os.urandom(8).hex()}"
        events.append(make_event(2 * i + 1, member_id=provisional, lane_id="LENR", type="member_enrolled",
                                 transaction_id=None, identifiers=[f"+4868{i:07d}"], points={"points": 0},
                                 provisional=True))
        events.append(make_event(2 * i + 2, member_id=provisional, lane_id="LENR", points={"points": 5}))
    results, held = _counting_advisory_locks(store, pg_db, "_claim_new", "LENR", events)
    assert [r["status"] for r in results] == ["accepted"] * 200
    assert len(held) >= 100 and max(held) <= MEMBER_LOCK_BUCKETS + 2 * KEYS_ONE_BY_ONE, max(held)


def test_a_member_number_in_use_is_passed_over(store):
    """Members seeded with ids of central's own form (M0000001, M0000002): the next enrolment is named
    after them, and neither is taken for the new member."""
    store.seed({**default_seed(), "members": [{"member_id": m, "display_name": m, "identifiers": []}
                                              for m in ("M0000001", "M0000002")]})
    enrolment = make_event(1, member_id=f"P-{os.urandom(8).hex()}", lane_id="LNUM", type="member_enrolled",
                           transaction_id=None, points={"points": 7}, provisional=True)
    results = store.apply_batch(STORE_ID, "LNUM", "n", [enrolment], "2026-11-24T09:15:00Z")
    assert (results[0]["status"], results[0]["member_id"]) == ("accepted", "M0000003"), results
    assert store.member("M0000001")["balances"] == store.member("M0000002")["balances"] == {}
    assert store.member("M0000003")["balances"] == {"points": 7}


def test_lanes_enrolling_at_once_never_deadlock(store, caplog):
    """Eight lanes at once, each pushing batches that enrol new members and credit them. Central's next
    member id was read from one row and its key locked after the batch's sorted locks: two batches
    given the same number waited on each other's, and a run of 16 lanes saw 233 deadlocks (9 batches
    lost on every try, answered 503). The number comes from a sequence now, its key taken without
    waiting: no write is made again, and every enrolment has its own member."""
    caplog.set_level(logging.INFO, logger="posd.sync.central")
    lanes = [f"NE{i}" for i in range(8)]
    named: dict[str, list[str]] = {lane: [] for lane in lanes}
    errors: list[str] = []

    def lane(name: str) -> None:
        seq = 0
        for batch in range(3):
            events = []
            for _ in range(6):
                provisional = f"P-{os.urandom(8).hex()}"
                events.append(make_event(seq + 1, member_id=provisional, lane_id=name, type="member_enrolled",
                                         transaction_id=None, identifiers=[f"+4869{int.from_bytes(os.urandom(4)) % 10**7:07d}"],
                                         points={"points": 0}, provisional=True))
                events.append(make_event(seq + 2, member_id=provisional, lane_id=name, points={"points": 5}))
                seq += 2
            try:
                results = store.apply_batch(STORE_ID, name, f"{name}-{batch}", events, "2026-11-24T09:15:00Z")
            except Exception as exc:  # reported below, with the lane
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            if [r["status"] for r in results] != ["accepted"] * 12:
                errors.append(f"{name}: {results}")
            named[name] += [r.get("member_id") for r in results[::2]]

    threads = [threading.Thread(target=lane, args=(name,)) for name in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    made_again = [r.getMessage() for r in caplog.records if "made again" in r.getMessage()]
    assert made_again == []
    ids = [m for members in named.values() for m in members]
    assert len(ids) == len(set(ids)) == 8 * 3 * 6
    assert all(store.member(m)["balances"] == {"points": 5} for m in ids)


def test_the_expiry_sweeps_probe_reads_one_index_entry_however_many_lots(store, pg_db):
    """Before every batch, authorisation and member page, central asks whether any lot or reservation
    is due. Asked with now as a parameter, the prepared statement's generic plan guessed a third of
    the lots due and read the whole table (240 ms a push at 230,000 lots, most of central's time in
    a fleet run). The probe has no parameter now: one step into the partial index, whatever the plan."""
    from posd.sync.central import burns
    from posd.sync.central.lots import NEXT_DUE_LOT

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("INSERT INTO lots (member_id, currency, points, remaining, expires_ts, source) "
                     "SELECT 'M' || (n % 500), 'points', 10, 10, 4e9 + n, 'seed' FROM generate_series(1, 30000) AS n")
        conn.execute("INSERT INTO reservations (reservation_id, store_id, lane_id, authorisation_id, request_hash, kind, "
                     "member_id, points, occurred_at, created_ts, expires_ts, state) SELECT 'r' || n, 'S001', 'L01', "
                     "'a' || n, 'h', 'redemption', 'M1', '{}', '', 0, 4e9 + n, CASE WHEN n % 10 = 0 THEN 'open' "
                     "ELSE 'released' END FROM generate_series(1, 30000) AS n")
        conn.execute("ANALYZE lots")
        conn.execute("ANALYZE reservations")
        conn.execute("SET plan_cache_mode = force_generic_plan")  # as a statement prepared and run often is
        for probe, index in ((NEXT_DUE_LOT, "lots_to_sweep"), (burns.NEXT_DUE, "reservations_due")):
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + probe).fetchall())
            assert "Seq Scan" not in plan and index in plan, plan
            assert re.search(r"Index (Only )?Scan using " + index + r" on \w+ \(actual rows=[01] ", plan), plan
    assert store.sweep_expired() == 0  # nothing due: no write


def test_events_are_hash_partitioned_by_lane(store, pg_db):
    for lane in ("L01", "L02", "L03", "L04"):
        store.apply_batch(STORE_ID, lane, "B", [make_event(1, lane_id=lane)], "2026-11-24T09:15:00Z")
    with psycopg.connect(pg_db) as conn:
        strategy, = conn.execute("SELECT partstrat FROM pg_partitioned_table "
                                 "WHERE partrelid = 'events'::regclass").fetchone()
        keys = conn.execute("SELECT a.attname FROM pg_partitioned_table p JOIN pg_attribute a "
                            "ON a.attrelid = p.partrelid AND a.attnum = ANY(p.partattrs) "
                            "WHERE p.partrelid = 'events'::regclass ORDER BY a.attnum").fetchall()
        placed = conn.execute("SELECT lane_id, tableoid::regclass::text FROM events ORDER BY lane_id").fetchall()
    assert strategy == "h" and [k[0] for k in keys] == ["store_id", "lane_id"]
    assert all(part.startswith("events_p") for _, part in placed) and len(placed) == 4


def test_a_database_from_before_signed_reservations_is_migrated_once(store, pg_db):
    """A reservations table without the authorisation's signed timestamp gains it when central opens
    the database; a reservation made before has none, and its lane's release still gives it back."""
    with psycopg.connect(pg_db) as conn:
        conn.execute("ALTER TABLE reservations DROP COLUMN release_from")
        conn.execute("DELETE FROM meta WHERE key = 'reservations_release_from_v1'")
        conn.execute("INSERT INTO reservations (reservation_id, store_id, lane_id, authorisation_id, request_hash, "
                     "kind, member_id, points, occurred_at, created_ts, expires_ts, state) VALUES (%s, 'S001', "
                     "'L01', 'r:1', 'h', 'redemption', 'M0001', '{\"points\": 5}', '', 0, 1e12, 'open')",
                     (reservation_id("S001", "L01", "r:1"),))
    for expected in ("released", "released"):  # opening again changes nothing; asked again, the same state
        again = PgStore(pg_db, pool_size=2)
        try:
            assert again.release("S001", "L01", "r:1", 1) == expected
        finally:
            again.close()
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'reservations' "
                            "AND column_name = 'release_from'").fetchone() is not None


def test_a_database_from_before_member_numbers_goes_on_from_its_count(store, pg_db):
    """Central's member numbers kept in meta before they came from a sequence: a database from then
    names its next member after the last it named, not M0000001 again."""
    with psycopg.connect(pg_db) as conn:
        conn.execute("DROP SEQUENCE member_numbers")
        conn.execute("DELETE FROM meta WHERE key = 'member_numbers_v1'")
        conn.execute("INSERT INTO meta (key, value) VALUES ('next_member_no', '57')")
    for seq, expected, state in ((1, "M0000057", (57, False)), (2, "M0000058", (57, True))):
        again = PgStore(pg_db, pool_size=2)
        try:
            with psycopg.connect(pg_db) as conn:  # opening again does not set the count back
                assert conn.execute("SELECT last_value, is_called FROM member_numbers").fetchone() == state
            enrolment = make_event(seq, member_id=f"P-{os.urandom(8).hex()}", type="member_enrolled",
                                   transaction_id=None, points={"points": 0}, provisional=True)
            results = again.apply_batch(STORE_ID, "MN", expected, [enrolment], "2026-11-24T09:15:00Z")
            assert (results[0]["status"], results[0].get("member_id")) == ("accepted", expected), results
        finally:
            again.close()


def test_the_outbox_is_shaped_for_debeziums_outbox_event_router(store, pg_db):
    results = store.apply_batch(STORE_ID, LANE_ID, "B", [make_event(1, points={"points": 30}),
                                                         make_event(2, member_id="M9999")],
                                "2026-11-24T09:15:00Z")
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    with psycopg.connect(pg_db) as conn:
        columns = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_name = 'central_outbox'").fetchall())
    assert {k: columns[k] for k in ("id", "aggregatetype", "aggregateid", "type", "payload")} == {
        "id": "uuid", "aggregatetype": "character varying", "aggregateid": "character varying",
        "type": "character varying", "payload": "jsonb"}
    rows = [r for r in store.outbox() if r["aggregatetype"] == "lane"]
    assert [(r["aggregateid"], r["type"], r["payload"]["seq"]) for r in rows] == [(f"{STORE_ID}/{LANE_ID}",
                                                                                   "accrual", 1)]
    assert rows[0]["payload"]["event"]["points"] == {"points": 30}  # the rejected seq 2 is not streamed
    member = [r for r in store.outbox() if r["aggregatetype"] == "member" and r["aggregateid"] == "M0001"][-1]
    assert member["type"] == "member.changed" and member["payload"]["balances"] == {"points": 1870}


# --- posd central --workers N ---------------------------------------------------------------------


def start_cli(tmp_path: Path, db: str, *extra: str) -> tuple[subprocess.Popen, str]:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(default_seed()))
    cmd = [sys.executable, "-m", "posd", "central", "--listen", "127.0.0.1:0", "--db", db,
           "--seed", str(seed_file), "--log-level", "WARNING", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if "listening on http://127.0.0.1:" not in line:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=30)[1])
    return proc, line.split()[-1]


def stop_cli(proc: subprocess.Popen) -> str:
    """SIGTERM; the exit code must be 0; central's stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return err


def test_several_workers_share_the_database_and_one_fault_plan(tmp_path, pg_db):
    proc, url = start_cli(tmp_path, pg_db, "--workers", "3", "--pool-size", "2")
    try:
        pids: set[int] = set()

        def stats() -> None:  # a fresh connection each time, so any worker may take it
            pids.add(requests.get(url + "/_admin/stats", timeout=10, headers={"Connection": "close"}).json()["pid"])

        def burst() -> bool:  # workers start one by one: ask until a second one has answered
            threads = [threading.Thread(target=stats) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            return len(pids) > 1

        wait_until(burst, 90, "a second worker to answer", interval=0.2)

        resp = requests.post(url + "/_admin/faults", json={"route": "push", "fault": "503", "count": 4}, timeout=10)
        assert resp.status_code == 200
        failures = 0
        for seq in (1, 1, 1, 1, 1):
            with CentralClient(url, STORE_ID, LANE_ID, SECRET, timeout=(5, 10)) as client:  # a new connection
                try:
                    assert [r.status for r in client.push_batch("B", [make_event(seq)])] == ["accepted"]
                except CentralUnavailable:
                    failures += 1
        assert failures == 4  # four 503s, whichever worker served them, then the push went through
        events = requests.get(url + "/_admin/events", params={"store": STORE_ID, "lane": LANE_ID}, timeout=10)
        assert events.json()["last_seq"] == 1
    finally:
        err = stop_cli(proc)
    assert "Traceback" not in err


def test_a_workers_log_lines_carry_their_level_and_logger(tmp_path, pg_db):
    """Worker processes start afresh: their warnings came out bare and their info lines not at all,
    so an operator could not count, say, the writes central made again after a deadlock."""
    proc, url = start_cli(tmp_path, pg_db, "--workers", "2", "--pool-size", "2", "--log-level", "info")
    try:
        assert requests.post(url + "/_admin/faults", json={"route": "program", "fault": "503"},
                             timeout=10).status_code == 200
        with CentralClient(url, STORE_ID, LANE_ID, SECRET, timeout=(5, 10)) as client:
            with pytest.raises(CentralUnavailable):
                client.program(None)  # answered by a worker: the fault plan is shared
    finally:
        err = stop_cli(proc)
    assert "INFO posd.sync.central central injecting fault" in err, err


def test_clients_that_go_away_leave_no_traceback(tmp_path, pg_db):
    """After an outage lanes drop connections mid-request; central says nothing about it."""
    proc, url = start_cli(tmp_path, pg_db)
    try:
        host, port = url.removeprefix("http://").split(":")
        path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
        for n in range(1, 21):
            body = encode_batch(f"B{n}", [make_event(n)])
            headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Encoding: gzip\r\n{head}"
                       f"Content-Length: {len(body) + (0 if n % 2 else 100)}\r\n\r\n").encode() + body
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(request)  # odd: a whole push; even: a body cut short. Then gone, unread.
        # a reset of its own (on another route: the pushes above may still be in flight)
        requests.post(url + "/_admin/faults", json={"route": "program", "fault": "reset"}, timeout=10)
        with CentralClient(url, STORE_ID, LANE_ID, SECRET, timeout=(5, 10)) as client:
            with pytest.raises(CentralUnavailable):
                client.program(None)
            wait_until(lambda: client.lane_head(LANE_ID)[0] >= 1, 30, "the whole pushes to be applied")
    finally:
        err = stop_cli(proc)
    assert "Traceback" not in err and "Error" not in err, err


def test_ctrl_c_while_central_waits_for_postgresql_stops_quietly(tmp_path):
    """`posd central` waits up to 30 s for PostgreSQL to take connections; Ctrl-C meanwhile printed a
    KeyboardInterrupt traceback. It stops at once, says what it was doing, and exits 130."""
    with socket.socket() as s:  # a port nothing listens on: central retries until its wait is over
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "posd", "central", "--listen", "127.0.0.1:0", "--db",
           f"postgresql://central:secret@127.0.0.1:{port}/central"]
    # SIG_DFL: run from a background job (CI under nohup), the tests inherit SIGINT ignored, and Python
    # keeps an ignored SIGINT ignored, as a terminal's Ctrl-C never reaches a background job.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "not taking connections yet" in proc.stderr.readline()  # central waits for it
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"interrupted while opening postgresql://central:***@127.0.0.1:{port}/central" in err, err
    assert out == ""


def test_a_database_that_refuses_for_good_is_said_at_once(tmp_path, pg_db):
    """No such database (or role, or a wrong password): the server answered, and waiting will not
    change it. central said only "pool initialization incomplete after 30 sec", 30 s later."""
    cmd = [sys.executable, "-m", "posd", "central", "--listen", "127.0.0.1:0", "--db", pg_db.rsplit("/", 1)[0] + "/nosuchdb"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=25)
    assert proc.returncode == 2, proc.stderr
    assert 'database "nosuchdb" does not exist' in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "PoolTimeout" not in proc.stderr, proc.stderr


def test_connections_the_server_dropped_are_replaced_not_handed_out(store, pg_db):
    """PostgreSQL restarted (here: every backend of central's database terminated): the next
    requests get working connections, not the dead ones one by one (500s for minutes)."""
    assert store.lane_head(STORE_ID, LANE_ID)[0] == 0
    name = pg_db.rsplit("/", 1)[1]
    with psycopg.connect(pg_db, autocommit=True) as admin:
        for _ in range(3):
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                          "AND pid != pg_backend_pid()", (name,))
            for _ in range(2):  # more than the one connection the pool kept
                assert store.lane_head(STORE_ID, LANE_ID)[0] in (0, 1)  # every call answered
            store.apply_batch(STORE_ID, LANE_ID, "b", [make_event(1)], "2026-11-24T09:15:00Z")


def test_a_server_that_takes_no_further_connection_is_said_once(pg_db, caplog):
    """The server refuses central more connections than it holds (here a role's CONNECTION LIMIT;
    in a fleet, max_connections below workers x pool size): requests are served, in turn, on the
    connections central holds, and central logged nothing at all of why (the pool's own lines were
    silenced), so the operator could not find what held the fleet's pushes."""
    role = f"lim_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(pg_db, autocommit=True) as admin:
        owner = admin.execute("SELECT current_user").fetchone()[0]
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        admin.execute(f'GRANT "{owner}" TO "{role}"')  # the tables' privileges, not the superuser's limits
    base, name = pg_db.rsplit("/", 1)
    url = base.replace("://" + owner + "@", "://" + role + "@") + "/" + name
    assert url != pg_db
    try:
        caplog.set_level(logging.INFO)
        store = PgStore(url, pool_size=3)
        try:
            assert store.lane_head(STORE_ID, LANE_ID)[0] == 0  # served on the one connection it has
            for _ in range(2):
                with store._pool.connection(), pytest.raises(PoolTimeout):  # a second one is asked for
                    with store._pool.connection(timeout=2):
                        pass
            assert store.lane_head(STORE_ID, LANE_ID)[0] == 0
        finally:
            store.close()
    finally:
        with psycopg.connect(pg_db, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')
    said = [r for r in caplog.records if "refuses central a further connection" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]  # once, though asked again
    assert said[0].levelno == logging.WARNING and said[0].name == "posd.sync.central"
    assert "too many connections for role" in said[0].getMessage() and "--pool-size 3" in said[0].getMessage()
    assert not [r for r in caplog.records if r.name == "psycopg.pool" and r.levelno >= logging.WARNING]


def test_a_connection_lost_mid_write_is_not_logged_by_psycopg(store, pg_db, caplog):
    """PostgreSQL restarted under load: each write cut short in its pipeline had psycopg log
    "error ignored terminating <psycopg.Pipeline [BAD]>: the connection is lost" over three lines, 65
    of them beside central's one line for the outage, which is what it means."""
    caplog.set_level(logging.INFO)
    with pytest.raises(psycopg.OperationalError):
        with store._write() as conn:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())").fetchone()
    assert store.lane_head(STORE_ID, LANE_ID)[0] == 0  # the next request, on a working connection
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []


@pytest.mark.fault
def test_a_database_not_answering_is_503_with_retry_after_and_one_line(tmp_path, pg_db):
    """Requests while the database refuses connections: 503 unavailable with Retry-After (the lane
    backs off), no traceback per request; once it answers again, so does central, and says so once."""
    proc, url = start_cli(tmp_path, pg_db, "--pool-size", "2")
    name = pg_db.rsplit("/", 1)[1]
    try:
        with CentralClient(url, STORE_ID, LANE_ID, SECRET, timeout=(5, 20)) as client:
            assert [r.status for r in client.push_batch("B1", [make_event(1)])] == ["accepted"]
            with psycopg.connect(pg_db.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                try:
                    answers = []
                    for _ in range(2):  # each waits 5 s for a connection; two show the log is not one line each
                        body = encode_batch("B2", [make_event(2)])
                        path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
                        headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
                        answers.append(requests.post(url + path, data=body, timeout=30,
                                                     headers={**headers, "Content-Encoding": "gzip"}))
                    assert {a.status_code for a in answers} == {503}
                    assert all(a.json()["code"] == "unavailable" and a.headers["Retry-After"] == "5" for a in answers)
                finally:
                    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            def pushed() -> bool:  # as a lane does: again after Retry-After, until central answers
                try:
                    return [r.status for r in client.push_batch("B2", [make_event(2)])] == ["accepted"]
                except CentralUnavailable:
                    return False

            wait_until(pushed, 60, "central to answer again once its database does", interval=1)
    finally:
        err = stop_cli(proc)
    assert "Traceback" not in err, err
    assert 1 <= err.count("database not answering") < len(answers), err  # at most one line per 10 s
    assert err.count("database answering again after") == 1, err  # the outage's end, too
    assert "psycopg.pool" not in err, err


def test_workers_end_when_their_parent_is_killed(tmp_path, pg_db):
    """kill -9 of `posd central --workers N` left its workers serving on the port, and a new
    central could not bind it: each worker now ends with its parent."""
    proc, url = start_cli(tmp_path, pg_db, "--workers", "2", "--pool-size", "2")
    workers: list[int] = []
    try:
        wait_until(lambda: len(_children(proc.pid)) >= 2, 60, "both workers to start", interval=0.2)
        workers = _children(proc.pid)
        proc.kill()
        proc.communicate(timeout=30)

        def gone() -> bool:
            return not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers)

        wait_until(gone, 30, "the workers to end with their parent", interval=0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in workers:  # when they did not: not left serving after the test
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = status.read_text().split("PPid:", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if ppid == str(pid):
            found.append(int(status.parent.name))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].splitlines()[0]
    except (OSError, IndexError):
        return "zombie"


def test_a_burns_question_is_answered_while_every_push_thread_waits(tmp_path, pg_db):
    """A worker ran every store call on one set of threads. Under a fleet's pushes a burn's
    authorisation waited in their queue, seconds past the lane's 800 ms budget, and the burn went the
    offline way. A quarter of the threads now serve only a lane's questions: with every other thread
    held by a push that waits for the database, and more pushes queued behind them, an
    authorisation and a voucher lookup are answered, and the pushes all go through after."""
    from tests.support.central_fixture import running_central

    pushed: dict[str, list[str]] = {}

    def push(central, lane: str) -> None:
        with CentralClient(central.url, STORE_ID, lane, SECRET, timeout=(5, 120)) as client:
            pushed[lane] = [r.status for r in client.push_batch(f"B-{lane}", [make_event(1, lane_id=lane)])]

    with psycopg.connect(pg_db, autocommit=True) as holder, \
            running_central(tmp_path, db_path=pg_db, pool_size=4) as central:  # 3 threads for pushes, 1 kept
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE events IN SHARE MODE")  # every push waits for it to insert its events
        lanes = [f"L{n:02d}" for n in range(6)]
        threads = [threading.Thread(target=push, args=(central, lane)) for lane in lanes]
        for t in threads:
            t.start()
        try:
            with psycopg.connect(pg_db, autocommit=True) as watch:
                def pushes_waiting() -> int:
                    return watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database()").fetchone()[0]

                wait_until(lambda: pushes_waiting() >= 3, 60, "every push thread waiting for the lock")
                with CentralClient(central.url, STORE_ID, "L99", SECRET, timeout=(5, 15)) as lane:
                    answer = lane.authorise({"authorisation_id": "redemption:R1", "kind": "redemption",
                                             "member_id": "M0001", "occurred_at": "2026-11-24T09:15:00Z",
                                             "points": {"points": 100}, "reward_id": "free-coffee"})
                    assert answer["status"] == "approved"
                    assert lane.voucher("NO-SUCH-CODE", None) is None
                assert pushes_waiting() >= 3 and not pushed  # answered while the pushes still wait
        finally:
            holder.execute("ROLLBACK")
            for t in threads:
                t.join(120)
    assert pushed == {lane: ["accepted"] for lane in lanes}
