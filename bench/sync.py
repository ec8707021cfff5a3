"""`make bench` (sync part): the outage soak and the member snapshot, as a JSON report.

Outage soak: seven days of a busy lane's events (100k by default) wait in
ledger.db while central is away; then the daemon starts with central back on
loopback and drains them. Measured: drain time, the daemon's peak RSS (VmHWM)
and its RSS along the way (flat memory means the backlog is streamed, not
loaded).

Snapshot: a 1M-member snapshot applied to cache.db page by page, as the
puller does, while another thread identifies members; apply time and lookup
latency during the apply.

    python -m bench.sync --out bench/sync-report.json [--events 100000] [--members 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import summary  # noqa: E402
from posd.storage.cache import Cache  # noqa: E402
from posd.storage.ledger import LaneIdentity, Ledger  # noqa: E402
from tests.support.central_fixture import running_central  # noqa: E402
from tests.support.lane import LaneProcess, free_port, lane_config  # noqa: E402

TARGETS = {"drain_100k_s": 20.0, "drain_peak_rss_mb": 150.0, "snapshot_apply_1m_s": 10.0,
           "lookup_during_snapshot_p99_ms": 2.0}


# --- outage soak ---------------------------------------------------------------------------------


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
                        "points": {"points": price // 100}, "program_version": "demo-2026.11", "offline": True})
            ledger.write(write)
    finally:
        ledger.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def bench_drain(events: int) -> dict[str, object]:
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    members = [m["member_id"] for m in seed["members"] if m.get("status", "active") == "active"]
    with tempfile.TemporaryDirectory() as tmp, running_central(Path(tmp) / "central", seed) as central:
        work = Path(tmp) / "lane"
        t0 = time.perf_counter()
        queue_backlog(work / "state", events, members)
        queued_s = time.perf_counter() - t0
        port = free_port()
        cfg = lane_config(work, central_url=central.url, secret=seed["stores"]["S001"]["secret"],
                          printer="none", port=port)
        lane = LaneProcess(cfg, port)
        t0 = time.perf_counter()
        lane.start(timeout=60)
        healthy_s = time.perf_counter() - t0
        rss, pending = [], events
        try:
            deadline = time.monotonic() + 600  # bounded: a broken drain ends the bench, not the machine
            while pending and time.monotonic() < deadline:
                pending = lane.health()["sync"]["pending"]
                rss.append(proc_status(lane.proc.pid)["VmRSS"])
                time.sleep(0.25)
            drained_s = time.perf_counter() - t0
            peak = proc_status(lane.proc.pid)["VmHWM"]
        finally:
            lane.stop()
        accepted = sum(1 for e in central.store.events("S001", "L01") if e["status"] == "accepted")
    return {"events": events, "queue_backlog_s": round(queued_s, 2), "start_to_healthy_s": round(healthy_s, 2),
            "drain_s_from_start": round(drained_s, 2), "drained": pending == 0, "central_accepted": accepted,
            "events_per_s": round(events / drained_s, 1), "peak_rss_mb": round(peak / 1024, 1),
            "rss_mb_along_the_drain": [round(r / 1024, 1) for r in rss[:: max(1, len(rss) // 10)]]}


# --- snapshot apply with lookups ------------------------------------------------------------------------


def snapshot_page(start: int, size: int) -> list[dict]:
    return [{"member_id": f"M{i:08d}", "display_name": f"Member {i}", "locale": "pl", "tier": "basic",
             "qualifying": i % 7000, "identifiers": [f"27{i:011d}"], "balances": {"points": i % 5000},
             "applied_seq": {"L01": 0}, "status": "active", "birth_date": None, "offers": []}
            for i in range(start, start + size)]


def bench_snapshot(members: int, page: int = 1000) -> dict[str, object]:
    # the daemon runs with a 1 ms GIL switch interval (posd/daemon.py); measure what it runs
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        return _bench_snapshot(members, page)
    finally:
        sys.setswitchinterval(previous)


def _bench_snapshot(members: int, page: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp) / "cache.db", "L01")
        cache.apply_member_changes(snapshot_page(0, page), "0")  # some members are already there
        latencies: list[float] = []
        stop = threading.Event()

        def identify() -> None:  # a scanner thread: one lookup per ms, found or not
            rng = random.Random(2)
            while not stop.is_set():
                code = f"27{rng.randrange(members * 2):011d}"
                t = time.perf_counter()
                cache.find_member(code)
                latencies.append((time.perf_counter() - t) * 1000)
                time.sleep(0.001)

        reader = threading.Thread(target=identify, daemon=True)
        reader.start()
        apply_s, t0 = 0.0, time.perf_counter()
        for start in range(page, members, page):
            rows = snapshot_page(start, min(page, members - start))  # as decoded from the wire
            t = time.perf_counter()
            cache.apply_member_changes(rows, str(start))
            apply_s += time.perf_counter() - t
        wall_s = time.perf_counter() - t0
        stop.set()
        reader.join(10)
        count = cache.member_count()
        cache.close()
    return {"members": count, "page": page, "apply_s": round(apply_s, 2), "wall_s_with_decoding": round(wall_s, 2),
            "lookups_during_apply": summary(latencies)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/sync-report.json")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    report: dict[str, object] = {"when": datetime.now(UTC).isoformat(), "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    report["outage_drain"] = drain = bench_drain(args.events)
    report["snapshot"] = snap = bench_snapshot(args.members)
    measured = {"drain_100k_s": drain["drain_s_from_start"], "drain_peak_rss_mb": drain["peak_rss_mb"],
                "snapshot_apply_1m_s": snap["apply_s"],
                "lookup_during_snapshot_p99_ms": snap["lookups_during_apply"]["p99_ms"]}
    report["targets"] = {name: {"target": TARGETS[name], "measured": value, "met": value <= TARGETS[name]}
                         for name, value in measured.items()}
    report["targets"]["drain_100k_s"]["note"] = f"{args.events} events"
    report["targets"]["snapshot_apply_1m_s"]["note"] = f"{args.members} members"
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["targets"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
