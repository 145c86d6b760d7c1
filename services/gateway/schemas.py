"""What crosses the HTTP edge, as marshmallow schemas; the OpenAPI document is generated from
them (``openapi.py``), so it says what the edge accepts.

The submission's body is ``complaint.submit/1`` plus ``channel``, the very schema intake
validates with (``services.common.submission``): intake, the system of record, checks it, so
that AMQP and HTTP answer the same body with the same errors, and the document describes it.
The edge checks what it owns itself: the query string, the headers, the body's form (JSON,
its depth) and the bodies of the handler actions (422 with field paths before any peer is
asked); the peers still apply the rules of state and role.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate

from services.common import mediation, reference, timeutil
from services.common.fields import CODE, MoneyString, Pattern, text

MISCONDUCT_CLUES = ("collusion", "threats", "obstruction", "violation", "buck_passing")
MAX_IDEMPOTENCY_KEY = 200


class IsoDateOrDateTime(fields.String):
    """A day (``2026-11-22``: the whole day in Shanghai) or a time with an offset, written
    with a year the platform reads (``timeutil.YEARS``); loads to its text."""

    def __init__(self, **kwargs):
        metadata = {
            "pattern": timeutil.YEAR_PATTERN,
            "anyOf": [{"format": "date"}, {"format": "date-time"}],
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text_ = super()._deserialize(value, attr, data, **kwargs)
        try:
            timeutil.parse_bound(text_)
        except ValueError as exc:
            raise ValidationError(f"must be a date (2026-11-22) or a time with an offset: {exc}") from None
        return text_


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
        metadata={"description": "Whether each RPC peer (intake, routing, sla, mediation) answers: up, "
                                 "down (no answer) or error."},
    )


class HealthQuerySchema(Schema):
    peers = fields.Bool(load_default=True, metadata={
        "description": "Ask the RPC peers too (false for a quick liveness probe)."})


# -- complaints -----------------------------------------------------------------------------

class SubmitHeadersSchema(Schema):
    """The submission's headers; ``Idempotency-Key`` plays the part of ``message_id``."""

    class Meta:
        unknown = EXCLUDE

    idempotency_key = fields.Str(
        data_key="Idempotency-Key", required=True,
        validate=[validate.Length(min=1, max=MAX_IDEMPOTENCY_KEY),
                  Pattern(r"^[ -~]*[!-~][ -~]*$", error="must be printable ASCII, not blank")],
        metadata={"description": "Unique per submission of a user; a repeat is answered with the first "
                                 "receipt (200) instead of a second complaint."})


class AssignmentSchema(Reply):
    unit = fields.Str(allow_none=True)
    department = fields.Str(allow_none=True)
    office = fields.Str(allow_none=True, validate=validate.OneOf(reference.OFFICES))
    handler = fields.Str(allow_none=True)


class FirstResponderSchema(Reply):
    """Who first received it (first-inquiry responsibility): the unit and, if known, the person."""

    unit = fields.Str(required=True)
    staff = fields.Str(required=True, allow_none=True)


class SlaSchema(Reply):
    policy = fields.Str(required=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True)
    state = fields.Str(required=True, validate=validate.OneOf(reference.SLA_STATES))


class HistoryEventSchema(Reply):
    at = fields.AwareDateTime(required=True)
    type = fields.Str(required=True)
    actor = fields.Str(allow_none=True)
    details = fields.Dict(metadata={"description": "What the event carried."})


class ComplaintSummarySchema(Reply):
    """A complaint in a list."""

    complaint_no = fields.Str(required=True)
    status = fields.Str(required=True)
    kind = fields.Str(required=True, validate=validate.OneOf(reference.KINDS))
    channel = fields.Str(required=True, validate=validate.OneOf(reference.CHANNELS))
    institution = fields.Str(required=True)
    branch = fields.Str(required=True, allow_none=True)
    unit = fields.Str(required=True, metadata={"description": "The unit accountable for it now."})
    product = fields.Str(required=True)
    subject = fields.Str(required=True)
    received_at = fields.AwareDateTime(required=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True)
    sla_state = fields.Str(required=True, validate=validate.OneOf(reference.SLA_STATES))


class ComplaintSchema(ComplaintSummarySchema):
    """A complaint as it stands (CONTRACTS §3); intake may add further fields."""

    external_id = fields.Str(allow_none=True)
    customer = fields.Dict(required=True)
    description = fields.Str(required=True)
    demand = fields.Str(allow_none=True)
    amount_in_dispute = fields.Str(allow_none=True, metadata={"example": "1200.00"})
    currency = fields.Str(allow_none=True)
    direct = fields.Bool(required=True)
    regulator_ref = fields.Str(allow_none=True)
    group_size = fields.Int(required=True)
    representatives = fields.List(fields.Dict(), metadata={
        "description": "Whom the group chose to speak for it (name, phone), at most 5."})
    cause_event = fields.Str(allow_none=True)
    reply_within_days = fields.Int(allow_none=True, metadata={
        "description": "A suggestion's reply time promised to the customer: its limit."})
    respondent_staff = fields.List(fields.Str(), required=True)
    assignment = fields.Nested(AssignmentSchema, required=True, allow_none=True)
    priority = fields.Str(allow_none=True)
    flags = fields.List(fields.Str(), required=True)
    first_responder = fields.Nested(FirstResponderSchema, required=True)
    transfers = fields.List(fields.Dict(), required=True, metadata={"description": "Transfers, oldest first."})
    sla = fields.Nested(SlaSchema, required=True)
    mediation = fields.Dict(allow_none=True, metadata={"description": "Where referred."})
    history = fields.List(fields.Nested(HistoryEventSchema), required=True,
                          metadata={"description": "Every event, oldest first."})
    allowed_actions = fields.List(fields.Str(), metadata={
        "description": "The lifecycle actions the complaint's status allows now (an extension)."})


class ComplaintOutOfReachSchema(Reply):
    """What an action answers of a complaint it took out of the caller's reach (a refused
    transfer goes up): its number, status and unit."""

    complaint_no = fields.Str(required=True)
    status = fields.Str(required=True)
    unit = fields.Str(required=True)


class ComplaintPageSchema(Reply):
    items = fields.List(fields.Nested(ComplaintSummarySchema), required=True)
    next_cursor = fields.Str(required=True, allow_none=True,
                             metadata={"description": "Pass as cursor for the next page."})


class ComplaintListQuerySchema(Schema):
    status = fields.Str(validate=Pattern(r"^[a-z_]{1,40}$", error="must be a status"))
    unit = fields.Str(validate=CODE, metadata={"description": "A unit and the units below it."})
    overdue = fields.Bool()
    from_ = IsoDateOrDateTime(data_key="from", metadata={
        "description": "Received at or after: a date (2026-11-22) or a datetime with offset."})
    to = IsoDateOrDateTime(metadata={
        "description": "Received at or before: a date or a datetime with offset."})
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Str(validate=validate.Length(min=1, max=1000), metadata={
        "description": "next_cursor of the page before; another string is refused (422)."})


class ComplaintPathSchema(Schema):
    complaint_no = fields.Str(required=True)


# -- organization -----------------------------------------------------------------------------

class DepartmentSchema(Reply):
    code = fields.Str(required=True)
    name = fields.Str(required=True)
    office = fields.Str(required=True, validate=validate.OneOf(reference.OFFICES))


class OrgUnitSchema(Reply):
    code = fields.Str(required=True)
    institution = fields.Str(required=True)
    name = fields.Str(required=True)
    level = fields.Str(required=True, validate=validate.OneOf(reference.LEVELS))
    parent = fields.Str(required=True, allow_none=True)
    region = fields.Str(allow_none=True)
    departments = fields.List(fields.Nested(DepartmentSchema), required=True)
    children = fields.List(fields.Nested(lambda: OrgUnitSchema()), required=True)


class ClockSchema(Reply):
    """One SLA clock of a complaint (the sla service may add fields)."""

    clock = fields.Str(required=True, metadata={"example": "decision"})
    policy = fields.Str(required=True)
    state = fields.Str(required=True, metadata={
        "description": "The clock's own state: running, paused, met, breached..."})
    started_at = fields.AwareDateTime(required=True, allow_none=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True, metadata={"description": "None while paused."})
    warned = fields.List(fields.Str())
    breached = fields.Bool()
    paused = fields.Bool(required=True)
    extensions = fields.Int(required=True, metadata={"description": "Extensions granted so far."})
    promised_limit = fields.Int(allow_none=True, metadata={
        "description": "The limit promised to the customer (a suggestion's reply time), in place of the policy's."})


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
    outcome = fields.Str(required=True, validate=validate.OneOf(reference.OUTCOMES))
    remedy = text()
    amount = MoneyString(allow_none=True)
    message = text(required=True, description="What the customer is told.")


class CloseSchema(ActionSchema):
    satisfaction = fields.Str(required=True, validate=validate.OneOf(reference.SATISFACTION))
    root_cause = fields.Str(required=True, validate=validate.OneOf(reference.causes()))


class WithdrawSchema(ActionSchema):
    reason = text(description="Why the customer withdrew, if given.")


class ExtendSchema(ReasonSchema):
    """No approvals from the caller: the caller's verified roles approve what they may, and
    any other step waits for a person who may (202 with the pending approval)."""

    days = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=366), metadata={
        "description": "Days added to the limit; the policy's extension steps may allow fewer (422)."})


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

    approval_id = fields.Str(required=True, metadata={
        "example": "sla-0f6c2d0e8f6a4f0e9b1d2c3a4b5c6d7e",
        "description": "Its prefix names the service that keeps it (sla, mediation)."})
    action = fields.Str(required=True, metadata={"example": "extend"})
    needs = fields.List(fields.Str(), required=True, metadata={"description": "The roles that may decide it."})
    of_unit = fields.Str(required=True, allow_none=True, metadata={"description": "The unit it is addressed to."})
    complaint_no = fields.Str()
    state = fields.Str(validate=validate.OneOf(("pending", "approved", "refused")))
    positions = fields.List(fields.Str(), metadata={"description": "The approval positions of the rule book."})
    request = fields.Dict(metadata={"description": "What is asked: days and reason, ground and evidence, a "
                                                   "referral and its authority, or an authority raised."})
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
    approval_id = fields.Str(required=True, validate=Pattern(r"^[a-z]+-[0-9a-f]{32}$", error="must be an approval id"))


class ApprovalNoteSchema(Schema):
    note = text(required=True, description="Why: kept with the decision, on the complaint's history.")


class MisconductSchema(ActionSchema):
    clue = fields.Str(required=True, validate=validate.OneOf(MISCONDUCT_CLUES))
    note = text(required=True, description="What was seen: the referral to discipline inspection keeps it.")


# -- mediation (CONTRACTS §4): the request bodies are services.common.mediation's -----------------

class MediationOrganizationViewSchema(Reply):
    code = fields.Str(required=True)
    name = fields.Str(required=True)
    regions = fields.List(fields.Str(), required=True)
    url = fields.Str(required=True)
    contact = fields.Nested(mediation.MediationContactSchema, required=True)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    secret_set_at = fields.AwareDateTime(required=True, metadata={
        "description": "When the secret was last set (never the secret)."})
    retired_at = fields.AwareDateTime(required=True, allow_none=True, metadata={
        "description": "Retired: no new referral goes to it; its open referrals keep going."})


class OrganizationPathSchema(Schema):
    code = fields.Str(required=True, validate=mediation.ORGANIZATION_CODE)


class ReferralCreatedSchema(Reply):
    referral_id = fields.Str(required=True)
    organization = fields.Str(required=True)
    status = fields.Str(required=True, validate=validate.OneOf(reference.MEDIATION_STATUSES))


class MediationDeliverySchema(Reply):
    state = fields.Str(required=True, metadata={
        "description": "pending (being delivered or waiting for a retry), delivered, or failed (waiting for "
                       "an operator)."})
    next_attempt_at = fields.AwareDateTime(required=True, allow_none=True)
    in_flight = fields.Bool(required=True)
    messages = fields.List(fields.Dict(), required=True, metadata={
        "description": "Each message (the referral, each raise) with its Idempotency-Key, state and attempts."})


class ReferralSchema(Reply):
    referral_id = fields.Str(required=True)
    complaint_no = fields.Str(required=True)
    organization = fields.Dict(required=True, metadata={"description": "code, name and contact."})
    status = fields.Str(required=True, validate=validate.OneOf(reference.MEDIATION_STATUSES))
    authority = fields.Dict(required=True, metadata={
        "description": "max_settlement_amount, currency and approver, in force."})
    authority_raises = fields.List(fields.Dict(), required=True)
    events = fields.List(fields.Dict(), required=True, metadata={
        "description": "The organization's callbacks applied."})
    agreement = fields.Dict(required=True, allow_none=True)
    carried_out = fields.Dict(required=True, allow_none=True)
    delivery = fields.Nested(MediationDeliverySchema, required=True)
    referral = fields.Dict(required=True, metadata={"description": "The mediation.referral/1 body as delivered."})


class ReferralPathSchema(Schema):
    referral_id = fields.Str(required=True, validate=Pattern(r"^[A-Z0-9]+-[0-9]{6}-[0-9]{7,}-M[0-9]+$",
                                                             error="must be a referral id"))


class CallbackAnswerSchema(Reply):
    applied = fields.Bool(required=True, metadata={"description": "False when this event_id was applied before."})
    referral = fields.Nested(ReferralSchema, required=True)
