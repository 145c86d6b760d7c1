"""Domain errors that cross RPC: each keeps its class on the caller's side.

nameko serializes an exception raised in an RPC worker as its type name; registering the
class with ``deserialize_to_instance`` lets the caller (the HTTP edge) catch the same class
and answer with the status the contract gives it.
"""
from __future__ import annotations

import logging

from nameko.exceptions import deserialize_to_instance


class DomainError(Exception):
    """Base of the errors the HTTP edge turns into the contract's error shape."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict | None = None):
        # Both go into ``args``: nameko rebuilds the instance from them on the caller's side.
        super().__init__(message, details or {})
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


def flatten_errors(errors, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested errors as a map from field path (``customer.phone``) to messages."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            path = prefix if key == "_schema" and prefix else (f"{prefix}.{key}" if prefix else str(key))
            for sub_path, messages in flatten_errors(value, path).items():
                flat.setdefault(sub_path, []).extend(messages)
    elif isinstance(errors, list) and all(isinstance(item, str) for item in errors):
        flat[prefix or "_schema"] = list(errors)
    elif isinstance(errors, list):
        for item in errors:
            for sub_path, messages in flatten_errors(item, prefix).items():
                flat.setdefault(sub_path, []).extend(messages)
    else:
        flat[prefix or "_schema"] = [str(errors)]
    return flat


@deserialize_to_instance
class NotFound(DomainError):
    status = 404
    code = "not_found"


@deserialize_to_instance
class Conflict(DomainError):
    """A transition the complaint's current state does not allow."""

    status = 409
    code = "conflict"


@deserialize_to_instance
class Invalid(DomainError):
    status = 422
    code = "validation_failed"


@deserialize_to_instance
class Forbidden(DomainError):
    status = 403
    code = "forbidden"


@deserialize_to_instance
class SignatureRefused(DomainError):
    """A message signed for a mediation organization (CONTRACTS §4) whose signature is
    missing, stale or wrong."""

    status = 401
    code = "bad_signature"


@deserialize_to_instance
class Unavailable(DomainError):
    """What a decision needs is not known yet (the organization not announced, a peer down)."""

    status = 503
    code = "service_unavailable"


@deserialize_to_instance
class Stale(Conflict):
    """What a change was computed from changed before it was written (optimistic
    concurrency): computed again from a fresh read (``store.retry_on_conflict``), or, for a
    caller, a Conflict to read again."""


class AnswersAreNotFaults(logging.Filter):
    """nameko logs whatever a worker raises with its traceback, as an error (or, when the
    entrypoint expects it, a warning). A domain error is an answer (404, 409, 422...), not a
    fault of the platform: it is logged at INFO, on one line, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DomainError):
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


ANSWERS_ARE_NOT_FAULTS = AnswersAreNotFaults()


def quiet_answers() -> None:
    """Install the filter on nameko's worker log (once; the runner does it for every service)."""
    logging.getLogger("nameko.containers").addFilter(ANSWERS_ARE_NOT_FAULTS)

