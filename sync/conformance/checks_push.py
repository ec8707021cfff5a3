"""Pushes: the lane's head, per-event answers, dedupe on (store, lane, seq), seq gaps, batch limits.

The kit continues the lane's history where central says it ends (``GET
/v1/lanes``), so it can run again and again under one test lane.
"""

from __future__ import annotations

import gzip

from posd.sync.conformance.kit import (
    Context,
    Failed,
    Skipped,
    applied_once,
    balance_in_feed,
    check,
    expect_status,
    follow_feed,
    settling,
    statuses,
)
from posd.sync.protocol import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

ENROLLED = 6  # members each run enrols for itself


@check("push", "lane.head")
def lane_head(ctx: Context) -> str:
    """GET /v1/lanes/{store}/{lane} tells where central's history of the lane ends."""
    answer = ctx.client.lane_head()
    expect_status(answer, 200, "the lane's head")
    doc = answer.json()
    last = doc.get("last_seq") if isinstance(doc, dict) else None
    if type(last) is not int or last < 0 or (last > 0 and not isinstance(doc.get("last_event_id"), str)):
        raise Failed(f"the lane answer needs last_seq and, past 0, last_event_id: {answer.body[:200]!r}")
    ctx.next_seq = last + 1
    ctx.notes["head_event_id"] = doc.get("last_event_id")
    return f"last_seq {last}"


@check("push", "accepted")
def accepted(ctx: Context) -> str:
    """A batch of valid events is answered accepted, event by event, and moves the head."""
    first = ctx.seq()
    try:
        follow_feed(ctx)  # the feed's end before the kit's members exist: their balances are watched from there
    except (Skipped, Failed) as exc:  # a feed past --max-pages, or broken: members/ says so; enrolment goes on
        ctx.notes["feed_unread"] = str(exc)
    members = [f"conf-{ctx.run_id}-m{n}" for n in range(ENROLLED)]
    events = [ctx.event(first + n, member, "member_enrolled", points=0, transaction_id=None,
                        display_name="Conformance kit") for n, member in enumerate(members)]
    _expect(ctx, events, [("accepted", None)] * len(events))
    ctx.members = members
    head = ctx.client.lane_head().json() or {}
    if head.get("last_seq") != events[-1]["seq"] or head.get("last_event_id") != events[-1]["event_id"]:
        raise Failed(f"after the push the lane's head is {head}, not seq {events[-1]['seq']}")
    if "cursor" in ctx.notes:
        _note_enrolment_bonus(ctx)
    return f"{len(events)} member_enrolled accepted; head at {events[-1]['seq']}"


def _note_enrolment_bonus(ctx: Context) -> None:
    """What each new member holds in the feed before the kit pushes anything for it (a platform may
    give a bonus): the kit's later checks read balances beside it."""
    for _ in settling(ctx):
        follow_feed(ctx, ctx.notes["cursor"])
        if all(balance_in_feed(ctx, m) is not None for m in ctx.members):
            break
    ctx.notes["offsets"] = {m: balance_in_feed(ctx, m) or 0 for m in ctx.members}


@check("push", "answers.per_event")
def per_event_answers(ctx: Context) -> str:
    """Each event gets its own answer; a rejected one consumes its seq and never blocks the next."""
    member, seq = _member(ctx), ctx.seq()
    events = [ctx.event(seq, member, points=3), ctx.event(seq + 1, f"conf-{ctx.run_id}-unknown"),
              ctx.event(seq + 2, member, points="three"), ctx.event(seq + 3, member, points=2)]
    _expect(ctx, events, [("accepted", None), ("rejected", "unknown_member"), ("rejected", "bad_points"),
                          ("accepted", None)], retryable=False)
    ctx.next_seq = seq + 4
    return "accepted, unknown_member, bad_points, accepted"


@check("push", "answers.malformed")
def malformed_events(ctx: Context) -> str:
    """Events central cannot take (U+0000 in a name, a sku, a currency or an identifier; identifiers
    that are not strings; a currency the program lacks) are each rejected with their code, their seqs
    consumed, never a 500 for the batch; a member_enrolled naming another member's card is
    identifier_taken."""
    member, seq, run = _member(ctx), ctx.seq(), ctx.run_id
    card = f"conf-{run}-card"
    events = [
        ctx.event(seq, f"conf-{run}-nul", "member_enrolled", points=0, transaction_id=None,
                  display_name="a\u0000b", identifiers=[f"conf-{run}-nul-card"]),
        ctx.event(seq + 1, member, points=1, lines=[{"sku": "59\u0000", "category": "gr\u0000", "quantity": 1,
                                                     "unit_price": 100}]),
        {**ctx.event(seq + 2, member), "points": {ctx.currency + "\u0000": 1}},
        ctx.event(seq + 3, f"conf-{run}-ids", "member_enrolled", points=0, transaction_id=None,
                  identifiers=[None, 2900000000179]),
        {**ctx.event(seq + 4, member), "points": {f"conf-{run}-c0": 1}},
        ctx.event(seq + 5, f"conf-{run}-holder", "member_enrolled", points=0, transaction_id=None,
                  identifiers=[card]),
        ctx.event(seq + 6, f"conf-{run}-second", "member_enrolled", points=0, transaction_id=None,
                  identifiers=[card]),
        ctx.event(seq + 7, member, points=2),
    ]
    _expect(ctx, events, [("rejected", "malformed_event")] * 4 + [("rejected", "bad_points"), ("accepted", None),
                                                                  ("rejected", "identifier_taken"), ("accepted", None)],
            retryable=False)
    ctx.next_seq = seq + 8
    return "malformed_event x4, bad_points, accepted, identifier_taken, accepted"


@check("push", "dedupe.duplicate")
def duplicate(ctx: Context) -> str:
    """The same seq sent again with the same event is answered duplicate and applied once."""
    if not ctx.accepted:
        raise Failed("nothing was accepted earlier in the run to send again")
    again = ctx.accepted[-3:]
    results = ctx.client.push(f"conf-{ctx.run_id}-again", again)
    expect_status(results, 200, "a resend")
    got = [(r.get("seq"), r.get("status")) for r in results.json().get("results", [])]
    want = [(e["seq"], "duplicate") for e in again]
    if got != want:
        raise Failed(f"a resend of accepted events must be answered duplicate: expected {want}, got {got}")
    return f"seqs {[e['seq'] for e in again]} duplicate; {applied_once(ctx)}"


@check("push", "dedupe.conflict")
def conflict(ctx: Context) -> str:
    """The same seq with another event, or with its event_id and other content, is rejected
    seq_conflict (not retryable) and changes nothing."""
    if not ctx.accepted:
        raise Failed("nothing was accepted earlier in the run to collide with")
    original = ctx.accepted[-1]
    other = dict(original, event_id=original["event_id"] + "-other", points={ctx.currency: 500})
    _expect(ctx, [other], [("rejected", "seq_conflict")], retryable=False)
    altered = dict(original, points={ctx.currency: 400})
    _expect(ctx, [altered], [("rejected", "seq_conflict")], retryable=False)
    return f"seq {original['seq']} with another event_id, and with its own and other points: seq_conflict; " \
           + applied_once(ctx)


@check("push", "dedupe.event_id")
def event_id_reused(ctx: Context) -> str:
    """An accepted event sent again under a new seq is rejected event_id_reused (not retryable), its seq
    consumed: an event is counted once, whatever seq it comes back under."""
    if not ctx.accepted:
        raise Failed("nothing was accepted earlier in the run to send again")
    original, seq = ctx.accepted[-1], ctx.seq()
    _expect(ctx, [dict(original, seq=seq)], [("rejected", "event_id_reused")], retryable=False)
    ctx.next_seq = seq + 1
    return f"event of seq {original['seq']} again at seq {seq}: event_id_reused"


@check("push", "seq.gap")
def seq_gap(ctx: Context) -> str:
    """A seq past the head is rejected seq_gap (retryable) and not consumed; filling the gap works."""
    member, seq = _member(ctx), ctx.seq()
    _expect(ctx, [ctx.event(seq + 1, member)], [("rejected", "seq_gap")], retryable=True)
    _expect(ctx, [ctx.event(seq, member), ctx.event(seq + 1, member)], [("accepted", None)] * 2)
    return f"seq {seq + 1} before {seq}: seq_gap; then both accepted"


@check("push", "limits.events")
def too_many_events(ctx: Context) -> str:
    """A batch of more than 1000 events (MAX_BATCH_EVENTS) is 413 batch_too_large and applies nothing."""
    seq, member = ctx.seq(), _member(ctx)
    events = [ctx.event(seq + n, member) for n in range(MAX_BATCH_EVENTS + 1)]
    answer = ctx.client.push(f"conf-{ctx.run_id}-big", events)
    expect_status(answer, 413, f"{len(events)} events", "batch_too_large")
    _head_is(ctx, seq - 1)
    return f"{len(events)} events: 413"


@check("push", "limits.bytes")
def too_many_bytes(ctx: Context) -> str:
    """A batch over 1,000,000 bytes of JSON (gzip under the body limit) is 413 and applies nothing."""
    seq, member = ctx.seq(), _member(ctx)
    lines = [{"sku": f"{n:013d}", "quantity": 1, "unit_price": 100} for n in range(MAX_BATCH_BYTES // 40)]
    answer = ctx.client.push(f"conf-{ctx.run_id}-bytes", [ctx.event(seq, member, lines=lines)])
    expect_status(answer, 413, "a batch over the byte limit", "batch_too_large")
    _head_is(ctx, seq - 1)
    return "413 batch_too_large"


@check("push", "malformed")
def malformed(ctx: Context) -> str:
    """A body that is not gzip JSON is 400 malformed_batch; one not gzip-encoded is 415."""
    client = ctx.client
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    answer = client.request("POST", client.push_path(), gzip.compress(b"{not json"), headers)
    expect_status(answer, 400, "gzip of something that is not JSON", "malformed_batch")
    answer = client.request("POST", client.push_path(), b'{"batch_id": "b", "events": []}',
                            {"Content-Type": "application/json", "Content-Encoding": "identity"})
    expect_status(answer, 415, "a body that is not gzip-encoded", "unsupported_encoding")
    return "400 malformed_batch, 415 unsupported_encoding"


def _expect(ctx: Context, events: list[dict], want: list[tuple[str, str | None]],
            retryable: bool | None = None) -> None:
    """Push ``events``; Failed unless central answers ``want`` ((status, code) per event) and
    every rejection says ``retryable`` as asked."""
    results = ctx.push(events)
    got = statuses(results)
    flags = {r.get("retryable") for r in results if r.get("status") == "rejected"}
    if got != want or (retryable is not None and flags and flags != {retryable}):
        raise Failed(f"expected {want}" + (f" (retryable {retryable})" if retryable is not None else "")
                     + f", got {got}" + (f" (retryable {sorted(map(str, flags))})" if flags else ""))


def _member(ctx: Context) -> str:
    if not ctx.members:
        raise Skipped("the kit's members were not enrolled (check push.accepted)")
    return ctx.members[0]


def _head_is(ctx: Context, seq: int) -> None:
    head = (ctx.client.lane_head().json() or {}).get("last_seq")
    if head != seq:
        raise Failed(f"a refused batch moved the lane's head to {head} (was {seq})")
