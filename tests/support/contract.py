"""The API's contract, checked on every answer the tests get: one shape per answer.

The services build answers as plain data (validating each on the sale's hot
path would cost more than the rest of the route); here every answer a test
receives is read back through the route's declared response model, strictly,
and must come out the same: no field missing, none extra, no type that only
coerces. Errors must be a Problem whose code the route's OpenAPI lists under
that very status. Events on the stream must match their type's schema.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.routing import Match

from posd.api.app import create_app
from posd.api.errors import STATUS
from posd.api.models import Problem, StreamEvent

_APP = create_app(lane=None, bus=None, token="t", host="127.0.0.1", port=1, health=dict, metrics=str)
_SPEC = _APP.openapi()
_EVENTS = TypeAdapter(StreamEvent)
# Answered by the security middleware before any route: possible on every path.
_ANY_ROUTE = {"bad_host", "origin_not_allowed"}


def _route(method: str, path: str) -> APIRoute | None:
    if path.endswith("\n"):  # no route (posd.api.security.RoutablePath), though a pattern's $ would match
        return None
    scope = {"type": "http", "path": path, "method": method.upper()}
    for route in _APP.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] == Match.FULL:
            return route
    return None


def _listed(route: APIRoute, method: str, status: int) -> set[str]:
    response = _SPEC["paths"][route.path_format][method.lower()]["responses"].get(str(status), {})
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return {code for part in schema.get("allOf", []) for code in part.get("properties", {}).get("code", {}).get("enum", [])}


def same_shape(model: Any, text: str) -> None:
    """`text` read strictly through `model` and written back is exactly `text`'s JSON."""
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    value = adapter.validate_json(text, strict=True)
    back = adapter.dump_python(value, mode="json", exclude_unset=True)
    raw = json.loads(text)
    assert back == raw, f"answer and {getattr(model, '__name__', model)} disagree:\n{raw}\n{back}"


def check_answer(method: str, url: str, status: int, content_type: str, text: str) -> None:
    path = unquote(urlsplit(url).path)  # as the server routes it: %2F is a slash, %0A a newline
    route = _route(method, path)
    if status >= 400:
        same_shape(Problem, text)
        code = json.loads(text)["code"]
        assert code in _ANY_ROUTE or STATUS[code] == status or code == "http_error", (code, status)
        if route is not None and code not in _ANY_ROUTE:
            assert code in _listed(route, method, status), f"{method} {path} answered {status} {code}, not in its OpenAPI"
        return
    assert route is not None, f"{method} {path} answered {status} but no route has that path"
    if content_type.startswith("application/json") and route.response_model is not None:
        same_shape(route.response_model, text)


def check_event(name: str, data: str) -> None:
    """One event from the stream: its `event:` name is its type and its data matches the type's schema."""
    same_shape(_EVENTS, data)
    assert json.loads(data)["type"] == name, (name, data)
