"""``posd central``: run the reference central until SIGINT/SIGTERM.

    posd central --listen 127.0.0.1:8780 --db central.db --seed seed.json
    posd central --listen 10.0.0.5:8780 --allow-remote --db postgresql://central@db/central --workers 4
    python -m posd.sync.central ...   # the same
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import ssl
import sys
import time

from posd.sync.central.app import is_loopback
from posd.sync.central.seed import load_seed
from posd.sync.central.server import LOG_FORMAT, RESERVATION_TTL_S, bind, serve
from posd.sync.central.store import is_postgres, open_store


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:8780', '[::1]:8780' or 'localhost:0' -> (host, port)."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", value.strip())
    if not match:
        raise ValueError(f"--listen must be HOST:PORT, got {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, port


def _tls(args: argparse.Namespace) -> dict[str, object]:
    if not args.tls_cert:
        if args.tls_key or args.tls_client_ca:
            raise ValueError("--tls-key and --tls-client-ca need --tls-cert")
        return {}
    tls: dict[str, object] = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
    if args.tls_client_ca:  # mTLS: only lanes with a client certificate
        tls.update(ssl_ca_certs=args.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    # Checked here, each file named, in words: OpenSSL's own ("[Errno 2]", "[SSL] PEM lib") name none,
    # and a worker would fail later, or ask a terminal for an encrypted key's passphrase.
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                         ("--tls-client-ca", args.tls_client_ca)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"{option} {path}: {exc.strerror or exc}") from exc
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    named = f"--tls-cert {args.tls_cert}" + (f" / --tls-key {args.tls_key}" if args.tls_key else "")
    try:
        ctx.load_cert_chain(args.tls_cert, args.tls_key, password=_no_passphrase)
    except _Encrypted as exc:
        raise ValueError(f"{named}: the private key is encrypted; give central an unencrypted key "
                         "(readable by its user only)") from exc
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None)
        what = "the private key does not match the certificate" if reason == "KEY_VALUES_MISMATCH" else \
            "not a PEM certificate with its private key (in the same file, or in --tls-key)"
        raise ValueError(f"{named}: {what}") from exc
    if args.tls_client_ca:
        try:
            ctx.load_verify_locations(args.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--tls-client-ca {args.tls_client_ca}: not PEM CA certificates") from exc
    return tls


class _Encrypted(Exception):
    """The private key asked for a passphrase."""


def _no_passphrase() -> bytes:
    raise _Encrypted()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posd central", description="Reference central receiver.")
    parser.add_argument("--listen", default="127.0.0.1:8780", help="HOST:PORT (port 0 picks a free one)")
    parser.add_argument("--db", required=True,
                        help="a SQLite file (created if missing) or postgresql://user@host/dbname")
    parser.add_argument("--seed", help="seed JSON: stores, program, members (loaded idempotently)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the socket (more than 1 needs PostgreSQL)")
    parser.add_argument("--pool-size", type=int, default=8,
                        help="database connections (and request threads) per worker; a quarter of the threads "
                             "(at least one, from 2) kept for authorisations, releases and claims")
    parser.add_argument("--admission", type=float, default=0.0, metavar="EVENTS_PER_S",
                        help="central-paced admission: past this rate a push gets 429 and a Retry-After slot "
                             "(0, the default: admit every push)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback listen address")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="private key for --tls-cert, if not in the same file")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mTLS)")
    parser.add_argument("--reservation-ttl", type=float, default=RESERVATION_TTL_S, metavar="SECONDS",
                        help="how long an approved burn's reservation waits for the lane's event "
                             f"before its points are free again (default {RESERVATION_TTL_S:.0f})")
    parser.add_argument("--log-level", default="info", type=str.lower,
                        choices=("debug", "info", "warning", "error", "critical"))
    return parser


def main(argv: list[str]) -> int:
    """``posd central``: serve until SIGINT/SIGTERM. 0 on a clean stop, 2 on bad arguments, 130 when
    interrupted before it serves."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format=LOG_FORMAT)
    try:
        host, port = parse_listen(args.listen)
        if not args.allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to listen on non-loopback address {host!r} without --allow-remote")
        if args.workers < 1 or args.pool_size < 1:
            raise ValueError("--workers and --pool-size must be at least 1")
        if not math.isfinite(args.admission) or args.admission < 0:
            raise ValueError("--admission must be events per second, 0 to admit every push")
        if not math.isfinite(args.reservation_ttl) or not args.reservation_ttl > 0:
            raise ValueError("the reservation time to live must be more than 0 seconds")
        if not is_postgres(args.db) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", args.db):
            raise ValueError(f"--db {_shown(args.db)}: only postgresql:// (or postgres://) URLs and SQLite "
                             "file paths are supported")
        if args.workers > 1 and not is_postgres(args.db):
            raise ValueError("--workers above 1 needs a PostgreSQL --db (a SQLite file has one writer)")
        seed = load_seed(args.seed) if args.seed else None
        tls = _tls(args)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"posd central: {exc}", file=sys.stderr)
        return 2
    try:  # before the database is touched: a central already serving there keeps its faults and seed
        bind(host, port).close()  # a probe: held while the database opens, lanes would wait in its
        # backlog (PostgreSQL: up to 30 s) and be answered after they gave up (a burn's hold then kept)
    except OSError as exc:
        print(f"posd central: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    try:
        store = open_store(args.db, clock=time.time, pool_size=1)
        try:
            store.clear_faults()  # a fault plan is for one run of central
            if seed is not None:
                store.seed(seed)
        finally:
            store.close()
    except KeyboardInterrupt:  # Ctrl-C while it waits for the database (PostgreSQL: up to 30 s)
        print(f"posd central: interrupted while opening {_shown(args.db)}", file=sys.stderr)
        return 130
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"posd central: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database refused (psycopg.OperationalError, ...): say so, no traceback
        print(f"posd central: cannot open {_shown(args.db)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        serve(args.db, host, port, workers=args.workers, pool_size=args.pool_size, log_level=args.log_level,
              tls=tls, started=lambda url: print(f"posd central listening on {url}", flush=True),
              admission=args.admission, reservation_ttl_s=args.reservation_ttl)
    except OSError as exc:  # taken while the database opened
        print(f"posd central: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


def _shown(db: str) -> str:
    """A database URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", db)
