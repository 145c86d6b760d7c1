"""Intake's record follows the complaint after receipt: the handlers' decisions, closure and
review requests (actions intake owns), and the facts routing and SLA publish (assignment,
transfers, escalation, clocks). Each change is one transaction: the record, its history,
the event or status message for the call center, and the customer's notice (kept as the
proof of notice, ``notices``).
"""
from __future__ import annotations

from pathlib import Path

import yaml
from marshmallow import ValidationError

from services.common import events, inbox, outbound, reference, timeutil
from services.common.access import RULE_BOOK, Caller, Facts
from services.common.errors import Conflict, Invalid, NotFound, Stale
from services.common.fields import MoneyString
from services.common.outbox import event_message
from services.common.policy import ReviewWindowClosed
from services.common.store import in_transaction, retry_on_conflict

PRODUCER = "intake"
FACTS = Path(__file__).parent / "data" / "facts.yaml"
with open(FACTS, encoding="utf-8") as _handle:
    FACT_RULES: dict = yaml.safe_load(_handle)
FOLLOWED_FACTS = tuple(FACT_RULES)
REMEDIES = ("review", "mediation", "arbitration", "litigation")


def access_facts(complaint: dict) -> Facts:
    """What of the record decides who may act on it: the accountable unit, the unit a
    pending transfer waits for, the staff it names (services/common/data/access.yaml)."""
    return Facts(complaint["institution"], complaint["unit"], complaint.get("transfer_to"),
                 frozenset(complaint.get("respondent_staff") or ()), complaint["_id"])


def _required(data: dict, *names: str) -> None:
    missing = {name: ["is required"] for name in names if not str(data.get(name) or "").strip()}
    if missing:
        raise Invalid("required fields are missing", missing)


def _one_of(data: dict, name: str, allowed) -> None:
    if data.get(name) not in allowed:
        raise Invalid(f"{name} is not one of the allowed values", {name: [f"must be one of {', '.join(allowed)}"]})


class Records:
    """The complaint record after receipt; driven by intake's RPC and event entrypoints."""

    def __init__(self, intake):
        self.intake = intake
        self.db = intake.db
        self.complaints = intake.complaints
        self.lifecycle = intake.lifecycle
        self.notices = intake.notices
        self.facts = FACT_RULES

    # -- actions the handlers take through the HTTP edge --------------------------------

    def act(self, complaint_no: str, action: str, data: dict, actor: dict, outbox) -> dict:
        """decision, close, reopen, withdraw: who may is the rule book's, checked here on
        intake's own record (the edge's check only answers early)."""
        changes = {"decision": self._decision, "close": self._close, "reopen": self._reopen,
                   "withdraw": self._withdraw}
        if action not in changes:
            raise NotFound(f"no action {action!r} on a complaint here")
        complaint = self.intake.visible(complaint_no, None)
        RULE_BOOK.check(action, Caller.of(actor), access_facts(complaint), self.intake.organization.tree())
        status = self.lifecycle.next_status(action, complaint["status"])
        now = timeutil.now()
        change = changes[action](complaint, data, actor, now)
        self._commit(complaint, action, status, actor, now, outbox, **change)
        return self.intake.get(complaint_no, None)

    def _decision(self, complaint, data, actor, now) -> dict:
        _required(data, "outcome", "message")
        _one_of(data, "outcome", reference.OUTCOMES)
        if data.get("amount") is not None:
            try:
                data = dict(data, amount=MoneyString().deserialize(data["amount"]))
            except ValidationError as exc:
                raise Invalid("the amount is not a decimal string", {"amount": exc.messages}) from None
        policy = self.intake.policies.get(complaint["sla"]["policy"])
        window = policy.review_window
        body = {"outcome": data["outcome"], "unit": complaint["unit"], "remedy": data.get("remedy"),
                "amount": data.get("amount")}
        # The review window runs from when the customer receives the decision (Art. 20): its
        # end is known once the gateway reports the notice delivered (notices._delivered).
        # The notice states the window, and the earliest it can end as a date.
        earliest_end = policy.review_window_ends(now) if window else None
        return {
            "record": {"decision": {**body, "message": data["message"], "at": now, "by": actor.get("sub"),
                                 "delivered_at": None, "review_until": None}},
            "event": ("complaint_decided", body),
            "tell": ("decided", {"outcome": data["outcome"]}),
            "notify": ("decided", {
                "outcome": data["outcome"], "message": data["message"], "remedy": data.get("remedy"),
                "amount": data.get("amount"), "review_until": timeutil.iso(earliest_end),
                "review_window": window and {"value": window.value, "unit": window.unit, "from": "receipt"},
                "review_unit": "the superior unit of " + complaint["unit"], "remedies": list(REMEDIES)}),
        }

    def _close(self, complaint, data, actor, now) -> dict:
        _required(data, "satisfaction", "root_cause")
        _one_of(data, "satisfaction", reference.SATISFACTION)
        _one_of(data, "root_cause", reference.causes())
        body = {"satisfaction": data["satisfaction"], "root_cause": data["root_cause"]}
        # closed_at: retention counts from here (``retention``); a review request clears it.
        return {"record": {"closure": {**body, "at": now, "by": actor.get("sub")}, "closed_at": now},
                "event": ("complaint_closed", body), "tell": ("closed", body), "notify": ("closed", {})}

    def _reopen(self, complaint, data, actor, now) -> dict:
        _required(data, "reason")
        decision = complaint.get("decision")
        if decision is None:
            raise Conflict("only a decided complaint can be reviewed", {"status": complaint["status"]})
        # The window runs from the decision's delivery to the customer (Art. 20); until the
        # gateway reports it delivered, it has not started, so it cannot have ended.
        delivered_at = decision.get("delivered_at")
        if delivered_at is not None:
            policy = self.intake.policies.get(complaint["sla"]["policy"])
            try:
                policy.review_due_by(delivered_at, now)
            except ReviewWindowClosed as exc:
                raise Conflict("the window to ask for a review has passed", {"reason": [str(exc)]}) from None
        body = {"reason": data["reason"], "decided_at": timeutil.iso(decision["at"]),
                "delivered_at": timeutil.iso(delivered_at), "decided_by_unit": decision["unit"]}
        return {"record": {"review": {"reason": data["reason"], "requested_at": now}, "closed_at": None},
                "event": ("complaint_reopened", body), "tell": ("reopened", {"reason": data["reason"]})}

    def _withdraw(self, complaint, data, actor, now) -> dict:
        # A withdrawal ends handling (Art. 15): retention counts from it as from a closure.
        return {"record": {"withdrawal": {"reason": data.get("reason"), "at": now}, "closed_at": now},
                "event": ("complaint_withdrawn", {"reason": data.get("reason")})}

    def _commit(self, complaint, action, status, actor, now, outbox, *, record, event, tell=None, notify=None):
        complaint_no = complaint["_id"]
        actor_id = actor.get("sub")
        name, body = event
        published = events.make_event(name, complaint_no,
                                      {"complaint_no": complaint_no, "at": timeutil.iso(now), "actor": actor_id,
                                       **body}, PRODUCER)
        messages, notice = self._outward(complaint, (name, now), tell, notify)
        messages.insert(0, event_message(published))
        entry = {"at": now, "type": name, "actor": actor_id, "details": body}

        def write(session):
            # The status we read is a condition: a concurrent change makes this one a conflict.
            result = self.complaints.update_one(
                {"_id": complaint_no, "status": complaint["status"]},
                {"$set": {**record, "status": status}, "$push": {"history": entry}, "$inc": {"version": 1}},
                session=session)
            if result.matched_count != 1:
                raise Conflict("the complaint changed meanwhile; read it again", {"action": action})
            outbox.stage(session, *messages, *self.notices.keep(session, [notice]))

        in_transaction(self.db, write)

    def _outward(self, complaint, change, tell, notify):
        """What a change (its history entry's type and time) sends out: the status message
        for the call center, and the notice to the customer (None when none is due)."""
        _, at = change
        messages, notice = [], None
        if tell and complaint.get("source") == "amqp":
            status, details = tell
            messages.append(outbound.status(complaint["app_id"], complaint["_id"], complaint.get("external_id"),
                                            status, at=at, **details))
        if notify:
            template, params = notify
            notice = self.notices.compose(complaint, template, {"complaint_no": complaint["_id"], **params},
                                          change, timeutil.now())
        return messages, notice

    # -- facts from routing and SLA -----------------------------------------------------

    def follow(self, event: dict, outbox) -> None:
        """Apply one published fact to the record, once, whatever order facts arrive in.

        Facts of one complaint arrive on several queues at once: each is applied to the
        version of the record it was computed from, and computed again if another fact
        got there first.
        """
        retry_on_conflict(lambda: self._follow_once(event, outbox),
                          f"{event['complaint_no']}, while {event['type']} was applied,")

    def _follow_once(self, event: dict, outbox) -> None:
        rule = self.facts[event["type"]]
        body = event["body"]
        complaint = self.complaints.find_one({"_id": event["complaint_no"]})
        if complaint is None:
            raise NotFound(f"a {event['type']} event names an unknown complaint {event['complaint_no']}")
        at = timeutil.parse(body["at"])
        owner = rule["owner"]
        last = complaint.get("applied", {}).get(owner)
        current = last is None or timeutil.local(last) <= at
        updates: dict = {f"applied.{owner}": at} if current else {}
        tell = notify = None
        if current:
            moved = not rule.get("action") or self.lifecycle.allows(rule["action"], complaint["status"])
            if rule.get("action") and moved:
                updates["status"] = self.lifecycle.next_status(rule["action"], complaint["status"])
            if rule.get("transfer_to") == "set":
                updates["transfer_to"] = body["to_unit"]
            elif rule.get("transfer_to") == "clear":
                updates["transfer_to"] = None
            if rule.get("unit"):
                updates["unit"] = body[rule["unit"]]
            if event["type"] == "complaint_assigned":
                updates["assignment"] = {key: body.get(key) for key in ("unit", "department", "office", "handler")}
                updates["priority"] = body.get("priority")
                updates["flags"] = body.get("flags", [])
            if event["type"] == "complaint_transferred":
                updates["transfers_count"] = body["transfers"]
            if rule.get("sla_state"):
                state = body["state"] if rule["sla_state"] == "from_body" else rule["sla_state"]
                updates["sla.state"] = state
                updates["sla.clock"] = body["clock"]
                if body.get("due_by"):
                    updates["sla.due_by"] = timeutil.parse(body["due_by"])
                    updates["due_by"] = updates["sla.due_by"]
                    updates["sla.provisional"] = bool(body.get("provisional"))
                    updates["sla.error"] = None  # a due date at last: the data counts it now
            details = {k: v for k, v in body.items() if k not in ("complaint_no", "at", "actor")}
            tell = (rule["tell"], _told(event["type"], body)) if rule.get("tell") and moved else None
            wanted = rule.get("notify") and (not rule.get("notify_if") or body.get(rule["notify_if"]))
            notify = (rule["notify"], details) if wanted else None
        if rule.get("keep") and _newer(body.get(rule["keep"]), complaint.get(rule["keep"])):
            updates[rule["keep"]] = body[rule["keep"]]
        transfer = None
        if event["type"] in ("complaint_transfer_requested", "complaint_transferred", "complaint_transfer_rejected"):
            transfer = {"type": event["type"], "at": at, **{k: body.get(k) for k in ("from_unit", "to_unit", "reason")}}
        entry = {"at": at, "type": event["type"], "actor": body.get("actor"),
                 "details": {k: v for k, v in body.items() if k not in ("complaint_no", "at", "actor")}}
        messages, notice = self._outward(complaint, (event["type"], at), tell, notify)

        def write(session):
            if not inbox.first_time(self.db, session, event):
                return
            push = {"history": entry}
            if transfer:
                push["transfers"] = transfer
            change = {"$push": push, "$inc": {"version": 1}}
            if updates:
                change["$set"] = updates
            result = self.complaints.update_one({"_id": complaint["_id"], "version": complaint["version"]}, change,
                                                session=session)
            if result.matched_count != 1:
                raise Stale("the complaint changed meanwhile")
            outbox.stage(session, *messages, *self.notices.keep(session, [notice]))

        in_transaction(self.db, write)


def _newer(fresh: dict | None, held: dict | None) -> bool:
    """Whether ``fresh`` (a state another service owns, with its ``as_of``) is newer than ``held``."""
    if not fresh:
        return False
    return not held or timeutil.parse(held["as_of"]) <= timeutil.parse(fresh["as_of"])


def _told(event_type: str, body: dict) -> dict:
    """What the call center hears of a change, beyond complaint_no, status and at."""
    keys = {
        "complaint_assigned": ("unit", "department"),
        "complaint_transferred": ("from_unit", "to_unit"),
        "complaint_transfer_rejected": ("from_unit", "escalated_to", "reason"),
        "complaint_escalated": ("from_unit", "to_unit", "reason"),
        "sla_extended": ("due_by", "reason"),
        "sla_rescheduled": ("due_by", "previous_due_by", "provisional", "reason"),
        "complaint_referred": ("referral_id", "organization", "organization_name"),
    }[event_type]
    return {key: body.get(key) for key in keys}
