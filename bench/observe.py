"""What observability costs a sale: `make bench` -> bench/observe.json.

The sale path gained three things: the request timer (an ASGI middleware and a
histogram observe per request), the outcome counter (a counter inc per sale)
and one log line per sale. Each is measured here per call, in-process, beside
its floor measured in the same run:

- ``timer``: a request through ``RequestTimer`` into an app that answers at
  once, against the same app called bare;
- ``outcome``: ``LaneMetrics.outcome`` (the labelled child cached), against an
  empty method call;
- ``log_line``: ``told()`` writing its line through a StreamHandler to
  /dev/null, against the same call with logging above its level (formatting
  and the write skipped); ``log_line_journal`` the same with the journald
  format posd uses under systemd (a priority prefix, no timestamp).

Then a daemon on loopback takes sequential sales over real HTTP, so each cost
stands beside the sale it is added to (p50 of POST /v1/transactions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posd.api.observe import RequestTimer, told  # noqa: E402
from posd.logs import PLAIN_FORMAT, JournalFormatter  # noqa: E402
from posd.lane.context import Recorded  # noqa: E402
from posd.metrics import LaneMetrics  # noqa: E402

ROUNDS = 7


def per_call_us(fn, n: int) -> float:
    """The median over ROUNDS of the mean time per call, in microseconds."""
    means = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn(n)
        means.append((time.perf_counter() - t0) / n * 1e6)
    return round(statistics.median(means), 3)


def bench_timer(n: int) -> dict[str, float]:
    metrics = LaneMetrics(lambda: {})

    async def app(scope, receive, send):
        scope["route"] = route

    class _Route:
        path = "/v1/transactions"

    route = _Route()
    timed = RequestTimer(app, observer=metrics)
    scope = {"type": "http", "method": "POST"}
    loop = asyncio.new_event_loop()

    async def run(target, count):
        for _ in range(count):
            await target(dict(scope), None, None)

    try:
        floor = per_call_us(lambda k: loop.run_until_complete(run(app, k)), n)
        measured = per_call_us(lambda k: loop.run_until_complete(run(timed, k)), n)
    finally:
        loop.close()
    return {"measured_us": measured, "floor_us": floor, "added_us": round(measured - floor, 3)}


def bench_outcome(n: int) -> dict[str, float]:
    metrics = LaneMetrics(lambda: {})

    class _Empty:
        def outcome(self, kind: str, outcome: str) -> None:
            pass

    empty = _Empty()

    def run(target, count):
        for _ in range(count):
            target.outcome("sale", "recorded")

    floor = per_call_us(lambda k: run(empty, k), n)
    measured = per_call_us(lambda k: run(metrics, k), n)
    return {"measured_us": measured, "floor_us": floor, "added_us": round(measured - floor, 3)}


def bench_log_line(n: int, formatter: logging.Formatter) -> dict[str, float]:
    recorded = Recorded({"transaction_id": "T-1", "member_id": "M1", "accrual": {"points": {"points": 75}},
                         "slip": {"state": "queued"}, "offline": False}, replayed=False)
    logger = logging.getLogger("posd.api")
    with open("/dev/null", "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.setLevel(logging.WARNING)
            floor = per_call_us(lambda k: [told(None, "sale", "T-1", recorded) for _ in range(k)], n)
            logger.setLevel(logging.INFO)
            measured = per_call_us(lambda k: [told(None, "sale", "T-1", recorded) for _ in range(k)], n)
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
    return {"measured_us": measured, "floor_us": floor, "added_us": round(measured - floor, 3)}


def bench_sale(posts: int) -> dict[str, float]:
    """Sequential sales over real HTTP to a daemon: the sale the costs above are added to."""
    import requests

    from tests.support.central_fixture import demo_seed
    from bench.common import central_process
    from tests.support.lane import LaneProcess, free_port, lane_config

    seed = demo_seed()
    with tempfile.TemporaryDirectory() as tmp, central_process(Path(tmp), seed) as central:
        port = free_port()
        cfg = lane_config(Path(tmp) / "lane", central_url=central.url, secret=seed["stores"]["S001"]["secret"],
                          printer="none", port=port)
        lane = LaneProcess(cfg, port).start()
        try:
            lane.wait_synced()
            session = requests.Session()
            headers = {"Authorization": f"Bearer {lane.token}"}
            times = []
            for i in range(posts):
                body = {"transaction_id": f"B-{i}", "member": "2900000000018",
                        "occurred_at": datetime.now(UTC).isoformat(), "currency": "PLN", "total": 5000,
                        "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1,
                                   "unit_price": 5000}]}
                t0 = time.perf_counter()
                resp = session.post(f"{lane.base}/v1/transactions", json=body, headers=headers, timeout=10)
                times.append((time.perf_counter() - t0) * 1000)
                resp.raise_for_status()
        finally:
            lane.stop()
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 3), "p99_ms": round(times[int(len(times) * 0.99)], 3),
            "posts": posts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/observe.json")
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--posts", type=int, default=1000)
    args = ap.parse_args(argv)
    report = {"when": datetime.now(UTC).isoformat(),
              "timer": bench_timer(args.calls), "outcome": bench_outcome(args.calls),
              "log_line": bench_log_line(args.calls, logging.Formatter(PLAIN_FORMAT)),
              "log_line_journal": bench_log_line(args.calls, JournalFormatter()),
              "sale": bench_sale(args.posts)}
    added = sum(report[k]["added_us"] for k in ("timer", "outcome", "log_line_journal"))
    report["per_sale"] = {"added_us_under_systemd": round(added, 3), "sale_p50_us": round(report["sale"]["p50_ms"] * 1000, 1),
                          "share_of_p50": round(added / (report["sale"]["p50_ms"] * 1000), 4)}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
