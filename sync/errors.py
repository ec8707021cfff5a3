"""The sync layer's own small exception hierarchy.

Foreign exceptions (requests, json, zlib) are translated at the boundary with
``raise ... from exc`` so callers handle a handful of meaningful cases:

- ``CentralUnavailable``: try again later (5xx, 429, timeouts, resets).
- ``CentralAuthError``: our credentials or clock are wrong; retrying soon is
  pointless and looks like an attack, so the relay stops and alerts.
- ``CentralRequestRejected``: central refused this request as malformed or too
  large; resending it unchanged will not help.
- ``CentralProtocolError``: central answered something we cannot understand.
- ``LaneIdentityConflict``: central's history of our lane id is partly ours,
  partly not (a restored backup); the relay holds everything and alerts.
- ``RequestRejected`` (``SignatureError``, ``BatchError``): raised by the pure
  protocol checks on the receiving side; central maps them to 4xx answers.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error raised by posd.sync."""


class CentralUnavailable(SyncError):
    """Central could not be reached or asked us to come back later."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds central asked us to wait, if it said
        self.status = status  # HTTP status, None for transport failures


class CentralAuthError(SyncError):
    """401/403: bad secret, wrong store, or a clock too far off (stale_timestamp)."""

    def __init__(self, message: str, *, status: int, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class CentralRequestRejected(SyncError):
    """Another 4xx: the request itself is wrong (malformed, too large)."""

    def __init__(self, message: str, *, status: int, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class CentralProtocolError(SyncError):
    """Central's answer does not follow the protocol (bad JSON, wrong shape, 3xx)."""


class LaneIdentityConflict(SyncError):
    """Central's history of our lane id is not this ledger's, and this ledger has events central
    acknowledged under it (a restored backup?): pushing would reuse (lane, seq). A person decides."""


class RequestRejected(SyncError):
    """A request that fails the protocol's checks; ``code`` is the stable answer code."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code


class SignatureError(RequestRejected):
    """missing_signature | bad_signature | stale_timestamp."""


class BatchError(RequestRejected):
    """malformed_batch | batch_too_large."""
