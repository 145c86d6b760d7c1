"""What crosses intake's edges: the ``complaint.submit/1`` body (CONTRACTS.md §1)."""
from __future__ import annotations

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from services.common import ids, reference
from services.common.fields import CURRENCY, MoneyString, StrictBoolean

SCHEMA_ID = "complaint.submit/1"
CODE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", error="must be an ASCII code (letters, digits, - _ . :)")


def complaint_no(value: str) -> None:
    if not ids.is_valid_complaint_no(value):
        raise ValidationError("is not a complaint number such as BANKA-261124-0004218 (check digit included)")


class CustomerSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9][0-9 -]{4,19}$", error="is not a phone number"))
    email = fields.Email(validate=validate.Length(max=254))
    id_type = fields.String(validate=validate.Length(max=32))
    id_number = fields.String(validate=validate.Length(max=64))
    address = fields.String(validate=validate.Length(max=500))

    @validates_schema
    def answerable(self, data, **kwargs):
        if not any(data.get(key) for key in ("phone", "email", "address")):
            raise ValidationError(
                "give at least one of phone, email or address so the customer can be answered", "_schema"
            )


class SubmitSchema(Schema):
    """``complaint.submit/1`` plus the channel (from the routing key, or the HTTP body)."""

    class Meta:
        unknown = RAISE

    schema = fields.String(required=True, validate=validate.Equal(SCHEMA_ID, error=f"must be {SCHEMA_ID}"))
    channel = fields.String(required=True, validate=validate.OneOf(reference.CHANNELS))
    external_id = fields.String(validate=validate.Length(max=128))
    received_at = fields.AwareDateTime(required=True)
    institution = fields.String(required=True, validate=CODE)
    branch = fields.String(validate=CODE)
    kind = fields.String(required=True, validate=validate.OneOf(reference.KINDS))
    customer = fields.Nested(CustomerSchema, required=True)
    product = fields.String(required=True)
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    demand = fields.String(validate=validate.Length(max=5000))
    amount_in_dispute = MoneyString()
    currency = fields.String(load_default="CNY", validate=CURRENCY)
    direct = fields.Boolean(load_default=False)
    regulator_ref = fields.String(validate=validate.Length(min=1, max=128))
    staff_id = fields.String(validate=CODE)
    respondent_staff = fields.List(fields.String(validate=CODE), load_default=list,
                                   validate=validate.Length(max=50))
    group_size = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=100000))
    cause_event = fields.String(validate=validate.OneOf(reference.CAUSE_EVENTS))
    # A repeat of an earlier complaint, as the agent who took the call knows it: see
    # ``Intake.submit`` for what becomes of it. new_facts: the customer brought new facts
    # and reasons (the open complaint's limit then counts again, Order 3/2020 Art. 18).
    repeat_of = fields.String(validate=complaint_no)
    new_facts = StrictBoolean()

    def __init__(self, *args, known_units: dict | None = None, **kwargs):
        # institution code -> set of unit codes, once the organization is known.
        self.known_units = known_units
        super().__init__(*args, **kwargs)

    @pre_load
    def strings_are_strings(self, data, **kwargs):
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object", "_schema")
        return data

    @validates_schema
    def cross_field_rules(self, data, **kwargs):
        errors = {}
        if data.get("product") is not None and data["product"] not in reference.products():
            errors["product"] = [f"unknown product; one of {', '.join(reference.products())}"]
        if data.get("channel") == "regulator" and not data.get("regulator_ref"):
            errors["regulator_ref"] = ["is required for complaints forwarded by a regulator"]
        if data.get("currency") not in (None, "CNY") and not data.get("amount_in_dispute"):
            errors["currency"] = ["is given without amount_in_dispute"]
        if data.get("new_facts") and not data.get("repeat_of"):
            errors["new_facts"] = ["is given without repeat_of"]
        if self.known_units is not None and data.get("institution"):
            units = self.known_units.get(data["institution"])
            if units is None:
                errors["institution"] = ["unknown institution"]
            elif data.get("branch") and data["branch"] not in units:
                errors["branch"] = ["unknown branch of this institution"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def defaults(self, data, **kwargs):
        data.setdefault("respondent_staff", [])
        if data.get("repeat_of"):
            data.setdefault("new_facts", False)
        return data
