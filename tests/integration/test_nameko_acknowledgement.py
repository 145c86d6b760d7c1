"""What the platform relies on from nameko 2.14, stated against the real broker.

- A consumer's message is acked after its worker ends, not before.
- With ``requeue_on_error=False`` (the default) a worker that raises loses its message.
- With ``requeue_on_error=True`` it comes back at once, again and again.
- The platform's own entrypoints (services.common.consumers) retry with a delay, then park.
"""
import threading
import time

import pytest
from kombu import Connection, Exchange, Queue
from nameko.messaging import consume

from services.common import amqp
from services.common.consumers import Delivery, inbound
from services.common.parking import list_parked, replay
from tests.support.harness import wait_until
from tests.support.infra import queue_counts

pytestmark = pytest.mark.integration

EXCHANGE = Exchange("ack-test", type="topic", durable=True)
calls: list = []
# The slow worker holds its message until the test lets it go (eventlet makes this green).
worker_may_end = threading.Event()


def queue_depth(amqp_uri, name):
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=name, passive=True).message_count


def publish(amqp_uri, routing_key, body=b'{"n": 1}'):
    amqp.Publisher(amqp_uri).publish("ack-test", routing_key, body, message_id="m1", app_id="test")


def declare(amqp_uri, *queues):
    with Connection(amqp_uri) as connection:
        amqp.declare(connection, [EXCHANGE, *queues])


class SlowConsumer:
    name = "slow"

    @consume(Queue("ack-slow", EXCHANGE, routing_key="slow"))
    def handle(self, body):
        calls.append(("slow", time.monotonic()))
        worker_may_end.wait(30)


class FailingConsumer:
    name = "failing"

    @consume(Queue("ack-lost", EXCHANGE, routing_key="lost"))
    def handle(self, body):
        calls.append("lost")
        raise RuntimeError("handler failed")


class LoopingConsumer:
    name = "looping"

    @consume(Queue("ack-loop", EXCHANGE, routing_key="loop"), requeue_on_error=True)
    def handle(self, body):
        calls.append("loop")
        raise RuntimeError("handler failed")


class ReliableFailing:
    name = "intake"  # the inbound entrypoint consumes intake.inbound

    @inbound()
    def receive(self, delivery: Delivery):
        calls.append(("reliable", delivery.attempt))
        raise RuntimeError("store down")


@pytest.fixture(autouse=True)
def reset_calls():
    calls.clear()
    worker_may_end.clear()


def test_message_is_acked_only_after_the_worker_ends(settings, run_services):
    declare(settings.amqp_uri, Queue("ack-slow", EXCHANGE, routing_key="slow"))
    with run_services(settings, SlowConsumer):
        publish(settings.amqp_uri, "slow")
        wait_until(lambda: calls, "the worker started")
        # While the worker runs, the message is delivered and not acked (message_count of a
        # passive declare counts ready messages only: it is 0 whether acked or not).
        assert queue_counts(settings.amqp_uri, "ack-slow") == (0, 1)
        worker_may_end.set()
        wait_until(lambda: queue_counts(settings.amqp_uri, "ack-slow") == (0, 0), "acked once the worker ended",
                   interval=0.2)
    assert len(calls) == 1


def test_default_consumer_loses_the_message_of_a_failing_worker(settings, run_services):
    declare(settings.amqp_uri, Queue("ack-lost", EXCHANGE, routing_key="lost"))
    with run_services(settings, FailingConsumer):
        publish(settings.amqp_uri, "lost")
        wait_until(lambda: calls, "the worker ran")
        time.sleep(0.5)
    assert calls == ["lost"]
    assert queue_depth(settings.amqp_uri, "ack-lost") == 0  # gone: acked though it failed


def test_requeue_on_error_loops_without_end(settings, run_services):
    declare(settings.amqp_uri, Queue("ack-loop", EXCHANGE, routing_key="loop"))
    with run_services(settings, LoopingConsumer):
        publish(settings.amqp_uri, "loop")
        wait_until(lambda: len(calls) >= 20, "the message came back 20 times")


def test_platform_entrypoint_retries_with_delay_then_parks_for_replay(settings, run_services):
    with run_services(settings, ReliableFailing):  # retry delays 0.2 s, 0.5 s
        amqp.Publisher(settings.amqp_uri).publish(
            amqp.INBOUND_EXCHANGE, "complaint.submit.phone", b'{"x": 1}', message_id="m-park", app_id="cc-test")
        wait_until(lambda: queue_depth(settings.amqp_uri, "intake.inbound.parked") == 1, "the message was parked")
        attempts = [attempt for _, attempt in calls]
        assert attempts == [0, 1, 2]  # the first try and two retries, then parked
        assert queue_depth(settings.amqp_uri, "intake.inbound") == 0

    [parked] = list_parked(settings.amqp_uri, "intake.inbound")
    assert parked["message_id"] == "m-park"
    assert parked["body"] == '{"x": 1}'
    assert "store down" in parked["headers"]["x-last-error"]
    assert queue_depth(settings.amqp_uri, "intake.inbound.parked") == 1  # listing does not consume

    assert replay(settings.amqp_uri, "intake.inbound") == 1
    assert queue_depth(settings.amqp_uri, "intake.inbound.parked") == 0
    assert queue_depth(settings.amqp_uri, "intake.inbound") == 1  # back in its queue, attempts reset
