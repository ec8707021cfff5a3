"""The floors: what the parts under each posd path can do alone, measured in the same run.

- ``bare_route``: the same server stack as the daemon (uvloop + uvicorn +
  httptools + FastAPI, one process), one route that validates the same pydantic body and
  answers a fixed JSON of the same size as posd's answer; the same POS loop
  drives it.
- ``durable_commits``: BEGIN IMMEDIATE, rows of the sizes a sale writes
  (measured on the run's own ledger.db), COMMIT, on a WAL database with
  synchronous=FULL in the same folder, by one writer in its own process.
- ``pty_round_trip``: a line written into a pseudo-terminal until it is read
  at the other end.
- ``lookups``: indexed member lookups in cache.db with nothing else running.
- ``bulk_insert``: the snapshot's rows (members and their identifiers, as
  cache.db stores them) written into a fresh cache.db by executemany, one
  transaction per 100k members: the rows are built before the clock starts,
  so this is SQLite's part alone, without fetching or decoding.
- ``bare_push``: the drained events pushed again to a fresh central, batch by
  batch as the relay sent them, by the signed client and nothing else.

Run as a module, it is the child process of the first two:
    python -m bench.floors route PORT ANSWER_BYTES
    python -m bench.floors commits DB N SIZES_JSON
"""

from __future__ import annotations

import json
import os
import pty
import random
import sqlite3
import subprocess
import sys
import threading
import time
import tty
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    combined_rate,
    concurrent_posts,
    free_port,
    post_loop,
    proc_cpu_s,
    wait_listening,
)


# --- a bare route on the daemon's server stack ---------------------------------------------------


def serve_bare_route(port: int, answer_bytes: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from posd.api import server
    from posd.api.models import TransactionIn

    answer = {"transaction_id": "", "pad": "x" * max(0, answer_bytes - 40)}
    app = FastAPI(telemetry=server.NO_TELEMETRY)  # as posd's apps

    async def post(body):
        return JSONResponse({**answer, "transaction_id": body.transaction_id})

    post.__annotations__ = {"body": TransactionIn}  # resolved here: this module postpones annotations
    app.post("/v1/transactions")(post)

    @app.get("/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.Server(server.config(app, "127.0.0.1", port, loop="uvloop")).run()  # the daemon's settings, on uvloop


class BareRoute:
    """The bare route server as a child process, started once and driven between posd's rounds."""

    def __init__(self, answer_bytes: int):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.floors", "route", str(self.port), str(answer_bytes)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(f"http://127.0.0.1:{self.port}/v1/health", 30)
        self.cpu_s = 0.0
        self.requests = 0

    def sequential(self, members: list[str], prefix: str, n: int) -> list[float]:
        cpu0 = proc_cpu_s(self.proc.pid)
        ms = post_loop(self.port, "-", prefix, members, n)
        self.cpu_s += proc_cpu_s(self.proc.pid) - cpu0
        self.requests += n
        return ms

    def concurrent(self, members: list[str], prefix: str, n: int, clients: int) -> tuple[list[float], float]:
        cpu0 = proc_cpu_s(self.proc.pid)
        ms, elapsed = concurrent_posts(self.port, "-", prefix, members, n, clients)
        self.cpu_s += proc_cpu_s(self.proc.pid) - cpu0
        self.requests += len(ms)
        return ms, elapsed

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- durable commits of a sale's rows ------------------------------------------------------------


def run_commits(db: Path, n: int, sizes: dict[str, list[int]]) -> dict[str, Any]:
    """One writer: per commit, one row of each measured size into its table; latencies in ms, seconds,
    and the process's CPU seconds (the kernel's share of a sync included)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for table in sizes:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, k TEXT UNIQUE, body TEXT)")
    rng = random.Random()
    cpu0 = time.process_time()
    payloads = {t: ["x" * s for s in rows] for t, rows in sizes.items()}
    ms = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for table, rows in payloads.items():
            for body in rows:
                conn.execute(f"INSERT INTO {table} (k, body) VALUES (?, ?)", (f"{rng.getrandbits(64):x}-{i}", body))
        conn.execute("COMMIT")
        ms.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    conn.close()
    return {"ms": ms, "seconds": elapsed, "cpu_s": time.process_time() - cpu0}


def durable_commits(db: Path, n: int, sizes: dict[str, list[int]]) -> dict[str, Any]:
    """``run_commits`` in a child process, on ``db`` (kept between rounds, as a ledger grows)."""
    out = subprocess.run([sys.executable, "-m", "bench.floors", "commits", str(db), str(n), json.dumps(sizes)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def sale_row_sizes(ledger: Path, prefix: str) -> dict[str, list[int]]:
    """What one sale wrote into each table of ledger.db, in bytes per row (the mean over the sales
    whose transaction id starts with ``prefix``): the floor commits rows of exactly these sizes."""
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        sales = conn.execute("SELECT COUNT(*) FROM transactions WHERE transaction_id LIKE ?",
                             (prefix + "%",)).fetchone()[0]
        found: dict[str, list[int]] = {}
        queries = {
            "transactions": "SELECT * FROM transactions WHERE transaction_id LIKE ?1",
            "outbox": "SELECT o.* FROM outbox o JOIN transactions t ON t.seq = o.seq WHERE t.transaction_id LIKE ?1",
            "ledger_entries": "SELECT * FROM ledger_entries WHERE transaction_id LIKE ?1",
            "print_jobs": "SELECT * FROM print_jobs WHERE slip_id LIKE ?1",
        }
        for table, sql in queries.items():
            rows = conn.execute(sql, (prefix + "%",)).fetchall()
            if rows and sales:
                per_sale = max(1, round(len(rows) / sales))
                mean = round(sum(sum(len(str(v)) for v in row if v is not None) for row in rows) / len(rows))
                found[table] = [mean] * per_sale
        return found
    finally:
        conn.close()


# --- the pty under a scanner, and a lookup with nothing else running ------------------------------


def pty_round_trip(n: int, line: bytes = b"2900000000018\r") -> list[float]:
    """A scanner's line written at one end of a pty until a reader thread has it at the other."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    got = threading.Event()
    stop = threading.Event()

    def reader() -> None:
        buf = b""
        while not stop.is_set():
            buf += os.read(master, 256)
            if buf.endswith(b"\r"):
                buf = b""
                got.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    ms = []
    try:
        for _ in range(n):
            got.clear()
            t0 = time.perf_counter()
            os.write(slave, line)
            if got.wait(2.0):
                ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.002)
    finally:
        stop.set()
        os.write(slave, b"\r")
        thread.join(2)
        os.close(master)
        os.close(slave)
    return ms


def lookups(find, codes: list[str], seconds: float, pace_s: float = 0.001) -> list[float]:
    """``find(code)`` once per ``pace_s`` for ``seconds`` (a scanner thread's pace), each timed."""
    ms = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        code = codes[i % len(codes)]
        i += 1
        t = time.perf_counter()
        find(code)
        ms.append((time.perf_counter() - t) * 1000)
        time.sleep(pace_s)
    return ms


# --- a bulk insert of the snapshot's rows ----------------------------------------------------------


def bulk_insert(db: Path, members: list[dict[str, Any]] | Any, per_transaction: int = 100_000) -> dict[str, Any]:
    """The snapshot's rows written into a fresh cache.db with nothing else running: seconds and CPU
    seconds of the writes alone (rows are built, untimed, before each transaction)."""
    from posd.storage import cache as cache_module

    cache = cache_module.Cache(db, "L01")
    conn = cache._conn  # the floor is SQLite's own work: the same statements, no page loop around them
    elapsed = cpu = 0.0
    count = 0
    try:
        batch: list[dict[str, Any]] = []
        for member in [*members, None]:
            if member is not None:
                batch.append(member)
                if len(batch) < per_transaction:
                    continue
            if not batch:
                break
            chunk = cache._builder.chunk(batch, "floor")  # the rows the apply writes, built as it builds them
            count += len(batch)
            batch = []
            t, c = time.perf_counter(), time.process_time()
            conn.execute("BEGIN IMMEDIATE")
            if isinstance(chunk.rows, dict):  # rows grouped by the optional columns they bind
                for shape, rows in chunk.rows.items():
                    conn.executemany(cache_module.upsert_member(shape), rows)
            else:  # an older posd (the "before" runs): every row binds every column
                conn.executemany(cache_module._UPSERT_MEMBER, chunk.rows)
            conn.executemany("INSERT OR REPLACE INTO member_identifiers VALUES (?, ?)", chunk.idents)
            conn.execute("COMMIT")
            elapsed += time.perf_counter() - t
            cpu += time.process_time() - c
    finally:
        cache.close()
    return {"members": count, "seconds": round(elapsed, 2), "cpu_s": round(cpu, 2)}


# --- a bare push of the same batches ---------------------------------------------------------------


def bare_push(central_url: str, secret: bytes, batches: list[list[dict[str, Any] | str]]) -> dict[str, Any]:
    """The signed client pushing ready batches back to back: no outbox read, no ack written. As the
    relay does with a backlog, each batch is encoded while the one before is in flight (one in flight)."""
    from posd.sync.lane.client import CentralClient
    from posd.sync.protocol import encode_batch

    client = CentralClient(central_url, "S001", "L01", secret)
    pipelined = hasattr(client, "push_encoded")  # an older posd encoded inside its push
    t0 = time.perf_counter()
    accepted = 0
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="floor-push") as sender:
            inflight = None
            for i, events in enumerate(batches):
                batch_id = f"floor-{i}"
                if not pipelined:
                    accepted += _accepted(client.push_batch(batch_id, events))
                    continue
                body = encode_batch(batch_id, events)  # while the batch before is in flight
                if inflight is not None:
                    accepted += _accepted(inflight.result())
                inflight = sender.submit(client.push_encoded, batch_id, body)
            if inflight is not None:
                accepted += _accepted(inflight.result())
    finally:
        client.close()
    elapsed = time.perf_counter() - t0
    events = sum(len(b) for b in batches)
    return {"events": events, "batches": len(batches), "accepted": accepted, "seconds": round(elapsed, 2),
            "events_per_s": round(events / elapsed, 1), "encode_overlapped": pipelined}


def _accepted(results: list[Any]) -> int:
    return sum(1 for r in results if r.status == "accepted")


def post_floor(route: dict[str, Any], commits: dict[str, Any]) -> dict[str, Any]:
    """The sale's floor: a bare route then a durable commit, one after the other."""
    return {"p50_ms": round(route["sequential"]["p50_ms"] + commits["sequential"]["p50_ms"], 4),
            "p99_ms": round(route["sequential"]["p99_ms"] + commits["sequential"]["p99_ms"], 4),
            "per_s": round(combined_rate(route["throughput_per_s"], commits["commits_per_s"]), 1)}


def _main(argv: list[str]) -> None:
    if argv[0] == "route":
        serve_bare_route(int(argv[1]), int(argv[2]))
    elif argv[0] == "commits":
        print(json.dumps(run_commits(Path(argv[1]), int(argv[2]), json.loads(argv[3]))))
    else:
        raise SystemExit(f"unknown floor {argv[0]!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
