"""SQLite connections and registered migrations.

Two files: ledger.db is precious (WAL, synchronous=FULL: a commit survives a
power cut), cache.db is rebuildable from central (synchronous=NORMAL). Each
schema change is a registered function recorded in `_migrations`, applied in
order inside one transaction, so a half-migrated file cannot exist.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

Migration = Callable[[sqlite3.Connection], None]


class StorageError(Exception):
    """A database that posd must not touch further (corrupt, newer schema). ``code`` and ``params``
    name the refusal for those who report it in their own words (doctor), where it has a name."""

    def __init__(self, message: str, code: str = "", **params: Any):
        super().__init__(message)
        self.code, self.params = code, params


SQLITE_IOERR, SQLITE_FULL = 10, 13
# What a read raises when a database file is gone or unusable for now (``unavailable`` tells which of
# them is that, and not a bug): named here so that code beyond posd.storage can catch it without SQL.
ReadFailed = sqlite3.OperationalError


class StorageUnavailable(Exception):
    """The storage folder cannot be used now (a full disk, a failing one, no permission), though
    nothing says its files are damaged: not a StorageError, whose advice (restore from backup) would
    be wrong here. ``lasting``: store IT must act (permissions), else it may pass by itself (space
    freed), so a service manager should start posd again."""

    def __init__(self, message: str, *, lasting: bool):
        super().__init__(message)
        self.lasting = lasting


SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_CANTOPEN = 3, 5, 6, 8, 14


def unavailable(exc: BaseException, path: Path) -> StorageUnavailable | None:
    """The StorageUnavailable an SQLite error opening ``path`` stands for; None when it may be the
    file itself (corrupt, not a database)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    if code == SQLITE_FULL or "database or disk is full" in text:
        why, lasting = "the disk is full; posd starts once space is freed", False
    elif code == SQLITE_IOERR or "disk I/O error" in text:
        why, lasting = ("the disk failed a read or a write (full, or failing: `posd doctor` tells which)", False)
    elif code in (SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN) or "unable to open" in text or "readonly" in text:
        why, lasting = (f"it cannot be opened for writing: the folder {path.parent} and its files must be "
                        "writable by the user posd runs as", True)
    elif code in (SQLITE_BUSY, SQLITE_LOCKED):
        why, lasting = "another process holds it locked", False
    else:
        return None
    return StorageUnavailable(f"{path}: {why} (storage.dir; SQLite said: {text}); the file was left untouched",
                              lasting=lasting)


LOCK_FILE = "posd.lock"


def hold_folder(folder: Path) -> tuple[int, int]:
    """An exclusive lock on the storage folder, kept until the process ends or ``release_folder``: two
    posd on one ledger would record sales under one seq counter, requeue each other's print jobs and
    print slips twice. The folder itself is locked, and ``posd.lock`` (holding the holder's pid, for
    people): that file looks like a stale pid file and may be deleted while posd runs, and a second
    posd would have locked a new one. StorageUnavailable when another process holds either (not
    lasting: a service manager may try again once the other one stopped)."""
    held: list[int] = []
    try:
        for path, flags in ((folder, os.O_RDONLY | os.O_DIRECTORY), (folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)):
            held.append(os.open(path, flags | os.O_CLOEXEC, 0o600))
            for wait in (0.05, 0.1, 0.0):  # `posd scan` asks with a shared lock for a moment (folder_held)
                try:
                    fcntl.flock(held[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        raise
                    time.sleep(wait)
    except BlockingIOError:
        try:
            holder = (folder / LOCK_FILE).read_text("ascii", "replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        for fd in held:
            os.close(fd)
        raise StorageUnavailable(
            f"{folder}: another posd (pid {holder}) is running on this storage folder (storage.dir); two "
            "would record sales into one ledger. Stop it first (`systemctl stop posd`), or give this one "
            "a storage.dir of its own", lasting=False) from None
    except BaseException:
        for fd in held:
            os.close(fd)
        raise
    folder_fd, fd = held
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return folder_fd, fd


def folder_held(folder: Path) -> bool | None:
    """Does a running posd hold the storage folder (hold_folder)? None when this user cannot tell."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # a lock taken here goes with it


def release_folder(held: tuple[int, int]) -> None:
    for fd in held:  # the locks go with the descriptors; the file stays (unlinking it would race a new holder)
        os.close(fd)


class WriteRefused(OSError):
    """SQLite could not write (the disk is full, or it failed an I/O): the unit rolled back whole.

    ``full`` says which: a full disk recovers by itself once space is freed; an I/O error wants
    store IT. Nothing of the unit is durable, so the caller may retry the same request. An
    OSError (ENOSPC, EIO), so code that knows nothing of SQLite can tell a disk from a bug."""

    def __init__(self, full: bool, detail: str):
        super().__init__(errno.ENOSPC if full else errno.EIO, detail)
        self.full, self.detail = full, detail



def write_refused(exc: BaseException) -> WriteRefused | None:
    """The WriteRefused an exception from SQLite stands for, or None when it is something else
    (a constraint, a bug: those stay what they are)."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
    text = str(exc)
    if code == SQLITE_FULL or "database or disk is full" in text:
        return WriteRefused(True, f"the disk is full ({text})")
    if code == SQLITE_IOERR or "disk I/O error" in text:
        return WriteRefused(False, f"the disk failed a write ({text})")
    return None


def refusal_of(exc: BaseException, path: Path) -> str | None:
    """What the storage refusing a write at ``path`` says, for a log line: the disk full or failing (a
    WriteRefused), the file read-only or its folder not ours (what ``unavailable`` names). None for
    anything else: a bug, whose traceback is wanted."""
    if isinstance(exc, WriteRefused):
        return exc.detail
    if unavailable(exc, path) is not None:
        return f"SQLite said: {exc}"
    return None


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a transaction after a failure. SQLite may already have rolled it
    back itself (a COMMIT that failed on a full disk or an I/O error): a second ROLLBACK would
    raise "no transaction is active" and hide the error that matters."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class Migrations:
    def __init__(self, name: str):
        self.name = name
        self._steps: list[tuple[str, Migration]] = []

    def __call__(self, fn: Migration) -> Migration:
        self._steps.append((fn.__name__, fn))
        return fn

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self._steps]

    def ours(self, conn: sqlite3.Connection) -> bool:
        """Whether the file is one posd made as this kind (False: a new, empty one). StorageError
        ``foreign`` when it holds another database (cache.db restored as ledger.db, another program's
        file under the name): migrating it would write posd's tables into that database and take it
        for a history."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables - {"_migrations"}:
            return "_migrations" in tables
        if "_migrations" in tables and {r[0] for r in conn.execute("SELECT name FROM _migrations")} & set(self.names):
            return True
        shown = sorted(tables - {"_migrations"})
        listed = ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "")
        raise StorageError(f"{self.name} was not made by posd: it holds another database's tables ({listed}), a file "
                           f"copied or restored under its name. Put the right {self.name} back (from backup), or move "
                           f"this one aside: posd then starts a new {self.name}", "foreign", tables=listed)

    def done(self, conn: sqlite3.Connection) -> set[str]:
        """The migrations the file has had. StorageError when some are not this posd's: a newer
        version wrote it, and this one must not touch it; or when it is another database (``ours``)."""
        if not self.ours(conn):
            return set()
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
        unknown = sorted(done - set(self.names))
        if unknown:
            raise StorageError(
                f"{self.name} has migrations this posd does not know ({', '.join(unknown)}): "
                "it was written by a newer version; refusing to touch it", "newer", migrations=", ".join(unknown))
        return done

    def apply(self, conn: sqlite3.Connection) -> list[str]:
        done = self.done(conn)  # before anything is written: never into a newer posd's file or another's
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = []
        for name, fn in self._steps:
            if name in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                fn(conn)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, utcnow_iso())
                )
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            applied.append(name)
        return applied


def execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run several statements inside the caller's transaction.

    sqlite3's executescript() COMMITs first, which would make a migration
    non-atomic; this splits on complete statements (triggers included) instead.
    """
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement at the end of a script: {buf.strip()[:60]}")


def connect(path: Path, *, durable: bool, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode: we issue BEGIN/COMMIT ourselves."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=5.0)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


class _Unknown(Exception):
    """A file's identity could not be read (a permission, a failing mount): nothing can be said."""


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unknown() from exc
    return st.st_dev, st.st_ino


class FileWatch:
    """Is a database file (and its WAL) still the one posd opened? Someone may delete or move it while
    posd runs (store IT tidying the folder, an archive without stopping posd): SQLite then goes on
    writing into the file it holds open, which no one will find again, and new connections fail."""

    def __init__(self, path: Path):
        self.path, self.wal = path, Path(f"{path}-wal")
        try:
            self.folder = _file_id(path.parent)  # the storage folder posd holds (hold_folder)
        except _Unknown:
            self.folder = None
        self.reset()

    def folder_moved(self) -> bool:
        """Is the folder at the path another one now (the storage folder moved or renamed while posd runs,
        a new one made where it was)? Then posd's files went with it: nothing is to be written back here."""
        try:
            return _file_id(self.path.parent) != self.folder
        except _Unknown:
            return False

    def reset(self) -> None:
        try:
            self.ids = _file_id(self.path), _file_id(self.wal)
        except _Unknown:
            self.ids = None, None

    def changed(self, wal: bool = True) -> str | None:
        """None while the files are ours (or nothing can be told: a stat that fails otherwise than "no
        such file"); "gone" when the file (or its WAL) is missing now, "replaced" when another file is
        where it was. ``wal``: check the WAL too (two stat calls, not one)."""
        try:
            now = _file_id(self.path)
            if now != self.ids[0]:
                return "gone" if now is None else "replaced"
            if wal:
                if self.ids[1] is None:  # no WAL when it was opened: the one SQLite makes is ours
                    self.ids = now, _file_id(self.wal)
                elif _file_id(self.wal) != self.ids[1]:
                    return "gone"  # the database without its WAL misses every commit since the last checkpoint
        except _Unknown:
            return None
        return None


def sync_to_disk(path: Path) -> None:
    """fsync a file, or a folder (its entries: a rename into it), by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spare_of(path: Path) -> Path:
    """Where write_back writes a database before renaming it into place."""
    return path.with_name(f".{path.name}.writing-back")


def write_back(conn: sqlite3.Connection, path: Path) -> None:
    """Write the database ``conn`` holds open to ``path`` again, whole and durable (SQLite's online
    backup, into a file beside it, then renamed over): what ``path`` holds now, and its WAL and
    shared-memory files, are replaced. ``conn`` still reads the file that was deleted or moved.

    Its WAL is checkpointed into that file first: a ledger.db moved aside without its -wal is then
    whole where it went, though the -wal left here is replaced. Raises before the rename (nothing at
    ``path`` changed) or returns with the copy in place."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass  # a reader holds the WAL: the copy below is whole all the same
    spare = spare_of(path)
    for leftover in (spare, Path(f"{spare}-journal")):
        leftover.unlink(missing_ok=True)
    target = sqlite3.connect(spare, isolation_level=None)
    try:
        conn.backup(target)
    finally:
        target.close()
    sync_to_disk(spare)
    for side in ("-wal", "-shm"):  # another database's: read beside the new file, they would be replayed into it
        Path(f"{path}{side}").unlink(missing_ok=True)
    os.replace(spare, path)
    try:  # in place now, whatever the folder's sync says: the caller goes on with it
        sync_to_disk(path.parent)
    except OSError:
        pass


class ThreadReaders:
    """A read-only connection per thread (WAL lets readers run beside the writer).

    Its own lock, never the writer's: a lookup must not wait for a refresh.
    """

    def __init__(self, path: Path, *, durable: bool):
        self.path, self.durable = path, durable
        self._local = threading.local()
        self.generation = 0
        self.refused: str | None = None
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.generation != self.generation:
            if self.refused:  # what is at the path is not posd's file: never read as if it were
                raise sqlite3.OperationalError(f"unable to open database file: {self.refused}")
            generation = self.generation
            fresh = connect(self.path, durable=self.durable, readonly=True)
            with self._lock:
                if conn is not None:  # this thread's, on the file written back over: its disk space goes
                    self._all.remove(conn)
                    conn.close()
                self._all.append(fresh)
            conn = self._local.conn = fresh
            self._local.generation = generation
        return conn

    def renew(self) -> None:
        """The file was written back (write_back): every thread opens it again at its next read."""
        self.generation += 1

    def refuse(self, reason: str) -> None:
        """Another file is where posd's was: a thread with no connection yet is refused (OperationalError,
        "unable to open": 503 storage_failed at the API), never given that file."""
        self.refused = reason

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def member_is(column: str, member_id: str, aliases: tuple[str, ...] = (), param: str = "?") -> tuple[str, str]:
    """(SQL condition, its parameter) for rows of a member: its own id, and the provisional ids central
    mapped to it (enrolled at a lane, then named by central). Rare, so the common case keeps the
    plain indexed equality."""
    if not aliases:
        return f"{column} = {param}", member_id
    return f"{column} IN (SELECT value FROM json_each({param}))", json.dumps([member_id, *aliases])


def quick_check(conn: sqlite3.Connection,
                complaint: Callable[[sqlite3.DatabaseError], str] = str) -> str | None:
    """None when the file is sound, else SQLite's first complaint (``complaint`` of the error when the
    check could not run; it may raise instead: posd.storage.inspect tells damage from a refusal)."""
    try:
        row = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as exc:
        return complaint(exc)
    return None if row and row[0] == "ok" else (row[0] if row else "no answer")


# In WAL mode the newest commits live in -wal until a checkpoint copies them into the file itself.
SIDE_FILES = ("-wal", "-shm")


class _CheckAhead:
    """A file's quick_check run on a thread of its own, on a read-only connection, before the file is
    opened: SQLite leaves the interpreter while it reads the pages, so the check of a large cache.db
    (about 0.3 s for a million members) runs on another core beside the daemon's imports. Its answer
    counts only for the file as it was checked: the file and its -wal, same inode, size and mtime."""

    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple | None = None
        self._problem: str | None = None
        self._thread = threading.Thread(target=self._check, name=f"check {path.name}", daemon=True)
        self._thread.start()

    def _check(self) -> None:
        before = _file_identity(self.path)
        try:
            conn = connect(self.path, durable=False, readonly=True)
            try:
                problem = quick_check(conn)
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - not opened here: the owner opens and checks it itself, and says why
            return
        if before is not None and before == _file_identity(self.path):
            self._seen, self._problem = before, problem

    def answer(self) -> tuple[str | None] | None:
        """(the check's complaint or None) while the file is still the one checked; None: check it again."""
        self._thread.join()
        if self._seen is None or self._seen != _file_identity(self.path):
            return None
        return (self._problem,)


_AHEAD: dict[str, _CheckAhead] = {}


def _file_identity(path: Path) -> tuple | None:
    """The file and its -wal as they are now (inode, size, mtime); None when there is no file to check
    there (none yet, or a folder on its path is a file or unreadable: the open that follows says why).
    An empty -wal is no -wal: opening the file (the check's read-only connection too) may create one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        wal = os.stat(f"{path}-wal")
    except OSError:
        wal = None
    return ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
            (wal.st_ino, wal.st_size, wal.st_mtime_ns) if wal is not None and wal.st_size else None)


def check_ahead(*paths: Path) -> None:
    """Start the quick_check of each of these files that exists, each on a thread of its own, for
    ``checked_file`` to take up when the file is opened (``posd run``, before its slow imports)."""
    for path in paths:
        key = os.path.abspath(path)
        if key not in _AHEAD and _file_identity(path) is not None:
            _AHEAD[key] = _CheckAhead(path)


def checked_file(path: Path, conn: sqlite3.Connection) -> str | None:
    """``quick_check(conn)`` of the file at ``path``: the answer of its ``check_ahead`` when the file
    has not changed since that check ran, else the check run now."""
    ahead = _AHEAD.pop(os.path.abspath(path), None)
    answer = ahead.answer() if ahead is not None else None
    return answer[0] if answer is not None else quick_check(conn)


def database_size(path: Path) -> int | None:
    """Bytes a database takes: the file with its -wal and -shm (health, /metrics and doctor all
    count it so). None when the file does not exist."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    for suffix in SIDE_FILES:
        try:
            size += Path(f"{path}{suffix}").stat().st_size
        except OSError:
            pass  # none yet, or checkpointed away
    return size


def compact_json(value: Any, *, sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    """Compact JSON, as every row the lane writes holds it: UTF-8 as is, or with ``ensure_ascii``
    every other character escaped (the outbox's bodies, whose length the relay counts as bytes).
    orjson: a sale encodes its answer, its outbox event and its record on the writer's thread, and
    the json module takes about ten times as long. What orjson refuses (a key that is not a string,
    an integer past 64 bits, a lone surrogate), and text to escape, go to the json module, which
    writes the same JSON. A lone surrogate cannot be stored as UTF-8 (SQLite's text): a value holding
    one is written escaped, as with ``ensure_ascii`` (a program's names reach slips and answers)."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0).decode()
        if not ensure_ascii or (text.isascii() and "\x7f" not in text):  # json escapes DEL too; orjson not
            return text
    except TypeError:  # orjson.JSONEncodeError
        pass
    text = json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"), sort_keys=sort_keys)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys)
    return text


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_iso() -> str:
    return iso(utcnow())


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
