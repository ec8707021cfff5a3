"""`make bench`: measure the lane against PRODUCT.md's targets, write a JSON report.

Real parts on loopback: the reference central and the daemon each in its own
process (a central in the client's process would steal the client's GIL and
inflate every latency measured), as
a child process, a pty scanner, real HTTP and SSE. Figures go to the report,
never into test assertions.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posd.storage.cache import Cache  # noqa: E402
from tests.support.lane import LaneProcess, free_port, lane_config  # noqa: E402

TARGETS = {
    "scan_to_member_identified_p99_ms": 2.0,
    "post_transaction_p99_ms": 5.0,
    "post_transaction_per_s": 1000,
}


class _Central:
    def __init__(self, url: str):
        self.url = url


@contextlib.contextmanager
def central_process(tmp: Path, seed: dict):
    """`posd central` as a child process on a free loopback port."""
    seed_file = tmp / "seed.json"
    seed_file.write_text(json.dumps(seed))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "posd", "central", "--listen", f"127.0.0.1:{port}",
                             "--db", str(tmp / "central.db"), "--seed", str(seed_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/v1/program", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield _Central(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3),
            "max_ms": round(max(ms), 3), "mean_ms": round(statistics.fmean(ms), 3)}


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
        cache.apply_member_changes(batch, "")  # cursor left empty: the real snapshot still arrives
    cache._conn.execute("DELETE FROM sync_state WHERE key = 'member_cursor'")
    cache.close()
    return time.perf_counter() - t0


def bench_scan(lane: LaneProcess, codes: list[str], rounds: int) -> dict[str, float]:
    stream = lane.sse()
    link = lane.config.parent / "scanner0"
    fd = os.open(link, os.O_WRONLY | os.O_NOCTTY)
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

    threading.Thread(target=reader, daemon=True).start()
    latencies = []
    try:
        for i in range(rounds):
            code = codes[i % len(codes)] if i % 2 else f"B{(i * 7919) % 1_000_000:08d}"
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
    return summary(latencies) | {"lost": rounds - len(latencies)}


def bench_token_scan(lane: LaneProcess, central_url: str, members: list[str], rounds: int) -> dict[str, object]:
    """A phone QR token at the scanner -> member.identified: the card scan's path plus the Ed25519
    check and the durable write that records the token (and its token_use event). Card scans in
    the same run are its floor."""
    stream = lane.sse()
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
                deadline = sent + 2.0
                while time.perf_counter() < deadline:
                    try:
                        ev = stream.events.get(timeout=0.5)
                    except Exception:
                        continue
                    if ev.get("event") in ("member.identified", "member.unknown", "member.token_rejected"):
                        if ev.get("event") == "member.identified":
                            out.append((time.perf_counter() - sent) * 1000)
                        break
            time.sleep(0.005)
    finally:
        os.close(fd)
        stream.close()
    token, card = summary(token_ms), summary(card_ms)
    return {"qr_token": token | {"lost": rounds - len(token_ms)}, "floor_member_id": card,
            "p50_ratio": round(token["p50_ms"] / card["p50_ms"], 2) if card["p50_ms"] else None,
            "p99_ratio": round(token["p99_ms"] / card["p99_ms"], 2) if card["p99_ms"] else None}


def sale(tid: str, member: str) -> dict:
    return {"transaction_id": tid, "member": member, "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "PLN", "total": 4599,
            "lines": [{"sku": "590123", "category": "grocery", "quantity": 1, "unit_price": 4599}]}


def post_loop(port: int, token: str, prefix: str, member: str, n: int, out=None) -> list[float]:
    """A POS on one keep-alive connection: n sales one after another, latency of each in ms.

    http.client rather than requests: on 2 cores the client shares the CPU with
    the daemon, and requests' own per-call overhead would be measured as posd's.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [json.dumps(sale(f"{prefix}-{i}", member)).encode() for i in range(n)]
    ms = []
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/transactions", body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        ms.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, payload[:200]
    conn.close()
    if out is not None:
        out.put(ms)
    return ms


def bench_post(lane: LaneProcess, n: int, clients: int) -> dict[str, object]:
    post_loop(lane.port, lane.token, "warm", "2900000000018", 50)
    seq_ms = post_loop(lane.port, lane.token, "seq", "2900000000018", n)
    # concurrent tills: one process each, so the clients do not queue behind one GIL
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=post_loop, args=(lane.port, lane.token, f"par{k}", "2900000000025",
                                                             n // clients, queue)) for k in range(clients)]
    t0 = time.perf_counter()
    for proc in procs:
        proc.start()
    par_ms = [x for _ in procs for x in queue.get(timeout=600)]
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join(30)
    return {"sequential": summary(seq_ms), "concurrent": summary(par_ms) | {"clients": clients},
            "throughput_per_s": round(len(par_ms) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/report.json")
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--scans", type=int, default=2000)
    ap.add_argument("--posts", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=2, help="concurrent POS processes for the throughput run")
    args = ap.parse_args(argv)
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    report: dict[str, object] = {"when": datetime.now(UTC).isoformat(), "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    with tempfile.TemporaryDirectory() as tmp, central_process(Path(tmp), seed) as central:
        work = Path(tmp) / "lane"
        work.mkdir()
        report["cache_fill_s"] = round(fill_cache(work / "state", args.members), 2)
        port = free_port()
        cfg = lane_config(work, central_url=central.url, secret=seed["stores"]["S001"]["secret"],
                          printer="none", port=port)
        lane = LaneProcess(cfg, port)
        t0 = time.perf_counter()
        lane.start()
        report["start_to_healthy_s"] = round(time.perf_counter() - t0, 3)
        lane.wait_synced()
        try:
            members = [m["identifiers"][0] for m in seed["members"]]
            report["scan_to_member_identified"] = bench_scan(lane, members, args.scans) | {
                "members_cached": lane.health()["cache"]["members"]}
            report["token_scan_to_member_identified"] = bench_token_scan(
                lane, central.url, [m["member_id"] for m in seed["members"] if m.get("status", "active") == "active"],
                max(50, args.scans // 4))
            report["post_transaction"] = bench_post(lane, args.posts, args.clients)
        finally:
            lane.stop()
    scan, post = report["scan_to_member_identified"], report["post_transaction"]
    report["targets"] = {
        "scan_to_member_identified_p99_ms": {"target": TARGETS["scan_to_member_identified_p99_ms"],
                                             "measured": scan["p99_ms"]},
        "post_transaction_p99_ms": {"target": TARGETS["post_transaction_p99_ms"],
                                    "measured": post["sequential"]["p99_ms"]},
        "post_transaction_per_s": {"target": TARGETS["post_transaction_per_s"],
                                   "measured": post["throughput_per_s"]},
    }
    from bench.slips import run as bench_slips  # slip render times (PRODUCT.md: slip render)

    report["slips"] = bench_slips()
    report["targets"].update(report["slips"].pop("targets"))
    for name, v in report["targets"].items():
        v["met"] = v["measured"] >= v["target"] if name.endswith("per_s") else v["measured"] <= v["target"]
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["targets"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
