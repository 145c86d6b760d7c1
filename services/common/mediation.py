"""What crosses mediation's edges (CONTRACTS §3 and §4), one schema each: an organization of
the registry, a referral and a raise of its authority as handlers ask for them, an
agreement carried out, and the organizations' signed callbacks. The mediation service
validates with them; the HTTP edge checks a handler's body with the same schema first and
documents it. What a static document cannot state is checked by the mediation service and
named per operation (``*_SEMANTIC``): it depends on data (the regions, the registry) or on
who asks. Errors are maps from field path to messages (422).
"""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from services.common import reference
from services.common.fields import CURRENCY, Day, Moment, MoneyString, Pattern, StrictBoolean, text

ORGANIZATION_CODE = Pattern(r"^[A-Z0-9][A-Z0-9_-]{1,31}$", error="must be 2-32 capital letters, digits, - or _")
REGION = Pattern(r"^[0-9]{6}$", error="must be a GB/T 2260 code of six digits")
# A shared secret long enough that guessing it is hopeless.
MIN_SECRET = 16
SHORT = 200

# Refusals of a body the document calls valid: each needs data the document does not hold.
ORGANIZATION_SEMANTIC = ("regions",)  # a code of a province the region data knows
REFER_SEMANTIC = ("organization", "authority.approver")  # in service and covering; the caller's own id
RAISE_SEMANTIC = ("authority.approver", "authority.currency", "authority.max_settlement_amount")  # vs in force
# The terms of agreement_reached (AgreementSchema, read from details).
CALLBACK_SEMANTIC = ("details", "details.terms", "details.signed_on", "details.carry_out_by", "details.amount",
                     "details.currency")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class MediationContactSchema(_Strict):
    phone = text(required=True, max_length=40)
    address = text(max_length=500)


class MediationOrganizationSchema(_Strict):
    """``PUT /api/v1/mediation/organizations/{code}``; the code comes from the path."""

    name = text(required=True, max_length=SHORT)
    regions = fields.List(fields.String(validate=REGION), required=True, validate=validate.Length(min=1, max=500),
                          metadata={"description": "GB/T 2260 codes; a province's code covers its prefectures "
                                                   "and counties.", "example": ["370000"]})
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     metadata={"description": "Where referrals and raises are posted."})
    secret = fields.String(required=True, load_only=True, validate=validate.Length(min=MIN_SECRET, max=500),
                           metadata={"description": "The shared HMAC secret; never shown back."})
    contact = fields.Nested(MediationContactSchema, required=True)


class AuthoritySchema(_Strict):
    max_settlement_amount = MoneyString(required=True, metadata={"example": "5000.00"})
    currency = fields.String(required=True, validate=CURRENCY, metadata={"example": "CNY"})
    # Approval is an identity: the approver is the person who approves, by their own token.
    approver = fields.String(validate=validate.Length(min=1, max=SHORT), metadata={
        "description": "Left out: the approver is whoever approves, by their token; if given, it must be "
                       "the caller's own id."})


class NegotiationSchema(_Strict):
    at = Moment(required=True)
    by = text(required=True, max_length=SHORT)
    note = text(required=True)


class ConsentSchema(_Strict):
    given = StrictBoolean(required=True, validate=validate.Equal(
        True, error="the customer's consent is required to refer the dispute to mediation"), metadata={
        "description": "true: the customer agreed to mediation."})
    at = Moment(required=True)
    how = text(required=True, max_length=SHORT, description="How it was given, e.g. 电话录音 (a recorded call).")


class _Action(_Strict):
    # The token names who acts; a body's ``actor`` is only a note.
    actor = fields.String(validate=validate.Length(min=1, max=SHORT), metadata={
        "description": "Free text or a staff id, kept as a note; the bearer token names who acts."})


class ReferralRequestSchema(_Action):
    """``POST /api/v1/complaints/{no}/mediation``."""

    reason = text(required=True)
    negotiation = fields.List(fields.Nested(NegotiationSchema), required=True,
                              validate=validate.Length(min=1, max=100, error="the negotiation record is required"),
                              metadata={"description": "The negotiation record (at least one entry)."})
    consent = fields.Nested(ConsentSchema, required=True)
    authority = fields.Nested(AuthoritySchema, required=True, metadata={
        "description": "The mediator's authority to settle, granted up front."})
    organization = fields.String(validate=ORGANIZATION_CODE, metadata={
        "description": "An organization in service covering the handling unit's region; default the one "
                       "covering it most closely."})


class AuthorityRaiseSchema(_Action):
    """``POST /api/v1/complaints/{no}/mediation/authority``: above the authority in force, in
    its currency."""

    authority = fields.Nested(AuthoritySchema, required=True)


class CarriedOutSchema(_Action):
    """``POST /api/v1/complaints/{no}/mediation/carried-out``."""

    note = text(description="How the agreement was carried out.")


class MediationCallbackSchema(Schema):
    """An organization's report, ``POST /api/v1/mediation/referrals/{id}/events``, signed
    with its secret (``X-Complaint-Signature``). Fields beyond these are not refused: an
    organization's system may send more."""

    class Meta:
        unknown = EXCLUDE

    event_id = text(required=True, max_length=SHORT, description="Applied once: the same id again answers 200.")
    status = fields.String(required=True, validate=validate.OneOf(reference.MEDIATION_CALLBACK_STATUSES))
    occurred_at = Moment(required=True)
    details = fields.Dict(keys=fields.String(), load_default=dict, metadata={
        "description": "For agreement_reached: terms (required), signed_on, carry_out_by (dates), amount, "
                       "currency."})


class AgreementSchema(Schema):
    """``details`` of ``agreement_reached``: the terms, the day they were agreed
    (``signed_on``, default the day it occurred) and the day by which the institution
    carries them out (``carry_out_by``, default the policy's limit)."""

    terms = text(required=True)
    signed_on = Day()
    carry_out_by = Day()
    amount = MoneyString()
    currency = fields.String(validate=CURRENCY)
