"""The member feed pulled in a process of its own, so lookups never wait for a snapshot.

A scanner thread identifies a member in microseconds, on its own read
connection to cache.db. Applying a million members means decoding a million
JSON objects and building their rows: Python work that holds the GIL, and
would keep every lookup of the daemon waiting behind it. So the daemon's
puller applies a small page itself and hands anything longer (a snapshot, a
big delta) to ``ProcessMemberPull``: a child ``python -m posd.member_pull``
runs the very same page loop (posd.sync.lane.puller.pull_member_pages) with a
second writer on the same cache.db, and reports each page on its stdout. The
daemon's thread only waits on that pipe. The child's pages come from a process
of its own too (FetchProcess: the same module, told to fetch), which fetches,
decodes and builds each page's rows (posd.storage.cache.MemberRows) while the
writer writes the page before: on two cores the two halves of the work overlap.

Each page lands with its cursor in one transaction, as in the daemon, so the
cursor semantics stay exact across a crash of either process: the next pull
starts at the last committed cursor, and a page is never half applied. The
child stops at the next page when the daemon is gone, when it is told to
(SIGTERM), or when cache.db was moved to another lane id meanwhile. The
client settings and the key that seals wallet secrets go over the child's
stdin (and on to the fetch process's), never a command line or environment;
secrets are sealed by the fetch process, so the pipe between the two carries
them sealed.

Members central deleted are scrubbed from ledger.db before they leave
cache.db, and ledger.db has one writer, the daemon's: so the child asks
(``{"erase": [...]}`` on its stdout) and waits for the daemon's ``ok`` on its
stdin, which comes once the scrub is durable, before it writes that page.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import marshal
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from posd.storage.cache import Cache, LaneChanged, MalformedMember, MemberPage, MemberRows
from posd.storage.db import utcnow_iso
from posd.sync.lane.client import CentralClient
from posd.sync.lane.errors import (
    CentralAuthError,
    CentralProtocolError,
    CentralRequestRejected,
    CentralUnavailable,
    SyncError,
)
from posd.sync.lane.puller import member_pages, pull_member_pages

log = logging.getLogger("posd.member_pull")


class ProcessMemberPull:
    """posd.sync.lane.puller.BulkMemberPull in a child process."""

    def __init__(self, client: CentralClient, cache_path: Path, page_limit: int = 1000, *,
                 seal_key: bytes | None = None, on_erased: Callable[[list[str]], None] | None = None):
        """``seal_key`` and ``on_erased`` as the daemon's Cache has them (posd.storage.cache.Cache)."""
        self._client, self._cache_path, self._page_limit = client, cache_path, page_limit
        self._seal_key, self._on_erased = seal_key, on_erased
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._cancelled = False

    def pull(self, max_pages: int, stopped: Callable[[], bool], applied_page: Callable[[int], None]) -> tuple[int, bool]:
        spec = {"client": self._client.settings(), "cache": str(self._cache_path), "limit": self._page_limit,
                "max_pages": max_pages, "seal_key": self._seal_key.hex() if self._seal_key else None}
        with self._lock:
            if self._cancelled or stopped():
                return 0, False
            self._proc = proc = subprocess.Popen(
                [sys.executable, "-m", "posd.member_pull"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env={**os.environ, "POSD_MEMBER_PULL_PARENT": str(os.getpid())})
        try:
            proc.stdin.write(json.dumps(spec).encode() + b"\n")
            proc.stdin.flush()
            applied, outcome = 0, None
            for line in proc.stdout:
                message = json.loads(line)
                if "page" in message:
                    applied += message["page"]
                    applied_page(message["page"])
                elif "erase" in message:
                    if self._on_erased is not None:
                        self._on_erased(message["erase"])  # durable in ledger.db before the child goes on
                    proc.stdin.write(b"ok\n")
                    proc.stdin.flush()
                else:
                    outcome = message
            proc.stdin.close()
            code = proc.wait()
        finally:
            with self._lock:
                self._proc = None
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if outcome is None:
            raise SyncError(f"the member pull process ended without an answer (exit {code})")
        if "error" in outcome:
            raise _error(outcome["error"])
        return applied, bool(outcome["complete"])

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # a page in flight rolls back; the cursor stays where the last one put it


def _error(doc: dict[str, Any]) -> SyncError:
    """The child's error as the client would have raised it here: the puller backs off the same way."""
    kind, message = doc.get("kind"), doc.get("message", "member pull failed")
    if kind == "auth":
        return CentralAuthError(message, status=doc.get("status") or 401, code=doc.get("code"))
    if kind == "unavailable":
        return CentralUnavailable(message, retry_after=doc.get("retry_after"), status=doc.get("status"))
    if kind == "rejected":
        return CentralRequestRejected(message, status=doc.get("status") or 400, code=doc.get("code"))
    if kind == "protocol":
        return CentralProtocolError(message)
    return SyncError(message)


def _describe(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CentralAuthError):
        return {"kind": "auth", "message": str(exc), "status": exc.status, "code": exc.code}
    if isinstance(exc, CentralUnavailable):
        return {"kind": "unavailable", "message": str(exc), "retry_after": exc.retry_after,
                "status": getattr(exc, "status", None)}
    if isinstance(exc, CentralRequestRejected):
        return {"kind": "rejected", "message": str(exc), "status": exc.status, "code": exc.code}
    if isinstance(exc, (CentralProtocolError, MalformedMember)):
        return {"kind": "protocol", "message": str(exc)}
    if isinstance(exc, LaneChanged):
        return {"kind": "sync", "message": f"member pull stopped: {exc}"}
    return {"kind": "sync", "message": f"member pull failed: {type(exc).__name__}: {exc}"}


class Collector:
    """The cyclic garbage collector of a pull process, run every ``every`` pages instead of every few
    hundred allocations. A page allocates some fifteen objects per member and reference counting
    frees them all; the collector would only traverse them again and again (measured on a 1M
    snapshot: 10-20 % of the pull's CPU). What cycles there are (an exception's traceback) wait for
    the next round, so memory stays bounded."""

    def __init__(self, every: int = 100):
        gc.freeze()  # the modules imported so far are never garbage
        gc.disable()
        self._every, self._pages = every, 0

    def page(self) -> None:
        self._pages += 1
        if self._pages % self._every == 0:
            gc.collect()


class FetchProcess:
    """Member pages fetched, decoded and built into rows by a process of its own, while this one writes
    the page before: fetching a page and building its rows costs about as much CPU as writing it, and
    in one interpreter the two would take turns on the GIL (sqlite3 lets go of it for each row's step
    only). The rows come over a pipe (MemberPage.to_bytes: plain tuples, wallet secrets sealed
    already, each message a length and its bytes), a few pages ahead at most: the pipe (1 MiB,
    _widen) holds the fetch process back, so memory stays flat. The cursor is still stored with each
    page as it lands, so a page built ahead and never written is simply asked for again next time."""

    def __init__(self, spec: dict[str, Any]):
        self._spec = spec  # the client's settings and the seal key: over the pipe, never the command line

    def pages(self, cursor: str | None) -> Iterator[tuple[MemberPage, str, bool]]:
        proc = subprocess.Popen([sys.executable, "-m", "posd.member_pull"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env={**os.environ, "POSD_MEMBER_PULL_PARENT": str(os.getpid())})
        _widen(proc.stdout)
        try:
            proc.stdin.write(json.dumps({**self._spec, "fetch": True, "cursor": cursor}).encode() + b"\n")
            proc.stdin.close()
            while True:
                message = _receive(proc.stdout)
                if message is None:
                    raise SyncError(f"the member fetch process ended early (exit {proc.wait()})")
                if message[0] == "error":
                    raise _error(message[1])
                _, page, next_cursor, has_more = message
                yield MemberPage.from_bytes(page), next_cursor, has_more
        finally:
            if proc.poll() is None:
                proc.terminate()  # the writer stopped first (max_pages, stopped, an error)
            proc.wait()
            proc.stdout.close()


def _widen(pipe: BinaryIO) -> None:
    """Room in ``pipe`` for several pages (a page of 1000 members is about 90 KB, the default pipe
    64 KB): the fetch process builds ahead while the writer commits, instead of the two waiting on
    each other page by page. Bounded by the kernel's pipe-max-size (1 MiB unless raised)."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:  # pipe-max-size lowered, or the user's pipe quota spent: the default pipe still works
        pass


def fetch(spec: dict[str, Any], out: BinaryIO, orphaned: Callable[[], bool], collector: Collector) -> None:
    """The fetch process: pages from ``spec["cursor"]``, decoded and built into rows, sent on ``out``
    until central has no more, ``max_pages`` were sent, or the writer is gone."""
    client = CentralClient.from_settings(spec["client"])
    seal_key = bytes.fromhex(spec["seal_key"]) if spec.get("seal_key") else None
    rows = MemberRows(spec["client"]["lane_id"], seal_key)
    try:
        pages = member_pages(client, spec["cursor"], int(spec["limit"]))
        for members, next_cursor, has_more in _ahead(pages, int(spec["max_pages"])):
            _send(out, ("page", rows.page(members, utcnow_iso()).to_bytes(), next_cursor, has_more))
            collector.page()
            if orphaned():
                return
    except Exception as exc:  # noqa: BLE001 - every failure goes to the writer, which reports it
        try:
            if not isinstance(exc, BrokenPipeError):
                _send(out, ("error", _describe(exc)))
        except BrokenPipeError:
            pass
    finally:
        client.close()


def _ahead(pages: Iterator[tuple[list, str, bool]], most: int) -> Iterator[tuple[list, str, bool]]:
    """At most ``most`` of ``pages``, each next one asked of central (on a thread of its own) while
    the caller builds the one before: the wait for central's answer overlaps the work instead of
    adding to it (a round trip longer than the work still shows: each page's cursor comes in the
    answer before it). Never more than one page ahead, and never a page past ``most`` or past the
    last; central's error comes out where its page would."""
    if most < 1:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="member-fetch") as ahead:
        coming = ahead.submit(next, pages, None)
        for sent in range(1, most + 1):
            page = coming.result()
            if page is None:
                return
            more = page[2] and sent < most
            if more:
                coming = ahead.submit(next, pages, None)
            yield page
            if not more:
                return


_LENGTH = struct.Struct("!I")
_PIPE_BYTES = 1 << 20


def _send(out: BinaryIO, message: tuple) -> None:
    """One message from the fetch process to the writer: its length, then its bytes (marshal: the
    two processes run the same interpreter)."""
    data = marshal.dumps(message)
    _write_all(out, _LENGTH.pack(len(data)) + data)


def _write_all(out: BinaryIO | TextIO, data: bytes) -> None:
    """``data`` on ``out``'s pipe with os.write, the rest again after each short write.

    A buffered writer's big write that a signal cut short (a handler ran, or the process was
    stopped under a debugger or a profiler such as py-spy) put its bytes on the pipe out of
    order: the other end read a page it could not decode."""
    out.flush()
    fd, view = out.fileno(), memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _receive(source: BinaryIO) -> tuple | None:
    """The next message from the fetch process, or None when it ended (mid-message too)."""
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    data = source.read(length)
    if len(data) < length:
        return None
    return marshal.loads(data)


class _BuiltPages:
    """cache.db as pull_member_pages sees it when the pages arrive built (FetchProcess)."""

    def __init__(self, cache: Cache):
        self._cache = cache

    def member_cursor(self) -> str | None:
        return self._cache.member_cursor()

    def apply_member_changes(self, page: MemberPage, next_cursor: str) -> None:
        self._cache.apply_member_page(page, next_cursor)


def main() -> int:
    """The child: read the spec from stdin, pull pages into cache.db, one JSON line per page on stdout."""
    logging.basicConfig(level=os.environ.get("POSD_LOG_LEVEL", "WARNING").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parent = int(os.environ.get("POSD_MEMBER_PULL_PARENT", "0"))
    spec = json.loads(sys.stdin.readline())
    out = sys.stdout

    def report(message: dict[str, Any]) -> None:  # an erasure's list of members can be long
        _write_all(out, json.dumps(message).encode() + b"\n")

    def orphaned() -> bool:  # the daemon died (kill -9): stop at the next page, which is safe anywhere
        return bool(parent) and os.getppid() != parent

    def erased(member_ids: list[str]) -> None:  # the daemon scrubs ledger.db, then says ok
        report({"erase": member_ids})
        if sys.stdin.readline().strip() != "ok":
            raise SyncError("the daemon did not confirm the erasure; the page was not written")

    collector = Collector()

    def page_written(count: int) -> None:
        report({"page": count})
        collector.page()

    if spec.get("fetch"):
        fetch(spec, sys.stdout.buffer, orphaned, collector)
        # the writer may be gone (BrokenPipeError): nothing left to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    cache = Cache(Path(spec["cache"]), spec["client"]["lane_id"], on_erased=erased, checked=True)
    try:
        applied, complete = pull_member_pages(None, _BuiltPages(cache), int(spec["limit"]), int(spec["max_pages"]),
                                              orphaned, page_written, pages=FetchProcess(spec).pages)
        report({"complete": complete, "applied": applied})
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the daemon, which decides
        report({"error": _describe(exc)})
    finally:
        cache.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
