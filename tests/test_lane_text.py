"""Control characters at the lane's door, and a central answering errors told apart from silence.

A real daemon, real HTTP, a real central: text a till sends with a control character is refused
(422 invalid_request) before anything is written, so nothing reaches the outbox that central would
refuse; a central answering 500 shows as ``central_error`` in health, not as unreachable.
"""

from __future__ import annotations

import json
from typing import Any

import requests

CARD = "2900000000179"


def sale(tid: str, **line: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "member": "2900000000018", "occurred_at": "2026-11-24T10:15:00+01:00",
            "currency": "PLN", "total": 1000,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 1000, **line}]}


REFUSED = [
    ("/v1/members", {"card": CARD, "display_name": "a\u0000b"}),
    ("/v1/members", {"card": "29000\n00179", "display_name": "Ola N."}),
    ("/v1/members", {"phone": "600\u0000123456"}),
    ("/v1/transactions", sale("T-nul-1", sku="59\u0000", category="gr\u0000")),
    ("/v1/transactions", sale("T-nul-2", category="gro\u0085cery")),
    ("/v1/transactions", {**sale("T-nul-3"), "member": "29000000\u000000018"}),
    ("/v1/quotes", sale("T-nul-4", sku="59\u001b[2J")),
    ("/v1/redemptions", {"redemption_id": "R-nul", "member": "2900000000018", "reward_id": "free\u0000coffee"}),
    # at either end too, where stripping the text's whitespace came first: "T-end\n" was the sale "T-end"
    ("/v1/transactions", sale("T-end\n")),
    ("/v1/transactions", sale("\nT-end")),
    ("/v1/transactions", sale("T-end\u0085")),
    ("/v1/transactions", sale("T-end-2", sku="5901234123457\t")),
    ("/v1/transactions", {**sale("T-end-3"), "member": "2900000000018\r\n"}),
    ("/v1/members", {"card": CARD, "display_name": "Ola\n"}),
    ("/v1/vouchers/validate", {"code": "WELCOME10\n"}),
    ("/v1/redemptions", {"redemption_id": "R-end\n", "member": "2900000000018", "reward_id": "coffee"}),
]

# The same text in a path segment (percent-encoded, as a POS's HTTP library sends it).
REFUSED_PATHS = [
    ("GET", "/v1/members/29000000%0000018", None),
    ("GET", "/v1/members/%2B48%0A600123456", None),
    ("POST", "/v1/vouchers/WELCOME%1B10/use", {"transaction_id": "T-v-nul", "member": "2900000000018"}),
    ("POST", "/v1/vouchers/WEL%C2%85COME10/use", {"transaction_id": "T-v-nel", "member": "2900000000018"}),
    ("POST", "/v1/transactions/T-%00/returns", {"return_id": "R-nul"}),
    ("POST", "/v1/slips/T-%00/reprint", None),
    ("GET", "/v1/slips/T-%00.png", None),
]


def test_control_characters_in_text_are_invalid_request_and_write_nothing(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    lane.wait_synced()
    before = lane.health()["sync"]
    for path, body in REFUSED:
        resp = lane.post(path, body)
        assert resp.status_code == 422, (path, body, resp.text)
        answer = resp.json()
        assert answer["code"] == "invalid_request" and "control characters" in answer["message"], answer
        assert "\u0000" not in resp.text  # the answer does not repeat what was sent
    for method, path, body in REFUSED_PATHS:
        resp = lane.get(path) if method == "GET" else lane.post(path, body)
        assert resp.status_code == 422, (path, resp.text)
        answer = resp.json()
        assert answer["code"] == "invalid_request" and "path." in answer["message"], answer
        assert "\u0000" not in resp.text and "\u001b" not in resp.text
    after = lane.health()["sync"]
    assert (after["pending"], after["last_acked_seq"]) == (before["pending"], before["last_acked_seq"])
    # the lane goes on: a clean sale is recorded (new: none of the refused ids took it) and reaches central
    fresh = lane.post("/v1/transactions", sale("T-end"))
    assert fresh.status_code == 200 and fresh.headers.get("Idempotent-Replayed") is None, fresh.text
    assert lane.post("/v1/transactions", sale("T-clean")).status_code == 200
    lane.wait_drained()
    assert lane.health()["sync"]["quarantined"] == 0


def test_central_answering_500_is_a_central_error_not_unreachable(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    lane.wait_synced()
    central.inject("push", "500", count=10_000)
    assert lane.post("/v1/transactions", sale("T-500")).status_code == 200

    def told() -> dict[str, Any] | None:
        issues = {i["code"]: i for i in lane.health()["issues"]}
        return issues.get("central_error")

    issue = lane.wait_for(told, 30, "central_error in health")
    health = lane.health()
    assert "central_unreachable" not in {i["code"] for i in health["issues"]}
    assert health["status"] == "degraded" and health["sync"]["central_answered"] is True
    assert "500" in issue["detail"]
    assert any(p.startswith("central answers with an error") for p in health["problems"])


# Half of a character (an emoji cut in two by a POS's text encoding), as the JSON escape a POS sends.
SURROGATES = [
    ("/v1/members", '{"card": "2900000000179", "display_name": "Ola \\ud83d"}', "display_name"),
    ("/v1/transactions", json.dumps(sale("T-sur-1"))[:-1] + ', "member": "\\ud800"}', "member"),
    ("/v1/transactions", json.dumps(sale("T-sur-2", sku="A\\udc00")).replace("\\\\", "\\"), "sku"),
]


def test_an_unpaired_surrogate_is_named_as_such_not_as_a_control_character(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    lane.wait_synced()
    before = lane.health()["sync"]
    for path, body, field in SURROGATES:
        resp = requests.post(lane.base + path, data=body.encode(), timeout=10,
                             headers=lane.headers(**{"Content-Type": "application/json"}))
        assert resp.status_code == 422, (path, body, resp.text)
        answer = resp.json()
        assert answer["code"] == "invalid_request", answer
        assert "unpaired surrogate" in answer["message"] and "control" not in answer["message"], answer
        assert field in answer["message"], answer
    after = lane.health()["sync"]
    assert (after["pending"], after["last_acked_seq"]) == (before["pending"], before["last_acked_seq"])
    fresh = lane.post("/v1/transactions", sale("T-sur-1"))  # none of the refused ones took the id
    assert fresh.status_code == 200 and fresh.headers.get("Idempotent-Replayed") is None, fresh.text


def test_json_python_cannot_read_is_invalid_request_saying_why(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    too_long = json.dumps(sale("T-long"))[:-1] + ', "total": ' + "9" * 5000 + "}"
    resp = requests.post(lane.base + "/v1/transactions", data=too_long.encode(), timeout=10,
                         headers=lane.headers(**{"Content-Type": "application/json"}))
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_request", resp.text
    assert "too many digits" in resp.json()["message"], resp.text
