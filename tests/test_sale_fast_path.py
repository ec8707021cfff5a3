"""POST /v1/transactions reads the usual sale on a fast path (its body validated from the bytes,
without FastAPI's dependency solving) and everything else the standard way. Whichever way a
request goes, it means the same: the same sale is the same request (a retry replays), and the same
bad body gets the same answer, code and message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
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


def _exchange(lane: Any, data: bytes, answers: int = 1, then: bytes = b"") -> tuple[socket.socket, list[bytes]]:
    """``data`` written on a new connection; the heads and bodies of ``answers`` answers read back
    (``then`` written after the first, when it is an interim 100 Continue)."""
    sock = socket.create_connection(("127.0.0.1", lane.port), timeout=10)
    sock.sendall(data)
    got, buf, read = [], b"", 0
    while read < answers:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(1 << 16)
            assert chunk, (got, buf)
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100 "):
            got.append(head)
            sock.sendall(then)
            continue
        length = int(next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")[1:])
                          if k.lower() == b"content-length"))
        while len(buf) < length:
            chunk = sock.recv(1 << 16)
            assert chunk, head
            buf += chunk
        got += [head, buf[:length]]
        buf, read = buf[length:], read + 1
    return sock, got


def _sale_request(lane: Any, body: bytes, version: str = "1.1", **headers: str) -> bytes:
    fields = {"Host": f"127.0.0.1:{lane.port}", "Authorization": f"Bearer {lane.token}", "Content-Type": FAST,
              "Content-Length": str(len(body)), **headers}
    return f"POST /v1/transactions HTTP/{version}\r\n".encode() + \
        "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n" + body


def _header_names(head: bytes) -> set[bytes]:
    return {line.partition(b":")[0].lower() for line in head.split(b"\r\n")[1:]}


def test_the_usual_sale_answered_by_the_server_keeps_http_to_the_letter(tmp_path, central, start_lane):
    """The usual sale is answered by the server itself (posd.api.server), the rest through the app:
    either way the same headers, keep-alive and close as HTTP/1.1 has them, pipelining in order, a
    large body read whole, and an Expect: 100-continue answered before its body is sent."""
    lane = start_lane(tmp_path / "lane")
    sock, (head, body) = _exchange(lane, _sale_request(lane, _raw("h1-1").encode()))
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["transaction_id"] == "h1-1"
    _, (std_head, _) = _exchange(lane, _sale_request(lane, _raw("h1-2").encode(), **{"Content-Type": STANDARD}))
    assert _header_names(head) == _header_names(std_head) >= {b"content-type", b"content-length", b"date"}
    sock.sendall(_sale_request(lane, _raw("h1-1").encode()))  # the same connection kept alive: a replay
    assert b"idempotent-replayed: true" in sock.recv(1 << 16).lower()
    sock.close()

    origin = {"Origin": "https://pos.example.com"}  # an allowed origin: CORS headers on the answer either way
    _, (head, _) = _exchange(lane, _sale_request(lane, _raw("h1-o").encode(), **origin))
    _, (std_head, _) = _exchange(lane, _sale_request(lane, _raw("h1-s").encode(), **origin,
                                                     **{"Content-Type": STANDARD}))
    assert b"access-control-allow-origin: https://pos.example.com" in head.lower()
    assert _header_names(head) == _header_names(std_head) >= {b"access-control-expose-headers", b"vary"}

    for closing in (_sale_request(lane, _raw("h1-3").encode(), version="1.0"),
                    _sale_request(lane, _raw("h1-4").encode(), Connection="close")):
        sock, (head, body) = _exchange(lane, closing)
        assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" in head.lower(), head
        assert sock.recv(1 << 16) == b""  # and closed after it
        sock.close()

    pipelined = b"".join(_sale_request(lane, _raw(f"h1-p{i}").encode()) for i in range(3))
    sock, got = _exchange(lane, pipelined, answers=3)
    assert [json.loads(b)["transaction_id"] for b in got[1::2]] == ["h1-p0", "h1-p1", "h1-p2"]
    sock.close()

    large = _raw("h1-5").encode() + b" " * 200_000  # over the server's read-pause mark: still read whole
    sock, (head, body) = _exchange(lane, _sale_request(lane, large))
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["transaction_id"] == "h1-5"
    sock.close()

    waiting = _sale_request(lane, b"", Expect="100-continue", **{"Content-Length": str(len(_raw("h1-6")))})
    sock, got = _exchange(lane, waiting, then=_raw("h1-6").encode())
    assert got[0].startswith(b"HTTP/1.1 100 ") and json.loads(got[2])["transaction_id"] == "h1-6"
    sock.close()
    invalid = _raw("h1-7")[:-1].encode()
    sock, (head, body) = _exchange(lane, _sale_request(lane, invalid))
    assert head.startswith(b"HTTP/1.1 422 ") and json.loads(body)["code"] == "invalid_request"
    sock.close()
    assert len(requests.get(lane.base + "/v1/events?last_event_id=0", timeout=10, stream=True,
                            headers=lane.headers()).raw.read(1)) == 1  # the stream still answers
    lane.stop()


class _Observer:
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []

    def request(self, route: str, method: str, seconds: float) -> None:
        self.requests.append((route, method))

    def outcome(self, kind: str, outcome: str) -> None:
        self.outcomes.append((kind, outcome))


def _asgi_lane(monkeypatch, outcome: Any = None, observer: Any = None,
               herald: Any = contextlib.nullcontext) -> tuple[Any, list[str], list[Any]]:
    """The API on a stub lane, in process; (app, the paths the bearer guard dependency saw, sales recorded).
    The guard runs as a FastAPI dependency on the standard way only."""
    calls: list[str] = []
    guard_call = api_app.LaneGuard.__call__

    async def counted(self: Any, request: Request) -> None:
        calls.append(request.url.path)
        await guard_call(self, request)

    monkeypatch.setattr(api_app.LaneGuard, "__call__", counted)
    recorded: list[Any] = []

    async def record_sale(tx: Any) -> Recorded:
        recorded.append(tx)
        if outcome is not None:
            raise outcome
        return Recorded({"transaction_id": tx.transaction_id}, False, json.dumps({"transaction_id": tx.transaction_id}))

    sales = SimpleNamespace(record_sale=record_sale, herald=herald)
    lane = SimpleNamespace(members=None, quotes=None, sales=sales, rewards=None, slips=None, enrolments=None)
    app = api_app.create_app(lane=lane, bus=None, token="tok", host="127.0.0.1", port=8765,  # type: ignore[arg-type]
                             allowed_origins=("http://pos.local",), health=lambda: {}, observer=observer)
    return app, calls, recorded


def _asgi_post(app: Any, content: Any, **headers: str) -> httpx.Response:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is an answer here
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
            return await client.post("/v1/transactions", content=content,
                                     headers={"Authorization": "Bearer tok", "Content-Type": FAST, **headers})

    return asyncio.run(post())


@pytest.mark.parametrize("content_type, fast", [
    (FAST, True), ("Application/JSON; charset=UTF-8", True), (STANDARD, False), ("text/plain", False)])
def test_only_the_usual_request_skips_the_stack(monkeypatch, content_type, fast):
    app, calls, recorded = _asgi_lane(monkeypatch)
    resp = _asgi_post(app, _raw("asgi-1").encode(), **{"Content-Type": content_type})
    if content_type == "text/plain":
        assert (resp.status_code, resp.json()["code"]) == (422, "invalid_request")
        assert recorded == []
    else:
        assert resp.status_code == 200 and resp.json() == {"transaction_id": "asgi-1"}
        assert [tx.transaction_id for tx in recorded] == ["asgi-1"]
    assert calls == ([] if fast else ["/v1/transactions"])


def test_the_guards_problems_are_written_as_every_other_answer(monkeypatch):
    """The guards' own Problems (the middleware's 401, 403, 421, 413) are compact JSON, as every route's."""
    app, _, _ = _asgi_lane(monkeypatch)
    body = _raw("compact-1").encode()
    answers = [_asgi_post(app, body, Origin="http://evil.example"), _asgi_post(app, body, Host="evil.example"),
               _asgi_post(app, body, Authorization="Bearer wrong"), _asgi_post(app, b" " * (2 << 20))]
    assert [a.status_code for a in answers] == [403, 421, 401, 413]
    for answer in answers:
        assert answer.content == json.dumps(answer.json(), ensure_ascii=False, separators=(",", ":")).encode()
    assert answers[0].content == b'{"code":"origin_not_allowed","message":"this origin is not in api.allowed_origins"}'


def test_the_usual_sale_is_heralded_to_the_ledger_while_it_is_read(monkeypatch):
    """The Shortcut enters the sales' herald around reading and recording the usual sale (the ledger's
    writer may wait for it: posd.storage.ledger); a request going the standard way is not heralded."""
    heralds: list[str] = []

    def herald():
        heralds.append("made")

        @contextlib.contextmanager
        def entered():
            heralds.append("in")
            yield
            heralds.append("out")
        return entered()

    app, calls, recorded = _asgi_lane(monkeypatch, herald=herald)
    assert _asgi_post(app, _raw("h-1").encode()).status_code == 200
    assert heralds == ["made", "in", "out"] and [tx.transaction_id for tx in recorded] == ["h-1"]
    assert _asgi_post(app, _raw("h-2").encode(), **{"Idempotency-Key": "k"}).status_code == 200  # standard way
    assert heralds == ["made", "in", "out"] and len(recorded) == 2
    assert _asgi_post(app, b'{"transaction_id": "h-3"}').status_code == 422  # read here, refused there
    assert heralds == ["made", "in", "out"] * 2 and len(recorded) == 2

    async def server(scope, receive, send):  # as posd.api.server's protocol: told on arrival, then called
        app.arriving(scope)
        heralds.append("called")
        await app(scope, receive, send)

    heralds.clear()
    assert _asgi_post(server, _raw("h-4").encode()).status_code == 200  # heralded on arrival, entered once
    assert heralds == ["made", "called", "in", "out"] and len(recorded) == 3
    heralds.clear()
    assert _asgi_post(server, _raw("h-5").encode(), **{"Idempotency-Key": "k"}).status_code == 200
    assert heralds == ["called"] and len(recorded) == 4

    def scope_of(body: bytes) -> dict[str, Any]:
        headers = [(b"host", b"127.0.0.1:8765"), (b"authorization", b"Bearer tok"),
                   (b"content-type", FAST.encode()), (b"content-length", str(len(body)).encode())]
        return {"type": "http", "method": "POST", "path": "/v1/transactions", "query_string": b"",
                "headers": headers, "http_version": "1.1", "scheme": "http", "root_path": "",
                "server": ("127.0.0.1", 8765), "client": ("127.0.0.1", 50000)}

    async def late_body(scope: dict[str, Any], body: bytes | None) -> list[dict[str, Any]]:
        """The app called before the body is in; the server tells of its arrival while it waits."""
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            app.arriving(scope)  # read whole only now: the Shortcut is answering it already
            return {"type": "http.disconnect"} if body is None else {"type": "http.request", "body": body}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    heralds.clear()
    body = _raw("h-6").encode()
    sent = asyncio.run(late_body(scope_of(body), body))
    assert sent[0]["status"] == 200 and len(recorded) == 5
    assert heralds == ["made", "in", "out"]  # one herald, once the body was in: none made on arrival
    heralds.clear()
    assert asyncio.run(late_body(scope_of(body), None)) == []  # the client went away before its body
    assert heralds == [] and len(recorded) == 5  # a body that never came heralded nothing

    async def gone_after_arrival() -> None:
        scope = scope_of(body)
        app.arriving(scope)  # heralded on arrival, then the client goes away

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            raise AssertionError("nothing to answer")

        await app(scope, receive, send)

    heralds.clear()
    asyncio.run(gone_after_arrival())
    assert heralds == ["made", "in", "out"] and len(recorded) == 5  # its herald was left, not kept

    # answered by the server itself (posd.api.server): heralded once its body is in, then answered;
    # a claim whose task ends without an answer (a stop cancelled it) leaves its herald
    heralds.clear()
    body = _raw("h-7").encode()
    claim = app.direct(scope_of(body))
    assert claim is not None and app.direct({**scope_of(body), "query_string": b"x=1"}) is None
    claim.arrived()
    status, headers, answer = asyncio.run(claim.answer(body))
    assert status == 200 and json.loads(answer)["transaction_id"] == "h-7" and (b"content-length", b"%d" % len(answer)) \
        in headers
    assert heralds == ["made", "in", "out"] and len(recorded) == 6
    heralds.clear()
    claim = app.direct(scope_of(body))
    claim.arrived()
    claim.abandon()
    assert heralds == ["made", "in", "out"] and len(recorded) == 6
    claim.abandon()  # once only
    assert heralds == ["made", "in", "out"]


def test_the_guards_answers_stand_whichever_way(monkeypatch):
    """An allowed origin gets its CORS headers on the fast path too; a foreign origin, a wrong Host,
    an oversized or unsized body get the guards' answers; a body sent in chunks still records."""
    app, calls, recorded = _asgi_lane(monkeypatch)
    body = _raw("asgi-2").encode()
    allowed = _asgi_post(app, body, Origin="http://pos.local")
    assert allowed.status_code == 200 and calls == []
    assert allowed.headers["access-control-allow-origin"] == "http://pos.local"
    assert "Idempotent-Replayed" in allowed.headers["access-control-expose-headers"]
    foreign = _asgi_post(app, body, Origin="http://evil.example")
    assert (foreign.status_code, foreign.json()["code"]) == (403, "origin_not_allowed")
    bad_host = _asgi_post(app, body, Host="evil.example")
    assert (bad_host.status_code, bad_host.json()["code"]) == (421, "bad_host")
    big = _asgi_post(app, b" " * (2 << 20) + body)
    assert (big.status_code, big.json()["code"]) == (413, "payload_too_large")

    async def chunks():
        yield body[:10]
        yield body[10:]

    chunked = _asgi_post(app, chunks())
    assert chunked.status_code == 200, chunked.text
    assert calls == ["/v1/transactions"]  # the chunked one (no declared length) went the standard way
    assert [tx.transaction_id for tx in recorded] == ["asgi-2", "asgi-2"]


@pytest.mark.parametrize("raised, status, code", [
    (api_app.LaneError("unknown_member", "no such member"), 404, "unknown_member"),
    (RuntimeError("a bug"), 500, "internal_error")])
def test_a_lane_error_on_the_fast_path_is_answered_as_on_the_standard_way(monkeypatch, raised, status, code):
    app, calls, _ = _asgi_lane(monkeypatch, outcome=raised)
    fast = _asgi_post(app, _raw("asgi-3").encode())
    standard = _asgi_post(app, _raw("asgi-3").encode(), **{"Content-Type": STANDARD})
    assert calls == ["/v1/transactions"]
    assert (fast.status_code, fast.json()["code"]) == (status, code)
    assert (fast.status_code, fast.json()) == (standard.status_code, standard.json())


def test_a_refused_body_is_counted_and_its_message_names_what_to_mend(monkeypatch):
    """A misspelt field is named as sent (not only as missing); a JSON body sent as text/plain or
    without a Content-Type is told so; each refusal counts under the sale's outcomes."""
    observer = _Observer()
    app, _, recorded = _asgi_lane(monkeypatch, observer=observer)
    typo = _asgi_post(app, _raw("asgi-4").replace('"total"', '"totl"').encode())
    assert (typo.status_code, typo.json()["code"]) == (422, "invalid_request")
    assert typo.json()["message"].startswith("totl:"), typo.json()
    assert {e["type"] for e in typo.json()["errors"]} == {"missing", "extra_forbidden"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        plain = _asgi_post(app, _raw("asgi-5").encode(), **{"Content-Type": content_type})
        assert (plain.status_code, plain.json()["code"]) == (422, "invalid_request"), content_type
        assert "Content-Type: application/json" in plain.json()["message"], plain.json()
    missing = _asgi_post(app, _raw("asgi-6").replace('"total"', '"x_total"').encode())
    assert missing.json()["message"].startswith("x_total:")
    assert recorded == []
    assert observer.outcomes == [("sale", "invalid_request")] * 5
    assert observer.requests == [("/v1/transactions", "POST")] * 5
