"""A complaint from a call center to mediation and back, over the real broker, the store and
HTTP, with the simulated organization: the decision clock pauses at the referral and
resumes where it stopped when the mediation fails; a later agreement starts the clock of
carrying it out, which breaches when it is not carried out in time."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from services.common import amqp, timeutil
from services.gateway.auth import issue_token
from services.gateway.service import GatewayService
from services.intake.service import IntakeService
from services.mediation.service import MediationService
from services.mediation.simulator import Mediator
from services.routing.service import RoutingService
from services.sla.service import SlaService
from tests.support.harness import accepted, listening, wait_until
from tests.support.infra import free_port, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "sd-bimc-secret-for-the-end-to-end-test"
USERS = {
    "admin": {"sub": "admin", "name": "平台管理员", "unit": "BANKA", "roles": ["admin"]},
    "supervisor": {"sub": "banka-sd-yt-supervisor", "name": "张伟", "unit": "BANKA-SD-YT", "roles": ["supervisor"]},
    "handler": {"sub": "banka-sd-yt-handler", "name": "刘洋", "unit": "BANKA-SD-YT", "roles": ["handler"]},
    "provincial": {"sub": "banka-sd-cpd", "name": "李娜", "unit": "BANKA-SD",
                   "roles": ["consumer_protection", "supervisor"]},
}


@pytest.fixture
def platform(settings, run_services, center):
    port = free_port()
    mediator = Mediator({"SD-BIMC": SECRET}, f"http://127.0.0.1:{port}")
    mediator_base = mediator.start()
    try:
        with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
                listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
                run_services(settings, IntakeService, RoutingService, SlaService, MediationService, GatewayService,
                             WEB_SERVER_ADDRESS=f"127.0.0.1:{port}", MEDIATION_RETRY_BASE=0.3):
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}", settings, mediator, mediator.url(mediator_base, "SD-BIMC"), outbound, \
                notices
    finally:
        mediator.stop()


def test_mediation_pauses_the_decision_clock_and_times_the_agreement(platform, center):
    base, settings, mediator, url, outbound, notices = platform

    def call(who, method, path, **kwargs):
        headers = {"Authorization": "Bearer " + issue_token(USERS[who], settings.jwt_secret)}
        response = requests.request(method, base + path, headers=headers, timeout=30, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def clock(name, who="handler"):
        return next((c for c in call(who, "GET", f"/api/v1/complaints/{number}/clocks") if c["clock"] == name), None)

    def refer():
        return call("supervisor", "POST", f"/api/v1/complaints/{number}/mediation", json={
            "reason": "协商未果，客户同意调解", "consent": {"given": True, "at": timeutil.iso(timeutil.now()),
                                                     "how": "电话录音"},
            "negotiation": [{"at": timeutil.iso(timeutil.now() - timedelta(days=1)), "by": "banka-sd-yt-handler",
                             "note": "客户不接受退还一半年费"}],
            "authority": {"max_settlement_amount": "300.00", "currency": "CNY"}})["referral_id"]

    def delivered(referral_id):
        wait_until(lambda: call("handler", "GET", f"/api/v1/mediation/referrals/{referral_id}")["delivery"][
            "state"] == "delivered", f"{referral_id} reached the organization")

    def reports(referral_id, status, **details):
        answered, answer = mediator.send_callback("SD-BIMC", referral_id, status, details=details)
        assert answered == 200 and answer["applied"], answer

    call("admin", "PUT", "/api/v1/mediation/organizations/SD-BIMC", json={
        "name": "山东省银行业保险业纠纷调解中心", "regions": ["370000"], "url": url, "secret": SECRET,
        "contact": {"phone": "0531-81000000", "address": "济南市历下区"}})
    number = accepted(center, outbound, branch="BANKA-SD-YT")
    wait_until(lambda: call("handler", "GET", f"/api/v1/complaints/{number}")["status"] == "assigned", "assigned")
    due_before = timeutil.parse(clock("decision")["due_by"])

    first = refer()
    [told] = outbound.wait_for(lambda m: m["body"].get("complaint_no") == number
                               and m["body"].get("status") == "referred")
    assert told["routing_key"] == "status.cc-shandong" and told["body"]["organization"] == "SD-BIMC"
    [notice] = notices.wait_for(lambda m: m["body"]["template"] == "referred" and m["body"]["complaint_no"] == number)
    assert notice["body"]["params"]["organization_name"] == "山东省银行业保险业纠纷调解中心"
    assert notice["body"]["params"]["contact"] == {"phone": "0531-81000000", "address": "济南市历下区"}
    wait_until(lambda: clock("decision")["state"] == "paused", "the decision clock paused at the referral")
    assert clock("decision")["due_by"] is None
    delivered(first)
    reports(first, "accepted")
    reports(first, "failed", reason="双方分歧过大")
    resumed = wait_until(lambda: (c := clock("decision"))["state"] == "running" and c, "the clock resumed")
    referral = call("handler", "GET", f"/api/v1/mediation/referrals/{first}")
    in_mediation = timeutil.parse(referral["events"][-1]["received_at"]) - timeutil.parse(referral["referred_at"])
    moved = timeutil.parse(resumed["due_by"]) - due_before
    assert timedelta(0) < moved and abs(moved - in_mediation) < timedelta(seconds=1)  # where it stopped

    call("handler", "POST", f"/api/v1/complaints/{number}/decision",
         json={"outcome": "rejected", "message": "经核实，年费收取符合合同约定"})
    wait_until(lambda: call("handler", "GET", f"/api/v1/complaints/{number}")["status"] == "decided", "decided")
    second = refer()
    assert second == f"{number}-M2"
    delivered(second)
    reports(second, "accepted")
    today = timeutil.now().date()
    reports(second, "agreement_reached", terms="机构退还年费300元", amount="300.00", currency="CNY",
            signed_on=(today - timedelta(days=10)).isoformat(), carry_out_by=(today - timedelta(days=2)).isoformat())
    breached = wait_until(lambda: (c := clock("agreement_performance", "provincial")) and c["breached"] and c,
                          "the agreement's clock breached", timeout=60)
    assert breached["due_by"] == timeutil.iso(timeutil.parse(f"{today - timedelta(days=2)}T23:59:59+08:00"))
    # A breach goes one level up: the province's consumer protection records it carried out, late.
    wait_until(lambda: call("provincial", "GET", f"/api/v1/complaints/{number}")["unit"] == "BANKA-SD", "escalated")
    carried = call("provincial", "POST", f"/api/v1/complaints/{number}/mediation/carried-out",
                   json={"note": "已退还年费300元"})
    assert carried["status"] == "carried_out"
    wait_until(lambda: clock("agreement_performance", "provincial")["state"] == "breached", "stopped, late")
    view = call("provincial", "GET", f"/api/v1/complaints/{number}")
    assert view["mediation"]["referral_id"] == second
    types = [entry["type"] for entry in view["history"]]
    for fact in ("complaint_referred", "sla_paused", "mediation_delivered", "mediation_status_changed",
                 "sla_resumed", "complaint_decided", "agreement_carried_out", "sla_breached"):
        assert fact in types, fact
    assert types.count("complaint_referred") == 2
