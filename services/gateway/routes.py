"""The table of endpoints: one entry per endpoint, read by the router and by the OpenAPI
document alike. Adding an endpoint is one ``Route`` here plus one method in ``service.py``
named like the route; a handler action is one ``Action`` of ``ACTIONS`` (its route and its
service method follow from it, and ``views.act`` serves every one of them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from marshmallow import Schema

from . import schemas
from .auth import ROLES

# Who may do what (DESIGN.md, "Access"); visibility by unit is applied on top.
READERS = ROLES
SUBMITTERS = frozenset({"handler", "supervisor", "consumer_protection", "admin"})
HANDLERS = SUBMITTERS
# Clues of misconduct may also come from discipline inspection.
INSPECTION = HANDLERS | {"inspector"}
# In ``Action.args``: the caller's identity rather than a body field.
ACTOR = "actor"
# Platform operators: the registry of mediation organizations.
ADMINS = frozenset({"admin"})


@dataclass(frozen=True)
class Response:
    status: int
    description: str
    schema: type[Schema] | None = None
    many: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    required: bool = True
    max_length: int | None = None


@dataclass(frozen=True)
class Action:
    """A handler action: ``POST /api/v1/complaints/{complaint_no}/<suffix>``, done by ``peer``.

    intake and routing take ``act(complaint_no, name, data, actor, visible_units)``; sla has
    one method per action, ``<name>(complaint_no, *args)`` with ``args`` naming body fields
    in order (``ACTOR`` is the caller's identity).
    """

    name: str
    suffix: str
    peer: str  # intake | routing | sla
    body: type[Schema]
    summary: str
    roles: frozenset = HANDLERS
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    name: str  # the service method and the operationId
    method: str
    path: str  # OpenAPI template, /api/v1/complaints/{complaint_no}
    summary: str
    responses: tuple[Response, ...]
    roles: frozenset | None = None  # None: public, no token
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    path_params: type[Schema] | None = None
    headers: tuple[Header, ...] = ()
    tags: tuple[str, ...] = ()
    calls_peers: bool = True
    description: str = ""
    extra_errors: tuple[int, ...] = field(default=())
    action: Action | None = None
    # A mediation organization may call it signed (X-Complaint-Signature, CONTRACTS §4)
    # instead of with a token; the mediation service verifies the signature.
    signed: bool = False

    @property
    def rule(self) -> str:
        """The Werkzeug URL rule for ``path``."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    @property
    def error_statuses(self) -> tuple[int, ...]:
        statuses = set(self.extra_errors)
        if self.body is not None or self.headers:
            statuses.add(400)
        if self.roles is not None:
            statuses.update((401, 403))
        if self.signed:
            statuses.add(401)
        if self.path_params is not None:
            statuses.add(404)
        if self.body is not None or self.query is not None:
            statuses.add(422)
        if self.calls_peers:
            statuses.add(503)
        statuses.add(500)
        return tuple(sorted(statuses))


COMPLAINT = "/api/v1/complaints/{complaint_no}"

ACTIONS: tuple[Action, ...] = (
    # Assignment: routing.
    Action("accept", "accept", "routing", schemas.ActionSchema,
           "Accept the complaint assigned to the caller's unit."),
    Action("transfer", "transfer", "routing", schemas.TransferSchema,
           "Ask another unit to take the complaint, with a reason; the clock runs on."),
    Action("transfer_accept", "transfer/accept", "routing", schemas.ActionSchema,
           "Take a complaint another unit transferred to the caller's unit."),
    Action("transfer_reject", "transfer/reject", "routing", schemas.ReasonSchema,
           "Refuse a transfer to the caller's unit, with a reason."),
    Action("escalate", "escalate", "routing", schemas.ReasonSchema,
           "Hand the complaint to the superior unit, with a reason."),
    Action("misconduct", "misconduct", "routing", schemas.MisconductSchema,
           "Refer a clue of staff misconduct to discipline inspection (an extension).",
           roles=INSPECTION),
    # Clocks: sla.
    Action("extend", "extend", "sla", schemas.ExtendSchema,
           "Extend the time limit by some days, with a reason and the approvals the policy asks.",
           args=("days", "reason", ACTOR, "approvals")),
    Action("pause", "pause", "sla", schemas.ReasonSchema,
           "Stop the clock for an outside appraisal or test (an extension).",
           args=("reason", ACTOR)),
    Action("resume", "resume", "sla", schemas.ReasonSchema,
           "Start the clock again where it stopped (an extension).",
           args=("reason", ACTOR)),
    # Lifecycle: intake.
    Action("decision", "decision", "intake", schemas.DecisionSchema,
           "Decide the complaint and tell the customer."),
    Action("close", "close", "intake", schemas.CloseSchema,
           "Close the complaint with the customer's satisfaction and the root cause."),
    Action("reopen", "reopen", "intake", schemas.ReasonSchema,
           "Reopen a decided complaint: the customer asks for a review."),
    Action("withdraw", "withdraw", "intake", schemas.WithdrawSchema,
           "The customer withdrew the complaint (an extension)."),
)


def action_route(action: Action) -> Route:
    return Route(
        name=f"complaint_{action.name}", method="POST", path=f"{COMPLAINT}/{action.suffix}",
        tags=("actions",), summary=action.summary,
        description=(
            f"Done by the {action.peer} service as the caller named by the token. Answers the "
            "complaint as it stands. 409 when the complaint's state does not allow it; 422 "
            "with field paths for an invalid body."
        ),
        roles=action.roles, body=action.body, path_params=schemas.ComplaintPathSchema,
        responses=(Response(200, "The complaint as it stands.", schemas.ComplaintSchema),),
        extra_errors=(409,), action=action,
    )


ACTION_ROUTES: tuple[Route, ...] = tuple(action_route(action) for action in ACTIONS)

ROUTES: tuple[Route, ...] = (
    Route(
        name="health", method="GET", path="/health", tags=("operations",),
        summary="Liveness, and whether the RPC peers answer.",
        query=schemas.HealthQuerySchema,
        responses=(Response(200, "The gateway is up.", schemas.HealthSchema),),
        calls_peers=False,
    ),
    Route(
        name="openapi", method="GET", path="/api/v1/openapi.json", tags=("operations",),
        summary="This document.",
        responses=(Response(200, "The OpenAPI 3 document."),),
        calls_peers=False,
    ),
    Route(
        name="submit_complaint", method="POST", path="/api/v1/complaints", tags=("complaints",),
        summary="Register a complaint, suggestion or consultation.",
        description=(
            "The body is complaint.submit/1 plus channel. The same Idempotency-Key from the "
            "same user answers 200 with the first receipt instead of creating a second "
            "complaint. Invalid bodies answer 422 with details mapping field paths to messages."
        ),
        roles=SUBMITTERS,
        body=schemas.SubmitComplaintSchema,
        headers=(Header("Idempotency-Key", "Unique per submission; repeats are answered "
                        "with the first receipt.", max_length=200),),
        responses=(
            Response(201, "Accepted.", schemas.ComplaintReceiptSchema,
                     headers=(("Location", "The complaint's URL."),)),
            Response(200, "Already accepted under this Idempotency-Key.",
                     schemas.ComplaintReceiptSchema),
        ),
        extra_errors=(409, 413),
    ),
    Route(
        name="list_complaints", method="GET", path="/api/v1/complaints", tags=("complaints",),
        summary="A page of the complaints the caller may see, filtered.",
        roles=READERS,
        query=schemas.ComplaintListQuerySchema,
        responses=(Response(200, "A page, and the cursor of the next.",
                            schemas.ComplaintPageSchema),),
    ),
    Route(
        name="get_complaint", method="GET", path="/api/v1/complaints/{complaint_no}",
        tags=("complaints",),
        summary="A complaint as it stands; 404 outside the caller's units.",
        roles=READERS,
        path_params=schemas.ComplaintPathSchema,
        responses=(Response(200, "The complaint.", schemas.ComplaintSchema),),
    ),
    Route(
        name="org_units", method="GET", path="/api/v1/org/units", tags=("organization",),
        summary="The organization as the caller may see it: one tree per institution.",
        roles=READERS,
        responses=(Response(200, "One tree per institution.", schemas.OrgUnitSchema,
                            many=True),),
    ),
    Route(
        name="complaint_clocks", method="GET", path=f"{COMPLAINT}/clocks", tags=("complaints",),
        summary="Every SLA clock of a complaint on its own (an extension).",
        roles=READERS,
        path_params=schemas.ComplaintPathSchema,
        responses=(Response(200, "The clocks.", schemas.ClockSchema, many=True),),
    ),
) + ACTION_ROUTES

MEDIATION = "/api/v1/mediation"
ORGANIZATION = f"{MEDIATION}/organizations/{{code}}"
REFERRAL = f"{MEDIATION}/referrals/{{referral_id}}"

MEDIATION_ROUTES: tuple[Route, ...] = (
    Route(
        name="put_mediation_organization", method="PUT", path=ORGANIZATION, tags=("mediation",),
        summary="Register a mediation organization, or change one (CONTRACTS §4).",
        description="Regions are GB/T 2260 codes; the secret signs what the platform delivers and what "
                    "the organization sends back, and is never shown back.",
        roles=ADMINS, body=schemas.MediationOrganizationSchema, path_params=schemas.OrganizationPathSchema,
        responses=(Response(201, "Registered.", schemas.MediationOrganizationViewSchema),
                   Response(200, "Changed.", schemas.MediationOrganizationViewSchema)),
    ),
    Route(
        name="list_mediation_organizations", method="GET", path=f"{MEDIATION}/organizations",
        tags=("mediation",), summary="The mediation organizations in service.", roles=READERS,
        responses=(Response(200, "The organizations.", schemas.MediationOrganizationViewSchema, many=True),),
    ),
    Route(
        name="get_mediation_organization", method="GET", path=ORGANIZATION, tags=("mediation",),
        summary="One mediation organization, retired or not.", roles=READERS,
        path_params=schemas.OrganizationPathSchema,
        responses=(Response(200, "The organization.", schemas.MediationOrganizationViewSchema),),
    ),
    Route(
        name="retire_mediation_organization", method="DELETE", path=ORGANIZATION, tags=("mediation",),
        summary="Retire a mediation organization: no new referral goes to it; its open referrals keep going.",
        roles=ADMINS, path_params=schemas.OrganizationPathSchema,
        responses=(Response(200, "The organization, retired.", schemas.MediationOrganizationViewSchema),),
    ),
    Route(
        name="refer_complaint", method="POST", path=f"{COMPLAINT}/mediation", tags=("actions", "mediation"),
        summary="Refer a complaint decided against the customer, or stalled, to mediation.",
        description="With the customer's consent and the mediator's authority (approved by the caller's "
                    "role), to the organization covering the handling unit's region or the one named. 409 "
                    "when no organization covers it or the complaint's state does not allow it; 422 when "
                    "consent or the negotiation record is missing.",
        roles=HANDLERS, body=schemas.ReferralRequestSchema, path_params=schemas.ComplaintPathSchema,
        responses=(Response(201, "Referred; delivered to the organization in the background.",
                            schemas.ReferralCreatedSchema, headers=(("Location", "The referral's URL."),)),),
        extra_errors=(409,),
    ),
    Route(
        name="raise_mediation_authority", method="POST", path=f"{COMPLAINT}/mediation/authority",
        tags=("actions", "mediation"),
        summary="Raise the mediator's authority to settle; it reaches the organization within seconds.",
        roles=HANDLERS, body=schemas.AuthorityRaiseSchema, path_params=schemas.ComplaintPathSchema,
        responses=(Response(200, "The referral as it stands.", schemas.ReferralSchema),),
        extra_errors=(409,),
    ),
    Route(
        name="record_agreement_carried_out", method="POST", path=f"{COMPLAINT}/mediation/carried-out",
        tags=("actions", "mediation"), summary="Record the mediation agreement carried out.",
        roles=HANDLERS, body=schemas.CarriedOutSchema, path_params=schemas.ComplaintPathSchema,
        responses=(Response(200, "The referral as it stands.", schemas.ReferralSchema),),
        extra_errors=(409,),
    ),
    Route(
        name="get_mediation_referral", method="GET", path=REFERRAL, tags=("mediation",),
        summary="A referral, its status and its deliveries: a handler's token, or the organization's "
                "signature over the empty body.",
        roles=READERS, signed=True, path_params=schemas.ReferralPathSchema,
        responses=(Response(200, "The referral.", schemas.ReferralSchema),),
    ),
    Route(
        name="mediation_callback", method="POST", path=f"{REFERRAL}/events", tags=("mediation",),
        summary="An organization reports on a referral, signed with its secret (CONTRACTS §4).",
        description="401 for a signature that is missing, not the organization's, or more than 5 minutes "
                    "away; 409 for a status that does not follow the current one; the same event_id again "
                    "answers 200 and changes nothing.",
        signed=True, body=schemas.MediationCallbackSchema, path_params=schemas.ReferralPathSchema,
        responses=(Response(200, "Applied, or applied before.", schemas.CallbackAnswerSchema),),
        extra_errors=(409,),
    ),
)

ROUTES = ROUTES + MEDIATION_ROUTES

BY_NAME = {route.name: route for route in ROUTES}
