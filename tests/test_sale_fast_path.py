"""POST /v1/transactions reads the usual sale on a fast path (its body validated from the bytes,
without FastAPI's dependency solving) and everything else the standard way. Whichever way a
request goes, it means the same: the same sale is the same request (a retry replays), and the same
bad body gets the same answer, code and message."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import requests
from fastapi import Request

from posd.api import app as api_app
from posd.lane.context import Recorded
from tests.support.lane import ANNA, sale_body

FAST = "application/json"
STANDARD = "application/vnd.posd+json"  # JSON to FastAPI (a +json subtype); not read on the fast path


def _post(lane: Any, body: bytes, content_type: str, **headers: str) -> requests.Response:
    return requests.post(lane.base + "/v1/transactions", data=body, timeout=10,
                         headers=lane.headers(**{"Content-Type": content_type, **headers}))


def _raw(transaction_id: str, **changes: Any) -> str:
    body = sale_body(transaction_id)
    body.update(changes)
    return json.dumps(body)


# Bodies whose reading could differ between pydantic-core's JSON parser and json.loads + pydantic.
VALID = {
    "plain": lambda t: _raw(t),
    "a key twice, the last one counts": lambda t: _raw(t)[:-1] + f', "transaction_id": "{t}"}}',
    "float and exponent numbers": lambda t: _raw(t).replace('"quantity": 1', '"quantity": 1e0')
                                                  .replace('"total": 5000', '"total": 5000.0'),
    "string quantity": lambda t: _raw(t).replace('"quantity": 1', '"quantity": "1.000"'),
    "escaped key and text": lambda t: _raw(t).replace('"currency"', '"curr\\u0065ncy"')
                                             .replace('"grocery"', '"gr\\u00f3cery"'),
    "padded id and whitespace around": lambda t: "\n " + _raw(t).replace(f'"{t}"', f'" {t}\\u00a0"') + " \n",
    "offset instant": lambda t: _raw(t).replace("+01:00", "-03:30"),
}

INVALID = {
    "not JSON": "{",
    "trailing garbage": _raw("inv-1") + "x",
    "a lone surrogate": _raw("inv-2").replace('"grocery"', '"groc\\ud800ery"'),
    "a NUL in a sku": _raw("inv-3").replace('"5901234123457"', '"590\\u0000"'),
    "NaN quantity": _raw("inv-4").replace('"quantity": 1', '"quantity": NaN'),
    "huge total": _raw("inv-5").replace('"total": 5000', '"total": 1' + "0" * 40),
    "nested too deep": _raw("inv-6")[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
    "a list, not an object": "[1, 2]",
    "an unknown field": _raw("inv-7", cashier="Ola"),
    "card number as sku": _raw("inv-8").replace('"5901234123457"', '"4111111111111111"'),
    "no offset on the instant": _raw("inv-9").replace("+01:00", ""),
    "empty": "",
}


@pytest.mark.parametrize("name", list(VALID))
def test_a_sale_read_either_way_is_the_same_request(tmp_path, central, start_lane, name):
    lane = start_lane(tmp_path / "lane")
    for first, then in ((FAST, STANDARD), (STANDARD, FAST)):
        tid = f"fp-{len(first)}-{list(VALID).index(name)}"
        body = VALID[name](tid).encode()
        one = _post(lane, body, first)
        assert one.status_code == 200, one.text
        assert one.json()["transaction_id"] == tid and "Idempotent-Replayed" not in one.headers
        again = _post(lane, body, then)  # the other way: replayed, so it hashed to the same request
        assert again.status_code == 200, again.text
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.content == one.content
    other = _post(lane, _raw(tid, total=4000).replace('"unit_price": 5000', '"unit_price": 4000').encode(), FAST)
    assert (other.status_code, other.json()["code"]) == (409, "transaction_id_conflict"), other.text
    lane.stop()


def test_a_bad_request_gets_the_same_answer_either_way(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    for name, text in INVALID.items():
        fast, standard = (_post(lane, text.encode(), kind) for kind in (FAST, STANDARD))
        assert fast.status_code in (400, 422) and fast.json()["code"] in ("invalid_request", "payment_card"), name
        assert (fast.status_code, fast.json()) == (standard.status_code, standard.json()), name
    assert lane.get(f"/v1/members/{ANNA}").json()["balances"]["points"]["pending"] == 0  # nothing recorded
    lane.stop()


def test_what_the_fast_path_does_not_read_goes_the_standard_way(tmp_path, central, start_lane):
    """Card data in a header the API reads or in the query, a wrong token, a text/plain body: the
    standard way's answers."""
    lane = start_lane(tmp_path / "lane")
    body = _raw("std-1").encode()
    carded = _post(lane, body, FAST, **{"Idempotency-Key": "4111111111111111"})
    assert (carded.status_code, carded.json()["code"]) == (422, "payment_card"), carded.text
    query = requests.post(lane.base + "/v1/transactions?note=4111111111111111", data=body, timeout=10,
                          headers=lane.headers(**{"Content-Type": FAST}))
    assert (query.status_code, query.json()["code"]) == (422, "payment_card"), query.text
    wrong = requests.post(lane.base + "/v1/transactions", data=body, timeout=10,
                          headers={"Authorization": "Bearer nope", "Content-Type": FAST})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    text = _post(lane, body, "text/plain")
    assert (text.status_code, text.json()["code"]) == (422, "invalid_request"), text.text
    assert _post(lane, body, FAST).status_code == 200
    lane.stop()


@pytest.mark.parametrize("content_type, fast", [
    (FAST, True), ("Application/JSON; charset=UTF-8", True), (STANDARD, False), ("text/plain", False)])
def test_only_the_usual_request_skips_the_dependency_solving(monkeypatch, content_type, fast):
    """The bearer guard runs as a FastAPI dependency on the standard way only: on the usual sale
    it is never called, and the sale is still answered."""
    calls: list[str] = []
    guard_call = api_app.LaneGuard.__call__

    async def counted(self: Any, request: Request) -> None:
        calls.append(request.url.path)
        await guard_call(self, request)

    monkeypatch.setattr(api_app.LaneGuard, "__call__", counted)
    recorded: list[Any] = []

    async def record_sale(tx: Any) -> Recorded:
        recorded.append(tx)
        return Recorded({"transaction_id": tx.transaction_id}, False, json.dumps({"transaction_id": tx.transaction_id}))

    lane = SimpleNamespace(members=None, quotes=None, sales=SimpleNamespace(record_sale=record_sale), rewards=None,
                           slips=None, enrolments=None)
    app = api_app.create_app(lane=lane, bus=None, token="tok", host="127.0.0.1", port=8765,  # type: ignore[arg-type]
                             health=lambda: {})

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
            return await client.post("/v1/transactions", content=_raw("asgi-1").encode(),
                                     headers={"Authorization": "Bearer tok", "Content-Type": content_type})

    resp = asyncio.run(post())
    if content_type == "text/plain":
        assert (resp.status_code, resp.json()["code"]) == (422, "invalid_request")
        assert recorded == []
    else:
        assert resp.status_code == 200 and resp.json() == {"transaction_id": "asgi-1"}
        assert [tx.transaction_id for tx in recorded] == ["asgi-1"]
    assert calls == ([] if fast else ["/v1/transactions"])
