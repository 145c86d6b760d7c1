"""Entrypoints that consume without ever losing or looping on a message.

nameko's own ``consume`` / ``event_handler`` ack after the worker ends and, with the
default ``requeue_on_error=False``, lose the message of a worker that raised (with True
it loops forever). These entrypoints instead:

- hand the worker the raw body and properties (``inbound``) or a checked event
  (``subscribe``), so a body that cannot be decoded is the handler's to answer rather than
  an error inside the consumer thread;
- on a passing infrastructure failure (``services.common.faults``: the store or the broker
  unreachable, a write conflict) republish the message to the delay queue of the next
  delay of ``RETRY_DELAYS``, staying at the last one, for as long as it lasts: it will pass,
  and a valid message must not be parked or answered as invalid because of it;
- on any other exception, republish it to ``<queue>.delay.<ms>`` for each delay of
  ``RETRY_DELAYS`` in turn (it dead-letters back to the work queue), and after the last
  retry to ``<queue>.parked``, where an operator lists and replays it
  (``services.common.parking``);
- ack only once that republish is confirmed; if even that fails, requeue.

A retried or replayed message reaches the handler exactly as the original did: its
routing key, its properties and its headers travel with it in headers of ours (``x-``
below), which the handler never sees.
"""
from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from functools import partial

from nameko.messaging import Consumer, QueueConsumer

from services.common import amqp, events, faults, timeutil
from services.common.config import from_container

log = logging.getLogger(__name__)

# What the consumer records on a message it republishes; stripped before the handler.
ATTEMPT_HEADER = "x-attempt"  # handler failures so far
TRANSIENT_HEADER = "x-transient"  # passing infrastructure failures so far
ERROR_HEADER = "x-last-error"
ROUTING_KEY_HEADER = "x-original-routing-key"
PROPERTIES_HEADER = "x-original-properties"
PARKED_AT_HEADER = "x-parked-at"
OWN_HEADERS = {ATTEMPT_HEADER, TRANSIENT_HEADER, ERROR_HEADER, ROUTING_KEY_HEADER, PROPERTIES_HEADER,
               PARKED_AT_HEADER}
# What RabbitMQ adds when a delay queue dead-letters the message back.
BROKER_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-")
# Properties of the republished copy itself (the original's travel in PROPERTIES_HEADER).
COPIED_PROPERTIES = ("message_id", "app_id", "correlation_id", "type")


class RawQueueConsumer(QueueConsumer):
    """nameko's queue consumer, but messages reach the entrypoint undecoded."""

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            consumer = consumer_cls(queues=[provider.queue], on_message=partial(self._on_raw_message, provider))
            consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def _on_raw_message(self, provider, message):
        self.handle_message(provider, message.body, message)

    def unregister_provider(self, provider):
        # Stopped while still starting, nameko sends this event once per provider and
        # asserts on the second: a service with several subscriptions then hangs on Ctrl-C.
        if not self._consumers_ready.ready():
            if not self._last_provider_unregistered.ready():
                self._last_provider_unregistered.send()
            return
        super().unregister_provider(provider)


@dataclass(frozen=True)
class Delivery:
    """What an inbound handler receives: the bytes and the AMQP facts around them, as the
    publisher sent them, however often the message was retried."""

    body: bytes
    routing_key: str
    properties: dict
    headers: dict
    attempt: int = 0  # handler failures before this delivery
    transient: int = 0  # passing infrastructure failures before this delivery


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _own(name: str) -> bool:
    return name in OWN_HEADERS or name.startswith(BROKER_HEADER_PREFIXES)


def delivery_of(message) -> Delivery:
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode("utf-8")
    received = dict(message.headers or {})
    own = {name: received.pop(name) for name in list(received) if _own(name)}
    original_key = own.get(ROUTING_KEY_HEADER)
    original_properties = own.get(PROPERTIES_HEADER)
    if isinstance(original_properties, dict):
        properties = dict(original_properties)
    else:
        properties = {k: v for k, v in message.properties.items() if k != "application_headers"}
    return Delivery(
        body=body,
        routing_key=original_key if isinstance(original_key, str) else message.delivery_info.get("routing_key", ""),
        properties=properties,
        headers=received,
        attempt=_count(own.get(ATTEMPT_HEADER)),
        transient=_count(own.get(TRANSIENT_HEADER)),
    )


def republished(delivery: Delivery, **own) -> tuple[dict, dict]:
    """The headers and properties of a copy of ``delivery`` that reads back as the original."""
    headers = dict(delivery.headers, **{ROUTING_KEY_HEADER: delivery.routing_key,
                                        PROPERTIES_HEADER: delivery.properties}, **own)
    properties = {key: delivery.properties[key] for key in COPIED_PROPERTIES if delivery.properties.get(key)}
    return headers, properties


class ReliableConsumer(Consumer):
    queue_consumer = RawQueueConsumer()

    def __init__(self, **kwargs):
        super().__init__(queue=None, requeue_on_error=True, **kwargs)

    def queues(self) -> list:
        """The work queue first, then its delay and parked queues."""
        raise NotImplementedError

    def worker_args(self, delivery: Delivery) -> tuple:
        return (delivery,)

    def setup(self):
        settings = from_container(self.container.config)
        self.retry_delays = settings.retry_delays
        self.publisher = amqp.Publisher(settings.amqp_uri)
        declared = self.queues()
        with self.publisher.connection.clone() as connection:
            amqp.declare(connection, [queue.exchange for queue in declared if queue.exchange.name])
            amqp.declare(connection, declared)
        self.queue = declared[0]
        super().setup()

    def handle_message(self, body, message):
        delivery = delivery_of(message)
        try:
            args = self.worker_args(delivery)
        except Exception as exc:
            # A message the entrypoint cannot even decode will not improve with retries.
            self._settle_failure(message, delivery, exc, final=True)
            return
        handle_result = partial(self.handle_result, message, delivery)
        self._spawn(args, message, handle_result)

    def _spawn(self, args, message, handle_result):
        from nameko.exceptions import ContainerBeingKilled

        try:
            self.container.spawn_worker(
                self, args, {}, context_data=self.unpack_message_headers(message), handle_result=handle_result
            )
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def handle_result(self, message, delivery, worker_ctx, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
        else:
            self._settle_failure(message, delivery, exc_info[1])
        return result, exc_info

    def _settle_failure(self, message, delivery: Delivery, exc: BaseException, final: bool = False):
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
        name = self.queue.name
        own = {ATTEMPT_HEADER: delivery.attempt + 1, TRANSIENT_HEADER: delivery.transient, ERROR_HEADER: error}
        if not final and self.retry_delays and faults.is_transient(exc):
            # It will pass: back off up to the last delay, for as long as it takes; the
            # handler's own attempts are not spent.
            delay = self.retry_delays[min(delivery.transient, len(self.retry_delays) - 1)]
            own.update({ATTEMPT_HEADER: delivery.attempt, TRANSIENT_HEADER: delivery.transient + 1})
            target = amqp.delay_queue_name(name, delay)
            log.warning("%s: the store or the broker failed (%d time(s)), retry in %.1f s: %s",
                        name, delivery.transient + 1, delay, error)
        elif not final and delivery.attempt < len(self.retry_delays):
            delay = self.retry_delays[delivery.attempt]
            target = amqp.delay_queue_name(name, delay)
            log.warning("%s: attempt %d failed, retry in %.1f s: %s", name, delivery.attempt + 1, delay, error)
        else:
            own[PARKED_AT_HEADER] = timeutil.iso(timeutil.now())
            target = amqp.parked_queue_name(name)
            log.error("%s: parked after %d attempts: %s", name, delivery.attempt + 1, error)
        headers, properties = republished(delivery, **own)
        try:
            self.publisher.publish("", target, delivery.body, headers=headers, **properties)
        except Exception:
            log.exception("%s: could not retry or park; requeueing", name)
            self.queue_consumer.requeue_message(message)
            return
        self.queue_consumer.ack_message(message)


class InboundConsumer(ReliableConsumer):
    """Consumes ``complaints.inbound``; the handler gets a :class:`Delivery`."""

    def queues(self):
        return amqp.inbound_queues(self.retry_delays)


class EventSubscriber(ReliableConsumer):
    """Consumes one event type from the catalogue on ``<service>.<event type>``; the
    handler gets the event, its envelope and body already checked."""

    def __init__(self, event_name: str, **kwargs):
        events.event_type(event_name)  # fail at import time on a type the catalogue lacks
        self.event_name = event_name
        super().__init__(**kwargs)

    def queues(self):
        return amqp.subscriber_queues(self.container.service_name, self.event_name, self.retry_delays)

    def worker_args(self, delivery: Delivery) -> tuple:
        event = json.loads(delivery.body.decode("utf-8"))
        errors = events.validate_event(event)
        if errors:
            raise ValueError(f"event does not match the catalogue: {errors}")
        return (event,)


inbound = InboundConsumer.decorator
subscribe = EventSubscriber.decorator


def subscribe_each(*event_names: str):
    """One handler for several event types, each on its own queue."""

    def decorate(method):
        for name in event_names:
            method = subscribe(name)(method)
        return method

    return decorate
