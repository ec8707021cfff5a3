"""Guards for a local API that a browser on the same PC can reach.

Loopback bind is not enough on its own: a web page can make the browser call
127.0.0.1 (CSRF) or rebind its own DNS name to it. So: the Host header must
name this listener, a request carrying an Origin must come from an allowed
origin (answering Private-Network-Access preflights only for those), and every
route but health needs the bearer token (posd/api/app.py, compared in constant time).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from posd.api.errors import STATUS

ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"
EXPOSE_HEADERS = "Idempotent-Replayed"  # so browser code can tell a replayed answer
ALLOW_METHODS = "GET, POST, OPTIONS"


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    names = {host, "localhost", "127.0.0.1", "[::1]"} if host in ("127.0.0.1", "::1", "localhost") else {host}
    names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset({f"{n}:{port}" for n in names} | names)


class LocalGuard:
    """ASGI middleware: Host check, exact CORS origins, PNA preflight."""

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str], origins: Iterable[str]):
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "").lower() not in self.hosts:
            return await _problem(send, "bad_host", "Host header does not name this lane's API")
        origin = headers.get("origin")
        if origin is None:
            return await self.app(scope, receive, send)
        if origin not in self.origins:
            return await _problem(send, "origin_not_allowed", "this origin is not in api.allowed_origins")
        cors = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                (b"access-control-expose-headers", EXPOSE_HEADERS.encode())]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            extra = [(b"access-control-allow-methods", ALLOW_METHODS.encode()),
                     (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                     (b"access-control-max-age", b"600")]
            if headers.get("access-control-request-private-network") == "true":
                extra.append((b"access-control-allow-private-network", b"true"))
            await send({"type": "http.response.start", "status": 204, "headers": cors + extra})
            return await send({"type": "http.response.body", "body": b""})

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + cors}
            await send(message)

        await self.app(scope, receive, send_with_cors)


MAX_BODY = 1 << 20  # bytes: a sale of 500 lines is about 100 KB
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def bearer_matches(authorization: bytes, token: bytes) -> bool:
    """Is this Authorization header the bearer token? The scheme in any case (RFC 9110 11.1), as
    FastAPI's HTTPBearer reads it; the token itself exactly, compared in constant time."""
    scheme, _, credentials = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)


class BodyGuard:
    """ASGI middleware for requests with a body: the bearer token first (a body is not read, let
    alone parsed, for a caller without it), then at most ``max_body`` bytes of it (413
    payload_too_large, whether or not it says its length). The routes' own token check stays: this
    one only keeps an unauthenticated or oversized body out of memory."""

    def __init__(self, app: ASGIApp, *, token: str, protected: Callable[[str], bool], max_body: int = MAX_BODY):
        self.app = app
        self.token = token.encode()
        self.protected, self.max_body = protected, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.protected(scope["path"]) and not bearer_matches(headers.get(b"authorization", b""), self.token):
            await _drain(receive)
            return await _problem(send, "unauthorized", "missing or wrong bearer token",
                                  [(b"www-authenticate", b"Bearer")])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            await _drain(receive)
            return await _problem(send, "payload_too_large", self._too_large())
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
                return await _problem(send, "payload_too_large", self._too_large())
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: a disconnect, when it comes

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the request body is over {self.max_body // 1024} KiB"


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
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": STATUS[code],
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
