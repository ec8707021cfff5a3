"""A retry of the same sale or return is the same request however the POS re-serialised it:
numbers by value, instants as UTC instants; and a retry of a sale recorded before the request
hash became canonical still gets its first answer."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from posd.api.models import ReturnIn, TransactionIn
from posd.lane.context import request_hash
from tests.support.central_fixture import demo_seed
from tests.support.lane import ANNA


@pytest.fixture
def central_seed():
    return demo_seed()


def sale(tid: str, quantity, occurred_at: str = "2026-11-17T10:15:00+01:00", unit_price: int = 2500) -> dict:
    return {"transaction_id": tid, "member": ANNA, "occurred_at": occurred_at, "currency": "PLN",
            "total": 2 * unit_price if quantity in (2, "2") else unit_price,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": quantity, "unit_price": unit_price}]}


def accruals(central, tid: str) -> list:
    return [e for e in central.store.events("S001", "L01") if e.get("transaction_id") == tid and e["type"] == "accrual"]


def test_a_re_serialised_retry_replays_and_a_different_request_conflicts(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    first = lane.post("/v1/transactions", sale("rv-idem1", 1))
    assert first.status_code == 200, first.text
    same = [("1", None), (1.0, None), ("1.000", None), (1, "2026-11-17T09:15:00Z"), (1.0, "2026-11-17T09:15:00+00:00"),
            ("1.0", "2026-11-17T11:15:00+02:00"), (1, "2026-11-17T09:15:00.000Z")]
    for quantity, at in same:
        retry = lane.post("/v1/transactions", sale("rv-idem1", quantity, at or "2026-11-17T10:15:00+01:00"))
        assert retry.status_code == 200, (quantity, at, retry.text)
        assert retry.headers.get("Idempotent-Replayed") == "true", (quantity, at)
        assert retry.json() == first.json()
    for body in (sale("rv-idem1", 2), sale("rv-idem1", 1, "2026-11-17T10:15:00+02:00"),
                 sale("rv-idem1", 1, unit_price=2501)):
        other = lane.post("/v1/transactions", body)
        assert (other.status_code, other.json()["code"]) == (409, "transaction_id_conflict"), body

    ret = {"return_id": "rv-ret1", "lines": [{"sku": "5901234123457", "quantity": 1}]}
    answered = lane.post("/v1/transactions/rv-idem1/returns", ret)
    assert answered.status_code == 200, answered.text
    for quantity in ("1", 1.0, "1.00"):
        again = lane.post("/v1/transactions/rv-idem1/returns", {**ret, "lines": [{**ret["lines"][0], "quantity": quantity}]})
        assert again.status_code == 200 and again.json() == answered.json(), again.text
    half = lane.post("/v1/transactions/rv-idem1/returns", {**ret, "lines": [{**ret["lines"][0], "quantity": "0.5"}]})
    assert (half.status_code, half.json()["code"]) == (409, "return_id_conflict")
    lane.wait_drained()
    assert len(accruals(central, "rv-idem1")) == 1


def legacy_hash(body: dict) -> str:
    """The request hash posd recorded before it was canonical: the body as pydantic's JSON mode dumps it."""
    dumped = TransactionIn.model_validate(body).model_dump(mode="json")
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def record_as_before(lane, transaction_id: str, request_hash: str) -> None:
    """The stopped lane's ledger as an older posd left it: the sale recorded under ``request_hash``."""
    db = sqlite3.connect(lane.state / "ledger.db")
    with db:
        triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                              "AND tbl_name = 'transactions'").fetchall()
        for name, _ in triggers:  # the table is append-only: lifted for this rewrite alone
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE transactions SET request_hash = ? WHERE transaction_id = ?", (request_hash, transaction_id))
        for _, sql in triggers:
            db.execute(sql)
    db.close()


def test_a_retry_of_a_sale_recorded_before_the_upgrade_still_replays(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    body = sale("rv-old", 1.0)  # the old hash of 1.0 is not the canonical one
    first = lane.post("/v1/transactions", body)
    assert first.status_code == 200, first.text
    lane.stop()
    db = sqlite3.connect(lane.state / "ledger.db")
    stored = db.execute("SELECT request_hash FROM transactions WHERE transaction_id = 'rv-old'").fetchone()[0]
    db.close()
    assert stored != legacy_hash(body)
    record_as_before(lane, "rv-old", legacy_hash(body))
    lane.start()
    retry = lane.post("/v1/transactions", body)
    assert retry.status_code == 200 and retry.headers.get("Idempotent-Replayed") == "true", retry.text
    assert retry.json() == first.json()
    other = lane.post("/v1/transactions", sale("rv-old", 2))
    assert (other.status_code, other.json()["code"]) == (409, "transaction_id_conflict")
    lane.wait_drained()
    assert len(accruals(central, "rv-old")) == 1


PERSIAN, ARABIC_INDIC = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"), str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_a_retry_naming_the_member_in_other_digits_is_the_same_request(tmp_path, central, start_lane):
    """Digits of any script are read as 0-9 in every identifier: a card typed in Persian digits is the
    card in ASCII digits, for the retry's meaning as for the lookup. A sale recorded before this rule,
    under its member's spelling, still replays to its exact retry."""
    lane = start_lane(tmp_path / "lane")
    body = {**sale("rv-digits", 1), "member": ANNA.translate(PERSIAN)}
    first = lane.post("/v1/transactions", body)
    assert first.status_code == 200 and first.json()["member_id"], first.text
    for member in (ANNA, ANNA.translate(ARABIC_INDIC), ANNA.translate(PERSIAN)):
        retry = lane.post("/v1/transactions", {**body, "member": member})
        assert retry.status_code == 200 and retry.headers.get("Idempotent-Replayed") == "true", (member, retry.text)
        assert retry.json() == first.json()
    other = lane.post("/v1/transactions", {**body, "member": (ANNA[:-1] + "9").translate(PERSIAN)})
    assert (other.status_code, other.json()["code"]) == (409, "transaction_id_conflict"), other.text
    lane.stop()
    record_as_before(lane, "rv-digits", request_hash(TransactionIn.model_validate(body).model_dump()))
    lane.start()
    retry = lane.post("/v1/transactions", body)
    assert retry.status_code == 200 and retry.headers.get("Idempotent-Replayed") == "true", retry.text
    lane.wait_drained()
    assert len(accruals(central, "rv-digits")) == 1


def test_every_retried_write_gets_its_first_answer_byte_for_byte(tmp_path, central, start_lane):
    """Sale, return, redemption, voucher use and enrolment: the retry's body is the first answer's
    very bytes (compact, UTF-8 as is), not the same values written another way."""
    lane = start_lane(tmp_path / "lane")
    calls = [("/v1/transactions", sale("rv-bytes1", 2)),
             ("/v1/transactions/rv-bytes1/returns", {"return_id": "rv-bytes-ret",
                                                     "lines": [{"sku": "5901234123457", "quantity": 1}]}),
             ("/v1/redemptions", {"redemption_id": "rv-bytes-rdm", "member": ANNA, "reward_id": "free-coffee"}),
             ("/v1/members", {"phone": "+48 600 765 432", "display_name": "Zażółć Gęślą"})]
    for path, body in calls:
        first = lane.post(path, body)
        assert first.status_code == 200, (path, first.text)
        retry = lane.post(path, body)
        assert retry.status_code == 200 and retry.headers.get("Idempotent-Replayed") == "true", (path, retry.text)
        assert retry.content == first.content, path
        if path == "/v1/redemptions":
            code = first.json()["voucher"]["code"]
    use = (f"/v1/vouchers/{code}/use", {"transaction_id": "rv-bytes1", "member": ANNA})
    first = lane.post(*use)
    assert first.status_code == 200, first.text
    retry = lane.post(*use)
    assert retry.status_code == 200 and retry.content == first.content


def test_a_return_retried_with_its_lines_in_another_order_is_the_same_request(tmp_path, central, start_lane):
    """The lines a return names are a set (docs/program.md: which come back, not the order the POS listed
    them in): a retry listing them in another order replays. A return recorded before, under the order
    it was sent in, still replays to its exact retry."""
    lane = start_lane(tmp_path / "lane")
    lines = [{"sku": "5901234123457", "category": "grocery", "quantity": 2, "unit_price": 1000},
             {"sku": "5900000000017", "category": "grocery", "quantity": 1, "unit_price": 3000},
             {"sku": "5900000000024", "category": "grocery", "quantity": 1, "unit_price": 500}]
    body = {**sale("rv-order", 1), "total": 5500, "lines": lines}
    assert lane.post("/v1/transactions", body).status_code == 200
    ret = {"return_id": "rv-order-r", "lines": [{"sku": "5900000000017", "quantity": 1},
                                                {"sku": "5901234123457", "quantity": "1.0"}]}
    first = lane.post("/v1/transactions/rv-order/returns", ret)
    assert first.status_code == 200 and first.json()["reversed"], first.text
    swapped = {**ret, "lines": [{"sku": "5901234123457", "quantity": 1}, {"sku": "5900000000017", "quantity": "1"}]}
    retry = lane.post("/v1/transactions/rv-order/returns", swapped)
    assert retry.status_code == 200 and retry.headers.get("Idempotent-Replayed") == "true", retry.text
    assert retry.content == first.content
    other = lane.post("/v1/transactions/rv-order/returns",
                      {**ret, "lines": [{"sku": "5901234123457", "quantity": 1}, {"sku": "5900000000024", "quantity": 1}]})
    assert (other.status_code, other.json()["code"]) == (409, "return_id_conflict"), other.text

    lane.stop()  # as an older posd recorded it: the lines hashed in the order they were sent
    as_sent = request_hash({"transaction_id": "rv-order", **ReturnIn.model_validate(ret).model_dump()})
    db = sqlite3.connect(lane.state / "ledger.db")
    with db:
        db.execute("UPDATE returns SET request_hash = ? WHERE return_id = 'rv-order-r'", (as_sent,))
    db.close()
    lane.start()
    again = lane.post("/v1/transactions/rv-order/returns", ret)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true", again.text
    assert again.content == first.content
