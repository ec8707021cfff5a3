"""What evaluating a sale costs, part by part, beside floors measured in the same run.

    python -m bench.rules [--members 100000] [--sales 4000] [--rounds 7] [--out FILE]

In one process, on a real ledger.db and cache.db (the demo program, synthetic
members), each part timed over the same sales, round after round, the parts
interleaved so that a figure and its floor see the same neighbours:

- ``rules``: the rules engine alone (``compute_accrual``) on the bench's sale
  (one grocery line, as ``make bench`` posts) and on a mixed basket (an excluded
  line, a multiplier in its window, stamps, a threshold bonus), for a gold and a
  basic member; floor: ``json.loads`` of the same accrual's JSON (building the
  same dicts and lists in C, without working anything out).
- ``lookup``: the member lookup as a sale makes it (``Members.find_active``);
  floor: the bare indexed SELECT of the same member's row on the same connection.
- ``evaluate``: ``Sales.evaluate`` inside a unit of work on the ledger's writer
  thread, as ``_record_unless_central`` runs it (lookup, earn context, rules),
  nothing written.
- ``request``: the sale's body as the API reads it (pydantic-core validating the
  bytes, then the lane's input with its idempotency hash); floor: ``json.loads``
  of the same bytes.
- ``sale``: ``Sales.record_sale`` awaited on an event loop, as the API awaits it:
  evaluated and written in one durable commit each (WAL, synchronous=FULL), a
  new transaction id every time; floor: one durable commit of one small row on
  the same ledger.db, on the same path (``Ledger.awrite``). Their difference is
  what a sale adds to the commit it cannot do without.

Per sale: the median over rounds of each round's mean, in microseconds of
process CPU time (time.process_time: a neighbour taking the core is not
counted), and the ratio to its floor.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import ROOT, emit, machine, now_iso, ratio, sale
from posd.api.app import sale_input
from posd.api.models import TransactionIn
from posd.core.program import parse_program
from posd.core.rules import Basket, BasketLine, EarnContext, compute_accrual
from posd.lane import Lane
from posd.lane.events import EventBus
from posd.lane.sales import TransactionInput
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger

WARSAW = ZoneInfo("Europe/Warsaw")
ONE_LINE = (BasketLine("590123", "grocery", Decimal(1), 4599),)  # bench.common.sale's basket
MIXED = (BasketLine("5901234123457", "grocery", Decimal(2), 1299, 100),
         BasketLine("5900000002014", "coffee_to_go", Decimal(3), 900),
         BasketLine("5900000003011", "fruit_veg", Decimal("1.375"), 799),
         BasketLine("5900000009990", "tobacco", Decimal(1), 1800),
         BasketLine("5900000004018", "bakery", Decimal(1), 24999))


def per_sale_us(fn: Callable[[], Any], n: int) -> float:
    """``fn`` runs the part ``n`` times keeping nothing; the cyclic collector runs before, not during."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        fn()
        return (time.process_time() - t0) / n * 1e6
    finally:
        gc.enable()


def fill(cache: Cache, members: int) -> None:
    chunk = 20_000
    for start in range(0, members, chunk):
        cache.apply_member_changes(
            [{"member_id": f"B{i:08d}", "display_name": f"Member {i}", "tier": ("basic", "silver", "gold")[i % 3],
              "identifiers": [f"B{i:08d}"], "balances": {"points": i % 5000}}
             for i in range(start, min(members, start + chunk))], str(start))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--sales", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    program = parse_program(seed["program"])
    n = args.sales
    # A Tuesday at 10:30 in Warsaw: the fresh-produce multiplier is in its window for the mixed basket.
    moment = datetime(2026, 11, 17, 10, 30, tzinfo=WARSAW)
    cases = {
        "one_line_basic": (Basket("PLN", 4599, ONE_LINE), EarnContext("basic", moment)),
        "one_line_gold": (Basket("PLN", 4599, ONE_LINE), EarnContext("gold", moment)),
        "mixed_gold": (Basket("PLN", sum(x.amount for x in MIXED), MIXED), EarnContext("gold", moment)),
    }
    report: dict[str, Any] = {"when": now_iso(), "machine": machine(), "sales_per_round": n, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ledger = Ledger(folder / "ledger.db", LaneIdentity("S001", "L01"))
        cache = Cache(folder / "cache.db", "L01")
        loop = asyncio.new_event_loop()  # the sale awaited as the API awaits it
        try:
            cache.store_program(seed["program"], "bench")
            fill(cache, args.members)
            lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=ledger, cache=cache,
                        bus=EventBus(ledger.boot), printer_enabled=False, timezone="Europe/Warsaw")
            codes = [f"B{(7 + i * 7919) % args.members:08d}" for i in range(n)]
            now = datetime.now(UTC)
            sales = [TransactionInput(f"t{i}", code, now, "PLN", 4599, ONE_LINE, "h") for i, code in enumerate(codes)]
            conn = cache.reader()
            bare = "SELECT m.* FROM member_identifiers i JOIN members m ON m.member_id = i.member_id " \
                   "WHERE i.identifier = ?"

            parts: dict[str, Callable[[], Any]] = {}
            for name, (basket, ctx) in cases.items():
                answer = json.dumps(compute_accrual(program, basket, ctx).to_json())
                parts[f"rules.{name}"] = lambda b=basket, c=ctx: all(compute_accrual(program, b, c) for _ in range(n))
                parts[f"rules.{name}.floor"] = lambda a=answer: all(json.loads(a) for _ in range(n))
            parts["lookup"] = lambda: all(lane.members.find_active(code) for code in codes)
            parts["lookup.floor"] = lambda: all(conn.execute(bare, (code,)).fetchone() for code in codes)
            parts["evaluate"] = lambda: ledger.write(lambda unit: all(lane.sales.evaluate(tx, unit) for tx in sales))
            bodies = [json.dumps(sale(f"t{i}", code)).encode() for i, code in enumerate(codes)]
            parts["request"] = lambda: all(sale_input(TransactionIn.model_validate_json(b)) for b in bodies)
            parts["request.floor"] = lambda: all(json.loads(b) for b in bodies)
            ids = itertools.count()

            async def record() -> None:
                base = next(ids) * n
                for i, tx in enumerate(sales):
                    await lane.sales.record_sale(dataclasses.replace(tx, transaction_id=f"s{base + i}"))

            async def commit() -> None:
                for i in range(n):
                    await ledger.awrite(lambda unit, i=i: unit.set_meta("bench_commit", str(i)))

            parts["sale"] = lambda: loop.run_until_complete(record())
            parts["sale.floor"] = lambda: loop.run_until_complete(commit())
            for fn in parts.values():  # warm: statements prepared, the program compiled, pages cached
                fn()
            samples: dict[str, list[float]] = {name: [] for name in parts}
            for _ in range(args.rounds):
                for name, fn in parts.items():
                    samples[name].append(per_sale_us(fn, n))
        finally:
            cache.close()
            ledger.close()
            loop.close()
    figures = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    out: dict[str, Any] = {}
    for name, us in figures.items():
        if name.endswith(".floor"):
            continue
        row: dict[str, Any] = {"us_per_sale": us, "rounds_us": [round(v, 2) for v in samples[name]]}
        floor = figures.get(f"{name}.floor")
        if floor is not None:
            row |= {"floor_us": floor, "ratio": ratio(us, floor)}
        out[name] = row
    report["parts"] = out
    return emit(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
