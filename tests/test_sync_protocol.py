"""posd.sync.protocol: signing, batch encoding, event checks, answers. Pure, no I/O."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.sync import protocol as p
from posd.sync.protocol import BatchError, CentralProtocolError, EventResult, SignatureError
from posd.sync.protocol.batch import clean_text
from tests.support.central_fixture import make_event

SECRET = b"store-secret"
NOW = 1_764_000_000
PATH = "/v1/lanes/S001/L01/batches"


def signed(body: bytes = b"body", method: str = "POST", path: str = PATH, ts: int = NOW) -> dict[str, str]:
    return p.signed_headers(SECRET, "S001", "L01", ts, method, path, body)


# --- signing ---------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_ts_method_path_and_raw_body():
    # The published vector from docs/sync-protocol.md.
    sig = p.sign_request(b"demo-store-secret-change-me", 1764000000, "POST", "/v1/lanes/S001/L01/batches", b"\x1f\x8b")
    payload = b"1764000000\nPOST\n/v1/lanes/S001/L01/batches\n\x1f\x8b"
    assert sig == "v1=" + hmac.new(b"demo-store-secret-change-me", payload, hashlib.sha256).hexdigest()
    assert sig == "v1=bbade999f5272576b7ef5f9cf50a5048eca285b20cb306b121c619549f60733a"
    get = p.sign_request(b"demo-store-secret-change-me", 1764000000, "GET", "/v1/program", b"")
    assert get == "v1=2a0a636922151fad8cd075c3e122fe4234f4af45cc651ad79a639c8dbf8dd73d"


@pytest.mark.parametrize("method, path, body", [("POST", PATH, b"\x1f\x8bgz"), ("GET", "/v1/program", b""),
                                                ("GET", "/v1/stores/S001/members/changes?cursor=&limit=10", b"")])
def test_signed_request_verifies(method, path, body):
    headers = signed(body, method, path)
    assert headers["X-Posd-Store"] == "S001" and headers["X-Posd-Lane"] == "L01"
    p.verify_request(SECRET, headers, method, path, body, NOW)
    p.verify_request(SECRET, headers, method.lower(), path, body, NOW + 300)  # method case-insensitive, edge


def test_header_lookup_is_case_insensitive():
    headers = {k.lower(): v for k, v in signed().items()}
    p.verify_request(SECRET, headers, "POST", PATH, b"body", NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"body": b"bodY"},
        {"path": PATH + "?x=1"},
        {"path": "/v1/lanes/S001/L02/batches"},
        {"method": "PUT"},
        {"secret": b"other-secret"},
    ],
)
def test_tampering_is_a_bad_signature(change):
    headers = signed()
    args = {"secret": SECRET, "method": "POST", "path": PATH, "body": b"body", **change}
    with pytest.raises(SignatureError) as err:
        p.verify_request(args["secret"], headers, args["method"], args["path"], args["body"], NOW)
    assert err.value.code == "bad_signature"


def test_changed_timestamp_header_is_a_bad_signature():
    headers = signed()
    headers["X-Posd-Timestamp"] = str(NOW + 1)
    with pytest.raises(SignatureError, match="does not match") as err:
        p.verify_request(SECRET, headers, "POST", PATH, b"body", NOW)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301])
def test_stale_timestamp(now):
    with pytest.raises(SignatureError) as err:
        p.verify_request(SECRET, signed(), "POST", PATH, b"body", now)
    assert err.value.code == "stale_timestamp"


@pytest.mark.parametrize("now", [NOW + 300, NOW + 300.999, NOW - 300, NOW - 299.5])
def test_a_timestamp_300_whole_seconds_off_either_way_is_within_the_window(now):
    """|now - timestamp| <= 300 s in the header's whole seconds: a lane 300 s behind central, asked
    late in central's second, is not refused where one 300 s ahead is taken."""
    p.verify_request(SECRET, signed(), "POST", PATH, b"body", now)


@pytest.mark.parametrize("drop", ["X-Posd-Signature", "X-Posd-Timestamp"])
def test_missing_signature(drop):
    headers = signed()
    del headers[drop]
    with pytest.raises(SignatureError) as err:
        p.verify_request(SECRET, headers, "POST", PATH, b"body", NOW)
    assert err.value.code == "missing_signature"


@pytest.mark.parametrize("ts", ["1.5e9", "-1", "", " ", "abc"])
def test_malformed_timestamp_is_refused(ts):
    headers = signed()
    headers["X-Posd-Timestamp"] = ts
    with pytest.raises(SignatureError) as err:
        p.verify_request(SECRET, headers, "POST", PATH, b"body", NOW)
    assert err.value.code in ("bad_signature", "missing_signature")


def test_secret_from_text():
    assert p.secret_from_text("plain text") == b"plain text"
    assert p.secret_from_text("hex:00ff") == b"\x00\xff"
    assert p.secret_from_text("00ff") == b"00ff"  # no prefix: the text itself
    with pytest.raises(ValueError):
        p.secret_from_text("hex:zz")
    with pytest.raises(ValueError):
        p.secret_from_text("")


# --- batches ----------------------------------------------------------------------------


def test_batch_round_trip_is_compact_gzip_and_reproducible():
    events = [make_event(1), make_event(2, member_id="M0002", points={"points": -5})]
    body = p.encode_batch("B-1", events)
    assert body[:2] == b"\x1f\x8b" and body == p.encode_batch("B-1", events)
    assert gzip.decompress(body) == p.batch_json("B-1", events)
    assert b", " not in p.batch_json("B-1", events)
    assert p.decode_batch(body) == ("B-1", events)


def test_events_given_as_their_json_text_go_in_as_they_are():
    """The lane's outbox keeps each event encoded; a push places that text in the batch as is."""
    events = [make_event(1, display_name="زهرا"), make_event(2, member_id="M0002")]
    texts = [json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in events]
    assert p.batch_json("B-1", [texts[0], events[1]]) == p.batch_json("B-1", events)
    escaped = json.dumps(events[0], separators=(",", ":"), sort_keys=True)  # as outbox.append stores it
    assert p.decode_batch(p.encode_batch("B-1", [escaped, texts[1]])) == ("B-1", events)


def test_non_ascii_is_utf8():
    event = make_event(1, display_name="زهرا احمدی")
    batch_id, events = p.decode_batch(p.encode_batch("B", [event]))
    assert events[0]["display_name"] == "زهرا احمدی"


def test_zip_bomb_stops_at_the_limit():
    bomb = gzip.compress(b'{"batch_id":"B","events":[' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    with pytest.raises(BatchError) as err:
        p.decode_batch(bomb)
    assert err.value.code == "batch_too_large"


def test_more_than_1000_events_is_too_large():
    events = [{"seq": i, "event_id": f"E{i}"} for i in range(1, 1002)]
    with pytest.raises(BatchError) as err:
        p.decode_batch(p.encode_batch("B", events))
    assert err.value.code == "batch_too_large"


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        gzip.compress(b"{not json"),
        gzip.compress(b"[1, 2]"),
        gzip.compress(b"[" * 100_000 + b"]" * 100_000),  # deep nesting
        gzip.compress(b'{"batch_id": "", "events": [{"seq": 1, "event_id": "E"}]}'),
        gzip.compress(b'{"batch_id": "B", "events": []}'),
        gzip.compress(b'{"batch_id": "B", "events": [{"seq": true, "event_id": "E"}]}'),
        gzip.compress(b'{"batch_id": "B", "events": [{"seq": 0, "event_id": "E"}]}'),
        gzip.compress(b'{"batch_id": "B", "events": [{"seq": 1}]}'),
        gzip.compress(b'{"batch_id": "B", "events": [{"seq": 2, "event_id": "a"}, {"seq": 2, "event_id": "b"}]}'),
        gzip.compress(b'{"batch_id": "B", "events": [{"seq": 3, "event_id": "a"}, {"seq": 2, "event_id": "b"}]}'),
        gzip.compress(b'{"batch_id": "B", "events": [1]}'),
        p.encode_batch("B", [make_event(1)])[:-6],  # truncated
        p.encode_batch("B", [make_event(1)]) + b"trailing",
        zlib.compress(b'{"batch_id": "B", "events": []}'),  # zlib, not gzip
    ],
)
def test_malformed_batches(body):
    with pytest.raises(BatchError) as err:
        p.decode_batch(body)
    assert err.value.code == "malformed_batch"


def test_a_gzip_body_of_several_members_is_one_batch():
    """RFC 1952: a gzip file may be several members one after another (a writer flushing as it goes,
    `cat a.gz b.gz`); their data joined is the body. A second member with nothing of gzip is not."""
    text = json.dumps({"batch_id": "B", "events": [make_event(1), make_event(2)]}).encode()
    cut = len(text) // 3
    body = gzip.compress(text[:cut]) + gzip.compress(text[cut:2 * cut]) + gzip.compress(text[2 * cut:])
    batch_id, events = p.decode_batch(body)
    assert batch_id == "B" and [e["seq"] for e in events] == [1, 2]
    with pytest.raises(BatchError) as err:
        p.decode_batch(gzip.compress(text[:cut]) + gzip.compress(text[cut:]) + b"\x1f\x8b")  # a cut member
    assert err.value.code == "malformed_batch"
    with pytest.raises(BatchError) as err:  # a bomb split in members is still counted whole
        p.decode_batch(gzip.compress(b" " * 600_000) + gzip.compress(b" " * 600_000), max_bytes=1_000_000)
    assert err.value.code == "batch_too_large"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_decode_batch_never_crashes_on_random_bytes(data):
    for body in (data, gzip.compress(data)):
        try:
            p.decode_batch(body)
        except BatchError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20))
def test_decode_and_validate_never_crash_on_random_json(doc):
    body = gzip.compress(json.dumps({"batch_id": "B", "events": [doc]}).encode())
    try:
        _, events = p.decode_batch(body)
    except BatchError:
        return
    code = p.validate_event(events[0])  # must answer with a code or None, never raise
    assert code is None or isinstance(code, str)


_TRICKY = st.text(st.sampled_from(["a", "ż", "\\", '"', "\n", "\x00", "\x1f", "\x7f", "\x85", "\ud800", "\udfff",
                                    "\u2028", "/"]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TRICKY, _TRICKY | st.lists(_TRICKY, max_size=2), max_size=3), _TRICKY, _TRICKY)
def test_the_text_of_an_event_judges_its_strings_as_the_walk_does(extra, voucher, member_id):
    """central hands validate_event the text it stores; the answer is the one of the value walk."""
    event = make_event(1, member_id=member_id or "M0001", type="redemption", voucher={"title": voucher}, **extra)
    text = json.dumps(event, ensure_ascii=False)
    assert p.validate_event(event, text) == p.validate_event(event)
    assert clean_text(event, text) == clean_text(event)


# --- events -------------------------------------------------------------------------------


def test_valid_event_types():
    signs = {"token_use": 0, "voucher_use": 0, "return": -1, "redemption": -1}  # a use moves no points
    for kind in p.EVENT_TYPES:
        delta = 10 * signs.get(kind, 1)
        assert p.validate_event(make_event(1, type=kind, points={"points": delta} if delta else {})) is None
    assert p.validate_event(make_event(1, type="token_use", points={"points": 10})) == "bad_points"


def test_points_moving_the_wrong_way_for_their_event_are_bad_points():
    """The protocol's signs: an accrual earns, a return and a redemption take away. A signed lane's
    accrual of -500 or redemption of +500 was applied as sent, moving balances the wrong way."""
    for kind, points in (("accrual", {"points": -500}), ("return", {"points": 500}),
                         ("redemption", {"points": 500}), ("accrual", {"points": 10, "stamps": -1}),
                         ("return", {"points": -10, "stamps": 1})):
        assert p.validate_event(make_event(1, type=kind, points=points)) == "bad_points", (kind, points)
    for kind, points in (("accrual", {"points": 0}), ("return", {"points": 0}), ("redemption", {"points": -1})):
        assert p.validate_event(make_event(1, type=kind, points=points)) is None, (kind, points)
    assert p.validate_event(make_event(1, lines=None, transaction_id=None)) is None
    assert p.validate_event(make_event(1, occurred_at="2026-11-24T09:15:00+00:00")) is None


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"type": "refund"}, "unknown_type"),
        ({"member_id": ""}, "malformed_event"),
        ({"member_id": 7}, "malformed_event"),
        ({"transaction_id": 5}, "malformed_event"),
        ({"program_version": None}, "malformed_event"),
        ({"offline": "no"}, "malformed_event"),
        ({"lines": "x"}, "malformed_event"),
        ({"occurred_at": "2026-11-24T10:15:00"}, "bad_timestamp"),
        ({"occurred_at": "2026-11-24T10:15:00+01:00"}, "bad_timestamp"),
        ({"occurred_at": "yesterday"}, "bad_timestamp"),
        # fromisoformat reads these; no other platform's RFC 3339 reader does, so neither does central
        ({"occurred_at": "2026-11-24T10:15:00.Z"}, "bad_timestamp"),
        ({"occurred_at": "2026-11-24 10:15:00Z"}, "bad_timestamp"),
        ({"occurred_at": "2026-W48-2T10:15:00Z"}, "bad_timestamp"),
        ({"occurred_at": "20261124T101500Z"}, "bad_timestamp"),
        ({"points": []}, "bad_points"),
        ({"points": {"points": 1.5}}, "bad_points"),
        ({"points": {"points": True}}, "bad_points"),
        ({"points": {"points": 10**15}}, "bad_points"),
        ({"points": {"": 1}}, "bad_points"),
    ],
)
def test_invalid_events(overrides, code):
    assert p.validate_event(make_event(1, **overrides)) == code


@pytest.mark.parametrize("stamp", ["2026-11-24T10:15:00Z", "2026-11-24T10:15:00.123Z", "2026-11-24T10:15:00+00:00",
                                   "2026-11-24T10:15:00.123456789-00:00"])
def test_a_zero_offset_rfc3339_timestamp_is_valid(stamp):
    assert p.validate_event(make_event(1, occurred_at=stamp)) is None


def test_a_timestamp_kept_in_another_form_is_still_read_back():
    """Only what a lane sends is held to RFC 3339: central reads back what it kept before (a lot's
    available_at, a voucher's expiry) as it was kept, or pending points would read as spendable."""
    assert p.parse_utc("2026-11-24 10:15:00+00:00") is not None
    assert p.parse_utc("2026-11-24 10:15:00+00:00", strict=True) is None


# --- answers --------------------------------------------------------------------------------


def test_parse_results():
    answer = {"batch_id": "B", "results": [
        p.result_wire(1, "E1", "accepted"),
        p.result_wire(2, "E2", "duplicate"),
        p.result_wire(3, "E3", "rejected", "unknown_member"),
        p.result_wire(4, "E4", "rejected", "seq_gap"),
        {"seq": 5, "event_id": "E5", "status": "accepted", "code": "ignored", "retryable": True},
    ]}
    assert p.parse_results(answer, batch_id="B") == [
        EventResult(1, "accepted"),
        EventResult(2, "duplicate"),
        EventResult(3, "rejected", "unknown_member", False),
        EventResult(4, "rejected", "seq_gap", True),
        EventResult(5, "accepted"),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"results": None},
        {"results": [{"seq": "1", "status": "accepted"}]},
        {"results": [{"seq": 1, "status": "maybe"}]},
        {"batch_id": "B", "results": [{"seq": 1, "status": {"is": "accepted"}}]},  # not text: no lookup
        {"batch_id": "B", "results": [{"seq": 1, "status": ["accepted"]}]},
        {"results": [{"seq": 1, "status": "rejected", "code": 5}]},
        # a rejection without its code: set aside for good, or retried? Not a guess the lane makes
        {"batch_id": "B", "results": [{"seq": 1, "status": "rejected"}]},
        {"batch_id": "B", "results": [{"seq": 1, "status": "rejected", "code": ""}]},
        {"batch_id": "other", "results": []},
    ],
)
def test_parse_results_refuses_malformed_answers(answer):
    with pytest.raises(CentralProtocolError):
        p.parse_results(answer, batch_id="B")


# --- ETag, Retry-After, Date ------------------------------------------------------------------


def test_program_etag_is_stable_and_content_based():
    a = p.program_etag({"version": "1", "tiers": [{"id": "basic", "threshold": 0}]})
    b = p.program_etag({"tiers": [{"threshold": 0, "id": "basic"}], "version": "1"})
    assert a == b and a.startswith('"') and a.endswith('"')
    assert a != p.program_etag({"version": "2", "tiers": []})


def test_etag_matches():
    assert p.etag_matches('"abc"', '"abc"')
    assert p.etag_matches('W/"abc"', '"abc"')
    assert p.etag_matches('"x", "abc"', '"abc"')
    assert p.etag_matches("*", '"abc"')
    assert not p.etag_matches('"abd"', '"abc"')
    assert not p.etag_matches(None, '"abc"')
    assert not p.etag_matches("", '"abc"')


def test_retry_after():
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert p.parse_retry_after("120", now) == 120.0
    assert p.parse_retry_after(" 1 ", now) == 1.0
    assert p.parse_retry_after("-5", now) == 0.0
    assert p.parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30.0
    assert p.parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0
    for bad in (None, "", "soon", "inf", "nan", "Wed, 99 Foo 2015"):
        assert p.parse_retry_after(bad, now) is None


def test_http_date():
    assert p.parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT") == 1_445_412_480.0
    assert p.parse_http_date("garbage") is None
    assert p.parse_http_date(None) is None


# --- the error vocabulary is the document's ------------------------------------------------------

DOC = (Path(__file__).parent.parent / "docs" / "sync-protocol.md").read_text()


def _doc_table(header: str) -> list[list[str]]:
    lines = DOC[DOC.index(header):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_request_error_codes_and_statuses_are_the_documents():
    documented = {}
    for status, codes, _ in _doc_table("| status | codes | lane behaviour |"):
        if status.isdigit():
            documented.update({code: int(status) for code in re.findall(r"`([a-z_]+)`", codes)})
    assert documented == p.REQUEST_ERRORS


def test_rejection_codes_and_retryability_are_the_documents():
    documented = {re.findall(r"`([a-z_]+)`", code)[0]: retryable == "yes"
                  for code, _, retryable in _doc_table("| code | meaning | retryable |")}
    assert documented == p.REJECTION_CODES
    assert p.RETRYABLE_CODES == {"seq_gap"}


def test_every_code_the_checks_raise_is_in_the_vocabulary():
    bad = [{}, {"type": "accrual"}, make_event(1, occurred_at="yesterday"), make_event(1, points={"p": 1.5})]
    assert {p.validate_event(event) for event in bad} == {"unknown_type", "malformed_event", "bad_timestamp",
                                                          "bad_points"}
    assert set(p.REJECTION_CODES) >= {p.validate_event(event) for event in bad}
    assert (SignatureError("bad_signature").status, BatchError("batch_too_large").status) == (401, 413)
