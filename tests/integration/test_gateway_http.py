"""The HTTP edge against a real broker: the gateway and fake intake/routing/sla services run
as nameko containers on a vhost of their own; ``requests`` drives the gateway over TCP."""
from __future__ import annotations

import eventlet
import pytest
import requests
from nameko.containers import ServiceContainer
from nameko.rpc import rpc

from services.common.errors import Conflict, NotFound
from services.gateway.auth import issue_token
from services.gateway.service import GatewayService
from tests.support.infra import free_port, rabbit_vhost, wait_for_port

pytestmark = pytest.mark.integration

SECRET = "gateway-integration-test-secret-0123456789"
CLOSED = "BANKA-20261101-000009"
APPROVAL_ID = "sla-" + "0" * 32
RPC_TIMEOUT = 1.0
calls: list = []

# Bank A, trimmed: head office, one tier-1 branch, two city branches, a county sub-branch.
TREE = {"BANKA": ["BANKA-SD"], "BANKA-SD": ["BANKA-SD-YT", "BANKA-SD-WF"], "BANKA-SD-YT": ["BANKA-SD-YT-ZF"],
        "BANKA-SD-YT-ZF": [], "BANKA-SD-WF": []}
LEVELS = {"BANKA": "head_office", "BANKA-SD": "tier1", "BANKA-SD-YT": "city", "BANKA-SD-WF": "city",
          "BANKA-SD-YT-ZF": "county"}
PARENTS = {"BANKA": None, "BANKA-SD": "BANKA", "BANKA-SD-YT": "BANKA-SD", "BANKA-SD-WF": "BANKA-SD",
           "BANKA-SD-YT-ZF": "BANKA-SD-YT"}


def below(unit):
    return [unit] + [code for child in TREE[unit] for code in below(child)]


def tree(unit):
    return {"code": unit, "institution": "BANKA", "name": unit, "level": LEVELS[unit],
            "parent": PARENTS[unit], "region": "370000",
            "departments": [{"code": "CPD", "name": "消费者权益保护部", "office": "back"}],
            "children": [tree(child) for child in TREE[unit]]}


class FakeRouting:
    name = "routing"

    @rpc
    def visible_units(self, unit):
        calls.append(("routing.visible_units", unit))
        if unit not in TREE:
            raise NotFound(f"unit {unit} not found")
        return below(unit)

    @rpc
    def org_units(self, visible_root):
        calls.append(("routing.org_units", visible_root))
        return [tree(visible_root or "BANKA")]

    @rpc
    def act(self, complaint_no, action, data, actor):
        # Routing owns its state; intake's record follows its events later, so this fake
        # leaves the fake intake's record alone, as the real routing does.
        calls.append(("routing.act", complaint_no, action, data, actor))
        complaint = FakeIntake.visible(complaint_no, below(actor["unit"]))
        if complaint["status"] == "closed":
            raise Conflict(f"{action} is not allowed on a closed complaint")
        return {"complaint_no": complaint_no, "action": action, "events": [f"routing-{action}"]}


class FakeIntake:
    name = "intake"
    by_key: dict = {}
    reads: list = []  # every answer of get, numbered: which read the gateway answered with shows
    # A complaint of the county sub-branch, closed: actions on it are refused with 409.
    complaints: dict = {CLOSED: {"complaint_no": CLOSED, "status": "closed", "branch": "BANKA-SD-YT-ZF",
                                 "channel": "web"}}

    @staticmethod
    def visible(complaint_no, visible_units):
        complaint = FakeIntake.complaints.get(complaint_no)
        if complaint is None or (visible_units is not None and complaint["branch"] not in visible_units):
            raise NotFound(f"complaint {complaint_no} not found")
        return complaint

    @rpc
    def submit(self, payload, channel, idempotency_key, app_id, submitter):
        calls.append(("intake.submit", payload, channel, idempotency_key, app_id, submitter))
        if payload.get("subject") == "BOOM":
            return {"outcome": "surprise"}
        if payload.get("subject") == "REJECT":
            return {"outcome": "rejected", "complaint": None, "errors": {"institution": ["unknown institution"]}}
        if idempotency_key in self.by_key:
            return {"outcome": "duplicate", "complaint": self.by_key[idempotency_key], "errors": {}}
        number = f"BANKA-20261122-{len(self.by_key) + 1:06d}"
        receipt = {"complaint_no": number, "status": "received", "due_by": "2026-12-07T23:59:59+08:00"}
        self.by_key[idempotency_key] = receipt
        self.complaints[number] = {**receipt, "branch": payload.get("branch"), "channel": channel}
        return {"outcome": "accepted", "complaint": receipt, "errors": {}}

    @rpc
    def get(self, complaint_no, visible_units):
        calls.append(("intake.get", complaint_no, visible_units))
        if complaint_no == "SLOW":
            eventlet.sleep(RPC_TIMEOUT + 0.5)
        answer = {**self.visible(complaint_no, visible_units), "read": len(self.reads) + 1}
        self.reads.append(answer)
        return answer

    @rpc
    def act(self, complaint_no, action, data, actor):
        calls.append(("intake.act", complaint_no, action, data, actor))
        complaint = self.visible(complaint_no, below(actor["unit"]))
        if complaint["status"] == "closed":
            raise Conflict(f"{action} is not allowed on a closed complaint", {"status": "closed"})
        complaint["status"] = {"decision": "decided", "close": "closed", "reopen": "reopened",
                               "withdraw": "withdrawn"}[action]
        return complaint

    @rpc
    def get_when_applied(self, complaint_no, event_ids, visible_units):
        calls.append(("intake.get_when_applied", complaint_no, event_ids, visible_units))
        complaint = self.visible(complaint_no, visible_units)
        answer = {**complaint, "read": len(self.reads) + 1}
        self.reads.append(answer)
        return {"applied": not complaint.get("lagging"), "complaint": answer}

    @rpc
    def list(self, filters, visible_units, limit, cursor):
        calls.append(("intake.list", filters, visible_units, limit, cursor))
        items = [c for c in self.complaints.values() if visible_units is None or c["branch"] in visible_units]
        return {"items": items[:limit], "next_cursor": "next" if len(items) > limit else None}


class FakeSla:
    name = "sla"

    @rpc
    def act(self, complaint_no, action, data, actor):
        calls.append(("sla.act", complaint_no, action, data, actor))
        FakeIntake.visible(complaint_no, below(actor["unit"]))
        if data.get("days", 0) > 60:
            raise Conflict("the policy allows 60 days in all", {"days": ["At most 60 days in all."]})
        if action == "extend" and data["days"] > 15:
            return {"approval": {"approval_id": APPROVAL_ID, "action": "extend", "needs": ["supervisor"],
                                 "of_unit": "BANKA-SD", "complaint_no": complaint_no, "state": "pending"}}
        return {"clocks": [], "events": [f"sla-{action}"]}

    @rpc
    def approvals(self, actor, pending):
        calls.append(("sla.approvals", actor, pending))
        return [{"approval_id": APPROVAL_ID, "action": "extend", "needs": ["supervisor"], "of_unit": "BANKA-SD",
                 "requested_at": "2026-11-24T09:00:00+08:00"}]

    @rpc
    def decide_approval(self, approval_id, decision, note, actor):
        calls.append(("sla.decide_approval", approval_id, decision, note, actor))
        if approval_id != APPROVAL_ID:
            raise NotFound(f"no approval {approval_id}")
        return {"approval": {"approval_id": approval_id, "action": "extend", "needs": ["supervisor"],
                             "of_unit": "BANKA-SD", "complaint_no": CLOSED, "state": f"{decision}d"},
                "events": ["sla-approval"]}

    @rpc
    def clocks(self, complaint_no):
        calls.append(("sla.clocks", complaint_no))
        return [{"clock": "decision", "policy": "nfra_2020", "state": "running", "paused": False,
                 "due_by": "2026-12-07T23:59:59+08:00", "extensions": 1},
                {"clock": "review", "policy": "nfra_2020", "state": "paused", "paused": True, "due_by": None}]


class FakeMediation:
    name = "mediation"
    pending = {"approval_id": "mediation-" + "1" * 32, "action": "refer", "needs": ["supervisor"],
               "of_unit": "BANKA-SD-YT-ZF", "requested_at": "2026-11-23T09:00:00+08:00"}

    @rpc
    def health(self):
        return {"status": "ok"}

    @rpc
    def refer(self, complaint_no, data, actor):
        calls.append(("mediation.refer", complaint_no, data, actor))
        FakeIntake.visible(complaint_no, below(actor["unit"]))
        return {"approval": dict(self.pending, complaint_no=complaint_no, state="pending")}

    @rpc
    def approvals(self, actor, pending):
        calls.append(("mediation.approvals", actor, pending))
        return [self.pending]

    @rpc
    def decide_approval(self, approval_id, decision, note, actor):
        calls.append(("mediation.decide_approval", approval_id, decision, note, actor))
        raise NotFound(f"no approval {approval_id}")


def token(unit="BANKA-SD-YT", roles=("handler",), sub="u1", secret=SECRET, ttl=600):
    return issue_token({"sub": sub, "name": "测试用户", "unit": unit, "roles": list(roles)}, secret, ttl=ttl)


def auth(**kwargs):
    return {"Authorization": f"Bearer {token(**kwargs)}"}


def run_gateway(amqp_uri, *peers):
    port = free_port()
    config = {"AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}", "JWT_SECRET": SECRET,
              "RPC_TIMEOUT": RPC_TIMEOUT, "serializer": "json", "max_workers": 10}
    containers = [ServiceContainer(cls, config) for cls in (GatewayService, *peers)]
    for container in containers:
        container.start()
    wait_for_port(port, timeout=10)
    return f"http://127.0.0.1:{port}", containers


def stop(containers):
    for container in reversed(containers):
        container.stop()


@pytest.fixture(scope="module")
def base():
    with rabbit_vhost("complaints-test-gateway") as amqp_uri:
        url, containers = run_gateway(amqp_uri, FakeIntake, FakeRouting, FakeSla, FakeMediation)
        try:
            yield url
        finally:
            stop(containers)


@pytest.fixture(scope="module")
def base_without_intake():
    with rabbit_vhost("complaints-test-gateway") as amqp_uri:
        url, containers = run_gateway(amqp_uri, FakeRouting)
        try:
            yield url
        finally:
            stop(containers)


@pytest.fixture(autouse=True)
def _clear_calls():
    calls.clear()


def submission(**overrides):
    body = {"schema": "complaint.submit/1", "channel": "web", "received_at": "2026-11-22T09:30:00+08:00",
            "institution": "BANKA", "branch": "BANKA-SD-YT-ZF", "kind": "complaint",
            "customer": {"name": "王芳", "phone": "13800000000"}, "product": "credit_card",
            "subject": "年费未经同意扣收", "description": "..."}
    body.update(overrides)
    return body


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_health_needs_no_token_and_reports_peers(base):
    response = requests.get(f"{base}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok",
                               "peers": {"intake": "up", "routing": "up", "sla": "up", "mediation": "up"}}
    assert requests.get(f"{base}/health?peers=false", timeout=5).json() == {"status": "ok"}


def test_openapi_needs_no_token(base):
    response = requests.get(f"{base}/api/v1/openapi.json", timeout=5)
    assert response.status_code == 200
    assert "/api/v1/complaints/{complaint_no}" in response.json()["paths"]


def test_submit_then_same_key_gives_same_receipt(base):
    headers = {**auth(), "Idempotency-Key": "k-1"}
    first = requests.post(f"{base}/api/v1/complaints", json=submission(), headers=headers, timeout=5)
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert set(receipt) == {"complaint_no", "status", "due_by"}
    assert first.headers["Location"] == f"/api/v1/complaints/{receipt['complaint_no']}"
    again = requests.post(f"{base}/api/v1/complaints", json=submission(), headers=headers, timeout=5)
    assert again.status_code == 200
    assert again.json() == receipt
    assert calls[0] == ("routing.visible_units", "BANKA")  # the user's unit is of the institution named
    _, payload, channel, key, app_id, submitter = calls[1]
    assert "channel" not in payload and channel == "web"
    assert (key, app_id) == ("u1:k-1", "http")
    assert submitter == {"sub": "u1", "name": "测试用户", "unit": "BANKA-SD-YT", "roles": ["handler"]}
    # The key is the user's own: another user with the same key makes another complaint.
    other = requests.post(f"{base}/api/v1/complaints", json=submission(),
                          headers={**auth(sub="u2"), "Idempotency-Key": "k-1"}, timeout=5)
    assert other.status_code == 201
    assert other.json()["complaint_no"] != receipt["complaint_no"]


def test_submit_rejected_by_intake_is_422_with_details(base):
    body = submission(customer={"name": "王芳", "phone": "13800000000"})
    response = requests.post(f"{base}/api/v1/complaints", json=dict(body, subject="REJECT"),
                             headers={**auth(), "Idempotency-Key": "k-bad"}, timeout=5)
    error = assert_error(response, 422, "validation_failed")
    assert error["details"] == {"institution": ["unknown institution"]}


def test_what_the_document_states_is_checked_at_the_edge(base):
    body = submission()
    del body["customer"]
    response = requests.post(f"{base}/api/v1/complaints", json=dict(body, direct="yes"),
                             headers={**auth(), "Idempotency-Key": "k-edge"}, timeout=5)
    error = assert_error(response, 422, "validation_failed")
    assert error["details"] == {"customer": ["Missing data for required field."], "direct": ["must be true or false"]}
    assert calls == []


def test_a_user_of_another_institution_is_refused_before_intake(base):
    response = requests.post(f"{base}/api/v1/complaints", json=submission(),
                             headers={**auth(unit="INSA-SC-CD"), "Idempotency-Key": "k-insa"}, timeout=5)
    error = assert_error(response, 403, "forbidden")
    assert list(error["details"]) == ["institution"]
    assert [call[0] for call in calls] == ["routing.visible_units"]


def test_submit_channel_is_checked_at_the_edge(base):
    response = requests.post(f"{base}/api/v1/complaints", json=submission(channel="pigeon"),
                             headers={**auth(), "Idempotency-Key": "k-ch"}, timeout=5)
    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["channel"]
    assert calls == []


def test_submit_needs_idempotency_key(base):
    response = requests.post(f"{base}/api/v1/complaints", json=submission(), headers=auth(), timeout=5)
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("key", ["k" * 201, "cl\u00e9", "a\tb"])
def test_an_idempotency_key_is_printable_ascii_of_at_most_200(base, key):
    response = requests.post(f"{base}/api/v1/complaints", json=submission(), timeout=5,
                             headers={**auth(), "Idempotency-Key": key.encode("latin-1")})
    assert list(assert_error(response, 400, "bad_request")["details"]) == ["Idempotency-Key"]


def test_malformed_json_is_400(base):
    response = requests.post(f"{base}/api/v1/complaints", data=b'{"schema": ',
                             headers={**auth(), "Idempotency-Key": "k-2", "Content-Type": "application/json"},
                             timeout=5)
    assert_error(response, 400, "malformed_json")


def test_no_token_bad_token_expired_token_are_401(base):
    url = f"{base}/api/v1/complaints"
    assert_error(requests.get(url, timeout=5), 401, "unauthorized")
    assert_error(requests.get(url, headers=auth(secret="another-secret-of-at-least-32-bytes!"), timeout=5), 401)
    assert_error(requests.get(url, headers=auth(ttl=-3600), timeout=5), 401)
    assert_error(requests.get(url, headers={"Authorization": "Basic abc"}, timeout=5), 401)


def test_wrong_role_is_403(base):
    response = requests.post(f"{base}/api/v1/complaints", json=submission(),
                             headers={**auth(roles=("auditor",), unit="BANKA"), "Idempotency-Key": "k-3"}, timeout=5)
    assert_error(response, 403, "forbidden")
    assert calls == []


def test_get_complaint_inside_and_outside_the_subtree(base):
    created = requests.post(f"{base}/api/v1/complaints", json=submission(),
                            headers={**auth(), "Idempotency-Key": "k-get"}, timeout=5).json()
    url = f"{base}/api/v1/complaints/{created['complaint_no']}"
    response = requests.get(url, headers=auth(unit="BANKA-SD-YT"), timeout=5)
    assert response.status_code == 200
    assert response.json()["complaint_no"] == created["complaint_no"]
    assert ("intake.get", created["complaint_no"], below("BANKA-SD-YT")) in calls
    # An auditor at head office sees the whole institution; an admin sees everything (None).
    assert requests.get(url, headers=auth(unit="BANKA", roles=("auditor",)), timeout=5).status_code == 200
    calls.clear()
    assert requests.get(url, headers=auth(roles=("admin",)), timeout=5).status_code == 200
    assert calls == [("intake.get", created["complaint_no"], None)]
    # The sub-branch itself sees it; a branch beside it gets 404, as if it did not exist.
    assert requests.get(url, headers=auth(unit="BANKA-SD-YT-ZF"), timeout=5).status_code == 200
    assert_error(requests.get(url, headers=auth(unit="BANKA-SD-WF"), timeout=5), 404, "not_found")
    assert_error(requests.get(f"{base}/api/v1/complaints/NOPE", headers=auth(), timeout=5), 404, "not_found")


def test_unknown_unit_in_token_is_403(base):
    assert_error(requests.get(f"{base}/api/v1/complaints", headers=auth(unit="BANKB"), timeout=5), 403)


def test_unknown_route_and_wrong_method_have_the_error_shape(base):
    assert_error(requests.get(f"{base}/api/v1/nothing-here", timeout=5), 404, "not_found")
    response = requests.delete(f"{base}/api/v1/complaints", headers=auth(), timeout=5)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_list_passes_filters_and_visibility(base):
    requests.post(f"{base}/api/v1/complaints", json=submission(),
                  headers={**auth(), "Idempotency-Key": "k-list"}, timeout=5)
    calls.clear()
    params = {"status": "received", "overdue": "true", "from": "2026-11-01", "to": "2026-11-30T23:59:59+08:00",
              "limit": "1", "unit": "BANKA-SD-YT-ZF"}
    response = requests.get(f"{base}/api/v1/complaints", params=params, headers=auth(), timeout=5)
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next_cursor"} and len(page["items"]) == 1
    assert calls[-1] == ("intake.list", {"status": "received", "unit": "BANKA-SD-YT-ZF", "overdue": True,
                                         "from": "2026-11-01", "to": "2026-11-30T23:59:59+08:00"},
                         below("BANKA-SD-YT"), 1, None)


def test_list_query_errors_are_422_with_details(base):
    params = {"limit": "500", "overdue": "maybe", "from": "yesterday", "to": "2026-11-30T10:00:00", "colour": "red"}
    response = requests.get(f"{base}/api/v1/complaints", params=params, headers=auth(), timeout=5)
    error = assert_error(response, 422, "validation_failed")
    assert set(error["details"]) == {"limit", "overdue", "from", "to", "colour"}
    assert all(isinstance(messages, list) for messages in error["details"].values())


def test_org_units_for_a_branch_and_for_an_admin(base):
    response = requests.get(f"{base}/api/v1/org/units", headers=auth(unit="BANKA-SD-YT"), timeout=5)
    assert response.status_code == 200
    trees = response.json()
    assert [t["code"] for t in trees] == ["BANKA-SD-YT"]
    assert trees[0]["children"][0]["code"] == "BANKA-SD-YT-ZF"
    calls.clear()
    requests.get(f"{base}/api/v1/org/units", headers=auth(roles=("admin",)), timeout=5)
    assert calls == [("routing.org_units", None)]


def test_unexpected_answer_is_500_without_a_traceback(base):
    response = requests.post(f"{base}/api/v1/complaints", json=submission(subject="BOOM"),
                             headers={**auth(), "Idempotency-Key": "k-boom"}, timeout=5)
    assert_error(response, 500, "internal_error")
    assert "Traceback" not in response.text and "surprise" not in response.text


def test_a_peer_that_does_not_answer_in_time_is_503(base):
    response = requests.get(f"{base}/api/v1/complaints/SLOW", headers=auth(roles=("admin",)), timeout=10)
    assert_error(response, 503, "service_unavailable")


def test_intake_not_running_is_503(base_without_intake):
    response = requests.post(f"{base_without_intake}/api/v1/complaints", json=submission(),
                             headers={**auth(), "Idempotency-Key": "k-4"}, timeout=10)
    assert_error(response, 503, "service_unavailable")
    health = requests.get(f"{base_without_intake}/health", timeout=5).json()
    assert health["peers"] == {"intake": "down", "routing": "up", "sla": "down", "mediation": "down"}


# -- handler actions ------------------------------------------------------------------------------

def new_complaint(base, key):
    """A complaint of the county sub-branch BANKA-SD-YT-ZF; its number."""
    response = requests.post(f"{base}/api/v1/complaints", json=submission(),
                             headers={**auth(), "Idempotency-Key": key}, timeout=5)
    assert response.status_code == 201, response.text
    calls.clear()
    return response.json()["complaint_no"]


def identity(unit="BANKA-SD-YT", roles=("handler",), sub="u1"):
    """What the gateway passes as ``actor``: the token's claims."""
    return {"sub": sub, "name": "测试用户", "unit": unit, "roles": list(roles)}


def post(base, number, action, body=None, **token_claims):
    return requests.post(f"{base}/api/v1/complaints/{number}/{action}", json=body,
                         headers=auth(**token_claims), timeout=5)


# (path suffix, body, the peer's call without complaint_no, actor and visible units)
INTAKE_ACTIONS = [
    ("decision", {"outcome": "partially_upheld", "remedy": "退还年费", "amount": "300", "message": "已退还"},
     ("decision", {"outcome": "partially_upheld", "remedy": "退还年费", "amount": "300.00", "message": "已退还"})),
    ("reopen", {"reason": "客户申请核查"}, ("reopen", {"reason": "客户申请核查"})),
    ("withdraw", {}, ("withdraw", {})),
    ("close", {"satisfaction": "satisfied", "root_cause": "fees_and_pricing"},
     ("close", {"satisfaction": "satisfied", "root_cause": "fees_and_pricing"})),
]
ROUTING_ACTIONS = [
    ("accept", None, ("accept", {})),
    ("transfer", {"to_unit": "BANKA-SD-YT", "reason": "属地管理"},
     ("transfer", {"to_unit": "BANKA-SD-YT", "reason": "属地管理"})),
    ("transfer/accept", {}, ("transfer_accept", {})),
    ("transfer/reject", {"reason": "非本机构业务"}, ("transfer_reject", {"reason": "非本机构业务"})),
    ("escalate", {"reason": "重大投诉"}, ("escalate", {"reason": "重大投诉"})),
    ("misconduct", {"clue": "collusion", "note": "与中介串通"},
     ("misconduct", {"clue": "collusion", "note": "与中介串通"})),
]


def test_intake_actions_reach_intake_with_the_token_identity(base):
    number = new_complaint(base, "k-act-intake")
    for suffix, body, (action, data) in INTAKE_ACTIONS:
        calls.clear()
        response = post(base, number, suffix, body)
        assert response.status_code == 200, (suffix, response.text)
        assert response.json()["complaint_no"] == number
        assert calls == [("intake.act", number, action, data, identity())], suffix
    assert response.json()["status"] == "closed"


def test_routing_actions_reach_routing_and_answer_the_complaint(base):
    number = new_complaint(base, "k-act-routing")
    units = below("BANKA-SD-YT")
    for suffix, body, (action, data) in ROUTING_ACTIONS:
        calls.clear()
        response = post(base, number, suffix, body)
        assert response.status_code == 200, (suffix, response.text)
        assert response.json()["complaint_no"] == number
        assert calls == [("routing.act", number, action, data, identity()),
                         ("routing.visible_units", "BANKA-SD-YT"),
                         ("intake.get_when_applied", number, [f"routing-{action}"], units)], suffix
        # The answer is intake's record as read once it applied routing's facts, not routing's own answer.
        assert response.json() == FakeIntake.reads[-1], suffix


def test_the_body_actor_is_only_a_note(base):
    number = new_complaint(base, "k-act-note")
    response = post(base, number, "escalate", {"reason": "重大投诉", "actor": "admin"}, sub="u9")
    assert response.status_code == 200, response.text
    assert calls[0][4] == {**identity(sub="u9"), "note": "admin"}


def test_clock_actions_are_done_by_sla_as_the_caller(base):
    number = new_complaint(base, "k-act-extend")
    body = {"days": 10, "reason": "需司法鉴定"}
    response = post(base, number, "extend", body, unit="BANKA-SD", roles=("supervisor",))
    assert response.status_code == 200, response.text
    assert response.json() == FakeIntake.reads[-1]  # intake's record read once it applied sla's facts
    assert calls[0] == ("sla.act", number, "extend", body, identity(unit="BANKA-SD", roles=("supervisor",)))
    assert calls[2] == ("intake.get_when_applied", number, ["sla-extend"], below("BANKA-SD"))
    # sla answers who may (here: 404 outside the caller's units).
    assert_error(post(base, number, "extend", {"days": 5, "reason": "x"}, unit="BANKA-SD-WF"), 404, "not_found")


def test_an_action_the_record_has_not_caught_up_with_answers_202_and_where_to_look(base):
    number = new_complaint(base, "k-act-lagging")
    FakeIntake.complaints[number]["lagging"] = True
    response = post(base, number, "pause", PAUSE)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/api/v1/complaints/{number}"
    assert response.json() == {"complaint_no": number, "action": "pause", "status": "accepted",
                               "location": f"/api/v1/complaints/{number}", "events": ["sla-pause"]}


PAUSE = {"reason": "外部鉴定", "ground": "third_party_appraisal", "evidence": "鉴定委托书 2026-118"}


def test_pause_resume_and_clocks(base):
    number = new_complaint(base, "k-act-pause")
    for action in ("pause", "resume"):
        calls.clear()
        body = PAUSE if action == "pause" else {"reason": "鉴定完成"}
        assert post(base, number, action, body).status_code == 200
        assert calls[0] == ("sla.act", number, action, body, identity())
    calls.clear()
    response = requests.get(f"{base}/api/v1/complaints/{number}/clocks", headers=auth(unit="BANKA", roles=("auditor",)),
                            timeout=5)
    assert response.status_code == 200, response.text
    assert [clock["clock"] for clock in response.json()] == ["decision", "review"]
    assert calls[1:] == [("intake.get", number, below("BANKA")), ("sla.clocks", number)]
    response = requests.get(f"{base}/api/v1/complaints/{number}/clocks", headers=auth(unit="BANKA-SD-WF"), timeout=5)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("suffix,body,fields_", [
    ("decision", {"outcome": "won", "amount": "12.345"}, {"outcome", "amount", "message"}),
    ("close", {"root_cause": "weather"}, {"satisfaction", "root_cause"}),
    ("transfer", {}, {"to_unit", "reason"}),
    ("transfer/reject", {"reason": "   "}, {"reason"}),
    ("extend", {"reason": "x", "approvals": ["superior_unit"]}, {"days", "approvals"}),
    ("misconduct", {"note": "x"}, {"clue"}),
    ("misconduct", {"clue": "buck_passing"}, {"note"}),
    ("pause", None, {"reason", "ground"}),
])
def test_missing_or_invalid_fields_are_422_with_field_paths(base, suffix, body, fields_):
    response = post(base, CLOSED, suffix, body)
    error = assert_error(response, 422, "validation_failed")
    assert set(error["details"]) == fields_
    assert calls == []


def test_an_auditor_may_not_act_but_an_inspector_may_refer_misconduct(base):
    for suffix, body, _ in INTAKE_ACTIONS + ROUTING_ACTIONS[:-1]:
        assert_error(post(base, CLOSED, suffix, body, unit="BANKA", roles=("auditor",)), 403, "forbidden")
    assert_error(post(base, CLOSED, "extend", {"days": 1, "reason": "x"}, roles=("auditor",)), 403)
    assert_error(post(base, CLOSED, "misconduct", {"clue": "threats"}, roles=("auditor",)), 403)
    assert_error(post(base, CLOSED, "decision", INTAKE_ACTIONS[0][1], roles=("inspector",)), 403)
    assert calls == []
    number = new_complaint(base, "k-act-inspector")
    response = post(base, number, "misconduct", {"clue": "threats", "note": "客户称受到威胁"}, roles=("inspector",))
    assert response.status_code == 200, response.text


def test_unknown_complaint_is_404_and_a_refused_transition_409(base):
    assert_error(post(base, "NOPE", "decision", INTAKE_ACTIONS[0][1]), 404, "not_found")
    assert_error(post(base, "NOPE", "accept"), 404, "not_found")
    assert_error(post(base, "NOPE", "pause", PAUSE), 404, "not_found")
    error = assert_error(post(base, CLOSED, "reopen", {"reason": "x"}), 409, "conflict")
    assert error["details"] == {"status": "closed"}
    assert_error(post(base, CLOSED, "escalate", {"reason": "x"}), 409, "conflict")
    error = assert_error(post(base, CLOSED, "extend", {"days": 90, "reason": "x"}), 409, "conflict")
    assert error["details"] == {"days": ["At most 60 days in all."]}


def test_actions_take_post_only_and_a_referral_is_passed_to_mediation(base):
    response = requests.get(f"{base}/api/v1/complaints/{CLOSED}/accept", headers=auth(), timeout=5)
    assert_error(response, 405, "method_not_allowed")
    # The edge checks the body first; the mediation service makes the referral and judges who may.
    assert_error(post(base, CLOSED, "mediation", {"reason": "x"}), 422, "validation_failed")
    assert calls == []
    referral = {"reason": "协商不成",
                "negotiation": [{"at": "2026-11-20T10:00:00+08:00", "by": "yt-001", "note": "电话协商"}],
                "consent": {"given": True, "at": "2026-11-20T11:00:00+08:00", "how": "电话录音"},
                "authority": {"max_settlement_amount": "5000.00", "currency": "CNY"}}
    response = post(base, CLOSED, "mediation", referral)
    assert response.status_code == 202 and response.json()["approval_id"] == FakeMediation.pending["approval_id"]
    assert calls == [("mediation.refer", CLOSED, referral, identity())]


# -- approvals ------------------------------------------------------------------------------------

def test_a_step_the_caller_may_not_approve_answers_202_with_the_pending_approval(base):
    number = new_complaint(base, "k-act-approval")
    response = post(base, number, "extend", {"days": 30, "reason": "需外部鉴定"})
    assert response.status_code == 202, response.text
    assert {"approval_id", "action", "needs", "of_unit"} <= set(response.json())
    assert [call[0] for call in calls] == ["sla.act"]


def test_approvals_are_listed_and_decided_by_their_owner_as_the_caller(base):
    listed = requests.get(f"{base}/api/v1/approvals", headers=auth(unit="BANKA-SD", roles=("supervisor",)),
                          timeout=5)
    assert listed.status_code == 200, listed.text
    # From every service that keeps approvals, newest first.
    assert [item["approval_id"] for item in listed.json()["items"]] == [APPROVAL_ID,
                                                                       FakeMediation.pending["approval_id"]]
    assert calls == [("sla.approvals", identity(unit="BANKA-SD", roles=("supervisor",)), True),
                     ("mediation.approvals", identity(unit="BANKA-SD", roles=("supervisor",)), True)]
    calls.clear()
    url = f"{base}/api/v1/approvals/{APPROVAL_ID}/approve"
    decided = requests.post(url, json={"note": "同意"}, headers=auth(unit="BANKA-SD", roles=("supervisor",)),
                            timeout=5)
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "approved"
    assert calls[0] == ("sla.decide_approval", APPROVAL_ID, "approve", "同意",
                        identity(unit="BANKA-SD", roles=("supervisor",)))
    assert_error(requests.post(url, json={}, headers=auth(), timeout=5), 422, "validation_failed")
    assert_error(requests.post(url, json={"note": "x"}, headers=auth(roles=("auditor",)), timeout=5), 403)
    calls.clear()
    unknown = f"mediation-{'0' * 32}"
    assert_error(requests.post(f"{base}/api/v1/approvals/{unknown}/refuse", json={"note": "x"},
                               headers=auth(), timeout=5), 404, "not_found")
    assert [call[:2] for call in calls] == [("mediation.decide_approval", unknown)]  # its owner says
    assert_error(requests.post(f"{base}/api/v1/approvals/routing-{'0' * 32}/refuse", json={"note": "x"},
                               headers=auth(), timeout=5), 404, "not_found")  # no service keeps those
