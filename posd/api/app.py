"""The local HTTP API the POS software talks to (FastAPI, in the daemon's loop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from posd import __version__
from posd.api.models import (
    MemberOut,
    Problem,
    RedemptionIn,
    RedemptionOut,
    ReprintOut,
    ReturnIn,
    ReturnOut,
    TransactionIn,
    TransactionOut,
    VoucherOut,
    VoucherUseIn,
    VoucherValidateIn,
)
from posd.api.security import LocalGuard, allowed_hosts, token_ok
from posd.api.status_page import render_status
from posd.core.rules import BasketLine
from posd.events import EventBus
from posd.checkout import Checkout, ReturnInput
from posd.lane import Lane, LaneError, Recorded, TransactionInput, request_hash
from posd.printing import queue_reprint
from posd.redeem import RedemptionInput, Redemptions

log = logging.getLogger("posd.api")

KEEPALIVE_S = 15.0


def _answer(recorded: Recorded, response: Response) -> JSONResponse:
    """The stored answer; a retry of the same id is flagged, never re-applied.

    Returned as a ready JSONResponse: the answer was built by our own code and is
    already the documented shape, so validating it again per sale is wasted time.
    """
    headers = {"Idempotent-Replayed": "true"} if recorded.replayed else None
    return JSONResponse(recorded.response, headers=headers)


def _err(status: int, code: str, message: str, errors: list | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


# The stable `code`s each status can carry, per route: the POS branches on these.
ERROR_CODES: dict[str, dict[int, tuple[str, ...]]] = {
    "member": {404: ("unknown_member",), 422: ("payment_card",)},
    "transaction": {404: ("unknown_member",), 409: ("transaction_id_conflict",),
                    422: ("invalid_request", "member_ineligible", "occurred_in_future", "occurred_too_old", "negative_total",
                          "negative_line", "total_mismatch", "unsupported_currency", "payment_card"),
                    503: ("program_unavailable",)},
    "return": {404: ("unknown_transaction",), 409: ("return_id_conflict", "program_version_unknown"),
               422: ("invalid_request", "return_exceeds_sale", "mixed_return", "return_by_amount"),
               503: ("member_unavailable",)},
    "redemption": {404: ("unknown_member", "unknown_reward"), 409: ("redemption_id_conflict",),
                   422: ("invalid_request", "member_ineligible", "reward_required", "reward_not_eligible",
                         "insufficient_balance", "reward_limit_reached", "offline_cap_member",
                         "offline_cap_lane", "offline_too_long"),
                   503: ("program_unavailable",)},
    "voucher": {404: ("unknown_voucher", "unknown_member"), 409: ("voucher_used",),
                422: ("invalid_request", "voucher_expired", "voucher_not_yet_valid", "voucher_other_member",
                      "voucher_void", "member_required")},
    "reprint": {404: ("unknown_slip",), 409: ("no_printer",)},
    "slip": {404: ("unknown_slip",)},
    "events": {422: ("invalid_last_event_id",)},
}


def _responses(*codes: int, route: str | None = None) -> dict[int | str, dict[str, Any]]:
    known = ERROR_CODES.get(route or "", {})
    out: dict[int | str, dict[str, Any]] = {}
    for c in codes:
        names = {401: ("unauthorized",)}.get(c, known.get(c, ()))
        out[c] = {"model": Problem, "description": "code: " + ", ".join(names) if names else "error"}
    return out


def create_app(*, lane: Lane, checkout: Checkout | None = None, redemptions: Redemptions | None = None,
               bus: EventBus, token: str, host: str, port: int,
               allowed_origins: tuple[str, ...] = (), health: Callable[[], dict[str, Any]],
               metrics: Callable[[], str] | None = None, on_reprint: Callable[[], None] | None = None) -> FastAPI:
    app = FastAPI(title="posd local API", version=__version__,
                  description="The lane's loyalty daemon: identify members, record sales, stream events.",
                  docs_url=None, redoc_url=None)

    def require_token(authorization: str | None = Header(default=None, include_in_schema=False)) -> None:
        if not token_ok(authorization, token):
            raise LaneError(401, "unauthorized", "missing or wrong bearer token")

    @app.exception_handler(LaneError)
    async def lane_error(_: Request, exc: LaneError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        resp = _err(exc.status, exc.code, exc.message)
        if headers:
            resp.headers.update(headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(x) for x in first["loc"] if x != "body")
        return _err(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"], errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _err(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the API")
        return _err(500, "internal_error", "posd hit an internal error; nothing was half-written")

    auth = [Depends(require_token)]

    @app.get("/", tags=["status"], response_class=HTMLResponse)
    def status_page() -> HTMLResponse:
        return HTMLResponse(render_status(health(), lane.locale if lane else "en"))

    @app.get("/v1/health", tags=["status"])
    def get_health() -> dict[str, Any]:
        return health()

    @app.get("/v1/members/{identifier}", dependencies=auth, response_model=MemberOut,
             responses=_responses(401, 404, 422, route="member"), tags=["members"])
    def get_member(identifier: str) -> dict[str, Any]:
        return lane.member_view(lane.find_member(identifier))

    @app.post("/v1/transactions", dependencies=auth, response_model=TransactionOut,
              responses=_responses(401, 404, 409, 422, 503, route="transaction"), tags=["transactions"])
    async def post_transaction(body: TransactionIn, response: Response) -> JSONResponse:
        tx = TransactionInput(
            transaction_id=body.transaction_id, member=body.member, occurred_at=body.occurred_at,
            currency=body.currency, total=body.total,
            lines=tuple(BasketLine(sku=ln.sku, category=ln.category, quantity=ln.quantity,
                                   unit_price=ln.unit_price, discount=ln.discount) for ln in body.lines),
            request_hash=request_hash(body.model_dump(mode="json")),
        )
        return _answer(await checkout.record_sale(tx), response)

    @app.post("/v1/transactions/{transaction_id}/returns", dependencies=auth, response_model=ReturnOut,
              responses=_responses(401, 404, 409, 422, 503, route="return"), tags=["transactions"])
    async def post_return(transaction_id: str, body: ReturnIn, response: Response) -> JSONResponse:
        ret = ReturnInput(
            transaction_id=transaction_id, return_id=body.return_id, amount=body.amount,
            lines=None if body.lines is None else tuple((ln.sku, ln.quantity) for ln in body.lines),
            request_hash=request_hash({"transaction_id": transaction_id, **body.model_dump(mode="json")}),
        )
        return _answer(await checkout.record_return(ret), response)

    @app.post("/v1/redemptions", dependencies=auth, response_model=RedemptionOut,
              responses=_responses(401, 404, 409, 422, 503, route="redemption"), tags=["rewards"])
    async def post_redemption(body: RedemptionIn, response: Response) -> JSONResponse:
        req = RedemptionInput(redemption_id=body.redemption_id, member=body.member, reward_id=body.reward_id,
                              points=body.points, transaction_id=body.transaction_id,
                              request_hash=request_hash(body.model_dump(mode="json")))
        return _answer(await redemptions.redeem(req), response)

    @app.post("/v1/vouchers/validate", dependencies=auth, response_model=VoucherOut,
              responses=_responses(401, 404, 409, 422, route="voucher"), tags=["rewards"])
    def validate_voucher(body: VoucherValidateIn) -> dict[str, Any]:
        return redemptions.validate(body.code, body.member)

    @app.post("/v1/vouchers/{code}/use", dependencies=auth, response_model=VoucherOut,
              responses=_responses(401, 404, 409, 422, route="voucher"), tags=["rewards"])
    async def use_voucher(code: str, body: VoucherUseIn, response: Response) -> JSONResponse:
        return _answer(await redemptions.use(code, body.transaction_id, body.member), response)

    @app.post("/v1/slips/{slip_id}/reprint", dependencies=auth, response_model=ReprintOut, status_code=202,
              responses=_responses(401, 404, 409, route="reprint"), tags=["slips"])
    async def reprint(slip_id: str, idempotency_key: str | None = Header(
            default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
            description="the POS's job id: the same key twice prints one copy")) -> dict[str, Any]:
        if not lane.printer_enabled:
            raise LaneError(409, "no_printer", "this lane has no printer configured")
        job_id = await lane.ledger.awrite(lambda conn: queue_reprint(conn, slip_id, idempotency_key))
        if job_id is None:
            raise LaneError(404, "unknown_slip", "no slip with that id on this lane")
        if on_reprint:
            on_reprint()
        return {"slip_id": slip_id, "job_id": job_id, "state": "queued"}

    @app.get("/v1/slips/{slip_id}.png", dependencies=auth, response_class=Response, tags=["slips"],
             responses={200: {"content": {"image/png": {}}}, **_responses(401, 404, route="slip")})
    def slip_preview(slip_id: str, request: Request) -> Response:
        """The slip as the lane's printer prints it: the stored slip data rendered to the
        printer's ESC/POS bytes, then drawn from those bytes (sync: runs in a worker thread)."""
        import json

        from posd.core.slip import SlipData, build_slip
        from posd.drivers.printer_preview import slip_png

        row = lane.ledger.reader().execute(
            "SELECT slip FROM print_jobs WHERE slip_id = ? ORDER BY created_at LIMIT 1", (slip_id,)
        ).fetchone()
        if row is None:
            raise LaneError(404, "unknown_slip", "no slip with that id on this lane")
        printer = getattr(request.app.state, "printer", None)  # the daemon's printer: its profile and paper
        doc = build_slip(SlipData.from_json(json.loads(row[0])), lane.locale)
        png = slip_png(doc, getattr(printer, "profile", "default"), getattr(printer, "width_mm", 80))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/v1/events", dependencies=auth, tags=["events"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}, **_responses(401, 422, route="events")})
    async def events(request: Request, last_event_id: str | None = Header(default=None)) -> StreamingResponse:
        last = request.query_params.get("last_event_id") or last_event_id
        try:
            last_id = int(last) if last else None
        except ValueError as exc:
            raise LaneError(422, "invalid_last_event_id", "Last-Event-ID must be an event id") from exc
        return StreamingResponse(_stream(bus, request, last_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    if metrics is not None:
        @app.get("/metrics", tags=["status"], response_class=Response)
        def get_metrics() -> Response:
            return Response(metrics(), media_type="text/plain; version=0.0.4")

    app.add_middleware(LocalGuard, hosts=allowed_hosts(host, port), origins=allowed_origins)
    return app


async def _stream(bus: EventBus, request: Request, last_id: int | None) -> AsyncIterator[bytes]:
    queue = bus.subscribe()  # subscribe before replaying so nothing falls in between
    try:
        sent = last_id or 0
        yield b": posd event stream\nretry: 1000\n\n"
        if last_id is not None:
            missed, covered = bus.replay_after(last_id)
            if not covered:
                sent = 0
                yield b"event: stream.reset\ndata: {\"reason\":\"events were missed; refetch state\"}\n\n"
            for event in missed:
                sent = event.id
                yield event.sse()
        while bus.is_subscribed(queue):
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keepalive\n\n"
                continue
            if event is None:
                return
            if event.id > sent:
                sent = event.id
                yield event.sse()
    finally:
        bus.unsubscribe(queue)
