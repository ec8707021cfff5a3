"""Serving the reference central with uvicorn: in process (tests, the demo) or as worker processes.

``CentralServer`` runs the ASGI app (app.py) on uvicorn in one thread of
this process: ``start()``, ``.url``, ``inject()``, ``stop()``; tests and
``posd demo`` use it. ``serve()`` is ``posd central``: the socket is bound
once, then served by the app in this process (``--workers 1``) or by N
uvicorn worker processes sharing it, each with its own app and connection
pool over the same PostgreSQL database (``--workers N``).

``CentralProtocol`` is uvicorn's httptools protocol plus one ASGI extension,
``posd.abort``: close with a TCP reset and no answer, which the reset,
timeout and applied_then_lost faults need and plain ASGI cannot say. A
client that goes away is no error: uvicorn drops what is left to send,
without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from posd.sync.central.admission import Admission
from posd.sync.central.app import (
    ENV_ADMISSION,
    ENV_DB,
    ENV_POOL,
    ENV_RESERVATION_TTL,
    RESERVATION_TTL_S,
    CentralApp,
    is_loopback,
)
from posd.sync.central.faults import FaultPlan
from posd.sync.central.store import CentralStore, open_store
from posd.sync.protocol.http import MALFORMED_REQUEST_MESSAGE, unparseable_answer

log = logging.getLogger("posd.sync.central")

GRACE_S = 1.0  # in-flight requests get this long at stop (fault delays end at once)

__all__ = ["RESERVATION_TTL_S", "CentralProtocol", "CentralServer", "is_loopback", "serve"]


class CentralProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; each request's scope can reset its connection."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"posd.abort": self._reset}

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: 400 ``malformed_request`` in the protocol's JSON, not
        uvicorn's plain text (every error answer is {code, message}, docs/sync-protocol.md)."""
        self.transport.write(unparseable_answer(self.server_state.default_headers, MALFORMED_REQUEST_MESSAGE))
        self.transport.close()

    def _reset(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket, bound once (worker processes inherit it). Listening at once means
    a client that connects before a worker is up waits in the backlog instead of being refused.

    Made as a TCP socket by name (IPPROTO_TCP), as asyncio makes its own: asyncio turns Nagle's
    algorithm off (TCP_NODELAY) only on connections from such a socket, and uvicorn writes an
    answer's headers and its body in two sends. Left on, a body that fits in one segment waited
    for the client's delayed ACK of the headers: 40 ms added to every small answer (a push's
    results, a gzipped member page; measured on loopback: 52 ms a page instead of 8)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by its connections on Linux
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _config(app: Any, host: str, port: int, **kwargs: Any) -> uvicorn.Config:
    # loop="asyncio": uvicorn would pick uvloop (a lane dependency) on its own, whose sockets refuse the
    # SO_LINGER reset the fault injection gives a connection (_reset); the central keeps asyncio's loop.
    return uvicorn.Config(app, host=host, port=port, http=CentralProtocol, lifespan="on", access_log=False,
                          loop="asyncio",
                          server_header=False, date_header=False, timeout_graceful_shutdown=GRACE_S,
                          timeout_keep_alive=30, **kwargs)


class _PromptServer(uvicorn.Server):
    """uvicorn's server, told to stop at once: its main loop looks at ``should_exit`` every 0.1 s, so
    each in-process central (a test's, the demo's) took up to a tick longer to stop than it needed."""

    async def main_loop(self) -> None:
        self.wake = asyncio.Event()
        self.wake_loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.1)

    def exit_now(self) -> None:
        """From another thread: exit, and end the tick's wait."""
        self.should_exit = True
        loop, wake = getattr(self, "wake_loop", None), getattr(self, "wake", None)
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(wake.set)


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
        pool_size: int = 8,
        admission: float = 0.0,
        reservation_ttl_s: float = RESERVATION_TTL_S,
    ) -> None:
        """``admission``: central-paced admission at this many events/s (0: admit every push);
        ``reservation_ttl_s``: how long an approved burn waits for the lane's event."""
        if not reservation_ttl_s > 0:
            raise ValueError("the reservation time to live must be more than 0 seconds")
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to listen on non-loopback address {host!r} without --allow-remote")
        self.host, self.port = host, port
        self.clock = clock
        self.ssl_context = ssl_context
        # Late-bound, so a test that swaps server.clock moves lot expiry too.
        self.store: CentralStore = open_store(db_path, clock=lambda: self.clock(), pool_size=pool_size)
        try:
            self.store.clear_faults()  # a fault plan is for one run of central
            if seed is not None:
                self.store.seed(seed)
        except BaseException:
            self.store.close()
            raise
        self.faults = FaultPlan(self.store)
        self._started = threading.Event()
        self.app = CentralApp(self.store, clock=lambda: self.clock(), threads=pool_size,
                              on_started=self._started.set,
                              admission=Admission(admission) if admission > 0 else None,
                              reservation_ttl_s=reservation_ttl_s)
        self.reservation_ttl_s = self.app.reservation_ttl_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def start(self, timeout: float = 30.0) -> CentralServer:
        config = _config(self.app, self.host, self.port, log_level="warning")
        config.load()
        config.ssl = self.ssl_context  # a ready context (mTLS included); uvicorn serves it as it is
        try:
            sock = bind(self.host, self.port)
        except BaseException:
            self.store.close()
            raise
        self.port = sock.getsockname()[1]
        self._server = _PromptServer(config)
        self._thread = threading.Thread(target=self._run, args=(self._server, sock), name="central-http",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._failed is not None:
            self.stop()
            raise RuntimeError(f"central did not start: {self._failed!r}")
        log.info("central listening on %s", self.url)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start()
            self._failed = exc
            self._started.set()
        finally:
            sock.close()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("central is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """End fault delays, stop serving (open connections closed), join the thread, close the db."""
        server, self._server = self._server, None
        if server is not None:
            self.app.stop_waiting()
            server.exit_now()
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
        counts = dict(self.app.counts)
        return sum(counts.values()) if route is None else counts.get(route, 0)


LOG_FORMAT = "%(levelname)s %(name)s %(message)s"  # central's lines on stderr, in every process


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, and central's own lines as ``posd central`` writes them: each worker process
    (``--workers N``) starts afresh and configures logging from this; without it a worker's warnings
    came out bare (no level, no logger) and its info lines not at all."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["central"] = {"format": LOG_FORMAT}
    config["handlers"]["central"] = {"class": "logging.StreamHandler", "formatter": "central",
                                     "stream": "ext://sys.stderr"}
    config["root"] = {"level": level.upper(), "handlers": ["central"]}
    return config


def serve(db: str, host: str, port: int, *, workers: int, pool_size: int, log_level: str,
          tls: dict[str, Any], started: Any, admission: float = 0.0,
          reservation_ttl_s: float = RESERVATION_TTL_S) -> None:
    """Serve until SIGINT/SIGTERM: bind, then the app in this process or ``workers`` processes.
    ``started(url)`` is called once the socket listens. The store is already seeded.
    ``admission``: central's events/s for central-paced admission, shared out among the workers."""
    os.environ[ENV_DB], os.environ[ENV_POOL] = db, str(pool_size)
    os.environ[ENV_ADMISSION] = str(admission / workers)
    os.environ[ENV_RESERVATION_TTL] = str(reservation_ttl_s)
    config = _config("posd.sync.central.app:create_app", host, port, factory=True, workers=workers,
                     log_level=log_level.lower(), log_config=_log_config(log_level), **tls)
    sock = bind(host, port)
    scheme = "https" if tls.get("ssl_certfile") else "http"
    shown = f"[{host}]" if ":" in host else host
    started(f"{scheme}://{shown}:{sock.getsockname()[1]}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        # uvicorn stops on these, then raises them again for the handler it found: make that
        # handler a no-op, so a SIGTERM is a clean stop (exit 0), not a death by signal.
        signal.signal(sig, lambda *_: None)
    try:
        if workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
