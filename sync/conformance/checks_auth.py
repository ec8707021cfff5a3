"""Signature and timestamp checks: a request central cannot trust is refused, 401, and changes nothing."""

from __future__ import annotations

import time

from posd.sync.conformance.http import authorise_path, birthday_awards_path, release_path, segment, token_uses_path
from posd.sync.conformance.kit import Context, Failed, check, expect_status

MEMBER = "conformance-nobody"  # never enrolled: a refused push could not apply anyway


def _probe(ctx: Context, seq: int) -> list[dict]:
    return [ctx.event(seq, MEMBER)]


@check("auth", "signature.bad")
def bad_signature(ctx: Context) -> str:
    """A push signed with another secret is 401 bad_signature."""
    answer = ctx.client.push("conf-bad-sig", _probe(ctx, 1), secret=b"not-the-store-secret")
    expect_status(answer, 401, "a wrong secret", "bad_signature")
    return "401 bad_signature"


@check("auth", "signature.missing")
def missing_signature(ctx: Context) -> str:
    """A push without the signature headers is 401 missing_signature."""
    answer = ctx.client.push("conf-no-sig", _probe(ctx, 1), sign=False)
    expect_status(answer, 401, "an unsigned push")
    return f"401 {answer.code}"


@check("auth", "signature.tampered")
def tampered_body(ctx: Context) -> str:
    """A body changed after signing is 401 bad_signature."""
    from posd.sync.protocol import encode_batch, signed_headers

    client = ctx.client
    path = client.push_path()
    body = encode_batch("conf-tamper", _probe(ctx, 1))
    headers = signed_headers(client.secret, client.store_id, client.lane_id, int(time.time()), "POST", path, body)
    headers.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
    other = encode_batch("conf-tamper", [ctx.event(1, MEMBER, points=10**6)])
    answer = client.request("POST", path, other, headers, sign=False)
    expect_status(answer, 401, "a tampered body", "bad_signature")
    return "401 bad_signature"


@check("auth", "timestamp.stale")
def stale_timestamp(ctx: Context) -> str:
    """A request signed 1000 s ago (or ahead) is 401 stale_timestamp, signature checked first."""
    for offset in (-1000, 1000):
        answer = ctx.client.push("conf-stale", _probe(ctx, 1), ts=time.time() + offset)
        expect_status(answer, 401, f"a timestamp {offset:+d} s off", "stale_timestamp")
    answer = ctx.client.push("conf-stale", _probe(ctx, 1), ts=time.time() - 1000, secret=b"not-the-store-secret")
    if answer.code == "stale_timestamp":
        raise Failed("a stale request with a wrong signature was told stale_timestamp: the clock was judged first")
    return "401 stale_timestamp both ways; signature judged before the clock"


@check("auth", "lane.mismatch")
def lane_mismatch(ctx: Context) -> str:
    """A push whose X-Posd-Lane names another lane than its URL is 403 lane_mismatch."""
    answer = ctx.client.push("conf-lane", _probe(ctx, 1), lane_header=ctx.client.lane_id + "-other")
    expect_status(answer, 403, "a lane header for another lane", "lane_mismatch")
    return "403 lane_mismatch"


@check("auth", "every_call")
def every_call(ctx: Context) -> str:
    """Every other call (the lane's head, member changes, the program, burn authorisations and releases,
    token and birthday claims, voucher lookups) is refused 401 unsigned and 401 bad_signature signed
    with another secret: member data and burns are as guarded as pushes."""
    client = ctx.client
    store, lane = segment(client.store_id), segment(client.lane_id)
    calls = [("GET", f"/v1/lanes/{store}/{lane}"), ("GET", f"/v1/stores/{store}/members/changes?cursor=&limit=1"),
             ("GET", "/v1/program"), ("POST", authorise_path(client)), ("POST", release_path(client)),
             ("POST", token_uses_path(client)), ("POST", birthday_awards_path(client)),
             ("GET", f"/v1/stores/{store}/vouchers/CONFKIT0000?member_id={MEMBER}")]
    for method, path in calls:
        body = b"{}" if method == "POST" else b""
        headers = {"Content-Type": "application/json"} if body else {}
        answer = client.request(method, path, body, headers, sign=False)
        expect_status(answer, 401, f"an unsigned {method} {path.split('?')[0]}")
        answer = client.request(method, path, body, headers, secret=b"not-the-store-secret")
        expect_status(answer, 401, f"{method} {path.split('?')[0]} signed with a wrong secret", "bad_signature")
    return f"{len(calls)} calls: 401 unsigned, 401 bad_signature with a wrong secret"
