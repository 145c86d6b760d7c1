"""After a change to the calendars (services/common/policy/data/calendars.yaml: a year the
State Council published, an institution's own days; or a newer chinese_calendar package)
or to the policies, recompute the open clocks they move:

    python -m services.sla.recompute [--institution CODE] [--no-wait]
    python -m services.sla.recompute --job JOB_ID          # follow a job started before

Starts a recompute job through the SLA service (RPC ``sla.start_recompute``, settings from
the environment): every SLA instance reloads the policies and calendars, and the instances
work the job in the background, in batches, resuming after a restart. The command follows
its progress with a progress bar and prints the job when it is done (``--no-wait``: prints
the job as started and returns at once). Each due date that moved is announced
(``sla_rescheduled``): the call center hears ``rescheduled``, the customer is told.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # nameko's standalone proxy runs on eventlet

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from tqdm import tqdm  # noqa: E402

from services.common.config import Settings  # noqa: E402

POLL = 0.5


def follow(rpc, job: dict, interval: float = POLL) -> dict:
    """Poll the job until it is done, showing how many clocks were examined of how many."""
    with tqdm(total=job["total"], unit="clock", desc=f"recompute {job['job_id'][:8]}", file=sys.stderr) as bar:
        while True:
            bar.total = max(job["total"], job["examined"])
            bar.update(job["examined"] - bar.n)
            bar.set_postfix(rescheduled=job["rescheduled"], refresh=False)
            if job["state"] == "done":
                return job
            time.sleep(interval)
            job = rpc.sla.recompute_job(job["job_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.sla.recompute", description=__doc__.split("\n\n")[0])
    parser.add_argument("--institution", help="only this institution's clocks (default: every institution)")
    parser.add_argument("--no-wait", action="store_true", help="start the job, print it and return")
    parser.add_argument("--job", help="follow a job started before instead of starting one")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    with ClusterRpcProxy(settings.nameko_config(), timeout=settings.rpc_timeout) as rpc:
        job = rpc.sla.recompute_job(args.job) if args.job else rpc.sla.start_recompute(args.institution)
        if not args.no_wait:
            job = follow(rpc, job)
    print(json.dumps(job, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
