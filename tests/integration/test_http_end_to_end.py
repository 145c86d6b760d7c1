"""The platform over real HTTP: the edge, intake, routing and SLA running together on the
real broker and store, driven as a branch's handlers would drive it."""
import uuid
from datetime import timedelta

import pytest
import requests

from services.common import timeutil
from services.gateway.auth import issue_token
from services.gateway.service import GatewayService
from services.intake.service import IntakeService
from services.mediation.service import MediationService
from services.routing.service import RoutingService
from services.sla.service import SlaService
from tests.support.harness import organization_known, submission, wait_until
from tests.support.infra import free_port, wait_for_port

pytestmark = pytest.mark.integration

USERS = {
    "yantai": {"sub": "banka-sd-yt-handler", "name": "烟台经办", "unit": "BANKA-SD-YT", "roles": ["handler"]},
    "shaoxing": {"sub": "banka-zj-sx-handler", "name": "绍兴经办", "unit": "BANKA-ZJ-SX", "roles": ["handler"]},
    "auditor": {"sub": "banka-auditor", "name": "审计", "unit": "BANKA", "roles": ["auditor"]},
    "yantai_supervisor": {"sub": "banka-sd-yt-supervisor", "name": "烟台主管", "unit": "BANKA-SD-YT",
                          "roles": ["supervisor"]},
    "shandong_cpd": {"sub": "banka-sd-cpd", "name": "山东消保", "unit": "BANKA-SD",
                     "roles": ["consumer_protection", "supervisor"]},
}


@pytest.fixture
def edge(settings, run_services):
    port = free_port()
    # The whole platform: the approvals listed come from sla and mediation alike.
    with run_services(settings, IntakeService, RoutingService, SlaService, MediationService, GatewayService,
                      WEB_SERVER_ADDRESS=f"127.0.0.1:{port}"):
        wait_for_port(port)
        organization_known(settings, "intake", "sla", "mediation")
        yield f"http://127.0.0.1:{port}", settings


def call(settings, base, who, method, path, **kwargs):
    headers = kwargs.pop("headers", {})
    if who is not None:
        headers["Authorization"] = "Bearer " + issue_token(USERS[who], settings.jwt_secret)
    return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)


def test_a_complaint_from_the_web_to_its_closing(edge):
    base, settings = edge
    body = dict(submission(branch="BANKA-SD-YT"), channel="web")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = call(settings, base, "yantai", "POST", "/api/v1/complaints", json=body, headers=dict(key))
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert receipt["status"] == "received"
    again = call(settings, base, "yantai", "POST", "/api/v1/complaints", json=body, headers=dict(key))
    assert again.status_code == 200
    assert again.json() == receipt
    number = receipt["complaint_no"]
    path = f"/api/v1/complaints/{number}"

    # Routing assigns it where it was received (first-inquiry responsibility); SLA starts its clock.
    def assigned():
        view = call(settings, base, "yantai", "GET", path).json()
        return view if view.get("assignment") and view["sla"]["state"] == "on_track" else None

    view = wait_until(assigned, "routing assigned the complaint")
    assert view["assignment"]["unit"] == "BANKA-SD-YT"
    assert view["first_responder"]["unit"] == "BANKA-SD-YT"
    assert view["sla"]["policy"] == "cbirc-2020"

    # A sibling province's handler does not see it; the auditor of the institution does.
    missing = call(settings, base, "shaoxing", "GET", path)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert call(settings, base, "auditor", "GET", path).status_code == 200
    listed = call(settings, base, "shaoxing", "GET", "/api/v1/complaints").json()
    assert number not in {c["complaint_no"] for c in listed["items"]}

    accepted = call(settings, base, "yantai", "POST", f"{path}/accept", json={})
    assert accepted.status_code == 200, accepted.text
    wait_until(lambda: call(settings, base, "yantai", "GET", path).json()["status"] == "in_progress",
               "intake recorded the acceptance")
    decided = call(settings, base, "yantai", "POST", f"{path}/decision",
                   json={"outcome": "upheld", "remedy": "refund", "amount": "300.00", "message": "年费已退还"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided"
    refused = call(settings, base, "yantai", "POST", f"{path}/close", json={"satisfaction": "satisfied"})
    assert refused.status_code == 422
    assert "root_cause" in refused.json()["error"]["details"]
    closed = call(settings, base, "yantai", "POST", f"{path}/close",
                  json={"satisfaction": "satisfied", "root_cause": "fees_and_pricing"})
    assert closed.status_code == 200
    again_closed = call(settings, base, "yantai", "POST", f"{path}/close",
                        json={"satisfaction": "satisfied", "root_cause": "fees_and_pricing"})
    assert again_closed.status_code == 409
    assert again_closed.json()["error"]["code"] == "conflict"

    # The decision stopped the clock in time.
    met = wait_until(lambda: call(settings, base, "yantai", "GET", path).json()["sla"]["state"] == "met",
                     "the SLA clock was met")
    assert met
    history = [entry["type"] for entry in call(settings, base, "yantai", "GET", path).json()["history"]]
    assert history[0] == "complaint_received"
    assert {"complaint_assigned", "complaint_accepted", "complaint_decided", "complaint_closed", "sla_met"} <= set(
        history)


def test_the_edge_answers_errors_in_the_contract_shape(edge):
    base, settings = edge
    assert call(settings, base, None, "GET", "/api/v1/complaints").status_code == 401
    assert call(settings, base, None, "GET", "/health").status_code == 200
    document = call(settings, base, None, "GET", "/api/v1/openapi.json").json()
    assert "/api/v1/complaints/{complaint_no}/transfer" in document["paths"]
    invalid = call(settings, base, "yantai", "POST", "/api/v1/complaints",
                   json=dict(submission(customer={"name": "王芳"}), channel="web"),
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"] == {
        "customer": ["give at least one of phone, email or address so the customer can be answered"]}
    units = call(settings, base, "yantai", "GET", "/api/v1/org/units").json()
    assert [tree["code"] for tree in units] == ["BANKA-SD-YT"]
    assert {child["level"] for child in units[0]["children"]} == {"county"}


def test_a_transfer_is_seen_by_its_receiver_and_moves_accountability_when_accepted(edge):
    base, settings = edge
    created = call(settings, base, "yantai", "POST", "/api/v1/complaints",
                   json=dict(submission(branch="BANKA-SD-YT"), channel="phone"),
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    path = f"/api/v1/complaints/{created.json()['complaint_no']}"
    wait_until(lambda: call(settings, base, "yantai", "GET", path).json().get("assignment"), "assigned")
    assert call(settings, base, "shaoxing", "GET", path).status_code == 404

    never_valid = call(settings, base, "yantai", "POST", f"{path}/transfer",
                       json={"to_unit": "BANKA-ZJ-SX", "reason": "该产品由代理机构销售"})
    assert never_valid.status_code == 422, never_valid.text
    asked = call(settings, base, "yantai", "POST", f"{path}/transfer",
                 json={"to_unit": "BANKA-ZJ-SX", "reason": "客户账户开立于绍兴分行，交易均在绍兴发生"})
    assert asked.status_code == 200, asked.text
    # Waiting for the receiver's answer, the sender stays accountable and the receiver may look.
    pending = wait_until(lambda: call(settings, base, "shaoxing", "GET", path).status_code == 200,
                         "the receiver sees the pending transfer")
    assert pending
    assert call(settings, base, "yantai", "GET", path).json()["unit"] == "BANKA-SD-YT"
    taken = call(settings, base, "shaoxing", "POST", f"{path}/transfer/accept", json={})
    assert taken.status_code == 200, taken.text

    def moved():
        view = call(settings, base, "shaoxing", "GET", path)
        # The transfer and the assignment it brings are two facts that arrive in either order.
        body = view.json() if view.status_code == 200 else {}
        return body if body.get("unit") == "BANKA-ZJ-SX" and body.get("status") == "in_progress" else None

    view = wait_until(moved, "accountability moved to the receiver")
    assert view["first_responder"]["unit"] == "BANKA-SD-YT"
    assert [t["type"] for t in view["transfers"]] == ["complaint_transfer_requested", "complaint_transferred"]
    assert call(settings, base, "yantai", "GET", path).status_code == 404


def test_until_it_accepts_a_transfer_the_offered_unit_may_read_it_and_answer_nothing_more(edge):
    base, settings = edge
    created = call(settings, base, "yantai", "POST", "/api/v1/complaints",
                   json=dict(submission(branch="BANKA-SD-YT"), channel="phone"),
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    path = f"/api/v1/complaints/{created.json()['complaint_no']}"
    wait_until(lambda: call(settings, base, "yantai", "GET", path).json().get("assignment"), "assigned")
    asked = call(settings, base, "yantai", "POST", f"{path}/transfer",
                 json={"to_unit": "BANKA-ZJ-SX", "reason": "客户账户开立于绍兴分行，交易均在绍兴发生"})
    assert asked.status_code == 200, asked.text
    wait_until(lambda: call(settings, base, "shaoxing", "GET", path).status_code == 200,
               "the receiver sees the pending transfer")

    appraisal = {"reason": "委托第三方鉴定", "ground": "third_party_appraisal", "evidence": "鉴定委托书 2026-118"}
    for suffix, body in (("withdraw", {}), ("pause", appraisal), ("resume", {"reason": "鉴定完成"}),
                         ("extend", {"days": 10, "reason": "需调取录音"}), ("escalate", {"reason": "重大"}),
                         ("decision", {"outcome": "upheld", "message": "已退还"})):
        refused = call(settings, base, "shaoxing", "POST", f"{path}/{suffix}", json=body)
        assert refused.status_code == 403, (suffix, refused.text)
        assert "stays accountable" in refused.json()["error"]["message"]

    # Nothing moved: the clock runs unextended, the complaint waits for the receiver's answer.
    [clock] = call(settings, base, "yantai", "GET", f"{path}/clocks").json()
    assert (clock["state"], clock["extensions"]) == ("running", 0)
    view = call(settings, base, "yantai", "GET", path).json()
    assert view["status"] == "transfer_pending" and view["unit"] == "BANKA-SD-YT"
    assert not {"complaint_withdrawn", "sla_paused", "sla_extended"} & {h["type"] for h in view["history"]}
    # The sender still acts on it meanwhile.
    withdrawn = call(settings, base, "yantai", "POST", f"{path}/withdraw", json={"reason": "客户撤回投诉"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"


def test_an_action_answers_with_what_it_did(edge):
    base, settings = edge
    created = call(settings, base, "yantai", "POST", "/api/v1/complaints",
                   json=dict(submission(branch="BANKA-SD-YT"), channel="web"),
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    promised = created.json()["due_by"]
    path = f"/api/v1/complaints/{created.json()['complaint_no']}"
    wait_until(lambda: call(settings, base, "yantai", "GET", path).json().get("assignment"), "assigned")

    def done(suffix, body, who="yantai"):
        answer = call(settings, base, who, "POST", f"{path}/{suffix}", json=body)
        assert answer.status_code == 200, (suffix, answer.text)
        return answer.json()

    appraisal = {"reason": "委托第三方鉴定", "ground": "third_party_appraisal", "evidence": "鉴定委托书 2026-118"}
    assert done("pause", appraisal, who="yantai_supervisor")["sla"]["state"] == "paused"
    assert done("resume", {"reason": "鉴定完成"})["sla"]["state"] == "on_track"
    extended = done("extend", {"days": 10, "reason": "需调取通话录音核实"})
    assert timeutil.parse(extended["sla"]["due_by"]) > timeutil.parse(promised)
    # The extension is on the history (its notice to the customer follows it there).
    assert [e["type"] for e in extended["history"] if e["type"] != "notice_requested"][-1] == "sla_extended"
    assert done("accept", {})["status"] == "in_progress"
    pending = done("transfer", {"to_unit": "BANKA-ZJ-SX", "reason": "客户账户开立于绍兴分行"})
    assert pending["status"] == "transfer_pending" and pending["unit"] == "BANKA-SD-YT"
    wait_until(lambda: call(settings, base, "shaoxing", "GET", path).status_code == 200, "the receiver sees it")
    # Refused, it goes above both units: out of the refusing unit's reach, which is told where it went.
    refused = done("transfer/reject", {"reason": "客户从未在本分行开户"}, who="shaoxing")
    assert refused == {"complaint_no": created.json()["complaint_no"], "status": "escalated", "unit": "BANKA"}
    assert call(settings, base, "shaoxing", "GET", path).status_code == 404


def test_approvals_are_people_the_superior_unit_extends_to_60_days(edge):
    base, settings = edge
    created = call(settings, base, "yantai", "POST", "/api/v1/complaints",
                   json=dict(submission(branch="BANKA-SD-YT"), channel="phone"),
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    number = created.json()["complaint_no"]
    due_15 = timeutil.parse(created.json()["due_by"])
    path = f"/api/v1/complaints/{number}"
    wait_until(lambda: call(settings, base, "yantai", "GET", path).json().get("assignment"), "assigned")
    wait_until(lambda: call(settings, base, "yantai", "GET", f"{path}/clocks").status_code == 200, "the clock runs")

    # A handler's self-asserted approval is refused, and nothing changes.
    asserted = call(settings, base, "yantai", "POST", f"{path}/extend",
                    json={"days": 45, "reason": "需外部鉴定", "approvals": ["superior_unit"]})
    assert asserted.status_code == 422 and "approvals" in asserted.json()["error"]["details"]
    assert call(settings, base, "yantai", "GET", f"{path}/clocks").json()[0]["extensions"] == 0

    # To 30 days: the handler's own role approves the first step.
    first = call(settings, base, "yantai", "POST", f"{path}/extend", json={"days": 15, "reason": "需调取录音核实"})
    assert first.status_code == 200, first.text
    assert timeutil.parse(first.json()["sla"]["due_by"]) == due_15 + timedelta(days=15)

    # To 60: the superior unit's approval, which a handler of Yantai does not hold: it waits.
    asked = call(settings, base, "yantai", "POST", f"{path}/extend", json={"days": 30, "reason": "需第三方司法鉴定"})
    assert asked.status_code == 202, asked.text
    pending = asked.json()
    assert (pending["action"], pending["needs"], pending["of_unit"]) == (
        "extend", ["consumer_protection", "supervisor"], "BANKA-SD")
    decide = f"/api/v1/approvals/{pending['approval_id']}"
    own = call(settings, base, "yantai", "POST", f"{decide}/approve", json={"note": "自己批准"})
    assert own.status_code == 403 and "their own request" in own.json()["error"]["message"]
    assert call(settings, base, "yantai_supervisor", "GET", "/api/v1/approvals").json()["items"] == []
    assert call(settings, base, "yantai_supervisor", "POST", f"{decide}/approve",
                json={"note": "同意"}).status_code == 403
    [listed] = call(settings, base, "shandong_cpd", "GET", "/api/v1/approvals?pending=true").json()["items"]
    assert listed["approval_id"] == pending["approval_id"] and listed["past_limit"] is False

    # A person of the superior unit approves it: applied at once.
    approved = call(settings, base, "shandong_cpd", "POST", f"{decide}/approve",
                    json={"note": "案情复杂，同意延至60日"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved" and approved.json()["decided_by"]["sub"] == "banka-sd-cpd"
    assert timeutil.parse(approved.json()["complaint"]["sla"]["due_by"]) == due_15 + timedelta(days=45)
    assert call(settings, base, "shandong_cpd", "POST", f"{decide}/refuse", json={"note": "x"}).status_code == 409
    assert call(settings, base, "shandong_cpd", "GET", "/api/v1/approvals").json()["items"] == []

    # Both the request and the decision are on the complaint's history, with who and when.
    history = call(settings, base, "yantai", "GET", path).json()["history"]
    [requested] = [h for h in history if h["type"] == "approval_requested"]
    [decided] = [h for h in history if h["type"] == "approval_decided"]
    assert requested["actor"] == "banka-sd-yt-handler" and requested["details"]["needs"] == pending["needs"]
    assert decided["actor"] == "banka-sd-cpd" and decided["details"]["note"] == "案情复杂，同意延至60日"
    assert timeutil.parse(requested["at"]) <= timeutil.parse(decided["at"])
    extended = [h for h in history if h["type"] == "sla_extended"][-1]
    assert extended["actor"] == "banka-sd-yt-handler" and extended["details"]["approvers"][0]["sub"] == "banka-sd-cpd"
