"""HTTP client for central: signed pushes, member changes, the program.

The transport comes from outside: pass a ``requests.Session`` (with adapters
mounted for TLS pinning, proxies or tests) and the client only adds the
protocol on top. Every requests exception is translated into posd.sync.lane.errors
at this boundary.

Give the relay and the puller a client each: requests does not promise that
a Session is safe to share between threads.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
import requests

from posd.sync.lane.errors import (
    CentralAuthError,
    CentralProtocolError,
    CentralRequestRejected,
    CentralUnavailable,
    SyncError,
)
from posd.sync.lane.ports import IdentityPort
from posd.sync.protocol import (
    BASE_URL_SHAPE,
    EventResult,
    authorisation_json,
    base_url_problem,
    birthday_claim_json,
    encode_batch,
    parse_http_date,
    parse_results,
    parse_authorisation_answer,
    parse_birthday_claim_answer,
    parse_release_answer,
    parse_retry_after,
    parse_token_claim_answer,
    parse_voucher_answer,
    program_etag,
    release_json,
    signed_headers,
    token_claim_json,
)

log = logging.getLogger("posd.sync.client")

Timeout = float | tuple[float, float]
# Burns are rare next to sales: each asks on a connection of its own, so the tight budget is never spent
# on a pooled connection central or a proxy has cut while it sat idle.
_ONE_SHOT = {"Connection": "close"}


class CentralClient:
    """Talks to one central for one lane. Methods raise only SyncError subclasses."""

    def __init__(
        self,
        base_url: str,
        store_id: str,
        lane_id: str,
        secret: bytes,
        session: requests.Session | None = None,
        timeout: Timeout = (3.05, 10),
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        identity: IdentityPort | None = None,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        """``on_answer``: called (on the calling thread) whenever central answers a signed request and
        accepts our credentials, whatever it thinks of the request itself: central is reachable. The
        daemon uses it so that one part of the lane reaching central again ends the others' backoff."""
        problem = base_url_problem(base_url)
        if problem:
            raise ValueError(f"central url must be {BASE_URL_SHAPE}: {problem}")
        if not secret:
            raise ValueError("central secret is empty")
        self.base_url = base_url.rstrip("/")
        self.store_id = store_id
        self._lane_id = lane_id
        self._identity = identity  # when given, the lane id comes from it (it may change once)
        self._secret = secret
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.verify = verify
        self.cert = cert
        self.clock = clock
        self._on_answer = on_answer
        # Central's Date minus our clock at the last answer; the signature
        # window is 300 s, so health shows this before it becomes a 401.
        self.last_clock_skew_s: float | None = None
        self._settings: dict[tuple[str, str], dict[str, Any]] = {}  # per host: see _send_settings

    @property
    def lane_id(self) -> str:
        return self._identity.lane_id if self._identity is not None else self._lane_id

    def settings(self) -> dict[str, Any]:
        """What a client in another process needs to speak to the same central as the same lane, now
        (posd.member_pull). It holds the store secret: hand it over a pipe, never on a command line,
        in the environment or a log. The session's mounted adapters do not travel."""
        return {"base_url": self.base_url, "store_id": self.store_id, "lane_id": self.lane_id,
                "secret": self._secret.hex(), "timeout": self.timeout, "verify": self.verify, "cert": self.cert}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> CentralClient:
        timeout, cert = settings["timeout"], settings["cert"]
        return cls(settings["base_url"], settings["store_id"], settings["lane_id"], bytes.fromhex(settings["secret"]),
                   timeout=tuple(timeout) if isinstance(timeout, list) else timeout, verify=settings["verify"],
                   cert=tuple(cert) if isinstance(cert, list) else cert)

    # --- the three calls -----------------------------------------------------------

    def push_batch(self, batch_id: str, events: list[dict[str, Any] | str]) -> list[EventResult]:
        """Send one batch (each event a dict or its JSON text); central's answer per event, in central's order."""
        return self.push_encoded(batch_id, encode_batch(batch_id, events))

    def push_encoded(self, batch_id: str, body: bytes) -> list[EventResult]:
        """Send one batch already encoded (``encode_batch(batch_id, events)``), for a caller that encodes
        the next batch while this one is in flight; central's answer per event."""
        path = f"/v1/lanes/{_seg(self.store_id)}/{_seg(self.lane_id)}/batches"
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        resp = self._request("POST", path, body, headers)
        return parse_results(self._json(resp), batch_id=batch_id)

    def lane_head(self, lane_id: str) -> tuple[int, str | None]:
        """(last_seq, last_event_id) central holds for ``lane_id`` of our store; (0, None) if none."""
        resp = self._request("GET", f"/v1/lanes/{_seg(self.store_id)}/{_seg(lane_id)}")
        doc = self._json(resp)
        if not isinstance(doc, dict):
            raise CentralProtocolError("lane answer is not a JSON object")
        last_seq, last_event_id = doc.get("last_seq"), doc.get("last_event_id")
        if type(last_seq) is not int or last_seq < 0 or (last_seq > 0 and not isinstance(last_event_id, str)):
            raise CentralProtocolError("lane answer needs last_seq and, past 0, last_event_id")
        return last_seq, last_event_id if last_seq else None

    def member_changes(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str, bool]:
        """One page of members changed after ``cursor`` (None or '' = full snapshot)."""
        query = urlencode({"cursor": cursor or "", "limit": int(limit)})
        resp = self._request("GET", f"/v1/stores/{_seg(self.store_id)}/members/changes?{query}")
        doc = self._json(resp)
        members, next_cursor, has_more = doc.get("members"), doc.get("next_cursor"), doc.get("has_more")
        if not isinstance(members, list) or not isinstance(next_cursor, str) or not isinstance(has_more, bool):
            raise CentralProtocolError("member changes answer needs members, next_cursor, has_more")
        for member in members:
            if not isinstance(member, dict) or not isinstance(member.get("member_id"), str):
                raise CentralProtocolError("every member needs a member_id")
        return members, next_cursor, has_more

    def program(self, etag: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """(program, etag), or (None, etag) when central says our copy is current (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        resp = self._request("GET", "/v1/program", b"", headers, allow_304=True)
        if resp.status_code == 304:
            return None, resp.headers.get("ETag") or etag
        doc = self._json(resp)
        if not isinstance(doc, dict):
            raise CentralProtocolError("program is not a JSON object")
        return doc, resp.headers.get("ETag") or program_etag(doc)

    def authorise(self, request: dict[str, Any], timeout: Timeout | None = None) -> dict[str, Any]:
        """Ask central to authorise a burn; its answer (approved with a reservation, or declined)."""
        answer = self._ask("authorisations", authorisation_json(request), timeout)
        return parse_authorisation_answer(answer, request["authorisation_id"])

    def release(self, authorisation_id: str, timeout: Timeout | None = None) -> dict[str, Any]:
        """Give back the reservation of an authorisation the lane will not record a burn for."""
        return parse_release_answer(self._ask("releases", release_json(authorisation_id), timeout), authorisation_id)

    def claim_token(self, claim: dict[str, Any], timeout: Timeout | None = None) -> dict[str, Any]:
        """Ask central whether a member token is unused chain-wide before accepting it: accepted | replayed."""
        return parse_token_claim_answer(self._ask("token-uses", token_claim_json(claim), timeout), claim["token_id"])

    def claim_birthday(self, claim: dict[str, Any], timeout: Timeout | None = None) -> dict[str, Any]:
        """Ask central whether the member's birthday bonus for the year is free chain-wide before a sale
        gives it: awarded | taken."""
        answer = self._ask("birthday-awards", birthday_claim_json(claim), timeout)
        return parse_birthday_claim_answer(answer, claim["member_id"], claim["year"])

    def _ask(self, route: str, body: bytes, timeout: Timeout | None) -> Any:
        """A question to central in real time (a burn, a token): POSTed on a connection of its own."""
        path = f"/v1/lanes/{_seg(self.store_id)}/{_seg(self.lane_id)}/{route}"
        try:
            resp = self._request("POST", path, body, {"Content-Type": "application/json", **_ONE_SHOT},
                                 timeout=timeout)
        finally:
            self._forget_connections()
        return self._json(resp)

    def voucher(self, code: str, member_id: str | None, timeout: Timeout | None = None) -> dict[str, Any] | None:
        """What central knows of a voucher or coupon code ({code, voucher, used}); None: nothing."""
        query = f"?{urlencode({'member_id': member_id})}" if member_id else ""
        try:
            resp = self._request("GET", f"/v1/stores/{_seg(self.store_id)}/vouchers/{_seg(code)}{query}",
                                 headers=dict(_ONE_SHOT), timeout=timeout)
        except CentralRequestRejected as exc:
            if exc.status == 404 and exc.code == "unknown_voucher":
                return None
            raise
        finally:
            self._forget_connections()
        return parse_voucher_answer(self._json(resp), code)

    def _forget_connections(self) -> None:
        """After a one-shot request: drop pooled connections (a central that did not say it closes)."""
        if self._owns_session:
            self.session.close()

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        allow_304: bool = False,
        timeout: Timeout | None = None,
    ) -> requests.Response:
        url = self.base_url + path
        try:
            # Prepare first and sign the path exactly as it will go on the wire.
            prepared = self.session.prepare_request(
                requests.Request(method, url, data=body or None, headers=headers or {})
            )
            ts = int(self.clock())
            prepared.headers.update(
                signed_headers(self._secret, self.store_id, self.lane_id, ts, method, prepared.path_url, body)
            )
            settings = self._send_settings(prepared.url)
            resp = self.session.send(prepared, timeout=timeout or self.timeout, allow_redirects=False, **settings)
            _ = resp.content  # read the body now so a reset mid-body is a transport error here
        except requests.Timeout as exc:
            raise CentralUnavailable(f"central timed out: {type(exc).__name__}") from exc
        except requests.ConnectionError as exc:
            raise CentralUnavailable(f"central unreachable: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise CentralUnavailable(f"central request failed: {type(exc).__name__}") from exc
        self._note_date(resp)
        if self._on_answer is not None and resp.status_code < 500 and resp.status_code not in (401, 403, 408, 429):
            try:
                self._on_answer()
            except Exception:  # a listener's bug must not turn an answer into a failure
                log.exception("on_answer callback failed", extra={"event": "sync-client.callback"})
        if resp.status_code == 200 or (allow_304 and resp.status_code == 304):
            return resp
        raise self._error_for(resp)

    def _send_settings(self, url: str) -> dict[str, Any]:
        """requests' proxy, TLS and certificate settings for ``url``, from the environment: read once
        per host and kept (requests reads every environment variable again on each request, about a
        millisecond; a snapshot asks a thousand pages, a drain pushes a hundred batches)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        cached = self._settings.get(key)
        if cached is None:
            cached = self._settings[key] = self.session.merge_environment_settings(url, {}, None, self.verify,
                                                                                    self.cert)
        return cached

    def _note_date(self, resp: requests.Response) -> None:
        central_now = parse_http_date(resp.headers.get("Date"))
        if central_now is not None:
            self.last_clock_skew_s = round(central_now - self.clock(), 1)

    def _error_for(self, resp: requests.Response) -> SyncError:
        status, code = resp.status_code, _error_code(resp)
        what = f"central answered HTTP {status}" + (f" ({code})" if code else "")
        if status in (401, 403):
            return CentralAuthError(what, status=status, code=code)
        if status in (408, 429) or status >= 500:
            # Measure Retry-After dates against central's own Date, not our clock.
            now = parse_http_date(resp.headers.get("Date")) or self.clock()
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
            return CentralUnavailable(what, retry_after=retry_after, status=status)
        if 400 <= status < 500:
            return CentralRequestRejected(what, status=status, code=code)
        return CentralProtocolError(what)

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            # orjson: a snapshot page of 1,000 members decodes in about half the time of json's
            return orjson.loads(resp.content)
        except (ValueError, RecursionError) as exc:
            raise CentralProtocolError("central answered with invalid JSON") from exc


def _seg(value: str) -> str:
    """One URL path segment."""
    return quote(value, safe="")


def _error_code(resp: requests.Response) -> str | None:
    try:
        doc = json.loads(resp.content[:4096])
    except (ValueError, RecursionError):
        return None
    code = doc.get("code") if isinstance(doc, dict) else None
    return code[:64] if isinstance(code, str) else None
