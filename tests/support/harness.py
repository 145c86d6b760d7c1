"""Running the platform's services against the real broker and store, and talking to
them the way a call center does: publish to ``complaints.inbound``, read receipts and
notifications from the outbound exchanges."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta

from amqp.basic_message import Message
from kombu import Connection, Exchange, Queue

from services.common import amqp, events, timeutil
from services.common.config import Settings
from tests.support.infra import ROOT

SHANGHAI_OFFSET = "+08:00"


def settings_for(amqp_uri: str, mongo_uri: str, prefix: str | None = None, **overrides) -> Settings:
    values = {"amqp_uri": amqp_uri, "mongo_uri": mongo_uri, "db_prefix": prefix or f"t{uuid.uuid4().hex[:8]}",
                  "retry_delays": (0.2, 0.5), "outbox_grace": 1.0, "rpc_timeout": 10.0}
    values.update(overrides)
    return Settings(**values)


def env_for(settings: Settings, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "AMQP_URI": settings.amqp_uri, "MONGO_URI": settings.mongo_uri, "DB_PREFIX": settings.db_prefix,
        "RETRY_DELAYS": ",".join(str(d) for d in settings.retry_delays), "OUTBOX_GRACE": str(settings.outbox_grace),
        "MAX_WORKERS": str(settings.max_workers), "PYTHONUNBUFFERED": "1",
        "POLICIES_PATH": settings.policies_path or "", "CALENDARS_PATH": settings.calendars_path or "",
        "MEDIATION_RETRY_BASE": str(settings.mediation_retry_base),
        "MEDIATION_RETRY_CAP": str(settings.mediation_retry_cap),
        "MEDIATION_RETRY_FOR": str(settings.mediation_retry_for), "MEDIATION_TIMEOUT": str(settings.mediation_timeout),
    })
    env.update(extra)
    return env


class ServiceProcess:
    """A service in a process of its own, as production runs it (and as kill -9 hits it)."""

    def __init__(self, modules: list[str], settings: Settings, log_path=None):
        self.modules = modules
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        with open(self.log_path or os.devnull, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.common.runner", *self.modules],
                cwd=ROOT, env=env_for(self.settings), stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Listener:
    """A queue of our own bound to an exchange, read with basic_get (no consumer thread)."""

    def __init__(self, amqp_uri: str, exchange: str, routing_key: str = "#"):
        self.connection = Connection(amqp_uri)
        self.channel = self.connection.channel()
        self.queue = Queue(f"test-listener-{uuid.uuid4().hex[:8]}", Exchange(exchange, type="topic", durable=True),
                           routing_key=routing_key, exclusive=True, auto_delete=True)
        self.queue(self.channel).declare()
        self.messages: list[dict] = []

    def drain(self) -> list[dict]:
        while True:
            message = self.queue(self.channel).get(no_ack=True)
            if message is None:
                return self.messages
            body = json.loads(message.body)
            if isinstance(body, dict) and {"event_id", "producer", "body"} <= set(body):
                # Every event any test sees is checked against the catalogue.
                mismatch = events.validate_event(body)
                assert not mismatch, f"a published {body.get('type')} event does not match the catalogue: {mismatch}"
            self.messages.append({
                "routing_key": message.delivery_info["routing_key"],
                "body": body,
                "properties": dict(message.properties),
            })

    def wait_for(self, predicate, count: int = 1, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            matching = [m for m in self.drain() if predicate(m)]
            if len(matching) >= count:
                return matching
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"waited {timeout}s for {count} matching message(s), saw {len(matching)} "
                    f"(of {len(self.messages)} in all)")
            time.sleep(0.05)

    def close(self) -> None:
        self.connection.release()


class CallCenter:
    """Publishes submissions as a call-center system does (persistent, confirmed)."""

    def __init__(self, amqp_uri: str, app_id: str = "cc-shandong"):
        self.app_id = app_id
        self.publisher = amqp.Publisher(amqp_uri)

    def send(self, body, channel: str = "phone", message_id: str | None = None, app_id: str | None = "",
             content_type: str = "application/json", routing_key: str | None = None) -> str:
        message_id = message_id or uuid.uuid4().hex
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
        properties = {"content_type": content_type, "message_id": message_id}
        app = self.app_id if app_id == "" else app_id
        if app is not None:
            properties["app_id"] = app
        self.publisher.publish(amqp.INBOUND_EXCHANGE, routing_key or f"complaint.submit.{channel}", raw, **properties)
        return message_id

    def close(self) -> None:
        self.publisher.close()


def publish_raw(amqp_uri: str, routing_key: str, body: bytes, headers: dict | None = None,
                exchange: str = amqp.INBOUND_EXCHANGE, **properties) -> None:
    """Publish with exactly these properties, bytes or not UTF-8 as a careless or hostile
    publisher may send them (kombu would add a content type of its own)."""
    with Connection(amqp_uri) as connection:
        message = Message(body, application_headers=headers or {}, **properties)
        connection.default_channel.basic_publish(message, exchange=exchange, routing_key=routing_key)


def submission(**overrides) -> dict:
    """A realistic complaint as a call center sends it."""
    received = (datetime.now().astimezone() - timedelta(hours=2)).replace(microsecond=0)
    body = {
        "schema": "complaint.submit/1",
        "external_id": f"CC-{uuid.uuid4().hex[:8]}",
        "received_at": received.isoformat(),
        "institution": "BANKA",
        "kind": "complaint",
        "customer": {"name": "张伟", "phone": "13800138000", "id_type": "resident_id",
                     "id_number": "370102198001011234"},
        "product": "credit_card",
        "subject": "信用卡年费未经同意扣收",
        "description": "客户称其信用卡在未激活的情况下被扣收年费300元，要求退还。",
        "demand": "退还年费",
        "amount_in_dispute": "300.00",
        "currency": "CNY",
    }
    body.update(overrides)
    return body


def publish_fact(center: CallCenter, name: str, complaint_no: str, producer: str, at=None, **body) -> dict:
    """Publish a fact as its producing service would (checked against the catalogue)."""
    from services.common.outbox import event_message

    event = events.make_event(name, complaint_no, {"complaint_no": complaint_no,
                                                    "at": timeutil.iso(at or timeutil.now()),
                                                    "actor": "system", **body}, producer)
    message = event_message(event)
    center.publisher.publish(message["exchange"], message["routing_key"], message["body"])
    return event


def organization_event() -> dict:
    """``organization_changed`` with the shipped organization, as routing announces it."""
    from services.routing.organization import load_organization
    from services.routing.routing import announcement

    return events.make_event("organization_changed", None, announcement(load_organization()), "routing")


def announce_organization(center: CallCenter, settings: Settings, *services: str) -> dict:
    """Publish ``organization_changed`` with the shipped organization, as routing does when it
    starts, and wait until each of ``services`` (which decide who may act) has kept it."""
    from services.common.outbox import event_message

    event = organization_event()
    message = event_message(event)
    center.publisher.publish(message["exchange"], message["routing_key"], message["body"])
    organization_known(settings, *services)
    return event


def organization_known(settings: Settings, *services: str) -> None:
    """Wait until each of ``services`` kept routing's announcement of the organization (which
    routing makes when it starts): until then they refuse to decide who may act (503)."""
    from services.common.orgtree import ANNOUNCED, COLLECTION
    from services.common.store import client_for

    for service in services:
        kept = client_for(settings.mongo_uri)[f"{settings.db_prefix}_{service}"][COLLECTION]
        wait_until(lambda: kept.find_one({"_id": ANNOUNCED, "units": {"$exists": True}}),  # noqa: B023
                   f"{service} kept the organization")


def accepted(center: CallCenter, listener: Listener, channel: str = "phone", **changes) -> str:
    """Send a complaint and return its number once the accepted receipt arrived."""
    message_id = center.send(submission(**changes), channel=channel)
    [receipt] = listener.wait_for(lambda m: m["body"].get("message_id") == message_id)
    assert receipt["body"]["status"] == "accepted", receipt["body"]
    return receipt["body"]["complaint_no"]


def wait_until(predicate, what: str, timeout: float = 30.0, interval: float = 0.1):
    """Poll until ``predicate()`` is truthy and return its value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(interval)


@contextmanager
def listening(amqp_uri: str, exchange: str, routing_key: str = "#"):
    listener = Listener(amqp_uri, exchange, routing_key)
    try:
        yield listener
    finally:
        listener.close()


@contextmanager
def http_platform(mongo_uri: str, **overrides):
    """intake, routing, sla, mediation and the HTTP edge in this process, over a vhost and
    databases of their own; yields the edge's base URL and the settings. For a module of
    HTTP tests."""
    from nameko.runners import ServiceRunner

    from services.common.errors import quiet_answers
    from services.gateway.service import GatewayService
    from services.intake.service import IntakeService
    from services.mediation.service import MediationService
    from services.routing.service import RoutingService
    from services.sla.service import SlaService
    from tests.support.infra import free_port, rabbit_vhost, wait_for_port

    quiet_answers()  # as the runner does
    with rabbit_vhost() as amqp_uri:
        settings = settings_for(amqp_uri, mongo_uri, **overrides)
        with Connection(amqp_uri) as connection:
            amqp.declare_topology(connection, settings.retry_delays)
        port = free_port()
        runner = ServiceRunner(dict(settings.nameko_config(), WEB_SERVER_ADDRESS=f"127.0.0.1:{port}"))
        for cls in (IntakeService, RoutingService, SlaService, MediationService, GatewayService):
            runner.add_service(cls)
        runner.start()
        try:
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}", settings
        finally:
            runner.stop()


class Now:
    """A clock a test sets: domain objects take it as their ``now``."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        self.moment = moment

    def advance(self, **delta) -> datetime:
        self.moment += timedelta(**delta)
        return self.moment


class StagingOutbox:
    """Stages into the database within the caller's transaction, as the real outbox does:
    only what committed is there."""

    def __init__(self, db):
        self.rows = db["staged"]

    def stage(self, session, *messages):
        self.rows.insert_many([dict(m) for m in messages], session=session)

    def events(self, type_: str | None = None) -> list[dict]:
        found = [row["body"] for row in self.rows.find({}).sort("body.occurred_at", 1)]
        for event in found:
            assert not events.validate_event(event), event
        return [e for e in found if type_ is None or e["type"] == type_]
