"""Publishing with publisher confirms, and the broker topology the platform needs.

``Publisher.publish`` returns only once the broker has confirmed the message, so a caller
that marks something "sent" after it returns never marks a message the broker lost.
``declare_topology`` declares every exchange and queue the catalogue implies; it runs
before any service publishes (``make run``, each service's start, the tests), because a
message published to an exchange with no bound queue is dropped by the broker.

Every work queue has one delay queue per retry delay (``<queue>.delay.<ms>``, a
queue-level TTL that dead-letters back to the work queue): RabbitMQ expires messages only
at the head of a queue, so one delay queue with per-message TTLs held a 1 s retry behind
a 30 s one.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from amqp import abstract_channel as amqp_channel
from amqp import serialization as amqp_serialization
from kombu import Connection, Exchange, Queue, binding
from kombu.pools import producers

from services.common import events

INBOUND_EXCHANGE = "complaints.inbound"
OUTBOUND_EXCHANGE = "complaints.outbound"
NOTIFICATIONS_EXCHANGE = "complaints.notifications"
INBOUND_QUEUE = "intake.inbound"
RPC_EXCHANGE = "nameko-rpc"  # nameko's default, declared by it as a durable topic exchange

_RETRY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


def topic(name: str) -> Exchange:
    return Exchange(name, type="topic", durable=True)


def _lenient_text(raw):
    """py-amqp decodes a message's properties and header names as strict UTF-8 inside the
    connection's reader: one message whose ``message_id`` was not UTF-8 stopped every
    consumer of the process, and came back to stop it again. Undecodable bytes are kept as
    lone surrogates instead (``surrogateescape``), for the handler to refuse."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw)
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "surrogateescape")
    return raw


amqp_serialization.pstr_t = _lenient_text
_strict_loads = amqp_serialization.loads


def _lenient_loads(format, buf, offset):
    """py-amqp reads a method's short strings (a delivery's routing key) as strict UTF-8,
    also inside the connection's reader: a message published under a routing key that was
    not UTF-8 stopped the consumer, again at each redelivery. The bytes that do not decode
    are read as "?" instead (as many: the frame's lengths still hold), for the handler to
    refuse."""
    for _ in range(16):
        try:
            return _strict_loads(format, buf, offset)
        except UnicodeDecodeError as exc:
            raw = bytes(buf)
            at = raw.find(bytes([len(exc.object)]) + exc.object, offset)
            if at < 0 or len(exc.object) > 255:
                raise
            start, end = at + 1 + exc.start, at + 1 + exc.end
            buf = raw[:start] + b"?" * (end - start) + raw[end:]
    return _strict_loads(format, buf, offset)


amqp_channel.loads = _lenient_loads


def delay_milliseconds(delay: float) -> int:
    return max(1, round(delay * 1000))


def delay_queue_name(queue: str, delay: float) -> str:
    return f"{queue}.delay.{delay_milliseconds(delay)}"


def parked_queue_name(queue: str) -> str:
    return f"{queue}.parked"


def consumer_queues(name: str, exchange: Exchange, routing_key: str, delays: Iterable[float]) -> list[Queue]:
    """A work queue, first, with a delay queue per retry delay (a message waits there
    ``x-message-ttl``, then dead-letters back to the work queue) and its parked queue
    (what failed every retry waits there for an operator)."""
    milliseconds = sorted({delay_milliseconds(delay) for delay in delays})
    return [
        Queue(name, exchange, routing_key=routing_key, durable=True),
        *(Queue(
            delay_queue_name(name, ms / 1000),
            durable=True,
            queue_arguments={"x-message-ttl": ms, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": name},
        ) for ms in milliseconds),
        Queue(parked_queue_name(name), durable=True),
    ]


def inbound_queue() -> Queue:
    # Bound with "#": a message under any routing key reaches intake and is answered,
    # a wrong key with a rejection, rather than being dropped by the broker.
    return Queue(INBOUND_QUEUE, topic(INBOUND_EXCHANGE), routing_key="#", durable=True)


def inbound_queues(delays: Iterable[float]) -> list[Queue]:
    work = inbound_queue()
    return consumer_queues(work.name, work.exchange, work.routing_key, delays)


def subscriber_queues(subscriber: str, event_name: str, delays: Iterable[float]) -> list[Queue]:
    first, *others = producers = events.event_type(event_name).producers
    queues = consumer_queues(events.queue_name(subscriber, event_name), topic(events.exchange_name(first)),
                             event_name, delays)
    if others:
        # An event type several services publish: the subscriber's one queue hears every one.
        # Each exchange is a binding of its own, the first too: a queue with bindings loses its
        # main exchange when kombu copies it (as declaring and consuming do).
        queues[0].bindings.update(binding(topic(events.exchange_name(producer)), routing_key=event_name)
                                  for producer in producers)
    return queues


def all_queues(delays: Iterable[float]) -> list[Queue]:
    delays = tuple(delays)
    queues = inbound_queues(delays)
    for name, kind in events.CATALOGUE.items():
        for subscriber in kind.subscribers:
            queues.extend(subscriber_queues(subscriber, name, delays))
    return queues


def all_exchanges() -> list[Exchange]:
    # nameko's RPC exchange too: the HTTP edge, started beside the services, may call one
    # before any service has declared it (a 404 from the broker, not a 503).
    names = {INBOUND_EXCHANGE, OUTBOUND_EXCHANGE, NOTIFICATIONS_EXCHANGE, RPC_EXCHANGE}
    names.update(events.exchange_name(producer) for kind in events.CATALOGUE.values() for producer in kind.producers)
    return [topic(name) for name in sorted(names)]


def declare(connection: Connection, entities) -> None:
    channel = connection.default_channel
    for entity in entities:
        entity(channel).declare()  # a bound copy: the entity itself may outlive this channel


def declare_topology(connection: Connection, delays: Iterable[float]) -> None:
    """Every exchange and queue, with a delay queue per retry delay (``RETRY_DELAYS``)."""
    declare(connection, all_exchanges())
    declare(connection, all_queues(delays))


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

    settings = Settings.from_env()
    with Connection(settings.amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)
        declare_topology(connection, settings.retry_delays)
    print(f"declared {len(all_exchanges())} exchanges and {len(all_queues(settings.retry_delays))} queues")


if __name__ == "__main__":
    main()
