from contextlib import contextmanager

import pytest
from kombu import Connection
from nameko.runners import ServiceRunner

from services.common import amqp
from tests.support.harness import CallCenter, settings_for
from tests.support.infra import rabbit_vhost, secantus_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mongo_uri():
    with secantus_server() as uri:
        yield uri


@pytest.fixture
def amqp_uri():
    with rabbit_vhost() as uri:
        yield uri


@pytest.fixture
def settings(amqp_uri, mongo_uri):
    """Settings of one test: its own vhost and its own databases."""
    settings = settings_for(amqp_uri, mongo_uri)
    with Connection(amqp_uri) as connection:
        amqp.declare_topology(connection, settings.retry_delays)
    return settings


@pytest.fixture
def run_services():
    runners = []

    @contextmanager
    def _run(settings, *service_classes, **config_overrides):
        runner = ServiceRunner(dict(settings.nameko_config(), **config_overrides))
        for cls in service_classes:
            runner.add_service(cls)
        runner.start()
        runners.append(runner)
        try:
            yield runner
        finally:
            runner.stop()

    yield _run
    for runner in runners:
        runner.kill()


@pytest.fixture
def center(settings):
    """A call center publishing on the test's vhost."""
    center = CallCenter(settings.amqp_uri)
    yield center
    center.close()
