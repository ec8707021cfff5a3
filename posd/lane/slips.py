"""Slips: what a sale's or a redemption's slip says, reprints, and previews.

A slip's data is composed here and queued with the write it belongs to
(the sale, the redemption), so it is printed after a crash too; its layout
is pure (posd.core.slip) and its bytes are the printer's business.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from posd.core.program import Program
from posd.core.slip import SlipData, build_slip
from posd.core.slip_doc import SlipDocument
from posd.lane.context import LaneContext
from posd.lane.errors import LaneError, raises
from posd.lane.members import Members
from posd.storage.cache import CachedMember
from posd.storage.print_queue import ClientJobIdReused
from posd.storage.tx import LedgerTx, LedgerView

# A slip drawn as the lane's printer would print it, as PNG bytes (the daemon renders with its printer).
PngRenderer = Callable[[SlipDocument], bytes]


class Slips:
    def __init__(self, ctx: LaneContext, members: Members, render_png: PngRenderer | None = None):
        self.ctx, self.members = ctx, members
        self.render_png = render_png

    def compose(self, slip_id: str, member: CachedMember, program: Program, *, occurred_at: datetime,
                earned: dict[str, int], balance: dict[str, dict[str, int]],
                trace: list[dict[str, Any]] | None = None, vouchers: list[dict[str, Any]] | None = None,
                kind: str = "sale", transaction_id: str | None = None, redemption_id: str | None = None,
                view: LedgerView | None = None, taken: str | None = None) -> SlipData:
        """Names stay multilingual, so the slip prints in the member's own language when the
        catalogs have it (the lane's language next). A slip says the ids the POS knows: the sale's
        ``transaction_id`` (by default the slip's id), a redemption's ``redemption_id``. ``view``: the
        unit the slip is written in; ``taken``: the reward a redemption's slip is for, had once more today."""
        ctx = self.ctx
        # Tier points, whatever the program calls them, show as the progress to the next tier only.
        tier_points = {c.code for c in program.currencies if c.kind == "qualifying"}
        earned = {c: n for c, n in earned.items() if c not in tier_points}
        shown = {c: b for c, b in balance.items() if c not in tier_points}
        tier = program.tier(member.tier)
        progress = self.members.tier_progress(member, program, balance)  # this sale's tier points counted
        nxt = program.tier_ahead(member.tier, progress)  # a tier reached, not yet central's: 0 points needed
        return SlipData(
            slip_id=slip_id, store_id=ctx.store_id, lane_id=ctx.lane_id,
            transaction_id=slip_id if transaction_id is None else transaction_id, redemption_id=redemption_id,
            member_name=member.display_name, kind=kind, locale=member.locale,
            occurred_at=occurred_at.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M"),
            tier_name=(tier.names or tier.tier_id) if tier else None, earned=earned,
            balance={c: b["total"] for c, b in shown.items()},
            pending={c: b["pending"] for c, b in shown.items()},
            next_tier=None if nxt is None else {"name": nxt.names or nxt.tier_id, "threshold": nxt.threshold,
                                                "points_needed": max(0, nxt.threshold - progress)},
            breakdown=list(trace or []),
            rewards_available=[{**r, "title": program.reward(r["reward_id"]).names or r["title"]}
                               for r in self.members.rewards_available(member, program, balance, view, taken)],
            vouchers=vouchers or [],
            offers=[o for o in member.offers if isinstance(o, dict)],
            currencies={c.code: dict(c.names) for c in program.currencies},
        )

    def queue(self, tx: LedgerTx, slip: SlipData, member_id: str | None = None) -> dict[str, Any]:
        """Queue the slip inside the caller's unit when the lane prints; the answer's slip state.
        ``member_id``: whose slip it is, so erasure finds it."""
        if not self.ctx.printer_enabled:
            return {"slip_id": None, "state": "none"}
        tx.queue_print_job(slip_id=slip.slip_id, kind="slip" if slip.kind == "sale" else slip.kind,
                           slip=slip.to_json(), member_id=member_id)
        return {"slip_id": slip.slip_id, "state": "queued"}

    @raises("no_printer", "unknown_slip", "idempotency_key_conflict", "storage_failed", "storage_full")
    async def reprint(self, slip_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """A copy of a slip as a new job; the same key twice queues one copy. A key is the POS's
        name for one job: the key of another slip's reprint is a conflict, never that job's answer."""
        if not self.ctx.printer_enabled:
            raise LaneError("no_printer", "this lane has no printer configured")
        try:
            job_id = await self.ctx.acommit(lambda tx: tx.queue_reprint(slip_id, idempotency_key))
        except ClientJobIdReused:
            raise LaneError("idempotency_key_conflict", "this Idempotency-Key was already used for another "
                            "slip's job; send a new key") from None
        if job_id is None:
            raise LaneError("unknown_slip", "no slip with that id on this lane")
        # the key again: its job as it stands now (printed by then, or held), not "queued" every time
        state = self.ctx.ledger.view().print_job_state(job_id) or "queued"
        return {"slip_id": slip_id, "job_id": job_id, "state": state}

    @raises("unknown_slip")
    def document(self, slip_id: str) -> SlipDocument:
        """The slip as it prints, from its stored data (until its job is forgotten)."""
        data = self.ctx.ledger.view().slip(slip_id)
        if data is None:
            raise LaneError("unknown_slip", "no slip with that id on this lane")
        return build_slip(SlipData.from_json(data), self.ctx.locale)

    @raises("unknown_slip")
    def print_jobs(self, slip_id: str) -> dict[str, Any]:
        """The slip's print jobs as they stand (the first print, then each reprint): what a POS reads
        back after `stream.reset` instead of the `print.status` events it may have missed."""
        jobs = self.ctx.ledger.view().slip_jobs(slip_id)
        if not jobs:
            raise LaneError("unknown_slip", "no slip with that id on this lane")
        return {"slip_id": slip_id, "jobs": jobs}

    @raises("unknown_slip")
    def preview_png(self, slip_id: str) -> bytes:
        """The slip as the lane's printer prints it, drawn from the bytes it would be sent."""
        doc = self.document(slip_id)
        if self.render_png is None:
            raise RuntimeError("no slip renderer configured")
        return self.render_png(doc)
