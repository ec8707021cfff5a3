"""The reference central and the client, over real HTTP on 127.0.0.1, on both store engines.

Every test that touches central's data runs twice: on SQLite (a file in
tmp_path) and on PostgreSQL (a database of the session's throwaway cluster),
through the ``central_db`` fixture below.
"""

from __future__ import annotations

import ast
import os
import gzip
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from posd.sync.central.cli import parse_listen
from posd.sync.central.server import CentralServer, bind, is_loopback
from posd.sync.lane.client import CentralClient
from posd.sync.lane.errors import CentralAuthError, CentralProtocolError, CentralRequestRejected, CentralUnavailable
from posd.sync.protocol import encode_batch, signed_headers, verify_request
from tests.conftest import ENGINES
from tests.support.raw_http import raw_request
from tests.support.central_fixture import (
    LANE_ID,
    SECRET,
    STORE_ID,
    default_seed,
    make_client,
    make_event,
    running_central,
)

ROOT = Path(__file__).resolve().parent.parent


CENTRAL_ENGINES = ENGINES  # every test here that uses central's database runs on both engines


def statuses(results):
    return [(r.seq, r.status, r.code, r.retryable) for r in results]


# --- push ---------------------------------------------------------------------------------


def test_batch_is_applied_once_and_a_resend_is_duplicate(central, client):
    events = [make_event(1, points={"points": 100}), make_event(2, member_id="M0002", points={"points": 7})]
    assert statuses(client.push_batch("B-1", events)) == [(1, "accepted", None, False), (2, "accepted", None, False)]
    assert statuses(client.push_batch("B-1-again", events)) == [(1, "duplicate", None, False),
                                                                (2, "duplicate", None, False)]
    assert [(e["seq"], e["status"], e["transaction_id"]) for e in central.store.events(STORE_ID, LANE_ID)] == [
        (1, "accepted", "T-L01-1"), (2, "accepted", "T-L01-2")]
    assert central.store.member("M0001")["balances"] == {"points": 1940}
    assert central.store.member("M0002")["balances"] == {"points": 427}
    assert central.store.last_seq(STORE_ID, LANE_ID) == 2


def test_seq_gap_is_retryable_and_not_consumed(central, client):
    client.push_batch("B-1", [make_event(1)])
    answer = client.push_batch("B-2", [make_event(3), make_event(4)])
    assert statuses(answer) == [(3, "rejected", "seq_gap", True), (4, "rejected", "seq_gap", True)]
    assert central.store.last_seq(STORE_ID, LANE_ID) == 1
    answer = client.push_batch("B-3", [make_event(2), make_event(3), make_event(4)])
    assert [r.status for r in answer] == ["accepted"] * 3


def test_same_seq_with_another_event_id_is_a_conflict(central, client):
    client.push_batch("B-1", [make_event(1)])
    answer = client.push_batch("B-2", [make_event(1, event_id="E-other")])
    assert statuses(answer) == [(1, "rejected", "seq_conflict", False)]
    assert central.store.events(STORE_ID, LANE_ID)[0]["event_id"] == "E-L01-1"


def test_a_rejected_event_consumes_its_seq_and_is_rejected_again_on_resend(central, client):
    batch = [make_event(1, member_id="M9999"), make_event(2, points={"points": 1.5}), make_event(3)]
    assert statuses(client.push_batch("B-1", batch)) == [
        (1, "rejected", "unknown_member", False), (2, "rejected", "bad_points", False), (3, "accepted", None, False)]
    assert statuses(client.push_batch("B-2", batch[:2])) == [
        (1, "rejected", "unknown_member", False), (2, "rejected", "bad_points", False)]
    stored = central.store.events(STORE_ID, LANE_ID)
    assert [(e["seq"], e["status"], e["code"]) for e in stored] == [
        (1, "rejected", "unknown_member"), (2, "rejected", "bad_points"), (3, "accepted", None)]


def test_member_enrolled_creates_the_member(central, client):
    event = make_event(1, member_id="M0100", type="member_enrolled", points={"points": 50}, transaction_id=None,
                       display_name="New M.", locale="en", identifiers=["2900000001008"])
    assert [r.status for r in client.push_batch("B-1", [event])] == ["accepted"]
    member = central.store.member("M0100", STORE_ID)
    assert member["display_name"] == "New M." and member["identifiers"] == ["2900000001008"]
    assert member["balances"] == {"points": 50} and member["tier"] == "basic"
    assert member["applied_seq"] == {LANE_ID: 1}


def test_accrual_in_the_tier_currency_upgrades_the_tier_and_redemption_does_not_count(central, client):
    assert central.store.member("M0002")["tier"] == "basic"  # qualifying 900
    client.push_batch("B-1", [make_event(1, member_id="M0002", type="redemption", points={"points": -400})])
    assert central.store.member("M0002")["qualifying"] == 900
    client.push_batch("B-2", [make_event(2, member_id="M0002", points={"points": 150})])
    member = central.store.member("M0002")
    assert (member["tier"], member["qualifying"], member["balances"]) == ("silver", 1050, {"points": 170})
    client.push_batch("B-3", [make_event(3, member_id="M0002", type="return", points={"points": -100})])
    member = central.store.member("M0002")
    assert (member["tier"], member["qualifying"]) == ("silver", 950)  # no downgrade on a return


def test_batch_limits_and_malformed_bodies(central, client):
    with pytest.raises(CentralRequestRejected) as err:
        client.push_batch("B-big", [make_event(i) for i in range(1, 1002)])
    assert (err.value.status, err.value.code) == (413, "batch_too_large")

    def raw_push(body: bytes, encoding: str = "gzip") -> requests.Response:
        path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
        headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
        headers["Content-Encoding"] = encoding
        return requests.post(central.url + path, data=body, headers=headers, timeout=5)

    resp = raw_push(gzip.compress(b"{not json"))
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_batch")
    resp = raw_push(b'{"batch_id": "B", "events": []}', encoding="identity")
    assert (resp.status_code, resp.json()["code"]) == (415, "unsupported_encoding")
    resp = raw_push(b"x" * 2_000_000)
    assert (resp.status_code, resp.json()["code"]) == (413, "batch_too_large")
    assert central.store.last_seq(STORE_ID, LANE_ID) == 0


# --- authentication -------------------------------------------------------------------------


def test_wrong_secret_stale_clock_and_unknown_store_are_401(central):
    with make_client(central, secret=b"wrong") as bad:
        with pytest.raises(CentralAuthError) as err:
            bad.push_batch("B", [make_event(1)])
        assert (err.value.status, err.value.code) == (401, "bad_signature")
    with make_client(central, clock=lambda: time.time() - 1000) as late:
        with pytest.raises(CentralAuthError) as err:
            late.program(None)
        assert (err.value.status, err.value.code) == (401, "stale_timestamp")
    with make_client(central, store_id="S404") as unknown:
        with pytest.raises(CentralAuthError) as err:
            unknown.member_changes(None, 10)
        assert err.value.code == "unknown_store"
    assert central.store.last_seq(STORE_ID, LANE_ID) == 0


def test_tampered_body_is_refused(central):
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
    body = encode_batch("B", [make_event(1)])
    headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
    headers["Content-Encoding"] = "gzip"
    tampered = encode_batch("B", [make_event(1, points={"points": 100000})])
    resp = requests.post(central.url + path, data=tampered, headers=headers, timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (401, "bad_signature")
    resp = requests.post(central.url + path, data=body, headers={"Content-Encoding": "gzip"}, timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (401, "missing_signature")
    assert central.store.last_seq(STORE_ID, LANE_ID) == 0


def test_a_store_cannot_push_for_another_store(central):
    other_secret = bytes.fromhex("ab" * 32)  # S002 in the default seed
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
    body = encode_batch("B", [make_event(1)])
    headers = signed_headers(other_secret, "S002", LANE_ID, int(time.time()), "POST", path, body)
    headers["Content-Encoding"] = "gzip"
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=5)
    assert (resp.status_code, resp.json()["code"]) == (403, "store_mismatch")
    with make_client(central, store_id="S002", secret=other_secret) as s2:
        assert [r.status for r in s2.push_batch("B", [make_event(1)])] == ["accepted"]
    assert central.store.last_seq("S002", LANE_ID) == 1 and central.store.last_seq(STORE_ID, LANE_ID) == 0


# --- pulls ------------------------------------------------------------------------------------


def test_member_changes_page_by_cursor(central, client):
    seen, cursor, pages = [], None, 0
    for _ in range(10):
        members, cursor, has_more = client.member_changes(cursor, 2)
        seen += [m["member_id"] for m in members]
        pages += 1
        if not has_more:
            break
    assert (seen, pages) == (["M0001", "M0002", "M0003"], 2)
    assert client.member_changes(cursor, 2) == ([], cursor, False)

    client.push_batch("B-1", [make_event(1, member_id="M0002")])
    members, cursor2, has_more = client.member_changes(cursor, 2)
    assert [m["member_id"] for m in members] == ["M0002"] and not has_more and int(cursor2) > int(cursor)
    assert set(members[0]) == {"member_id", "display_name", "locale", "tier", "qualifying", "identifiers",
                               "balances", "applied_seq", "status", "birth_date", "offers"}


def test_member_changes_carry_the_applied_seq_watermark_of_the_store_lanes(central, client):
    client.push_batch("B-1", [make_event(1), make_event(2, member_id="M0002"), make_event(3)])
    with make_client(central, lane_id="L02") as lane2:
        lane2.push_batch("B-2", [make_event(1, lane_id="L02")])
    members, cursor, _ = client.member_changes(None, 100)
    by_id = {m["member_id"]: m for m in members}
    assert by_id["M0001"]["applied_seq"] == {"L01": 3, "L02": 1}
    assert by_id["M0002"]["applied_seq"] == {"L01": 2}
    assert by_id["M0001"]["balances"] == {"points": 1870}

    client.push_batch("B-3", [make_event(4)])
    members, _, _ = client.member_changes(cursor, 100)
    assert [(m["member_id"], m["applied_seq"]) for m in members] == [("M0001", {"L01": 4, "L02": 1})]

    with make_client(central, store_id="S002", secret=bytes.fromhex("ab" * 32)) as other_store:
        members, _, _ = other_store.member_changes(None, 100)
    assert {m["member_id"]: m["applied_seq"] for m in members}["M0001"] == {}


def test_bad_cursor_and_limit_are_400(central, client):
    with pytest.raises(CentralRequestRejected) as err:
        client.member_changes("abc", 10)
    assert err.value.code == "bad_cursor"
    with pytest.raises(CentralRequestRejected) as err:
        client.member_changes(None, 0)
    assert err.value.code == "bad_limit"


def test_a_cursor_past_any_central_handed_out_is_400_not_an_empty_feed(central, client):
    """A lane's cursor from before central was restored must not read as "nothing changed" forever."""
    members, end, has_more = client.member_changes(None, 1000)
    assert members and not has_more
    assert client.member_changes(end, 1000)[0] == []  # the end of the feed is a cursor central handed out
    for past in (str(int(end) + 1), str(int(end) + (20 << 20)), str(int(end) + 10**12), str(2**63 - 1)):
        with pytest.raises(CentralRequestRejected) as err:
            client.member_changes(past, 10)
        assert err.value.code == "bad_cursor"
    client.push_batch("B-1", [make_event(1)])
    assert [m["member_id"] for m in client.member_changes(end, 1000)[0]] == ["M0001"]


@pytest.mark.parametrize("limit", ["1001", "1000000", "2147483648", "99999999999999999999", "0" * 30 + "5000"])
def test_a_limit_past_a_page_is_clamped_at_any_size(central, client, limit):
    """Every limit above 1000 is 1000 (the protocol document), however many digits it has."""
    path = f"/v1/stores/{client.store_id}/members/changes?cursor=&limit={limit}"
    resp = client._request("GET", path)
    assert resp.status_code == 200 and len(resp.json()["members"]) == len(client.member_changes(None, 1000)[0])


def test_program_etag_and_304(central, client):
    program, etag = client.program(None)
    assert program["version"] == "test-1" and etag.startswith('"')
    assert client.program(etag) == (None, etag)
    central.store.set_program({**program, "version": "test-2"})
    program2, etag2 = client.program(etag)
    assert program2["version"] == "test-2" and etag2 != etag


def test_large_answers_are_gzipped_and_read_transparently(central, client):
    for i in range(50):
        central.store.upsert_member({"member_id": f"X{i:04}", "display_name": "x" * 40})
    members, _, _ = client.member_changes(None, 1000)
    assert len(members) == 53


def test_answers_go_out_without_waiting_for_the_clients_ack(central, client):
    # An answer is two writes (head, body): with Nagle on, the body waits for the client's
    # delayed ack of the head, 40 ms a push. Every connection the running central accepted has
    # TCP_NODELAY (its listener is made as TCP by name: see bind()).
    client.push_batch("B1", [make_event(1)])
    connections = list(central._server.server_state.connections)
    assert connections
    for protocol in connections:
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_outbox_ids_are_time_ordered_uuids_that_append_to_the_index(central, client):
    # Debezium's event id is a uuid; version 7 (RFC 9562) keeps it one while new rows append to
    # the id index instead of landing on a random page of it.
    client.push_batch("B1", [make_event(seq) for seq in range(1, 301)])
    client.push_batch("B2", [make_event(seq) for seq in range(301, 401)])
    rows = central.store.outbox(limit=10_000)
    ids = [uuid.UUID(r["id"]) for r in rows]
    assert len(rows) > 400 and len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 and str(i) == r["id"] for i, r in zip(ids, rows))
    first = [i for i, r in zip(ids, rows) if r["aggregatetype"] == "lane" and r["payload"]["seq"] <= 300]
    assert len(first) == 300 and first == sorted(first)  # one push's rows ascend in insert order
    assert ids == sorted(ids)  # and every later row after every earlier one, whole ids compared


def test_a_member_change_in_the_outbox_names_the_provisional_ids_lanes_events_name(central, client):
    """A member enrolled at a lane: its events name the provisional id, and the member.changed row
    for central's member did not list it (the feed did), so a consumer could not join the two."""
    client.push_batch("B1", [make_event(1, member_id="P-00000000000000aa", type="member_enrolled",
                                        transaction_id=None, identifiers=["2900000000179"], points={"points": 0},
                                        provisional=True),
                             make_event(2, member_id="P-00000000000000aa", points={"points": 40})])
    member_id = central.store.member("P-00000000000000aa")["member_id"]
    rows = central.store.outbox(limit=10_000)
    events = [r["payload"]["event"]["member_id"] for r in rows if r["aggregatetype"] == "lane"]
    assert events == ["P-00000000000000aa"] * 2
    changed = [r for r in rows if r["aggregatetype"] == "member" and r["aggregateid"] == member_id][-1]
    assert changed["payload"]["aliases"] == ["P-00000000000000aa"] and "applied_seq" not in changed["payload"]


def test_outbox_ids_ascend_across_calls_in_one_millisecond_and_from_threads():
    """RFC 9562's counter carries on within a millisecond: ids taken one after another, and by
    several threads at once (central's apply pool), never sort before an id given earlier."""
    from concurrent.futures import ThreadPoolExecutor

    from posd.sync.central.store_sql import outbox_ids

    taken = [outbox_ids(1 + n % 3) for n in range(3000)]  # most calls share a millisecond with the last
    flat = [uuid.UUID(i) for ids in taken for i in ids]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in flat)
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: [uuid.UUID(i) for _ in range(500) for i in outbox_ids(2)], range(4)))
    every = [i for run in runs for i in run]
    assert len(set(every)) == len(every) and all(run == sorted(run) for run in runs)


def test_clock_skew_is_measured_from_the_date_header(central):
    with make_client(central, clock=lambda: time.time() - 100) as behind:
        behind.program(None)
        assert 98 <= behind.last_clock_skew_s <= 102


# --- faults and error mapping ---------------------------------------------------------------


@pytest.mark.parametrize("fault, retry_after", [("500", None), ("503", None), ("429", 1.0), ("reset", None)])
def test_faults_are_central_unavailable(central, client, fault, retry_after):
    central.inject("push", fault)
    with pytest.raises(CentralUnavailable) as err:
        client.push_batch("B", [make_event(1)])
    assert err.value.retry_after == retry_after
    assert [r.status for r in client.push_batch("B", [make_event(1)])] == ["accepted"]


def test_timeout_fault_is_unavailable_and_stop_does_not_wait_for_it(tmp_path, central_db):
    with running_central(tmp_path, db_path=central_db) as central:
        central.inject("program", "timeout", delay=60)
        with make_client(central, timeout=(1.0, 0.3)) as client:
            with pytest.raises(CentralUnavailable, match="timed out"):
                client.program(None)
    assert not [t for t in threading.enumerate() if "process_request" in t.name]


def test_applied_then_lost_then_resend_is_duplicate(central, client):
    central.inject("push", "applied_then_lost")
    with pytest.raises(CentralUnavailable):
        client.push_batch("B-1", [make_event(1), make_event(2)])
    assert central.store.last_seq(STORE_ID, LANE_ID) == 2
    assert [r.status for r in client.push_batch("B-2", [make_event(1), make_event(2)])] == ["duplicate"] * 2
    assert len(central.store.events(STORE_ID, LANE_ID)) == 2


def test_central_paced_admission_hands_out_slots_instead_of_a_queue(tmp_path, central_db):
    """Past its rate, central answers a push 429 with the lane's slot; the lane is admitted there."""
    now = [time.time()]
    with running_central(tmp_path, db_path=central_db, clock=lambda: now[0], admission=100.0) as central:
        clients = {lane: make_client(central, lane_id=lane, clock=lambda: now[0]) for lane in ("L01", "L02", "L03")}
        backlog = [make_event(seq, lane_id="L01") for seq in range(1, 401)]  # 4 s of work at 100 events/s
        assert {r.status for r in clients["L01"].push_batch("B-1", backlog)} == {"accepted"}
        with pytest.raises(CentralUnavailable) as busy:
            clients["L02"].push_batch("B-2", [make_event(1, lane_id="L02")])
        assert (busy.value.status, busy.value.retry_after) == (429, 5.0)  # its slot: after L01's 4.0005 s
        with pytest.raises(CentralUnavailable) as early:
            clients["L02"].push_batch("B-2", [make_event(1, lane_id="L02")])
        assert early.value.retry_after == 5.0  # back too early: the same slot, nothing booked twice
        now[0] += 1.0  # the queue is still 3 s long, but a quarter of that second is saved for small pushes
        assert [r.status for r in clients["L03"].push_batch("B-3", [make_event(1, lane_id="L03")])] == ["accepted"]
        now[0] += 4.0
        assert [r.status for r in clients["L02"].push_batch("B-2", [make_event(1, lane_id="L02")])] == ["accepted"]
        assert [r.status for r in clients["L03"].push_batch("B-4", [make_event(2, lane_id="L03")])] == ["accepted"]
        for c in clients.values():
            c.close()
        assert central.store.last_seq(STORE_ID, "L02") == 1


def test_slow_fault_still_answers(central, client):
    central.inject("members", "slow", delay=0.2)
    members, _, _ = client.member_changes(None, 10)
    assert len(members) == 3


def test_injected_401_is_an_auth_error_and_requests_are_counted(central, client):
    central.inject("push", "401", count=2)
    for _ in range(2):
        with pytest.raises(CentralAuthError):
            client.push_batch("B", [make_event(1)])
    client.push_batch("B", [make_event(1)])
    assert central.request_count("push") == 3 and central.request_count() == 3


class CannedAdapter(HTTPAdapter):
    """A transport that answers from a list instead of the network."""

    def __init__(self, answers):
        super().__init__()
        self.answers, self.sent = list(answers), []

    def send(self, request, **kwargs):
        self.sent.append(request)
        status, headers, body = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code, resp._content, resp.url, resp.request = status, body, request.url, request
        resp.headers.update(headers)
        return resp


def canned_client(*answers, **kwargs) -> tuple[CentralClient, CannedAdapter]:
    adapter = CannedAdapter(answers)
    session = requests.Session()
    session.mount("https://", adapter)
    return CentralClient("https://central.example/api/", "S001", "L01", SECRET, session=session, **kwargs), adapter


def test_client_signs_the_path_it_sends_including_a_base_path():
    client, adapter = canned_client((200, {"Content-Type": "application/json"}, b'{"version": "1"}'))
    program, etag = client.program(None)
    sent = adapter.sent[0]
    assert sent.url == "https://central.example/api/v1/program"
    verify_request(SECRET, sent.headers, "GET", "/api/v1/program", b"", time.time())
    assert program == {"version": "1"} and etag.startswith('"')


def test_client_maps_statuses_and_retry_after_dates():
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    client, _ = canned_client(
        (503, {"Date": date, "Retry-After": "Wed, 21 Oct 2015 07:28:45 GMT"}, b""),
        (403, {}, b'{"code": "store_mismatch"}'),
        (404, {}, b'{"code": "not_found"}'),
        (302, {"Location": "https://elsewhere"}, b""),
        (200, {}, b"not json"),
        (200, {}, b'{"members": [], "next_cursor": 5, "has_more": false}'),
    )
    with pytest.raises(CentralUnavailable) as err:
        client.program(None)
    assert err.value.retry_after == 45.0 and err.value.status == 503
    with pytest.raises(CentralAuthError) as auth:
        client.program(None)
    assert (auth.value.status, auth.value.code) == (403, "store_mismatch")
    with pytest.raises(CentralRequestRejected):
        client.program(None)
    with pytest.raises(CentralProtocolError):
        client.program(None)
    with pytest.raises(CentralProtocolError):
        client.program(None)
    with pytest.raises(CentralProtocolError):
        client.member_changes(None, 10)


def test_unreachable_central_is_unavailable(tmp_path, central_db):
    with running_central(tmp_path, db_path=central_db) as central:
        url = central.url
    with CentralClient(url, STORE_ID, LANE_ID, SECRET, timeout=(1, 1)) as client:
        with pytest.raises(CentralUnavailable) as err:
            client.push_batch("B", [make_event(1)])
    assert isinstance(err.value.__cause__, requests.ConnectionError)


# --- admin routes, seeding, listening -----------------------------------------------------------


def test_admin_faults_and_events_over_http(central, client):
    resp = requests.post(central.url + "/_admin/faults", json={"route": "push", "fault": "503", "count": 1}, timeout=5)
    assert resp.status_code == 200
    with pytest.raises(CentralUnavailable):
        client.push_batch("B", [make_event(1)])
    client.push_batch("B", [make_event(1)])
    doc = requests.get(central.url + "/_admin/events", params={"store": STORE_ID, "lane": LANE_ID}, timeout=5).json()
    assert doc["last_seq"] == 1 and [e["status"] for e in doc["events"]] == ["accepted"]
    member = requests.get(central.url + "/_admin/members/M0001", params={"store": STORE_ID}, timeout=5).json()
    assert member["applied_seq"] == {LANE_ID: 1}
    stats = requests.get(central.url + "/_admin/stats", timeout=5).json()
    assert stats["requests"]["push"] == 2
    for body in ({"route": "push", "fault": "explode"}, ["push", "503"], "push", {"route": ["push"], "fault": "503"},
                 {"route": "push", "fault": "503", "count": 10**30}, {"route": "push", "fault": "503", "count": 1.5}):
        bad = requests.post(central.url + "/_admin/faults", json=body, timeout=5)
        assert (bad.status_code, bad.json()["code"]) == (400, "bad_fault"), (body, bad.text)
        assert "Error" not in bad.json()["message"] and "'" not in bad.json()["message"], bad.text
    assert requests.get(central.url + "/nowhere", timeout=5).status_code == 404
    assert requests.get(central.url + f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches", timeout=5).status_code == 405


def test_reseeding_is_idempotent(tmp_path, central_db):
    seed = default_seed()
    with running_central(tmp_path, seed, db_path=central_db) as central:
        with make_client(central) as client:
            client.push_batch("B", [make_event(1, points={"points": 60})])
    seed["program"]["version"] = "test-2"
    seed["members"].append({"member_id": "M0009", "display_name": "Late"})
    with running_central(tmp_path, seed, db_path=central_db) as central:
        assert central.store.member("M0001")["balances"] == {"points": 1900}
        assert central.store.member("M0009")["display_name"] == "Late"
        assert central.store.program()[0]["version"] == "test-2"
        assert central.store.last_seq(STORE_ID, LANE_ID) == 1
        with make_client(central) as client:
            members, _, _ = client.member_changes(None, 100)
        assert sorted(m["member_id"] for m in members) == ["M0001", "M0002", "M0003", "M0009"]


def test_a_seed_changing_the_rules_of_the_published_version_is_refused(tmp_path, central):
    """Lanes that earned under a version refuse other rules under it (docs/program.md, versions): central
    seeded with them would count by rules no lane runs. Refused, nothing written; the same rules again,
    or the new rules under a new version, are taken."""
    seed = default_seed()
    version = central.store.program()[0]["version"]
    changed = json.loads(json.dumps(seed))
    changed["program"]["rules"] = [*changed["program"]["rules"], {"id": "more", "multiplier": 2}]
    changed["members"].append({"member_id": "M0077", "display_name": "Not written"})
    with pytest.raises(ValueError, match=f"version '{version}' is published already with other rules"):
        central.store.seed(changed)
    assert central.store.program()[0]["rules"] == seed["program"]["rules"]
    assert central.store.member("M0077") is None
    central.store.seed(seed)  # the same rules again: a restart with the same seed file
    changed["program"]["version"] = f"{version}-b"
    central.store.seed(changed)
    assert central.store.program()[0]["version"] == f"{version}-b" and central.store.member("M0077")
    # back to the first version: with its own rules it is taken, with others refused
    again = json.loads(json.dumps(changed))
    again["program"]["version"] = version
    with pytest.raises(ValueError, match="is published already with other rules"):
        central.store.seed(again)
    assert central.store.program()[0]["version"] == f"{version}-b"
    central.store.seed(seed)
    assert central.store.program()[0]["version"] == version


def test_cli_refuses_a_seed_that_changes_the_published_versions_rules(tmp_path):
    seed = default_seed()
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    cmd = [sys.executable, "-m", "posd.sync.central", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "c.db"),
           "--seed", str(tmp_path / "seed.json")]
    from posd.sync.central.store import open_store

    store = open_store(str(tmp_path / "c.db"), clock=time.time, pool_size=1)  # as an earlier run left it
    try:
        store.seed(seed)
    finally:
        store.close()
    seed["program"]["rules"] = []
    (tmp_path / "other.json").write_text(json.dumps(seed))
    done = subprocess.run([*cmd[:-1], str(tmp_path / "other.json")], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2 and "is published already with other rules" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("member, says", [
    ({"member_id": "X1", "balances": {"points": True}}, "balances must be"),
    ({"member_id": "X1", "balances": {"points": 10**12 + 1}}, "each integer from -1,000,000,000,000 to 1,000,000,000,000"),
    ({"member_id": "X1", "identifiers": "C123"}, "identifiers must be a list"),
    ({"member_id": "X1", "identifiers": {"a": 1}}, "identifiers must be a list"),
    ({"member_id": "X1", "identifiers": ["C\u0000"]}, "identifiers must be a list"),
    ({"member_id": "X\u00001"}, "member_id"),
    ({"member_id": "X1", "display_name": "A\u0000"}, "display_name"),
    ({"member_id": "X1", "locale": {"pl": 1}}, "locale"),
    ({"member_id": "X1", "offers": "abc"}, "offers must be"),
    ({"member_id": "X1", "birth_date": "yesterday"}, "birth_date"),
    ({"member_id": "X1", "birth_date": "1990-02-29"}, "birth_date"),
    ({"member_id": "X1", "identifiers": ["2900000000018"]}, "'M0001''s already"),  # M0001's card
])
def test_a_member_central_is_given_is_checked_field_by_field(central, member, says):
    """An upsert or a seed stored what it was given: a string's characters as identifiers, true as a
    balance (PostgreSQL then failed at start), NUL in a name, a card another member holds (a lane's
    cache gave it to whichever changed last). Each is refused, naming the field, and nothing is written."""
    with pytest.raises(ValueError, match=re.escape(says)):
        central.store.upsert_member(member)
    seed = default_seed()
    seed["members"].append(member)
    with pytest.raises(ValueError, match=re.escape(says)):
        central.store.seed(seed)
    assert central.store.member("X1") is None


def test_a_provisional_id_or_a_card_held_elsewhere_is_never_upserted_or_seeded(central):
    """An upsert naming a provisional id central mapped to its member made a shadow member with that
    id; a seed with one card on two members made both its holder."""
    with make_client(central) as client:
        enrolled = client.push_batch("B", [make_event(1, member_id="P-00000000000000aa", type="member_enrolled",
                                                      transaction_id=None, identifiers=["2900000000179"],
                                                      points={"points": 0}, provisional=True)])
    assert enrolled[0].status == "accepted"
    member_id = central.store.member("P-00000000000000aa")["member_id"]  # read through the alias
    assert member_id != "P-00000000000000aa"
    with pytest.raises(ValueError, match="provisional id central mapped to member"):
        central.store.upsert_member({"member_id": "P-00000000000000aa", "balances": {"points": 99}})
    assert central.store.member(member_id)["member_id"] == member_id
    seed = default_seed()
    seed["members"] += [{"member_id": "D1", "identifiers": ["C-TWICE"]}, {"member_id": "D2", "identifiers": ["C-TWICE"]}]
    with pytest.raises(ValueError, match="'C-TWICE' is member 'D1''s already"):
        central.store.seed(seed)
    central.store.upsert_member({"member_id": "M0001", "display_name": "Anna", "identifiers": ["2900000000018"]})
    assert central.store.member("M0001")["display_name"] == "Anna"  # its own card: fine
    # a seed member erased since, whose card a new member now holds: the same seed again still starts central
    seed = default_seed()
    seed["members"].append({"member_id": "X9", "identifiers": ["C-REUSED"]})
    central.store.seed(seed)
    central.store.upsert_member({"member_id": "X9", "status": "deleted"})
    central.store.upsert_member({"member_id": "N9", "identifiers": ["C-REUSED"]})
    central.store.seed(seed)
    assert central.store.member("N9")["identifiers"] == ["C-REUSED"]


@pytest.mark.parametrize("identifier", ["+48 620 111 222", "+48-620-111-222", "\uff12\uff19\uff10\uff10\uff10\uff10",
                                        "\u06f2\u06f9\u06f0\u06f0\u06f1\u06f8", "AB 1234", "abc"])
def test_a_seeded_identifier_no_lane_looks_up_is_refused_naming_the_member(central, identifier):
    """Seeded as given, it was found by no lane, and the member enrolled again became a second member."""
    seed = default_seed()
    seed["members"].append({"member_id": "X7", "identifiers": [identifier]})
    with pytest.raises(ValueError, match=re.escape(f"member 'X7': identifier {identifier!r} is in no form")):
        central.store.seed(seed)
    with pytest.raises(ValueError, match="is in no form a lane looks members up by"):
        central.store.upsert_member({"member_id": "M0001", "identifiers": ["2900000000018", identifier]})
    assert central.store.member("X7") is None
    assert central.store.member("M0001")["identifiers"] == ["2900000000018"]


def test_one_card_read_as_upc_a_at_one_lane_and_as_its_ean_13_at_another_is_one_member(central):
    """A card's UPC-A and its EAN-13 (the same digits behind a 0) are one card; central matched them as
    two strings, and two lanes enrolling one card each in its own form made two members."""
    with make_client(central, lane_id="L01") as one, make_client(central, lane_id="L02") as two:
        def enrol(client, lane, member_id, card):
            return client.push_batch(f"B-{lane}", [make_event(1, lane_id=lane, member_id=member_id,
                                                              type="member_enrolled", transaction_id=None,
                                                              identifiers=[card], points={"points": 0},
                                                              provisional=True)])[0].status
        assert enrol(one, "L01", "P-00000000000000b1", "012345678905") == "accepted"
        assert enrol(two, "L02", "P-00000000000000b2", "0012345678905") == "accepted"
    first = central.store.member("P-00000000000000b1")
    second = central.store.member("P-00000000000000b2")
    assert first["member_id"] == second["member_id"], (first, second)
    assert first["identifiers"] == ["012345678905"]  # the card once, in the form first enrolled
    assert set(first["aliases"]) == {"P-00000000000000b1", "P-00000000000000b2"}
    # a seed or an upsert giving that card, in its other form, to another member is refused too
    seed = default_seed()
    seed["members"].append({"member_id": "U2", "identifiers": ["0012345678905"]})
    with pytest.raises(ValueError, match=r"member 'U2': '012345678905' is member 'M\d+''s already"):
        central.store.seed(seed)
    with pytest.raises(ValueError, match=r"member 'M0001': '0012345678905' is member 'M\d+''s already"):
        central.store.upsert_member({"member_id": "M0001", "identifiers": ["0012345678905"]})
    seed = default_seed()
    seed["members"] += [{"member_id": "U3", "identifiers": ["036000291452"]},
                        {"member_id": "U4", "identifiers": ["0036000291452"]}]
    with pytest.raises(ValueError, match="member 'U4': '0036000291452' is member 'U3''s already"):
        central.store.seed(seed)


def test_listen_addresses():
    assert parse_listen("127.0.0.1:8780") == ("127.0.0.1", 8780)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for bad in ("8780", "127.0.0.1", "127.0.0.1:99999", "a:b:c"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.com")


def test_centrals_connections_send_small_answers_at_once():
    """Nagle's algorithm is off on every connection central accepts (asyncio turns it off only for
    a socket made as TCP by name): uvicorn sends an answer's headers and body apart, and a small
    body would otherwise wait for the client's delayed ACK of the headers."""
    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        client = socket.create_connection(listener.getsockname(), timeout=10)
        accepted, _ = listener.accept()
        with client, accepted:
            assert accepted.proto == socket.IPPROTO_TCP
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def test_non_loopback_listen_is_refused_without_allow_remote(tmp_path):
    with pytest.raises(ValueError, match="allow-remote"):
        CentralServer(tmp_path / "c.db", host="0.0.0.0")


def test_cli_serves_until_sigterm(tmp_path):
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(default_seed()))
    cmd = [sys.executable, "-m", "posd.sync.central", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "c.db"),
           "--seed", str(seed_file), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split()[-1]
        with CentralClient(url, STORE_ID, LANE_ID, SECRET, timeout=(2, 2)) as client:
            assert [r.status for r in client.push_batch("B", [make_event(1)])] == ["accepted"]
        events = requests.get(url + "/_admin/events", params={"store": STORE_ID, "lane": LANE_ID}, timeout=5).json()
        assert events["last_seq"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_refuses_a_public_listen_address(tmp_path):
    cmd = [sys.executable, "-m", "posd.sync.central", "--listen", "0.0.0.0:0", "--db", str(tmp_path / "c.db")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "allow-remote" in done.stderr


def test_cli_on_a_port_in_use_touches_no_database(tmp_path):
    """A second central on a port already served seeded its --db, and cleared its fault plan, before
    it failed to listen: with the running central's --db, that central's own."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        seed_file = tmp_path / "seed.json"
        seed_file.write_text(json.dumps(default_seed()))
        cmd = [sys.executable, "-m", "posd.sync.central", "--listen", f"127.0.0.1:{port}",
               "--db", str(tmp_path / "c.db"), "--seed", str(seed_file)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert not (tmp_path / "c.db").exists()


@pytest.mark.parametrize("db", ["mysql://central@db/central", "sqlite:///var/lib/central.db"])
def test_cli_refuses_a_database_url_it_cannot_open(tmp_path, db):
    """A URL of another engine is named as unsupported, not taken as a SQLite file's path
    (which made a folder "mysql:" beside central and served from it)."""
    cmd = [sys.executable, "-m", "posd.sync.central", "--listen", "127.0.0.1:0", "--db", db]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "only postgresql://" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, says", [("[]", "seed must be a JSON object"), ("[1", "line 1 column 3"),
                                        ('{"stores": {"S001": {}}}', "'S001' needs a 'secret'")])
def test_cli_names_what_is_wrong_with_a_seed_file(tmp_path, text, says):
    (tmp_path / "seed.json").write_text(text)
    cmd = [sys.executable, "-m", "posd.sync.central", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "c.db"),
           "--seed", str(tmp_path / "seed.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr


# --- TLS and mutual TLS ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=posd test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "lane"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def test_mutual_tls(tmp_path, pki, central_db):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    with running_central(tmp_path, ssl_context=ctx, db_path=central_db) as central:
        assert central.url.startswith("https://127.0.0.1:")
        cert = (str(pki / "lane.pem"), str(pki / "lane.key"))
        with make_client(central, verify=str(pki / "ca.pem"), cert=cert) as client:
            assert [r.status for r in client.push_batch("B", [make_event(1)])] == ["accepted"]
        with make_client(central, verify=str(pki / "ca.pem")) as no_cert:
            with pytest.raises(CentralUnavailable):
                no_cert.push_batch("B", [make_event(2)])
        with make_client(central, cert=cert) as unverified_server:
            with pytest.raises(CentralUnavailable):  # the system CAs don't know our test CA
                unverified_server.program(None)


# --- the OpenAPI file for central's side ------------------------------------------------------------


def test_openapi_file_describes_every_protocol_route_and_limit():
    from posd.sync.protocol import MAX_BATCH_EVENTS, REJECTION_CODES, RETRYABLE_CODES, validate_event

    spec = json.loads((ROOT / "docs" / "sync-openapi.json").read_text())
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/v1/lanes/{store_id}/{lane_id}", "/v1/lanes/{store_id}/{lane_id}/batches",
                                  "/v1/stores/{store_id}/members/changes", "/v1/program",
                                  "/v1/lanes/{store_id}/{lane_id}/authorisations",
                                  "/v1/lanes/{store_id}/{lane_id}/releases",
                                  "/v1/lanes/{store_id}/{lane_id}/token-uses",
                                  "/v1/lanes/{store_id}/{lane_id}/birthday-awards",
                                  "/v1/stores/{store_id}/vouchers/{code}"}
    schemas = spec["components"]["schemas"]
    assert schemas["Batch"]["properties"]["events"]["maxItems"] == MAX_BATCH_EVENTS
    codes = set(schemas["Result"]["properties"]["code"]["enum"])
    assert RETRYABLE_CODES <= codes and {"seq_conflict", "unknown_member", "member_deleted"} <= codes
    assert codes == set(REJECTION_CODES)
    assert validate_event({}) in codes
    for path in spec["paths"].values():
        for op in path.values():
            names = {p["name"] for p in op["parameters"]}
            assert {"X-Posd-Store", "X-Posd-Timestamp", "X-Posd-Signature"} <= names
            assert {"401", "429", "5XX"} <= set(op["responses"])


def test_openapi_file_describes_burn_authorisation():
    from posd.sync.protocol import DECLINE_CODES, MAX_AUTHORISATION_BYTES, MAX_UNSYNCED_EVENTS

    spec = json.loads((ROOT / "docs" / "sync-openapi.json").read_text())
    schemas = spec["components"]["schemas"]
    answer = schemas["AuthorisationAnswer"]
    assert set(answer["properties"]["code"]["enum"]) == set(DECLINE_CODES)
    # what parse_authorisation_answer requires of an answer, the schema requires too
    assert answer["if"]["properties"]["status"] == {"const": "approved"}
    assert set(answer["then"]["required"]) == {"reservation_id", "expires_at"} and answer["else"]["required"] == ["code"]
    assert schemas["AuthorisationRequest"]["properties"]["unsynced"]["maxItems"] == MAX_UNSYNCED_EVENTS
    post = spec["paths"]["/v1/lanes/{store_id}/{lane_id}/authorisations"]["post"]
    assert {p["schema"].get("maximum") for p in post["parameters"] if p["name"] == "Content-Length"} == \
        {MAX_AUTHORISATION_BYTES}
    assert "malformed_authorisation" in post["responses"]["400"]["description"]
    lookup = spec["paths"]["/v1/stores/{store_id}/vouchers/{code}"]["get"]
    assert "unknown_voucher" in lookup["responses"]["404"]["description"]
    assert schemas["Member"]["properties"]["vouchers"]["items"] == {"$ref": "#/components/schemas/Voucher"}
    assert {"authorisation_id", "reservation_id", "voucher"} <= set(schemas["Event"]["properties"])


def test_lane_head_tells_where_a_lanes_history_ends(central, client):
    assert client.lane_head(LANE_ID) == (0, None)
    client.push_batch("B-1", [make_event(1), make_event(2)])
    assert client.lane_head(LANE_ID) == (2, "E-L01-2")
    assert client.lane_head("L09") == (0, None)
    with pytest.raises(CentralRequestRejected):
        client.lane_head("bad lane")


def test_a_voucher_used_on_two_lanes_is_refused_the_second_time(tmp_path, central_db):
    """Two lanes, both offline, honour the same coupon; central refuses the second use."""
    with running_central(tmp_path, db_path=central_db) as central:
        lane1, lane2 = make_client(central, lane_id="L01"), make_client(central, lane_id="L02")
        use = dict(type="voucher_use", points={}, voucher_code="VABCDEF123456", voucher_once_per="code")
        first = lane1.push_batch("b1", [make_event(1, lane_id="L01", **use)])
        second = lane2.push_batch("b2", [make_event(1, lane_id="L02", **use)])
        assert first[0].status == "accepted"
        assert (second[0].status, second[0].code) == ("rejected", "voucher_used")
        campaign = dict(type="voucher_use", points={}, voucher_code="WELCOME10", voucher_once_per="member")
        a = lane1.push_batch("b3", [make_event(2, member_id="M0001", lane_id="L01", **campaign)])
        b = lane2.push_batch("b4", [make_event(2, member_id="M0002", lane_id="L02", **campaign)])
        c = lane2.push_batch("b5", [make_event(3, member_id="M0001", lane_id="L02", **campaign)])
        assert [a[0].status, b[0].status, c[0].status] == ["accepted", "accepted", "rejected"]


# --- the store interface is the server's only way to its data --------------------------------------------


def test_the_sqlite_store_implements_the_store_interface(central):
    from posd.sync.central.store import CentralStore

    assert isinstance(central.store, CentralStore)


def test_the_server_calls_only_what_the_store_interface_declares():
    """A second engine implements CentralStore and nothing else: the server must not reach past it."""
    from posd.sync.central.store import CentralStore

    declared = {name for name in vars(CentralStore) if not name.startswith("_")}
    used = set()
    for module in ("app.py", "server.py"):
        source = ast.parse((ROOT / "sync" / "central" / module).read_text())
        used |= {node.attr for node in ast.walk(source)
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                 and node.value.attr == "store"}
    assert used and used <= declared, sorted(used - declared)


def test_every_protocol_code_the_server_answers_has_the_protocols_status():
    from posd.sync.protocol import REQUEST_ERRORS

    central_only = {"injected_fault", "admin_loopback_only", "bad_fault", "unknown_member",  # faults and admin
                    "bad_admin_request", "member_not_active", "no_signing_key", "unknown_key"}  # member tokens
    source = ast.parse((ROOT / "sync" / "central" / "app.py").read_text())  # the server's routes
    answered = {}
    for node in ast.walk(source):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "HttpError" and len(node.args) >= 2:
            status, code = node.args[:2]
            if isinstance(code, ast.Constant) and isinstance(status, ast.Constant):
                answered[code.value] = status.value
    assert len(answered) > 10
    assert {c: s for c, s in answered.items() if c not in central_only} == {
        c: REQUEST_ERRORS[c] for c in answered if c not in central_only}


# --- member token claims: the first lane owns a token, on both engines ----------------------------------------


def test_a_member_token_claimed_by_one_lane_is_a_replay_at_every_other(central, client):
    claim = {"token_id": "00aa11bb22cc33dd", "member_id": "M0001", "identified_by": "qr_token"}
    with make_client(central, lane_id="L02") as other:
        assert client.claim_token(claim)["status"] == "accepted"
        assert client.claim_token(claim)["status"] == "accepted"  # the same lane again: a retry
        answer = other.claim_token(claim)
        assert (answer["status"], answer["code"]) == ("replayed", "token_replayed")
        # the claiming lane's token_use is its own; the other lane's is flagged
        use = dict(type="token_use", points={}, token_id=claim["token_id"], identified_by="qr_token", key_id="k1")
        assert [r.status for r in client.push_batch("t1", [make_event(1, **use)])] == ["accepted"]
        [flag] = other.push_batch("t2", [make_event(1, lane_id="L02", **use)])
        assert (flag.status, flag.code, flag.flagged) == ("rejected", "token_replayed", True)
        # a token first pushed (accepted offline) is that lane's too: a later claim elsewhere is a replay
        offline = {**use, "token_id": "feedfacecafebeef", "identified_by": "wallet_totp"}
        assert [r.status for r in other.push_batch("t3", [make_event(2, lane_id="L02", **offline)])] == ["accepted"]
        assert client.claim_token({**claim, "token_id": "feedfacecafebeef"})["status"] == "replayed"
        assert other.claim_token({**claim, "token_id": "feedfacecafebeef"})["status"] == "accepted"
        for bad in ({**claim, "token_id": ""}, {**claim, "identified_by": "pin"}, {**claim, "member_id": 7},
                    {"token_id": "x" * 129, "member_id": "M0001", "identified_by": "qr_token"}):
            with pytest.raises(CentralRequestRejected) as refused:
                client.claim_token(bad)
            assert (refused.value.status, refused.value.code) == (400, "malformed_token_use")


UNUSUAL_BATCHES = [
    b'{"batch_id":"B","events":[{"seq":1,"event_id":"E","member_id":"M\\ud800"}]}',  # a lone surrogate escape
    b'{"batch_id":"B","events":[{"seq":1,"event_id":"E","points":{"points":123456789012345678901234567890}}]}',
    b'{"batch_id":"B","events":[{"seq":1,"event_id":"E","total":NaN,"other":-Infinity,"big":1e400}]}',
    b'{"batch_id":"B","events":[{"seq":18446744073709551616,"event_id":"E","t":-9223372036854775809}]}',
    b'\xef\xbb\xbf{"batch_id":"B","events":[{"seq":1,"event_id":"\xed\xa0\x80"}]}',  # a BOM, an encoded surrogate
    '{"batch_id":"B","events":[{"seq":1,"event_id":"\u017c"}]}'.encode("utf-16"),
    b'{"batch_id":"B","events":[{"seq":1,"event_id":"E","a":1,"a":2,"f":1.5e300,"g":-0.0}]}',
    b'{"batch_id":"B","events":[{"seq":1,"event_id":"1234567890123456789012","n":9223372036854775808,'
    b'"m":12345678901234567890,"k":-1234567890123456789,"j":123456789012345678}]}',  # 18-22 digits
]


@pytest.mark.parametrize("raw", UNUSUAL_BATCHES)
def test_central_reads_a_batch_as_json_reads_it(raw):
    """central parses pushes with a faster parser that hands what it refuses to json: same batch."""
    from posd.sync.central.app import _loads

    assert repr(_loads(raw)) == repr(json.loads(raw))


def test_central_refuses_what_json_refuses():
    from posd.sync.central.app import _loads

    for raw in (b'{"batch_id":', b'\xff\xfe{', b"[" * 100_000):
        with pytest.raises((ValueError, RecursionError)):
            _loads(raw)


@pytest.mark.parametrize("text", [
    '{"points":123456789012345678901234567890,"gold":-9223372036854775809}',  # past 64 bits
    '[{"id":"O1","title":"kawa \u017c\u00f3\u0142ta","value":NaN,"cap":1e400}]',  # what orjson refuses
    '["2700000000001","M\\ud800"]',  # a lone surrogate escape
])
def test_central_reads_its_json_columns_as_json_reads_them(text):
    """A member's JSON columns (identifiers, balances, offers) come back from SQLite as text and are
    read by the same faster parser, with the same fallbacks: the member page lanes get is the same."""
    from posd.sync.central.codec import loads

    assert repr(loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("doc", [
    {"members": [{"member_id": "M1", "display_name": "Zo\u017ca \u0632\u0647\u0631\u0627", "balances": {"points": 5},
                  "offers": [], "birth_date": None, "has_more": True}], "next_cursor": "7"},
    {"points": 123456789012345678901234567890},  # past 64 bits: the json module writes it
    {1: "a key that is not a string"},
    {"f": [1e-7, 0.00001, -2.5e-5, 1e16, 1.5e300, -1e22], "in range": [0.0001, 123.456, 9.5e15, -0.0, 0.0]},
    {"s": "x:1e5,0.00001", "n": [1.0, 2]},  # looks like an odd float inside a string only
])
def test_central_writes_its_answers_as_json_writes_them(doc):
    from posd.sync.central.codec import dumps

    assert dumps(doc) == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("raw", UNUSUAL_BATCHES)
def test_central_stores_each_event_as_json_reads_it_back(raw):
    """central writes an event's text with a faster encoder that hands what it refuses or would
    change (NaN and the infinities become null there) to json: the same event comes back."""
    from posd.sync.central.app import _loads
    from posd.sync.central.store_sql import event_text

    for event in _loads(raw)["events"]:
        assert repr(json.loads(event_text(event))) == repr(event)


@pytest.mark.parametrize("value", [
    {"results": [{"seq": 1, "event_id": "E", "status": "accepted"}], "zażółć": "\u2028 \x7f ی"},
    {"total": float("nan"), "other": [float("-inf")], "n": None}, {"big": 2**70, "small": -(2**70)},
    {"id": "M\ud800"}, {"f": [1.5e300, -0.0, 1e16, 0.1]}, {1: "a key that is not a string"},
])
def test_central_writes_json_as_the_json_module_reads_it_back(value):
    """central writes its answers and stored text with orjson, and with json what orjson refuses or
    would change: the json module reads back what it would have written itself."""
    from posd.sync.central.codec import json_text

    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert repr(json.loads(json_text(value))) == repr(json.loads(expected))


def test_central_stores_the_text_a_lane_sent(tmp_path):
    """A posd lane's outbox keeps each event as compact JSON and the relay sends that text: central
    stores and streams it as it came, not encoded again in another form."""
    from posd.storage.db import compact_json
    from posd.sync.central.store_sqlite import SqliteStore
    from posd.sync.protocol import decode_batch

    texts = [compact_json(make_event(seq, points={"points": seq}), sort_keys=True) for seq in (1, 2)]
    store = SqliteStore(tmp_path / "c.db")
    try:
        store.seed(default_seed())
        batch_id, events = decode_batch(encode_batch("B", texts))
        assert [r["status"] for r in store.apply_batch(STORE_ID, LANE_ID, batch_id, events, "2026-11-24T09:15:00Z")] \
            == ["accepted", "accepted"]
        with store._read() as conn:
            stored = [r["body"] for r in conn.execute("SELECT body FROM events ORDER BY seq")]
            payloads = [r["payload"] for r in conn.execute(
                "SELECT payload FROM central_outbox WHERE aggregatetype = 'lane' ORDER BY position")]
    finally:
        store.close()
    assert stored == texts
    assert [json.loads(p)["event"] for p in payloads] == [json.loads(t) for t in texts]
    assert all(p.endswith(f'"event": {t}}}') for p, t in zip(payloads, texts))


def _nested_push(central, batch_id: str, events: list[dict], depth: int, at: int) -> requests.Response:
    """A push whose event at index ``at`` carries a field nested ``depth`` arrays deep (written by
    hand: the json module cannot write it)."""
    texts = [json.dumps(e) for e in events]
    texts[at] = texts[at][:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    body = gzip.compress(f'{{"batch_id": "{batch_id}", "events": [{", ".join(texts)}]}}'.encode())
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
    headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
    return requests.post(central.url + path, data=body, headers={**headers, "Content-Encoding": "gzip"}, timeout=30)


def test_an_event_nested_deeper_than_central_can_write_is_rejected_alone_not_a_500(central):
    before = central.store.member("M0001")["balances"]["points"]
    """An event nested about 1,000 deep is read (the JSON reader allows 1,024 levels) but cannot be
    written back out: it was a 500 for the whole batch, on every resend, and the lane's sync stood
    still there. It is rejected alone (malformed_event, its seq consumed); its batch goes through,
    and a resend gets the same answers."""
    events = [make_event(1), make_event(2), make_event(3)]
    for _ in range(2):
        resp = _nested_push(central, "B-deep", events, 990, at=1)
        assert resp.status_code == 200, resp.text
        answers = [(r["seq"], r["status"], r.get("code")) for r in resp.json()["results"]]
        assert answers[1] == (2, "rejected", "malformed_event")
        assert {a[1] for a in (answers[0], answers[2])} <= {"accepted", "duplicate"}, answers
    assert central.store.last_seq(STORE_ID, LANE_ID) == 3
    assert central.store.member("M0001")["balances"]["points"] == before + 20  # seqs 1 and 3, once
    # Shallower than that, but deeper than any real event: a resend compared it with what was
    # stored and ran out of stack there (500 on every resend). Deeper than 32 is malformed_event.
    for seq, depth in ((4, 33), (5, 500), (6, 960)):
        for _ in range(2):
            resp = _nested_push(central, f"B-{depth}", [make_event(seq)], depth, at=0)
            assert resp.status_code == 200, resp.text
            assert [(r["status"], r.get("code")) for r in resp.json()["results"]] == [("rejected", "malformed_event")]
    for _ in range(2):  # as deep as the limit allows (the event, "x" and 31 lists): taken, and taken once
        resp = _nested_push(central, "B-32", [make_event(7)], 31, at=0)
        assert resp.status_code == 200 and resp.json()["results"][0]["status"] in ("accepted", "duplicate"), resp.text
    assert central.store.member("M0001")["balances"]["points"] == before + 30


@pytest.mark.parametrize("headers", [b"Content-Length: -1\r\n", b"Content-Length: abc\r\n",
                                     b"Content-Length: 5\r\nContent-Length: 7\r\n",
                                     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"])
def test_a_request_http_cannot_read_is_answered_in_the_protocols_json(central, headers):
    """uvicorn answered these itself, before central's app saw them, in plain text: every error
    answer is {code, message} (docs/sync-protocol.md)."""
    head, body = raw_request(central.url, b"POST /v1/lanes/S001/L01/batches HTTP/1.1\r\nHost: x\r\n" + headers
                             + b"\r\nhello")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["code"] == "malformed_request"
    assert central.store.last_seq(STORE_ID, LANE_ID) == 0


def test_a_tls_key_central_cannot_use_is_one_line_naming_it(tmp_path, pki):
    """A key that does not match the certificate was OpenSSL's KEY_VALUES_MISMATCH, and an encrypted one
    asked a terminal for its passphrase (under systemd: "Invalid argument"): one line, exit 2."""
    _openssl("rsa", "-in", "lane.key", "-aes256", "-passout", "pass:secret", "-out", "locked.key", cwd=pki)
    for key, said in (("lane.key", "the private key does not match the certificate"),
                      ("locked.key", "the private key is encrypted")):
        proc = subprocess.run([sys.executable, "-m", "posd", "central", "--db", str(tmp_path / "c.db"),
                               "--listen", "127.0.0.1:0", "--tls-cert", str(pki / "server.pem"),
                               "--tls-key", str(pki / key)], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert f"--tls-key {pki / key}" in proc.stderr
