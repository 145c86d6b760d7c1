"""Proof of every notice to the customer (Order 3/2020 Art. 21).

Every notification intake asks the institution's gateway to send (CONTRACTS.md §2) is kept
as a notice, written in the transaction of the change it tells of: its template, medium,
address and parameters, when it was requested, and which change of the record it tells of.
The gateway answers each request with a delivery report (``notification.report/1`` on
``complaints.inbound``, routing key ``notification.report.<medium>``), recorded beside its
notice. A notice reported ``failed``, or not reported ``delivered`` within its medium's limit
(``data/notices.yaml``), is flagged and sent again on the next medium the customer gave; with
none left it waits for an operator. The complaint's view shows each notice in its history
with its reports.

A report that names no notice, or that is not a report at all, is kept for an operator (whole,
or a body over a MiB, which no report is, by its first MiB and its size) and the message is
done with: never an error, so never a retry loop.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml
from bson import Binary
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from pymongo import ASCENDING, DESCENDING, IndexModel

from services.common import outbound, timeutil
from services.common.consumers import Delivery
from services.common.store import in_transaction

DATA = Path(__file__).parent / "data" / "notices.yaml"
REPORT_PREFIX = "notification.report."
COLLECTION = "notices"
UNMATCHED = "unmatched_reports"
CUSTOMER_ADDRESSES = ("phone", "email", "address")
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
# What is kept of a message that is not a report: a report is a few hundred bytes.
KEPT_BODY_LIMIT = 1 << 20
CHASE_BATCH = 100

# A notice waits for its report in "requested"; a report or the chase moves it on.
REQUESTED, DELIVERED, FAILED, OVERDUE = "requested", "delivered", "failed", "overdue"

INDEXES = {
    COLLECTION: [
        IndexModel([("complaint_no", ASCENDING), ("requested_at", ASCENDING)]),
        # Only a notice awaiting its report has report_due_by: the chase walks these alone.
        IndexModel([("report_due_by", ASCENDING)], sparse=True),
        IndexModel([("needs_operator", ASCENDING)], sparse=True),
    ],
    UNMATCHED: [IndexModel([("at", DESCENDING)])],
}


# -- the policy: media in order of preference, and how long a report may take ------------

@dataclass(frozen=True)
class Medium:
    medium: str
    address: str  # the customer field that holds the address
    report_within: timedelta


@dataclass(frozen=True)
class NoticePolicy:
    media: tuple[Medium, ...]

    @classmethod
    def load(cls, path: Path = DATA) -> NoticePolicy:
        with open(path, encoding="utf-8") as handle:
            return cls.from_data(yaml.safe_load(handle))

    @classmethod
    def from_data(cls, data: dict) -> NoticePolicy:
        """The policy, or ValueError listing every problem of the data."""
        problems, media = [], []
        for n, entry in enumerate((data or {}).get("media") or []):
            where = f"media[{n}]"
            if entry.get("medium") not in outbound.MEDIA:
                problems.append(f"{where}.medium must be one of {', '.join(outbound.MEDIA)}")
            if entry.get("address") not in CUSTOMER_ADDRESSES:
                problems.append(f"{where}.address must be one of {', '.join(CUSTOMER_ADDRESSES)}")
            limit = entry.get("report_within") or {}
            value, unit = limit.get("value"), limit.get("unit")
            if not isinstance(value, int | float) or value <= 0 or unit not in UNITS:
                problems.append(f"{where}.report_within must be {{value > 0, unit: {' | '.join(UNITS)}}}")
                continue
            media.append(Medium(entry["medium"], entry["address"], timedelta(seconds=value * UNITS[unit])))
        names = [m.medium for m in media]
        if not media:
            problems.append("media: at least one medium is needed")
        if len(set(names)) != len(names):
            problems.append("media: each medium at most once")
        if problems:
            raise ValueError("notice policy: " + "; ".join(problems))
        return cls(tuple(media))

    def reach(self, customer: dict, tried=()) -> tuple[Medium, str] | None:
        """The first medium not yet tried for which the customer gave an address."""
        for medium in self.media:
            if medium.medium not in tried and customer.get(medium.address):
                return medium, customer[medium.address]
        return None


# -- the gateway's delivery report (CONTRACTS.md §2) ------------------------------------

class ReportSchema(Schema):
    """``notification.report/1``; fields a newer gateway adds are ignored."""

    class Meta:
        unknown = EXCLUDE

    notification_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    status = fields.String(required=True, validate=validate.OneOf(("delivered", "failed")))
    at = fields.AwareDateTime(required=True)
    detail = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


def is_report(delivery: Delivery) -> bool:
    return delivery.routing_key.startswith(REPORT_PREFIX)


def parse_report(delivery: Delivery) -> tuple[dict | None, dict]:
    """The report a delivery carries, or the errors that make it none."""
    try:
        body = json.loads(delivery.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, {"body": [f"is not a JSON report: {type(exc).__name__}"]}
    if not isinstance(body, dict):
        return None, {"body": ["must be a JSON object"]}
    try:
        return ReportSchema().load(body), {}
    except ValidationError as exc:
        return None, exc.normalized_messages()


@dataclass(frozen=True)
class Notice:
    """A notice to keep and the notification request that sends it."""

    doc: dict
    message: dict


class Notices:
    """The notices of intake's complaints: composed with each change, reported on by the
    gateway, chased when a report is late."""

    def __init__(self, db, policies, policy: NoticePolicy | None = None):
        self.db = db
        self.notices = db[COLLECTION]
        self.unmatched = db[UNMATCHED]
        self.complaints = db["complaints"]
        self.policies = policies  # the SLA policies: the review window a delivered decision opens
        self.policy = policy or NoticePolicy.load()

    # -- asking the gateway -------------------------------------------------------------

    def compose(self, complaint: dict, template: str, params: dict, tells_of: tuple[str, object], now) -> Notice | None:
        """The notice telling the customer of a change (``tells_of``: the history entry's
        type and time), on the first medium they gave; None if they gave none."""
        reach = self.policy.reach(complaint["customer"])
        if reach is None:
            return None
        kind, at = tells_of
        return self._notice(complaint["_id"], reach, template, params, {"type": kind, "at": at}, now, tried=[])

    def _notice(self, complaint_no, reach, template, params, tells_of, now, *, tried, retry_of=None) -> Notice:
        medium, to = reach
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as the store keeps it: the proof is the request
        message = outbound.notification(complaint_no, medium.medium, to, template, params, requested_at=now)
        doc = {
            "_id": message["_id"], "complaint_no": complaint_no, "template": template,  # the notification_id
            "medium": medium.medium, "to": to, "params": params, "requested_at": now, "tells_of": tells_of,
            "attempt": len(tried) + 1, "tried": tried, "retry_of": retry_of, "retried_by": None,
            "state": REQUESTED, "report_due_by": now + medium.report_within, "reports": [], "report_keys": [],
        }
        return Notice(doc, message)

    def keep(self, session, notices) -> list[dict]:
        """Keep the notices in the caller's transaction; their requests, for the caller to
        stage in the outbox with its own messages."""
        notices = [notice for notice in notices if notice is not None]
        if notices:
            self.notices.insert_many([notice.doc for notice in notices], session=session)
        return [notice.message for notice in notices]

    # -- the gateway's reports ----------------------------------------------------------

    def receive_report(self, delivery: Delivery, outbox) -> str:
        """Record a delivery report beside its notice: ``recorded``, ``duplicate`` or ``kept``
        (for an operator: not a report, or no such notice)."""
        report, errors = parse_report(delivery)
        if report is None:
            return self._keep(delivery, errors)
        if self.notices.find_one({"_id": report["notification_id"]}, {"_id": 1}) is None:
            return self._keep(delivery, {"notification_id": [f"no notice {report['notification_id']} was requested"]})
        medium = delivery.routing_key[len(REPORT_PREFIX):]
        return in_transaction(self.db, lambda session: self._record(session, report, medium, outbox))

    def _record(self, session, report: dict, medium: str, outbox) -> str:
        now = timeutil.now()
        notice = self.notices.find_one({"_id": report["notification_id"]}, session=session)
        key = f"{report['status']}@{timeutil.iso(report['at'])}"
        if key in notice["report_keys"]:
            return "duplicate"
        entry = {"status": report["status"], "at": report["at"], "detail": report["detail"], "medium": medium,
                 "received_at": now}
        change: dict = {"$push": {"reports": entry, "report_keys": key}}
        if report["status"] == DELIVERED:
            # The proof, even late and after a retry on another medium.
            change.update({"$set": {"state": DELIVERED}, "$unset": {"report_due_by": ""}})
        self.notices.update_one({"_id": notice["_id"]}, change, session=session)
        if report["status"] == DELIVERED:
            # The customer was told: no attempt at the same notice waits for an operator.
            self.notices.update_many({"complaint_no": notice["complaint_no"], "template": notice["template"],
                                      "tells_of.type": notice["tells_of"]["type"],
                                      "tells_of.at": notice["tells_of"]["at"], "needs_operator": True},
                                     {"$unset": {"needs_operator": ""}}, session=session)
            self._delivered(session, notice, report["at"], now)
        elif notice["state"] == REQUESTED:
            self._flag(session, notice, FAILED, now, outbox)
        return "recorded"

    def _delivered(self, session, notice: dict, at, now) -> None:
        """A decision reaches the customer: the review window (Art. 20) runs from then."""
        if notice["template"] != "decided":
            return
        # Not before it was asked for, nor after the report came: a gateway's clock may be off.
        delivered_at = min(max(timeutil.local(at), timeutil.local(notice["requested_at"])), now)
        complaint = self.complaints.find_one(
            {"_id": notice["complaint_no"], "decision.at": notice["tells_of"]["at"], "decision.delivered_at": None},
            {"sla.policy": 1}, session=session)
        if complaint is None:  # a later decision replaced it, or an earlier report was first
            return
        policy = self.policies.get(complaint["sla"]["policy"])
        review_until = policy.review_window_ends(delivered_at) if policy.review_window else None
        self.complaints.update_one(
            {"_id": complaint["_id"]},
            {"$set": {"decision.delivered_at": delivered_at, "decision.review_until": review_until},
             "$inc": {"version": 1}}, session=session)

    def _keep(self, delivery: Delivery, errors: dict) -> str:
        """Keep a message that is no report of ours, once however often it comes."""
        routing_key = delivery.routing_key
        digest = hashlib.sha256(routing_key.encode("utf-8", "replace") + b"\0" + delivery.body).hexdigest()
        kept = {
            "at": timeutil.now(), "routing_key": routing_key, "errors": errors,
            "body": Binary(delivery.body[:KEPT_BODY_LIMIT]), "body_bytes": len(delivery.body),
            # As JSON text: header names may be ones MongoDB refuses as keys.
            "properties": json.dumps(delivery.properties, ensure_ascii=False, default=str),
            "headers": json.dumps(delivery.headers, ensure_ascii=False, default=str),
        }
        self.unmatched.update_one({"_id": digest}, {"$setOnInsert": kept}, upsert=True)
        return "kept"

    # -- reports that do not come ---------------------------------------------------------

    def chase(self, outbox, now=None, limit: int = CHASE_BATCH) -> int:
        """Flag the notices whose report is late and retry each on the next medium."""
        now = now or timeutil.now()
        late = self.notices.find({"report_due_by": {"$gte": timeutil.EPOCH, "$lt": now}}, {"_id": 1}) \
            .sort("report_due_by", ASCENDING).limit(limit)
        flagged = 0
        for row in list(late):
            flagged += in_transaction(self.db, lambda session, notice_id=row["_id"]: self._chase_one(
                session, notice_id, now, outbox))
        return flagged

    def _chase_one(self, session, notice_id, now, outbox) -> int:
        notice = self.notices.find_one({"_id": notice_id}, session=session)
        if notice is None or notice["state"] != REQUESTED:
            return 0  # reported meanwhile, or another instance chased it
        self._flag(session, notice, OVERDUE, now, outbox)
        return 1

    def _flag(self, session, notice: dict, state: str, now, outbox) -> None:
        """Flag a notice that was not delivered and send it again on the next medium the
        customer gave; with none left, it waits for an operator."""
        customer = self.complaints.find_one({"_id": notice["complaint_no"]}, {"customer": 1}, session=session)
        tried = [*notice["tried"], notice["medium"]]
        reach = self.policy.reach(customer["customer"], tried) if customer else None
        retry = None if reach is None else self._notice(
            notice["complaint_no"], reach, notice["template"], notice["params"], notice["tells_of"], now,
            tried=tried, retry_of=notice["_id"])
        flag = {"state": state, "flagged_at": now, "retried_by": None if retry is None else retry.doc["_id"]}
        if retry is None:
            flag["needs_operator"] = True
        # The state read is a condition: a report or another instance may have come first.
        result = self.notices.update_one({"_id": notice["_id"], "state": REQUESTED},
                                         {"$set": flag, "$unset": {"report_due_by": ""}}, session=session)
        if result.matched_count == 1 and retry is not None:
            outbox.stage(session, *self.keep(session, [retry]))

    # -- reading ------------------------------------------------------------------------

    def of_complaint(self, complaint_no: str) -> list[dict]:
        return list(self.notices.find({"complaint_no": complaint_no}).sort("requested_at", ASCENDING))

    def needing_operator(self, limit: int = 50) -> list[dict]:
        return [history_entry(notice) for notice in self.notices.find({"needs_operator": True}).limit(limit)]

    def unmatched_reports(self, limit: int = 50) -> list[dict]:
        rows = self.unmatched.find().sort("at", DESCENDING).limit(limit)
        return [{**row, "at": timeutil.iso(row["at"]), "body": bytes(row["body"]).decode("utf-8", errors="replace"),
                 "properties": json.loads(row["properties"]), "headers": json.loads(row["headers"])} for row in rows]

    def health(self) -> dict:
        return {"notices_needing_operator": self.notices.count_documents({"needs_operator": True}),
                "reports_unmatched": self.unmatched.estimated_document_count()}


def history_entry(notice: dict) -> dict:
    """A notice as the complaint's history shows it: what was asked, and beside it what
    the gateway reported."""
    return {
        "at": notice["requested_at"],
        "type": "notice_requested",
        "actor": "intake",
        "details": {
            "notification_id": notice["_id"], "template": notice["template"], "medium": notice["medium"],
            "to": notice["to"], "requested_at": timeutil.iso(notice["requested_at"]),
            "tells_of": {"type": notice["tells_of"]["type"], "at": timeutil.iso(notice["tells_of"]["at"])},
            "state": notice["state"], "attempt": notice["attempt"], "retry_of": notice["retry_of"],
            "retried_by": notice["retried_by"], "report_due_by": timeutil.iso(notice.get("report_due_by")),
            "flagged_at": timeutil.iso(notice.get("flagged_at")),
            "needs_operator": bool(notice.get("needs_operator")),
            "reports": [{**report, "at": timeutil.iso(report["at"]), "received_at": timeutil.iso(report["received_at"])}
                        for report in notice["reports"]],
        },
    }


def main(argv=None) -> None:
    """Operators: ``python -m services.intake.notices unmatched|unproven [--limit N]``."""
    from services.common.config import Settings
    from services.common.policy import load_policies
    from services.common.store import database

    parser = argparse.ArgumentParser(description="Reports intake could not match, notices no medium delivered.")
    parser.add_argument("what", choices=("unmatched", "unproven"))
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)
    notices = Notices(database(Settings.from_env(), "intake"), load_policies())
    rows = notices.unmatched_reports(args.limit) if args.what == "unmatched" else notices.needing_operator(args.limit)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
