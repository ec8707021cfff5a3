"""Member tokens on the wire: the lane asks central whether a token is still unused before it accepts it.

Pure functions, no I/O. A phone's QR token (or a wallet pass's code) shown at
a till is claimed at central (``POST .../token-uses``) while central answers:
the first lane to claim a token_id owns it, and any other lane is answered
``replayed``. The same lane asking again is answered ``accepted`` (a retry, or
a sale refused for another reason and tried again). The token_use event the
lane pushes afterwards then finds its own claim. docs/sync-protocol.md,
"Member token claims", is the prose version.
"""

from __future__ import annotations

from typing import Any

from posd.sync.protocol.errors import CentralProtocolError, RequestRejected
from posd.sync.protocol.shapes import TOKEN_SCHEMES, check_ids, compact_json, json_object

TOKEN_CLAIM_STATUSES = ("accepted", "replayed")
MAX_TOKEN_CLAIM_BYTES = 4096


def token_claim_json(claim: dict[str, Any]) -> bytes:
    """The request body: {token_id, member_id, identified_by}."""
    return compact_json(claim)


def parse_token_claim(body: bytes) -> dict[str, Any]:
    """A claim as central receives it, checked; RequestRejected(malformed_token_use) otherwise
    (batch_too_large over MAX_TOKEN_CLAIM_BYTES)."""
    doc = json_object(body, MAX_TOKEN_CLAIM_BYTES, "malformed_token_use", "a token claim")
    check_ids(doc, ("token_id", "member_id"), "malformed_token_use")
    if not isinstance(doc.get("identified_by"), str) or doc["identified_by"] not in TOKEN_SCHEMES:
        raise RequestRejected("malformed_token_use", f"identified_by must be one of {sorted(TOKEN_SCHEMES)}")
    return {"token_id": doc["token_id"], "member_id": doc["member_id"], "identified_by": doc["identified_by"]}


def token_claim_answer(token_id: str, first_use: bool) -> dict[str, Any]:
    """Central's answer: accepted for the lane that claimed the token first, replayed for any other."""
    if first_use:
        return {"token_id": token_id, "status": "accepted"}
    return {"token_id": token_id, "status": "replayed", "code": "token_replayed",
            "message": "this token was used at another lane"}


def parse_token_claim_answer(answer: Any, token_id: str) -> dict[str, Any]:
    """Central's answer to a claim, checked; CentralProtocolError when it is not one."""
    if not isinstance(answer, dict) or answer.get("token_id") != token_id \
            or answer.get("status") not in TOKEN_CLAIM_STATUSES:
        raise CentralProtocolError("token claim answer needs token_id and status accepted|replayed")
    return answer
