"""What the POS sends is read as it means it: a redemption names a reward or points, never both;
a reprint's Idempotency-Key names one job; a lane that never loaded its members does not tell a
real member they are not one."""

from __future__ import annotations

import sqlite3

import pytest
import requests

from tests.support.central_fixture import demo_seed
from tests.support.lane import ANNA, LaneProcess, free_port, lane_config, sale_body


@pytest.fixture
def central_seed():
    return demo_seed()


def test_a_redemption_naming_a_reward_and_points_is_refused_naming_points(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    before = lane.get(f"/v1/members/{ANNA}").json()["balances"]["points"]["total"]
    for points in (200, 500, 1):
        resp = lane.post("/v1/redemptions", {"redemption_id": f"RDM-both-{points}", "member": ANNA,
                                             "reward_id": "free-coffee", "points": points})
        assert (resp.status_code, resp.json()["code"]) == (422, "invalid_request"), resp.text
        assert resp.json()["message"].startswith("points:"), resp.text
    assert lane.get(f"/v1/members/{ANNA}").json()["balances"]["points"]["total"] == before
    alone = lane.post("/v1/redemptions", {"redemption_id": "RDM-alone", "member": ANNA, "reward_id": "free-coffee"})
    assert alone.status_code == 200, alone.text
    lane.stop()
    db = sqlite3.connect(lane.state / "ledger.db")
    assert [r[0] for r in db.execute("SELECT redemption_id FROM redemptions")] == ["RDM-alone"]


def test_a_reprint_key_already_used_for_another_slip_is_a_conflict(tmp_path, central, start_lane, printer):
    lane = start_lane(tmp_path / "lane", printer=printer.url)
    for tid in ("rv-P1", "rv-A1"):
        assert lane.post("/v1/transactions", sale_body(tid)).status_code == 200
    printer.wait_for_jobs(2, timeout=15)
    key = lane.headers(**{"Idempotency-Key": "k-1"})
    first = lane.post("/v1/slips/rv-P1/reprint", headers=key)
    assert first.status_code == 202, first.text
    other = lane.post("/v1/slips/rv-A1/reprint", headers=key)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_conflict"), other.text
    again = lane.post("/v1/slips/rv-P1/reprint", headers=key)  # the real retry still answers its job
    assert (again.status_code, again.json()["job_id"]) == (202, first.json()["job_id"])
    fresh = lane.post("/v1/slips/rv-A1/reprint", headers=lane.headers(**{"Idempotency-Key": "k-2"}))
    assert fresh.status_code == 202 and fresh.json()["slip_id"] == "rv-A1"
    printer.wait_for_jobs(4, timeout=15)  # the two sales' slips, one copy of each
    # (tests/support/contract.py checks every answer above against the route's OpenAPI responses)
    lane.stop()
    db = sqlite3.connect(lane.state / "ledger.db")
    jobs = db.execute("SELECT slip_id, client_job_id FROM print_jobs WHERE kind = 'reprint' ORDER BY created_at")
    assert jobs.fetchall() == [("rv-P1", "k-1"), ("rv-A1", "k-2")]


def test_a_lane_whose_members_never_loaded_answers_member_unavailable(tmp_path, central):
    folder = tmp_path / "lane"
    port = free_port()
    cfg = lane_config(folder, central_url=central.url, secret="hex:" + "00" * 32, printer="none", port=port)
    lane = LaneProcess(cfg, port, state=folder / "state").start()
    try:
        lane.wait_for(lambda: "members never loaded from central" in lane.health()["problems"], what="401 seen")
        resp = lane.get(f"/v1/members/{ANNA}")
        assert (resp.status_code, resp.json()["code"]) == (503, "member_unavailable"), resp.text
        assert "not a member" not in resp.json()["message"]
        sale = lane.post("/v1/transactions", sale_body("T-unloaded"))
        assert (sale.status_code, sale.json()["code"]) == (503, "member_unavailable"), sale.text
        stream = lane.sse()
        try:
            lane.scan(ANNA)
            event = stream.next("member.unavailable")
            assert event["data"]["identifier"] == ANNA and event["data"]["code"] == "member_unavailable"
        finally:
            stream.close()
        spec = requests.get(f"{lane.base}/openapi.json", timeout=10).json()
        assert "member.unavailable" in str(spec["paths"]["/v1/events"])  # the event's schema is documented
    finally:
        lane.stop()


def test_a_time_whose_utc_instant_is_past_year_9999_is_invalid_request_not_a_500(tmp_path, central, start_lane):
    """9999-12-31T23:59:59-14:00 is a valid time with its offset, but its UTC instant is in year 10000:
    the sale and the quote answer 422 naming occurred_at (they answered 500 with a traceback)."""
    lane = start_lane(tmp_path / "lane")
    mark = lane.log.stat().st_size
    for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        for route in ("/v1/transactions", "/v1/quotes"):
            body = {**sale_body("T-far-1"), "occurred_at": when}
            resp = lane.post(route, body)
            assert (resp.status_code, resp.json()["code"]) == (422, "invalid_request"), (route, when, resp.text)
            assert resp.json()["message"].startswith("occurred_at"), resp.text
    log = lane.log.read_bytes()[mark:].decode(errors="replace")
    assert "Traceback" not in log and "OverflowError" not in log, log[-2000:]


def test_a_time_as_a_number_and_a_trailing_slash_are_refused_with_a_code(tmp_path, central, start_lane):
    """What the schema does not say is not guessed: a number (or digits) as occurred_at is no date-time
    with its offset (pydantic read it as seconds or milliseconds since 1970); a path with a trailing
    slash is no route (it was a bare 307 redirect, which a client follows with the body). Nothing of
    either is written. ``lines: []`` is a sale without lines, as when ``lines`` is left out."""
    lane = start_lane(tmp_path / "lane")
    for route in ("/v1/transactions", "/v1/transactions?via=standard", "/v1/quotes"):
        for when in (1796371585, 1796371585.5, "1796371585", "1796371585000", "20261204T091500Z"):
            resp = lane.post(route, {**sale_body("T-epoch-1"), "occurred_at": when})
            assert (resp.status_code, resp.json()["code"]) == (422, "invalid_request"), (route, when, resp.text)
            assert resp.json()["message"].startswith("occurred_at"), resp.text
    empty = lane.post("/v1/transactions", {**sale_body("T-nolines-1"), "lines": []})
    without = lane.post("/v1/transactions", {k: v for k, v in sale_body("T-nolines-2").items() if k != "lines"})
    assert empty.status_code == without.status_code == 200, (empty.text, without.text)
    assert empty.json()["accrual"]["points"] == without.json()["accrual"]["points"]
    for method, path in (("GET", f"/v1/members/{ANNA}/"), ("GET", "/v1/members/"), ("GET", "/v1/members/%2F"),
                         ("POST", "/v1/transactions/"), ("GET", "/v1/health/")):
        resp = requests.request(method, lane.base + path, json=sale_body("T-slash-1") if method == "POST" else None,
                                headers=lane.headers(), timeout=10, allow_redirects=False)
        assert (resp.status_code, resp.json()["code"]) == (404, "not_found"), (method, path, resp.status_code, resp.text)
    lane.stop()
    db = sqlite3.connect(lane.state / "ledger.db")
    assert sorted(r[0] for r in db.execute("SELECT transaction_id FROM transactions")) == ["T-nolines-1", "T-nolines-2"]


def test_a_card_number_sent_as_a_field_name_is_refused_as_card_data_and_never_repeated(tmp_path, central, start_lane):
    """An unknown field is named in a 422's message; a field named with a card number (or track data)
    would have its number repeated to the POS. It is refused as payment_card, the number in no answer."""
    lane = start_lane(tmp_path / "lane")
    track2 = ";4111111111111111=25121010000000000000?"
    for body in ({**sale_body("T-key-1"), "4111111111111111": 1},
                 {**sale_body("T-key-2"), "lines": [{"sku": "5901234123457", "quantity": 1, "unit_price": 5000,
                                                     track2: 1}]}):
        resp = lane.post("/v1/transactions", body)
        assert (resp.status_code, resp.json()["code"]) == (422, "payment_card"), resp.text
        assert "4111111111111111" not in resp.text
    # in the query, as a name as much as a value
    for path in ("/v1/members/2900000000018?4111111111111111", "/v1/members/2900000000018?4111111111111111=1",
                 "/v1/members/2900000000018?x=4111111111111111"):
        resp = lane.get(path)
        assert (resp.status_code, resp.json()["code"]) == (422, "payment_card"), (path, resp.text)
    resp = lane.post("/v1/transactions?4111111111111111", sale_body("T-key-3"))
    assert (resp.status_code, resp.json()["code"]) == (422, "payment_card"), resp.text
    assert "4111111111111111" not in lane.log.read_text()


def test_a_code_longer_than_any_code_is_refused_wherever_codes_are_listed(tmp_path, central, start_lane):
    """/v1/vouchers/{code} takes codes of 1-64 characters; the lists of codes (a quote's codes, the
    codes already applied) took any length and echoed them back."""
    lane = start_lane(tmp_path / "lane")
    long = "C" * 65
    for route, body in (("/v1/quotes", {**sale_body("T-q-1"), "codes": [long]}),
                        ("/v1/vouchers/validate", {"code": "WELCOME10", "applied": [long]}),
                        ("/v1/vouchers/WELCOME10/use", {"transaction_id": "T-u-1", "applied": [""]})):
        resp = lane.post(route, body)
        assert (resp.status_code, resp.json()["code"]) == (422, "invalid_request"), (route, resp.text)
        assert long not in resp.text


def test_a_body_not_in_utf8_is_refused_not_read_as_json_would(tmp_path, central, start_lane):
    """RFC 8259: JSON is sent in UTF-8. A sale in UTF-16 or UTF-32, or in UTF-8 with a byte order
    mark, was read (json.loads detects them) and recorded; it is 422 invalid_request, nothing kept."""
    import json

    lane = start_lane(tmp_path / "lane")
    text = json.dumps(sale_body("T-utf16-1"))
    for i, body in enumerate((text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-32"),
                              b"\xef\xbb\xbf" + text.encode())):
        for route in ("/v1/transactions", "/v1/transactions?via=standard"):
            resp = requests.post(lane.base + route, data=body, timeout=10,
                                 headers={**lane.headers(), "Content-Type": "application/json"})
            assert (resp.status_code, resp.json().get("code")) == (422, "invalid_request"), (i, route, resp.text)
    assert lane.post("/v1/transactions", sale_body("T-utf8-1")).status_code == 200
    lane.stop()
    db = sqlite3.connect(lane.state / "ledger.db")
    assert [r[0] for r in db.execute("SELECT transaction_id FROM transactions")] == ["T-utf8-1"]
