"""HTTP details the protocol relies on: the program's ETag, Retry-After and Date."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any


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
