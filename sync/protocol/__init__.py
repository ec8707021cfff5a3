"""The posd <-> central wire protocol, shared by both sides and by neither's code.

Pure: no I/O, no clock (``now`` is always passed in), only the standard
library, and it imports neither the lane's side (``posd.sync.lane``) nor the
reference central (``posd.sync.central``). docs/sync-protocol.md is the prose
version of this package.

- ``limits``: batch sizes, id lengths, clock tolerance, page size, lane ids;
- ``errors``: the error and rejection codes, and the exceptions the checks raise;
- ``shapes``: event types and the per-event answer (``EventResult``);
- ``signing``: the HMAC headers, signing and verifying;
- ``batch``: the gzip batch codec, event checks, push answers;
- ``http``: the program's ETag, Retry-After and Date;
- ``burn``: burn authorisations and their answers, vouchers as central registers them;
- ``tokens``: member token claims (is this token still unused, chain-wide?) and their answers;
- ``birthdays``: birthday bonus claims (is this member's year still free, chain-wide?) and their answers.

The names below are the package's public surface; import them from here.
"""

from __future__ import annotations

from posd.sync.protocol.batch import (
    UNSTORABLE,
    batch_json,
    decode_batch,
    encode_batch,
    parse_results,
    parse_utc,
    result_wire,
    validate_event,
)
from posd.sync.protocol.birthdays import (
    BIRTHDAY_CLAIM_STATUSES,
    BIRTHDAY_REPEATED,
    MAX_BIRTHDAY_CLAIM_BYTES,
    birthday_claim_answer,
    birthday_claim_json,
    is_award_year,
    parse_birthday_claim,
    parse_birthday_claim_answer,
)
from posd.sync.protocol.burn import (
    AUTHORISATION_KINDS,
    DECLINE_CODES,
    MAX_AUTHORISATION_BYTES,
    MAX_UNSYNCED_EVENTS,
    RELEASE_STATES,
    VOUCHER_ONCE_PER,
    approved,
    authorisation_json,
    check_voucher,
    issuable_code,
    declined,
    never_spent,
    parse_authorisation,
    parse_authorisation_answer,
    parse_release,
    parse_release_answer,
    parse_voucher_answer,
    release_answer,
    release_json,
)
from posd.sync.protocol.errors import (
    FLAG_CODES,
    REJECTION_CODES,
    REQUEST_ERRORS,
    RETRYABLE_CODES,
    BatchError,
    CentralProtocolError,
    RequestRejected,
    SignatureError,
    SyncError,
)
from posd.sync.protocol.http import (
    BASE_URL_SHAPE,
    base_url_problem,
    etag_matches,
    parse_http_date,
    parse_retry_after,
    program_etag,
)
from posd.sync.protocol.limits import (
    LANE_ID_RE,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_ID_LEN,
    MAX_MEMBER_PAGE,
    MAX_POINTS,
    MAX_SEQ,
    TIMESTAMP_TOLERANCE_S,
)
from posd.sync.protocol.shapes import EVENT_TYPES, RESULT_STATUSES, TOKEN_SCHEMES, EventResult, EventStatus
from posd.sync.protocol.tokens import (
    MAX_TOKEN_CLAIM_BYTES,
    TOKEN_CLAIM_STATUSES,
    parse_token_claim,
    parse_token_claim_answer,
    token_claim_answer,
    token_claim_json,
)
from posd.sync.protocol.signing import (
    HEADER_LANE,
    HEADER_SIGNATURE,
    HEADER_STORE,
    HEADER_TIMESTAMP,
    SIGNATURE_SCHEME,
    header,
    secret_from_text,
    sign_request,
    signed_headers,
    signing_payload,
    verify_request,
)

__all__ = [
    "BASE_URL_SHAPE", "base_url_problem",
    "AUTHORISATION_KINDS", "DECLINE_CODES", "MAX_AUTHORISATION_BYTES", "MAX_UNSYNCED_EVENTS", "VOUCHER_ONCE_PER",
    "approved", "authorisation_json", "check_voucher", "declined", "issuable_code", "never_spent", "parse_authorisation",
    "parse_authorisation_answer", "parse_voucher_answer",
    "RELEASE_STATES", "parse_release", "parse_release_answer", "release_answer", "release_json",
    "EVENT_TYPES", "HEADER_LANE", "HEADER_SIGNATURE", "HEADER_STORE", "HEADER_TIMESTAMP", "LANE_ID_RE",
    "MAX_BATCH_BYTES", "MAX_BATCH_EVENTS", "MAX_ID_LEN", "MAX_MEMBER_PAGE", "MAX_POINTS", "MAX_SEQ",
    "REJECTION_CODES", "REQUEST_ERRORS", "RESULT_STATUSES", "RETRYABLE_CODES", "SIGNATURE_SCHEME",
    "TIMESTAMP_TOLERANCE_S", "TOKEN_SCHEMES", "UNSTORABLE", "BatchError", "CentralProtocolError", "EventResult",
    "EventStatus",
    "RequestRejected", "SignatureError", "SyncError", "batch_json", "decode_batch", "encode_batch",
    "etag_matches", "header", "parse_http_date", "parse_results", "parse_retry_after", "parse_utc",
    "program_etag", "result_wire", "secret_from_text", "sign_request", "signed_headers", "signing_payload",
    "validate_event", "verify_request",
    "MAX_TOKEN_CLAIM_BYTES", "TOKEN_CLAIM_STATUSES", "parse_token_claim", "parse_token_claim_answer",
    "token_claim_answer", "token_claim_json", "FLAG_CODES",
    "BIRTHDAY_CLAIM_STATUSES", "BIRTHDAY_REPEATED", "MAX_BIRTHDAY_CLAIM_BYTES", "birthday_claim_answer",
    "birthday_claim_json", "is_award_year", "parse_birthday_claim", "parse_birthday_claim_answer",
]
