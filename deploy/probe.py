"""Health probe of one service container, for Kubernetes exec probes and compose health
checks (the HTTP edge has ``GET /health``; the other services have no port of their own):

    python -m deploy.probe live    # this pod's service process holds a connection to RabbitMQ
    python -m deploy.probe ready   # that, and MongoDB answers a ping from this pod

A nameko service keeps its consumers' AMQP connections open for as long as it works, and
reconnects when the broker comes back; a process that has none is stuck or still starting.
The check reads the pod's own sockets (``/proc/net/tcp``, ``tcp6``: containers of a pod
share its network namespace), so it is true of this replica, not of whichever replica
would answer a message. Liveness leaves MongoDB out: restarting every service because the
database is away would not bring it back.
"""
from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

ESTABLISHED = "01"


def broker_port(amqp_uri: str) -> int:
    parts = urlsplit(amqp_uri)
    return parts.port or (5671 if parts.scheme == "amqps" else 5672)


def established_to(port: int, tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> int:
    """How many ESTABLISHED TCP connections of this network namespace go to ``port``."""
    count = 0
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == ESTABLISHED and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def store_answers(mongo_uri: str, timeout_ms: int = 2000) -> bool:
    import pymongo

    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


def main(argv: list[str]) -> int:
    from services.common.config import Settings

    mode = argv[0] if argv else "live"
    if mode not in ("live", "ready"):
        print(__doc__, file=sys.stderr)
        return 2
    settings = Settings.from_env()
    port = broker_port(settings.amqp_uri)
    if not established_to(port):
        print(f"not {mode}: no connection to the broker (port {port}) from this pod", file=sys.stderr)
        return 1
    if mode == "ready" and not store_answers(settings.mongo_uri):
        print("not ready: MongoDB does not answer a ping", file=sys.stderr)
        return 1
    print(mode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
