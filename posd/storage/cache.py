"""cache.db: members and the program as central last published them.

Rebuildable by design: a corrupt cache.db is moved aside and a fresh one is
pulled from central, while ledger.db (the precious file) is never touched.
Lookups run on a per-thread read-only connection, so a scanner thread can
identify a member without a hop through the event loop.

Wallet-pass TOTP secrets from the member feed are sealed (AES-GCM, the member
id as associated data) under a key derived from the store secret, which
cache.db does not hold: a copy of the file alone (a backup, a corrupt cache
moved aside, a support bundle) reveals no secret (docs/member-tokens.md). When
that key changes the sealed secrets are dropped and the feed pulled again.

A member central deleted is removed from cache.db, after ``on_erased`` (the
daemon scrubs ledger.db's slips) has run for it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import marshal
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from posd.core.program import ProgramError, parse_program, vet_program
from posd.storage.db import (FileWatch, StorageError, ThreadReaders, checked_file, compact_json, connect, iso,
                             parse_iso, rollback, unavailable, utcnow_iso, write_back, write_refused)
from posd.storage.schema import cache_migrations

log = logging.getLogger("posd.cache")

APPLY_CHUNK = 2000  # rows per write transaction: short enough that a refresh never holds the file long

_encode = compact_json  # a snapshot encodes a million balances


# A member's row: the columns every row binds, then the optional ones, which a row binds only when
# the member has them; a row without one writes the column's default from the statement's text.
# Binding is most of what a row costs SQLite here (a value is about 0.1 us; a 1M snapshot of
# members without a birth date, offers or a wallet pass binds 4M values fewer), so the rows of a
# page are grouped by which optional columns they carry, one statement per group (MemberRows.chunk).
_MEMBER_COLUMNS = ("member_id", "display_name", "locale", "tier", "qualifying", "balances", "applied_seq", "status",
                   "updated_at")
_OPTIONAL_COLUMNS = (("birth_date", "NULL"), ("offers", "'[]'"), ("totp_secret", "NULL"),
                     ("birthday_award_year", "NULL"), ("maturing", "NULL"))


@functools.lru_cache(maxsize=None)
def upsert_member(shape: int) -> str:
    """The upsert of a member row that binds the optional columns whose bit is set in ``shape``
    (bit n: _OPTIONAL_COLUMNS[n]) and writes the others' defaults. Every column is set on a conflict."""
    columns = [*_MEMBER_COLUMNS, *(name for name, _ in _OPTIONAL_COLUMNS)]
    values = ["?"] * len(_MEMBER_COLUMNS) + ["?" if shape >> n & 1 else default
                                            for n, (_, default) in enumerate(_OPTIONAL_COLUMNS)]
    return (f"INSERT INTO members ({', '.join(columns)}) VALUES ({', '.join(values)}) ON CONFLICT (member_id) "
            f"DO UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in columns[1:])}")


_SEAL_CHECK = b"posd cache.db seal check"


def seal_key_from(store_secret: bytes) -> bytes:
    """The key sealing wallet secrets in cache.db, derived from the store secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"posd cache.db",
                info=b"wallet totp secrets v1").derive(store_secret)


@dataclass(frozen=True)
class CachedMember:
    member_id: str
    display_name: str
    locale: str | None
    tier: str | None
    qualifying: int
    balances: dict[str, int]  # confirmed by central
    applied_seq: int  # central has applied this lane's events up to this seq for the member
    status: str
    birth_date: str | None
    offers: list[dict[str, Any]] = field(default_factory=list)
    updated_at: str = ""
    aliases: tuple[str, ...] = ()  # provisional ids central mapped to this member
    provisional: bool = False  # enrolled at this lane; central has not named the member yet
    birthday_award_year: int | None = None  # the last year central says a lane gave the birthday bonus
    maturing: tuple[tuple[str, int, str], ...] = ()  # central's pending lots: (currency, points, available_at)

    def maturing_at(self, now: datetime) -> dict[str, int]:
        """Per currency, the points of central's balance still pending at ``now``: not spendable yet."""
        out: dict[str, int] = {}
        stamp = iso(now)
        for currency, points, available_at in self.maturing:
            if available_at > stamp:
                out[currency] = out.get(currency, 0) + points
        return out


class LaneChanged(Exception):
    """cache.db now follows another lane id than this writer's: its pages would carry the wrong watermarks."""


class MalformedMember(ValueError):
    """A member from central's feed with a field posd cannot read (a count that is not a number, a list
    where an object belongs): the page is not written, and the message names the member."""


def _rules_of(program: dict[str, Any]) -> dict[str, Any]:
    """A program document without what central changes under one version: its member-token keys,
    which a rotation adds and retires (sync.central.tokens.published_program). Everything else is what
    sales earn and returns reverse by."""
    return {k: v for k, v in program.items() if k != "member_tokens"}


class Cache:
    def __init__(self, path: Path, lane_id: str, *, seal_key: bytes | None = None,
                 on_erased: Callable[[list[str]], None] | None = None, checked: bool = False,
                 kept_program: Callable[[str], dict[str, Any] | None] | None = None):
        """``seal_key``: seals wallet secrets (seal_key_from(store secret)); without one they are
        not kept and wallet passes cannot be checked. ``on_erased(member_ids)``: called before
        members central deleted leave cache.db (their ids and aliases); it must be durable.
        ``checked``: the file was already checked and migrated (and its seal and lane id settled)
        by the daemon, which owns it; this is a second writer for the member feed
        (posd.member_pull), so it opens the file as it is. ``kept_program(version)``: the document
        the lane's sales earned under by that version (ledger.db keeps it for their returns), if any."""
        self.path = path
        self.lane_id = lane_id
        self._readers = ThreadReaders(path, durable=False)
        self._lock = threading.Lock()
        self._applied_cap: int | None = None  # cap_applied()
        self.rebuilt_from: Path | None = None
        self._aead = AESGCM(seal_key) if seal_key else None
        self._seal_key = seal_key
        self._builder = MemberRows(lane_id, seal_key)
        self._seal_check = hmac.new(seal_key, _SEAL_CHECK, hashlib.sha256).hexdigest()[:16] if seal_key else ""
        self.on_erased = on_erased
        self._kept_program = kept_program
        # Bumped by every store_program: the lane's program cache asks cache.db for the program's
        # etag only after a change, not on every sale and scan. The program row has one writer,
        # this object (the puller); the member feed's second writer (posd.member_pull) never writes it.
        self.program_changes = 0
        if checked:
            self._conn = connect(path, durable=False)
            return
        self._conn = self._open()
        self._watch = FileWatch(path)
        self._check_seal()
        recorded = self._recorded_lane()
        if recorded is None:  # a new file, or one from before lanes were recorded: it is this lane's
            with self._lock:
                self._set_state(self._conn, "lane_id", lane_id)
        elif recorded != lane_id:
            self.use_lane(lane_id)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = connect(self.path, durable=False)
            problem = checked_file(self.path, conn)
            if problem is None:
                try:
                    cache_migrations.apply(conn)
                    return conn
                except StorageError as exc:
                    if exc.code != "foreign":  # a newer posd's cache: never touched
                        raise
                    problem = str(exc)  # another database under the name: kept aside like a damaged one
            conn.close()
            reason = problem
        except sqlite3.DatabaseError as exc:
            cause = unavailable(exc, self.path)
            if cause is not None:  # the disk or the folder: a rebuild would fail alike, and cost a snapshot
                raise cause from exc
            reason = str(exc)
        # Rebuildable: move the bad file aside (kept for diagnosis) and start empty.
        aside = self.path.with_name(f"{self.path.name}.corrupt-{utcnow_iso().replace(':', '')}")
        log.warning("cache.db unusable (%s); moved to %s and rebuilding from central", reason, aside.name)
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{aside}{suffix}")
        self.rebuilt_from = aside
        conn = connect(self.path, durable=False)
        cache_migrations.apply(conn)
        return conn

    def _check_seal(self) -> None:
        """Secrets sealed under another key (the store secret changed) cannot be opened: drop
        them and pull the whole feed again, which brings them under the current key."""
        with self._lock:
            conn = self._conn
            if self.state_on(conn, "seal_check") == self._seal_check:
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM members WHERE totp_secret IS NOT NULL LIMIT 1").fetchone():
                    conn.execute("UPDATE members SET totp_secret = NULL")
                    conn.execute("DELETE FROM sync_state WHERE key = 'member_cursor'")
                self._set_state(conn, "seal_check", self._seal_check)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise

    def wallet_secret(self, member_id: str) -> bytes | None:
        """The member's wallet-pass TOTP secret, unsealed; None when there is none (or no key)."""
        if self._aead is None:
            return None
        row = self.reader().execute("SELECT totp_secret FROM members WHERE member_id = ?", (member_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        sealed = bytes(row[0])
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], member_id.encode())
        except InvalidTag:
            return None  # sealed under another key or for another member: not this member's secret

    def reader(self) -> sqlite3.Connection:
        return self._readers.get()

    def keep_file(self) -> None:
        """cache.db deleted or moved away while posd runs (store IT tidying: it is rebuildable) left
        every new connection failing: it is written back from the open connection, members, program
        and feed position with it. Another file put in its place is moved aside first (cache.db is
        posd's to make: a copy from another lane names other members). The daemon asks every second."""
        watch = self._watch
        with self._lock:
            change = watch.changed()
            if change is None or watch.folder_moved():  # the folder moved, cache.db with it: nothing to mend here
                return
            try:
                if change == "replaced":
                    aside = self.path.with_name(f"{self.path.name}.replaced-{utcnow_iso().replace(':', '')}")
                    for side in ("-wal", "-shm", ""):  # with its own WAL: kept whole, for diagnosis
                        if Path(f"{self.path}{side}").exists():
                            Path(f"{self.path}{side}").rename(f"{aside}{side}")
                    log.warning("%s was replaced by another file while posd ran: that file moved to %s",
                                self.path, aside.name)
                else:
                    log.warning("%s was deleted or moved away while posd ran: written back from the open cache",
                                self.path)
                write_back(self._conn, self.path)
                conn = connect(self.path, durable=False)
            except (OSError, sqlite3.Error) as exc:  # the folder unusable: reads say so (storage_failed)
                log.warning("cannot write %s back: %s; tried again in a second", self.path.name, exc)
                return
            self._conn.close()
            self._conn = conn
            watch.reset()
            self._readers.renew()

    def close(self) -> None:
        self._readers.close()
        with self._lock:
            self._conn.close()

    # -- lookups (any thread) --------------------------------------------
    def find_member(self, identifier: str) -> CachedMember | None:
        row = self.reader().execute(_BY_IDENTIFIER, (identifier,)).fetchone()
        if row is None:
            return self.member_by_id(identifier)
        return self._capped(_member(row))

    def member_by_id(self, member_id: str) -> CachedMember | None:
        """By central's member_id, or a provisional id central mapped (never by a card identifier)."""
        row = self.reader().execute(_BY_ID_OR_ALIAS, (member_id, member_id)).fetchone()
        return self._capped(_member(row)) if row else None

    def cap_applied(self, seq: int | None) -> None:
        """Read central's watermarks of this lane as at most ``seq`` (None: as central gives them).
        Central's history under this lane id is another ledger's past ``seq`` (identity_conflict: a copy
        restored, a second till as this lane), so this ledger's entries beyond it are not central's,
        whatever its watermarks say: they stay in the member's pending balance."""
        self._applied_cap = seq

    def _capped(self, member: CachedMember) -> CachedMember:
        cap = self._applied_cap
        return member if cap is None or member.applied_seq <= cap else replace(member, applied_seq=cap)

    def member_voucher(self, code: str) -> dict[str, Any] | None:
        """An open voucher from central's member feed (issued at any lane), or None."""
        row = self.reader().execute("SELECT member_id, body FROM member_vouchers WHERE code = ?", (code,)).fetchone()
        return None if row is None else {**json.loads(row["body"]), "member_id": row["member_id"]}

    def member_vouchers(self, member_id: str) -> list[dict[str, Any]]:
        """A member's open vouchers, as central's feed last listed them."""
        rows = self.reader().execute("SELECT member_id, body FROM member_vouchers WHERE member_id = ? ORDER BY code",
                                     (member_id,))
        return [{**json.loads(r["body"]), "member_id": r["member_id"]} for r in rows]

    def member_count(self) -> int:
        return self.reader().execute("SELECT COUNT(*) FROM members").fetchone()[0]

    def program_row(self) -> sqlite3.Row | None:
        return self.reader().execute("SELECT * FROM program WHERE id = 1").fetchone()

    def state(self, key: str) -> str | None:
        return self.state_on(self.reader(), key)

    @staticmethod
    def state_on(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- CachePort (called by the sync puller thread) --------------------
    def member_cursor(self) -> str | None:
        return self.state("member_cursor")

    def program_version(self) -> str | None:
        row = self.reader().execute("SELECT version FROM program WHERE id = 1").fetchone()
        return row[0] if row else None

    def program_etag(self) -> str | None:
        """Just the etag: asked on every scan and sale, so the program body is not read."""
        row = self.reader().execute("SELECT etag FROM program WHERE id = 1").fetchone()
        return row[0] if row else None

    def apply_member_changes(self, members: list[dict[str, Any]], next_cursor: str) -> None:
        """Upsert members; the cursor moves with the last chunk (apply_member_page). Each chunk's rows
        are built just before it is written."""
        self._apply_chunks(self._builder.chunks(members, utcnow_iso()), next_cursor)

    def apply_member_page(self, page: MemberPage, next_cursor: str) -> None:
        """Write a page's rows (built by a MemberRows, here or in another process); the cursor moves
        with the last chunk.

        A snapshot of a million members arrives as many pages; each page (and
        any longer list, cut in APPLY_CHUNK rows) is its own short write
        transaction. Lookups read on their own WAL connections, so they never
        wait for a refresh; the GIL is handed back between chunks so a scanner
        thread is not held behind a long Python loop. A crash mid-list leaves
        the old cursor, and the upserts are safe to repeat.
        """
        last = len(page.chunks) - 1
        self._apply_chunks(((chunk, n == last) for n, chunk in enumerate(page.chunks)), next_cursor)

    def _apply_chunks(self, chunks: Iterator[tuple[_Chunk, bool]], next_cursor: str) -> None:
        now = utcnow_iso()
        for chunk, last in chunks:
            if chunk.erased and self.on_erased is not None:
                self.on_erased(chunk.erased)  # durable before the members leave: a crash here repeats it
            self._write_chunk(chunk, next_cursor if last else None, now)
            if not last:
                time.sleep(0)  # let a waiting lookup thread take the GIL

    def _write_chunk(self, chunk: _Chunk, cursor: str | None, now: str) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._recorded_lane() != self.lane_id:
                    raise LaneChanged(f"cache.db follows lane {self._recorded_lane()}, this writer {self.lane_id}")
                known = _known(conn, chunk.ids)  # a snapshot into a fresh cache has none to clear
                conn.executemany("DELETE FROM member_identifiers WHERE member_id = ?", known)
                conn.executemany("DELETE FROM member_vouchers WHERE member_id = ?", known)
                conn.executemany("DELETE FROM members WHERE member_id = ?", chunk.gone)
                conn.executemany("DELETE FROM member_aliases WHERE alias = ? OR member_id = ?",
                                 [(a[0], a[0]) for a in chunk.gone])
                for shape, rows in chunk.rows.items():
                    conn.executemany(upsert_member(shape), rows)
                conn.executemany("INSERT OR REPLACE INTO member_identifiers VALUES (?, ?)", chunk.idents)
                conn.executemany("INSERT OR REPLACE INTO member_aliases VALUES (?, ?)", chunk.aliases)
                conn.executemany("INSERT OR REPLACE INTO member_vouchers VALUES (?, ?, ?)", chunk.vouchers)
                if cursor is not None:
                    self._set_state(conn, "member_cursor", cursor)
                    self._set_state(conn, "members_synced_at", now)
                conn.execute("COMMIT")
            except BaseException as exc:
                rollback(conn)
                refused = write_refused(exc)  # a full or failing disk: an OSError the puller logs in a line
                if refused is not None:
                    raise refused from exc
                raise

    def use_lane(self, lane_id: str) -> None:
        """Sync as another lane id from now on (the ledger moved to a new identity).

        Watermarks of the old id say nothing about the new one, and central
        has applied none of the new id's events yet, so 0 is right until the
        full re-pull this forces brings central's own.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("UPDATE members SET applied_seq = 0")
                conn.execute("DELETE FROM sync_state WHERE key = 'member_cursor'")
                self._set_state(conn, "lane_id", lane_id)  # a member pull still writing for the old id stops
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            self.lane_id = lane_id
            self._builder = MemberRows(lane_id, self._seal_key)

    def store_program(self, program: dict[str, Any], etag: str) -> None:
        vet_program(parse_program(program))  # a program we cannot evaluate never replaces the one in force
        version = str(program.get("version", ""))
        kept = self._kept_program(version) if self._kept_program is not None else None
        if kept is not None and _rules_of(kept) != _rules_of(program):
            # one version, two rule sets: a return of a sale made under the new one would be worked out
            # under the one kept, and the same basket would earn two amounts under one version
            if not self.program_etag():
                # cache.db rebuilt meanwhile: no program in force, every sale refused. The rules the lane's
                # sales earned under by that version are the lane's until central names a new one, with
                # central's token keys as they are now (no etag: each pull asks again, and a rotation
                # reaches the lane). Not one this posd cannot read any more.
                tokens = {"member_tokens": program["member_tokens"]} if "member_tokens" in program else {}
                fallback = {**_rules_of(kept), **tokens}
                try:
                    parse_program(fallback)
                except ProgramError:
                    pass
                else:
                    self._write_program(fallback, "")
            raise ProgramError(f"version: {version!r} names other rules that sales on this lane earned under; "
                               "a changed program needs a new version")
        self._write_program(program, etag)

    def _write_program(self, program: dict[str, Any], etag: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO program (id, version, etag, body, fetched_at) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET version=excluded.version, etag=excluded.etag, "
                "body=excluded.body, fetched_at=excluded.fetched_at",
                (str(program.get("version", "")), etag, json.dumps(program), utcnow_iso()),
            )
            self.program_changes += 1

    def central_contact_at(self) -> float | None:
        """Unix seconds of the lane's last successful contact with central as last remembered
        (record_central_contact), so a lane restarted during an outage still knows how long it
        has been out of touch; None when it never had one."""
        value = self.state("central_contact_at")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def record_central_contact(self, at: float) -> None:
        with self._lock:
            self._set_state(self._conn, "central_contact_at", repr(float(at)))

    def _recorded_lane(self) -> str | None:
        return self.state_on(self._conn, "lane_id")

    @staticmethod
    def _set_state(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


@dataclass
class _Chunk:
    """One write's worth of a member page: rows to upsert (by shape: upsert_member), identifiers,
    aliases, open vouchers, members erased."""

    rows: dict[int, list[tuple]] = field(default_factory=dict)
    idents: list[tuple] = field(default_factory=list)
    ids: list[tuple] = field(default_factory=list)
    aliases: list[tuple] = field(default_factory=list)
    gone: list[tuple] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    vouchers: list[tuple] = field(default_factory=list)  # (code, member_id, voucher): the feed's open vouchers


def _known(conn: sqlite3.Connection, ids: list[tuple[str]]) -> list[tuple[str]]:
    """Those of ``ids`` already in cache.db: only their identifiers and vouchers can be stale.
    One probe of the members' key per id, in statements of 500."""
    known: list[tuple[str]] = []
    for start in range(0, len(ids), 500):
        part = [i[0] for i in ids[start:start + 500]]
        known += conn.execute(f"SELECT member_id FROM members WHERE member_id IN ({','.join('?' * len(part))})",
                              part).fetchall()
    return [tuple(r) for r in known]


# A member's aliases (the provisional ids central mapped to it) in the row that finds the member:
# one statement per lookup, and the two read in one snapshot.
# A member as lookups read it: the columns CachedMember takes, in its order (the sealed wallet secret
# stays in the file), and the provisional ids central mapped to it. Constant statements, so each
# thread's connection prepares them once (sqlite3's statement cache) and a lookup only binds and steps.
_MEMBER_SELECT = ("SELECT m.member_id, m.display_name, m.locale, m.tier, m.qualifying, m.balances, m.applied_seq, "
                  "m.status, m.birth_date, m.offers, m.updated_at, "
                  "(SELECT json_group_array(a.alias) FROM member_aliases a WHERE a.member_id = m.member_id), "
                  "m.birthday_award_year, m.maturing")
_BY_IDENTIFIER = f"{_MEMBER_SELECT} FROM member_identifiers i JOIN members m ON m.member_id = i.member_id " \
                 "WHERE i.identifier = ?"
_BY_ID = f"{_MEMBER_SELECT} FROM members m WHERE m.member_id = ?"
_BY_ALIAS = f"{_MEMBER_SELECT} FROM member_aliases x JOIN members m ON m.member_id = x.member_id WHERE x.alias = ?"
_BY_ID_OR_ALIAS = f"{_BY_ID} UNION ALL {_BY_ALIAS} LIMIT 1"  # one statement: asked of every typed card code


def _member(row: sqlite3.Row) -> CachedMember:
    """A row of _MEMBER_SELECT, by position; most members have no offers and no aliases ("[]")."""
    (member_id, display_name, locale, tier, qualifying, balances, applied_seq, status, birth_date, offers,
     updated_at, aliases, award_year, maturing) = row
    return CachedMember(member_id, display_name, locale, tier, qualifying,
                        {k: int(v) for k, v in json.loads(balances).items()}, applied_seq, status, birth_date,
                        [] if offers == "[]" else json.loads(offers), updated_at,
                        () if aliases == "[]" else tuple(sorted(json.loads(aliases))), False, award_year,
                        tuple(tuple(m) for m in json.loads(maturing)) if maturing else ())


class MemberRows:
    """Builds the rows of member pages for this lane: pure work on the feed's decoded members,
    no database, so it runs wherever the page is decoded (the member pull's fetch process builds
    them while its writer writes the page before; posd.member_pull). Wallet secrets are sealed
    here, so they never travel unsealed."""

    def __init__(self, lane_id: str, seal_key: bytes | None = None):
        self.lane_id = lane_id
        self._aead = AESGCM(seal_key) if seal_key else None

    def page(self, members: list[dict[str, Any]], now: str) -> MemberPage:
        return MemberPage([chunk for chunk, _ in self.chunks(members, now)], len(members))

    def chunks(self, members: list[dict[str, Any]], now: str) -> Iterator[tuple[_Chunk, bool]]:
        """A page's rows in chunks of APPLY_CHUNK, each built when asked for, and whether it is the
        last (one, empty, for an empty page: its cursor still moves)."""
        if not members:
            yield _Chunk(), True
        for start in range(0, len(members), APPLY_CHUNK):
            yield self.chunk(members[start:start + APPLY_CHUNK], now), start + APPLY_CHUNK >= len(members)

    def chunk(self, members: list[dict[str, Any]], now: str) -> _Chunk:
        """A page's rows, built in one pass: this loop runs a million times for a snapshot, so it
        reads each field once and encodes only what is there (an empty balance is written as the
        column's literal, and a row carries the optional columns the member has: upsert_member)."""
        chunk = _Chunk()
        lane, seal = self.lane_id, self.seal
        ids, idents, shapes = chunk.ids.append, chunk.idents.extend, chunk.rows
        plain = shapes[0] = []
        m: Any = None
        try:
            for m in members:
                get = m.get
                mid = str(m["member_id"])
                ids((mid,))
                aliases = get("aliases")
                status = get("status") or "active"
                if status == "deleted":  # erased at central: forgotten here, aliases included
                    gone = [mid, *(str(a) for a in aliases or ())]
                    chunk.erased.extend(gone)
                    chunk.gone.extend((a,) for a in gone)
                    continue
                applied, balances = get("applied_seq"), get("balances")
                row = (mid, get("display_name") or "", get("locale"), get("tier"), int(get("qualifying") or 0),
                       _encode(balances) if balances else "{}", int(applied.get(lane, 0) if applied else 0),
                       status, now)
                birth_date, offers = get("birth_date"), get("offers")
                secret, year, maturing = get("totp_secret"), get("birthday_award_year"), get("maturing")
                if birth_date is None and not offers and secret is None and year is None and not maturing:
                    plain.append(row)
                else:  # the optional columns this member has, in _OPTIONAL_COLUMNS order
                    sealed, year = seal(mid, secret) if secret is not None else None, _award_year(year)
                    shape, extra = 0, []
                    for n, value in enumerate((birth_date, _encode(offers) if offers else None, sealed, year,
                                               _maturing(maturing) if maturing else None)):
                        if value is not None:
                            shape |= 1 << n
                            extra.append(value)
                    shapes.setdefault(shape, []).append((*row, *extra))
                identifiers = get("identifiers")
                if identifiers:
                    idents((str(i), mid) for i in identifiers)
                if aliases:
                    chunk.aliases.extend((str(alias), mid) for alias in aliases)
                vouchers = get("vouchers")
                if vouchers:
                    chunk.vouchers.extend((str(v["code"]), mid, _encode(v)) for v in vouchers
                                          if isinstance(v, dict) and isinstance(v.get("code"), str) and v["code"])
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # free when nothing is wrong
            who = m.get("member_id") if isinstance(m, dict) else None
            raise MalformedMember(f"central sent member {str(who)[:64]!r} in a shape posd cannot read "
                                  f"({type(exc).__name__}: {str(exc)[:120]})") from None
        return chunk

    def seal(self, member_id: str, secret_hex: Any) -> bytes | None:
        if self._aead is None or not isinstance(secret_hex, str):
            return None
        try:
            secret = bytes.fromhex(secret_hex)
        except ValueError:
            log.warning("a member's wallet secret from central is not hex; ignored")
            return None
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret, member_id.encode())


@dataclass
class MemberPage:
    """A member page's rows, ready to write: its chunks, and how many members it had."""

    chunks: list[_Chunk]
    count: int

    def __len__(self) -> int:
        return self.count

    def to_bytes(self) -> bytes:
        """The page for a pipe to another process of this same interpreter (posd.member_pull): marshal,
        as its rows are plain tuples, lists, strings, integers and bytes. Measured on a 1M snapshot,
        a third cheaper than pickle on both sides of the pipe."""
        return marshal.dumps((self.count, [tuple(getattr(c, f) for f in _CHUNK_FIELDS) for c in self.chunks]))

    @classmethod
    def from_bytes(cls, data: bytes) -> MemberPage:
        count, chunks = marshal.loads(data)
        return cls([_Chunk(*fields) for fields in chunks], count)


_CHUNK_FIELDS = tuple(f.name for f in fields(_Chunk))


def _maturing(value: Any) -> str | None:
    """The feed's maturing lots as stored: [[currency, points, available_at], ...] with available_at
    in the lane's own UTC form (compared as text with its clock); an entry posd cannot read refuses
    the page (MalformedMember), since what a member may spend depends on it."""
    lots = []
    for lot in value:
        points, when = lot["points"], parse_iso(lot["available_at"])
        if not isinstance(lot["currency"], str) or not isinstance(points, int) or isinstance(points, bool) \
                or when.tzinfo is None:
            raise ValueError("a maturing lot is {currency, points, available_at: ISO-8601 UTC}")
        lots.append([lot["currency"], points, iso(when)])
    return _encode(lots) if lots else None


def _award_year(value: Any) -> int | None:
    """The feed's birthday_award_year as stored: an integer year, or nothing (absent, or not a year)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
