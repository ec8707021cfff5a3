"""What central refuses in an event, on both engines: one event rejected with a stable code (its seq
consumed, the next one applied), never a 500 for the batch; identifiers held by one member only;
an authorisation that believes only what the lane's unsynced sales could earn.

Pushed as signed batches over real HTTP, as a lane (or a foreign one) would.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from typing import Any

import pytest
import requests

from posd.sync.protocol import signed_headers
from tests.conftest import ENGINES
from tests.support.central_fixture import LANE_ID, SECRET, STORE_ID, default_seed, make_event, running_central

CENTRAL_ENGINES = ENGINES  # every test here runs on SQLite and on PostgreSQL


def raw_push(central, batch_text: str) -> requests.Response:
    """A signed push of JSON text exactly as given (escapes such as a lone surrogate survive)."""
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/batches"
    body = gzip.compress(batch_text.encode("utf-8"))
    headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
    headers["Content-Encoding"] = "gzip"
    return requests.post(central.url + path, data=body, headers=headers, timeout=10)


def push(central, events: list[dict[str, Any]], batch_id: str = "B-1") -> list[tuple[int, str, str | None]]:
    """Push ``events`` (plain JSON: json.dumps escapes every control character); (seq, status, code)."""
    resp = raw_push(central, json.dumps({"batch_id": batch_id, "events": events}))
    assert resp.status_code == 200, resp.text
    return [(r["seq"], r["status"], r.get("code")) for r in resp.json()["results"]]


def enrolment(seq: int, member_id: str, identifiers: Any, **extra: Any) -> dict[str, Any]:
    fields = {"points": {"points": 0}, "display_name": "New M.", **extra}
    return make_event(seq, member_id=member_id, type="member_enrolled", transaction_id=None,
                      identifiers=identifiers, **fields)


@pytest.mark.parametrize("bad", [
    {"display_name": "a\u0000b"},
    {"lines": [{"sku": "59\u0000", "category": "gr\u0000", "quantity": 1, "unit_price": 1000}]},
    {"program_version": "test-1\u0000"},
    {"points": {"points\u0000": 5}},
    {"identifiers": ["2900000000179", "\u0000"]},
    {"display_name": "tab\tinside"},
    {"display_name": "C1 \u0085 next line"},
], ids=["nul-name", "nul-sku", "nul-version", "nul-currency", "nul-identifier", "tab", "c1"])
def test_a_control_character_rejects_that_event_alone(central, bad):
    bad = dict(bad)  # the parameter is shared by both engines' runs
    identifiers = bad.pop("identifiers", ["2900000000179"])
    first = make_event(1, **bad) if "lines" in bad else enrolment(1, "M0100", identifiers, **bad)
    answers = push(central, [first, make_event(2, points={"points": 5})])
    assert answers == [(1, "rejected", "malformed_event"), (2, "accepted", None)]
    assert central.store.last_seq(STORE_ID, LANE_ID) == 2
    assert central.store.member("M0100") is None
    assert central.store.member("M0001")["balances"] == {"points": 1845}
    stored = central.store.events(STORE_ID, LANE_ID)[0]
    assert (stored["status"], stored["code"]) == ("rejected", "malformed_event")
    assert "\u0000" not in json.dumps(stored["event"], ensure_ascii=False)  # kept, as its escape text
    # the same event again: the stored answer, not a 500
    assert push(central, [first], "B-2") == [(1, "rejected", "malformed_event")]


def test_a_lone_surrogate_or_a_nul_anywhere_is_refused_without_an_error_answer(central):
    event = make_event(1)
    text = json.dumps({"batch_id": "B-1", "events": [event, make_event(2), make_event(3)]})
    text = text.replace('"sku": "5901234123457"', '"sku": "59\\ud800"', 1)  # a lone surrogate, as JSON may say
    text = text.replace('"T-L01-2"', '"T-\\u0000"', 1)
    resp = raw_push(central, text)
    assert resp.status_code == 200, resp.text
    assert [(r["seq"], r["status"], r.get("code")) for r in resp.json()["results"]] == [
        (1, "rejected", "malformed_event"), (2, "rejected", "malformed_event"), (3, "accepted", None)]
    # an id in the envelope with one: the batch is malformed (400), nothing consumed after it
    text = json.dumps({"batch_id": "B-\u0000", "events": [make_event(4)]})
    resp = raw_push(central, text)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_batch")
    resp = raw_push(central, json.dumps({"batch_id": "B-3", "events": [make_event(4, event_id="E\u0000")]}))
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_batch")
    assert central.store.last_seq(STORE_ID, LANE_ID) == 3


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_number_that_is_not_finite_rejects_that_event_alone(central, number):
    """json reads NaN, the infinities and 1e400 in a push; PostgreSQL's jsonb refuses them. The event
    is rejected (its seq consumed, the next one applied) and kept readable, on either engine."""
    events = [make_event(1), make_event(2), make_event(3), make_event(4)]
    text = json.dumps({"batch_id": "B-1", "events": events})
    text = text.replace('"unit_price": 1000', f'"unit_price": {number}', 1)  # seq 1: deep in a line
    text = text.replace('"T-L01-2", ', f'"T-L01-2", "extra": {number}, ', 1)  # seq 2: a field of its own
    resp = raw_push(central, text)
    assert resp.status_code == 200, resp.text
    assert [(r["seq"], r["status"], r.get("code")) for r in resp.json()["results"]] == [
        (1, "rejected", "malformed_event"), (2, "rejected", "malformed_event"), (3, "accepted", None),
        (4, "accepted", None)]
    assert central.store.last_seq(STORE_ID, LANE_ID) == 4
    stored = central.store.events(STORE_ID, LANE_ID)
    assert [(e["status"], e["code"]) for e in stored[:2]] == [("rejected", "malformed_event")] * 2
    # the same batch again: the stored answers, not a 500
    resp = raw_push(central, text)
    assert resp.status_code == 200, resp.text
    assert [(r["status"], r.get("code")) for r in resp.json()["results"]] == [
        ("rejected", "malformed_event"), ("rejected", "malformed_event"), ("duplicate", None), ("duplicate", None)]
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/authorisations"  # nor in a question asked in real time
    body = ('{"authorisation_id": "redemption:R1", "kind": "redemption", "member_id": "M0001", '
            f'"occurred_at": "2026-11-24T09:15:00Z", "points": {{"points": {number}}}}}').encode()
    headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
    headers["Content-Type"] = "application/json"
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_authorisation"), resp.text


def test_an_event_twice_in_a_batch_is_refused_and_a_changed_event_at_a_used_seq_conflicts(central):
    """One event_id under two seqs of a batch would be applied twice: the batch is malformed (400),
    nothing of it applied. The same seq and event_id again with other content is not a duplicate (the
    lane would take its change as applied): seq_conflict, and the stored event stands."""
    twice = [make_event(1), make_event(2, event_id="E-L01-1")]
    resp = raw_push(central, json.dumps({"batch_id": "B-1", "events": twice}))
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_batch"), resp.text
    assert central.store.last_seq(STORE_ID, LANE_ID) == 0
    assert push(central, [make_event(1), make_event(2)]) == [(1, "accepted", None), (2, "accepted", None)]
    balance = central.store.member("M0001")["balances"]
    changed = make_event(2, points={"points": 99999})
    assert push(central, [make_event(1), changed], "B-2") == [(1, "duplicate", None), (2, "rejected", "seq_conflict")]
    reordered = dict(reversed(list(make_event(2).items())))  # the same event, its keys in another order
    assert push(central, [reordered], "B-3") == [(2, "duplicate", None)]
    assert central.store.member("M0001")["balances"] == balance
    big = make_event(3, lines=[{"sku": "5901234123457", "quantity": 1, "unit_price": 1e23}])  # jsonb keeps it exact
    assert push(central, [big], "B-4") == [(3, "accepted", None)]
    assert push(central, [big], "B-5") == [(3, "duplicate", None)]
    assert push(central, [dict(big, offline=0)], "B-6") == [(3, "rejected", "seq_conflict")]  # false is not 0
    assert central.store.last_seq(STORE_ID, LANE_ID) == 3


def test_an_event_delivered_again_at_a_new_seq_is_never_counted_twice(central):
    """Central dedupes on (lane, seq), and an event_id names one event: the same accrual resent under a
    later seq (a lane that renumbered its queue) is rejected event_id_reused, its seq consumed, the points
    counted once; a resend of that seq gets the same answer; another lane may use the same event_id."""
    first = make_event(1, points={"points": 40})
    assert push(central, [first]) == [(1, "accepted", None)]
    balance = central.store.member("M0001")["balances"]
    again = dict(first, seq=2)
    assert push(central, [again, make_event(3)], "B-2") == [(2, "rejected", "event_id_reused"),
                                                            (3, "accepted", None)]
    assert push(central, [again], "B-3") == [(2, "rejected", "event_id_reused")]
    assert central.store.last_seq(STORE_ID, LANE_ID) == 3
    after = central.store.member("M0001")["balances"]
    assert after["points"] == balance["points"] + make_event(3)["points"]["points"]
    other_lane = "L02"
    path = f"/v1/lanes/{STORE_ID}/{other_lane}/batches"
    body = gzip.compress(json.dumps({"batch_id": "B-4", "events": [first]}).encode())
    headers = {**signed_headers(SECRET, STORE_ID, other_lane, int(time.time()), "POST", path, body),
               "Content-Encoding": "gzip"}
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert [(r["seq"], r["status"]) for r in resp.json()["results"]] == [(1, "accepted")], resp.text


def test_a_push_without_its_lane_header_is_refused(central):
    """The protocol sends X-Posd-Lane on every call and central checks it against the URL: left out, a
    signed push was taken as the URL's lane."""
    path = f"/v1/lanes/{STORE_ID}/L07/batches"
    body = gzip.compress(json.dumps({"batch_id": "B-h1", "events": [make_event(1, lane_id="L07")]}).encode())
    headers = {**signed_headers(SECRET, STORE_ID, None, int(time.time()), "POST", path, body),
               "Content-Encoding": "gzip"}
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (403, "lane_mismatch") and "required" in resp.json()["message"]
    assert central.store.last_seq(STORE_ID, "L07") == 0


def test_a_nul_in_a_url_or_an_authorisation_is_a_4xx(central):
    resp = requests.get(central.url + "/v1/stores/S%00/vouchers/C1", timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (404, "unknown_voucher")
    resp = requests.get(central.url + f"/v1/lanes/{STORE_ID}/L%00", timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (404, "not_found")
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/authorisations"
    for request in ({"authorisation_id": "redemption:\u0000", "kind": "redemption", "member_id": "M0001",
                     "occurred_at": "2026-11-24T09:15:00Z", "points": {"points": 1}},
                    {"authorisation_id": "redemption:R1", "kind": "redemption", "member_id": "M0001",
                     "occurred_at": "2026-11-24T09:15:00Z", "points": {"points\u0000": 1}}):
        body = json.dumps(request).encode()
        headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
        headers["Content-Type"] = "application/json"
        resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
        assert (resp.status_code, resp.json()["code"]) == (400, "malformed_authorisation")
    for query, code in (("cursor=5%00", "bad_cursor"), ("limit=1%00", "bad_limit")):  # refused, not a snapshot
        path = f"/v1/stores/{STORE_ID}/members/changes?{query}"
        headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "GET", path, b"")
        resp = requests.get(central.url + path, headers=headers, timeout=10)
        assert (resp.status_code, resp.json()["code"]) == (400, code), resp.text
    claims = (("token-uses", {"token_id": "T\u0000", "member_id": "M0001", "identified_by": "qr_token"}, "malformed_token_use"),
              ("birthday-awards", {"member_id": "M0001", "year": 2026, "transaction_id": "T-1\u0000"},
               "malformed_birthday_claim"),
              ("releases", {"authorisation_id": "redemption:\u0000"}, "malformed_authorisation"))
    for route, request, code in claims:  # the ids every real-time question names, checked alike
        path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/{route}"
        body = json.dumps(request).encode()
        headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
        headers["Content-Type"] = "application/json"
        resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
        assert (resp.status_code, resp.json()["code"]) == (400, code), (route, resp.text)


def test_a_list_or_an_object_where_a_word_belongs_is_refused_not_a_500(central):
    """A type, or a token's identified_by, that is a JSON list or object (not text) cannot be looked up
    among the words central knows: rejected with its code, never a 500."""
    token = {"token_id": "TK-1", "identified_by": {"scheme": "qr_token"}, "points": {}}
    events = [make_event(1, type={"kind": "accrual"}), make_event(2, type=["accrual"]),
              make_event(3, type="token_use", transaction_id=None, **token), make_event(4)]
    assert push(central, events) == [(1, "rejected", "unknown_type"), (2, "rejected", "unknown_type"),
                                     (3, "rejected", "malformed_event"), (4, "accepted", None)]
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/token-uses"
    body = json.dumps({"token_id": "TK-2", "member_id": "M0001", "identified_by": ["qr_token"]}).encode()
    headers = {**signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body),
               "Content-Type": "application/json"}
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_token_use"), resp.text


def test_points_in_a_currency_the_program_does_not_have_are_bad_points(central):
    events = [make_event(1, points={"c0": 5}), make_event(2, points={"points": 5, "c1999": -3}),
              make_event(3, type="return", points={"stamps": -1}), make_event(4, points={"points": 5})]
    assert push(central, events) == [(1, "rejected", "bad_points"), (2, "rejected", "bad_points"),
                                     (3, "rejected", "bad_points"), (4, "accepted", None)]
    assert central.store.member("M0001")["balances"] == {"points": 1845}
    members, _, _ = central.store.member_changes(STORE_ID, 0, 100)
    assert all(set(m["balances"]) <= {"points"} for m in members)


def test_a_currency_an_earlier_program_had_is_not_bad_points(central):
    """A program renaming a currency: a sale rung under the program before (a lane offline through
    the change, or before its next poll) was rejected whole for good, its other points lost too."""
    program, _ = central.store.program()
    renamed = {**program, "version": program["version"] + "-next",
               "currencies": [{**c, "code": "points2"} if c["code"] == "points" else c
                              for c in program["currencies"]]}
    central.store.set_program(renamed)
    events = [make_event(1, points={"points": 5}), make_event(2, points={"points2": 7}),
              make_event(3, points={"c0": 5})]
    assert push(central, events) == [(1, "accepted", None), (2, "accepted", None), (3, "rejected", "bad_points")]
    assert central.store.member("M0001")["balances"] == {"points": 1845, "points2": 7}


@pytest.mark.parametrize("identifiers", [[None], [2900000000179], ["2900000000179", {"a": 1}], "2900000000179"])
def test_identifiers_that_are_not_strings_are_malformed(central, identifiers):
    assert push(central, [enrolment(1, "M0100", identifiers)]) == [(1, "rejected", "malformed_event")]
    assert central.store.member("M0100") is None


def test_an_enrolment_naming_an_identifier_no_lane_looks_up_is_malformed(central):
    """A foreign or old lane's enrolment made a member under "+48 620 111 222": found by no lane (they read
    and type identifiers canonical), so enrolled again as a second member. Refused as the seed refuses it."""
    odd = ["+48 620 111 222", "\uff11\uff12\uff13\uff14\uff15", "12 34", "A" * 65, "+ABC1"]
    events = [enrolment(1 + 2 * n, f"M01{n:02d}", ["2900000000179", identifier]) for n, identifier in enumerate(odd)]
    events += [enrolment(2 + 2 * n, f"P-0000000000000{n:03d}", [identifier], provisional=True)
               for n, identifier in enumerate(odd)]
    events.sort(key=lambda e: e["seq"])
    events.append(enrolment(len(events) + 1, "M0199", ["2900000000186", "+6834002"]))  # Niue: 7 digits
    assert push(central, events) == [(e["seq"], "rejected", "malformed_event") for e in events[:-1]] + [
        (len(events), "accepted", None)]
    assert all(central.store.member(e["member_id"]) is None for e in events[:-1])


@pytest.mark.parametrize("birth_date", ["03.12.1990", 19901203, "1990-13-03", "1990-12-03T00:00:00"])
def test_a_birth_date_that_is_not_a_date_is_malformed(central, birth_date):
    assert push(central, [enrolment(1, "M0100", ["2900000000179"], birth_date=birth_date)]) == [
        (1, "rejected", "malformed_event")]


def test_an_enrolment_naming_a_held_card_or_phone_is_identifier_taken(central):
    taken = enrolment(1, "M0100", ["+48600123456", "2900000000018"])  # Anna's card
    answers = push(central, [taken, make_event(2, member_id="M0100", points={"points": 50}),
                             enrolment(3, "M0101", ["2900000000179", "+48600999999"]),
                             enrolment(4, "M0102", ["2900000000179"]),  # M0101's card, in the same batch
                             make_event(5, points={"points": 5})])
    assert answers == [(1, "rejected", "identifier_taken"), (2, "rejected", "unknown_member"),
                       (3, "accepted", None), (4, "rejected", "identifier_taken"), (5, "accepted", None)]
    assert central.store.member("M0100") is None and central.store.member("M0102") is None
    assert central.store.member("M0101")["identifiers"] == ["2900000000179", "+48600999999"]
    assert central.store.member("M0001")["identifiers"] == ["2900000000018"]
    # in a later batch too; and a provisional enrolment of a held card maps to its holder (one member)
    assert push(central, [enrolment(6, "M0103", ["+48600999999"]),
                          enrolment(7, "P-00000000000000aa", ["+48600999999"], provisional=True)], "B-2") == [
        (6, "rejected", "identifier_taken"), (7, "accepted", None)]
    holders = [m["member_id"] for m in central.store.member_changes(STORE_ID, 0, 100)[0]
               if "+48600999999" in m["identifiers"]]
    assert holders == ["M0101"]
    assert central.store.member("P-00000000000000aa")["member_id"] == "M0101"


def test_two_provisional_enrolments_of_one_card_in_one_batch_make_one_member(central):
    answers = push(central, [enrolment(1, "P-00000000000000a1", ["2900000000179"], provisional=True),
                             enrolment(2, "P-00000000000000a2", ["2900000000179"], provisional=True)])
    assert [a[1] for a in answers] == ["accepted", "accepted"]
    one, two = central.store.member("P-00000000000000a1"), central.store.member("P-00000000000000a2")
    assert one["member_id"] == two["member_id"]
    holders = [m["member_id"] for m in central.store.member_changes(STORE_ID, 0, 100)[0]
               if "2900000000179" in m["identifiers"]]
    assert holders == [one["member_id"]]


def test_an_enrolment_found_by_its_phone_gives_the_member_the_name_it_lacked(central):
    """The same phone enrolled at three lanes while central was out, with a name at two of them: the
    member central made from the nameless one kept no name, and the tills that had it typed lost it."""
    phone = "+48600222101"
    answers = push(central, [enrolment(1, "P-00000000000000c1", [phone], display_name="", provisional=True),
                             enrolment(2, "P-00000000000000c2", [phone], display_name="Kasia", locale="pl",
                                       birth_date="1990-12-06", provisional=True),
                             enrolment(3, "P-00000000000000c3", [phone], display_name="Kasia K.", provisional=True)],
                   batch_id="B-n1")
    assert [a[1] for a in answers] == ["accepted"] * 3
    member = central.store.member("P-00000000000000c3")
    assert member["member_id"] == central.store.member("P-00000000000000c1")["member_id"]
    assert (member["display_name"], member.get("birth_date")) == ("Kasia", "1990-12-06")  # the first name given


def test_an_enrolment_found_by_its_phone_keeps_its_card_for_that_member(central):
    """The same phone enrolled offline at two lanes, each with its own card: the second enrolment was
    mapped to the first member and its card dropped. It then identified nobody, and a later enrolment
    gave it to someone else. A card another member holds stays that member's."""
    phone = "+48600222001"
    answers = push(central, [enrolment(1, "P-00000000000000b1", ["2900000200012", phone], provisional=True),
                             enrolment(2, "P-00000000000000b2", ["2900000200029", phone], provisional=True),
                             enrolment(3, "P-00000000000000b3", ["2900000200036"], provisional=True),
                             enrolment(4, "P-00000000000000b4", ["+48600222004", "2900000200036"],
                                       provisional=True)], batch_id="B-e1")
    assert [a[1] for a in answers] == ["accepted"] * 4
    first, second = central.store.member("P-00000000000000b1"), central.store.member("P-00000000000000b2")
    assert first["member_id"] == second["member_id"]
    assert sorted(first["identifiers"]) == sorted(["2900000200012", "2900000200029", phone])
    later = push(central, [enrolment(5, "P-00000000000000b5", ["2900000200012"], provisional=True)],
                 batch_id="B-e2")
    assert later[0][1] == "accepted" and central.store.member("P-00000000000000b5")["member_id"] == first["member_id"]
    third, fourth = central.store.member("P-00000000000000b3"), central.store.member("P-00000000000000b4")
    assert third["member_id"] == fourth["member_id"]  # found by the card: the phone joins that member
    holders = {}
    for m in central.store.member_changes(STORE_ID, 0, 100)[0]:
        for identifier in m["identifiers"]:
            holders.setdefault(identifier, []).append(m["member_id"])
    assert all(len(who) == 1 for who in holders.values()), holders


def authorise(central, request: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/authorisations"
    body = json.dumps(request).encode()
    headers = signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body)
    headers["Content-Type"] = "application/json"
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def redemption(auth: str, points: int, unsynced: list[dict[str, Any]]) -> dict[str, Any]:
    return {"authorisation_id": auth, "kind": "redemption", "member_id": "M0001",
            "occurred_at": "2026-11-24T09:15:00Z", "points": {"points": points}, "unsynced": unsynced}


def test_unsynced_credits_count_only_as_far_as_one_sale_can_earn(central):
    # M0001 has 1840 points; the program (the default seed) sets no transaction cap: 10,000 per event
    huge = [{"seq": 1, "points": {"points": 10**12}}]
    answer = authorise(central, redemption("redemption:R1", 999_999, huge))
    assert (answer["status"], answer["code"], answer["available"]) == (
        "declined", "insufficient_balance", {"points": 11_840})
    # the same seq listed twice counts once; a currency the program lacks counts nothing
    twice = huge + [{"seq": 1, "points": {"points": 10**12}}, {"seq": 2, "points": {"c0": 10**12}}]
    assert authorise(central, redemption("redemption:R2", 11_841, twice))["available"] == {"points": 11_840}
    assert authorise(central, redemption("redemption:R3", 11_840, twice))["status"] == "approved"
    # with a cap in the program, that cap; a debit counts in full
    central.store.set_program({**default_seed()["program"], "transaction_caps": {"points": 500}})
    listed = [{"seq": 3, "points": {"points": 10**6}}, {"seq": 4, "points": {"points": -100}}]
    answer = authorise(central, redemption("redemption:R4", 2241, listed))
    assert (answer["status"], answer["available"]) == ("declined", {"points": 1840 - 11_840 + 500 - 100})


def test_a_voucher_use_with_an_empty_code_rejects_that_event_alone(central):
    """Its lock id was None among the members' ids: sorting them raised, the batch was a 500, and
    the lane could never push past that seq."""
    use = make_event(1, type="voucher_use", points={}, voucher_code="", voucher_once_per="code",
                     authorisation_id=None, reservation_id=None)
    answers = push(central, [use, make_event(2, points={"points": 5})])
    assert answers[1] == (2, "accepted", None) and answers[0][1] == "rejected", answers
    assert central.store.last_seq(STORE_ID, LANE_ID) == 2


@pytest.mark.parametrize("field,value", [("reward_id", {"id": "free-coffee"}), ("reward_id", ["free-coffee"]),
                                         ("reward_id", 10**20), ("reward_id", 7), ("authorisation_id", {"a": 1}),
                                         ("reservation_id", ["R-1"]), ("authorisation_id", "redemption:" + "x" * 2800),
                                         ("authorisation_id", "a" * 257), ("authorisation_id", ""),
                                         ("reservation_id", "R" * 129), ("reward_id", "r" * 129)],
                         ids=["reward-object", "reward-list", "reward-huge", "reward-int", "auth-object", "resv-list",
                              "auth-2811", "auth-257", "auth-empty", "resv-129", "reward-129"])
def test_a_burn_naming_its_reward_or_authorisation_by_other_than_text_rejects_that_event_alone(central, field, value):
    """Kept in a text column and looked up as text: a 500 for the whole batch on SQLite (and an
    object on PostgreSQL), or stored as something no lane sent (a list or a big number on PostgreSQL).
    An id longer than any lane makes: PostgreSQL's unique index refused the row (a 500 at every
    resend: the lane was stuck) while SQLite took it."""
    burn = make_event(1, type="redemption", points={"points": -100}, **{field: value})
    answers = push(central, [burn, make_event(2, points={"points": 5})])
    assert answers == [(1, "rejected", "malformed_event"), (2, "accepted", None)]
    assert central.store.member("M0001")["balances"] == {"points": 1845}
    assert central.store.reservations("M0001") == []


@pytest.mark.parametrize("extra", [{"reward_id": {"id": "free-coffee"}}, {"reward_id": 10**20},
                                   {"reward_id": ["free-coffee"]}, {"voucher_code": {"code": "V1"}},
                                   {"voucher_code": "V" * 65}],
                         ids=["reward-object", "reward-huge", "reward-list", "voucher-object", "voucher-long"])
def test_an_authorisation_naming_its_reward_or_voucher_by_other_than_text_is_malformed(central, extra):
    path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/authorisations"
    body = json.dumps({**redemption("redemption:R1", 100, []), **extra}).encode()
    headers = {**signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body),
               "Content-Type": "application/json"}
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_authorisation"), resp.text
    assert central.store.reservations("M0001") == []


def test_a_burn_event_naming_the_longest_ids_is_accepted(central):
    burn = make_event(1, type="redemption", points={"points": -100}, authorisation_id="a" * 256,
                      reservation_id=None, reward_id="r" * 128)
    assert push(central, [burn]) == [(1, "accepted", None)]
    assert central.store.member("M0001")["balances"] == {"points": 1740}


def test_a_voucher_use_with_the_longest_code_and_transaction_id_is_authorised_online(central):
    """voucher_use:{code}:{transaction_id} is 141 characters for a 64-character code and a POS id of
    64: refused as malformed, the lane fell back to its offline caps for every such use."""
    code, txn = "C" * 64, "T" * 128
    answer = authorise(central, {"authorisation_id": f"voucher_use:{code}:{txn}", "kind": "voucher_use",
                                 "member_id": "M0001", "occurred_at": "2026-11-24T09:15:00Z",
                                 "voucher_code": code, "voucher_once_per": "code"})
    assert answer["status"] == "approved", answer


def test_retiring_a_key_that_is_unknown_or_retired_already_is_404(central):
    """PostgreSQL answered 200 to both: in pipeline mode an UPDATE's rowcount is -1."""
    url = central.url + "/_admin/member-token-keys"
    kid = requests.get(url, timeout=10).json()["keys"][0]["kid"]
    resp = requests.post(url, json={"retire": "no-such-key"}, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (404, "unknown_key")
    resp = requests.post(url, json={"retire": kid}, timeout=10)
    assert resp.status_code == 200 and [k["retired_at"] is not None for k in resp.json()["keys"]][0]
    resp = requests.post(url, json={"retire": kid}, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (404, "unknown_key")


def test_a_programs_own_token_keys_are_published_beside_centrals(central):
    """A program listing a member app's signing key of its own (with its not_after) was served with
    central's keys only: every token that app signed was unknown_key at every lane."""
    program = {**default_seed()["program"], "version": "own-keys-1", "member_tokens": {"keys": [
        {"kid": "app1", "public_key": "A" * 43, "not_after": "2030-01-01T00:00:00Z"}]}}
    central.store.set_program(program)
    served = central.store.program()[0]["member_tokens"]["keys"]
    assert served[0] == {"kid": "app1", "public_key": "A" * 43, "not_after": "2030-01-01T00:00:00Z"}
    rotated = requests.post(central.url + "/_admin/member-token-keys", json={"rotate": True}, timeout=10).json()
    live = [k["kid"] for k in rotated["keys"] if k["retired_at"] is None]
    served = central.store.program()[0]["member_tokens"]["keys"]
    assert served[0]["kid"] == "app1" and sorted(k["kid"] for k in served[1:]) == sorted(live)


def test_a_provisional_enrolment_never_takes_over_a_member_central_knows(central):
    """A provisional id is made up by a lane: one naming a member central knows became an alias of
    a new member, and every later event, authorisation and lookup of the real member went there."""
    taken = enrolment(1, "M0001", ["2900000000179"], provisional=True)
    answers = push(central, [taken, make_event(2, points={"points": 5})])
    assert answers == [(1, "rejected", "malformed_event"), (2, "accepted", None)]
    assert central.store.member("M0001")["balances"] == {"points": 1845}
    for flag in ("yes", 1, {"provisional": True}):  # not true: it would enrol a member under a made-up id
        assert push(central, [enrolment(3, "P-00000000000000a1", ["2900000000186"], provisional=flag)],
                    f"B-{flag}") == [(3, "rejected", "malformed_event")]
    assert central.store.member("P-00000000000000a1") is None


def test_central_never_gives_a_new_member_an_id_a_lane_made_up(central):
    """A lane's provisional id shaped like central's own ids: central's next member must not get it,
    or the alias would send that member's events to the first one."""
    first = push(central, [enrolment(1, "M0000002", ["2900000000179"], provisional=True)])  # central's next but one
    assert first == [(1, "accepted", None)]
    created = [push(central, [enrolment(seq, f"P-00000000000000{seq:02x}", [f"29000000002{seq:02d}"],
                                        provisional=True)], f"B-{seq}") for seq in (2, 3)]
    assert created == [[(2, "accepted", None)], [(3, "accepted", None)]]
    ids = {central.store.member(f"P-00000000000000{seq:02x}")["member_id"] for seq in (2, 3)}
    first_id = central.store.member("M0000002")["member_id"]
    assert "M0000002" not in ids and first_id not in ids and len(ids) == 2, (first_id, ids)


def test_a_provisional_id_that_is_another_members_card_or_phone_is_refused(central):
    """An enrolment whose provisional id is another member's card (or phone) made that code an alias of
    the new member: lanes look aliases up first, and found the card's holder's sales' member in the new
    one. Refused malformed_event, nothing written; an id that is the enrolment's own card, or the card
    of the member it maps to, is taken."""
    central.store.upsert_member({"member_id": "M0009", "identifiers": ["+48600100200"], "display_name": "Ewa"})
    taken = [enrolment(1, "2900000000018", ["2900000099992"], provisional=True),   # M0001's card
             enrolment(2, "+48600100200", ["2900000099993"], provisional=True),   # M0009's phone
             enrolment(3, "48600100200", ["2900000099995"], provisional=True),    # ... without its +
             enrolment(4, "0048600100200", ["2900000099996"], provisional=True)]  # ... dialled from abroad
    assert push(central, taken) == [(n, "rejected", "malformed_event") for n in (1, 2, 3, 4)]
    assert central.store.member("2900000000018") is None and central.store.member("+48600100200") is None
    assert central.store.member("M0001")["identifiers"] == ["2900000000018"]
    own = [enrolment(5, "2900000099994", ["2900000099994"], provisional=True),      # its own card
           enrolment(6, "2900000000025", ["2900000000025"], provisional=True)]      # M0002's, enrolled again
    assert push(central, own, "B-2") == [(5, "accepted", None), (6, "accepted", None)]
    assert central.store.member("2900000000025")["member_id"] == "M0002"
    assert central.store.member("2900000099994")["identifiers"] == ["2900000099994"]


def test_central_never_gives_a_new_member_an_id_that_is_someones_card(central):
    """A card whose code is shaped like central's ids ("M0000002" printed on a card): central's next
    member must not get that id, or every lane finding the card would take one member for the other."""
    first = push(central, [enrolment(1, "P-00000000000000b1", ["M0000002"], provisional=True)])
    assert first == [(1, "accepted", None)]
    holder = central.store.member("P-00000000000000b1")["member_id"]
    created = [push(central, [enrolment(seq, f"P-00000000000000{seq:02x}", [f"29000000003{seq:02d}"],
                                        provisional=True)], f"B-card-{seq}") for seq in (2, 3)]
    assert created == [[(2, "accepted", None)], [(3, "accepted", None)]]
    ids = {central.store.member(f"P-00000000000000{seq:02x}")["member_id"] for seq in (2, 3)}
    assert "M0000002" not in ids and holder not in ids and len(ids) == 2, (holder, ids)


def test_an_enrolment_whose_card_and_phone_are_two_members_is_noted_for_the_member_desk(central):
    """Three lanes enrolled offline: one a phone with card A, one another phone with card B, and a
    third the first phone with card B. The third maps to card B's member and the phone stays with its
    own: the shopper's card and phone open two accounts, and nobody was told. Central keeps that (only a
    person can tell whether they are one shopper) and notes it for the member desk."""
    phone, other_phone = "+48606100200", "+48607300400"
    assert push(central, [enrolment(1, "P-00000000000000d1", [phone, "2900000000840"], provisional=True),
                          enrolment(2, "P-00000000000000d2", [other_phone, "2900000000833"], provisional=True),
                          enrolment(3, "P-00000000000000d3", ["2900000000833", phone], provisional=True)]) == \
        [(1, "accepted", None), (2, "accepted", None), (3, "accepted", None)]
    by_phone = central.store.member("P-00000000000000d1")["member_id"]
    by_card = central.store.member("P-00000000000000d2")["member_id"]
    assert central.store.member("P-00000000000000d3")["member_id"] == by_card != by_phone
    assert phone in central.store.member(by_phone)["identifiers"]
    assert phone not in central.store.member(by_card)["identifiers"]
    notes = [r for r in central.store.outbox(0, 100_000) if r["type"] == "member.identifiers_split"]
    assert [(r["aggregateid"], r["payload"]) for r in notes] == [
        (by_card, {"member_id": by_card, "identifier": phone, "held_by": by_phone,
                   "enrolled_as": "P-00000000000000d3", "lane": f"{STORE_ID}/{LANE_ID}", "seq": 3})]


def test_a_card_enrolled_under_another_members_id_is_kept_noted_and_never_seeded(central):
    """A lane that had not heard of M0001 yet enrolled a card printed "M0001" for someone else. The card is
    a fact at the till: its holder keeps it, and central notes the clash for the member desk (typed, the id
    names M0001 at every lane; scanned, the card names its holder). A seed or an upsert making such a clash
    was taken as given."""
    assert push(central, [enrolment(1, "P-00000000000000c1", ["M0001"], provisional=True)]) == \
        [(1, "accepted", None)]
    holder = central.store.member("P-00000000000000c1")["member_id"]
    assert holder != "M0001" and central.store.member(holder)["identifiers"] == ["M0001"]
    notes = [r for r in central.store.outbox(0, 100_000) if r["type"] == "member.identifier_clash"]
    assert [(r["aggregateid"], r["payload"]) for r in notes] == [
        (holder, {"member_id": holder, "identifier": "M0001", "member_with_that_id": "M0001",
                  "lane": f"{STORE_ID}/{LANE_ID}", "seq": 1})]
    central.store.upsert_member({"member_id": holder, "display_name": "Kept", "identifiers": ["M0001"]})
    assert central.store.member(holder)["display_name"] == "Kept"  # its card already: the desk may edit it
    with pytest.raises(ValueError, match="member 'M0002': 'M0003' is member 'M0003''s id"):
        central.store.upsert_member({"member_id": "M0002", "identifiers": ["M0003"]})
    with pytest.raises(ValueError, match="member '2900000000018': its id is member 'M0001''s card '2900000000018'"):
        central.store.upsert_member({"member_id": "2900000000018"})
    for added, says in (([{"member_id": "X5", "identifiers": ["M0002"]}],
                         "member 'X5': 'M0002' is member 'M0002''s id"),
                        ([{"member_id": "Y2-CARD"}, {"member_id": "Y1", "identifiers": ["Y2-CARD"]}],
                         "member 'Y1': 'Y2-CARD' is member 'Y2-CARD''s id"),
                        ([{"member_id": "2900000000018"}], "its id is member 'M0001''s card '2900000000018'")):
        seed = default_seed()
        seed["members"] += added
        with pytest.raises(ValueError, match=re.escape(says)):
            central.store.seed(seed)
        assert central.store.member(added[-1]["member_id"]) is None  # nothing of it written
    central.store.seed(default_seed())  # the same seed again still starts central


@pytest.mark.parametrize("event", [
    {"type": "token_use", "token_id": "TK-9", "identified_by": "wallet_totp", "points": {"points": 50}},
    {"type": "voucher_use", "voucher_code": "VCODE0000001", "voucher_once_per": "code", "points": {"points": 50}},
], ids=["token-use", "voucher-use"])
def test_a_token_or_voucher_use_carrying_points_is_bad_points(central, event):
    answers = push(central, [make_event(1, transaction_id=None, **event), make_event(2, points={"points": 5})])
    assert answers == [(1, "rejected", "bad_points"), (2, "accepted", None)]
    assert central.store.member("M0001")["balances"] == {"points": 1845}


@pytest.mark.parametrize("code", [7, ["V1"], "V" * 65], ids=["int", "list", "long"])
def test_a_voucher_code_that_is_not_a_code_is_malformed(central, code):
    events = [make_event(1, type="voucher_use", points={}, voucher_code=code, voucher_once_per="code"),
              make_event(2, type="redemption", points={"points": -10}, voucher_code=code),
              make_event(3, points={"points": 5})]
    assert push(central, events) == [(1, "rejected", "malformed_event"), (2, "rejected", "malformed_event"),
                                     (3, "accepted", None)]


def test_retiring_a_key_named_with_a_nul_or_a_lone_surrogate_is_404(central):
    url = central.url + "/_admin/member-token-keys"
    for kid in ('"a\\u0000"', '"\\ud800"'):
        resp = requests.post(url, data=f'{{"retire": {kid}}}'.encode(), timeout=10,
                             headers={"Content-Type": "application/json"})
        assert (resp.status_code, resp.json()["code"]) == (404, "unknown_key"), (kid, resp.text)


def _returned(seq: int, sale: int, return_id: str, points: int, **extra: Any) -> dict[str, Any]:
    return make_event(seq, type="return", transaction_id=f"T-{LANE_ID}-{sale}", return_id=return_id,
                      points={"points": -points}, **extra)


def test_a_return_sent_again_under_a_new_seq_takes_its_points_back_once(central):
    """A return is its sale's transaction_id and its own return_id: sent again under a new seq and a new
    event_id (a foreign lane renumbering its queue) it is return_repeated, applying nothing, and the
    lane's next events go on; another return of the same sale is a return of its own."""
    assert push(central, [make_event(1, points={"points": 40})]) == [(1, "accepted", None)]
    before = central.store.member("M0001")
    assert push(central, [_returned(2, 1, "R1", 10)], "B-2") == [(2, "accepted", None)]
    again = _returned(3, 1, "R1", 10)
    assert push(central, [again, _returned(4, 1, "R2", 5), _returned(5, 1, "R2", 5)], "B-3") == [
        (3, "rejected", "return_repeated"), (4, "accepted", None), (5, "rejected", "return_repeated")]
    after = central.store.member("M0001")
    assert after["balances"]["points"] == before["balances"]["points"] - 15
    assert after["qualifying"] == before["qualifying"] - 15
    assert push(central, [again], "B-4") == [(3, "rejected", "return_repeated")]  # its seq's answer, kept


def test_returns_of_a_sale_never_take_back_more_than_it_credited(central):
    """A sale that earned 40 points gives back at most 40 over all its returns, in one batch or several:
    a return past that is return_exceeds_sale and applies nothing (no debt, no tier lost for points the
    member never had); a return that fits what is left is applied."""
    assert push(central, [make_event(1, points={"points": 40})]) == [(1, "accepted", None)]
    before = central.store.member("M0001")
    answers = push(central, [_returned(2, 1, "R1", 30), _returned(3, 1, "R2", 20), _returned(4, 1, "R3", 10)],
                   "B-2")
    assert answers == [(2, "accepted", None), (3, "rejected", "return_exceeds_sale"), (4, "accepted", None)]
    assert push(central, [_returned(5, 1, "R4", 1)], "B-3") == [(5, "rejected", "return_exceeds_sale")]
    after = central.store.member("M0001")
    assert after["balances"]["points"] == before["balances"]["points"] - 40
    assert after["qualifying"] == before["qualifying"] - 40
    # The sale's points spent meanwhile change nothing: the bound is what it credited.
    assert push(central, [make_event(6, points={"points": 8}),
                          make_event(7, type="redemption", transaction_id=None, points={"points": -1000}),
                          _returned(8, 6, "R1", 8)], "B-4") == [(6, "accepted", None), (7, "accepted", None),
                                                                 (8, "accepted", None)]


def test_a_return_of_a_sale_central_holds_no_lots_of_applies_as_the_lane_computed_it(central):
    """Nothing to bound it by: a sale whose accrual named no transaction (or whose lots a balance set
    since replaced) is returned as before, its points taken back."""
    events = [make_event(1, transaction_id=None, points={"points": 40}), _returned(2, 1, "R1", 50)]
    before = central.store.member("M0001")["balances"]["points"]
    assert push(central, events) == [(1, "accepted", None), (2, "accepted", None)]
    assert central.store.member("M0001")["balances"]["points"] == before + 40 - 50


def test_a_return_at_the_lanes_new_identity_is_bounded_by_the_sale_its_earlier_one_credited(central):
    """The sale rung under L01, its ledger lost, the POS's retry recorded under L01.2 (and rejected there
    as counted before): that lane's returns of it are bounded by what L01's sale credited."""
    assert push(central, [make_event(1, points={"points": 40})]) == [(1, "accepted", None)]
    new_lane = f"{LANE_ID}.2"
    path = f"/v1/lanes/{STORE_ID}/{new_lane}/batches"
    sale = make_event(1, points={"points": 40}, lane_id=new_lane, transaction_id=f"T-{LANE_ID}-1")
    events = [sale, _returned(2, 1, "R1", 30, lane_id=new_lane), _returned(3, 1, "R2", 30, lane_id=new_lane)]
    body = gzip.compress(json.dumps({"batch_id": "B-9", "events": events}).encode())
    headers = {**signed_headers(SECRET, STORE_ID, new_lane, int(time.time()), "POST", path, body),
               "Content-Encoding": "gzip"}
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert [(r["seq"], r["status"], r.get("code")) for r in resp.json()["results"]] == [
        (1, "rejected", "counted_by_earlier_identity"), (2, "accepted", None),
        (3, "rejected", "return_exceeds_sale")], resp.text


@pytest.mark.parametrize("field, value", [("return_id", None), ("return_id", 7), ("return_id", ""),
                                          ("return_id", "R" * 129), ("transaction_id", None)],
                         ids=["no-return-id", "number", "empty", "long", "no-sale"])
def test_a_return_without_its_sale_or_its_own_id_is_malformed(central, field, value):
    """Without its sale's transaction_id and its own return_id as text, a return sent again could never be
    told from a new one (7 and "7" would be two returns): it is refused alone, its points untouched."""
    assert push(central, [make_event(1, points={"points": 40})]) == [(1, "accepted", None)]
    before = central.store.member("M0001")["balances"]
    bad = _returned(2, 1, "R1", 10)
    if value is None:
        del bad[field]
    else:
        bad[field] = value
    assert push(central, [bad, _returned(3, 1, "R1", 10)], "B-2") == [(2, "rejected", "malformed_event"),
                                                                      (3, "accepted", None)]
    assert central.store.member("M0001")["balances"]["points"] == before["points"] - 10


def test_tier_points_that_are_never_spent_owe_nothing_and_stay_one_figure(tmp_path, central_db):
    """A return taking back more tier points than the member holds (a sale central never credited: nothing
    bounds it) left balances["tier"] at -50 beside qualifying 0, the one figure parting in two, and the
    next sale repaid the "debt" in one and not the other. Tier points that are never spent owe nothing."""
    seed = default_seed()
    seed["program"]["currencies"].append({"code": "tier", "kind": "qualifying"})
    seed["program"]["tier_currency"] = "tier"
    seed["members"][0].update(balances={"points": 1840, "tier": 100}, qualifying=100)
    with running_central(tmp_path / "c", seed, db_path=central_db) as c:
        events = [make_event(1, type="return", transaction_id="T-never", points={"points": -10, "tier": -150}),
                  make_event(2, points={"points": 80, "tier": 80})]
        assert push(c, events) == [(1, "accepted", None), (2, "accepted", None)]
        member = c.store.member("M0001")
        assert (member["qualifying"], member["balances"]["tier"], member["balances"]["points"]) == (80, 80, 1910)
        # nor are they spent: a redemption of them is bad_points, an authorisation of them a 400
        spent = make_event(3, type="redemption", transaction_id=None, points={"points": -5, "tier": -10})
        joined = enrolment(4, "P-L01-7", ["CARD-TIER-1"], points={"points": 50, "tier": 40})
        assert push(c, [spent, joined], "B-2") == [(3, "rejected", "bad_points"), (4, "accepted", None)]
        assert c.store.member("M0001")["qualifying"] == c.store.member("M0001")["balances"]["tier"] == 80
        new = c.store.member("P-L01-7")
        assert (new["qualifying"], new["balances"]["tier"]) == (40, 40)  # an enrolment's tier points: one figure
        path = f"/v1/lanes/{STORE_ID}/{LANE_ID}/authorisations"
        body = json.dumps({"authorisation_id": "redemption:T1", "kind": "redemption", "member_id": "M0001",
                           "occurred_at": "2026-11-24T09:15:00Z", "points": {"tier": 10}}).encode()
        asked = requests.post(c.url + path, data=body, timeout=10,
                              headers=signed_headers(SECRET, STORE_ID, LANE_ID, int(time.time()), "POST", path, body))
        assert (asked.status_code, asked.json()["code"]) == (400, "malformed_authorisation"), asked.text


def test_an_enrolment_taking_points_away_is_bad_points(central):
    """A new member owes nothing: an enrolment with negative points would have enrolled a member in debt
    (-10^12 was accepted)."""
    events = [enrolment(1, "P-L01-9", ["CARD-NEG-1"], points={"points": -10**12}),
              enrolment(2, "P-L01-10", ["CARD-NEG-2"])]
    assert push(central, events) == [(1, "rejected", "bad_points"), (2, "accepted", None)]
    assert central.store.member("P-L01-9") is None


def test_a_sale_sent_again_under_a_new_seq_is_credited_once(central):
    """A sale is its member, transaction_id and occurred_at: sent again under a new seq and a new
    event_id (a foreign lane renumbering its queue, or writing a retry as a new event), in a later batch
    or the same one, it is accrual_repeated and credits nothing; the lane's next events go on. The same
    transaction_id at another moment is a new sale (a POS numbering again), and so is the same id for
    another member."""
    assert push(central, [make_event(1, transaction_id="T-5", points={"points": 40})]) == [(1, "accepted", None)]
    before = central.store.member("M0001")
    again = make_event(2, transaction_id="T-5", occurred_at="2026-11-24T09:15:00.000+00:00", points={"points": 40})
    answers = push(central, [again,
                             make_event(3, transaction_id="T-6", points={"points": 7}),
                             make_event(4, transaction_id="T-6", points={"points": 7}),
                             make_event(5, transaction_id="T-5", occurred_at="2026-11-25T10:00:00Z",
                                        points={"points": 3}),
                             make_event(6, member_id="M0002", transaction_id="T-5", points={"points": 2})], "B-2")
    assert answers == [(2, "rejected", "accrual_repeated"), (3, "accepted", None),
                       (4, "rejected", "accrual_repeated"), (5, "accepted", None), (6, "accepted", None)]
    after = central.store.member("M0001")
    assert after["balances"]["points"] == before["balances"]["points"] + 7 + 3
    assert after["qualifying"] == before["qualifying"] + 7 + 3
    assert push(central, [again], "B-3") == [(2, "rejected", "accrual_repeated")]  # its seq's answer, kept
    # Another lane's sale under the same id is its own.
    other = make_event(1, lane_id="L02", transaction_id="T-5", points={"points": 40})
    path = f"/v1/lanes/{STORE_ID}/L02/batches"
    body = gzip.compress(json.dumps({"batch_id": "B-L02", "events": [other]}).encode())
    headers = signed_headers(SECRET, STORE_ID, "L02", int(time.time()), "POST", path, body)
    headers["Content-Encoding"] = "gzip"
    resp = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["status"] == "accepted"


def test_a_sale_of_a_provisional_member_sent_again_is_credited_once(central):
    """The member enrolled at the lane under a provisional id that central mapped to its own: the sale
    sent again under that id, in a later batch, finds the sale central credited to its member."""
    answers = push(central, [enrolment(1, "P-L01-1", ["2900000000957"], provisional=True),
                             make_event(2, member_id="P-L01-1", transaction_id="T-9", points={"points": 30})])
    assert answers == [(1, "accepted", None), (2, "accepted", None)]
    again = make_event(3, member_id="P-L01-1", transaction_id="T-9", points={"points": 30})
    assert push(central, [again], "B-2") == [(3, "rejected", "accrual_repeated")]
