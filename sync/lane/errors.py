"""What the lane's side raises when talking to central.

Foreign exceptions (requests, json, zlib) are translated at the boundary with
``raise ... from exc`` so callers handle a handful of meaningful cases:

- ``CentralUnavailable``: try again later (5xx, 429, timeouts, resets).
- ``CentralAuthError``: our credentials or clock are wrong; retrying soon is
  pointless and looks like an attack, so the relay stops and alerts.
- ``CentralRequestRejected``: central refused this request as malformed or too
  large; resending it unchanged will not help.
- ``CentralProtocolError`` (from the protocol): central answered something we
  cannot understand.
- ``LaneIdentityConflict``: central's history of our lane id is partly ours,
  partly not (a restored backup); the relay holds everything and alerts.

All are ``posd.sync.protocol.SyncError``s.
"""

from __future__ import annotations

from posd.sync.protocol.errors import CentralProtocolError, SyncError

__all__ = ["CentralAuthError", "CentralProtocolError", "CentralRequestRejected", "CentralUnavailable",
           "LaneIdentityConflict", "NotAsked", "SyncError"]


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


class NotAsked(SyncError):
    """The question never left the lane (its lane id not checked yet, within the budget): central holds
    nothing for it, so nothing is given back."""

    sent = False


class LaneIdentityConflict(SyncError):
    """Central's history of our lane id is not this ledger's, and this ledger has events central
    acknowledged under it (a restored backup?): pushing would reuse (lane, seq). A person decides.
    ``central_last_seq``: where central's history of the lane ends, when the lane's check asked it."""

    def __init__(self, message: str, central_last_seq: int | None = None):
        super().__init__(message)
        self.central_last_seq = central_last_seq
