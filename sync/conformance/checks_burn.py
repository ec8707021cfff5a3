"""Burn authorisation: reserve, decline, hold, idempotence, voucher holds, release, expiry.

The kit burns points of a member it enrolled and credited itself (an
accrual it pushes first), and uses coupon codes of its own, so nothing real
is spent. Expiry is checked by waiting for the reservation's ``expires_at``
when that is within ``--wait-expiry`` seconds (central's reservation time
to live, 900 s by default at the reference central); otherwise it is "not
observed", not a pass.
"""

from __future__ import annotations

import time

from posd.sync.conformance.http import authorise_path, release_path
from posd.sync.conformance.kit import Context, Failed, NotObserved, Skipped, check, expect_status
from posd.sync.protocol import (authorisation_json, parse_authorisation_answer, parse_release_answer, parse_utc,
                                release_json)

CREDIT = 100  # points the kit gives its burning member first


def _authorise(ctx: Context, request: dict) -> dict:
    answer = ctx.client.request("POST", authorise_path(ctx.client), authorisation_json(request),
                                {"Content-Type": "application/json"})
    expect_status(answer, 200, f"an authorisation ({request['kind']})")
    try:
        return parse_authorisation_answer(answer.json(), request["authorisation_id"])
    except Exception as exc:  # the protocol's own check of the answer's shape
        raise Failed(f"the answer is not an authorisation answer: {exc}") from exc


def _redemption(ctx: Context, name: str, points: int) -> dict:
    return {"authorisation_id": f"conf-{ctx.run_id}-{name}", "kind": "redemption",
            "member_id": ctx.notes["burner"], "occurred_at": _now(), "points": {ctx.currency: points}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _burner(ctx: Context) -> str:
    if "burner" not in ctx.notes:
        if len(ctx.members) < 2 or ctx.next_seq is None:
            raise Skipped("the kit's members were not enrolled (check push.accepted)")
        member = ctx.members[-1]
        results = ctx.push([ctx.event(ctx.seq(), member, points=CREDIT)])
        if results[0].get("status") != "accepted":
            raise Failed(f"the kit's accrual for its burning member was answered {results[0]}")
        ctx.notes["burner"] = member
    return ctx.notes["burner"]


@check("burn", "decline.insufficient")
def declined_when_short(ctx: Context) -> str:
    """A redemption beyond the member's balance is declined insufficient_balance, with what is available."""
    _burner(ctx)
    answer = _authorise(ctx, _redemption(ctx, "too-much", 10**9))
    if answer["status"] != "declined" or answer.get("code") != "insufficient_balance":
        raise Failed(f"expected declined insufficient_balance, got {answer}")
    available = answer.get("available", {}).get(ctx.currency)
    if not isinstance(available, int) or available < CREDIT:
        raise Failed(f"available should say at least the {CREDIT} {ctx.currency} the kit credited, got {available}")
    ctx.notes["available"] = available
    return f"declined; {available} {ctx.currency} available"


@check("burn", "reserve")
def reserve(ctx: Context) -> str:
    """A redemption within the balance is approved with a reservation that expires later."""
    _burner(ctx)
    answer = _authorise(ctx, _redemption(ctx, "one", 1))
    if answer["status"] != "approved":
        raise Failed(f"expected approved, got {answer}")
    expires = parse_utc(answer["expires_at"])
    if expires is None or expires.timestamp() <= time.time():
        raise Failed(f"the reservation expires at {answer['expires_at']}, not after now")
    ctx.notes["reservation"] = answer["reservation_id"]
    return f"approved, reservation {answer['reservation_id']} until {answer['expires_at']}"


@check("burn", "idempotent")
def idempotent(ctx: Context) -> str:
    """The same authorisation_id and burn again gets the same reservation; another burn under it is declined."""
    if "reservation" not in ctx.notes:
        raise Skipped("no reservation to ask for again (check burn.reserve)")
    again = _authorise(ctx, _redemption(ctx, "one", 1))
    if again["status"] != "approved" or again["reservation_id"] != ctx.notes["reservation"]:
        raise Failed(f"asking again must get reservation {ctx.notes['reservation']}, got {again}")
    other = _authorise(ctx, _redemption(ctx, "one", 2))
    if other["status"] != "declined" or other.get("code") != "authorisation_conflict":
        raise Failed(f"another burn under the same authorisation_id must be authorisation_conflict, got {other}")
    return "same reservation; authorisation_conflict for another burn"


@check("burn", "hold")
def hold(ctx: Context) -> str:
    """An approved reservation holds its points: what is left can be reserved, one point more cannot."""
    if "available" not in ctx.notes or "reservation" not in ctx.notes:
        raise Skipped("the member's balance or first reservation is unknown (check burn.decline, burn.reserve)")
    rest = ctx.notes["available"] - 1  # the first reservation holds 1
    answer = _authorise(ctx, _redemption(ctx, "rest", rest))
    if answer["status"] != "approved":
        raise Failed(f"the {rest} {ctx.currency} left should be reservable, got {answer}")
    more = _authorise(ctx, _redemption(ctx, "more", 1))
    if more["status"] != "declined" or more.get("code") != "insufficient_balance":
        raise Failed(f"with everything held, one more point must be insufficient_balance, got {more}")
    ctx.notes["held_until"] = parse_utc(answer["expires_at"])
    return f"{rest} more reserved; then one point more declined"


@check("burn", "voucher.hold")
def voucher_hold(ctx: Context) -> str:
    """A coupon use is held by its reservation: a second use of the code is declined voucher_used."""
    member = _burner(ctx)
    code = f"CONF{ctx.run_id.upper()}"[:64]

    def use(name: str) -> dict:
        return _authorise(ctx, {"authorisation_id": f"conf-{ctx.run_id}-{name}", "kind": "voucher_use",
                                "member_id": member, "occurred_at": _now(), "voucher_code": code,
                                "voucher_once_per": "code"})

    first = use("use-1")
    if first["status"] != "approved":
        raise Failed(f"the first use of a coupon code central never saw should be approved, got {first}")
    second = use("use-2")
    if second["status"] != "declined" or second.get("code") != "voucher_used":
        raise Failed(f"a second use while the first is held must be voucher_used, got {second}")
    return f"{code}: first approved, second voucher_used"


def _release(ctx: Context, authorisation_id: str) -> str:
    answer = ctx.client.request("POST", release_path(ctx.client), release_json(authorisation_id),
                                {"Content-Type": "application/json"})
    expect_status(answer, 200, "a release")
    try:
        return parse_release_answer(answer.json(), authorisation_id)["state"]
    except Exception as exc:  # the protocol's own check of the answer's shape
        raise Failed(f"the answer is not a release answer: {exc}") from exc


@check("burn", "release")
def release(ctx: Context) -> str:
    """A released reservation holds nothing at once; releasing again says released; an unknown id, unknown."""
    if "held_until" not in ctx.notes:
        raise Skipped("no reservation holds the balance (check burn.hold)")
    rest = ctx.notes["available"] - 1
    state = _release(ctx, f"conf-{ctx.run_id}-rest")
    if state != "released":
        raise Failed(f"an open reservation given back must be released, got {state}")
    if (again := _release(ctx, f"conf-{ctx.run_id}-rest")) != "released":
        raise Failed(f"releasing again must answer released again, got {again}")
    if (unknown := _release(ctx, f"conf-{ctx.run_id}-never-asked")) != "unknown":
        raise Failed(f"an id never authorised must be unknown, got {unknown}")
    answer = _authorise(ctx, _redemption(ctx, "after-release", rest))
    if answer["status"] != "approved":
        raise Failed(f"the {rest} {ctx.currency} released should be reservable at once, got {answer}")
    ctx.notes["held_until"] = parse_utc(answer["expires_at"])  # held again: burn.expiry waits for this one
    return f"released; the {rest} {ctx.currency} were reservable again at once; unknown id: unknown"


@check("burn", "expiry")
def expiry(ctx: Context) -> str:
    """A reservation the lane never confirms expires: its points are free again."""
    until = ctx.notes.get("held_until")
    if until is None:
        raise Skipped("no reservation holds the balance (check burn.hold)")
    wait = until.timestamp() - time.time() + 1.0
    if wait > ctx.wait_expiry:
        raise NotObserved(f"reservations live {wait:.0f} s more; run with --wait-expiry {wait + 5:.0f} to check")
    time.sleep(max(0.0, wait))
    answer = _authorise(ctx, _redemption(ctx, "after-expiry", ctx.notes["available"] - 1))
    if answer["status"] != "approved":
        raise Failed(f"after the reservations expired their points should be free again, got {answer}")
    return f"after {max(0.0, wait):.0f} s the held points were free again"
