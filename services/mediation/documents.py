"""How mediation keeps a referral: the document, its messages to the organization, the
conditional write every change goes through, and the fact that announces a change.

A referral (collection ``referrals``, ``_id`` its id ``<complaint_no>-M<n>``) holds the
request (reason, negotiation, consent, authority), the status and the callbacks applied,
and ``messages``: what the organization must receive, in order (the referral, then each
raise of the authority), each with its delivery state and attempts. ``next_attempt_at``
(indexed) is when the first undelivered message is due, ``delivery`` how the delivery
stands (``pending``, ``delivered``, ``failed``), ``lease`` the attempt in flight. Every
change is conditional on ``version``.
"""
from __future__ import annotations

import json
from datetime import datetime

from marshmallow import Schema, ValidationError

from services.common import events, timeutil
from services.common.errors import Conflict, Invalid, NotFound, flatten_errors
from services.common.outbox import event_message
from services.mediation.rules import DELIVERED

PRODUCER = "mediation"
REFERRALS = "referrals"
# A message's state, and the referral's delivery: delivered (rules.judge's verdict), waiting
# to be (pending), or failed for good.
PENDING, FAILED = "pending", "failed"


def load(schema: Schema, data, prefix: str = "") -> dict:
    """The data loaded by ``schema``, or Invalid mapping field paths to messages."""
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", {prefix or "_schema": ["must be a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise Invalid("the request is invalid", flatten_errors(exc.messages, prefix)) from None


def timed(value):
    """Stored times as ISO text, recursively (RPC answers and event bodies are JSON)."""
    if isinstance(value, dict):
        return {key: timed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [timed(item) for item in value]
    return timeutil.iso(value) if isinstance(value, datetime) else value


def message(key: str, kind: str, body: dict) -> dict:
    """A message to deliver; its body kept as the exact text signed and sent, so that a
    redelivery is the same bytes."""
    return {"key": key, "kind": kind, "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            "state": PENDING, "attempts": 0, "first_attempt_at": None, "next_attempt_at": None,
            "delivered_at": None, "failure": None, "last": None, "log": []}


def queue(messages: list[dict], now: datetime) -> dict:
    """When the referral is next due and how its delivery stands, from its messages: they
    go in order, so the first one not delivered decides."""
    waiting = next((m for m in messages if m["state"] != DELIVERED), None)
    if waiting is None:
        return {"next_attempt_at": None, "delivery": DELIVERED}
    if waiting["state"] == FAILED:
        return {"next_attempt_at": None, "delivery": FAILED}
    return {"next_attempt_at": waiting.get("next_attempt_at") or now, "delivery": PENDING}


def fresh(referrals, referral_id: str, session) -> dict:
    doc = referrals.find_one({"_id": referral_id}, session=session)
    if doc is None:
        raise NotFound(f"no referral {referral_id}")
    return doc


def write(referrals, session, doc: dict, changes: dict) -> None:
    """Apply ``changes`` to the referral if nobody changed it since ``doc`` was read."""
    result = referrals.update_one({"_id": doc["_id"], "version": doc["version"]},
                                  {"$set": changes, "$inc": {"version": 1}}, session=session)
    if result.matched_count != 1:
        raise Conflict("the referral changed meanwhile; try again", {"referral": [doc["_id"]]})
    doc.update(changes)
    doc["version"] += 1


def snapshot(doc: dict, at: datetime) -> dict:
    """The referral as the complaint shows it (intake keeps the newest by ``as_of``): no
    authority, no personal data."""
    return timed({"referral_id": doc["_id"], "status": doc["status"], "referred_at": doc["referred_at"],
                  "organization": {"code": doc["organization"], "name": doc["organization_name"],
                                   "contact": doc["contact"]},
                  "delivery": doc["delivery"], "agreement": doc["agreement"], "carried_out": doc["carried_out"],
                  "as_of": at})


def fact(name: str, doc: dict, now: datetime, actor: str | None, **body) -> dict:
    """The event of a change to ``doc`` (already changed), as an outbox message."""
    body = {"complaint_no": doc["complaint_no"], "at": timeutil.iso(now), "actor": actor, "referral_id": doc["_id"],
            "organization": doc["organization"], "mediation": snapshot(doc, now), **body}
    return event_message(events.make_event(name, doc["complaint_no"], body, PRODUCER))
