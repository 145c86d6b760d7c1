"""The contract's error shape, ``{"error": {"code", "message", "details"}}``, for every failure.

One function, :func:`response_for_exception`, turns anything a request can raise into a
response: the edge's own HTTP errors, domain errors that came back over RPC, a peer that
does not answer, Werkzeug's routing errors (404, 405) and, last, anything unexpected (500,
logged here, never shown to the caller).
"""
from __future__ import annotations

import json
import logging

from nameko.exceptions import ContainerBeingKilled, RpcTimeout, UnknownService
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from services.common import errors as domain
from services.common.errors import DomainError
from services.common.rpc import UNAVAILABLE

_log = logging.getLogger(__name__)

JSON = "application/json"


class HttpError(DomainError):
    """An error the edge itself answers with (bad request, auth...); it may add headers."""

    def __init__(self, message: str, details: dict | None = None, headers: dict | None = None):
        super().__init__(message, details)
        self.headers = headers or {}


class BadRequest(HttpError):
    status = 400
    code = "bad_request"


class MalformedJson(HttpError):
    status = 400
    code = "malformed_json"


class Unauthorized(HttpError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message, details, headers={"WWW-Authenticate": 'Bearer realm="complaints"'})


# The edge refuses a role or a body as a service would: 403, and 422 with field paths.
Forbidden = domain.Forbidden
ValidationFailed = domain.Invalid


class PayloadTooLarge(HttpError):
    status = 413
    code = "payload_too_large"


class ServiceUnavailable(HttpError):
    status = 503
    code = "service_unavailable"



# Exceptions that are answers, not bugs: nameko logs them as warnings, not tracebacks.
EXPECTED = (DomainError,) + UNAVAILABLE

# Werkzeug's names are fine as codes once snake-cased; these are the ones routing raises.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        status=status,
        headers=headers,
        mimetype=JSON,
    )


def error_response(status: int, code: str, message: str, details: dict | None = None,
                   headers: dict | None = None) -> Response:
    return json_response(error_body(code, message, details), status=status, headers=headers)


def response_for_exception(exc: BaseException) -> Response:
    if isinstance(exc, DomainError):
        return error_response(exc.status, exc.code, exc.message, _details(exc.details), getattr(exc, "headers", None))
    if isinstance(exc, UNAVAILABLE):
        _log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return error_response(503, "service_unavailable", _unavailable_message(exc))
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code >= 400:
        headers = {}
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        code = _HTTP_CODES.get(exc.code) or (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code, code, exc.description or exc.name, headers=headers)
    _log.error("unexpected error answering a request", exc_info=exc)
    return error_response(500, "internal_error", "Internal error; it has been logged.")


def _details(details) -> dict:
    # Details crossed RPC as JSON: a dict of field path -> messages. Anything else is wrapped.
    if isinstance(details, dict):
        return details
    return {"_": details} if details else {}


def _unavailable_message(exc: BaseException) -> str:
    if isinstance(exc, UnknownService):
        return f"Service {getattr(exc, '_service_name', exc)!s} is not running."
    if isinstance(exc, RpcTimeout):
        return f"Service {exc!s} did not answer in time."
    if isinstance(exc, ContainerBeingKilled):
        return "The gateway is shutting down."
    return "The message broker is unreachable."
