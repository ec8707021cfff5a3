"""The HTTP server under the lane's API: uvicorn on uvloop and httptools, as posd runs it.

One change to uvicorn's HTTP/1.1 protocol: an answer that declares its length
leaves in one write, status line, headers and body together. uvicorn writes
the head when the app sends ``http.response.start`` and the body on the next
message: two sends, two TCP segments, and a POS woken twice per answer (each
send costs the lane a system call and the loopback's delivery, the POS a
wake-up and a read). Here the head waits for the body that follows it, in the
same step of the same task. An answer without a length (the event stream,
chunked) is written as uvicorn writes it: its head must reach the client
before the first event, whenever that comes.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from posd.api.errors import API_CODES
from posd.sync.protocol.http import MALFORMED_REQUEST, unparseable_answer


class _Head:
    """Stands in for the transport while uvicorn writes a head: keeps the bytes."""

    def __init__(self, transport: Any):
        self._transport = transport
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Prefixed:
    """Stands in for the transport while uvicorn writes the body: the held head goes first, in the
    same write (or on its own before a close, when no body byte is written)."""

    def __init__(self, transport: Any, head: bytes):
        self._transport, self._head = transport, head

    def write(self, data: bytes) -> None:
        head, self._head = self._head, b""
        self._transport.write(head + data)

    def flush(self) -> None:
        if self._head:
            self.write(b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _OneWriteCycle(RequestResponseCycle):
    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            if self.response_started or self.flow.write_paused or self.disconnected or not _declares_length(message):
                return await super().send(message)
            real, self.transport = self.transport, _Head(self.transport)
            try:
                await super().send(message)  # nothing it awaits: write_paused is false, so the head is built at once
            finally:
                head, self.transport = self.transport.data, real  # type: ignore[attr-defined]
            self._head = head
            return None
        head = self._head
        if head is None:
            return await super().send(message)
        self._head = None
        real = self.transport
        prefixed = self.transport = _Prefixed(real, head)
        try:
            await super().send(message)
        finally:
            self.transport = real
            if not real.is_closing():
                prefixed.flush()  # a HEAD request's answer, or a body uvicorn refused: the head still goes


def _declares_length(message: Any) -> bool:
    return any(name.lower() == b"content-length" for name, _ in message.get("headers", ()))


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose requests write a declared-length answer in one write, and
    which tells an app that has an ``arriving(scope)`` of each request as soon as it is read whole
    (usually in the same turn of the event loop as its head, before the app is called for it:
    posd.api.security.Shortcut heralds a sale to the ledger there)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        if type(cycle) is RequestResponseCycle:  # created just now; its task has not run yet
            cycle.__class__ = _OneWriteCycle

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: 400 ``malformed_request`` in the API's JSON, not
        uvicorn's plain text."""
        self.transport.write(unparseable_answer(self.server_state.default_headers, API_CODES[MALFORMED_REQUEST]))
        self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        arriving = getattr(self.app, "arriving", None)
        # Only a request the app itself is called for, and at once: not one uvicorn answers 503 for
        # (limit_concurrency), not one queued behind another on its connection (pipelined).
        if arriving is not None and self.limit_concurrency is None and not self.pipeline \
                and not self.cycle.response_complete:
            arriving(self.cycle.scope)


# FastAPI's native OpenTelemetry asks the global providers on every request whether any is set. posd
# reports through Prometheus (/metrics) and sets none: its apps are made with these settings.
NO_TELEMETRY: dict[str, Any] = {"tracing": False, "metrics": False, "logs": False}


def config(app: Any, host: str, port: int, **settings: Any) -> uvicorn.Config:
    """The server's settings: no proxy stands in front of a lane's API, so X-Forwarded-* headers are
    not read (proxy_headers off, which also spares every request uvicorn's proxy middleware)."""
    return uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None, access_log=False,
                          proxy_headers=False, http=OneWriteProtocol, **settings)
