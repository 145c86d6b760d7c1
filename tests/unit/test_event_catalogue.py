"""The catalogue is the one truth about events: every subscription a service makes is in
it (so its queue is declared before anything publishes), and every catalogue subscriber
really subscribes."""
import importlib
import importlib.util

import pytest
from marshmallow import ValidationError

from services.common import amqp, events
from services.common.consumers import EventSubscriber

SERVICES = ("intake", "routing", "sla", "mediation", "reporting")


def service_class(name):
    if importlib.util.find_spec(f"services.{name}") is None \
            or importlib.util.find_spec(f"services.{name}.service") is None:
        return None
    module = importlib.import_module(f"services.{name}.service")
    return next(obj for obj in vars(module).values() if isinstance(obj, type) and getattr(obj, "name", None) == name)


def subscriptions(cls) -> set[str]:
    found = set()
    for attribute in vars(cls).values():
        for extension in getattr(attribute, "nameko_entrypoints", ()):
            if isinstance(extension, EventSubscriber):
                found.add(extension.event_name)
    return found


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_subscribes_to_exactly_what_the_catalogue_says(name):
    cls = service_class(name)
    if cls is None:
        pytest.skip(f"services/{name} does not exist yet")
    expected = {event for event, kind in events.CATALOGUE.items() if name in kind.subscribers}
    assert subscriptions(cls) == expected


def test_every_subscriber_queue_is_declared_with_a_delay_queue_per_retry_delay_and_its_parking_queue():
    declared = {queue.name: queue for queue in amqp.all_queues((1, 5, 30, 5))}
    for event, kind in events.CATALOGUE.items():
        for subscriber in kind.subscribers:
            queue = events.queue_name(subscriber, event)
            delays = {f"{queue}.delay.1000": 1000, f"{queue}.delay.5000": 5000, f"{queue}.delay.30000": 30000}
            assert {queue, *delays, f"{queue}.parked"} <= set(declared)
            assert not [name for name in declared if name.startswith(f"{queue}.delay.") and name not in delays]
            for name, milliseconds in delays.items():
                # A queue-level TTL: every message of one delay queue expires after the same time.
                assert declared[name].queue_arguments == {
                    "x-message-ttl": milliseconds, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}


def test_an_event_is_checked_against_its_schema_when_made():
    with pytest.raises(ValidationError) as invalid:
        events.make_event("complaint_escalated", "BANKA-261124-0000018", {"complaint_no": "x"}, "routing")
    assert {"at", "actor", "from_unit", "to_unit", "reason", "cause"} <= set(invalid.value.messages)


def test_only_its_producer_may_make_an_event():
    with pytest.raises(events.UnknownEvent):
        events.make_event("sla_breached", "BANKA-261124-0000018", {}, "intake")


def test_a_made_event_validates_as_received():
    event = events.make_event("organization_changed", None, {"institutions": {"BANKA": ["BANKA"]}}, "routing")
    assert events.validate_event(event) == {}
    assert events.validate_event(dict(event, body={"institutions": "BANKA"})) == {
        "body": {"institutions": ["Not a valid mapping type."]}}
