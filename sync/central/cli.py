"""``posd central``: run the reference central until SIGINT/SIGTERM.

    posd central --listen 127.0.0.1:8780 --db central.db --seed seed.json
    python -m posd.sync.central ...   # the same
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import ssl
import sys
import threading

from posd.sync.central.seed import load_seed
from posd.sync.central.server import RESERVATION_TTL_S, CentralServer

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


def _ssl_context(cert: str, key: str | None, client_ca: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED  # mTLS: only lanes with a client certificate
    return ctx


def main(argv: list[str]) -> int:
    """``posd central``: serve until SIGINT/SIGTERM. 0 on a clean stop, 2 on bad arguments."""
    parser = argparse.ArgumentParser(prog="posd central", description="Reference central receiver (loopback).")
    parser.add_argument("--listen", default="127.0.0.1:8780", help="HOST:PORT (port 0 picks a free one)")
    parser.add_argument("--db", required=True, help="central's SQLite file (created if missing)")
    parser.add_argument("--seed", help="seed JSON: stores, program, members (loaded idempotently)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback listen address")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="private key for --tls-cert, if not in the same file")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mTLS)")
    parser.add_argument("--reservation-ttl", type=float, default=RESERVATION_TTL_S, metavar="SECONDS",
                        help="how long an approved burn's reservation waits for the lane's event "
                             f"before its points are free again (default {RESERVATION_TTL_S:.0f})")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    try:
        host, port = parse_listen(args.listen)
        seed = load_seed(args.seed) if args.seed else None
        ctx = _ssl_context(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
        server = CentralServer(args.db, seed, host=host, port=port, allow_remote=args.allow_remote, ssl_context=ctx,
                               reservation_ttl_s=args.reservation_ttl)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"posd central: {exc}", file=sys.stderr)
        return 2
    try:
        server.start()
    except OSError as exc:
        print(f"posd central: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        server.store.close()
        return 1
    print(f"posd central listening on {server.url}", flush=True)
    return _serve_until_signalled(server)


def _serve_until_signalled(server: CentralServer) -> int:
    done = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
