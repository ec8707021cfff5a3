"""The protocol's error vocabulary and the exceptions its checks raise.

Every error answer is ``{"code", "message"}`` with one of ``REQUEST_ERRORS``'
codes and its HTTP status; a rejected event carries one of
``REJECTION_CODES``. docs/sync-protocol.md lists the same codes (a test keeps
the two equal), so a platform implementing the document and the lane agree.
"""

from __future__ import annotations

# code -> HTTP status of an error answer to a request.
REQUEST_ERRORS: dict[str, int] = {
    "malformed_batch": 400,
    "malformed_authorisation": 400,
    "malformed_token_use": 400,
    "malformed_birthday_claim": 400,
    "bad_cursor": 400,
    "bad_limit": 400,
    "bad_lane_id": 400,
    "bad_content_length": 400,
    "malformed_request": 400,
    "missing_signature": 401,
    "bad_signature": 401,
    "stale_timestamp": 401,
    "unknown_store": 401,
    "store_mismatch": 403,
    "lane_mismatch": 403,
    "not_found": 404,
    "unknown_voucher": 404,
    "no_program": 404,
    "method_not_allowed": 405,
    "length_required": 411,
    "batch_too_large": 413,
    "unsupported_encoding": 415,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}

# code -> retryable, for an event central answers ``rejected``.
REJECTION_CODES: dict[str, bool] = {
    "seq_gap": True,
    "seq_conflict": False,
    "event_id_reused": False,
    "unknown_member": False,
    "member_deleted": False,
    "unknown_type": False,
    "malformed_event": False,
    "bad_timestamp": False,
    "bad_points": False,
    "voucher_used": False,
    "voucher_other_member": False,
    "token_replayed": False,
    "identifier_taken": False,
    "counted_by_earlier_identity": False,
    "voucher_code_taken": False,
    "authorisation_used": False,
    "return_repeated": False,
    "accrual_repeated": False,
    "return_exceeds_sale": False,
}

RETRYABLE_CODES = frozenset(code for code, retryable in REJECTION_CODES.items() if retryable)
# Rejections that are central's flag, not a fault: central recorded the event and flagged it (a member
# token used at another lane: a fraud signal for central's side). The lane has nothing to repair: it
# counts and reports them, and does not quarantine the event.
FLAG_CODES = frozenset({"token_replayed"})


class SyncError(Exception):
    """Base of every error raised by posd.sync."""


class CentralProtocolError(SyncError):
    """Central's answer does not follow the protocol (bad JSON, wrong shape, 3xx)."""


class RequestRejected(SyncError):
    """A request that fails the protocol's checks; ``code`` is the stable answer code."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code

    @property
    def status(self) -> int:
        return REQUEST_ERRORS[self.code]


class SignatureError(RequestRejected):
    """missing_signature | bad_signature | stale_timestamp."""


class BatchError(RequestRejected):
    """malformed_batch | batch_too_large."""
