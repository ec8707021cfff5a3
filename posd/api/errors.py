"""Error codes over HTTP: the one code -> status table, the API's own codes, and each route's
OpenAPI error responses, generated from the codes the route declares it can raise."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from posd.lane.errors import CODES as LANE_CODES
from posd.lane.errors import CodedError, declaration

# Codes of the HTTP layer itself (security middleware, validation, routing).
API_CODES: dict[str, str] = {
    "unauthorized": "missing or wrong bearer token",
    "invalid_request": "the request does not match its schema; `errors` says where",
    "invalid_last_event_id": "Last-Event-ID is not an event id",
    "not_found": "no such route",
    "method_not_allowed": "the route does not take that method",
    "http_error": "another HTTP-level error",
    "malformed_request": "not HTTP/1.1 that can be read: a bad or conflicting Content-Length or Transfer-Encoding, "
                         "or a malformed request line or header (answered by the server, connection closed)",
    "bad_host": "the Host header does not name this lane's API (DNS rebinding guard)",
    "origin_not_allowed": "the browser's Origin is not in api.allowed_origins",
    "payload_too_large": "the request body is over 1 MiB (a sale of 500 lines is about 100 KB)",
    "internal_error": "posd hit an internal error; nothing was half-written",
}

CATALOGUE: dict[str, str] = {**LANE_CODES, **API_CODES}

# The one table: the HTTP status of every code.
STATUS: dict[str, int] = {
    "payment_card": 422, "unknown_member": 404, "ambiguous_member": 409, "member_ineligible": 422,
    "member_unavailable": 503,
    "program_unavailable": 503,
    "member_token_invalid": 422, "member_token_expired": 422, "member_token_not_yet_valid": 422,
    "member_token_replayed": 409, "invalid_card": 422, "invalid_phone": 422, "identifier_in_use": 409,
    "occurred_in_future": 422, "occurred_too_old": 422, "negative_total": 422, "points_out_of_range": 422,
    "negative_line": 422,
    "total_mismatch": 422, "unsupported_currency": 422, "invalid_occurred_at": 422,
    "transaction_id_conflict": 409,
    "return_id_conflict": 409, "unknown_transaction": 404, "program_version_unknown": 409, "mixed_return": 422,
    "return_exceeds_sale": 422, "return_by_amount": 422,
    "redemption_id_conflict": 409, "unknown_reward": 404, "reward_required": 422, "invalid_points": 422,
    "reward_not_eligible": 422,
    "insufficient_balance": 422, "reward_limit_reached": 422, "offline_cap_member": 422, "offline_cap_lane": 422,
    "offline_too_long": 422,
    "unknown_voucher": 404, "voucher_unavailable": 503, "voucher_void": 422, "voucher_not_yet_valid": 422,
    "voucher_expired": 422, "voucher_other_member": 422, "member_required": 422, "voucher_used": 409, "voucher_not_applicable": 422,
    "storage_full": 503, "storage_failed": 503,
    "unknown_slip": 404, "no_printer": 409, "idempotency_key_conflict": 409,
    "unauthorized": 401, "invalid_request": 422, "invalid_last_event_id": 422, "not_found": 404,
    "method_not_allowed": 405, "http_error": 400, "malformed_request": 400, "bad_host": 421,
    "origin_not_allowed": 403, "internal_error": 500,
    "payload_too_large": 413,
}

# For generated POS clients: `code` is one of these.
ErrorCode = Enum("ErrorCode", {code: code for code in CATALOGUE}, type=str)  # type: ignore[misc]


class ApiError(CodedError):
    """An error of the HTTP layer itself."""

    catalogue = API_CODES


# On a route: every code it can answer with beyond unauthorized and invalid_request, which the
# OpenAPI adds from the route itself (its token dependency, its validated inputs).
declares = declaration(CATALOGUE)


def error_responses(codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """OpenAPI responses for these codes: one per status, its `code` an enum of the codes it carries."""
    by_status: dict[int, list[str]] = {}
    for code in sorted(set(codes)):
        by_status.setdefault(STATUS[code], []).append(code)
    return {str(status): {
        "description": "; ".join(f"`{code}`: {CATALOGUE[code]}" for code in names),
        "content": {"application/json": {"schema": {"allOf": [
            {"$ref": "#/components/schemas/Problem"},
            {"type": "object", "properties": {"code": {"type": "string", "enum": names}}},
        ]}}},
    } for status, names in sorted(by_status.items())}
