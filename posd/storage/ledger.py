"""ledger.db: the lane's precious record, its one writer, and what it announces.

Every write is a unit of work (posd.storage.tx.LedgerTx) that runs on one
connection, one unit at a time, inside BEGIN IMMEDIATE ... COMMIT, usually
on one dedicated thread (Datasette's execute_write_fn): there is never a
second writer to race the seq counter. After the COMMIT the
ledger tells the subscribers of what the unit did (an outbox event: the
relay; a print job: the print worker), so no caller has to remember to.
Readers get a connection of their own per thread (WAL lets them run beside
the writer).

Group commit: units that arrive while the writer is busy (sales from two
tills, the relay's acks) wait in its queue, and the writer then runs all of
them in one transaction, each inside its own SAVEPOINT, and syncs once. A
unit that fails rolls back to its savepoint alone and its caller gets the
error; the others commit. Nobody is answered, and nothing is announced,
before the COMMIT that made their unit durable, so a crash at any point
loses only units nobody was told about. A lone unit runs as before, without
savepoints. It waits for company (at most COMPANY_WAIT_S), and then the two
commit with one sync, only when company is known to be coming:
- a sale that arrived (its request is read whole) and whose unit will be
  queued in moments (a ``Herald``, from the API);
- or, for a sale, when the last commit held two sales or more (heralded
  units): two tills in step. Their answers left together, so each till's
  next sale comes a moment after the other's, and the first waits for the
  second. The first lone commit ends the step: when the other till stopped,
  one sale waited once.
A writer that never waits takes the first of two sales alone before the
second is read, and tills stay out of step, one sync each. With one till
there is never a second sale on its way, nor two sales in a commit: its
sales never wait, and nor do the lane's other writes (acks, print jobs).

A unit awaited on the event loop runs right there instead, when it would run
alone anyway: nothing queued or being run, no other sale heralded, and the
ledger's recent units quick (under INLINE_UNIT_S, the median of the last three: a disk
that syncs in a fraction of a millisecond). The loop then waits for that
sync, briefly, and the sale is spared the two thread hand-offs (on a 2-core
lane PC about 0.1 ms of waking, and up to a tenth of a sale's CPU). Two slow units
of the last three (a disk that turned slow or busy) send the next ones to
the writer thread, so the loop stays free and units group again, until the
units are quick again; one slow unit alone (a WAL checkpoint) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from posd.storage import meta, print_queue
from posd.storage.db import (FileWatch, StorageError, ThreadReaders, WriteRefused, checked_file, connect, rollback,
                             spare_of, unavailable, write_back, write_refused)
from posd.storage.identity import SyncIdentity
from posd.storage.outbox import SeqCounter
from posd.storage.schema import ledger_migrations
from posd.storage.tx import TOPICS, LedgerTx, LedgerView

log = logging.getLogger("posd.ledger")
T = TypeVar("T")
GROUP_MAX = 64  # units at most in one transaction: bounds how long the first of them waits for the sync
COMPANY_WAIT_S = 0.001  # at most this long a lone unit waits for a heralded one (it is usually there in 0.1 ms)
# A lone unit awaited on the loop runs there while the last three units' median took less than this.
INLINE_UNIT_S = 0.002
_STOP = object()
_NUDGE = object()  # a herald ended without a unit: a writer waiting for it stops waiting


class Herald:
    """A unit on its way to the writer, counted from the moment its request arrived until the unit
    is queued (``awrite`` inside ``with herald:``) or the herald is left without one (the request
    refused before its write: a writer waiting for it is nudged on). Made and used on the event loop."""

    __slots__ = ("_ledger", "_open", "_token")

    def __init__(self, ledger: Ledger):
        self._ledger, self._open = ledger, True
        ledger._coming += 1

    def __enter__(self) -> Herald:
        self._token = _HERALDED.set(self)
        return self

    def __exit__(self, *_: object) -> None:
        _HERALDED.reset(self._token)
        if self._open:
            self.arrived()
            self._ledger._queue.put(_NUDGE)

    def arrived(self) -> None:
        """Its unit is being queued (before the put: the writer never waits for a unit already queued)."""
        if self._open:
            self._open = False
            self._ledger._coming -= 1


# The Herald entered in this task, if any (its awrite queues the unit it announced).
_HERALDED: contextvars.ContextVar[Herald | None] = contextvars.ContextVar("posd_ledger_herald", default=None)


def _finish_write_back(path: Path) -> None:
    """ledger.db missing beside a whole copy of it (a write-back cut short by a stop or a power cut,
    posd.storage.db.write_back): the copy, once it passes its integrity check, is put in place."""
    spare = spare_of(path)
    if path.exists() or Path(f"{path}-wal").exists() or not spare.exists():
        return
    try:
        if _checked(spare):
            return  # not whole: history_left says so
    except sqlite3.Error:
        return
    os.replace(spare, path)
    log.warning("%s was being written back when posd stopped: the whole copy is in place now", path,
                extra={"event": "ledger.written_back"})


def history_left(path: Path) -> bool:
    """Whether ``path`` holds a ledger's history (False: a new lane starts one). StorageError when what
    is there cannot be a ledger posd made and must not be taken for a new one:
    - an empty ledger.db: posd writes its header before anything else, so an empty file is a history
      lost (a truncated copy, a power cut on a file system that lost it) or a first start cut short;
    - a -wal without its ledger.db: the newest commits, without the file they belong to."""
    if path.exists() and not path.is_file():  # a folder made by mistake: SQLite says only "disk I/O error"
        kind = "a folder" if path.is_dir() else "something else"
        raise StorageError(f"{path} is {kind}, not a file: not the lane's ledger. Move it away (and put ledger.db "
                           "back from backup, if this lane had one)", "not_file")
    wal = Path(f"{path}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    if not path.exists():
        spare = spare_of(path)
        if spare.exists():
            raise StorageError(
                f"{path} is missing and {spare.name} is there: posd was writing ledger.db back (it was deleted "
                f"while posd ran) when it stopped. posd finishes that at its start when the copy passes its "
                f"integrity check; this one did not: restore {path.name} from backup", "write_back_cut",
                spare=spare.name)
        if wal_bytes:
            raise StorageError(
                f"{path} is missing but {wal.name} ({wal_bytes} bytes) is there: the newest commits without "
                f"the ledger they belong to. Restore {path.name} beside it (from backup), or move {wal.name} "
                "aside to start a new lane history.", "wal_orphan", wal=wal.name, bytes=wal_bytes)
        return False
    if path.stat().st_size == 0 and not wal_bytes:
        raise StorageError(
            f"{path} is empty (0 bytes): this lane's history was lost (a truncated copy, a power cut) or its "
            "first start never finished; it was left untouched. Restore it from backup; on a lane that never "
            "recorded anything, delete the file to start a new lane history.", "empty")
    return True


def _remove_unfinished(path: Path, conn: sqlite3.Connection | None) -> None:
    """Remove a ledger.db this start created and could not finish, with its -wal and -shm: left behind,
    an empty or half-made file is refused at the next start as a lost history (exit 3, never restarted),
    although nothing was ever recorded in it."""
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _history(conn: sqlite3.Connection) -> bool:
    """Has the ledger recorded anything: an event for central (every sale, burn, enrolment and token
    use has one) or a print job? The lane id it settled on with central is none: settling only reads
    central's head for the id (SyncIdentity), and a first start with the shipped example's ids and
    central's address set reached central without recording a thing."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM outbox) OR EXISTS (SELECT 1 FROM print_jobs)").fetchone()[0] == 1


def _other_owner(conn: sqlite3.Connection, path: Path, lane: LaneIdentity) -> tuple[str, str] | None:
    """The store and lane ids the ledger was made for, when they are not ``lane``'s (None: they are, or
    it has none yet). StorageError when the ledger holds a history under those: never mix two lanes'."""
    store, other = meta.read(conn, "store_id"), meta.read(conn, "lane_id")
    if store is None or (store, other) == (lane.store_id, lane.lane_id):
        return None
    if _history(conn):
        raise StorageError(
            f"{path} belongs to store {store} lane {other}, but the config says "
            f"store {lane.store_id} lane {lane.lane_id}; refusing to mix lane histories", "other_lane",
            store=store, lane=other or "-", config_store=lane.store_id, config_lane=lane.lane_id)
    return store, other or ""


def refusal(path: Path, lane: LaneIdentity) -> StorageError | None:
    """Why posd would refuse to start on the ledger at ``path`` as ``lane``, found read-only, else None.
    Its integrity aside: posd.storage.inspect.check_db reads that."""
    try:
        if not history_left(path):
            return None
        conn = connect(path, durable=True, readonly=True)
        try:
            ledger_migrations.done(conn)
            _other_owner(conn, path, lane)
        finally:
            conn.close()
    except StorageError as exc:
        return exc
    except (sqlite3.Error, OSError):  # what SQLite or the disk says of the file is check_db's to name
        return None
    return None


def _checked(path: Path, *, ours: bool = False) -> str | None:
    """SQLite's first complaint about the file, read on a read-only connection, else None. With
    ``ours``, StorageError when the file is another database (Migrations.ours): refused before the
    read-write open, which would already turn it to WAL."""
    conn = connect(path, durable=True, readonly=True)
    try:
        problem = checked_file(path, conn)
        if problem is None and ours:
            ledger_migrations.ours(conn)
        return problem
    finally:
        conn.close()


@dataclass(frozen=True)
class LaneIdentity:
    store_id: str
    lane_id: str


class _LoopFuture:
    """What the writer needs of a Future (concurrent.futures' four calls), for an asyncio future
    awaited on its loop: the outcome is set there, by one call_soon_threadsafe."""

    __slots__ = ("_waiter", "_loop", "_settled")

    def __init__(self, waiter: asyncio.Future[Any]):
        self._waiter, self._loop, self._settled = waiter, waiter.get_loop(), False

    def set_running_or_notify_cancel(self) -> bool:
        """False when the caller gave up before the writer took the unit (it is not run)."""
        return not self._waiter.cancelled()

    def done(self) -> bool:
        return self._settled

    def set_result(self, value: Any) -> None:
        self._settle(_LoopFuture._result, value)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(_LoopFuture._exception, exc)

    def _settle(self, how: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        self._settled = True
        try:
            self._loop.call_soon_threadsafe(how, self._waiter, value)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass

    @staticmethod
    def _result(waiter: asyncio.Future[Any], value: Any) -> None:
        if not waiter.done():  # cancelled meanwhile: the outcome has no taker
            waiter.set_result(value)

    @staticmethod
    def _exception(waiter: asyncio.Future[Any], exc: BaseException) -> None:
        if not waiter.done():
            waiter.set_exception(exc)


class _Inline:
    """The outcome of a unit the loop ran itself (what _run_alone needs of a Future)."""

    __slots__ = ("_value", "_error")

    def __init__(self) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value

    def set_exception(self, exc: BaseException) -> None:
        self._error = exc

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


BOOT_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
BOOT_STEP_S = 600
BOOT_FILE = "event-boot"  # beside ledger.db: the last boot number, which outlives a ledger moved aside


def boot_floor() -> int:
    """The least boot number by this PC's clock: 10-minute steps since 2026 (a new storage folder's
    first boot is past the boots of an old one, unless that one restarted more often than every ten
    minutes for longer than it lived). Event ids stay below 2**53 (a JavaScript number) until 2065."""
    return max(0, int((time.time() - BOOT_EPOCH) // BOOT_STEP_S))


def _boot_kept(folder: Path) -> int:
    try:
        return int((folder / BOOT_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return 0


def _keep_boot(folder: Path, boot: int) -> None:
    """Note ``boot`` beside ledger.db (written whole, then renamed: never half a number)."""
    temporary = folder / f".{BOOT_FILE}.tmp"
    try:
        temporary.write_text(f"{boot}\n", encoding="ascii")
        os.replace(temporary, folder / BOOT_FILE)
    except OSError as exc:  # a full disk at start: the ledger holds the boot; only its copy is late
        log.warning("cannot note the boot number beside ledger.db (%s): it stays in ledger.db", exc)


class Ledger:
    """Owns ledger.db: migrations, the writer thread, per-thread readers, announcements."""

    def __init__(self, path: Path, lane: LaneIdentity, *, company_wait_s: float = COMPANY_WAIT_S,
                 inline_unit_s: float = INLINE_UNIT_S):
        """``inline_unit_s``: 0 runs every unit on the writer thread."""
        self.path = path
        self.company_wait_s = company_wait_s
        self.inline_unit_s = inline_unit_s
        self.lane = lane
        self._readers = ThreadReaders(path, durable=True)
        self._subscribers: dict[str, list[Callable[[], None]]] = {topic: [] for topic in TOPICS}
        self._programs: set[str] = set()  # program versions known to be stored
        self._seqs = SeqCounter()  # the outbox's last seq, carried between units (forgotten on a rollback)
        # Why the last write failed in SQLite itself (disk full, I/O error), None once one succeeds:
        # health turns red on it, since sales cannot be recorded.
        self.write_failure: str | None = None
        _finish_write_back(path)
        existed = history_left(path)
        try:
            if existed:  # checked read-only first: a file refused is never written, not even its header
                problem = _checked(path, ours=True)
                if problem:
                    raise StorageError(f"{path} failed its integrity check ({problem}); it was left untouched. "
                                       "Restore it from backup or move it aside to start a new lane history.")
            try:
                self._conn = connect(path, durable=True)
                ledger_migrations.apply(self._conn)
                self.boot, claimed = self._start(self._conn)
            except BaseException:
                if not existed:  # a new ledger this start could not finish (a full disk): none is left behind
                    _remove_unfinished(path, getattr(self, "_conn", None))
                raise
        except sqlite3.DatabaseError as exc:
            cause = unavailable(exc, path)
            if cause is not None:  # the disk or the folder, not the file: no advice to restore it
                raise cause from exc
            # Never "repair" the precious file by recreating it: stop and say so.
            raise StorageError(
                f"{path} cannot be opened as a posd ledger ({exc}); it was left untouched. "
                "Restore it from backup or move it aside to start a new lane history."
            ) from exc
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None  # started by the first write
        self._writer_lock = threading.Lock()
        # Held while the connection runs units: by the writer from the moment it takes a unit (waiting
        # for company included) until its callers have their outcomes, or by the loop running one.
        self._running = threading.Lock()
        self._last3 = (0.0, 0.0, 0.0)  # how long the last three units took, BEGIN to COMMIT
        self._in_step = False  # the last commit held two heralded units or more (tills in step)
        self._coming = 0  # Heralds whose unit is not queued yet (changed on the event loop only; the writer reads it)
        self._closed = False
        self.commits = 0  # transactions the writer committed (a group counts once)
        self.units = 0  # units of work those commits made durable
        self._watch = FileWatch(path)  # ledger.db deleted or moved while posd runs: written back (_keep_file)
        self.replaced: str | None = None  # another file put where ledger.db was: writes refused until a restart
        self._reopen = False  # written back, not opened again yet (the open failed): open it before a unit
        self._mend_after, self._mend_failed = 0.0, ""  # a failed write-back: when to try again, and why
        self.sync_identity = SyncIdentity(self, lane.lane_id, claimed)

    def _start(self, conn: sqlite3.Connection) -> tuple[int, str | None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            other = _other_owner(conn, self.path, self.lane)
            if other:
                # Started once under other ids (the shipped example's, before store IT set this lane's)
                # and never recorded anything: no history to mix, so it takes the config's.
                log.warning("ledger.db was made for store %s lane %s and holds no history: it is now "
                            "store %s lane %s's", *other, self.lane.store_id, self.lane.lane_id)
            if other or meta.read(conn, "store_id") is None:
                meta.write(conn, "store_id", self.lane.store_id)
                meta.write(conn, "lane_id", self.lane.lane_id)
            if other:  # the id settled under the old ones (L01, L01.2) is settled again under these
                conn.execute("DELETE FROM meta WHERE key = ?", (SyncIdentity.META_KEY,))
            # The event stream's ids begin with the boot number: one a POS saw must never come again.
            # The ledger counts boots, but a new ledger.db (the old one archived, a backup restored)
            # counted from its own, and a POS resuming from an id of the old one was replayed from the
            # wrong point, without stream.reset. The number noted beside it and the clock say more.
            boot = max(int(meta.read(conn, "boot") or 0), _boot_kept(self.path.parent), boot_floor()) + 1
            meta.write(conn, "boot", str(boot))
            print_queue.requeue_interrupted(conn)
            claimed = meta.read(conn, SyncIdentity.META_KEY)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        _keep_boot(self.path.parent, boot)
        return boot, claimed

    # -- writing ----------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if first is _NUDGE:
                continue
            with self._running:
                self._run_from(first)

    def _run_from(self, first: tuple[Callable[[LedgerTx], Any], Any, bool]) -> None:
        """The writer's turn: ``first``, with whatever else is waiting or coming, in one commit."""
        group = [first]
        deadline = None  # one wait per group, however many heralds come and go meanwhile
        while len(group) < GROUP_MAX:  # whatever else is already waiting; more only when company is coming
            wait = 0.0
            if len(group) == 1 and (self._coming or (self._in_step and first[2])):
                if deadline is None:
                    deadline = time.monotonic() + self.company_wait_s
                wait = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # finish this group, then stop
                break
            if item is not _NUDGE:
                group.append(item)
        self._in_step = sum(1 for _, _, heralded in group if heralded) > 1
        pending = [(fn, future) for fn, future, _ in group if future.set_running_or_notify_cancel()]
        if len(pending) == 1:
            self._run_alone(*pending[0])
        elif pending:
            self._run_group(pending)

    def _run_alone(self, fn: Callable[[LedgerTx], Any], future: Future | _Inline, checked: bool = False) -> None:
        """``checked``: the caller saw ledger.db unchanged just now (the loop's inline path)."""
        try:
            if not checked:
                self._keep_file()
        except BaseException as exc:
            self._note_failure(exc)
            future.set_exception(self._refused(exc))
            return
        conn = self._conn
        tx = LedgerTx(conn, self._programs, self._seqs)
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(tx)
                conn.execute("COMMIT")
            except BaseException:
                self._seqs.forget()
                rollback(conn)
                raise
            finally:
                self._took(time.perf_counter() - started)
        except BaseException as exc:
            self._note_failure(exc)
            future.set_exception(self._refused(exc))
            return
        self.write_failure = None
        self.commits, self.units = self.commits + 1, self.units + 1
        self._programs |= tx.programs
        self._announce(tx.happened)
        future.set_result(result)

    def _run_group(self, group: list[tuple[Callable[[LedgerTx], Any], Future]]) -> None:
        """Several units, one transaction, one sync: each in a SAVEPOINT, so one failing rolls back alone."""
        outcomes: list[tuple[Future, bool, Any]] = []
        happened: set[str] = set()
        programs: set[str] = set()
        started = time.perf_counter()
        try:
            self._keep_file()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for fn, future in group:
                    tx = LedgerTx(conn, self._programs | programs, self._seqs)
                    conn.execute("SAVEPOINT unit")
                    try:
                        result = fn(tx)
                    except Exception as exc:
                        self._seqs.forget()
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                        outcomes.append((future, False, exc))
                        continue
                    conn.execute("RELEASE unit")
                    outcomes.append((future, True, result))
                    happened |= tx.happened
                    programs |= tx.programs
                conn.execute("COMMIT")
            except BaseException:
                self._seqs.forget()
                rollback(conn)
                raise
            finally:
                self._took(time.perf_counter() - started)
        except BaseException as exc:  # nothing of the group is durable: every caller hears so
            self._note_failure(exc)
            refused = self._refused(exc)
            for _, future in group:
                if not future.done():
                    future.set_exception(refused)
            return
        self.write_failure = None
        for _, ok, value in outcomes:
            if not ok:
                self._note_failure(value)
        self.commits += 1
        self.units += sum(1 for _, ok, _ in outcomes if ok)
        self._programs |= programs
        self._announce(happened)
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(self._refused(value))

    def _took(self, seconds: float) -> None:
        """A unit (or group) took ``seconds``: the median of the last three is what the next one is
        expected to take, so a disk that has turned slow sends units to the writer thread after two
        slow ones, while one slow unit alone (a WAL checkpoint, a collection) does not."""
        self._last3 = (self._last3[1], self._last3[2], seconds)

    def _note_failure(self, exc: BaseException) -> None:
        if isinstance(exc, sqlite3.OperationalError):  # SQLite itself (disk full, I/O error): health goes red
            self.write_failure = str(exc)
        elif isinstance(exc, WriteRefused):
            self.write_failure = exc.detail

    def _keep_file(self, wal: bool = False) -> None:
        """Before a unit, on the thread that runs units: ledger.db is still the file posd opened. One
        deleted or moved away while posd runs (its WAL too) would take every sale recorded after it
        into a file no restart finds: it is written back from the connection that still holds it, and
        posd goes on with that. Another file put in its place (a backup restored without stopping
        posd) is not written over: writes are refused (WriteRefused) until posd is restarted on it."""
        if self.replaced is None and not self._reopen and (change := self._watch.changed(wal)) is None:
            return
        moved = self.replaced is None and self._watch.folder_moved()
        if self.replaced is None and not moved and (self._reopen or change == "gone"):
            self._write_back()
            return
        if self.replaced is None:
            self._refuse_from_now(moved)
        raise WriteRefused(False, self.replaced)

    def _refuse_from_now(self, moved: bool) -> None:
        """Another file where ledger.db was, or the storage folder moved: no write goes anywhere until
        posd is restarted. A new file at the path (a backup put back while posd ran) may lack sales posd
        answered since: the open ledger is written beside it first, so none is lost."""
        if moved:
            self.replaced = (f"the storage folder {self.path.parent} was moved or renamed while posd ran, with "
                             "ledger.db in it: nothing more is written; restart posd on the folder it is to use")
            log.error("%s", self.replaced, extra={"event": "ledger.replaced"})
            return
        kept = self.path.with_name(f"{self.path.name}.open-copy-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            write_back(self._conn, kept)
            said = f"posd's own ledger, with every sale it answered, is kept as {kept.name}"
        except (OSError, sqlite3.Error) as exc:
            said = f"posd's own ledger could not be kept beside it ({exc})"
        self.replaced = (f"{self.path} was replaced by another file while posd ran: nothing is written to either; "
                         f"{said}: restart posd on the one it is to use")
        log.error("%s", self.replaced, extra={"event": "ledger.replaced"})
        self._readers.refuse(self.replaced)

    def _write_back(self) -> None:
        """ledger.db written back from the open connection, then opened again (_keep_file). A failure
        refuses this unit and is tried again a second later, not before every sale."""
        now = time.monotonic()
        if now < self._mend_after:
            raise WriteRefused(False, self._mend_failed)
        try:
            if not self._reopen:
                log.error("%s was deleted or moved away while posd ran (its WAL, or the file): writing it back "
                          "from the open ledger, nothing lost. Stop posd before moving ledger.db "
                          "(docs/install.md)", self.path, extra={"event": "ledger.written_back"})
                write_back(self._conn, self.path)
                self._watch.reset()
                self._reopen = True  # the file at the path is posd's own now: open it, whatever comes next
            conn = connect(self.path, durable=True)
        except (OSError, sqlite3.Error) as exc:
            self._mend_after = now + 1.0
            self._mend_failed = (f"ledger.db was deleted while posd ran and could not be written back ({exc}); "
                                 "tried again in a second: free the disk, or restart posd once the folder is usable")
            raise WriteRefused(False, self._mend_failed) from exc
        self._conn.close()
        self._conn = conn
        self._reopen = False
        self._readers.renew()
        self.write_failure = None  # the refusals in the gap said why; sales are recorded again

    def keep_file(self) -> None:
        """The same check as before a unit, WAL included, while no unit runs (an idle lane): the daemon
        asks every second. A unit running checks for itself."""
        if self._running.acquire(blocking=False):
            try:
                if not self._closed:
                    self._keep_file(wal=True)
            except WriteRefused as exc:
                self._note_failure(exc)
            finally:
                self._running.release()

    @staticmethod
    def _refused(exc: BaseException) -> BaseException:
        """What the caller hears: a full disk or a failed write as a WriteRefused (one line in the
        log, a 503 at the API), anything else as it was raised."""
        refused = write_refused(exc)
        if refused is None:
            return exc
        log.error("ledger write refused, nothing of it kept: %s", refused.detail)
        refused.__cause__ = exc
        return refused

    def submit(self, fn: Callable[[LedgerTx], T]) -> Future[T]:
        future: Future[T] = Future()
        self._enqueue(fn, future)
        return future

    def herald(self) -> Herald:
        """A unit that will be queued in moments (on the event loop: see Herald)."""
        return Herald(self)

    def _enqueue(self, fn: Callable[[LedgerTx], Any], future: Future | _LoopFuture) -> None:
        herald = _HERALDED.get()
        if herald is not None:
            herald.arrived()
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
                self._writer.start()
            self._queue.put((fn, future, herald is not None))

    def write(self, fn: Callable[[LedgerTx], T]) -> T:
        """Blocking write, for threads other than the event loop's."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[LedgerTx], T]) -> T:
        """A write awaited on the event loop: run here and now when it would run alone anyway and the
        recent units were quick (see the module's text); else on the writer thread, which hands the
        outcome straight to the loop (one call_soon_threadsafe), without a thread-safe Future chained
        to an asyncio one in between."""
        inline = self._inline(fn)
        if inline is not None:
            return inline.result()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(fn, _LoopFuture(waiter))
        return await waiter

    def _inline(self, fn: Callable[[LedgerTx], Any]) -> _Inline | None:
        """``fn`` run on this thread when the writer would have run it alone: nothing queued or being
        run, no other unit heralded, the recent units quick. None when it is the writer's to run."""
        herald = _HERALDED.get()
        mine = 1 if herald is not None and herald._open else 0
        if sorted(self._last3)[1] >= self.inline_unit_s or self._coming != mine or not self._queue.empty():
            return None
        if not self._running.acquire(blocking=False):  # the writer has a unit: this one may join it
            return None
        try:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            if self.replaced is not None or self._reopen or self._watch.changed(wal=False) is not None:
                return None  # a write-back (a full copy) is the writer thread's to make, never the loop's
            if herald is not None:
                herald.arrived()
            outcome = _Inline()
            self._run_alone(fn, outcome, checked=True)
            self._in_step = False  # the last commit held one unit
        finally:
            self._running.release()
        return outcome

    # -- announcements ----------------------------------------------------
    def subscribe(self, topic: str, callback: Callable[[], None]) -> None:
        """Call `callback` (on the thread that committed: the writer's, or the event loop's for a lone
        unit, so it must be quick and never wait) after every commit that did `topic`."""
        if topic not in self._subscribers:
            raise ValueError(f"unknown ledger topic {topic!r}; known: {', '.join(TOPICS)}")
        self._subscribers[topic].append(callback)

    def _announce(self, topics: Iterable[str]) -> None:
        for topic in topics:
            for callback in self._subscribers[topic]:
                try:
                    callback()
                except Exception:  # a listener's bug must not fail a committed write
                    log.exception("ledger %s listener failed", topic)

    # -- reading ----------------------------------------------------------
    def view(self) -> LedgerView:
        """Reads on this thread's own connection."""
        return LedgerView(self._readers.get())

    def close(self) -> None:
        with self._writer_lock:
            self._closed = True
            writer = self._writer
        if writer is not None:
            self._queue.put(_STOP)  # after every unit already queued
            writer.join()
        with self._running:  # a unit the loop is running ends first
            try:  # deleted a moment before a stop: written back first, or its last sales go with posd
                if self.replaced is None:
                    self._keep_file(wal=True)
            except (WriteRefused, OSError, sqlite3.Error) as exc:
                log.error("ledger.db could not be written back before posd stopped: %s", exc)
            self._readers.close()
            self._conn.close()
