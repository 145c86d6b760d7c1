"""Field types and validators shared by the schemas at every edge.

Each is written so that the OpenAPI document (apispec's marshmallow plugin) states exactly
what it checks: a rule the document cannot state would refuse a request the document calls
valid. Patterns are regular expressions as JSON Schema reads them (searched, ECMA 262), so
they use explicit classes (``[0-9]``, not ``\\d``, which Python also lets match other
scripts' digits) and end in ``$`` only where the whole value is meant.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields, validate

from services.common import timeutil

# What ``str.isspace`` calls white space, written out: JSON Schema engines disagree on ``\s``.
WHITESPACE = r"\t\n\u000b\f\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
MAX_TEXT = 20000


class Pattern(validate.Regexp):
    """A ``pattern`` of the document, checked as JSON Schema checks it: searched, and ``$``
    the very end (Python's ``$`` also matches before a final newline)."""

    def __init__(self, pattern: str, error: str):
        super().__init__(pattern, error=error)
        self._strict = re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)

    def matches(self, value: str):
        return self._strict.search(value)

    def __call__(self, value: str) -> str:
        if self.matches(value) is None:
            raise ValidationError(self._format_error(value))
        return value


CODE = Pattern(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", error="must be an ASCII code (letters, digits, - _ . :)")
CURRENCY = Pattern(r"^[A-Z]{3}$", error="must be an ISO 4217 code such as CNY")
# Text a person writes: at least one character that is not white space.
NOT_BLANK = Pattern(rf"^[{WHITESPACE}]*[^{WHITESPACE}]", error="must not be blank")
# A decimal string: at most 15 digits before the point and two after (below 10^15).
AMOUNT = Pattern(r"^[0-9]{1,15}(\.[0-9]{1,2})?$",
                 error='must be a decimal string such as "1200.00" (at most 15 digits, two decimal places)')


def text(required: bool = False, description: str = "", max_length: int = MAX_TEXT, **kwargs) -> fields.String:
    """Free text of a person: not blank, at most ``max_length`` characters."""
    return fields.String(required=required, validate=[validate.Length(max=max_length), NOT_BLANK],
                         metadata={"description": description} if description else {}, **kwargs)


class MoneyString(fields.String):
    """A non-negative amount as a decimal string, e.g. "1200.00": exact, never a float;
    loads with exactly two places."""

    def __init__(self, **kwargs):
        metadata = {"example": "1200.00", **kwargs.pop("metadata", {})}
        super().__init__(validate=AMOUNT, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or AMOUNT.matches(value) is None:
            raise ValidationError(_why_not_an_amount(value))
        return f"{Decimal(value):.2f}"


def _why_not_an_amount(value) -> str:
    try:
        amount = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        return 'must be a decimal string such as "1200.00"'
    if amount < 0:
        return "must be a non-negative amount"
    if amount.as_tuple().exponent < -2:
        return "must have at most two decimal places"
    if amount >= Decimal("1e15"):
        return "is too large"
    return AMOUNT.error


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only: not "yes", 1 or "true", where the answer matters."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class Moment(fields.AwareDateTime):
    """A time with an offset, written with a year the platform reads (``timeutil.YEARS``:
    no conversion to another offset leaves the calendar); the document states the year."""

    def __init__(self, **kwargs):
        metadata = {"pattern": timeutil.YEAR_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return _in_years(super()._deserialize(value, attr, data, **kwargs))


class Day(fields.Date):
    """A day (``2026-11-22``), written with a year the platform reads (``timeutil.YEARS``)."""

    def __init__(self, **kwargs):
        metadata = {"pattern": timeutil.YEAR_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return _in_years(super()._deserialize(value, attr, data, **kwargs))


def _in_years(value):
    if value.year not in timeutil.YEARS:
        raise ValidationError(f"the year must be from {timeutil.YEARS.start} to {timeutil.YEARS.stop - 1}")
    return value
