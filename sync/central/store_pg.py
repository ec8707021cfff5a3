"""The reference central's store on PostgreSQL: several stateless workers, one database.

Every method is the shared SQL store's (store_sql.py); what is PostgreSQL's
own is here:

- connections from a psycopg_pool pool (autocommit; a write is an explicit
  transaction), the ``?`` of the shared SQL turned into psycopg's ``%s``;
- a lane's head is locked with ``SELECT ... FOR UPDATE`` (two pushes of one
  lane apply one after the other; lanes never wait for each other);
- a batch's members are locked before anything of theirs changes, always in
  one order, by every writer (batches, the expiry sweep, upserts, seeds):
  first advisory transaction locks for the keys with no member row yet (a
  member a ``member_enrolled`` is about to create, a card or phone it claims,
  a voucher code, a reservation): their buckets (MEMBER_LOCK_BUCKETS of them,
  by hash) in ascending order, shared, then each key's own lock in ascending
  order (a write of more than KEYS_ONE_BY_ONE such keys takes their buckets
  exclusive instead); then the rows, ``FOR UPDATE`` in member_id order (so an
  UPDATE from outside this code waits or is waited for). Two lanes of one
  member never deadlock and never lose an update, batches of different members
  that exist never wait for each other, nor do writers of a few new keys each
  (a writer of many waits for those in its buckets, and they for it);
- the numbers of the members central names come from a sequence, and the new
  id's key is taken with a try-lock (a number another writer holds is passed
  over): no enrolling writer waits for another's;
- a page of the member change feed is read in one REPEATABLE READ transaction: its members,
  their watermarks, aliases and vouchers all as of one snapshot;
- the member change feed: a change's version is ``xid << 20 | n`` (the
  writing transaction's id, then the n-th change in it), and a page only
  lists versions below the oldest transaction still running
  (``pg_snapshot_xmin``). Transaction ids are handed out at start, not at
  commit; cutting at that horizon is what makes the feed ordered by commit:
  nothing can later appear behind a cursor already handed out;
- the schema (schema_pg.py): events hash-partitioned by lane.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from posd.sync.central.schema_pg import MIGRATE_LOCK, migrate
from posd.sync.central.store_sql import EVENT_COLUMNS, Contended, SqlStore

log = logging.getLogger("posd.sync.central")

CHANGE_BITS = 20  # changes one transaction may make: seeds write at most SEED_CHUNK members per transaction
SWEEP_LOCK = (0x706F7364, 1)  # ("posd", 1): one expiry sweep at a time, the others skip it
# A member's advisory lock is one of a fixed set of buckets ("posm", hash of the member_id mod
# MEMBER_LOCK_BUCKETS), so a transaction holds at most that many, however many members it writes:
# every advisory lock takes an entry of PostgreSQL's shared lock table, which holds
# max_locks_per_transaction x max_connections (64 x 100 by default). One lock per member made a
# 1000-member batch take 1000 entries, and a few lanes catching up at once ran it out ("out of
# shared memory": their pushes answered 500). Two writers of members in one bucket take turns.
MEMBER_LOCKS = 0x706F736D
MEMBER_LOCK_BUCKETS = 128
# A write of up to this many keys with no row (an enrolment's card, phone and provisional id, a
# voucher code, a reservation) locks each key itself (a 64-bit advisory lock) and holds its bucket
# shared: writers of different keys in one bucket go on at once, where with the bucket alone every
# voucher and enrolment of a fleet queued on 128 locks. A write of more takes their buckets whole
# (exclusive); so do the new member ids a transaction claims past this many. A transaction thus
# holds at most MEMBER_LOCK_BUCKETS + 2 x KEYS_ONE_BY_ONE advisory locks (192), plus one for a key
# it finds only as it applies its events (rare: _BatchWork._load).
KEYS_ONE_BY_ONE = 32


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (no statement holds a literal ? or %)."""
    return sql.replace("?", "%s")


class _Conn:
    """A psycopg connection that runs the shared SQL; counts the changes of its transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self.xid: int | None = None
        self.changes = 0
        self.claims = 0  # new member ids claimed in this transaction (_claim_new)

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        return self.raw.execute(_pg_sql(sql), params)

    def executemany(self, sql: str, params: list[Any]) -> None:
        if params:
            self.raw.cursor().executemany(_pg_sql(sql), params)


OPEN_WAIT_S = 30.0  # at start, how long central waits for a server that is not up yet
CONNECTION_WAIT_S = 5.0  # a request's wait for a pooled connection before it is answered 503
# The pool retries a lost connection with doubling delays until it gives up; then the next request
# starts again from a 1 s delay. Giving up early keeps the delay short: after an outage of minutes
# it would otherwise wait minutes more before it tried the database that is back.
RECONNECT_GIVE_UP_S = 10.0
# What the server says when it is there but not taking connections yet (or any more): waited for.
_NOT_YET = ("starting up", "shutting down", "in recovery", "too many", "remaining connection slots",
            "not yet accepting connections", "is not accepting connections")


# admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, out_of_memory,
# deadlock_detected, serialization_failure
_RETRYABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "53200", "40P01", "40001"})


# The server's words when it takes no further connection (max_connections, a role's or a database's
# CONNECTION LIMIT, the slots kept for superusers).
_FULL = ("too many clients", "too many connections", "connection slots are reserved")
FULL_SAID_EVERY_S = 60.0


class _PoolLog(logging.Filter):
    """psycopg_pool's own lines. It logs every failed attempt to connect with the server's whole
    answer, and a connection it dropped: central says once what that means for requests
    (posd.sync.central.app: "database not answering"), and that is enough. One thing only the pool
    sees: the server refusing central a further connection while it answers on the ones central
    holds. Requests are then served, on fewer connections than --pool-size, and wait for one in
    turn; nothing fails, so nothing else would tell the operator why central is slow. That is said
    as central's own warning, at most every FULL_SAID_EVERY_S."""

    def __init__(self, pool_size: int) -> None:
        super().__init__()
        self.pool_size = pool_size
        self._said = float("-inf")
        self._lock = threading.Lock()  # the pool's threads log at once

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        reason = " ".join(str(record.args[-1]).split()) if isinstance(record.args, tuple) and record.args else ""
        if record.levelno == logging.WARNING and any(words in reason for words in _FULL):
            with self._lock:
                now = time.monotonic()
                due = now - self._said >= FULL_SAID_EVERY_S
                if due:
                    self._said = now
            if due:
                log.warning("PostgreSQL refuses central a further connection (%s); requests share the "
                            "connections central holds, fewer than its --pool-size %d, and wait for one. "
                            "Raise the server's max_connections (or the role's or database's CONNECTION "
                            "LIMIT) to at least --workers x --pool-size of every central, or lower "
                            "--pool-size", reason[:300], self.pool_size, extra={"event": "central.pool_short"})
        return False


def _quiet_pool_log(pool_size: int) -> None:
    """psycopg.pool's lines through one _PoolLog (a process opens its store once; tests, many)."""
    # psycopg's own warnings are about cleaning up after a connection the server dropped ("error
    # ignored terminating <psycopg.Pipeline [BAD]>: the connection is lost", over three lines): a
    # restart of PostgreSQL under load wrote 65 of them beside central's one "database not answering".
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.setLevel(logging.WARNING)  # its info lines, one per connection handed out, never made
    for old in [f for f in pool_log.filters if isinstance(f, _PoolLog)]:
        pool_log.removeFilter(old)
    pool_log.addFilter(_PoolLog(pool_size))


def _wait_for_server(url: str, wait_s: float) -> None:
    """Return once the server takes a connection; raise at once when it answered and refused for
    good (no such database or role, wrong password, an unknown URL parameter), or with the last
    reason once ``wait_s`` has passed without a server (the pool alone would retry the whole time
    and then say only that it timed out)."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            psycopg.connect(url, connect_timeout=max(1, min(5, int(wait_s)))).close()
            return
        except psycopg.OperationalError as exc:
            said = " ".join(str(exc).split())
            refused = "FATAL:" in said and not any(reason in said for reason in _NOT_YET)
            if refused or time.monotonic() >= deadline:
                raise
            if not told:  # the reason names the host and port, never the password
                log.warning("PostgreSQL is not taking connections yet (%s); waiting up to %.0f s", said, wait_s)
                told = True
        time.sleep(0.5)


class PgStore(SqlStore):
    """Central's database on a PostgreSQL server. Every method is safe to call from any thread."""

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """Worth the lane's retry: the database did not answer (down, restarting, a connection lost,
        no connection free in time) or gave up on this transaction for another's sake (a deadlock, a
        serialisation failure, out of shared memory, too many connections). Anything else (a
        statement it refused, disk full) is a fault: 500 with its traceback."""
        if isinstance(exc, (PoolTimeout, Contended)):
            return True
        if not isinstance(exc, psycopg.OperationalError):
            return False
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in _RETRYABLE_STATES

    @staticmethod
    def is_conflict(exc: BaseException) -> bool:
        return isinstance(exc, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure, Contended))

    FOR_UPDATE = " FOR UPDATE"
    SEED_CHUNK = 100_000
    assert SEED_CHUNK < 2**CHANGE_BITS

    def __init__(self, url: str, clock: Any = time.time, pool_size: int = 8) -> None:
        self.url = url
        self._clock = clock
        _quiet_pool_log(pool_size)
        # check: a connection the server dropped (it restarted) is replaced before a request gets it,
        # not handed out to fail; timeout: a request waits that long for a connection, then central
        # answers 503 with Retry-After (TRANSIENT) instead of holding the lane past its read timeout.
        self._pool = ConnectionPool(url, min_size=1, max_size=max(1, pool_size), open=False, name="posd-central",
                                    kwargs={"autocommit": True, "row_factory": dict_row},
                                    check=ConnectionPool.check_connection, timeout=CONNECTION_WAIT_S,
                                    reconnect_timeout=RECONNECT_GIVE_UP_S)
        try:
            _wait_for_server(url, OPEN_WAIT_S)
            self._pool.open(wait=True, timeout=OPEN_WAIT_S)
            with self._pool.connection() as conn:
                migrate(conn)
            self._ensure_signing_key()
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _write(self) -> Iterator[_Conn]:
        # Pipeline mode: statements whose results nobody reads (a lot, an outbox row) go out
        # without waiting for the one before; a read waits for what is queued before it.
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            yield _Conn(conn)

    def _insert_events(self, conn: _Conn, rows: list[tuple[Any, ...]]) -> list[int]:
        # One statement of eleven arrays: psycopg need not parse thousands of placeholders.
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(11)]
        types = ["text", "text", "bigint", "text", "text", "text", "text", "text", "jsonb", "text", "text"]
        arrays = ", ".join(f"?::{t}[]" for t in types)
        return [r["seq"] for r in conn.execute(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT (store_id, lane_id, seq) DO NOTHING RETURNING seq", [list(c) for c in columns]).fetchall()]

    @contextmanager
    def _read(self) -> Iterator[_Conn]:
        with self._pool.connection() as conn:
            yield _Conn(conn)

    @contextmanager
    def _snapshot(self) -> Iterator[_Conn]:
        # REPEATABLE READ: every statement of the transaction sees the snapshot of its first one,
        # and pg_current_snapshot() inside it is that same snapshot (the feed's horizon agrees).
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _Conn(conn)

    def _next_versions(self, conn: _Conn, count: int) -> list[int]:
        if conn.xid is None:
            conn.xid = conn.execute("SELECT pg_current_xact_id()::text::bigint AS x").fetchone()["x"]
        first, conn.changes = conn.changes + 1, conn.changes + count
        if conn.changes >= 2**CHANGE_BITS:
            raise RuntimeError(f"more than {2**CHANGE_BITS - 1} member changes in one transaction")
        return [(conn.xid << CHANGE_BITS) | n for n in range(first, conn.changes + 1)]

    def _feed_end(self, conn: _Conn) -> int:
        # Every cursor handed out is a committed member version (rows stay; a member only moves to a
        # higher one) or the cursor asked with. The snapshot's xmax bounded it too loosely: a made-up
        # cursor below it was taken and handed back, as SQLite refuses it.
        return conn.execute("SELECT coalesce(max(version), 0) AS v FROM members").fetchone()["v"]

    def _feed_rows(self, conn: _Conn, cursor: int, limit: int) -> list[Any]:
        return conn.execute(
            f"SELECT * FROM members WHERE version > ? AND version < "
            f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {CHANGE_BITS}) ORDER BY version LIMIT ?",
            (cursor, limit)).fetchall()

    def _lock_members(self, conn: _Conn, member_ids: list[str]) -> None:
        if not member_ids:
            return
        ids = list(member_ids)
        # Only keys with no row yet (a member an enrolment is about to create, a card, a voucher code)
        # take a bucket: members that exist are held by their rows alone, so batches of different
        # members never wait for each other (a 1000-member batch covered all 128 buckets, and every
        # two lanes' full batches took turns). A member created meanwhile by a writer that held its
        # bucket is in the rows locked after the buckets.
        existing = {r["member_id"] for r in conn.execute("SELECT member_id FROM members WHERE member_id = ANY(?)",
                                                         (ids,)).fetchall()}
        fresh = [m for m in ids if m not in existing]
        if len(fresh) > KEYS_ONE_BY_ONE:  # their buckets, whole: at most MEMBER_LOCK_BUCKETS entries
            conn.execute("SELECT count(pg_advisory_xact_lock(?, b)) FROM (SELECT DISTINCT (hashtextextended(m, 0) "
                         "& ?)::int AS b FROM unnest(?::text[]) AS m ORDER BY b OFFSET 0) AS ordered",
                         (MEMBER_LOCKS, MEMBER_LOCK_BUCKETS - 1, fresh))
        elif fresh:  # their buckets shared (only a whole-bucket writer waits), then each key's own lock
            conn.execute("SELECT count(pg_advisory_xact_lock_shared(?, b)) FROM (SELECT DISTINCT (hashtextextended(m, 0) "
                         "& ?)::int AS b FROM unnest(?::text[]) AS m ORDER BY b OFFSET 0) AS ordered",
                         (MEMBER_LOCKS, MEMBER_LOCK_BUCKETS - 1, fresh))
            conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT hashtextextended(m, 1) AS k "
                         "FROM unnest(?::text[]) AS m ORDER BY k OFFSET 0) AS ordered", (fresh,))
        conn.execute("SELECT member_id FROM members WHERE member_id = ANY(?) ORDER BY member_id FOR UPDATE", (ids,))

    def _member_number(self, conn: _Conn) -> int:
        return conn.execute("SELECT nextval('member_numbers') AS n").fetchone()["n"]

    def _claim_new(self, conn: _Conn, member_id: str) -> bool:
        # As _lock_members locks a fresh key, but trying: a lock that waited here, out of the sorted
        # order, is what deadlocked enrolling writers. Past KEYS_ONE_BY_ONE claims in a transaction,
        # the key's bucket whole, so a batch of a thousand enrolments stays within the lock table's bound.
        conn.claims += 1
        if conn.claims > KEYS_ONE_BY_ONE:
            return conn.execute("SELECT pg_try_advisory_xact_lock(?, (hashtextextended(?, 0) & ?)::int) AS ok",
                                (MEMBER_LOCKS, member_id, MEMBER_LOCK_BUCKETS - 1)).fetchone()["ok"]
        return conn.execute("SELECT CASE WHEN pg_try_advisory_xact_lock_shared(?, (hashtextextended(?, 0) & ?)::int) "
                            "THEN pg_try_advisory_xact_lock(hashtextextended(?, 1)) ELSE false END AS ok",
                            (MEMBER_LOCKS, member_id, MEMBER_LOCK_BUCKETS - 1, member_id)).fetchone()["ok"]

    SALE_OF_SQL = "body->>'transaction_id'"
    HOLDER_SQL = ("SELECT member_id FROM members WHERE identifiers @> jsonb_build_array(?::text) "
                  "AND status != 'deleted' LIMIT 1")

    def _one_at_a_time(self, conn: _Conn) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?, ?)", MIGRATE_LOCK)

    def _sweep_guard(self, conn: _Conn) -> bool:
        return conn.execute("SELECT pg_try_advisory_xact_lock(?, ?) AS got", SWEEP_LOCK).fetchone()["got"]
