"""The table of endpoints: one entry per endpoint, read by the router and by the OpenAPI
document alike. Adding an endpoint is one ``Route`` here plus one method in ``service.py``
named like the route; a handler action is one ``Action`` of ``ACTIONS`` (its route and its
service method follow from it, and ``views.act`` serves every one of them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from marshmallow import Schema

from services.common.submission import SEMANTIC_FIELDS, ReceiptSchema, SubmissionSchema

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


@dataclass(frozen=True)
class Response:
    status: int
    description: str
    schema: type[Schema] | None = None
    many: bool = False
    headers: tuple[tuple[str, str], ...] = ()


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
    semantic: tuple[str, ...] = ()  # body fields the peer may refuse on data (422), see Route


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
           "Ask another unit to take the complaint, with a reason; the clock runs on.",
           semantic=("to_unit", "reason")),
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
           args=("days", "reason", ACTOR, "approvals"), semantic=("days", "approvals")),
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
        extra_errors=(409,), action=action, semantic=action.semantic,
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
            "complaint. Invalid bodies answer 422 with details mapping field paths to messages. "
            "A user submits for their own institution (403 otherwise); an admin and channel "
            "regulator may name any."
        ),
        roles=SUBMITTERS,
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
) + ACTION_ROUTES

BY_NAME = {route.name: route for route in ROUTES}
