"""Member token claims: the first lane to claim a token owns it, any other lane is told it is a replay.

The kit claims token ids of its own (random, never a real member's token)
under its lane and under a second lane id of the same store, and pushes the
token_use event the first lane would push afterwards.
"""

from __future__ import annotations

import secrets

from posd.sync.conformance.http import token_uses_path
from posd.sync.conformance.kit import Context, Failed, Skipped, answered_twice, check, claim, expect_status, statuses
from posd.sync.protocol import parse_token_claim_answer, token_claim_json

MEMBER = "conformance-token-holder"


def _other_lane(ctx: Context) -> str:
    return ctx.client.lane_id[:58] + ".tok2"


def _claim(ctx: Context, token_id: str, lane_id: str | None = None) -> str:
    body = token_claim_json({"token_id": token_id, "member_id": MEMBER, "identified_by": "qr_token"})
    return claim(ctx, "token", token_uses_path, body, lane_id, lambda doc: parse_token_claim_answer(doc, token_id),
                 ("replayed", "token_replayed"))


def _claimed_token(ctx: Context) -> str:
    token_id = ctx.notes.get("claimed_token")
    if token_id is None:
        raise Skipped("no token was claimed (check tokens/claim.first_lane)")
    return str(token_id)


@check("tokens", "claim.first_lane")
def first_lane(ctx: Context) -> str:
    """A token claimed first by a lane is accepted, and again for the same lane (a retry)."""
    token_id = secrets.token_hex(8)
    outcome = answered_twice([_claim(ctx, token_id), _claim(ctx, token_id)], "accepted")
    ctx.notes["claimed_token"] = token_id
    return outcome


@check("tokens", "claim.other_lane")
def other_lane(ctx: Context) -> str:
    """The same token claimed from another lane of the store is replayed (token_replayed)."""
    got = _claim(ctx, _claimed_token(ctx), _other_lane(ctx))
    if got != "replayed":
        raise Failed(f"another lane's claim of a claimed token was answered {got}, expected replayed")
    return "replayed token_replayed"


@check("tokens", "claim.then_token_use")
def then_token_use(ctx: Context) -> str:
    """The claiming lane's token_use event for the token is accepted (the claim made it this lane's)."""
    token_id = _claimed_token(ctx)
    if not ctx.members:
        raise Skipped("the kit enrolled no member (check the push group)")
    member = ctx.members[0]
    seq = ctx.seq()
    use = ctx.event(seq, member, "token_use", points=0, token_id=token_id, identified_by="qr_token",
                    key_id="conformance", transaction_id=None)
    use["points"] = {}
    got = statuses(ctx.push([use]))
    if got != [("accepted", None)]:
        raise Failed(f"the claiming lane's token_use was answered {got}, expected accepted")
    return "the claiming lane's token_use accepted"


@check("tokens", "claim.malformed")
def malformed(ctx: Context) -> str:
    """A claim without a token_id, or with an unknown identified_by, is 400 malformed_token_use."""
    for body in (b'{"member_id": "x", "identified_by": "qr_token"}',
                 token_claim_json({"token_id": "ab", "member_id": "x", "identified_by": "fingerprint"}), b"[]"):
        answer = ctx.client.request("POST", token_uses_path(ctx.client), body,
                                    {"Content-Type": "application/json"})
        expect_status(answer, 400, f"the claim {body[:60]!r}", "malformed_token_use")
    return "400 malformed_token_use"
