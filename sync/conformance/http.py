"""The kit's HTTP: signed requests as a lane sends them, and the wrong ones a lane must not send."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from posd.sync.protocol import BASE_URL_SHAPE, base_url_problem, encode_batch, parse_retry_after, signed_headers

MAX_RETRY_WAIT_S = 30.0  # a 429 the kit waits out; a longer Retry-After fails the request instead


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None

    @property
    def code(self) -> str | None:
        doc = self.json()
        return doc.get("code") if isinstance(doc, dict) else None


@dataclass
class Observed429:
    path: str
    retry_after: str | None


@dataclass
class KitClient:
    """Requests to one central for one store and lane, signed as the protocol says (or not)."""

    base_url: str
    store_id: str
    lane_id: str
    secret: bytes
    timeout: float = 30.0
    verify: bool | str = True
    session: requests.Session = field(default_factory=requests.Session)
    seen_429: list[Observed429] = field(default_factory=list)

    def __post_init__(self) -> None:
        problem = base_url_problem(self.base_url)
        if problem:
            raise ValueError(f"--central must be {BASE_URL_SHAPE}: {problem}")
        self.base_url = self.base_url.rstrip("/")

    def close(self) -> None:
        self.session.close()

    # --- the protocol's calls ------------------------------------------------------------------

    def push_path(self, lane_id: str | None = None) -> str:
        return f"/v1/lanes/{segment(self.store_id)}/{segment(lane_id or self.lane_id)}/batches"

    def push(self, batch_id: str, events: list[dict[str, Any]], **kwargs: Any) -> Answer:
        body = encode_batch(batch_id, events)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return self.request("POST", self.push_path(), body, headers, **kwargs)

    def lane_head(self) -> Answer:
        return self.request("GET", f"/v1/lanes/{segment(self.store_id)}/{segment(self.lane_id)}")

    def member_changes(self, cursor: str, limit: int) -> Answer:
        query = f"cursor={quote(cursor, safe='')}&limit={limit}"
        return self.request("GET", f"/v1/stores/{segment(self.store_id)}/members/changes?{query}")

    def program(self, etag: str | None = None) -> Answer:
        return self.request("GET", "/v1/program", b"", {"If-None-Match": etag} if etag else {})

    # --- plumbing --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
                secret: bytes | None = None, ts: float | None = None, sign: bool = True,
                lane_header: str | None = None, wait_429: bool = True) -> Answer:
        """One request; signed with ``secret`` (default the store's) at ``ts`` (default now).
        A 429 is remembered, and waited out once when its Retry-After is short."""
        for attempt in (1, 2):
            url = self.base_url + path
            prepared = self.session.prepare_request(requests.Request(method, url, data=body or None,
                                                                     headers=dict(headers or {})))
            if sign:
                stamp = int(time.time() if ts is None else ts)
                prepared.headers.update(signed_headers(self.secret if secret is None else secret, self.store_id,
                                                       lane_header or self.lane_id, stamp, method,
                                                       prepared.path_url, body))
            resp = self.session.send(prepared, timeout=self.timeout, allow_redirects=False, verify=self.verify)
            answer = Answer(resp.status_code, resp.headers, resp.content)
            if answer.status != 429:
                return answer
            retry_after = answer.headers.get("Retry-After")
            self.seen_429.append(Observed429(path, retry_after))
            wait = parse_retry_after(retry_after, time.time())
            if not wait_429 or attempt == 2 or wait is None or wait > MAX_RETRY_WAIT_S:
                return answer
            time.sleep(wait)
        return answer


def segment(value: str) -> str:
    return quote(value, safe="")


def authorise_path(client: KitClient) -> str:
    return f"/v1/lanes/{segment(client.store_id)}/{segment(client.lane_id)}/authorisations"


def release_path(client: KitClient, lane_id: str | None = None) -> str:
    return f"/v1/lanes/{segment(client.store_id)}/{segment(lane_id or client.lane_id)}/releases"


def token_uses_path(client: KitClient, lane_id: str | None = None) -> str:
    return f"/v1/lanes/{segment(client.store_id)}/{segment(lane_id or client.lane_id)}/token-uses"


def birthday_awards_path(client: KitClient, lane_id: str | None = None) -> str:
    return f"/v1/lanes/{segment(client.store_id)}/{segment(lane_id or client.lane_id)}/birthday-awards"
