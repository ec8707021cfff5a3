"""Central's side of burns: authorisations and their reservations, voucher uses, the voucher registry.

SQL both central engines run (``?`` placeholders), always inside the caller's
write transaction (store_sql.py), as lots.py is; the caller has locked the
member and the voucher code (store_sql: members and ``voucher:<code>`` keys,
in one order), so two lanes racing on one voucher get one use. docs/sync-protocol.md, "Burn
authorisation", is what this implements:

- an authorisation checks and reserves in one transaction: the member's
  balance (unexpired lots, less every open reservation, plus the asking lane's
  events central has not received yet; a member central does not know yet has
  only the latter), the reward's per-member limit across lanes, a voucher's
  single use (held for the reservation); a voucher use does not look at the
  member (a use is keyed by code, or code and member for campaign coupons);
- a reservation is ``open`` until the lane's event naming its
  ``authorisation_id`` confirms it (``confirmed``), or until it expires
  (``expired``: its points and its voucher hold are free again);
- a burn central learns of only from an event (made offline) is kept as an
  ``offline`` row, so per-member limits count it too;
- vouchers are registered from redemption events and listed, while open, in
  their member's feed entry; a voucher an approved redemption will issue (the
  request's ``voucher``) is registered at once as pending under its
  reservation, so that another lane can look it up and use it before the
  issuing lane's event arrives: not listed in the feed, removed if the
  reservation is released or expires, made the registered voucher by the event.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from posd.sync.central.identities import earlier_lane_ids, redemption_counted
from posd.sync.central.lots import lot_balances, maturing
from posd.sync.protocol import approved, check_voucher, declined, issuable_code, parse_utc
from posd.sync.protocol.burn import canonical_code

# The soonest expiry of an open reservation (one step into reservations_due; as lots.NEXT_DUE_LOT).
NEXT_DUE = "SELECT expires_ts FROM reservations WHERE state = 'open' ORDER BY expires_ts LIMIT 1"
_REPLACE_USE = (" ON CONFLICT (code, member_key) DO UPDATE SET source = excluded.source, state = excluded.state, "
                "reservation_id = excluded.reservation_id, expires_ts = excluded.expires_ts")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ts(text: Any) -> float | None:
    parsed = parse_utc(text)
    return parsed.timestamp() if parsed is not None else None


def reservation_id(store_id: str, lane_id: str, authorisation_id: str) -> str:
    """Central's id for a lane's authorisation: the same request always names the same reservation."""
    digest = hashlib.sha256(f"{store_id}/{lane_id}/{authorisation_id}".encode()).hexdigest()
    return "R" + digest[:24]


def request_hash(request: dict[str, Any]) -> str:
    """What makes two requests with one authorisation_id the same burn (not when or what the lane knew)."""
    burn = {k: request.get(k) for k in ("kind", "member_id", "points", "reward_id", "voucher_code",
                                        "voucher_once_per")}
    return hashlib.sha256(json.dumps(burn, sort_keys=True).encode()).hexdigest()


def coupon_holders(program: dict[str, Any] | None) -> dict[str, str]:
    """The program's personal coupons: code (as canonical_code reads one) -> the member it is for. Its
    code is published to every lane: it is its member's alone, as a registered voucher is."""
    return {coupon["code"]: coupon["member_id"] for coupon in (program or {}).get("coupons", [])
            if isinstance(coupon, dict) and coupon.get("kind") == "personal" and isinstance(coupon.get("code"), str)
            and isinstance(coupon.get("member_id"), str)}


def _other_than_holder(conn: Any, holders: dict[str, str], code: str, member_id: str | None) -> bool:
    """Is ``code`` a personal coupon of another member than ``member_id`` (central's id; the holder as
    the program names it may be a provisional id central since mapped)?"""
    holder = holders.get(code)
    if holder is None:
        return False
    row = conn.execute("SELECT member_id FROM member_aliases WHERE alias = ?", (holder,)).fetchone()
    return member_id != (holder if row is None else row["member_id"])


def voucher_key(registered: bool, code: str, member_id: str | None, once_per: Any, coupons: dict[str, str]) -> str:
    """Whom one use of ``code`` is once per, as central decides it for an authorisation and an event
    alike: "" (once per code) for a voucher in the registry (``registered``), whoever names it, or a
    program's single coupon; the member for a campaign coupon; the lane's ``voucher_once_per`` only
    for a code central knows nothing of. A lane saying ``member`` for a lane's voucher held it a second time."""
    if registered:
        return ""
    if code in coupons:
        return member_id or "" if coupons[code] == "campaign" else ""
    return member_id or "" if once_per == "member" else ""


# --- expiry -------------------------------------------------------------------------------------


PENDING_PREFIX = "reservation:"
PENDING_LIKE = PENDING_PREFIX + "%"  # every pending_by (a parameter: PostgreSQL's driver reads % in SQL text)


def pending_by(rid: str) -> str:
    """``registered_by`` of the voucher an approved redemption will issue, until its event arrives."""
    return PENDING_PREFIX + rid


def _voucher_body(voucher: dict[str, Any], member_id: str, store_id: str, lane_id: str) -> str:
    body = {**{k: voucher.get(k) for k in ("code", "reward_id", "title", "benefit", "issued_at", "expires_at")},
            "member_id": member_id, "issued_by": f"{store_id}/{lane_id}"}
    return json.dumps(body, ensure_ascii=False)


def _register_pending(conn: Any, request: dict[str, Any], member: dict[str, Any] | None, store_id: str,
                      lane_id: str, rid: str) -> None:
    """The voucher an approved redemption will issue, registered now as pending under its reservation
    (which keeps its code: every later step finds it by the voucher's key, never by a scan). A retry's
    voucher replaces the one asked with before: the lane answers only once it recorded the burn, with
    the voucher it recorded; should a code asked with earlier be the one recorded, its event registers it."""
    voucher = request.get("voucher") if request["kind"] == "redemption" else None
    if voucher is None or member is None:  # a member central does not know yet: the event registers it
        return
    _drop_pending(conn, rid, but=voucher["code"])
    conn.execute("UPDATE reservations SET voucher_code = ? WHERE reservation_id = ?", (voucher["code"], rid))
    conn.execute("INSERT INTO vouchers (code, member_id, body, expires_ts, registered_by) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (code) DO NOTHING",
                 (voucher["code"], member["member_id"], _voucher_body(voucher, member["member_id"], store_id, lane_id),
                  _ts(voucher.get("expires_at")), pending_by(rid)))


def _drop_pending(conn: Any, rid: str, but: str | None = None) -> None:
    """Remove the voucher still pending under redemption reservation ``rid`` (unless it is ``but``)."""
    row = conn.execute("SELECT voucher_code FROM reservations WHERE reservation_id = ? AND kind = 'redemption'",
                       (rid,)).fetchone()
    if row is not None and row["voucher_code"] and row["voucher_code"] != but:
        conn.execute("DELETE FROM vouchers WHERE code = ? AND registered_by = ?", (row["voucher_code"], pending_by(rid)))


def release_expired(conn: Any, now: float) -> set[str]:
    """Expire open reservations past their time and free their voucher holds; the members whose open
    vouchers changed (their feed entry must be sent again)."""
    members = {r["member_id"] for r in conn.execute(
        "SELECT member_id FROM reservations WHERE state = 'open' AND expires_ts <= ? AND voucher_code IS NOT NULL",
        (now,)) if r["member_id"]}
    for r in conn.execute("SELECT reservation_id FROM reservations WHERE state = 'open' AND expires_ts <= ? "
                          "AND kind = 'redemption' AND voucher_code IS NOT NULL", (now,)).fetchall():
        _drop_pending(conn, r["reservation_id"])
    conn.execute("UPDATE reservations SET state = 'expired' WHERE state = 'open' AND expires_ts <= ?", (now,))
    conn.execute("DELETE FROM voucher_uses WHERE state = 'held' AND expires_ts <= ?", (now,))
    return members


# --- authorising --------------------------------------------------------------------------------


def _held(conn: Any, member_id: str, now: float, but: str) -> dict[str, int]:
    """Points open reservations hold for a member (every lane), except reservation ``but``."""
    held: dict[str, int] = {}
    for r in conn.execute("SELECT points FROM reservations WHERE member_id = ? AND state = 'open' "
                          "AND expires_ts > ? AND reservation_id != ?", (member_id, now, but)):
        for currency, points in json.loads(r["points"]).items():
            held[currency] = held.get(currency, 0) + points
    return held


# What one unsynced event may add in a currency the program sets no transaction cap for.
UNSYNCED_CREDIT_CAP = 10_000


def _unreceived(conn: Any, store_id: str, lane_id: str, unsynced: list[dict[str, Any]],
                program: dict[str, Any], currencies: set[str] | None) -> dict[str, int]:
    """The asking lane's events for the member that central has not consumed yet (seq above the
    lane's last_seq: everything at or below it is in the balance already, or was rejected), counted
    only as far as central can believe them: each seq once; a credit only in one of ``currencies``
    (every program's central published, as a push takes them; None: no program), and at most what one
    sale can earn there (the program's ``transaction_caps``, else UNSYNCED_CREDIT_CAP); a debit in full."""
    row = conn.execute("SELECT last_seq FROM lanes WHERE store_id = ? AND lane_id = ?", (store_id, lane_id)).fetchone()
    last = row["last_seq"] if row else 0
    caps = program.get("transaction_caps") if isinstance(program.get("transaction_caps"), dict) else {}
    extra: dict[str, int] = {}
    seen: set[int] = set()
    for event in unsynced:
        if event["seq"] <= last or event["seq"] in seen:
            continue
        seen.add(event["seq"])
        for currency, points in event["points"].items():
            if points > 0:
                if currencies is not None and currency not in currencies:
                    continue
                cap = caps.get(currency)
                points = min(points, cap if isinstance(cap, int) and cap >= 0 else UNSYNCED_CREDIT_CAP)
            extra[currency] = extra.get(currency, 0) + points
    return extra


def _limit_reached(conn: Any, member_id: str, request: dict[str, Any], rid: str) -> bool:
    limit = request.get("limit")
    if not limit:
        return False
    since = _ts(limit["since"]) or 0.0
    count = 0
    for r in conn.execute("SELECT occurred_at FROM reservations WHERE member_id = ? AND reward_id = ? "
                          "AND state IN ('open', 'confirmed', 'offline') AND reservation_id != ?",
                          (member_id, request["reward_id"], rid)):
        if (_ts(r["occurred_at"]) or 0.0) >= since:
            count += 1
    return count >= limit["per_member"]


def _check_voucher(conn: Any, request: dict[str, Any], registered: Any, key: str, rid: str, now: float
                   ) -> str | None:
    """Why this voucher use (once per ``key``; ``registered``: its registry row) cannot be reserved, or
    None (its hold is taken here)."""
    code = request["voucher_code"]
    if registered is not None:
        if registered["expires_ts"] is not None and registered["expires_ts"] <= now:
            return "voucher_expired"
        if registered["member_id"] and request.get("member_id") and registered["member_id"] != request["member_id"]:
            return "voucher_other_member"
    use = conn.execute("SELECT state, reservation_id, expires_ts FROM voucher_uses WHERE code = ? AND member_key = ?",
                       (code, key)).fetchone()
    if use is not None and use["reservation_id"] != rid:
        if use["state"] == "used" or (use["expires_ts"] or 0) > now:
            return "voucher_used"
    return None


# The kind of a reservation row that is only a release central had no reservation for yet: its
# created_ts is the release's signed timestamp (the lane's clock), what a late authorisation is held to.
GIVEN_BACK_UNREAD = "given_back_unread"


def authorise(conn: Any, member: dict[str, Any] | None, store_id: str, lane_id: str,
              request: dict[str, Any], now: float, ttl_s: float, program: dict[str, Any],
              currencies: set[str] | None, coupons: dict[str, str], sent_at: int | None = None
              ) -> tuple[dict[str, Any], bool]:
    """Check and reserve; (the answer in wire shape, whether the member's open vouchers changed).
    ``coupons``: the program's coupon codes and kinds; ``sent_at``: the request's signed timestamp."""
    auth_id = request["authorisation_id"]
    rid = reservation_id(store_id, lane_id, auth_id)
    digest = request_hash(request)
    existing = conn.execute("SELECT request_hash, state, expires_ts, member_id, points, kind, voucher_code, "
                            "created_ts, release_from FROM reservations WHERE reservation_id = ?", (rid,)).fetchone()
    if existing is not None and existing["kind"] == GIVEN_BACK_UNREAD:
        if sent_at is not None and sent_at < existing["created_ts"]:
            # Signed before the lane gave it back: the lane stopped waiting and went its own way, and
            # nobody reads this answer. Reserving would hold the points or the voucher for a burn the
            # lane refused, at every lane, until the reservation expired.
            return declined(auth_id, "authorisation_conflict", "the lane gave this authorisation back before "
                            "central read it"), False
        existing = dict(existing) | {"request_hash": digest}  # asked again since: reserved as after a release
    if existing is not None and existing["state"] == "offline" and existing["kind"] == request["kind"] and (
            existing["voucher_code"] == request.get("voucher_code") if request["kind"] == "voucher_use"
            else existing["member_id"] == request.get("member_id")
            and json.loads(existing["points"] or "{}") == request.get("points")):
        return approved(auth_id, rid, _iso(now), {}), False  # the lane's event came first: the burn is done
    if existing is not None and existing["request_hash"] != digest:
        return declined(auth_id, "authorisation_conflict", "this authorisation_id was used for another burn"), False
    if existing is not None and existing["state"] in ("open", "confirmed"):
        if existing["state"] == "open":
            _register_pending(conn, request, member, store_id, lane_id, rid)
        return approved(auth_id, rid, _iso(existing["expires_ts"] or now), {}), False  # a retry: the same answer
    if (existing is None or existing["kind"] == GIVEN_BACK_UNREAD) and request["kind"] == "redemption":
        earlier = redemption_counted(conn, store_id, earlier_lane_ids(lane_id), auth_id)
        if earlier is not None:  # the POS retrying a redemption the lane's lost ledger.db had made
            return declined(auth_id, "authorisation_conflict", f"this redemption was made under the lane's "
                            f"earlier identity {earlier}"), False
    member_id = request.get("member_id")
    if member is not None:  # a voucher's use is its member's burn too
        if member["status"] == "deleted":
            return declined(auth_id, "member_deleted", "the member was erased"), False
        if member["status"] != "active":
            return declined(auth_id, "member_ineligible", f"the member's account is {member['status']}"), False
    available: dict[str, int] = {}
    if request["kind"] == "redemption":
        # A member central does not know yet (enrolled at a lane, the event on its way) has what
        # the lane's unsynced events give it, and nothing more.
        known = member["balances"] if member is not None else {}
        balances = lot_balances(conn, {member_id: known}, now)[member_id]  # type: ignore[dict-item]
        held = _held(conn, member_id, now, rid)  # type: ignore[arg-type]
        extra = _unreceived(conn, store_id, lane_id, request.get("unsynced", []), program, currencies)
        # Points still pending (a lot's available_at ahead) are in the balance and not spendable:
        # earned, redeemed at once, then the sale returned would leave a debt and a voucher.
        pending = maturing(conn, member_id, now)  # type: ignore[arg-type]
        for currency, points in request["points"].items():
            available[currency] = balances.get(currency, 0) - pending.get(currency, 0) - held.get(currency, 0) \
                + extra.get(currency, 0)
            if available[currency] < points:
                return declined(auth_id, "insufficient_balance",
                                f"{available[currency]} {currency} available at central; {points} asked",
                                available), False
        if _limit_reached(conn, member_id, request, rid):  # type: ignore[arg-type]
            return declined(auth_id, "reward_limit_reached",
                            "the member had this reward as often as allowed in the window"), False
    key = None
    if request["kind"] == "voucher_use":
        if _other_than_holder(conn, coupon_holders(program), request["voucher_code"], member_id):
            return declined(auth_id, "voucher_other_member", "a personal coupon is its member's alone"), False
        registered = conn.execute("SELECT member_id, expires_ts FROM vouchers WHERE code = ?",
                                  (request["voucher_code"],)).fetchone()
        key = voucher_key(registered is not None, request["voucher_code"], member_id,
                          request.get("voucher_once_per"), coupons)
        refused = _check_voucher(conn, request, registered, key, rid, now)
        if refused:
            return declined(auth_id, refused, "the voucher cannot be used"), False
    expires = now + ttl_s
    # A release signed before this authorisation, or at or before the release that gave back the id's
    # earlier reservation (the same second: the same signed request), is not this reservation's.
    release_from = max(sent_at or 0, existing["release_from"] or 0) if existing is not None else sent_at
    values = (store_id, lane_id, auth_id, digest, request["kind"], member_id, json.dumps(request.get("points") or {}),
              request.get("reward_id"), request.get("voucher_code"), key,
              request["occurred_at"], now, expires, "open", release_from, rid)
    if existing is None:
        conn.execute("INSERT INTO reservations (store_id, lane_id, authorisation_id, request_hash, kind, member_id, "
                     "points, reward_id, voucher_code, voucher_key, occurred_at, created_ts, expires_ts, state, "
                     "release_from, reservation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
    else:  # expired before the lane committed: the retry reserves again under the same id
        conn.execute("UPDATE reservations SET store_id=?, lane_id=?, authorisation_id=?, request_hash=?, kind=?, "
                     "member_id=?, points=?, reward_id=?, voucher_code=?, voucher_key=?, occurred_at=?, "
                     "created_ts=?, expires_ts=?, state=?, release_from=? WHERE reservation_id = ?", values)
    if key is not None:
        conn.execute("INSERT INTO voucher_uses (code, member_key, source, state, reservation_id, "
                     "expires_ts) VALUES (?, ?, ?, 'held', ?, ?)" + _REPLACE_USE,
                     (request["voucher_code"], key, f"{store_id}/{lane_id}/{auth_id}", rid, expires))
    _register_pending(conn, request, member, store_id, lane_id, rid)
    return approved(auth_id, rid, _iso(expires), available), request["kind"] == "voucher_use"


def release(conn: Any, store_id: str, lane_id: str, authorisation_id: str, now: float,
            sent_at: int | None = None) -> tuple[str, str | None]:
    """A lane giving back a reservation it will not record a burn for (its own re-check refused the
    burn after central approved it): an open reservation holds nothing from now on and its voucher
    hold is freed. (state: released | confirmed | expired | unknown | open, the member whose open vouchers
    changed). A confirmed one stays confirmed: the burn happened. The same authorisation_id asked
    again later reserves again (authorise treats a released reservation as an expired one); a release
    signed before that authorisation (``sent_at``, the lane's clock, against the one it was asked with:
    a replay, or a release delayed past the POS's retry; signed timestamps are whole seconds, so one
    in the very second of the release that gave the earlier reservation back is that release again)
    gave back the earlier reservation, and leaves this one ``open``."""
    rid = reservation_id(store_id, lane_id, authorisation_id)
    row = conn.execute("SELECT state, expires_ts, member_id, voucher_code, kind, release_from FROM reservations "
                       "WHERE reservation_id = ?", (rid,)).fetchone()
    if row is None:
        if sent_at is not None:  # its authorisation may still be on its way: it will not reserve
            # ... and a release signed at or before it (its replay, in the same second too) is this one
            conn.execute("INSERT INTO reservations (reservation_id, store_id, lane_id, authorisation_id, "
                         "request_hash, kind, points, occurred_at, created_ts, state, release_from) "
                         "VALUES (?, ?, ?, ?, '', ?, '{}', '', ?, 'released', ?)",
                         (rid, store_id, lane_id, authorisation_id, GIVEN_BACK_UNREAD, sent_at, sent_at + 1))
        return "unknown", None
    if row["kind"] == GIVEN_BACK_UNREAD:
        return "unknown", None
    state = row["state"]
    if state == "open" and (row["expires_ts"] or 0) <= now:
        state = "expired"
    if state != "open":
        return ("confirmed" if state in ("confirmed", "offline") else state), None
    if sent_at is not None and row["release_from"] is not None and sent_at < row["release_from"]:
        return "open", None
    conn.execute("UPDATE reservations SET state = 'released', release_from = ? WHERE reservation_id = ?",
                 (None if sent_at is None else sent_at + 1, rid))
    conn.execute("DELETE FROM voucher_uses WHERE reservation_id = ? AND state = 'held'", (rid,))
    _drop_pending(conn, rid)  # never issued
    return "released", row["member_id"] if row["voucher_code"] else None


# --- events that confirm (or record) a burn -------------------------------------------------------


def _reservation_for(conn: Any, store_id: str, lane_id: str, event: dict[str, Any]
                     ) -> Any:
    auth_id = event.get("authorisation_id")
    if not isinstance(auth_id, str) or not auth_id:
        return None
    return conn.execute("SELECT reservation_id, state FROM reservations WHERE reservation_id = ? AND kind != ?",
                        (reservation_id(store_id, lane_id, auth_id), GIVEN_BACK_UNREAD)).fetchone()


AUTHORISATION_USED = "authorisation_used"


def _burnt(found: Any) -> bool:
    """An event of this lane already confirmed the authorisation, or recorded its burn offline: a
    second event under the same ``authorisation_id`` (a new seq and event_id, so no duplicate) would
    spend the points or use the voucher again. One burn per authorisation."""
    return found is not None and found["state"] in ("confirmed", "offline")


def record_redemption(conn: Any, store_id: str, lane_id: str, seq: int, event: dict[str, Any],
                      member_id: str, coupons: dict[str, str] | None = None) -> str | None:
    """A redemption event of ``member_id`` (central's id for the event's member): confirm its
    reservation (whatever its state: the burn happened) or keep it as an offline burn; register the
    voucher it issued. A rejection code when its voucher is malformed, or its code one no redemption
    issues (``coupons``: the program's codes; issuable_code)."""
    voucher = event.get("voucher")
    if voucher is not None and not (check_voucher(voucher) and issuable_code(voucher["code"], coupons or {})
                                    and event.get("voucher_code") in (None, voucher["code"])):
        return "malformed_event"  # a voucher_code other than its voucher's would name a voucher never issued
    found = _reservation_for(conn, store_id, lane_id, event)
    if _burnt(found):
        return AUTHORISATION_USED
    ours = _pending_of_earlier_ids(store_id, lane_id, event)
    if found is not None:
        ours.add(pending_by(found["reservation_id"]))
    pending = None  # the voucher this redemption's own approval registered as pending
    if voucher is not None:
        held = conn.execute("SELECT registered_by FROM vouchers WHERE code = ?", (voucher["code"],)).fetchone()
        pending = held["registered_by"] if held is not None else None
        if held is not None and held["registered_by"] not in ours:
            # another voucher has that code, issued or pending under another lane's approval (the first
            # approved keeps it): registering this one would leave a member paying for a voucher no lane
            # honours (its uses are the other's); the lane quarantines it for the member desk
            return "voucher_code_taken"
    if found is not None:
        conn.execute("UPDATE reservations SET state = 'confirmed', expires_ts = NULL WHERE reservation_id = ?",
                     (found["reservation_id"],))
        # a voucher registered as pending under it that is not the one issued was never handed out
        _drop_pending(conn, found["reservation_id"], but=voucher["code"] if voucher is not None else None)
    else:
        # Kept under the authorisation_id the lane asked with (a lane that gave up waiting for central
        # records the burn offline): an approval that reaches central after the event then finds the
        # burn done, instead of holding its points again until the reservation expires.
        auth_id = event.get("authorisation_id")
        key = auth_id if isinstance(auth_id, str) and auth_id else f"event:{seq}"
        points = {c: -p for c, p in event["points"].items() if p < 0}
        conn.execute("INSERT INTO reservations (reservation_id, store_id, lane_id, authorisation_id, "
                     "request_hash, kind, member_id, points, reward_id, occurred_at, created_ts, expires_ts, state) "
                     "VALUES (?, ?, ?, ?, '', 'redemption', ?, ?, ?, ?, 0, NULL, 'offline') "
                     "ON CONFLICT (reservation_id) DO UPDATE SET kind = excluded.kind, member_id = excluded.member_id, "
                     "points = excluded.points, reward_id = excluded.reward_id, occurred_at = excluded.occurred_at, "
                     "created_ts = 0, state = 'offline' WHERE reservations.kind = ?",
                     (reservation_id(store_id, lane_id, key), store_id, lane_id, key,
                      member_id, json.dumps(points), event.get("reward_id"), event["occurred_at"], GIVEN_BACK_UNREAD))
    if voucher is not None:  # a pending one (registered at its authorisation) becomes the one issued
        conn.execute("INSERT INTO vouchers (code, member_id, body, expires_ts, registered_by) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (code) DO UPDATE SET member_id = excluded.member_id, body = excluded.body, "
                     "expires_ts = excluded.expires_ts, registered_by = excluded.registered_by "
                     "WHERE vouchers.registered_by = ?",
                     (voucher["code"], member_id, _voucher_body(voucher, member_id, store_id, lane_id),
                      _ts(voucher.get("expires_at")), f"{store_id}/{lane_id}/{seq}", pending))
    return None


def _pending_of_earlier_ids(store_id: str, lane_id: str, event: dict[str, Any]) -> set[str]:
    """``registered_by`` of a voucher pending under the event's own authorisation asked under an id the
    lane held before (L01, then L01.2 once it found central holding another history): its own."""
    auth_id = event.get("authorisation_id")
    if not isinstance(auth_id, str) or not auth_id:
        return set()
    return {pending_by(reservation_id(store_id, lane, auth_id)) for lane in earlier_lane_ids(lane_id)}


def record_voucher_use(conn: Any, store_id: str, lane_id: str, seq: int, event: dict[str, Any],
                       member_id: str, now: float, coupons: dict[str, str] | None = None,
                       holders: dict[str, str] | None = None) -> str | None:
    """One use per voucher (per member for campaign coupons), across every lane: the use its own
    reservation holds is confirmed; a use another lane made or holds is refused (quarantined there).

    Central decides what a use is keyed by, not the event: the code as issued however it was typed
    (canonical_code), once per code for a voucher in its registry or a program's single coupon, once
    per member for a campaign coupon (``coupons``: the program's codes and kinds); the event's own
    ``voucher_once_per`` only for a code central knows nothing of."""
    code, once_per = event.get("voucher_code"), event.get("voucher_once_per")
    if not isinstance(code, str) or not code or once_per not in ("member", "code"):
        return "malformed_event"
    coupons = coupons or {}
    code = canonical_code(code, coupons)
    owner = conn.execute("SELECT member_id FROM vouchers WHERE code = ?", (code,)).fetchone()
    registered = owner is not None  # registered to central's id for the member, as ``member_id`` is
    if registered and owner["member_id"] and owner["member_id"] != member_id:
        return "voucher_other_member"  # as an authorisation is declined: a voucher is its member's alone
    if _other_than_holder(conn, holders or {}, code, member_id):
        return "voucher_other_member"  # a personal coupon (``holders``: coupon_holders), the same
    key = voucher_key(registered, code, member_id, once_per, coupons)
    found = _reservation_for(conn, store_id, lane_id, event)
    if _burnt(found):
        return AUTHORISATION_USED
    rid = found["reservation_id"] if found is not None else None
    use = conn.execute("SELECT state, reservation_id, expires_ts FROM voucher_uses WHERE code = ? AND member_key = ?",
                       (code, key)).fetchone()
    if use is not None and not (rid is not None and use["reservation_id"] == rid):
        if use["state"] == "used" or (use["expires_ts"] or 0) > now:
            return "voucher_used"
    auth_id = event.get("authorisation_id")
    if found is None and isinstance(auth_id, str) and auth_id:
        # Kept under the authorisation_id the lane asked with, as an offline redemption is: an
        # approval reaching central after this event finds the use done.
        rid = reservation_id(store_id, lane_id, auth_id)
        conn.execute("INSERT INTO reservations (reservation_id, store_id, lane_id, authorisation_id, request_hash, "
                     "kind, member_id, points, voucher_code, voucher_key, occurred_at, created_ts, expires_ts, state) "
                     "VALUES (?, ?, ?, ?, '', 'voucher_use', ?, '{}', ?, ?, ?, 0, NULL, 'offline') "
                     "ON CONFLICT (reservation_id) DO UPDATE SET kind = excluded.kind, member_id = excluded.member_id, "
                     "voucher_code = excluded.voucher_code, voucher_key = excluded.voucher_key, "
                     "occurred_at = excluded.occurred_at, created_ts = 0, state = 'offline' WHERE reservations.kind = ?",
                     (rid, store_id, lane_id, auth_id, member_id, code, key, event["occurred_at"], GIVEN_BACK_UNREAD))
    conn.execute("INSERT INTO voucher_uses (code, member_key, source, state, reservation_id, expires_ts) "
                 "VALUES (?, ?, ?, 'used', ?, NULL)" + _REPLACE_USE, (code, key, f"{store_id}/{lane_id}/{seq}", rid))
    if found is not None:
        conn.execute("UPDATE reservations SET state = 'confirmed', expires_ts = NULL WHERE reservation_id = ?", (rid,))
    return None


def void_voucher(conn: Any, event: dict[str, Any], source: str, coupons: dict[str, str]) -> None:
    """The voucher a redemption central refused issued (a POS's retry that a lane's new ledger recorded
    again, offline, with a new voucher: ``counted_by_earlier_identity``) is never registered, so a use of
    it would have been taken as a use of a code central knows nothing of: the member would hold two
    vouchers for one redemption. Its code is marked used (``source``: the refused event), so a use of it
    is ``voucher_used``, quarantined at the lane where the member desk sees it, and an authorisation of
    one is declined. A code that is a coupon's or another voucher's is left alone."""
    code = event.get("voucher_code") or (event.get("voucher") or {}).get("code")
    if not isinstance(code, str) or not code or code in coupons:
        return
    if conn.execute("SELECT 1 FROM vouchers WHERE code = ?", (code,)).fetchone() is not None:
        return
    conn.execute("INSERT INTO voucher_uses (code, member_key, source, state, reservation_id, expires_ts) "
                 "VALUES (?, '', ?, 'used', NULL, NULL) ON CONFLICT (code, member_key) DO NOTHING", (code, source))


# --- the registry, as lanes see it --------------------------------------------------------------------


def open_vouchers(conn: Any, member_ids: list[str], now: float) -> dict[str, list[dict[str, Any]]]:
    """Each member's vouchers that are registered, unexpired, and neither used nor held."""
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(member_ids), 500):
        chunk = member_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT v.member_id, v.body FROM vouchers v WHERE v.member_id IN ({marks}) "
            "AND v.registered_by NOT LIKE ? "
            "AND (v.expires_ts IS NULL OR v.expires_ts > ?) AND NOT EXISTS (SELECT 1 FROM voucher_uses u "
            "WHERE u.code = v.code AND (u.state = 'used' OR u.expires_ts > ?)) ORDER BY v.code",
            (*chunk, PENDING_LIKE, now, now))
        for r in rows:
            found.setdefault(r["member_id"], []).append(json.loads(r["body"]))
    return found


def lookup(conn: Any, code: str, member_id: str | None, coupon_kind: str | None, now: float
           ) -> dict[str, Any] | None:
    """A lane asking about a code: the registered voucher (if any) and whether this use is taken;
    None when central knows nothing of the code."""
    row = conn.execute("SELECT v.body FROM vouchers v WHERE v.code = ? AND NOT EXISTS (SELECT 1 FROM members m "
                       "WHERE m.member_id = v.member_id AND m.status = 'deleted')", (code,)).fetchone()
    key = member_id or "" if coupon_kind == "campaign" and row is None else ""
    use = conn.execute("SELECT state, expires_ts FROM voucher_uses WHERE code = ? AND member_key = ?",
                       (code, key)).fetchone()
    used = use is not None and (use["state"] == "used" or (use["expires_ts"] or 0) > now)
    if row is None and coupon_kind is None and use is None:
        return None
    return {"code": code, "voucher": json.loads(row["body"]) if row else None, "used": used}


def reservations_of(conn: Any, member_id: str, now: float) -> list[dict[str, Any]]:
    """A member's reservations, newest first, with their state as of ``now`` (inspection and tests)."""
    out = []
    for r in conn.execute("SELECT * FROM reservations WHERE member_id = ? ORDER BY created_ts DESC", (member_id,)):
        state = r["state"]
        if state == "open" and (r["expires_ts"] or 0) <= now:
            state = "expired"
        out.append({"reservation_id": r["reservation_id"], "store_id": r["store_id"], "lane_id": r["lane_id"],
                    "authorisation_id": r["authorisation_id"], "kind": r["kind"],
                    "points": json.loads(r["points"]), "reward_id": r["reward_id"], "voucher_code": r["voucher_code"],
                    "state": state, "expires_at": _iso(r["expires_ts"]) if r["expires_ts"] else None})
    return out
