"""Burn authorisation, the lane's side: ask central in real time, in threads of its own.

Member token claims (is this phone's QR token unused at every lane?) and
birthday bonus claims (is this member's year still free?) are asked the same
way, within the same budget.

A redemption or a voucher use waits for central's answer only as long as the
lane's budget (``[central] authorise_timeout_ms``); the lane's services await
the futures this hands out with that budget, off the event loop, and fall back
to their offline path when no answer comes in time. Each worker thread has a
client of its own (requests does not promise a Session is thread-safe), and
every request carries the budget as its own connect and read timeout, so a
question the lane stopped waiting for ends soon after. An authorisation that
reached central waits for its answer a little longer in the background (at
most ``LATE_ANSWER_S``): central may approve, and reserve, after the lane went
its offline way; once that answer is in, a burn the lane then refused is given
back (posd.lane.authority) instead of holding the member's points or voucher
at every lane until its reservation expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from posd.sync.lane.client import CentralClient
from posd.sync.lane.errors import CentralProtocolError, NotAsked
from posd.sync.lane.ports import IdentityPort

log = logging.getLogger("posd.sync.authorise")

LATE_ANSWER_S = 5.0  # how long an authorisation's answer is read for, when the budget is shorter
MIN_QUESTION_S = 0.05  # a question asked at the end of its budget still gets a connect of its own


class BurnAuthoriser:
    """Hands out futures of central's answers; ``close()`` stops its threads and clients."""

    def __init__(self, make_client: Callable[[], CentralClient], budget_s: float, *, workers: int = 2,
                 lookup_workers: int = 20, identity: IdentityPort | None = None) -> None:
        """``workers`` ask about burns, tokens and birthdays; ``lookup_workers`` about voucher codes,
        apart from them: a quote asks about each of its codes (at most 20) at once, within one budget,
        and never makes a burn wait behind its lookups. Threads start only when asked for.

        With ``identity``, a burn, token or birthday claim waits (within the budget) until the relay has
        checked the lane id against central: after ledger.db was replaced, the configured id is another
        history's at central, and a POS retrying a redemption that history approved would be answered
        from it (approved again, at the lane) instead of refused under the id the new ledger syncs as."""
        if budget_s <= 0:
            raise ValueError("the authorisation budget must be more than 0")
        self.budget_s = budget_s
        self._identity = identity
        self._make_client = make_client
        self._local = threading.local()
        self._clients: list[CentralClient] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync-authorise")
        self._lookups = ThreadPoolExecutor(max_workers=lookup_workers, thread_name_prefix="sync-lookup")

    def _client(self) -> CentralClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._make_client()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def authorise(self, request: dict[str, Any]) -> Future[dict[str, Any]]:
        """Central's answer to an authorisation request (posd.sync.protocol.burn), or its SyncError."""
        return self._executor.submit(self._ask, request)

    def lookup(self, code: str, member_id: str | None) -> Future[dict[str, Any] | None]:
        """What central knows of a voucher or coupon code, or its SyncError."""
        return self._lookups.submit(lambda: self._client().voucher(code, member_id, timeout=self.budget_s))

    def release(self, authorisation_id: str) -> Future[dict[str, Any]]:
        """Central's answer to a release (posd.sync.protocol.burn: {authorisation_id, state}), or its SyncError."""
        return self._executor.submit(lambda: self._client().release(authorisation_id, timeout=self.budget_s))

    def claim_token(self, claim: dict[str, Any]) -> Future[dict[str, Any]]:
        """Central's answer to a member token claim (posd.sync.protocol.tokens), or its SyncError."""
        def ask() -> dict[str, Any]:
            client, left = self._settled()
            return client.claim_token(claim, timeout=left)
        return self._executor.submit(ask)

    def claim_birthday(self, claim: dict[str, Any]) -> Future[dict[str, Any]]:
        """Central's answer to a birthday bonus claim (posd.sync.protocol.birthdays), or its SyncError."""
        def ask() -> dict[str, Any]:
            client, left = self._settled()
            return client.claim_birthday(claim, timeout=left)
        return self._executor.submit(ask)

    def _settled(self) -> tuple[CentralClient, float]:
        """This thread's client once the lane id it asks under is settled, and what is left of the budget
        for the question (the wait and the question share one budget, as the lane waits for them):
        NotAsked if the lane id is not settled within the budget."""
        if self._identity is None:
            return self._client(), self.budget_s
        started = time.monotonic()
        if not self._identity.wait_settled(self.budget_s):
            raise NotAsked("the lane id is not checked against central yet (the relay has not reached it)")
        return self._client(), max(MIN_QUESTION_S, self.budget_s - (time.monotonic() - started))

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        client, left = self._settled()
        try:
            answer = client.authorise(request, timeout=(left, max(left, LATE_ANSWER_S)))
        except CentralProtocolError as exc:
            # Not an outage: central answers, but not as the protocol says. Every burn then goes the
            # offline way and spends the offline caps, so store IT hears of it, once per burn.
            log.warning("central's answer to a burn is not the protocol's (%s): the burn is decided by the "
                        "lane alone, within its offline caps", exc,
                        extra={"event": "sync-authorise.unreadable", "kind": request.get("kind"), "error": str(exc)})
            raise
        log.info("burn %s by central", answer["status"],
                 extra={"event": "sync-authorise.answer", "kind": request.get("kind"), "code": answer.get("code")})
        return answer

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._lookups.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
