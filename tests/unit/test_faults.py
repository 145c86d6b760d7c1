"""Which failures the consumers retry until they pass, and which they park."""
import pytest
from kombu.exceptions import OperationalError
from marshmallow import ValidationError
from pymongo.errors import (
    AutoReconnect,
    DocumentTooLarge,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from services.common.errors import Conflict
from services.common.faults import is_transient


def labelled(label: str) -> OperationFailure:
    error = OperationFailure("failed", code=251)
    error._add_error_label(label)
    return error


@pytest.mark.parametrize("error", [
    AutoReconnect("connection closed"),
    NetworkTimeout("timed out"),
    ServerSelectionTimeoutError("no server"),
    OperationFailure("WriteConflict", code=112),
    labelled("TransientTransactionError"),
    OperationalError("broker connection lost"),
    ConnectionRefusedError(111, "refused"),
])
def test_a_passing_infrastructure_failure_is_transient(error):
    assert is_transient(error)


def test_an_error_raised_from_a_transient_one_is_transient():
    try:
        try:
            raise AutoReconnect("store gone")
        except AutoReconnect as exc:
            raise RuntimeError("could not load the organization") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)


@pytest.mark.parametrize("error", [
    ValueError("a bug"),
    KeyError("field"),
    DuplicateKeyError("E11000"),
    WriteError("bad value", code=2),
    DocumentTooLarge("too large"),
    ValidationError("invalid"),
    Conflict("the complaint changed meanwhile"),
])
def test_a_handler_error_is_not_transient(error):
    assert not is_transient(error)
