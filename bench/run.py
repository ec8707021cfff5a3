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
import time
from pathlib import Path
from typing import Any

import requests

from bench import floors
from bench.common import (
    BenchLane,
    EventLines,
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
from tests.support.lane import LaneProcess
from tests.support.wait import wait_until

ROUNDS = 5  # each figure and its floor measured in turns, so both meet the same neighbours
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
        batch = [bench_member(i) for i in range(start, min(members, start + chunk))]
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


def bench_scan(lane: BenchLane, codes: list[str], members: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scans through the daemon's pty, and in between, the floors: a bare pty round trip and the
    same lookups in cache.db from this process (the daemon idle meanwhile)."""
    stream = EventLines(lane.port, lane.token)
    fd = os.open(lane.config.parent / "scanner0", os.O_WRONLY | os.O_NOCTTY)
    latencies: list[float] = []
    pty_ms: list[float] = []
    lookup_ms: list[float] = []
    try:
        cache = Cache(lane.state / "cache.db", "L01", checked=True)  # a reader beside the daemon's
    except TypeError:  # an older posd (the "before" runs): its Cache checks the file first
        cache = Cache(lane.state / "cache.db", "L01")
    per = max(1, rounds // ROUNDS)
    try:
        for r in range(ROUNDS):
            for i in range(r * per, (r + 1) * per):
                code = scan_codes(codes, members, i)
                sent = time.perf_counter()
                os.write(fd, code.encode() + b"\r")
                while (ev := stream.until(("member.identified", "member.unknown"), sent + 2.0)) is not None:
                    if ev[1].get("identifier") == code:
                        latencies.append((ev[2] - sent) * 1000)
                        break
                time.sleep(0.005)
            pty_ms += floors.pty_round_trip(per)
            lookup_ms += floors.lookups(cache.find_member, [scan_codes(codes, members, i) for i in range(per)],
                                        seconds=1.0)
    finally:
        os.close(fd)
        stream.close()
        cache.close()
    return summary(latencies) | {"lost": per * ROUNDS - len(latencies)}, {
        "pty_round_trip": summary(pty_ms), "lookup_1m": summary(lookup_ms) | {"members": members}}


def bench_token_scan(lane: LaneProcess, central_url: str, members: list[str], rounds: int) -> dict[str, object]:
    """A phone QR token at the scanner -> member.identified: the card scan's path plus the Ed25519
    check and the durable write that records the token (and its token_use event). Card scans in
    the same run are its floor."""
    stream = EventLines(lane.port, lane.token)
    fd = os.open(lane.config.parent / "scanner0", os.O_WRONLY | os.O_NOCTTY)
    token_ms: list[float] = []
    card_ms: list[float] = []
    try:
        for i in range(rounds):
            member_id = members[i % len(members)]
            token = requests.post(f"{central_url}/_admin/members/{member_id}/token", json={}, timeout=5).json()["token"]
            for code, out in ((token, token_ms), (member_id, card_ms)):
                sent = time.perf_counter()
                os.write(fd, code.encode() + b"\r")
                ev = stream.until(("member.identified", "member.unknown", "member.token_rejected"), sent + 2.0)
                if ev is not None and ev[0] == "member.identified":
                    out.append((ev[2] - sent) * 1000)
            time.sleep(0.005)
    finally:
        os.close(fd)
        stream.close()
    token, card = summary(token_ms), summary(card_ms)
    return {"qr_token": token | {"lost": rounds - len(token_ms)}, "floor_member_id": card,
            "p50_ratio": round(token["p50_ms"] / card["p50_ms"], 2) if card["p50_ms"] else None,
            "p99_ratio": round(token["p99_ms"] / card["p99_ms"], 2) if card["p99_ms"] else None}


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


def bench_member(i: int) -> dict[str, Any]:
    """The million's member ``i``, as cache.db holds it and as central's seed knows it."""
    return {"member_id": f"B{i:08d}", "display_name": f"Member {i}", "tier": "basic",
            "identifiers": [f"B{i:08d}"], "balances": {"points": i % 5000}}


def sale_members(members: int, start: int, n: int) -> list[str]:
    """Members of the million, a different one for each sale, spread over the file."""
    return [f"B{(start + i * 7919) % max(1, members):08d}" for i in range(n)]


def seed_with_buyers(seed: dict[str, Any], members: int, *phases: tuple[int, int]) -> dict[str, Any]:
    """``seed`` with the members that the bench's sales name, ``sale_members(members, start, n)`` for
    each (start, n) phase. Central then accepts those sales, as a chain's central knows every member
    a lane has cached. Without them, every bench sale would be refused as unknown_member and
    quarantined: a lane's rare path, not the one its sales take, and it costs the lane more."""
    ids = sorted({m for start, n in phases for m in sale_members(members, start, n)})
    return seed | {"members": seed["members"] + [bench_member(int(m[1:])) for m in ids]}


def bench_post(lane: BenchLane, n: int, clients: int, members: int, folder: Path) -> tuple[dict, dict]:
    """Sales through the daemon and, round by round in between, the floors: the same bodies to a bare
    route on the same server stack, and durable commits of the rows a sale writes. Interleaved so
    that a figure and its floor see the same neighbours on this shared machine."""
    pid = lane.proc.pid
    post_loop(lane.port, lane.token, "warm", sale_members(members, 1, 100), 100)
    answer = lane.post("/v1/transactions", post_body("answer-size")).content
    sizes = floors.sale_row_sizes(lane.state / "ledger.db", "warm-")
    wait_until(lambda: lane.health()["sync"]["pending"] == 0, 300, "warm-up pushed", interval=0.5)
    route = floors.BareRoute(len(answer))
    db = folder / "floor-commits.db"
    seq, par, r_seq, r_par, c_seq = [], [], [], [], []
    par_s = r_par_s = c_s = c_cpu = cpu = 0.0
    per = n // ROUNDS
    try:
        route.sequential(sale_members(members, 1, 200), "warm", 200)
        for r in range(ROUNDS):
            bodies = sale_members(members, 10 * r + 2, per)
            cpu0 = proc_cpu_s(pid)
            seq += post_loop(lane.port, lane.token, f"seq{r}", bodies, per)
            ms, elapsed = concurrent_posts(lane.port, lane.token, f"par{r}", bodies, per, clients)
            par, par_s = par + ms, par_s + elapsed
            wait_until(lambda: lane.health()["sync"]["pending"] == 0, 300, "sales pushed", interval=0.2)
            cpu += proc_cpu_s(pid) - cpu0
            r_seq += route.sequential(bodies, f"seq{r}", per)
            ms, elapsed = route.concurrent(bodies, f"par{r}", per, clients)
            r_par, r_par_s = r_par + ms, r_par_s + elapsed
            commits = floors.durable_commits(db, per, sizes)
            c_seq, c_s, c_cpu = c_seq + commits["ms"], c_s + commits["seconds"], c_cpu + commits["cpu_s"]
    finally:
        route.close()
    sales = len(seq) + len(par)
    post = {"sequential": summary(seq), "concurrent": summary(par) | {"clients": clients},
            "throughput_per_s": round(len(par) / par_s, 1), "answer_bytes": len(answer),
            "cpu_ms_per_sale": round(1000 * cpu / sales, 3), "rounds": ROUNDS,
            "cpu_note": "daemon CPU from a round's first sale until its sales were pushed to central, / sales; "
                        "the daemon logs at warning (at the default, info, each sale also writes its log line)",
            "ledger": ledger_metrics(lane)}
    bare = {"sequential": summary(r_seq), "concurrent": summary(r_par) | {"clients": clients},
            "throughput_per_s": round(len(r_par) / r_par_s, 1),
            "cpu_ms_per_request": round(1000 * route.cpu_s / max(1, route.requests), 3)}
    commit = {"sequential": summary(c_seq), "commits_per_s": round(len(c_seq) / c_s, 1),
              "cpu_ms_per_commit": round(1000 * c_cpu / len(c_seq), 3),
              "rows": {t: {"count": len(r), "bytes": r} for t, r in sizes.items()}}
    return post, {"bare_route": bare, "durable_commit": commit, "sale": floors.post_floor(bare, commit) | {
        "cpu_ms": round(bare["cpu_ms_per_request"] + commit["cpu_ms_per_commit"], 3)}}


def ledger_metrics(lane: BenchLane) -> dict[str, float]:
    """Group commit at work: the ledger's commits and the units they made durable (GET /metrics)."""
    found = {}
    for line in lane.get("/metrics").text.splitlines():
        for name in ("posd_ledger_commits_total", "posd_ledger_units_total"):
            if line.startswith(name + " "):
                found[name.removeprefix("posd_ledger_").removesuffix("_total")] = float(line.split()[1])
    if found.get("commits"):
        found["units_per_commit"] = round(found["units"] / found["commits"], 2)
    return found


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
    per = args.posts // ROUNDS
    buyers = seed_with_buyers(seed, args.members, (1, 100), *((10 * r + 2, per) for r in range(ROUNDS)))
    report: dict[str, Any] = {"when": now_iso(), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp, central_process(Path(tmp), buyers) as central:
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
            report["scan_to_member_identified"], scan_floors = bench_scan(lane, seed_codes, args.members, args.scans)
            report["token_scan_to_member_identified"] = bench_token_scan(
                lane, central.url, [m["member_id"] for m in seed["members"] if m.get("status", "active") == "active"],
                max(50, args.scans // 4))
            report["post_transaction"], post_floors = bench_post(lane, args.posts, args.clients, args.members,
                                                                 Path(tmp))
        finally:
            lane.stop()
        report["floors"] = scan_floors | post_floors
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
        "cpu_per_sale_over_floor": ratio(post["cpu_ms_per_sale"], f["sale"]["cpu_ms"]),
        "post_floor_note": "floor = bare route (same stack, same body) + durable commit (same row sizes); "
                           "rate floor = the two in series, 1 / (1/route + 1/commit); "
                           "CPU floor = the bare route's CPU per request + a durable commit's",
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
