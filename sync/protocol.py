"""The posd <-> central wire protocol as pure functions.

No I/O and no clock: ``now`` is always passed in. Both sides use this module,
the lane's client to sign and encode, the reference central to verify and
decode, so the two can never drift apart. docs/sync-protocol.md is the prose
version of this file.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import math
import re
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from posd.sync.errors import BatchError, CentralProtocolError, SignatureError
from posd.sync.ports import EventResult

HEADER_STORE = "X-Posd-Store"
HEADER_LANE = "X-Posd-Lane"
HEADER_TIMESTAMP = "X-Posd-Timestamp"
HEADER_SIGNATURE = "X-Posd-Signature"
SIGNATURE_SCHEME = "v1"
TIMESTAMP_TOLERANCE_S = 300

MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 1_000_000  # uncompressed JSON of the whole batch
MAX_ID_LEN = 128
MAX_POINTS = 10**12  # far above any real delta, far below SQLite's int64
MAX_SEQ = 2**62

EVENT_TYPES = frozenset({"accrual", "return", "redemption", "voucher_use", "member_enrolled"})
RESULT_STATUSES = frozenset({"accepted", "duplicate", "rejected"})
RETRYABLE_CODES = frozenset({"seq_gap"})

_TS_RE = re.compile(r"^[0-9]{1,12}$")


def secret_from_text(text: str) -> bytes:
    """The HMAC key for a configured secret: ``hex:<hex digits>`` or plain text (UTF-8).

    Both the lane's config and central's seed use this, so one written form
    always means the same key bytes.
    """
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError as exc:
            raise ValueError("secret after 'hex:' is not valid hex") from exc
    if not text:
        raise ValueError("secret is empty")
    return text.encode("utf-8")


# --- signing -----------------------------------------------------------------


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
    if abs(now - int(ts_text)) > TIMESTAMP_TOLERANCE_S:
        raise SignatureError("stale_timestamp", f"timestamp is more than {TIMESTAMP_TOLERANCE_S} s off")


# --- batches -------------------------------------------------------------------


def batch_json(batch_id: str, events: list[dict[str, Any]]) -> bytes:
    """Compact UTF-8 JSON of a batch; its length is what the size limit counts."""
    doc = {"batch_id": batch_id, "events": events}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_batch(batch_id: str, events: list[dict[str, Any]]) -> bytes:
    """The gzip body of a push. mtime=0 keeps the bytes reproducible."""
    return gzip.compress(batch_json(batch_id, events), compresslevel=6, mtime=0)


def decode_batch(
    body: bytes, *, max_bytes: int = MAX_BATCH_BYTES, max_events: int = MAX_BATCH_EVENTS
) -> tuple[str, list[dict[str, Any]]]:
    """(batch_id, events) from a gzip body, or BatchError.

    Decompression stops one byte past ``max_bytes`` so a zip bomb costs at most
    that much memory. Only the envelope is checked here (ids, ascending seqs);
    each event's content is checked by validate_event, since a bad event is
    answered per event, not by refusing the batch.
    """
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container only
    try:
        raw = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BatchError("malformed_batch", "body is not gzip") from exc
    if len(raw) > max_bytes or inflater.unconsumed_tail:
        raise BatchError("batch_too_large", f"batch is over {max_bytes} bytes uncompressed")
    if not inflater.eof or inflater.unused_data:
        raise BatchError("malformed_batch", "gzip stream is truncated or has trailing data")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BatchError("malformed_batch", "batch is not JSON") from exc
    return _check_envelope(doc, max_events)


def _check_envelope(doc: Any, max_events: int) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(doc, dict):
        raise BatchError("malformed_batch", "batch is not an object")
    batch_id, events = doc.get("batch_id"), doc.get("events")
    if not _is_id(batch_id):
        raise BatchError("malformed_batch", "batch_id must be a non-empty string")
    if not isinstance(events, list) or not events:
        raise BatchError("malformed_batch", "events must be a non-empty list")
    if len(events) > max_events:
        raise BatchError("batch_too_large", f"more than {max_events} events")
    previous = 0
    for event in events:
        if not isinstance(event, dict):
            raise BatchError("malformed_batch", "every event must be an object")
        seq = event.get("seq")
        if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
            raise BatchError("malformed_batch", "every event needs an integer seq >= 1")
        if seq <= previous:
            raise BatchError("malformed_batch", "seqs must be strictly ascending within a batch")
        if not _is_id(event.get("event_id")):
            raise BatchError("malformed_batch", "every event needs an event_id")
        previous = seq
    return batch_id, events


def validate_event(event: dict[str, Any]) -> str | None:
    """The rejection code for an event whose content is wrong, None when it is fine.

    Central-side facts (is the member known?) are checked by central itself.
    """
    if event.get("type") not in EVENT_TYPES:
        return "unknown_type"
    if not _is_id(event.get("member_id")):
        return "malformed_event"
    txn = event.get("transaction_id")
    if txn is not None and not _is_id(txn):
        return "malformed_event"
    if not isinstance(event.get("program_version"), str) or not isinstance(event.get("offline"), bool):
        return "malformed_event"
    if event.get("lines") is not None and not isinstance(event["lines"], list):
        return "malformed_event"
    if parse_utc(event.get("occurred_at")) is None:
        return "bad_timestamp"
    points = event.get("points")
    if not isinstance(points, dict):
        return "bad_points"
    for currency, delta in points.items():
        if not currency or len(currency) > 32 or not _is_int(delta) or abs(delta) > MAX_POINTS:
            return "bad_points"
    return None


def parse_utc(value: Any) -> datetime | None:
    """An ISO-8601 timestamp with a zero UTC offset ('Z' or +00:00), else None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() != timezone.utc.utcoffset(None):
        return None
    return parsed


def parse_results(answer: Any, *, batch_id: str | None = None) -> list[EventResult]:
    """Central's per-event answers to a push, or CentralProtocolError."""
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise CentralProtocolError("push answer has no results list")
    if batch_id is not None and answer.get("batch_id") != batch_id:
        raise CentralProtocolError("push answer is for another batch")
    results = []
    for item in answer["results"]:
        if not isinstance(item, dict) or not _is_int(item.get("seq")) or item.get("status") not in RESULT_STATUSES:
            raise CentralProtocolError(f"malformed result: {str(item)[:120]}")
        code = item.get("code")
        if code is not None and not isinstance(code, str):
            raise CentralProtocolError("result code must be a string")
        rejected = item["status"] == "rejected"
        results.append(
            EventResult(
                seq=item["seq"],
                status=item["status"],
                code=code if rejected else None,
                retryable=rejected and item.get("retryable") is True,
            )
        )
    return results


def result_wire(seq: int, event_id: str, status: str, code: str | None = None) -> dict[str, Any]:
    """One entry of a push answer as central writes it."""
    item: dict[str, Any] = {"seq": seq, "event_id": event_id, "status": status}
    if code is not None:
        item["code"] = code
        item["retryable"] = code in RETRYABLE_CODES
    return item


# --- program ETag, Retry-After, Date ----------------------------------------------


def program_etag(program: dict[str, Any]) -> str:
    """A strong ETag over the canonical JSON of the program."""
    canonical = json.dumps(program, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match list against our ETag."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for candidate in _split_list(if_none_match):
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


def _split_list(value: str) -> Iterable[str]:
    return (part.strip() for part in value.split(",") if part.strip())


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    when = parse_http_date(value)
    return None if when is None else max(0.0, when - now)


def parse_http_date(value: str | None) -> float | None:
    """Unix seconds from an HTTP-date (Date, Retry-After), None if absent or unparseable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN
