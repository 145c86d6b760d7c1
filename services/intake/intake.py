"""Intake's domain: from a submitted message to a stored, numbered, acknowledged complaint.

Driven by ``service.py`` (AMQP and RPC entrypoints) and directly by tests against a real
MongoDB-protocol server; it never touches the broker itself: every message it sends is
staged in the outbox within the transaction of the change it announces.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from bson import Binary
from gridfs import GridFSBucket, NoFile
from marshmallow import ValidationError
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common import events, ids, inbox, metrics, outbound, timeutil
from services.common.consumers import Delivery
from services.common.errors import Forbidden, Invalid, NotFound, Stale, flatten_errors
from services.common.orgtree import AnnouncedOrganization
from services.common.outbox import event_message
from services.common.outbox import pending as outbox_pending
from services.common.policy import NoDueDate, PromiseRefused, load_calendars, load_policies
from services.common.store import in_transaction, retry_on_conflict
from services.common.submission import ReceivedWindow, SubmissionSchema, for_any_institution
from services.intake import notices
from services.intake.contacts import Contacts
from services.intake.lifecycle import Lifecycle
from services.intake.notices import Notices
from services.intake.records import Records, access_facts

log = logging.getLogger(__name__)

PRODUCER = "intake"
ROUTING_PREFIX = "complaint.submit."
HTTP_APP_ID = "http"
MERGED = "merged_messages"
# An action another service does is answered once this record applied its facts: how long
# the answer waits for them (well under the edge's RPC timeout), and how often it looks.
APPLIED_WAIT = 3.0
APPLIED_POLL = 0.05
# CONTRACTS.md §1 as extended here: a body over this size is rejected ("body": too large)
# and kept whole in GridFS; a complaint of the largest valid size is far below it.
MAX_BODY_BYTES = 1_048_576
# app_id names the publisher's receipt routing key, receipt.<app_id>: an ASCII code.
APP_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
REJECTED_BODIES = "rejected_bodies"  # the GridFS bucket of bodies too large for a document


INDEXES = {
    "complaints": [
        IndexModel([("app_id", ASCENDING), ("message_id", ASCENDING)], unique=True, name="one_per_message"),
        IndexModel([("received_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("unit", ASCENDING), ("received_at", DESCENDING)]),
        IndexModel([("transfer_to", ASCENDING)], sparse=True),
        IndexModel([("status", ASCENDING), ("received_at", DESCENDING)]),
        IndexModel([("due_by", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("closed_at", ASCENDING)]),  # retention: closed longest ago first
    ],
    "rejections": [IndexModel([("at", DESCENDING)]), IndexModel([("app_id", ASCENDING), ("message_id", ASCENDING)])],
    # GridFS's own indexes, created before the first upload (GridFS creates none in a transaction).
    f"{REJECTED_BODIES}.files": [IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)])],
    f"{REJECTED_BODIES}.chunks": [IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)],
    # Messages answered by merging them into an open complaint: one per message, ever.
    MERGED: [IndexModel([("app_id", ASCENDING), ("message_id", ASCENDING)], unique=True, name="one_per_message"),
             IndexModel([("merged_into", ASCENDING)])],
    **notices.INDEXES,
    "serials": [],
    "organization": [],
}


@dataclass(frozen=True)
class DueOnReceipt:
    """The time limit a complaint gets on receipt: the policy and the clock it starts, the
    due date and whether it was counted on a calendar year not published yet; or, when the
    policy or calendar data cannot give one, no due date and why (the complaint is answered
    all the same, and the operators alerted)."""

    policy: str | None
    clock: str | None
    due_by: datetime | None
    provisional: bool = False
    error: str | None = None
    description: str = ""


@dataclass
class Outcome:
    """What became of one submission: the receipt's status, the complaint, the errors."""

    status: str
    complaint: dict | None = None
    errors: dict | None = None

    def as_rpc(self) -> dict:
        summary = None
        if self.complaint is not None:
            summary = self.complaint["receipt"]
        return {"outcome": self.status, "complaint": summary, "errors": self.errors or {}}


def storable(text: str | None) -> str | None:
    """Text as MongoDB and JSON readers can take it: a lone surrogate (a property that was
    not UTF-8, an escape in a body) written as its escape sequence."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_text(value) -> bool:
    """A str that encodes as UTF-8 (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Unreadable(ValueError):
    """A JSON text Python reads into something no store keeps (NaN, 1e400)."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unreadable(f"the number {text[:40]} is out of range")
    return number


def _no_constant(name: str):
    raise _Unreadable(f"{name} is not a JSON value")


def decode_body(raw: bytes):
    """The JSON document ``raw`` holds; ValueError saying, for the publisher, why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ValueError("is not JSON this service reads: nested too deeply") from None
    except _Unreadable as exc:
        raise ValueError(f"is not JSON this service reads: {exc}") from None
    except ValueError:
        raise ValueError("is not JSON this service reads: an integer of more than 4300 digits") from None


def unstorable_text(payload) -> str | None:
    """Why a decoded submission cannot be kept as it is, or None: a JSON escape such as
    "\\ud800" decodes to text no store can write."""
    try:
        json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return "is not Unicode text: it escapes a lone surrogate"
    except RecursionError:
        return "is nested too deeply"
    return None


def parse_delivery(delivery: Delivery) -> tuple[dict | None, dict]:
    """The submission a delivery carries, with the channel from its routing key, or the
    errors that make it unparseable (keyed ``properties.*``, ``routing_key``, ``body``)."""
    errors: dict[str, list[str]] = {}
    app_id, message_id = delivery.properties.get("app_id"), delivery.properties.get("message_id")
    if not app_id:
        errors["properties.app_id"] = ["is required"]
    elif not (isinstance(app_id, str) and APP_ID.match(app_id)):
        errors["properties.app_id"] = ["must be an ASCII code of at most 128 characters"]
    if not message_id:
        errors["properties.message_id"] = ["is required"]
    elif not (isinstance(message_id, str) and is_text(message_id)):
        errors["properties.message_id"] = ["is not UTF-8"]
    content_type = delivery.properties.get("content_type")
    if content_type != "application/json":
        errors["properties.content_type"] = [f"must be application/json, not {storable(str(content_type))!r}"]
    routing_key = delivery.routing_key
    if not routing_key.startswith(ROUTING_PREFIX) or routing_key.count(".") != 2 or not is_text(routing_key):
        errors["routing_key"] = [f"must be {ROUTING_PREFIX}<channel>, not {storable(routing_key)!r}"]
    if len(delivery.body) > MAX_BODY_BYTES:
        errors["body"] = [f"is too large: {len(delivery.body)} bytes, at most {MAX_BODY_BYTES}"]
        return None, errors
    try:
        body = decode_body(delivery.body)
    except ValueError as exc:
        errors["body"] = [str(exc)]
        return None, errors
    if not isinstance(body, dict):
        errors["body"] = ["must be a JSON object"]
        return None, errors
    if errors:
        return None, errors
    return dict(body, channel=routing_key[len(ROUTING_PREFIX):]), {}


class Intake:
    """The system of record's write side for new submissions, and its read side."""

    def __init__(self, db, serial_block: int = 50, load_policy_book=load_policies, load_calendar_book=load_calendars,
                 window: ReceivedWindow = ReceivedWindow(), notice_policy: notices.NoticePolicy | None = None):
        self.db = db
        self.window = window
        self.complaints = db["complaints"]
        self.merged = db[MERGED]
        self.serials = ids.SerialBlocks(db["serials"], block=serial_block)
        self.policies = load_policy_book()
        self.calendars = load_calendar_book()
        self.lifecycle = Lifecycle.load()
        self.contacts = Contacts.load()
        self.notices = Notices(db, self.policies, notice_policy)
        self.organization = AnnouncedOrganization(db)
        self.records = Records(self)

    # -- the organization intake validates against -------------------------------------

    def known_units(self) -> dict | None:
        """institution -> set of unit codes, as routing last announced; None before that."""
        return self.organization.institutions()

    def organization_changed(self, event: dict) -> None:
        self.organization.keep(event)

    # -- submissions ---------------------------------------------------------------------

    def submit_delivery(self, delivery: Delivery, outbox) -> Outcome:
        """A message from ``complaints.inbound``: one receipt for it, whatever it holds."""
        payload, errors = parse_delivery(delivery)
        if payload is None:
            # Answered on receipt.unknown when the app_id cannot name a routing key.
            app_id = None if "properties.app_id" in errors else delivery.properties["app_id"]
            message_id = delivery.properties.get("message_id")
            message_id = storable(message_id) if isinstance(message_id, str) and message_id else None
            return self._reject(app_id, message_id, None, errors, outbox, delivery=delivery, kind="unparseable")
        return self.submit(payload, delivery.properties["app_id"], delivery.properties["message_id"], outbox,
                           delivery=delivery)

    def submit(self, payload: dict, app_id: str, message_id: str, outbox, delivery: Delivery | None = None,
               submitter: dict | None = None) -> Outcome:
        """One receipt for one submission: ``accepted``, ``duplicate`` or ``rejected``.

        A submission naming ``repeat_of`` (the agent knows the customer called back about
        an earlier complaint) is looked up by that number:

        - unknown, or a complaint of another institution: rejected, ``{"repeat_of": [...]}``;
          received before the complaint it repeats: rejected, ``{"received_at": [...]}``.
        - open (lifecycle) and the repeat received within its limit (``received_at`` not
          after its ``due_by``; a paused clock or one without a due date has not run out):
          merged into it, no new complaint. The receipt is ``accepted`` with the open
          complaint's number and current due date, and ``merged_into`` naming it;
          ``complaint_repeated`` tells SLA, which restarts the open complaint's clock from
          the repeat's ``received_at`` when ``new_facts`` is true.
        - closed or withdrawn, or received after the limit ran out: a new complaint, as the
          customer complains again; it keeps ``repeat_of`` (and the history says why it was
          not merged).

        The same message delivered again is a ``duplicate`` with the first answer's number,
        whether it was merged or became a complaint.

        ``submitter`` (over HTTP: who submits) must be of the institution named, unless
        ``for_any_institution``: else ``Forbidden``, nothing kept (the caller has the answer).
        """
        unstorable = unstorable_text(payload)
        if unstorable is not None:
            return self._reject(app_id, message_id, None, {"body": [unstorable]}, outbox,
                                delivery=delivery, payload=payload, kind="invalid")
        external_id = payload.get("external_id") if isinstance(payload.get("external_id"), str) else None
        try:
            data = SubmissionSchema(known_units=self.known_units(), window=self.window).load(payload)
            self._contact(data)
        except ValidationError as exc:
            # A redelivery of an accepted message is a duplicate, whatever holds now.
            first = self._first_of(app_id, message_id)
            if first is not None:
                return self._duplicate(first, message_id, outbox)
            return self._reject(app_id, message_id, external_id, flatten_errors(exc.messages), outbox,
                                delivery=delivery, payload=payload, kind="invalid")
        self._check_submitter(data, submitter)
        try:
            if data.get("repeat_of"):
                return self._repeat(data, app_id, message_id, outbox, delivery, payload)
            return self._accept(data, app_id, message_id, outbox)
        except DuplicateKeyError:
            # Delivered before (or to another instance at once): the stored one is the answer.
            return self._duplicate(self._first_of(app_id, message_id), message_id, outbox)
        except PromiseRefused as exc:
            first = self._first_of(app_id, message_id)
            if first is not None:
                return self._duplicate(first, message_id, outbox)
            return self._reject(app_id, message_id, data.get("external_id"), {"reply_within_days": [str(exc)]},
                                outbox, delivery=delivery, payload=payload, kind="invalid")

    def _check_submitter(self, data: dict, submitter: dict | None) -> None:
        if submitter is None or for_any_institution(submitter.get("roles"), data["channel"]):
            return
        units = (self.known_units() or {}).get(data["institution"])
        if units is not None and submitter.get("unit") not in units:
            raise Forbidden(f"you may submit complaints only for your own institution, not {data['institution']}",
                            {"institution": [f"is not the institution of your unit {submitter.get('unit')}"]})

    def _first_of(self, app_id, message_id) -> dict | None:
        """The first answer to a message: the complaint it created, or the merge it made."""
        key = {"app_id": app_id, "message_id": message_id}
        return self.complaints.find_one(key) or self.merged.find_one(key)

    # -- repeats of an earlier complaint ------------------------------------------------

    def _repeat(self, data: dict, app_id: str, message_id: str, outbox, delivery, payload) -> Outcome:
        """A submission naming ``repeat_of``: merged, rejected or a new complaint (see ``submit``)."""
        # Answered before: decide nothing again (the open complaint may have closed since).
        first = self._first_of(app_id, message_id)
        if first is not None:
            return self._duplicate(first, message_id, outbox)
        number = data["repeat_of"]
        received_at = timeutil.local(data["received_at"])

        def decide() -> Outcome:
            earlier = self.complaints.find_one({"_id": number})
            if earlier is None or earlier["institution"] != data["institution"]:
                errors = {"repeat_of": [f"no complaint {number} of {data['institution']} to repeat"]}
                return self._reject(app_id, message_id, data.get("external_id"), errors, outbox,
                                    delivery=delivery, payload=payload, kind="invalid")
            if received_at < timeutil.local(earlier["received_at"]):
                errors = {"received_at": [f"is before complaint {number} was received; a repeat comes after it"]}
                return self._reject(app_id, message_id, data.get("external_id"), errors, outbox,
                                    delivery=delivery, payload=payload, kind="invalid")
            unmergeable = self._why_not_merged(earlier, received_at)
            if unmergeable is not None:
                return self._accept(data, app_id, message_id, outbox, not_merged=unmergeable)
            return self._merge(data, app_id, message_id, outbox)  # Stale: closed, or its limit moved, meanwhile

        return retry_on_conflict(decide, f"complaint {number}, while a repeat was merged into it,")

    def _why_not_merged(self, complaint: dict, received_at) -> str | None:
        """None when a repeat received at ``received_at`` merges into ``complaint``; else why not."""
        if not self.lifecycle.is_open(complaint["status"]):
            return complaint["status"]  # closed or withdrawn: the customer complains again
        due_by = complaint.get("due_by")
        if complaint["sla"].get("state") == "paused" or due_by is None:
            return None  # the limit is not running out meanwhile
        if received_at > timeutil.local(due_by):
            return "after_limit"
        return None

    def _merge(self, data: dict, app_id: str, message_id: str, outbox) -> Outcome:
        """Merge a repeat into the open complaint it names, in one transaction: the message
        kept (one merge per message), the complaint's repeats and history, the event for SLA
        and the receipt."""
        number = data["repeat_of"]
        received_at = timeutil.local(data["received_at"])
        source = "http" if app_id == HTTP_APP_ID else "amqp"
        actor = f"{source}:{app_id}"
        now = timeutil.now()
        repeat = {
            "received_at": received_at, "channel": data["channel"], "app_id": app_id, "message_id": message_id,
            "external_id": data.get("external_id"), "description": data["description"],
            "demand": data.get("demand"), "new_facts": data["new_facts"],
        }
        entry = {"at": now, "type": "complaint_repeated", "actor": actor,
                 "details": {"received_at": timeutil.iso(received_at), "channel": data["channel"],
                             "message_id": message_id, "external_id": data.get("external_id"),
                             "new_facts": data["new_facts"]}}
        # at: the new material's receipt, from which SLA counts the limit again. complaint_no
        # and repeat_of both name the open complaint: the clock SLA restarts is repeat_of's.
        event = events.make_event("complaint_repeated", number, {
            "complaint_no": number, "at": timeutil.iso(received_at), "actor": actor, "repeat_of": number,
            "new_facts": data["new_facts"], "channel": data["channel"]}, PRODUCER)

        def store(session):
            complaint = self.complaints.find_one({"_id": number}, session=session)
            if complaint is None or self._why_not_merged(complaint, received_at) is not None:
                raise Stale(f"complaint {number} changed meanwhile")
            receipt = {"complaint_no": number, "status": complaint["status"],
                       "due_by": timeutil.iso(complaint.get("due_by"))}
            if complaint["sla"].get("provisional"):
                receipt["provisional"] = True
            merged = {"_id": ids.new_id(), "app_id": app_id, "message_id": message_id, "source": source,
                      "external_id": data.get("external_id"), "complaint_no": number, "merged_into": number,
                      "new_facts": data["new_facts"], "received_at": received_at, "at": now, "receipt": receipt}
            self.merged.insert_one(merged, session=session)
            self.complaints.update_one({"_id": number},
                                       {"$push": {"repeats": repeat, "history": entry}, "$inc": {"version": 1}},
                                       session=session)
            messages = [event_message(event)]
            if source == "amqp":
                answer = {"message_id": message_id, "external_id": data.get("external_id"), "status": "accepted",
                          "complaint_no": number, "due_by": receipt["due_by"], "errors": {}, "merged_into": number,
                          **({"provisional": True} if receipt.get("provisional") else {})}
                messages.append(outbound.receipt(app_id, answer))
            outbox.stage(session, *messages)
            return merged

        return Outcome("accepted", in_transaction(self.db, store))

    def _main_clock(self, data: dict, received_at: datetime) -> DueOnReceipt:
        """The policy that applies, the clock it starts on receipt and its due date: with the
        reply time promised for a suggestion, that limit (``PromiseRefused`` when the policy
        takes no such promise)."""
        policy = clock = None
        try:
            policy = self.policies.select(data["institution"], data["kind"], data["channel"], received_at)
            clock = policy.primary_clock
            if data.get("reply_within_days") is not None:
                clock = clock.promised(data["reply_within_days"])
            calendar = self.calendars.for_institution(data["institution"])
            due_by = clock.due_by(received_at, calendar=calendar)
        except NoDueDate as exc:
            log.warning("complaint of %s received %s gets no due date: %s", data["institution"],
                        received_at.isoformat(), exc)
            metrics.DUE_DATES.labels(PRODUCER, "unavailable").inc()
            return DueOnReceipt(policy and policy.code, clock and clock.name, None, error=str(exc))
        provisional = bool(clock.provisional_years(received_at, due_by, calendar))
        metrics.DUE_DATES.labels(PRODUCER, "provisional" if provisional else "final").inc()
        return DueOnReceipt(policy.code, clock.name, due_by, provisional,
                            description=clock.description or str(clock.limit))

    def _contact(self, data: dict) -> dict:
        """The institution's own contact the acknowledgement names; a submission for an
        institution without one is refused (``contacts``)."""
        contact = self.contacts.of(data["institution"], data.get("branch"))
        if contact is None:
            raise ValidationError({"institution": [
                f"{data['institution']} has no contact for its customers (services/intake/data/contacts.yaml)"]})
        return contact

    def _accept(self, data: dict, app_id: str, message_id: str, outbox, not_merged: str | None = None) -> Outcome:
        received_at = timeutil.local(data["received_at"])
        due = self._main_clock(data, received_at)
        due_by = due.due_by
        complaint_no = ids.format_complaint_no(data["institution"], received_at,
                                               self.serials.next(data["institution"]))
        now = timeutil.now()
        home_unit = data.get("branch") or data["institution"]
        receipt = {"complaint_no": complaint_no, "status": "received", "due_by": timeutil.iso(due_by)}
        if due.provisional:
            receipt["provisional"] = True
        source = "http" if app_id == HTTP_APP_ID else "amqp"
        received = {"channel": data["channel"], "policy": due.policy}
        if due.error:
            received["no_due_date"] = due.error
        if data.get("repeat_of"):
            # A repeat not merged (see ``submit``): a complaint of its own that names the earlier one.
            received.update(repeat_of=data["repeat_of"], not_merged=not_merged)
        complaint = {
            "_id": complaint_no,
            "complaint_no": complaint_no,
            "app_id": app_id,
            "message_id": message_id,
            "source": source,
            **{key: value for key, value in data.items() if key != "received_at"},
            "received_at": received_at,
            "registered_at": now,
            "status": "received",
            "unit": home_unit,
            "first_responder": {"unit": home_unit, "staff": data.get("staff_id")},
            "assignment": None,
            "transfers": [],
            "sla": {"policy": due.policy, "clock": due.clock, "due_by": due_by, "state": "on_track",
                    "provisional": due.provisional, "error": due.error},
            "due_by": due_by,
            "receipt": receipt,
            "history": [{"at": now, "type": "complaint_received", "actor": f"{source}:{app_id}",
                         "details": received}],
            "version": 1,
        }
        event = events.make_event("complaint_received", complaint_no, self._received_body(complaint), PRODUCER)
        messages = [event_message(event)]
        if source == "amqp":
            messages.append(outbound.receipt(app_id, {
                "message_id": message_id, "external_id": data.get("external_id"), "status": "accepted",
                "complaint_no": complaint_no, "due_by": receipt["due_by"], "errors": {},
                **({"provisional": True} if due.provisional else {})}))
        notice = self.notices.compose(complaint, "acknowledged", {
            "complaint_no": complaint_no,
            "kind": data["kind"],
            "received_at": timeutil.iso(received_at),
            "due_by": receipt["due_by"],
            "provisional": due.provisional,
            "time_limit": due.description,
            "contact": self._contact(data),
            **({"reply_within_days": data["reply_within_days"]} if data.get("reply_within_days") else {}),
        }, ("complaint_received", now), now)

        def store(session):
            self.complaints.insert_one(complaint, session=session)
            outbox.stage(session, *messages, *self.notices.keep(session, [notice]))

        in_transaction(self.db, store)
        return Outcome("accepted", complaint)

    @staticmethod
    def _received_body(complaint: dict) -> dict:
        """The event carries what other services need, and no personal data."""
        return {
            "complaint_no": complaint["complaint_no"],
            "institution": complaint["institution"],
            "branch": complaint.get("branch"),
            "kind": complaint["kind"],
            "channel": complaint["channel"],
            "product": complaint["product"],
            "received_at": timeutil.iso(complaint["received_at"]),
            "policy": complaint["sla"]["policy"],
            "due_by": timeutil.iso(complaint["due_by"]),
            "amount_in_dispute": complaint.get("amount_in_dispute"),
            "currency": complaint.get("currency"),
            "direct": complaint.get("direct", False),
            "regulator_ref": complaint.get("regulator_ref"),
            "staff_id": complaint.get("staff_id"),
            "respondent_staff": complaint.get("respondent_staff", []),
            "group_size": complaint.get("group_size", 1),
            "cause_event": complaint.get("cause_event"),
            "reply_within_days": complaint.get("reply_within_days"),
            "app_id": complaint["app_id"],
            "external_id": complaint.get("external_id"),
        }

    def _duplicate(self, first: dict, message_id: str, outbox) -> Outcome:
        if first["source"] == "amqp":
            body = {"message_id": message_id, "external_id": first.get("external_id"), "status": "duplicate",
                    "complaint_no": first["complaint_no"], "due_by": first["receipt"]["due_by"], "errors": {}}
            if first.get("merged_into"):
                body["merged_into"] = first["merged_into"]
            if first["receipt"].get("provisional"):
                body["provisional"] = True
            outbox.stage(None, outbound.receipt(first["app_id"], body))
        return Outcome("duplicate", first)

    def _reject(self, app_id, message_id, external_id, errors, outbox, *, kind, delivery=None, payload=None) -> Outcome:
        """Answer with the errors and keep the message whole for an operator, in a form the
        store takes whatever the message holds: the errors as a list (a field path may hold
        a NUL byte, a dot or a dollar), properties and headers as JSON text, the body as
        bytes, or in GridFS when it is larger than a document may be."""
        kept = {
            "_id": ids.new_id(),
            "kind": kind,
            "app_id": storable(app_id),
            "message_id": storable(message_id),
            "errors": [{"field": storable(path), "messages": [storable(m) for m in messages]}
                       for path, messages in errors.items()],
            "at": timeutil.now(),
        }
        if delivery is not None:
            kept.update(routing_key=storable(delivery.routing_key),
                        properties=_json_text(delivery.properties), headers=_json_text(delivery.headers),
                        body_bytes=len(delivery.body))
            if len(delivery.body) > MAX_BODY_BYTES:
                kept["body_file"] = self._keep_large_body(delivery.body)
            else:
                kept["body"] = Binary(delivery.body)
        else:
            kept["payload"] = _json_text(payload)
        answers = [] if delivery is None else [outbound.receipt(app_id, {
            "message_id": message_id, "external_id": external_id, "status": "rejected",
            "complaint_no": None, "due_by": None, "errors": errors})]

        def keep(session):
            self.db["rejections"].insert_one(kept, session=session)
            outbox.stage(session, *answers)

        in_transaction(self.db, keep)
        return Outcome("rejected", errors=errors)

    def _keep_large_body(self, body: bytes) -> str:
        """Store ``body`` in GridFS under its SHA-256 (GridFS takes no transaction: a retry
        after a failure finds the same file, or replaces the chunks of one cut short)."""
        file_id = hashlib.sha256(body).hexdigest()
        if self.db[f"{REJECTED_BODIES}.files"].find_one({"_id": file_id}, {"_id": 1}) is None:
            bucket = GridFSBucket(self.db, bucket_name=REJECTED_BODIES)
            with suppress(NoFile):
                bucket.delete(file_id)  # chunks of an upload a crash cut short
            bucket.upload_from_stream_with_id(file_id, "rejected-body", body)
        return file_id

    # -- reading -------------------------------------------------------------------------

    def health(self) -> dict:
        """Up, with what an operator watches: messages not yet relayed, rejections kept, the
        alert of open complaints without a due date (the policy or calendar data could not
        give one; also the ``complaints_without_due_date`` metric), notices and reports that
        need an operator, institutions without a contact for their customers."""
        without = self.complaints.count_documents({"due_by": None, "status": {"$in": self.lifecycle.open_statuses()}})
        metrics.WITHOUT_DUE_DATE.labels(PRODUCER).set(without)
        known = self.known_units()
        return {
            "status": "ok",
            "outbox_pending": outbox_pending(self.db),
            "rejections_kept": self.db["rejections"].estimated_document_count(),
            "complaints_without_due_date": without,
            **self.notices.health(),
            # The organization's institutions whose submissions are refused for want of a contact.
            "institutions_without_contact": self.contacts.missing(known or ()),
        }

    def rejections(self, limit: int = 50) -> list[dict]:
        """The newest rejected messages, as kept, for an operator to inspect (a body kept in
        GridFS is named by ``body_file``, in the bucket ``rejected_bodies``)."""
        kept = self.db["rejections"].find().sort("at", DESCENDING).limit(limit)
        return [{**row, "_id": str(row["_id"]), "at": timeutil.iso(row["at"]),
                 "errors": {entry["field"]: entry["messages"] for entry in row["errors"]},
                 "body": bytes(row["body"]).decode("utf-8", errors="replace") if "body" in row else None}
                for row in kept]

    def visible(self, complaint_no: str, visible_units: list[str] | None) -> dict:
        """The stored complaint, if its accountable unit is one the caller may see; else
        NotFound, as if it did not exist (None: every unit)."""
        query = {"_id": complaint_no, **within(visible_units)}
        complaint = self.complaints.find_one(query)
        if complaint is None:
            raise NotFound(f"no complaint {complaint_no}")
        return complaint

    def get(self, complaint_no: str, visible_units: list[str] | None) -> dict:
        complaint = self.visible(complaint_no, visible_units)
        # An extension of the view: what the lifecycle allows now (consoles, and services that
        # act on a complaint, such as mediation, ask it rather than keep a copy of the rules).
        return dict(view(complaint, self.notices.of_complaint(complaint_no)),
                    allowed_actions=self.lifecycle.actions_from(complaint["status"]))

    def access_facts(self, complaint_no: str) -> dict:
        return access_facts(self.visible(complaint_no, None)).as_dict()

    def get_when_applied(self, complaint_no: str, event_ids: list[str], visible_units: list[str] | None,
                         wait: float = APPLIED_WAIT) -> dict:
        """The complaint once this record has applied every fact ``event_ids`` names (what
        another service's action announced), waiting ``wait`` seconds at most: ``applied``
        says whether it had. An action may take the complaint out of the caller's reach (a
        refused transfer goes up): then the caller is told its number, status and unit."""
        deadline = time.monotonic() + wait
        while not (applied := self._applied(event_ids)) and time.monotonic() < deadline:
            time.sleep(APPLIED_POLL)
        try:
            return {"applied": applied, "complaint": self.get(complaint_no, visible_units)}
        except NotFound:
            if not applied:
                raise
        complaint = self.visible(complaint_no, None)
        return {"applied": True, "complaint": {key: complaint[key] for key in ("complaint_no", "status", "unit")}}

    def _applied(self, event_ids: list[str]) -> bool:
        # The inbox keeps the id of every fact applied (services.common.inbox).
        wanted = set(event_ids)
        return self.db[inbox.COLLECTION].count_documents({"_id": {"$in": sorted(wanted)}}) == len(wanted)

    def list(self, filters: dict, visible_units: list[str] | None, limit: int = 50, cursor: str | None = None) -> dict:
        query: dict = within(visible_units)
        if filters.get("unit"):
            query.setdefault("$and", []).append({"unit": filters["unit"]})
        if filters.get("status"):
            query["status"] = filters["status"]
        received = {}
        try:
            if filters.get("from"):
                received["$gte"] = timeutil.parse_bound(filters["from"])
            if filters.get("to"):
                received["$lt"] = timeutil.parse_bound(filters["to"], upper=True)
        except ValueError as exc:
            raise Invalid("from and to are dates or times with an offset", {"from/to": [str(exc)]}) from None
        if received:
            query["received_at"] = received
        if filters.get("overdue") is not None:
            overdue = {"due_by": {"$gte": timeutil.EPOCH, "$lt": timeutil.now()},
                       "status": {"$in": self.lifecycle.open_statuses()}}
            query.setdefault("$and", []).append(overdue if filters["overdue"] else {"$nor": [overdue]})
        if cursor:
            at, last_no = decode_cursor(cursor)
            query.setdefault("$and", []).append(
                {"$or": [{"received_at": {"$lt": at}}, {"received_at": at, "_id": {"$lt": last_no}}]})
        page = list(self.complaints.find(query).sort([("received_at", DESCENDING), ("_id", DESCENDING)])
                    .limit(limit + 1))
        next_cursor = encode_cursor(page[limit - 1]) if len(page) > limit else None
        return {"items": [summary(c) for c in page[:limit]], "next_cursor": next_cursor}


def _json_text(value) -> str:
    """JSON text a store takes whatever ``value`` holds (keys MongoDB refuses, lone surrogates)."""
    return json.dumps(value, ensure_ascii=True, default=str)


def within(visible_units) -> dict:
    """The complaints a caller may see: those their units are accountable for, and those a
    pending transfer offers to one of their units (None: every unit)."""
    if visible_units is None:
        return {}
    units = list(visible_units)
    return {"$or": [{"unit": {"$in": units}}, {"transfer_to": {"$in": units}}]}


def encode_cursor(complaint: dict) -> str:
    raw = json.dumps([timeutil.iso(complaint["received_at"]), complaint["_id"]])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str):
    try:
        at, last_no = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return timeutil.parse(at), str(last_no)
    except (ValueError, TypeError):
        raise Invalid("the cursor is not one this service gave", {"cursor": ["is invalid"]}) from None


def summary(complaint: dict) -> dict:
    return {
        "complaint_no": complaint["complaint_no"],
        "status": complaint["status"],
        "kind": complaint["kind"],
        "channel": complaint["channel"],
        "institution": complaint["institution"],
        "branch": complaint.get("branch"),
        "unit": complaint["unit"],
        "product": complaint["product"],
        "subject": complaint["subject"],
        "received_at": timeutil.iso(complaint["received_at"]),
        "due_by": timeutil.iso(complaint.get("due_by")),
        "sla_state": complaint["sla"]["state"],
    }


def in_time_order(entries) -> list[dict]:
    """Entries recorded as facts arrived (from several services, in any order), by time."""
    return sorted(entries, key=lambda entry: timeutil.local(entry["at"]))


def view(complaint: dict, notices_sent: list[dict] = ()) -> dict:
    """The complaint as it stands (CONTRACTS.md §3), times in ISO 8601 with offset; the
    history shows each notice to the customer with the gateway's reports beside it."""
    sla = complaint["sla"]
    history = [*complaint.get("history", []), *(notices.history_entry(notice) for notice in notices_sent)]
    return {
        **summary(complaint),
        "external_id": complaint.get("external_id"),
        "customer": complaint["customer"],
        "description": complaint["description"],
        "demand": complaint.get("demand"),
        "amount_in_dispute": complaint.get("amount_in_dispute"),
        "currency": complaint.get("currency"),
        "direct": complaint.get("direct", False),
        "regulator_ref": complaint.get("regulator_ref"),
        "group_size": complaint.get("group_size", 1),
        "representatives": complaint.get("representatives", []),
        "cause_event": complaint.get("cause_event"),
        "reply_within_days": complaint.get("reply_within_days"),
        "respondent_staff": complaint.get("respondent_staff", []),
        "assignment": complaint.get("assignment"),
        "priority": complaint.get("priority"),
        "flags": complaint.get("flags", []),
        "first_responder": complaint["first_responder"],
        "transfers": [{**entry, "at": timeutil.iso(entry["at"])}
                      for entry in in_time_order(complaint.get("transfers", []))],
        "sla": {"policy": sla["policy"], "due_by": timeutil.iso(sla.get("due_by")), "state": sla["state"],
                "provisional": bool(sla.get("provisional")), "error": sla.get("error")},
        "mediation": complaint.get("mediation"),
        "decision": _decision_view(complaint.get("decision")),
        "history": [{**entry, "at": timeutil.iso(entry["at"])} for entry in in_time_order(history)],
    }


def _decision_view(decision: dict | None) -> dict | None:
    """The decision, with when the customer received it and until when they may ask for a review."""
    if decision is None:
        return None
    times = ("at", "delivered_at", "review_until")
    return {**{k: v for k, v in decision.items() if k not in times},
            **{k: timeutil.iso(decision.get(k)) for k in times}}
