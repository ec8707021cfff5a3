"""Central against pushes and real-time questions nobody here wrote by hand: events and requests with
fields of every JSON type in every place (a bounded, seeded random walk), on both engines, over real
HTTP. Whatever comes, central answers each event with its code or refuses the request with a 4xx;
never a 500 (a lane would be stuck on its batch for good), and a 200 answers every event sent.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from typing import Any

import requests

from posd.sync.protocol import signed_headers
from tests.conftest import ENGINES
from tests.support.central_fixture import LANE_ID, SECRET, STORE_ID, make_event

CENTRAL_ENGINES = ENGINES

ROUNDS = 150
ODD: list[Any] = [
    None, True, False, 0, -1, 1.5, 10**20, -(10**20), 1e308, "", "x", "\u202e", "\U0001f642" * 50, "a" * 5000,
    [], [1, "a"], {}, {"a": None}, {"points": 5}, {"points": -5}, {"points": 1.0}, {"points": "5"}, {"": 1},
    {"points": 10**13}, "2026-13-01T00:00:00Z", "2026-12-01T00:00:00+01:00", "2026-12-01T00:00:00Z",
    "M0001", "M0002", "nope", 2026, "2026", {"qr_token": 1}, ["2900000000018", {}],
    {"points": {"available_at": {}, "expires_at": []}}, {"points": {"available_at": "2026-12-01T00:00:00Z"}},
    {"code": {}, "kind": [], "title": {"pl": {}}, "benefit": {"kind": {}}},
    [{"sku": {}, "quantity": [], "unit_price": {}}], [{"sku": "a", "quantity": "1", "unit_price": 1, "category": {}}],
]
EVENT_FIELDS = ["type", "transaction_id", "member_id", "occurred_at", "lines", "points", "program_version", "offline",
                "identifiers", "display_name", "birth_date", "locale", "provisional", "lots", "authorisation_id",
                "reservation_id", "code", "token_id", "identified_by", "key_id", "return_id", "voucher", "kind",
                "birthday_award_year"]
TYPES: list[Any] = ["accrual", "return", "redemption", "voucher_use", "member_enrolled", "token_use", "other", 5, None,
                    {}, []]
REQUEST_FIELDS = ["authorisation_id", "member_id", "kind", "points", "voucher_code", "voucher_once_per", "unsynced",
                  "token_id", "identified_by", "key_id", "year", "transaction_id", "reward_id", "occurred_at"]


def _post(central, route: str, raw: bytes, gzipped: bool) -> requests.Response:
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/{route}"
    body = gzip.compress(raw) if gzipped else raw
    headers = {**signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body),
               "Content-Type": "application/json"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return requests.post(central.url + path, data=body, headers=headers, timeout=30)


def test_events_of_any_shape_get_an_answer_each_never_a_500(central):
    rnd = random.Random(2212)
    seq, failures = 0, []
    for n in range(ROUNDS):
        events = []
        for _ in range(rnd.randint(1, 6)):
            seq += 1
            event = make_event(seq, type=rnd.choice(TYPES))
            for name in rnd.sample(EVENT_FIELDS, rnd.randint(0, 5)):
                event[name] = rnd.choice(ODD)
            if rnd.random() < 0.1:
                event.pop(rnd.choice([k for k in event if k != "seq"]), None)
            events.append(event)
        resp = _post(central, "batches", json.dumps({"batch_id": f"B-{n}", "events": events}).encode(), True)
        if resp.status_code >= 500:
            failures.append((resp.status_code, resp.text[:200], json.dumps(events)[:400]))
        elif resp.status_code == 200:
            assert [r["seq"] for r in resp.json()["results"]] == [e["seq"] for e in events], resp.text
        seq = central.store.last_seq(STORE_ID, LANE_ID)  # what central consumed: the next batch goes on from it
    assert not failures, failures[:3]
    assert seq > ROUNDS  # most events were consumed, one way or the other


def test_real_time_questions_of_any_shape_are_answered_or_refused_with_a_4xx(central):
    rnd = random.Random(2213)
    failures = []
    for _ in range(ROUNDS):
        doc = {name: rnd.choice(ODD) for name in rnd.sample(REQUEST_FIELDS, rnd.randint(0, 8))}
        if rnd.random() < 0.5:
            doc.setdefault("member_id", "M0001")
            doc.setdefault("authorisation_id", f"redemption:A-{rnd.randint(0, 2)}")
        route = rnd.choice(["authorisations", "releases", "token-uses", "birthday-awards"])
        resp = _post(central, route, json.dumps(doc).encode(), rnd.random() < 0.3)
        if resp.status_code >= 500:
            failures.append((route, resp.status_code, resp.text[:200], json.dumps(doc)[:400]))
    assert not failures, failures[:3]
