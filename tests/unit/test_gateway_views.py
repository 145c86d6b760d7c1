"""The endpoints' translation with fake peers: no broker."""
import json

import pytest
from marshmallow import Schema, fields
from nameko.exceptions import MethodNotFound, RpcTimeout, UnknownService
from werkzeug.test import EnvironBuilder

from services.common.errors import NotFound
from services.gateway import views
from services.gateway.auth import Identity
from services.gateway.entrypoint import Endpoint
from services.gateway.errors import Forbidden, MalformedJson, ValidationFailed
from services.gateway.routes import ACTION_ROUTES, ACTIONS, ROUTES
from services.gateway.service import GatewayService


class Reply:
    def __init__(self, outcome):
        self.outcome = outcome

    def result(self, timeout=None):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Method:
    def __init__(self, outcome, at_call=None):
        self.outcome, self.at_call = outcome, at_call

    def call_async(self, *args, **kwargs):
        if self.at_call:
            raise self.at_call
        return Reply(self.outcome)

    def __call__(self, *args, **kwargs):
        return self.call_async(*args, **kwargs).result()


class Peer:
    def __init__(self, **methods):
        self.__dict__.update(methods)


class Peers:
    def __init__(self, intake, routing, sla=None, mediation=None):
        self.intake, self.routing, self.sla, self.mediation = intake, routing, sla or Peer(), mediation or Peer()


@pytest.mark.parametrize("intake,routing,sla,mediation,expected", [
    (Method({"ok": True}), Method(MethodNotFound("health")), Method({}), Method({"status": "ok"}),
     {"intake": "up", "routing": "up", "sla": "up", "mediation": "up"}),
    (Method(None, at_call=UnknownService("intake")), Method(RpcTimeout("routing.health")),
     Method(None, at_call=UnknownService("sla")), Method(RpcTimeout("mediation.health")),
     {"intake": "down", "routing": "down", "sla": "down", "mediation": "down"}),
    (Method(RuntimeError("db down")), Method({}), Method({}), Method(RuntimeError("store down")),
     {"intake": "error", "routing": "up", "sla": "up", "mediation": "error"}),
])
def test_peer_health(intake, routing, sla, mediation, expected):
    peers = Peers(Peer(health=intake), Peer(health=routing), Peer(health=sla), Peer(health=mediation))
    assert views.peer_health(peers) == expected


def test_visible_units_admin_sees_everything_without_asking():
    peers = Peers(Peer(), Peer(visible_units=Method(None, at_call=AssertionError("not called"))))
    assert views.visible_units(peers, Identity("a", "n", "BANKA", ("admin",), 0)) is None


def test_visible_units_of_an_unknown_unit_is_403():
    peers = Peers(Peer(), Peer(visible_units=Method(NotFound("no such unit"))))
    with pytest.raises(Forbidden):
        views.visible_units(peers, Identity("a", "n", "NOPE", ("handler",), 0))


def test_nested_validation_messages_are_flattened_to_paths():
    class Inner(Schema):
        phone = fields.Int(required=True)

    class Outer(Schema):
        customer = fields.Nested(Inner, required=True)
        limit = fields.Int()

    with pytest.raises(ValidationFailed) as caught:
        views.load(Outer(), {"customer": {}, "limit": "x"})
    assert caught.value.details == {"customer.phone": ["Missing data for required field."],
                                    "limit": ["Not a valid integer."]}


# -- handler actions ------------------------------------------------------------------------------

HANDLER = Identity("u7", "李娜", "BANKA-SD-YT", ("handler",), 0)
ACTOR = {"sub": "u7", "name": "李娜", "unit": "BANKA-SD-YT", "roles": ["handler"]}
UNITS = ["BANKA-SD-YT", "BANKA-SD-YT-ZF"]


class Recorder:
    """A fake peer whose every method records its call and answers ``answers[method]``, else
    ``answer``."""

    def __init__(self, name, log, answer=None, **answers):
        self._name, self._log, self._answer, self._answers = name, log, answer, answers

    def __getattr__(self, method):
        def call(*args):
            self._log.append((f"{self._name}.{method}", *args))
            return self._answers.get(method, self._answer)
        return call


COMPLAINT = {"complaint_no": "C1", "status": "x"}


def recording_peers(applied=True):
    log = []
    done = {"events": ["e-1", "e-2"]}
    intake = Recorder("intake", log, COMPLAINT, get_when_applied={"applied": applied, "complaint": COMPLAINT})
    return log, Peers(intake, Recorder("routing", log, UNITS, act=done),
                      Recorder("sla", log, [{"clock": "decision"}], act=done))


def request(body=None, raw=None):
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return EnvironBuilder(method="POST", data=data, content_type="application/json").get_request()


def test_every_route_has_its_service_method():
    for route in ROUTES:
        method = getattr(GatewayService, route.name)
        [entrypoint] = method.nameko_entrypoints
        assert isinstance(entrypoint, Endpoint) and entrypoint.route is route


def test_one_action_one_post_route():
    assert [route.action for route in ACTION_ROUTES] == list(ACTIONS)
    assert all(route.method == "POST" and route.path.endswith("/" + route.action.suffix) for route in ACTION_ROUTES)
    assert len({(route.method, route.path) for route in ROUTES}) == len(ROUTES)


def test_an_action_is_done_by_its_owner_in_the_rule_book():
    assert {action.name: action.peer for action in ACTIONS} == {
        "accept": "routing", "transfer": "routing", "transfer_accept": "routing", "transfer_reject": "routing",
        "escalate": "routing", "misconduct": "routing", "extend": "sla", "pause": "sla", "resume": "sla",
        "decision": "intake", "close": "intake", "reopen": "intake", "withdraw": "intake"}


def test_intake_action_passes_the_data_and_the_token_identity():
    log, peers = recording_peers()
    body = {"outcome": "upheld", "amount": "1200.5", "message": "退还年费", "actor": "工号 0042"}
    answer = views.act(peers, "decision", request(body), HANDLER, "C1")
    assert answer == {"complaint_no": "C1", "status": "x"}
    assert log == [("intake.act", "C1", "decision", {"outcome": "upheld", "amount": "1200.50", "message": "退还年费"},
                    {**ACTOR, "note": "工号 0042"})]


def test_routing_action_then_the_complaint_once_its_record_shows_it():
    log, peers = recording_peers()
    answer = views.act(peers, "transfer", request({"to_unit": "BANKA-SD-WF", "reason": "属地"}), HANDLER, "C1")
    assert answer == COMPLAINT
    assert log == [("routing.act", "C1", "transfer", {"to_unit": "BANKA-SD-WF", "reason": "属地"}, ACTOR),
                   ("routing.visible_units", "BANKA-SD-YT"), ("intake.get_when_applied", "C1", ["e-1", "e-2"], UNITS)]


def test_an_action_the_record_has_not_caught_up_with_is_202_with_where_to_look():
    _, peers = recording_peers(applied=False)
    body = {"reason": "外部鉴定", "ground": "third_party_appraisal", "evidence": "鉴定委托书 2026-118"}
    status, headers, body = views.act(peers, "pause", request(body), HANDLER, "C1")
    assert (status, headers) == (202, {"Location": "/api/v1/complaints/C1"})
    assert body == {"complaint_no": "C1", "action": "pause", "status": "accepted",
                    "location": "/api/v1/complaints/C1", "events": ["e-1", "e-2"]}


def test_accept_needs_no_body():
    log, peers = recording_peers()
    views.act(peers, "transfer_accept", request(), HANDLER, "C1")
    assert log[0] == ("routing.act", "C1", "transfer_accept", {}, ACTOR)


def test_sla_action_passes_the_body_and_the_token_identity():
    log, peers = recording_peers()
    views.act(peers, "extend", request({"days": 15, "reason": "需鉴定"}), HANDLER, "C1")
    assert log[0] == ("sla.act", "C1", "extend", {"days": 15, "reason": "需鉴定"}, ACTOR)


def test_a_step_the_caller_may_not_approve_answers_202_with_the_pending_approval():
    log = []
    pending = {"approval_id": "sla-1", "action": "extend", "needs": ["supervisor"], "of_unit": "BANKA-SD"}
    peers = Peers(Recorder("intake", log), Recorder("routing", log), Recorder("sla", log, act={"approval": pending}))
    assert views.act(peers, "extend", request({"days": 30, "reason": "需鉴定"}), HANDLER, "C1") == (202, pending)
    assert [call[0] for call in log] == ["sla.act"]  # nothing to wait for: nothing applied


@pytest.mark.parametrize("name,body,fields_", [
    ("decision", {"outcome": "maybe", "amount": 12.5}, {"outcome", "amount", "message"}),
    ("close", {"satisfaction": "happy"}, {"satisfaction", "root_cause"}),
    ("extend", {"days": 0, "reason": " ", "approvals": ["superior_unit"]}, {"days", "reason", "approvals"}),
    ("pause", {"reason": "鉴定", "evidence": " "}, {"ground", "evidence"}),
    ("extend", {"days": "3", "reason": "x"}, {"days"}),
    ("transfer", {"reason": "x", "colour": "red"}, {"to_unit", "colour"}),
    ("misconduct", {"clue": "gossip"}, {"clue", "note"}),
    ("reopen", {}, {"reason"}),
])
def test_invalid_bodies_are_422_before_any_call(name, body, fields_):
    log, peers = recording_peers()
    with pytest.raises(ValidationFailed) as caught:
        views.act(peers, name, request(body), HANDLER, "C1")
    assert set(caught.value.details) == fields_
    assert log == []


def test_an_action_body_must_be_a_json_object():
    _, peers = recording_peers()
    with pytest.raises(ValidationFailed):
        views.act(peers, "escalate", request(["x"]), HANDLER, "C1")
    with pytest.raises(MalformedJson):
        views.act(peers, "escalate", request(raw=b"{"), HANDLER, "C1")


def test_clocks_after_the_visibility_check():
    log, peers = recording_peers()
    assert views.complaint_clocks(peers, HANDLER, "C1") == [{"clock": "decision"}]
    assert log[1:] == [("intake.get", "C1", UNITS), ("sla.clocks", "C1")]


# -- approvals --------------------------------------------------------------------------------

def test_approvals_are_listed_from_their_owners_newest_first():
    log = []
    older, newer = {"approval_id": "sla-1", "requested_at": "2026-11-20T09:00:00+08:00"}, \
        {"approval_id": "sla-2", "requested_at": "2026-11-24T09:00:00+08:00"}
    raise_ = {"approval_id": "mediation-1", "requested_at": "2026-11-22T09:00:00+08:00"}
    peers = Peers(Recorder("intake", log), Recorder("routing", log), Recorder("sla", log, approvals=[older, newer]),
                  Recorder("mediation", log, approvals=[raise_]))
    query = EnvironBuilder(method="GET", query_string="pending=false").get_request()
    assert views.list_approvals(peers, query, HANDLER) == {"items": [newer, raise_, older]}
    assert log == [("sla.approvals", ACTOR, False), ("mediation.approvals", ACTOR, False)]


def test_a_decision_goes_to_the_owner_the_id_names_with_a_note():
    log = []
    decided = {"approval_id": "sla-1", "complaint_no": "C1", "state": "approved"}
    peers = Peers(Recorder("intake", log, get_when_applied={"applied": True, "complaint": COMPLAINT}),
                  Recorder("routing", log, UNITS), Recorder("sla", log, decide_approval={"approval": decided,
                                                                                         "events": ["e-1"]}))
    answer = views.decide_approval(peers, request({"note": "同意延期"}), HANDLER, "sla-1", "approve")
    assert answer == {**decided, "complaint": COMPLAINT}
    assert log[0] == ("sla.decide_approval", "sla-1", "approve", "同意延期", ACTOR)
    with pytest.raises(ValidationFailed):
        views.decide_approval(peers, request({}), HANDLER, "sla-1", "refuse")
    with pytest.raises(NotFound):  # no service keeps approvals of that prefix
        views.decide_approval(peers, request({"note": "x"}), HANDLER, "routing-1", "approve")


def test_a_decision_on_a_mediators_authority_goes_to_mediation():
    log = []
    decided = {"approval_id": "mediation-1", "complaint_no": "C1", "state": "approved"}
    peers = Peers(Recorder("intake", log, get_when_applied={"applied": True, "complaint": COMPLAINT}),
                  Recorder("routing", log, UNITS), Recorder("sla", log),
                  Recorder("mediation", log, decide_approval={"approval": decided, "events": ["e-9"]}))
    answer = views.decide_approval(peers, request({"note": "同意提高授权"}), HANDLER, "mediation-1", "approve")
    assert answer == {**decided, "complaint": COMPLAINT}
    assert log[0] == ("mediation.decide_approval", "mediation-1", "approve", "同意提高授权", ACTOR)
    assert log[-1] == ("intake.get_when_applied", "C1", ["e-9"], UNITS)

