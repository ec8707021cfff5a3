"""Birthday bonus claims: the first lane to claim a member's year holds it, any other lane is told it is taken.

The kit claims a year for a member it enrolled itself (the push group's),
under its lane and under a second lane id of the same store, then pushes the
accrual the first lane would push afterwards, naming the year.
"""

from __future__ import annotations

from posd.sync.conformance.http import birthday_awards_path
from posd.sync.conformance.kit import Context, Failed, Skipped, answered_twice, check, claim, expect_status, statuses
from posd.sync.protocol import birthday_claim_json, parse_birthday_claim_answer

YEAR = 2099  # a year no real sale names yet; the member is the kit's own, enrolled by this run


def _other_lane(ctx: Context) -> str:
    return ctx.client.lane_id[:58] + ".bd2"


def _member(ctx: Context) -> str:
    if not ctx.members:
        raise Skipped("the kit enrolled no member (check the push group)")
    return ctx.members[0]


def _claim(ctx: Context, member: str, transaction_id: str, lane_id: str | None = None) -> str:
    body = birthday_claim_json({"member_id": member, "year": YEAR, "transaction_id": transaction_id})
    return claim(ctx, "birthday", birthday_awards_path, body, lane_id,
                 lambda doc: parse_birthday_claim_answer(doc, member, YEAR), ("taken", "birthday_taken"))


@check("birthdays", "claim.first_lane")
def first_lane(ctx: Context) -> str:
    """A member's year claimed first by a lane is awarded, and again for the same lane (a retry)."""
    member, txn = _member(ctx), f"conf-{ctx.run_id}-birthday"
    outcome = answered_twice([_claim(ctx, member, txn), _claim(ctx, member, txn)], "awarded")
    ctx.notes["birthday_claimed"] = txn
    return outcome


@check("birthdays", "claim.other_lane")
def other_lane(ctx: Context) -> str:
    """The same member's year claimed from another lane of the store is taken (birthday_taken)."""
    if "birthday_claimed" not in ctx.notes:
        raise Skipped("no year was claimed (check birthdays/claim.first_lane)")
    got = _claim(ctx, _member(ctx), f"conf-{ctx.run_id}-birthday-2", _other_lane(ctx))
    if got != "taken":
        raise Failed(f"another lane's claim of a held year was answered {got}, expected taken")
    return "taken birthday_taken"


@check("birthdays", "claim.then_accrual")
def then_accrual(ctx: Context) -> str:
    """The claiming lane's accrual naming the year is accepted, without a flag (the year is its own)."""
    txn = ctx.notes.get("birthday_claimed")
    if txn is None:
        raise Skipped("no year was claimed (check birthdays/claim.first_lane)")
    seq = ctx.seq()
    results = ctx.push([ctx.event(seq, _member(ctx), transaction_id=txn, birthday_award_year=YEAR)])
    if statuses(results) != [("accepted", None)] or results[0].get("flag") is not None:
        raise Failed(f"the claiming lane's accrual was answered {results}, expected accepted without a flag")
    return "the claiming lane's accrual accepted, no flag"


@check("birthdays", "claim.malformed")
def malformed(ctx: Context) -> str:
    """A claim without a year, or with a year that is not an integer, is 400 malformed_birthday_claim."""
    for body in (b'{"member_id": "x", "transaction_id": "t"}',
                 b'{"member_id": "x", "year": "2026", "transaction_id": "t"}', b"[]"):
        answer = ctx.client.request("POST", birthday_awards_path(ctx.client), body,
                                    {"Content-Type": "application/json"})
        expect_status(answer, 400, f"the claim {body[:60]!r}", "malformed_birthday_claim")
    return "400 malformed_birthday_claim"
