"""Operators' purge of complaints past their retention (``RETENTION_DAYS`` after closing,
at least a year: seed 003 §8).

    python -m services.intake.retention [--dry-run]

A complaint is removed with everything intake keeps of it (its record and history, its
notices and their delivery reports, the repeats merged into it) only when it is closed or
withdrawn and ``closed_at`` lies more than the retention before now. An open complaint, one
reopened for review, or one closed more recently is never touched.
"""
from __future__ import annotations

import argparse
from datetime import timedelta

from services.common import timeutil
from services.common.config import Settings
from services.common.store import database, in_transaction
from services.intake.intake import MERGED
from services.intake.lifecycle import Lifecycle
from services.intake.notices import COLLECTION as NOTICES

BATCH = 100
FINAL_STATUSES = Lifecycle.load().final_statuses()


def past_retention(db, now, retention_days: int, limit: int = BATCH) -> list[str]:
    """Numbers of complaints closed more than ``retention_days`` before ``now``, oldest first."""
    cutoff = now - timedelta(days=retention_days)
    rows = db["complaints"].find({"closed_at": {"$gte": timeutil.EPOCH, "$lt": cutoff},
                                  "status": {"$in": FINAL_STATUSES}}, {"_id": 1}) \
        .sort("closed_at", 1).limit(limit)
    return [row["_id"] for row in rows]


def purge(db, now, retention_days: int) -> int:
    """Remove every complaint past its retention, each with all intake keeps of it; how many."""
    removed = 0
    while batch := past_retention(db, now, retention_days):
        for complaint_no in batch:
            removed += in_transaction(db, lambda session, number=complaint_no: _remove(db, session, number, now,
                                                                                      retention_days))
    return removed


def _remove(db, session, complaint_no: str, now, retention_days: int) -> int:
    # Read again in the transaction: a review request may have reopened it meanwhile.
    cutoff = now - timedelta(days=retention_days)
    result = db["complaints"].delete_one({"_id": complaint_no, "status": {"$in": FINAL_STATUSES},
                                          "closed_at": {"$gte": timeutil.EPOCH, "$lt": cutoff}}, session=session)
    if result.deleted_count:
        db[NOTICES].delete_many({"complaint_no": complaint_no}, session=session)
        db[MERGED].delete_many({"merged_into": complaint_no}, session=session)
    return result.deleted_count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="list the first complaints past retention only")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    db = database(settings, "intake")
    now = timeutil.now()
    if args.dry_run:
        due = past_retention(db, now, settings.retention_days)
        print(f"{len(due)} complaint(s) closed over {settings.retention_days} days ago (first {BATCH} at most):")
        for complaint_no in due:
            print(f"  {complaint_no}")
        return
    print(f"removed {purge(db, now, settings.retention_days)} complaint(s) closed over "
          f"{settings.retention_days} days ago")


if __name__ == "__main__":
    main()
