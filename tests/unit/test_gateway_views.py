"""The endpoints' translation with fake peers: no broker."""
import pytest
from marshmallow import Schema, fields
from nameko.exceptions import MethodNotFound, RpcTimeout, UnknownService

from services.common.errors import NotFound
from services.gateway import views
from services.gateway.auth import Identity
from services.gateway.errors import Forbidden, ValidationFailed


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
    def __init__(self, intake, routing):
        self.intake, self.routing = intake, routing


@pytest.mark.parametrize("intake,routing,expected", [
    (Method({"ok": True}), Method(MethodNotFound("health")), {"intake": "up", "routing": "up"}),
    (Method(None, at_call=UnknownService("intake")), Method(RpcTimeout("routing.health")),
     {"intake": "down", "routing": "down"}),
    (Method(RuntimeError("db down")), Method({}), {"intake": "error", "routing": "up"}),
])
def test_peer_health(intake, routing, expected):
    assert views.peer_health(Peers(Peer(health=intake), Peer(health=routing))) == expected


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
