"""The program by ETag: 200 with a strong ETag, 304 without a body while it is current."""

from __future__ import annotations

from posd.sync.conformance.kit import Context, Failed, check, expect_status


@check("program", "etag.304")
def program_etag(ctx: Context) -> str:
    """GET /v1/program has an ETag; If-None-Match with it is 304 with no body."""
    first = ctx.client.program()
    expect_status(first, 200, "the program")
    etag = first.headers.get("ETag")
    if not etag or not isinstance(first.json(), dict):
        raise Failed("the program answer needs a JSON object and an ETag header")
    again = ctx.client.program(etag)
    expect_status(again, 304, "If-None-Match with the current ETag")
    if again.body:
        raise Failed("a 304 carried a body")
    other = ctx.client.program('"not-the-current-etag"')
    expect_status(other, 200, "If-None-Match with another ETag")
    return f"ETag {etag[:20]}..., 304 when current, 200 otherwise"
