"""Entrypoints that consume without ever losing or looping on a message.

nameko's own ``consume`` / ``event_handler`` ack after the worker ends and, with the
default ``requeue_on_error=False``, lose the message of a worker that raised (with True
it loops forever). These entrypoints instead:

- hand the worker the raw body and properties (``inbound``) or a checked event
  (``subscribe``), so a body that cannot be decoded is the handler's to answer rather than
  an error inside the consumer thread;
- on an exception, republish the message to ``<queue>.delay`` with a per-message TTL from
  ``RETRY_DELAYS`` (it dead-letters back to the queue), and after the last retry to
  ``<queue>.parked``, where an operator lists and replays it (``services.common.parking``);
- ack only once that republish is confirmed; if even that fails, requeue.
"""
from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from functools import partial

from nameko.messaging import Consumer, QueueConsumer

from services.common import amqp, events, timeutil
from services.common.config import from_container

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-attempt"
KEPT_PROPERTIES = ("content_type", "content_encoding", "message_id", "app_id", "correlation_id", "timestamp", "type")


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
    """What an inbound handler receives: the bytes and the AMQP facts around them."""

    body: bytes
    routing_key: str
    properties: dict
    headers: dict

    @property
    def attempt(self) -> int:
        return int(self.headers.get(ATTEMPT_HEADER, 0))


def delivery_of(message) -> Delivery:
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode("utf-8")
    return Delivery(
        body=body,
        routing_key=message.delivery_info.get("routing_key", ""),
        properties=dict(message.properties),
        headers=dict(message.headers or {}),
    )


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
        attempt = delivery.attempt
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
        headers = dict(delivery.headers, **{ATTEMPT_HEADER: attempt + 1, "x-last-error": error})
        properties = {
            key: value
            for key, value in delivery.properties.items()
            if key in KEPT_PROPERTIES
        }
        headers["x-original-routing-key"] = delivery.headers.get("x-original-routing-key", delivery.routing_key)
        try:
            if not final and attempt < len(self.retry_delays):
                delay = self.retry_delays[attempt]
                # kombu takes the per-message TTL in seconds; expiry dead-letters it back.
                self.publisher.publish(
                    "", amqp.delay_queue_name(self.queue.name), delivery.body,
                    headers=headers, expiration=delay, **properties,
                )
                log.warning("%s: attempt %d failed, retry in %.1f s: %s", self.queue.name, attempt + 1, delay, error)
            else:
                headers["x-parked-at"] = timeutil.iso(timeutil.now())
                self.publisher.publish("", amqp.parked_queue_name(self.queue.name), delivery.body,
                                       headers=headers, **properties)
                log.error("%s: parked after %d attempts: %s", self.queue.name, attempt + 1, error)
        except Exception:
            log.exception("%s: could not retry or park; requeueing", self.queue.name)
            self.queue_consumer.requeue_message(message)
            return
        self.queue_consumer.ack_message(message)


class InboundConsumer(ReliableConsumer):
    """Consumes ``complaints.inbound``; the handler gets a :class:`Delivery`."""

    def queues(self):
        return amqp.inbound_queues()


class EventSubscriber(ReliableConsumer):
    """Consumes one event type from the catalogue on ``<service>.<event type>``; the
    handler gets the event, its envelope and body already checked."""

    def __init__(self, event_name: str, **kwargs):
        events.event_type(event_name)  # fail at import time on a type the catalogue lacks
        self.event_name = event_name
        super().__init__(**kwargs)

    def queues(self):
        return amqp.subscriber_queues(self.container.service_name, self.event_name)

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
