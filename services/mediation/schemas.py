"""What crosses mediation's edges (CONTRACTS §3 and §4): an organization of the registry,
a referral and a raise of its authority as handlers ask for them, an agreement carried out,
and the organizations' callbacks. Errors are maps from field path to messages (422)."""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from services.common.fields import CURRENCY, MoneyString, StrictBoolean
from services.mediation import regions
from services.mediation.rules import statuses

ORGANIZATION_CODE = validate.Regexp(r"^[A-Z0-9][A-Z0-9_-]{1,31}$",
                                    error="must be 2-32 capital letters, digits, - or _")
TEXT = validate.Length(min=1, max=20000)
# A shared secret long enough that guessing it is hopeless.
MIN_SECRET = 16


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ContactSchema(_Strict):
    phone = fields.String(required=True, validate=[validate.Length(min=3, max=40), _not_blank])
    address = fields.String(validate=validate.Length(max=500))


class OrganizationSchema(_Strict):
    """``PUT /api/v1/mediation/organizations/{code}``; the code comes from the path."""

    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    regions = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=500))
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    secret = fields.String(required=True, validate=validate.Length(min=MIN_SECRET, max=500), load_only=True)
    contact = fields.Nested(ContactSchema, required=True)

    @validates("regions")
    def known_regions(self, value, **kwargs):
        problems = [problem for code in value if (problem := regions.problem(code))]
        if problems:
            raise ValidationError(problems)


class AuthoritySchema(_Strict):
    max_settlement_amount = MoneyString(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    # Approval is an identity: the approver is the person who acts (see access.approve_authority).
    approver = fields.String(validate=validate.Length(min=1, max=200))


class NegotiationSchema(_Strict):
    at = fields.AwareDateTime(required=True)
    by = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    note = fields.String(required=True, validate=[TEXT, _not_blank])


class ConsentSchema(_Strict):
    given = StrictBoolean(required=True)
    at = fields.AwareDateTime(required=True)
    how = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])

    @validates("given")
    def must_be_given(self, value, **kwargs):
        if value is not True:
            raise ValidationError("the customer's consent is required to refer the dispute to mediation")


class _Action(_Strict):
    # The token names who acts; a body's ``actor`` is only a note.
    actor = fields.String(validate=validate.Length(min=1, max=200))


class ReferSchema(_Action):
    """``POST /api/v1/complaints/{no}/mediation``."""

    reason = fields.String(required=True, validate=[TEXT, _not_blank])
    negotiation = fields.List(fields.Nested(NegotiationSchema), required=True,
                              validate=validate.Length(min=1, error="the negotiation record is required"))
    consent = fields.Nested(ConsentSchema, required=True)
    authority = fields.Nested(AuthoritySchema, required=True)
    organization = fields.String(validate=ORGANIZATION_CODE)


class RaiseSchema(_Action):
    """``POST /api/v1/complaints/{no}/mediation/authority``."""

    authority = fields.Nested(AuthoritySchema, required=True)


class CarriedOutSchema(_Action):
    """``POST /api/v1/complaints/{no}/mediation/carried-out``."""

    note = fields.String(validate=[TEXT, _not_blank])


class CallbackSchema(Schema):
    """An organization's report, ``POST /api/v1/mediation/referrals/{id}/events``. Fields
    beyond these are kept, not refused: an organization's system may send more."""

    event_id = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    status = fields.String(required=True, validate=validate.OneOf(statuses().callbacks))
    occurred_at = fields.AwareDateTime(required=True)
    details = fields.Dict(keys=fields.String(), load_default=dict)


class AgreementSchema(Schema):
    """``details`` of ``agreement_reached``: the terms, the day they were agreed
    (``signed_on``, default the day it occurred) and the day by which the institution
    carries them out (``carry_out_by``, default the policy's limit)."""

    terms = fields.String(required=True, validate=[TEXT, _not_blank])
    signed_on = fields.Date()
    carry_out_by = fields.Date()
    amount = MoneyString()
    currency = fields.String(validate=CURRENCY)
