"""What central keeps, as one interface: the seam a second storage engine implements.

The server (app.py) talks to its store only through these methods (a test
checks it). Two engines implement them with one body of SQL (store_sql.py):
SQLite (store_sqlite.py), the embedded default, and PostgreSQL (store_pg.py)
for real use by several workers. Each method is safe to call from any thread. Members, events and answers go in
and out in wire shape (docs/sync-protocol.md), so an engine decides how it keeps
them, not what they look like.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class CentralStore(Protocol):
    # --- configuration: stores, program, seed -------------------------------------------
    def seed(self, seed: dict[str, Any]) -> None:
        """Load a seed document (seed.py) in one transaction. Safe to repeat: existing
        members keep their balances; store secrets and the program are replaced."""

    def store_secret(self, store_id: str) -> bytes | None:
        """The store's HMAC key, None for an unknown store."""

    def program(self) -> tuple[dict[str, Any] | None, str | None]:
        """(program, etag); (None, None) before a program is seeded."""

    def set_program(self, program: dict[str, Any]) -> str:
        """Publish a program; its ETag."""

    # --- members ---------------------------------------------------------------------
    def member(self, member_id: str, store_id: str | None = None) -> dict[str, Any] | None:
        """A member in wire shape; applied_seq lists the lanes of ``store_id``, or every
        lane as "store/lane" when no store is given."""

    def upsert_member(self, member: dict[str, Any]) -> None:
        """Create or replace a member's profile; its balances replace its lots."""

    def member_changes(self, store_id: str, cursor: int, limit: int) -> tuple[list[dict[str, Any]], str, bool]:
        """(members changed after ``cursor``, oldest first; next_cursor; has_more),
        after sweeping expired lots so a balance that fell by expiry is in the feed."""

    def lots(self, member_id: str) -> list[dict[str, Any]]:
        """A member's lots, oldest first (inspection and tests)."""

    def debts(self, member_id: str) -> dict[str, int]:
        """Points taken back after they were spent, per currency."""

    def sweep_expired(self) -> int:
        """Bump the version of every member whose balance fell because lots expired;
        the number of members bumped."""

    # --- member tokens (sync/central/tokens.py signs; the store keeps keys and secrets) ----------
    def member_token_keys(self) -> list[dict[str, Any]]:
        """Every signing key, oldest first: kid, private_key (raw bytes), public_key (base64url),
        created_at, retired_at (unix seconds or None). The program publishes those not retired."""

    def add_member_token_key(self, kid: str, private_key: bytes) -> None:
        """A new signing key; published at once, and the one new tokens are signed with."""

    def retire_member_token_key(self, kid: str) -> bool:
        """Stop publishing a key: lanes refuse its tokens once they pulled the program."""

    def wallet_secret(self, member_id: str, secret: bytes) -> bytes | None:
        """The member's wallet-pass TOTP secret, ``secret`` becoming it when there is none (the
        member's next version in the feed carries it). None for an unknown or erased member."""

    def claim_token(self, store_id: str, lane_id: str, token_id: str, member_id: str) -> bool:
        """A lane asking before it accepts a member token: True when the token is unused (now this
        lane's) or this lane's already, False when another lane used it first (a replay)."""

    # --- the birthday bonus, once a year per member across the chain -----------------------------
    def claim_birthday(self, store_id: str, lane_id: str, member_id: str, year: int, transaction_id: str) -> bool:
        """A lane asking before a sale gives the birthday bonus: True when the member's (store-local)
        year is free (now this lane's) or this lane's already, False when another lane holds it."""

    def birthday_awards(self, member_id: str) -> list[dict[str, Any]]:
        """The years a member (or the member a provisional id names) was given the birthday bonus,
        oldest first: year, lane (store/lane), transaction_id, source (a claim or an accrual's seq)."""

    # --- burns: authorisations, reservations, vouchers ----------------------------------------
    def authorise(self, store_id: str, lane_id: str, request: dict[str, Any], ttl_s: float,
                  sent_at: int | None = None) -> dict[str, Any]:
        """Check a checked authorisation request (posd.sync.protocol.parse_authorisation) and reserve
        what it burns, in one transaction; the answer in wire shape (approved with a reservation that
        expires ``ttl_s`` from now, or declined with a code). The same authorisation_id again gets the
        same reservation."""

    def release(self, store_id: str, lane_id: str, authorisation_id: str, sent_at: int | None = None) -> str:
        """A lane giving back the reservation of an authorisation it will not record: an open one
        holds nothing from now on; its state after (released | confirmed | expired | unknown)."""

    def voucher(self, store_id: str, code: str, member_id: str | None) -> dict[str, Any] | None:
        """{code, voucher (the registered voucher in wire shape, or null), used} for a lane asking
        about a code; None when central knows nothing of it."""

    def reservations(self, member_id: str) -> list[dict[str, Any]]:
        """A member's reservations, newest first, with their state now (inspection and tests)."""

    # --- lanes and events ------------------------------------------------------------
    def apply_batch(
        self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]], received_at: str
    ) -> list[dict[str, Any]]:
        """Apply a decoded batch in one transaction; the per-event answers in wire shape."""

    def lane_head(self, store_id: str, lane_id: str) -> tuple[int, str | None]:
        """(last_seq, event_id at last_seq); (0, None) for a lane never heard from."""

    def last_seq(self, store_id: str, lane_id: str) -> int: ...

    def events(self, store_id: str, lane_id: str) -> list[dict[str, Any]]:
        """Every seq consumed for a lane, with its outcome, in seq order."""

    def outbox(self, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The central outbox after position ``after_id`` (Debezium's outbox event router shape):
        one row per accepted event (aggregatetype "lane") and per member change ("member")."""

    # --- the fault plan: one for every worker, so it lives in the database ------------------
    def add_fault(self, route: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        """Queue ``count`` requests' worth of ``fault`` on ``route`` (faults.py); ValueError if bad."""

    def take_fault(self, route: str) -> tuple[str, float] | None:
        """The route's next queued fault and its delay, consumed; None when none is queued."""

    def clear_faults(self) -> None: ...

    def close(self) -> None: ...


def is_postgres(db: str | Path) -> bool:
    """Is ``db`` a PostgreSQL URL (else a SQLite file)?"""
    return str(db).startswith(("postgresql://", "postgres://"))


def open_store(db: str | Path, *, clock: Callable[[], float], pool_size: int = 8) -> CentralStore:
    """The store for ``db``: ``postgresql://...`` is a PostgreSQL database (its pool at most
    ``pool_size`` connections), anything else a SQLite file."""
    if is_postgres(db):
        from posd.sync.central.store_pg import PgStore

        return PgStore(str(db), clock=clock, pool_size=pool_size)
    from posd.sync.central.store_sqlite import SqliteStore

    return SqliteStore(db, clock=clock)
