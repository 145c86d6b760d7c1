"""What crosses the HTTP edge, as marshmallow schemas.

The OpenAPI document is generated from these (see ``openapi.py``). The edge validates only
what it owns: the query string, the ``channel`` and the headers. The complaint itself is
validated by intake, the system of record, so that the AMQP and HTTP channels answer the
same body with the same errors; ``SubmitComplaintSchema`` documents that body as
``complaint.submit/1`` defines it (CONTRACTS §1). The bodies of the handler actions are the
edge's own and are checked here (422 with field paths before any peer is asked); the peers
still apply the rules of state and role.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate

from services.common import reference

# CONTRACTS §1.
CHANNELS = ("phone", "letter", "visit", "web", "app", "wechat", "email", "regulator")
KINDS = ("complaint", "suggestion", "consultation")
LEVELS = ("head_office", "tier1", "city", "county")
OFFICES = ("front", "middle", "back")
SLA_STATES = ("on_track", "warning", "breached", "met", "paused")
CODE = validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$", error="Must be a code (letters, digits, _.:-).")
OUTCOMES = ("upheld", "partially_upheld", "rejected")
SATISFACTION = ("satisfied", "unsatisfied", "no_response")
MISCONDUCT_CLUES = ("collusion", "threats", "obstruction", "violation", "buck_passing")
MAX_TEXT = 20000


class IsoDateOrDateTime(fields.Field):
    """An ISO 8601 date (``2026-11-22``) or a datetime with an offset; loads to its ISO text."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date or a datetime with an offset.",
        "naive": "A datetime needs an offset, for example +08:00.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text).isoformat()
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise self.make_error("invalid") from None
        if moment.tzinfo is None:
            raise self.make_error("naive")
        return moment.isoformat()

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


class MoneyString(fields.Str):
    """A non-negative amount written as a decimal string ("1200.00"): exact, never a float."""

    default_error_messages = {
        "invalid": 'Must be a decimal string such as "1200.00".',
        "negative": "Must not be negative.",
        "places": "At most two decimal places.",
        "large": "Too large.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise self.make_error("invalid") from None
        if not amount.is_finite():
            raise self.make_error("invalid")
        if amount < 0:
            raise self.make_error("negative")
        if amount.as_tuple().exponent < -2:
            raise self.make_error("places")
        if amount >= Decimal("1e15"):
            raise self.make_error("large")
        return f"{amount:.2f}"


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


def text(required: bool = False, description: str = "", **kwargs) -> fields.Str:
    """Free text of a person: not blank, at most ``MAX_TEXT`` characters."""
    return fields.Str(required=required, validate=[validate.Length(max=MAX_TEXT), _not_blank],
                      metadata={"description": description} if description else {}, **kwargs)


class Reply(Schema):
    """A response body: the peers may add fields (contracts grow, never break)."""

    class Meta:
        unknown = INCLUDE


# -- errors and health -------------------------------------------------------------------

class ErrorDetailSchema(Schema):
    code = fields.Str(required=True, metadata={"example": "validation_failed"})
    message = fields.Str(required=True)
    details = fields.Dict(
        keys=fields.Str(), values=fields.Raw(), required=True,
        metadata={"description": "For 422: field path -> list of messages. Else usually empty."},
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class HealthSchema(Reply):
    status = fields.Str(required=True, metadata={"example": "ok"})
    peers = fields.Dict(
        keys=fields.Str(), values=fields.Str(validate=validate.OneOf(("up", "down", "error"))),
        metadata={"description": "Whether each RPC peer (intake, routing, sla) answers: up, down "
                                 "(no answer) or error."},
    )


class HealthQuerySchema(Schema):
    peers = fields.Bool(load_default=True, metadata={
        "description": "Ask the RPC peers too (false for a quick liveness probe)."})


# -- complaints -----------------------------------------------------------------------------

class CustomerSchema(Schema):
    name = fields.Str(required=True)
    phone = fields.Str()
    email = fields.Str()
    id_type = fields.Str()
    id_number = fields.Str()
    address = fields.Str()


class SubmitComplaintSchema(Schema):
    """``complaint.submit/1`` plus ``channel``; header ``Idempotency-Key`` is its message_id."""

    channel = fields.Str(required=True, validate=validate.OneOf(CHANNELS))
    schema = fields.Str(required=True, validate=validate.Equal("complaint.submit/1"))
    external_id = fields.Str()
    received_at = fields.AwareDateTime(required=True)
    institution = fields.Str(required=True)
    branch = fields.Str()
    kind = fields.Str(required=True, validate=validate.OneOf(KINDS))
    customer = fields.Nested(
        CustomerSchema, required=True,
        metadata={"description": "At least one of phone, email or address."},
    )
    product = fields.Str(required=True, metadata={"description": "Business category code."})
    subject = fields.Str(required=True, validate=validate.Length(max=200))
    description = fields.Str(required=True, validate=validate.Length(max=20000))
    demand = fields.Str()
    amount_in_dispute = fields.Decimal(as_string=True, places=2)
    currency = fields.Str(load_default="CNY")
    direct = fields.Bool()
    regulator_ref = fields.Str(metadata={"description": "Required with channel regulator."})
    staff_id = fields.Str()
    respondent_staff = fields.List(fields.Str())
    group_size = fields.Int(validate=validate.Range(min=1))
    cause_event = fields.Str(
        validate=validate.OneOf(("natural_disaster", "safety_accident", "public_health")))


class ChannelSchema(Schema):
    """The part of the submit body the edge checks itself (the rest is intake's)."""

    class Meta:
        unknown = EXCLUDE

    channel = fields.Str(required=True, validate=validate.OneOf(CHANNELS))


class ComplaintReceiptSchema(Reply):
    complaint_no = fields.Str(required=True)
    status = fields.Str(required=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True)


class AssignmentSchema(Reply):
    unit = fields.Str(allow_none=True)
    department = fields.Str(allow_none=True)
    office = fields.Str(allow_none=True, validate=validate.OneOf(OFFICES))
    handler = fields.Str(allow_none=True)


class SlaSchema(Reply):
    policy = fields.Str(allow_none=True)
    due_by = fields.AwareDateTime(allow_none=True)
    state = fields.Str(validate=validate.OneOf(SLA_STATES))


class HistoryEventSchema(Reply):
    at = fields.AwareDateTime(required=True)
    type = fields.Str(required=True)
    actor = fields.Str(allow_none=True)


class ComplaintSchema(Reply):
    """A complaint as it stands (CONTRACTS §3); intake may add further fields."""

    complaint_no = fields.Str(required=True)
    status = fields.Str(required=True)
    kind = fields.Str(validate=validate.OneOf(KINDS))
    channel = fields.Str(validate=validate.OneOf(CHANNELS))
    institution = fields.Str()
    branch = fields.Str(allow_none=True)
    assignment = fields.Nested(AssignmentSchema, allow_none=True)
    first_responder = fields.Str(allow_none=True)
    sla = fields.Nested(SlaSchema, allow_none=True)
    history = fields.List(fields.Nested(HistoryEventSchema),
                          metadata={"description": "Every event, oldest first."})
    mediation = fields.Dict(allow_none=True, metadata={"description": "Where referred."})


class ComplaintPageSchema(Reply):
    items = fields.List(fields.Nested(ComplaintSchema), required=True)
    next_cursor = fields.Str(required=True, allow_none=True,
                             metadata={"description": "Pass as cursor for the next page."})


class ComplaintListQuerySchema(Schema):
    status = fields.Str(validate=validate.Regexp(r"^[a-z_]{1,40}$", error="Must be a status."))
    unit = fields.Str(validate=CODE, metadata={"description": "A unit and the units below it."})
    overdue = fields.Bool()
    from_ = IsoDateOrDateTime(data_key="from", metadata={
        "description": "Received at or after: a date (2026-11-22) or a datetime with offset."})
    to = IsoDateOrDateTime(metadata={
        "description": "Received at or before: a date or a datetime with offset."})
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Str(validate=validate.Length(min=1, max=1000))


class ComplaintPathSchema(Schema):
    complaint_no = fields.Str(required=True)


# -- organization -----------------------------------------------------------------------------

class DepartmentSchema(Reply):
    code = fields.Str(required=True)
    name = fields.Str(required=True)
    office = fields.Str(required=True, validate=validate.OneOf(OFFICES))


class OrgUnitSchema(Reply):
    code = fields.Str(required=True)
    institution = fields.Str(required=True)
    name = fields.Str(required=True)
    level = fields.Str(required=True, validate=validate.OneOf(LEVELS))
    parent = fields.Str(required=True, allow_none=True)
    region = fields.Str(allow_none=True)
    departments = fields.List(fields.Nested(DepartmentSchema), required=True)
    children = fields.List(fields.Nested(lambda: OrgUnitSchema()), required=True)


class ClockSchema(Reply):
    """One SLA clock of a complaint (the sla service may add fields)."""

    clock = fields.Str(required=True, metadata={"example": "decision"})
    policy = fields.Str()
    state = fields.Str(metadata={"description": "The clock's own state: running, paused, stopped..."})
    started_at = fields.AwareDateTime(allow_none=True)
    due_by = fields.AwareDateTime(allow_none=True, metadata={"description": "None while paused."})
    paused = fields.Bool()
    extensions = fields.Int(metadata={"description": "Extensions granted so far."})


# -- handler actions (CONTRACTS §3) -----------------------------------------------------------

class ActionSchema(Schema):
    """Every action body: the token says who acts; ``actor`` is only kept as a note."""

    actor = fields.Str(validate=validate.Length(min=1, max=200), metadata={
        "description": "Free text or a staff id, kept as a note; the bearer token names who acts."})


class ReasonSchema(ActionSchema):
    reason = text(required=True)


class TransferSchema(ReasonSchema):
    to_unit = fields.Str(required=True, validate=CODE, metadata={"description": "The unit asked to take it."})


class DecisionSchema(ActionSchema):
    outcome = fields.Str(required=True, validate=validate.OneOf(OUTCOMES))
    remedy = text()
    amount = MoneyString(allow_none=True, metadata={"example": "1200.00"})
    message = text(required=True, description="What the customer is told.")


class CloseSchema(ActionSchema):
    satisfaction = fields.Str(required=True, validate=validate.OneOf(SATISFACTION))
    root_cause = fields.Str(required=True, validate=validate.OneOf(reference.causes()))


class WithdrawSchema(ActionSchema):
    reason = text(description="Why the customer withdrew, if given.")


class ExtendSchema(ReasonSchema):
    """No approvals from the caller: the caller's verified roles approve what they may, and
    any other step waits for a person who may (202 with the pending approval)."""

    days = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class PauseSchema(ReasonSchema):
    ground = fields.Str(required=True, validate=CODE, metadata={
        "description": "A pause ground of the policy data: third_party_appraisal, mediation, ..."})
    evidence = text(description="What shows the ground: the body commissioned and its reference, the "
                                "mediation case ... (an extension; the sla service refuses a pause without it "
                                "on a ground whose policy data requires it, as every shipped ground does).")


class ResumeSchema(ReasonSchema):
    ground = fields.Str(validate=CODE, metadata={"description": "The ground of the pause it ends, if given."})


class ActionAcceptedSchema(Reply):
    """202: the action is done, and the complaint's record has not caught up with it yet."""

    complaint_no = fields.Str(required=True)
    action = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"example": "accepted"})
    location = fields.Str(required=True, metadata={"description": "Where to read the complaint as it stands."})
    events = fields.List(fields.Str(), required=True, metadata={
        "description": "The facts that announce the action; the complaint's history lists them once applied."})


class ApproverSchema(Reply):
    sub = fields.Str(required=True)
    name = fields.Str(allow_none=True)
    unit = fields.Str(required=True)
    roles = fields.List(fields.Str())
    positions = fields.List(fields.Str())


class ApprovalSchema(Reply):
    """A step that waits for (or got) the approval of a person who may give it."""

    approval_id = fields.Str(required=True, metadata={"example": "sla-0f6c2d0e8f6a4f0e9b1d2c3a4b5c6d7e"})
    action = fields.Str(required=True, metadata={"example": "extend"})
    needs = fields.List(fields.Str(), required=True, metadata={"description": "The roles that may decide it."})
    of_unit = fields.Str(required=True, allow_none=True, metadata={"description": "The unit it is addressed to."})
    complaint_no = fields.Str()
    state = fields.Str(validate=validate.OneOf(("pending", "approved", "refused")))
    positions = fields.List(fields.Str(), metadata={"description": "The approval positions of the rule book."})
    request = fields.Dict(metadata={"description": "What is asked: days and reason, or ground and evidence."})
    requested_by = fields.Nested(ApproverSchema)
    requested_at = fields.AwareDateTime()
    decided_by = fields.Nested(ApproverSchema, allow_none=True)
    decided_at = fields.AwareDateTime(allow_none=True)
    note = fields.Str(allow_none=True)
    limit_due_by = fields.AwareDateTime(allow_none=True, metadata={"description": "The limit of the clocks concerned."})
    past_limit = fields.Bool(metadata={"description": "The limit ran out while it waited."})


class ApprovalPageSchema(Reply):
    items = fields.List(fields.Nested(ApprovalSchema), required=True)


class ApprovalDecidedSchema(ApprovalSchema):
    complaint = fields.Nested(ComplaintSchema, allow_none=True, metadata={
        "description": "The complaint once its record shows the decision (absent if it has not caught up)."})


class ApprovalsQuerySchema(Schema):
    pending = fields.Bool(load_default=True, metadata={
        "description": "true: those waiting that the caller may decide; false: also decided ones and the "
                       "caller's own requests."})


class ApprovalPathSchema(Schema):
    approval_id = fields.Str(required=True, validate=validate.Regexp(r"^[a-z]+-[0-9a-f]{32}$"))


class ApprovalNoteSchema(Schema):
    note = text(required=True, description="Why: kept with the decision, on the complaint's history.")


class MisconductSchema(ActionSchema):
    clue = fields.Str(required=True, validate=validate.OneOf(MISCONDUCT_CLUES))
    note = text(required=True, description="What was seen: the referral to discipline inspection keeps it.")
