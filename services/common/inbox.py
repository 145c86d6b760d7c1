"""Idempotent handling of redelivered events: an event's effect is applied once.

The handler calls ``first_time`` inside the transaction of its effect: the marker and the
effect commit together, so a redelivery after a crash finds the marker and changes nothing.
"""
from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from services.common import timeutil

COLLECTION = "inbox"
INDEXES = {COLLECTION: [IndexModel([("at", ASCENDING)], expireAfterSeconds=30 * 24 * 3600)]}


def first_time(db, session, event: dict) -> bool:
    """True, and the event marked handled, when this event was not handled before."""
    if db[COLLECTION].find_one({"_id": event["event_id"]}, {"_id": 1}, session=session):
        return False
    # Two instances racing on one event: the second insert fails and aborts its whole
    # transaction; the retry then finds the marker.
    db[COLLECTION].insert_one({"_id": event["event_id"], "type": event["type"], "at": timeutil.now()}, session=session)
    return True
