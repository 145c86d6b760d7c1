"""Start one or more services with the settings of ``services.common.config``:

    python -m services.common.runner services.intake.service [services.routing.service ...]

It declares the broker topology first (no event may leave before its queues exist), logs
to stderr, and stops the services cleanly on SIGTERM/SIGINT, also when the signal comes
while they are still starting: it is held until the start is done, because nameko 2.14
interrupted or stopped half way through starting fails and leaves the process hanging.
"""
from __future__ import annotations

import signal

# A signal during start-up interrupts eventlet or nameko half way and leaves the process
# hanging: hold SIGTERM/SIGINT from the first line until the services have started.
HELD = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, HELD)

import warnings  # noqa: E402

# nameko 2 runs on eventlet, which warns of its deprecation on import; the warning is no news.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

import logging  # noqa: E402
import sys  # noqa: E402

from eventlet.event import Event  # noqa: E402
from kombu import Connection  # noqa: E402
from nameko.cli.run import import_service  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

from services.common import amqp  # noqa: E402
from services.common.config import Settings  # noqa: E402
from services.common.errors import quiet_answers  # noqa: E402


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    stop_requested = Event()

    def on_signal(signum, frame):
        # Signal handlers run in the hub's loop and may not block.
        if not stop_requested.ready():
            stop_requested.send()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = Settings.from_env()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_answers()
    with Connection(settings.amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=3)
        amqp.declare_topology(connection, settings.retry_delays)
    runner = ServiceRunner(settings.nameko_config())
    for module in argv:
        for service in import_service(module):
            runner.add_service(service)
    runner.start()
    eventlet.spawn_n(lambda: (stop_requested.wait(), runner.stop()))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
    runner.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
