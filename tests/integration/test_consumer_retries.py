"""The platform's consumers over the real broker: a retried or replayed message reaches its
handler exactly as it was published; a short retry is not held behind a long one; a
passing infrastructure failure is retried until it passes, never parked."""
from __future__ import annotations

import subprocess
from urllib.parse import unquote

import pytest
from kombu import Connection
from pymongo.errors import AutoReconnect

from services.common import amqp, events
from services.common.consumers import Delivery, inbound, subscribe
from services.common.outbox import event_message
from services.common.parking import list_parked, replay
from tests.support.harness import publish_raw, wait_until

pytestmark = pytest.mark.integration

seen: list[Delivery] = []
failures: dict[str, list] = {}  # message_id -> the exceptions its next deliveries raise


class Recording:
    name = "intake"  # the inbound entrypoint consumes intake.inbound

    @inbound()
    def receive(self, delivery: Delivery):
        seen.append(delivery)
        planned = failures.get(delivery.properties.get("message_id"))
        if planned:
            raise planned.pop(0)


@pytest.fixture(autouse=True)
def reset():
    seen.clear()
    failures.clear()


def deliveries_of(message_id: str) -> list[Delivery]:
    return [d for d in seen if d.properties.get("message_id") == message_id]


def waiting_to_retry(amqp_uri: str) -> int:
    """Messages in intake.inbound's delay queues, whatever they are called."""
    vhost = unquote(amqp_uri.rsplit("/", 1)[1])
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name", "messages"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    rows = (line.split() for line in listed.splitlines() if line.strip())
    return sum(int(count) for name, count in rows if name.startswith("intake.inbound.delay"))


def queue_depth(amqp_uri: str, name: str) -> int:
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=name, passive=True).message_count


def test_a_retried_message_reaches_its_handler_as_it_was_published(settings, run_services):
    failures["m-retried"] = [RuntimeError("first"), RuntimeError("second")]
    headers = {"trace": "abc-123", "priority-hint": 5, "nested": {"a": 1}}
    with run_services(settings, Recording):  # retry delays 0.2 s, 0.5 s
        # No content_type on purpose: a retry must not gain one.
        publish_raw(settings.amqp_uri, "complaint.submit.letter", b'{"n": 1}', headers,
                    message_id="m-retried", app_id="cc-test", correlation_id="c-1", type="submit", priority=3,
                    delivery_mode=2)
        wait_until(lambda: len(deliveries_of("m-retried")) == 3, "the message came back twice")
    first, second, third = deliveries_of("m-retried")
    assert [d.attempt for d in (first, second, third)] == [0, 1, 2]
    assert first.routing_key == "complaint.submit.letter"
    assert first.headers == headers
    assert "content_type" not in first.properties
    for retry in (second, third):
        assert retry.routing_key == first.routing_key
        assert retry.properties == first.properties
        assert retry.headers == first.headers  # none of the consumer's own or the broker's x-death
        assert retry.body == first.body


def test_a_short_retry_is_not_held_behind_a_long_one(settings, run_services):
    # A fails twice: its second retry waits 6 s. B, published after, fails once: its
    # retry waits 0.2 s and must come back first (one queue with per-message TTLs held
    # it until A's 6 s had passed, as RabbitMQ expires messages only at a queue's head).
    failures["A"] = [RuntimeError("a1"), RuntimeError("a2")]
    failures["B"] = [RuntimeError("b1")]
    with run_services(settings, Recording, RETRY_DELAYS=[0.2, 6.0]):
        publish_raw(settings.amqp_uri, "complaint.submit.phone", b"{}", message_id="A", app_id="cc-test")
        wait_until(lambda: len(deliveries_of("A")) == 2, "A was retried once")
        wait_until(lambda: waiting_to_retry(settings.amqp_uri) == 1, "A waits for its retry")
        publish_raw(settings.amqp_uri, "complaint.submit.phone", b"{}", message_id="B", app_id="cc-test")
        wait_until(lambda: len(deliveries_of("B")) == 2, "B came back from its retry")
        assert len(deliveries_of("A")) == 2, "B's 0.2 s retry waited behind A's 6 s one"
        wait_until(lambda: len(deliveries_of("A")) == 3, "A came back from its long retry", timeout=20)


def test_a_parked_message_is_replayed_as_it_was_published(settings, run_services):
    failures["m-park"] = [RuntimeError("one"), RuntimeError("two"), RuntimeError("three")]
    with run_services(settings, Recording):
        publish_raw(settings.amqp_uri, "complaint.submit.wechat", b'{"x": 1}', {"trace": "t-9"},
                    message_id="m-park", app_id="cc-test", content_type="application/json")
        wait_until(lambda: queue_depth(settings.amqp_uri, "intake.inbound.parked") == 1, "the message was parked")
        [parked] = list_parked(settings.amqp_uri, "intake.inbound")
        assert parked["routing_key"] == "complaint.submit.wechat"
        assert "three" in parked["headers"]["x-last-error"]
        assert replay(settings.amqp_uri, "intake.inbound") == 1
        wait_until(lambda: len(deliveries_of("m-park")) == 4, "the replayed message was handled")
    first, *_, replayed = deliveries_of("m-park")
    assert replayed.attempt == 0  # a fresh start
    assert (replayed.routing_key, replayed.properties, replayed.headers) == (
        first.routing_key, first.properties, first.headers)
    assert queue_depth(settings.amqp_uri, "intake.inbound.parked") == 0


def test_a_passing_store_failure_is_retried_until_it_passes_and_never_parked(settings, run_services):
    # More failures than RETRY_DELAYS has retries: a handler error would be parked by now.
    failures["m-store"] = [AutoReconnect("store unreachable") for _ in range(5)]
    failures["m-bug"] = [ValueError("a bug"), ValueError("a bug"), ValueError("a bug")]
    with run_services(settings, Recording):
        publish_raw(settings.amqp_uri, "complaint.submit.phone", b"{}", message_id="m-store", app_id="cc-test")
        publish_raw(settings.amqp_uri, "complaint.submit.phone", b"{}", message_id="m-bug", app_id="cc-test")
        wait_until(lambda: len(deliveries_of("m-store")) == 6, "the message was handled once the store was back")
        wait_until(lambda: queue_depth(settings.amqp_uri, "intake.inbound.parked") == 1, "the bug was parked")
    assert [d.attempt for d in deliveries_of("m-store")] == [0] * 6  # the handler's own attempts untouched
    assert [d.transient for d in deliveries_of("m-store")] == [0, 1, 2, 3, 4, 5]
    assert len(deliveries_of("m-bug")) == 3  # the first try and the two retries of RETRY_DELAYS
    [parked] = list_parked(settings.amqp_uri, "intake.inbound")
    assert parked["message_id"] == "m-bug"


events_seen: list[dict] = []


class FollowingOrganization:
    name = "intake"  # subscribes on intake.organization_changed

    @subscribe("organization_changed")
    def on_organization_changed(self, event: dict):
        events_seen.append(event)
        if len(events_seen) <= 4:
            raise AutoReconnect("store unreachable")


def test_an_event_subscriber_retries_a_passing_store_failure_with_the_same_event(settings, run_services):
    events_seen.clear()
    event = events.make_event("organization_changed", None, {"institutions": {"BANKA": ["BANKA"]}}, "routing")
    message = event_message(event)
    with run_services(settings, FollowingOrganization):
        amqp.Publisher(settings.amqp_uri).publish(message["exchange"], message["routing_key"], message["body"])
        wait_until(lambda: len(events_seen) == 5, "the event was handled once the store was back")
        assert queue_depth(settings.amqp_uri, "intake.organization_changed.parked") == 0
    assert all(seen == event for seen in events_seen)
