"""GitHub's published REST API description (npm `@octokit/openapi`, which packages
github/rest-api-description), cut down to the operations the action uses, and a validator.

Loading the whole description takes a fraction of a second per file but building a validator for
all of it would take much longer, so `extract` keeps only the operations in OPERATIONS and the
components they reference (transitively); the result is small and is cached in pytest's cache,
keyed by the package's version, so a session usually reads neither the 13 MB file nor the rest.

`Validator` is openapi-core (request: path, method, parameters, body; response: status, content
type, body schema, with `nullable`, `format` and `required` as GitHub's description states them)
plus two checks of ours that the description leaves open: a query parameter the operation does
not declare, and a top-level property of a JSON request body that the body's schema does not
declare, are refused too (GitHub ignores them; a client sending them has a bug). One allowance:
GitHub answers 401, 403 and 404 to any operation (bad credentials, a read-only token, an object
deleted meanwhile) but the description lists them for some operations only; where it does not,
such a response must still be the description's `basic-error` with a message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "node_modules" / "@octokit" / "openapi"
INSTALL_COMMAND = "npm ci --prefix tests/github_api --no-audit --no-fund"

# Every operation the action calls; the fake server serves exactly these.
OPERATIONS = (
    "issues/list-comments",
    "issues/create-comment",
    "issues/update-comment",
    "issues/delete-comment",
    "issues/remove-label",
    "repos/list-pull-requests-associated-with-commit",
)
# Answers GitHub gives to any operation (bad credentials, no permission, no such object) that
# the description lists for some operations only: where it does not, the body must be its
# `basic-error` with a message.
GENERAL_ERRORS = frozenset({401, 403, 404})
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class DescriptionMissing(RuntimeError):
    pass


def package_version() -> str:
    manifest = PACKAGE / "package.json"
    if not manifest.is_file():
        raise DescriptionMissing(
            f"GitHub's REST API description is not installed ({PACKAGE} is missing):"
            f" run `{INSTALL_COMMAND}` from the repository root"
        )
    return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])


def variants() -> list[str]:
    """The descriptions the package holds: api.github.com, ghec, ghes-3.NN (not the dereferenced
    copies)."""
    names = sorted(p.stem for p in (PACKAGE / "generated").glob("*.json"))
    return [name for name in names if not name.endswith(".deref")]


def latest_ghes() -> str:
    ghes = [v for v in variants() if re.fullmatch(r"ghes-3\.\d+", v)]
    return max(ghes, key=lambda v: int(v.split(".")[1]))


def load(variant: str, cache: Any | None = None) -> dict[str, Any]:
    """The cut-down description of `variant`, from pytest's cache when it has it."""
    version = package_version()
    digest = hashlib.sha256(json.dumps(OPERATIONS).encode()).hexdigest()[:12]
    cache_key = f"github_api/description/{variant}-{version}-{digest}"
    if cache is not None:
        cached = cache.get(cache_key, None)
        if isinstance(cached, dict):
            return cached
    path = PACKAGE / "generated" / f"{variant}.json"
    full = json.loads(path.read_text(encoding="utf-8"))
    subset = extract(full, OPERATIONS)
    if cache is not None:
        cache.set(cache_key, subset)
    return subset


def extract(description: Mapping[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """The description with only `operations` and the components they reference.

    Examples are dropped (they are documentation); the servers are replaced by `/` so that any
    base URL (api.github.com, a GHES `/api/v3`, the test server) validates the same paths.
    """
    wanted = set(operations)
    paths: dict[str, Any] = {}
    for path, item in description["paths"].items():
        for method, operation in item.items():
            if method in _METHODS and operation.get("operationId") in wanted:
                paths.setdefault(path, {})[method] = _without_examples(operation)
                wanted.discard(operation["operationId"])
    if wanted:
        raise KeyError(f"operations missing from the description: {sorted(wanted)}")
    components: dict[str, dict[str, Any]] = {}
    todo = _refs(paths)
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/")
        value = _without_examples(description["components"][kind][name])
        components.setdefault(kind, {})[name] = value
        todo |= _refs(value)
    return {
        "openapi": description["openapi"],
        "info": {"title": description["info"]["title"], "version": description["info"]["version"]},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": components,
    }


def _without_examples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_examples(v) for k, v in value.items() if k not in ("examples",)}
    if isinstance(value, list):
        return [_without_examples(v) for v in value]
    return value


def _refs(value: Any) -> set[str]:
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@dataclass(frozen=True)
class Route:
    operation_id: str
    method: str
    template: str
    params: dict[str, str]  # path parameters, still percent-encoded


class Validator:
    def __init__(self, description: dict[str, Any]) -> None:
        from openapi_core import OpenAPI

        self.description = description
        self._openapi = OpenAPI.from_dict(copy.deepcopy(description))
        self._routes: list[tuple[re.Pattern[str], str, str, str]] = []
        for template, item in description["paths"].items():
            pattern = "".join(
                f"(?P<p_{part[1:-1].replace('-', '_')}>[^/]+)"
                if part.startswith("{")
                else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", template)
            )
            for method, operation in item.items():
                if method in _METHODS:
                    self._routes.append(
                        (re.compile(pattern + "$"), method, template, operation["operationId"])
                    )

    def route(self, method: str, path: str) -> Route | None:
        """The operation a request's method and path (below the API base) stand for."""
        for pattern, route_method, template, operation_id in self._routes:
            match = pattern.match(path)
            if match and route_method == method.lower():
                params = {name[2:]: value for name, value in match.groupdict().items()}
                return Route(operation_id, route_method, template, params)
        return None

    def _operation(self, route: Route) -> dict[str, Any]:
        operation: dict[str, Any] = self.description["paths"][route.template][route.method]
        return operation

    def _resolve(self, value: Any) -> Any:
        while isinstance(value, dict) and "$ref" in value:
            _, _, kind, name = value["$ref"].split("/")
            value = self.description["components"][kind][name]
        return value

    def check_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> list[str]:
        """What the description does not allow in this request (empty when it is allowed)."""
        from openapi_core.testing import MockRequest

        route = self.route(method, path)
        if route is None:
            known = any(pattern.match(path) for pattern, *_ in self._routes)
            what = "method" if known else "path"
            return [
                f"{method} {path}: unknown {what} (not an operation of GitHub's REST API"
                " description that the action is meant to call)"
            ]
        problems: list[str] = []
        operation = self._operation(route)
        declared = {
            self._resolve(p)["name"]
            for p in operation.get("parameters", [])
            if self._resolve(p)["in"] == "query"
        }
        for name in query:
            if name not in declared:
                problems.append(f"{route.operation_id}: undeclared query parameter {name!r}")
        content_type = headers.get("content-type", "").split(";")[0].strip()
        request_body = self._resolve(operation.get("requestBody", {}))
        if body and request_body:
            schema = self._resolve(
                request_body.get("content", {}).get("application/json", {}).get("schema", {})
            )
            try:
                data = json.loads(body)
            except ValueError:
                data = None
                problems.append(f"{route.operation_id}: the request body is not JSON")
            if isinstance(data, dict) and "properties" in schema:
                for name in data:
                    if name not in schema["properties"]:
                        problems.append(f"{route.operation_id}: undeclared body property {name!r}")
        request = MockRequest(
            "http://github.test",
            method.lower(),
            path,
            args={name: values[-1] for name, values in query.items() if name in declared},
            headers=dict(headers),
            data=body or None,
            content_type=content_type or "application/json",
        )
        try:
            self._openapi.validate_request(request)
        except Exception as error:  # openapi-core's validation errors
            problems.append(f"{route.operation_id} request: {_describe(error)}")
        return problems

    def check_response(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> list[str]:
        """What the description does not allow in this response."""
        from openapi_core.testing import MockRequest, MockResponse

        route = self.route(method, path)
        if route is None:
            return []  # the request was already refused
        request = MockRequest("http://github.test", method.lower(), path)
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        response = MockResponse(
            body, status_code=status, headers=dict(headers), content_type=content_type
        )
        if status in GENERAL_ERRORS and not self.documents(method, path, status):
            return self._check_general_error(route, status, body)
        try:
            self._openapi.validate_response(request, response)
        except Exception as error:
            return [f"{route.operation_id} response {status}: {_describe(error)}"]
        return []

    def _check_general_error(self, route: Route, status: int, body: bytes) -> list[str]:
        from openapi_schema_validator import OAS30Validator

        try:
            data = json.loads(body)
        except ValueError:
            return [f"{route.operation_id} response {status}: the body is not JSON"]
        schema = {**self.schema("basic-error"), "required": ["message"]}
        errors = [e.message for e in OAS30Validator(schema).iter_errors(data)]
        return [f"{route.operation_id} response {status}: {e}" for e in errors]

    def documents(self, method: str, path: str, status: int) -> bool:
        """Whether the operation's description lists this status (or a range holding it)."""
        route = self.route(method, path)
        if route is None:
            return False
        responses = self._operation(route).get("responses", {})
        return str(status) in responses or f"{str(status)[0]}XX" in responses

    def schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = self.description["components"]["schemas"][name]
        return schema

    def instance(self, schema: Any, overrides: Callable[[str], Any] | None = None) -> Any:
        """A minimal value that the schema accepts: its required properties only."""
        return _instance(self, self._resolve(schema), "", overrides or (lambda _: MISSING))


MISSING = object()


def _instance(
    validator: Validator, schema: Any, where: str, overrides: Callable[[str], Any]
) -> Any:
    value = overrides(where)
    if value is not MISSING:
        return value
    schema = validator._resolve(schema)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part_value = _instance(validator, part, where, overrides)
            if isinstance(part_value, dict):
                merged.update(part_value)
        return merged
    for choice in ("anyOf", "oneOf"):
        if choice in schema:
            return _instance(validator, schema[choice][0], where, overrides)
    if schema.get("nullable"):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: _instance(validator, schema["properties"][name], f"{where}.{name}", overrides)
            for name in schema.get("required", [])
        }
    if kind == "array":
        return []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2026-01-01T00:00:00Z"
    if fmt == "uri":
        return "https://github.test/" + where.strip(".").replace(".", "/")
    if fmt == "email":
        return "octocat@github.test"
    return "x"


def _describe(error: BaseException) -> str:
    parts = [str(error)]
    cause = error.__cause__
    while cause is not None and len(parts) < 4:
        details = getattr(cause, "schema_errors", None)
        parts.append(str(cause) if not details else "; ".join(str(e.message) for e in details))
        cause = cause.__cause__
    return " | ".join(dict.fromkeys(p for p in parts if p))
