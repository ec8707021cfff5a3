"""HTTP details the protocol relies on: central's base URL, the program's ETag, Retry-After and Date."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit


BASE_URL_SHAPE = "http(s)://host[:port][/prefix]"


def base_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as central's base URL (BASE_URL_SHAPE), or None. The lane's client,
    the config check and the conformance kit all ask this. The URL itself is never repeated: user info
    may hold a password."""
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
        return "it is not an http(s) URL"
    if "?" in url or "#" in url:  # posd appends its own paths (/v1/...): even an empty one breaks them
        return "it has a query (?) or fragment (#)"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a malformed [IPv6] host
        return f"it is malformed ({exc})"
    if "@" in parts.netloc:
        return "it has a user name or password in it (requests are signed with the store secret)"
    host_port = parts.netloc.rpartition("]")[2]  # after an [IPv6] address
    port = host_port.rpartition(":")[2] if ":" in host_port else ""
    if port and not (port.isascii() and port.isdigit()):
        return "its port is not written in the digits 0-9"
    try:
        number = parts.port  # raises for a port out of range
    except ValueError as exc:
        return f"its port is wrong ({exc})"
    if not parts.hostname:
        return "it has no host"
    if number == 0:
        return "its port must be 1-65535"
    return None


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


# What a request the HTTP parser refuses gets (a Content-Length that is no number, two that differ, one
# beside chunked Transfer-Encoding, a malformed request line or header): uvicorn answers those itself,
# before any app sees them, in plain text. Central (the protocol's JSON) and the lane's API (its own)
# answer them with unparseable_answer instead.
MALFORMED_REQUEST = "malformed_request"
MALFORMED_REQUEST_MESSAGE = ("the request is not HTTP/1.1 that can be read: a bad or conflicting "
                             "Content-Length or Transfer-Encoding, or a malformed request line or header")


def unparseable_answer(default_headers: Iterable[tuple[bytes, bytes]], message: str) -> bytes:
    """The whole 400 ``malformed_request`` answer (status line, the server's ``default_headers``, a
    JSON {code, message}) to such a request; the connection closes after it, as the parser cannot
    tell where the next request would start."""
    body = json.dumps({"code": MALFORMED_REQUEST, "message": message}).encode()
    head = [b"HTTP/1.1 400 Bad Request\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [b"content-type: application/json\r\n", b"content-length: " + str(len(body)).encode() + b"\r\n",
             b"connection: close\r\n\r\n"]
    return b"".join(head) + body
