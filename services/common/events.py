"""The event envelope and the one catalogue of event types.

Every domain event travels as::

    {"event_id", "type", "occurred_at", "complaint_no", "version", "producer", "body": {...}}

on the topic exchange ``<producer>.events`` with the event type as routing key (the wire
format nameko's ``EventDispatcher`` uses, so a plain ``event_handler`` can listen too).
The catalogue names, for each type, its producer, the schema of its body and the services
that subscribe to it. The subscribers' queues (``<service>.<type>``) are declared from this
catalogue before anything publishes, because the broker drops an event no queue is bound to.
"""
from __future__ import annotations

from dataclasses import dataclass

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from services.common import ids, reference, timeutil

ENVELOPE_VERSION = 1


class EnvelopeSchema(Schema):
    event_id = fields.UUID(required=True)
    type = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    complaint_no = fields.String(required=True, allow_none=True)
    version = fields.Integer(required=True)
    producer = fields.String(required=True)
    body = fields.Dict(required=True)


class _Body(Schema):
    class Meta:
        # A newer producer may add fields; consumers read what they know.
        unknown = INCLUDE


class ComplaintReceived(_Body):
    complaint_no = fields.String(required=True)
    institution = fields.String(required=True)
    branch = fields.String(allow_none=True)
    kind = fields.String(required=True, validate=validate.OneOf(reference.KINDS))
    channel = fields.String(required=True)
    product = fields.String(required=True)
    received_at = fields.AwareDateTime(required=True)
    # None when the policy data selects none (intake answered without a due date).
    policy = fields.String(required=True, allow_none=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True)
    amount_in_dispute = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    direct = fields.Boolean(required=True)
    regulator_ref = fields.String(allow_none=True)
    staff_id = fields.String(allow_none=True)
    respondent_staff = fields.List(fields.String(), required=True)
    group_size = fields.Integer(required=True)
    cause_event = fields.String(allow_none=True)
    # The reply time promised for a suggestion, in the days of the policy's clock: its limit.
    reply_within_days = fields.Integer(allow_none=True)
    app_id = fields.String(required=True)
    external_id = fields.String(allow_none=True)


class TreeUnit(Schema):
    institution = fields.String(required=True)
    level = fields.String(required=True, validate=validate.OneOf(reference.LEVELS))
    parent = fields.String(required=True, allow_none=True)
    # The unit's region (GB/T 2260 code): mediation refers a complaint by its unit's region.
    region = fields.String(allow_none=True)


class OrganizationChanged(_Body):
    """The unit codes of each institution, announced whenever routing loads its organization,
    and (optional) the tree every service that decides who may act keeps
    (``services.common.orgtree``)."""

    institutions = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)
    units = fields.Dict(keys=fields.String(), values=fields.Nested(TreeUnit))


class _ComplaintFact(_Body):
    """Facts about one complaint: who did it and when, besides what each type adds."""

    complaint_no = fields.String(required=True)
    at = fields.AwareDateTime(required=True)
    actor = fields.String(required=True, allow_none=True)


# -- intake's lifecycle ------------------------------------------------------------------

class ComplaintDecided(_ComplaintFact):
    outcome = fields.String(required=True, validate=validate.OneOf(reference.OUTCOMES))
    unit = fields.String(required=True)
    remedy = fields.String(allow_none=True)
    amount = fields.String(allow_none=True)


class ComplaintClosed(_ComplaintFact):
    satisfaction = fields.String(required=True, validate=validate.OneOf(reference.SATISFACTION))
    root_cause = fields.String(required=True)


class ComplaintReopened(_ComplaintFact):
    """The customer asked for a review (核查) of the decision."""

    reason = fields.String(required=True)
    decided_at = fields.AwareDateTime(required=True)
    # When the gateway reported the decision delivered to the customer: the review window
    # (Art. 20) runs from it; null when no delivery was reported (the window has not started).
    delivered_at = fields.AwareDateTime(allow_none=True)
    decided_by_unit = fields.String(required=True)


class ComplaintWithdrawn(_ComplaintFact):
    reason = fields.String(allow_none=True)


class ComplaintRepeated(_ComplaintFact):
    """A repeat of an open complaint was merged into it; new facts restart its clock."""

    repeat_of = fields.String(required=True)
    new_facts = fields.Boolean(required=True)


# -- routing -----------------------------------------------------------------------------

class ComplaintAssigned(_ComplaintFact):
    unit = fields.String(required=True)
    department = fields.String(required=True, allow_none=True)
    office = fields.String(required=True, allow_none=True, validate=validate.OneOf(reference.OFFICES))
    handler = fields.String(allow_none=True)
    reason = fields.String(required=True)  # routed, transfer_accepted, transfer_rejected, escalated, review
    first_responder = fields.Dict(allow_none=True)
    priority = fields.String(allow_none=True)
    flags = fields.List(fields.String())


class ComplaintAccepted(_ComplaintFact):
    unit = fields.String(required=True)


class ComplaintTransferRequested(_ComplaintFact):
    from_unit = fields.String(required=True)
    to_unit = fields.String(required=True)
    reason = fields.String(required=True)


class ComplaintTransferred(_ComplaintFact):
    from_unit = fields.String(required=True)
    to_unit = fields.String(required=True)
    transfers = fields.Integer(required=True)


class ComplaintTransferRejected(_ComplaintFact):
    from_unit = fields.String(required=True)
    to_unit = fields.String(required=True)
    reason = fields.String(required=True)
    escalated_to = fields.String(required=True)


class ComplaintTransferCancelled(_ComplaintFact):
    """A pending transfer overtaken by an escalation (SLA breach, mass complaint)."""

    from_unit = fields.String(required=True)
    to_unit = fields.String(required=True)
    reason = fields.String(required=True)


class ComplaintEscalated(_ComplaintFact):
    from_unit = fields.String(required=True)
    to_unit = fields.String(required=True)
    reason = fields.String(required=True)
    cause = fields.String(required=True)  # handler, sla_breach, mass_complaint, authority, major, transfer_rejected


class MisconductReferred(_ComplaintFact):
    unit = fields.String(required=True)
    department = fields.String(required=True)
    clue = fields.String(required=True)


# -- reporting -------------------------------------------------------------------------

class MassComplaintDetected(_ComplaintFact):
    """One complaint of a group found to be a mass complaint (many customers, one cause):
    it goes up the hierarchy and is reported to the regulator (2012 notice §15)."""

    group_id = fields.String(required=True)
    group_size = fields.Integer(required=True, validate=validate.Range(min=2))
    note = fields.String(allow_none=True)


class Approver(Schema):
    """A person who approved a step: who, of which unit, holding which positions."""

    sub = fields.String(required=True)
    name = fields.String(allow_none=True)
    unit = fields.String(required=True)
    positions = fields.List(fields.String(), required=True)


# -- mediation ---------------------------------------------------------------------------

class _MediationFact(_ComplaintFact):
    """Facts of a referral. ``mediation`` is the referral as it stands after the fact (the
    complaint's view keeps the newest); it never holds the authority, which is the
    institution's and the mediator's, nor personal data."""

    referral_id = fields.String(required=True)
    organization = fields.String(required=True)
    mediation = fields.Dict(required=True)


class ComplaintReferred(_MediationFact):
    organization_name = fields.String(required=True)
    contact = fields.Dict(required=True)
    reason = fields.String(required=True)
    # Who approved the authority the referral grants (the referrer, or the person who decided
    # the pending approval ``approval_id``): the clocks' pause for mediation needs no other.
    approvers = fields.List(fields.Nested(Approver))
    approval_id = fields.String(allow_none=True)


class MediationStatusChanged(_MediationFact):
    """The organization reported a new status (a signed callback, CONTRACTS §4)."""

    status = fields.String(required=True, validate=validate.OneOf(reference.MEDIATION_STATUSES))
    previous = fields.String(required=True, validate=validate.OneOf(reference.MEDIATION_STATUSES))
    callback_id = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    # The mediation ended without an agreement (declined, failed, withdrawn): the clocks
    # paused for it resume.
    ended = fields.Boolean(required=True)
    # agreement_reached: {terms, signed_on, carry_out_by (None: the policy's limit), amount, currency}
    agreement = fields.Dict(allow_none=True)


class MediationAuthorityRaised(_MediationFact):
    raise_no = fields.Integer(required=True)
    authority = fields.Dict(required=True)
    approvers = fields.List(fields.Nested(Approver))
    approval_id = fields.String(allow_none=True)


class AgreementCarriedOut(_MediationFact):
    note = fields.String(allow_none=True)


class _DeliveryFact(_MediationFact):
    message = fields.String(required=True, validate=validate.OneOf(["referral", "authority"]))
    idempotency_key = fields.String(required=True)
    attempts = fields.Integer(required=True)


class MediationDelivered(_DeliveryFact):
    pass


class MediationDeliveryFailed(_DeliveryFact):
    """Final: the organization refused it (a 4xx other than 408/429), or it answered nothing
    good for the whole retry period. An operator corrects the registry and resends."""

    cause = fields.String(required=True, validate=validate.OneOf(["refused", "gave_up"]))
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class MediationDeliveryResent(_DeliveryFact):
    pass


# -- the SLA clocks ----------------------------------------------------------------------

class _ClockFact(_ComplaintFact):
    policy = fields.String(required=True)
    clock = fields.String(required=True)
    due_by = fields.AwareDateTime(required=True, allow_none=True)
    # due_by was counted on a calendar year the State Council has not published yet.
    provisional = fields.Boolean()


class SlaStarted(_ClockFact):
    pass


class SlaWarning(_ClockFact):
    label = fields.String(required=True)


class SlaBreached(_ClockFact):
    unit = fields.String(allow_none=True)


class SlaMet(_ClockFact):
    state = fields.String(required=True, validate=validate.OneOf(["met", "breached"]))


class SlaExtended(_ClockFact):
    previous_due_by = fields.AwareDateTime(required=True, allow_none=True)
    total = fields.Integer(required=True)
    reason = fields.String(required=True)
    approved_by = fields.List(fields.String())  # the positions that approved the step
    approvers = fields.List(fields.Nested(Approver))  # the people who held them
    approval_id = fields.String(allow_none=True)  # when a pending approval was decided


class SlaPaused(_ClockFact):
    reason = fields.String(required=True)
    ground = fields.String(allow_none=True)  # a pause ground of the policy data
    evidence = fields.String(allow_none=True)
    approvers = fields.List(fields.Nested(Approver))
    approval_id = fields.String(allow_none=True)


class SlaResumed(_ClockFact):
    reason = fields.String(required=True)


class SlaRescheduled(_ClockFact):
    """A recompute after a calendar change moved the due date (``moved``), or kept it while
    the year it was counted on was published (no longer provisional)."""

    previous_due_by = fields.AwareDateTime(required=True, allow_none=True)
    previous_provisional = fields.Boolean(required=True)
    moved = fields.Boolean(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(["year_published", "calendar_changed"]))
    state = fields.String(required=True, validate=validate.OneOf(reference.RUNNING_SLA_STATES))


# -- approvals (any service owning an action that needs one: sla, mediation) ---------------

class ApprovalRequested(_ComplaintFact):
    """A step the requester's roles may not approve waits for a person who may (``actor``
    is the requester)."""

    approval_id = fields.String(required=True)
    action = fields.String(required=True)
    positions = fields.List(fields.String(), required=True)
    needs = fields.List(fields.String(), required=True)
    of_unit = fields.String(required=True, allow_none=True)
    request = fields.Dict(required=True)


class ApprovalDecided(_ComplaintFact):
    """Approved or refused by a person holding a position the step names (``actor``)."""

    approval_id = fields.String(required=True)
    action = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(["approved", "refused"]))
    note = fields.String(required=True)
    requested_by = fields.String(required=True)


@dataclass(frozen=True)
class EventType:
    """One type of event: its producer (or producers, when several services publish the
    same fact: each publishes on its own exchange and a subscriber's one queue is bound to
    every one of them), its body's schema, its subscribers."""

    name: str
    producer: str | tuple[str, ...]
    schema: type[Schema]
    subscribers: tuple[str, ...] = ()

    @property
    def producers(self) -> tuple[str, ...]:
        return (self.producer,) if isinstance(self.producer, str) else tuple(self.producer)


CATALOGUE: dict[str, EventType] = {}


def register(event_type: EventType) -> None:
    CATALOGUE[event_type.name] = event_type


for _event in (
    EventType("complaint_received", "intake", ComplaintReceived, ("routing", "sla")),
    EventType("complaint_decided", "intake", ComplaintDecided, ("sla",)),
    EventType("complaint_closed", "intake", ComplaintClosed, ("sla",)),
    EventType("complaint_reopened", "intake", ComplaintReopened, ("routing", "sla")),
    EventType("complaint_withdrawn", "intake", ComplaintWithdrawn, ("sla",)),
    EventType("complaint_repeated", "intake", ComplaintRepeated, ("sla",)),
    EventType("organization_changed", "routing", OrganizationChanged, ("intake", "sla", "mediation")),
    EventType("complaint_assigned", "routing", ComplaintAssigned, ("intake",)),
    EventType("complaint_accepted", "routing", ComplaintAccepted, ("intake",)),
    EventType("complaint_transfer_requested", "routing", ComplaintTransferRequested, ("intake",)),
    EventType("complaint_transferred", "routing", ComplaintTransferred, ("intake",)),
    EventType("complaint_transfer_rejected", "routing", ComplaintTransferRejected, ("intake",)),
    EventType("complaint_transfer_cancelled", "routing", ComplaintTransferCancelled, ("intake",)),
    EventType("complaint_escalated", "routing", ComplaintEscalated, ("intake",)),
    EventType("misconduct_referred", "routing", MisconductReferred, ("intake",)),
    EventType("mass_complaint_detected", "reporting", MassComplaintDetected, ("routing",)),
    EventType("sla_started", "sla", SlaStarted, ("intake",)),
    EventType("sla_warning", "sla", SlaWarning, ("intake",)),
    EventType("sla_breached", "sla", SlaBreached, ("intake", "routing")),
    EventType("sla_met", "sla", SlaMet, ("intake",)),
    EventType("sla_extended", "sla", SlaExtended, ("intake",)),
    EventType("sla_paused", "sla", SlaPaused, ("intake",)),
    EventType("sla_resumed", "sla", SlaResumed, ("intake",)),
    EventType("sla_rescheduled", "sla", SlaRescheduled, ("intake",)),
    EventType("complaint_referred", "mediation", ComplaintReferred, ("intake", "sla")),
    EventType("mediation_status_changed", "mediation", MediationStatusChanged, ("intake", "sla")),
    EventType("mediation_authority_raised", "mediation", MediationAuthorityRaised, ("intake",)),
    EventType("agreement_carried_out", "mediation", AgreementCarriedOut, ("intake", "sla")),
    EventType("mediation_delivered", "mediation", MediationDelivered, ("intake",)),
    EventType("mediation_delivery_failed", "mediation", MediationDeliveryFailed, ("intake",)),
    EventType("mediation_delivery_resent", "mediation", MediationDeliveryResent, ("intake",)),
    # Approvals: sla's of extensions and pauses, mediation's of a mediator's authority.
    EventType("approval_requested", ("sla", "mediation"), ApprovalRequested, ("intake",)),
    EventType("approval_decided", ("sla", "mediation"), ApprovalDecided, ("intake",)),
):
    register(_event)


class UnknownEvent(ValueError):
    pass


def event_type(name: str) -> EventType:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownEvent(f"event type {name!r} is not in the catalogue") from None


def exchange_name(producer: str) -> str:
    return f"{producer}.events"


def queue_name(subscriber: str, event: str) -> str:
    return f"{subscriber}.{event}"


def make_event(name: str, complaint_no: str | None, body: dict, producer: str) -> dict:
    """A new event, its body checked against the catalogue (raises ValidationError)."""
    kind = event_type(name)
    if producer not in kind.producers:
        raise UnknownEvent(f"{producer} may not publish {name}; its producers are {', '.join(kind.producers)}")
    errors = kind.schema().validate(body)
    if errors:
        raise ValidationError(errors)
    return {
        "event_id": ids.new_id(),
        "type": name,
        "occurred_at": timeutil.iso(timeutil.now()),
        "complaint_no": complaint_no,
        "version": ENVELOPE_VERSION,
        "producer": producer,
        "body": body,
    }


def validate_event(event: dict) -> dict:
    """Errors of the envelope and of the body against the catalogue; empty when valid."""
    errors = EnvelopeSchema().validate(event)
    if errors:
        return errors
    body_errors = event_type(event["type"]).schema().validate(event["body"])
    return {"body": body_errors} if body_errors else {}
