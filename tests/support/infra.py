"""The real things the integration tests run against: a SecantusDB server started for the
run, and a RabbitMQ vhost created for the run and deleted after it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pymongo

ROOT = Path(__file__).resolve().parents[2]
BROKER_URI = os.environ.get("TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def secantus_command(port: int, storage: str) -> list[str]:
    return [str(Path(sys.executable).with_name("secantusd-py")), "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", storage, "--log-level", "WARNING"]


@contextmanager
def secantus_server(storage: str = ":memory:"):
    """A MongoDB-protocol server of our own; yields its URI."""
    port = free_port()
    process = subprocess.Popen(secantus_command(port, storage), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        pymongo.MongoClient(uri, serverSelectionTimeoutMS=20000).admin.command("ping")
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _rabbitmqctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RuntimeError("rabbitmqctl is needed to create a test vhost (install rabbitmq-server)")
    return subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60, text=True).stdout


def queue_counts(amqp_uri: str, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) messages of a queue. A passive declare's message_count counts
    only the ready ones: a message delivered to a consumer and not yet acked is not in it."""
    vhost = unquote(urlsplit(amqp_uri).path[1:]) or "/"
    for line in _rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers",
                             "name", "messages_ready", "messages_unacknowledged").splitlines():
        name, ready, unacked = line.split("\t")
        if name == queue:
            return int(ready), int(unacked)
    raise LookupError(f"no queue {queue} in vhost {vhost}")


@contextmanager
def rabbit_vhost(prefix: str = "complaints-test"):
    """A vhost of our own on the machine's broker; yields its AMQP URI, deletes it after."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"{BROKER_URI}/{quote(name, safe='')}"
    finally:
        _rabbitmqctl("delete_vhost", name)
