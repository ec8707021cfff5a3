"""The kit's frame: checks register themselves by group; a run gives each one the shared
context and records its outcome; the report is a table or JSON.

A check is a function ``(ctx) -> str`` (a short note on what it saw) that
raises ``Failed`` (the central broke the protocol), ``NotObserved`` (the kit
could not provoke what it checks; honest, not a pass) or ``Skipped`` (a
prerequisite failed). Checks of a group run in the order they are defined;
an exception of any other kind is a failure too, reported with its type.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from posd.sync.conformance.http import Answer, KitClient

PASS, FAIL, NOT_OBSERVED, SKIPPED = "pass", "FAIL", "not observed", "skipped"
SETTLE_S = 10.0  # how long a change central accepted may take to show in its member feed (--settle)
SETTLE_POLL_S = 0.5

# The check groups, in the order they run: a module each (sync/conformance/checks_<group>.py).
GROUPS = ("auth", "push", "members", "program", "burn", "tokens", "birthdays", "rate_limit")


class Failed(Exception):
    """The central answered against the protocol."""


class NotObserved(Exception):
    """What the check is about did not happen during the run."""


class Skipped(Exception):
    """A prerequisite of the check is missing (an earlier step failed)."""


@dataclass
class Check:
    group: str
    name: str
    doc: str
    fn: Callable[[Context], str]


REGISTRY: list[Check] = []


def check(group: str, name: str) -> Callable[[Callable[[Context], str]], Callable[[Context], str]]:
    """Register a check: ``@check("push", "dedupe.duplicate")``; its docstring's first line is its title."""
    def register(fn: Callable[[Context], str]) -> Callable[[Context], str]:
        REGISTRY.append(Check(group, name, (fn.__doc__ or name).strip().splitlines()[0], fn))
        return fn
    return register


@dataclass
class Outcome:
    group: str
    name: str
    title: str
    status: str
    detail: str


@dataclass
class Context:
    """What the checks share: the client, the lane's next seq, the kit's own members."""

    client: KitClient
    currency: str = "points"
    max_pages: int = 10_000
    wait_expiry: float = 30.0  # seconds the burn group may wait for a reservation to expire
    settle_s: float = SETTLE_S  # seconds an accepted change may take to show in the member feed
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    next_seq: int | None = None  # the lane's next seq at central, once known
    members: list[str] = field(default_factory=list)  # members this run enrolled
    expected: dict[str, tuple[int, int]] = field(default_factory=dict)  # member -> (points pushed, last seq)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # events central accepted, in seq order
    notes: dict[str, Any] = field(default_factory=dict)

    def seq(self) -> int:
        if self.next_seq is None:
            raise Skipped("the lane's head is unknown (check push.lane_head)")
        return self.next_seq

    def event(self, seq: int, member_id: str, type_: str = "accrual", points: int = 1, **extra: Any) -> dict:
        """An event in wire shape, its ids unique to this run."""
        event = {"seq": seq, "event_id": f"conf-{self.run_id}-{seq}", "type": type_,
                 "transaction_id": f"conf-{self.run_id}-T{seq}", "member_id": member_id,
                 "occurred_at": "2026-11-24T09:15:00Z", "points": {self.currency: points},
                 "program_version": "conformance", "offline": False}
        event.update(extra)
        return event

    def push(self, events: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
        """Push; the per-event answers (Failed unless central answers 200 with a result per event)."""
        batch_id = f"conf-{self.run_id}-{events[0]['seq']}-{uuid.uuid4().hex[:6]}"
        answer = self.client.push(batch_id, events, **kwargs)
        expect_status(answer, 200, "a push")
        doc = answer.json()
        if not isinstance(doc, dict) or doc.get("batch_id") != batch_id or not isinstance(doc.get("results"), list):
            raise Failed(f"a push answer needs batch_id {batch_id!r} and results: {answer.body[:200]!r}")
        results = doc["results"]
        by_seq = {r.get("seq"): r for r in results if isinstance(r, dict)}
        missing = [e["seq"] for e in events if e["seq"] not in by_seq]
        if missing:
            raise Failed(f"no answer for seqs {missing}")
        answers = [by_seq[e["seq"]] for e in events]
        for event, result in zip(events, answers, strict=True):
            if result.get("event_id") not in (None, event["event_id"]):
                raise Failed(f"seq {event['seq']} answered with another event_id {result.get('event_id')!r}")
            if result.get("status") == "accepted":
                self.note_accepted(event)
            elif result.get("status") == "rejected" and result.get("retryable") is False:
                # its seq is consumed whatever the check wanted: the next check starts after it, and a
                # failure here is not blamed on the checks that follow (a wrong rejection code then
                # seq_gap's check getting `accepted` for a seq it took for the head's next but one)
                self.next_seq = max(self.next_seq or 0, event["seq"] + 1)
        return answers

    def note_accepted(self, event: dict[str, Any]) -> None:
        self.accepted.append(event)
        points, _ = self.expected.get(event["member_id"], (0, 0))
        if event["member_id"] in self.expected or event["type"] == "member_enrolled":
            self.expected[event["member_id"]] = (points + sum(event["points"].values()), event["seq"])
        self.next_seq = max(self.next_seq or 0, event["seq"] + 1)


# --- the member feed, as the kit watches its own members in it ----------------------------------

def settling(ctx: Context) -> Iterator[None]:
    """Turns at reading the feed's end for changes still committing elsewhere: the first at once, then
    one every SETTLE_POLL_S until ``ctx.settle_s`` has passed (``--settle``; bounded). A check breaks
    out as soon as it sees what it waits for."""
    deadline = time.monotonic() + ctx.settle_s
    while True:
        yield
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(SETTLE_POLL_S, left))


def feed_page(ctx: Context, cursor: str, limit: int) -> tuple[list[dict], str, bool]:
    """One page of member changes: (members, next_cursor, has_more); Failed on a malformed answer."""
    answer = ctx.client.member_changes(cursor, limit)
    expect_status(answer, 200, "a member page")
    doc = answer.json()
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), list) \
            or not isinstance(doc.get("next_cursor"), str) or not isinstance(doc.get("has_more"), bool):
        raise Failed(f"a member page needs members, next_cursor (string) and has_more: {answer.body[:200]!r}")
    return doc["members"], doc["next_cursor"], doc["has_more"]


def feed_pages(ctx: Context, cursor: str, limit: int = 1000) -> Iterator[tuple[list[dict], str]]:
    """The pages from ``cursor`` to the feed's end, each (members, next_cursor), followed until
    has_more is false, as a lane does; Skipped after --max-pages."""
    for _ in range(ctx.max_pages):
        members, cursor, has_more = feed_page(ctx, cursor, limit)
        yield members, cursor
        if not has_more:
            return
    raise Skipped(f"the feed did not end within {ctx.max_pages} pages (--max-pages)")


def follow_feed(ctx: Context, cursor: str = "") -> str:
    """Page from ``cursor`` to the feed's end (at most --max-pages): the kit's members' latest states
    go to notes["seen"]; the cursor at the end is returned and kept in notes["cursor"]."""
    seen = ctx.notes.setdefault("seen", {})
    for members, cursor in feed_pages(ctx, cursor):
        seen.update({m["member_id"]: m for m in members
                     if isinstance(m, dict) and m.get("member_id") in ctx.expected})
    ctx.notes["cursor"] = cursor
    return cursor


def balance_in_feed(ctx: Context, member: str) -> int | None:
    got = ctx.notes.get("seen", {}).get(member)
    return None if got is None else (got.get("balances") or {}).get(ctx.currency, 0)


def applied_once(ctx: Context) -> str:
    """The kit's members' balances in the feed are what central accepted of the kit, each event
    counted once (beside what each held right after its enrolment: a platform may give a bonus).
    Failed as soon as one is above it; a balance below it is waited for (commits elsewhere)."""
    if "offsets" not in ctx.notes:
        raise NotObserved("the member feed could not be followed when the kit enrolled its members: "
                          + ctx.notes.get("feed_unread", "its end was not reached"))
    behind: list[str] = []
    for _ in settling(ctx):
        try:
            follow_feed(ctx, ctx.notes["cursor"])
        except Skipped as exc:  # the answers were checked: only the balances could not be read
            raise NotObserved(f"balances not read: {exc}") from exc
        behind = []
        for member in ctx.members:
            balance, want = balance_in_feed(ctx, member), ctx.expected[member][0] + ctx.notes["offsets"].get(member, 0)
            if balance is not None and balance > want:
                raise Failed(f"{member} holds {balance} points in the member feed; what central accepted of the kit "
                             f"comes to {want}: an event was applied twice")
            if balance != want:
                behind.append(f"{member}: {balance} (accepted {want})")
        if not behind:
            return "every balance as accepted"
    raise Failed("the member feed never showed what central accepted: " + "; ".join(behind[:3]))


def expect_status(answer: Answer, status: int, what: str, code: str | None = None) -> None:
    if answer.status != status or (code is not None and answer.code != code):
        want = f"{status}" + (f" {code}" if code else "")
        raise Failed(f"{what}: expected {want}, got {answer.status} {answer.code or answer.body[:120]!r}")


def claim(ctx: Context, what: str, path: Callable[[KitClient, str | None], str], body: bytes, lane_id: str | None,
          parse: Callable[[Any], dict[str, Any]], refused: tuple[str, str]) -> str:
    """One first-holder claim (a token use, a birthday year) from ``lane_id`` (the kit's lane when None):
    its answer's status once the protocol's own parser has read it; ``refused`` is the (status, code)
    another lane is answered, and that status without that code fails."""
    lane_id = lane_id or ctx.client.lane_id
    answer = ctx.client.request("POST", path(ctx.client, lane_id), body, {"Content-Type": "application/json"},
                                lane_header=lane_id)
    expect_status(answer, 200, f"a {what} claim from lane {lane_id}")
    try:
        doc = parse(answer.json())
    except Exception as exc:  # the protocol's own check of the answer's shape
        raise Failed(f"the answer is not a {what} claim answer: {exc}") from exc
    status, code = refused
    if doc["status"] == status and doc.get("code") != code:
        raise Failed(f"a {status} answer needs code {code}, got {doc.get('code')!r}")
    return str(doc["status"])


def answered_twice(got: list[str], want: str) -> str:
    """The lane that claimed something first, asking twice: ``want`` both times, else Failed."""
    if got != [want, want]:
        raise Failed(f"the first lane's claims were answered {got}, expected {want} twice")
    return f"{want}, and {want} again for the same lane"


def statuses(results: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r.get("status"), r.get("code")) for r in results]


# What a group's checks stand on: the kit's own members and the lane's head, which push.lane.head
# and push.accepted set up. A run of such a group without push runs those two first (in the table).
SETUP = (("push", "lane.head"), ("push", "accepted"))
NEEDS_SETUP = frozenset({"members", "burn", "tokens", "birthdays"})


def load_groups(groups: tuple[str, ...] = GROUPS) -> list[Check]:
    for group in {*groups, *(g for g, _ in SETUP)}:
        importlib.import_module(f"posd.sync.conformance.checks_{group}")
    setup = [] if "push" in groups or not NEEDS_SETUP & set(groups) else \
        [c for g, name in SETUP for c in REGISTRY if (c.group, c.name) == (g, name)]
    return setup + [c for g in groups for c in REGISTRY if c.group == g]


def run(ctx: Context, groups: tuple[str, ...] = GROUPS) -> list[Outcome]:
    outcomes = []
    for item in load_groups(groups):
        try:
            status, detail = PASS, item.fn(ctx) or ""
        except Failed as exc:
            status, detail = FAIL, str(exc)
        except NotObserved as exc:
            status, detail = NOT_OBSERVED, str(exc)
        except Skipped as exc:
            status, detail = SKIPPED, str(exc)
        except Exception as exc:  # a transport error, a bad answer we could not even read
            status, detail = FAIL, f"{type(exc).__name__}: {exc}"
        outcomes.append(Outcome(item.group, item.name, item.doc, status, detail[:300]))
    return outcomes


def passed(outcomes: list[Outcome]) -> bool:
    """Exit 0 only when nothing failed or was skipped (not observed is reported, not failed)."""
    return all(o.status in (PASS, NOT_OBSERVED) for o in outcomes)


def table(outcomes: list[Outcome], central: str) -> str:
    width = max(len(o.name) for o in outcomes) + 2
    lines = [f"posd conformance: {central}", ""]
    for o in outcomes:
        lines.append(f"{o.status:<13}{o.group + '/' + o.name:<{width + 12}}{o.title}")
        if o.status != PASS and o.detail:
            lines.append(f"{'':<13}  {o.detail}")
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in (PASS, FAIL, NOT_OBSERVED, SKIPPED)}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items()) + (" -> conformant" if passed(outcomes)
                                                                      else " -> NOT conformant")]
    return "\n".join(lines)


def as_json(outcomes: list[Outcome], central: str) -> str:
    return json.dumps({"central": central, "conformant": passed(outcomes),
                       "checks": [o.__dict__ for o in outcomes]}, indent=2)
