"""What both of central's SQL engines do, written once: the store interface over plain SQL.

``SqlStore`` implements every method of the store interface (store.py) with
statements that SQLite and PostgreSQL both run (``?`` placeholders; the
PostgreSQL store's connection turns them into ``%s``). An engine subclass
says only what differs: how a connection and a write transaction are had,
how a lane's head and a batch's members are locked, how a member's change
version is drawn and how the change feed is read (store_sqlite.py,
store_pg.py). So the two engines cannot drift apart: the same batch
algorithm, lot engine (lots.py) and answers run on both, and one test suite
runs against both.

A batch is applied in ONE transaction: lock the lane's head, answer seqs it
already consumed from what is stored, insert the contiguous run after the
head with ``INSERT ... ON CONFLICT DO NOTHING RETURNING seq`` (an answer is
computed from what was inserted: a row that was not is answered as stored),
then apply the inserted events' effects in seq order under the batch's member
locks, and move the head. Accepted events and member changes also go into
the central outbox (Debezium's outbox event router shape, docs/sync-protocol.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

from posd.sync.central import burns
from posd.sync.central.faults import ROUTES, check_fault
from posd.sync.central.identities import (COUNTED, accrual_counted, earlier_lane_ids, redemption_counted, same_instant,
                                          sales_rung)
from posd.sync.central.codec import json_text, loads
from posd.sync.central.lots import (NEXT_DUE_LOT, credit, debit, insert_lots, lot_balances, lot_dates, lot_row,
                                   maturing_lots, reset_lots)
from posd.sync.central.members import (enrolment_profile, given_member_row, lookup_form, member_row, member_wire,
                                       tier_currency, upgraded_tier)
from posd.sync.central.returns import return_refusal
from posd.sync.central.seed import parse_seed
from posd.sync.central.tokens import new_kid, new_signing_key, public_key_text, published_program
from posd.sync.protocol import BIRTHDAY_REPEATED, TOKEN_SCHEMES, UNSTORABLE, parse_utc, program_etag, result_wire, validate_event
from posd.sync.protocol.burn import canonical_code, issuable_code, never_spent
from posd.sync.protocol.errors import RequestRejected
from posd.sync.protocol.ids import UuidV7, hyphenated
from posd.sync.protocol.shapes import card_forms

log = logging.getLogger("posd.sync.central")

# How many member numbers a batch tries to claim while other writers hold their keys, before it is
# made again: a whole-bucket writer (a seed, a lane with many new keys) holds a 128th of them.
CLAIM_TRIES = 256


class Contended(Exception):
    """A write that could not go on for other writers' locks, without waiting on them: made again."""


class UnknownCursor(Exception):
    """A member feed cursor past any central has handed out."""

JSON_COLUMNS = ("identifiers", "balances", "offers")
EVENT_COLUMNS = ("store_id", "lane_id", "seq", "event_id", "status", "code", "type", "member_id", "body",
                 "batch_id", "received_at")
MEMBER_COLUMNS = ("member_id", "display_name", "locale", "tier", "qualifying", "identifiers", "balances",
                  "status", "birth_date", "offers", "totp_secret", "version")


class SqlStore:
    """The store interface in SQL both engines run; subclasses fill in the hooks below."""

    FOR_UPDATE = ""  # the row-lock suffix of a SELECT (" FOR UPDATE" where the engine has one)
    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """An error of the engine that says "try again" (its server down or busy): 503 with Retry-After."""
        return False

    _clock: Any

    # --- engine hooks ----------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[Any]:
        """A write transaction; yields a connection whose execute() takes ``?`` placeholders."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        """A connection for reads (autocommit where the engine has it)."""
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Any]:
        """A connection whose every statement reads the same committed state, until it is given
        back: a read of several statements that must agree with each other (a feed page's members,
        their watermarks, aliases and vouchers). ``_read`` where one connection does it all."""
        return self._read()

    def _next_versions(self, conn: Any, count: int) -> list[int]:
        """The positions in the change feed of the next ``count`` member changes, in order."""
        raise NotImplementedError

    def _feed_rows(self, conn: Any, cursor: int, limit: int) -> list[Any]:
        """Up to ``limit`` member rows changed after ``cursor``, in feed order, none of
        which a transaction still running could sort before."""
        raise NotImplementedError

    def _feed_end(self, conn: Any) -> int:
        """A bound no cursor central has handed out goes past: a larger one is not central's
        (a lane's cursor from before central was restored, or made up)."""
        raise NotImplementedError

    def _lock_members(self, conn: Any, member_ids: list[str]) -> None:
        """Lock the members a write is about to change, always in one order (no deadlocks)."""

    def _member_number(self, conn: Any) -> int:
        """The next number for a member central names (M0000042): each asked once, by any writer.
        Here the count kept in meta (one writer at a time)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_member_no'").fetchone()
        number = int(row["value"]) if row else 1
        conn.execute("INSERT INTO meta (key, value) VALUES ('next_member_no', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(number + 1),))
        return number

    def _claim_new(self, conn: Any, member_id: str) -> bool:
        """Lock the key of a member id central is about to give, without waiting: False when another
        writer holds it (that writer is creating a member of that id; the next number is taken)."""
        return True

    def _sweep_guard(self, conn: Any) -> bool:
        """False when another writer is sweeping right now (it will do the work)."""
        return True

    def _one_at_a_time(self, conn: Any) -> None:
        """Hold, until the transaction ends, the lock that makes central-wide steps one at a time."""

    # The member (not erased) holding an identifier: SQL with one ``?``, the identifier as text.
    HOLDER_SQL = ""
    SALE_OF_SQL = ""  # the engine's expression for a stored event body's transaction_id (returns.py)

    def _ensure_signing_key(self) -> None:
        """A central that can sign member tokens from the start: one key when it has none."""
        with self._write() as conn:
            self._one_at_a_time(conn)  # workers starting together add one key, not one each
            if conn.execute("SELECT 1 FROM member_token_keys LIMIT 1").fetchone() is None:
                self._add_key(conn, new_kid(), new_signing_key())

    # --- seed, stores, program -------------------------------------------------------------

    def seed(self, seed: dict[str, Any]) -> None:
        """Load a seed file's content. Safe to repeat: existing members keep their
        balances; store secrets and the program are replaced (they are config)."""
        parsed = parse_seed(seed)
        if parsed.program is not None:
            self._same_version_same_rules(parsed.program)
        program = parsed.program if parsed.program is not None else (self.program()[0] or {})
        rows = [given_member_row(m, program) for m in parsed.members]  # every member checked before anything is written
        self._held_elsewhere(rows)
        with self._write() as conn:
            for store_id, secret in parsed.secrets.items():
                conn.execute("INSERT INTO stores (store_id, secret) VALUES (?, ?) "
                             "ON CONFLICT (store_id) DO UPDATE SET secret = excluded.secret", (store_id, secret))
            if parsed.program is not None:
                self._save_program(conn, parsed.program)
            self._seed_members(conn, rows[:self.SEED_CHUNK])
        for start in range(self.SEED_CHUNK, len(rows), self.SEED_CHUNK):
            with self._write() as conn:
                self._seed_members(conn, rows[start:start + self.SEED_CHUNK])

    def _same_version_same_rules(self, program: dict[str, Any]) -> None:
        """ValueError when a seed's program has a version central published, with other rules: a lane
        that earned under that version refuses it (docs/program.md, versions), so every lane would keep
        the old rules while central counts by the new ones. The member-token keys are central's own."""
        with self._read() as conn:
            published = self._published_versions(conn)
        version, digest = program.get("version"), rules_digest(program)
        if isinstance(version, str) and published.get(version, digest) != digest:
            raise ValueError(f"seed program: version {version!r} is published already with other rules, and "
                             "lanes that earned under it refuse the change; give these rules a new \"version\"")

    @staticmethod
    def _published_versions(conn: Any) -> dict[str, str]:
        """{version: its rules' digest} of every program central published (the one in force included,
        also when it was published before central kept the others)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'program_versions'").fetchone()
        versions = json.loads(row["value"]) if row is not None else {}
        current = conn.execute("SELECT value FROM meta WHERE key = 'program'").fetchone()
        if current is not None:
            program = json.loads(current["value"])
            if isinstance(program.get("version"), str):
                versions[program["version"]] = rules_digest(program)
        return versions

    # Members per transaction: a member's row and its lots always land together, and a
    # chain-sized seed does not hold one transaction (and the change feed's horizon) for long.
    SEED_CHUNK = 100_000

    def _held_elsewhere(self, rows: list[dict[str, Any]]) -> None:
        """ValueError when two members of a seed list one card or phone number, or a member it adds
        lists one a member central holds already has, or a card that is another member's id, or has an id
        that is another member's card: one pass over those members."""
        listed: dict[str, str] = {}  # by a card's one form (its UPC-A and EAN-13 are one card)
        for row in rows:
            for identifier in row["identifiers"]:
                other = listed.setdefault(card_forms(identifier)[0], row["member_id"])
                if other != row["member_id"]:
                    raise ValueError(f"member {row['member_id']!r}: {identifier!r} is member {other!r}'s already")
        if not rows:
            return
        existing: set[str] = set()  # erased too: seeding leaves every existing member alone
        live: set[str] = set()
        holders: dict[str, tuple[str, str]] = {}  # of the seed's identifiers and ids: one form -> (as held, holder)
        wanted = set(listed) | {card_forms(r["member_id"])[0] for r in rows}
        with self._read() as conn:
            for r in conn.execute("SELECT member_id, identifiers, status FROM members"):
                existing.add(r["member_id"])
                if r["status"] != "deleted":
                    live.add(r["member_id"])
                    holders.update((card_forms(i)[0], (i, r["member_id"])) for i in json_value(r["identifiers"])
                                   if card_forms(i)[0] in wanted)
        for form, (identifier, holder) in holders.items():
            other = listed.get(form)
            if other is not None and other != holder and other not in existing:
                raise ValueError(f"member {other!r}: {identifier!r} is member {holder!r}'s already")
        ids = {r["member_id"] for r in rows} | live
        added = [row for row in rows if row["member_id"] not in existing]  # the others are kept as they are
        for row in added:
            for identifier in row["identifiers"]:
                if identifier in ids and identifier != row["member_id"]:
                    raise ValueError(f"member {row['member_id']!r}: {identifier!r} is member {identifier!r}'s id")
        for row in added:
            form = card_forms(row["member_id"])[0]
            holder = listed.get(form) or holders.get(form, (None, None))[1]
            if holder is not None and holder != row["member_id"]:
                raise ValueError(f"member {row['member_id']!r}: its id is member {holder!r}'s card "
                                 f"{row['member_id']!r}")

    def _seed_members(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        self._lock_members(conn, sorted({r["member_id"] for r in rows}))
        for row in rows:
            if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (row["member_id"],)).fetchone():
                continue  # existing members keep their lots: seeding again is a no-op for them
            reset_lots(conn, row["member_id"], row["balances"], "seed")
            self._write_member(conn, row)

    def store_secret(self, store_id: str) -> bytes | None:
        with self._read() as conn:
            row = conn.execute("SELECT secret FROM stores WHERE store_id = ?", (store_id,)).fetchone()
        return None if row is None else bytes(row["secret"])

    def program(self) -> tuple[dict[str, Any] | None, str | None]:
        """(program, etag); (None, None) before a program is seeded."""
        with self._read() as conn:
            return self._program_in(conn)

    def set_program(self, program: dict[str, Any]) -> str:
        """Publish ``program`` as given: unlike a seed's, a version's other rules are not refused here (a
        platform publishing its own way; tests that play a central which republishes)."""
        with self._write() as conn:
            return self._save_program(conn, program)

    def _save_program(self, conn: Any, program: dict[str, Any]) -> str:
        # Every currency a program central published had: an event computed under an earlier program
        # (a lane offline through the change, or before its next poll) still names one it dropped.
        known = sorted((self._currencies_in(conn, self._program_in(conn)[0]) or set()) | program_currencies(program))
        text = json.dumps(program, sort_keys=True, ensure_ascii=False)
        versions = self._published_versions(conn)  # the one in force so far, before it is replaced
        if isinstance(program.get("version"), str):
            versions[program["version"]] = rules_digest(program)
        conn.execute("INSERT INTO meta (key, value) VALUES ('program', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (text,))
        conn.execute("INSERT INTO meta (key, value) VALUES ('program_versions', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (json.dumps(versions),))
        conn.execute("INSERT INTO meta (key, value) VALUES ('program_currencies', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (json.dumps(known),))
        return self._program_in(conn)[1] or ""

    @staticmethod
    def _currencies_in(conn: Any, program: dict[str, Any] | None) -> set[str] | None:
        """The currencies of every program central published, ``program`` (the one in force, as read)
        included; None before any program: nothing to check an event's currencies against."""
        if program is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'program_currencies'").fetchone()
        return (set(json.loads(row["value"])) if row is not None else set()) | program_currencies(program) or None

    def _program_in(self, conn: Any) -> tuple[dict[str, Any] | None, str | None]:
        """The program lanes get: as seeded, with central's member-token keys that are not
        retired (a key rotation changes the ETag, not the version); its ETag."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'program'").fetchone()
        if row is None:
            return None, None
        program = published_program(json.loads(row["value"]), self._keys_in(conn))
        return program, program_etag(program)

    # --- member tokens: signing keys, wallet secrets ------------------------------------------

    def member_token_keys(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return self._keys_in(conn)

    @staticmethod
    def _keys_in(conn: Any) -> list[dict[str, Any]]:
        rows = conn.execute("SELECT * FROM member_token_keys ORDER BY created_at, kid").fetchall()
        return [{"kid": r["kid"], "private_key": bytes(r["private_key"]), "public_key": r["public_key"],
                 "created_at": r["created_at"], "retired_at": r["retired_at"]} for r in rows]

    def add_member_token_key(self, kid: str, private_key: bytes) -> None:
        with self._write() as conn:
            self._add_key(conn, kid, private_key)

    def _add_key(self, conn: Any, kid: str, private_key: bytes) -> None:
        conn.execute("INSERT INTO member_token_keys (kid, private_key, public_key, created_at, retired_at) "
                     "VALUES (?, ?, ?, ?, NULL)", (kid, private_key, public_key_text(private_key), self._clock()))

    def retire_member_token_key(self, kid: str) -> bool:
        with self._write() as conn:  # RETURNING, not rowcount: in psycopg's pipeline mode rowcount is -1
            return conn.execute("UPDATE member_token_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL "
                                "RETURNING kid", (self._clock(), kid)).fetchone() is not None

    def wallet_secret(self, member_id: str, secret: bytes) -> bytes | None:
        """The member's wallet-pass secret; ``secret`` becomes it when the member has none
        (the member's new version carries it to the lanes). None for an unknown or erased member."""
        with self._write() as conn:
            member_id = resolve_alias(conn, member_id)
            self._lock_members(conn, [member_id])
            member = _load_member(conn, member_id)
            if member is None or member["status"] == "deleted":
                return None
            if not member.get("totp_secret"):
                member["totp_secret"] = secret.hex()
                self._write_member(conn, member)
            return bytes.fromhex(member["totp_secret"])

    # --- members ---------------------------------------------------------------------------

    def member(self, member_id: str, store_id: str | None = None) -> dict[str, Any] | None:
        """A member in wire shape. applied_seq lists the lanes of ``store_id``, or
        every lane as "store/lane" when no store is given."""
        self.sweep_expired()
        with self._read() as conn:
            member_id = resolve_alias(conn, member_id)  # a lane may still name it by its provisional id
            row = conn.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
            if row is None:
                return None
            marks = self._applied_seqs(conn, [member_id], store_id)
            aliases = _aliases(conn, [member_id])
            now = self._clock()
            vouchers = burns.open_vouchers(conn, [member_id], now)
            birthdays = last_birthday_awards(conn, [member_id])
            maturing = maturing_lots(conn, [member_id], now)
        return member_wire(decoded_member(row), marks.get(member_id, {}), aliases.get(member_id),
                           vouchers.get(member_id, []), birthday_award_year=birthdays.get(member_id),
                           maturing=maturing.get(member_id))

    def upsert_member(self, member: dict[str, Any]) -> None:
        """Create or replace a member's profile (not its lane watermarks); bumps its version.
        Its balances replace its lots: one never-expiring lot per currency."""
        program = self.program()[0] or {}
        row = given_member_row(member, program)
        with self._write() as conn:
            self._lock_members(conn, [row["member_id"]])
            known = resolve_alias(conn, row["member_id"])
            if known != row["member_id"]:  # a lane's made-up id: the member is known by central's own id
                raise ValueError(f"{row['member_id']!r} is a provisional id central mapped to member {known!r}: "
                                 f"upsert {known!r}")
            self._check_holders(conn, [row])
            reset_lots(conn, row["member_id"], row["balances"], "upsert")
            self._write_member(conn, row)

    def _check_holders(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        """ValueError when another member holds one of these members' cards or phone numbers: a card
        belongs to one member only (a lane's cache would give it to whichever changed last)."""
        mine = {r["member_id"] for r in rows}
        for row in rows:
            was = conn.execute("SELECT identifiers FROM members WHERE member_id = ?", (row["member_id"],)).fetchone()
            for identifier in row["identifiers"]:
                holder = self._holder_of(conn, identifier)
                if holder is not None and holder not in mine:
                    raise ValueError(f"member {row['member_id']!r}: {identifier!r} is member {holder!r}'s already")
                named = resolve_alias(conn, identifier)
                if named != row["member_id"] and (was is None or identifier not in json_value(was["identifiers"])) \
                        and conn.execute("SELECT 1 FROM members WHERE member_id = ? AND status != 'deleted'",
                                         (named,)).fetchone():
                    raise ValueError(f"member {row['member_id']!r}: {identifier!r} is member {named!r}'s id")
            holder = self._holder_of(conn, row["member_id"]) if was is None else None
            if holder is not None and holder not in mine:
                raise ValueError(f"member {row['member_id']!r}: its id is member {holder!r}'s card "
                                 f"{row['member_id']!r}")

    def _holder_of(self, conn: Any, identifier: str) -> str | None:
        """The member (not erased) holding a card or phone number, in either of a card's forms."""
        holder = next(filter(None, (conn.execute(self.HOLDER_SQL, (form,)).fetchone()
                                    for form in card_forms(identifier))), None)
        return None if holder is None else holder["member_id"]

    def lots(self, member_id: str) -> list[dict[str, Any]]:
        """A member's lots, oldest first (inspection and tests)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT lot_id, currency, transaction_id, points, remaining, available_at, expires_at, swept, source "
                "FROM lots WHERE member_id = ? ORDER BY lot_id", (member_id,)).fetchall()
        return [dict(r) for r in rows]

    def debts(self, member_id: str) -> dict[str, int]:
        """The negative remainder per currency (points taken back after they were spent)."""
        with self._read() as conn:
            rows = conn.execute("SELECT currency, points FROM lot_debts WHERE member_id = ?",
                                (member_id,)).fetchall()
        return {r["currency"]: r["points"] for r in rows}

    def sweep_expired(self) -> int:
        """Bump the version of every member whose balance fell because lots expired
        since the last sweep, and of every member whose voucher a reservation that
        expired held; the number of members bumped. Cheap when nothing expired: one
        probe of each partial index, no write transaction."""
        now = self._clock()
        with self._read() as conn:
            if not any(row is not None and row["expires_ts"] <= now
                       for row in (conn.execute(NEXT_DUE_LOT).fetchone(), conn.execute(burns.NEXT_DUE).fetchone())):
                return 0
        with self._write() as conn:
            if not self._sweep_guard(conn):
                return 0
            # Every member either step changes, locked at once in the one order, then the steps.
            due = {r["member_id"] for r in conn.execute(
                "SELECT DISTINCT member_id FROM lots WHERE swept = 0 AND expires_ts IS NOT NULL AND expires_ts <= ?",
                (now,)).fetchall()}
            due |= {r["member_id"] for r in conn.execute(
                "SELECT member_id FROM reservations WHERE state = 'open' AND expires_ts <= ? AND member_id IS NOT NULL",
                (now,)).fetchall()}
            self._lock_members(conn, sorted(due))
            return self._sweep(conn, now) + self._release(conn, now)

    def _release(self, conn: Any, now: float) -> int:
        """Expire reservations past their time; members whose open vouchers changed get a new version."""
        released = sorted(burns.release_expired(conn, now))
        self._lock_members(conn, released)
        changed = [m for m in (_load_member(conn, member_id) for member_id in released) if m is not None]
        self._write_members(conn, changed)
        return len(changed)

    # --- burns: authorisations, reservations, vouchers ----------------------------------------

    def authorise(self, store_id: str, lane_id: str, request: dict[str, Any], ttl_s: float,
                  sent_at: int | None = None) -> dict[str, Any]:
        """Check and reserve a burn in one transaction (burns.py); the answer in wire shape. ``sent_at``:
        the request's signed timestamp (a release the lane sent after it overtook it)."""
        return self._again(f"authorisation of {store_id}/{lane_id}", self._authorise, store_id, lane_id, request,
                           ttl_s, sent_at)

    def _authorise(self, store_id: str, lane_id: str, request: dict[str, Any], ttl_s: float,
                   sent_at: int | None) -> dict[str, Any]:
        self.sweep_expired()  # reservations past their time free their points first
        now = self._clock()
        coupons = self._coupon_codes()
        if request.get("voucher_code"):  # as issued or published, however the lane's POS typed it
            request = {**request, "voucher_code": canonical_code(request["voucher_code"], coupons)}
        if request.get("voucher") and not issuable_code(request["voucher"]["code"], coupons):
            raise RequestRejected("malformed_authorisation", "voucher.code is a program coupon's code, or a "
                                  "lane voucher's code not as issued: no redemption issues it")
        with self._write() as conn:
            if request.get("member_id"):  # a provisional id a lane still uses names central's member
                request = {**request, "member_id": resolve_alias(conn, request["member_id"])}
            member_id, code = request.get("member_id"), request.get("voucher_code")
            owner = conn.execute("SELECT member_id FROM vouchers WHERE code = ?", (code,)).fetchone() \
                if code else None
            owner_id = owner["member_id"] if owner else None
            pending = voucher_lock(request["voucher"]["code"]) if request.get("voucher") else None  # to be issued
            rid = burns.reservation_id(store_id, lane_id, request["authorisation_id"])
            self._lock_members(conn, sorted({k for k in (member_id, owner_id, voucher_lock(code), pending,
                                                         reservation_lock(rid)) if k}))
            member = _load_member(conn, member_id) if member_id else None
            program = self._program_in(conn)[0]
            currencies = self._currencies_in(conn, program)
            unknown = sorted(set(request.get("points") or {}) - currencies) if currencies is not None else []
            if unknown:  # no balance holds it: a lane bug, as an event naming it is bad_points
                raise RequestRejected("malformed_authorisation", f"points names {unknown[0]!r}, a currency no "
                                      "program central published had")
            tier = sorted(set(request.get("points") or {}) & never_spent(program or {}))
            if tier:  # tier points are never spent, as a redemption spending them is bad_points
                raise RequestRejected("malformed_authorisation", f"points names {tier[0]!r}, tier points that are "
                                      "never spent")
            answer, vouchers_changed = burns.authorise(conn, member, store_id, lane_id, request, now, ttl_s,
                                                        program or {}, currencies, coupons, sent_at)
            if vouchers_changed:  # a voucher now held is no longer open: lanes hear it in the feed
                changed = [_load_member(conn, m) for m in sorted({member_id, owner_id} - {None})]
                self._write_members(conn, [m for m in changed if m is not None])
        return answer

    def release(self, store_id: str, lane_id: str, authorisation_id: str, sent_at: int | None = None) -> str:
        """A lane giving back an open reservation (burns.release); its state after: released,
        confirmed, expired or unknown. ``sent_at``: the release's signed timestamp; one for a reservation
        central has not made yet keeps the authorisation signed before it from reserving."""
        return self._again(f"release of {store_id}/{lane_id}", self._release_one, store_id, lane_id,
                           authorisation_id, sent_at)

    def _release_one(self, store_id: str, lane_id: str, authorisation_id: str, sent_at: int | None) -> str:
        now = self._clock()
        rid = burns.reservation_id(store_id, lane_id, authorisation_id)
        with self._write() as conn:
            row = conn.execute("SELECT member_id, voucher_code FROM reservations WHERE reservation_id = ?",
                               (rid,)).fetchone()
            # the member and the voucher code, in the order every writer keeps; the reservation's own key
            # orders this release and an authorisation of the same id that central is reading meanwhile
            keys = (row["member_id"], voucher_lock(row["voucher_code"])) if row is not None else ()
            self._lock_members(conn, sorted({k for k in (*keys, reservation_lock(rid)) if k}))
            state, changed = burns.release(conn, store_id, lane_id, authorisation_id, now, sent_at)
            if changed:  # its voucher is open again: lanes hear it in the feed
                member = _load_member(conn, changed)
                self._write_members(conn, [member] if member is not None else [])
        return state

    def claim_token(self, store_id: str, lane_id: str, token_id: str, member_id: str) -> bool:
        """A lane asking before it accepts a member token: True when the token is unused or this
        lane's already (its claim, or its token_use event), False when another lane has it."""
        lane_key = f"{store_id}/{lane_id}"
        with self._write() as conn:
            return first_token_use(conn, token_id, lane_key, f"{lane_key}/claim", member_id)

    def claim_birthday(self, store_id: str, lane_id: str, member_id: str, year: int, transaction_id: str) -> bool:
        """A lane asking before a sale gives the birthday bonus: True when the member's year is free or
        this lane's already, False when another lane holds it. A provisional id counts as its member."""
        lane_key = f"{store_id}/{lane_id}"
        with self._write() as conn:
            member_id = resolve_alias(conn, member_id)
            return first_birthday_award(conn, member_id, year, lane_key, transaction_id, f"{lane_key}/claim")

    def birthday_awards(self, member_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            member_id = resolve_alias(conn, member_id)
            rows = conn.execute("SELECT year, lane_key, transaction_id, source FROM birthday_awards "
                                "WHERE member_id = ? ORDER BY year", (member_id,)).fetchall()
        return [{"year": r["year"], "lane": r["lane_key"], "transaction_id": r["transaction_id"],
                 "source": r["source"]} for r in rows]

    def voucher(self, store_id: str, code: str, member_id: str | None) -> dict[str, Any] | None:
        """A lane asking about a code: {code, voucher (registered, or null), used}; None if unknown."""
        coupons = self._coupon_codes()
        code = canonical_code(code, coupons)
        self.sweep_expired()
        with self._read() as conn:
            member_id = resolve_alias(conn, member_id) if member_id else None
            return burns.lookup(conn, code, member_id, coupons.get(code), self._clock())

    def _coupon_codes(self) -> dict[str, str]:
        return coupon_kinds(self.program()[0] or {})

    def reservations(self, member_id: str) -> list[dict[str, Any]]:
        """A member's reservations, newest first, with their state now (inspection and tests)."""
        with self._read() as conn:
            return burns.reservations_of(conn, member_id, self._clock())

    def _sweep(self, conn: Any, now: float) -> int:
        due = sorted(r["member_id"] for r in conn.execute(
            "SELECT DISTINCT member_id FROM lots WHERE swept = 0 AND expires_ts IS NOT NULL AND expires_ts <= ?",
            (now,)).fetchall())
        self._lock_members(conn, due)  # members first, then their lots: the order every writer keeps
        bumped = 0
        for member_id in due:
            conn.execute("UPDATE lots SET swept = 1 WHERE member_id = ? AND swept = 0 AND expires_ts IS NOT NULL "
                         "AND expires_ts <= ?", (member_id, now))
            member = _load_member(conn, member_id)
            if member is None or member["status"] == "deleted":
                continue  # nothing to show to lanes any more
            balances = lot_balances(conn, {member_id: member["balances"]}, now)[member_id]
            if balances != member["balances"]:  # a lot spent to 0 before it expired changes nothing
                member["balances"] = balances
                self._write_member(conn, member)
                bumped += 1
        return bumped

    def member_changes(self, store_id: str, cursor: int, limit: int) -> tuple[list[dict[str, Any]], str, bool]:
        """Members changed after ``cursor``, oldest change first (after an expiry sweep,
        so a balance that fell by expiry is in the feed)."""
        self.sweep_expired()
        # One snapshot: a member's applied_seq read after a batch committed, beside a balance read
        # before it, would tell the lane that balance already holds its newest event.
        with self._snapshot() as conn:
            if cursor > self._feed_end(conn):
                raise UnknownCursor(cursor)
            rows = self._feed_rows(conn, cursor, limit + 1)
            has_more = len(rows) > limit
            rows = rows[:limit]
            ids = [r["member_id"] for r in rows]
            marks, aliases = self._applied_seqs(conn, ids, store_id), _aliases(conn, ids)
            now = self._clock()
            vouchers = burns.open_vouchers(conn, ids, now)
            birthdays = last_birthday_awards(conn, ids)
            maturing = maturing_lots(conn, ids, now)
        members = [member_wire(decoded_member(r), marks.get(r["member_id"], {}), aliases.get(r["member_id"]),
                               vouchers.get(r["member_id"], []), birthday_award_year=birthdays.get(r["member_id"]),
                               maturing=maturing.get(r["member_id"]))
                   for r in rows]
        next_cursor = str(rows[-1]["version"]) if rows else str(cursor)
        return members, next_cursor, has_more

    @staticmethod
    def _applied_seqs(conn: Any, member_ids: list[str], store_id: str | None) -> dict[str, dict[str, int]]:
        marks: dict[str, dict[str, int]] = {}
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start : start + 500]
            where, args = f"member_id IN ({_marks(chunk)})", list(chunk)
            if store_id is not None:
                where, args = where + " AND store_id = ?", args + [store_id]
            for r in conn.execute(f"SELECT * FROM member_lanes WHERE {where}", args).fetchall():
                key = r["lane_id"] if store_id is not None else f"{r['store_id']}/{r['lane_id']}"
                marks.setdefault(r["member_id"], {})[key] = r["applied_seq"]
        return marks

    def _write_member(self, conn: Any, row: dict[str, Any]) -> None:
        self._write_members(conn, [row])

    def _write_members(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        """Insert or replace members at new versions; each change also goes to the outbox."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in MEMBER_COLUMNS if c != "member_id")
        values = [[json.dumps(row.get(c), ensure_ascii=False) if c in JSON_COLUMNS
                   else version if c == "version" else row.get(c) for c in MEMBER_COLUMNS]
                  for row, version in zip(rows, self._next_versions(conn, len(rows)), strict=True)]
        conn.executemany(f"INSERT INTO members ({', '.join(MEMBER_COLUMNS)}) VALUES ({_marks(MEMBER_COLUMNS)}) "
                         f"ON CONFLICT (member_id) DO UPDATE SET {updates}", values)
        outbox = []
        # the provisional ids lanes enrolled them under: what their events name, for a consumer to join on
        aliases = _aliases(conn, [row["member_id"] for row in rows])
        for row in rows:
            wire = member_wire(row, {}, aliases.get(row["member_id"]))
            wire.pop("applied_seq")
            wire.pop("totp_secret", None)  # a wallet pass's secret goes to lanes only, never onward
            outbox.append(("member", row["member_id"], "member.changed", wire))
        _outbox(conn, outbox)

    # --- lanes and events ------------------------------------------------------------------

    def last_seq(self, store_id: str, lane_id: str) -> int:
        with self._read() as conn:
            row = conn.execute("SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?",
                               (store_id, lane_id)).fetchone()
        return 0 if row is None else row["last_seq"]

    def lane_head(self, store_id: str, lane_id: str) -> tuple[int, str | None]:
        """(last_seq, event_id at last_seq); (0, None) for a lane central has never heard from."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT l.last_seq, e.event_id FROM lanes l LEFT JOIN events e ON e.store_id = l.store_id "
                "AND e.lane_id = l.lane_id AND e.seq = l.last_seq WHERE l.store_id = ? AND l.lane_id = ?",
                (store_id, lane_id)).fetchone()
        return (0, None) if row is None or row["last_seq"] == 0 else (row["last_seq"], row["event_id"])

    def events(self, store_id: str, lane_id: str) -> list[dict[str, Any]]:
        """Every seq central has consumed for a lane, with its outcome, in seq order."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM events WHERE store_id = ? AND lane_id = ? ORDER BY seq",
                                (store_id, lane_id)).fetchall()
        listed = []
        for r in rows:
            body = json_value(r["body"])
            listed.append({"seq": r["seq"], "event_id": r["event_id"], "status": r["status"], "code": r["code"],
                           "type": r["type"], "member_id": r["member_id"],
                           "transaction_id": body.get("transaction_id"), "batch_id": r["batch_id"],
                           "received_at": r["received_at"], "event": body})
        return listed

    def outbox(self, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Outbox rows after ``after_id`` in insert order (inspection and tests; Debezium reads the WAL)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT position, id, aggregatetype, aggregateid, type, payload FROM central_outbox "
                "WHERE position > ? ORDER BY position LIMIT ?", (after_id, limit)).fetchall()
        return [{**dict(r), "id": str(r["id"]), "payload": json_value(r["payload"])} for r in rows]

    # A write whose transaction the database gave up for another's sake (a deadlock, a serialisation
    # failure; rolled back whole: a batch, an authorisation, a release) is made again here, up to this
    # many tries in all, rather than answered 503 for its lane to send again: the database is answering,
    # and the next try sees what won. Each try after the first waits a random moment below a ceiling
    # that doubles from CONFLICT_WAIT_S up to CONFLICT_WAIT_MAX_S: writers that deadlocked once, tried
    # again at the same instant, would meet again in the same order.
    CONFLICT_TRIES = 8
    CONFLICT_WAIT_S = 0.005
    CONFLICT_WAIT_MAX_S = 0.25

    @staticmethod
    def is_conflict(exc: BaseException) -> bool:
        """The transaction lost to another and was rolled back: worth trying again at once."""
        return False

    def apply_batch(
        self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]], received_at: str
    ) -> list[dict[str, Any]]:
        """Apply a decoded batch in one transaction; the per-event answers in wire shape."""
        return self._again(f"batch {batch_id} of {store_id}/{lane_id}", self._apply_batch, store_id, lane_id,
                           batch_id, events, received_at)

    def _again(self, what: str, write: Any, *args: Any) -> Any:
        """``write(*args)``, made again when the database gave its transaction up for another's sake
        (CONFLICT_TRIES); the last try's conflict is raised (the lane is answered 503, and retries)."""
        for attempt in range(self.CONFLICT_TRIES - 1):
            try:
                return write(*args)
            except Exception as exc:
                if not self.is_conflict(exc):
                    raise
                log.info("%s lost to another transaction (%s); made again", what, type(exc).__name__,
                         extra={"event": "central.conflict", "attempt": attempt + 1})
            time.sleep(random.uniform(0, min(self.CONFLICT_WAIT_MAX_S, self.CONFLICT_WAIT_S * 2 ** attempt)))
        return write(*args)

    def _apply_batch(
        self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]], received_at: str
    ) -> list[dict[str, Any]]:
        self.sweep_expired()  # balances this batch loads are current (its own transaction: locks stay ordered)
        now = self._clock()
        with self._write() as conn:
            conn.execute("INSERT INTO lanes (store_id, lane_id, last_seq) VALUES (?, ?, 0) "
                         "ON CONFLICT (store_id, lane_id) DO NOTHING", (store_id, lane_id))
            last = conn.execute("SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?" + self.FOR_UPDATE,
                                (store_id, lane_id)).fetchone()["last_seq"]
            answers: dict[int, dict[str, Any]] = {}
            run = []  # the contiguous run of new seqs after the head
            for event in events:
                if event["seq"] == last + 1 + len(run):
                    run.append(event)
                elif event["seq"] > last:  # not consumed: the lane must first deliver the seqs in between
                    answers[event["seq"]] = result_wire(event["seq"], event["event_id"], "rejected", "seq_gap")
            bodies = {e["seq"]: _written(e) for e in run}  # stored, and streamed as is
            reused = _delivered_ids(conn, store_id, lane_id, run)
            inserted = self._insert_run(conn, store_id, lane_id, batch_id, run, bodies, received_at, reused)
            program = self._program_in(conn)[0]
            work = _BatchWork(conn, program or {}, now, store_id, lane_id, holder_sql=self.HOLDER_SQL,
                              sale_of=self.SALE_OF_SQL, lock=lambda m: self._lock_members(conn, [m]),
                              number=lambda: self._member_number(conn), claim=lambda m: self._claim_new(conn, m),
                              currencies=self._currencies_in(conn, program))
            touched = work.members_of([e for e in run if e["seq"] in inserted and not inserted[e["seq"]]])
            self._lock_members(conn, touched)
            work.preload(touched)
            work.resolve_late()
            streamed, prefix = [], lane_payload_prefix(store_id, lane_id)
            for event in run:
                seq = event["seq"]
                if seq not in inserted:
                    continue  # answered as stored, below
                code = inserted[seq] or work.apply(event, seq)
                if code and not inserted[seq]:  # central's own facts refused it: stored, not applied
                    conn.execute("UPDATE events SET status = 'rejected', code = ? WHERE store_id = ? "
                                 "AND lane_id = ? AND seq = ?", (code, store_id, lane_id, seq))
                answers[seq] = result_wire(seq, event["event_id"], "rejected" if code else "accepted", code,
                                           member_id=None if code else work.enrolled.get(seq),
                                           flag=None if code else work.flags.get(seq))
                if not code:
                    streamed.append(("lane", f"{store_id}/{lane_id}", str(event["type"]),
                                     f'{prefix}"seq": {seq}, "event": {bodies[seq]}}}'))
            _outbox(conn, streamed)
            again = [e for e in events if e["seq"] not in answers]
            answers.update(_answers_again(conn, store_id, lane_id, again))
            work.flush(store_id, lane_id, self._write_members)
            head = last + sum(1 for e in run if e["seq"] in inserted)
            conn.execute("UPDATE lanes SET last_seq = ? WHERE store_id = ? AND lane_id = ?", (head, store_id, lane_id))
        return [answers[e["seq"]] for e in events]

    def _insert_run(self, conn: Any, store_id: str, lane_id: str, batch_id: str, run: list[dict[str, Any]],
                    bodies: dict[int, str | None], received_at: str, reused: set[str]) -> dict[int, str | None]:
        """Insert the run's events (checked for content, as accepted or rejected; an event_id this lane
        delivered at another seq as ``event_id_reused``, never applied twice); {seq: code} for the rows
        that were inserted, from INSERT ... ON CONFLICT DO NOTHING RETURNING."""
        codes = {e["seq"]: "event_id_reused" if e["event_id"] in reused else
                 "malformed_event" if bodies[e["seq"]] is None else validate_event(e, bodies[e["seq"]])
                 for e in run}
        rows = [(store_id, lane_id, e["seq"], e["event_id"], "rejected" if codes[e["seq"]] else "accepted",
                 codes[e["seq"]], _storable(_str_or_none(e.get("type"))),
                 _storable(_str_or_none(e.get("member_id"))),
                 _rejected_body(e) if codes[e["seq"]] else bodies[e["seq"]], batch_id, received_at)
                for e in run]
        return {seq: codes[seq] for seq in self._insert_events(conn, rows)}

    def _insert_events(self, conn: Any, rows: list[tuple[Any, ...]]) -> list[int]:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING seq: the seqs of the rows inserted."""
        inserted = []
        for start in range(0, len(rows), 500):
            chunk = rows[start:start + 500]
            values = ", ".join(f"({_marks(EVENT_COLUMNS)})" for _ in chunk)
            inserted += [r["seq"] for r in conn.execute(
                f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES {values} "
                "ON CONFLICT (store_id, lane_id, seq) DO NOTHING RETURNING seq",
                [v for row in chunk for v in row]).fetchall()]
        return inserted

    # --- the fault plan (shared by every worker, so it lives in the database) -------------------

    def add_fault(self, route: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        route, fault, count, delay = check_fault(route, fault, count, delay)
        with self._write() as conn:
            conn.execute("INSERT INTO central_faults (route, fault, remaining, delay) VALUES (?, ?, ?, ?)",
                         (route, fault, count, delay))

    def take_fault(self, route: str) -> tuple[str, float] | None:
        """The next queued fault of ``route``, consumed; None (one indexed probe) when there is none."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}")
        with self._read() as conn:
            if conn.execute("SELECT 1 FROM central_faults WHERE route = ? LIMIT 1", (route,)).fetchone() is None:
                return None
        with self._write() as conn:
            row = conn.execute("SELECT id, fault, remaining, delay FROM central_faults WHERE route = ? "
                               "ORDER BY id LIMIT 1" + self.FOR_UPDATE, (route,)).fetchone()
            if row is None:
                return None
            if row["remaining"] <= 1:
                conn.execute("DELETE FROM central_faults WHERE id = ?", (row["id"],))
            else:
                conn.execute("UPDATE central_faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
            return row["fault"], float(row["delay"])

    def clear_faults(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM central_faults")


def _delivered_ids(conn: Any, store_id: str, lane_id: str, run: list[dict[str, Any]]) -> set[str]:
    """The run's event_ids this lane already delivered (at other seqs: the run's seqs are new)."""
    ids = list({e["event_id"] for e in run if isinstance(e.get("event_id"), str)})
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found.update(r["event_id"] for r in conn.execute(
            f"SELECT event_id FROM events WHERE store_id = ? AND lane_id = ? AND event_id IN ({_marks(chunk)})",
            [store_id, lane_id, *chunk]).fetchall())
    return found


def _answers_again(conn: Any, store_id: str, lane_id: str, events: list[dict[str, Any]]) -> dict[int, Any]:
    """Seqs central already consumed: same event -> same outcome, else a conflict."""
    if not events:
        return {}
    seqs = [e["seq"] for e in events]
    stored = {r["seq"]: r for r in conn.execute(
        f"SELECT seq, event_id, status, code, body FROM events WHERE store_id = ? AND lane_id = ? "
        f"AND seq IN ({_marks(seqs)})", [store_id, lane_id, *seqs]).fetchall()}
    answers = {}
    for event in events:
        seq, event_id, row = event["seq"], event["event_id"], stored.get(event["seq"])
        if row is None or row["event_id"] != event_id or (row["status"] == "accepted" and not _same_event(row, event)):
            # another event at a consumed seq; also the same event_id with other content (the lane
            # would take a duplicate for its change having been applied)
            answers[seq] = result_wire(seq, event_id, "rejected", "seq_conflict")
        elif row["status"] == "accepted":
            answers[seq] = result_wire(seq, event_id, "duplicate")
        else:
            answers[seq] = result_wire(seq, event_id, "rejected", row["code"])
    return answers


def _same_event(row: Any, event: dict[str, Any]) -> bool:
    """Is the accepted event stored in ``row`` this one, by value? (SQLite keeps its text, PostgreSQL its
    jsonb, which psycopg reads as a dict: compared as parsed JSON, key order aside.)"""
    body = row["body"]
    stored = loads(body) if isinstance(body, str | bytes) else body
    return _by_value(stored) == _by_value(event)


def _by_value(value: Any) -> Any:
    """JSON as values: a number by its decimal value (PostgreSQL's jsonb keeps 1e23 exactly, and
    psycopg reads it back as an integer), true and false apart from 1 and 0."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return ("number", Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, dict):
        return {k: _by_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_by_value(v) for v in value]
    return value


class _BatchWork:
    """Members touched by one batch, changed in memory and written once at the end.
    Lots are changed in place (same transaction); balances are recomputed from them at flush."""

    def __init__(self, conn: Any, program: dict[str, Any], now: float, store_id: str, lane_id: str, *,
                 holder_sql: str, sale_of: str, lock: Any, number: Any, claim: Any,
                 currencies: set[str] | None) -> None:
        self.conn = conn
        self.holder_sql = holder_sql  # the engine's query for the member holding an identifier
        self.sale_of = sale_of  # the engine's expression for a stored event's transaction_id
        self.lock = lock  # lock one more member (one an enrolment found by its identifier)
        self.number = number  # the next number for a member central names
        self.claim = claim  # lock a new member id's key if no writer holds it, without waiting
        self.locked: set[str] = set()
        self.enrolled: dict[int, str] = {}  # seq of a provisional enrolment -> central's member id
        self.aliases: dict[str, str] = {}  # provisional id -> central's member id, for this batch's ids
        self.named: set[str] = set()  # the member ids this batch's events name
        self.program = program
        self.coupons = coupon_kinds(program)
        self.holders = burns.coupon_holders(program)  # personal coupons: code -> the member it is for
        self.now = now
        self.store_id, self.lane_id = store_id, lane_id
        self.lane_key = f"{store_id}/{lane_id}"  # recorded as each lot's source
        self.earlier = earlier_lane_ids(lane_id)  # L01 and L01.2 for L01.3: a POS's retries may reach both
        self.never_spent = never_spent(program)  # "qualifying" currencies: a redemption spends none
        self.tier_points = tier_currency(program)  # the currency whose points decide the tier
        # tier points never spent: their balance and qualifying are one figure, and they owe nothing (lots.debit)
        self.one_figure = self.tier_points in self.never_spent
        self.own_lanes = (self.lane_key, *(f"{store_id}/{lane}" for lane in self.earlier))  # whose sales it returns
        self.members: dict[str, dict[str, Any]] = {}
        self.marks: dict[str, int] = {}  # member_id -> highest seq of this lane applied
        self.debtors: set[str] = set()  # members who may owe points: their credits repay first
        self.claimed: dict[str, str] = {}  # identifier -> member created by this batch (not in the table yet)
        self.currencies = currencies  # an event may name: every program's, not only the one in force's
        self.new_lots: list[tuple[Any, ...]] = []  # credits of members who owe nothing, inserted together
        # A member whose lots only gained credits this batch (no debit, no debt, not new) publishes its
        # balance as stored plus the credits still unexpired now: the same figure lot_balances would sum
        # from every live lot (the expiry sweep at the start of the batch made the stored one current),
        # without reading them all. Everyone else's balances are summed from the lots (``exact``).
        self.live_credits: dict[str, dict[str, int]] = {}
        self.exact: set[str] = set()
        self.tiered: set[str] = set()  # members whose tier was settled at their current qualifying
        self.flags: dict[int, str] = {}  # seq -> what central noticed about an accepted event
        self.sales: list[tuple[str, str]] = []  # (member id as sent, transaction_id) of the batch's accruals
        # (member, transaction_id) -> the occurred_at of each sale of that id this lane credited: read
        # once a batch, on its first accrual (identities.sales_rung), then kept up to date as it applies
        self.rung: dict[tuple[str, str], list[Any]] | None = None

    def apply(self, event: dict[str, Any], seq: int) -> str | None:
        """Apply one valid event; a rejection code when central's own facts forbid it."""
        dates = lot_dates(event)
        if dates is None:
            return "malformed_event"  # checked before anything changes: a rejected event applies nothing
        if self.currencies is not None and any(c not in self.currencies for c in event["points"]):
            return "bad_points"  # a currency the program does not have: no balance may hold it
        if event["type"] == "redemption" and any(event["points"][c] for c in self.never_spent & event["points"].keys()):
            return "bad_points"  # tier points are never spent: their balance is the tier's figure
        if event["type"] == "member_enrolled" and not all(lookup_form(i) for i in event.get("identifiers") or ()):
            return "malformed_event"  # a member no lane would find by it: enrolled again as a second one
        if event["type"] == "member_enrolled" and event.get("provisional") is True:
            if event["member_id"] not in self.aliases and self._load(event["member_id"]) is not None:
                return "malformed_event"  # a member central knows is not provisional: its alias would take it over
            if self._takes_over(event):
                return "malformed_event"  # another member's card or phone as the id: lanes would find it by it
            member_id = self._enrol(event, seq)
        else:
            member_id = self.aliases.get(event["member_id"], event["member_id"])  # a provisional id once mapped
        member = self._load(member_id)
        if member is None:
            if event["type"] != "member_enrolled":
                return "unknown_member"
            holder = self._holder(event.get("identifiers"))
            if holder is not None:
                return "identifier_taken"  # another member holds its card or phone: never two holders
            member = self._create(member_id, event)
            self._note_id_clashes(member_id, member["identifiers"], seq)
        if member["status"] == "deleted":
            return "member_deleted"
        if self.earlier and self._counted_before(event, member_id):
            if event["type"] == "redemption":  # the voucher the copy issued is void: its use is voucher_used
                burns.void_voucher(self.conn, event, f"{self.lane_key}/{seq}", self.coupons)
            return COUNTED  # a sale, return or redemption retried after the lane's ledger.db was replaced
        if event["type"] == "accrual" and self._rung_before(event, member_id):
            return "accrual_repeated"  # this lane's sale again, under a new seq and event_id
        refused = None
        if event["type"] == "voucher_use":
            refused = burns.record_voucher_use(self.conn, self.store_id, self.lane_id, seq, event, member_id,
                                               self.now, self.coupons, self.holders)
        elif event["type"] == "redemption":
            refused = burns.record_redemption(self.conn, self.store_id, self.lane_id, seq, event, member_id,
                                              self.coupons)
        elif event["type"] == "token_use":
            refused = self._use_token(event, member_id, seq)
        elif event["type"] == "return":
            self.insert_lots()  # the sale's own lots, if this batch credited them
            refused = return_refusal(self.conn, self.store_id, self.lane_id, seq, self.earlier, member_id, event,
                                     self.sale_of)
        if refused:
            return refused
        if event.get("birthday_award_year") is not None:
            self._award_birthday(event, member_id, seq)
        tier_points = self.tier_points
        # A debit takes the lots that were unexpired when the till spent them: an
        # offline redemption on the last day of the month, synced later, spends
        # the points that were about to expire, not the member's later ones.
        occurred = parse_utc(event["occurred_at"])
        as_of = min(self.now, occurred.timestamp()) if occurred is not None else self.now
        source = f"{self.lane_key}/{seq}"
        for currency, delta in event["points"].items():
            member["balances"].setdefault(currency, 0)  # the real figure comes from the lots at flush
            if delta > 0:
                available_at, expires_at = dates.get(currency, (None, None))
                if member_id in self.debtors:  # it repays first: in order with the lots before it
                    self.insert_lots()
                    credit(self.conn, member_id, currency, delta, event.get("transaction_id"), available_at,
                           expires_at, source, self.now)
                    self.exact.add(member_id)
                else:
                    lot = lot_row(member_id, currency, delta, delta, event.get("transaction_id"), available_at,
                                  expires_at, source, self.now)
                    self.new_lots.append(lot)
                    if not lot[8]:  # not swept: unexpired now, so it counts in the balance
                        live = self.live_credits.setdefault(member_id, {})
                        live[currency] = live.get(currency, 0) + delta
            elif delta < 0:
                self.exact.add(member_id)
                self.insert_lots()  # a debit draws from every lot credited before it
                own = event.get("transaction_id") if event["type"] == "return" else None
                debit(self.conn, member_id, currency, -delta, own, as_of, self.own_lanes,
                      debt=not (currency == tier_points and self.one_figure))
                self.debtors.add(member_id)  # it may have gone into debt
            if currency == tier_points and delta and (event["type"] in ("accrual", "return") or (
                    event["type"] == "member_enrolled" and self.one_figure)):
                member["qualifying"] = max(0, member["qualifying"] + delta)
                self.tiered.discard(member_id)
        if event["type"] == "accrual" and isinstance(event.get("transaction_id"), str) \
                and any(delta > 0 for delta in event["points"].values()) and self.rung is not None:
            self.rung.setdefault((member_id, event["transaction_id"]), []).append(event["occurred_at"])
        if member_id not in self.tiered:  # the same tier at the same qualifying: asked once
            member["tier"] = upgraded_tier(member["tier"], member["qualifying"], self.program)
            self.tiered.add(member_id)
        self.marks[member_id] = seq
        return None

    def _counted_before(self, event: dict[str, Any], member_id: str) -> bool:
        """Did this lane's earlier identity (L01 for L01.2) deliver this very event (identities.py)?"""
        kind = event["type"]
        if kind == "accrual":
            return accrual_counted(self.conn, self.store_id, self.earlier, member_id, event)
        return kind == "redemption" and redemption_counted(self.conn, self.store_id, self.earlier,
                                                           event.get("authorisation_id")) is not None

    def _rung_before(self, event: dict[str, Any], member_id: str) -> bool:
        """Did this lane credit ``member_id`` for this very sale before (its ``transaction_id`` and
        ``occurred_at``), in an earlier batch or earlier in this one?"""
        transaction_id = event.get("transaction_id")
        if not isinstance(transaction_id, str):
            return False
        if self.rung is None:
            pairs = {(self.aliases.get(m, m), t) for m, t in self.sales}
            self.rung = sales_rung(self.conn, self.store_id, self.lane_id, pairs)
        return any(same_instant(occurred, event["occurred_at"])
                   for occurred in self.rung.get((member_id, transaction_id), ()))

    def insert_lots(self) -> None:
        """The credits held back so far, in one statement, before anything reads or draws lots."""
        insert_lots(self.conn, self.new_lots)
        self.new_lots = []

    def members_of(self, events: list[dict[str, Any]]) -> list[str]:
        """Every lock key the events need, sorted: the members they name, those ids' members when
        they are aliases, the holders of a provisional enrolment's identifiers, the voucher codes."""
        named = {e["member_id"] for e in events if isinstance(e.get("member_id"), str)}
        self.named = named
        self.sales = [(e["member_id"], e["transaction_id"]) for e in events if e.get("type") == "accrual"
                      and isinstance(e.get("member_id"), str) and isinstance(e.get("transaction_id"), str)]
        self.aliases = _resolve_many(self.conn, sorted(named))
        ids = set(named) | set(self.aliases.values())
        for event in events:
            if event.get("type") == "member_enrolled":
                # Two batches enrolling one card at once: one at a time, so the second sees the first.
                ids.update(identifier_lock(i) for i in _identifiers(event))
                if event.get("provisional") is True and isinstance(event.get("member_id"), str) \
                        and lookup_form(event["member_id"]):
                    ids.add(identifier_lock(event["member_id"]))  # its id a card being enrolled elsewhere
                holder = self._holder(event.get("identifiers"))
                if holder is not None:
                    ids.add(holder)
            if event.get("type") == "voucher_use" and isinstance(event.get("voucher_code"), str) \
                    and (lock := voucher_lock(event["voucher_code"])):  # no lock for no code: its event is refused
                ids.add(lock)  # two lanes' uses of one code: one at a time
            if event.get("type") == "redemption" and isinstance(event.get("voucher"), dict) \
                    and isinstance(event["voucher"].get("code"), str) and (lock := voucher_lock(event["voucher"]["code"])):
                ids.add(lock)  # its voucher, pending since the authorisation, may be in use at another lane
        self.locked = ids
        return sorted(ids)

    def preload(self, member_ids: list[str]) -> None:
        """Read the batch's members in one query per 500 (they are locked already)."""
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start:start + 500]
            for row in self.conn.execute(f"SELECT * FROM members WHERE member_id IN ({_marks(chunk)})",
                                         chunk).fetchall():
                self.members[row["member_id"]] = decoded_member(row)
            self.debtors |= {r["member_id"] for r in self.conn.execute(
                f"SELECT DISTINCT member_id FROM lot_debts WHERE member_id IN ({_marks(chunk)})", chunk).fetchall()}

    def resolve_late(self) -> None:
        """The aliases of the ids that named no member and no alias before the locks were taken: another
        lane's batch enrolling one of them (under the same provisional id) may have mapped it while this
        one waited for its lock. Read again now, so this batch finds that member rather than enrol the
        id a second time (on PostgreSQL a unique violation). Usually no id: one query when there is."""
        unresolved = sorted(n for n in self.named if n not in self.members and n not in self.aliases)
        if unresolved:
            self.aliases.update(_resolve_many(self.conn, unresolved))

    def _load(self, member_id: str) -> dict[str, Any] | None:
        if member_id not in self.members:  # not among those preloaded: found since (an enrolment's holder)
            if member_id not in self.locked:
                # Locked now, out of the sorted order: a rare deadlock with another batch is
                # detected by the database, and the batch it gave up applied again (apply_batch).
                self.lock(member_id)
                self.locked.add(member_id)
            member = _load_member(self.conn, member_id)
            if member is None:
                return None
            self.members[member_id] = member
        return self.members[member_id]

    def _takes_over(self, event: dict[str, Any]) -> bool:
        """Is a new provisional id a card or phone another member holds than the one the enrolment is
        for? As an alias it would be looked up first: every lane would then find that card's (or phone's)
        sales' member in the enrolment's."""
        provisional = event["member_id"]
        if provisional in self.aliases:
            return False  # mapped already (the batch's aliases are read before it is applied): sent again
        forms = [provisional]
        if provisional.isascii() and provisional.isdigit():  # a phone's international forms, without the +
            forms += [f"+{provisional[2:]}"] if provisional.startswith("00") else [f"+{provisional}"]
        holder = self._holder([f for f in forms if lookup_form(f)])
        return holder is not None and holder != self._holder(event.get("identifiers"))

    def _enrol(self, event: dict[str, Any], seq: int) -> str:
        """A member a lane enrolled under a provisional id: the member who already holds one of its
        identifiers (enrolled twice while offline), else a new member with central's next id.
        The provisional id becomes an alias, so later events naming it reach the same member."""
        provisional = event["member_id"]
        known = self.aliases.get(provisional, provisional)
        if known != provisional:
            member_id = known
        else:
            member_id = self._holder(event.get("identifiers")) or self._new_member_id()
            member = self._load(member_id)
            if member is None:
                added = self._create(member_id, event)["identifiers"]
            else:
                added = self._add_identifiers(member, event, seq)
                _fill_profile(member, event)
            self._note_id_clashes(member_id, added, seq)
            self.conn.execute("INSERT INTO member_aliases (alias, member_id, source) VALUES (?, ?, ?)",
                              (provisional, member_id, f"{self.lane_key}/{seq}"))
            # a birthday year a lane claimed under the provisional id before central named the member
            self.conn.execute("UPDATE birthday_awards SET member_id = ? WHERE member_id = ? AND year NOT IN "
                              "(SELECT year FROM birthday_awards WHERE member_id = ?)",
                              (member_id, provisional, member_id))
            self.aliases[provisional] = member_id  # later events of this batch naming it reach the member
        self.enrolled[seq] = member_id
        return member_id

    def _add_identifiers(self, member: dict[str, Any], event: dict[str, Any], seq: int) -> list[str]:
        """An enrolment found its member by one identifier (the phone, enrolled again at another lane
        while offline): its other identifiers are that member's too, as long as no other member holds
        them. A card given at the first lane would otherwise identify nobody once the lane's cache had
        the member, and could be enrolled for someone else. One another member holds stays theirs, and
        the member desk is told (``member.identifiers_split``): the shopper's card and phone now open two
        accounts, perhaps one person's, which only a person can join."""
        held = member["identifiers"]
        added = []
        for identifier in _identifiers(event):
            forms = card_forms(identifier)  # its card already, read in the other form: held
            if any(f in held for f in forms):
                continue
            holder = self._holder([identifier])
            if holder is None:
                held.append(identifier)
                added.append(identifier)
                self.claimed[identifier] = member["member_id"]
            elif holder != member["member_id"]:
                _outbox(self.conn, [("member", member["member_id"], "member.identifiers_split", {
                    "member_id": member["member_id"], "identifier": identifier, "held_by": holder,
                    "enrolled_as": event["member_id"], "lane": self.lane_key, "seq": seq})])
        return added

    def _note_id_clashes(self, member_id: str, identifiers: list[str], seq: int) -> None:
        """A card a lane enrolled whose code is another member's id (the lane had not heard of that
        member yet): the card is a fact at the till and stays with its holder, and the member desk is told
        in the outbox. Lanes read the code typed as the id, scanned as the card."""
        for identifier in identifiers:
            other = self.aliases.get(identifier) or resolve_alias(self.conn, identifier)
            if other == member_id:
                continue
            known = self.members.get(other)
            status = known["status"] if known is not None else next(iter(self.conn.execute(
                "SELECT status FROM members WHERE member_id = ?", (other,)).fetchone() or ()), None)
            if status is not None and status != "deleted":
                _outbox(self.conn, [("member", member_id, "member.identifier_clash", {
                    "member_id": member_id, "identifier": identifier, "member_with_that_id": other,
                    "lane": self.lane_key, "seq": seq})])

    def _create(self, member_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """A member a member_enrolled event creates; its identifiers are its own from now on."""
        member = member_row({"member_id": member_id, **enrolment_profile(event)}, self.program)
        self.members[member_id] = member
        self.exact.add(member_id)  # a new member's balance is summed from its lots
        self.claimed.update((i, member_id) for i in member["identifiers"])
        return member

    def _holder(self, identifiers: Any) -> str | None:
        """The member holding any of these identifiers, this batch's new members included (the
        reference central scans; a platform indexes)."""
        for identifier in _identifiers({"identifiers": identifiers}):
            for form in card_forms(identifier):  # a card's UPC-A and its EAN-13 are one card
                if form in self.claimed:
                    return self.claimed[form]
                row = self.conn.execute(self.holder_sql, (form,)).fetchone()
                if row is not None:
                    return row["member_id"]
        return None

    def _new_member_id(self) -> str:
        """Central's next member id. Its key is claimed without waiting: a lock taken here, after the
        batch's sorted first set, waited on another enrolling batch that waited on this one's (two
        batches read the same next number), and fleets of enrolling lanes deadlocked by the hundred.
        A number in use (a member, a lane's provisional id or a card that looks like ours) is passed
        over before its key is claimed, and again after (made meanwhile by the writer that held it);
        so is one whose key another writer holds. No two writers are given one number."""
        refused = 0
        while True:
            member_id = f"M{self.number():07d}"
            if member_id in self.members or member_id in self.locked or self._in_use(member_id):
                continue
            if not self.claim(member_id):
                refused += 1
                if refused >= CLAIM_TRIES:  # every number's key held: the batch is made again (apply_batch)
                    raise Contended(f"no member number claimed in {CLAIM_TRIES} tries")
                continue
            if not self._in_use(member_id):
                self.locked.add(member_id)  # its key is this batch's: _load locks nothing more for it
                return member_id

    def _in_use(self, member_id: str) -> bool:
        return _load_member(self.conn, member_id) is not None or resolve_alias(self.conn, member_id) != member_id \
            or self._holder([member_id]) is not None

    def _use_token(self, event: dict[str, Any], member_id: str, seq: int) -> str | None:
        """A member token accepted at a lane: every lane refuses it a second time itself, so the
        same token_id from another lane is a replay (a screenshot shown at two tills) and is flagged.
        The primary key decides, so two lanes racing on one token get one first use."""
        token_id = event.get("token_id")
        if not isinstance(token_id, str) or not 0 < len(token_id) <= 128 \
                or not isinstance(event.get("identified_by"), str) or event["identified_by"] not in TOKEN_SCHEMES:
            return "malformed_event"
        mine = first_token_use(self.conn, token_id, self.lane_key, f"{self.lane_key}/{seq}", member_id)
        return None if mine else "token_replayed"

    def _award_birthday(self, event: dict[str, Any], member_id: str, seq: int) -> None:
        """An accrual that gave the birthday bonus: the member's year is this lane's unless another lane
        gave it first (both offline, or this lane did not ask). Then it is flagged, never refused: the
        accrual is a fact at the till. The flag is in the push answer and in central's outbox."""
        year = event["birthday_award_year"]
        if first_birthday_award(self.conn, member_id, year, self.lane_key, event["transaction_id"],
                                f"{self.lane_key}/{seq}"):
            return
        self.flags[seq] = BIRTHDAY_REPEATED
        held = self.conn.execute("SELECT lane_key, transaction_id FROM birthday_awards WHERE member_id = ? "
                                 "AND year = ?", (member_id, year)).fetchone()
        _outbox(self.conn, [("member", member_id, "member.birthday_repeated", {
            "member_id": member_id, "year": year, "lane": self.lane_key, "seq": seq,
            "transaction_id": event["transaction_id"], "first_lane": held["lane_key"],
            "first_transaction_id": held["transaction_id"]})])

    def flush(self, store_id: str, lane_id: str, write_members: Any) -> None:
        """Balances from the lots, then every changed member and its watermark, a few statements in all."""
        self.insert_lots()
        if not self.marks:
            return
        changed = [self.members[m] for m in self.marks]
        balances = lot_balances(self.conn, {m["member_id"]: m["balances"] for m in changed
                                            if m["member_id"] in self.exact}, self.now)
        for member in changed:
            if member["member_id"] in balances:
                member["balances"] = balances[member["member_id"]]
            else:
                for currency, points in self.live_credits.get(member["member_id"], {}).items():
                    member["balances"][currency] = member["balances"].get(currency, 0) + points
        write_members(self.conn, changed)
        self.conn.executemany(
            "INSERT INTO member_lanes (member_id, store_id, lane_id, applied_seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (member_id, store_id, lane_id) DO UPDATE SET applied_seq = excluded.applied_seq",
            [(m, store_id, lane_id, seq) for m, seq in self.marks.items()])


def rules_digest(program: dict[str, Any]) -> str:
    """What a program's version stands for, as a digest: everything but its member-token keys (a key
    rotation changes those under one version; lanes compare the rest: posd.storage.cache._rules_of)."""
    rules = {k: v for k, v in program.items() if k != "member_tokens"}
    return hashlib.sha256(json.dumps(rules, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def program_currencies(program: dict[str, Any]) -> set[str]:
    return {c["code"] for c in program.get("currencies", []) if isinstance(c, dict) and isinstance(c.get("code"), str)}


def coupon_kinds(program: dict[str, Any]) -> dict[str, str]:
    """The program's coupon codes and their kinds (campaign: once per member; single: once)."""
    return {c["code"]: c.get("kind", "campaign") for c in program.get("coupons", [])
            if isinstance(c, dict) and isinstance(c.get("code"), str)}


def _outbox(conn: Any, rows: list[tuple[str, str, str, dict[str, Any] | str]]) -> None:
    """Outbox rows (aggregatetype, aggregateid, type, payload: a dict, or its JSON text), in order."""
    if not rows:
        return
    conn.executemany("INSERT INTO central_outbox (id, aggregatetype, aggregateid, type, payload) VALUES (?, ?, ?, ?, ?)",
                     [(row_id, agg_type, agg_id, type_,
                       payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False))
                      for row_id, (agg_type, agg_id, type_, payload) in zip(outbox_ids(len(rows)), rows, strict=True)])


_OUTBOX_IDS = UuidV7()


def outbox_ids(count: int) -> list[str]:
    """``count`` new outbox ids, ascending, and after every id this process gave before (UuidV7).

    Random (v4) ids put each row's key on a random page of the id index: a 1000-event batch dirtied
    some 600 index pages, written to the WAL and again at the checkpoint. Time-ordered ids append,
    and they are still uuids, unique across workers (73 random bits per millisecond and worker)."""
    return [hyphenated(value) for value in _OUTBOX_IDS.take(count)]


def _identifiers(event: dict[str, Any]) -> list[str]:
    """An enrolment's identifiers (validate_event refused any that is not a string)."""
    identifiers = event.get("identifiers")
    return [i for i in identifiers if isinstance(i, str)] if isinstance(identifiers, list) else []


def identifier_lock(identifier: str) -> str:
    """The lock key of a card code or phone number an enrolment claims (a card's in its EAN-13 form:
    one lock for the card whichever form a lane read it in)."""
    return f"identifier:{card_forms(identifier)[0]}"


def lane_payload_prefix(store_id: str, lane_id: str) -> str:
    """The start of a lane event's outbox payload, ``{store_id, lane_id, seq, event}`` as json.dumps
    writes it: the payload is this, the seq, and the event's text as the events table stores it
    (each event is encoded once, not twice)."""
    return (f'{{"store_id": {json.dumps(store_id, ensure_ascii=False)}, '
            f'"lane_id": {json.dumps(lane_id, ensure_ascii=False)}, ')


def reservation_lock(rid: str) -> str:
    """The lock key of one reservation id: its authorisation and its release, one at a time."""
    return f"reservation:{rid}"


def voucher_lock(code: str | None) -> str | None:
    """The lock key of a voucher code, taken beside member ids in their one order (a member whose id
    happened to be the same would only be locked once more than needed)."""
    return None if not code else f"voucher:{code}"


def resolve_alias(conn: Any, member_id: str) -> str:
    """Central's id for a member a lane may still name by its provisional id."""
    row = conn.execute("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,)).fetchone()
    return member_id if row is None else row["member_id"]


def _resolve_many(conn: Any, ids: list[str]) -> dict[str, str]:
    """{alias: member_id} for those of ``ids`` that are aliases."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for r in conn.execute(f"SELECT alias, member_id FROM member_aliases WHERE alias IN ({_marks(chunk)})",
                              chunk).fetchall():
            found[r["alias"]] = r["member_id"]
    return found


def _aliases(conn: Any, member_ids: list[str]) -> dict[str, list[str]]:
    """{member_id: its aliases, sorted} for the members that have any."""
    found: dict[str, list[str]] = {}
    for start in range(0, len(member_ids), 500):
        chunk = member_ids[start:start + 500]
        for r in conn.execute(f"SELECT alias, member_id FROM member_aliases WHERE member_id IN ({_marks(chunk)}) "
                              "ORDER BY alias", chunk).fetchall():
            found.setdefault(r["member_id"], []).append(r["alias"])
    return found


def _load_member(conn: Any, member_id: str) -> dict[str, Any] | None:
    """A member as stored (JSON columns decoded, no version), or None."""
    row = conn.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return None if row is None else decoded_member(row)


def decoded_member(row: Any) -> dict[str, Any]:
    member = {k: row[k] for k in row.keys() if k != "version"}
    for column in JSON_COLUMNS:
        member[column] = json_value(member[column])
    return member


def json_value(value: Any) -> Any:
    """A JSON column's value: SQLite keeps the text, PostgreSQL's jsonb arrives decoded."""
    return loads(value) if isinstance(value, (str, bytes)) else value


def _marks(items: Any) -> str:
    return ", ".join("?" * len(items))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _rejected_body(event: dict[str, Any]) -> str:
    """A rejected event as stored. It may carry what no engine stores (NUL, a lone surrogate, NaN and
    the infinities): those are kept as their escape text (a number as the string the lane sent), so the record of what the lane sent stays readable. (An accepted event
    is stored as sent: validate_event let nothing unstorable through.)"""
    try:
        return json.dumps(_storable(event), ensure_ascii=False)
    except RecursionError:  # nested deeper than this stack allows: its envelope is what is kept
        return json.dumps(_storable({k: event.get(k) for k in ("seq", "event_id") if k in event}))


def _written(event: dict[str, Any]) -> str | None:
    """The event's text (event_text), or None for one nested deeper than this stack can write out:
    the JSON reader takes 1,024 levels, writing one of about 1,000 runs out of recursion. Such an
    event is malformed_event, rejected alone (its envelope kept, its seq consumed), never a 500 that
    every resend of its batch meets again."""
    try:
        return event_text(event)
    except RecursionError:
        return None


def event_text(event: dict[str, Any]) -> str:
    """An event as central stores and streams it: compact JSON, its keys in the order the lane sent
    them, which is the very text a posd lane sent (its outbox keeps each event as orjson writes it,
    and batch_json sends that text as it is); written by orjson, json where orjson would differ."""
    return json_text(event)


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if isinstance(value, float) and not math.isfinite(value):  # as the lane sent it, as text: jsonb has no NaN
        return json.dumps(value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _fill_profile(member: dict[str, Any], event: dict[str, Any]) -> None:
    """What a member enrolled again (the same phone at another lane while offline) lacks and this
    enrolment gives: the name a cashier typed at the second till, where the first had none. Never
    what the member has."""
    for key, value in enrolment_profile(event).items():
        if key != "identifiers" and value and not member.get(key):
            member[key] = value


def first_birthday_award(conn: Any, member_id: str, year: int, lane_key: str, transaction_id: str,
                         source: str) -> bool:
    """Record ``lane_key``'s birthday bonus for the member's year unless another lane holds the year;
    True when the year is this lane's."""
    return _first_holder(conn, "birthday_awards", {"member_id": member_id, "year": year},
                         {"lane_key": lane_key, "transaction_id": transaction_id, "source": source})


def last_birthday_awards(conn: Any, member_ids: list[str]) -> dict[str, int]:
    """{member_id: the last year it was given the birthday bonus} for the members that have one."""
    found: dict[str, int] = {}
    for start in range(0, len(member_ids), 500):
        chunk = member_ids[start:start + 500]
        for r in conn.execute(f"SELECT member_id, MAX(year) AS year FROM birthday_awards "
                              f"WHERE member_id IN ({_marks(chunk)}) GROUP BY member_id", chunk).fetchall():
            found[r["member_id"]] = r["year"]
    return found


def first_token_use(conn: Any, token_id: str, lane_key: str, source: str, member_id: str) -> bool:
    """Record ``lane_key``'s use of a member token unless another lane used it first; True when the
    token is this lane's."""
    return _first_holder(conn, "token_uses", {"token_id": token_id},
                         {"lane_key": lane_key, "source": source, "member_id": member_id})


def _first_holder(conn: Any, table: str, key: dict[str, Any], row: dict[str, Any]) -> bool:
    """Insert ``row`` under ``key`` into ``table`` unless a row holds that key already; True when the
    holder is ``row["lane_key"]`` (this insert, or the same lane's earlier one). The primary key
    decides, so two lanes racing for one key get one holder."""
    values = {**key, **row}
    first = conn.execute(
        f"INSERT INTO {table} ({', '.join(values)}) VALUES ({_marks(values)}) "
        f"ON CONFLICT ({', '.join(key)}) DO NOTHING RETURNING lane_key", tuple(values.values())).fetchone()
    if first is not None:
        return True
    held = conn.execute(f"SELECT lane_key FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in key)}",
                        tuple(key.values())).fetchone()
    return held["lane_key"] == row["lane_key"]
