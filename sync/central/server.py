"""The reference central's HTTP server: the protocol's routes, admin routes, faults.

A stdlib ThreadingHTTPServer on loopback over a central store (store.py; the
SQLite one here). It implements docs/sync-protocol.md strictly and can be told
to misbehave (5xx, timeouts, resets, 401, 429, applied-then-lost; faults.py)
so the lane's recovery is tested against real sockets. Real platforms
implement the protocol document, not this module.
"""

from __future__ import annotations

import collections
import gzip
import ipaddress
import json
import logging
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from posd.sync.central.faults import ROUTES, FaultPlan
from posd.sync.central.store import CentralStore, open_store
from posd.sync.central.tokens import (
    DEFAULT_VALIDITY_S,
    MAX_VALIDITY_S,
    iso_seconds,
    issue_qr_token,
    new_kid,
    new_signing_key,
    new_wallet_secret,
    wallet_pass,
)
from posd.sync.protocol import (
    HEADER_LANE,
    HEADER_STORE,
    LANE_ID_RE,
    MAX_BATCH_BYTES,
    MAX_AUTHORISATION_BYTES,
    MAX_MEMBER_PAGE,
    BatchError,
    RequestRejected,
    SignatureError,
    decode_batch,
    etag_matches,
    header,
    parse_authorisation,
    verify_request,
)

log = logging.getLogger("posd.sync.central")

MAX_BODY = MAX_BATCH_BYTES + 65536  # gzip of incompressible JSON is slightly larger than the JSON
RESERVATION_TTL_S = 900.0  # an approved burn the lane never confirms frees its points after this


class HttpError(Exception):
    """An answer with a stable ``code``; ``close`` when the request body was not read."""

    def __init__(
        self, status: int, code: str, message: str = "", close: bool = False, headers: dict[str, str] | None = None
    ):
        super().__init__(message or code)
        self.status, self.code, self.message = status, code, message or code
        self.close, self.headers = close, headers


class _Drop(Exception):
    """Close the connection without answering (reset, timeout, applied_then_lost)."""


class CentralServer:
    """The reference central, in-process: ``start()``, ``.url``, ``inject()``, ``stop()``."""

    def __init__(
        self,
        db_path: str | Path,
        seed: dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        clock: Any = time.time,
        reservation_ttl_s: float = RESERVATION_TTL_S,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to listen on non-loopback address {host!r} without --allow-remote")
        self.host, self.port = host, port
        self.clock = clock
        if not reservation_ttl_s > 0:
            raise ValueError("the reservation time to live must be more than 0 seconds")
        self.reservation_ttl_s = float(reservation_ttl_s)
        self.ssl_context = ssl_context
        # Late-bound, so a test that swaps server.clock moves lot expiry too.
        self.store: CentralStore = open_store(db_path, clock=lambda: self.clock())
        try:
            if seed is not None:
                self.store.seed(seed)
        except BaseException:
            self.store.close()
            raise
        self.faults = FaultPlan()
        self.stopping = threading.Event()  # wakes handlers sleeping in a timeout/slow fault
        self._counts: collections.Counter[str] = collections.Counter()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> CentralServer:
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.port), _Handler)
        httpd.central = self
        if self.ssl_context is not None:
            # Handshake in the handler thread, so one slow client can't stall accept().
            httpd.socket = self.ssl_context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="central-http", daemon=True)
        self._thread.start()
        log.info("central listening on %s", self.url)
        return self

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("central is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut open connections, join every handler thread, close the db."""
        if self._httpd is None:
            return
        httpd, self._httpd = self._httpd, None
        httpd.shutdown()
        self.stopping.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.close()

    def __enter__(self) -> CentralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, route: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        """Make the next ``count`` requests on ``route`` fail with ``fault``."""
        self.faults.add(route, fault, count, delay)

    def request_count(self, route: str | None = None) -> int:
        """Requests seen on a route (push|members|program|lane|authorise|vouchers), or on all of them."""
        with self._lock:
            return sum(self._counts.values()) if route is None else self._counts[route]

    def _count(self, route: str) -> None:
        with self._lock:
            self._counts[route] += 1

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._conns.add if open_ else self._conns.discard)(conn)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # stop() joins handlers: no thread outlives the server
    block_on_close = True
    central: CentralServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("central connection error", exc_info=True)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a lane draining its outbox reuses one connection
    server_version = "posd-central/1"
    timeout = 30  # idle keep-alive connections don't pin a thread forever
    server: _HTTPServer

    # --- connection lifecycle -------------------------------------------------------

    def setup(self) -> None:
        self.server.central._track(self.request, True)
        try:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.settimeout(self.timeout)
                self.request.do_handshake()
            super().setup()
        except BaseException:
            self.server.central._track(self.request, False)
            raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.central._track(self.request, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("central request: " + format, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Date comes from central's clock, so a test can give central a skewed one.
        return super().date_time_string(self.server.central.clock() if timestamp is None else timestamp)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- dispatch ------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        try:
            handler, args = self._route(method, parts.path)
            handler(parse_qs(parts.query), *args)
        except _Drop:
            self._drop()
        except HttpError as err:
            self._send_json(err.status, {"code": err.code, "message": err.message}, err.headers, close=err.close)
        except Exception:
            log.exception("central handler failed", extra={"path": parts.path})
            self._send_json(500, {"code": "internal", "message": "internal error"}, close=True)

    def _route(self, method: str, path: str) -> tuple[Any, tuple[str, ...]]:
        table = [
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/batches", self._push),
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/authorisations", self._authorise),
            ("GET", r"/v1/stores/([^/]+)/vouchers/([^/]+)", self._voucher),
            ("GET", r"/v1/lanes/([^/]+)/([^/]+)", self._lane),
            ("GET", r"/v1/stores/([^/]+)/members/changes", self._members),
            ("GET", r"/v1/program", self._program),
            ("POST", r"/_admin/faults", self._admin_faults),
            ("GET", r"/_admin/events", self._admin_events),
            ("GET", r"/_admin/members/([^/]+)", self._admin_member),
            ("GET", r"/_admin/reservations", self._admin_reservations),
            ("POST", r"/_admin/members/([^/]+)/token", self._admin_member_token),
            ("POST", r"/_admin/members/([^/]+)/wallet-pass", self._admin_wallet_pass),
            ("GET", r"/_admin/member-token-keys", self._admin_token_keys),
            ("POST", r"/_admin/member-token-keys", self._admin_token_keys),
            ("GET", r"/_admin/stats", self._admin_stats),
        ]
        path_known = False
        for want, pattern, handler in table:
            match = re.fullmatch(pattern, path)
            if match:
                path_known = True
                if want == method:
                    return handler, tuple(unquote(g) for g in match.groups())
        if path_known:
            raise HttpError(405, "method_not_allowed", close=True)
        raise HttpError(404, "not_found", f"no route for {path}", close=method != "GET")

    # --- protocol routes -------------------------------------------------------------

    def _begin(self, route: str, limit: int, store_in_url: str | None, lane_in_url: str | None = None,
               *, lane: str | None = None) -> tuple[CentralServer, bytes, str | None]:
        """What every protocol route does first: count it, read the body, act out a queued fault,
        check the signature (and the lane id in the URL, ``lane``); (central, body, the fault to finish)."""
        central = self.server.central
        central._count(route)
        body = self._read_body(limit)
        fault = self._fault(route)
        self._authenticate(body, store_in_url, lane_in_url)
        if lane is not None and not LANE_ID_RE.match(lane):
            raise HttpError(400, "bad_lane_id", "lane ids are 1-64 of A-Z a-z 0-9 . _ -")
        return central, body, fault

    def _push(self, query: dict, store_id: str, lane_id: str) -> None:
        central, body, fault = self._begin("push", MAX_BODY, store_id, lane_id, lane=lane_id)
        if (self.headers.get("Content-Encoding") or "").strip().lower() != "gzip":
            raise HttpError(415, "unsupported_encoding", "push bodies must be Content-Encoding: gzip")
        try:
            batch_id, events = decode_batch(body)
        except BatchError as err:
            raise HttpError(err.status, err.code, str(err)) from err
        received_at = datetime.fromtimestamp(central.clock(), timezone.utc).isoformat()
        results = central.store.apply_batch(store_id, lane_id, batch_id, events, received_at)
        if fault == "applied_then_lost":
            raise _Drop()
        self._send_json(200, {"batch_id": batch_id, "results": results})

    def _authorise(self, query: dict, store_id: str, lane_id: str) -> None:
        """A burn asked for in real time: check and reserve in one transaction, answer approved or declined."""
        central, body, fault = self._begin("authorise", MAX_AUTHORISATION_BYTES, store_id, lane_id, lane=lane_id)
        try:
            request = parse_authorisation(body)
        except RequestRejected as err:
            raise HttpError(err.status, err.code, str(err)) from err
        answer = central.store.authorise(store_id, lane_id, request, central.reservation_ttl_s)
        if fault == "applied_then_lost":
            raise _Drop()
        self._send_json(200, answer)

    def _voucher(self, query: dict, store_id: str, code: str) -> None:
        """A lane asking about a code it does not know, or whether a use is still free."""
        central, _, fault = self._begin("vouchers", 0, store_id)
        found = central.store.voucher(store_id, code, _one(query, "member_id", "") or None)
        if found is None:
            raise HttpError(404, "unknown_voucher", "central knows no voucher or coupon with that code")
        if fault == "applied_then_lost":
            raise _Drop()
        self._send_json(200, found)

    def _lane(self, query: dict, store_id: str, lane_id: str) -> None:
        """Where central's history of a lane ends, so a starting lane can tell whether it is its own."""
        central, _, fault = self._begin("lane", 0, store_id, lane=lane_id)
        last_seq, last_event_id = central.store.lane_head(store_id, lane_id)
        if fault == "applied_then_lost":
            raise _Drop()
        self._send_json(200, {"store_id": store_id, "lane_id": lane_id, "last_seq": last_seq,
                              "last_event_id": last_event_id})

    def _members(self, query: dict, store_id: str) -> None:
        central, _, fault = self._begin("members", 0, store_id)
        cursor_text = _one(query, "cursor", "")
        limit_text = _one(query, "limit", str(MAX_MEMBER_PAGE))
        if not re.fullmatch(r"[0-9]{0,18}", cursor_text):
            raise HttpError(400, "bad_cursor", "cursor must be one from a previous answer, or empty")
        if not re.fullmatch(r"[0-9]{1,6}", limit_text) or int(limit_text) < 1:
            raise HttpError(400, "bad_limit", "limit must be a positive integer")
        limit = min(int(limit_text), MAX_MEMBER_PAGE)
        members, next_cursor, has_more = central.store.member_changes(store_id, int(cursor_text or 0), limit)
        if fault == "applied_then_lost":
            raise _Drop()
        self._send_json(200, {"members": members, "next_cursor": next_cursor, "has_more": has_more})

    def _program(self, query: dict) -> None:
        central, _, fault = self._begin("program", 0, None)
        program, etag = central.store.program()
        if program is None or etag is None:
            raise HttpError(404, "no_program", "central has no program yet")
        if fault == "applied_then_lost":
            raise _Drop()
        if etag_matches(self.headers.get("If-None-Match"), etag):
            self._send_empty(304, {"ETag": etag})
            return
        self._send_json(200, program, {"ETag": etag, "Cache-Control": "no-cache"})

    def _authenticate(self, body: bytes, store_in_url: str | None, lane_in_url: str | None) -> None:
        central = self.server.central
        store_id = header(self.headers, HEADER_STORE)
        if not store_id:
            raise HttpError(401, "missing_signature", "X-Posd-Store is required")
        secret = central.store.store_secret(store_id)
        if secret is None:
            raise HttpError(401, "unknown_store", "no such store")
        try:
            verify_request(secret, self.headers, self.command, self.path, body, central.clock())
        except SignatureError as err:
            raise HttpError(err.status, err.code, str(err)) from err
        if store_in_url is not None and store_in_url != store_id:
            raise HttpError(403, "store_mismatch", "the URL names another store than X-Posd-Store")
        lane_header = header(self.headers, HEADER_LANE)
        if lane_in_url is not None and lane_header is not None and lane_header != lane_in_url:
            raise HttpError(403, "lane_mismatch", "the URL names another lane than X-Posd-Lane")

    # --- faults ----------------------------------------------------------------------

    def _fault(self, route: str) -> str | None:
        """Act out the next queued fault for the route; return it if the handler must finish it."""
        central = self.server.central
        taken = central.faults.take(route)
        if taken is None:
            return None
        fault, delay = taken
        log.info("central injecting fault", extra={"route": route, "fault": fault})
        if fault in ("500", "503", "401"):
            raise HttpError(int(fault), "injected_fault", f"injected {fault}")
        if fault == "429":
            raise HttpError(429, "rate_limited", "slow down", headers={"Retry-After": "1"})
        if fault in ("timeout", "slow"):
            central.stopping.wait(delay)
            if fault == "timeout":
                raise _Drop()
        if fault == "reset":
            raise _Drop()
        return fault

    def _drop(self) -> None:
        """Close with a TCP reset and no answer (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # --- admin (loopback only) ---------------------------------------------------------

    def _admin_guard(self) -> None:
        if not is_loopback(self.client_address[0]):
            raise HttpError(403, "admin_loopback_only", "admin routes answer loopback clients only")

    def _admin_faults(self, query: dict) -> None:
        self._admin_guard()
        try:
            doc = json.loads(self._read_body(65536) or b"{}")
            if doc.get("clear"):
                self.server.central.faults.clear()
            else:
                self.server.central.inject(doc["route"], doc["fault"], doc.get("count", 1), doc.get("delay"))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise HttpError(400, "bad_fault", f"expected JSON {{route, fault, count?, delay?}}: {err}") from err
        self._send_json(200, {"ok": True})

    def _admin_events(self, query: dict) -> None:
        self._admin_guard()
        store_id, lane_id = _one(query, "store", ""), _one(query, "lane", "")
        store = self.server.central.store
        self._send_json(200, {"events": store.events(store_id, lane_id), "last_seq": store.last_seq(store_id, lane_id)})

    def _admin_member(self, query: dict, member_id: str) -> None:
        self._admin_guard()
        member = self.server.central.store.member(member_id, _one(query, "store", "") or None)
        if member is None:
            raise HttpError(404, "unknown_member", "no such member")
        self._send_json(200, member)

    def _admin_reservations(self, query: dict) -> None:
        self._admin_guard()
        member_id = _one(query, "member", "")
        self._send_json(200, {"member_id": member_id,
                              "reservations": self.server.central.store.reservations(member_id)})

    def _admin_member_token(self, query: dict, member_id: str) -> None:
        """A fresh QR token for the member, as central's app backend would hand the member's phone."""
        self._admin_guard()
        doc = self._admin_body()
        validity = doc.get("validity_s", DEFAULT_VALIDITY_S)
        if not isinstance(validity, int) or isinstance(validity, bool) or not 1 <= validity <= MAX_VALIDITY_S:
            raise HttpError(400, "bad_admin_request", f"validity_s must be an integer 1-{MAX_VALIDITY_S}")
        central = self.server.central
        member = self._active_member(member_id)
        key = next((k for k in reversed(central.store.member_token_keys()) if k["retired_at"] is None), None)
        if key is None:
            raise HttpError(409, "no_signing_key", "every member-token key is retired; add one")
        issued_at = int(central.clock())
        token = issue_qr_token(key["private_key"], key["kid"], member["member_id"], issued_at, validity)
        self._send_json(200, {"token": token, "member_id": member["member_id"], "kid": key["kid"],
                              "issued_at": iso_seconds(issued_at), "expires_at": iso_seconds(issued_at + validity)})

    def _admin_wallet_pass(self, query: dict, member_id: str) -> None:
        """The member's wallet pass rotating barcode (Google Wallet's totpDetails), its secret created once."""
        self._admin_guard()
        self._admin_body()
        central = self.server.central
        member = self._active_member(member_id)
        secret = central.store.wallet_secret(member["member_id"], new_wallet_secret())
        if secret is None:
            raise HttpError(404, "unknown_member", "no such member")
        self._send_json(200, wallet_pass(member["member_id"], secret, central.store.program()[0]))

    def _admin_token_keys(self, query: dict) -> None:
        """List the signing keys (public halves); POST {"rotate": true} adds one, {"retire": kid} retires one."""
        self._admin_guard()
        store = self.server.central.store
        if self.command == "POST":
            doc = self._admin_body()
            if doc.get("rotate") is True:
                store.add_member_token_key(new_kid(), new_signing_key())
            elif isinstance(doc.get("retire"), str):
                if not store.retire_member_token_key(doc["retire"]):
                    raise HttpError(404, "unknown_key", "no such key, or it is retired already")
            else:
                raise HttpError(400, "bad_admin_request", 'expected {"rotate": true} or {"retire": "<kid>"}')
        keys = [{"kid": k["kid"], "public_key": k["public_key"], "created_at": iso_seconds(k["created_at"]),
                 "retired_at": iso_seconds(k["retired_at"]) if k["retired_at"] is not None else None}
                for k in store.member_token_keys()]
        self._send_json(200, {"keys": keys})

    def _admin_body(self) -> dict[str, Any]:
        try:
            doc = json.loads(self._read_body(65536) or b"{}")
        except ValueError as err:
            raise HttpError(400, "bad_admin_request", "the body must be JSON") from err
        if not isinstance(doc, dict):
            raise HttpError(400, "bad_admin_request", "the body must be a JSON object")
        return doc

    def _active_member(self, member_id: str) -> dict[str, Any]:
        member = self.server.central.store.member(member_id)
        if member is None or member["status"] == "deleted":
            raise HttpError(404, "unknown_member", "no such member")
        if member["status"] != "active":
            raise HttpError(409, "member_not_active", f"the member's account is {member['status']}")
        return member

    def _admin_stats(self, query: dict) -> None:
        self._admin_guard()
        central = self.server.central
        self._send_json(200, {"requests": {r: central.request_count(r) for r in ROUTES}})

    # --- bodies and answers ------------------------------------------------------------

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HttpError(411, "length_required", "send Content-Length, not chunked", close=True)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.command == "POST":
                raise HttpError(411, "length_required", "Content-Length is required", close=True)
            return b""
        if not length_text.strip().isdigit():
            raise HttpError(400, "bad_content_length", close=True)
        length = int(length_text)
        if length > limit:
            raise HttpError(413, "batch_too_large", f"body over {limit} bytes", close=True)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Drop()  # the client went away mid-body
        return body

    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None, close: bool = False) -> None:
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        extra = dict(headers or {})
        if len(body) > 1024 and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
        extra["Content-Type"] = "application/json"
        self._send(status, body, extra, close)

    def _send_empty(self, status: int, headers: dict[str, str]) -> None:
        self._send(status, b"", headers, False)

    def _send(self, status: int, body: bytes, headers: dict[str, str], close: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        if close or self.close_connection:  # asked for, or the client said it will close
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)


def _one(query: dict[str, list[str]], name: str, default: str) -> str:
    values = query.get(name)
    return values[0] if values else default


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs (IPv4-mapped IPv6 included)."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


