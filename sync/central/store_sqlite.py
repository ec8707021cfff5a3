"""The reference central's store on SQLite: stores, lanes, events, members, program.

One connection behind a lock: the reference central is for development,
demos and tests, so simple and obviously correct beats concurrent. A batch is
applied in ONE transaction, which is what makes "applied then the answer was
lost" safe: the retry finds every seq already stored and answers duplicate.
Its public methods are the store interface (store.py); balances are lots
(lots.py), the schema is migrations.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from posd.sync.central import burns
from posd.sync.central.lots import DUE_LOT, credit, debit, lot_balances, lot_dates, reset_lots
from posd.sync.central.members import enrolment_profile, member_row, member_wire, upgraded_tier
from posd.sync.central.migrations import migrate
from posd.sync.central.seed import parse_seed
from posd.sync.central.tokens import new_kid, new_signing_key, public_key_text, published_program
from posd.sync.protocol import TOKEN_SCHEMES, parse_utc, program_etag, result_wire, validate_event

_JSON_COLUMNS = ("identifiers", "balances", "offers")


class SqliteStore:
    """Central's database in one SQLite file. Every method is safe to call from any thread."""

    def __init__(self, path: str | Path, clock: Any = time.time) -> None:
        self.path = Path(path)
        self._clock = clock  # unix seconds; expiry is judged by central's clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acked batch must survive a crash
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            migrate(self._conn)
        self._raw_program: dict[str, Any] | None = None
        self._program: dict[str, Any] | None = None
        self._etag: str | None = None
        if not self.member_token_keys():
            self.add_member_token_key(new_kid(), new_signing_key())  # a central that can sign from the start
        self._raw_program = self._load_program()
        self._publish()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- seed, stores, program -------------------------------------------------------

    def seed(self, seed: dict[str, Any]) -> None:
        """Load a seed file's content. Safe to repeat: existing members keep their
        balances; store secrets and the program are replaced (they are config)."""
        parsed = parse_seed(seed)
        with self._write() as conn:
            for store_id, secret in parsed.secrets.items():
                conn.execute(
                    "INSERT INTO stores VALUES (?, ?) ON CONFLICT (store_id) DO UPDATE SET secret = excluded.secret",
                    (store_id, secret),
                )
            if parsed.program is not None:
                self._save_program(conn, parsed.program)
            for member in parsed.members:
                row = member_row(member, self._program or {})
                if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (row["member_id"],)).fetchone():
                    continue  # existing members keep their lots: seeding again is a no-op for them
                reset_lots(conn, row["member_id"], row["balances"], "seed")
                self._write_member(conn, row)

    def store_secret(self, store_id: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT secret FROM stores WHERE store_id = ?", (store_id,)).fetchone()
        return None if row is None else bytes(row["secret"])

    def program(self) -> tuple[dict[str, Any] | None, str | None]:
        """(program, etag); (None, None) before a program is seeded."""
        with self._lock:
            return self._program, self._etag

    def set_program(self, program: dict[str, Any]) -> str:
        with self._write() as conn:
            self._save_program(conn, program)
        return self._etag or ""

    def _save_program(self, conn: sqlite3.Connection, program: dict[str, Any]) -> None:
        text = json.dumps(program, sort_keys=True, ensure_ascii=False)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('program', ?)", (text,))
        self._raw_program = json.loads(text)
        self._publish()

    def _load_program(self) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'program'").fetchone()
        return None if row is None else json.loads(row["value"])

    def _publish(self) -> None:
        """The program lanes get: as seeded, with central's member-token keys that are not retired."""
        with self._lock:
            self._program = published_program(self._raw_program, self.member_token_keys())
            self._etag = None if self._program is None else program_etag(self._program)

    # --- member tokens: signing keys, wallet secrets -------------------------------------

    def member_token_keys(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM member_token_keys ORDER BY created_at, kid").fetchall()
        return [{"kid": r["kid"], "private_key": bytes(r["private_key"]), "public_key": r["public_key"],
                 "created_at": r["created_at"], "retired_at": r["retired_at"]} for r in rows]

    def add_member_token_key(self, kid: str, private_key: bytes) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO member_token_keys VALUES (?, ?, ?, ?, NULL)",
                         (kid, private_key, public_key_text(private_key), self._clock()))
        self._publish()

    def retire_member_token_key(self, kid: str) -> bool:
        with self._write() as conn:
            done = conn.execute("UPDATE member_token_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL",
                                (self._clock(), kid)).rowcount
        self._publish()
        return bool(done)

    def wallet_secret(self, member_id: str, secret: bytes) -> bytes | None:
        """The member's wallet-pass secret; ``secret`` becomes it when the member has none
        (the member's new version carries it to the lanes). None for an unknown or erased member."""
        with self._write() as conn:
            member = _load_member(conn, self._resolve(conn, member_id))
            if member is None or member["status"] == "deleted":
                return None
            if not member.get("totp_secret"):
                member["totp_secret"] = secret.hex()
                self._write_member(conn, member)
            return bytes.fromhex(member["totp_secret"])

    @staticmethod
    def _resolve(conn: sqlite3.Connection, member_id: str) -> str:
        """Central's id for a member a lane may still name by its provisional id."""
        row = conn.execute("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,)).fetchone()
        return member_id if row is None else row["member_id"]

    def _aliases(self, member_ids: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start : start + 500]
            for r in self._conn.execute(
                    f"SELECT alias, member_id FROM member_aliases WHERE member_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY alias", chunk):
                found.setdefault(r["member_id"], []).append(r["alias"])
        return found

    # --- members -------------------------------------------------------------------

    def member(self, member_id: str, store_id: str | None = None) -> dict[str, Any] | None:
        """A member in wire shape. applied_seq lists the lanes of ``store_id``, or
        every lane as "store/lane" when no store is given."""
        self.sweep_expired()
        with self._lock:
            member_id = self._resolve(self._conn, member_id)
            row = self._conn.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
            if row is None:
                return None
            marks = self._applied_seqs([member_id], store_id)
            aliases = self._aliases([member_id])
            vouchers = burns.open_vouchers(self._conn, [member_id], self._clock())
        return member_wire(_decoded(row), marks.get(member_id, {}), aliases.get(member_id),
                           vouchers.get(member_id, []))

    def upsert_member(self, member: dict[str, Any]) -> None:
        """Create or replace a member's profile (not its lane watermarks); bumps its version.
        Its balances replace its lots: one never-expiring lot per currency."""
        with self._write() as conn:
            row = member_row(member, self._program or {})
            reset_lots(conn, row["member_id"], row["balances"], "upsert")
            self._write_member(conn, row)

    def lots(self, member_id: str) -> list[dict[str, Any]]:
        """A member's lots, oldest first (inspection and tests)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT lot_id, currency, transaction_id, points, remaining, available_at, expires_at, swept, source "
                "FROM lots WHERE member_id = ? ORDER BY lot_id", (member_id,)).fetchall()
        return [dict(r) for r in rows]

    def debts(self, member_id: str) -> dict[str, int]:
        """The negative remainder per currency (points taken back after they were spent)."""
        with self._lock:
            rows = self._conn.execute("SELECT currency, points FROM lot_debts WHERE member_id = ?",
                                      (member_id,)).fetchall()
        return {r["currency"]: r["points"] for r in rows}

    def sweep_expired(self) -> int:
        """Bump the version of every member whose balance fell because lots expired
        since the last sweep, and of every member whose voucher a reservation that
        expired held; the number of members bumped. Cheap when nothing expired: one
        probe of each partial index, no write transaction."""
        now = self._clock()
        with self._lock:
            if not (self._conn.execute(DUE_LOT, (now,)).fetchone() or self._conn.execute(burns.DUE, (now,)).fetchone()):
                return 0
            with self._write() as conn:
                return self._sweep(conn, now) + self._release(conn, now)

    def _release(self, conn: sqlite3.Connection, now: float) -> int:
        """Expire reservations past their time; members whose open vouchers changed get a new version."""
        bumped = 0
        for member_id in sorted(burns.release_expired(conn, now)):
            member = _load_member(conn, member_id)
            if member is not None:
                self._write_member(conn, member)
                bumped += 1
        return bumped

    def _sweep(self, conn: sqlite3.Connection, now: float) -> int:
        due = conn.execute(
            "SELECT DISTINCT member_id FROM lots WHERE swept = 0 AND expires_ts IS NOT NULL AND expires_ts <= ?",
            (now,)).fetchall()
        conn.execute("UPDATE lots SET swept = 1 WHERE swept = 0 AND expires_ts IS NOT NULL AND expires_ts <= ?",
                     (now,))
        bumped = 0
        for r in due:
            member = _load_member(conn, r["member_id"])
            if member is None or member["status"] == "deleted":
                continue  # nothing to show to lanes any more
            balances = lot_balances(conn, member["member_id"], member["balances"], now)
            if balances != member["balances"]:  # a lot spent to 0 before it expired changes nothing
                member["balances"] = balances
                self._write_member(conn, member)
                bumped += 1
        return bumped

    def member_changes(self, store_id: str, cursor: int, limit: int) -> tuple[list[dict[str, Any]], str, bool]:
        """Members with version > cursor, oldest change first (after an expiry sweep,
        so a balance that fell by expiry is in the feed)."""
        self.sweep_expired()
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM members WHERE version > ? ORDER BY version LIMIT ?", (cursor, limit + 1)
            ).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            ids = [r["member_id"] for r in rows]
            marks, aliases = self._applied_seqs(ids, store_id), self._aliases(ids)
            vouchers = burns.open_vouchers(self._conn, ids, self._clock())
        members = [member_wire(_decoded(r), marks.get(r["member_id"], {}), aliases.get(r["member_id"]),
                               vouchers.get(r["member_id"], []))
                   for r in rows]
        next_cursor = str(rows[-1]["version"]) if rows else str(cursor)
        return members, next_cursor, has_more

    def _applied_seqs(self, member_ids: list[str], store_id: str | None) -> dict[str, dict[str, int]]:
        marks: dict[str, dict[str, int]] = {}
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start : start + 500]
            marks_sql = ",".join("?" * len(chunk))
            where, args = f"member_id IN ({marks_sql})", list(chunk)
            if store_id is not None:
                where, args = where + " AND store_id = ?", args + [store_id]
            for r in self._conn.execute(f"SELECT * FROM member_lanes WHERE {where}", args):
                key = r["lane_id"] if store_id is not None else f"{r['store_id']}/{r['lane_id']}"
                marks.setdefault(r["member_id"], {})[key] = r["applied_seq"]
        return marks

    def _write_member(self, conn: sqlite3.Connection, row: dict[str, Any]) -> None:
        version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM members").fetchone()[0]
        values = dict(row, version=version)
        for column in _JSON_COLUMNS:
            values[column] = json.dumps(values[column], ensure_ascii=False)
        columns = ", ".join(values)
        conn.execute(
            f"INSERT OR REPLACE INTO members ({columns}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )

    # --- burns: authorisations, reservations, vouchers ----------------------------------------

    def authorise(self, store_id: str, lane_id: str, request: dict[str, Any], ttl_s: float) -> dict[str, Any]:
        """Check and reserve a burn in one transaction (burns.py); the answer in wire shape."""
        now = self._clock()
        with self._write() as conn:
            self._release(conn, now)
            if request.get("member_id"):  # a provisional id a lane still uses names central's member
                request = {**request, "member_id": self._resolve(conn, request["member_id"])}
            member_id = request.get("member_id")
            member = _load_member(conn, member_id) if member_id else None
            answer, vouchers_changed = burns.authorise(conn, member, store_id, lane_id, request, now, ttl_s)
            if vouchers_changed:  # a voucher now held is no longer open: lanes hear it in the feed
                owner = conn.execute("SELECT member_id FROM vouchers WHERE code = ?",
                                     (request["voucher_code"],)).fetchone()
                for mid in {member_id, owner["member_id"] if owner else None} - {None}:
                    changed = _load_member(conn, mid)
                    if changed is not None:
                        self._write_member(conn, changed)
        return answer

    def voucher(self, store_id: str, code: str, member_id: str | None) -> dict[str, Any] | None:
        """A lane asking about a code: {code, voucher (registered, or null), used}; None if unknown."""
        coupons = {c.get("code"): c.get("kind", "campaign") for c in (self._program or {}).get("coupons", [])
                   if isinstance(c, dict)}
        self.sweep_expired()
        with self._lock:
            member_id = self._resolve(self._conn, member_id) if member_id else None
            return burns.lookup(self._conn, code, member_id, coupons.get(code), self._clock())

    def reservations(self, member_id: str) -> list[dict[str, Any]]:
        """A member's reservations, newest first, with their state now (inspection and tests)."""
        with self._lock:
            return burns.reservations_of(self._conn, member_id, self._clock())

    # --- lanes and events ------------------------------------------------------------

    def last_seq(self, store_id: str, lane_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?", (store_id, lane_id)
            ).fetchone()
        return 0 if row is None else row["last_seq"]

    def lane_head(self, store_id: str, lane_id: str) -> tuple[int, str | None]:
        """(last_seq, event_id at last_seq); (0, None) for a lane central has never heard from."""
        with self._lock:
            row = self._conn.execute(
                "SELECT l.last_seq, e.event_id FROM lanes l LEFT JOIN events e ON e.store_id = l.store_id "
                "AND e.lane_id = l.lane_id AND e.seq = l.last_seq WHERE l.store_id = ? AND l.lane_id = ?",
                (store_id, lane_id),
            ).fetchone()
        return (0, None) if row is None or row["last_seq"] == 0 else (row["last_seq"], row["event_id"])

    def events(self, store_id: str, lane_id: str) -> list[dict[str, Any]]:
        """Every seq central has consumed for a lane, with its outcome, in seq order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM events WHERE store_id = ? AND lane_id = ? ORDER BY seq", (store_id, lane_id)
            ).fetchall()
        listed = []
        for r in rows:
            body = json.loads(r["body"])
            listed.append({
                "seq": r["seq"],
                "event_id": r["event_id"],
                "status": r["status"],
                "code": r["code"],
                "type": r["type"],
                "member_id": r["member_id"],
                "transaction_id": body.get("transaction_id"),
                "batch_id": r["batch_id"],
                "received_at": r["received_at"],
                "event": body,
            })
        return listed

    def apply_batch(
        self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]], received_at: str
    ) -> list[dict[str, Any]]:
        """Apply a decoded batch in one transaction; the per-event answers in wire shape."""
        now = self._clock()
        with self._write() as conn:
            if conn.execute(DUE_LOT, (now,)).fetchone():
                self._sweep(conn, now)  # balances this batch loads are current
            if conn.execute(burns.DUE, (now,)).fetchone():
                self._release(conn, now)
            row = conn.execute(
                "SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?", (store_id, lane_id)
            ).fetchone()
            last = 0 if row is None else row["last_seq"]
            work = _BatchWork(conn, self._program or {}, now, store_id, lane_id)
            results = []
            for event in events:
                seq, event_id = event["seq"], event["event_id"]
                if seq <= last:
                    results.append(self._answer_again(conn, store_id, lane_id, seq, event_id))
                    continue
                if seq > last + 1:
                    # Not consumed: the lane must first deliver the seqs in between.
                    results.append(result_wire(seq, event_id, "rejected", "seq_gap"))
                    continue
                code = validate_event(event) or work.apply(event, seq)
                status = "rejected" if code else "accepted"
                mapped = work.enrolled.get(seq) if not code else None
                conn.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (store_id, lane_id, seq, event_id, status, code, _str_or_none(event.get("type")),
                     _str_or_none(event.get("member_id")), json.dumps(event, ensure_ascii=False),
                     batch_id, received_at),
                )
                last = seq
                results.append(result_wire(seq, event_id, status, code, member_id=mapped))
            work.flush(store_id, lane_id, self._write_member)
            conn.execute(
                "INSERT INTO lanes VALUES (?, ?, ?) ON CONFLICT (store_id, lane_id) DO UPDATE SET last_seq = ?",
                (store_id, lane_id, last, last),
            )
        return results

    @staticmethod
    def _answer_again(conn: sqlite3.Connection, store_id: str, lane_id: str, seq: int, event_id: str) -> dict:
        """A seq central already consumed: same event -> same outcome, else a conflict."""
        stored = conn.execute(
            "SELECT event_id, status, code FROM events WHERE store_id = ? AND lane_id = ? AND seq = ?",
            (store_id, lane_id, seq),
        ).fetchone()
        if stored is None or stored["event_id"] != event_id:
            return result_wire(seq, event_id, "rejected", "seq_conflict")
        if stored["status"] == "accepted":
            return result_wire(seq, event_id, "duplicate")
        return result_wire(seq, event_id, "rejected", stored["code"])


class _BatchWork:
    """Members touched by one batch, changed in memory and written once at the end.
    Lots are changed in place (same transaction); balances are recomputed from them at flush."""

    def __init__(self, conn: sqlite3.Connection, program: dict[str, Any], now: float, store_id: str,
                 lane_id: str) -> None:
        self.conn = conn
        self.program = program
        self.now = now
        self.store_id, self.lane_id = store_id, lane_id
        self.lane_key = f"{store_id}/{lane_id}"  # recorded as each lot's source
        self.members: dict[str, dict[str, Any]] = {}
        self.marks: dict[str, int] = {}  # member_id -> highest seq of this lane applied
        self.enrolled: dict[int, str] = {}  # seq of a provisional enrolment -> central's member id

    def apply(self, event: dict[str, Any], seq: int) -> str | None:
        """Apply one valid event; a rejection code when central's own facts forbid it."""
        dates = lot_dates(event)
        if dates is None:
            return "malformed_event"  # checked before anything changes: a rejected event applies nothing
        if event["type"] == "member_enrolled" and event.get("provisional") is True:
            member_id = self._enrol(event, seq)
        else:
            member_id = SqliteStore._resolve(self.conn, event["member_id"])  # a provisional id once mapped
        member = self._load(member_id)
        if member is None:
            if event["type"] != "member_enrolled":
                return "unknown_member"
            member = member_row({"member_id": member_id, **enrolment_profile(event)}, self.program)
            self.members[member_id] = member
        if member["status"] == "deleted":
            return "member_deleted"
        refused = None
        if event["type"] == "voucher_use":
            refused = burns.record_voucher_use(self.conn, self.store_id, self.lane_id, seq, event, member_id, self.now)
        elif event["type"] == "redemption":
            refused = burns.record_redemption(self.conn, self.store_id, self.lane_id, seq, event, member_id)
        elif event["type"] == "token_use":
            refused = self._use_token(event, member_id, seq)
        if refused:
            return refused
        tier_currency = self.program.get("tier_currency")
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
                credit(self.conn, member_id, currency, delta, event.get("transaction_id"), available_at,
                        expires_at, source, self.now)
            elif delta < 0:
                own = event.get("transaction_id") if event["type"] == "return" else None
                debit(self.conn, member_id, currency, -delta, own, as_of)
            if currency == tier_currency and event["type"] in ("accrual", "return"):
                member["qualifying"] = max(0, member["qualifying"] + delta)
        member["tier"] = upgraded_tier(member["tier"], member["qualifying"], self.program)
        self.marks[member_id] = seq
        return None

    def _enrol(self, event: dict[str, Any], seq: int) -> str:
        """A member a lane enrolled under a provisional id: the member who already holds one of its
        identifiers (enrolled twice while offline), else a new member with central's next id.
        The provisional id becomes an alias, so later events naming it reach the same member."""
        provisional = event["member_id"]
        known = SqliteStore._resolve(self.conn, provisional)
        if known != provisional:
            member_id = known
        else:
            member_id = self._holder(event.get("identifiers")) or self._new_member_id()
            if self._load(member_id) is None:
                self.members[member_id] = member_row({"member_id": member_id, **enrolment_profile(event)},
                                                     self.program)
            self.conn.execute("INSERT INTO member_aliases VALUES (?, ?, ?)",
                              (provisional, member_id, f"{self.lane_key}/{seq}"))
        self.enrolled[seq] = member_id
        return member_id

    def _holder(self, identifiers: Any) -> str | None:
        """The member holding any of these identifiers (the reference central scans; a platform indexes)."""
        for identifier in identifiers if isinstance(identifiers, list) else []:
            row = self.conn.execute(
                "SELECT m.member_id FROM members m, json_each(m.identifiers) i WHERE i.value = ? "
                "AND m.status != 'deleted' LIMIT 1", (str(identifier),)).fetchone()
            if row is not None:
                return row["member_id"]
        return None

    def _new_member_id(self) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'next_member_no'").fetchone()
        number = int(row["value"]) if row else 1
        while True:
            member_id = f"M{number:07d}"
            number += 1
            if member_id not in self.members and self._load(member_id) is None:
                break
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_member_no', ?)", (str(number),))
        return member_id

    def _use_token(self, event: dict[str, Any], member_id: str, seq: int) -> str | None:
        """A member token accepted at a lane: every lane refuses it a second time itself, so the
        same token_id from another lane is a replay (a screenshot shown at two tills) and is flagged."""
        token_id = event.get("token_id")
        if not isinstance(token_id, str) or not 0 < len(token_id) <= 128 \
                or event.get("identified_by") not in TOKEN_SCHEMES:
            return "malformed_event"
        first = self.conn.execute("SELECT lane_key FROM token_uses WHERE token_id = ?", (token_id,)).fetchone()
        if first is not None:
            return None if first["lane_key"] == self.lane_key else "token_replayed"
        self.conn.execute("INSERT INTO token_uses VALUES (?, ?, ?, ?)",
                          (token_id, self.lane_key, f"{self.lane_key}/{seq}", member_id))
        return None

    def _load(self, member_id: str) -> dict[str, Any] | None:
        if member_id not in self.members:
            member = _load_member(self.conn, member_id)
            if member is None:
                return None
            self.members[member_id] = member
        return self.members[member_id]

    def flush(self, store_id: str, lane_id: str, write_member: Any) -> None:
        for member_id, seq in self.marks.items():
            member = self.members[member_id]
            member["balances"] = lot_balances(self.conn, member_id, member["balances"], self.now)
            write_member(self.conn, member)
            self.conn.execute(
                "INSERT INTO member_lanes VALUES (?, ?, ?, ?) "
                "ON CONFLICT (member_id, store_id, lane_id) DO UPDATE SET applied_seq = excluded.applied_seq",
                (member_id, store_id, lane_id, seq),
            )


def _load_member(conn: sqlite3.Connection, member_id: str) -> dict[str, Any] | None:
    """A member as stored (JSON columns decoded, no version), or None."""
    row = conn.execute("SELECT * FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return None if row is None else _decoded(row)


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    member = {k: row[k] for k in row.keys() if k != "version"}
    for column in _JSON_COLUMNS:
        member[column] = json.loads(member[column])
    return member


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
