"""Birthday bonus claims on the wire: once a year per member across the chain, asked before a sale gives it.

Pure functions, no I/O. A sale that would give the program's birthday bonus
asks central first, while central answers within the lane's burn budget
(``POST .../birthday-awards``): the first lane to claim a member's year holds
it, any other lane is answered ``taken`` and its sale earns without the bonus.
The lane that holds the year is answered ``awarded`` on every later ask (a
retried sale, a sale refused for another reason and tried again). The accrual
event that gives the bonus names the year (``birthday_award_year``), so central
learns of bonuses given offline too and flags a second lane's as information
(the push answer's ``flag: birthday_repeated``), never refusing the accrual.
docs/sync-protocol.md, "Birthday bonus claims", is the prose version.
"""

from __future__ import annotations

from typing import Any

from posd.sync.protocol.errors import CentralProtocolError, RequestRejected
from posd.sync.protocol.shapes import check_ids, compact_json, json_object

BIRTHDAY_CLAIM_STATUSES = ("awarded", "taken")
MAX_BIRTHDAY_CLAIM_BYTES = 4096
# The store-local years a claim or an accrual may name: a sale is at most a year old, and a
# year outside these is a lane's bug, not a birthday.
MIN_AWARD_YEAR, MAX_AWARD_YEAR = 2000, 9999
# The push answer's flag on an accrual whose member's year another lane gave first (offline).
BIRTHDAY_REPEATED = "birthday_repeated"


def is_award_year(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and MIN_AWARD_YEAR <= value <= MAX_AWARD_YEAR


# The request body, {member_id, year, transaction_id}: compact UTF-8 JSON, keys sorted.
birthday_claim_json = compact_json


def parse_birthday_claim(body: bytes) -> dict[str, Any]:
    """A claim as central receives it, checked; RequestRejected(malformed_birthday_claim) otherwise
    (batch_too_large over MAX_BIRTHDAY_CLAIM_BYTES)."""
    doc = json_object(body, MAX_BIRTHDAY_CLAIM_BYTES, "malformed_birthday_claim", "a birthday claim")
    check_ids(doc, ("member_id", "transaction_id"), "malformed_birthday_claim")
    if not is_award_year(doc.get("year")):
        raise RequestRejected("malformed_birthday_claim",
                              f"year must be an integer from {MIN_AWARD_YEAR} to {MAX_AWARD_YEAR}")
    return {"member_id": doc["member_id"], "year": doc["year"], "transaction_id": doc["transaction_id"]}


def birthday_claim_answer(member_id: str, year: int, awarded: bool) -> dict[str, Any]:
    """Central's answer: awarded for the lane that holds the member's year, taken for any other."""
    if awarded:
        return {"member_id": member_id, "year": year, "status": "awarded"}
    return {"member_id": member_id, "year": year, "status": "taken", "code": "birthday_taken",
            "message": "this member's birthday bonus for the year was given at another lane"}


def parse_birthday_claim_answer(answer: Any, member_id: str, year: int) -> dict[str, Any]:
    """Central's answer to a claim, checked; CentralProtocolError when it is not one."""
    if not isinstance(answer, dict) or answer.get("member_id") != member_id or answer.get("year") != year \
            or answer.get("status") not in BIRTHDAY_CLAIM_STATUSES:
        raise CentralProtocolError("birthday claim answer needs member_id, year and status awarded|taken")
    return answer
