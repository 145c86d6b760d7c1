"""The platform's queue consumer where it differs from nameko's."""
from services.common.consumers import RawQueueConsumer


def test_several_consumers_stopped_while_starting_do_not_trip_over_each_other():
    # A service with several subscriptions stopped before its consumers were ready (Ctrl-C
    # right after `make run`): nameko 2.14 sends "last provider unregistered" once per
    # provider and asserts on the second, and the process hung until killed.
    consumer = RawQueueConsumer()
    assert not consumer._consumers_ready.ready()
    for provider in ("on_received", "on_reopened", "on_breached"):
        consumer.unregister_provider(provider)
    assert consumer._last_provider_unregistered.ready()
