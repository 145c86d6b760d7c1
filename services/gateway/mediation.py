"""The mediation endpoints (CONTRACTS §4): translation only, like ``views``.

The mediation service checks the bodies, the roles of who acts and the organizations'
signatures: the edge passes it the JSON object, the caller's identity and, for what an
organization sends, the raw body (base64, so that the bytes signed cross RPC intact) and the
``X-Complaint-Signature`` header. For a handler's action it first reads the complaint from
intake as the caller may see it (404 outside the caller's units) and hands it over.
"""
from __future__ import annotations

import base64

from .auth import Identity
from .errors import Unauthorized
from .views import actor_of, read_object, visible_units

# CONTRACTS §4 names it; the mediation service verifies it.
SIGNATURE_HEADER = "X-Complaint-Signature"


def put_organization(peers, request, identity: Identity, code: str):
    result = peers.mediation.put_organization(code, read_object(request), actor_of(identity))
    return (201 if result["created"] else 200), result["organization"]


def list_organizations(peers) -> list:
    return peers.mediation.organizations()


def get_organization(peers, code: str) -> dict:
    return peers.mediation.organization(code)


def retire_organization(peers, identity: Identity, code: str) -> dict:
    return peers.mediation.retire_organization(code, actor_of(identity))


def _complaint_and_actor(peers, request, identity: Identity, complaint_no: str) -> tuple[dict, dict, dict]:
    data = read_object(request)
    complaint = peers.intake.get(complaint_no, visible_units(peers, identity))
    return complaint, data, actor_of(identity, data.get("actor"))


def refer(peers, request, identity: Identity, complaint_no: str):
    complaint, data, actor = _complaint_and_actor(peers, request, identity, complaint_no)
    referral = peers.mediation.refer(complaint, data, actor)
    return 201, {"Location": f"/api/v1/mediation/referrals/{referral['referral_id']}"}, referral


def raise_authority(peers, request, identity: Identity, complaint_no: str) -> dict:
    complaint, data, actor = _complaint_and_actor(peers, request, identity, complaint_no)
    return peers.mediation.raise_authority(complaint, data, actor)


def carried_out(peers, request, identity: Identity, complaint_no: str) -> dict:
    complaint, data, actor = _complaint_and_actor(peers, request, identity, complaint_no)
    return peers.mediation.carried_out(complaint, data, actor)


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
    raw = request.get_data(cache=True)
    return peers.mediation.callback(referral_id, base64.b64encode(raw).decode("ascii"),
                                    request.headers.get(SIGNATURE_HEADER))
