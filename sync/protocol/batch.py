"""Pushes on the wire: the gzip batch codec, the checks on each event, central's answers.

Pure functions, no I/O. The lane's client encodes and reads answers with
them, the reference central decodes and answers with them, so the two can
never drift apart.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

from posd.sync.protocol.birthdays import is_award_year
from posd.sync.protocol.errors import RETRYABLE_CODES, BatchError, CentralProtocolError
from posd.sync.protocol.limits import (MAX_AUTHORISATION_ID_LEN, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_CODE_LEN,
                                       MAX_ID_LEN, MAX_POINTS, MAX_SEQ)
from posd.sync.protocol.shapes import CONTROL, EVENT_TYPES, RESULT_STATUSES, EventResult, is_id


def batch_json(batch_id: str, events: list[dict[str, Any] | str]) -> bytes:
    """Compact UTF-8 JSON of a batch; its length is what the size limit counts. An event given as
    its JSON text (the lane's outbox keeps each event encoded) goes in as it is: a drain's thousand
    events per push are not decoded and encoded again."""
    if not any(isinstance(e, str) for e in events):
        doc = {"batch_id": batch_id, "events": events}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    items = ",".join(e if isinstance(e, str) else json.dumps(e, separators=(",", ":"), ensure_ascii=False)
                     for e in events)
    return f'{{"batch_id":{json.dumps(batch_id, ensure_ascii=False)},"events":[{items}]}}'.encode("utf-8")


def encode_batch(batch_id: str, events: list[dict[str, Any] | str]) -> bytes:
    """The gzip body of a push. mtime=0 keeps the bytes reproducible."""
    return gzip.compress(batch_json(batch_id, events), compresslevel=6, mtime=0)


MAX_GZIP_MEMBERS = 64  # more members than any writer makes: each costs a header's work, not a byte of data


def decode_batch(
    body: bytes, *, max_bytes: int = MAX_BATCH_BYTES, max_events: int = MAX_BATCH_EVENTS,
    loads: Callable[[bytes], Any] = json.loads,
) -> tuple[str, list[dict[str, Any]]]:
    """(batch_id, events) from a gzip body, or BatchError.

    ``loads``: the JSON parser; one that must read what ``json.loads`` reads, the same way
    (central passes a faster one that hands anything unusual back to ``json.loads``).

    Decompression stops one byte past ``max_bytes`` so a zip bomb costs at most
    that much memory. Only the envelope is checked here (ids, ascending seqs);
    each event's content is checked by validate_event, since a bad event is
    answered per event, not by refusing the batch.
    """
    raw, rest, members = b"", body, 0
    while True:  # a gzip file may hold several members, one after another (RFC 1952): their data joined
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container only
        try:
            raw += inflater.decompress(rest, max_bytes + 1 - len(raw))
        except zlib.error as exc:
            raise BatchError("malformed_batch", "body is not gzip") from exc
        members += 1
        if len(raw) > max_bytes or inflater.unconsumed_tail:
            raise BatchError("batch_too_large", f"batch is over {max_bytes} bytes uncompressed")
        if not inflater.eof:
            raise BatchError("malformed_batch", "gzip stream is truncated")
        rest = inflater.unused_data
        if not rest:
            break
        if not rest.startswith(b"\x1f\x8b") or members >= MAX_GZIP_MEMBERS:
            raise BatchError("malformed_batch", "gzip stream has trailing data")
    try:
        doc = loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BatchError("malformed_batch", "batch is not JSON") from exc
    return _check_envelope(doc, max_events)


def _check_envelope(doc: Any, max_events: int) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(doc, dict):
        raise BatchError("malformed_batch", "batch is not an object")
    batch_id, events = doc.get("batch_id"), doc.get("events")
    if not is_id(batch_id):
        raise BatchError("malformed_batch", f"batch_id must be a string of 1-{MAX_ID_LEN} characters")
    if not isinstance(events, list) or not events:
        raise BatchError("malformed_batch", "events must be a non-empty list")
    if len(events) > max_events:
        raise BatchError("batch_too_large", f"more than {max_events} events")
    previous = 0
    seen: set[str] = set()
    for event in events:
        if not isinstance(event, dict):
            raise BatchError("malformed_batch", "every event must be an object")
        seq = event.get("seq")
        if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
            raise BatchError("malformed_batch", "every event needs an integer seq >= 1")
        if seq <= previous:
            raise BatchError("malformed_batch", "seqs must be strictly ascending within a batch")
        if not is_id(event.get("event_id")):
            raise BatchError("malformed_batch", f"every event needs an event_id of 1-{MAX_ID_LEN} characters")
        if event["event_id"] in seen:  # one event twice, under two seqs: it would be applied twice
            raise BatchError("malformed_batch", "an event_id appears twice in the batch")
        seen.add(event["event_id"])
        previous = seq
    return batch_id, events


# The ids a burn's event names, with their limits: the authorisation route's for its id (a lane
# asks with the id its event carries), an id's for central's reservation and the program's reward.
_BURN_IDS = (("authorisation_id", MAX_AUTHORISATION_ID_LEN), ("reservation_id", MAX_ID_LEN),
             ("reward_id", MAX_ID_LEN))


def validate_event(event: dict[str, Any], text: str | None = None) -> str | None:
    """The rejection code for an event whose content is wrong, None when it is fine.

    ``text``: the event as ``json.dumps(event, ensure_ascii=False)`` or orjson wrote it (any separators),
    when the caller has it (central stores that text): its characters make the text check one scan
    (see clean_text).
    Central-side facts (is the member known?) are checked by central itself.
    """
    if not isinstance(event.get("type"), str) or event["type"] not in EVENT_TYPES:  # a list or an object too
        return "unknown_type"
    if too_deep(event, text):
        return "malformed_event"
    if not is_id(event.get("member_id")) or not clean_text(event, text) or not finite(event, text):
        return "malformed_event"
    if event["type"] == "member_enrolled" and not _enrolment_fields(event):
        return "malformed_event"
    if event.get("provisional") is not None and not isinstance(event["provisional"], bool):
        # "yes" or 1 is not true: it would enrol a member under the lane's made-up id
        return "malformed_event"
    txn = event.get("transaction_id")
    if txn is not None and not is_id(txn):
        return "malformed_event"
    if event["type"] == "return" and (txn is None or not is_id(event.get("return_id"))):
        return "malformed_event"  # a return is its sale's and its own: without both, no resend is ever told apart
    if any(event.get(k) is not None and not is_id(event[k], limit)  # kept as text, looked up as text
           for k, limit in _BURN_IDS):  # an id past the limit is no id a lane made, and no index takes it
        return "malformed_event"
    code = event.get("voucher_code")
    if code is not None and not is_id(code, MAX_CODE_LEN):
        return "malformed_event"
    award = event.get("birthday_award_year")  # an accrual that gave the birthday bonus: its store-local year
    if award is not None and (event["type"] != "accrual" or txn is None or not is_award_year(award)):
        return "malformed_event"
    if not isinstance(event.get("program_version"), str) or not isinstance(event.get("offline"), bool):
        return "malformed_event"
    lines = event.get("lines")
    if lines is not None and not (isinstance(lines, list) and all(_line(line) for line in lines)):
        return "malformed_event"
    if parse_utc(event.get("occurred_at"), strict=True) is None:
        return "bad_timestamp"
    points = event.get("points")
    if not isinstance(points, dict):
        return "bad_points"
    for currency, delta in points.items():
        if not currency or len(currency) > 32 or not _is_int(delta) or abs(delta) > MAX_POINTS:
            return "bad_points"
    kind = event["type"]
    if kind in ("token_use", "voucher_use") and any(points.values()):
        return "bad_points"  # a member shown or a voucher taken moves no points
    if kind in ("accrual", "member_enrolled") and any(delta < 0 for delta in points.values()):
        return "bad_points"  # a sale earns, an enrolment starts a member: neither takes points away
    if kind in ("return", "redemption") and any(delta > 0 for delta in points.values()):
        return "bad_points"  # a return takes back what its sale earned, a redemption spends: never a gain
    return None


# How deep an event's objects and lists may nest. Real events nest three or four levels (lines, lots);
# one nested hundreds deep is read, but comparing it with its resend, or writing it back out, runs
# out of stack: rejected malformed_event, alone, instead of a 500 that every resend meets again.
MAX_EVENT_DEPTH = 32


def too_deep(event: dict[str, Any], text: str | None = None) -> bool:
    """Do the event's objects and lists nest deeper than MAX_EVENT_DEPTH (the event itself is 1)?
    ``text``, the event as JSON: fewer brackets than the limit in all prove it shallow in one scan."""
    if text is not None and text.count("{") + text.count("[") <= MAX_EVENT_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_EVENT_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, dict | list))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, dict | list))
    return False


# Characters no event may carry in any string, key or value: NUL and unpaired surrogates (no
# engine stores them alike: PostgreSQL's text and jsonb refuse NUL, UTF-8 has no lone surrogate).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(event: dict[str, Any], text: str | None = None) -> bool:
    """No string of the event (keys included, at any depth) carries a control character or an
    unpaired surrogate; inside ``voucher`` only the unstorable ones count.

    ``text``, the event's ``json.dumps(..., ensure_ascii=False)`` or ``orjson.dumps``: both write every
    string's characters as they are except C0 controls and the characters they escape with a backslash, so a
    text without a backslash and without a control character or surrogate proves the event clean in
    one scan. Anything else is walked value by value, as without ``text``."""
    if text is not None and "\\" not in text and not CONTROL.search(text):
        return True
    stack: list[tuple[Any, re.Pattern[str]]] = [(event, CONTROL)]
    while stack:
        value, pattern = stack.pop()
        if isinstance(value, str):
            if pattern.search(value):
                return False
        elif isinstance(value, dict):
            for key, item in value.items():
                if CONTROL.search(key):
                    return False
                stack.append((item, UNSTORABLE if key == "voucher" and value is event else pattern))
        elif isinstance(value, list):
            stack.extend((item, pattern) for item in value)
    return True


def finite(event: dict[str, Any], text: str | None = None) -> bool:
    """No number of the event is NaN or infinite (json reads NaN, Infinity and 1e400 in a push; no
    engine stores them alike: PostgreSQL's jsonb refuses them, SQLite keeps them as text).

    ``text``, the event as central stores it (json writes those as NaN, Infinity, -Infinity; see
    posd.sync.central.codec): one without either word proves every number finite in one scan."""
    if text is not None and "NaN" not in text and "Infinity" not in text:
        return True
    stack: list[Any] = [event]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


def _line(line: Any) -> bool:
    """A basket line: an object whose sku and category are strings or null."""
    return isinstance(line, dict) and all(line.get(k) is None or isinstance(line[k], str) for k in ("sku", "category"))


def _enrolment_fields(event: dict[str, Any]) -> bool:
    """member_enrolled's profile: identifiers a list of ids, display_name and locale strings,
    birth_date a calendar date (YYYY-MM-DD); each may be left out or null."""
    identifiers = event.get("identifiers")
    if identifiers is not None and not (isinstance(identifiers, list) and all(is_id(i) for i in identifiers)):
        return False
    for key, limit in (("display_name", 256), ("locale", 16)):
        value = event.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            return False
    birth = event.get("birth_date")
    if birth is None:
        return True
    try:
        return isinstance(birth, str) and len(birth) == 10 and date.fromisoformat(birth) is not None
    except ValueError:
        return False


# date, 'T', time to the second, an optional fraction, a zero offset: RFC 3339's profile of ISO-8601, which
# every platform reads alike (fromisoformat alone takes a space for the 'T', week dates and "00.Z" too)
_UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]00:00)", re.ASCII)


def parse_utc(value: Any, *, strict: bool = False) -> datetime | None:
    """An ISO-8601 timestamp with a zero UTC offset ('Z' or +00:00), else None. ``strict``: only in
    RFC 3339's form (_UTC_TIMESTAMP), as what a lane sends is checked; values read back from a
    database or an answer are read as they were kept."""
    if not isinstance(value, str) or len(value) > 40 or (strict and not _UTC_TIMESTAMP.fullmatch(value)):
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
        if not isinstance(item, dict) or not _is_int(item.get("seq")) or not isinstance(item.get("status"), str) \
                or item["status"] not in RESULT_STATUSES:
            raise CentralProtocolError(f"malformed result: {str(item)[:120]}")
        code = item.get("code")
        if code is not None and not isinstance(code, str):
            raise CentralProtocolError("result code must be a string")
        rejected = item["status"] == "rejected"
        if rejected and not code:  # the code says whether to retry or set it aside: no guess at either
            raise CentralProtocolError(f"rejected result without a code: {str(item)[:120]}")
        flag = item.get("flag")
        if flag is not None and not isinstance(flag, str):
            raise CentralProtocolError("result flag must be a string")
        event_id = item.get("event_id")
        if event_id is not None and not isinstance(event_id, str):
            raise CentralProtocolError("result event_id must be a string")
        results.append(
            EventResult(
                seq=item["seq"],
                status=item["status"],
                code=code if rejected else None,
                retryable=rejected and item.get("retryable") is True,
                flag=None if rejected else flag,
                event_id=event_id,
            )
        )
    return results


def result_wire(seq: int, event_id: str, status: str, code: str | None = None,
                member_id: str | None = None, flag: str | None = None) -> dict[str, Any]:
    """One entry of a push answer as central writes it; ``member_id``: central's id for a member a
    provisional enrolment mapped to; ``flag``: what central noticed about an accepted event
    (``birthday_repeated``), information for the lane, nothing to repair."""
    item: dict[str, Any] = {"seq": seq, "event_id": event_id, "status": status}
    if code is not None:
        item["code"] = code
        item["retryable"] = code in RETRYABLE_CODES
    if member_id is not None:
        item["member_id"] = member_id
    if flag is not None:
        item["flag"] = flag
    return item


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
