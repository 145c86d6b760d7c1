"""SLA bench: the lag between a clock's due time and its event on ``sla.events``, and the
sweep's cost per fired point, with many open clocks against a stated baseline with few.

    .venv/bin/python -m bench.sla [--open 100000] [--due 1000] [--window 60] [--baseline-open 1000]
    .venv/bin/python -m bench.sla --quick          # 10,000 open, 200 due over 15 s

In a vhost of its own and with a SecantusDB server of its own (both removed at the end),
each phase:

1. writes ``--open`` open clocks that do not fall due straight into the store (bulk insert; cbirc
   decision clocks received over the last 10 days, their next point days ahead);
2. starts the real SLA service (``python -m services.common.runner services.sla.service``)
   in a process of its own and waits until it consumes;
3. writes ``--due`` more clocks whose breach falls due spread evenly over ``--window``
   seconds from a few seconds later (consultation clocks whose warning already fired);
4. listens on ``sla.events`` until every breach has arrived, and measures for each the lag
   from its due instant to its arrival; the service's log gives the sweep's own time
   (the transactions that fire the points, relay excluded) per fired point;
5. times the sweep's due query alone at that size when nothing is due.

The baseline phase is the same with ``--baseline-open`` open clocks (default 1,000): the
ratio of the two shows that the firing cost does not grow with the open clocks.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from kombu import Connection

from services.common import timeutil
from services.common.store import client_for, ensure_indexes
from services.sla.clocks import INDEXES, Clocks
from tests.support.harness import Listener, ServiceProcess, settings_for
from tests.support.infra import rabbit_vhost, secantus_server

SWEEP_LINE = re.compile(r"sweep fired (\d+) point\(s\) in ([0-9.]+) ms")
LEAD = 3.0  # seconds between writing the due clocks and the first falling due
INSERT_BATCH = 2000


@dataclass
class Phase:
    name: str
    open_clocks: int
    due: int
    lags: list = field(default_factory=list)
    missing: int = 0
    duplicates: int = 0
    fired: int = 0
    sweep_ms: float = 0.0
    query_ms: float = 0.0
    seed_seconds: float = 0.0

    def pct(self, fraction: float) -> float:
        ordered = sorted(self.lags)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    @property
    def ms_per_point(self) -> float:
        return self.sweep_ms / self.fired if self.fired else float("nan")

    def line(self) -> str:
        extra = f", {self.missing} MISSING" if self.missing else ""
        extra += f", {self.duplicates} duplicate event ids" if self.duplicates else ""
        return (f"{self.name:9} {self.open_clocks:7d}+{self.due} open  {len(self.lags):5d}/{self.due} fired  "
                f"lag p50 {self.pct(0.5) * 1000:7.0f} ms  p99 {self.pct(0.99) * 1000:7.0f} ms  "
                f"max {max(self.lags, default=float('nan')) * 1000:7.0f} ms  "
                f"sweep {self.ms_per_point:6.2f} ms/point  idle due-query {self.query_ms:6.2f} ms{extra}")


def open_clocks(keeper: Clocks, count: int, prefix: str) -> list[dict]:
    """cbirc-2020 decision clocks received over the last 10 days (one template per hour)."""
    rule = keeper.policies.get("cbirc-2020").clock("decision")
    now = timeutil.now()
    templates = [keeper._new_clock("T", rule, now - timedelta(hours=h), institution="BANKA", unit="BANKA-SD-JN",
                                   now=now) for h in range(240)]
    docs = []
    for n in range(count):
        doc = dict(templates[n % len(templates)])
        no = f"{prefix}-{n:07d}"
        doc.update(_id=f"{no}/decision", complaint_no=no, points=[dict(p) for p in doc["points"]])
        docs.append(doc)
    return docs


def due_clocks(keeper: Clocks, count: int, window: float, prefix: str) -> dict[str, object]:
    """Consultation clocks whose breach falls due evenly over ``window`` seconds after LEAD."""
    rule = keeper.policies.get("consultation-24h").clock("consultation_answer")
    start = timeutil.now() + timedelta(seconds=LEAD)
    docs, due_at = [], {}
    for n in range(count):
        breach = start + timedelta(seconds=window * n / max(count - 1, 1))
        breach = breach.replace(microsecond=breach.microsecond // 1000 * 1000)
        no = f"{prefix}-{n:06d}"
        doc = keeper._new_clock(no, rule, breach - timedelta(hours=24, milliseconds=1), institution="BANKA",
                                unit="BANKA-SD-JN", now=timeutil.now())
        for point in doc["points"][:-1]:
            point["fired_at"] = point["at"]
        doc["next_fire_at"], doc["next_label"] = doc["points"][-1]["at"], doc["points"][-1]["label"]
        docs.append(doc)
        due_at[no] = doc["next_fire_at"]
    keeper.clocks.insert_many(docs, ordered=False)
    return due_at


def insert(collection, docs: list[dict]) -> None:
    for start in range(0, len(docs), INSERT_BATCH):
        collection.insert_many(docs[start:start + INSERT_BATCH], ordered=False)


def consuming(amqp_uri: str, queue: str) -> bool:
    with Connection(amqp_uri) as connection:
        try:
            _, _, consumers = connection.default_channel.queue_declare(queue, passive=True)
        except Exception:
            return False
        return consumers > 0


def run_phase(name: str, open_count: int, due: int, window: float, amqp_uri: str, mongo_uri: str,
              workdir: Path) -> Phase:
    phase = Phase(name, open_count, due)
    settings = settings_for(amqp_uri, mongo_uri, prefix=f"bench{uuid.uuid4().hex[:6]}")
    db = client_for(mongo_uri)[f"{settings.db_prefix}_sla"]
    ensure_indexes(db, INDEXES)
    keeper = Clocks(db)
    started = time.monotonic()
    insert(db["clocks"], open_clocks(keeper, open_count, f"{name}-open"))
    phase.seed_seconds = time.monotonic() - started
    print(f"  {name}: {open_count} open clocks written in {phase.seed_seconds:.1f} s", flush=True)

    log_path = workdir / f"{name}.log"
    listener = Listener(amqp_uri, "sla.events", "sla_breached")
    service = ServiceProcess(["services.sla.service"], settings, log_path).start()
    try:
        deadline = time.monotonic() + 180
        while not consuming(amqp_uri, "sla.complaint_received"):
            if time.monotonic() > deadline or service.process.poll() is not None:
                raise SystemExit(f"the SLA service did not start; see {log_path}")
            time.sleep(0.2)
        due_at = due_clocks(keeper, due, window, f"{name}-due")
        print(f"  {name}: {due} clocks fall due over {window:.0f} s", flush=True)
        arrived: dict[str, float] = {}
        seen_ids: set[str] = set()
        finish = time.monotonic() + LEAD + window + 60
        while len(arrived) < due and time.monotonic() < finish:
            message = listener.queue(listener.channel).get(no_ack=True)
            if message is None:
                time.sleep(0.005)
                continue
            now = timeutil.now()
            event = json.loads(message.body)
            if event["event_id"] in seen_ids:
                phase.duplicates += 1
                continue
            seen_ids.add(event["event_id"])
            no = event["complaint_no"]
            if no in due_at and no not in arrived:
                arrived[no] = (now - timeutil.local(due_at[no])).total_seconds()
        phase.lags = list(arrived.values())
        phase.missing = due - len(arrived)
        # The due query alone at this size, with nothing due (every due clock has fired).
        timings = []
        for _ in range(20):
            begun = time.perf_counter()
            keeper.due(timeutil.now(), 100)
            timings.append((time.perf_counter() - begun) * 1000)
        phase.query_ms = statistics.median(timings)
    finally:
        service.stop()
        listener.close()
    for line in log_path.read_text(errors="replace").splitlines():
        found = SWEEP_LINE.search(line)
        if found:
            phase.fired += int(found.group(1))
            phase.sweep_ms += float(found.group(2))
    client_for(mongo_uri).drop_database(db.name)
    return phase


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sla", description=__doc__.split("\n\n")[0])
    parser.add_argument("--open", type=int, default=100_000,
                        help="open clocks in the measured phase (besides those falling due)")
    parser.add_argument("--due", type=int, default=1000, help="clocks falling due during the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which they fall due")
    parser.add_argument("--baseline-open", type=int, default=1000,
                        help="open clocks in the baseline phase (besides those falling due)")
    parser.add_argument("--quick", action="store_true", help="10,000 open, 200 due over 15 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.open, args.due, args.window = 10_000, 200, 15.0
    print(f"SLA bench: {args.due} clocks fall due over {args.window:.0f} s among {args.baseline_open} other open "
          f"clocks (baseline), then among {args.open} (measured)", flush=True)
    with secantus_server() as mongo_uri, rabbit_vhost("sla-bench") as amqp_uri, \
            tempfile.TemporaryDirectory() as workdir:
        baseline = run_phase("baseline", args.baseline_open, args.due, args.window, amqp_uri,
                             mongo_uri, Path(workdir))
        print(baseline.line(), flush=True)
        measured = run_phase("measured", args.open, args.due, args.window, amqp_uri, mongo_uri,
                             Path(workdir))
        print(measured.line(), flush=True)
    print(f"ratio measured/baseline: {measured.open_clocks / max(baseline.open_clocks, 1):.0f}x the open clocks, "
          f"sweep cost per point {measured.ms_per_point / baseline.ms_per_point:.2f}x, "
          f"lag p50 {measured.pct(0.5) / baseline.pct(0.5):.2f}x, p99 {measured.pct(0.99) / baseline.pct(0.99):.2f}x, "
          f"idle due-query {measured.query_ms / baseline.query_ms:.2f}x")
    if baseline.missing or measured.missing or baseline.duplicates or measured.duplicates:
        raise SystemExit("some breaches were missing or doubled")


if __name__ == "__main__":
    main(sys.argv[1:])
