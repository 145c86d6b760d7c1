"""Domain errors that cross RPC: each keeps its class on the caller's side.

nameko serializes an exception raised in an RPC worker as its type name; registering the
class with ``deserialize_to_instance`` lets the caller (the HTTP edge) catch the same class
and answer with the status the contract gives it.
"""
from __future__ import annotations

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
class Stale(Conflict):
    """What a change was computed from changed before it was written (optimistic
    concurrency): computed again from a fresh read (``store.retry_on_conflict``), or, for a
    caller, a Conflict to read again."""
