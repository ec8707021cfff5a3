"""Member changes: cursors that lose nothing while members change during paging.

On a foreign central the kit can only change members through the protocol:
it pushes accruals for the members it enrolled, which move their balances
and watermarks, between pages of the feed. Every change must reach the feed
at its latest state: a member already paged past comes again after the
cursor, one not yet reached comes once, changed.
"""

from __future__ import annotations

from collections.abc import Callable

from posd.sync.conformance.kit import (
    Context,
    Failed,
    Skipped,
    check,
    expect_status,
    feed_page,
    feed_pages,
    follow_feed,
    settling,
)

PAGE = 2  # small pages, so changes land between them


def _tail(ctx: Context) -> str:
    """The cursor at the feed's end: from where the kit last followed it (when it enrolled its
    members), else from the start (a lane's first snapshot)."""
    if "tail" not in ctx.notes:
        ctx.notes["tail"] = follow_feed(ctx, ctx.notes.get("cursor", ""))
    return ctx.notes["tail"]


@check("members", "cursor.bad")
def bad_cursor(ctx: Context) -> str:
    """A cursor central never handed out is 400 bad_cursor; a limit of 0 is 400 bad_limit."""
    expect_status(ctx.client.member_changes("not a cursor!", 10), 400, "a made-up cursor", "bad_cursor")
    expect_status(ctx.client.member_changes("", 0), 400, "limit 0", "bad_limit")
    return "400 bad_cursor, 400 bad_limit"


@check("members", "cursor.loses_nothing")
def loses_nothing(ctx: Context) -> str:
    """Paging while members change: every change arrives, at its latest state, after the cursor."""
    if len(ctx.members) < 2 or ctx.next_seq is None:
        raise Skipped("the kit's members were not enrolled (check push.accepted)")
    cursor = _tail(ctx)
    seen: dict[str, dict] = {}
    pushed = 0
    for round_ in range(len(ctx.members) * 2):  # bounded: a change before every page
        member = ctx.members[round_ % len(ctx.members)]
        results = ctx.push([ctx.event(ctx.seq(), member, points=1 + round_)])
        if results[0].get("status") != "accepted":
            raise Failed(f"an accrual for the kit's member was answered {results[0]}")
        pushed += 1
        members, cursor, _ = feed_page(ctx, cursor, PAGE)
        seen.update({m["member_id"]: m for m in members if isinstance(m, dict) and "member_id" in m})
    for _ in settling(ctx):
        for _ in range(ctx.max_pages):
            members, cursor, has_more = feed_page(ctx, cursor, 1000)
            seen.update({m["member_id"]: m for m in members if isinstance(m, dict) and "member_id" in m})
            if not has_more:
                break
        if not _behind(ctx, seen):
            return f"{pushed} changes made between pages of {PAGE}; each arrived at its latest state"
    raise Failed("the feed never brought these members' latest state: " + "; ".join(_behind(ctx, seen)[:3]))


@check("members", "cursor.pages")
def pages(ctx: Context) -> str:
    """One change for each of the kit's members, then the feed from the cursor before them, once
    in pages of up to 1000 and once in pages of one, each followed until has_more is false: both
    bring every one of them, and has_more is true on every page of one until the last of them (a
    feed that leaves members out of a page, or says there is no more when there is, loses changes
    for good). A page may hold fewer than its limit: the protocol asks only that has_more says
    whether there is more."""
    if len(ctx.members) < 2 or ctx.next_seq is None:
        raise Skipped("the kit's members were not enrolled (check push.accepted)")
    start = follow_feed(ctx, _tail(ctx))
    for member in ctx.members:
        results = ctx.push([ctx.event(ctx.seq(), member)])
        if results[0].get("status") != "accepted":
            raise Failed(f"an accrual for the kit's member was answered {results[0]}")
    want = {member: ctx.expected[member][1] for member in ctx.members}  # the last seq pushed for each
    lane = ctx.client.lane_id

    def latest(members: list[dict]) -> set[str]:
        return {m["member_id"] for m in members if isinstance(m, dict) and m.get("member_id") in want
                and (m.get("applied_seq") or {}).get(lane) == want[m["member_id"]]}

    for _ in settling(ctx):  # the changes may take a moment to reach the feed
        got, big = _walk(ctx, start, 1000, latest)
        if got == set(want):
            break
    else:
        raise Failed(f"pages of up to 1000 from the cursor before {len(want)} changes, followed until has_more "
                     f"was false, left out {sorted(set(want) - got)[:3]}")
    cursor, walked, came = start, 0, set()
    while came != set(want):
        if walked >= min(ctx.max_pages, 1000 + len(want)):
            raise Failed(f"pages of one did not bring {sorted(set(want) - came)[:3]} within {walked} pages")
        members, cursor, has_more = feed_page(ctx, cursor, 1)
        walked += 1
        if len(members) > 1:
            raise Failed(f"a page of limit 1 held {len(members)} members")
        came |= latest(members)
        if not has_more and came != set(want):
            raise Failed(f"has_more was false after {walked} page(s) of one, before "
                         f"{sorted(set(want) - came)[:3]} (pages of up to 1000 had them all)")
    return (f"{len(want)} changes: all in {big} page(s) of up to 1000, and in {walked} pages of one with has_more "
            "until the last")


def _walk(ctx: Context, cursor: str, limit: int, latest: Callable[[list[dict]], set[str]]) -> tuple[set[str], int]:
    """The kit's members at their latest state in the feed from ``cursor``, in pages of up to ``limit``
    followed until has_more is false (at most --max-pages), and how many pages that took."""
    got: set[str] = set()
    pages = 0
    for members, _ in feed_pages(ctx, cursor, limit):
        pages += 1
        if len(members) > limit:
            raise Failed(f"a page of limit {limit} held {len(members)} members")
        got |= latest(members)
    return got, pages


def _behind(ctx: Context, seen: dict[str, dict]) -> list[str]:
    """The kit's members whose last state in the feed is not what the kit pushed."""
    lane = ctx.client.lane_id
    out = []
    for member in ctx.members:
        points, last_seq = ctx.expected[member]
        got = seen.get(member)
        if got is None:
            out.append(f"{member} never came")
            continue
        balance = (got.get("balances") or {}).get(ctx.currency)
        watermark = (got.get("applied_seq") or {}).get(lane)
        points += ctx.notes.get("offsets", {}).get(member, 0)
        if balance != points or watermark != last_seq:
            out.append(f"{member}: balance {balance} (pushed {points}), applied_seq {watermark} (last {last_seq})")
    return out


@check("members", "watermark")
def watermark(ctx: Context) -> str:
    """A member's applied_seq names this lane's last event applied to it (only this store's lanes)."""
    if not ctx.members:
        raise Skipped("the kit's members were not enrolled (check push.accepted)")
    members, _, _ = feed_page(ctx, _tail_before(ctx), 1000)
    for m in members:
        marks = m.get("applied_seq")
        if not isinstance(marks, dict) or any("/" in key for key in marks):
            raise Failed(f"applied_seq must map this store's lane ids to seqs, got {marks!r}")
    return "applied_seq keyed by this store's lane ids"


def _tail_before(ctx: Context) -> str:
    return ctx.notes.get("tail", "")
