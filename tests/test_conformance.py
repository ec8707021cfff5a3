"""`posd conformance` against the reference central on both engines, and against broken ones.

The kit runs as a user runs it: `python -m posd conformance ...` in a child
process, over real HTTP, printing JSON. The broken centrals are the reference
one with its store wrapped to answer against the protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ENGINES
from tests.support.central_fixture import SECRET_TEXT, STORE_ID, demo_seed, running_central

ROOT = Path(__file__).resolve().parent.parent


CENTRAL_ENGINES = ENGINES  # every test here that uses central's database runs on both engines


def kit(central, tmp_path: Path, *extra: str, lane: str = "CONF1") -> tuple[int, dict[str, Any]]:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_TEXT + "\n")
    cmd = [sys.executable, "-m", "posd", "conformance", "--central", central.url, "--store", STORE_ID,
           "--lane", lane, "--secret-file", str(secret), "--json", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict[str, Any]) -> dict[str, str]:
    return {f"{c['group']}/{c['name']}": c["status"] for c in report["checks"]}


def test_the_reference_central_passes_on_both_engines_and_again_on_the_same_lane(central, tmp_path):
    for _ in range(2):  # the second run continues the lane's history where central says it ends
        code, report = kit(central, tmp_path)
        statuses = by_name(report)
        assert code == 0 and report["conformant"], report
        assert statuses.pop("rate_limit/429.retry_after") == "not observed"  # honest: nothing provoked one
        assert statuses.pop("burn/expiry") == "not observed"  # reservations live 900 s: the kit waits 30
        assert set(statuses.values()) == {"pass"} and len(statuses) >= 22, statuses
    assert {"push/dedupe.duplicate", "push/seq.gap", "members/cursor.loses_nothing", "program/etag.304",
            "auth/timestamp.stale", "push/limits.events"} <= set(by_name(report))


def test_the_reference_central_with_the_demo_program_passes(tmp_path):
    """The demo program's tier currency is `qualifying` tier points, which are never spent: the kit
    burned them, central refused each authorisation (400 malformed_authorisation), and the kit called
    the reference central not conformant. It burns a currency that can be spent; one that cannot is
    its setup error, named."""
    seed = demo_seed()
    with running_central(tmp_path / "c", seed) as central:
        secret = tmp_path / "demo.secret"
        secret.write_text(seed["stores"][STORE_ID]["secret"] + "\n")
        args = ["--secret-file", str(secret), "--group", "push", "--group", "burn", "--wait-expiry", "0"]
        code, report = kit(central, tmp_path, *args)
        statuses = by_name(report)
        assert code == 0 and report["conformant"], report
        assert {"burn/decline.insufficient", "burn/reserve"} <= {n for n, s in statuses.items() if s == "pass"}
        code, report = kit(central, tmp_path, *args, "--currency", "qualifying")
    assert code == 2 and "never spent" in report["setup_error"]["what"], report


@pytest.mark.long  # waits for a reservation to expire, about 5 s on each engine (make test-faults)
def test_a_burn_reservation_central_lets_expire_frees_its_points(tmp_path, central_db):
    with running_central(tmp_path / "c", db_path=central_db, reservation_ttl_s=3) as central:
        code, report = kit(central, tmp_path, "--group", "push", "--group", "burn", "--wait-expiry", "20")
    statuses = by_name(report)
    assert code == 0 and statuses["burn/expiry"] == "pass" and statuses["burn/hold"] == "pass", report


@pytest.mark.long  # about 4.5 s on each engine: CI runs it with the fault runs (make test-faults)
def test_a_group_that_needs_the_kits_members_runs_their_setup_first(tmp_path, central_db):
    """`--group burn` alone: push's lane.head and accepted run first (and show), so burn is judged."""
    with running_central(tmp_path / "c", db_path=central_db, reservation_ttl_s=3) as central:
        code, report = kit(central, tmp_path, "--group", "burn", "--wait-expiry", "20")
    statuses = by_name(report)
    assert code == 0 and report["conformant"], report
    assert {g for g in (n.split("/")[0] for n in statuses)} == {"push", "burn"}
    assert [n for n in statuses if n.startswith("push/")] == ["push/lane.head", "push/accepted"]
    assert set(statuses.values()) == {"pass"}, statuses


def test_a_429_met_during_the_run_is_checked_for_its_retry_after(central, tmp_path):
    central.inject("push", "429", count=1)  # the kit's first push meets it, waits 1 s, goes on
    code, report = kit(central, tmp_path, "--group", "push", "--group", "rate_limit")
    assert code == 0 and by_name(report)["rate_limit/429.retry_after"] == "pass", report


class BrokenStore:
    """A real central store with one answer broken (each subclass below): the kit must catch it."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class AcceptsTwice(BrokenStore):
    """A central store that answers a resent event `accepted` instead of `duplicate`."""

    def apply_batch(self, *args: Any) -> list[dict[str, Any]]:
        return [dict(r, status="accepted") if r["status"] == "duplicate" else r
                for r in self._store.apply_batch(*args)]


class NewEtagEveryTime(BrokenStore):
    """A central store whose program's ETag changes on every read: no 304 ever."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._reads = 0

    def program(self) -> tuple[Any, str]:
        self._reads += 1
        program, _ = self._store.program()
        return program, f'"read-{self._reads}"'


class ApprovesEverything(BrokenStore):
    """A central store that approves every burn: no balance check, no holds."""

    def authorise(self, store_id: str, lane_id: str, request: dict[str, Any], ttl_s: float,
                  sent_at: int | None = None) -> dict[str, Any]:
        answer = self._store.authorise(store_id, lane_id, request, ttl_s, sent_at)
        if answer["status"] == "declined" and answer["code"] != "authorisation_conflict":
            return {"authorisation_id": request["authorisation_id"], "status": "approved",
                    "reservation_id": "R-any", "expires_at": "2099-01-01T00:00:00.000Z", "available": {}}
        return answer


class FailsOnNul(BrokenStore):
    """A central store that fails a batch holding U+0000 anywhere, as PostgreSQL's text does: a 500."""

    def apply_batch(self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]],
                    received_at: str) -> list[dict[str, Any]]:
        if "\\u0000" in json.dumps(events):
            raise ValueError("text fields cannot contain NUL (0x00) bytes")
        return self._store.apply_batch(store_id, lane_id, batch_id, events, received_at)


class AcceptsEveryToken(BrokenStore):
    """A central store that answers every member token claim accepted, whichever lane claimed it first."""

    def claim_token(self, store_id: str, lane_id: str, token_id: str, member_id: str) -> bool:
        self._store.claim_token(store_id, lane_id, token_id, member_id)
        return True


class GivesEveryYear(BrokenStore):
    """A central store that answers every birthday claim awarded, whichever lane claimed the year first."""

    def claim_birthday(self, store_id: str, lane_id: str, member_id: str, year: int, transaction_id: str) -> bool:
        self._store.claim_birthday(store_id, lane_id, member_id, year, transaction_id)
        return True


class DedupesOnSeqAlone(BrokenStore):
    """A central store that tells events apart by seq alone: an event sent again under a new seq is not
    event_id_reused (the reference store below it still refuses the sale as accrual_repeated, and the
    kit's next check starts after that seq: it failed seq.gap too, for a seq it took for free)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._first_seq: dict[str, int] = {}  # event_id -> the seq it first came at

    def apply_batch(self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]],
                    received_at: str) -> list[dict[str, Any]]:
        renamed = []
        for event in events:
            seq = self._first_seq.setdefault(event["event_id"], event["seq"])
            renamed.append(event if seq == event["seq"] else dict(event, event_id=f"{event['event_id']}@{event['seq']}"))
        answers = self._store.apply_batch(store_id, lane_id, batch_id, renamed, received_at)
        return [dict(a, event_id=e["event_id"]) for a, e in zip(answers, events, strict=True)]


class AppliesWhatItRefuses(BrokenStore):
    """A central store that answers a resent event duplicate, and a collision seq_conflict, as it
    should, and then credits the event all the same (under a lane of its own)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._shadow_seq = 0

    def apply_batch(self, store_id: str, lane_id: str, batch_id: str, events: list[dict[str, Any]],
                    received_at: str) -> list[dict[str, Any]]:
        answers = self._store.apply_batch(store_id, lane_id, batch_id, events, received_at)
        for answer, event in zip(answers, events, strict=True):
            if answer["status"] == "duplicate" or answer.get("code") == "seq_conflict":
                self._shadow_seq += 1
                again = dict(event, seq=self._shadow_seq, event_id=f"{event['event_id']}-again-{self._shadow_seq}")
                self._store.apply_batch(store_id, "SHADOW", f"{batch_id}-{self._shadow_seq}", [again], received_at)
        return answers


class FeedFails(BrokenStore):
    """A central store whose member feed always fails (a 500): the rest of the protocol is fine."""

    def member_changes(self, store_id: str, cursor: int, limit: int) -> Any:
        raise RuntimeError("the member feed is down")


class NeverHasMore(BrokenStore):
    """A member feed that always says there is no more: a lane gets one page per poll."""

    def member_changes(self, store_id: str, cursor: int, limit: int) -> Any:
        members, next_cursor, _ = self._store.member_changes(store_id, cursor, limit)
        return members, next_cursor, False


class LagsItsPushes(BrokenStore):
    """A sound central whose member feed shows a change only LAG_S after the push that made it (a
    feed read from a replica, or built by a queue): not broken, only slow."""

    LAG_S = 1.5

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._pushed = 0.0

    def apply_batch(self, *args: Any) -> list[dict[str, Any]]:
        results = self._store.apply_batch(*args)
        self._pushed = time.monotonic()
        return results

    def member_changes(self, store_id: str, cursor: Any, limit: int) -> Any:
        if time.monotonic() - self._pushed < self.LAG_S:
            return [], str(cursor), False  # nothing new yet
        return self._store.member_changes(store_id, cursor, limit)


class DropsEverySecond(BrokenStore):
    """A member feed that leaves every second member out of each page (its cursor moves past them)."""

    def member_changes(self, store_id: str, cursor: int, limit: int) -> Any:
        members, next_cursor, has_more = self._store.member_changes(store_id, cursor, limit)
        return members[::2], next_cursor, has_more


class ShortPages(BrokenStore):
    """A sound member feed that hands out at most 3 members a page, whatever the limit asked, with
    has_more and next_cursor right: the protocol asks no more of a page."""

    def member_changes(self, store_id: str, cursor: int, limit: int) -> Any:
        return self._store.member_changes(store_id, cursor, min(limit, 3))


def test_a_feed_of_pages_shorter_than_their_limit_passes_the_kit(central, tmp_path):
    """The kit wanted all 6 of its changes in one page of limit 1000, and failed a central whose
    pages are shorter, though they said has_more and the lane lost nothing from them."""
    central.app.store = ShortPages(central.store)
    code, report = kit(central, tmp_path)
    assert code == 0 and report["conformant"], report
    assert by_name(report)["members/cursor.pages"] == "pass"


@pytest.mark.parametrize("broken, failing", [(AcceptsTwice, {"push/dedupe.duplicate"}),
                                             (FeedFails, {"members/cursor.loses_nothing", "members/cursor.pages",
                                                          "members/watermark"}),
                                             (NeverHasMore, {"members/cursor.pages"}),
                                             (DropsEverySecond, {"members/cursor.pages", "push/dedupe.duplicate",
                                                                 "push/dedupe.conflict"}),  # read in the feed
                                             (AppliesWhatItRefuses, {"push/dedupe.duplicate", "push/dedupe.conflict",
                                                                     "members/cursor.loses_nothing"}),
                                             (DedupesOnSeqAlone, {"push/dedupe.event_id"}),
                                             (FailsOnNul, {"push/answers.malformed"}),
                                             (AcceptsEveryToken, {"tokens/claim.other_lane"}),
                                             (GivesEveryYear, {"birthdays/claim.other_lane"}),
                                             (NewEtagEveryTime, {"program/etag.304"}),
                                             (ApprovesEverything, {"burn/decline.insufficient",
                                                                   "burn/voucher.hold"})])
@pytest.mark.fault
def test_a_broken_central_fails_the_kit(central, tmp_path, broken, failing):
    central.app.store = broken(central.store)
    code, report = kit(central, tmp_path, "--settle", "2")  # the reference's feed shows a push at once
    assert code == 1 and not report["conformant"]
    failed = {name for name, status in by_name(report).items() if status == "FAIL"}
    assert failed == failing, report


@pytest.mark.long  # waits out a settle time, about 5 s: CI runs it with the fault runs (make test-faults)
def test_a_feed_that_lags_its_pushes_passes_within_settle_and_fails_past_it(tmp_path):
    """--settle is how long the kit waits for a push to show in the member feed: a central whose feed
    lags by 1.5 s is conformant under the default, and fails the feed's checks under --settle 0."""
    with running_central(tmp_path / "c") as central:  # SQLite: the engine plays no part here
        central.app.store = LagsItsPushes(central.store)
        code, report = kit(central, tmp_path, "--group", "members", "--settle", "0")
        failed = {name for name, status in by_name(report).items() if status == "FAIL"}
        assert code == 1 and {"members/cursor.pages", "members/cursor.loses_nothing"} <= failed, report
        code, report = kit(central, tmp_path, "--group", "members", lane="CONF2")
    assert code == 0 and report["conformant"], report


@pytest.mark.parametrize("open_calls", ["GET", "not pushes"])
def test_a_central_that_checks_signatures_on_pushes_only_fails_the_kit(central, tmp_path, monkeypatch, open_calls):
    """Member changes hold names, birth dates and wallet secrets; burns spend points: a central that
    lets unsigned reads (or every call but a push) through is not conformant."""
    from posd.sync.central import app as central_app

    checked = central_app._Request._authenticate

    async def authenticate(self, body: bytes, store_in_url: str | None, lane_in_url: str | None) -> None:
        if (self.method == "GET") if open_calls == "GET" else not self.target.endswith("/batches"):
            return
        await checked(self, body, store_in_url, lane_in_url)

    monkeypatch.setattr(central_app._Request, "_authenticate", authenticate)
    code, report = kit(central, tmp_path, "--group", "auth")
    assert code == 1 and {name for name, status in by_name(report).items() if status == "FAIL"} == {"auth/every_call"}


def test_bad_arguments_are_named_not_a_traceback(tmp_path):
    cmd = [sys.executable, "-m", "posd", "conformance", "--central", "ftp://x", "--store", "S", "--lane", "L",
           "--secret-file", str(tmp_path / "missing.txt")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "posd conformance:" in done.stderr and "Traceback" not in done.stderr



def test_numbers_out_of_range_are_usage_errors_before_central_is_asked(central, tmp_path):
    """--timeout 0 or -1 was a traceback from the HTTP library; --max-pages 0 judged a conforming
    central "NOT conformant"; a negative --wait-expiry was taken. Each is refused by name (exit 2)
    and nothing is pushed; a sound value still runs."""
    for option, value in (("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "nan"), ("--max-pages", "0"),
                          ("--max-pages", "-3"), ("--wait-expiry", "-1"), ("--settle", "-1"),
                          ("--settle", "inf")):
        done = run_kit(central.url, tmp_path, SECRET_TEXT, option, value)
        assert done.returncode == 2 and f"argument {option}: {value}" in done.stderr, (option, value, done.stderr)
        assert done.stdout == "" and "conformant" not in done.stderr
    done = run_kit(central.url, tmp_path, SECRET_TEXT, "--max-pages", "1", "--wait-expiry", "0", "--group", "auth")
    assert done.returncode == 0, done.stdout + done.stderr

def run_kit(central_url: str, tmp_path: Path, secret_text: str, *extra: str) -> subprocess.CompletedProcess:
    secret = tmp_path / "kit-secret.txt"
    secret.write_text(secret_text + "\n")
    cmd = [sys.executable, "-m", "posd", "conformance", "--central", central_url, "--store", STORE_ID,
           "--lane", "CONF1", "--secret-file", str(secret), "--timeout", "10", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "Traceback" not in done.stderr and "urllib3" not in done.stderr, done.stderr
    return done


def test_a_secret_central_refuses_is_one_setup_message_exit_2_and_nothing_pushed(central, tmp_path):
    done = run_kit(central.url, tmp_path, "hex:" + "00" * 32)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refused the kit's credentials" in done.stderr and "bad_signature" in done.stderr
    assert "--secret-file" in done.stderr and "FAIL" not in done.stdout + done.stderr
    assert central.store.events(STORE_ID, "CONF1") == []
    done = run_kit(central.url, tmp_path, "hex:" + "00" * 32, "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 2 and report["conformant"] is None and report["checks"] == []
    assert report["setup_error"]["what"].startswith("central refused the kit's credentials: HTTP 401 bad_signature")


def test_a_currency_the_program_lacks_is_a_setup_error_and_nothing_pushed(central, tmp_path):
    """--currency nosuch made every push bad_points and called the central not conformant."""
    done = run_kit(central.url, tmp_path, SECRET_TEXT, "--currency", "nosuch")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--currency 'nosuch' is not a currency of central's program" in done.stderr and "points" in done.stderr
    assert "FAIL" not in done.stdout + done.stderr and central.store.events(STORE_ID, "CONF1") == []


def test_a_central_that_does_not_answer_is_one_setup_message_exit_2(tmp_path):
    from tests.support.lane import free_port

    done = run_kit(f"http://127.0.0.1:{free_port()}", tmp_path, SECRET_TEXT)
    assert done.returncode == 2 and done.stderr.count("could not be reached") == 1, done.stderr
    assert "ConnectionRefusedError" in done.stderr and "FAIL" not in done.stdout + done.stderr


def test_a_wrong_url_prefix_or_a_failing_central_is_a_setup_error_not_a_table_of_failures(central, tmp_path):
    done = run_kit(central.url + "/wrong-prefix", tmp_path, SECRET_TEXT)
    assert done.returncode == 2 and "404" in done.stderr and "base URL" in done.stderr, done.stderr
    central.inject("lane", "503")
    done = run_kit(central.url, tmp_path, SECRET_TEXT, "--group", "auth")
    assert done.returncode == 2 and "not serving: HTTP 503" in done.stderr, done.stderr
    code, report = kit(central, tmp_path, "--group", "auth")  # once central serves again, the checks run
    assert code == 0 and report["conformant"] is True, report


def test_a_kit_clock_far_off_centrals_is_named_as_the_clock(tmp_path):
    import time

    with running_central(tmp_path / "c", clock=lambda: time.time() + 1000) as central:
        done = run_kit(central.url, tmp_path, SECRET_TEXT)
    assert done.returncode == 2 and "stale_timestamp" in done.stderr and "clock" in done.stderr, done.stderr


def test_a_program_with_tier_points_only_is_the_kits_setup_error_for_burns_alone():
    """Tier points are never spent: a program with no other currency leaves the burn checks nothing to
    spend. The kit credited "points", a currency the program lacks, and called central not
    conformant; it now says so before any check, and runs the other groups in tier points."""
    from posd.sync.conformance.cli import _currency
    from posd.sync.conformance.preflight import SetupError

    program = {"tier_currency": "tier", "currencies": [{"code": "tier", "kind": "qualifying"}]}
    client = type("Client", (), {"program": lambda self: type("R", (), {"json": lambda r: program})()})()
    assert _currency(client, None, burns=False) == "tier"
    with pytest.raises(SetupError) as err:
        _currency(client, None, burns=True)
    assert "never spent" in err.value.what and "leave out --group burn" in err.value.check
    program["currencies"].append({"code": "pts", "kind": "redeemable"})
    assert _currency(client, None, burns=True) == "pts"
    with pytest.raises(SetupError) as err:
        _currency(client, "tier", burns=True)
    assert err.value.check == "use --currency pts"
    with pytest.raises(SetupError) as err:  # a currency spelled otherwise: what it could use instead
        _currency(client, "TIER", burns=True)
    assert err.value.check == "use one of pts"
