"""`make bench` (sync part): the outage drain and the member snapshot, each beside its floor.

Outage drain: a week of a busy lane's events (100k by default) waits in
ledger.db while central is away; the daemon starts with central back on
loopback (the SQLite reference central `make run` uses, in its own process)
and drains them. Measured: seconds from spawn to an empty outbox, the
daemon's RSS along the way and its peak (flat memory: the backlog is
streamed, not loaded). Floor: the same events pushed again, batch for batch,
to a fresh central by the signed client alone, one batch in flight and the
next encoded meanwhile, as the relay pipelines a backlog.

Snapshot: 1M members pulled into cache.db through the daemon's own member
pull, from a feed process that serves central's page shape, while a scanner
thread of this process looks members up once a millisecond. Floor: the same
lookups with nothing applying, on the same 1M-member file.

    python -m bench.sync --out bench/sync-report.json [--events 100000] [--members 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench import floors
from bench.common import (
    CLOCK_TICKS,
    ROOT,
    BenchLane,
    bench_config,
    central_process,
    free_port,
    machine,
    now_iso,
    proc_cpu_s,
    proc_mem_kb,
    ratio,
    summary,
    wait_listening,
)
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger

TARGETS = {"drain_100k_s": 10.0, "drain_peak_rss_mb": 150.0, "snapshot_apply_1m_s": 10.0,
           "lookup_during_snapshot_p99_over_floor": 2.0}
PAGE = 1000  # central's largest member page (posd.sync.protocol.limits.MAX_MEMBER_PAGE)


# --- outage drain ---------------------------------------------------------------------------------


def queue_backlog(state: Path, events: int, members: list[str]) -> None:
    """Write a week of accruals into a fresh ledger.db, as a lane offline that long would have."""
    state.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(state / "ledger.db", LaneIdentity("S001", "L01"))
    rng = random.Random(1)
    start = datetime.now(UTC) - timedelta(days=7)
    step = timedelta(days=7) / max(1, events)
    try:
        for first in range(0, events, 5000):
            def write(tx, first=first):
                for i in range(first, min(events, first + 5000)):
                    price = rng.randint(100, 40_000)
                    tx.append_event("accrual", {
                        "transaction_id": f"T-{uuid.uuid4().hex[:16]}", "member_id": rng.choice(members),
                        "occurred_at": (start + step * i).isoformat().replace("+00:00", "Z"),
                        "currency": "PLN", "total": price,
                        "lines": [{"sku": f"590{rng.randint(0, 10**9):010d}", "category": "grocery",
                                   "quantity": "1", "unit_price": price, "discount": 0}],
                        "points": {"points": price // 100}, "program_version": "demo-2026.12", "offline": True})
            ledger.write(write)
    finally:
        ledger.close()


def outbox_batches(ledger: Path, per_batch: int) -> list[list[Any]]:
    """The outbox's events as the relay pushes them: their stored JSON text (decoded, for an older
    posd whose relay encoded each batch again)."""
    from posd.sync.lane.ports import OutboxEvent

    as_text = hasattr(OutboxEvent, "text")
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        bodies = [b if as_text else json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    finally:
        conn.close()
    return [bodies[i:i + per_batch] for i in range(0, len(bodies), per_batch)]


def bench_drain(tmp: Path, events: int) -> dict[str, Any]:
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    secret = seed["stores"]["S001"]["secret"]
    members = [m["member_id"] for m in seed["members"] if m.get("status", "active") == "active"]
    work = tmp / "drain"
    t0 = time.perf_counter()
    queue_backlog(work / "state", events, members)
    queued_s = time.perf_counter() - t0
    with central_process(tmp / "central", seed) as central:
        port = free_port()
        lane = BenchLane(bench_config(work, central_url=central.url, secret=secret, port=port), port)
        central_cpu0 = proc_cpu_s(central.proc.pid)
        t0 = time.perf_counter()
        lane.start()
        healthy_s = time.perf_counter() - t0
        rss, pending = [], events
        try:
            deadline = time.monotonic() + 600  # bounded: a broken drain ends the bench, not the machine
            while pending and time.monotonic() < deadline:
                pending = lane.health()["sync"]["pending"]
                rss.append(proc_mem_kb(lane.proc.pid)["VmRSS"])
                time.sleep(0.25)  # health counts the outbox: asked often, it would slow what it measures
            drained_s = time.perf_counter() - t0
            peak = proc_mem_kb(lane.proc.pid)["VmHWM"]
            lane_cpu, central_cpu = proc_cpu_s(lane.proc.pid), proc_cpu_s(central.proc.pid) - central_cpu0
        finally:
            lane.stop()
        statuses: dict[str, int] = {}
        for e in central.lane_events():
            statuses[e["status"]] = statuses.get(e["status"], 0) + 1
    # The floor: the same events, in the relay's batch size, to a fresh central, by the client alone.
    try:
        from posd.sync.lane.relay import BATCH_EVENTS  # the relay's batch size
    except ImportError:  # an older posd (the "before" runs) sent 500 at a time
        BATCH_EVENTS = 500
    secret_bytes = secret.encode()
    with central_process(tmp / "floor-central", seed) as fresh:
        floor_cpu0 = proc_cpu_s(fresh.proc.pid)
        floor = floors.bare_push(fresh.url, secret_bytes, outbox_batches(work / "state" / "ledger.db", BATCH_EVENTS))
        floor["central_cpu_s"] = round(proc_cpu_s(fresh.proc.pid) - floor_cpu0, 2)
    return {"events": events, "queue_backlog_s": round(queued_s, 2), "start_to_healthy_s": round(healthy_s, 2),
            "drain_s_from_start": round(drained_s, 2), "drained": pending == 0, "central": statuses,
            "events_per_s": round(events / drained_s, 1), "peak_rss_mb": round(peak / 1024, 1),
            "cpu_s": {"lane": round(lane_cpu, 2), "central": round(central_cpu, 2),
                      "note": "the machine is shared: CPU seconds are steadier than wall time"},
            "rss_mb_along_the_drain": [round(r / 1024, 1) for r in rss[:: max(1, len(rss) // 12)]],
            "floor_bare_push": floor, "drain_over_floor": ratio(drained_s, floor["seconds"])}


# --- snapshot apply with lookups -------------------------------------------------------------------


def member(i: int) -> dict[str, Any]:
    return {"member_id": f"M{i:08d}", "display_name": f"Member {i}", "locale": "pl", "tier": "basic",
            "qualifying": i % 7000, "identifiers": [f"27{i:011d}"], "balances": {"points": i % 5000},
            "applied_seq": {"L01": 0}, "status": "active", "birth_date": None, "offers": []}


def serve_feed(port: int, members: int) -> None:
    """central's member change feed, synthetic: each member rendered in the shape central sends
    before it listens, a page only joined from them, so what is measured is the lane taking the
    pages, not this process making them (a central runs on a machine of its own). Any cursor and
    limit are served so: the puller's small first page moves every later page off a round number."""
    rendered = [json.dumps(member(i), separators=(",", ":")).encode() for i in range(members)]

    def page(start: int, limit: int) -> bytes:
        end = min(members, start + min(limit, PAGE))
        return b'{"members":[%s],"next_cursor":"%d","has_more":%s}' % (
            b",".join(rendered[start:end]), end, b"true" if end < members else b"false")

    class Feed(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path == "/v1/program":  # "yours is current": this bench is about members
                self.send_response(304)
                self.send_header("ETag", '"bench"')
                self.end_headers()
                return
            if url.path != "/v1/stores/S001/members/changes":
                self.send_error(404)
                return
            query = parse_qs(url.query)
            body = page(int((query.get("cursor") or ["0"])[0] or 0), int((query.get("limit") or [PAGE])[0]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Feed).serve_forever()


def member_puller(url: str, cache: Cache):
    """The daemon's member pull as `posd run` wires it (posd/daemon.py)."""
    from posd.sync.lane.client import CentralClient
    from posd.sync.lane.puller import SyncPuller

    client = CentralClient(url, "S001", "L01", b"bench-secret")
    try:
        from posd.member_pull import ProcessMemberPull  # the pull in a process of its own
    except ImportError:  # an older posd: the pull in the daemon's own interpreter
        return SyncPuller(client, cache)
    return SyncPuller(client, cache, members=ProcessMemberPull(client, cache.path))


def bench_snapshot(tmp: Path, members: int, floor_s: float = 10.0) -> dict[str, Any]:
    # the daemon runs with a 1 ms GIL switch interval (posd/daemon.py); measure what it runs
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    port = free_port()
    feed = subprocess.Popen([sys.executable, "-m", "bench.sync", "feed", str(port), str(members)], cwd=ROOT)
    try:
        wait_listening(f"http://127.0.0.1:{port}/v1/program", 300)  # the feed renders its pages first
        return _bench_snapshot(tmp, f"http://127.0.0.1:{port}", members, floor_s, feed.pid)
    finally:
        feed.terminate()
        feed.wait(10)
        sys.setswitchinterval(previous)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (the member pull and the process fetching its pages)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def process_times(pid: int) -> tuple[float, float, float]:
    """(CPU seconds, seconds runnable but waiting for a core, seconds alive) of a process: its CPU
    (/proc/<pid>/stat, threads that ended included), its live threads' time on the run queue
    (/proc/<pid>/task/*/schedstat) and its start time. The rest of its life it was blocked: on a
    pipe, a socket, a disk."""
    wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            _, queued, _ = (Path(task) / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        wait += int(queued)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return (int(stat[11]) + int(stat[12])) / CLOCK_TICKS, wait / 1e9, uptime - int(stat[19]) / CLOCK_TICKS


def watch_processes(root: int, extra: dict[int, str], peaks: dict[int, int], times: dict[int, tuple],
                    names: dict[int, str], stop: threading.Event, skip: set[int]) -> None:
    """Peak RSS and the last-seen process_times of each process below ``root`` (the member pull's
    writer, and the process fetching its pages below it) and of ``extra`` (central), sampled every
    50 ms while the pull runs: a short-lived child's own figures are read while it lives, so the
    last 50 ms of its life may be missing."""
    while not stop.wait(0.05):
        below = descendants(root)
        for pid in [*below, *extra]:
            if pid in skip:
                continue
            try:
                peaks[pid] = max(peaks.get(pid, 0), proc_mem_kb(pid).get("VmHWM", 0))
                times[pid] = process_times(pid)
            except OSError:
                continue
            if pid not in names:
                names[pid] = extra.get(pid) or ("member pull (writer)" if _parent(pid) == root
                                                else "member pull (fetch)")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def process_report(peaks: dict[int, int], times: dict[int, tuple], names: dict[int, str]) -> dict[str, Any]:
    """Where each process's wall time went: on a core, waiting for one, blocked (pipe, socket, disk)."""
    out: dict[str, Any] = {}
    for pid, name in names.items():
        if pid not in times:
            continue
        cpu, queued, alive = times[pid]
        out[name] = {"cpu_s": round(cpu, 2), "runnable_waiting_for_a_core_s": round(queued, 2),
                     "blocked_s": round(max(0.0, alive - cpu - queued), 2), "alive_s": round(alive, 2),
                     "peak_rss_mb": round(peaks.get(pid, 0) / 1024, 1)}
    return out


def _bench_snapshot(tmp: Path, url: str, members: int, floor_s: float, feed_pid: int) -> dict[str, Any]:
    cache = Cache(tmp / "cache.db", "L01")
    rng = random.Random(2)
    codes = [f"27{rng.randrange(members * 2):011d}" for _ in range(20_000)]  # found or not, half each
    latencies: list[float] = []
    stop = threading.Event()

    def identify() -> None:  # a scanner thread: one lookup per ms
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            cache.find_member(codes[i % len(codes)])
            latencies.append((time.perf_counter() - t) * 1000)
            i += 1
            time.sleep(0.001)

    puller = member_puller(url, cache)
    peaks: dict[int, int] = {}
    times: dict[int, tuple] = {}
    names: dict[int, str] = {}
    sampler = threading.Thread(target=watch_processes, daemon=True,
                               args=(os.getpid(), {feed_pid: "central (feed)"}, peaks, times, names, stop,
                                     set(descendants(os.getpid())) - {feed_pid}))
    try:
        reader = threading.Thread(target=identify, daemon=True)
        reader.start()
        sampler.start()
        children0, own0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
        feed0 = process_times(feed_pid)
        t0 = time.perf_counter()
        outcome = puller.run_once()
        apply_s = time.perf_counter() - t0
        children1, own = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time() - own0
        stop.set()
        reader.join(10)
        sampler.join(10)
        count = cache.member_count()
        floor = summary(floors.lookups(cache.find_member, codes, floor_s))  # the same file, nothing applying
    finally:
        puller.stop()
        cache.close()
    # The apply's floor: the same rows written by SQLite alone into a fresh file.
    processes = process_report(peaks, times, names)
    feed = processes.get("central (feed)")
    if feed is not None:  # the feed process rendered its pages before the pull: only the pull's share
        feed.update(cpu_s=round(feed["cpu_s"] - feed0[0], 2),
                    runnable_waiting_for_a_core_s=round(feed["runnable_waiting_for_a_core_s"] - feed0[1], 2))
        feed.pop("blocked_s"), feed.pop("alive_s")
    insert = floors.bulk_insert(tmp / "floor-cache.db", (member(i) for i in range(members)))
    during = summary(latencies)
    return {"members": count, "pull": outcome, "apply_s": round(apply_s, 2),
            "apply_note": "the whole pull: fetch, decode and write of every page",
            "apply_cpu_s": {"pull_process": round(children1.ru_utime + children1.ru_stime
                                                  - children0.ru_utime - children0.ru_stime, 2),
                            "this_process": round(own, 2),
                            "note": "the pull process is reaped when the pull ends; this process also runs "
                                    "the lookups. The machine is shared: CPU seconds are steadier than wall time"},
            "processes": processes,
            "lookups_during_apply": during, "floor_lookups_nothing_applying": floor,
            "floor_bulk_insert": insert, "apply_over_bulk_insert": ratio(apply_s, insert["seconds"]),
            "p99_over_floor": ratio(during["p99_ms"], floor["p99_ms"]),
            "p50_over_floor": ratio(during["p50_ms"], floor["p50_ms"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/sync-report.json")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--only", choices=("drain", "snapshot"), default=None)
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"when": now_iso(), "machine": machine()}
    measured: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "drain"):
            report["outage_drain"] = drain = bench_drain(Path(tmp), args.events)
            measured |= {"drain_100k_s": drain["drain_s_from_start"], "drain_peak_rss_mb": drain["peak_rss_mb"]}
        if args.only in (None, "snapshot"):
            report["snapshot"] = snap = bench_snapshot(Path(tmp), args.members)
            measured |= {"snapshot_apply_1m_s": snap["apply_s"],
                         "lookup_during_snapshot_p99_over_floor": snap["p99_over_floor"]}
    report["targets"] = {name: {"target": TARGETS[name], "measured": value, "met": value <= TARGETS[name]}
                         for name, value in measured.items()}
    if "drain_100k_s" in report["targets"]:
        report["targets"]["drain_100k_s"]["note"] = f"{args.events} events"
    failed = None
    if "snapshot_apply_1m_s" in report["targets"]:
        report["targets"]["snapshot_apply_1m_s"]["note"] = f"{args.members} members"
        if snap["pull"] != "updated" or snap["members"] != args.members:  # a failed pull is quick, not fast
            failed = f"the pull ended in {snap['pull']!r} with {snap['members']} of {args.members} members"
            report["targets"]["snapshot_apply_1m_s"] |= {"met": False, "note": failed}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["targets"], indent=2))
    if failed:
        print(f"bench.sync: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["feed"]:
        serve_feed(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(main())
