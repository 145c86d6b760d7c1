"""The mediation domain against a real SecantusDB, with an injected clock and a scripted
organization (no HTTP): the registry, referral, callbacks, and durable delivery with its
backoff, refusals, give-up, leases and the order of what an organization receives."""
from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import datetime, timedelta

import pytest

from services.common import timeutil
from services.common.config import Settings
from services.common.errors import Conflict, Forbidden, Invalid, NotFound, SignatureRefused
from services.common.policy import SHANGHAI
from services.common.store import client_for, ensure_indexes
from services.mediation import signature
from services.mediation.mediation import INDEXES, Mediation
from services.mediation.webhook import Answer
from tests.support.harness import Now, StagingOutbox, organization_event

pytestmark = pytest.mark.integration

SECRET = "sd-secret-0123456789abcdef"
OTHER_SECRET = "zj-secret-0123456789abcdef"
SUPERVISOR = {"sub": "banka-sd-yt-supervisor", "name": "张伟", "unit": "BANKA-SD-YT", "roles": ["supervisor"]}
ADMIN = {"sub": "ops-1", "name": "平台管理员", "unit": "BANKA", "roles": ["admin"]}
HANDLER = {"sub": "banka-sd-yt-handler", "name": "刘洋", "unit": "BANKA-SD-YT", "roles": ["handler"]}
# Of the superior unit (Shandong branch): approves a raise of the authority.
SD_CPD = {"sub": "banka-sd-cpd", "name": "李娜", "unit": "BANKA-SD", "roles": ["consumer_protection"]}
SETTINGS = Settings(mediation_retry_base=10.0, mediation_retry_cap=3600.0, mediation_retry_for=24 * 3600.0)


class Organization:
    """Answers each delivery with the next scripted status (then 200) and keeps what it got."""

    def __init__(self, *statuses):
        self.script = list(statuses)
        self.received: list[dict] = []

    def __call__(self, url, body, headers, timeout):
        self.received.append({"url": url, "body": json.loads(body), "raw": body, "headers": headers})
        status = self.script.pop(0) if self.script else 200
        return Answer(status, None if status < 300 else f"HTTP {status}", None, 5)


@pytest.fixture
def db(mongo_uri):
    database = client_for(mongo_uri)[f"t{uuid.uuid4().hex[:8]}_mediation"]
    ensure_indexes(database, INDEXES)
    yield database
    database.client.drop_database(database.name)


@pytest.fixture
def now():
    return Now(datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI))


@pytest.fixture
def organization():
    return Organization()


@pytest.fixture
def desk(db, now, organization):
    desk = Mediation(db, SETTINGS, now=now, send=organization, rng=random.Random(7))
    desk.organization.keep(organization_event())  # the units' regions: BANKA-SD-YT 370600 ...
    desk.registry.put("SD-BIMC", register("山东省银行业保险业纠纷调解中心", ["370000"], SECRET), ADMIN)
    desk.registry.put("ZJ-BIMC", register("浙江银行业保险业纠纷调解中心", ["330000"], OTHER_SECRET), ADMIN)
    return desk


@pytest.fixture
def outbox(db):
    return StagingOutbox(db)


def register(name, regions, secret, url="https://mediator.example/referrals"):
    return {"name": name, "regions": regions, "url": url, "secret": secret,
            "contact": {"phone": "0531-12345678", "address": "济南市历下区"}}


def complaint(no="BANKA-261120-0000017", status="in_progress", unit="BANKA-SD-YT", **changes) -> dict:
    view = {"complaint_no": no, "status": status, "institution": "BANKA", "unit": unit, "product": "credit_card",
            "subject": "信用卡年费未经同意扣收", "description": "客户称未激活即被扣年费", "demand": "退还年费",
            "amount_in_dispute": "300.00", "currency": "CNY",
            "customer": {"name": "王芳", "phone": "13800138000", "id_number": "370102198001011234"},
            "respondent_staff": [], "history": [],
            "allowed_actions": ["decision", "escalate", "mediation", "withdraw"]}
    view.update(changes)
    return view


def request(**changes) -> dict:
    body = {"reason": "协商未果，客户同意调解",
            "negotiation": [{"at": "2026-11-18T15:00:00+08:00", "by": "banka-sd-yt-handler",
                             "note": "客户不接受退一半"}],
            "consent": {"given": True, "at": "2026-11-19T10:00:00+08:00", "how": "电话录音"},
            "authority": {"max_settlement_amount": "200.00", "currency": "CNY"}}
    body.update(changes)
    return body


def facts_of(view: dict) -> dict:
    """Intake's facts of who is accountable for the complaint (``intake.access_facts``)."""
    return {"complaint_no": view["complaint_no"], "institution": view["institution"], "unit": view["unit"],
            "offered_unit": None, "respondent_staff": view["respondent_staff"]}


# The actions as the service calls them: on the complaint as intake shows it, and its facts.
def refer(desk, view, data, actor, outbox) -> dict:
    return desk.referrals.refer(view, facts_of(view), data, actor, outbox)


def raise_authority(desk, view, data, actor, outbox) -> dict:
    return desk.referrals.raise_authority(view, facts_of(view), data, actor, outbox)


def carried_out(desk, view, data, actor, outbox) -> dict:
    return desk.referrals.carried_out(view, facts_of(view), data, actor, outbox)


def decide(desk, outbox, approval_id, decision, actor, view=None, note="核实后同意") -> dict:
    view = view or complaint()
    return desk.referrals.decide_approval(approval_id, decision, note, actor, view, facts_of(view), outbox)


def referred(desk, outbox, **changes) -> str:
    return refer(desk, complaint(**changes), request(), SUPERVISOR, outbox)["referral"]["referral_id"]


def callback(desk, outbox, referral_id, status, secret=SECRET, event_id=None, at=None, details=None, raw=None,
             signed_at=None):
    body = raw if raw is not None else json.dumps({
        "event_id": event_id or uuid.uuid4().hex, "status": status,
        "occurred_at": timeutil.iso(at or desk.referrals.now()), "details": details or {}}).encode()
    header = signature.sign(secret, body, now=(signed_at or desk.referrals.now()).timestamp())
    return desk.referrals.callback(referral_id, base64.b64encode(body).decode(), header, outbox)


# -- the registry ----------------------------------------------------------------------------------

def test_the_registry_keeps_organizations_and_never_shows_a_secret(desk):
    created, shown = desk.registry.put("SC-BIMC", register("四川", ["510000", "510100"], "s" * 20), ADMIN)
    assert created and shown["code"] == "SC-BIMC" and shown["regions"] == ["510000", "510100"]
    again, changed = desk.registry.put("SC-BIMC", register("四川银行业保险业纠纷调解中心", ["510000"], "s" * 20),
                                       ADMIN)
    assert not again and changed["name"] == "四川银行业保险业纠纷调解中心"
    assert changed["secret_set_at"] == shown["secret_set_at"]  # the same secret: not set anew
    for view in (desk.registry.show("SC-BIMC"), *desk.registry.in_service()):
        assert "secret" not in view and "s" * 20 not in json.dumps(view)
    retired = desk.registry.retire("SC-BIMC", ADMIN)
    assert retired["retired_at"]
    assert "SC-BIMC" not in [o["code"] for o in desk.registry.in_service()]
    with pytest.raises(NotFound):
        desk.registry.show("NOPE")
    with pytest.raises(Forbidden):  # the registry is the platform operators'
        desk.registry.put("SC-BIMC", register("四川", ["510000"], "s" * 20), SUPERVISOR)
    with pytest.raises(Forbidden):
        desk.registry.retire("SD-BIMC", SUPERVISOR)


def test_the_registry_refuses_what_is_not_an_organization(desk):
    with pytest.raises(Invalid) as bad:
        desk.registry.put("SD-X", {"name": "x", "regions": ["370000", "3706"], "url": "ftp://x",
                                   "secret": "short", "contact": {}}, ADMIN)
    assert set(bad.value.details) == {"regions.1", "url", "secret", "contact.phone"}
    with pytest.raises(Invalid) as unknown:  # six digits, but no province the region data knows
        desk.registry.put("SD-X", register("x", ["370000", "999999"], SECRET), ADMIN)
    assert set(unknown.value.details) == {"regions"}
    assert any("999999" in message for message in unknown.value.details["regions"])
    with pytest.raises(Invalid) as code:
        desk.registry.put("sd bimc", register("x", ["370000"], SECRET), ADMIN)
    assert "code" in code.value.details


# -- referral --------------------------------------------------------------------------------------

def test_a_referral_goes_to_the_organization_covering_the_units_region(desk, outbox):
    answer = refer(desk, complaint(), request(), SUPERVISOR, outbox)["referral"]
    assert answer == {"referral_id": "BANKA-261120-0000017-M1", "organization": "SD-BIMC", "status": "referred"}
    view = desk.referrals.referral(answer["referral_id"])
    assert view["region"] == "370600" and view["authority"]["approver"] == SUPERVISOR["sub"]
    body = view["referral"]
    assert body["schema"] == "mediation.referral/1" and body["customer"] == {"name": "王芳", "phone": "13800138000"}
    assert "id_number" not in json.dumps(body)
    assert body["authority"] == {"max_settlement_amount": "200.00", "currency": "CNY",
                                 "approver": "banka-sd-yt-supervisor"}
    assert view["delivery"]["state"] == "pending" and view["delivery"]["messages"][0]["attempts"] == 0
    [event] = outbox.events("complaint_referred")
    assert event["body"]["organization_name"] == "山东省银行业保险业纠纷调解中心"
    assert event["body"]["contact"]["phone"] == "0531-12345678"
    assert "authority" not in json.dumps(event["body"]["mediation"])
    # A prefecture's own organization comes before the province's.
    desk.registry.put("YT-MC", register("烟台调解中心", ["370600"], SECRET), ADMIN)
    second = refer(desk, complaint(no="BANKA-261120-0000025"), request(), SUPERVISOR, outbox)["referral"]
    assert second["organization"] == "YT-MC"


def test_a_referral_is_refused_with_the_reason(desk, outbox):
    with pytest.raises(Invalid) as no_consent:
        refer(desk, complaint(), request(consent={"given": False, "at": "2026-11-19T10:00:00+08:00",
                                                           "how": "x"}), SUPERVISOR, outbox)
    assert set(no_consent.value.details) == {"consent.given"}
    with pytest.raises(Invalid) as missing:
        refer(desk, complaint(), {"reason": "x"}, SUPERVISOR, outbox)
    assert set(missing.value.details) == {"negotiation", "consent", "authority"}
    with pytest.raises(Conflict) as closed:
        refer(desk, complaint(status="closed", allowed_actions=["reopen"]), request(), SUPERVISOR, outbox)
    assert "closed" in closed.value.message
    upheld = [{"type": "complaint_decided", "details": {"outcome": "upheld"}}]
    with pytest.raises(Conflict):
        refer(desk, complaint(status="decided", history=upheld), request(), SUPERVISOR, outbox)
    desk.registry.retire("ZJ-BIMC", ADMIN)
    with pytest.raises(Conflict) as uncovered:
        refer(desk, complaint(unit="BANKA-ZJ-SX"), request(), dict(SUPERVISOR, unit="BANKA-ZJ-SX"), outbox)
    assert "330600" in uncovered.value.message
    with pytest.raises(Invalid) as elsewhere:
        refer(desk, complaint(), request(organization="ZJ-BIMC"), SUPERVISOR, outbox)
    assert set(elsewhere.value.details) == {"organization"}
    with pytest.raises(Forbidden):  # an inspector may not refer
        refer(desk, complaint(), request(), dict(HANDLER, roles=["inspector"]), outbox)
    with pytest.raises(NotFound):  # a unit beside the complaint's may not even read it
        refer(desk, complaint(), request(), dict(SUPERVISOR, unit="BANKA-SD-WF"), outbox)
    with pytest.raises(Invalid) as named:
        refer(desk, complaint(), request(authority={"max_settlement_amount": "200.00", "currency": "CNY",
                                                   "approver": "someone-else"}), SUPERVISOR, outbox)
    assert set(named.value.details) == {"authority.approver"}
    with pytest.raises(Forbidden, match="recuse"):  # staff the complaint names do nothing on its mediation
        refer(desk, complaint(respondent_staff=[SUPERVISOR["sub"]]), request(), SUPERVISOR, outbox)
    assert outbox.events() == []
    partly = [{"type": "complaint_decided", "details": {"outcome": "partially_upheld"}}]
    refer(desk, complaint(status="decided", history=partly), request(), SUPERVISOR, outbox)
    with pytest.raises(Conflict) as twice:
        refer(desk, complaint(), request(), SUPERVISOR, outbox)
    assert "already referred" in twice.value.message


# -- approvals of the authority ---------------------------------------------------------------------

def test_a_referral_the_caller_may_not_approve_waits_and_is_made_when_a_supervisor_approves(desk, outbox):
    pending = refer(desk, complaint(), request(), HANDLER, outbox)["approval"]
    assert (pending["action"], pending["needs"], pending["of_unit"]) == (
        "refer", ["consumer_protection", "supervisor"], "BANKA-SD-YT")
    assert pending["state"] == "pending" and pending["approval_id"].startswith("mediation-")
    assert desk.referrals.referrals.count_documents({}) == 0 and outbox.events("complaint_referred") == []
    [asked] = outbox.events("approval_requested")
    assert asked["producer"] == "mediation" and asked["body"]["actor"] == HANDLER["sub"]
    with pytest.raises(Conflict):  # one request at a time
        refer(desk, complaint(), request(), HANDLER, outbox)
    with pytest.raises(Forbidden):  # the requester never approves their own request
        decide(desk, outbox, pending["approval_id"], "approve", dict(HANDLER, roles=["handler", "supervisor"]))
    with pytest.raises(Forbidden):  # nor does staff the complaint names
        decide(desk, outbox, pending["approval_id"], "approve", SUPERVISOR,
               view=complaint(respondent_staff=[SUPERVISOR["sub"]]))
    decided = decide(desk, outbox, pending["approval_id"], "approve", SUPERVISOR)
    assert decided["approval"]["state"] == "approved" and decided["approval"]["decided_by"]["sub"] == SUPERVISOR["sub"]
    [made] = desk.referrals.referrals.find()
    assert made["referred_by"] == HANDLER["sub"] and made["authority"]["approver"] == SUPERVISOR["sub"]
    assert made["approval_id"] == pending["approval_id"]
    [referred_event] = outbox.events("complaint_referred")
    assert referred_event["body"]["actor"] == HANDLER["sub"]
    assert referred_event["body"]["approvers"][0]["sub"] == SUPERVISOR["sub"]
    assert referred_event["event_id"] in decided["events"]
    assert [e["body"]["decision"] for e in outbox.events("approval_decided")] == ["approved"]


def test_a_referral_approved_on_a_complaint_closed_meanwhile_is_refused(desk, outbox):
    pending = refer(desk, complaint(), request(), HANDLER, outbox)["approval"]
    closed = complaint(status="closed", allowed_actions=["reopen"])
    with pytest.raises(Conflict):
        decide(desk, outbox, pending["approval_id"], "approve", SUPERVISOR, view=closed)
    assert desk.referrals.referrals.count_documents({}) == 0
    refused = decide(desk, outbox, pending["approval_id"], "refuse", SUPERVISOR, view=closed, note="已结案")
    assert refused["approval"]["state"] == "refused" and refused["events"]


def test_a_raise_waits_for_the_superior_unit_and_a_refused_one_changes_nothing(desk, outbox):
    referral_id = referred(desk, outbox)
    higher = {"authority": {"max_settlement_amount": "500.00", "currency": "CNY"}}
    # The unit's own supervisor granted the authority up front, but a raise is the superior unit's.
    for asker in (HANDLER, SUPERVISOR):
        pending = raise_authority(desk, complaint(), higher, asker, outbox)["approval"]
        assert (pending["action"], pending["of_unit"]) == ("raise_authority", "BANKA-SD")
        assert pending["request"] == {"referral_id": referral_id, **higher}
        with pytest.raises(Forbidden):  # the unit's own supervisor holds no position for a raise
            decide(desk, outbox, pending["approval_id"], "approve", dict(SUPERVISOR, sub="banka-sd-yt-supervisor-2"))
        refused = decide(desk, outbox, pending["approval_id"], "refuse", SD_CPD, note="金额过高")
        assert refused["approval"]["state"] == "refused"
    referral = desk.referrals.referral(referral_id)
    assert referral["authority"]["max_settlement_amount"] == "200.00" and referral["authority_raises"] == []
    assert len(referral["delivery"]["messages"]) == 1 and outbox.events("mediation_authority_raised") == []
    pending = raise_authority(desk, complaint(), higher, HANDLER, outbox)["approval"]
    decided = decide(desk, outbox, pending["approval_id"], "approve", SD_CPD)
    referral = desk.referrals.referral(referral_id)
    assert referral["authority"] == {"max_settlement_amount": "500.00", "currency": "CNY", "approver": SD_CPD["sub"]}
    [raised] = referral["authority_raises"]
    assert raised["by"] == HANDLER["sub"] and raised["approval_id"] == pending["approval_id"]
    assert [m["idempotency_key"] for m in referral["delivery"]["messages"]] == [
        referral_id, f"{referral_id}:authority:1"]
    [event] = outbox.events("mediation_authority_raised")
    assert event["event_id"] in decided["events"] and event["body"]["approvers"][0]["sub"] == SD_CPD["sub"]
    with pytest.raises(Conflict):  # decided already
        decide(desk, outbox, pending["approval_id"], "approve", SD_CPD)


def test_a_raise_approved_after_the_authority_reached_it_meanwhile_no_longer_applies(desk, outbox):
    referred(desk, outbox)
    pending = raise_authority(desk, complaint(), {"authority": {"max_settlement_amount": "400.00", "currency": "CNY"}},
                              HANDLER, outbox)["approval"]
    raise_authority(desk, complaint(), {"authority": {"max_settlement_amount": "600.00", "currency": "CNY"}},
                    SD_CPD, outbox)  # the superior unit raises it itself, higher
    with pytest.raises(Conflict):
        decide(desk, outbox, pending["approval_id"], "approve", SD_CPD)
    assert desk.referrals.approvals_for(SD_CPD) and not desk.referrals.approvals_for(HANDLER)


# -- delivery --------------------------------------------------------------------------------------

def run_due(desk, outbox):
    return desk.courier.deliver_due(outbox)


def test_delivered_once_after_three_500s_with_growing_jittered_waits(desk, outbox, now, organization):
    organization.script = [500, 503, 500]
    referral_id = referred(desk, outbox)
    waits = []
    for _ in range(3):
        [attempt] = run_due(desk, outbox)
        assert attempt["outcome"] == "retry"
        due = timeutil.parse(desk.referrals.referral(referral_id)["delivery"]["next_attempt_at"])
        waits.append((due - now()).total_seconds())
        assert run_due(desk, outbox) == []  # not due before its time
        now.set(due)
    [attempt] = run_due(desk, outbox)
    assert attempt["outcome"] == "delivered"
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20 and 20 <= waits[2] <= 40
    view = desk.referrals.referral(referral_id)
    assert view["delivery"]["state"] == "delivered" and view["delivery"]["next_attempt_at"] is None
    message = view["delivery"]["messages"][0]
    assert message["attempts"] == 4 and [a["status_code"] for a in message["recent_attempts"]] == [500, 503, 500, 200]
    keys = {r["headers"]["Idempotency-Key"] for r in organization.received}
    assert keys == {referral_id} and len({r["raw"] for r in organization.received}) == 1
    for received in organization.received:
        signature.verify(received["headers"][signature.HEADER], received["raw"], SECRET,
                         now=now().timestamp())
    assert [e["type"] for e in outbox.events() if e["type"].startswith("mediation_")] == ["mediation_delivered"]
    now.advance(hours=2)
    assert run_due(desk, outbox) == []


def test_a_refusal_is_final_until_an_operator_resends(desk, outbox, now, organization):
    organization.script = [401]
    referral_id = referred(desk, outbox)
    [attempt] = run_due(desk, outbox)
    assert attempt["outcome"] == "refused"
    now.advance(days=2)
    assert run_due(desk, outbox) == []
    [failed] = desk.courier.failed()
    assert failed["referral_id"] == referral_id and failed["failure"]["cause"] == "refused"
    assert failed["failure"]["status_code"] == 401
    [event] = outbox.events("mediation_delivery_failed")
    assert event["body"]["cause"] == "refused" and event["body"]["mediation"]["delivery"] == "failed"
    desk.registry.put("SD-BIMC", register("山东", ["370000"], SECRET, url="https://mediator.example/v2"), ADMIN)
    desk.courier.resend(referral_id, "ops-1", outbox)
    [attempt] = run_due(desk, outbox)
    assert attempt["outcome"] == "delivered"
    assert organization.received[-1]["url"] == "https://mediator.example/v2"
    assert desk.courier.failed() == [] and outbox.events("mediation_delivery_resent")
    with pytest.raises(Conflict):
        desk.courier.resend(referral_id, "ops-1", outbox)


def test_408_and_429_are_retried_and_retries_give_up_after_the_period(desk, outbox, now, organization):
    organization.script = [408, 429] + [500] * 100
    referral_id = referred(desk, outbox)
    started = now()
    while True:
        [attempt] = run_due(desk, outbox)
        if attempt["outcome"] != "retry":
            break
        now.set(timeutil.parse(desk.referrals.referral(referral_id)["delivery"]["next_attempt_at"]))
    assert attempt["outcome"] == "gave_up"
    message = desk.referrals.referral(referral_id)["delivery"]["messages"][0]
    last = timeutil.parse(message["recent_attempts"][-1]["at"])
    assert last - started >= timedelta(hours=24)
    gaps = [timeutil.parse(b["at"]) - timeutil.parse(a["at"])
            for a, b in zip(message["recent_attempts"], message["recent_attempts"][1:], strict=False)]
    assert max(gaps) <= timedelta(hours=1) and max(gaps) >= timedelta(minutes=30)
    assert desk.courier.failed()[0]["failure"]["cause"] == "gave_up"


def test_one_attempt_in_flight_per_referral_and_a_lost_lease_is_taken_over(db, desk, outbox, now, organization):
    referral_id = referred(desk, outbox)
    other = Mediation(db, SETTINGS, now=now, send=organization)
    [candidate] = desk.courier.due(now(), 10)
    [again] = other.courier.due(now(), 10)
    assert desk.courier.claim(candidate, now()) and other.courier.claim(again, now()) is None
    # The instance holding it dies before sending: after the lease another takes over.
    assert other.courier.deliver_due(outbox) == []
    now.advance(seconds=desk.courier.lease.total_seconds() + 1)
    [attempt] = other.courier.deliver_due(outbox)
    assert attempt["outcome"] == "delivered" and len(organization.received) == 1
    assert desk.referrals.referral(referral_id)["delivery"]["in_flight"] is False


def test_a_raise_reaches_the_organization_after_the_referral(desk, outbox, now, organization):
    organization.script = [500]
    referral_id = referred(desk, outbox)
    complaint_view = complaint()
    run_due(desk, outbox)  # the referral waits for its retry
    raised_at = now()
    raise_ = {"authority": {"max_settlement_amount": "300.00", "currency": "CNY"}}
    raised = raise_authority(desk, complaint_view, raise_, SD_CPD, outbox)["referral"]
    assert raised["authority"]["max_settlement_amount"] == "300.00"
    assert [m["idempotency_key"] for m in raised["delivery"]["messages"]] == [referral_id,
                                                                               f"{referral_id}:authority:1"]
    assert run_due(desk, outbox) == []  # the raise waits behind the referral
    now.set(timeutil.parse(desk.referrals.referral(referral_id)["delivery"]["next_attempt_at"]))
    run_due(desk, outbox)
    run_due(desk, outbox)  # the raise is due as soon as the referral is delivered
    assert [r["headers"]["Idempotency-Key"] for r in organization.received] == [
        referral_id, referral_id, f"{referral_id}:authority:1"]
    assert organization.received[-1]["body"] == {
        "schema": "mediation.authority/1", "referral_id": referral_id, "raised_at": timeutil.iso(raised_at),
        "authority": {"max_settlement_amount": "300.00", "currency": "CNY", "approver": SD_CPD["sub"]}}
    with pytest.raises(Invalid) as lower:
        raise_authority(desk, complaint_view, {"authority": {"max_settlement_amount": "250.00",
                                                             "currency": "CNY"}}, SD_CPD, outbox)
    assert set(lower.value.details) == {"authority.max_settlement_amount"}
    assert len(outbox.events("mediation_authority_raised")) == 1


def test_a_raise_during_an_attempt_in_flight_waits_for_it(desk, outbox, now, organization):
    referral_id = referred(desk, outbox)
    [candidate] = desk.courier.due(now(), 10)
    token = desk.courier.claim(candidate, now())
    raise_authority(desk, complaint(), {"authority": {"max_settlement_amount": "300.00", "currency": "CNY"}},
                    SD_CPD, outbox)
    assert desk.courier.due(now(), 10) == []  # no second attempt while one is in flight
    assert desk.courier.attempt(referral_id, token, outbox)["outcome"] == "delivered"
    [attempt] = desk.courier.deliver_due(outbox)  # the raise is due as soon as the attempt ends
    assert attempt["key"] == f"{referral_id}:authority:1" and attempt["outcome"] == "delivered"


# -- callbacks ----------------------------------------------------------------------------------------

def test_only_the_organizations_fresh_signature_is_accepted(desk, outbox, now):
    referral_id = referred(desk, outbox)
    for forged in ({"secret": OTHER_SECRET}, {"secret": "guessed-secret-000000"},
                   {"secret": SECRET, "signed_at": now() - timedelta(minutes=6)}):
        with pytest.raises(SignatureRefused):
            callback(desk, outbox, referral_id, "accepted", **forged)
    body = json.dumps({"event_id": "e1", "status": "accepted", "occurred_at": timeutil.iso(now())}).encode()
    with pytest.raises(SignatureRefused):
        desk.referrals.callback(referral_id, base64.b64encode(body).decode(), None, outbox)
    with pytest.raises(NotFound):
        callback(desk, outbox, "BANKA-261120-0000017-M9", "accepted")
    assert desk.referrals.referral(referral_id)["status"] == "referred"
    assert outbox.events("mediation_status_changed") == []
    assert callback(desk, outbox, referral_id, "accepted", signed_at=now() - timedelta(minutes=4))["applied"]


def test_the_same_callback_applies_once_and_statuses_keep_their_order(desk, outbox, now):
    referral_id = referred(desk, outbox)
    first = callback(desk, outbox, referral_id, "accepted", event_id="evt-1")
    again = callback(desk, outbox, referral_id, "accepted", event_id="evt-1")
    assert first["applied"] and not again["applied"]
    assert len(outbox.events("mediation_status_changed")) == 1
    with pytest.raises(Conflict):
        callback(desk, outbox, referral_id, "accepted", event_id="evt-2")
    with pytest.raises(Conflict):
        callback(desk, outbox, referral_id, "declined")
    callback(desk, outbox, referral_id, "hearing_scheduled", details={"hearing_at": "2026-11-25T09:30:00+08:00"})
    callback(desk, outbox, referral_id, "hearing_scheduled")  # rescheduled
    with pytest.raises(Invalid) as no_terms:
        callback(desk, outbox, referral_id, "agreement_reached", details={"carry_out_by": "2026-12-01"})
    assert set(no_terms.value.details) == {"details.terms"}
    with pytest.raises(Invalid):
        callback(desk, outbox, referral_id, "agreement_reached",
                 details={"terms": "退还年费300元", "signed_on": "2026-11-20", "carry_out_by": "2026-11-19"})
    with pytest.raises(Invalid) as not_json:
        callback(desk, outbox, referral_id, "failed", raw=b"{not json")
    assert set(not_json.value.details) == {"body"}
    with pytest.raises(Invalid) as unknown:
        callback(desk, outbox, referral_id, "settled")
    assert set(unknown.value.details) == {"status"}
    done = callback(desk, outbox, referral_id, "agreement_reached",
                    details={"terms": "退还年费300元", "amount": "300.00", "currency": "CNY",
                             "carry_out_by": "2026-12-05"})
    agreement = done["referral"]["agreement"]
    assert agreement == {"terms": "退还年费300元", "signed_on": "2026-11-20", "carry_out_by": "2026-12-05",
                         "amount": "300.00", "currency": "CNY"}
    changed = outbox.events("mediation_status_changed")
    assert [e["body"]["status"] for e in changed] == ["accepted", "hearing_scheduled", "hearing_scheduled",
                                                      "agreement_reached"]
    assert changed[-1]["body"]["agreement"] == agreement and not changed[-1]["body"]["ended"]
    with pytest.raises(Conflict):
        raise_authority(desk, complaint(), {"authority": {"max_settlement_amount": "900.00",
                                                          "currency": "CNY"}}, HANDLER, outbox)
    carried = carried_out(desk, complaint(), {"note": "已退还"}, HANDLER, outbox)
    assert carried["status"] == "carried_out" and carried["carried_out"]["by"] == HANDLER["sub"]
    with pytest.raises(Conflict):
        carried_out(desk, complaint(), {"note": "again"}, HANDLER, outbox)
    [event] = outbox.events("agreement_carried_out")
    assert event["body"]["mediation"]["status"] == "carried_out"


def test_a_failed_mediation_ends_it_and_the_complaint_may_be_referred_again(desk, outbox):
    referral_id = referred(desk, outbox)
    callback(desk, outbox, referral_id, "accepted")
    callback(desk, outbox, referral_id, "failed", details={"reason": "双方分歧过大"})
    [*_, failed] = outbox.events("mediation_status_changed")
    assert failed["body"]["ended"] and failed["body"]["previous"] == "accepted"
    decided = [{"type": "complaint_decided", "details": {"outcome": "rejected"}}]
    again = refer(desk, complaint(status="decided", history=decided), request(), SUPERVISOR, outbox)["referral"]
    assert again["referral_id"].endswith("-M2")
    assert desk.referrals.referral(referral_id)["organization"]["contact"]["phone"] == "0531-12345678"
    assert desk.referrals.referral_for_organization(
        referral_id, signature.sign(SECRET, b"", now=desk.referrals.now().timestamp()))["status"] == "failed"
    with pytest.raises(SignatureRefused):
        desk.referrals.referral_for_organization(referral_id, signature.sign(OTHER_SECRET, b""))
