"""The OpenAPI document and the error shape, without a broker."""
import json
from pathlib import Path

import jsonschema_rs
import pytest
from nameko.exceptions import RpcTimeout, UnknownService
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound

import services
from services.common import errors as domain
from services.common import reference, timeutil
from services.common.fields import AMOUNT, CODE, NOT_BLANK
from services.common.submission import SubmissionSchema
from services.gateway import schemas
from services.gateway.errors import (
    MalformedJson,
    Unauthorized,
    ValidationFailed,
    error_body,
    response_for_exception,
)
from services.gateway.openapi import build_spec, document
from services.gateway.routes import ACTIONS, ROUTES

REF = "#/components/schemas/"


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_route_is_documented():
    doc = document()
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == {(route.method, route.path) for route in ROUTES}
    assert {"/health", "/api/v1/openapi.json", "/api/v1/complaints", "/api/v1/complaints/{complaint_no}",
            "/api/v1/org/units"} <= set(doc["paths"])


def test_every_reference_resolves():
    doc = document()
    names = set(doc["components"]["schemas"])
    found = set(refs(doc))
    assert found, "the document references no schema"
    for ref in found:
        assert ref.startswith(REF) and ref[len(REF):] in names, ref


def test_document_is_json():
    json.dumps(document())


def test_bearer_scheme_and_security_per_operation():
    doc = document()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "HS256 JWT with claims sub, name, unit, roles, exp."}
    assert doc["components"]["securitySchemes"]["complaintSignature"]["name"] == "X-Complaint-Signature"
    for route in ROUTES:
        operation = doc["paths"][route.path][route.method.lower()]
        expected = ([{"bearerAuth": []}] if route.roles is not None else []) + (
            [{"complaintSignature": []}] if route.signed else [])
        assert operation["security"] == expected
        if route.roles is None and not route.signed:
            assert "401" not in operation["responses"]
        if route.roles is not None:
            assert {"401", "403"} <= set(operation["responses"])
        if route.signed:
            assert "401" in operation["responses"]


def test_every_error_response_uses_the_error_schema():
    doc = document()
    assert doc["components"]["schemas"]["Error"]["properties"]["error"] == {"$ref": REF + "ErrorDetail"}
    for item in doc["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {"$ref": REF + "Error"}


def test_submit_operation():
    operation = document()["paths"]["/api/v1/complaints"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": REF + "Submission"}
    assert {"200", "201", "400", "401", "403", "422", "503"} <= set(operation["responses"])
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": REF + "Receipt"}
    header = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header[0]["name"] == "Idempotency-Key" and header[0]["required"] is True
    body = document()["components"]["schemas"]["Submission"]
    assert set(body["required"]) >= {"channel", "schema", "received_at", "institution", "kind", "customer",
                                      "product", "subject", "description"}
    assert body["properties"]["channel"]["enum"] == list(reference.CHANNELS)


def test_list_operation_parameters():
    operation = document()["paths"]["/api/v1/complaints"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert set(params) == {"status", "unit", "overdue", "from", "to", "limit", "cursor"}
    assert all(p["in"] == "query" for p in params.values())
    assert params["limit"]["schema"] == {"type": "integer", "default": 50, "minimum": 1, "maximum": 200}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": REF + "ComplaintPage"}


def test_path_parameter_and_recursive_org_tree():
    doc = document()
    get = doc["paths"]["/api/v1/complaints/{complaint_no}"]["get"]
    assert get["parameters"] == [{"in": "path", "name": "complaint_no", "schema": {"type": "string"},
                                  "required": True}]
    assert {"404"} <= set(get["responses"])
    units = doc["paths"]["/api/v1/org/units"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert units == {"type": "array", "items": {"$ref": REF + "OrgUnit"}}
    org_unit = doc["components"]["schemas"]["OrgUnit"]
    assert org_unit["properties"]["children"]["items"] == {"$ref": REF + "OrgUnit"}
    assert org_unit["properties"]["level"]["enum"] == ["head_office", "tier1", "city", "county"]


def test_every_action_is_documented_with_body_and_responses():
    doc = document()
    paths = {f"/api/v1/complaints/{{complaint_no}}/{suffix}" for suffix in (
        "accept", "transfer", "transfer/accept", "transfer/reject", "escalate", "misconduct", "extend", "pause",
        "resume", "decision", "close", "reopen", "withdraw", "clocks")}
    assert paths <= set(doc["paths"])
    for action in ACTIONS:
        operation = doc["paths"][f"/api/v1/complaints/{{complaint_no}}/{action.suffix}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].startswith(REF)
        done = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"$ref": REF + "Complaint"} in (done, *done.get("anyOf", ()))
        assert {"400", "401", "403", "404", "409", "422", "503"} <= set(operation["responses"])
        assert operation["parameters"][0]["name"] == "complaint_no"
        assert set(operation["x-roles"]) == set(action.roles)
    accept = doc["paths"]["/api/v1/complaints/{complaint_no}/accept"]["post"]
    assert accept["requestBody"]["required"] is False
    assert "inspector" in doc["paths"]["/api/v1/complaints/{complaint_no}/misconduct"]["post"]["x-roles"]
    assert "inspector" not in doc["paths"]["/api/v1/complaints/{complaint_no}/decision"]["post"]["x-roles"]


def test_action_bodies_in_the_document():
    components = document()["components"]["schemas"]
    assert set(components["Extend"]["required"]) == {"days", "reason"}
    assert components["Extend"]["properties"]["days"]["minimum"] == 1
    assert "approvals" not in components["Extend"]["properties"]  # approvals are people, never strings
    assert set(components["Pause"]["required"]) == {"reason", "ground"}  # evidence: the policy data says
    assert set(components["Decision"]["required"]) == {"outcome", "message"}
    assert components["Decision"]["properties"]["outcome"]["enum"] == ["upheld", "partially_upheld", "rejected"]
    assert components["Close"]["properties"]["satisfaction"]["enum"] == ["satisfied", "unsatisfied", "no_response"]
    assert set(components["Transfer"]["required"]) == {"to_unit", "reason"}
    assert components["Misconduct"]["required"] == ["clue", "note"]
    clocks = document()["paths"]["/api/v1/complaints/{complaint_no}/clocks"]["get"]
    assert clocks["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array", "items": {"$ref": REF + "Clock"}}


def test_response_schemas_allow_fields_the_peers_add():
    doc = document()
    assert doc["components"]["schemas"]["Complaint"]["additionalProperties"] is True


def test_one_table_entry_is_one_endpoint():
    from services.gateway.routes import Response, Route
    extra = Route(name="ping", method="GET", path="/api/v1/ping/{x}", summary="Ping.", roles=frozenset({"admin"}),
                  path_params=schemas.ComplaintPathSchema,
                  responses=(Response(200, "Pong.", schemas.HealthSchema),))
    assert extra.rule == "/api/v1/ping/<x>"
    doc = build_spec(ROUTES + (extra,)).to_dict()
    assert doc["paths"]["/api/v1/ping/{x}"]["get"]["operationId"] == "ping"


# -- the error shape ------------------------------------------------------------------------------

def shape(response):
    body = json.loads(response.get_data())
    assert response.mimetype == "application/json"
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return response.status_code, body["error"]


def test_error_body():
    assert error_body("x", "y") == {"error": {"code": "x", "message": "y", "details": {}}}
    assert error_body("x", "y", {"a": ["b"]})["error"]["details"] == {"a": ["b"]}


@pytest.mark.parametrize("exc,status,code", [
    (MalformedJson("bad"), 400, "malformed_json"),
    (Unauthorized("no"), 401, "unauthorized"),
    (ValidationFailed("bad", {"limit": ["too big"]}), 422, "validation_failed"),
    (domain.NotFound("gone"), 404, "not_found"),
    (domain.Conflict("state"), 409, "conflict"),
    (domain.Invalid("bad", {"a.b": ["c"]}), 422, "validation_failed"),
    (domain.Forbidden("no"), 403, "forbidden"),
    (RpcTimeout("intake.get"), 503, "service_unavailable"),
    (UnknownService("intake"), 503, "service_unavailable"),
    (ConnectionRefusedError(), 503, "service_unavailable"),
    (WerkzeugNotFound(), 404, "not_found"),
    (MethodNotAllowed(valid_methods=["GET"]), 405, "method_not_allowed"),
    (KeyError("secret internals"), 500, "internal_error"),
])
def test_every_exception_gets_the_shape(exc, status, code):
    got_status, error = shape(response_for_exception(exc))
    assert (got_status, error["code"]) == (status, code)
    if status == 500:
        assert "secret internals" not in error["message"]


def test_details_survive():
    _, error = shape(response_for_exception(domain.Invalid("bad", {"customer.phone": ["Not a number."]})))
    assert error["details"] == {"customer.phone": ["Not a number."]}


def test_405_names_the_allowed_methods():
    response = response_for_exception(MethodNotAllowed(valid_methods=["GET", "POST"]))
    assert response.headers["Allow"] == "GET, POST"


def test_approvals_in_the_document():
    doc = document()
    assert {"/api/v1/approvals", "/api/v1/approvals/{approval_id}/approve",
            "/api/v1/approvals/{approval_id}/refuse"} <= set(doc["paths"])
    approval = doc["components"]["schemas"]["Approval"]
    assert {"approval_id", "action", "needs", "of_unit"} <= set(approval["required"])
    assert doc["components"]["schemas"]["ApprovalNote"]["required"] == ["note"]
    extend = doc["paths"]["/api/v1/complaints/{complaint_no}/extend"]["post"]
    assert "202" in extend["responses"]


def test_an_action_documents_every_body_it_answers():
    doc = document()

    def answers(suffix: str, status: str, body: dict) -> bool:
        operation = doc["paths"][f"/api/v1/complaints/{{complaint_no}}/{suffix}"]["post"]
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        return jsonschema_rs.validator_for({**schema, "components": doc["components"]}).is_valid(body)

    accepted = {"complaint_no": "C-1", "action": "extend", "status": "accepted",
                "location": "/api/v1/complaints/C-1", "events": ["e-1"]}
    approval = {"approval_id": "sla-" + "0" * 32, "action": "extend", "needs": ["supervisor"],
                "of_unit": "BANKA-SD", "complaint_no": "C-1", "state": "pending"}
    out_of_reach = {"complaint_no": "C-1", "status": "escalated", "unit": "BANKA"}
    # A step the caller may not approve answers 202 with the pending approval (the rule book's approval).
    assert answers("extend", "202", accepted) and answers("extend", "202", approval)
    assert answers("pause", "202", approval)
    assert answers("escalate", "202", accepted) and not answers("escalate", "202", approval)
    # An action another service did may take the complaint out of the caller's reach.
    assert answers("transfer/reject", "200", out_of_reach)
    assert not answers("decision", "200", out_of_reach)


# -- the document says what the edge accepts ------------------------------------------------------

def test_the_submission_documented_is_the_schema_intake_validates_with():
    components = document()["components"]["schemas"]
    body = components["Submission"]
    assert set(body["properties"]) == {field.data_key or name for name, field in SubmissionSchema().fields.items()}
    assert {"repeat_of", "new_facts"} <= set(body["properties"])
    assert body["properties"]["new_facts"]["type"] == "boolean"
    assert body["properties"]["direct"]["type"] == "boolean"
    assert body["additionalProperties"] is False
    assert body["allOf"] == SubmissionSchema.JSON_SCHEMA["allOf"]
    assert components["Customer"]["anyOf"] == [{"required": ["phone"]}, {"required": ["email"]},
                                               {"required": ["address"]}]
    assert body["properties"]["institution"]["pattern"] == CODE.regex.pattern
    assert body["properties"]["product"]["enum"] == list(reference.products())


def test_the_complaint_documented_is_what_intake_answers():
    complaint = document()["components"]["schemas"]["Complaint"]
    assert complaint["properties"]["first_responder"] == {"$ref": REF + "FirstResponder"}
    assert set(complaint["required"]) >= {"complaint_no", "status", "first_responder", "sla", "history", "unit"}
    page = document()["components"]["schemas"]["ComplaintPage"]
    assert page["properties"]["items"]["items"] == {"$ref": REF + "ComplaintSummary"}


def test_action_bodies_state_their_patterns_lengths_and_not_blank_rules():
    components = document()["components"]["schemas"]
    for name in ("Reason", "Transfer", "Extend"):
        reason = components[name]["properties"]["reason"]
        assert reason["pattern"] == NOT_BLANK.regex.pattern and reason["maxLength"] == 20000
    assert components["Misconduct"]["properties"]["note"]["pattern"] == NOT_BLANK.regex.pattern
    assert components["Decision"]["properties"]["message"]["pattern"] == NOT_BLANK.regex.pattern
    assert components["Decision"]["properties"]["amount"]["pattern"] == AMOUNT.regex.pattern
    assert components["Transfer"]["properties"]["to_unit"]["pattern"] == CODE.regex.pattern
    assert components["Extend"]["properties"]["days"]["maximum"] == 366


def test_list_bounds_state_their_form_and_years():
    params = {p["name"]: p for p in document()["paths"]["/api/v1/complaints"]["get"]["parameters"]}
    for name in ("from", "to"):
        assert params[name]["schema"]["pattern"] == timeutil.YEAR_PATTERN
        assert params[name]["schema"]["anyOf"] == [{"format": "date"}, {"format": "date-time"}]


def test_refusals_on_data_are_named_per_operation():
    paths = document()["paths"]
    submit = paths["/api/v1/complaints"]["post"]["responses"]["422"]
    assert submit["x-semantic-refusals"] == ["institution", "branch", "repeat_of", "received_at",
                                             "reply_within_days", "representatives"]
    assert paths["/api/v1/complaints"]["get"]["responses"]["422"]["x-semantic-refusals"] == ["cursor"]
    assert "x-semantic-refusals" not in paths["/api/v1/complaints/{complaint_no}/close"]["post"]["responses"]["422"]


def test_each_closed_list_is_written_once():
    sources = {path: path.read_text(encoding="utf-8") for path in Path(services.__file__).parent.rglob("*.py")}
    for values in (reference.KINDS, reference.CHANNELS, reference.LEVELS, reference.OFFICES, reference.SLA_STATES,
                   reference.OUTCOMES, reference.SATISFACTION, reference.CAUSE_EVENTS,
                   reference.MEDIATION_CALLBACK_STATUSES):
        written = ", ".join(f'"{value}"' for value in values[:2])
        holders = [path.name for path, text in sources.items() if written in text]
        assert holders == ["reference.py"], (values, holders)


def test_the_mediation_operations():
    doc = document()
    refer = doc["paths"]["/api/v1/complaints/{complaint_no}/mediation"]["post"]
    assert refer["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": REF + "ReferralCreated"}
    assert {"404", "409", "422"} <= set(refer["responses"])
    assert set(document()["components"]["schemas"]["ReferralRequest"]["required"]) == {
        "reason", "negotiation", "consent", "authority"}
    # An authority the caller may not approve waits: 202 with the pending approval.
    raise_ = doc["paths"]["/api/v1/complaints/{complaint_no}/mediation/authority"]["post"]
    for operation in (refer, raise_):
        assert operation["responses"]["202"]["content"]["application/json"]["schema"] == {"$ref": REF + "Approval"}
    # Refusals on data the document cannot state are named.
    assert refer["responses"]["422"]["x-semantic-refusals"] == ["organization", "authority.approver"]
    assert "authority.max_settlement_amount" in raise_["responses"]["422"]["x-semantic-refusals"]
    consent = doc["components"]["schemas"]["Consent"]["properties"]
    assert consent["given"]["enum"] == [True] and consent["at"]["pattern"] == timeutil.YEAR_PATTERN
    callback = doc["paths"]["/api/v1/mediation/referrals/{referral_id}/events"]["post"]
    assert callback["security"] == [{"complaintSignature": []}]
    assert {"401", "404", "409", "422"} <= set(callback["responses"])
    referral = doc["paths"]["/api/v1/mediation/referrals/{referral_id}"]["get"]
    assert referral["security"] == [{"bearerAuth": []}, {"complaintSignature": []}]
    put = doc["paths"]["/api/v1/mediation/organizations/{code}"]["put"]
    assert put["x-roles"] == ["admin"] and {"200", "201"} <= set(put["responses"])
    organization = doc["components"]["schemas"]["MediationOrganizationView"]
    assert "secret" not in organization["properties"]
