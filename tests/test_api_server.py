"""The API's HTTP server (posd.api.server): an answer of declared length leaves in one write; every
other answer (a stream, HEAD, no body, a broken app) reaches the client as uvicorn writes it."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.wait import wait_until

APP = textwrap.dedent("""
    import asyncio, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
    from posd.api import server

    async def answer(request):
        return JSONResponse({"pad": "x" * int(request.query_params.get("n", "10"))})

    async def stream(request):
        async def events():
            await asyncio.sleep(1.0)
            yield b"data: late\\n\\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    async def closing(request):
        return JSONResponse({"ok": True}, headers={"Connection": "close"})

    async def empty(request):
        return Response(status_code=204)

    async def long(request):  # declares 3 bytes, sends 5: uvicorn refuses the body
        return Response(b"12345", headers={"content-length": "3"})

    async def two_parts(request):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            await asyncio.sleep(0.2)
            await send({"type": "http.response.body", "body": b"def"})
        return app

    async def invalid(request):
        return JSONResponse({"read": len(await request.body())}, status_code=422)

    routes = [Route("/direct/invalid", invalid, methods=["POST"]), Route("/answer", answer, methods=["GET", "HEAD"]), Route("/stream", stream), Route("/close", closing),
              Route("/empty", empty), Route("/long", long)]
    app = Starlette(routes=routes)

    class Direct:  # a request the server answers itself (posd.api.security.DirectSale's shape)
        def __init__(self, path):
            self.path, self.standard = path, app

        def arrived(self):
            pass

        def abandon(self):
            pass

        async def answer(self, body):
            if self.path in ("/direct/slow", "/direct/slower"):
                await asyncio.sleep(1.0 if self.path == "/direct/slow" else 5.0)
            if self.path == "/direct/broken":
                raise RuntimeError("broken")
            if self.path == "/direct/invalid":
                return None  # the app then answers it
            payload = b'{"direct":' + str(len(body)).encode() + b'}'
            return 200, [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())], \
                payload

    class Outer:
        def arriving(self, scope):  # told when the head is read, before the app is called
            scope["arrived"] = scope["path"]

        def direct(self, scope):
            return Direct(scope["path"]) if scope["path"].startswith("/direct/") else None

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http" and scope["path"] == "/parts":
                return await (await two_parts(None))(scope, receive, send)
            if scope["type"] == "http" and scope["path"] == "/arrived":
                return await JSONResponse({"arrived": scope.get("arrived")})(scope, receive, send)
            return await app(scope, receive, send)

    outer = Outer()

    if len(sys.argv) == 2:
        uvicorn.Server(server.config(outer, "127.0.0.1", int(sys.argv[1]), loop="uvloop")).run()
    else:  # as posd's daemon serves: its own SIGTERM, a grace for answers under way, the loop on after it
        import signal
        import uvloop

        class Served(uvicorn.Server):
            def capture_signals(self):
                import contextlib
                return contextlib.nullcontext()

        async def main():
            served = Served(server.config(outer, "127.0.0.1", int(sys.argv[1]),
                                          timeout_graceful_shutdown=float(sys.argv[2])))
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(served, "should_exit", True))
            await served.serve()
            await asyncio.sleep(0.5)  # the daemon stops its workers meanwhile

        uvloop.run(main())
""")


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    proc, number = _serve(tmp_path_factory.mktemp("server"))
    try:
        yield number
    finally:
        proc.terminate()
        proc.wait(10)


def _serve(folder, *args: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        number = probe.getsockname()[1]
    script = folder / "serve.py"
    script.write_text(APP)
    proc = subprocess.Popen([sys.executable, str(script), str(number), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _connects(number), timeout=30, what="the test server listening")
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, number


def _connects(number: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", number), timeout=1).close()
        return True
    except OSError:
        return False


def _ask(port: int, request: bytes) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(request)
    return sock, sock.recv(1 << 20)


def _read_all(sock: socket.socket, first: bytes) -> bytes:
    data = first
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return data
        data += chunk


def test_an_answer_of_declared_length_arrives_whole_in_one_segment(port):
    for size in (10, 3000, 40_000):  # a loopback segment carries up to about 64 KB
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        before = _data_segments_in(sock)
        sock.sendall(f"GET /answer?n={size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = sock.recv(1 << 20)
        with sock:
            if size <= 3000:  # a sale's answer (about 2 KB): head and body in one segment
                assert _data_segments_in(sock) - before == 1, size
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: " in head
            assert len(body) == int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            assert body.endswith(b'"}')


def _data_segments_in(sock: socket.socket) -> int:
    """The kernel's count of TCP segments with data this socket received (struct tcp_info's
    tcpi_data_segs_in, Linux 4.6+, at byte 152)."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 152)[0]


def test_answer_after_answer_on_one_connection_each_in_one_segment(port):
    """The POS is woken once per answer: its head and body come in one TCP segment (uvicorn alone
    sends two)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with sock:
        before = _data_segments_in(sock)
        for n in range(20):
            sock.sendall(f"GET /answer?n={n + 1} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = b""
            while not got.endswith(b'"}'):
                got += sock.recv(1 << 16)
            assert got.count(b"HTTP/1.1 200") == 1 and got.endswith(b"x" * (n + 1) + b'"}')
        assert _data_segments_in(sock) - before == 20


def test_a_stream_sends_its_head_before_its_first_event(port):
    sock, first = _ask(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert first.startswith(b"HTTP/1.1 200 OK") and b"text/event-stream" in first
        assert b"late" not in first  # the event comes a second later: the head did not wait for it
        rest = b""
        while b"data: late" not in rest:
            rest += sock.recv(1 << 16)


def test_head_no_content_and_connection_close_answers(port):
    sock, first = _ask(port, b"HEAD /answer HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"\r\n\r\n")
        assert b"content-length: 20" in first
    sock, first = _ask(port, b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert first.startswith(b"HTTP/1.1 204") and first.endswith(b"\r\n\r\n")
    sock, first = _ask(port, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert _read_all(sock, first).endswith(b'{"ok":true}')  # then the server closed


def test_the_app_hears_of_a_request_when_its_head_is_read_before_it_is_called(port):
    """An app with ``arriving(scope)`` is told first (posd's Shortcut heralds a sale to the ledger)."""
    sock, first = _ask(port, b"GET /arrived HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert first.endswith(b'{"arrived":"/arrived"}')


def test_a_body_sent_in_parts_and_a_broken_answer(port):
    sock, first = _ask(port, b"GET /parts HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        got = first
        while not got.endswith(b"abcdef"):
            got += sock.recv(1 << 16)
        assert got.startswith(b"HTTP/1.1 200 OK")
    sock, first = _ask(port, b"GET /long HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:  # uvicorn refuses a body longer than declared: the head goes, as uvicorn sends it, then a close
        got = _read_all(sock, first)
        assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"content-length: 3\r\n\r\n")
    sock, first = _ask(port, b"GET /answer HTTP/1.1\r\nHost: x\r\n\r\n")  # the server is still well
    with sock:
        assert first.startswith(b"HTTP/1.1 200 OK")


def _post(path: str, body: bytes = b"abc", extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_a_request_the_app_claims_is_answered_by_the_server_in_one_segment(port):
    """An app's ``direct(scope)`` claim: answered without an ASGI call, after uvicorn's default
    headers, in one segment; kept alive; a claim that answers None goes to the app, body and all;
    a claim that fails is uvicorn's 500 and the server stays well."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with sock:
        before = _data_segments_in(sock)
        for n in range(5):
            sock.sendall(_post("/direct/ok", b"x" * n))
            got = b""
            while not got.endswith(b"}"):
                got += sock.recv(1 << 16)
            head, _, body = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"direct":%d}' % n
            assert {b"date", b"server", b"content-type", b"content-length"} <= \
                {line.partition(b":")[0] for line in head.split(b"\r\n")[1:]}
        assert _data_segments_in(sock) - before == 5
    sock, first = _ask(port, _post("/direct/invalid", b"12345"))
    with sock:
        assert first.startswith(b"HTTP/1.1 422") and first.endswith(b'{"read":5}')
    sock, first = _ask(port, _post("/direct/broken"))
    with sock:
        assert _read_all(sock, first).startswith(b"HTTP/1.1 500")
    sock, first = _ask(port, _post("/direct/ok", b"", "Connection: close\r\n"))
    with sock:
        got = _read_all(sock, first)  # answered, then closed
        assert b"connection: close" in got and got.endswith(b'{"direct":0}')


def test_a_claimed_request_under_way_is_answered_before_the_server_stops(tmp_path):
    """A graceful stop (SIGTERM) waits for the claimed request's answer, which says the connection
    closes; a client gone before its answer gets nothing and costs the server nothing."""
    proc, number = _serve(tmp_path)
    try:
        gone = socket.create_connection(("127.0.0.1", number), timeout=5)
        gone.sendall(_post("/direct/slow"))
        gone.close()
        sock = socket.create_connection(("127.0.0.1", number), timeout=5)
        with sock:
            sock.sendall(_post("/direct/slow"))
            time.sleep(0.3)
            proc.terminate()
            got = _read_all(sock, b"")
        assert got.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in got and got.endswith(b'{"direct":3}')
        assert proc.wait(10) in (0, -signal.SIGTERM)  # stopped (uvicorn re-raises the signal it handled)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_stop_that_waits_too_long_ends_a_claimed_request_as_uvicorn_ends_an_apps(tmp_path):
    """Past the stop's grace, a claimed request still waiting for the rest of its body, or for its
    answer, is cancelled as uvicorn cancels an app's task: a 500 that closes the connection."""
    proc, number = _serve(tmp_path, "0.5")
    try:
        partial = socket.create_connection(("127.0.0.1", number), timeout=10)
        partial.sendall(_post("/direct/ok", b"abcdef")[:-3])  # its body never completes
        slow = socket.create_connection(("127.0.0.1", number), timeout=10)
        slow.sendall(_post("/direct/slower"))  # its answer takes 5 s, ten times the grace
        time.sleep(0.3)
        proc.terminate()
        for sock in (partial, slow):
            with sock:
                got = _read_all(sock, b"")
            assert got.startswith(b"HTTP/1.1 500 ") and b"connection: close" in got, got
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
