"""The OpenAPI 3 document, generated from ``routes.ROUTES`` and the marshmallow schemas.

Nothing here is written per endpoint: each ``Route`` gives its method, path, parameters
(query and path schemas, headers), request body, responses and roles, and the error
responses follow from what the route does (token → 401/403, body → 400/422, ...), all
with the contract's error schema.
"""
from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls

from . import schemas
from .routes import ROUTES, Route

TITLE = "Consumer complaints HTTP API"
VERSION = "1.0.0"
OPENAPI_VERSION = "3.0.3"
SECURITY_SCHEME = "bearerAuth"
SIGNATURE_SCHEME = "complaintSignature"


def _schema_name_resolver(schema) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    return name[: -len("Schema")] if name.endswith("Schema") and name != "Schema" else name


class SchemaPlugin(MarshmallowPlugin):
    """apispec's marshmallow plugin, plus the rules across fields a schema states for the
    document in its ``JSON_SCHEMA`` (JSON Schema keywords such as ``anyOf``)."""

    def schema_helper(self, name, definition, **kwargs):
        json_schema = super().schema_helper(name, definition, **kwargs)
        schema = kwargs.get("schema")
        extra = getattr(resolve_schema_cls(schema), "JSON_SCHEMA", None) if schema is not None else None
        return {**json_schema, **extra} if extra else json_schema


def build_spec(routes=ROUTES, server_url: str | None = None) -> APISpec:
    plugin = SchemaPlugin(schema_name_resolver=_schema_name_resolver)
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": (
            "The HTTP edge of the complaint platform (CONTRACTS.md §3). Errors are "
            '{"error": {"code", "message", "details"}}.'
        )},
        servers=[{"url": server_url}] if server_url else [],
    )
    spec.components.security_scheme(
        SECURITY_SCHEME,
        {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
         "description": "HS256 JWT with claims sub, name, unit, roles, exp."},
    )
    spec.components.security_scheme(
        SIGNATURE_SCHEME,
        {"type": "apiKey", "in": "header", "name": "X-Complaint-Signature",
         "description": "A mediation organization's signature (CONTRACTS §4): t=<unix seconds>,v1=<hex "
                        "HMAC-SHA256 of \"<t>.<raw body>\" with its secret>, at most 5 minutes old."},
    )
    spec.components.schema("Error", schema=schemas.ErrorSchema)
    for route in routes:
        spec.path(path=route.path, operations={route.method.lower(): _operation(route)})
    return spec


def _operation(route: Route) -> dict:
    operation = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": list(route.tags),
        "responses": {},
    }
    if route.description:
        operation["description"] = route.description
    parameters = []
    if route.path_params is not None:
        parameters.append({"in": "path", "schema": route.path_params})
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if route.headers is not None:
        parameters.append({"in": "header", "schema": route.headers})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        # A body whose fields are all optional may be left out (an action such as accept).
        operation["requestBody"] = {
            "required": any(f.required for f in route.body().fields.values()),
            "content": {"application/json": {"schema": route.body}},
        }
    operation["security"] = []
    if route.roles is not None:
        operation["security"].append({SECURITY_SCHEME: []})
        operation["x-roles"] = sorted(route.roles)
    if route.signed:
        operation["security"].append({SIGNATURE_SCHEME: []})
    for response in route.responses:
        body = {"description": response.description}
        if response.schema is not None:
            schema = response.schema
            if response.alternatives:
                schema = {"anyOf": [schema, *response.alternatives]}
            if response.many:
                schema = {"type": "array", "items": schema}
            body["content"] = {"application/json": {"schema": schema}}
        else:
            body["content"] = {"application/json": {"schema": {"type": "object"}}}
        if response.headers:
            body["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                               for name, text in response.headers}
        operation["responses"][str(response.status)] = body
    for status in route.error_statuses:
        operation["responses"][str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": "Error"}},
        }
    if route.semantic:
        unprocessable = operation["responses"]["422"]
        unprocessable["description"] += (
            "; also, for a request this document calls valid, when one of "
            f"{', '.join(route.semantic)} is refused on data or on the clock (see each one's description)")
        unprocessable["x-semantic-refusals"] = list(route.semantic)
    return operation


@lru_cache(maxsize=1)
def document() -> dict:
    """The document as served (built once per process)."""
    return build_spec().to_dict()
