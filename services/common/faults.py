"""Which failures pass by themselves.

A handler that fails because the store or the broker is unreachable for a while, or
because a transaction met a write conflict, did nothing wrong: its message is retried
(with backoff, never parked) until the infrastructure is back. Every other exception is
the handler's own and goes through ``RETRY_DELAYS``, then to the parked queue.
"""
from __future__ import annotations

from amqp.exceptions import RecoverableConnectionError
from kombu.exceptions import OperationalError
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

# Labels MongoDB and pymongo put on errors that a retry of the whole operation overcomes.
TRANSIENT_LABELS = ("TransientTransactionError", "UnknownTransactionCommitResult", "RetryableWriteError")
# Server codes of the same kind that may come without a label (outside a transaction):
# WriteConflict, the primary stepping down or shutting down, a network error between members.
TRANSIENT_CODES = {112, 189, 91, 11600, 11602, 10107, 13435, 13436, 6, 7, 89, 9001}

TRANSIENT_TYPES = (
    ConnectionFailure,  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, NotPrimaryError
    OperationalError,  # kombu: the broker connection failed
    RecoverableConnectionError,
    ConnectionError,  # the operating system's: refused, reset, aborted
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error it was raised from) is a passing infrastructure failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, TRANSIENT_TYPES):
            return True
        if isinstance(exc, PyMongoError) and any(exc.has_error_label(label) for label in TRANSIENT_LABELS):
            return True
        if isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES:
            return True
        exc = exc.__cause__
    return False
