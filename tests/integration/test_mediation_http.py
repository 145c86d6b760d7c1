"""Mediation over real HTTP, the real broker and store, with the simulated organization on
the other side: delivery retried through 5xx, a refused signature shown to an operator and
resent, the organizations' callbacks checked as CONTRACTS §4 says, and a raise of the
authority approved by a person who may before it reaches the organization."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta

import pytest
import requests

from services.common import timeutil
from services.gateway.auth import issue_token
from services.gateway.service import GatewayService
from services.intake.service import IntakeService
from services.mediation.service import MediationService
from services.mediation.simulator import Mediator
from services.routing.service import RoutingService
from services.sla.service import SlaService
from tests.support.harness import env_for, submission, wait_until
from tests.support.infra import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.integration

SECRETS = {"SD-BIMC": "sd-bimc-secret-for-the-tests-0001", "SC-BIMC": "sc-bimc-secret-for-the-tests-0002"}
USERS = {
    "admin": {"sub": "admin", "name": "平台管理员", "unit": "BANKA", "roles": ["admin"]},
    "supervisor": {"sub": "banka-sd-yt-supervisor", "name": "张伟", "unit": "BANKA-SD-YT", "roles": ["supervisor"]},
    "handler": {"sub": "banka-sd-yt-handler", "name": "刘洋", "unit": "BANKA-SD-YT", "roles": ["handler"]},
    # The superior unit of Yantai: approves a raise of a mediator's authority.
    "sd_supervisor": {"sub": "banka-sd-supervisor", "name": "陈静", "unit": "BANKA-SD", "roles": ["supervisor"]},
    "shaoxing": {"sub": "banka-zj-sx-handler", "name": "杨帆", "unit": "BANKA-ZJ-SX", "roles": ["handler"]},
    "shaoxing_supervisor": {"sub": "banka-zj-sx-supervisor", "name": "孙强", "unit": "BANKA-ZJ-SX",
                            "roles": ["supervisor"]},
}
FAST_RETRIES = {"MEDIATION_RETRY_BASE": 0.3, "MEDIATION_RETRY_CAP": 1.0, "MEDIATION_RETRY_FOR": 120.0,
                "MEDIATION_TIMEOUT": 2.0}


class Edge:
    def __init__(self, base, settings, mediator, mediator_base):
        self.base, self.settings, self.mediator, self.mediator_base = base, settings, mediator, mediator_base

    def call(self, who, method, path, **kwargs):
        headers = kwargs.pop("headers", {})
        if who is not None:
            headers["Authorization"] = "Bearer " + issue_token(USERS[who], self.settings.jwt_secret)
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def register(self, code, secret=None):
        response = self.call("admin", "PUT", f"/api/v1/mediation/organizations/{code}", json={
            "name": f"{code} 调解中心", "regions": ["370000"] if code.startswith("SD") else ["510000"],
            "url": self.mediator.url(self.mediator_base, code), "secret": secret or SECRETS[code],
            "contact": {"phone": "0531-81000000", "address": "济南市"}})
        assert response.status_code in (200, 201), response.text
        return response

    def complaint(self) -> str:
        created = self.call("handler", "POST", "/api/v1/complaints", headers={"Idempotency-Key": uuid.uuid4().hex},
                            json=dict(submission(branch="BANKA-SD-YT"), channel="phone"))
        assert created.status_code == 201, created.text
        number = created.json()["complaint_no"]
        wait_until(lambda: self.call("handler", "GET", f"/api/v1/complaints/{number}").json()["status"] == "assigned",
                   "the complaint was assigned")
        return number

    def refer(self, number, who="supervisor", **changes):
        body = {"reason": "协商未果，客户同意调解",
                "negotiation": [{"at": timeutil.iso(timeutil.now() - timedelta(days=1)), "by": "banka-sd-yt-handler",
                                 "note": "客户不接受部分退还"}],
                "consent": {"given": True, "at": timeutil.iso(timeutil.now()), "how": "电话录音"},
                "authority": {"max_settlement_amount": "200.00", "currency": "CNY"}}
        body.update(changes)
        return self.call(who, "POST", f"/api/v1/complaints/{number}/mediation", json=body)

    def referral(self, referral_id, who="handler"):
        response = self.call(who, "GET", f"/api/v1/mediation/referrals/{referral_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def delivered(self, referral_id):
        return wait_until(lambda: (r := self.referral(referral_id))["delivery"]["state"] == "delivered" and r,
                          f"{referral_id} was delivered")


@pytest.fixture
def edge(settings, run_services):
    port = free_port()
    mediator = Mediator(SECRETS, f"http://127.0.0.1:{port}")
    mediator_base = mediator.start()
    try:
        with run_services(settings, IntakeService, RoutingService, SlaService, MediationService, GatewayService,
                          WEB_SERVER_ADDRESS=f"127.0.0.1:{port}", **FAST_RETRIES):
            wait_for_port(port)
            yield Edge(f"http://127.0.0.1:{port}", settings, mediator, mediator_base)
    finally:
        mediator.stop()


def test_delivered_once_although_the_organization_answered_500_three_times(edge):
    edge.register("SD-BIMC")
    edge.mediator.behave("SD-BIMC", fail_first=3)
    number = edge.complaint()
    referred = edge.refer(number)
    assert referred.status_code == 201, referred.text
    answer = referred.json()
    assert answer == {"referral_id": f"{number}-M1", "organization": "SD-BIMC", "status": "referred"}
    assert referred.headers["Location"] == f"/api/v1/mediation/referrals/{number}-M1"
    referral = edge.delivered(answer["referral_id"])
    [message] = referral["delivery"]["messages"]
    assert message["attempts"] == 4
    assert [a["status_code"] for a in message["recent_attempts"]] == [500, 500, 500, 202]
    [taken] = edge.mediator.taken("SD-BIMC")
    assert taken.idempotency_key == answer["referral_id"] and taken.body["complaint_no"] == number
    assert taken.body["authority"]["approver"] == "banka-sd-yt-supervisor"
    assert {r.idempotency_key for r in edge.mediator.received} == {answer["referral_id"]}
    assert all(r.verified for r in edge.mediator.received)
    view = wait_until(lambda: (v := edge.call("handler", "GET", f"/api/v1/complaints/{number}").json())["mediation"]
                      and v["mediation"]["delivery"] == "delivered" and v, "the complaint shows the delivery")
    assert view["status"] == "referred" and view["mediation"]["organization"]["code"] == "SD-BIMC"
    # A second referral while this one is under way, and a complaint no organization covers.
    assert edge.refer(number).status_code == 409
    shaoxing = edge.call("shaoxing", "POST", "/api/v1/complaints", headers={"Idempotency-Key": uuid.uuid4().hex},
                         json=dict(submission(branch="BANKA-ZJ-SX"), channel="web")).json()["complaint_no"]
    wait_until(lambda: edge.call("shaoxing", "GET", f"/api/v1/complaints/{shaoxing}").json()["status"] == "assigned",
               "assigned")
    uncovered = edge.refer(shaoxing, who="shaoxing_supervisor")
    assert uncovered.status_code == 409 and "330600" in uncovered.json()["error"]["message"]
    assert edge.refer(shaoxing, who="shaoxing").status_code == 409  # refused at once, not when approved
    assert edge.call("shaoxing", "GET", "/api/v1/approvals?pending=false").json()["items"] == []
    no_consent = edge.refer(shaoxing, who="shaoxing_supervisor",
                            consent={"given": False, "at": timeutil.iso(timeutil.now()), "how": "x"})
    assert no_consent.status_code == 422 and set(no_consent.json()["error"]["details"]) == {"consent.given"}


def test_a_signature_the_organization_refuses_is_final_until_an_operator_corrects_and_resends(edge):
    edge.register("SD-BIMC", secret="a-secret-the-mediator-does-not-know")
    number = edge.complaint()
    referral_id = edge.refer(number).json()["referral_id"]
    failed = wait_until(lambda: (r := edge.referral(referral_id))["delivery"]["state"] == "failed" and r,
                        "the refusal was final")
    [message] = failed["delivery"]["messages"]
    assert message["attempts"] == 1 and message["failure"]["cause"] == "refused"
    assert message["failure"]["status_code"] == 401
    assert [(r.verified, r.answered) for r in edge.mediator.received] == [(False, 401)]
    env = env_for(edge.settings)
    listed = subprocess.run([sys.executable, "-m", "services.mediation.deliveries", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert line["referral_id"] == referral_id and line["failure"]["status_code"] == 401
    edge.register("SD-BIMC")  # the operator corrects the secret
    resent = subprocess.run([sys.executable, "-m", "services.mediation.deliveries", "resend", referral_id,
                             "--operator", "ops-zhao"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert resent.returncode == 0, resent.stderr
    edge.delivered(referral_id)
    assert [(r.verified, r.answered) for r in edge.mediator.received] == [(False, 401), (True, 202)]
    again = subprocess.run([sys.executable, "-m", "services.mediation.deliveries", "resend", referral_id],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "nothing to resend" in again.stderr
    history = wait_until(lambda: [h["type"] for h in edge.call("handler", "GET", f"/api/v1/complaints/{number}")
                                  .json()["history"] if h["type"].startswith("mediation_delivered")], "delivered")
    assert history
    types = [h["type"] for h in edge.call("handler", "GET", f"/api/v1/complaints/{number}").json()["history"]]
    assert types.index("mediation_delivery_failed") < types.index("mediation_delivery_resent") < types.index(
        "mediation_delivered")


def test_callbacks_are_signed_by_their_organization_applied_once_and_in_order(edge):
    edge.register("SD-BIMC")
    edge.register("SC-BIMC")
    number = edge.complaint()
    referral_id = edge.refer(number).json()["referral_id"]
    edge.delivered(referral_id)
    mediator = edge.mediator

    def unchanged():
        referral = edge.referral(referral_id)
        return referral["status"] == "referred" and referral["events"] == []

    now = timeutil.now().timestamp()
    for forged in ({"secret": SECRETS["SC-BIMC"]}, {"secret": "a-forger-guessing-0000000"},
                   {"signed_at": now - 6 * 60}, {"signed_at": now + 6 * 60}):
        status, answer = mediator.send_callback("SD-BIMC", referral_id, "accepted", **forged)
        assert status == 401 and answer["error"]["code"] == "bad_signature", answer
        assert unchanged()
    bare = requests.post(edge.base + f"/api/v1/mediation/referrals/{referral_id}/events", timeout=10,
                         json={"event_id": "x", "status": "accepted", "occurred_at": timeutil.iso(timeutil.now())})
    assert bare.status_code == 401 and set(bare.json()["error"]) == {"code", "message", "details"}
    # Another organization's referral with its own valid signature: still 401 here.
    assert mediator.send_callback("SC-BIMC", referral_id, "accepted")[0] == 401
    assert unchanged()

    assert mediator.send_callback("SD-BIMC", f"{number}-M9", "accepted")[0] == 404
    invalid, details = mediator.send_callback("SD-BIMC", referral_id, "accepted",
                                              raw=json.dumps({"event_id": "e0", "status": "accepted"}).encode())
    assert invalid == 422 and "occurred_at" in details["error"]["details"]
    first = mediator.send_callback("SD-BIMC", referral_id, "accepted", event_id="evt-accepted")
    again = mediator.send_callback("SD-BIMC", referral_id, "accepted", event_id="evt-accepted")
    assert first[0] == again[0] == 200
    assert first[1]["applied"] is True and again[1]["applied"] is False
    assert len(edge.referral(referral_id)["events"]) == 1
    out_of_order, answer = mediator.send_callback("SD-BIMC", referral_id, "declined")
    assert out_of_order == 409 and answer["error"]["code"] == "conflict"
    assert mediator.send_callback("SD-BIMC", referral_id, "hearing_scheduled",
                                  details={"hearing_at": "2026-12-01T09:30:00+08:00"})[0] == 200
    fetched, referral = mediator.fetch("SD-BIMC", referral_id)
    assert fetched == 200 and referral["status"] == "hearing_scheduled"
    assert requests.get(edge.base + f"/api/v1/mediation/referrals/{referral_id}", timeout=10).status_code == 401
    assert edge.call("shaoxing", "GET", f"/api/v1/mediation/referrals/{referral_id}").status_code == 404
    # The raise reaches the organization, signed, under its own key.
    raised = edge.call("sd_supervisor", "POST", f"/api/v1/complaints/{number}/mediation/authority",
                       json={"authority": {"max_settlement_amount": "300.00", "currency": "CNY"}})
    assert raised.status_code == 200, raised.text
    wait_until(lambda: mediator.taken("SD-BIMC", "mediation.authority/1"), "the raise reached the organization")
    [raise_] = mediator.taken("SD-BIMC", "mediation.authority/1")
    assert raise_.idempotency_key == f"{referral_id}:authority:1"
    assert raise_.body["authority"]["max_settlement_amount"] == "300.00"
    history = wait_until(lambda: [h["type"] for h in edge.call("handler", "GET", f"/api/v1/complaints/{number}")
                                  .json()["history"] if h["type"].startswith("mediation_")].count(
        "mediation_status_changed") == 2, "intake followed the callbacks")
    assert history


def test_a_raise_by_a_handler_waits_for_the_superior_unit_and_reaches_the_organization_once_approved(edge):
    edge.register("SD-BIMC")
    number = edge.complaint()
    referral_id = edge.refer(number).json()["referral_id"]
    edge.delivered(referral_id)
    path = f"/api/v1/complaints/{number}/mediation/authority"
    raise_300 = {"authority": {"max_settlement_amount": "300.00", "currency": "CNY"}}

    def decide(who, approval_id, decision, note):
        return edge.call(who, "POST", f"/api/v1/approvals/{approval_id}/{decision}", json={"note": note})

    asked = edge.call("handler", "POST", path, json=raise_300)
    assert asked.status_code == 202, asked.text
    refused_one = asked.json()
    assert (refused_one["action"], refused_one["of_unit"]) == ("raise_authority", "BANKA-SD")
    assert refused_one["approval_id"].startswith("mediation-")
    listed = edge.call("sd_supervisor", "GET", "/api/v1/approvals").json()["items"]
    assert [item["approval_id"] for item in listed] == [refused_one["approval_id"]]
    own = decide("handler", refused_one["approval_id"], "approve", "自己批准")
    assert own.status_code == 403, own.text  # the requester cannot approve it
    refused = decide("sd_supervisor", refused_one["approval_id"], "refuse", "金额超出授权范围")
    assert refused.status_code == 200 and refused.json()["state"] == "refused", refused.text
    referral = edge.referral(referral_id)
    assert referral["authority"]["max_settlement_amount"] == "200.00"
    assert [m["idempotency_key"] for m in referral["delivery"]["messages"]] == [referral_id]  # nothing to send

    asked = edge.call("handler", "POST", path, json=raise_300)
    assert asked.status_code == 202, asked.text
    approved = decide("sd_supervisor", asked.json()["approval_id"], "approve", "同意提高授权")
    assert approved.status_code == 200 and approved.json()["state"] == "approved", approved.text
    # Applied with the decision and delivered, signed, within seconds.
    [raise_] = wait_until(lambda: edge.mediator.taken("SD-BIMC", "mediation.authority/1"),
                          "the approved raise reached the organization", timeout=10)
    assert raise_.verified and raise_.idempotency_key == f"{referral_id}:authority:1"
    assert raise_.body["authority"] == {"max_settlement_amount": "300.00", "currency": "CNY",
                                        "approver": "banka-sd-supervisor"}
    assert [r.idempotency_key for r in edge.mediator.received] == [referral_id, f"{referral_id}:authority:1"]
    # Each request and decision is on the complaint's history, with who.
    expected = Counter({"approval_requested": 2, "approval_decided": 2, "mediation_authority_raised": 1})
    entries = wait_until(lambda: (found := [h for h in edge.call("handler", "GET", f"/api/v1/complaints/{number}")
                                            .json()["history"] if h["type"] in expected])
                         and Counter(h["type"] for h in found) == expected and found, "intake followed the approvals")
    assert {h["actor"] for h in entries if h["type"] == "approval_decided"} == {"banka-sd-supervisor"}


def test_the_simulator_answers_slowly_then_plays_a_mediation_to_an_agreement(edge):
    edge.register("SD-BIMC")
    edge.mediator.behave("SD-BIMC", slow=3.0, plan=["accepted", "hearing_scheduled", "agreement_reached"], pace=0.2)
    number = edge.complaint()
    referral_id = edge.refer(number).json()["referral_id"]
    # Slower than the 2 s an organization has to answer: no answer, retried.
    timed_out = wait_until(lambda: (m := edge.referral(referral_id)["delivery"]["messages"][0])["attempts"] >= 1
                           and m, "the first attempt timed out", timeout=20)
    assert timed_out["recent_attempts"][0]["status_code"] is None
    assert "no answer within 2 s" in timed_out["recent_attempts"][0]["error"]
    edge.mediator.behave("SD-BIMC", slow=0.0)
    agreed = wait_until(lambda: (r := edge.referral(referral_id))["status"] == "agreement_reached" and r,
                        "the organization reported an agreement", timeout=30)
    assert [e["status"] for e in agreed["events"]] == ["accepted", "hearing_scheduled", "agreement_reached"]
    # The simulator agrees to the customer's demand within the authority granted (300.00 asked, 200.00 granted).
    assert agreed["agreement"]["amount"] == "200.00" and agreed["agreement"]["carry_out_by"]
    assert len(edge.mediator.taken("SD-BIMC")) == 1
    reported = requests.get(f"{edge.mediator_base}/_control/callbacks", timeout=5).json()
    assert [(c["status"], c["answered"]) for c in reported] == [
        ("accepted", 200), ("hearing_scheduled", 200), ("agreement_reached", 200)]
