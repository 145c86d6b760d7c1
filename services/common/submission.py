"""``complaint.submit/1`` (CONTRACTS.md §1): the one schema that validates a submission,
whether it came over AMQP or HTTP (intake), and that the OpenAPI document describes (the
HTTP edge). What a static document cannot state is checked here too and documented as such
(``SEMANTIC_FIELDS``): the institution and branch against the organization, the complaint a
repeat names, and that ``received_at`` is a plausible time (``ReceivedWindow``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from services.common import ids, reference, timeutil
from services.common.fields import CODE, CURRENCY, MoneyString, Pattern, StrictBoolean

SCHEMA_ID = "complaint.submit/1"
# Refusals of a body the document calls valid: they depend on data (the organization, the
# complaints stored) or on the clock, which no static schema states.
SEMANTIC_FIELDS = ("institution", "branch", "repeat_of", "received_at")


class ComplaintNumber(Pattern):
    """A complaint number: its form is the document's pattern, its check digit is checked too."""

    def __init__(self):
        super().__init__(r"^[A-Z0-9]+-[0-9]{6}-[0-9]{7,}$",
                         error="is not a complaint number such as BANKA-261124-0004218 (check digit included)")

    def __call__(self, value: str) -> str:
        if not ids.is_valid_complaint_no(super().__call__(value)):
            raise ValidationError(self.error)
        return value


@dataclass(frozen=True)
class ReceivedWindow:
    """When a complaint may have been received: not after now plus the clock skew allowed
    between the sender's clock and ours, not before the records' retention (REGULATION.md:
    complaint records are kept at least one year, so an older one is no longer a case)."""

    skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=365)

    @classmethod
    def of(cls, settings) -> ReceivedWindow:
        return cls(skew=timedelta(seconds=settings.received_at_skew),
                   max_age=timedelta(days=settings.received_at_max_age_days))

    def problem(self, received_at: datetime, now: datetime) -> str | None:
        """Why ``received_at`` is implausible at ``now``; None when it is plausible.
        Aware datetimes compare without converting, so no year-1 or year-9999 overflows."""
        if received_at > now + self.skew:
            return (f"is in the future: at most {self.skew.total_seconds() / 60:g} minutes after now "
                    "(the time the institution first received it)")
        if received_at < now - self.max_age:
            return (f"is more than {self.max_age.days} days ago, beyond the records' retention; "
                    "such a complaint is no longer taken")
        return None

    def describe(self) -> str:
        return (f"Not after now plus {self.skew.total_seconds() / 60:g} minutes, not more than "
                f"{self.max_age.days} days ago (by default; settings RECEIVED_AT_SKEW, RECEIVED_AT_MAX_AGE_DAYS).")


def for_any_institution(roles, channel: str | None) -> bool:
    """A user submits for their own institution; an admin (a platform operator) and a
    complaint forwarded by a regulator (channel ``regulator``) may name any."""
    return "admin" in (roles or ()) or channel == "regulator"


class CustomerSchema(Schema):
    """Who complains; at least one of phone, email or address, so the customer can be answered."""

    # The document states the "at least one" rule (openapi.py reads JSON_SCHEMA).
    JSON_SCHEMA = {"anyOf": [{"required": ["phone"]}, {"required": ["email"]}, {"required": ["address"]}]}

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = fields.String(validate=Pattern(r"^\+?[0-9][0-9 -]{4,19}$", error="is not a phone number"))
    email = fields.Email(validate=validate.Length(max=254))
    id_type = fields.String(validate=validate.Length(max=32))
    id_number = fields.String(validate=validate.Length(max=64))
    address = fields.String(validate=validate.Length(min=1, max=500))

    @validates_schema
    def answerable(self, data, **kwargs):
        if not any(data.get(key) for key in ("phone", "email", "address")):
            raise ValidationError(
                "give at least one of phone, email or address so the customer can be answered", "_schema"
            )


class SubmissionSchema(Schema):
    """``complaint.submit/1`` plus the channel (from the routing key, or the HTTP body).

    ``known_units`` (institution -> its unit codes, once the organization is known) checks
    ``institution`` and ``branch``; ``window`` and ``now`` check ``received_at`` (None: the
    HTTP edge, which checks what the document states and leaves the clock to intake).
    """

    # Rules across fields, stated for the document as JSON Schema (each mirrors a check of
    # ``cross_field_rules``).
    JSON_SCHEMA = {"allOf": [
        {"anyOf": [{"properties": {"channel": {"not": {"enum": ["regulator"]}}}}, {"required": ["regulator_ref"]}]},
        {"anyOf": [{"properties": {"currency": {"enum": ["CNY"]}}}, {"required": ["amount_in_dispute"]}]},
        {"anyOf": [{"properties": {"new_facts": {"enum": [False]}}}, {"required": ["repeat_of"]}]},
    ]}

    class Meta:
        unknown = RAISE

    schema = fields.String(required=True, validate=validate.Equal(SCHEMA_ID, error=f"must be {SCHEMA_ID}"))
    channel = fields.String(required=True, validate=validate.OneOf(reference.CHANNELS))
    external_id = fields.String(validate=validate.Length(max=128))
    received_at = fields.AwareDateTime(required=True, metadata={
        "description": "When the institution first received it; the time limit counts from it. "
                       + ReceivedWindow().describe()})
    institution = fields.String(required=True, validate=CODE, metadata={
        "description": "An institution of the organization (GET /api/v1/org/units): a user submits "
                       "for their own, except an admin and the regulator channel."})
    branch = fields.String(validate=CODE, metadata={"description": "A unit of the institution."})
    kind = fields.String(required=True, validate=validate.OneOf(reference.KINDS))
    customer = fields.Nested(CustomerSchema, required=True)
    product = fields.String(required=True, validate=validate.OneOf(
        reference.products(), error="unknown product; one of {choices}"))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    demand = fields.String(validate=validate.Length(max=5000))
    amount_in_dispute = MoneyString()
    currency = fields.String(load_default="CNY", validate=CURRENCY, metadata={
        "description": "Other than CNY only with amount_in_dispute."})
    direct = StrictBoolean(load_default=False)
    regulator_ref = fields.String(validate=validate.Length(min=1, max=128), metadata={
        "description": "Required with channel regulator."})
    staff_id = fields.String(validate=CODE)
    respondent_staff = fields.List(fields.String(validate=CODE), load_default=list,
                                   validate=validate.Length(max=50))
    group_size = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=100000))
    cause_event = fields.String(validate=validate.OneOf(reference.CAUSE_EVENTS))
    # A repeat of an earlier complaint, as the agent who took the call knows it: see
    # ``Intake.submit`` for what becomes of it. new_facts: the customer brought new facts
    # and reasons (the open complaint's limit then counts again, Order 3/2020 Art. 18).
    repeat_of = fields.String(validate=ComplaintNumber(), metadata={
        "description": "The number of a complaint of the same institution, check digit included."})
    new_facts = StrictBoolean(metadata={"description": "true only with repeat_of."})

    def __init__(self, *args, known_units: dict | None = None, window: ReceivedWindow | None = ReceivedWindow(),
                 now: Callable[[], datetime] = timeutil.now, **kwargs):
        self.known_units = known_units
        self.window = window
        self.now = now
        super().__init__(*args, **kwargs)

    @pre_load
    def an_object(self, data, **kwargs):
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object", "_schema")
        return data

    @validates("received_at")
    def plausible(self, value: datetime, **kwargs) -> None:
        problem = self.window and self.window.problem(value, self.now())
        if problem:
            raise ValidationError(problem)

    @validates_schema
    def cross_field_rules(self, data, **kwargs):
        errors = {}
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
        if data.get("repeat_of"):
            data.setdefault("new_facts", False)
        return data


class ReceiptSchema(Schema):
    """What a submission is answered with over HTTP (the receipt's complaint part)."""

    complaint_no = fields.String(required=True)
    status = fields.String(required=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True)
