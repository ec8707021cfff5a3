"""Members beyond the plastic card, through real daemons: phone QR tokens and wallet passes at the
scanner and the camera, replays on one lane and across lanes, key rotation, and secrets that never leave."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import requests

from posd.core.member_tokens import totp_code
from posd.lane.events import EVENT_TYPES
from posd.sync.central.tokens import issue_qr_token
from tests.conftest import ENGINES
from tests.support.central_fixture import default_seed
from tests.support.clips import code_image, scene, write_clip
from tests.support.lane import sale_body

SECRET = bytes.fromhex("3132333435363738393031323334353637383930")  # the wallet pass of M0002
WALLET = {"algorithm": "TOTP_SHA1", "period_s": 30, "digits": 6, "value_pattern": "{member}:{totp}", "window": 1}


CENTRAL_ENGINES = ENGINES  # every test here that uses central's database runs on both engines


@pytest.fixture
def central_seed() -> dict[str, Any]:
    seed = default_seed()
    seed["program"]["member_tokens"] = {"wallet": WALLET}
    seed["members"][1]["totp_secret"] = SECRET.hex()
    seed["members"][2]["identifiers"].append("+48600123456")  # M0003 enrolled with a phone
    return seed


def fresh_token(central, member: str = "M0001", validity: int = 600) -> str:
    answer = requests.post(f"{central.url}/_admin/members/{member}/token", json={"validity_s": validity}, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def signed_now_with(central, kid: str, *, issued_at: int, validity: int = 60, member: str = "M0001") -> str:
    key = next(k for k in central.store.member_token_keys() if k["kid"] == kid)
    return issue_qr_token(key["private_key"], kid, member, issued_at, validity)


def token_uses(central, lane_id: str = "L01") -> list[dict[str, Any]]:
    return [e for e in central.store.events("S001", lane_id) if e["type"] == "token_use"]


def wallet_code(step_offset: int = 0) -> str:
    return "M0002:" + totp_code(SECRET, int(time.time()) // 30 + step_offset, 6)


@pytest.mark.long  # about 4.5 s on each engine: CI runs it with the fault runs (make test-faults)
def test_a_phone_token_at_the_scanner_identifies_the_member_once(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    token = fresh_token(central)
    stream = lane.sse()
    try:
        lane.scan(token)
        assert stream.next("scan")["data"]["kind"] == "token"  # the token itself is not repeated
        event = stream.next("member.identified")["data"]
        assert (event["identified_by"], event["identifier"], event["member"]["member_id"]) == (
            "qr_token", "M0001", "M0001")
        assert len(event["token_id"]) == 16
        lane.scan(token)  # the same QR again: a screenshot, or the cashier twice
        rejected = stream.next("member.token_rejected")["data"]
        assert (rejected["scheme"], rejected["reason"], rejected["code"]) == (
            "qr_token", "replayed", "member_token_replayed")
        lane.scan("2900000000018")  # the plastic card still says how
        assert stream.next("member.identified")["data"]["identified_by"] == "card"
    finally:
        stream.close()
    answer = lane.get(f"/v1/members/{token}")
    assert (answer.status_code, answer.json()["code"]) == (409, "member_token_replayed")
    lane.wait_drained()
    uses = token_uses(central)
    assert [(u["status"], u["event"]["token_id"], u["event"]["identified_by"]) for u in uses] == [
        ("accepted", event["token_id"], "qr_token")]
    assert token.split(".")[1][-40:] not in json.dumps(uses)  # no signature material travels

    lane.stop()  # a restart does not let the token in again
    lane.start()
    assert lane.get(f"/v1/members/{token}").json()["code"] == "member_token_replayed"


def test_expired_future_tampered_and_unknown_tokens_are_refused_with_a_reason(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    kid = central.store.member_token_keys()[0]["kid"]
    now = int(time.time())
    cases = [
        (signed_now_with(central, kid, issued_at=now - 3600), 422, "member_token_expired"),
        (signed_now_with(central, kid, issued_at=now + 3600), 422, "member_token_not_yet_valid"),
        (issue_qr_token(bytes(32), kid, "M0001", now), 422, "member_token_invalid"),  # another key, same kid
        (issue_qr_token(bytes(32), "kstranger", "M0001", now), 422, "member_token_invalid"),
        (fresh_token(central)[:-3] + "AAA", 422, "member_token_invalid"),
    ]
    for token, status, code in cases:
        answer = lane.get(f"/v1/members/{token}")
        assert (answer.status_code, answer.json()["code"]) == (status, code), token
    sale = {"transaction_id": "T-tok-1", "member": cases[0][0], "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": 1000, "lines": [{"sku": "1", "quantity": 1, "unit_price": 1000}]}
    assert lane.post("/v1/transactions", sale).json()["code"] == "member_token_expired"
    stream = lane.sse()
    try:
        lane.scan(cases[0][0])
        assert stream.next("member.token_rejected")["data"]["reason"] == "expired"
        lane.scan(cases[3][0])
        assert stream.next("member.token_rejected")["data"]["reason"] == "unknown_key"
    finally:
        stream.close()
    assert token_uses(central) == []


def test_a_sale_naming_a_token_uses_it_in_the_same_write(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    token = fresh_token(central)
    sale = {"transaction_id": "T-tok-2", "member": token, "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": 999, "lines": [{"sku": "1", "quantity": 1, "unit_price": 1000}]}
    refused = lane.post("/v1/transactions", sale)  # total_mismatch: nothing written, the token not spent
    assert refused.json()["code"] == "total_mismatch"
    sale["total"] = 1000
    first = lane.post("/v1/transactions", sale)
    assert first.status_code == 200 and first.json()["member_id"] == "M0001"
    retry = lane.post("/v1/transactions", sale)  # the POS retries: the first answer, not a replay refusal
    assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
    other = lane.post("/v1/transactions", {**sale, "transaction_id": "T-tok-3"})
    assert other.json()["code"] == "member_token_replayed"
    # a quote with the spent token says so too (the sale after it would be refused), showing no
    # balance or voucher to whoever holds a screenshot of it
    quote = lane.post("/v1/quotes", {**sale, "transaction_id": "T-tok-4"})
    assert (quote.status_code, quote.json()["code"]) == (409, "member_token_replayed"), quote.text
    assert "balance" not in quote.json()
    lane.wait_drained()
    assert len(token_uses(central)) == 1


def test_a_token_replayed_at_another_lane_is_refused_while_central_answers(tmp_path, central, start_lane):
    one = start_lane(tmp_path / "one")
    two = start_lane(tmp_path / "two", lane_id="L02")
    token = fresh_token(central)
    assert one.get(f"/v1/members/{token}").status_code == 200
    answer = two.get(f"/v1/members/{token}")  # lane two asks central before it accepts the token
    assert (answer.status_code, answer.json()["code"]) == (409, "member_token_replayed")
    sale = {"transaction_id": "T-tok-L02", "member": token, "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": 1000, "lines": [{"sku": "1", "quantity": 1, "unit_price": 1000}]}
    assert two.post("/v1/transactions", sale).json()["code"] == "member_token_replayed"
    stream = two.sse()
    try:
        two.scan(token)  # at the scanner too
        rejected = stream.next("member.token_rejected")["data"]
        assert (rejected["reason"], rejected["code"]) == ("replayed", "member_token_replayed")
    finally:
        stream.close()
    one.wait_drained()
    two.wait_drained()
    assert token_uses(central, "L02") == []  # nothing accepted, nothing to flag
    assert [u["status"] for u in token_uses(central, "L01")] == ["accepted"]
    health = two.health()
    assert health["status"] == "ok" and health["sync"]["quarantined"] == 0, health["problems"]


@pytest.mark.long  # about 4.4 s on each engine: CI runs it with the fault runs (make test-faults)
def test_a_replay_accepted_offline_is_flagged_by_central_as_information_not_a_fault(tmp_path, central, start_lane):
    one = start_lane(tmp_path / "one")
    two = start_lane(tmp_path / "two", lane_id="L02")
    token = fresh_token(central)
    assert one.get(f"/v1/members/{token}").status_code == 200
    one.wait_drained()
    central.inject("token_uses", "timeout", delay=3.0)  # central does not answer lane two's claim in time
    stream = two.sse()
    try:
        assert two.get(f"/v1/members/{token}").status_code == 200  # accepted offline, as before
        flagged = stream.next("member.token_flagged", timeout=30)["data"]
    finally:
        stream.close()
    assert (flagged["member_id"], flagged["identified_by"], flagged["code"]) == ("M0001", "qr_token", "token_replayed")
    [use] = token_uses(central, "L02")
    assert (use["status"], use["code"], use["event"]["token_id"]) == ("rejected", "token_replayed", flagged["token_id"])
    two.wait_drained()
    health = two.health()
    assert health["sync"]["quarantined"] == 0 and health["sync"]["token_replays_flagged"] == 1
    assert health["status"] == "ok", health["problems"]  # a fraud signal for central, not an amber lane
    assert "posd_member_token_replays_flagged_total 1.0" in two.get("/metrics").text
    page = two.get("/").text
    assert 'id="row-token_replays"' in page
    two.stop()  # still green after a restart: the event is acked, not quarantined
    two.start()
    assert two.health()["sync"]["quarantined"] == 0 and two.health()["status"] == "ok"


def test_key_rotation_keeps_both_keys_valid_then_retires_the_old(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    # a sale first: ledger.db keeps the version's rules, which a rotation (new keys, the same version) keeps
    assert lane.post("/v1/transactions", sale_body("T-before-rotation")).status_code == 200
    old_kid = central.store.member_token_keys()[0]["kid"]
    old_token = fresh_token(central)
    keys = requests.post(f"{central.url}/_admin/member-token-keys", json={"rotate": True}, timeout=5).json()["keys"]
    assert [k["kid"] for k in keys][0] == old_kid and len(keys) == 2
    new_kid = keys[1]["kid"]
    # New tokens keep the old key until lanes have had time to pull the new one: a token signed at
    # once was refused (unknown_key) at every till until its next program pull.
    answer = requests.post(f"{central.url}/_admin/members/M0001/token", json={}, timeout=5).json()
    assert answer["kid"] == old_kid and lane.get(f"/v1/members/{answer['token']}").status_code == 200
    lane.wait_for(lambda: lane.get(f"/v1/members/{signed_now_with(central, new_kid, issued_at=int(time.time()))}")
                  .status_code == 200, 30, "a token signed with the new key accepted")
    assert lane.get(f"/v1/members/{old_token}").status_code == 200  # both valid meanwhile
    still_old = signed_now_with(central, old_kid, issued_at=int(time.time()))
    requests.post(f"{central.url}/_admin/member-token-keys", json={"retire": old_kid}, timeout=5)
    lane.wait_for(lambda: lane.get(f"/v1/members/{signed_now_with(central, old_kid, issued_at=int(time.time()))}")
                  .json().get("code") == "member_token_invalid", 30, "the retired key refused")
    assert lane.get(f"/v1/members/{still_old}").json()["code"] == "member_token_invalid"
    assert json.loads(requests.post(f"{central.url}/_admin/members/M0001/token", json={}, timeout=5).text)[
        "kid"] == new_kid
    assert not [i for i in lane.health()["issues"] if i["code"] == "program_refused"]


def test_a_token_read_by_the_camera_identifies_the_member(tmp_path, central, start_lane):
    """The phone held to the camera for a second: a clip of the QR for several frames."""
    lane = start_lane(tmp_path / "lane")  # synced once: cache.db has the members and the keys
    lane.stop()
    token = fresh_token(central)
    rng = random.Random(5)
    qr = scene(code_image("QR", token, 4), (640, 360), at=(60, 40), rng=rng)
    blank = np.full((360, 640), 150, np.uint8)
    clip = write_clip(tmp_path / "phone.avi", [blank] * 3 + [qr] * 8 + [blank] * 3, fps=10.0)
    lane.config.write_text(lane.config.read_text() + f"""
[[scanner]]
name = "camera"
url = "camera+file://{clip}?speed=0&debounce_ms=1500"
""")
    lane.start()
    stream = lane.sse(last_event_id=0)  # from the start of this boot: the clip may have played already
    try:
        event = stream.next("member.identified", timeout=60)["data"]
        assert (event["device"], event["identified_by"], event["member"]["member_id"]) == (
            "camera", "qr_token", "M0001")
    finally:
        stream.close()


@pytest.mark.long  # about 5 s on each engine: CI runs it with the fault runs (make test-faults)
def test_a_phone_number_read_from_a_qr_tel_link_identifies_the_member(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane", country="PL")
    stream = lane.sse()
    try:
        lane.scan("tel:+48-600-123-456")  # a contact QR on the member's phone
        scan = stream.next("scan")["data"]
        assert scan["kind"] == "phone" and scan.get("data") is None  # the number is not repeated on the stream
        event = stream.next("member.identified")["data"]
        assert (event["identifier"], event["identified_by"], event["member"]["member_id"]) == (
            "+48600123456", "phone", "M0003")
        lane.scan("tel:+۴۸-۶۰۰-۱۲۳-۴۵۶")  # the same link in Persian digits, as a phone set to Persian writes it
        assert stream.next("scan")["data"]["kind"] == "phone"
        event = stream.next("member.identified")["data"]
        assert (event["identified_by"], event["member"]["member_id"]) == ("phone", "M0003")
        lane.scan("tel:+48-600-123-457")  # a number no member has
        assert stream.next("member.unknown")["data"]["identifier"] == "+48600123457"
        lane.scan("tel:+48 600 123 456;ext=2")  # an extension: not a member's number
        assert stream.next("scan")["data"]["kind"] == "invalid"
        lane.scan("+48600123456")  # the same number without its link: still not repeated on the stream
        scan = stream.next("scan")["data"]
        assert scan["kind"] == "phone" and scan.get("data") is None
        assert stream.next("member.identified")["data"]["member"]["member_id"] == "M0003"
        for typed in ("600123456", "0048600123456"):  # without its +country: a card code first, then the phone
            lane.scan(typed)
            scan = stream.next("scan")["data"]
            assert scan["kind"] == "phone" and scan.get("data") is None, (typed, scan)
            event = stream.next("member.identified")["data"]
            assert (event["identifier"], event["identified_by"], event["member"]["member_id"]) == (
                "+48600123456", "phone", "M0003"), typed
    finally:
        stream.close()


def test_posd_scan_types_a_phone_token_and_a_wallet_code(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    stream = lane.sse()
    try:
        for flag, member, how in (("--member-token", "M0001", "qr_token"), ("--wallet-pass", "M0002", "wallet_totp")):
            subprocess.run([sys.executable, "-m", "posd", "scan", flag, member, "--config", str(lane.config)],
                           check=True, timeout=30)
            event = stream.next("member.identified", timeout=20)["data"]
            assert (event["identified_by"], event["member"]["member_id"]) == (how, member)
        # a token taken from central and typed as a CODE: not echoed whole (a bearer credential until used)
        token = fresh_token(central, "M0002")
        typed = subprocess.run([sys.executable, "-m", "posd", "scan", token, "--config", str(lane.config)],
                               check=True, timeout=30, capture_output=True, text=True)
        assert token not in typed.stdout + typed.stderr and "member token" in typed.stdout, typed.stdout
        assert stream.next("member.identified", timeout=20)["data"]["member"]["member_id"] == "M0002"
    finally:
        stream.close()


def test_a_wallet_pass_added_since_the_lanes_last_pull_is_known_at_once(tmp_path, central, start_lane):
    """The shopper added the pass a moment ago: central made its secret after the lane's last member pull
    (30 s apart as shipped). The lane lacked the secret and refused the code as invalid (unknown_key) at
    once. It pulls the member changes first, as for a member enrolled at another lane, and looks again."""
    lane = start_lane(tmp_path / "lane", intervals=(0.2, 3600))  # pulls only at start
    answer = requests.post(f"{central.url}/_admin/members/M0001/wallet-pass", json={}, timeout=5)
    assert answer.status_code == 200, answer.text
    secret = bytes.fromhex(answer.json()["rotatingBarcode"]["totpDetails"]["parameters"][0]["key"])
    code = "M0001:" + totp_code(secret, int(time.time()) // 30, 6)
    found = lane.get(f"/v1/members/{code}")
    assert found.status_code == 200 and found.json()["member_id"] == "M0001", found.text
    stranger = lane.get("/v1/members/M0003:123456")  # no pass at central either: still refused, after the pull
    assert (stranger.status_code, stranger.json()["code"]) == (422, "member_token_invalid"), stranger.text


@pytest.mark.long  # about 4.2 s on each engine: CI runs it with the fault runs (make test-faults)
def test_wallet_codes_inside_the_window_only_and_the_secret_never_leaves(tmp_path, central, start_lane):
    from tests.support.printer_emulator import PrinterEmulator

    printer = PrinterEmulator()
    try:
        lane = start_lane(tmp_path / "lane", printer=f"tcp://127.0.0.1:{printer.port}")
        stream = lane.sse()
        seen: list[str] = []
        try:
            code = wallet_code()
            lane.scan(code)
            event = stream.next("member.identified")
            seen.append(json.dumps(event))
            assert (event["data"]["identified_by"], event["data"]["member"]["member_id"]) == ("wallet_totp", "M0002")
            lane.scan(code)
            assert stream.next("member.token_rejected")["data"]["reason"] == "replayed"
            lane.scan(wallet_code(-4))
            assert stream.next("member.token_rejected")["data"]["reason"] == "expired"
            now = wallet_code()
            lane.scan(now[:-1] + str((int(now[-1]) + 5) % 10))  # one digit off
            rejected = stream.next("member.token_rejected")["data"]
            assert rejected["scheme"] == "wallet_totp" and rejected["code"].startswith("member_token_")
            sale = {"transaction_id": "T-w-1", "member": wallet_code(1), "occurred_at": "2026-11-17T10:15:00+01:00",
                    "currency": "PLN", "total": 5000, "lines": [{"sku": "1", "quantity": 1, "unit_price": 5000}]}
            answers = [lane.post("/v1/transactions", sale), lane.get("/v1/members/2900000000025"),
                       lane.get("/v1/health"), requests.get(f"{lane.base}/openapi.json", timeout=10)]
            assert answers[0].status_code == 200, answers[0].text
            printer.wait_for_jobs(1, timeout=15)
            lane.wait_drained()
            seen += [a.text for a in answers]
        finally:
            stream.close()
        lane.stop()
        outputs = seen + [lane.log.read_text(), json.dumps(central.store.events("S001", "L01"))]
        outputs += [job.decode("latin-1") for job in printer.wait_for_jobs(1)]
        for db in ("ledger.db", "cache.db"):
            outputs.append("\n".join(sqlite3.connect(lane.state / db).iterdump()))
        for text in outputs:
            assert SECRET.hex() not in text and SECRET.hex().upper() not in text
            assert SECRET.decode() not in text  # the raw bytes (printable here), sealed in cache.db
        cache = sqlite3.connect(lane.state / "cache.db")
        assert cache.execute("SELECT totp_secret IS NOT NULL FROM members WHERE member_id = 'M0002'").fetchone()[0]
    finally:
        printer.close()


def test_an_older_wallet_code_after_a_newer_one_is_a_replay(tmp_path, central, start_lane):
    """RFC 6238 section 5.2: the lane keeps the last step it accepted per member, and refuses a code
    of that step or before it, even inside the window (the code read off a photo taken earlier)."""
    lane = start_lane(tmp_path / "lane")
    stream = lane.sse()
    try:
        newer, older = wallet_code(1), wallet_code(0)  # both inside the window for the next 30 s
        lane.scan(newer)
        assert stream.next("member.identified")["data"]["identified_by"] == "wallet_totp"
        lane.scan(older)
        rejected = stream.next("member.token_rejected")["data"]
        assert (rejected["scheme"], rejected["reason"], rejected["code"]) == (
            "wallet_totp", "replayed", "member_token_replayed")
    finally:
        stream.close()
    answer = lane.get(f"/v1/members/{older}")
    assert (answer.status_code, answer.json()["code"]) == (409, "member_token_replayed")
    sale = {"transaction_id": "T-w-old", "member": older, "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": 1000, "lines": [{"sku": "1", "quantity": 1, "unit_price": 1000}]}
    assert lane.post("/v1/transactions", sale).json()["code"] == "member_token_replayed"
    lane.wait_drained()
    assert [u["event"]["identified_by"] for u in token_uses(central)] == ["wallet_totp"]


def test_the_event_stream_lists_the_new_event_type():
    assert "member.token_rejected" in EVENT_TYPES


def test_keys_pinned_in_the_config_replace_the_programs(tmp_path, central, start_lane):
    from posd.sync.central.tokens import new_signing_key, public_key_text

    pinned = new_signing_key()
    lane = start_lane(tmp_path / "lane")
    lane.stop()
    lane.config.write_text(lane.config.read_text().replace(
        "[central]\n", f'[central]\nmember_token_public_key = ["pin1:{public_key_text(pinned)}"]\n'))
    lane.start()
    assert lane.get(f"/v1/members/{fresh_token(central)}").json()["code"] == "member_token_invalid"
    mine = issue_qr_token(pinned, "pin1", "M0002", int(time.time()))
    assert lane.get(f"/v1/members/{mine}").json()["member_id"] == "M0002"
