"""Member snapshot and deltas into a real cache.db, and lookups while it is refreshed.

A new (or rebuilt) cache pulls the whole member feed from an empty cursor,
page by page; later pulls get only what changed. A refresh is short write
transactions on the writer connection; lookups read on their own WAL
connections and are answered even while a refresh holds the write lock.
"""

from __future__ import annotations

import threading

import pytest

from posd.storage import cache as cache_module
from posd.storage.cache import Cache
from posd.sync.lane.puller import SyncPuller
from tests.support.central_fixture import LANE_ID, default_seed, make_client, running_central


def member(i: int, **extra) -> dict:
    return {"member_id": f"S{i:06d}", "display_name": f"Member {i}", "tier": "basic",
            "identifiers": [f"27{i:011d}"], "balances": {"points": i % 500}, "applied_seq": {LANE_ID: 0}, **extra}


@pytest.fixture
def cache(tmp_path):
    cache = Cache(tmp_path / "cache.db", LANE_ID)
    yield cache
    cache.close()


def test_a_new_cache_takes_the_snapshot_then_only_deltas(tmp_path, cache):
    seed = default_seed()
    seed["members"] += [member(i) for i in range(2500)]
    with running_central(tmp_path / "central", seed) as central, make_client(central) as client:
        puller = SyncPuller(client, cache, page_limit=1000)
        assert puller.run_once() == "updated"
        assert cache.member_count() == 2503 and central.request_count("members") == 3
        assert cache.find_member("2900000000018").member_id == "M0001"
        assert cache.find_member("2700000002499").balances == {"points": 2499 % 500}

        central.store.upsert_member(member(7, balances={"points": 9999}))
        central.store.upsert_member(member(8, status="deleted"))
        before = puller.status()["members_applied"]
        assert puller.run_once() == "updated"
        assert puller.status()["members_applied"] - before == 2  # the delta, not the snapshot again
        assert cache.find_member("2700000000007").balances == {"points": 9999}
        assert cache.find_member("2700000000008") is None  # a deleted member's identifiers are dropped
        assert puller.run_once() == "unchanged"


def test_a_rebuilt_cache_starts_from_an_empty_cursor(tmp_path):
    with running_central(tmp_path / "central") as central, make_client(central) as client:
        first = Cache(tmp_path / "cache.db", LANE_ID)
        SyncPuller(client, first).run_once()
        assert first.member_cursor()
        first.close()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"cache.db{suffix}").unlink(missing_ok=True)
        rebuilt = Cache(tmp_path / "cache.db", LANE_ID)
        try:
            assert rebuilt.member_cursor() is None and rebuilt.member_count() == 0
            SyncPuller(client, rebuilt).run_once()
            assert rebuilt.member_count() == 3
        finally:
            rebuilt.close()


def test_a_long_list_is_applied_in_chunks_and_the_cursor_moves_last(cache, monkeypatch):
    monkeypatch.setattr(cache_module, "APPLY_CHUNK", 100)
    cache.apply_member_changes([member(i) for i in range(10)], "10")
    bad = [member(i) for i in range(250)]
    bad[230]["qualifying"] = "not a number"  # fails while building the third chunk
    with pytest.raises(ValueError):
        cache.apply_member_changes(bad, "250")
    assert cache.member_cursor() == "10"  # not moved: the page is pulled again
    assert cache.member_count() == 200  # the first two chunks landed; applying again is safe
    cache.apply_member_changes([member(i) for i in range(250)], "250")
    assert cache.member_cursor() == "250" and cache.member_count() == 250


def test_lookups_are_answered_while_a_refresh_holds_the_write_lock(cache):
    cache.apply_member_changes([member(1)], "1")
    found = []
    with cache._lock:  # what a refresh holds for the length of one chunk
        cache._conn.execute("BEGIN IMMEDIATE")
        cache._conn.execute("UPDATE members SET display_name = 'changing'")
        reader = threading.Thread(target=lambda: found.append(cache.find_member("2700000000001")))
        reader.start()
        reader.join(30)
        cache._conn.execute("ROLLBACK")
    assert found and found[0].display_name == "Member 1"  # the last committed state, not blocked


def test_lookups_keep_working_through_a_large_refresh(cache):
    cache.apply_member_changes([member(0)], "0")
    stop, seen, errors = threading.Event(), [], []

    def identify() -> None:
        while not stop.is_set():
            try:
                seen.append(cache.find_member("2700000000000") is not None)
            except Exception as exc:  # a lookup must never fail because of a refresh
                errors.append(exc)

    reader = threading.Thread(target=identify)
    reader.start()
    try:
        for page in range(20):
            cache.apply_member_changes([member(i) for i in range(page * 1000, page * 1000 + 1000)], str(page))
    finally:
        stop.set()
        reader.join(30)
    assert errors == [] and seen and all(seen)
    assert cache.member_count() == 20_000


def test_moving_to_a_new_lane_id_forgets_the_old_watermarks_and_pulls_again(cache):
    cache.apply_member_changes([member(1, applied_seq={LANE_ID: 41, "L01.2": 0})], "5")
    assert cache.find_member("2700000000001").applied_seq == 41
    cache.use_lane("L01.2")
    assert cache.find_member("2700000000001").applied_seq == 0 and cache.member_cursor() is None
    cache.apply_member_changes([member(1, applied_seq={LANE_ID: 41, "L01.2": 3})], "6")
    assert cache.find_member("2700000000001").applied_seq == 3


OPTIONAL = {"birth_date": "1990-02-03", "offers": [{"id": "O1", "title": "coffee"}],
            "totp_secret": "00112233445566778899aabbccddeeff", "birthday_award_year": 2026}


def optional_fields(combination: int) -> dict:
    return {name: value for n, (name, value) in enumerate(OPTIONAL.items()) if combination >> n & 1}


def stored(cache: Cache, member_id: str) -> tuple:
    found = cache.member_by_id(member_id)
    return (found.display_name, found.balances, found.birth_date, found.offers, found.birthday_award_year,
            cache.wallet_secret(member_id))


def expected(combination: int, i: int) -> tuple:
    fields = optional_fields(combination)
    secret = fields.get("totp_secret")
    return (f"Member {i}", {"points": i % 500}, fields.get("birth_date"), fields.get("offers", []),
            fields.get("birthday_award_year"), bytes.fromhex(secret) if secret else None)


@pytest.mark.parametrize("through_bytes", [False, True], ids=["in-process", "marshalled page"])
def test_every_mix_of_optional_fields_lands_and_a_field_dropped_later_is_cleared(tmp_path, through_bytes):
    """A row binds only the optional columns its member has (birth date, offers, wallet secret,
    birthday year): every one of the 16 mixes lands as sent, and a member who loses a field in a
    later page has it cleared, not kept from before; as the daemon applies a page and as the member
    pull's writer does, from the bytes its fetch process sent."""
    seal_key = cache_module.seal_key_from(b"store secret")
    cache = Cache(tmp_path / "cache.db", LANE_ID, seal_key=seal_key)
    rows = cache_module.MemberRows(LANE_ID, seal_key)

    def apply(members: list[dict], cursor: str) -> None:
        if through_bytes:
            page = cache_module.MemberPage.from_bytes(rows.page(members, "now").to_bytes())
            cache.apply_member_page(page, cursor)
        else:
            cache.apply_member_changes(members, cursor)

    try:
        apply([member(c, **optional_fields(c)) for c in range(16)], "1")
        assert [stored(cache, f"S{c:06d}") for c in range(16)] == [expected(c, c) for c in range(16)]
        apply([member(c, **optional_fields(15 - c)) for c in range(16)], "2")  # every field flips
        assert [stored(cache, f"S{c:06d}") for c in range(16)] == [expected(15 - c, c) for c in range(16)]
        assert cache.member_count() == 16 and cache.member_cursor() == "2"
    finally:
        cache.close()
