"""Signing a request and verifying it: HMAC-SHA256 over timestamp, method, path and body.

No I/O and no clock: ``now`` is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from typing import Any

from posd.sync.protocol.errors import SignatureError
from posd.sync.protocol.limits import TIMESTAMP_TOLERANCE_S

HEADER_STORE = "X-Posd-Store"
HEADER_LANE = "X-Posd-Lane"
HEADER_TIMESTAMP = "X-Posd-Timestamp"
HEADER_SIGNATURE = "X-Posd-Signature"
SIGNATURE_SCHEME = "v1"

_TS_RE = re.compile(r"^[0-9]{1,12}$")


def secret_from_text(text: str) -> bytes:
    """The HMAC key for a configured secret: ``hex:<hex digits>`` or plain text (UTF-8).

    Both the lane's config and central's seed use this, so one written form
    always means the same key bytes.
    """
    if text.startswith("hex:"):
        try:
            key = bytes.fromhex(text[4:])
        except ValueError as exc:
            raise ValueError("secret after 'hex:' is not valid hex") from exc
        if not key:
            raise ValueError("secret is empty (nothing after 'hex:')")
        return key
    if not text:
        raise ValueError("secret is empty")
    return text.encode("utf-8")


def signing_payload(ts: int, method: str, path_qs: str, body: bytes) -> bytes:
    """The exact bytes that are signed: ts, METHOD and path?query on lines, then the raw body."""
    return f"{ts}\n{method.upper()}\n{path_qs}\n".encode("utf-8") + body


def sign_request(secret: bytes, ts: int, method: str, path_qs: str, body: bytes) -> str:
    """The ``X-Posd-Signature`` value, ``v1=<hex HMAC-SHA256>``."""
    mac = hmac.new(secret, signing_payload(ts, method, path_qs, body), hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def signed_headers(
    secret: bytes, store_id: str, lane_id: str | None, ts: int, method: str, path_qs: str, body: bytes
) -> dict[str, str]:
    """All the protocol headers for one request."""
    headers = {
        HEADER_STORE: store_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: sign_request(secret, ts, method, path_qs, body),
    }
    if lane_id is not None:
        headers[HEADER_LANE] = lane_id
    return headers


def header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """Case-insensitive header lookup over a dict, email.message.Message or CaseInsensitiveDict."""
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for key, val in headers.items():
        if key.lower() == lname:
            return val
    return None


def verify_request(
    secret: bytes, headers: Mapping[str, str] | Any, method: str, path_qs: str, body: bytes, now: float
) -> None:
    """Raise SignatureError unless the request is signed with ``secret`` within the tolerance.

    The signature is checked before the clock, so ``stale_timestamp`` tells an
    authentic lane that its clock is off rather than telling anyone anything.
    """
    ts_text = header(headers, HEADER_TIMESTAMP)
    sig = header(headers, HEADER_SIGNATURE)
    if not ts_text or not sig:
        raise SignatureError("missing_signature", "X-Posd-Timestamp and X-Posd-Signature are required")
    ts_text = ts_text.strip()
    if not _TS_RE.match(ts_text):
        raise SignatureError("bad_signature", "X-Posd-Timestamp is not unix seconds")
    expected = sign_request(secret, int(ts_text), method, path_qs, body)
    if not hmac.compare_digest(expected.encode("ascii"), sig.strip().encode("utf-8", "replace")):
        raise SignatureError("bad_signature", "signature does not match")
    # in whole seconds on both sides, as the header has it: 300 s back at 0.9 s into a second is 300, not 300.9
    if abs(math.floor(now) - int(ts_text)) > TIMESTAMP_TOLERANCE_S:
        raise SignatureError("stale_timestamp", f"timestamp is more than {TIMESTAMP_TOLERANCE_S} s off")
