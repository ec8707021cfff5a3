"""Catch blocking calls made on a running asyncio event loop.

posd serves the POS from one event loop; a call that waits there (sleeping,
waiting on another thread, a blocking socket, a child process) stalls every
request and the SSE stream. ``install()`` wraps the standard library's
blocking primitives; when one is called on a thread whose event loop is
running, the call is recorded (it still runs, so the code under test behaves
as it would) with the place in posd or the tests that made it. The conftest
fails the test at its end; a daemon started with ``python -m
tests.support.guarded_posd`` writes each one as a ``LOOP_GUARD`` line on
stderr, which tests.support.lane reads back.

What counts as blocking here is what can wait for long, not what is merely
slow: SQLite reads on the loop are by design (an indexed lookup is
microseconds), and so is a ledger unit that would run alone while the
ledger's units are quick (posd.storage.ledger); waiting on the writer
thread's future is what is caught. asyncio's own internals are exempt (its
default-executor shutdown joins a thread that has already finished).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

MARKER = "LOOP_GUARD"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_STDLIB_DIR = os.path.dirname(os.__file__)
_THIS_FILE = os.path.abspath(__file__)

_THREAD_START = threading.Thread.start.__code__  # waits for the new thread to say it runs

_lock = threading.Lock()
_violations: list[str] = []
_report: TextIO | None = None
_installed = False


def _waits(timeout: Any) -> bool:
    return timeout is None or timeout > 0


def _blocking_socket(sock: socket.socket, *_: Any, **__: Any) -> bool:
    return sock.gettimeout() != 0.0  # asyncio's own sockets are non-blocking


# (owner, attribute, does this call wait?) for every primitive that can wait for long.
_BLOCKING: list[tuple[Any, str, Callable[..., bool]]] = [
    (time, "sleep", lambda secs=0, *_, **__: secs > 0),
    (threading.Condition, "wait", lambda self, timeout=None: _waits(timeout)),  # Event, Queue, Future.result
    (threading.Thread, "join", lambda self, timeout=None: self.is_alive() and _waits(timeout)),
    (subprocess.Popen, "wait", lambda self, timeout=None: _waits(timeout)),
    (subprocess.Popen, "communicate", lambda self, input=None, timeout=None: _waits(timeout)),
    (socket, "getaddrinfo", lambda *_, **__: True),
    (socket, "gethostbyname", lambda *_, **__: True),
    *[(socket.socket, name, _blocking_socket)
      for name in ("connect", "connect_ex", "accept", "recv", "recv_into", "recvfrom", "send", "sendall", "sendto")],
]


def install(report: TextIO | None = None) -> None:
    """Wrap the blocking primitives (once per process). ``report``: also write each
    violation there as one ``LOOP_GUARD ...`` line, as soon as it happens."""
    global _installed, _report
    _report = report
    if _installed:
        return
    _installed = True
    for owner, name, waits in _BLOCKING:
        original = getattr(owner, name)
        setattr(owner, name, _guarded(f"{getattr(owner, '__name__', owner)}.{name}", original, waits))


def _guarded(label: str, original: Callable[..., Any], waits: Callable[..., bool]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if asyncio._get_running_loop() is not None and _from_outside_asyncio():
            try:
                blocking = waits(*args, **kwargs)
            except Exception:  # unusual arguments: let the real call judge them
                blocking = False
            if blocking:
                _record(label)
        return original(*args, **kwargs)

    return guarded


def _from_outside_asyncio() -> bool:
    """False when the wait is asyncio's own business or a thread start's handshake:
    the frames between the call and the first of ours are asyncio's, or Thread.start."""
    frame = sys._getframe(2)  # guarded's caller
    while frame is not None:
        filename = frame.f_code.co_filename
        if _is_ours(filename):
            return True
        if filename.startswith(_ASYNCIO_DIR) or frame.f_code is _THREAD_START:
            return False
        frame = frame.f_back
    return True


def _is_ours(filename: str) -> bool:
    """Code of posd or of a test: not the standard library, not an installed package."""
    return not (filename.startswith((_STDLIB_DIR, "<")) or "site-packages" in filename or filename == _THIS_FILE)


def _record(label: str) -> None:
    ours = [f for f in traceback.extract_stack()[:-2] if _is_ours(f.filename)]  # not _record, guarded
    where = f"{_short(ours[-1].filename)}:{ours[-1].lineno} ({ours[-1].name})" if ours else "?"
    text = f"{label} on the event loop's thread, called from {where}"
    with _lock:
        _violations.append(text)
    if _report is not None:
        chain = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in reversed(ours[-6:]))
        _report.write(f"{MARKER} {text}; stack: {chain}\n")
        _report.flush()


def _short(filename: str) -> str:
    return os.path.relpath(filename, _ROOT) if filename.startswith(_ROOT + os.sep) else os.path.basename(filename)


def record(text: str) -> None:
    """A violation seen elsewhere (a daemon's LOOP_GUARD line)."""
    with _lock:
        _violations.append(text)


def take() -> list[str]:
    """The violations recorded since the last call."""
    with _lock:
        taken = list(_violations)
        _violations.clear()
    return taken
