"""What the POS can cause or act on: one catalogue of stable codes, and the error that carries one.

A LaneError is a code and a message for people; it knows nothing of HTTP (the
API maps each code to a status in one table, posd/api/errors.py). Every lane
function that can raise one says which codes with ``@raises``, counting the
codes of what it calls; tests/test_error_codes.py checks each declaration
against the function's body, and the API builds each route's OpenAPI
responses from the declarations of what the route calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from posd.core.rules import RuleError
from posd.storage.db import ReadFailed as ReadFailed  # re-exported: the API catches it without posd.storage
from posd.storage.db import WriteRefused, unavailable

F = TypeVar("F", bound=Callable)
# A POS clock a little ahead is normal; a sale hours in the future would mature and expire wrongly.
FUTURE_TOLERANCE = timedelta(minutes=10)
# A POS that was offline may upload old sales; a year back is the most a lane accepts.
PAST_TOLERANCE = timedelta(days=366)

CODES: dict[str, str] = {
    # identifying a member
    "payment_card": "the identifier is a payment card number; it was dropped, not stored",
    "unknown_member": "no member has that identifier",
    "ambiguous_member": "the number is one member's card and another member's phone number (written without its "
                        "+country code)",
    "member_ineligible": "the member's account is not active (blocked or suspended)",
    "member_unavailable": "the lane cannot tell yet whether this is a member (its member cache has not loaded from "
                          "central, or the sale's member is not in it yet); try again after sync",
    "program_unavailable": "the lane has no loyalty program yet: it has not synced with central once",
    # member tokens (phone QR, wallet pass): docs/member-tokens.md
    "member_token_invalid": "the member token is not one a published key signed (malformed, tampered, unknown key), "
                            "or the wallet code is wrong",
    "member_token_expired": "the member token has expired: the member shows a fresh one",
    "member_token_not_yet_valid": "the member token was issued in the future: check the lane's clock",
    "member_token_replayed": "this member token was accepted before: a token is accepted once",
    # enrolment at the till
    "invalid_card": "the card code is not a member card's (check digit, characters)",
    "invalid_phone": "the phone number is not a valid number (give it with its country code, +48...)",
    "identifier_in_use": "the card or phone number already belongs to a member",
    # sales (and RuleError's codes, passed on as they are)
    "occurred_in_future": f"occurred_at is more than {FUTURE_TOLERANCE // timedelta(minutes=1)} minutes ahead of the "
                          "lane's clock; check the POS clock",
    "occurred_too_old": "the sale is older than the lane accepts; central can adjust",
    "negative_total": "the total is negative; use a return instead",
    "points_out_of_range": "the program gives the sale more points than one sale may carry (10^12): the program "
                           "needs mending at central; nothing was recorded",
    "negative_line": "a line has a negative quantity, price or discount, or a discount above its amount",
    "total_mismatch": "the lines do not add up to the total",
    "unsupported_currency": "the program does not earn on that money currency",
    "invalid_occurred_at": "the rules engine was given a moment without a timezone (in-process callers; the API "
                           "answers invalid_request for an occurred_at without a UTC offset)",
    "transaction_id_conflict": "this transaction_id was already used for a different sale",
    # returns
    "return_id_conflict": "this return_id was already used for a different return",
    "unknown_transaction": "no sale with that transaction_id on this lane",
    "program_version_unknown": "the program version the sale earned under is not on this lane",
    "mixed_return": "the sale was returned by lines (or by amount) before; return the rest the same way",
    "return_exceeds_sale": "more would be returned than was sold",
    "return_by_amount": "the sale had no lines: return it by amount",
    # redemptions
    "redemption_id_conflict": "this redemption_id was already used for a different redemption",
    "unknown_reward": "no such reward in the current program",
    "reward_required": "give reward_id (a catalog reward), or points where the program gives its points a money "
                       "value",
    "invalid_points": "points are redeemed from the program's minimum, in its steps (currencies[].money_value)",
    "reward_not_eligible": "the reward is not offered to the member's tier",
    "insufficient_balance": "the member's available balance does not cover the reward (on this lane, or at "
                            "central net of what other lanes hold reserved)",
    "reward_limit_reached": "the member has had this reward as often as allowed today (at any lane, while "
                            "central answers)",
    "offline_cap_member": "burns without central's authorisation (redemptions, voucher uses) for this member "
                          "reached the lane's offline cap",
    "offline_cap_lane": "burns without central's authorisation on this lane reached the offline cap",
    "offline_too_long": "the lane has been out of touch with central too long to burn without its authorisation",
    # vouchers and coupons
    "unknown_voucher": "no voucher or coupon with that code",
    "voucher_unavailable": "a voucher's code this lane does not know, and central could not be asked whether "
                           "another lane issued it: try again when central answers (health says why)",
    "voucher_void": "central refused the redemption behind this voucher",
    "voucher_not_yet_valid": "the coupon is not valid yet",
    "voucher_expired": "the voucher or coupon has expired",
    "voucher_other_member": "the voucher belongs to another member",
    "member_required": "identify the member to use this coupon",
    "voucher_used": "the voucher or coupon was already used (here, or at another lane once central knows)",
    "voucher_not_applicable": "the voucher or coupon takes nothing off this basket (the message says why: the "
                              "free item is not in it, no line it applies to, stacking): nothing was used",
    # the lane's own disk
    "storage_full": "the lane's disk is full: nothing was recorded; retry the same request once store IT "
                    "frees space (posd doctor says where)",
    "storage_failed": "the lane's disk failed a write: nothing was recorded; retry the same request, and "
                      "call store IT if it persists",
    # slips
    "unknown_slip": "no slip with that id on this lane",
    "no_printer": "this lane has no printer configured",
    "idempotency_key_conflict": "the Idempotency-Key was already used for another slip's job: a key names one "
                                "job; send a new key for another slip",
}


class CodedError(Exception):
    """An error with a stable code from its class's catalogue and a message for people."""

    catalogue: Mapping[str, str] = {}

    def __init__(self, code: str, message: str):
        if code not in self.catalogue:
            raise ValueError(f"{code!r} is not a code of {type(self).__name__}")
        super().__init__(message)
        self.code, self.message = code, message


class LaneError(CodedError):
    catalogue = CODES


def declaration(known: Mapping[str, str]) -> Callable[..., Callable[[F], F]]:
    """A decorator that records on a function the codes (from `known`) it can raise, as ``fn.raises``."""

    def declare(*codes: str) -> Callable[[F], F]:
        unknown = set(codes) - set(known)
        if unknown:
            raise ValueError(f"not error codes: {', '.join(sorted(unknown))}")

        def mark(fn: F) -> F:
            fn.raises = frozenset(codes)  # type: ignore[attr-defined]
            return fn

        return mark

    return declare


# Declare the LaneError codes a function can raise, itself or through what it calls.
raises = declaration(CODES)


def codes_of(*functions: Callable) -> frozenset[str]:
    """The codes the given (declared) functions can raise."""
    return frozenset().union(*(getattr(fn, "raises", frozenset()) for fn in functions))


@raises("storage_full", "storage_failed")
def storage_error(exc: WriteRefused) -> LaneError:
    """The ledger's refusal to write (posd.storage.db.WriteRefused), for the POS."""
    if exc.full:
        return LaneError("storage_full", f"the lane's disk is full; nothing was recorded: {exc.detail}")
    return LaneError("storage_failed", f"the lane's disk failed a write; nothing was recorded: {exc.detail}")


@raises("storage_failed")
def storage_unreadable(exc: BaseException) -> LaneError | None:
    """A read of ledger.db or cache.db failing on the storage folder (a file deleted or moved while posd
    runs, until it is written back; a folder posd may not read): storage_failed, not a bug's 500. None
    for anything else."""
    if unavailable(exc, Path("storage.dir")) is None:
        return None
    return LaneError("storage_failed", "posd cannot read its storage folder now (storage.dir); nothing was written")


@raises("negative_total", "negative_line", "total_mismatch")
def basket_error(exc: RuleError) -> LaneError:
    """A basket that does not add up (posd.core.rules.check_basket), for the POS."""
    if exc.code == "negative_total":
        return LaneError("negative_total", str(exc))
    if exc.code == "negative_line":
        return LaneError("negative_line", str(exc))
    return LaneError("total_mismatch", str(exc))


@raises("negative_total", "negative_line", "total_mismatch", "unsupported_currency", "points_out_of_range")
def rule_error(exc: RuleError) -> LaneError:
    """The rules engine's refusal of a basket, for the POS: its code as it is.

    Not invalid_occurred_at: the lane always hands the engine the sale's moment in the store's
    timezone (an occurred_at without an offset is the API's invalid_request), so the engine saying
    otherwise is a lane bug, raised as one."""
    if exc.code == "invalid_occurred_at":
        raise RuntimeError(f"the rules engine was given a moment without a timezone: {exc}") from exc
    if exc.code == "unsupported_currency":
        return LaneError("unsupported_currency", str(exc))
    if exc.code == "points_out_of_range":
        return LaneError("points_out_of_range", str(exc))
    return basket_error(exc)
