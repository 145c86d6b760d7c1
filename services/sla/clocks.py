"""The SLA service's domain: durable clocks over the shared policy engine.

One document per (complaint, clock) in the ``clocks`` collection. Due dates, warning points
and extensions come from ``services.common.policy`` only, through ``schedule`` (the pure
computation of a clock's schedule); this module stores what it computes and fires it; the
recompute job after a calendar change is ``rescheduling``. Driven by ``service.py`` (events,
RPC, the timers) and directly by tests with an injected ``now``; it never touches the
broker: every event is staged in the outbox within the transaction of the change it
announces.

A clock document::

    _id            "<complaint_no>/<clock>"
    complaint_no, clock, policy, institution, unit
    state          running | paused | met | breached (decided late) |
                   breached_open (limit passed, still open) | stopped (withdrawn)
    started_at     when the clock counts from (receipt, review request, new material)
    pauses         [{start, end|None, reason, ground, evidence, actor, approvers, approval_id,
                    referral_id (a pause for mediation)}]
    total          the limit in force, in the clock's unit (base limit + extensions)
    promised_limit the limit promised to the customer (a suggestion's reply time) or in a
                   mediation agreement (its carry-out date), which replaces the policy's; None
                   when none was promised
    extensions     [{days, total, reason, approved_by (positions), approvers (people), approval_id,
                    actor, at, previous_due_by}]
    due_by         None while paused (or when no calendar can count the year)
    provisional    the due date was counted on a calendar year not published yet
    calendar_error why no due date (or no warning) could be computed, else None
    points         [{label, at, fired_at}], earliest first; the breach is label "breach"
    next_fire_at   the earliest unfired point of a running clock, else None (indexed)
    generation     bumped when the limit is set anew (extension, restart): warnings re-arm
    version        bumped by every change; every update is conditional on it

A complaint whose policy the data lacks (intake answered it without a due date) is kept in
``unscheduled`` until the data is fixed and the recompute starts its clock.

Firing (``sweep``): one indexed range query on ``next_fire_at`` finds what is due (its cost
grows with what is due, not with the open clocks); each point fires in ONE transaction that
re-reads the clock, advances it under the condition ``{version, next_fire_at}`` and stages
the event. Of two instances racing on a point exactly one commits; the loser either meets
a write conflict (retried, then finds the version moved) or reads the advanced clock. The
event id of a point is derived from (clock, generation, label), so even a second staging of
the same point would collide on the outbox's ``_id``.

Event ``at`` is when the SLA service recorded the fact (intake orders the facts of one
owner by it); the body also carries ``point_at`` (the scheduled moment of a warning or
breach) or ``decided_at`` (for ``sla_met``), and ``provisional``.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as dt_time
from functools import partial

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common import approvals, events, inbox, metrics, timeutil
from services.common.access import RULE_BOOK, Caller, Facts
from services.common.approvals import Approvals, approver
from services.common.errors import Conflict, Invalid, NotFound
from services.common.orgtree import AnnouncedOrganization
from services.common.outbox import event_message
from services.common.outbox import pending as outbox_pending
from services.common.policy import (
    SHANGHAI,
    ClockRule,
    ExtensionRefused,
    ExtensionStep,
    NoDueDate,
    ReviewWindowClosed,
    UnknownClock,
    book_loaders,
    load_calendars,
    load_policies,
)
from services.common.policy.grounds import load_pause_grounds
from services.common.store import in_transaction
from services.sla import schedule
from services.sla.rescheduling import INDEXES as RESCHEDULING_INDEXES
from services.sla.rescheduling import Rescheduling
from services.sla.schedule import BREACH, point_event_id

log = logging.getLogger(__name__)

PRODUCER = "sla"
COLLECTION = "clocks"
UNSCHEDULED = "unscheduled"
META = "meta"
MEDIATION = "mediation"  # the pause ground (policies.yaml) from a referral to the end of the mediation
AGREEMENT_CLOCK = "agreement_performance"
OPEN_STATES = ("running", "paused", "breached_open")

INDEXES = {
    COLLECTION: [
        IndexModel([("next_fire_at", ASCENDING)], name="due"),
        IndexModel([("complaint_no", ASCENDING)], name="by_complaint"),
        # The recompute walks the open clocks a calendar can move, in _id order.
        IndexModel([("calendar_bound", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)], name="calendar_walk"),
        IndexModel([("calendar_error", ASCENDING)], name="calendar_error"),
    ],
    UNSCHEDULED: [IndexModel([("institution", ASCENDING), ("_id", ASCENDING)], name="by_institution")],
    inbox.COLLECTION: list(inbox.INDEXES[inbox.COLLECTION]),
    **approvals.INDEXES,
    **RESCHEDULING_INDEXES,
}
# Clocks without a due date, for the operators' alert (an indexed count).
WITHOUT_DUE_DATE = {"calendar_error": {"$gt": ""}, "due_by": None, "state": "running"}


def books(settings) -> dict:
    """The books the clocks count on, from the files the settings name: the policies and
    calendars (``book_loaders``) and the pause grounds, which are the policies file's."""
    return {**book_loaders(settings), "load_grounds": partial(load_pause_grounds, settings.policies_path)}


def clock_id(complaint_no: str, clock: str) -> str:
    return f"{complaint_no}/{clock}"


def _local(moment):
    return None if moment is None else timeutil.local(moment)


class Clocks:
    """Durable clocks: start, stop, pause, extend, restart, and fire what is due."""

    def __init__(self, db, now: Callable[[], datetime] = timeutil.now,
                 load_policy_book=load_policies, load_calendar_book=load_calendars,
                 load_grounds=load_pause_grounds):
        self.db = db
        self.clocks = db[COLLECTION]
        self.unscheduled = db[UNSCHEDULED]
        self.now = now
        self._load_policy_book = load_policy_book
        self._load_calendar_book = load_calendar_book
        self._load_grounds = load_grounds
        self.organization = AnnouncedOrganization(db)
        self.approvals = Approvals(db, PRODUCER)
        self._reload()
        self.rescheduling = Rescheduling(self)

    # -- computing a clock's schedule ---------------------------------------------------

    def _rule(self, doc: dict) -> ClockRule:
        rule = self.policies.get(doc["policy"]).clock(doc["clock"])
        # A promise (to the customer, or in a mediation agreement) stands, whatever the policy's
        # bounds became since.
        return rule if doc.get("promised_limit") is None else rule.with_limit(doc["promised_limit"])

    def _calendar(self, doc: dict):
        return self.calendars.for_institution(doc.get("institution"))

    def _schedule(self, doc: dict, now: datetime, *, rearm: bool = False) -> dict:
        """The fields a clock's due date determines (``schedule.compute``)."""
        return schedule.compute(doc, self._rule(doc), self._calendar(doc), now, rearm=rearm)

    def _new_clock(self, complaint_no: str, rule: ClockRule, started_at: datetime, *, institution: str,
                   unit: str | None, now: datetime, promised_limit: int | None = None) -> dict:
        if promised_limit is not None:
            rule = rule.with_limit(promised_limit)
        doc = {
            "_id": clock_id(complaint_no, rule.name),
            "complaint_no": complaint_no,
            "clock": rule.name,
            "policy": rule.policy,
            "institution": institution,
            "unit": unit,
            "limit_unit": rule.limit.unit,
            "calendar_bound": schedule.calendar_bound(rule),
            "state": "running",
            "started_at": started_at,
            "pauses": [],
            "total": rule.limit.value,
            "promised_limit": promised_limit,
            "extensions": [],
            "warned": [],
            "breached": False,
            "generation": 0,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "ended_at": None,
        }
        doc.update(self._schedule(doc, now))
        return doc

    # -- events ---------------------------------------------------------------------------

    def _event(self, name: str, doc: dict, now: datetime, actor: str | None = None, **extra) -> dict:
        body = {
            "complaint_no": doc["complaint_no"],
            "at": timeutil.iso(now),
            "actor": actor,
            "policy": doc["policy"],
            "clock": doc["clock"],
            "due_by": timeutil.iso(_local(doc.get("due_by"))),
            "provisional": bool(doc.get("provisional")),
            **extra,
        }
        return events.make_event(name, doc["complaint_no"], body, PRODUCER)

    def _transaction(self, event: dict | None, work):
        """Run ``work(session)`` once per event (inbox marker in the same transaction)."""

        def run(session):
            if event is not None and not inbox.first_time(self.db, session, event):
                return None
            return work(session)

        return in_transaction(self.db, run)

    def _open(self, complaint_no: str, states=OPEN_STATES, session=None) -> list[dict]:
        return list(self.clocks.find({"complaint_no": complaint_no, "state": {"$in": list(states)}},
                                     session=session).sort("started_at", ASCENDING))

    def _replace(self, session, doc: dict, changes: dict) -> None:
        """Write ``changes`` to the clock, on the condition that nobody changed it since we read."""
        result = self.clocks.update_one(
            {"_id": doc["_id"], "version": doc["version"]},
            {"$set": {**changes, "updated_at": self.now()}, "$inc": {"version": 1}},
            session=session,
        )
        if result.matched_count != 1:
            raise Conflict("the clock changed meanwhile; try again", {"clock": [doc["clock"]]})
        doc.update(changes)
        doc["version"] += 1

    # -- facts from intake --------------------------------------------------------------

    def on_received(self, event: dict, outbox) -> None:
        """``complaint_received``: start the policy's primary clock from ``received_at``."""
        self._transaction(event, lambda session: self.start_received(event["body"], session, outbox))

    def start_received(self, body: dict, session, outbox) -> bool:
        """Start the primary clock of a received complaint, within ``session``, with the reply
        time promised to the customer if one was (a suggestion); False when the policy data
        lacks what it needs: the complaint is then kept in ``unscheduled`` (an operator's
        alert) until the data is fixed and the recompute starts it."""
        now = self.now()
        try:
            rule = self._primary_rule(body)
        except NoDueDate as exc:
            log.warning("complaint %s has no clock: %s", body["complaint_no"], exc)
            metrics.DUE_DATES.labels(PRODUCER, "unavailable").inc()
            self.unscheduled.replace_one(
                {"_id": body["complaint_no"]},
                {"institution": body["institution"], "body": body, "error": str(exc), "at": now},
                upsert=True, session=session)
            return False
        doc = self._new_clock(body["complaint_no"], rule, timeutil.parse(body["received_at"]),
                              institution=body["institution"], unit=body.get("branch") or body["institution"],
                              now=now, promised_limit=body.get("reply_within_days"))
        doc["kind"] = body.get("kind")
        if self.clocks.find_one({"_id": doc["_id"]}, {"_id": 1}, session=session):
            return True  # the same complaint announced twice: its clock runs already
        metrics.DUE_DATES.labels(PRODUCER, self._due_date_outcome(doc)).inc()
        self.clocks.insert_one(doc, session=session)
        outbox.stage(session, event_message(self._event(
            "sla_started", doc, now, None, started_at=timeutil.iso(_local(doc["started_at"])))))
        return True

    def _primary_rule(self, body: dict) -> ClockRule:
        """The clock a complaint starts on receipt, under the policy intake chose; with none
        (intake's data lacked it), the policy this service's data selects."""
        if body.get("policy"):
            return self.policies.get(body["policy"]).primary_clock
        return self.policies.select(body["institution"], body["kind"], body.get("channel"),
                                    timeutil.parse(body["received_at"])).primary_clock

    @staticmethod
    def _due_date_outcome(doc: dict) -> str:
        if doc.get("due_by") is None and doc.get("calendar_error"):
            return "unavailable"
        return "provisional" if doc.get("provisional") else "final"

    def on_decided(self, event: dict, outbox) -> None:
        """``complaint_decided``: every open clock of the handling stops; ``sla_met`` says
        met or breached."""
        self._stop_open(event, outbox, _handling)

    def on_closed(self, event: dict, outbox) -> None:
        """``complaint_closed``: a clock of the handling still open (e.g. closed after
        mediation) stops too."""
        self._stop_open(event, outbox, _handling)

    def _stop_open(self, event: dict, outbox, stops: Callable[[str], bool]) -> None:
        """Stop the open clocks of the event's complaint whose name ``stops`` accepts."""
        body = event["body"]
        at = timeutil.parse(body["at"])

        def work(session):
            now = self.now()
            docs = [d for d in self._open(body["complaint_no"], session=session) if stops(d["clock"])]
            if not docs and not self.clocks.find_one({"complaint_no": body["complaint_no"]}, {"_id": 1},
                                                     session=session):
                # Facts of one complaint travel on different queues: the receipt may still be
                # on its way. Fail, so the message is retried (and parked if it never comes).
                raise NotFound(f"no clock for {body['complaint_no']} yet")
            for doc in docs:
                pauses = doc.get("pauses", [])
                if pauses and pauses[-1].get("end") is None:
                    pauses = [*pauses[:-1], dict(pauses[-1], end=max(at, _local(pauses[-1]["start"])))]
                    doc["pauses"] = pauses
                    doc.update(self._schedule(doc, now))
                due = _local(doc.get("due_by"))
                late = doc["state"] == "breached_open" or (due is not None and at > due)
                state = "breached" if late else "met"
                self._replace(session, doc, {"state": state, "pauses": pauses, "due_by": doc.get("due_by"),
                                             "next_fire_at": None, "next_label": None, "ended_at": at,
                                             "end_reason": event["type"]})
                outbox.stage(session, event_message(self._event(
                    "sla_met", doc, now, body.get("actor"), state=state, decided_at=timeutil.iso(at))))

        self._transaction(event, work)

    def on_reopened(self, event: dict, outbox) -> None:
        """``complaint_reopened``: the customer asked for a review; start the review clock.

        Intake checked the window with the same engine before accepting the request; a
        request that is out of the window here (a data change meanwhile) still starts the
        clock (the complaint *is* under review) and the refusal is logged."""
        body = event["body"]
        requested_at = timeutil.parse(body["at"])
        # The window runs from the decision's delivery to the customer when intake had it reported.
        decided_at = timeutil.parse(body.get("delivered_at") or body["decided_at"])
        now = self.now()
        source = self.clocks.find_one({"complaint_no": body["complaint_no"]}, sort=[("created_at", ASCENDING)])
        if source is None:
            raise NotFound(f"no clock for {body['complaint_no']} yet")
        policy = self.policies.get(source["policy"])
        try:
            policy.review_due_by(decided_at, requested_at, calendar=self.calendars.for_institution(
                source.get("institution")))
        except ReviewWindowClosed as exc:
            log.warning("review of %s requested out of the window: %s", body["complaint_no"], exc)
        rule = policy.clock("review")
        doc = self._new_clock(body["complaint_no"], rule, requested_at, institution=source.get("institution"),
                              unit=body.get("decided_by_unit") or source.get("unit"), now=now)
        started = self._event("sla_started", doc, now, body.get("actor"),
                              started_at=timeutil.iso(requested_at), reason=body.get("reason"))

        def work(session):
            existing = self.clocks.find_one({"_id": doc["_id"]}, session=session)
            if existing is None:
                self.clocks.insert_one(doc, session=session)
            else:
                # A second review of the same complaint: the review clock counts anew.
                fresh = {k: v for k, v in doc.items() if k not in ("_id", "version", "created_at")}
                fresh["generation"] = existing.get("generation", 0) + 1
                self._replace(session, existing, fresh)
            outbox.stage(session, event_message(started))

        self._transaction(event, work)

    def on_withdrawn(self, event: dict, outbox) -> None:
        """``complaint_withdrawn``: handling ends on the day the withdrawal is received; the
        open clocks stop without a verdict (no event: intake records the withdrawal)."""
        body = event["body"]
        at = timeutil.parse(body["at"])

        def work(session):
            for doc in self._open(body["complaint_no"], session=session):
                pauses = [dict(p, end=p.get("end") or at) for p in doc.get("pauses", [])]
                self._replace(session, doc, {"state": "stopped", "pauses": pauses, "next_fire_at": None,
                                             "next_label": None, "ended_at": at, "end_reason": "withdrawn"})

        self._transaction(event, work)

    def on_repeated(self, event: dict, outbox) -> None:
        """``complaint_repeated``: with new facts, the open clock counts again from the new
        material (``ClockRule.restart``, Order 3/2020 Art. 18); without, nothing changes.

        The clock restarted is the open complaint's: ``repeat_of`` when it names a complaint
        with clocks, else the event's own ``complaint_no``. A clock already breached stays
        breached (the limit passed before the new material came)."""
        body = event["body"]
        if not body.get("new_facts"):
            return
        at = timeutil.parse(body["at"])
        target = body.get("repeat_of") or body["complaint_no"]
        if not self.clocks.find_one({"complaint_no": target}, {"_id": 1}):
            target = body["complaint_no"]

        def work(session):
            now = self.now()
            docs = self._open(target, states=("running", "paused"), session=session)
            if not docs and not self.clocks.find_one({"complaint_no": target}, {"_id": 1}, session=session):
                raise NotFound(f"no clock for {target} yet")
            for doc in docs:
                rule = self._rule(doc)
                restarts = [*doc.get("restarts", []), {"at": at, "previous_started_at": doc["started_at"],
                                                       "previous_due_by": doc.get("due_by"),
                                                       "repeat": event["complaint_no"]}]
                fresh = {"started_at": at, "pauses": [], "total": rule.limit.value, "extensions": [],
                         "state": "running", "generation": doc.get("generation", 0) + 1, "restarts": restarts}
                staged = dict(doc, **fresh)
                # Every point counts from the new material: earlier warnings re-arm.
                staged["points"] = []
                fresh.update(self._schedule(staged, now))
                self._replace(session, doc, fresh)
                outbox.stage(session, event_message(self._event(
                    "sla_started", doc, now, body.get("actor"), started_at=timeutil.iso(at),
                    restarted=True, reason="new_facts", repeat=event["complaint_no"])))

        self._transaction(event, work)

    # -- mediation (CONTRACTS §4): the time in mediation is not counted (Order 3/2020 Art. 23),
    #    and an agreement is carried out in time (seed 000 §8) ------------------------------

    def on_referred(self, event: dict, outbox) -> None:
        """``complaint_referred``: every running clock pauses from the referral on the
        ``mediation`` ground of the policy data, the referral its evidence, until the
        mediation ends (see ``on_mediation_status_changed``). No approval of its own: the
        referral was approved (its approvers and approval are the pause's)."""
        body = event["body"]
        ground = self.pause_grounds.get(MEDIATION)
        if ground is None:
            log.error("%s was referred to mediation, but the policy data has no %r pause ground: its clocks run on",
                      body["complaint_no"], MEDIATION)
            return
        at = timeutil.parse(body["at"])
        reason = f"referred to mediation ({body['organization']}, {body['referral_id']})"
        evidence = f"{body.get('organization_name') or body['organization']}, referral {body['referral_id']}"

        def work(session):
            running = [d for d in self._found(body["complaint_no"], session) if d["state"] == "running"]
            self._pause(session, running, reason, ground.code, evidence, body.get("actor"), body.get("approvers") or [],
                        self.now(), outbox, approval_id=body.get("approval_id"), start=at,
                        referral_id=body["referral_id"])

        self._transaction(event, work)

    def on_mediation_status_changed(self, event: dict, outbox) -> None:
        """``mediation_status_changed``: an agreement starts the clock of carrying it out; a
        mediation that ended without one resumes the clocks its referral paused, where they
        stopped. Other statuses change no clock."""
        body = event["body"]
        if body.get("agreement"):
            self._start_agreement(event, outbox)
        elif body["ended"]:
            self._resume_after_mediation(event, outbox)

    def _resume_after_mediation(self, event: dict, outbox) -> None:
        body = event["body"]
        at = timeutil.parse(body["at"])
        reason = f"mediation {body['status']} ({body['organization']}, {body['referral_id']})"

        def work(session):
            now = self.now()
            for doc in self._found(body["complaint_no"], session):
                pauses = doc.get("pauses", [])
                if doc["state"] != "paused" or not pauses or pauses[-1].get("referral_id") != body["referral_id"]:
                    continue  # not paused by this referral (e.g. met before it, or paused on other grounds)
                self._resume(session, doc, max(at, _local(pauses[-1]["start"])), reason, body.get("actor"), now,
                             outbox, ground=MEDIATION, referral_id=body["referral_id"])

        self._transaction(event, work)

    def _start_agreement(self, event: dict, outbox) -> None:
        """The ``agreement_performance`` clock of the complaint's policy, from the day the
        terms were agreed to the day the agreement names (the policy's limit if none)."""
        body = event["body"]
        agreement = body["agreement"]
        now = self.now()
        source = self.clocks.find_one({"complaint_no": body["complaint_no"]}, sort=[("created_at", ASCENDING)])
        if source is None:
            raise NotFound(f"no clock for {body['complaint_no']} yet")
        try:
            rule = self.policies.get(source["policy"]).clock(AGREEMENT_CLOCK)
        except UnknownClock:
            log.warning("%s: policy %s has no %s clock; the agreement of %s is not timed", body["complaint_no"],
                        source["policy"], AGREEMENT_CLOCK, body["referral_id"])
            return
        signed_on = date.fromisoformat(agreement["signed_on"])
        limit = None
        if agreement.get("carry_out_by"):
            if rule.limit.unit == "calendar_days":
                limit = (date.fromisoformat(agreement["carry_out_by"]) - signed_on).days
            else:
                log.warning("%s counts %s: the agreement's own date is not used", AGREEMENT_CLOCK, rule.limit.unit)
        started_at = datetime.combine(signed_on, dt_time(0), tzinfo=SHANGHAI)
        doc = self._new_clock(body["complaint_no"], rule, started_at, institution=source.get("institution"),
                              unit=source.get("unit"), now=now, promised_limit=limit)
        started = self._event("sla_started", doc, now, body.get("actor"), started_at=timeutil.iso(started_at),
                              reason="agreement_reached", referral_id=body["referral_id"])

        def work(session):
            existing = self.clocks.find_one({"_id": doc["_id"]}, session=session)
            if existing is None:
                self.clocks.insert_one(doc, session=session)
            else:
                # An agreement of a later referral: its own clock counts anew.
                fresh = {k: v for k, v in doc.items() if k not in ("_id", "version", "created_at")}
                fresh["generation"] = existing.get("generation", 0) + 1
                self._replace(session, existing, fresh)
            outbox.stage(session, event_message(started))

        self._transaction(event, work)

    def on_agreement_carried_out(self, event: dict, outbox) -> None:
        """``agreement_carried_out``: the agreement's clock stops, met or breached."""
        self._stop_open(event, outbox, lambda clock: clock == AGREEMENT_CLOCK)

    # -- firing -----------------------------------------------------------------------------

    def due(self, now: datetime, limit: int) -> list[dict]:
        """Clocks with a point due at ``now``: one index range scan, earliest first."""
        return list(self.clocks.find({"next_fire_at": {"$gte": timeutil.EPOCH, "$lte": now}},
                                     {"_id": 1, "next_fire_at": 1, "version": 1})
                    .sort("next_fire_at", ASCENDING).limit(limit))

    def fire_next(self, clock: str, outbox, expected_version: int | None = None) -> dict | None:
        """Fire the earliest due point of one clock in one transaction; the point fired
        (label, at, version) or None when nothing was due or another instance fired it."""

        def work(session):
            now = self.now()
            query = {"_id": clock, "next_fire_at": {"$gte": timeutil.EPOCH, "$lte": now}}
            if expected_version is not None:
                query["version"] = expected_version
            doc = self.clocks.find_one(query, session=session)
            if doc is None or doc.get("state") != "running":
                return None
            points = doc["points"]
            index = next(i for i, p in enumerate(points) if p["fired_at"] is None)
            point = points[index]
            points = [dict(p) for p in points]
            points[index]["fired_at"] = now
            pending = [p for p in points if p["fired_at"] is None]
            breach = point["label"] == BREACH
            changes = {
                "points": points,
                "next_fire_at": pending[0]["at"] if pending and not breach else None,
                "next_label": pending[0]["label"] if pending and not breach else None,
            }
            if breach:
                changes.update(state="breached_open", breached=True, breached_at=now)
            else:
                changes["warned"] = sorted({*doc.get("warned", []), point["label"]})
            result = self.clocks.update_one(
                {"_id": doc["_id"], "version": doc["version"], "next_fire_at": doc["next_fire_at"]},
                {"$set": {**changes, "updated_at": now}, "$inc": {"version": 1}}, session=session)
            if result.modified_count != 1:
                return None
            extra = {"point_at": timeutil.iso(_local(doc["due_by"] if breach else point["at"]))}
            if breach:
                published = self._event("sla_breached", doc, now, None, unit=doc.get("unit"), **extra)
            else:
                published = self._event("sla_warning", doc, now, None, label=point["label"], **extra)
            published["event_id"] = point_event_id(doc, point["label"])
            outbox.stage(session, event_message(published))
            return {"clock": doc["_id"], "label": point["label"], "at": _local(point["at"]), "fired_at": now,
                    "event_id": published["event_id"]}

        try:
            return in_transaction(self.db, work)
        except DuplicateKeyError:
            return None  # that point's event is staged already: it fired

    def sweep(self, outbox, limit: int = 100, budget: float = 0.8) -> list[dict]:
        """Fire what is due now, up to ``limit`` points or ``budget`` seconds; the points fired.

        Instances running together each read the due clocks and take them in a shuffled
        order, so they mostly work on different clocks; where they meet, the conditional
        update lets one win."""
        started = time.monotonic()
        fired: list[dict] = []
        self.reload_if_changed()
        candidates = self.due(self.now(), limit)
        random.shuffle(candidates)
        for candidate in candidates:
            version = candidate["version"]
            while len(fired) < limit and time.monotonic() - started < budget:
                point = self.fire_next(candidate["_id"], outbox, version)
                if point is None:
                    break
                fired.append(point)
                version += 1  # several points of one clock may be due (after an outage)
            if len(fired) >= limit or time.monotonic() - started >= budget:
                break
        return fired

    # -- actions through the HTTP edge ----------------------------------------------------

    def organization_changed(self, event: dict) -> None:
        self.organization.keep(event)

    def act(self, complaint_no: str, action: str, data: dict, actor: dict, facts: dict, outbox) -> dict:
        """extend, pause, resume (CONTRACTS §3) by a caller the rule book lets, judged on
        ``facts``: intake's accountable unit, pending transfer and named staff of the
        complaint (the system of record; the clocks do not follow transfers). Done: the
        clocks as they stand and the ids of the events that announce the change. A step the
        caller may not approve: ``{"approval": ...}``, the pending approval it became."""
        actions = {"extend": self.extend, "pause": self.pause, "resume": self.resume}
        if action not in actions:
            raise NotFound(f"no action {action!r} on the clocks")
        caller, facts = Caller.of(actor), Facts.of(facts)
        tree = self.organization.tree()
        RULE_BOOK.check(action, caller, facts, tree)
        answer = actions[action](complaint_no, data or {}, caller, facts, tree, outbox)
        return answer if "approval" in answer else {"clocks": self.view(complaint_no), **answer}

    def extend(self, complaint_no: str, data: dict, caller: Caller, facts: Facts, tree, outbox) -> dict:
        """Add ``days`` (in the clock's unit) to the open clock's limit, as the policy's
        extension steps allow. The caller's own roles approve a step naming a position they
        hold (a supervisor extending a complaint of their unit from 15 to 30 days); any other
        step waits for a person who holds one, and the clock runs on meanwhile. ``Invalid``
        (422) naming ``days`` or ``reason``; ``Conflict`` when no clock is running or paused."""
        days, reason = data.get("days"), data.get("reason")
        if not str(reason or "").strip():
            raise Invalid("an extension needs a reason", {"reason": ["is required"]})
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise Invalid("days must be a whole number of days >= 1", {"days": ["must be an integer >= 1"]})

        def work(session):
            now = self.now()
            doc = self._extendable(complaint_no, session)
            steps = len(doc.get("extensions", []))
            step = self._extension_step(doc, days)
            held = RULE_BOOK.held(step.approval, caller, facts, tree)
            if step.approval and not held:
                self._replace(session, doc, {})  # a concurrent request on this clock conflicts here
                request = {"clock": doc["_id"], "days": days, "reason": reason, "step": steps + 1}
                approval = self.approvals.request(session, action="extend", request=request, caller=caller,
                                                  facts=facts, positions=step.approval, tree=tree, now=now,
                                                  outbox=outbox)
                return {"approval": self._approval_view(approval, now, [doc])}
            approvers = [approver(caller, held)] if held else []
            return {"events": self._extend(session, doc, days, reason, caller.sub, approvers, now, outbox)}

        return in_transaction(self.db, work)

    def _extendable(self, complaint_no: str, session) -> dict:
        docs = self._found(complaint_no, session)
        open_ = [d for d in docs if d["state"] in ("running", "paused")]
        if not open_:
            raise Conflict("no running clock to extend (the limit passed or the clock ended)", {"state": [
                f"{d['clock']}: {d['state']}" for d in docs]})
        return open_[-1]

    def _extension_step(self, doc: dict, days: int) -> ExtensionStep:
        """The step the next extension of ``doc`` falls under, checked against its cap."""
        rule = self._rule(doc)
        steps = len(doc.get("extensions", []))
        step = rule.extension_step(steps)
        try:
            rule.extend(doc["total"], days, step.approval if step else (), steps_taken=steps)
        except ExtensionRefused as exc:
            raise Invalid(f"extension refused: {exc.message}", {"days": [str(exc)]}) from None
        return step

    def _extend(self, session, doc: dict, days: int, reason: str, requested_by: str, approvers: list[dict],
                now: datetime, outbox, approval_id: str | None = None) -> list[str]:
        """Extend ``doc`` as approved by ``approvers``; the ids of the events staged."""
        rule = self._rule(doc)
        steps = len(doc.get("extensions", []))
        positions = sorted({position for person in approvers for position in person["positions"]})
        try:
            total = rule.extend(doc["total"], days, positions, steps_taken=steps)
        except ExtensionRefused as exc:
            raise Conflict(f"extension refused: {exc.message}", {"days": [str(exc)]}) from None
        previous = _local(doc.get("due_by"))
        record = {"days": days, "total": total, "reason": reason, "approved_by": positions, "approvers": approvers,
                  "approval_id": approval_id, "actor": requested_by, "at": now, "previous_due_by": previous}
        staged = dict(doc, total=total, extensions=[*doc.get("extensions", []), record],
                      generation=doc.get("generation", 0) + 1)
        changes = {"total": total, "extensions": staged["extensions"], "generation": staged["generation"]}
        changes.update(self._schedule(staged, now, rearm=True))
        self._replace(session, doc, changes)
        extended = self._event("sla_extended", doc, now, requested_by, previous_due_by=timeutil.iso(previous),
                               total=total, reason=reason, approved_by=positions, approvers=approvers,
                               approval_id=approval_id, days=days, step=steps + 1)
        outbox.stage(session, event_message(extended))
        return [extended["event_id"]]

    def pause(self, complaint_no: str, data: dict, caller: Caller, facts: Facts, tree, outbox) -> dict:
        """Stop counting on a ground the policy data allows (an outside appraisal, the
        mediation period ...), with its evidence: every running clock pauses. Approved like an
        extension: at once by a caller holding a position the ground names, else it waits."""
        reason, evidence = str(data.get("reason") or "").strip(), str(data.get("evidence") or "").strip()
        ground = self.pause_grounds.get(data.get("ground"))
        errors = {}
        if not reason:
            errors["reason"] = ["is required"]
        if ground is None:
            errors["ground"] = [f"must be one of {', '.join(self.pause_grounds)} (policy data)"]
        if not evidence and (ground is None or ground.evidence_required):
            errors["evidence"] = [f"is required: {ground.evidence}" if ground else "is required"]
        if errors:
            raise Invalid("a clock pauses only on a ground the policy allows, with its evidence", errors)

        def work(session):
            now = self.now()
            running = self._in_state(complaint_no, "running", session)
            held = RULE_BOOK.held(ground.approval, caller, facts, tree)
            if ground.approval and not held:
                for doc in running:
                    self._replace(session, doc, {})  # a concurrent request on these clocks conflicts here
                request = {"ground": ground.code, "evidence": evidence, "reason": reason}
                approval = self.approvals.request(session, action="pause", request=request, caller=caller,
                                                  facts=facts, positions=ground.approval, tree=tree, now=now,
                                                  outbox=outbox)
                return {"approval": self._approval_view(approval, now, running)}
            approvers = [approver(caller, held)] if held else []
            return {"events": self._pause(session, running, reason, ground.code, evidence, caller.sub, approvers, now,
                                          outbox)}

        return in_transaction(self.db, work)

    def _pause(self, session, docs: list[dict], reason: str, ground: str, evidence: str, requested_by: str,
               approvers: list[dict], now: datetime, outbox, approval_id: str | None = None,
               start: datetime | None = None, **extra) -> list[str]:
        """Pause ``docs`` from ``start`` (default now); ``extra`` (a referral's id) is kept on
        the pause and told with it. The ids of the events staged."""
        announced_ids = []
        for doc in docs:
            pause = {"start": start or now, "end": None, "reason": reason, "ground": ground, "evidence": evidence,
                     "actor": requested_by, "approvers": approvers, "approval_id": approval_id, **extra}
            pauses = [*doc.get("pauses", []), pause]
            changes = {"pauses": pauses, "state": "paused", **self._schedule(dict(doc, pauses=pauses, state="paused"),
                                                                            now)}
            self._replace(session, doc, changes)
            announced = self._event("sla_paused", doc, now, requested_by, reason=reason, ground=ground,
                                    evidence=evidence, approvers=approvers, approval_id=approval_id, **extra)
            outbox.stage(session, event_message(announced))
            announced_ids.append(announced["event_id"])
        return announced_ids

    def resume(self, complaint_no: str, data: dict, caller: Caller, facts: Facts, tree, outbox) -> dict:
        """Count again where it stopped: every paused clock resumes (no approval: the time
        counts again)."""
        reason, ground = str(data.get("reason") or "").strip(), data.get("ground")
        if not reason:
            raise Invalid("a reason is required", {"reason": ["is required"]})

        def work(session):
            now = self.now()
            announced_ids = []
            for doc in self._in_state(complaint_no, "paused", session):
                pauses = doc.get("pauses", [])
                if ground and ground != pauses[-1].get("ground"):
                    raise Invalid(f"the clock is paused for {pauses[-1].get('ground')}, not {ground}",
                                  {"ground": [f"the pause it ends is for {pauses[-1].get('ground')}"]})
                announced_ids.append(self._resume(session, doc, now, reason, caller.sub, now, outbox))
            return {"events": announced_ids}

        return in_transaction(self.db, work)

    def _resume(self, session, doc: dict, end: datetime, reason: str, by: str | None, now: datetime, outbox,
                **extra) -> str:
        """End ``doc``'s last pause at ``end`` and count again; the id of the event staged."""
        pauses = [*doc["pauses"][:-1], dict(doc["pauses"][-1], end=end, resume_reason=reason, resumed_by=by)]
        changes = {"pauses": pauses, "state": "running",
                   **self._schedule(dict(doc, pauses=pauses, state="running"), now)}
        self._replace(session, doc, changes)
        announced = self._event("sla_resumed", doc, now, by, reason=reason, **extra)
        outbox.stage(session, event_message(announced))
        return announced["event_id"]

    def _in_state(self, complaint_no: str, state: str, session) -> list[dict]:
        docs = [d for d in self._found(complaint_no, session) if d["state"] == state]
        if not docs:
            raise Conflict(f"no {state} clock", {"state": [f"no clock is {state}"]})
        return docs

    # -- approvals of the clocks' steps ---------------------------------------------------

    def approvals_for(self, actor: dict, pending: bool = True) -> list[dict]:
        """The approvals ``actor`` may decide (``pending``), or also decided and asked for."""
        now = self.now()
        return [self._approval_view(doc, now) for doc in
                self.approvals.listing(Caller.of(actor), self.organization.tree(), pending)]

    def decide_approval(self, approval_id: str, decision: str, note: str, actor: dict, facts: dict, outbox) -> dict:
        """``approve`` (the step applies, in the same transaction) or ``refuse`` a pending
        extension or pause; the decided approval and the ids of the events staged."""
        if decision not in ("approve", "refuse"):
            raise Invalid("a decision is approve or refuse", {"decision": ["must be approve or refuse"]})
        applying = {"extend": self._apply_extension, "pause": self._apply_pause}

        def apply(session, approval: dict, person: dict) -> list[str]:
            return applying[approval["action"]](session, approval, person, outbox)

        now = self.now()
        decided, announced = self.approvals.decide(approval_id, decision == "approve", note, Caller.of(actor),
                                                   Facts.of(facts), self.organization.tree(), apply=apply, now=now,
                                                   outbox=outbox)
        return {"approval": self._approval_view(decided, now), "events": announced}

    def _apply_extension(self, session, approval: dict, person: dict, outbox) -> list[str]:
        request = approval["request"]
        doc = self.clocks.find_one({"_id": request["clock"]}, session=session)
        if doc is None or doc["state"] not in ("running", "paused"):
            raise Conflict("the clock has ended or its limit passed since the request: refuse it",
                           {"state": [doc["state"] if doc else "none"]})
        if len(doc.get("extensions", [])) != request["step"] - 1:
            raise Conflict("the clock was extended since the request: refuse it and ask again",
                           {"step": [str(request["step"])]})
        now = self.now()
        if doc.get("due_by") and now > _local(doc["due_by"]):
            raise Conflict("the limit ran out while the extension waited for approval: refuse it",
                           {"due_by": [timeutil.iso(_local(doc["due_by"]))]})
        return self._extend(session, doc, request["days"], request["reason"], approval["requested_by"]["sub"],
                            [person], now, outbox, approval_id=approval["_id"])

    def _apply_pause(self, session, approval: dict, person: dict, outbox) -> list[str]:
        request = approval["request"]
        running = self._in_state(approval["complaint_no"], "running", session)
        return self._pause(session, running, request["reason"], request["ground"], request["evidence"],
                           approval["requested_by"]["sub"], [person], self.now(), outbox, approval_id=approval["_id"])

    def _approval_view(self, approval: dict, now: datetime, docs: list[dict] | None = None) -> dict:
        """An approval, with the limit of the clocks it concerns: a request still pending
        when that limit runs out is shown as such (``past_limit``)."""
        if docs is None:
            docs = list(self.clocks.find({"complaint_no": approval["complaint_no"]}))
        clock = approval["request"].get("clock")
        concerned = [d for d in docs if d["_id"] == clock] if clock else [d for d in docs if d["state"] in OPEN_STATES]
        dues = [_local(d["due_by"]) for d in concerned if d.get("due_by")]
        limit = min(dues) if dues else None
        ran_out = any(d["state"] in ("breached_open", "breached") for d in concerned)
        past = ran_out or (limit is not None and now > limit)
        return {**approvals.view(approval), "limit_due_by": timeutil.iso(limit), "past_limit": past}

    def _found(self, complaint_no: str, session=None) -> list[dict]:
        docs = list(self.clocks.find({"complaint_no": complaint_no}, session=session).sort("created_at", ASCENDING))
        if not docs:
            raise NotFound(f"no clock for complaint {complaint_no}")
        return docs

    def view(self, complaint_no: str) -> list[dict]:
        """Each clock of a complaint on its own (JSON-ready), with its paused time and the
        approvals that wait on it."""
        docs = self._found(complaint_no)
        now = self.now()
        waiting = [self._approval_view(doc, now, docs) for doc in self.approvals.pending_of(complaint_no)]
        return [self._view(doc, now, [a for a in waiting if a["request"].get("clock") in (doc["_id"], None)])
                for doc in docs]

    @staticmethod
    def _view(doc: dict, now: datetime, waiting: list[dict]) -> dict:
        return {
            "clock": doc["clock"],
            "policy": doc["policy"],
            "state": doc["state"],
            "due_by": timeutil.iso(_local(doc.get("due_by"))),
            "started_at": timeutil.iso(_local(doc["started_at"])),
            "warned": list(doc.get("warned", [])),
            "breached": bool(doc.get("breached")),
            "paused": doc["state"] == "paused",
            "extensions": len(doc.get("extensions", [])),
            "provisional": bool(doc.get("provisional")),
            "pauses": [{"ground": p.get("ground"), "evidence": p.get("evidence"), "reason": p.get("reason"),
                        "start": timeutil.iso(_local(p["start"])), "end": timeutil.iso(_local(p.get("end"))),
                        "by": p.get("actor"), "approvers": p.get("approvers", [])} for p in doc.get("pauses", [])],
            "paused_time": paused_time(doc.get("pauses", []), now),
            "pending_approvals": waiting,
            "promised_limit": doc.get("promised_limit"),
        }

    # -- the books and what an operator watches ---------------------------------------------

    def reload_books(self) -> None:
        """Reload the policies and calendars, and stamp it for the other instances."""
        self._reload()
        self.db[META].update_one({"_id": "books"}, {"$set": {"reloaded_at": self.loaded_at}}, upsert=True)

    def _reload(self) -> None:
        self.policies = self._load_policy_book()
        self.calendars = self._load_calendar_book()
        self.pause_grounds = self._load_grounds()
        self.loaded_at = self.now()

    def reload_if_changed(self) -> bool:
        """Reload the books when another instance did (a recompute job started); one read by id."""
        meta = self.db[META].find_one({"_id": "books"})
        if meta and meta.get("reloaded_at") and _local(meta["reloaded_at"]) > self.loaded_at:
            self._reload()
            return True
        return False

    def health(self) -> dict:
        """Up, with what an operator watches: clocks without a due date (calendar data that
        cannot count their years), complaints without a clock (policy data that lacks
        theirs), recompute jobs under way, messages not yet relayed. The first two are
        alerts, also as the ``complaints_without_due_date`` metric."""
        without = self.clocks.count_documents(WITHOUT_DUE_DATE)
        unscheduled = self.unscheduled.count_documents({})
        metrics.WITHOUT_DUE_DATE.labels(PRODUCER).set(without + unscheduled)
        if without or unscheduled:
            log.warning("%d clock(s) without a due date, %d complaint(s) without a clock: fix the calendar or "
                        "policy data, then run python -m services.sla.recompute", without, unscheduled)
        return {
            "status": "ok",
            "clocks_without_due_date": without,
            "complaints_without_clock": unscheduled,
            "recompute_jobs": self.rescheduling.under_way(),
            "outbox_pending": outbox_pending(self.db),
        }


def _handling(clock: str) -> bool:
    """A clock of the complaint's handling, which its decision or closing stops: all but an
    agreement's, which is tracked to completion whatever happens to them (seed 000 §8)."""
    return clock != AGREEMENT_CLOCK


def paused_time(pauses: list[dict], now: datetime) -> dict:
    """The time a clock's pauses held it, in seconds, in all and by ground (a pause still
    running counts up to ``now``; one from before grounds were asked for counts as
    ``unstated``): the report of paused time."""
    by_ground: dict[str, int] = {}
    for pause in pauses:
        end = _local(pause.get("end")) or now
        seconds = max(int((end - _local(pause["start"])).total_seconds()), 0)
        ground = pause.get("ground") or "unstated"
        by_ground[ground] = by_ground.get(ground, 0) + seconds
    return {"seconds": sum(by_ground.values()), "by_ground": by_ground}
