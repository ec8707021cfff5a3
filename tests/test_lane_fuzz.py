"""The local API against bodies nobody here wrote by hand: every POST route, fields of every JSON type in
every place (a bounded, seeded random walk), through a real daemon. Each answer is a 2xx or a 4xx with
its route's documented code (tests/support/contract.py checks every answer against the OpenAPI), never
a 5xx or a traceback in the log; the paths come back to the router as it would route them.
"""

from __future__ import annotations

import random
from typing import Any

ODD: list[Any] = [
    None, True, 0, -1, 1.5, 10**20, 2**63, 1e308, "", "x", "NaN", "1.5", "0.001", "1e3", "2900000000018",
    "+48 600 123 456", "0048600123456", "\u06f0\u06f6\u06f0\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6", "M0001",
    "\U0001f642" * 40, "a" * 3000, "4111111111111111", [], ["a"], [None], {}, {"a": 1}, {"sku": {"a": 1}},
    [{"sku": "5901234123457", "quantity": 1, "unit_price": 100}],
    [{"sku": "5901234123457", "quantity": "0.001", "unit_price": 1, "discount": 5}],
    [{"sku": "5901234123457", "quantity": 100000, "unit_price": 10**12}], [{"sku": "x", "quantity": 1, "unit_price": -5}],
    ["VX1", "VX1", "C-1"], ["a" * 65], {"currency": "PLN", "total": {}, "lines": [{}]},
    "2026-12-02T10:00:00Z", "9999-12-31T23:59:59-23:59", "1990-02-30", "1900-01-01", "PLN", "free-coffee", "T-base",
]
ROUTES = {
    "/v1/transactions": ["transaction_id", "member", "occurred_at", "currency", "total", "lines"],
    "/v1/quotes": ["transaction_id", "member", "occurred_at", "currency", "total", "lines", "codes"],
    "/v1/redemptions": ["redemption_id", "member", "reward_id", "points", "transaction_id"],
    "/v1/members": ["card", "phone", "display_name", "locale", "birth_date"],
    "/v1/vouchers/validate": ["code", "codes", "member", "basket", "transaction_id"],
    "/v1/vouchers/VX1/use": ["transaction_id", "member", "basket", "applied"],
    "/v1/transactions/T-base/returns": ["return_id", "lines", "amount"],
}
PIECES = ["x", "%00", "%0A", "%2F", "..", "%E2%80%AE", "a" * 300, "2900000000018", "%2B48600123456", "99999999999999999999"]


def test_bodies_and_paths_of_any_shape_are_answered_as_documented(tmp_path, central, start_lane):
    rnd = random.Random(2214)
    lane = start_lane(tmp_path / "lane")
    sale = {"transaction_id": "T-base", "member": "2900000000018", "occurred_at": "2026-12-02T10:00:00Z",
            "currency": "PLN", "total": 10000, "lines": [{"sku": "5901234123457", "quantity": 1, "unit_price": 10000}]}
    assert lane.post("/v1/transactions", sale).status_code == 200
    failures = []
    for n in range(300):
        path = rnd.choice(list(ROUTES))
        body = dict(sale, transaction_id=f"T-{n}") if path in ("/v1/transactions", "/v1/quotes") else {}
        for name in rnd.sample(ROUTES[path], rnd.randint(1, min(4, len(ROUTES[path])))):
            body[name] = rnd.choice(ODD)
        answer = lane.post(path, body)
        if answer.status_code >= 500:
            failures.append((path, answer.status_code, answer.text[:200], str(body)[:300]))
    for _ in range(100):
        piece = rnd.choice(PIECES)
        path = rnd.choice([f"/v1/members/{piece}", f"/v1/slips/{piece}.png", f"/{piece}", f"/v1/health{piece}"])
        answer = lane.get(path)
        if answer.status_code >= 500:
            failures.append((path, answer.status_code, answer.text[:200]))
    lane.stop()
    assert not failures, failures[:3]
    assert "Traceback" not in lane.log.read_text()
