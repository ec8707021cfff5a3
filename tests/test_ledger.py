"""ledger.db and cache.db: one atomic write per sale, idempotency, gap-free seq, safe failure."""

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from posd.api.errors import STATUS
from posd.core.rules import BasketLine, EarnContext
from posd.lane import Lane
from posd.lane.errors import LaneError
from posd.lane.events import EventBus
from posd.lane.sales import ReturnInput, TransactionInput
from posd.storage.cache import Cache
from posd.storage.db import StorageError, compact_json
from posd.storage import print_queue
from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.sync.lane.ports import EventResult
from tests.support.ledger_sql import execute, reader

PROGRAM = {
    "version": "t-1",
    "currencies": [{"code": "points", "kind": "redeemable"}],
    "rules": [{"id": "base", "type": "base_rate", "currency": "points",
               "rates": {"PLN": {"spend_minor": 100, "points": 1}}}],
    "tiers": [{"id": "basic", "threshold": 0, "multiplier": "1"},
              {"id": "gold", "threshold": 5000, "multiplier": "1.5"}],
}
MEMBER = {"member_id": "M1", "display_name": "Anna K.", "tier": "gold", "qualifying": 6000,
          "identifiers": ["2900000000018"], "balances": {"points": 100}, "applied_seq": {"L01": 0}}


@pytest.fixture
def lane(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    cache = Cache(tmp_path / "cache.db", "L01")
    cache.store_program(PROGRAM, "e1")
    cache.apply_member_changes([MEMBER], "1")
    lane = Lane(store_id="S001", lane_id="L01", locale="pl", ledger=ledger, cache=cache,
                bus=EventBus(ledger.boot), printer_enabled=True)
    yield lane
    cache.close()
    ledger.close()


def tx(tid="T1", total=10000, member="2900000000018", lines=(), h=None):
    return TransactionInput(transaction_id=tid, member=member, occurred_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
                            currency="PLN", total=total, lines=tuple(lines), request_hash=h or f"h-{tid}-{total}")


def rows(lane, sql):
    return reader(lane.context.ledger).execute(sql).fetchall()


def test_sale_writes_entry_outbox_and_print_job_together(lane):
    rec = asyncio.run(lane.sales.record_sale(tx()))
    assert rec.response["accrual"]["points"] == {"points": 150}
    assert rec.response["balance"]["points"] == {"confirmed": 100, "pending": 150, "total": 250,
                                                 "available": 250, "maturing": 0, "expired": 0}
    assert rec.response["slip"] == {"slip_id": "T1", "state": "queued"}
    (event,) = rows(lane, "SELECT seq, type, body FROM outbox")
    body = json.loads(event["body"])
    assert (event["seq"], body["type"], body["member_id"], body["points"]) == (1, "accrual", "M1", {"points": 150})
    assert len(rows(lane, "SELECT * FROM ledger_entries")) == 1
    assert len(rows(lane, "SELECT * FROM print_jobs")) == 1


def test_retry_returns_first_answer_and_writes_nothing(lane):
    first = asyncio.run(lane.sales.record_sale(tx()))
    again = asyncio.run(lane.sales.record_sale(tx()))
    assert again.replayed and again.response == first.response
    assert len(rows(lane, "SELECT * FROM outbox")) == 1


def test_same_id_different_sale_is_a_conflict(lane):
    asyncio.run(lane.sales.record_sale(tx()))
    with pytest.raises(LaneError) as err:
        asyncio.run(lane.sales.record_sale(tx(total=5000)))
    assert (STATUS[err.value.code], err.value.code) == (409, "transaction_id_conflict")


def test_concurrent_retries_record_once_and_seq_stays_gap_free(lane):
    async def burst():
        sales = [tx(f"T{i % 50}") for i in range(200)]
        return await asyncio.gather(*(lane.sales.record_sale(s) for s in sales))

    asyncio.run(burst())
    seqs = [r[0] for r in rows(lane, "SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(1, 51))
    assert rows(lane, "SELECT COUNT(*) FROM ledger_entries")[0][0] == 50


def test_a_retry_queued_behind_its_first_attempt_gets_its_bytes_and_writes_nothing(lane):
    """The sale's unit reads nothing before it writes: a retry that reaches the writer after its first
    attempt is refused by the record's primary key, its unit rolls back whole, and it is answered with
    the first answer's bytes, in one group commit as in two."""
    async def burst():
        return await asyncio.gather(*(lane.sales.record_sale(tx(tid)) for tid in ("T1", "T2", "T1", "T1", "T2")))

    answers = asyncio.run(burst())
    first = {a.response["transaction_id"]: a for a in answers if not a.replayed}
    assert sorted(first) == ["T1", "T2"] and sum(a.replayed for a in answers) == 3
    assert all(a.body == first[a.response["transaction_id"]].body for a in answers)
    assert [r[0] for r in rows(lane, "SELECT seq FROM outbox ORDER BY seq")] == [1, 2]
    assert rows(lane, "SELECT COUNT(*) FROM ledger_entries")[0][0] == 2
    assert rows(lane, "SELECT COUNT(*) FROM print_jobs")[0][0] == 2
    with pytest.raises(LaneError, match="transaction_id"):
        asyncio.run(lane.sales.record_sale(tx("T1", total=500)))  # the id reused for another sale


def test_a_failed_write_leaves_nothing_half_written(lane):
    execute(lane.context.ledger, "CREATE TRIGGER boom BEFORE INSERT ON print_jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(sqlite3.IntegrityError):
        asyncio.run(lane.sales.record_sale(tx()))
    for table in ("outbox", "ledger_entries", "transactions", "print_jobs"):
        assert rows(lane, f"SELECT COUNT(*) FROM {table}")[0][0] == 0
    execute(lane.context.ledger, "DROP TRIGGER boom")
    assert asyncio.run(lane.sales.record_sale(tx())).response["seq"] == 1  # no hole left behind


def test_unknown_member_and_bad_basket_write_nothing(lane):
    with pytest.raises(LaneError) as err:
        asyncio.run(lane.sales.record_sale(tx(member="2900000000995")))
    assert err.value.code == "unknown_member"
    bad = [BasketLine("A", None, Decimal(1), 100, 0)]
    with pytest.raises(LaneError) as err:
        asyncio.run(lane.sales.record_sale(tx(lines=bad)))
    assert err.value.code == "total_mismatch"
    assert rows(lane, "SELECT COUNT(*) FROM transactions")[0][0] == 0


def test_ledger_is_append_only(lane):
    asyncio.run(lane.sales.record_sale(tx()))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        execute(lane.context.ledger, "UPDATE ledger_entries SET points = 1")
    with pytest.raises(sqlite3.IntegrityError):
        execute(lane.context.ledger, "DELETE FROM outbox")


def test_balance_counts_only_entries_central_has_not_applied(lane):
    asyncio.run(lane.sales.record_sale(tx("T1")))
    asyncio.run(lane.sales.record_sale(tx("T2")))
    LedgerOutbox(lane.context.ledger).record_results([EventResult(1, "accepted"), EventResult(2, "accepted")])
    # central applied seq 1 only so far: its balance includes T1's 150
    lane.context.cache.apply_member_changes([dict(MEMBER, balances={"points": 250}, applied_seq={"L01": 1})], "2")
    view = lane.members.member_view(lane.members.identify("2900000000018"))
    assert view["balances"]["points"]["confirmed"] == 250
    assert view["balances"]["points"]["pending"] == 150
    assert view["balances"]["points"]["total"] == 400


def test_outbox_port_batches_and_quarantines(lane):
    for i in range(5):
        asyncio.run(lane.sales.record_sale(tx(f"T{i}")))
    port = LedgerOutbox(lane.context.ledger)
    batch = port.pending_batch(3, 10**6)
    assert [e.seq for e in batch] == [1, 2, 3]
    assert batch[0].body["seq"] == 1 and batch[0].body["event_id"] == batch[0].event_id
    port.record_results([EventResult(1, "accepted"), EventResult(2, "duplicate"),
                         EventResult(3, "rejected", "unknown_member"), EventResult(4, "rejected", "seq_gap", True)])
    assert [e.seq for e in port.pending_batch(10, 10**6)] == [4, 5]
    stats = port.stats()
    assert (stats.pending, stats.quarantined) == (2, 1)
    assert len(port.pending_batch(10, 1)) == 1  # always at least one event, even if over max_bytes


def test_acks_are_written_by_run_each_row_as_its_own_answer_says(lane):
    """A drain's acks go in a statement per run of seqs; every row still gets exactly its answer."""
    for i in range(12):
        asyncio.run(lane.sales.record_sale(tx(f"T{i}")))
    port = LedgerOutbox(lane.context.ledger)
    port.record_results([EventResult(1, "accepted")])
    answers = [EventResult(1, "duplicate"), EventResult(2, "accepted"), EventResult(3, "accepted"),
               EventResult(4, "duplicate"), EventResult(5, "rejected", "token_replayed"),
               EventResult(6, "accepted"), EventResult(7, "rejected", "unknown_member"),
               EventResult(9, "accepted"), EventResult(9, "duplicate"), EventResult(10, "rejected", "seq_gap", True),
               EventResult(11, "accepted"), EventResult(3, "duplicate")]
    port.record_results(list(reversed(answers[6:])) + answers[:6])
    rows = reader(lane.context.ledger).execute("SELECT seq, state, result_code FROM outbox ORDER BY seq").fetchall()
    assert [tuple(r) for r in rows] == [
        (1, "acked", "accepted"), (2, "acked", "accepted"), (3, "acked", "duplicate"), (4, "acked", "duplicate"),
        (5, "acked", "token_replayed"), (6, "acked", "accepted"), (7, "quarantined", "unknown_member"),
        (8, "pending", None), (9, "acked", "duplicate"), (10, "pending", None), (11, "acked", "accepted"),
        (12, "pending", None)]
    assert [e.seq for e in port.pending_batch(10, 10**6, after=8)] == [10, 12]


def test_migrations_are_recorded_and_not_reapplied(tmp_path):
    first = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    applied_first = [r[0] for r in reader(first).execute("SELECT applied_at FROM _migrations ORDER BY rowid")]
    first.close()
    again = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    from posd.storage.schema import ledger_migrations

    rows = reader(again).execute("SELECT name, applied_at FROM _migrations ORDER BY rowid").fetchall()
    assert [r[0] for r in rows] == ledger_migrations.names  # each once, in registration order
    assert [r[1] for r in rows] == applied_first  # the second open re-applied nothing
    assert again.boot == first.boot + 1  # each start counts one more boot
    again.close()


def test_ledger_of_another_lane_is_refused(tmp_path):
    first = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L1"))
    first.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
    first.close()
    with pytest.raises(StorageError, match="refusing to mix"):
        Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L2"))


def test_a_ledger_that_never_recorded_anything_takes_the_configs_lane(tmp_path):
    """Started once under the shipped example's ids (a reboot before store IT set the lane's), with
    nothing recorded: no history to mix, so the configured store and lane take it (it was refused)."""
    first = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    first.sync_identity.claim("L01")  # central was reached (its head read), and nothing recorded: it was refused
    first.close()
    again = Ledger(tmp_path / "ledger.db", LaneIdentity("S007", "L03"))
    assert again.sync_identity.lane_id == "L03" and not again.sync_identity.claimed  # settled anew under L03
    again.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
    again.close()
    with pytest.raises(StorageError, match="belongs to store S007 lane L03"):
        Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))


def test_corrupt_ledger_stops_and_is_left_untouched(tmp_path):
    path = tmp_path / "ledger.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StorageError, match="left untouched"):
        Ledger(path, LaneIdentity("S", "L"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_corrupt_cache_is_moved_aside_and_rebuilt(tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"not a database at all" * 100)
    cache = Cache(path, "L01")
    assert cache.rebuilt_from is not None and cache.rebuilt_from.exists()
    assert cache.member_count() == 0 and cache.member_cursor() is None
    cache.close()


def test_another_database_is_never_migrated_into_a_ledger_or_a_cache(tmp_path):
    """A database posd did not make under ledger.db (cache.db restored in its place, another program's
    file) was migrated: posd wrote its tables into it and took it for a new lane's ledger. It is
    refused now without a byte written; cache.db, rebuildable, is moved aside and made anew, and a
    ledger.db put where cache.db belongs is refused as a cache, not taken for one."""
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn, conn:
        conn.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, quantity INTEGER)")
    kept = other.read_bytes()
    with pytest.raises(StorageError, match=r"not made by posd.*\(stock\)") as refused:
        Ledger(other, LaneIdentity("S", "L"))
    assert refused.value.code == "foreign" and other.read_bytes() == kept
    assert not Path(f"{other}-wal").exists() or Path(f"{other}-wal").stat().st_size == 0

    Cache(tmp_path / "real-cache.db", "L").close()  # a sound cache.db is no ledger either
    with pytest.raises(StorageError, match="not made by posd") as refused:
        Ledger(tmp_path / "real-cache.db", LaneIdentity("S", "L"))
    assert refused.value.code == "foreign"

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    ledger.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
    ledger.close()
    cache = Cache(tmp_path / "ledger.db", "L")  # a ledger.db copied as cache.db: moved aside, whole
    assert cache.rebuilt_from is not None and cache.member_count() == 0
    cache.close()
    with contextlib.closing(sqlite3.connect(cache.rebuilt_from)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


def _counting_checks(monkeypatch) -> list[str]:
    """Every PRAGMA quick_check run from here on, by the file it ran on."""
    from posd.storage import db

    ran: list[str] = []
    real = db.quick_check

    def counted(conn):
        ran.append(conn.execute("PRAGMA database_list").fetchone()[2].rsplit("/", 1)[-1])
        return real(conn)

    monkeypatch.setattr(db, "quick_check", counted)
    return ran


def _checked_ahead(*paths) -> None:
    """check_ahead, waited for: the file may then be changed after its check, as a test needs."""
    from posd.storage import db

    db.check_ahead(*paths)
    for path in paths:
        db._AHEAD[os.path.abspath(path)]._thread.join()


def test_a_check_ahead_stands_for_the_open_while_the_files_are_unchanged(tmp_path, monkeypatch):
    """posd run checks ledger.db and cache.db on threads of their own while it imports the daemon:
    the open takes that answer instead of reading every page again; damage found ahead is acted on."""
    first = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    first.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
    first.close()
    Cache(tmp_path / "cache.db", "L").close()
    ran = _counting_checks(monkeypatch)
    _checked_ahead(tmp_path / "ledger.db", tmp_path / "cache.db")
    Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L")).close()
    cache = Cache(tmp_path / "cache.db", "L")
    assert cache.rebuilt_from is None
    cache.close()
    assert sorted(ran) == ["cache.db", "ledger.db"]  # once each: ahead, not again at the open

    bad = tmp_path / "bad" / "cache.db"
    bad.parent.mkdir()
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    _checked_ahead(bad)
    cache = Cache(bad, "L")
    assert cache.rebuilt_from is not None and cache.member_count() == 0
    cache.close()


def test_a_file_changed_after_its_check_ahead_is_checked_again(tmp_path, monkeypatch):
    """A check ahead answers for the file it read, not for its name: replaced or written since (a
    restore from backup, a damaged copy), the file is checked again when it is opened."""
    good = tmp_path / "cache.db"
    Cache(good, "L").close()
    ran = _counting_checks(monkeypatch)
    _checked_ahead(good)
    with contextlib.closing(sqlite3.connect(good)) as conn, conn:  # written since its check
        conn.execute("INSERT INTO sync_state (key, value) VALUES ('note', 'x')")
    Cache(good, "L").close()
    assert ran == ["cache.db", "cache.db"]

    _checked_ahead(good)
    good.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # damaged after its check passed
    cache = Cache(good, "L")
    assert cache.rebuilt_from is not None  # not taken for sound
    cache.close()

    ledger_path = tmp_path / "ledger.db"
    ledger_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    _checked_ahead(ledger_path)  # found damaged ahead...
    ledger_path.unlink()
    restored = Ledger(ledger_path, LaneIdentity("S", "L"))  # ...then replaced by a sound ledger
    restored.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
    restored.close()
    Ledger(ledger_path, LaneIdentity("S", "L")).close()  # opens: the stale complaint is not used


def test_a_check_ahead_leaves_a_path_it_cannot_read_to_the_open(tmp_path):
    """A folder on the way that is a file, or the file itself a folder: nothing to check ahead, and
    no error from it; the open that follows is what says why the storage cannot be used."""
    from posd.storage import db

    (tmp_path / "disk").write_text("a file where a folder should be")
    (tmp_path / "dir.db").mkdir()
    db.check_ahead(tmp_path / "disk" / "state" / "ledger.db", tmp_path / "dir.db")
    assert not any(key.startswith(str(tmp_path)) for key in db._AHEAD)


def test_the_ledger_announces_what_a_unit_did_after_its_commit(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    heard: list[tuple[str, int]] = []

    def outbox_listener():
        # called after the COMMIT: a reader already sees what the unit wrote
        heard.append(("outbox", reader(ledger).execute("SELECT COUNT(*) FROM outbox").fetchone()[0]))

    ledger.subscribe("outbox", outbox_listener)
    ledger.subscribe("print", lambda: heard.append(("print", 0)))
    ledger.subscribe("print", lambda: 1 / 0)  # a broken listener fails nothing
    try:
        ledger.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
        assert heard == [("outbox", 1)]
        ledger.write(lambda tx: tx.queue_print_job(slip_id="S1", kind="slip", slip={}))
        assert heard[1:] == [("print", 0)]
        ledger.write(lambda tx: tx.queue_print_job(slip_id="S1", kind="reprint", slip={}, client_job_id="k"))
        ledger.write(lambda tx: tx.queue_print_job(slip_id="S1", kind="reprint", slip={}, client_job_id="k"))
        assert heard[2:] == [("print", 0)]  # the same job again queued nothing: nothing to wake for

        def fails(tx):
            tx.append_event("accrual", {"member_id": "M1", "points": {}})
            raise RuntimeError("after the append, before the commit")

        with pytest.raises(RuntimeError):
            ledger.write(fails)
        assert len(heard) == 3  # rolled back: nothing happened, nobody is told
        with pytest.raises(ValueError, match="unknown ledger topic"):
            ledger.subscribe("outbx", lambda: None)
    finally:
        ledger.close()


def test_a_return_reads_what_the_sale_earned_from_its_record_not_its_answer(lane):
    asyncio.run(lane.sales.record_sale(tx(lines=[BasketLine("A", None, Decimal(1), 10000, 0)])))
    # the answer the POS was given is not where the lane looks
    execute(lane.context.ledger, "DROP TRIGGER transactions_no_update")
    execute(lane.context.ledger, "UPDATE transactions SET response = json_set(response, '$.accrual.points.points', 9)")

    back = asyncio.run(lane.sales.record_return(ReturnInput("T1", "R1", (("A", Decimal(1)),), None, "hr1")))
    assert back.response["reversed"] == {"points": 150}


def test_an_older_ledger_keeps_what_its_sales_earned_across_the_upgrade(tmp_path):
    """m006 adds the sale's points column; sales recorded before it take theirs from their answer, once."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, LaneIdentity("S001", "L01"))
    ledger.write(lambda tx: tx.store_sale(
        transaction_id="T-old", request_hash="h", member_id="M1", occurred_at="2026-11-20T10:00:00.000Z",
        currency="PLN", total=100, program_version="t-1", seq=None, points={"points": 7, "coffee": 0}, basket=(),
        context=EarnContext(None, datetime(2026, 11, 20, 11, tzinfo=UTC)), birthday_awarded=False,
        response={"accrual": {"points": {"points": 7, "coffee": 0}}}, recorded_at="2026-11-20T10:00:00.000Z"))
    ledger.close()
    # as a ledger written before m006 was: no points column, m006 not recorded
    execute(ledger, "DROP TRIGGER transactions_no_update")
    execute(ledger, "ALTER TABLE transactions DROP COLUMN points")
    execute(ledger, "CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions "
                    "BEGIN SELECT RAISE(ABORT, 'transactions is append-only'); END")
    execute(ledger, "DELETE FROM _migrations WHERE name = 'm006_sale_points'")
    upgraded = Ledger(path, LaneIdentity("S001", "L01"))
    try:
        assert upgraded.view().sale("T-old").points == {"points": 7, "coffee": 0}
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            execute(upgraded, "UPDATE transactions SET total_minor = 1")
    finally:
        upgraded.close()


def test_a_ledger_from_before_m012_loses_ledger_transaction_and_returns_still_take_their_sales_lots(tmp_path):
    """m012 drops the index on ledger_entries.transaction_id; a return finds its sale's own lots by the
    sale's member and seq, in a ledger written before the upgrade as in a new one."""
    def open_lane():
        ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
        cache = Cache(tmp_path / "cache.db", "L01")
        cache.store_program(PROGRAM, "e1")
        cache.apply_member_changes([MEMBER], "1")
        return Lane(store_id="S001", lane_id="L01", locale="pl", ledger=ledger, cache=cache,
                    bus=EventBus(ledger.boot), printer_enabled=True), cache, ledger

    lane, cache, ledger = open_lane()
    line = BasketLine("A", None, Decimal(1), 10000, 0)
    asyncio.run(lane.sales.record_sale(tx("T-other", lines=[line])))
    asyncio.run(lane.sales.record_sale(tx(lines=[line])))
    cache.close()
    ledger.close()
    # as a ledger written before m012 was: the index there, m012 not recorded
    execute(ledger, "CREATE INDEX ledger_transaction ON ledger_entries (transaction_id, kind, currency)")
    execute(ledger, "DELETE FROM _migrations WHERE name = 'm012_drop_ledger_transaction_index'")
    lane, cache, ledger = open_lane()
    try:
        indexes = {r[0] for r in rows(lane, "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ledger_transaction" not in indexes and "ledger_member" in indexes
        back = asyncio.run(lane.sales.record_return(ReturnInput("T1", "R1", (("A", Decimal(1)),), None, "hr1")))
        assert back.response["reversed"] == {"points": 150}
        (lot,) = rows(lane, "SELECT entry_id FROM ledger_entries WHERE transaction_id = 'T1' AND kind = 'earn'")
        drawn = rows(lane, "SELECT a.lot_entry_id, a.points FROM lot_allocations a "
                           "JOIN ledger_entries d ON d.entry_id = a.debit_entry_id WHERE d.kind = 'reversal'")
        assert [tuple(r) for r in drawn] == [(lot[0], 150)]  # the sale's own lot, not T-other's nor the pool
    finally:
        cache.close()
        ledger.close()


def test_a_unit_that_fails_alone_after_taking_a_seq_leaves_no_hole(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))

    def fails(tx):
        tx.append_event("accrual", {"member_id": "M-bad", "points": {}})
        raise LaneError("unknown_member", "not a member")

    try:
        assert ledger.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}})) == 1
        with pytest.raises(LaneError):
            ledger.write(fails)
        assert ledger.write(lambda tx: [tx.append_event("accrual", {"member_id": f"M{i}", "points": {}})
                                        for i in (2, 3)]) == [2, 3]
        assert [r[0] for r in reader(ledger).execute("SELECT seq FROM outbox ORDER BY seq")] == [1, 2, 3]
    finally:
        ledger.close()


def test_event_ids_are_time_ordered_uuids(tmp_path):
    """Version 7 UUIDs (unix milliseconds first): new events append to the event_id index."""
    import uuid

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    try:
        ledger.write(lambda tx: [tx.append_event("accrual", {"member_id": f"M{i}", "points": {}}) for i in range(50)])
        ids = [r[0] for r in reader(ledger).execute("SELECT event_id FROM outbox ORDER BY seq")]
    finally:
        ledger.close()
    parsed = [uuid.UUID(hex=i) for i in ids]
    assert len(set(ids)) == 50 and all(len(i) == 32 and i == u.hex for i, u in zip(ids, parsed))
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    millis = [u.int >> 80 for u in parsed]
    assert millis == sorted(millis)
    assert abs(millis[-1] - int(datetime.now(UTC).timestamp() * 1000)) < 600_000


def test_a_slips_jobs_are_named_after_it_and_claims_read_the_open_jobs_index(tmp_path):
    from datetime import timedelta

    from posd.storage import print_queue

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    try:
        def queue(slip_id, kind, data=None):
            return ledger.write(lambda tx: tx.queue_print_job(slip_id=slip_id, kind=kind, slip=data or {"n": kind}))

        assert queue("T1", "slip", {"member_name": "Łukasz"}) == ("T1", True)
        assert queue("T1", "drawer") == ("T1#drawer1", True)  # the slip's name is taken: counted
        assert ledger.write(lambda tx: tx.queue_reprint("T1")) == "T1#reprint2"
        assert ledger.view().slip("T1") == {"member_name": "Łukasz"}  # stored as UTF-8 JSON, read back whole
        # the first job printed and forgotten: a reprint of what is left is never given the forgotten
        # job's id again, nor the id of a job still kept
        ledger.write(lambda tx: tx.update_print_job("T1", state="printed"))
        assert ledger.write(lambda tx: tx.forget_finished_jobs(datetime.now(UTC) + timedelta(seconds=1))) == 1
        assert ledger.write(lambda tx: tx.queue_reprint("T1")) == "T1#reprint3"  # #reprint2 is still kept
        plan = " ".join(r[3] for r in reader(ledger).execute("EXPLAIN QUERY PLAN " + print_queue._QUEUED))
        assert "print_jobs_open" in plan
        claimed = ledger.write(lambda tx: tx.claim_print_job())[1]
        assert claimed is not None and claimed.job_id == "T1#drawer1"
    finally:
        ledger.close()


def _held_writer(ledger):
    """Occupy the writer until the returned event is set, so what is submitted meanwhile queues up."""
    import threading

    busy, release = threading.Event(), threading.Event()
    blocker = ledger.submit(lambda tx: (busy.set(), release.wait(10)))
    assert busy.wait(10)
    return blocker, release


def test_units_that_queue_up_commit_together_and_a_failing_one_rolls_back_alone(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    seen_at_commit: list[tuple[int, list[bool]]] = []
    futures = []

    def heard():  # after the group's COMMIT, before any caller is answered
        count = reader(ledger).execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        seen_at_commit.append((count, [f.done() for f in futures]))

    ledger.subscribe("outbox", heard)

    def fails(tx):
        tx.append_event("accrual", {"member_id": "M-bad", "points": {}})
        raise LaneError("unknown_member", "not a member")

    try:
        blocker, release = _held_writer(ledger)
        commits = ledger.commits
        futures += [ledger.submit(lambda tx, i=i: tx.append_event("accrual", {"member_id": f"M{i}", "points": {}}))
                    for i in range(3)]
        futures.append(ledger.submit(fails))
        futures += [ledger.submit(lambda tx, i=i: tx.append_event("accrual", {"member_id": f"M{i}", "points": {}}))
                    for i in range(3, 5)]
        release.set()
        blocker.result(10)
        assert [f.result(10) for f in futures[:3]] + [f.result(10) for f in futures[4:]] == [1, 2, 3, 4, 5]
        with pytest.raises(LaneError):
            futures[3].result(10)
        assert ledger.commits == commits + 2  # the blocker alone, then the six queued behind it in one
        assert seen_at_commit == [(5, [False] * 6)]  # one announcement, after the commit, nobody answered yet
        members = [json.loads(b)["member_id"] for (b,) in reader(ledger).execute("SELECT body FROM outbox ORDER BY seq")]
        assert members == ["M0", "M1", "M2", "M3", "M4"]  # the failed unit left nothing, and no seq hole
    finally:
        ledger.close()


def _event(i):
    return lambda tx: tx.append_event("accrual", {"member_id": f"M{i}", "points": {}})


def test_a_lone_unit_waits_for_a_heralded_one_and_both_commit_in_one(tmp_path):
    """A sale being read on the event loop (heralded) is company worth waiting for: the writer that
    took another unit alone commits the two together. Without a herald it never waits."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), company_wait_s=30)

    order: list[str] = []

    async def two_sales(heralded: bool, first: int) -> list[int]:
        herald = ledger.herald() if heralded else contextlib.nullcontext()  # the second sale arrived

        async def being_read():
            with herald:
                await asyncio.sleep(0.5)  # its body still being read when the other is queued
                order.append("second queued")
                return await ledger.awrite(_event(first + 1))

        second = asyncio.create_task(being_read())
        await asyncio.sleep(0)  # the herald is up
        seq = await ledger.awrite(_event(first))
        order.append("first answered")
        return [seq, await second]

    try:
        commits, units = ledger.commits, ledger.units
        assert asyncio.run(asyncio.wait_for(two_sales(True, 1), 20)) == [1, 2]
        assert (ledger.commits - commits, ledger.units - units) == (1, 2)
        assert order == ["second queued", "first answered"]  # the first waited for the second
        order.clear()
        commits, units = ledger.commits, ledger.units
        assert asyncio.run(asyncio.wait_for(two_sales(False, 3), 20)) == [3, 4]
        assert (ledger.commits - commits, ledger.units - units) == (2, 2)
        assert order == ["first answered", "second queued"]  # nothing heralded: no wait
    finally:
        ledger.close()


def _where(i, threads):
    """A unit that notes the thread it ran on."""
    def unit(tx):
        threads.append(threading.current_thread().name)
        return tx.append_event("accrual", {"member_id": f"M{i}", "points": {}})
    return unit


def test_a_lone_unit_awaited_on_the_loop_runs_there_and_a_failing_one_leaves_nothing(tmp_path):
    """Nothing queued, nothing heralded, the disk quick: the loop runs the unit itself (no hand-off to
    the writer and back), durably, and counts it; a unit that raises rolls back whole and its seq is
    not spent; another thread's writes still go to the writer."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    threads: list[str] = []

    def failing(tx):
        tx.append_event("accrual", {"member_id": "M-half", "points": {}})
        raise ValueError("refused by the unit")

    async def main():
        first = await ledger.awrite(_where(1, threads))
        with pytest.raises(ValueError, match="refused by the unit"):
            await ledger.awrite(failing)
        return first, await ledger.awrite(_where(2, threads))

    try:
        commits, units = ledger.commits, ledger.units
        assert asyncio.run(asyncio.wait_for(main(), 20)) == (1, 2)
        assert threads == [threading.current_thread().name] * 2
        assert (ledger.commits - commits, ledger.units - units) == (2, 2)
        assert ledger.write(_where(3, threads)) == 3 and threads[-1] == "ledger-writer"
        rows = reader(ledger).execute("SELECT seq, body FROM outbox ORDER BY seq").fetchall()
        assert [(r[0], json.loads(r[1])["member_id"]) for r in rows] == [(1, "M1"), (2, "M2"), (3, "M3")]
    finally:
        ledger.close()


def test_a_unit_with_company_or_a_busy_writer_goes_to_the_writer(tmp_path):
    """Another sale heralded, or the writer holding a unit: the loop's unit is the writer's, so it
    joins the group (one commit) or waits its turn, never runs beside it."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), company_wait_s=30)
    threads: list[str] = []

    async def with_company():
        other = ledger.herald()  # another sale is read whole; its unit comes next

        async def the_other():
            with other:
                await asyncio.sleep(0.05)
                return await ledger.awrite(_where(2, threads))

        task = asyncio.create_task(the_other())
        await asyncio.sleep(0)
        return sorted([await ledger.awrite(_where(1, threads)), await task])

    try:
        commits = ledger.commits
        assert asyncio.run(asyncio.wait_for(with_company(), 20)) == [1, 2]
        assert threads == ["ledger-writer"] * 2 and ledger.commits == commits + 1
        blocker, release = _held_writer(ledger)

        async def beside_a_busy_writer():
            mine = asyncio.ensure_future(ledger.awrite(_where(3, threads)))
            await asyncio.sleep(0.05)
            assert not mine.done()  # not run beside the writer's unit
            release.set()
            return await mine

        assert asyncio.run(asyncio.wait_for(beside_a_busy_writer(), 20)) == 3
        assert threads[-1] == "ledger-writer"
        blocker.result(10)
    finally:
        ledger.close()


def test_slow_units_send_the_next_ones_to_the_writer_until_units_are_quick_again(tmp_path):
    """A disk that turned slow must not hold the loop unit after unit: two slow units of the last
    three send the next ones to the writer thread, where the loop stays free, until quick ones bring
    the median back under the limit. One slow unit alone (a WAL checkpoint) changes nothing."""
    import time

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), inline_unit_s=0.2)
    threads: list[str] = []

    def slow(i):
        def unit(tx):
            until = time.perf_counter() + 0.3
            while time.perf_counter() < until:  # busy, as a unit waiting on a slow sync holds the loop
                pass
            return _where(i, threads)(tx)
        return unit

    async def main():
        await ledger.awrite(_where(0, threads))
        await ledger.awrite(slow(1))  # one slow unit: the next is still the loop's
        await ledger.awrite(_where(2, threads))
        await ledger.awrite(slow(3))
        await ledger.awrite(slow(4))  # two of the last three slow: the writer's
        for i in range(5, 15):  # quick ones: back on the loop once the median is quick (the writer may
            await ledger.awrite(_where(i, threads))  # still hold its lock as the loop hears the outcome)
            if len(threads) > 7 and threads[-1] != "ledger-writer":
                break

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        ledger.close()
    loop, writer = threading.current_thread().name, "ledger-writer"
    assert threads[:7] == [loop, loop, loop, loop, writer, writer, writer]
    assert threads[-1] == loop and len(threads) < 15


@pytest.mark.long  # seconds of real waiting, about 5 s: CI runs it with the fault runs (make test-faults)
def test_heralds_that_come_and_go_do_not_stretch_the_wait(tmp_path):
    """A lone unit waits once for company, whatever comes meanwhile: heralds that each end without a
    unit (bodies refused), one overlapping the next, nudge the writer but never start a new wait."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), company_wait_s=1.0)
    order: list[str] = []

    async def refused(i: int) -> None:
        await asyncio.sleep(0.5 * i)
        with ledger.herald():  # arrived, refused 0.75 s later: the next one is up by then
            await asyncio.sleep(0.75)
        order.append(f"refused {i}")

    async def beside_refused_ones() -> None:
        heralds = [asyncio.create_task(refused(i)) for i in range(10)]  # heralds up for 5 s without a gap
        await asyncio.sleep(0.01)
        await ledger.awrite(_event(1))
        order.append("committed")
        await asyncio.gather(*heralds)

    try:
        asyncio.run(asyncio.wait_for(beside_refused_ones(), 30))
        assert order.index("committed") < order.index("refused 9")  # after one wait, not after them all
    finally:
        ledger.close()


def test_tills_in_step_stay_in_step_and_one_till_never_waits(tmp_path):
    """After a commit of two sales, the next sale waits for the other till's, which is not even read
    yet; a lane's other writes never wait on that, and a lone commit ends the step. One till's sales,
    one after another, never wait at all (the writer's wait here is 30 s: any wait would show).
    Every unit on the writer thread, as on a disk too slow for the loop to run them itself."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), company_wait_s=30, inline_unit_s=0)

    async def sale(i, delay=0.0):
        await asyncio.sleep(delay)
        with ledger.herald():  # arrived
            return await ledger.awrite(_event(i))

    async def written(herald, i):
        with herald:
            return await ledger.awrite(_event(i))

    async def in_step() -> list[int]:
        both = ledger.herald(), ledger.herald()  # two tills' sales arrived together
        paired = [sorted(await asyncio.gather(written(both[0], 1), written(both[1], 2)))]
        # the next pair: the second till's sale arrives 50 ms after the first's was queued
        paired.append(await asyncio.gather(sale(3), sale(4, delay=0.05)))
        return paired

    try:
        commits, units = ledger.commits, ledger.units
        assert asyncio.run(asyncio.wait_for(in_step(), 20)) == [[1, 2], [3, 4]]
        assert (ledger.commits - commits, ledger.units - units) == (2, 4)  # two pairs, each one commit
        commits = ledger.commits
        assert ledger.write(_event(5)) == 5  # not a sale: commits at once, and ends the step
        assert asyncio.run(asyncio.wait_for(sale(6), 20)) == 6  # so the next sale waits for nobody
        assert ledger.commits == commits + 2

        async def one_till() -> list[int]:
            return [await sale(i) for i in range(7, 10)]

        commits = ledger.commits
        assert asyncio.run(asyncio.wait_for(one_till(), 20)) == [7, 8, 9]
        assert ledger.commits == commits + 3
    finally:
        ledger.close()


def test_a_herald_that_brings_no_unit_lets_the_waiting_writer_go(tmp_path):
    """A heralded sale refused before its write (its body invalid, say): the writer waiting for it
    commits what it holds at once, not after its longest wait."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), company_wait_s=3600)

    async def refused_beside_a_sale() -> int:
        herald = ledger.herald()

        async def refused():
            with herald:
                await asyncio.sleep(0.05)
                raise ValueError("no sale after all")

        other = asyncio.create_task(refused())
        await asyncio.sleep(0)
        seq = await ledger.awrite(_event(1))
        with pytest.raises(ValueError):
            await other
        return seq

    try:
        commits = ledger.commits
        assert asyncio.run(asyncio.wait_for(refused_beside_a_sale(), 20)) == 1
        assert ledger.commits == commits + 1
        assert ledger.write(_event(2)) == 2  # the writer goes on as before
    finally:
        ledger.close()


def test_a_group_that_cannot_commit_answers_every_unit_with_the_error(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    try:
        blocker, release = _held_writer(ledger)
        first = ledger.submit(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))

        class ProcessStopping(BaseException):  # not a unit's own failure: the whole group is abandoned
            pass

        def stops(tx):
            raise ProcessStopping()

        breaks = ledger.submit(stops)
        release.set()
        blocker.result(10)
        with pytest.raises(ProcessStopping):
            first.result(10)
        with pytest.raises(ProcessStopping):
            breaks.result(10)
        assert reader(ledger).execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
        assert ledger.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}})) == 1
    finally:
        ledger.close()


def test_concurrent_sales_share_commits_and_keep_their_own_answers(lane):
    """Sales that arrive together (each heralded as it is read, as the API's server does) commit
    together, each with its own answer."""
    ledger = lane.context.ledger

    async def one(i, herald):
        with herald:
            return await lane.sales.record_sale(tx(f"G{i}", total=1000 * (i + 1)))

    async def sell():
        heralds = [ledger.herald() for _ in range(20)]
        return await asyncio.gather(*(one(i, h) for i, h in enumerate(heralds)))

    commits = ledger.commits
    answers = asyncio.run(sell())
    assert [a.response["transaction_id"] for a in answers] == [f"G{i}" for i in range(20)]
    assert [a.response["accrual"]["points"]["points"] for a in answers] == [15 * (i + 1) for i in range(20)]
    assert sorted(a.response["seq"] for a in answers) == list(range(1, 21))
    assert ledger.commits - commits < 20  # sales that arrived together were synced together
    stored = {t: json.loads(r) for t, r in rows(lane, "SELECT transaction_id, response FROM transactions")}
    assert all(stored[a.response["transaction_id"]] == a.response for a in answers)


def test_a_retry_gets_its_first_answer_even_when_todays_checks_would_refuse_it(lane):
    first = asyncio.run(lane.sales.record_sale(tx("T-blocked")))
    lane.context.cache.apply_member_changes([{**MEMBER, "status": "blocked"}], "2")  # blocked since
    again = asyncio.run(lane.sales.record_sale(tx("T-blocked")))
    assert again.replayed and again.response == first.response and again.body == first.body
    with pytest.raises(LaneError) as refused:
        asyncio.run(lane.sales.record_sale(tx("T-new")))
    assert refused.value.code == "member_ineligible"
    with pytest.raises(LaneError) as reused:  # the same id for another basket: the conflict comes first
        asyncio.run(lane.sales.record_sale(tx("T-blocked", total=20000)))
    assert reused.value.code == "transaction_id_conflict"
    assert rows(lane, "SELECT COUNT(*) FROM transactions")[0][0] == 1


def test_a_token_replay_central_flagged_is_acked_not_quarantined_also_in_a_ledger_from_before(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    for token in ("t1", "t2"):
        ledger.write(lambda tx, token=token: tx.append_event("token_use", {
            "member_id": "M1", "token_id": token, "identified_by": "qr_token", "points": {}}))
    outbox = LedgerOutbox(ledger)
    outbox.record_results([EventResult(1, "rejected", "token_replayed"), EventResult(2, "rejected", "unknown_member")])
    states = "SELECT seq, state, result_code FROM outbox ORDER BY seq"
    assert [tuple(r) for r in reader(ledger).execute(states)] == [
        (1, "acked", "token_replayed"), (2, "quarantined", "unknown_member")]
    assert outbox.stats().quarantined == 1
    # a ledger.db that quarantined a flag before this release: the upgrade acks it
    execute(ledger, "UPDATE outbox SET state = 'quarantined' WHERE seq = 1")
    execute(ledger, "DELETE FROM _migrations WHERE name = 'm010_token_replays_are_flags'")
    ledger.close()
    again = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    assert [tuple(r) for r in reader(again).execute(states)] == [
        (1, "acked", "token_replayed"), (2, "quarantined", "unknown_member")]
    again.close()


def test_a_program_stored_between_sales_is_the_next_sales_program(lane):
    """The program is re-read only after cache.db's copy changed (Cache.program_changes), never
    from a stale copy: the sale right after a new program was stored earns under it."""
    cache = lane.context.cache
    first = asyncio.run(lane.sales.record_sale(tx("P1")))
    assert first.response["accrual"]["program_version"] == "t-1"
    richer = json.loads(json.dumps(PROGRAM))
    richer["version"] = "t-2"
    richer["rules"][0]["rates"]["PLN"]["points"] = 3
    cache.store_program(richer, "e2")
    second = asyncio.run(lane.sales.record_sale(tx("P2")))
    assert second.response["accrual"]["program_version"] == "t-2"
    assert second.response["accrual"]["points"] == {"points": 3 * first.response["accrual"]["points"]["points"]}
    cache.store_program(PROGRAM, "e3")  # back to the first body under a new etag: read again too
    assert asyncio.run(lane.sales.record_sale(tx("P3"))).response["accrual"]["program_version"] == "t-1"


# JSON as the lane stores it: strings (any code point, lone surrogates too), integers of any size,
# keys that are strings or not, nested.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | st.integers(), inner, max_size=4),
    max_leaves=12)


@given(_JSON)
@example("\x7f")  # ASCII, yet escaped by json's ensure_ascii (and not by orjson)
@example({"name": "punkty \ud83d"})  # a lone surrogate (a program's text): escaped, so SQLite can store it
def test_rows_hold_the_json_the_json_module_writes(value):
    """The fast encoder changes no stored byte: answers as UTF-8 (escaped only where a lone surrogate
    could not be stored as UTF-8), outbox bodies escaped and sorted."""
    try:
        answer = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        event = json.dumps(value, separators=(",", ":"), sort_keys=True)
    except TypeError:  # keys of mixed types do not sort: neither encoder takes them
        return
    try:
        answer.encode()
    except UnicodeEncodeError:
        answer = json.dumps(value, separators=(",", ":"))
    assert compact_json(value) == answer
    assert compact_json(value).encode()  # what SQLite stores
    assert compact_json(value, sort_keys=True, ensure_ascii=True) == event


def test_a_slip_naming_a_lone_surrogate_is_queued(tmp_path):
    """A program's text reaches the slip unchecked: a lone surrogate in it still queues the job."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    slip = {"currencies": {"points": {"pl": "punkty \ud83d"}}}
    try:
        queued = ledger.write(lambda tx: print_queue.queue(tx._conn, slip_id="T1", kind="slip", slip=slip,
                                                           member_id="M1"))
        assert queued == ("T1", True)
        stored = reader(ledger).execute("SELECT slip FROM print_jobs").fetchone()[0]
        assert json.loads(stored) == slip
    finally:
        ledger.close()


def test_an_awaited_write_hands_its_outcome_to_the_loop_and_a_cancelled_one_is_not_run(tmp_path):
    """awrite: the result or the exception arrives on the awaiting loop; a write cancelled before the
    writer took it is never run, one already running still commits (its outcome has no taker).
    Every unit on the writer thread, as on a disk too slow for the loop to run them itself."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"), inline_unit_s=0)
    gate, ran = threading.Event(), []

    def blocked(tx):
        gate.wait(10)
        ran.append("blocked")
        return "first"

    def later(tx):
        ran.append("later")
        return "never"

    def failing(tx):
        raise ValueError("refused by the unit")

    async def main():
        first = asyncio.ensure_future(ledger.awrite(blocked))
        await asyncio.sleep(0.05)  # the writer holds `blocked`
        second = asyncio.ensure_future(ledger.awrite(later))
        await asyncio.sleep(0.01)
        second.cancel()
        gate.set()
        assert await first == "first"
        with pytest.raises(asyncio.CancelledError):
            await second
        with pytest.raises(ValueError, match="refused by the unit"):
            await ledger.awrite(failing)
        return await ledger.awrite(lambda tx: "after")

    try:
        assert asyncio.run(main()) == "after"
    finally:
        ledger.close()
    assert ran == ["blocked"]



def test_a_write_back_cut_short_is_finished_at_the_next_start_or_refused(tmp_path):
    """ledger.db deleted while posd ran, posd killed while it wrote the file back: the next start found no
    ledger.db and began a new, empty history beside the whole copy."""
    from posd.storage.db import spare_of, write_back

    path = tmp_path / "ledger.db"
    ledger = Ledger(path, LaneIdentity("S001", "L01"))
    ledger.write(lambda t: t.append_event("accrual", {"transaction_id": "T1", "member_id": "M1", "points": {}}))
    spare = spare_of(path)
    write_back(ledger._conn, spare)  # the copy whole, as if the rename after it never happened
    ledger.close()  # killed, as it were: ledger.db is gone and the copy is beside where it was
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert spare.exists() and not path.exists()
    again = Ledger(path, LaneIdentity("S001", "L01"))
    try:
        assert [r["seq"] for r in reader(again).execute("SELECT seq FROM outbox")] == [1]
        assert not spare.exists()
    finally:
        again.close()
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    spare.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # cut short mid-copy: not whole
    with pytest.raises(StorageError) as err:
        Ledger(path, LaneIdentity("S001", "L01"))
    assert err.value.code == "write_back_cut" and not path.exists()


def test_a_ledger_deleted_just_before_a_stop_is_written_back_and_one_whose_folder_moved_is_left(tmp_path):
    """rm ledger.db*, then systemctl stop within the second: posd stopped without writing it back and the
    sales it had answered were gone. A storage folder moved away took ledger.db with it: a write-back
    into a folder made again at its path let a second posd start there."""
    path = tmp_path / "lane" / "ledger.db"
    path.parent.mkdir()
    ledger = Ledger(path, LaneIdentity("S001", "L01"))
    ledger.write(lambda t: t.append_event("accrual", {"transaction_id": "T1", "member_id": "M1", "points": {}}))
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (path.parent / name).unlink()
    ledger.close()
    again = Ledger(path, LaneIdentity("S001", "L01"))
    assert [r["seq"] for r in reader(again).execute("SELECT seq FROM outbox")] == [1]
    path.parent.rename(tmp_path / "moved")
    path.parent.mkdir()  # made again where it was (a pty link, store IT)
    with pytest.raises(Exception, match="storage folder .* was moved"):
        again.write(lambda t: t.append_event("accrual", {"transaction_id": "T2", "member_id": "M1", "points": {}}))
    assert list(path.parent.iterdir()) == []  # nothing written into the new folder
    again.close()
    assert list(path.parent.iterdir()) == []
    moved = Ledger(tmp_path / "moved" / "ledger.db", LaneIdentity("S001", "L01"))
    assert [r["seq"] for r in reader(moved).execute("SELECT seq FROM outbox")] == [1]
    moved.close()
