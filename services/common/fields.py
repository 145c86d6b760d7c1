"""marshmallow fields for values several services read at their edges: money written as a
decimal string, ISO 4217 currencies, and booleans that must be JSON booleans."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields, validate

CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="must be an ISO 4217 code such as CNY")


class MoneyString(fields.String):
    """A decimal amount written as a string, e.g. "1200.00": exact, never a float."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError('must be a decimal string such as "1200.00"')
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValidationError('must be a decimal string such as "1200.00"') from None
        if not amount.is_finite() or amount < 0:
            raise ValidationError("must be a non-negative amount")
        if amount.as_tuple().exponent < -2:
            raise ValidationError("must have at most two decimal places")
        if amount >= Decimal("1e15"):
            raise ValidationError("is too large")
        return f"{amount:.2f}"


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only: not "yes", 1 or "true", where the answer matters."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value
