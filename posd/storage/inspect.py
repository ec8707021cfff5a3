"""Looking at ledger.db and cache.db from outside the daemon, and copying the ledger while it runs.

`posd doctor` opens both files read-only (never a write, never a migration: a
damaged ledger must stay exactly as it is) and `posd ledger backup` copies
ledger.db through SQLite's online backup API, which takes a consistent
snapshot while the daemon keeps writing (WAL readers never block the writer).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pwd
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from posd.storage.db import StorageError, database_size, parse_iso, quick_check, sync_to_disk, utcnow
from posd.storage.identity import SyncIdentity
from posd.storage.outbox import Quarantined, acknowledged_seq, quarantined_after, quarantined_events

log = logging.getLogger("posd.storage")


@dataclass(frozen=True)
class DbCheck:
    path: Path
    exists: bool
    size: int = 0  # the file with its -wal and -shm, bytes (database_size)
    problem: str | None = None  # quick_check's complaint, or SQLite's when it says the file is damaged
    unreadable: str | None = None  # why it could not be read (nothing is known of its pages: not damage)
    denied: bool = False  # ... because this process may not: another user (posd, root) may


@dataclass(frozen=True)
class LedgerStats:
    events: int
    events_recent: int  # appended in the last `days` days
    days: int
    pending: int
    oldest_pending_at: datetime | None
    quarantined: int
    last_sale_at: str | None
    first_recent_at: datetime | None = None  # the oldest of the recent events: a young ledger's window
    # The pages the rows fill: the database's pages in use (its -wal included, free pages not) beyond
    # those of an empty ledger (the header page and a root page per table and index).
    row_bytes: int = 0
    sync_lane_id: str | None = None  # the lane id the ledger syncs under, once claimed at central
    quarantined_open: int = 0  # quarantined and not acknowledged (outbox.ACK_FILE)


@dataclass(frozen=True)
class CacheStats:
    members: int
    members_synced_at: str | None
    program_version: str | None
    program_body: str | None = None  # the program document as central sent it (JSON)


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. On a read-only file system (a disk the kernel remounted read-only after
    errors) or a full one (when a backup matters most) SQLite cannot make the -shm a WAL database is
    read with, and cannot open it; then, with no -wal beside the file holding commits (posd stopped
    cleanly), the file alone is the whole database, so it is opened as immutable, and the empty -wal
    and -shm the failed open left are removed. A -wal with commits would not be read by an immutable
    open: that open is left to fail."""
    sides = [Path(f"{path.resolve()}{side}") for side in ("-wal", "-shm")]
    there = [side.exists() for side in sides]
    commits = there[0] and sides[0].stat().st_size > 0
    conn = _connect_readonly(f"file:{path}?mode=ro")
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if not (name == "SQLITE_CANTOPEN" or name.startswith("SQLITE_IOERR_SHM")) or commits \
                or not _frozen_or_full(path):
            return conn  # its readers meet the same error, and say it as they do
        conn.close()
        for side, was in zip(sides, there, strict=True):
            if not was and side.exists() and side.stat().st_size <= 4096:  # this open's own, empty
                side.unlink(missing_ok=True)
        return _connect_readonly(f"file:{path}?mode=ro&immutable=1")
    return conn


def _connect_readonly(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
    conn.row_factory = sqlite3.Row
    return conn


def _frozen_or_full(path: Path) -> bool:
    """Is the file on a file system mounted read-only, or with no room left (where SQLite looks for
    the -wal: beside the file a link names)?"""
    try:
        st = os.statvfs(path.resolve().parent)
    except OSError:
        return False
    return bool(st.f_flag & os.ST_RDONLY) or st.f_bavail == 0


# What SQLite answers when the file itself is damaged. Any other error opening or reading it (a
# permission, a folder where the -shm cannot be made, a busy or failing disk) says nothing about its
# pages: never reported as damage, whose remedy (restore the last backup) loses the sales since.
DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # with their extended codes (SQLITE_CORRUPT_INDEX, ...)
DENIED = ("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")


class CannotRead(StorageError):
    """A database this process could not read: ``denied`` when another user (posd, root) might."""

    def __init__(self, path: Path, reason: str, *, denied: bool):
        self.path, self.reason, self.denied = path, reason, denied
        super().__init__(f"cannot read {path} as {running_user()}: {reason}"
                         + ("; run it as root or the posd user" if denied else ""))


def running_user() -> str:
    """Who runs this process, by name (its uid when it has none): what it may not read, it says as whom."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _may_read(path: Path) -> bool:
    """Does ``path`` exist? CannotRead when this process may not open it or its -wal or -shm."""
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        try:  # O_NONBLOCK: a fifo under the name does not hang the check
            os.close(os.open(name, os.O_RDONLY | os.O_NONBLOCK))
        except FileNotFoundError:
            if name == str(path):
                return False
        except PermissionError:
            raise CannotRead(path, "permission denied", denied=True) from None
        except OSError as exc:
            raise CannotRead(path, exc.strerror or str(exc), denied=False) from None
    return True


def _sqlite_problem(path: Path, exc: sqlite3.Error) -> str:
    """SQLite's complaint when it says the file is damaged; CannotRead for any other error."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(DAMAGED):
        return str(exc)
    raise CannotRead(path, str(exc), denied=name.startswith(DENIED)) from exc


def _checked(conn: sqlite3.Connection, path: Path) -> str | None:
    """quick_check's complaint, None when sound; CannotRead when the file could not be read at all."""
    return quick_check(conn, lambda exc: _sqlite_problem(path, exc))


def _must_be_ledger(conn: sqlite3.Connection, path: Path) -> None:
    """StorageError when the file at ``path`` is no ledger posd made: an empty file is a history lost
    and another database under the name is no history at all; said as posd run and doctor say it,
    never as "no such table" from deep inside."""
    from posd.storage.ledger import history_left
    from posd.storage.schema import ledger_migrations

    history_left(path)
    ledger_migrations.ours(conn)


def check_db(path: Path) -> DbCheck:
    """Exists? How big (with its -wal and -shm)? Does PRAGMA quick_check pass? Read-only throughout.
    A file this process cannot read is ``unreadable`` (``denied`` for a permission), never damaged."""
    try:
        if not _may_read(path):
            return DbCheck(path, False)
        size = database_size(path) or 0
        try:
            conn = open_readonly(path)
        except sqlite3.Error as exc:
            return DbCheck(path, True, size, _sqlite_problem(path, exc))
        try:
            return DbCheck(path, True, size, _checked(conn, path))
        finally:
            conn.close()
    except CannotRead as exc:
        return DbCheck(path, True, database_size(path) or 0, unreadable=exc.reason, denied=exc.denied)


def ledger_stats(path: Path, days: int = 7) -> LedgerStats:
    since = (utcnow() - timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    conn = open_readonly(path)
    try:
        events = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
        recent, first_recent = conn.execute("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE created_at >= ?",
                                            (since,)).fetchone()
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        first = conn.execute("SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1").fetchone()
        quarantined = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'quarantined'").fetchone()[0]
        still_open = quarantined_after(conn, acknowledged_seq(path.parent, conn)) if quarantined else 0
        sale = conn.execute("SELECT recorded_at FROM transactions ORDER BY rowid DESC LIMIT 1").fetchone()
        trees = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE rootpage > 0").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        used = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        claimed = conn.execute("SELECT value FROM meta WHERE key = ?", (SyncIdentity.META_KEY,)).fetchone()
    finally:
        conn.close()
    return LedgerStats(events=events, events_recent=recent, days=days, pending=pending,
                       oldest_pending_at=parse_iso(first[0]) if first else None, quarantined=quarantined,
                       last_sale_at=sale[0] if sale else None,
                       first_recent_at=parse_iso(first_recent) if first_recent else None,
                       row_bytes=max(0, used - 1 - trees) * page, sync_lane_id=claimed[0] if claimed else None,
                       quarantined_open=still_open)


def quarantined(path: Path) -> tuple[list[Quarantined], int]:
    """Every quarantined event of a ledger.db, newest first, and the seq acknowledged for this ledger
    (outbox.acknowledged_seq) (read-only: the daemon may run); a StorageError naming the file when it
    cannot be read (CannotRead when this process may not, or it could not be opened: nothing is then
    said of its pages)."""
    if not _may_read(path):
        raise FileNotFoundError(errno.ENOENT, "does not exist", str(path))
    try:
        conn = open_readonly(path)
        try:
            problem = _checked(conn, path)  # a damaged ledger's answer would be no answer: say so instead
            if problem is not None:
                raise StorageError(f"{path} failed its integrity check ({problem}); its events cannot be listed")
            _must_be_ledger(conn, path)
            return quarantined_events(conn), acknowledged_seq(path.parent, conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        _sqlite_problem(path, exc)
        raise StorageError(f"{path}: {exc}") from exc


def printer_answered_at(path: Path, address: str) -> str | None:
    """When ledger.db at ``path`` saw the printer at ``address`` first answer its status, None when it
    never did or cannot be read (read-only: for posd print-test and doctor, while posd may run)."""
    from posd.storage.meta import printer_answered_key, read

    try:
        if not _may_read(path):
            return None
        conn = open_readonly(path)
        try:
            return read(conn, printer_answered_key(address))
        finally:
            conn.close()
    except (StorageError, sqlite3.Error):  # no meta table, damaged, not readable: doctor says so elsewhere
        return None


def cache_stats(path: Path) -> CacheStats:
    conn = open_readonly(path)
    try:
        members = conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
        synced = conn.execute("SELECT value FROM sync_state WHERE key = 'members_synced_at'").fetchone()
        program = conn.execute("SELECT version, body FROM program WHERE id = 1").fetchone()
    finally:
        conn.close()
    return CacheStats(members, synced[0] if synced else None, program[0] if program else None,
                      program[1] if program else None)


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    last_seq: int
    pages: int


class BackupGate:
    """The steps of a backup that put a name in the copy's folder (the copy created and opened, its
    journal, the copy moved into place), each one at a time with the backup's being called off.
    ``posd ledger backup`` copies on a thread of its own so that a stop signal is taken at once; the
    thread runs on until the process ends. Once ``close()`` returns, the backup puts no file in the
    folder: its partial copy can be removed and stays removed (a copy opened again after its removal
    was left behind, ledger-sized)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def step(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StorageError("the backup was stopped")
            yield

    def close(self) -> None:
        """Wait for a step under way, then refuse every later one."""
        with self._lock:
            self._closed = True


def backup_ledger(source: Path, dest: Path, *, replace: bool = False, gate: BackupGate | None = None) -> Backup:
    """A consistent copy of ``source`` at ``dest``, taken while the daemon may be writing.

    SQLite's online backup copies every page in one step, inside one read
    transaction: in WAL mode the daemon's writer is never held, and the copy is
    the ledger as it was when that transaction began, one committed state
    (copying in steps would start over whenever a sale is written between
    them, and a busy lane could starve it). It is written beside ``dest``, created
    0600 (the ledger holds member names: owner only, whatever the umask), checked
    (``quick_check``), synced to disk and only then put in place: a failed or
    interrupted backup never leaves a half-copied file under the name. An existing
    ``dest`` is replaced only with ``replace`` (FileExistsError otherwise, also when
    it appears during the copy). Errors name the file they are about: OSError
    carries it, a StorageError's message starts with it.
    """
    if not _may_read(source):  # CannotRead when this process may not: never "does not exist"
        raise FileNotFoundError(errno.ENOENT, "does not exist", str(source))
    if not dest.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(dest.parent))
    if dest.exists() and not dest.is_file():  # a folder, a device (/dev/full), a pipe: never replaced
        raise OSError(errno.EISDIR if dest.is_dir() else errno.EINVAL,
                      "is a folder: name the copy's file" if dest.is_dir() else
                      "is not a regular file: a backup only replaces a file", str(dest))
    if not replace and dest.exists():
        raise FileExistsError(errno.EEXIST, "exists (--force replaces it)", str(dest))
    partial = partial_of(dest)
    _remove_stale_partials(dest.parent)
    partial.unlink(missing_ok=True)
    gate = gate or BackupGate()
    held = -1
    try:
        try:  # an empty file is an empty database; SQLite gives its journal the file's mode
            with gate.step():
                held = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:  # named as the user wrote it, not as the hidden partial file
            raise OSError(exc.errno, exc.strerror, str(dest)) from exc
        fcntl.flock(held, fcntl.LOCK_EX)  # while it is held, no other backup takes this copy for a dead one's
        done = _backup(source, partial, dest, gate)
        with gate.step():
            sync_to_disk(partial)
            _put_in_place(partial, dest, replace)
        sync_to_disk(dest.parent)
    except BaseException:
        remove_partial(dest)
        raise
    finally:
        if held >= 0:
            os.close(held)
    return Backup(dest, dest.stat().st_size, done.last_seq, done.pages)


def _remove_stale_partials(folder: Path) -> None:
    """The partial copies of backups killed with SIGKILL (or a power cut) in ``folder``: a ledger's
    size each, left hidden where nothing else removes them. One no backup holds any more is removed;
    a running backup's is left to it."""
    try:
        found = [p for p in folder.glob(".*.partial") if p.is_file() and not p.is_symlink()]
    except OSError:
        return
    for stale in found:
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            head = os.read(fd, 16)
            if head not in (b"", b"SQLite format 3\x00"):  # not a copy posd made
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a backup running now holds it
                continue
            for leftover in ("", "-journal"):
                Path(f"{stale}{leftover}").unlink(missing_ok=True)
            log.info("removed %s, the partial copy of a backup that was stopped", stale)
        finally:
            os.close(fd)


def partial_of(dest: Path) -> Path:
    """The hidden file a backup to ``dest`` is written in until it is whole."""
    return dest.with_name(f".{dest.name}.partial")


def remove_partial(dest: Path) -> None:
    """Remove what a backup to ``dest`` cut short left: its partial copy and SQLite's files beside it."""
    for leftover in ("", "-journal", "-wal", "-shm"):
        Path(f"{partial_of(dest)}{leftover}").unlink(missing_ok=True)


def _backup(source: Path, partial: Path, dest: Path, gate: BackupGate) -> Backup:
    try:
        src = open_readonly(source)
    except sqlite3.Error as exc:
        raise StorageError(f"{source}: {_sqlite_problem(source, exc)}") from exc
    try:
        try:  # can this process read it at all? CannotRead if not: not the copy's fault, not damage
            _must_be_ledger(src, source)  # an empty file copied would be a backup of nothing, taken as whole
        except sqlite3.Error as exc:
            raise StorageError(f"{source}: {_sqlite_problem(source, exc)}") from exc
        with gate.step():  # the file made above, never made again (mode=rw): it may be gone, the backup stopped
            out = sqlite3.connect(partial.resolve().as_uri() + "?mode=rw", uri=True, isolation_level=None)
        try:
            # No journal file beside the copy while its pages go in: the copy is thrown away whole if
            # anything cuts it short, and the long step puts no name in the folder (the gate's promise).
            out.execute("PRAGMA journal_mode=MEMORY")
            src.backup(out)  # all pages in one step: one read transaction, the writer is never held
            with gate.step():
                out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
                out.execute("PRAGMA journal_mode=MEMORY")
                # Print jobs still waiting in the copy were printed by the ledger it was taken from, moments
                # after: restored, they would print again (a voucher slip for the next customer). Expired.
                if out.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'print_jobs'").fetchone():
                    out.execute("UPDATE print_jobs SET state = 'expired', last_error = 'ttl' "
                                "WHERE state IN ('queued', 'printing')")  # (an old ledger may have no print queue)
            problem = quick_check(out)
            if problem is not None:
                raise StorageError(f"{dest}: the copy failed its integrity check: {problem}")
            last_seq = out.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
            pages = out.execute("PRAGMA page_count").fetchone()[0]
        finally:
            out.close()
    except sqlite3.Error as exc:  # reading the ledger or writing the copy: both named
        raise StorageError(f"{source} -> {dest}: {exc}") from exc
    finally:
        src.close()
    return Backup(partial, 0, last_seq, pages)


def _put_in_place(partial: Path, dest: Path, replace: bool) -> None:
    if replace:
        os.replace(partial, dest)
        return
    try:
        os.link(partial, dest)  # fails if dest exists: never replaces one that appeared meanwhile
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists (--force replaces it)", str(dest)) from None
    except OSError:  # a file system without hard links
        if dest.exists():
            raise FileExistsError(errno.EEXIST, "exists (--force replaces it)", str(dest)) from None
        os.replace(partial, dest)
        return
    partial.unlink()
