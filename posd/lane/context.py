"""What every lane service shares: the lane's ids, clock, time zone, language, its program
(parsed once per version from cache.db), its stores, and the idempotency of requests."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from posd.core.program import Program, ProgramError, parse_program
from posd.lane.errors import LaneError, raises, storage_error
from posd.lane.events import EventBus
from posd.storage.cache import Cache
from posd.storage.db import WriteRefused, compact_json
from posd.storage.ledger import Ledger
from posd.storage.tx import LedgerTx, LedgerView

log = logging.getLogger("posd.lane")
T = TypeVar("T")


@dataclass(frozen=True)
class Recorded:
    """An answer, and whether it is the first answer to an earlier request with the same id."""

    response: dict[str, Any]
    replayed: bool
    body: str | None = None  # the answer's JSON exactly as stored, when the store gave it back


def request_hash(body: dict[str, Any]) -> str:
    """The hash of a request's meaning, so a retry re-serialised by another POS stack is the same
    request: ``body`` as parsed (pydantic's python mode), numbers by value (a quantity 1, "1", 1.0
    and "1.000" are one), instants as UTC instants (Z, +00:00 and +01:00 an hour earlier are one)."""
    canonical = _canonical(body)
    try:  # the text json.dumps(sort_keys, compact, ASCII) writes, by the rows' fast encoder
        text = compact_json(canonical, sort_keys=True, ensure_ascii=True)
    except TypeError:  # a value only default=str writes (none a request holds)
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def legacy_request_hash(body_json: dict[str, Any]) -> str:
    """The hash posd made before the canonical one, of the body in pydantic's JSON mode: ledgers
    hold it for requests recorded before the upgrade, whose exact retries still replay."""
    return _sha256(body_json)


def _sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# Values _canonical gives back as they are, by exact type: most of a body. Checked before a call is made
# for them, so a sale's body costs a few calls rather than one per field.
_AS_IS = frozenset({str, int, bool, type(None)})


def _canonical(value: Any) -> Any:
    if type(value) in _AS_IS or isinstance(value, (str, int)):  # as JSON has them (a subclass too)
        return value
    if isinstance(value, dict):
        return {str(k): v if type(v) in _AS_IS else _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _AS_IS else _canonical(v) for v in value]
    if isinstance(value, (Decimal, float)):
        number = Decimal(str(value)) if isinstance(value, float) else value
        if number == number.to_integral_value():
            return str(int(number))
        return format(number.normalize(), "f")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


class ProgramCache:
    """The program in force, parsed only when cache.db's copy changed."""

    def __init__(self, cache: Cache):
        self._cache = cache
        self._program: tuple[str, Program] | None = None
        self._seen = -1  # cache.program_changes when the etag was last read
        self._lock = threading.Lock()

    def get(self) -> Program | None:
        changes = self._cache.program_changes  # read first: a program stored meanwhile is read next time
        current = self._program
        if current is not None and changes == self._seen:
            return current[1]  # nothing stored since: no query on the sale's path
        etag = self._cache.program_etag()  # the body is read and parsed only when it changed
        if etag is None:
            return None
        with self._lock:
            self._seen = changes
            if self._program is None or self._program[0] != etag:
                row = self._cache.program_row()
                try:
                    self._program = (row["etag"], parse_program(json.loads(row["body"])))
                except (ProgramError, ValueError) as exc:
                    log.error("cached program unusable: %s", exc)
                    return self._program[1] if self._program else None
            return self._program[1]


class LaneContext:
    def __init__(self, *, store_id: str, lane_id: str, locale: str, ledger: Ledger, cache: Cache, bus: EventBus,
                 printer_enabled: bool, is_offline: Callable[[], bool] = lambda: False, timezone: str = "UTC",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store_id, self.lane_id, self.locale = store_id, lane_id, locale
        self.tz = ZoneInfo(timezone)
        self.ledger, self.cache, self.bus = ledger, cache, bus
        self.printer_enabled = printer_enabled
        self.is_offline = is_offline
        self.clock = clock
        self._programs = ProgramCache(cache)

    def program(self) -> Program | None:
        return self._programs.get()

    @raises("storage_full", "storage_failed")
    def commit(self, fn: Callable[[LedgerTx], T]) -> T:
        """Run a unit of work on the ledger (from a thread other than the event loop's); a full or
        failing disk is the POS's storage_full / storage_failed, with nothing of the unit kept."""
        try:
            return self.ledger.write(fn)
        except WriteRefused as exc:
            raise storage_error(exc) from None

    @raises("storage_full", "storage_failed")
    async def acommit(self, fn: Callable[[LedgerTx], T]) -> T:
        """commit, awaited on the event loop."""
        try:
            return await self.ledger.awrite(fn)
        except WriteRefused as exc:
            raise storage_error(exc) from None

    @raises("program_unavailable")
    def require_program(self) -> Program:
        program = self.program()
        if program is None:
            raise LaneError("program_unavailable", "no loyalty program yet: the lane has not synced once")
        return program


@raises("transaction_id_conflict", "return_id_conflict", "redemption_id_conflict")
def earlier_answer(view: LedgerView, what: str, key: str, request_hash: str,
                   legacy_hash: Callable[[], tuple[str, ...]] | None = None) -> Recorded | None:
    """The first answer to a retried request id; a conflict when the id was reused for
    something else; None when the id is new. Called before the write (fast answer) and
    again inside it (a concurrent retry may have won). ``legacy_hash``: the same request's
    hashes as older posd versions made them, computed only when the canonical one differs."""
    earlier = view.earlier(what, key, request_hash)
    if earlier is None:
        return None
    for older in legacy_hash() if earlier.conflict and legacy_hash is not None else ():
        matched = view.earlier(what, key, older)
        if matched is not None and not matched.conflict:
            earlier = matched
            break
    if earlier.conflict:
        raise LaneError(f"{what}_conflict", f"this {what} was already used for a different request")
    return Recorded(earlier.response, replayed=True, body=earlier.text or None)
