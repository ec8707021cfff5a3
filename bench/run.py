"""`make bench`: the lane against PRODUCT.md's targets, each figure beside its floor.

Real parts on loopback: the reference central and the daemon each in its own
process (a central in the client's process would steal the client's GIL), a
pty scanner, real HTTP and SSE, 1M members in cache.db. The floors
(bench/floors.py) are measured in the same run, right after, on the same
files: a figure without its floor is noise on a shared 2-core machine.

    python -m bench.run --out bench/report.json [--members 1000000] [--posts 3000] [--idle-s 60]

Report keys: ``start`` (spawn to READY=1 and to a healthy API), ``idle`` (CPU %
and RSS over --idle-s with the members cached), ``scan_to_member_identified``,
``post_transaction`` (sequential and concurrent, CPU per sale), ``floors``,
``ratios``, ``targets``, ``slips``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import floors
from bench.common import (
    BenchLane,
    bench_config,
    central_process,
    concurrent_posts,
    free_port,
    machine,
    now_iso,
    post_loop,
    proc_cpu_s,
    proc_mem_kb,
    ratio,
    summary,
)
from bench.common import ROOT
from posd.storage.cache import Cache
from tests.support.wait import wait_until

TARGETS = {
    "scan_to_member_identified_p99_ms": 2.0,
    "post_transaction_p99_ms": 5.0,
    "post_transaction_per_s": 1000,
    "post_p50_over_floor": 2.0,  # sequential p50 <= 2x (bare route + durable commit)
    "post_rate_over_floor": 0.5,  # throughput >= half of the two floors combined
    "cpu_ms_per_sale": 0.5,
    "idle_cpu_percent": 0.5,
    "idle_rss_mb": 100.0,
    "start_to_ready_s": 1.5,
}


def fill_cache(state: Path, members: int) -> float:
    """Pre-load cache.db with synthetic members, as a snapshot pull would."""
    state.mkdir(parents=True, exist_ok=True)
    cache = Cache(state / "cache.db", "L01")
    t0 = time.perf_counter()
    chunk = 50_000
    for start in range(0, members, chunk):
        batch = [{"member_id": f"B{i:08d}", "display_name": f"Member {i}", "tier": "basic",
                  "identifiers": [f"B{i:08d}"], "balances": {"points": i % 5000}}
                 for i in range(start, min(members, start + chunk))]
        cache.apply_member_changes(batch, "")  # the cursor is dropped below: the real snapshot still arrives
    cache.close()
    forget_cursor(state / "cache.db")
    return time.perf_counter() - t0


def forget_cursor(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM sync_state WHERE key = 'member_cursor'")
    conn.commit()
    conn.close()


def scan_codes(seed_codes: list[str], members: int, i: int) -> str:
    """Every other scan a seed member, the others one of the million (found or not)."""
    return seed_codes[i % len(seed_codes)] if i % 2 else f"B{(i * 7919) % max(1, members):08d}"


def bench_scan(lane: BenchLane, codes: list[str], members: int, rounds: int) -> dict[str, Any]:
    stream = lane.sse()
    fd = os.open(lane.config.parent / "scanner0", os.O_WRONLY | os.O_NOCTTY)
    got: dict[str, float] = {}
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                ev = stream.events.get(timeout=0.5)
            except Exception:
                continue
            if ev.get("event") in ("member.identified", "member.unknown"):
                got[ev["data"]["identifier"]] = time.perf_counter()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    latencies = []
    try:
        for i in range(rounds):
            code = scan_codes(codes, members, i)
            got.pop(code, None)
            sent = time.perf_counter()
            os.write(fd, code.encode() + b"\r")
            deadline = sent + 2.0
            while code not in got and time.perf_counter() < deadline:
                time.sleep(0.0002)
            if code in got:
                latencies.append((got[code] - sent) * 1000)
            time.sleep(0.005)
    finally:
        done.set()
        os.close(fd)
        stream.close()
        thread.join(2)
    return summary(latencies) | {"lost": rounds - len(latencies)}


def bench_idle(lane: BenchLane, seconds: float) -> dict[str, Any]:
    """CPU and RSS of the daemon doing nothing (its pulls and pushes on their own timers)."""
    pid = lane.proc.pid
    rss = []
    cpu0, t0 = proc_cpu_s(pid), time.perf_counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rss.append(proc_mem_kb(pid)["VmRSS"])
        time.sleep(1.0)
    cpu = proc_cpu_s(pid) - cpu0
    wall = time.perf_counter() - t0
    return {"seconds": round(wall, 1), "cpu_percent": round(100 * cpu / wall, 3),
            "rss_mb_mean": round(sum(rss) / len(rss) / 1024, 1), "rss_mb_max": round(max(rss) / 1024, 1)}


def sale_members(members: int, start: int, n: int) -> list[str]:
    """Members of the million, a different one for each sale, spread over the file."""
    return [f"B{(start + i * 7919) % max(1, members):08d}" for i in range(n)]


def bench_post(lane: BenchLane, n: int, clients: int, members: int) -> dict[str, Any]:
    pid = lane.proc.pid
    post_loop(lane.port, lane.token, "warm", sale_members(members, 1, 100), 100)
    answer = lane.post("/v1/transactions", post_body("answer-size")).content
    lane.wait_drained(timeout=120)
    cpu0 = proc_cpu_s(pid)
    seq_ms = post_loop(lane.port, lane.token, "seq", sale_members(members, 2, n), n)
    par_ms, elapsed = concurrent_posts(lane.port, lane.token, "par", sale_members(members, 3, n), n, clients)
    wait_until(lambda: lane.health()["sync"]["pending"] == 0, 300, "sales pushed", interval=0.5)
    cpu = proc_cpu_s(pid) - cpu0
    sales = len(seq_ms) + len(par_ms)
    return {"sequential": summary(seq_ms), "concurrent": summary(par_ms) | {"clients": clients},
            "throughput_per_s": round(len(par_ms) / elapsed, 1), "answer_bytes": len(answer),
            "cpu_ms_per_sale": round(1000 * cpu / sales, 3),
            "cpu_note": "daemon CPU from the first sale until every sale was pushed to central, / sales"}


def post_body(tid: str) -> dict[str, Any]:
    from bench.common import sale

    return sale(tid, "2900000000018")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/report.json")
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--scans", type=int, default=2000)
    ap.add_argument("--posts", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=2, help="concurrent POS processes for the throughput run")
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--no-slips", action="store_true", help="skip the slip render bench")
    args = ap.parse_args(argv)
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    report: dict[str, Any] = {"when": now_iso(), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp, central_process(Path(tmp), seed) as central:
        work = Path(tmp) / "lane"
        state = work / "state"
        report["cache_fill_s"] = round(fill_cache(state, args.members), 2)
        port = free_port()
        cfg = bench_config(work, central_url=central.url, secret=seed["stores"]["S001"]["secret"], port=port)
        lane = BenchLane(cfg, port)
        t0 = time.perf_counter()
        lane.start()
        report["start"] = {"to_ready_s": round(lane.ready_s, 3), "to_healthy_s": round(time.perf_counter() - t0, 3),
                           "members_cached": args.members}
        lane.wait_synced(timeout=120)
        seed_codes = [m["identifiers"][0] for m in seed["members"]]
        try:
            report["idle"] = bench_idle(lane, args.idle_s) | {"members_cached": lane.health()["cache"]["members"]}
            report["scan_to_member_identified"] = bench_scan(lane, seed_codes, args.members, args.scans)
            report["post_transaction"] = bench_post(lane, args.posts, args.clients, args.members)
            sizes = floors.sale_row_sizes(state / "ledger.db", "seq-")
        finally:
            lane.stop()
        # The floors, right after, on the same machine and files, with the daemon stopped.
        cache = Cache(state / "cache.db", "L01")
        codes = [scan_codes(seed_codes, args.members, i) for i in range(args.scans)]
        try:
            lookup = floors.lookups(cache.find_member, codes, seconds=5.0)
        finally:
            cache.close()
        route = floors.bare_route(report["post_transaction"]["answer_bytes"], args.posts, args.clients)
        commits = floors.durable_commits(Path(tmp), args.posts, sizes)
        report["floors"] = {"pty_round_trip": floors.pty_round_trip(args.scans), "lookup_1m": lookup,
                            "bare_route": route, "durable_commit": commits,
                            "sale": floors.post_floor(route, commits)}
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    if not args.no_slips:
        from bench.slips import run as bench_slips  # slip render times (PRODUCT.md: slip render)

        report["slips"] = bench_slips()
        report["targets"].update(report["slips"].pop("targets"))
    for name, v in report["targets"].items():
        higher = name.endswith("per_s") or name == "post_rate_over_floor"
        v["met"] = v["measured"] >= v["target"] if higher else v["measured"] <= v["target"]
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({"ratios": report["ratios"], "targets": report["targets"]}, indent=2))
    return 0


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    f, post, scan = r["floors"], r["post_transaction"], r["scan_to_member_identified"]
    scan_floor = {p: f["pty_round_trip"][p] + f["lookup_1m"][p] for p in ("p50_ms", "p99_ms")}
    return {
        "scan_p50_over_floor": ratio(scan["p50_ms"], scan_floor["p50_ms"]),
        "scan_p99_over_floor": ratio(scan["p99_ms"], scan_floor["p99_ms"]),
        "scan_floor_note": "floor = pty round trip + lookup in 1M members, each alone",
        "post_p50_over_floor": ratio(post["sequential"]["p50_ms"], f["sale"]["p50_ms"]),
        "post_p99_over_floor": ratio(post["sequential"]["p99_ms"], f["sale"]["p99_ms"]),
        "post_rate_over_floor": ratio(post["throughput_per_s"], f["sale"]["per_s"]),
        "post_rate_over_bare_route": ratio(post["throughput_per_s"], f["bare_route"]["throughput_per_s"]),
        "post_rate_over_durable_commits": ratio(post["throughput_per_s"], f["durable_commit"]["commits_per_s"]),
        "post_floor_note": "floor = bare route (same stack, same body) + durable commit (same row sizes); "
                           "rate floor = the two in series, 1 / (1/route + 1/commit)",
    }


def targets(r: dict[str, Any]) -> dict[str, Any]:
    post = r["post_transaction"]
    measured = {
        "scan_to_member_identified_p99_ms": r["scan_to_member_identified"]["p99_ms"],
        "post_transaction_p99_ms": post["sequential"]["p99_ms"],
        "post_transaction_per_s": post["throughput_per_s"],
        "post_p50_over_floor": r["ratios"]["post_p50_over_floor"],
        "post_rate_over_floor": r["ratios"]["post_rate_over_floor"],
        "cpu_ms_per_sale": post["cpu_ms_per_sale"],
        "idle_cpu_percent": r["idle"]["cpu_percent"],
        "idle_rss_mb": r["idle"]["rss_mb_max"],
        "start_to_ready_s": r["start"]["to_ready_s"],
    }
    return {name: {"target": TARGETS[name], "measured": value} for name, value in measured.items()}


if __name__ == "__main__":
    raise SystemExit(main())
