"""Who authorises a burn: central, in real time, within a time budget; or nobody, and the lane's caps.

The lane's services ask an ``Authority`` before they record a redemption or a
voucher/coupon use. ``CentralAuthority`` wraps the sync side's authoriser
(posd.sync.lane.authoriser, handed in by the daemon as two callables that
return futures): it waits for central's answer off the event loop and no
longer than the budget, and turns every failure to answer (timeout, refused
connection, 5xx, 429, a credential problem, an answer it cannot read) into
``unavailable``, which sends the service down its offline path. A lane built
without one (tests, tools) uses ``LocalAuthority``: the lane's own checks are
the only ones, as before burns were authorised online.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger("posd.lane.authority")


@dataclass(frozen=True)
class Decision:
    """Central's answer to one authorisation, or ``unavailable`` when it gave none in time."""

    status: Literal["approved", "declined", "unavailable"]
    code: str | None = None  # declined: central's code (posd.sync.protocol.DECLINE_CODES)
    message: str = ""
    reservation_id: str | None = None
    expires_at: str | None = None
    authorisation_id: str | None = None  # the id to give the reservation back under (approved, or asked)
    # unavailable: the question central got no answer to in time, still under way (None: never asked)
    asked: Future | None = field(default=None, compare=False, repr=False)

    @property
    def online(self) -> bool:
        return self.status != "unavailable"


# What a burn gets when the lane knows central is out of reach: nobody was asked, the offline path.
NOT_ASKED = Decision("unavailable")


@dataclass(frozen=True)
class VoucherLookup:
    """What central knows of a code: ``found`` (``voucher``: registered, or None for a coupon; ``used``),
    ``unknown``, or ``unavailable``."""

    status: Literal["found", "unknown", "unavailable"]
    voucher: dict[str, Any] | None = None
    used: bool = False


# A member token claim's outcome: central says the token is this lane's (accepted) or another lane's
# (replayed), or gave no answer in time (unavailable: the lane accepts it offline, central flags a replay later).
TokenClaim = Literal["accepted", "replayed", "unavailable"]
# A birthday bonus claim's outcome: the member's year is this lane's (awarded) or another lane's (taken: the
# sale earns without the bonus), or no answer in time (unavailable: the lane decides from what it knows).
BirthdayClaim = Literal["awarded", "taken", "unavailable"]


class Authority(Protocol):
    async def authorise(self, request: dict[str, Any]) -> Decision: ...

    async def release(self, decision: Decision) -> str | None: ...

    async def lookup(self, code: str, member_id: str | None) -> VoucherLookup: ...

    async def claim_token(self, claim: dict[str, Any]) -> TokenClaim: ...

    def claim_token_waiting(self, claim: dict[str, Any]) -> TokenClaim: ...

    async def claim_birthday(self, claim: dict[str, Any]) -> BirthdayClaim: ...

    async def refresh_members(self) -> bool: ...

    def refresh_members_waiting(self) -> bool: ...


def _pull_late(budget_s: float) -> None:
    log.info("the member pull a refusal asked for did not end within %.0f ms: the lane's own view answers",
             budget_s * 1000, extra={"event": "members.refresh_late"})


class LocalAuthority:
    """No central to ask: every burn the lane's own checks allow is approved here, without a reservation."""

    async def authorise(self, request: dict[str, Any]) -> Decision:
        return Decision("approved")

    async def release(self, decision: Decision) -> str | None:
        return None

    async def lookup(self, code: str, member_id: str | None) -> VoucherLookup:
        return VoucherLookup("unknown")

    async def claim_token(self, claim: dict[str, Any]) -> TokenClaim:
        return "unavailable"

    def claim_token_waiting(self, claim: dict[str, Any]) -> TokenClaim:
        return "unavailable"

    async def claim_birthday(self, claim: dict[str, Any]) -> BirthdayClaim:
        return "unavailable"

    async def refresh_members(self) -> bool:
        return False

    def refresh_members_waiting(self) -> bool:
        return False


class CentralAuthority:
    """Central's answers through futures (the sync side's threads), awaited within ``budget_s``."""

    def __init__(self, authorise: Callable[[dict[str, Any]], Future], lookup: Callable[[str, str | None], Future],
                 budget_s: float, claim: Callable[[dict[str, Any]], Future] | None = None,
                 release: Callable[[str], Future] | None = None,
                 birthday: Callable[[dict[str, Any]], Future] | None = None,
                 refresh: Callable[[], Future] | None = None):
        """``claim``: asks central whether a member token is unused chain-wide (None: never asked);
        ``release``: gives back a reservation the lane will not record (None: it expires instead);
        ``birthday``: asks whether a member's birthday bonus year is free chain-wide (None: never asked);
        ``refresh``: pulls central's member changes now (posd.sync.lane.puller.SyncPuller.refresh)."""
        self._authorise, self._lookup, self.budget_s = authorise, lookup, budget_s
        self._claim, self._release, self._birthday = claim, release, birthday
        self._refresh = refresh

    async def _answer(self, future: Future) -> tuple[bool, Any]:
        """(answered, the answer); False when central gave none within the budget."""
        try:
            return True, await asyncio.wait_for(asyncio.wrap_future(future), self.budget_s)
        except TimeoutError:
            future.cancel()  # not started yet: never sent; running: its own timeout ends it soon
            log.info("central gave no answer within %.0f ms", self.budget_s * 1000,
                     extra={"event": "authorise.timeout"})
        except Exception as exc:  # the sync side's SyncError: unreachable, refused, unreadable
            log.info("central could not answer: %s", exc, extra={"event": "authorise.unavailable"})
        return False, None

    async def authorise(self, request: dict[str, Any]) -> Decision:
        asked = self._authorise(request)
        answered, answer = await self._answer(asked)
        if not answered:  # central may still approve it late, and hold a reservation for nothing
            return Decision("unavailable", authorisation_id=request.get("authorisation_id"), asked=asked)
        if answer["status"] == "approved":
            return Decision("approved", reservation_id=answer["reservation_id"], expires_at=answer["expires_at"],
                            authorisation_id=answer["authorisation_id"])
        return Decision("declined", code=answer["code"], message=str(answer.get("message") or ""))

    async def release(self, decision: Decision) -> str | None:
        """Give back an approved reservation the lane did not record (its own re-check refused the
        burn): its points and voucher are free again at once rather than when it expires. Central's
        state for it (released, or confirmed/expired/unknown; open when central took the release for
        an earlier one of the id, signed in the same second: the reservation then expires on its own),
        None when central gave no answer in time: then it expires on its own. Never raises: the POS's
        answer does not depend on it.

        A question central answered too late (``unavailable``, the lane went its offline way and then
        refused the burn) is given back once that question has settled, in the background: None at
        once. Central may have approved it after the lane stopped waiting; left alone, its reservation
        would hold the member's points or voucher at every lane until it expired."""
        if self._release is None or decision.authorisation_id is None:
            return None
        if decision.status == "unavailable":
            if decision.asked is not None:
                self._release_once_settled(decision.asked, decision.authorisation_id)
            return None
        if decision.reservation_id is None:
            return None
        answered, answer = await self._answer(self._release(decision.authorisation_id))
        state = answer["state"] if answered else None
        log.info("reservation %s given back: %s", decision.reservation_id, state or "no answer, it expires",
                 extra={"event": "authorise.release", "reservation_id": decision.reservation_id, "state": state})
        return state

    def _release_once_settled(self, asked: Future, authorisation_id: str) -> None:
        """After the unanswered question ends (answered late, failed or timed out on its own), give back
        what central may have reserved for it: not when it never left (cancelled) or was declined."""
        release = self._release
        assert release is not None

        def settled(question: Future) -> None:
            if question.cancelled():
                return  # never sent
            failure = question.exception()
            if getattr(failure, "sent", True) is False:
                return  # never left the lane (its lane id not checked in time): nothing reserved
            if failure is None and question.result().get("status") != "approved":
                return  # declined: nothing reserved
            if 400 <= (getattr(failure, "status", None) or 0) < 500:
                return  # refused as asked (credentials, a malformed request, 429): nothing reserved
            try:
                release(authorisation_id).add_done_callback(lambda done: _log_late_release(authorisation_id, done))
            except RuntimeError:  # the lane is stopping: the reservation expires on its own
                return

        asked.add_done_callback(settled)

    async def claim_token(self, claim: dict[str, Any]) -> TokenClaim:
        if self._claim is None:
            return "unavailable"
        answered, answer = await self._answer(self._claim(claim))
        return _claimed(answer) if answered else "unavailable"

    async def claim_birthday(self, claim: dict[str, Any]) -> BirthdayClaim:
        if self._birthday is None:
            return "unavailable"
        answered, answer = await self._answer(self._birthday(claim))
        if not answered:
            return "unavailable"
        return "taken" if answer.get("status") == "taken" else "awarded"

    async def refresh_members(self) -> bool:
        """Central's member changes pulled into cache.db now, within the budget: True when they were.
        Asked when the lane's own view refuses what central may allow (points earned at another lane
        since the last pull), never on the usual path."""
        if self._refresh is None:
            return False
        future = self._refresh()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.budget_s) is True
        except TimeoutError:
            future.cancel()
            _pull_late(self.budget_s)
            return False

    def refresh_members_waiting(self) -> bool:
        """refresh_members for a thread that may wait (a scanner's, the API's worker threads), never the loop."""
        if self._refresh is None:
            return False
        future = self._refresh()
        try:
            return future.result(timeout=self.budget_s) is True
        except FutureTimeout:
            future.cancel()
            _pull_late(self.budget_s)
            return False

    def claim_token_waiting(self, claim: dict[str, Any]) -> TokenClaim:
        """claim_token for a thread that may wait (a scanner's, the API's worker threads), never the loop."""
        if self._claim is None:
            return "unavailable"
        future = self._claim(claim)
        try:
            return _claimed(future.result(timeout=self.budget_s))
        except FutureTimeout:
            future.cancel()
            log.info("central gave no answer within %.0f ms", self.budget_s * 1000,
                     extra={"event": "authorise.timeout"})
        except Exception as exc:  # the sync side's SyncError
            log.info("central could not answer: %s", exc, extra={"event": "authorise.unavailable"})
        return "unavailable"

    async def lookup(self, code: str, member_id: str | None) -> VoucherLookup:
        answered, answer = await self._answer(self._lookup(code, member_id))
        if not answered:
            return VoucherLookup("unavailable")
        if answer is None:
            return VoucherLookup("unknown")
        return VoucherLookup("found", voucher=answer.get("voucher"), used=bool(answer.get("used")))


def _log_late_release(authorisation_id: str, done: Future) -> None:
    state = None if done.cancelled() or done.exception() is not None else done.result().get("state")
    log.info("late authorisation %s given back: %s", authorisation_id, state or "no answer, it expires",
             extra={"event": "authorise.release", "authorisation_id": authorisation_id, "state": state})


def _claimed(answer: dict[str, Any]) -> TokenClaim:
    return "replayed" if answer.get("status") == "replayed" else "accepted"
