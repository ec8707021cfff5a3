"""The local HTTP API the POS software talks to (FastAPI, in the daemon's loop).

Routes translate HTTP to the lane's services and back; every error a route
can answer with comes from its declared codes (posd/api/errors.py), and the
OpenAPI lists them per route as an enum.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from posd import __version__
from posd.api.errors import STATUS, ApiError, declares, error_responses
from posd.api.models import (
    BasketIn,
    CodePath,
    EnrolmentIn,
    EnrolmentOut,
    HealthOut,
    IdPath,
    LineIn,
    MemberOut,
    MemberPath,
    Problem,
    QuoteIn,
    QuoteOut,
    RedemptionIn,
    RedemptionOut,
    ReprintOut,
    ReturnIn,
    ReturnOut,
    SlipPath,
    SlipStatusOut,
    StreamEvent,
    TransactionIn,
    TransactionOut,
    VoucherOut,
    VoucherUseIn,
    VoucherValidateIn,
)
from posd.api.observe import ApiObserver, RequestTimer, refused, told
from posd.api.security import (
    BODY_METHODS,
    BearerToken,
    BodyGuard,
    DirectSale,
    LocalGuard,
    RoutablePath,
    Shortcut,
    allowed_hosts,
)
from posd.api.server import NO_TELEMETRY
from posd.api.status_page import render_status
from posd.core.identify import find_card_data, fold_ascii, typed_code, voucher_code
from posd.core.rules import Basket, BasketLine
from posd.lane import Lane
from posd.lane.context import Recorded, legacy_request_hash, request_hash
from posd.lane.enrolment import EnrolmentInput, Enrolments
from posd.lane.errors import CodedError, LaneError, ReadFailed, codes_of, storage_unreadable
from posd.lane.events import EVENT_TYPES, EventBus
from posd.lane.members import Members
from posd.lane.quotes import Quotes
from posd.lane.rewards import RedemptionInput, Rewards
from posd.lane.sales import ReturnInput, Sales, TransactionInput
from posd.lane.slips import Slips

log = logging.getLogger("posd.api")

KEEPALIVE_S = 15.0


def _answer(recorded: Recorded) -> JSONResponse:
    """The stored answer; a retry of the same id is flagged, never re-applied.

    Returned as a ready JSONResponse: the services build each answer in the
    declared model's shape (the API tests check every answer against it), so
    validating it again per sale would only cost time on the till's hot path.
    """
    headers = {"Idempotent-Replayed": "true"} if recorded.replayed else None
    if recorded.body is not None:  # the stored answer's own bytes: encoded once, a retry gets them again
        return Response(recorded.body.encode(), media_type="application/json", headers=headers)
    return JSONResponse(recorded.response, headers=headers)


# The request headers the API reads: checked for card data like every other field.
_READ_HEADERS = ("idempotency-key", "last-event-id")


def refuse_card_data(request: Request) -> None:
    """Payment card data in the path, the query (its names too) or the headers the API reads refuses the request
    before anything reads it further: 422 payment_card, nothing stored, logged or sent on. A body's
    fields are checked by its model once it is valid (posd.api.models._Request). Ordinary product
    codes are not card numbers (posd.core.identify: a valid EAN-13 never is one)."""
    if find_card_data(dict(request.path_params)) or find_card_data(request.query_params.multi_items()) \
            or find_card_data([request.headers.get(name) or "" for name in _READ_HEADERS]):
        raise LaneError("payment_card", "the request carries a payment card number; it was dropped, not stored")


class LaneGuard(HTTPBearer):
    """What every route behind the token checks before its input is read, in this order: the bearer
    token (compared in constant time; 401 unauthorized), then card data in the path, the query and
    the headers the API reads (422 payment_card). One dependency rather than three (the scheme, the
    token, the card data): FastAPI's cost per dependency solved is paid on every sale. It is FastAPI's
    HTTPBearer, so the OpenAPI declares it as the ``bearer`` security scheme of each route it guards."""

    def __init__(self, token: BearerToken):
        super().__init__(auto_error=False, scheme_name="bearer",
                         description="the token in the lane's api.token_file (created 0600 on first start)")
        self._token = token

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), self._token.value):
            raise ApiError("unauthorized", "missing or wrong bearer token")
        refuse_card_data(request)


def _lines(lines: list[LineIn]) -> tuple[BasketLine, ...]:
    return tuple(BasketLine(sku=ln.sku, category=ln.category, quantity=ln.quantity, unit_price=ln.unit_price,
                            discount=ln.discount) for ln in lines)


def _basket(body: BasketIn | None) -> Basket | None:
    return None if body is None else Basket(body.currency, body.total, _lines(body.lines))


def sale_input(body: TransactionIn) -> TransactionInput:
    """The lane's sale from a validated body, with the idempotency hashes it is recorded under."""
    return TransactionInput(
        transaction_id=body.transaction_id, member=body.member, occurred_at=body.occurred_at,
        currency=body.currency, total=body.total, lines=_lines(body.lines),
        # A sale's own model holds nothing but those fields: its whole dump is the same, without the filter.
        **_hashes(body, include=None if type(body) is TransactionIn else set(TransactionIn.model_fields)),
    )


def _hashes(body: BaseModel, extra: dict[str, Any] | None = None, include: set[str] | None = None,
            legacy: Callable[[], str] | None = None, unordered: str | None = None) -> dict[str, Any]:
    """A request's idempotency hashes: the canonical one it is recorded under, and (computed only
    when a retry does not match it) those it may have been recorded under before (posd.lane.context):
    ``legacy``, by default the hash of pydantic's JSON-mode dump. The member it names is hashed as the
    lane reads it, digits of any script as 0-9: a card typed in Persian digits is the same card; a
    request recorded under its member's own spelling still matches. ``unordered``: a list field whose
    order means nothing (a return's lines), hashed sorted; a request recorded before, under the
    order it was sent in, still matches a retry in that order."""
    dumped = {**(extra or {}), **body.model_dump(include=include)}
    member = dumped.get("member")
    spelled = None
    if isinstance(member, str) and not member.isascii():
        spelled = dict(dumped)
        dumped["member"] = fold_ascii(member)
    as_sent = None
    if unordered is not None and dumped.get(unordered) is not None:
        as_sent = dict(dumped)
        dumped[unordered] = sorted(dumped[unordered], key=lambda item: sorted(item.items()))

    def older() -> tuple[str, ...]:
        json_mode = legacy() if legacy is not None else \
            legacy_request_hash({**(extra or {}), **body.model_dump(mode="json", include=include)})
        earlier = tuple(request_hash(kept) for kept in (spelled, as_sent) if kept is not None)
        return (*earlier, json_mode)

    return {"request_hash": request_hash(dumped), "legacy_hash": older}


def applied_code(code: str) -> str:
    """A code applied to a basket as its request is hashed: a lane voucher as issued, any other code
    as program coupons are matched (case-insensitively, digits of any script as 0-9). Never by the
    program in force, which may drop or respell a coupon between a use and its retry."""
    return voucher_code(code) or typed_code(code).strip().casefold()


def _err(code: str, message: str, errors: list | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=STATUS[code])


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format

_RETURNS_PATH = re.compile(r"^/v1/transactions/[^/]+/returns$")


def _counted_kind(path: str) -> str | None:
    """The outcome counter a route's refusals go to (posd.metrics: sales, returns, redemptions)."""
    if path == "/v1/transactions":
        return "sale"
    if path == "/v1/redemptions":
        return "redemption"
    return "return" if _RETURNS_PATH.match(path) else None


def _json_content_type(value: str | None) -> bool:
    """A Content-Type FastAPI reads as JSON: application/json or application/*+json."""
    media = (value or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _outcome(observer: ApiObserver | None, kind: str, key: str, call: Any) -> JSONResponse:
    """Await a sale, return or redemption; count and log what became of it."""
    try:
        recorded = await call
    except CodedError as exc:
        refused(observer, kind, key, exc.code)
        exc.counted = True  # type: ignore[attr-defined]  # the error handler does not count it again
        raise
    told(observer, kind, key, recorded)
    return _answer(recorded)


class _Text(Convertor[str]):
    """A path's rest, `/` included (Starlette's `path`), and any character: `path` matches no line break,
    and an identifier holding one was the router's 404 instead of its 422 invalid_request. Not starting
    or ending with `/`: a trailing slash is no route, as everywhere."""

    regex = r"(?!/)[\s\S]+(?<!/)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _Text())


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing and body errors as Problems, on the API and on the status listener alike."""
    if exc.status_code == 400:  # FastAPI could not read the body: the request is invalid. UTF-8 is checked
        # before (posd.api.security), so mostly JSON that Python does not read: an integer of over 4300 digits
        return _err("invalid_request", "the body cannot be read as JSON: not UTF-8, a number with too many "
                                       "digits, or values nested too deep")
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)  # a 405's Allow


def _read_failed(count: Callable[[Request | None, str], None]) -> Callable[..., Any]:
    """The handler of a read that failed in SQLite (ReadFailed): a database file gone or unreadable for now
    (deleted while posd runs, until it is written back) is 503 storage_failed in one log line, not a
    traceback; anything else SQLite refused is a bug, answered and logged as one."""

    async def handler(request: Request | None, exc: Exception) -> JSONResponse:
        unreadable = storage_unreadable(exc)
        if unreadable is None:
            log.error("unhandled error in the API", exc_info=exc)
            count(request, "internal_error")
            return _err("internal_error", "posd hit an internal error; nothing was half-written")
        log.error("cannot read posd's storage: %s", exc)
        count(request, unreadable.code)
        return _err(unreadable.code, unreadable.message)

    return handler


def create_app(*, lane: Lane | None, bus: EventBus | None, token: str | BearerToken, host: str, port: int,
               allowed_origins: tuple[str, ...] = (), health: Callable[[], dict[str, Any]],
               metrics: Callable[[], str | bytes] | None = None, observer: ApiObserver | None = None) -> FastAPI:
    """The local API. ``metrics`` renders /metrics; ``observer`` is told each request's time and
    each sale's, return's and redemption's outcome (posd.metrics.LaneMetrics)."""
    app = _LaneApi(title="posd local API", version=__version__,
                   description="The lane's loyalty daemon: identify members, record sales, stream events.",
                   docs_url=None, redoc_url=None, telemetry=NO_TELEMETRY,
                   redirect_slashes=False)  # a path that is not a route is 404 not_found, never a bare 307
    token = token if isinstance(token, BearerToken) else BearerToken(token)
    guard = LaneGuard(token)

    def count_refusal(request: Request | None, code: str) -> None:
        """A refusal no service counted (card data found while the body was read, an internal error)."""
        count_refusal_at(None if request is None else request.url.path, code)  # None: the sale's Shortcut

    def count_refusal_at(path: str | None, code: str) -> None:
        kind = "sale" if path is None else _counted_kind(path)
        if kind is not None:
            refused(observer, kind, None, code)

    @app.exception_handler(CodedError)
    async def coded_error(request: Request | None, exc: CodedError) -> JSONResponse:
        if not getattr(exc, "counted", False):
            count_refusal(request, exc.code)
        resp = _err(exc.code, exc.message)
        if exc.code == "unauthorized":
            resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        kind = _counted_kind(request.url.path)
        if find_card_data([[e["loc"], e["msg"]] for e in errors]):  # a field named with a card number
            if kind is not None:
                refused(observer, kind, None, "payment_card")
            return _err("payment_card", "the request carries a payment card number; it was dropped, not stored")
        if kind is not None:
            refused(observer, kind, None, "invalid_request")
        # A misspelt field is missing and extra at once: the message names the one that was sent.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0] if errors else
                     {"loc": [], "msg": "invalid", "type": ""})
        if first["loc"] == ["body"] and first["type"] == "model_attributes_type" \
                and not _json_content_type(request.headers.get("content-type")):
            return _err("invalid_request", "the body must be JSON, sent with Content-Type: application/json", errors)
        where = ".".join(str(x) for x in first["loc"] if x != "body")
        return _err("invalid_request", f"{where}: {first['msg']}" if where else first["msg"], errors)

    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def unexpected(request: Request | None, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the API")
        count_refusal(request, "internal_error")
        return _err("internal_error", "posd hit an internal error; nothing was half-written")

    read_failed = _read_failed(count_refusal)
    app.add_exception_handler(ReadFailed, read_failed)  # type: ignore[arg-type]

    auth = [Depends(guard)]
    members: Members = lane.members if lane else None  # type: ignore[assignment]
    quotes: Quotes = lane.quotes if lane else None  # type: ignore[assignment]
    sales: Sales = lane.sales if lane else None  # type: ignore[assignment]
    rewards: Rewards = lane.rewards if lane else None  # type: ignore[assignment]
    slips: Slips = lane.slips if lane else None  # type: ignore[assignment]
    enrolments: Enrolments = lane.enrolments if lane else None  # type: ignore[assignment]

    _status_routes(app, health)

    # `:text`: a card code may hold a `/` (`%2F` reaches the router decoded, as a separator)
    @app.get("/v1/members/{identifier:text}", dependencies=auth, response_model=MemberOut, tags=["members"])
    @declares(*codes_of(Members.identify))
    def get_member(identifier: MemberPath) -> dict[str, Any]:
        """A member by card code, phone number, member id or member token (a token is accepted
        once: use the answer's member_id afterwards)."""
        return members.member_view(members.identify(identifier))

    @app.post("/v1/members", dependencies=auth, response_model=EnrolmentOut, tags=["members"])
    @declares(*codes_of(Enrolments.enrol))
    async def post_member(body: EnrolmentIn) -> JSONResponse:
        """Enrol a new member at the till, offline-first: a provisional id now, central's later."""
        req = EnrolmentInput(card=body.card, phone=body.phone, display_name=body.display_name, locale=body.locale,
                             birth_date=body.birth_date.isoformat() if body.birth_date else None,
                             request_hash=request_hash(body.model_dump(mode="json")))
        return _answer(await enrolments.enrol(req))

    async def record_sale(body: TransactionIn) -> JSONResponse:
        return await _outcome(observer, "sale", body.transaction_id, sales.record_sale(sale_input(body)))

    @app.post("/v1/transactions", dependencies=auth, response_model=TransactionOut, tags=["transactions"])
    @declares(*codes_of(Sales.record_sale))
    async def post_transaction(body: TransactionIn) -> JSONResponse:
        return await record_sale(body)

    async def usual_sale(body: bytes) -> Response | None:
        """The usual sale on the Shortcut: its body validated by pydantic-core from the bytes, in one
        pass. None when it is not valid: the standard stack then answers it in FastAPI's words."""
        try:
            try:
                sale = TransactionIn.model_validate_json(body)
            except ValidationError:
                return None
            return await record_sale(sale)
        except CodedError as exc:
            return await coded_error(None, exc)  # type: ignore[arg-type]
        except ReadFailed as exc:
            return await read_failed(None, exc)
        except Exception as exc:
            return await unexpected(None, exc)  # type: ignore[arg-type]

    @app.post("/v1/quotes", dependencies=auth, response_model=QuoteOut, tags=["transactions"])
    @declares(*codes_of(Quotes.quote))
    async def post_quote(body: QuoteIn) -> JSONResponse:
        """What the sale of this basket would earn (the rule trace), the rewards and vouchers the member
        could use on it and their effect, and how the given codes stack: nothing is written or printed."""
        return JSONResponse(await quotes.quote(sale_input(body), tuple(body.codes)))

    @app.post("/v1/transactions/{transaction_id}/returns", dependencies=auth, response_model=ReturnOut,
              tags=["transactions"])
    @declares(*codes_of(Sales.record_return))
    async def post_return(transaction_id: IdPath, body: ReturnIn) -> JSONResponse:
        ret = ReturnInput(
            transaction_id=transaction_id, return_id=body.return_id, amount=body.amount,
            lines=None if body.lines is None else tuple((ln.sku, ln.quantity) for ln in body.lines),
            **_hashes(body, extra={"transaction_id": transaction_id}, unordered="lines"),
        )
        return await _outcome(observer, "return", body.return_id, sales.record_return(ret))

    @app.post("/v1/redemptions", dependencies=auth, response_model=RedemptionOut, tags=["rewards"])
    @declares(*codes_of(Rewards.redeem))
    async def post_redemption(body: RedemptionIn) -> JSONResponse:
        req = RedemptionInput(redemption_id=body.redemption_id, member=body.member, reward_id=body.reward_id,
                              points=body.points, transaction_id=body.transaction_id, **_hashes(body))
        return await _outcome(observer, "redemption", body.redemption_id, rewards.redeem(req))

    @app.post("/v1/vouchers/validate", dependencies=auth, response_model=VoucherOut, tags=["rewards"])
    @declares(*codes_of(Rewards.validate))
    async def validate_voucher(body: VoucherValidateIn) -> JSONResponse:
        return JSONResponse(await rewards.validate(body.code, body.member, _basket(body.basket), tuple(body.applied)))

    @app.post("/v1/vouchers/{code}/use", dependencies=auth, response_model=VoucherOut, tags=["rewards"])
    @declares(*codes_of(Rewards.use))
    async def use_voucher(code: CodePath, body: VoucherUseIn) -> JSONResponse:
        # Hashed as a sale is, the codes applied as typed codes are read whatever program is in force (a
        # retry after a program update is the same request); a use recorded before under the hash of
        # pydantic's JSON mode, as posd made it then, still replays.
        hashes = _hashes(body, extra={"applied": [applied_code(c) for c in body.applied]},
                         include={"transaction_id", "member", "basket"},
                         legacy=lambda: request_hash(body.model_dump(mode="json")))
        return _answer(await rewards.use(code, body.transaction_id, body.member, _basket(body.basket),
                                         tuple(body.applied), **hashes))

    @app.post("/v1/slips/{slip_id}/reprint", dependencies=auth, response_model=ReprintOut, status_code=202,
              tags=["slips"])
    @declares(*codes_of(Slips.reprint))
    async def reprint(slip_id: SlipPath, idempotency_key: str | None = Header(
            default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
            description="the POS's job id: the same key twice prints one copy; the key of another slip's "
                        "job is 409 idempotency_key_conflict")) -> dict[str, Any]:
        return await slips.reprint(slip_id, idempotency_key)

    @app.get("/v1/slips/{slip_id}.png", dependencies=auth, response_class=Response, tags=["slips"],
             responses={200: {"content": {"image/png": {}}}})
    @declares(*codes_of(Slips.preview_png))
    def slip_preview(slip_id: SlipPath) -> Response:
        """The slip as the lane's printer prints it: the stored slip data rendered to the
        printer's ESC/POS bytes, then drawn from those bytes (sync: runs in a worker thread)."""
        return Response(slips.preview_png(slip_id), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/v1/slips/{slip_id}", dependencies=auth, response_model=SlipStatusOut, tags=["slips"])
    @declares(*codes_of(Slips.print_jobs))
    def slip_status(slip_id: SlipPath) -> dict[str, Any]:
        """The slip's print jobs as they stand: what a POS reads back after `stream.reset` (the
        `print.status` events it missed are not replayed past the event log)."""
        return slips.print_jobs(slip_id)

    @app.get("/v1/events", dependencies=auth, tags=["events"], response_class=StreamingResponse,
             responses={200: {"description": "text/event-stream: `event:` is the type, `data:` its JSON "
                                              "(the schema's itemSchema), `id:` monotonic across restarts"}})
    @declares("invalid_last_event_id")
    async def events(request: Request, last_event_id: str | None = Header(default=None)) -> StreamingResponse:
        last = request.query_params.get("last_event_id") or last_event_id
        try:
            last_id = int(last) if last else None
        except ValueError as exc:
            raise ApiError("invalid_last_event_id", "Last-Event-ID must be an event id") from exc
        return StreamingResponse(_stream(bus, request, last_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    if metrics is not None:
        @app.get("/metrics", tags=["status"], response_class=Response)
        def get_metrics() -> Response:
            return Response(metrics(), media_type=METRICS_TYPE)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app, guard)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    behind_token = [r.path_regex for r in routes_behind(app, guard)]
    app.add_middleware(BodyGuard, token=token, protected=lambda path: any(p.match(path) for p in behind_token),
                       refused=count_refusal_at)
    app.add_middleware(LocalGuard, hosts=allowed_hosts(host, port), origins=allowed_origins)
    app.add_middleware(RoutablePath)
    if observer is not None:
        app.add_middleware(RequestTimer, observer=observer)
    app.front = Shortcut(app.standard, method="POST", path="/v1/transactions", hosts=allowed_hosts(host, port),
                         origins=allowed_origins, token=token, skip_headers=_READ_HEADERS, answer=usual_sale,
                         timed=None if observer is None else
                         lambda seconds: observer.request("/v1/transactions", "POST", seconds),
                         herald=sales.herald if lane else None)
    return app


class _LaneApi(FastAPI):
    """FastAPI with an ASGI app in front of all of it (its own layers too: the error middleware, the
    body limit, the telemetry check): the Shortcut, which hands anything but the usual sale to
    ``standard``, FastAPI as it is."""

    front: Shortcut | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is None:
            return await super().__call__(scope, receive, send)
        return await front(scope, receive, send)

    async def standard(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    def arriving(self, scope: Scope) -> None:
        """Told by the server as soon as a request's head is read (posd.api.server)."""
        if self.front is not None:
            self.front.arriving(scope)

    def direct(self, scope: Scope) -> DirectSale | None:
        """Asked by the server once a request's head is read: the usual sale it answers itself."""
        return None if self.front is None else self.front.direct(scope)


def _status_routes(app: FastAPI, health: Callable[[], dict[str, Any]]) -> None:
    """The status page and health: no token, no PII; on the API and on the status listener."""

    @app.get("/", tags=["status"], response_class=HTMLResponse)
    def status_page() -> HTMLResponse:
        return HTMLResponse(render_status(health()), headers={"Cache-Control": "no-store"})

    @app.get("/v1/health", tags=["status"], response_model=HealthOut)
    def get_health() -> dict[str, Any]:
        return health()


def create_status_app(*, health: Callable[[], dict[str, Any]]) -> FastAPI:
    """The read-only listener for the store network (``[status] listen``): the page and health, nothing
    else. No API route exists here, so none can be reached, whatever the token or the Host."""
    app = FastAPI(title="posd status", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_TELEMETRY, redirect_slashes=False)

    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ReadFailed, _read_failed(lambda request, code: None))  # type: ignore[arg-type]

    _status_routes(app, health)
    app.add_middleware(RoutablePath)
    return app


def routes_behind(app: FastAPI, guard: Callable) -> list[APIRoute]:
    """The routes that need the bearer token (behind the LaneGuard)."""
    return [r for r in app.routes if isinstance(r, APIRoute) and any(d.dependency is guard for d in r.dependencies)]


def route_codes(route: APIRoute, guard: Callable) -> frozenset[str]:
    """Every code a route can answer with: what it declares; bad_host and origin_not_allowed from
    the local guard (every route); unauthorized and payment_card behind the LaneGuard (the token,
    then card data); invalid_request when it has a body, query or header to validate;
    payload_too_large for a method that carries a body."""
    codes = set(getattr(route.endpoint, "raises", ())) | {"bad_host", "origin_not_allowed"}
    if any(d.dependency is guard for d in route.dependencies):
        codes |= {"unauthorized", "payment_card"}
    if route.methods & BODY_METHODS:
        codes.add("payload_too_large")
    if _validates(route.dependant):
        codes.add("invalid_request")
    return frozenset(codes)


def _validates(dependant: Dependant) -> bool:
    """Does this route (or a dependency of it) take a body, query or header FastAPI validates?"""
    if dependant.body_params or dependant.query_params or dependant.header_params \
            or any(p.field_info.metadata for p in dependant.path_params):
        return True
    return any(_validates(sub) for sub in dependant.dependencies)


_REF = "#/components/schemas/{model}"


def _openapi(app: FastAPI, guard: Callable) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's; our 422 is a Problem
        schemas.pop(name, None)
    defs = TypeAdapter(StreamEvent).json_schema(ref_template=_REF)
    problem = TypeAdapter(Problem).json_schema(ref_template=_REF)
    for name, schema in {**defs.pop("$defs", {}), **problem.pop("$defs", {}), "Problem": problem}.items():
        schemas.setdefault(name, schema)  # the routes' own (FastAPI's) stay as they are
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods:
            operation = spec["paths"][route.path_format][method.lower()]
            responses = operation.setdefault("responses", {})
            for status in [s for s in responses if s.startswith(("4", "5"))]:
                del responses[status]  # FastAPI's generic validation error: ours is a Problem
            responses.update(error_responses(route_codes(route, guard)))
    stream = spec["paths"]["/v1/events"]["get"]["responses"]["200"]
    stream["content"] = {"text/event-stream": {"itemSchema": {
        "type": "object", "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(EVENT_TYPES)},
            "id": {"type": "string", "description": "monotonic across restarts; send it back as Last-Event-ID"},
            "retry": {"type": "integer", "minimum": 0},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": defs},
        },
    }}}
    return spec


async def _stream(bus: EventBus, request: Request, last_id: int | None) -> AsyncIterator[bytes]:
    queue = bus.subscribe()  # subscribe before replaying so nothing falls in between
    try:
        sent = last_id or 0
        yield b": posd event stream\nretry: 1000\n\n"
        if last_id is not None:
            missed, covered = bus.replay_after(last_id)
            if not covered:
                sent = 0
                reset = {"type": "stream.reset", "at": _now(), "reason": "events were missed; refetch state"}
                yield f"event: stream.reset\ndata: {json.dumps(reset, separators=(',', ':'))}\n\n".encode()
            for event in missed:
                sent = event.id
                yield event.sse()
        while bus.is_subscribed(queue):
            try:
                async with asyncio.timeout(KEEPALIVE_S):  # no task per event, as wait_for makes
                    event = await queue.get()
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keepalive\n\n"
                continue
            # Events already queued go out in the same write (a scan and the member it found):
            # each write is a trip through the server and a wake-up of the client.
            chunk: list[bytes] = []
            while event is not None:  # None: the stream ends
                if event.id > sent:
                    sent = event.id
                    chunk.append(event.sse())
                if queue.empty():
                    break
                event = queue.get_nowait()
            if chunk:
                yield b"".join(chunk)
            if event is None:
                return
    finally:
        bus.unsubscribe(queue)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
