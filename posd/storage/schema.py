"""Schemas of ledger.db and cache.db, as registered migrations."""

from __future__ import annotations

import sqlite3

from posd.storage.db import Migrations, execute_script

ledger_migrations = Migrations("ledger.db")
cache_migrations = Migrations("cache.db")


@ledger_migrations
def m001_ledger_core(conn: sqlite3.Connection) -> None:
    execute_script(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- The lane's gap-free event counter: seq is max+1 under BEGIN IMMEDIATE
        -- and rows are never deleted, so a rolled-back write leaves no hole.
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'acked', 'quarantined')),
            result_code TEXT,
            acked_at TEXT
        );
        CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending';

        -- Idempotency records: the first answer to a transaction_id, kept forever.
        CREATE TABLE transactions (
            transaction_id TEXT PRIMARY KEY,
            request_hash TEXT NOT NULL,
            member_id TEXT,
            occurred_at TEXT NOT NULL,
            currency TEXT NOT NULL,
            total_minor INTEGER NOT NULL,
            program_version TEXT,
            seq INTEGER REFERENCES outbox (seq),
            response TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );

        -- Append-only: a correction is a new entry, never an edit.
        CREATE TABLE ledger_entries (
            entry_id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('earn', 'redeem', 'reversal', 'expire', 'adjust')),
            member_id TEXT NOT NULL,
            currency TEXT NOT NULL,
            points INTEGER NOT NULL,
            transaction_id TEXT,
            seq INTEGER NOT NULL REFERENCES outbox (seq),
            occurred_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            program_version TEXT,
            expires_at TEXT,
            pending_until TEXT
        );
        CREATE INDEX ledger_member ON ledger_entries (member_id, seq);

        CREATE TABLE print_jobs (
            job_id TEXT PRIMARY KEY,
            slip_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            slip TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'printing', 'printed', 'failed', 'expired')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            printed_at TEXT,
            last_error TEXT
        );
        CREATE INDEX print_jobs_open ON print_jobs (created_at) WHERE state IN ('queued', 'printing');
        CREATE INDEX print_jobs_slip ON print_jobs (slip_id);

        CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
            BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
        CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
            BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
        CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions
            BEGIN SELECT RAISE(ABORT, 'transactions is append-only'); END;
        CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions
            BEGIN SELECT RAISE(ABORT, 'transactions is append-only'); END;
        CREATE TRIGGER outbox_no_delete BEFORE DELETE ON outbox
            BEGIN SELECT RAISE(ABORT, 'outbox rows are kept: seq must stay gap-free'); END;
        """
    )


@cache_migrations
def m001_cache_core(conn: sqlite3.Connection) -> None:
    execute_script(
        conn,
        """
        CREATE TABLE members (
            member_id TEXT PRIMARY KEY,
            display_name TEXT NOT NULL,
            locale TEXT,
            tier TEXT,
            qualifying INTEGER NOT NULL DEFAULT 0,
            balances TEXT NOT NULL DEFAULT '{}',
            applied_seq INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'active',
            birth_date TEXT,
            offers TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL
        );
        CREATE TABLE member_identifiers (
            identifier TEXT PRIMARY KEY,
            member_id TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX member_identifiers_member ON member_identifiers (member_id);
        CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE program (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version TEXT NOT NULL,
            etag TEXT NOT NULL,
            body TEXT NOT NULL,
            fetched_at TEXT NOT NULL
        );
        """
    )


@ledger_migrations
def m002_loyalty(conn: sqlite3.Connection) -> None:
    """Lots, returns, redemptions and vouchers.

    A credit (earn) entry is a lot; every debit (redeem, reversal) records
    which lots it drew from in lot_allocations, so expiry and returns stay
    exact. source_seq 0 stands for central's confirmed pool, whose lots
    central keeps.
    """
    execute_script(
        conn,
        """
        ALTER TABLE transactions ADD COLUMN basket TEXT;
        ALTER TABLE transactions ADD COLUMN earn_context TEXT;
        ALTER TABLE ledger_entries ADD COLUMN ref_id TEXT;

        -- Every program version an accrual used, so a return re-evaluates
        -- against the very rules the sale earned under.
        CREATE TABLE programs (
            version TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            first_used_at TEXT NOT NULL
        );

        CREATE TABLE lot_allocations (
            debit_entry_id INTEGER NOT NULL REFERENCES ledger_entries (entry_id),
            lot_entry_id INTEGER REFERENCES ledger_entries (entry_id),  -- NULL: central's confirmed pool
            points INTEGER NOT NULL CHECK (points > 0)
        );
        CREATE INDEX lot_allocations_lot ON lot_allocations (lot_entry_id);
        CREATE INDEX lot_allocations_debit ON lot_allocations (debit_entry_id);

        CREATE TABLE returns (
            return_id TEXT PRIMARY KEY,
            transaction_id TEXT NOT NULL REFERENCES transactions (transaction_id),
            request_hash TEXT NOT NULL,
            lines TEXT,
            amount INTEGER,
            points TEXT NOT NULL,
            seq INTEGER REFERENCES outbox (seq),
            response TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX returns_transaction ON returns (transaction_id);

        CREATE TABLE redemptions (
            redemption_id TEXT PRIMARY KEY,
            request_hash TEXT NOT NULL,
            member_id TEXT NOT NULL,
            reward_id TEXT,
            currency TEXT NOT NULL,
            points INTEGER NOT NULL,
            voucher_code TEXT,
            offline INTEGER NOT NULL,
            seq INTEGER REFERENCES outbox (seq),
            occurred_at TEXT NOT NULL,
            response TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX redemptions_member ON redemptions (member_id, occurred_at);

        -- Vouchers issued here and coupon codes published by central, one row
        -- per use: the primary key is what makes a second use impossible.
        CREATE TABLE vouchers (
            code TEXT PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('redemption', 'coupon')),
            member_id TEXT,
            reward_id TEXT,
            description TEXT NOT NULL,
            value_minor INTEGER,
            percent INTEGER,
            sku TEXT,
            issued_at TEXT NOT NULL,
            expires_at TEXT
        );
        CREATE TABLE voucher_uses (
            code TEXT NOT NULL,
            member_id TEXT NOT NULL DEFAULT '',  -- campaign coupons: once per member
            transaction_id TEXT NOT NULL,
            seq INTEGER REFERENCES outbox (seq),
            response TEXT NOT NULL,
            used_at TEXT NOT NULL,
            PRIMARY KEY (code, member_id)
        );
        """,
    )



@ledger_migrations
def m101_print_job_delivery(conn: sqlite3.Connection) -> None:
    """Print jobs: the POS's idempotent job id, and how far a job got towards the printer.

    send_state: NULL (no byte left), 'sending' (some bytes may have reached the
    printer), 'delivered' (the printer accepted every byte and holds the job).
    The print worker reads it after a restart to print a job once, not twice.
    """
    execute_script(
        conn,
        """
        ALTER TABLE print_jobs ADD COLUMN client_job_id TEXT;
        ALTER TABLE print_jobs ADD COLUMN send_state TEXT
            CHECK (send_state IS NULL OR send_state IN ('sending', 'delivered'));
        CREATE UNIQUE INDEX print_jobs_client ON print_jobs (client_job_id) WHERE client_job_id IS NOT NULL;
        """,
    )


@ledger_migrations
def m003_member_indexes(conn: sqlite3.Connection) -> None:
    """The birthday-once-a-year check and daily reward limits look up a member's history per sale."""
    execute_script(
        conn,
        """
        CREATE INDEX IF NOT EXISTS transactions_member ON transactions (member_id, occurred_at);
        CREATE INDEX IF NOT EXISTS ledger_transaction ON ledger_entries (transaction_id, kind, currency);
        """,
    )


@ledger_migrations
def m004_voucher_void_and_outbox_state(conn: sqlite3.Connection) -> None:
    """Void a voucher whose redemption central refused; health's outbox counts use an index."""
    execute_script(
        conn,
        """
        ALTER TABLE vouchers ADD COLUMN voided_at TEXT;
        CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, seq);
        """,
    )


@ledger_migrations
def m005_birthday_awards(conn: sqlite3.Connection) -> None:
    """Once-a-year birthday bonus as a keyed row: an O(1) check per sale, not a scan of the year."""
    execute_script(
        conn,
        """
        CREATE TABLE birthday_awards (
            member_id TEXT NOT NULL,
            year INTEGER NOT NULL,
            transaction_id TEXT NOT NULL,
            PRIMARY KEY (member_id, year)
        ) WITHOUT ROWID;
        INSERT OR IGNORE INTO birthday_awards (member_id, year, transaction_id)
            SELECT member_id, CAST(substr(json_extract(earn_context, '$.occurred_local'), 1, 4) AS INTEGER),
                   transaction_id
            FROM transactions WHERE json_extract(earn_context, '$.birthday_awarded') = 1;
        """,
    )


@ledger_migrations
def m006_sale_points(conn: sqlite3.Connection) -> None:
    """What each sale earned, as its own column: a return reads it from the sale's record, not from the
    answer the POS was given. Earlier sales take it from that answer, once, here."""
    execute_script(
        conn,
        """
        ALTER TABLE transactions ADD COLUMN points TEXT NOT NULL DEFAULT '{}';
        DROP TRIGGER transactions_no_update;
        UPDATE transactions SET points = json_extract(response, '$.accrual.points');
        CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions
            BEGIN SELECT RAISE(ABORT, 'transactions is append-only'); END;
        """,
    )


@ledger_migrations
def m007_members_at_the_till(conn: sqlite3.Connection) -> None:
    """Member tokens accepted here (a replay is refused, also after a restart), members enrolled
    here under a provisional id, and whose slip each print job holds (erasure scrubs it)."""
    execute_script(
        conn,
        """
        CREATE TABLE member_token_uses (
            token_id TEXT PRIMARY KEY,
            scheme TEXT NOT NULL,
            member_id TEXT NOT NULL,
            valid_until TEXT NOT NULL,  -- after this the token is refused as expired anyway: forgettable
            used_at TEXT NOT NULL,
            seq INTEGER REFERENCES outbox (seq)
        ) WITHOUT ROWID;
        CREATE INDEX member_token_uses_until ON member_token_uses (valid_until);

        CREATE TABLE enrolments (
            member_id TEXT PRIMARY KEY,  -- provisional, until central's member feed names the member
            request_hash TEXT NOT NULL,
            display_name TEXT,
            locale TEXT,
            birth_date TEXT,
            seq INTEGER NOT NULL REFERENCES outbox (seq),
            response TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE TABLE enrolment_identifiers (
            identifier TEXT PRIMARY KEY,
            member_id TEXT NOT NULL REFERENCES enrolments (member_id)
        ) WITHOUT ROWID;
        CREATE INDEX enrolment_identifiers_member ON enrolment_identifiers (member_id);

        ALTER TABLE print_jobs ADD COLUMN member_id TEXT;
        UPDATE print_jobs SET member_id = COALESCE(
            (SELECT t.member_id FROM transactions t WHERE t.transaction_id = print_jobs.slip_id),
            (SELECT r.member_id FROM redemptions r WHERE r.redemption_id || '~r' = print_jobs.slip_id));
        CREATE INDEX print_jobs_member ON print_jobs (member_id) WHERE member_id IS NOT NULL;
        """,
    )


@cache_migrations
def m002_cache_wallet_and_aliases(conn: sqlite3.Connection) -> None:
    """Wallet-pass secrets (sealed: posd.storage.cache) and the provisional ids central mapped."""
    execute_script(
        conn,
        """
        ALTER TABLE members ADD COLUMN totp_secret BLOB;
        CREATE TABLE member_aliases (
            alias TEXT PRIMARY KEY,
            member_id TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX member_aliases_member ON member_aliases (member_id);
        """,
    )


@ledger_migrations
def m008_burn_authorisation(conn: sqlite3.Connection) -> None:
    """Burns authorised by central: how each redemption and voucher use was authorised (online by
    central, with its reservation; or offline, within the caps), and what a voucher is worth as a
    basket effect (``details``: its benefit and its title in every language, as it travels to central)."""
    execute_script(
        conn,
        """
        ALTER TABLE redemptions ADD COLUMN authorised TEXT NOT NULL DEFAULT 'offline'
            CHECK (authorised IN ('online', 'offline'));
        ALTER TABLE redemptions ADD COLUMN authorisation_id TEXT;
        ALTER TABLE redemptions ADD COLUMN reservation_id TEXT;
        UPDATE redemptions SET authorised = CASE WHEN offline THEN 'offline' ELSE 'online' END;
        CREATE INDEX IF NOT EXISTS redemptions_seq ON redemptions (seq);
        ALTER TABLE voucher_uses ADD COLUMN authorised TEXT NOT NULL DEFAULT 'offline'
            CHECK (authorised IN ('online', 'offline'));
        ALTER TABLE voucher_uses ADD COLUMN holder TEXT;
        CREATE INDEX IF NOT EXISTS voucher_uses_seq ON voucher_uses (seq);
        ALTER TABLE vouchers ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
        """,
    )


@cache_migrations
def m003_member_vouchers(conn: sqlite3.Connection) -> None:
    """Each member's open vouchers, from central's member feed: a lane that is offline can still
    honour a voucher issued at another lane (within its offline caps)."""
    execute_script(
        conn,
        """
        CREATE TABLE member_vouchers (
            code TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX member_vouchers_member ON member_vouchers (member_id);
        """,
    )


@ledger_migrations
def m009_wallet_steps(conn: sqlite3.Connection) -> None:
    """Per member, when the time step of the last wallet-pass code accepted here began: a code of
    that step or an earlier one is refused (RFC 6238 section 5.2), also after a restart."""
    execute_script(
        conn,
        """
        CREATE TABLE wallet_steps (
            member_id TEXT PRIMARY KEY,
            step_start INTEGER NOT NULL,  -- unix seconds
            used_at TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
    )


@ledger_migrations
def m010_token_replays_are_flags(conn: sqlite3.Connection) -> None:
    """A token_use central rejected as token_replayed is central's flag, not a fault the lane can repair:
    such events are acked (result_code keeps the code), so a lane upgraded with them is not amber for good."""
    conn.execute("UPDATE outbox SET state = 'acked' WHERE state = 'quarantined' AND result_code = 'token_replayed'")


@ledger_migrations
def m011_drop_unread_indexes(conn: sqlite3.Connection) -> None:
    """Two indexes every sale wrote and no query reads: transactions_member (the birthday check reads
    birthday_awards since m005) and outbox_pending (the relay's and health's reads use outbox_state,
    state then seq). Two B-tree pages fewer in each commit's WAL frames; nothing is lost with them."""
    execute_script(
        conn,
        """
        DROP INDEX IF EXISTS transactions_member;
        DROP INDEX IF EXISTS outbox_pending;
        """,
    )


@cache_migrations
def m004_member_birthday_award(conn: sqlite3.Connection) -> None:
    """The last (store-local) year central says a lane gave the member the birthday bonus: once a year
    per member across the chain, also while this lane cannot ask central."""
    conn.execute("ALTER TABLE members ADD COLUMN birthday_award_year INTEGER")


@cache_migrations
def m005_member_maturing(conn: sqlite3.Connection) -> None:
    """The member's points central still holds pending (its lots' available_at ahead): in central's
    balance, not spendable until then, by this lane's clock."""
    conn.execute("ALTER TABLE members ADD COLUMN maturing TEXT")


@ledger_migrations
def m012_drop_ledger_transaction_index(conn: sqlite3.Connection) -> None:
    """ledger_transaction (transaction_id, kind, currency) was read only by a return looking for its
    sale's lots, which the sale's record finds by member and seq on ledger_member instead. Every sale
    wrote a leaf of it (a random one, transaction ids being the POS's): one B-tree page fewer per commit."""
    conn.execute("DROP INDEX IF EXISTS ledger_transaction")


@ledger_migrations
def m013_voucher_use_request_hash(conn: sqlite3.Connection) -> None:
    """The request a voucher use was recorded for: the same transaction using the code again with
    another member, basket or codes applied is a conflict (409), not the first answer replayed."""
    conn.execute("ALTER TABLE voucher_uses ADD COLUMN request_hash TEXT")
