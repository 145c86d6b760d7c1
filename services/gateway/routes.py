"""The table of endpoints: one entry per endpoint, read by the router and by the OpenAPI
document alike. Adding an endpoint is one ``Route`` here plus one method in ``service.py``
named like the route; a handler action is one ``Action`` of ``ACTIONS`` (its route follows
from it, and ``views.act`` serves every one of them).

Who may call a route is the rule book's (``services/common/data/access.yaml``): the edge
refuses early a caller none of whose roles may ever do the action; the service that owns
it checks the rest (where the caller stands, recusal, a transfer in flight).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from marshmallow import Schema

from services.common import mediation
from services.common.access import RULE_BOOK
from services.common.submission import SEMANTIC_FIELDS, ReceiptSchema, SubmissionSchema

from . import schemas

READERS = RULE_BOOK.roles_for("read")
# Platform operators: the registry of mediation organizations.
ADMINS = frozenset({"admin"})


@dataclass(frozen=True)
class Response:
    status: int
    description: str
    schema: type[Schema] | None = None
    many: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    # Other bodies the same status may carry instead of ``schema`` (the document's anyOf).
    alternatives: tuple[type[Schema], ...] = ()


@dataclass(frozen=True)
class Action:
    """A handler action: ``POST /api/v1/complaints/{complaint_no}/<suffix>``. The rule book
    names the service that does it (its owner, whose ``act(complaint_no, name, data, actor)``
    the edge calls) and the roles that may."""

    name: str
    suffix: str
    body: type[Schema]
    summary: str
    semantic: tuple[str, ...] = ()  # body fields the owner may refuse on data (422), see Route

    @property
    def peer(self) -> str:
        return RULE_BOOK.action(self.name).owner

    @property
    def roles(self) -> frozenset:
        return RULE_BOOK.roles_for(self.name)

    @property
    def may_wait_for_approval(self) -> bool:
        """A step the caller may not approve waits as a pending approval (the rule book's
        ``approval``): the action may answer 202 with it."""
        return bool(RULE_BOOK.action(self.name).approval)


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
    headers: type[Schema] | None = None
    tags: tuple[str, ...] = ()
    calls_peers: bool = True
    description: str = ""
    extra_errors: tuple[int, ...] = field(default=())
    action: Action | None = None
    # Fields (or query parameters) a request the document calls valid may still be refused
    # for, with 422: their rule depends on data or on the clock, which no static schema states.
    semantic: tuple[str, ...] = ()
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
        if self.body is not None or self.headers is not None:
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
    Action("accept", "accept", schemas.ActionSchema,
           "Accept the complaint assigned to the caller's unit."),
    Action("transfer", "transfer", schemas.TransferSchema,
           "Ask another unit to take the complaint, with a reason; the clock runs on.",
           semantic=("to_unit", "reason")),
    Action("transfer_accept", "transfer/accept", schemas.ActionSchema,
           "Take a complaint another unit transferred to the caller's unit."),
    Action("transfer_reject", "transfer/reject", schemas.ReasonSchema,
           "Refuse a transfer to the caller's unit, with a reason."),
    Action("escalate", "escalate", schemas.ReasonSchema,
           "Hand the complaint to the superior unit, with a reason."),
    Action("misconduct", "misconduct", schemas.MisconductSchema,
           "Refer a clue of staff misconduct to discipline inspection (an extension)."),
    # Clocks: sla.
    Action("extend", "extend", schemas.ExtendSchema,
           "Extend the time limit by some days, with a reason; a step the caller may not approve waits.",
           semantic=("days",)),
    Action("pause", "pause", schemas.PauseSchema,
           "Stop the clock on a ground the policy allows, with its evidence (an extension).",
           semantic=("ground", "evidence")),
    Action("resume", "resume", schemas.ResumeSchema,
           "Start the clock again where it stopped (an extension).",
           semantic=("ground",)),
    # Lifecycle: intake.
    Action("decision", "decision", schemas.DecisionSchema,
           "Decide the complaint and tell the customer."),
    Action("close", "close", schemas.CloseSchema,
           "Close the complaint with the customer's satisfaction and the root cause."),
    Action("reopen", "reopen", schemas.ReasonSchema,
           "Reopen a decided complaint: the customer asks for a review."),
    Action("withdraw", "withdraw", schemas.WithdrawSchema,
           "The customer withdrew the complaint (an extension)."),
)


def done_response(action: Action) -> Response:
    """200: the complaint as it stands; after another service's action, of a complaint the
    action took out of the caller's reach, its number, status and unit only."""
    if action.peer == "intake":
        return Response(200, "The complaint as it stands after the action.", schemas.ComplaintSchema)
    return Response(200, "The complaint as it stands after the action (ComplaintOutOfReach: one the action "
                         "took out of the caller's reach).", schemas.ComplaintSchema,
                    alternatives=(schemas.ComplaintOutOfReachSchema,))


def accepted_response(action: Action) -> Response:
    """202: done, and the complaint's record shows it shortly; or, for an action whose steps
    may need an approval, a step the caller may not approve: the pending approval."""
    if not action.may_wait_for_approval:
        return Response(202, "Done, and the complaint's record shows it shortly.", schemas.ActionAcceptedSchema,
                        headers=(("Location", "The complaint's URL."),))
    return Response(202, "Done, and the complaint's record shows it shortly (ActionAccepted); or a step the "
                         "caller may not approve: the pending approval (Approval), which a person holding a "
                         "position it names decides.", schemas.ActionAcceptedSchema,
                    headers=(("Location", "The complaint's URL, when done."),),
                    alternatives=(schemas.ApprovalSchema,))


def action_route(action: Action) -> Route:
    return Route(
        name=f"complaint_{action.name}", method="POST", path=f"{COMPLAINT}/{action.suffix}",
        tags=("actions",), summary=action.summary,
        description=(
            f"Done by the {action.peer} service as the caller named by the token, which checks who "
            "may. Answers the complaint as it stands once its record shows the action (for a "
            "caller the action took it away from: its number, status and unit), or 202 when the "
            "record has not caught up within a few seconds. 409 when the complaint's state does "
            "not allow it; 422 with field paths for an invalid body."
        ),
        roles=action.roles, body=action.body, path_params=schemas.ComplaintPathSchema,
        responses=(done_response(action), accepted_response(action)),
        extra_errors=(409,), action=action, semantic=action.semantic,
    )


ACTION_ROUTES: tuple[Route, ...] = tuple(action_route(action) for action in ACTIONS)
ACTIONS_BY_NAME = {action.name: action for action in ACTIONS}

APPROVERS = RULE_BOOK.approver_roles()
APPROVAL = "/api/v1/approvals/{approval_id}"


def decision_route(decision: str, summary: str) -> Route:
    return Route(
        name=f"{decision}_approval", method="POST", path=f"{APPROVAL}/{decision}", tags=("approvals",),
        summary=summary,
        description=("By a person holding a position the step names (rule book), never the one who asked; "
                     "an approved step applies with the decision. 409 when it was decided already or "
                     "no longer applies (refuse it then)."),
        roles=APPROVERS, body=schemas.ApprovalNoteSchema, path_params=schemas.ApprovalPathSchema,
        responses=(Response(200, "The approval as decided.", schemas.ApprovalDecidedSchema),),
        extra_errors=(409,),
    )


APPROVAL_ROUTES: tuple[Route, ...] = (
    Route(
        name="list_approvals", method="GET", path="/api/v1/approvals", tags=("approvals",),
        summary="The pending approvals the caller may decide (pending=false: also decided ones and "
                "the caller's own requests).",
        roles=APPROVERS, query=schemas.ApprovalsQuerySchema,
        responses=(Response(200, "The approvals, newest first.", schemas.ApprovalPageSchema),),
    ),
    decision_route("approve", "Approve a pending step: it applies at once."),
    decision_route("refuse", "Refuse a pending step."),
)

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
            "complaint. Invalid bodies answer 422 with details mapping field paths to messages. "
            "A user submits for their own institution (403 otherwise); an admin and channel "
            "regulator may name any."
        ),
        roles=RULE_BOOK.roles_for("submit"),
        body=SubmissionSchema,
        headers=schemas.SubmitHeadersSchema,
        responses=(
            Response(201, "Accepted.", ReceiptSchema,
                     headers=(("Location", "The complaint's URL."),)),
            Response(200, "Already accepted under this Idempotency-Key.", ReceiptSchema),
        ),
        extra_errors=(409, 413),
        semantic=SEMANTIC_FIELDS,
    ),
    Route(
        name="list_complaints", method="GET", path="/api/v1/complaints", tags=("complaints",),
        summary="A page of the complaints the caller may see, filtered.",
        roles=READERS,
        query=schemas.ComplaintListQuerySchema,
        responses=(Response(200, "A page, and the cursor of the next.",
                            schemas.ComplaintPageSchema),),
        semantic=("cursor",),
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
) + ACTION_ROUTES + APPROVAL_ROUTES

MEDIATION = "/api/v1/mediation"
ORGANIZATION = f"{MEDIATION}/organizations/{{code}}"
REFERRAL = f"{MEDIATION}/referrals/{{referral_id}}"

MEDIATION_ROUTES: tuple[Route, ...] = (
    Route(
        name="put_mediation_organization", method="PUT", path=ORGANIZATION, tags=("mediation",),
        summary="Register a mediation organization, or change one (CONTRACTS §4).",
        description="Regions are GB/T 2260 codes; the secret signs what the platform delivers and what "
                    "the organization sends back, and is never shown back.",
        roles=ADMINS, body=mediation.MediationOrganizationSchema, path_params=schemas.OrganizationPathSchema,
        semantic=mediation.ORGANIZATION_SEMANTIC,
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
        description="With the customer's consent and the mediator's authority, to the organization covering "
                    "the handling unit's region or the one named. The authority is granted by the caller "
                    "when they hold a position the rule book names for it; else the referral waits for a "
                    "person who does (202, the pending approval) and is made when approved. 409 when no "
                    "organization covers it or the complaint's state does not allow it; 422 when consent or "
                    "the negotiation record is missing.",
        roles=RULE_BOOK.roles_for("refer"), body=mediation.ReferralRequestSchema,
        path_params=schemas.ComplaintPathSchema, semantic=mediation.REFER_SEMANTIC,
        responses=(Response(201, "Referred; delivered to the organization in the background.",
                            schemas.ReferralCreatedSchema, headers=(("Location", "The referral's URL."),)),
                   Response(202, "The authority waits for a person who may approve it: the pending approval.",
                            schemas.ApprovalSchema)),
        extra_errors=(409,),
    ),
    Route(
        name="raise_mediation_authority", method="POST", path=f"{COMPLAINT}/mediation/authority",
        tags=("actions", "mediation"),
        summary="Raise the mediator's authority to settle; it reaches the organization within seconds.",
        description="Applied at once when the caller holds a position the rule book names for it; else it "
                    "waits for a person who does (202, the pending approval) and reaches the organization "
                    "once approved.",
        roles=RULE_BOOK.roles_for("raise_authority"), body=mediation.AuthorityRaiseSchema,
        path_params=schemas.ComplaintPathSchema, semantic=mediation.RAISE_SEMANTIC,
        responses=(Response(200, "The referral as it stands.", schemas.ReferralSchema),
                   Response(202, "The raise waits for a person who may approve it: the pending approval.",
                            schemas.ApprovalSchema)),
        extra_errors=(409,),
    ),
    Route(
        name="record_agreement_carried_out", method="POST", path=f"{COMPLAINT}/mediation/carried-out",
        tags=("actions", "mediation"), summary="Record the mediation agreement carried out.",
        roles=RULE_BOOK.roles_for("record_carried_out"), body=mediation.CarriedOutSchema,
        path_params=schemas.ComplaintPathSchema,
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
        signed=True, body=mediation.MediationCallbackSchema, path_params=schemas.ReferralPathSchema,
        semantic=mediation.CALLBACK_SEMANTIC,
        responses=(Response(200, "Applied, or applied before.", schemas.CallbackAnswerSchema),),
        extra_errors=(409,),
    ),
)

ROUTES = ROUTES + MEDIATION_ROUTES

BY_NAME = {route.name: route for route in ROUTES}
