"""Guards for a local API that a browser on the same PC can reach.

Loopback bind is not enough on its own: a web page can make the browser call
127.0.0.1 (CSRF) or rebind its own DNS name to it. So: the Host header must
name this listener, a request carrying an Origin must come from an allowed
origin (answering Private-Network-Access preflights only for those), and every
route but health needs the bearer token (posd/api/app.py, compared in constant time).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from posd.api.errors import STATUS

ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"
EXPOSE_HEADERS = "Idempotent-Replayed"  # so browser code can tell a replayed answer
ALLOW_METHODS = "GET, POST, OPTIONS"


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    names = {host, "localhost", "127.0.0.1", "[::1]"} if host in ("127.0.0.1", "::1", "localhost") else {host}
    names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset({f"{n}:{port}" for n in names} | names)


class RoutablePath:
    """ASGI middleware: a path ending in a newline is no route. Without it "/v1/health%0A" is
    /v1/health: a route's pattern ends in ``$``, which matches before a final newline."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("\n"):
            return await _problem(send, "not_found", "no such route")
        return await self.app(scope, receive, send)


class LocalGuard:
    """ASGI middleware: Host check, exact CORS origins, PNA preflight."""

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str], origins: Iterable[str]):
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Each once: of two Host (or Origin) headers a dict keeps the last, which a rebinding page's
        # request could make this lane's name behind another (RFC 9112: more than one Host is refused).
        headers: dict[str, str] = {}
        repeated: set[str] = set()
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name in headers:
                repeated.add(name)
            headers[name] = v.decode("latin-1")
        if "host" in repeated or headers.get("host", "").lower() not in self.hosts:
            return await _problem(send, "bad_host", "more than one Host header" if "host" in repeated
                                  else "Host header does not name this lane's API")
        origin = headers.get("origin")
        if origin is None:
            return await self.app(scope, receive, send)
        if "origin" in repeated or origin not in self.origins:
            return await _problem(send, "origin_not_allowed", "more than one Origin header" if "origin" in repeated
                                  else "this origin is not in api.allowed_origins")
        cors = cors_headers(origin)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            extra = [(b"access-control-allow-methods", ALLOW_METHODS.encode()),
                     (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                     (b"access-control-max-age", b"600")]
            if headers.get("access-control-request-private-network") == "true":
                extra.append((b"access-control-allow-private-network", b"true"))
            await send({"type": "http.response.start", "status": 204, "headers": cors + extra})
            return await send({"type": "http.response.body", "body": b""})

        await self.app(scope, receive, with_headers(send, cors))


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What an answer to an allowed origin carries."""
    return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode())]


def with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` with ``extra`` headers added to the answer's start."""
    async def sending(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": list(message.get("headers", [])) + extra}
        await send(message)

    return sending


MAX_BODY = 1 << 20  # bytes: a sale of 500 lines is about 100 KB
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_ARRIVED = "posd.arrived"  # in a usual request's scope from its arrival: (what _usual said, its herald)
_CALLED = "posd.called"  # in every request's scope once the Shortcut was called for it
_OTHER = "posd.other"  # in the scope of a request the server asked about (direct) that is not the usual one
# The Content-Type values a POS sends with a JSON body (read on the Shortcut); any other goes the standard way.
PLAIN_JSON = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})


class Shortcut:
    """ASGI middleware, outside the others: one route's usual request answered without the middleware
    stack, the router and FastAPI's dependency solving below it, which together cost about as much
    as the answer itself. The usual request is exactly the one every guard below would let through
    unchanged: its Host names this listener; no Origin, or an allowed one (whose CORS headers it
    gets); the bearer token; a JSON Content-Type; a declared length within the body limit; no query;
    none of the headers the API reads (card data outside the body is the guards' to refuse).

    ``answer`` gets the body's bytes and gives the Response, or None when the body is not valid:
    then, as for any other request, the standard stack reads it (the body replayed) and answers in
    its own words. ``timed`` is told the time of each request answered here (RequestTimer's job below).

    ``herald`` announces each of them to the ledger's writer, which may wait for it to commit it with
    another (posd.storage.ledger.Herald), from the moment its body is in: from ``arriving``, which
    the server calls as soon as the request is read whole (posd.api.server), usually before the app
    is called for it; else once the app has read the body. A body that never comes heralds nothing."""

    def __init__(self, app: ASGIApp, *, method: str, path: str, hosts: Iterable[str], origins: Iterable[str],
                 token: BearerToken, skip_headers: Iterable[str], answer: Callable[[bytes], Awaitable[Any]],
                 timed: Callable[[float], None] | None = None, max_body: int = MAX_BODY,
                 herald: Callable[[], AbstractContextManager[Any]] | None = None):
        self.herald = herald or contextlib.nullcontext
        self.app, self.method, self.path = app, method, path
        self.hosts = frozenset(h.lower().encode("latin-1") for h in hosts)
        self.origins = frozenset(o.encode("latin-1") for o in origins)
        self.token, self.answer, self.timed, self.max_body = token, answer, timed, max_body
        self.skip = frozenset(name.lower().encode() for name in skip_headers)

    def arriving(self, scope: Scope) -> None:
        """A request was read whole: a usual one, not yet being answered, is heralded now."""
        if _CALLED not in scope and _OTHER not in scope:
            usual = self._usual(scope)
            if usual is not None:
                scope[_ARRIVED] = (usual, self.herald())

    def _usual(self, scope: Scope) -> tuple[bytes | None] | None:
        """(the allowed Origin or None) for the usual request; None for anything else."""
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != self.method \
                or scope["query_string"]:
            return None
        seen: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in seen or name in self.skip:
                return None
            seen[name] = value
        host, origin, length = seen.get(b"host"), seen.get(b"origin"), seen.get(b"content-length", b"")
        if host is None or host.lower() not in self.hosts or (origin is not None and origin not in self.origins):
            return None
        if (seen.get(b"content-type") or b"").lower() not in PLAIN_JSON or not length.isdigit() \
                or int(length) > self.max_body or not bearer_matches(seen.get(b"authorization", b""), self.token.value):
            return None
        return (origin,)

    def direct(self, scope: Scope) -> DirectSale | None:
        """The usual request, to be answered by the server itself (posd.api.server) with no ASGI
        call for it: the request, the app and the response as messages cost a sale as much as its
        ledger write. None for anything else (then the server calls the app, as for any request)."""
        usual = self._usual(scope)
        if usual is None:
            scope[_OTHER] = True  # not asked again on arrival nor when called
            return None
        scope[_CALLED] = True  # heralded by the server, once read whole
        return DirectSale(self, usual[0])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_CALLED] = True
        usual, herald = scope.pop(_ARRIVED, None) or (None if _OTHER in scope else self._usual(scope), None)
        if usual is None:
            return await self.app(scope, receive, send)
        claim = DirectSale(self, usual[0])
        claim.herald = herald
        chunks: list[bytes] = []
        while True:  # when heralded on arrival, the whole body is in: nothing here waits
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                claim.abandon()  # left without a unit: a writer waiting for it goes on
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        answer = await claim.answer(body)
        if answer is None:
            return await self.app(scope, replaying(body, receive), send)
        status, headers, content = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class DirectSale:
    """A usual request, answered by the server itself (posd.api.server) or by the Shortcut's ASGI
    call: heralded when its body is in (``arrived``), then ``answer`` gives (status, headers, body)
    to write, or None when the body is not valid: then ``standard`` (FastAPI as it is) reads the
    body and answers in its own words."""

    __slots__ = ("shortcut", "origin", "herald", "standard")

    def __init__(self, shortcut: Shortcut, origin: bytes | None):
        self.shortcut, self.origin, self.standard = shortcut, origin, shortcut.app
        self.herald: AbstractContextManager[Any] | None = None

    def arrived(self) -> None:
        self.herald = self.shortcut.herald()

    def abandon(self) -> None:
        """Answered by no unit (cancelled, or failed before its write): a herald made for it is left."""
        herald, self.herald = self.herald, None
        if herald is not None:
            with herald:
                pass

    async def answer(self, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        shortcut = self.shortcut
        started = time.perf_counter()
        herald, self.herald = self.herald or shortcut.herald(), None
        with herald:
            response = await shortcut.answer(body)
        if response is None:
            return None
        headers = response.raw_headers
        if self.origin is not None:
            headers = headers + cors_headers(self.origin.decode("latin-1"))
        if shortcut.timed is not None:
            shortcut.timed(time.perf_counter() - started)
        return response.status_code, headers, response.body


def replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` with a body already read handed out first."""
    delivered = False

    async def replay() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: a disconnect, when it comes

    return replay


def bearer_matches(authorization: bytes, token: bytes) -> bool:
    """Is this Authorization header the bearer token? The scheme in any case (RFC 9110 11.1), as
    FastAPI's HTTPBearer reads it; the token itself exactly, compared in constant time."""
    scheme, _, credentials = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)


class BearerToken:
    """The API's bearer token, which store IT may change while posd runs: the daemon reads the token file
    again when it changes (posd.daemon) and every check reads ``value`` at the time of the request."""

    def __init__(self, token: str):
        self.value = token.encode()

    def set(self, token: str) -> None:
        self.value = token.encode()


class BodyGuard:
    """ASGI middleware for requests with a body: the bearer token first (a body is not read, let
    alone parsed, for a caller without it), then at most ``max_body`` bytes of it (413
    payload_too_large, whether or not it says its length). The routes' own token check stays: this
    one only keeps an unauthenticated or oversized body out of memory."""

    def __init__(self, app: ASGIApp, *, token: BearerToken, protected: Callable[[str], bool], max_body: int = MAX_BODY,
                 refused: Callable[[str, str], None] | None = None):
        """``refused(path, code)`` is told of each request refused here, as the routes count theirs."""
        self.app = app
        self.token = token
        self.protected, self.max_body = protected, max_body
        self.refused = refused

    async def _refuse(self, scope: Scope, send: Send, code: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if self.refused is not None:
            self.refused(scope["path"], code)
        await _problem(send, code, message, headers or ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.protected(scope["path"]) and not bearer_matches(headers.get(b"authorization", b""), self.token.value):
            await _drain(receive)
            return await self._refuse(scope, send, "unauthorized", "missing or wrong bearer token",
                                      [(b"www-authenticate", b"Bearer")])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            await _drain(receive)
            return await self._refuse(scope, send, "payload_too_large", self._too_large())
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                if message.get("more_body", False):
                    await _drain(receive)
                return await self._refuse(scope, send, "payload_too_large", self._too_large())
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not _utf8(body):  # json.loads would read UTF-16, UTF-32 and a BOM by itself
            return await self._refuse(scope, send, "invalid_request",
                                      "the body is not JSON in UTF-8 (without a byte order mark)")
        await self.app(scope, replaying(body, receive), send)

    def _too_large(self) -> str:
        return f"the request body is over {self.max_body // 1024} KiB"


def _utf8(body: bytes) -> bool:
    """UTF-8 without a byte order mark, as RFC 8259 has JSON sent (an empty body is for the route).
    A NUL is never in JSON text (a string holds it as \\u0000): UTF-16 and UTF-32 of ASCII are
    valid UTF-8 otherwise, and json.loads tells them by their NULs."""
    if body.startswith(b"\xef\xbb\xbf") or b"\x00" in body:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


DRAIN_MAX = 64 << 20  # bytes of a refused body read away (and dropped) so the client hears the answer


async def _drain(receive: Receive) -> None:
    """Read a refused body away, keeping none of it: a client still sending when the answer comes
    may see its connection reset and lose the answer. Past DRAIN_MAX the connection is left to close."""
    seen = 0
    while seen <= DRAIN_MAX:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _problem(send: Send, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"code": code, "message": message}, ensure_ascii=False, separators=(",", ":")).encode()  # as JSONResponse
    await send({"type": "http.response.start", "status": STATUS[code],
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
