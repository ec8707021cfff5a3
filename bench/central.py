"""`make bench` (central part): ingestion of the PostgreSQL central with K workers, and its floor.

N lanes, each a separate process (a lean pusher speaking the protocol:
signed gzip batches over one keep-alive connection, from posd.sync.protocol),
push B batches of E accruals each to ``posd central --workers K`` over a
throwaway PostgreSQL cluster (tests.support.postgres). Measured: accepted
events per second over the whole run, each batch's round trip (p50/p99).

Beside the pushes, a lane's questions: a burn's authorisation (and its
release) asked every 100 ms while the pushers run, and the same questions
asked of the same central before they start, with nothing else running.
The ratio of the two p50s says how much a fleet's pushes delay a burn (the
lane's budget for the answer is 800 ms). The questions, ten a second, are
part of the load the push rate is measured under.

In the same run, the floor: a bare ``INSERT INTO events ... ON CONFLICT DO
NOTHING`` of the same rows into the same table of a fresh database, one
transaction per batch, from N connections at once. The ratio says how much
of what the database itself can take the central delivers (every accepted
event also moves a member's lots and balance, its watermark and two outbox
rows).

    python -m bench.central --out bench/central.json [--lanes 8] [--workers 2] [--batches 25] [--events 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ratio, summary  # noqa: E402
from posd.sync.protocol import encode_batch, secret_from_text, signed_headers  # noqa: E402

STORE, SECRET = "S001", "bench-secret-S001"
MEMBERS = 5000
ASKED_IDLE = 100  # authorisations asked of the idle central, before the pushes


def make_events(lane: str, first_seq: int, count: int, rng: random.Random) -> list[dict]:
    return [{"seq": seq, "event_id": f"E-{lane}-{seq}", "type": "accrual", "transaction_id": f"T-{lane}-{seq}",
             "member_id": f"M{rng.randrange(MEMBERS):06d}", "occurred_at": "2026-11-24T09:15:00Z",
             "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 1299}],
             "points": {"points": rng.randint(1, 200)}, "program_version": "bench-1", "offline": True}
            for seq in range(first_seq, first_seq + count)]


def seed_doc() -> dict:
    return {"stores": {STORE: {"secret": SECRET}},
            "program": {"version": "bench-1", "tier_currency": "points",
                        "tiers": [{"id": "basic", "threshold": 0}, {"id": "silver", "threshold": 1000}]},
            "members": [{"member_id": f"M{i:06d}", "display_name": f"Member {i}", "balances": {"points": 100}}
                        for i in range(MEMBERS)]}


# --- one lane: a separate process ------------------------------------------------------------------


def pusher(url: str, lane: str, batches: int, events: int, out: str) -> None:
    import requests

    secret = secret_from_text(SECRET)
    rng = random.Random(lane)
    path = f"/v1/lanes/{STORE}/{lane}/batches"
    times, accepted = [], 0
    with requests.Session() as session:
        for b in range(batches):
            body = encode_batch(f"{lane}-{b}", make_events(lane, 1 + b * events, events, rng))
            headers = signed_headers(secret, STORE, lane, int(time.time()), "POST", path, body)
            headers.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
            t0 = time.perf_counter()
            resp = session.post(url + path, data=body, headers=headers, timeout=120)
            times.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
            accepted += sum(1 for r in resp.json()["results"] if r["status"] == "accepted")
    Path(out).write_text(json.dumps({"ms": times, "accepted": accepted}))


class Asker:
    """A lane asking central's authorisation for one-point burns, each released after: the round trip
    of each authorisation (ms), until ``stop`` is set or ``count`` were asked."""

    def __init__(self, url: str) -> None:
        from posd.sync.lane.client import CentralClient

        self.client = CentralClient(url, STORE, "ASK", secret_from_text(SECRET), timeout=(5, 30))
        self.asked = 0
        self.stop = threading.Event()

    def ask(self, count: int, every_s: float = 0.0, times: list[float] | None = None) -> list[float]:
        """``times``: the list each round trip is added to as it is measured (kept if one fails)."""
        times = [] if times is None else times
        while len(times) < count and not self.stop.is_set():
            self.asked += 1
            auth = f"redemption:bench-{self.asked}"
            request = {"authorisation_id": auth, "kind": "redemption", "member_id": f"M{self.asked % MEMBERS:06d}",
                       "occurred_at": "2026-11-24T09:15:00Z", "points": {"points": 1}, "reward_id": "bench"}
            t0 = time.perf_counter()
            answer = self.client.authorise(request)
            times.append((time.perf_counter() - t0) * 1000)
            if answer["status"] != "approved":
                raise RuntimeError(f"authorisation {auth}: {answer}")
            self.client.release(auth)
            self.stop.wait(every_s)
        return times


# --- the central run and the floor ------------------------------------------------------------------


def run_central(cluster, lanes: int, workers: int, batches: int, events: int, tmp: Path) -> dict:
    db = cluster.create_database("bench_central", template=True)
    (tmp / "seed.json").write_text(json.dumps(seed_doc()))
    cmd = [sys.executable, "-m", "posd", "central", "--listen", "127.0.0.1:0", "--db", db, "--seed",
           str(tmp / "seed.json"), "--workers", str(workers), "--pool-size", "4", "--log-level", "WARNING"]
    central = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = central.stdout.readline().split()[-1]
        warm = [sys.executable, "-m", "bench.central", "pusher", url, "warmup", "2", "10", str(tmp / "warm.json")]
        subprocess.run(warm, check=True, cwd=ROOT, timeout=300)  # every worker imported, pools open
        asker = Asker(url)
        idle = asker.ask(ASKED_IDLE)
        outs = [tmp / f"lane-{n}.json" for n in range(lanes)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "bench.central", "pusher", url, f"L{n:03d}", str(batches),
                                   str(events), str(out)], cwd=ROOT) for n, out in enumerate(outs)]
        loaded: list[float] = []
        failed: list[BaseException] = []

        def ask_under_load() -> None:
            try:
                asker.ask(10**9, every_s=0.1, times=loaded)
            except BaseException as exc:  # raised below: a failed question is no figure
                failed.append(exc)

        asking = threading.Thread(target=ask_under_load)
        asking.start()
        try:
            for proc in procs:
                if proc.wait(timeout=1800):
                    raise RuntimeError("a pusher failed")
            elapsed = time.perf_counter() - t0
        finally:
            asker.stop.set()
            asking.join(60)
            asker.client.close()
        if failed:
            raise RuntimeError("an authorisation asked while the pushers ran failed") from failed[0]
    finally:
        central.terminate()
        central.communicate(timeout=60)
    results = [json.loads(out.read_text()) for out in outs]
    ms = [m for r in results for m in r["ms"]]
    accepted = sum(r["accepted"] for r in results)
    alone, under = summary(idle), summary(loaded)
    return {"workers": workers, "lanes": lanes, "batches_per_lane": batches, "events_per_batch": events,
            "accepted_events": accepted, "elapsed_s": round(elapsed, 2),
            "accepted_events_s": round(accepted / elapsed, 1), "batch": summary(ms),
            "authorise_idle": alone, "authorise_under_pushes": under,
            "authorise_p50_over_idle": ratio(under["p50_ms"], alone["p50_ms"]) if loaded else None}


def run_floor(cluster, lanes: int, batches: int, events: int) -> dict:
    """The same rows into the same table, bare: INSERT ... ON CONFLICT DO NOTHING, a transaction a batch."""
    import psycopg

    db = cluster.create_database("bench_floor", template=True)
    rows_of = {}
    for n in range(lanes):
        lane, rng = f"L{n:03d}", random.Random(f"L{n:03d}")
        rows_of[lane] = [[(STORE, lane, e["seq"], e["event_id"], "accepted", None, e["type"], e["member_id"],
                           json.dumps(e), f"{lane}-{b}", "2026-11-24T09:15:00Z")
                          for e in make_events(lane, 1 + b * events, events, rng)] for b in range(batches)]
    times: list[float] = []
    lock = threading.Lock()
    columns = "(store_id, lane_id, seq, event_id, status, code, type, member_id, body, batch_id, received_at)"
    marks = "(" + ", ".join(["%s"] * 11) + ")"

    def lane_worker(lane: str) -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            for rows in rows_of[lane]:
                t0 = time.perf_counter()
                with conn.transaction():
                    conn.execute(f"INSERT INTO events {columns} VALUES {', '.join([marks] * len(rows))} "
                                 "ON CONFLICT (store_id, lane_id, seq) DO NOTHING RETURNING seq",
                                 [v for row in rows for v in row]).fetchall()
                with lock:
                    times.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=lane_worker, args=(lane,)) for lane in rows_of]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    total = lanes * batches * events
    return {"connections": lanes, "events": total, "elapsed_s": round(elapsed, 2),
            "events_s": round(total / elapsed, 1), "batch": summary(times)}


def main() -> int:
    if sys.argv[1:2] == ["pusher"]:
        url, lane, batches, events, out = sys.argv[2:7]
        pusher(url, lane, int(batches), int(events), out)
        return 0
    parser = argparse.ArgumentParser(description="central ingestion bench (PostgreSQL, K workers) and its floor")
    parser.add_argument("--out", default="bench/central.json")
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    from tests.support.postgres import PostgresCluster

    with tempfile.TemporaryDirectory() as tmp, PostgresCluster.start() as cluster:
        central = run_central(cluster, args.lanes, args.workers, args.batches, args.events, Path(tmp))
        floor = run_floor(cluster, args.lanes, args.batches, args.events)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "postgres": "throwaway cluster, fsync=off (tests.support.postgres): both figures alike",
        "central": central, "floor_bare_insert": floor,
        "ratio_to_floor": round(central["accepted_events_s"] / floor["events_s"], 3),
        "batch_p50_over_floor": round(central["batch"]["p50_ms"] / floor["batch"]["p50_ms"], 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
