"""GitHub's published REST API description (npm `@octokit/openapi`, which packages
github/rest-api-description), cut down to the operations the action uses, and a validator.

Reading the whole description takes a fraction of a second per file, compiling it all far more,
so `extract` keeps only the operations in OPERATIONS and the components they reference
(transitively); the cut is cached in pytest's cache, keyed by the package's version, so a session
usually reads neither the 13 MB file nor more than it needs. The cut is itself checked to be valid
OpenAPI (openapi-spec-validator).

`Validator` compiles every parameter, request body and response schema of those operations once
into a JSON Schema validator in OpenAPI 3.0's dialect (openapi-schema-validator's OAS30Validator,
over jsonschema: `nullable`, `format`, `required`, `enum` as GitHub's description states them),
and checks against them:
- a request: its method and path (routed by the description's path templates), its path, query
  and header parameters (declared, required, typed), its body (media type, schema);
- a response: its status (documented for the operation), media type and body schema.
Two checks of ours close what the description leaves open: a query parameter the operation does
not declare, and a top-level property of a JSON request body that the body's schema does not
declare, are refused (GitHub ignores them; a client sending them has a bug). One allowance:
GitHub answers 401, 403 and 404 to any operation (bad credentials, a read-only token, an object
deleted meanwhile) but the description lists them for some operations only; where it does not,
such a response must still be the description's `basic-error`, with a message.
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
from urllib.parse import unquote

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
    "users/get-authenticated",
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


@dataclass
class _Parameter:
    name: str
    where: str  # path, query, header
    required: bool
    kind: str  # the schema's type: string, integer, number, boolean
    validator: Any


@dataclass
class _Operation:
    operation_id: str
    parameters: list[_Parameter]
    body_required: bool
    bodies: dict[str, Any]  # media type -> (validator, declared top-level properties | None)
    responses: dict[str, dict[str, Any]]  # status or "4XX"/"default" -> media type -> validator


class Validator:
    """The cut-down description, compiled once: a JSON Schema validator (OpenAPI 3.0's dialect:
    `nullable`, formats) for every parameter, request body and response of each operation."""

    def __init__(self, description: dict[str, Any]) -> None:
        from openapi_spec_validator import validate as validate_description

        validate_description(copy.deepcopy(description))  # the cut is valid OpenAPI itself
        self.description = description
        self._routes: list[tuple[re.Pattern[str], str, str]] = []
        self._operations: dict[tuple[str, str], _Operation] = {}
        for template, item in description["paths"].items():
            pattern = "".join(
                f"(?P<p_{part[1:-1].replace('-', '_')}>[^/]+)"
                if part.startswith("{")
                else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", template)
            )
            for method, operation in item.items():
                if method in _METHODS:
                    self._routes.append((re.compile(pattern + "$"), method, template))
                    self._operations[template, method] = self._compile(operation)

    def _compile(self, operation: dict[str, Any]) -> _Operation:
        parameters = []
        for raw in operation.get("parameters", []):
            parameter = self._resolve(raw)
            schema = self._inline(parameter.get("schema", {}))
            parameters.append(
                _Parameter(
                    parameter["name"],
                    parameter["in"],
                    bool(parameter.get("required")),
                    schema.get("type", "string"),
                    _validator(schema),
                )
            )
        request_body = self._resolve(operation.get("requestBody", {}))
        bodies = {}
        for media_type, content in request_body.get("content", {}).items():
            schema = self._inline(content.get("schema", {}))
            declared = set(schema["properties"]) if "properties" in schema else None
            bodies[media_type] = (_validator(schema), declared)
        responses: dict[str, dict[str, Any]] = {}
        for status, raw in operation.get("responses", {}).items():
            response = self._resolve(raw)
            responses[status] = {
                media_type: _validator(self._inline(content.get("schema", {})))
                for media_type, content in response.get("content", {}).items()
            }
        return _Operation(
            operation["operationId"],
            parameters,
            bool(request_body.get("required")),
            bodies,
            responses,
        )

    def _resolve(self, value: Any) -> Any:
        while isinstance(value, dict) and "$ref" in value:
            _, _, kind, name = value["$ref"].split("/")
            value = self.description["components"][kind][name]
        return value

    def _inline(self, value: Any, seen: tuple[str, ...] = ()) -> Any:
        """The schema with every `$ref` replaced by what it points to."""
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str):
                if ref in seen:
                    raise ValueError(f"recursive schema {ref}: not supported here")
                return self._inline(self._resolve(value), (*seen, ref))
            # A discriminator's mapping names components by `$ref`, which the inlined schema no
            # longer has: its `oneOf` alone decides (GET /user: private-user or public-user).
            return {
                key: self._inline(item, seen)
                for key, item in value.items()
                if not (key == "discriminator" and isinstance(item, dict) and "mapping" in item)
            }
        if isinstance(value, list):
            return [self._inline(item, seen) for item in value]
        return value

    def route(self, method: str, path: str) -> Route | None:
        """The operation a request's method and path (below the API base) stand for."""
        for pattern, route_method, template in self._routes:
            match = pattern.match(path)
            if match and route_method == method.lower():
                params = {name[2:]: value for name, value in match.groupdict().items()}
                operation_id = self._operations[template, route_method].operation_id
                return Route(operation_id, route_method, template, params)
        return None

    def check_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> list[str]:
        """What the description does not allow in this request (empty when it is allowed)."""
        route = self.route(method, path)
        if route is None:
            known = any(pattern.match(path) for pattern, *_ in self._routes)
            what = "method" if known else "path"
            return [
                f"{method} {path}: unknown {what} (not an operation of GitHub's REST API"
                " description that the action is meant to call)"
            ]
        operation = self._operations[route.template, route.method]
        name = operation.operation_id
        problems: list[str] = []
        values: dict[str, dict[str, str]] = {
            "path": {k: unquote(v) for k, v in route.params.items()},
            "query": {k: v[-1] for k, v in query.items()},
            "header": {k.lower(): v for k, v in headers.items()},
        }
        declared = {p.name for p in operation.parameters if p.where == "query"}
        problems += [
            f"{name}: undeclared query parameter {key!r}" for key in query if key not in declared
        ]
        for parameter in operation.parameters:
            lookup = parameter.name.lower() if parameter.where == "header" else parameter.name
            text = values.get(parameter.where, {}).get(lookup)
            if text is None:
                if parameter.required:
                    problems.append(f"{name}: missing {parameter.where} parameter {lookup!r}")
                continue
            value = _cast(text, parameter.kind)
            if value is None:
                problems.append(
                    f"{name}: {parameter.where} parameter {lookup!r}={text!r}"
                    f" is not {parameter.kind}"
                )
                continue
            problems += [
                f"{name}: {parameter.where} parameter {lookup!r}: {error.message}"
                for error in parameter.validator.iter_errors(value)
            ]
        media_type = values["header"].get("content-type", "").split(";")[0].strip()
        if not body:
            if operation.body_required:
                problems.append(f"{name}: the request has no body")
            return problems
        if media_type not in operation.bodies:
            expected = ", ".join(operation.bodies) or "no body"
            return [*problems, f"{name}: a {media_type or 'untyped'} body; expected {expected}"]
        validator, properties = operation.bodies[media_type]
        try:
            data = json.loads(body)
        except ValueError:
            return [*problems, f"{name}: the request body is not JSON"]
        if isinstance(data, dict) and properties is not None:
            problems += [
                f"{name}: undeclared body property {key!r}" for key in data if key not in properties
            ]
        problems += [
            f"{name} request body: {error.message}" for error in validator.iter_errors(data)
        ]
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
        route = self.route(method, path)
        if route is None:
            return []  # the request was already refused
        operation = self._operations[route.template, route.method]
        name = f"{operation.operation_id} response {status}"
        contents = _response(operation, status)
        if contents is None:
            if status in GENERAL_ERRORS:
                return self._check_general_error(name, body)
            return [f"{name}: the description documents no such status"]
        lowered = {k.lower(): v for k, v in headers.items()}
        media_type = lowered.get("content-type", "").split(";")[0].strip()
        if not contents:
            return [f"{name}: a body, where the description documents none"] if body else []
        if media_type not in contents:
            return [f"{name}: content type {media_type!r}, expected one of {sorted(contents)}"]
        try:
            data = json.loads(body)
        except ValueError:
            return [f"{name}: the body is not JSON"]
        return [f"{name}: {_where(e)}{e.message}" for e in contents[media_type].iter_errors(data)]

    def _check_general_error(self, name: str, body: bytes) -> list[str]:
        try:
            data = json.loads(body)
        except ValueError:
            return [f"{name}: the body is not JSON"]
        schema = {**self.schema("basic-error"), "required": ["message"]}
        return [f"{name}: {error.message}" for error in _validator(schema).iter_errors(data)]

    def documents(self, method: str, path: str, status: int) -> bool:
        """Whether the operation's description lists this status (or a range holding it)."""
        route = self.route(method, path)
        if route is None:
            return False
        return _response(self._operations[route.template, route.method], status) is not None

    def schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = self.description["components"]["schemas"][name]
        return schema

    def instance(self, schema: Any, overrides: Callable[[str], Any] | None = None) -> Any:
        """A minimal value that the schema accepts: its required properties only."""
        return _instance(self, self._resolve(schema), "", overrides or (lambda _: MISSING))


def _validator(schema: dict[str, Any]) -> Any:
    from openapi_schema_validator import OAS30Validator

    return OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)


def _response(operation: _Operation, status: int) -> dict[str, Any] | None:
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in operation.responses:
            return operation.responses[key]
    return None


def _cast(text: str, kind: str) -> Any:
    if kind == "integer":
        return int(text) if re.fullmatch(r"-?[0-9]+", text) else None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return None
    if kind == "boolean":
        return {"true": True, "false": False}.get(text)
    return text


def _where(error: Any) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{path}: " if path else ""


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
