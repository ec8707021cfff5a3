"""The HTTP server under the lane's API: uvicorn on uvloop and httptools, as posd runs it.

The usual sale is answered by the protocol itself, with no ASGI call for it
(OneWriteProtocol below): the app claims it once its head is read. Every other
request goes to the app as uvicorn sends it, with one change: an answer that declares its length
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
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

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
    posd.api.security.Shortcut heralds a sale to the ledger there).

    An app with a ``direct(scope)`` has the requests it claims (the usual sale) answered here, with
    no ASGI call: once the body is in, the claim's ``answer(body)`` gives status, headers and body,
    written in one write after uvicorn's default headers, as uvicorn would have written them. The
    request stays uvicorn's cycle meanwhile, so a shutdown still waits for its answer (and then
    closes the connection) and a client gone meanwhile gets nothing written. A claim that answers
    None (a body that is not valid) is then given to the app after all, body and all. The claim is
    told ``arrived()`` when its body is in and ``abandon()`` when its task ends without an answer
    (cancelled by a stop that waited too long, or failed)."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        claim = getattr(self.app, "direct", None)
        if claim is not None and app is self.app and cycle is self.cycle and cycle.more_body \
                and not cycle.waiting_for_100_continue and not self.pipeline:
            direct = claim(cycle.scope)
            if direct is not None:
                cycle.direct = direct  # type: ignore[attr-defined]  # heralded once its body is in
                # a task from now, as uvicorn's: a stop waits for it, and cancels it when it waits too long
                task = self.loop.create_task(self._answer_directly(cycle, direct))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        if type(cycle) is RequestResponseCycle:  # created just now; its task has not run yet
            cycle.__class__ = _OneWriteCycle

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if getattr(self.cycle, "direct", None) is not None:
            self.flow.resume_reading()  # answered once whole: its length was checked against the limit

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: 400 ``malformed_request`` in the API's JSON, not
        uvicorn's plain text."""
        self.transport.write(unparseable_answer(self.server_state.default_headers, API_CODES[MALFORMED_REQUEST]))
        self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        direct = getattr(self.cycle, "direct", None)
        if direct is not None:
            direct.arrived()  # its task answers it in the loop's next step
            return
        arriving = getattr(self.app, "arriving", None)
        # Only a request the app itself is called for, and at once: not one uvicorn answers 503 for
        # (limit_concurrency), not one queued behind another on its connection (pipelined).
        if arriving is not None and self.limit_concurrency is None and not self.pipeline \
                and not self.cycle.response_complete:
            arriving(self.cycle.scope)

    async def _answer_directly(self, cycle: RequestResponseCycle, direct: Any) -> None:
        """A claimed request's task: its body awaited, then its answer written. Cancelled (a stop
        that waited too long) or failed, it ends as uvicorn ends an app's task: a 500 that closes
        the connection, or, once the answer was under way, the connection closed."""
        try:
            while cycle.more_body and not cycle.disconnected:
                await cycle.message_event.wait()
                cycle.message_event.clear()
            if cycle.disconnected:  # gone before its body was in: nothing heralded, nothing to answer
                return
            answer = await direct.answer(bytes(cycle.body))
            if answer is None:  # not valid: the app reads the same body and answers it in its words
                cycle.message_event.set()  # the body is in: the app's receive takes it at once
                return await cycle.run_asgi(direct.standard)
            if self.flow.write_paused and not cycle.disconnected:
                await self.flow.drain()
        except BaseException as exc:
            direct.abandon()  # a herald it made leaves with it
            cycle.logger.error("Exception in the directly answered request", exc_info=exc)
            if not cycle.response_started:
                await cycle.send_500_response()
            else:
                self.transport.close()
            return
        if cycle.disconnected or cycle.response_complete:
            return
        status, headers, body = answer
        content = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:  # HTTP/1.0, Connection: close, or the server shutting down
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        cycle.response_started = cycle.response_complete = True
        self.transport.write(b"".join(content))
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()


# FastAPI's native OpenTelemetry asks the global providers on every request whether any is set. posd
# reports through Prometheus (/metrics) and sets none: its apps are made with these settings.
NO_TELEMETRY: dict[str, Any] = {"tracing": False, "metrics": False, "logs": False}


def config(app: Any, host: str, port: int, **settings: Any) -> uvicorn.Config:
    """The server's settings: no proxy stands in front of a lane's API, so X-Forwarded-* headers are
    not read (proxy_headers off, which also spares every request uvicorn's proxy middleware)."""
    return uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None, access_log=False,
                          proxy_headers=False, http=OneWriteProtocol, **settings)
