"""Intake bench: accepted receipts per second and publish-to-receipt latency of the real
intake service, against the floor measured in the same run.

    .venv/bin/python -m bench.intake [--count 2000] [--rate 0]

In a vhost of its own and with a SecantusDB server of its own (both removed at the end):

1. platform: ``python -m services.common.runner services.intake.service`` in a process of
   its own (validation, deduplication, numbering, the SLA due date, one transaction with the
   outbox, receipt relayed with publisher confirms);
2. floor: ``bench.intake.floor``, a bare kombu consumer in a process of its own doing one
   insert per message into the same store (its own database) and answering a receipt on the
   same exchange.

Each phase first sends a few warm-up messages and waits for their receipts (the process is
started and connected), then publishes the same ``--count`` realistic complaints
(``bench.intake.complaints``: real CFPB rows mapped to the platform's products and
channels), all at once by default (each publish confirmed by the broker, back to back), or
at ``--rate`` messages per second. The publish time of each message is kept by
``message_id``; a receipt's latency is its arrival time minus that. Throughput is accepted
receipts divided by the time from the first publish to the last receipt.

All at once measures the most each can take; its latencies are then mostly time spent
waiting in the queue (p50 is about N/2 divided by the throughput). For the latency of one
complaint through each, publish below both capacities, e.g. ``--rate 40``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kombu import Connection, Exchange, Producer, Queue

from bench.intake.complaints import submissions
from services.common import amqp
from services.common.config import Settings
from tests.support.harness import ServiceProcess, env_for
from tests.support.infra import ROOT, rabbit_vhost, secantus_server

APP_ID = "cc-bench"
WARMUP = 20
START_TIMEOUT = 120.0


@dataclass
class Figures:
    name: str
    count: int
    accepted: int = 0
    other: dict = field(default_factory=dict)
    missing: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    def line(self) -> str:
        extra = "".join(f", {count} {status}" for status, count in sorted(self.other.items()))
        if self.missing:
            extra += f", {self.missing} MISSING"
        return (f"{self.name:9} {self.accepted:6d} accepted in {self.seconds:7.2f} s  "
                f"{self.throughput:8.1f} receipts/s  p50 {self.percentile(0.50) * 1000:8.1f} ms  "
                f"p99 {self.percentile(0.99) * 1000:8.1f} ms{extra}")


class Receipts:
    """Receipts of ``APP_ID`` read by a thread of ours; arrival time by message_id."""

    def __init__(self, amqp_uri: str):
        self.connection = Connection(amqp_uri)
        self.queue = Queue(f"bench-receipts-{uuid.uuid4().hex[:8]}",
                           Exchange(amqp.OUTBOUND_EXCHANGE, type="topic", durable=True),
                           routing_key=f"receipt.{APP_ID}", exclusive=True, auto_delete=True)
        self.arrived: dict[str, tuple[float, str]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="receipts", daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the receipts consumer did not start")

    def _run(self) -> None:
        def on_message(message):
            now = time.perf_counter()
            body = json.loads(message.body)
            with self.lock:
                self.arrived.setdefault(body.get("message_id"), (now, body.get("status")))

        with self.connection.Consumer([self.queue], on_message=on_message, no_ack=True):
            self.ready.set()
            while not self.stopping.is_set():
                try:
                    self.connection.drain_events(timeout=0.2)
                except TimeoutError:
                    continue

    def count(self, message_ids) -> int:
        with self.lock:
            return sum(1 for message_id in message_ids if message_id in self.arrived)

    def wait(self, message_ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count(message_ids) < len(message_ids):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.connection.release()


def publish_all(amqp_uri: str, messages: list[tuple[str, str, dict]], rate: float) -> dict[str, float]:
    """Publish (message_id, channel, body) each with a broker confirm; publish time by id."""
    sent: dict[str, float] = {}
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = Producer(connection.channel(), exchange=amqp.topic(amqp.INBOUND_EXCHANGE))
        start = time.perf_counter()
        for index, (message_id, channel, body) in enumerate(messages):
            if rate:
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            sent[message_id] = time.perf_counter()
            producer.publish(payload, routing_key=f"complaint.submit.{channel}", message_id=message_id,
                             app_id=APP_ID, content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2)
    return sent


def run_phase(name: str, amqp_uri: str, complaints: list[tuple[str, dict]], rate: float, timeout: float) -> Figures:
    receipts = Receipts(amqp_uri)
    try:
        warmup = [(f"{name}-warmup-{i}", channel, body) for i, (channel, body) in enumerate(complaints[:WARMUP])]
        publish_all(amqp_uri, warmup, rate=0)
        if not receipts.wait([m for m, _, _ in warmup], START_TIMEOUT):
            raise RuntimeError(f"{name}: no receipts for the warm-up messages after {START_TIMEOUT:g}s")
        messages = [(f"{name}-{i}-{uuid.uuid4().hex[:8]}", channel, body)
                    for i, (channel, body) in enumerate(complaints)]
        print(f"{name}: publishing {len(messages)} complaints "
              f"{'all at once' if not rate else f'at {rate:g}/s'} ...", flush=True)
        sent = publish_all(amqp_uri, messages, rate)
        receipts.wait(list(sent), timeout)
        figures = Figures(name, len(messages))
        with receipts.lock:
            arrived = {message_id: receipts.arrived.get(message_id) for message_id in sent}
        last = max((hit[0] for hit in arrived.values() if hit), default=min(sent.values()))
        figures.seconds = last - min(sent.values())
        for message_id, hit in arrived.items():
            if hit is None:
                figures.missing += 1
            elif hit[1] == "accepted":
                figures.accepted += 1
                figures.latencies.append(hit[0] - sent[message_id])
            else:
                figures.other[hit[1]] = figures.other.get(hit[1], 0) + 1
        return figures
    finally:
        receipts.close()


def purge_inbound(amqp_uri: str) -> None:
    with Connection(amqp_uri) as connection:
        amqp.inbound_queue()(connection.default_channel).purge()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def interrupted(signum, frame):
    raise KeyboardInterrupt


def ratio(platform: float, floor: float) -> str:
    return f"{platform / floor:.3f}" if floor else "n/a"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="complaints per phase (default 2000)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="messages per second; 0 (default) publishes all at once, back to back")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for the receipts of a phase (default: 60 + count / 10)")
    args = parser.parse_args(argv)
    timeout = args.timeout or 60 + args.count / 10
    signal.signal(signal.SIGTERM, interrupted)  # clean up the vhost, the store, the processes
    complaints = submissions(args.count)

    with rabbit_vhost("complaints-bench") as amqp_uri, secantus_server() as mongo_uri, \
            tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        settings = Settings(amqp_uri=amqp_uri, mongo_uri=mongo_uri, db_prefix="bench")
        with Connection(amqp_uri) as connection:
            amqp.declare_topology(connection, settings.retry_delays)
        print(f"bench.intake: N={args.count}, vhost {amqp_uri.rsplit('/', 1)[1]}, store {mongo_uri}", flush=True)

        intake = ServiceProcess(["services.intake.service"], settings, log_path=Path(tmp) / "intake.log").start()
        try:
            platform = run_phase("platform", amqp_uri, complaints, args.rate, timeout)
        finally:
            intake.stop()
        purge_inbound(amqp_uri)

        floor_process = subprocess.Popen(
            [sys.executable, "-m", "bench.intake.floor"], cwd=ROOT, stdout=subprocess.PIPE,
            env=env_for(settings, FLOOR_DB="bench_floor"))
        try:
            floor_process.stdout.readline()  # "ready"
            floor = run_phase("floor", amqp_uri, complaints, args.rate, timeout)
        finally:
            stop(floor_process)

    how = "all at once (confirmed publishes back to back)" if not args.rate else f"at {args.rate:g} messages/s"
    print()
    print(f"intake bench: N={args.count} per phase, published {how}, {os.cpu_count()} CPUs")
    print(platform.line())
    print(floor.line())
    print(f"ratio     throughput platform/floor {ratio(platform.throughput, floor.throughput)}  "
          f"p50 platform/floor {ratio(platform.percentile(0.5), floor.percentile(0.5))}  "
          f"p99 platform/floor {ratio(platform.percentile(0.99), floor.percentile(0.99))}")
    complete = not (platform.missing or floor.missing or platform.other or floor.other)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
