"""Recomputing the open clocks after the calendars or policies changed, as a durable job.

A year the State Council publishes (``years:`` in calendars.yaml, or a newer
``chinese_calendar``), an institution's own days off, new business hours: each may move
the due dates and warnings of the open clocks that count working days. An operator starts
a job (``python -m services.sla.recompute``, RPC ``start_recompute``); the SLA instances
work it in the background, in batches, and it survives a restart or a kill -9 of the
instance working it.

A job document in ``jobs``::

    _id            the job id
    institution    the institution whose clocks it recomputes (None: every institution)
    state          pending | running | done
    phase          unscheduled (complaints without a clock) | clocks, walked in _id order
    cursor         the last _id of the phase done
    total          complaints without a clock and open clocks a calendar can move, at the start
    examined       how many of them were recomputed so far
    rescheduled    due dates that moved (each announced by ``sla_rescheduled``)
    confirmed      provisional due dates the published year kept (``sla_rescheduled`` too)
    updated        other changes (warnings moved, a calendar error cleared or raised)
    started        complaints without a clock whose clock started
    failed         clocks whose policy the data no longer has (logged)
    owner, lease_until   the instance working it; another takes over once the lease passed

One instance works a job at a time (the lease, renewed by every batch); should two ever
overlap, nothing is done twice: each clock is recomputed in a transaction that rewrites it
only when its schedule changed, so the second finds nothing to change.
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from pymongo import ASCENDING, IndexModel

from services.common import ids, timeutil
from services.common.errors import NotFound
from services.common.outbox import event_message
from services.common.policy import NoDueDate
from services.common.store import in_transaction
from services.sla import schedule

log = logging.getLogger(__name__)

JOBS = "jobs"
INDEXES = {JOBS: [IndexModel([("state", ASCENDING), ("created_at", ASCENDING)], name="open_jobs")]}
OPEN = ("pending", "running")
LEASE = timedelta(seconds=30)
BATCH = 200
COUNTERS = ("examined", "rescheduled", "confirmed", "updated", "started", "failed")


class Rescheduling:
    """The recompute jobs of one SLA instance, over its clocks (``clocks.Clocks``)."""

    def __init__(self, clocks):
        self.clocks = clocks
        self.db = clocks.db
        self.jobs = clocks.db[JOBS]
        self.instance = uuid.uuid4().hex

    # -- the operator's side ---------------------------------------------------------------

    def start(self, institution: str | None = None) -> dict:
        """Reload the policies and calendars here and, through the books' stamp, in every
        instance; record a job that recomputes what they move. Its view."""
        self.clocks.reload_books()
        scope = {} if institution is None else {"institution": institution}
        total = (self.clocks.unscheduled.count_documents(scope)
                 + self.clocks.clocks.count_documents({"calendar_bound": True, "state": "running", **scope}))
        now = self.clocks.now()
        job = {"_id": ids.new_id(), "kind": "recompute", "institution": institution, "state": "pending",
               "phase": "unscheduled", "cursor": "", "total": total, **dict.fromkeys(COUNTERS, 0),
               "created_at": now, "updated_at": now, "started_at": None, "finished_at": None,
               "owner": None, "lease_until": timeutil.EPOCH}
        self.jobs.insert_one(job)
        log.info("recompute job %s for %s: %d to examine", job["_id"], institution or "every institution", total)
        return view(job)

    def view(self, job_id: str) -> dict:
        job = self.jobs.find_one({"_id": job_id})
        if job is None:
            raise NotFound(f"no recompute job {job_id}")
        return view(job)

    def under_way(self) -> int:
        return self.jobs.count_documents({"state": {"$in": list(OPEN)}})

    # -- the background work ---------------------------------------------------------------

    def work(self, outbox, budget: float = 2.0) -> dict | None:
        """Claim the oldest open job whose lease is free (or ours) and work batches of it for
        up to ``budget`` seconds; its view, or None when there was nothing to work."""
        job = self._claim()
        if job is None:
            return None
        started = time.monotonic()
        while job["state"] != "done" and time.monotonic() - started < budget:
            job = self._batch(job, outbox)
            if job is None:
                return None  # another instance took it over
        return view(job)

    def _claim(self) -> dict | None:
        now = self.clocks.now()
        for job in self.jobs.find({"state": {"$in": list(OPEN)}}).sort("created_at", ASCENDING):
            if job["owner"] != self.instance and timeutil.local(job["lease_until"]) > now:
                continue
            changes = {"owner": self.instance, "lease_until": now + LEASE, "state": "running",
                       "started_at": job["started_at"] or now}
            claimed = self.jobs.update_one(
                {"_id": job["_id"], "owner": job["owner"], "lease_until": job["lease_until"]}, {"$set": changes})
            if claimed.modified_count == 1:
                return dict(job, **changes)
        return None

    def _batch(self, job: dict, outbox) -> dict | None:
        """Recompute the next batch of the job's phase and record how far it got."""
        self.clocks.reload_if_changed()
        scope = {} if job["institution"] is None else {"institution": job["institution"]}
        counts = dict.fromkeys(COUNTERS, 0)
        if job["phase"] == "unscheduled":
            batch = list(self.clocks.unscheduled.find({**scope, "_id": {"$gt": job["cursor"]}})
                         .sort("_id", ASCENDING).limit(BATCH))
            for kept in batch:
                counts["examined"] += 1
                counts["started"] += self._start_unscheduled(kept, outbox)
        else:
            batch = list(self.clocks.clocks.find({"calendar_bound": True, "state": "running",
                                                  "_id": {"$gt": job["cursor"]}, **scope})
                         .sort("_id", ASCENDING).limit(BATCH))
            for doc in batch:
                counts["examined"] += 1
                outcome = self._recompute(doc, outbox)
                if outcome is not None:
                    counts[outcome] += 1
        changes = {"cursor": batch[-1]["_id"] if batch else job["cursor"], "updated_at": self.clocks.now(),
                   "lease_until": self.clocks.now() + LEASE}
        if len(batch) < BATCH:
            if job["phase"] == "unscheduled":
                changes.update(phase="clocks", cursor="")
            else:
                changes.update(state="done", finished_at=self.clocks.now(), owner=None, lease_until=timeutil.EPOCH)
        recorded = self.jobs.update_one({"_id": job["_id"], "owner": self.instance},
                                        {"$set": changes, "$inc": {k: v for k, v in counts.items() if v}})
        if recorded.matched_count != 1:
            return None
        job = dict(job, **changes)
        for key, value in counts.items():
            job[key] += value
        if job["state"] == "done":
            log.info("recompute job %s done: %s", job["_id"], {k: job[k] for k in COUNTERS})
        return job

    def _start_unscheduled(self, kept: dict, outbox) -> int:
        def work(session):
            if not self.clocks.start_received(kept["body"], session, outbox):
                return 0
            self.clocks.unscheduled.delete_one({"_id": kept["_id"]}, session=session)
            return 1

        return in_transaction(self.db, work)

    def _recompute(self, doc: dict, outbox) -> str | None:
        """Recompute one clock read in the batch: None when its schedule stands (no write);
        otherwise in one transaction that reads it again, rewrites it and announces a due
        date that moved or stopped being provisional. The counter it adds to."""
        try:
            if schedule.same_schedule(doc, self.clocks._schedule(doc, self.clocks.now())):
                return None
        except NoDueDate as exc:  # its policy or clock left the data
            log.error("clock %s cannot be recomputed: %s", doc["_id"], exc)
            return "failed"

        def work(session):
            now = self.clocks.now()
            current = self.clocks.clocks.find_one({"_id": doc["_id"], "state": "running"}, session=session)
            if current is None:
                return None
            changes = self.clocks._schedule(current, now)
            if schedule.same_schedule(current, changes):
                return None
            previous = None if current.get("due_by") is None else timeutil.local(current["due_by"])
            was_provisional = bool(current.get("provisional"))
            self.clocks._replace(session, current, changes)
            moved = previous != changes["due_by"]
            if not moved and was_provisional == changes["provisional"]:
                return "updated"
            reason = "year_published" if was_provisional and not changes["provisional"] else "calendar_changed"
            outbox.stage(session, event_message(self.clocks._event(
                "sla_rescheduled", current, now, None, previous_due_by=timeutil.iso(previous),
                previous_provisional=was_provisional, moved=moved, reason=reason,
                state=schedule.sla_state(current))))
            return "rescheduled" if moved else "confirmed"

        return in_transaction(self.db, work)


def view(job: dict) -> dict:
    """A job as the operator reads it (JSON-ready)."""
    return {
        "job_id": job["_id"],
        "institution": job["institution"],
        "state": job["state"],
        "total": job["total"],
        **{key: job[key] for key in COUNTERS},
        "created_at": timeutil.iso(job["created_at"]),
        "started_at": timeutil.iso(job.get("started_at")),
        "finished_at": timeutil.iso(job.get("finished_at")),
    }
