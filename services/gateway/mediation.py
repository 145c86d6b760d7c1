"""The mediation endpoints (CONTRACTS §4): translation only, like ``views``.

The edge checks a body against its schema (``services.common.mediation``, the one the
document states) to answer early; the mediation service checks it again, with who may act
and the organizations' signatures: the edge passes it the complaint's number, the JSON
object and the caller's identity, or, for what an organization sends, the raw body (base64,
so that the bytes signed cross RPC intact) and the ``X-Complaint-Signature`` header. A
referral's authority, and a raise of it, that the caller may not approve answers 202 with
the pending approval (decided through ``/api/v1/approvals``, like an extension).
"""
from __future__ import annotations

import base64

from marshmallow import Schema

from services.common import mediation

from .auth import Identity
from .errors import Unauthorized
from .views import actor_of, load, read_json, read_object, visible_units

# CONTRACTS §4 names it; the mediation service verifies it.
SIGNATURE_HEADER = "X-Complaint-Signature"


def _checked(request, schema: Schema) -> dict:
    """The JSON object of the body, once ``schema`` accepts it (passed on as sent)."""
    data = read_object(request)
    load(schema, data)
    return data


def put_organization(peers, request, identity: Identity, code: str):
    data = _checked(request, mediation.MediationOrganizationSchema())
    result = peers.mediation.put_organization(code, data, actor_of(identity))
    return (201 if result["created"] else 200), result["organization"]


def list_organizations(peers) -> list:
    return peers.mediation.organizations()


def get_organization(peers, code: str) -> dict:
    return peers.mediation.organization(code)


def retire_organization(peers, identity: Identity, code: str) -> dict:
    return peers.mediation.retire_organization(code, actor_of(identity))


def _action(request, identity: Identity, schema: Schema) -> tuple[dict, dict]:
    """The checked body and who acts (the token; the body's ``actor`` only as a note)."""
    data = _checked(request, schema)
    return data, actor_of(identity, data.get("actor"))


def refer(peers, request, identity: Identity, complaint_no: str):
    """201 with the referral made, or 202 with the pending approval of its authority."""
    data, actor = _action(request, identity, mediation.ReferralRequestSchema())
    answer = peers.mediation.refer(complaint_no, data, actor)
    if "approval" in answer:
        return 202, answer["approval"]
    referral = answer["referral"]
    return 201, {"Location": f"/api/v1/mediation/referrals/{referral['referral_id']}"}, referral


def raise_authority(peers, request, identity: Identity, complaint_no: str):
    """200 with the referral, its authority raised, or 202 with the pending approval."""
    data, actor = _action(request, identity, mediation.AuthorityRaiseSchema())
    answer = peers.mediation.raise_authority(complaint_no, data, actor)
    return (202, answer["approval"]) if "approval" in answer else answer["referral"]


def carried_out(peers, request, identity: Identity, complaint_no: str) -> dict:
    data, actor = _action(request, identity, mediation.CarriedOutSchema())
    return peers.mediation.carried_out(complaint_no, data, actor)


def get_referral(peers, request, identity: Identity | None, referral_id: str) -> dict:
    """A handler's token (the referral of a complaint they may see), or the organization's
    signature over ``"<t>."`` and the empty body."""
    if identity is None:
        signed = request.headers.get(SIGNATURE_HEADER)
        if not signed:
            raise Unauthorized(f"An Authorization: Bearer token, or the organization's {SIGNATURE_HEADER}, "
                               "is required.")
        return peers.mediation.referral_for_organization(referral_id, signed)
    referral = peers.mediation.referral(referral_id)
    peers.intake.get(referral["complaint_no"], visible_units(peers, identity))  # 404 outside the units
    return referral


def callback(peers, request, referral_id: str) -> dict:
    # A body no part of the platform can hold (not JSON, nested too deep, not Unicode) is
    # refused here like any other (400); the signed bytes pass on exactly as sent.
    read_json(request)
    raw = request.get_data(cache=True)
    return peers.mediation.callback(referral_id, base64.b64encode(raw).decode("ascii"),
                                    request.headers.get(SIGNATURE_HEADER))
