"""Guards for a local API that a browser on the same PC can reach.

Loopback bind is not enough on its own: a web page can make the browser call
127.0.0.1 (CSRF) or rebind its own DNS name to it. So: the Host header must
name this listener, a request carrying an Origin must come from an allowed
origin (answering Private-Network-Access preflights only for those), and every
route but health needs the bearer token (posd/api/app.py, compared in constant time).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

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


async def _problem(send: Send, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": STATUS[code],
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
