"""Start one or more services with the settings of ``services.common.config``:

    python -m services.common.runner services.intake.service [services.routing.service ...]

It declares the broker topology first (no event may leave before its queues exist), logs
to stderr, and stops the services cleanly on SIGTERM/SIGINT.
"""
from __future__ import annotations

import warnings

# nameko 2 runs on eventlet, which warns of its deprecation on import; the warning is no news.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

import contextlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from kombu import Connection  # noqa: E402
from nameko.cli.run import import_service, run  # noqa: E402

from services.common import amqp  # noqa: E402
from services.common.config import Settings  # noqa: E402


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    settings = Settings.from_env()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with Connection(settings.amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=3)
        amqp.declare_topology(connection)
    services = [service for module in argv for service in import_service(module)]
    with contextlib.suppress(KeyboardInterrupt):
        run(services, settings.nameko_config())


if __name__ == "__main__":
    main(sys.argv[1:])
