"""`make bench` (burn part): what central's authorisation adds to a redemption, beside the offline path.

The reference central and the daemon each in a process of their own, on
loopback, as in bench/run.py. Measured in the same run:

- ``redemption_online``: POST /v1/redemptions while central answers (the lane
  asks central, which checks and reserves, then records the burn);
- ``redemption_offline``: the same redemptions while the lane knows central is
  out of reach (its pushes and pulls fail): no question asked, the offline caps;
- ``authorise_round_trip``: the floor of the question itself, a bare signed
  authorisation from this process to the same central (its own connection each
  time, as the lane asks);
- ``sale``: POST /v1/transactions on the same lane, for scale;
- ``birthday_sale``: sales that give the birthday bonus, each to another member
  whose birthday is today: the lane claims the member's year at central first;
- ``birthday_claim_round_trip``: the floor of that question, a bare signed
  claim from this process to the same central (its own connection each time).

``added_by_online_ms`` is online minus offline at p50 and p99. Figures go to
the report, never into test assertions.

    python -m bench.burn --out bench/burn-report.json [--redemptions 300]
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import central_process, post_loop, sale as sale_body, summary  # noqa: E402
from posd.config import load  # noqa: E402
from posd.sync.lane.client import CentralClient  # noqa: E402
from posd.sync.protocol import secret_from_text  # noqa: E402
from tests.support.lane import LaneProcess, free_port, lane_config  # noqa: E402

CARD = "2900000000900"
CAPS = ("\n[offline]\nmax_redeem_points_per_member = 1000000000\nmax_redeem_points_per_lane = 1000000000\n"
        "max_hours = 24\n")


def birthday_cards(n: int) -> list[str]:
    return [f"BDAY{i:06d}" for i in range(n)]


def seed(birthdays: int = 0) -> dict:
    """The demo seed plus one member rich enough to redeem all run long, and ``birthdays`` members whose
    birthday is today (the demo program's birthday rule: once a year, within 3 days)."""
    doc = copy.deepcopy(json.loads((ROOT / "config" / "demo-seed.json").read_text()))
    doc["members"].append({"member_id": "M0900", "display_name": "Bench", "locale": "pl", "tier": "gold",
                           "qualifying": 9000, "identifiers": [CARD], "balances": {"points": 10**9}})
    born = datetime.now(UTC).date().replace(year=1990).isoformat() if datetime.now(UTC).strftime("%m%d") != "0229" \
        else "1990-02-28"
    doc["members"] += [{"member_id": f"B{i:06d}", "display_name": "Birthday", "locale": "pl", "identifiers": [card],
                        "balances": {}, "birth_date": born} for i, card in enumerate(birthday_cards(birthdays))]
    return doc


def birthday_given(lane: LaneProcess, card: str) -> bool:
    """Would a sale to ``card`` now give the birthday bonus (the quote's trace)?"""
    trace = lane.post("/v1/quotes", sale_body("bday-quote", card)).json()["accrual"]["trace"]
    return any(step["type"] == "birthday" and step["status"] == "applied" for step in trace)


def claim_loop(url: str, secret: str, n: int) -> list[float]:
    return central_loop(url, secret, n, lambda client, i: client.claim_birthday(
        {"member_id": "M0900", "year": 3000 + i, "transaction_id": f"bench:{i}"}))


def redeem_loop(lane: LaneProcess, prefix: str, n: int) -> tuple[list[float], set[str]]:
    """Redemptions one after another on one keep-alive connection: ms each, and how each was authorised."""
    conn = http.client.HTTPConnection("127.0.0.1", lane.port, timeout=10)
    headers = {"Authorization": f"Bearer {lane.token}", "Content-Type": "application/json"}
    ms, authorised = [], set()
    for i in range(n):
        body = json.dumps({"redemption_id": f"{prefix}-{i}", "member": CARD, "reward_id": "free-coffee"}).encode()
        t0 = time.perf_counter()
        conn.request("POST", "/v1/redemptions", body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        ms.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"redemption refused: {payload[:200]!r}")
        authorised.add(json.loads(payload)["authorised"])
    conn.close()
    return ms, authorised


def central_loop(url: str, secret: str, n: int, ask) -> list[float]:
    """``ask(client, i)`` n times from this process to central (a floor): ms each."""
    client = CentralClient(url, "S001", "L99", secret_from_text(secret), timeout=5.0)
    ms = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            ask(client, i)
            ms.append((time.perf_counter() - t0) * 1000)
    finally:
        client.close()
    return ms


def authorise_loop(url: str, secret: str, n: int) -> list[float]:
    return central_loop(url, secret, n, lambda client, i: client.authorise(
        {"authorisation_id": f"bench:{i}", "kind": "redemption", "member_id": "M0900",
         "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "points": {"points": 1}}))


def fault(central_url: str, route: str, count: int) -> None:
    requests.post(f"{central_url}/_admin/faults", json={"route": route, "fault": "503", "count": count}, timeout=5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/burn-report.json")
    ap.add_argument("--redemptions", type=int, default=300)
    args = ap.parse_args(argv)
    doc = seed(birthdays=args.redemptions + 1)
    secret = doc["stores"]["S001"]["secret"]
    report: dict[str, object] = {"when": datetime.now(UTC).isoformat(), "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    with tempfile.TemporaryDirectory() as tmp, central_process(Path(tmp), doc) as central:
        port = free_port()
        cfg = lane_config(Path(tmp) / "lane", central_url=central.url, secret=secret, printer="none", port=port)
        cfg.write_text(cfg.read_text() + CAPS)
        budget_ms = load(cfg).central.authorise_timeout_ms
        lane = LaneProcess(cfg, port).start()
        try:
            lane.wait_synced()
            redeem_loop(lane, "warm", 20)
            online, how_online = redeem_loop(lane, "online", args.redemptions)
            floor = authorise_loop(central.url, secret, args.redemptions)
            sale = post_loop(lane.port, lane.token, "sale", CARD, args.redemptions)
            cards = birthday_cards(args.redemptions + 1)
            if not birthday_given(lane, cards[0]):
                raise RuntimeError("the birthday rule does not fire for the bench's members")
            birthday = post_loop(lane.port, lane.token, "bday", cards[:-1], args.redemptions)
            if birthday_given(lane, cards[0]) or not birthday_given(lane, cards[-1]):
                raise RuntimeError("the birthday sales did not give the bonus once")
            claim_floor = claim_loop(central.url, secret, args.redemptions)
            for route in ("push", "members", "program"):
                fault(central.url, route, 10**6)
            lane.wait_for(lambda: lane.health()["sync"]["online"] is False, timeout=30, what="the lane offline")
            offline, how_offline = redeem_loop(lane, "offline", args.redemptions)
            requests.post(f"{central.url}/_admin/faults", json={"clear": True}, timeout=5)
        finally:
            lane.stop()
    if how_online != {"online"} or how_offline != {"offline"}:
        raise RuntimeError(f"unexpected authorisation paths: {how_online} / {how_offline}")
    on, off = summary(online), summary(offline)
    report.update({
        "redemption_online": on, "redemption_offline": off,
        "added_by_online_ms": {"p50": round(on["p50_ms"] - off["p50_ms"], 3),
                               "p99": round(on["p99_ms"] - off["p99_ms"], 3)},
        "authorise_round_trip": summary(floor),
        "sale": summary(sale),
        "birthday_sale": summary(birthday),
        "birthday_claim_round_trip": summary(claim_floor),
        "budget_ms": budget_ms,
    })
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("redemption_online", "redemption_offline", "added_by_online_ms",
                                             "authorise_round_trip", "sale", "birthday_sale",
                                             "birthday_claim_round_trip")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
