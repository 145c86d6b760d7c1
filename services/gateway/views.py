"""What each endpoint does: read the request, call the peers, shape the answer.

No business rules: intake validates complaints (the edge checks a submission against the
same schema first, and that the caller's unit is of the institution named, to answer
early) and owns their numbering, state and visibility checks; routing owns the
organization and assignments; sla owns the clocks; mediation owns referrals (its endpoints
are in ``mediation``). These functions only translate, so unit tests drive them with fake
peers and no broker. ``peers`` is anything with ``intake``, ``routing``, ``sla`` and
``mediation`` attributes that behave like nameko RPC proxies (the service instance).

Every handler action goes through :func:`act`: it checks the body against the action's
schema, then the service that owns the action does it and checks who may; the answer is the
complaint once intake's record shows what the action did.
"""
from __future__ import annotations

import json
import logging
import time

from marshmallow import Schema, ValidationError
from nameko.exceptions import MethodNotFound

from services.common import approvals
from services.common.errors import NotFound, flatten_errors
from services.common.submission import SubmissionSchema, for_any_institution

from .auth import Identity
from .errors import UNAVAILABLE, BadRequest, Forbidden, MalformedJson, ValidationFailed
from .openapi import document
from .routes import ACTIONS_BY_NAME
from .schemas import (
    ApprovalNoteSchema,
    ApprovalsQuerySchema,
    ComplaintListQuerySchema,
    HealthQuerySchema,
    SubmitHeadersSchema,
)

_log = logging.getLogger(__name__)

# ``Idempotency-Key`` is scoped per user and submitted under this publisher code.
HTTP_APP_ID = "http"
# complaint.submit/1 nests two levels; MongoDB stores at most 100. Deeper is not a request.
MAX_DEPTH = 32
PEERS = ("intake", "routing", "sla", "mediation")
HEALTH_TIMEOUT = 1.0
LIST_FILTERS = ("status", "unit", "overdue", "from", "to")


# -- helpers ----------------------------------------------------------------------------------

def read_json(request):
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise MalformedJson("The request needs a JSON body.")
    try:
        body = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise MalformedJson(f"The body is nested too deep: at most {MAX_DEPTH} levels.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}.") from None
    check_form(body)
    return body


def check_form(body) -> None:
    """:class:`MalformedJson` for JSON no part of the platform can hold: nested deeper than
    ``MAX_DEPTH``, or text that is not Unicode (a lone surrogate escape such as "\\ud800")."""
    pending = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise MalformedJson(f"The body is nested too deep: at most {MAX_DEPTH} levels.")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                pending.append((key, depth))
                pending.append((item, depth + 1))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedJson("The body holds text that is not Unicode (a lone surrogate).") from None


def read_object(request) -> dict:
    """The JSON object of an action's body; no body at all is an empty one."""
    if not request.get_data(cache=True).strip():
        return {}
    body = read_json(request)
    if not isinstance(body, dict):
        raise ValidationFailed("The body must be a JSON object.",
                               {"_schema": ["Expected a JSON object."]})
    return body


def load(schema: Schema, data) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed("The request is invalid.", flatten_errors(exc.messages)) from None


def services_of(peers) -> dict:
    """The peers by service name (``PEERS``)."""
    return {"intake": peers.intake, "routing": peers.routing, "sla": peers.sla, "mediation": peers.mediation}


def visible_units(peers, identity: Identity):
    """``None`` for an admin (everything), else the caller's unit and the units below it."""
    if identity.is_admin:
        return None
    try:
        return list(peers.routing.visible_units(identity.unit))
    except NotFound:
        raise Forbidden(f"Your unit {identity.unit!r} is not in the organization.") from None


def actor_of(identity: Identity, note: str | None = None) -> dict:
    """Who acts, for the peers: the token's identity; the body's ``actor`` only as a note."""
    actor = {"sub": identity.sub, "name": identity.name, "unit": identity.unit,
             "roles": list(identity.roles)}
    if note is not None:
        actor["note"] = note
    return actor


# -- endpoints ----------------------------------------------------------------------------------

def health(peers, request) -> dict:
    query = load(HealthQuerySchema(), request.args.to_dict(flat=True))
    body = {"status": "ok"}
    if query["peers"]:
        body["peers"] = peer_health(peers)
    return body


def peer_health(peers, timeout: float = HEALTH_TIMEOUT) -> dict:
    """``up`` when a peer answers anything (even "no such method"), else down or error."""
    states, replies = {}, {}
    for name, peer in services_of(peers).items():
        try:
            replies[name] = peer.health.call_async()
        except UNAVAILABLE:
            states[name] = "down"
    deadline = time.monotonic() + timeout
    for name, reply in replies.items():
        try:
            reply.result(timeout=max(deadline - time.monotonic(), 0.0))
            states[name] = "up"
        except MethodNotFound:
            states[name] = "up"
        except UNAVAILABLE:
            states[name] = "down"
        except Exception:  # noqa: BLE001 - it answered, with an error
            _log.warning("peer %s answered health with an error", name, exc_info=True)
            states[name] = "error"
    return {name: states[name] for name in PEERS}


def openapi() -> dict:
    return document()


def submit_complaint(peers, request, identity: Identity):
    try:
        key = SubmitHeadersSchema().load(dict(request.headers))["idempotency_key"]
    except ValidationError as exc:
        raise BadRequest("The Idempotency-Key header is missing or invalid.", flatten_errors(exc.messages)) from None
    body = read_json(request)
    # What the document states, answered here; intake checks it again with the organization
    # and the clock (received_at), and keeps what it refuses.
    channel = load(SubmissionSchema(window=None), body)["channel"]
    if not for_any_institution(identity.roles, channel):
        own_institution(peers, identity, body.get("institution"))
    payload = {field: value for field, value in body.items() if field != "channel"}
    result = peers.intake.submit(payload, channel, f"{identity.sub}:{key}", HTTP_APP_ID,
                                 submitter=actor_of(identity))
    outcome = result.get("outcome")
    if outcome == "accepted":
        complaint = result["complaint"]
        location = f"/api/v1/complaints/{complaint['complaint_no']}"
        return 201, {"Location": location}, complaint
    if outcome == "duplicate":
        return 200, result["complaint"]
    if outcome == "rejected":
        raise ValidationFailed("The complaint is invalid (complaint.submit/1).",
                               result.get("errors") or {})
    raise RuntimeError(f"intake.submit answered an unknown outcome {outcome!r}")


def own_institution(peers, identity: Identity, institution) -> None:
    """:class:`Forbidden` when the caller's unit is not of ``institution`` (the head office's
    unit code is the institution's). An unknown or malformed one is intake's to refuse."""
    if not isinstance(institution, str):
        return
    try:
        units = peers.routing.visible_units(institution)
    except NotFound:
        return
    if identity.unit not in units:
        raise Forbidden(f"You may submit complaints only for your own institution, not {institution}.",
                        {"institution": [f"Is not the institution of your unit {identity.unit}."]})


def get_complaint(peers, identity: Identity, complaint_no: str) -> dict:
    return peers.intake.get(complaint_no, visible_units(peers, identity))


def list_complaints(peers, request, identity: Identity) -> dict:
    query = load(ComplaintListQuerySchema(), request.args.to_dict(flat=True))
    if "from_" in query:
        query["from"] = query.pop("from_")
    filters = {key: query[key] for key in LIST_FILTERS if key in query}
    page = peers.intake.list(filters, visible_units(peers, identity), query["limit"],
                             query.get("cursor"))
    return {"items": page["items"], "next_cursor": page.get("next_cursor")}


def org_units(peers, identity: Identity) -> list:
    return peers.routing.org_units(None if identity.is_admin else identity.unit)


def complaint_clocks(peers, identity: Identity, complaint_no: str) -> list:
    peers.intake.get(complaint_no, visible_units(peers, identity))  # 404 outside the units
    return peers.sla.clocks(complaint_no)


# -- handler actions -------------------------------------------------------------------------

def act(peers, name: str, request, identity: Identity, complaint_no: str) -> dict:
    """Any handler action of ``routes.ACTIONS``, done by the service that owns it (the rule
    book's ``owner``), which checks who may: the complaint as it stands afterwards."""
    action = ACTIONS_BY_NAME[name]
    data = load(action.body(), read_object(request))
    actor = actor_of(identity, data.pop("actor", None))
    owner = services_of(peers)[action.peer]
    answer = owner.act(complaint_no, action.name, data, actor)
    if action.peer == "intake":
        return answer  # the system of record did it: its answer is the complaint afterwards
    if "approval" in answer:
        return 202, answer["approval"]  # a step the caller may not approve waits for who may
    # Another service did it; intake's record follows its facts: answer once it has.
    result = peers.intake.get_when_applied(complaint_no, answer["events"], visible_units(peers, identity))
    if result["applied"]:
        return result["complaint"]
    location = f"/api/v1/complaints/{complaint_no}"
    return 202, {"Location": location}, {"complaint_no": complaint_no, "action": action.name, "status": "accepted",
                                         "location": location, "events": answer["events"]}


# -- approvals ---------------------------------------------------------------------------------

def approval_owners(peers) -> dict:
    """The services that keep approvals, by the prefix of their approvals' ids."""
    return {"sla": peers.sla, "mediation": peers.mediation}


def list_approvals(peers, request, identity: Identity) -> dict:
    query = load(ApprovalsQuerySchema(), request.args.to_dict(flat=True))
    actor = actor_of(identity)
    items = [item for owner in approval_owners(peers).values() for item in owner.approvals(actor, query["pending"])]
    return {"items": sorted(items, key=lambda item: item["requested_at"], reverse=True)}


def decide_approval(peers, request, identity: Identity, approval_id: str, decision: str) -> dict:
    """approve or refuse; the approval as decided, and the complaint once its record shows it."""
    note = load(ApprovalNoteSchema(), read_object(request))["note"]
    owner = approval_owners(peers).get(approvals.owner_of(approval_id))
    if owner is None:
        raise NotFound(f"no approval {approval_id}")
    answer = owner.decide_approval(approval_id, decision, note, actor_of(identity))
    approval = answer["approval"]
    result = peers.intake.get_when_applied(approval["complaint_no"], answer["events"],
                                           visible_units(peers, identity))
    return {**approval, "complaint": result["complaint"]} if result["applied"] else approval

