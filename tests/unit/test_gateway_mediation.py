"""The mediation endpoints' translation with fake peers: what each passes on, no broker."""
import base64
import json

import pytest
from werkzeug.test import EnvironBuilder

from services.gateway import mediation
from services.gateway.auth import Identity
from services.gateway.entrypoint import Endpoint
from services.gateway.errors import MalformedJson, Unauthorized, ValidationFailed
from services.gateway.routes import BY_NAME

SUPERVISOR = Identity("s1", "张伟", "BANKA-SD-YT", ("supervisor",), 0)
ACTOR = {"sub": "s1", "name": "张伟", "unit": "BANKA-SD-YT", "roles": ["supervisor"]}
UNITS = ["BANKA-SD-YT"]
COMPLAINT = {"complaint_no": "C1", "status": "in_progress"}
REFERRAL = {"reason": "协商未果", "actor": "工号 7",
            "negotiation": [{"at": "2026-11-20T15:00:00+08:00", "by": "yt-001", "note": "客户不接受退还一半"}],
            "consent": {"given": True, "at": "2026-11-21T10:00:00+08:00", "how": "电话录音"},
            "authority": {"max_settlement_amount": "200.00", "currency": "CNY"}}
ORGANIZATION = {"name": "山东调解中心", "regions": ["370000"], "url": "https://mediator.example/in",
                "secret": "s" * 16, "contact": {"phone": "0531-81000000"}}


class Recorder:
    def __init__(self, name, log, answers):
        self._name, self._log, self._answers = name, log, answers

    def __getattr__(self, method):
        def call(*args):
            self._log.append((f"{self._name}.{method}", *args))
            return self._answers.get(method)
        return call


class Peers:
    def __init__(self, log, **answers):
        self.intake = Recorder("intake", log, {"get": COMPLAINT})
        self.routing = Recorder("routing", log, {"visible_units": UNITS})
        self.mediation = Recorder("mediation", log, answers)


def request(method="POST", body=None, raw=None, headers=None):
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return EnvironBuilder(method=method, data=data, content_type="application/json",
                          headers=headers or {}).get_request()


def test_a_referral_is_the_mediation_services_to_make_and_answers_201():
    log = []
    made = {"referral_id": "C1-M1", "organization": "SD-BIMC", "status": "referred"}
    peers = Peers(log, refer={"referral": made, "events": ["e-1"]})
    status, headers, answer = mediation.refer(peers, request(body=REFERRAL), SUPERVISOR, "C1")
    assert (status, headers, answer) == (201, {"Location": "/api/v1/mediation/referrals/C1-M1"}, made)
    # Mediation reads the complaint from intake and judges who may act: the edge only passes it on.
    assert log == [("mediation.refer", "C1", REFERRAL, {**ACTOR, "note": "工号 7"})]


def test_an_authority_the_caller_may_not_approve_answers_202_with_the_pending_approval():
    pending = {"approval_id": "mediation-" + "0" * 32, "action": "raise_authority", "needs": ["supervisor"],
               "of_unit": "BANKA-SD"}
    log = []
    peers = Peers(log, refer={"approval": dict(pending, action="refer")}, raise_authority={"approval": pending})
    assert mediation.refer(peers, request(body=REFERRAL), SUPERVISOR, "C1") == (202, dict(pending, action="refer"))
    raise_ = {"authority": {"max_settlement_amount": "300.00", "currency": "CNY"}}
    assert mediation.raise_authority(peers, request(body=raise_), SUPERVISOR, "C1") == (202, pending)
    peers.mediation._answers["raise_authority"] = {"referral": {"referral_id": "C1-M1"}, "events": ["e-2"]}
    assert mediation.raise_authority(peers, request(body=raise_), SUPERVISOR, "C1") == {"referral_id": "C1-M1"}


@pytest.mark.parametrize("change,field", [
    ({"consent": {**REFERRAL["consent"], "given": False}}, "consent.given"),
    ({"negotiation": []}, "negotiation"),
    ({"reason": "  "}, "reason"),
    ({"authority": {"max_settlement_amount": "1e3", "currency": "CNY"}}, "authority.max_settlement_amount"),
    ({"negotiation": [{**REFERRAL["negotiation"][0], "at": "0001-01-01T00:00:00+14:00"}]}, "negotiation.0.at"),
])
def test_the_edge_refuses_a_body_the_document_refuses_before_asking_a_peer(change, field):
    log = []
    with pytest.raises(ValidationFailed) as refused:
        mediation.refer(Peers(log), request(body={**REFERRAL, **change}), SUPERVISOR, "C1")
    assert field in refused.value.details and log == []


def test_a_callback_passes_the_exact_bytes_and_the_signature():
    log = []
    raw = b'{"event_id":"e1","status":"accepted"}  '
    peers = Peers(log, callback={"applied": True})
    answer = mediation.callback(peers, request(raw=raw, headers={"X-Complaint-Signature": "t=1,v1=ab"}), "C1-M1")
    assert answer == {"applied": True}
    [(name, referral_id, body, signed)] = log
    assert name == "mediation.callback" and referral_id == "C1-M1" and signed == "t=1,v1=ab"
    assert base64.b64decode(body) == raw
    log.clear()
    with pytest.raises(MalformedJson):  # what no part of the platform can hold goes no further
        mediation.callback(peers, request(raw=b'{"event_id": "\\ud800"}'), "C1-M1")
    assert log == []


def test_a_referral_is_read_with_a_token_or_a_signature():
    log = []
    peers = Peers(log, referral={"referral_id": "C1-M1", "complaint_no": "C1"},
                  referral_for_organization={"referral_id": "C1-M1"})
    assert mediation.get_referral(peers, request("GET"), SUPERVISOR, "C1-M1")["complaint_no"] == "C1"
    assert log == [("mediation.referral", "C1-M1"), ("routing.visible_units", "BANKA-SD-YT"),
                   ("intake.get", "C1", UNITS)]
    log.clear()
    mediation.get_referral(peers, request("GET", headers={"X-Complaint-Signature": "t=1,v1=ab"}), None, "C1-M1")
    assert log == [("mediation.referral_for_organization", "C1-M1", "t=1,v1=ab")]
    with pytest.raises(Unauthorized):
        mediation.get_referral(peers, request("GET"), None, "C1-M1")


def test_registering_answers_201_then_200():
    log = []
    peers = Peers(log, put_organization={"created": True, "organization": {"code": "SD"}})
    assert mediation.put_organization(peers, request("PUT", body=ORGANIZATION), SUPERVISOR, "SD") == (
        201, {"code": "SD"})
    assert log == [("mediation.put_organization", "SD", ORGANIZATION, ACTOR)]
    peers.mediation._answers["put_organization"] = {"created": False, "organization": {"code": "SD"}}
    assert mediation.put_organization(peers, request("PUT", body=ORGANIZATION), SUPERVISOR, "SD")[0] == 200
    with pytest.raises(ValidationFailed):
        mediation.put_organization(peers, request("PUT", body={"name": "x"}), SUPERVISOR, "SD")


def test_a_signed_route_needs_no_token_from_an_organization():
    callback = Endpoint("mediation_callback")
    referral = Endpoint("get_mediation_referral")
    complaint = Endpoint("get_complaint")
    bare = request("GET", headers={"X-Complaint-Signature": "t=1,v1=ab"})
    with_token = request("GET", headers={"Authorization": "Bearer x"})
    assert callback.signed_instead(bare) and referral.signed_instead(bare)
    assert not referral.signed_instead(with_token)  # a token present is verified as usual
    assert not complaint.signed_instead(bare)
    assert BY_NAME["get_mediation_referral"].roles and BY_NAME["mediation_callback"].roles is None
