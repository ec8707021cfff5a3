"""The reference central as an ASGI application: the protocol's routes, admin routes, faults.

It implements docs/sync-protocol.md strictly over a central store (store.py)
and can be told to misbehave (5xx, timeouts, resets, 401, 429,
applied-then-lost; faults.py) so the lane's recovery is tested against real
sockets. Real platforms implement the protocol document, not this module.

Stateless: everything it knows is in the store, so uvicorn can run it in
several worker processes over one PostgreSQL database (server.py). Store
calls block, so they run in the app's thread pool, never on the event loop.
A request counter per route is the only thing a worker keeps (``/_admin/stats``
answers for the worker that serves it).

Two things plain ASGI cannot say are added by the uvicorn protocol that
server.py installs: ``scope["extensions"]["posd.abort"]`` closes the
connection with a TCP reset and no answer (the reset, timeout and
applied_then_lost faults), and central's own clock writes the Date header.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gzip
import ipaddress
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote

from posd.sync.central.admission import Admission
from posd.sync.central.codec import dumps
from posd.sync.central.codec import loads as _loads
from posd.sync.central.faults import ROUTES, check_fault
from posd.sync.central.store import CentralStore, open_store
from posd.sync.central.store_sql import UnknownCursor
from posd.sync.central.tokens import (
    DEFAULT_VALIDITY_S,
    MAX_VALIDITY_S,
    iso_seconds,
    issue_qr_token,
    new_kid,
    new_signing_key,
    new_wallet_secret,
    signing_key,
    wallet_pass,
)
from posd.sync.protocol import (
    HEADER_LANE,
    HEADER_STORE,
    HEADER_TIMESTAMP,
    LANE_ID_RE,
    MAX_AUTHORISATION_BYTES,
    MAX_BATCH_BYTES,
    MAX_BIRTHDAY_CLAIM_BYTES,
    MAX_MEMBER_PAGE,
    MAX_TOKEN_CLAIM_BYTES,
    UNSTORABLE,
    BatchError,
    RequestRejected,
    SignatureError,
    birthday_claim_answer,
    decode_batch,
    etag_matches,
    parse_authorisation,
    parse_birthday_claim,
    parse_release,
    parse_token_claim,
    release_answer,
    token_claim_answer,
    verify_request,
)

log = logging.getLogger("posd.sync.central")

MAX_BODY = MAX_BATCH_BYTES + 65536  # gzip of incompressible JSON is slightly larger than the JSON
MAX_CURSOR = 2**63 - 1
RESERVATION_TTL_S = 900.0  # an approved burn the lane never confirms frees its points after this
QUICK, BULK = True, False  # a route's threads: those kept for a lane's questions, or the others
QUICK_SHARE = 4  # one in this many of a worker's threads is kept for a lane's questions (the route table's QUICK)
DISCARD_LIMIT = 16 * 2**20  # a body over the limit but under this is read away before the 413
# what create_app() reads in a worker process
ENV_DB, ENV_POOL, ENV_ADMISSION = "POSD_CENTRAL_DB", "POSD_CENTRAL_POOL", "POSD_CENTRAL_ADMISSION"
ENV_RESERVATION_TTL = "POSD_CENTRAL_RESERVATION_TTL"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


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


class CentralApp:
    """The ASGI app over one store. ``stop_waiting()`` ends fault delays at shutdown."""

    def __init__(self, store: CentralStore, *, clock: Callable[[], float], threads: int = 8,
                 on_started: Callable[[], None] | None = None, admission: Admission | None = None,
                 reservation_ttl_s: float = RESERVATION_TTL_S) -> None:
        if not reservation_ttl_s > 0:
            raise ValueError("the reservation time to live must be more than 0 seconds")
        self.reservation_ttl_s = float(reservation_ttl_s)
        self.store = store
        self.admission = admission  # central-paced admission of pushes (admission.py), None: admit all
        self.clock = clock
        self.threads = threads
        self.on_started = on_started
        self.counts: collections.Counter[str] = collections.Counter()
        self._executors: dict[bool, ThreadPoolExecutor] = {}  # quick or not: see quick_threads
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await _Request(self, scope, receive, send).serve()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._stopping = asyncio.Event()
                quick = quick_threads(self.threads)
                bulk = ThreadPoolExecutor(self.threads - quick, thread_name_prefix="central-store")
                self._executors = {BULK: bulk, QUICK: ThreadPoolExecutor(quick, thread_name_prefix="central-quick")
                                   if quick else bulk}
                # Every thread of the pool now, not one by one under load: a central is its threads
                # from start to stop (and the tests' guard sees no thread appear mid-test).
                await asyncio.get_running_loop().run_in_executor(None, _start_all, bulk, self.threads - quick)
                if quick:
                    await asyncio.get_running_loop().run_in_executor(None, _start_all, self._executors[QUICK], quick)
                await send({"type": "lifespan.startup.complete"})
                if self.on_started is not None:
                    self.on_started()
            elif message["type"] == "lifespan.shutdown":
                self.stop_waiting()
                for executor in set(self._executors.values()):
                    await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def stop_waiting(self) -> None:
        """From any thread: requests sleeping in a timeout or slow fault end now."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def call(self, fn: Callable[..., Any], *args: Any, quick: bool = False) -> Any:
        """A store call, in the app's thread pool: the threads kept for questions when ``quick``."""
        result = await asyncio.get_running_loop().run_in_executor(self._executors[quick], fn, *args)
        if _down_since[0] is not None:  # the outage's end, in the log beside its start
            log.warning("database answering again after %.0f s", time.monotonic() - _down_since[0])
            _down_since[0] = None
        return result

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the server is stopping."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass


def quick_threads(threads: int) -> int:
    """Of a worker's ``threads`` (one database connection each, --pool-size), those kept for the
    questions a lane asks while its cashier waits: a burn's authorisation and release, a token's or a
    birthday's claim, a voucher's lookup (QUICK in the route table). Pushes and member pages, long and many under a
    fleet's load, run on the others and never take these: an authorisation queued behind them waited
    seconds, past the lane's budget, and the burn went the offline way. A quarter, at least one; none
    with a single thread, which serves everything in turn."""
    return max(1, threads // QUICK_SHARE) if threads > 1 else 0


def _start_all(executor: ThreadPoolExecutor, threads: int) -> None:
    """Make ``executor`` start all its threads: ``threads`` tasks that wait for each other."""
    barrier = threading.Barrier(threads + 1)
    for _ in range(threads):
        executor.submit(barrier.wait, 10)
    barrier.wait(10)


def create_app() -> CentralApp:
    """The app factory uvicorn's workers call (``--workers N``): the store named by the
    environment (POSD_CENTRAL_DB, POSD_CENTRAL_POOL), which the parent has already seeded,
    and this worker's share of the admission rate (POSD_CENTRAL_ADMISSION, events/s)."""

    _end_with_parent()
    db = os.environ.get(ENV_DB)
    if not db:
        raise RuntimeError(f"{ENV_DB} is not set")
    pool = int(os.environ.get(ENV_POOL, "8"))
    rate = float(os.environ.get(ENV_ADMISSION, "0"))
    ttl = float(os.environ.get(ENV_RESERVATION_TTL, str(RESERVATION_TTL_S)))
    return CentralApp(open_store(db, clock=time.time, pool_size=pool), clock=time.time, threads=pool,
                      admission=Admission(rate) if rate > 0 else None, reservation_ttl_s=ttl)


def _end_with_parent() -> None:
    """In a worker process of ``--workers N``: SIGTERM when the parent ends, however it ends. Its
    workers outlived a parent killed with SIGKILL, kept serving on the port, and a new central could
    not bind it. (Not in a central serving in its own process: that one answers to its own parent.)"""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent.pid:  # it ended before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)


PR_SET_PDEATHSIG = 1
UNAVAILABLE_RETRY_S = 5
# when the last line of each kind below was logged (monotonic): each at most every 10 s
_said = {"unavailable": 0.0, "lost": 0.0}
# when the outage whose start was logged began (monotonic): its end is logged once, by the first call
# that gets an answer; an outage whose start the 10 s limit left unsaid has no end line either
_down_since: list[float | None] = [None]


def _database_trouble(exc: BaseException, lost: bool) -> None:
    """One log line of each kind, at most every 10 s, however many requests meet it: the reason, no
    traceback (it is the database's state, not a fault of central's). ``lost``: a write the database
    gave up (a deadlock, a serialisation failure) on its last try (batches, authorisations and
    releases get several: store_sql._again); not an outage, the database answers and writers
    contend. Else the database does not answer."""
    now, kind = time.monotonic(), "lost" if lost else "unavailable"
    if now - _said[kind] < 10.0:
        return
    _said[kind] = now
    reason = " ".join(str(exc).split())[:300]
    if lost:
        log.warning("a write lost to concurrent writes on its last try (%s: %s); its lane is answered 503 and "
                    "sends it again", type(exc).__name__, reason, extra={"event": "central.writes_lost"})
        return
    if _down_since[0] is None:
        _down_since[0] = now
    log.warning("database not answering (%s: %s); requests are answered 503 until it does",
                type(exc).__name__, reason)


class _Request:
    """One HTTP request: route, check, act out a fault, answer."""

    def __init__(self, app: CentralApp, scope: Scope, receive: Receive, send: Send) -> None:
        self.app, self.scope, self._receive, self._send = app, scope, receive, send
        self.method = scope["method"]
        self.headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string") or b""
        self.target = (raw_path + (b"?" + query if query else b"")).decode("latin-1")  # as signed
        self.path = scope["path"]
        self.query = parse_qs(query.decode("latin-1"))
        self.client_host = (scope.get("client") or ("", 0))[0]
        self.quick = False  # a question a cashier waits on: served on the threads kept for them

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store call for this request (its authentication and fault plan too), on its threads."""
        return await self.app.call(fn, *args, quick=self.quick)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    async def serve(self) -> None:
        try:
            handler, args, self.quick = self._route()
            await handler(*args)
        except _Drop:
            self._abort()
        except HttpError as err:
            await self._json(err.status, {"code": err.code, "message": err.message}, err.headers, close=err.close)
        except Exception as exc:
            store = self.app.store
            if getattr(store, "is_transient", lambda _: False)(exc):
                lost = getattr(store, "is_conflict", lambda _: False)(exc)  # the database answers
                _database_trouble(exc, lost)
                await self._json(503, {"code": "unavailable", "message": (
                    "central's database gave this write up for concurrent ones; try again after Retry-After"
                    if lost else "central's database is not answering; try again after Retry-After")},
                    {"Retry-After": str(UNAVAILABLE_RETRY_S)}, close=True)
                return
            log.exception("central handler failed", extra={"path": self.path})
            await self._json(500, {"code": "internal", "message": "internal error"}, close=True)

    def _route(self) -> tuple[Callable[..., Awaitable[None]], tuple[str, ...], bool]:
        """(handler, its URL's parts, whether it is a question a cashier waits on: QUICK)."""
        table = [
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/batches", self._push, BULK),
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/authorisations", self._authorise, QUICK),
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/releases", self._release, QUICK),
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/token-uses", self._token_use, QUICK),
            ("POST", r"/v1/lanes/([^/]+)/([^/]+)/birthday-awards", self._birthday_award, QUICK),
            ("GET", r"/v1/stores/([^/]+)/vouchers/([^/]+)", self._voucher, QUICK),
            ("GET", r"/v1/lanes/([^/]+)/([^/]+)", self._lane, BULK),
            ("GET", r"/v1/stores/([^/]+)/members/changes", self._members, BULK),
            ("GET", r"/v1/program", self._program, BULK),
            ("POST", r"/_admin/faults", self._admin_faults, BULK),
            ("GET", r"/_admin/events", self._admin_events, BULK),
            ("GET", r"/_admin/members/([^/]+)", self._admin_member, BULK),
            ("GET", r"/_admin/reservations", self._admin_reservations, BULK),
            ("POST", r"/_admin/members/([^/]+)/token", self._admin_member_token, BULK),
            ("POST", r"/_admin/members/([^/]+)/wallet-pass", self._admin_wallet_pass, BULK),
            ("GET", r"/_admin/member-token-keys", self._admin_token_keys, BULK),
            ("POST", r"/_admin/member-token-keys", self._admin_token_keys, BULK),
            ("GET", r"/_admin/stats", self._admin_stats, BULK),
        ]
        raw = self.target.split("?", 1)[0]
        path_known = False
        for want, pattern, handler, quick in table:
            match = re.fullmatch(pattern, raw)
            if match:
                path_known = True
                if want == self.method:
                    args = tuple(unquote(g) for g in match.groups())
                    if any(UNSTORABLE.search(a) for a in args):  # no store, lane, member or code holds one
                        if handler == self._voucher:  # what a lane asking about a code understands
                            raise HttpError(404, "unknown_voucher", "central knows no voucher or coupon with that code")
                        raise HttpError(404, "not_found", "no such store, lane or member")
                    return handler, args, quick
        if path_known:
            raise HttpError(405, "method_not_allowed", close=True)
        raise HttpError(404, "not_found", f"no route for {self.path}", close=self.method != "GET")

    # --- protocol routes ---------------------------------------------------------------------

    async def _begin(self, route: str, limit: int, store_in_url: str | None, lane_in_url: str | None = None,
                     *, lane: str | None = None) -> tuple[bytes, str | None]:
        """What every protocol route does first: count it, read the body, act out a queued fault,
        check the signature (and the lane id in the URL, ``lane``); (body, the fault to finish)."""
        self.app.counts[route] += 1
        body = await self._body(limit)
        fault = await self._fault(route)
        await self._authenticate(body, store_in_url, lane_in_url)
        if lane is not None and not LANE_ID_RE.match(lane):
            raise HttpError(400, "bad_lane_id", "lane ids are 1-64 of A-Z a-z 0-9 . _ -")
        return body, fault

    async def _push(self, store_id: str, lane_id: str) -> None:
        app = self.app
        body, fault = await self._begin("push", MAX_BODY, store_id, lane_id, lane=lane_id)
        if (self.header("Content-Encoding") or "").strip().lower() != "gzip":
            raise HttpError(415, "unsupported_encoding", "push bodies must be Content-Encoding: gzip")
        try:
            batch_id, events = decode_batch(body, loads=_loads)
        except BatchError as err:
            raise HttpError(err.status, err.code, str(err)) from err
        if app.admission is not None:
            retry_after, _ = app.admission.arrive(f"{store_id}/{lane_id}", len(events), app.clock())
            if retry_after is not None:
                raise HttpError(429, "rate_limited", "central is busy: come back at the slot in Retry-After",
                                headers={"Retry-After": str(int(retry_after))})
        received_at = _iso(app.clock())
        results = await self.call(app.store.apply_batch, store_id, lane_id, batch_id, events, received_at)
        if fault == "applied_then_lost":
            raise _Drop()
        await self._json(200, {"batch_id": batch_id, "results": results})

    async def _authorise(self, store_id: str, lane_id: str) -> None:
        """A burn asked for in real time: check and reserve in one transaction, answer approved or declined."""
        app = self.app
        request, fault = await self._question("authorise", MAX_AUTHORISATION_BYTES, store_id, lane_id,
                                              parse_authorisation)
        try:  # the store refuses what only the program tells apart (a voucher under a coupon's code)
            answer = await self.call(app.store.authorise, store_id, lane_id, request, app.reservation_ttl_s,
                                    self._signed_at())
        except RequestRejected as err:
            raise HttpError(err.status, err.code, str(err)) from err
        await self._reply(fault, answer)

    async def _release(self, store_id: str, lane_id: str) -> None:
        """A lane giving back a reservation it will not record a burn for."""
        app = self.app
        request, fault = await self._question("release", MAX_AUTHORISATION_BYTES, store_id, lane_id, parse_release)
        state = await self.call(app.store.release, store_id, lane_id, request["authorisation_id"], self._signed_at())
        await self._reply(fault, release_answer(request["authorisation_id"], state))

    def _signed_at(self) -> int | None:
        """The request's signed timestamp (checked by _authenticate): when the lane sent it, by its clock."""
        value = self.header(HEADER_TIMESTAMP) or ""
        return int(value) if value.isdigit() else None

    async def _token_use(self, store_id: str, lane_id: str) -> None:
        """A lane asking before it accepts a member token: is it unused, chain-wide? The first lane owns it."""
        app = self.app
        claim, fault = await self._question("token_uses", MAX_TOKEN_CLAIM_BYTES, store_id, lane_id, parse_token_claim)
        mine = await self.call(app.store.claim_token, store_id, lane_id, claim["token_id"], claim["member_id"])
        await self._reply(fault, token_claim_answer(claim["token_id"], mine))

    async def _birthday_award(self, store_id: str, lane_id: str) -> None:
        """A lane asking before a sale gives the birthday bonus: is the member's year free, chain-wide?"""
        app = self.app
        claim, fault = await self._question("birthday_awards", MAX_BIRTHDAY_CLAIM_BYTES, store_id, lane_id,
                                            parse_birthday_claim)
        mine = await self.call(app.store.claim_birthday, store_id, lane_id, claim["member_id"], claim["year"],
                              claim["transaction_id"])
        await self._reply(fault, birthday_claim_answer(claim["member_id"], claim["year"], mine))

    async def _question(self, route: str, limit: int, store_id: str, lane_id: str,
                        parse: Callable[[bytes], dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
        """A lane's real-time question (a burn, a token claim): its body checked by ``parse``."""
        body, fault = await self._begin(route, limit, store_id, lane_id, lane=lane_id)
        try:
            return parse(body), fault
        except RequestRejected as err:
            raise HttpError(err.status, err.code, str(err)) from err

    async def _reply(self, fault: str | None, answer: dict[str, Any]) -> None:
        if fault == "applied_then_lost":
            raise _Drop()
        await self._json(200, answer)

    async def _voucher(self, store_id: str, code: str) -> None:
        """A lane asking about a code it does not know, or whether a use is still free."""
        app = self.app
        _, fault = await self._begin("vouchers", 0, store_id)
        found = await self.call(app.store.voucher, store_id, code, self._one_id("member_id") or None)
        if found is None:
            raise HttpError(404, "unknown_voucher", "central knows no voucher or coupon with that code")
        if fault == "applied_then_lost":
            raise _Drop()
        await self._json(200, found)

    async def _lane(self, store_id: str, lane_id: str) -> None:
        """Where central's history of a lane ends, so a starting lane can tell whether it is its own."""
        app = self.app
        _, fault = await self._begin("lane", 0, store_id, lane=lane_id)
        last_seq, last_event_id = await self.call(app.store.lane_head, store_id, lane_id)
        if fault == "applied_then_lost":
            raise _Drop()
        await self._json(200, {"store_id": store_id, "lane_id": lane_id, "last_seq": last_seq,
                               "last_event_id": last_event_id})

    async def _members(self, store_id: str) -> None:
        app = self.app
        _, fault = await self._begin("members", 0, store_id)
        cursor_text = self._one("cursor", "")
        limit_text = self._one("limit", str(MAX_MEMBER_PAGE))
        if not re.fullmatch(r"[0-9]{0,19}", cursor_text) or int(cursor_text or 0) > MAX_CURSOR:
            raise HttpError(400, "bad_cursor", "cursor must be one from a previous answer, or empty")
        if not re.fullmatch(r"[0-9]+", limit_text) or not limit_text.strip("0"):
            raise HttpError(400, "bad_limit", "limit must be a positive integer")
        digits = limit_text.lstrip("0")  # any length: larger than a page is a page
        limit = MAX_MEMBER_PAGE if len(digits) > 6 else min(int(digits), MAX_MEMBER_PAGE)
        try:
            members, next_cursor, has_more = await self.call(app.store.member_changes, store_id,
                                                            int(cursor_text or 0), limit)
        except UnknownCursor:
            raise HttpError(400, "bad_cursor", "this cursor is past any central has handed out: "
                            "pull from an empty cursor") from None
        if fault == "applied_then_lost":
            raise _Drop()
        await self._json(200, {"members": members, "next_cursor": next_cursor, "has_more": has_more})

    async def _program(self) -> None:
        app = self.app
        _, fault = await self._begin("program", 0, None)
        program, etag = await self.call(app.store.program)
        if program is None or etag is None:
            raise HttpError(404, "no_program", "central has no program yet")
        if fault == "applied_then_lost":
            raise _Drop()
        if etag_matches(self.header("If-None-Match"), etag):
            await self._answer(304, b"", {"ETag": etag})
            return
        await self._json(200, program, {"ETag": etag, "Cache-Control": "no-cache"})

    async def _authenticate(self, body: bytes, store_in_url: str | None, lane_in_url: str | None) -> None:
        app = self.app
        store_id = self.header(HEADER_STORE)
        if not store_id:
            raise HttpError(401, "missing_signature", "X-Posd-Store is required")
        secret = await self.call(app.store.store_secret, store_id)
        if secret is None:
            raise HttpError(401, "unknown_store", "no such store")
        try:
            verify_request(secret, self.headers, self.method, self.target, body, app.clock())
        except SignatureError as err:
            raise HttpError(err.status, err.code, str(err)) from err
        if store_in_url is not None and store_in_url != store_id:
            raise HttpError(403, "store_mismatch", "the URL names another store than X-Posd-Store")
        lane_header = self.header(HEADER_LANE)
        if lane_in_url is not None and lane_header != lane_in_url:  # left out too: the protocol sends it on every call
            raise HttpError(403, "lane_mismatch", "the URL names another lane than X-Posd-Lane"
                            if lane_header is not None else "X-Posd-Lane is required and names the URL's lane")

    # --- faults --------------------------------------------------------------------------------

    async def _fault(self, route: str) -> str | None:
        """Act out the next queued fault for the route; return it if the handler must finish it."""
        app = self.app
        taken = await self.call(app.store.take_fault, route)
        if taken is None:
            return None
        fault, delay = taken
        log.info("central injecting fault", extra={"route": route, "fault": fault})
        if fault in ("500", "503", "401"):
            raise HttpError(int(fault), "injected_fault", f"injected {fault}")
        if fault == "429":
            raise HttpError(429, "rate_limited", "slow down", headers={"Retry-After": "1"})
        if fault in ("timeout", "slow"):
            await app.sleep(delay)
            if fault == "timeout":
                raise _Drop()
        if fault == "reset":
            raise _Drop()
        return fault

    def _abort(self) -> None:
        abort = self.scope.get("extensions", {}).get("posd.abort")
        if abort is None:
            raise RuntimeError("this ASGI server cannot reset a connection (run it through posd central)")
        abort()

    # --- admin (loopback only) -------------------------------------------------------------------

    def _admin_guard(self) -> None:
        if not is_loopback(self.client_host):
            raise HttpError(403, "admin_loopback_only", "admin routes answer loopback clients only")

    async def _admin_faults(self) -> None:
        self._admin_guard()
        store = self.app.store
        try:
            doc = json.loads(await self._body(65536) or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("the body must be a JSON object")
            fault = None if doc.get("clear") else \
                check_fault(doc.get("route"), doc.get("fault"), doc.get("count", 1), doc.get("delay"))
        except ValueError as err:
            raise HttpError(400, "bad_fault", f"expected JSON {{route, fault, count?, delay?}}: {err}") from err
        if fault is None:
            await self.call(store.clear_faults)
        else:
            await self.call(store.add_fault, *fault)
        await self._json(200, {"ok": True})

    async def _admin_events(self) -> None:
        self._admin_guard()
        store_id, lane_id = self._one_id("store"), self._one_id("lane")
        store = self.app.store
        events = await self.call(store.events, store_id, lane_id)
        last_seq = await self.call(store.last_seq, store_id, lane_id)
        await self._json(200, {"events": events, "last_seq": last_seq})

    async def _admin_member(self, member_id: str) -> None:
        self._admin_guard()
        member = await self.call(self.app.store.member, member_id, self._one_id("store") or None)
        if member is None:
            raise HttpError(404, "unknown_member", "no such member")
        await self._json(200, member)

    async def _admin_reservations(self) -> None:
        self._admin_guard()
        member_id = self._one_id("member")
        reservations = await self.call(self.app.store.reservations, member_id)
        await self._json(200, {"member_id": member_id, "reservations": reservations})

    async def _admin_member_token(self, member_id: str) -> None:
        """A fresh QR token for the member, as central's app backend would hand the member's phone."""
        self._admin_guard()
        doc = await self._admin_body()
        validity = doc.get("validity_s", DEFAULT_VALIDITY_S)
        if not isinstance(validity, int) or isinstance(validity, bool) or not 1 <= validity <= MAX_VALIDITY_S:
            raise HttpError(400, "bad_admin_request", f"validity_s must be an integer 1-{MAX_VALIDITY_S}")
        app = self.app
        member = await self._active_member(member_id)
        key = signing_key(await self.call(app.store.member_token_keys), app.clock())
        if key is None:
            raise HttpError(409, "no_signing_key", "every member-token key is retired; add one")
        issued_at = int(app.clock())
        token = issue_qr_token(key["private_key"], key["kid"], member["member_id"], issued_at, validity)
        await self._json(200, {"token": token, "member_id": member["member_id"], "kid": key["kid"],
                               "issued_at": iso_seconds(issued_at), "expires_at": iso_seconds(issued_at + validity)})

    async def _admin_wallet_pass(self, member_id: str) -> None:
        """The member's wallet pass rotating barcode (Google Wallet's totpDetails), its secret created once."""
        self._admin_guard()
        await self._admin_body()
        app = self.app
        member = await self._active_member(member_id)
        secret = await self.call(app.store.wallet_secret, member["member_id"], new_wallet_secret())
        if secret is None:
            raise HttpError(404, "unknown_member", "no such member")
        program, _ = await self.call(app.store.program)
        await self._json(200, wallet_pass(member["member_id"], secret, program))

    async def _admin_token_keys(self) -> None:
        """List the signing keys (public halves); POST {"rotate": true} adds one, {"retire": kid} retires one."""
        self._admin_guard()
        app = self.app
        if self.method == "POST":
            doc = await self._admin_body()
            if doc.get("rotate") is True:
                await self.call(app.store.add_member_token_key, new_kid(), new_signing_key())
            elif isinstance(doc.get("retire"), str):
                if UNSTORABLE.search(doc["retire"]) or not await self.call(app.store.retire_member_token_key,
                                                                           doc["retire"]):  # no key holds a NUL
                    raise HttpError(404, "unknown_key", "no such key, or it is retired already")
            else:
                raise HttpError(400, "bad_admin_request", 'expected {"rotate": true} or {"retire": "<kid>"}')
        keys = [{"kid": k["kid"], "public_key": k["public_key"], "created_at": iso_seconds(k["created_at"]),
                 "retired_at": iso_seconds(k["retired_at"]) if k["retired_at"] is not None else None}
                for k in await self.call(app.store.member_token_keys)]
        await self._json(200, {"keys": keys})

    async def _admin_body(self) -> dict[str, Any]:
        try:
            doc = json.loads(await self._body(65536) or b"{}")
        except ValueError as err:
            raise HttpError(400, "bad_admin_request", "the body must be JSON") from err
        if not isinstance(doc, dict):
            raise HttpError(400, "bad_admin_request", "the body must be a JSON object")
        return doc

    async def _active_member(self, member_id: str) -> dict[str, Any]:
        member = await self.call(self.app.store.member, member_id)
        if member is None or member["status"] == "deleted":
            raise HttpError(404, "unknown_member", "no such member")
        if member["status"] != "active":
            raise HttpError(409, "member_not_active", f"the member's account is {member['status']}")
        return member

    async def _admin_stats(self) -> None:
        self._admin_guard()
        await self._json(200, {"requests": {r: self.app.counts[r] for r in ROUTES}, "pid": os.getpid()})

    # --- bodies and answers ----------------------------------------------------------------------

    def _one(self, name: str, default: str) -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def _one_id(self, name: str) -> str:
        """An id given in the query, or "": one holding NUL or a lone surrogate names nothing central
        keeps (a cursor or a limit is read by its own pattern instead, and refused when malformed)."""
        value = self._one(name, "")
        return "" if UNSTORABLE.search(value) else value

    async def _body(self, limit: int) -> bytes:
        if "chunked" in (self.header("Transfer-Encoding") or "").lower():
            raise HttpError(411, "length_required", "send Content-Length, not chunked", close=True)
        length_text = self.header("Content-Length")
        if length_text is None:
            if self.method == "POST":
                raise HttpError(411, "length_required", "Content-Length is required", close=True)
            return b""
        if not length_text.strip().isdigit():
            raise HttpError(400, "bad_content_length", close=True)
        length = int(length_text)
        if length > limit:
            if length <= DISCARD_LIMIT:
                # Read it away first: closing on unread bytes makes the kernel reset the
                # connection, and the client may lose the 413 it was sent.
                while (await self._receive()).get("more_body", False):
                    pass
            raise HttpError(413, "batch_too_large", f"body over {limit} bytes", close=True)
        chunks, size = [], 0
        while size < length:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise _Drop()  # the client went away mid-body
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if len(body) != length:
            raise _Drop()
        return body

    async def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None, close: bool = False) -> None:
        body = dumps(doc)
        extra = dict(headers or {})
        if len(body) > 1024 and "gzip" in (self.header("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
        extra["Content-Type"] = "application/json"
        await self._answer(status, body, extra, close)

    async def _answer(self, status: int, body: bytes, headers: dict[str, str], close: bool = False) -> None:
        # Date from central's clock, so a test can give central a skewed one.
        out = {"Server": "posd-central/1", "Date": formatdate(self.app.clock(), usegmt=True), **headers}
        if status != 304:
            out["Content-Length"] = str(len(body))
        if close:
            out["Connection"] = "close"
        await self._send({"type": "http.response.start", "status": status,
                          "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out.items()]})
        await self._send({"type": "http.response.body", "body": body})


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


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
