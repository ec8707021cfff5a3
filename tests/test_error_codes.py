"""Error codes: one catalogue, one status table, and an OpenAPI that lists exactly what each route can answer.

Lane functions declare the codes they can raise (``@raises``), counting what
they call; the API's routes declare theirs (``@declares``) and the OpenAPI
is built from those declarations. These tests read the code itself (the
AST) and fail when a function or a route can raise a code it does not
declare, or declares one it cannot raise.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import textwrap
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from posd.api.app import create_app, route_codes
from posd.api.errors import API_CODES, CATALOGUE, STATUS
from posd.core.rules import RULE_ERROR_CODES
from posd.lane.errors import CODES
from posd.storage.records import IDEMPOTENT

ROOT = Path(__file__).parent.parent
LANE = ROOT / "posd" / "lane"
ERRORS = ("LaneError", "ApiError")

# Functions that raise a code computed at run time, and the codes it can be: checked here, not trusted.
DYNAMIC = {
    "posd.lane.context.earlier_answer": {f"{what}_conflict" for what in IDEMPOTENT},
    "posd.lane.errors.rule_error": set(RULE_ERROR_CODES),
}
# ... and where a call site says which: earlier_answer(view, "return_id", ...) can only be a return_id_conflict.
AT_CALL = {"earlier_answer": lambda call: {f"{call.args[1].value}_conflict"}}


def lane_functions() -> list[tuple[str, object, ast.AST]]:
    """(qualified name, function object, its AST) for every module-level function and method in posd/lane."""
    found = []
    for path in sorted(LANE.glob("*.py")):
        module_name = "posd.lane" + ("" if path.stem == "__init__" else f".{path.stem}")
        module = importlib.import_module(module_name)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{module_name}.{node.name}", getattr(module, node.name), node))
            elif isinstance(node, ast.ClassDef):
                cls = getattr(module, node.name)
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        found.append((f"{module_name}.{node.name}.{item.name}", getattr(cls, item.name), item))
    return found


def declared_by_name() -> dict[str, set[str]]:
    """Every declared lane function by its bare name (same names: the union, never fewer codes)."""
    index: dict[str, set[str]] = {}
    for qualname, fn, _ in lane_functions():
        if getattr(fn, "raises", None) is not None:
            index.setdefault(qualname.rsplit(".", 1)[1], set()).update(fn.raises)
    return index


def raised_in(node: ast.AST, index: dict[str, set[str]], qualname: str) -> set[str]:
    """Codes a function body can raise: its own error literals and what the functions it uses declare."""
    codes: set[str] = set()
    body = node.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else [node]
    resolved: set[int] = set()  # names whose codes their call site already said
    for sub in (n for stmt in body for n in ast.walk(stmt)):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in AT_CALL:
            codes |= AT_CALL[sub.func.id](sub)
            resolved.add(id(sub.func))
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in ERRORS:
            first = sub.args[0] if sub.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                codes.add(first.value)
            else:
                assert qualname in DYNAMIC, f"{qualname}: an error code that is not a literal"
                codes |= DYNAMIC[qualname]
        name = sub.attr if isinstance(sub, ast.Attribute) else sub.id if isinstance(sub, ast.Name) else None
        if name in index and isinstance(getattr(sub, "ctx", None), ast.Load) and id(sub) not in resolved:
            codes |= index[name]
    return codes


def spec_codes(operation: dict) -> dict[str, int]:
    out = {}
    for status, response in operation["responses"].items():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        for part in schema.get("allOf", []):
            for code in part.get("properties", {}).get("code", {}).get("enum", []):
                out[code] = int(status)
    return out


@pytest.fixture(scope="module")
def app():
    return create_app(lane=None, bus=None, token="t", host="127.0.0.1", port=1, health=dict, metrics=str)


def test_one_catalogue_one_status_table():
    assert not set(CODES) & set(API_CODES)
    assert set(STATUS) == set(CATALOGUE) == set(CODES) | set(API_CODES)
    assert all(400 <= status < 600 for status in STATUS.values())
    assert all(description.strip() for description in CATALOGUE.values())


def test_every_rule_error_code_is_passed_on():
    literals = set()
    for path in (ROOT / "posd" / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RuleError":
                literals.add(node.args[0].value)
    assert literals == set(RULE_ERROR_CODES) and set(RULE_ERROR_CODES) <= set(CODES)


@pytest.mark.parametrize("qualname, fn, node", lane_functions(), ids=[q for q, _, _ in lane_functions()])
def test_each_lane_function_declares_exactly_what_it_can_raise(qualname, fn, node):
    raised = raised_in(node, declared_by_name(), qualname)
    declared = set(getattr(fn, "raises", ()))
    assert raised == declared, (f"{qualname} can raise {sorted(raised - declared)} undeclared; "
                                f"declares {sorted(declared - raised)} it cannot raise")


def routes(app) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute)]


def test_each_route_lists_exactly_the_codes_it_can_answer_with(app):
    spec = app.openapi()
    index = declared_by_name()
    require_token = next(d.dependency for r in routes(app) for d in r.dependencies)
    checked = 0
    for route in routes(app):
        source = textwrap.dedent(inspect.getsource(route.endpoint))
        node = next(n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        raised = raised_in(node, index, f"posd.api.app.{route.name}")
        assert raised == set(getattr(route.endpoint, "raises", ())), route.path
        can = raised | (route_codes(route, require_token) - raised)
        for method in route.methods:
            listed = spec_codes(spec["paths"][route.path_format][method.lower()])
            assert set(listed) == can, f"{method} {route.path}: lists {sorted(listed)}, can answer {sorted(can)}"
            assert all(STATUS[code] == status for code, status in listed.items())
            checked += 1
    assert checked >= 10


def test_burning_routes_list_payment_card(app):
    """They identify the member from what the POS sends, and that can be a card number."""
    spec = app.openapi()["paths"]
    for path, method in [("/v1/redemptions", "post"), ("/v1/vouchers/validate", "post"),
                         ("/v1/vouchers/{code}/use", "post"), ("/v1/transactions", "post"),
                         ("/v1/members/{identifier}", "get")]:
        assert spec_codes(spec[path][method])["payment_card"] == 422, path


def test_error_codes_are_an_enum_and_the_token_a_security_scheme(app):
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    assert schemas["Problem"]["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode",
                                                        "description": "stable, machine-readable"}
    assert sorted(schemas["ErrorCode"]["enum"]) == sorted(CATALOGUE)
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            needs_token = "401" in op["responses"]
            assert (op.get("security") == [{"bearer": []}]) == needs_token, f"{method} {path}"
            assert needs_token == (path not in ("/", "/v1/health", "/metrics")), f"{method} {path}"
    json.dumps(spec)  # serialisable as it is served


def test_the_sale_route_lists_invalid_request_for_its_moment_not_invalid_occurred_at(app):
    """docs/program.md: a time without an offset is the API's invalid_request; the engine's
    invalid_occurred_at never reaches the POS, so no route lists it."""
    for path in ("/v1/transactions", "/v1/quotes", "/v1/transactions/{transaction_id}/returns"):
        listed = spec_codes(app.openapi()["paths"][path]["post"])
        assert "invalid_occurred_at" not in listed and listed["invalid_request"] == 422, path


def test_every_route_with_input_refuses_card_data(app):
    spec = app.openapi()["paths"]
    for path, ops in spec.items():
        for method, op in ops.items():
            takes_input = bool(op.get("parameters") or op.get("requestBody"))
            assert ("payment_card" in spec_codes(op)) == takes_input, f"{method} {path}"


def test_every_route_lists_the_guards_answers(app):
    """The local guard answers any route (Host, Origin); a method with a body can be too large."""
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            listed = spec_codes(op)
            assert listed["bad_host"] == 421 and listed["origin_not_allowed"] == 403, f"{method} {path}"
            assert ("payload_too_large" in listed) == (method == "post"), f"{method} {path}"


STANDARD = {"type", "anyOf", "allOf", "oneOf", "enum", "const", "format", "pattern", "minLength", "maxLength",
            "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
            "items", "properties", "required", "additionalProperties", "$ref", "description", "title", "default",
            "examples", "uniqueItems", "discriminator", "readOnly", "writeOnly", "nullable", "prefixItems"}


def test_request_schemas_use_only_json_schema_keywords(app):
    """A client generated from the OpenAPI must see every limit the lane checks: none hidden in
    keywords a validator ignores (pydantic's decimal_places, max_digits, gt...)."""
    schemas = app.openapi()["components"]["schemas"]

    def walk(node, where):
        if isinstance(node, dict):
            unknown = set(node) - STANDARD
            if "properties" in where.rsplit(".", 1)[-1:]:
                unknown = set()  # property names, not keywords
            assert not unknown, f"{where}: {sorted(unknown)}"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for name in ("TransactionIn", "QuoteIn", "ReturnIn", "LineIn", "ReturnLineIn", "RedemptionIn", "EnrolmentIn"):
        if name in schemas:
            walk(schemas[name], name)
    quantity = schemas["LineIn"]["properties"]["quantity"]
    assert quantity["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": 100000, "multipleOf": 0.001}
