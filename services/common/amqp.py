"""Publishing with publisher confirms, and the broker topology the platform needs.

``Publisher.publish`` returns only once the broker has confirmed the message, so a caller
that marks something "sent" after it returns never marks a message the broker lost.
``declare_topology`` declares every exchange and queue the catalogue implies; it runs
before any service publishes (``make run``, each service's start, the tests), because a
message published to an exchange with no bound queue is dropped by the broker.
"""
from __future__ import annotations

import json

from kombu import Connection, Exchange, Queue, binding
from kombu.pools import producers

from services.common import events

INBOUND_EXCHANGE = "complaints.inbound"
OUTBOUND_EXCHANGE = "complaints.outbound"
NOTIFICATIONS_EXCHANGE = "complaints.notifications"
INBOUND_QUEUE = "intake.inbound"

_RETRY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


def topic(name: str) -> Exchange:
    return Exchange(name, type="topic", durable=True)


def delay_queue_name(queue: str) -> str:
    return f"{queue}.delay"


def parked_queue_name(queue: str) -> str:
    return f"{queue}.parked"


def consumer_queues(name: str, exchange: Exchange, routing_key: str) -> list[Queue]:
    """A work queue with its delay queue (retries come back after a per-message TTL) and
    its parked queue (what failed every retry waits there for an operator)."""
    return [
        Queue(name, exchange, routing_key=routing_key, durable=True),
        Queue(
            delay_queue_name(name),
            durable=True,
            queue_arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name},
        ),
        Queue(parked_queue_name(name), durable=True),
    ]


def inbound_queues() -> list[Queue]:
    # Bound with "#": a message under any routing key reaches intake and is answered,
    # a wrong key with a rejection, rather than being dropped by the broker.
    return consumer_queues(INBOUND_QUEUE, topic(INBOUND_EXCHANGE), "#")


def subscriber_queues(subscriber: str, event_name: str) -> list[Queue]:
    first, *others = producers = events.event_type(event_name).producers
    queues = consumer_queues(events.queue_name(subscriber, event_name), topic(events.exchange_name(first)), event_name)
    if others:
        # An event type several services publish: the subscriber's one queue hears every one.
        # Each exchange is a binding of its own, the first too: a queue with bindings loses its
        # main exchange when kombu copies it (as declaring and consuming do).
        queues[0].bindings.update(binding(topic(events.exchange_name(producer)), routing_key=event_name)
                                  for producer in producers)
    return queues


def all_queues() -> list[Queue]:
    queues = inbound_queues()
    for name, kind in events.CATALOGUE.items():
        for subscriber in kind.subscribers:
            queues.extend(subscriber_queues(subscriber, name))
    return queues


def all_exchanges() -> list[Exchange]:
    names = {INBOUND_EXCHANGE, OUTBOUND_EXCHANGE, NOTIFICATIONS_EXCHANGE}
    names.update(events.exchange_name(producer) for kind in events.CATALOGUE.values() for producer in kind.producers)
    return [topic(name) for name in sorted(names)]


def declare(connection: Connection, entities) -> None:
    channel = connection.default_channel
    for entity in entities:
        entity(channel).declare()  # a bound copy: the entity itself may outlive this channel


def declare_topology(connection: Connection) -> None:
    declare(connection, all_exchanges())
    declare(connection, all_queues())


class Publisher:
    """Confirmed, persistent publishing from any greenlet (a pooled producer per call)."""

    def __init__(self, amqp_uri: str):
        self.connection = Connection(amqp_uri, transport_options={"confirm_publish": True})

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str | dict,
        *,
        headers: dict | None = None,
        **properties,
    ) -> None:
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False)
        properties.setdefault("content_type", "application/json")
        properties.setdefault("content_encoding", "utf-8")
        with producers[self.connection].acquire(block=True) as producer:
            producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                headers=headers or {},
                delivery_mode=2,
                retry=True,
                retry_policy=_RETRY,
                **properties,
            )

    def close(self) -> None:
        self.connection.release()


def main() -> None:
    """Declare the whole topology on ``AMQP_URI`` (run before starting the services)."""
    from services.common.config import Settings

    with Connection(Settings.from_env().amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)
        declare_topology(connection)
    print(f"declared {len(all_exchanges())} exchanges and {len(all_queues())} queues")


if __name__ == "__main__":
    main()
