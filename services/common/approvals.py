"""Approvals are people (maker-checker): a step of an action that the requester's own roles
may not approve waits, as a pending approval, for a person who holds one of the positions
the step names (rule book ``positions``); that person, never the requester, approves or
refuses it with a note, and only an approval applies the step.

Used by every service that owns an action needing approval (sla: extensions and pauses;
mediation will raise a negotiator's authority the same way). Each keeps its approvals in its
own database (collection ``approvals``); an approval's id names its owner
(``<owner>-<hex>``), so the edge sends its decision to that service. The decision and the
change it approves are one transaction: the owner passes ``apply``, which makes the change
in the same session. The request and the decision are announced (``approval_requested``,
``approval_decided``) and intake puts them on the complaint's history with who and when.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel

from services.common import events, timeutil
from services.common.access import RULE_BOOK, Caller, Facts, RuleBook
from services.common.errors import Conflict, Forbidden, Invalid, NotFound
from services.common.orgtree import OrgTree
from services.common.outbox import event_message
from services.common.store import in_transaction

COLLECTION = "approvals"
PENDING, APPROVED, REFUSED = "pending", "approved", "refused"
LISTED = 200  # at most this many approvals in one listing
INDEXES = {COLLECTION: [
    # Pending approvals a person may decide are found by their unit.
    IndexModel([("deciders", ASCENDING), ("state", ASCENDING), ("requested_at", DESCENDING)], name="by_decider"),
    IndexModel([("requested_by.sub", ASCENDING), ("requested_at", DESCENDING)], name="by_requester"),
    IndexModel([("complaint_no", ASCENDING), ("state", ASCENDING)], name="by_complaint"),
]}


def owner_of(approval_id: str) -> str:
    """The service that keeps an approval (its id's prefix)."""
    return approval_id.split("-", 1)[0]


def approver(caller: Caller, positions: list[str]) -> dict:
    """A person who approved a step, and the positions they held to do it."""
    return {"sub": caller.sub, "name": caller.name, "unit": caller.unit, "positions": list(positions)}


def view(doc: dict) -> dict:
    """An approval as the edge shows it (CONTRACTS §3: approval_id, action, needs, of_unit)."""
    return {
        "approval_id": doc["_id"],
        "action": doc["action"],
        "complaint_no": doc["complaint_no"],
        "state": doc["state"],
        "needs": doc["needs"],
        "of_unit": doc["of_unit"],
        "positions": doc["positions"],
        "request": doc["request"],
        "requested_by": doc["requested_by"],
        "requested_at": timeutil.iso(doc["requested_at"]),
        "decided_by": doc.get("decided_by"),
        "decided_at": timeutil.iso(doc.get("decided_at")),
        "note": doc.get("note"),
    }


class Approvals:
    """One service's approvals, over its database; ``owner`` is the service's name (the
    producer of the approval events and the prefix of the ids)."""

    def __init__(self, db, owner: str, book: RuleBook = RULE_BOOK):
        self.db = db
        self.collection = db[COLLECTION]
        self.owner = owner
        self.book = book

    def request(self, session, *, action: str, request: dict, caller: Caller, facts: Facts, positions: list[str],
                tree: OrgTree, now: datetime, outbox) -> dict:
        """Record a pending approval of ``action`` (the owner's ``request`` details), within
        the owner's transaction, and stage its announcement. One at a time per complaint
        and action: a second request while one waits is a Conflict."""
        positions = self.book.ordered(positions)
        waiting = self.collection.find_one({"complaint_no": facts.complaint_no, "action": action, "state": PENDING},
                                           {"_id": 1}, session=session)
        if waiting is not None:
            raise Conflict(f"a {action} of {facts.complaint_no} already waits for approval ({waiting['_id']})",
                           {"approval_id": [waiting["_id"]]})
        doc = {
            "_id": f"{self.owner}-{uuid.uuid4().hex}",
            "owner": self.owner,
            "action": action,
            "complaint_no": facts.complaint_no,
            "facts": facts.as_dict(),
            "positions": list(positions),
            "needs": self.book.needs(positions),
            "of_unit": self.book.of_unit(positions, facts, tree),
            "deciders": self.book.deciding_units(positions, facts, tree),
            "request": request,
            "requested_by": caller.as_actor(),
            "requested_at": now,
            "state": PENDING,
        }
        self.collection.insert_one(doc, session=session)
        outbox.stage(session, event_message(self._event("approval_requested", doc, now, caller.sub, request=request,
                                                        positions=doc["positions"], needs=doc["needs"],
                                                        of_unit=doc["of_unit"])))
        return doc

    def complaint_of(self, approval_id: str) -> str:
        doc = self.collection.find_one({"_id": approval_id}, {"complaint_no": 1})
        if doc is None:
            raise NotFound(f"no approval {approval_id}")
        return doc["complaint_no"]

    def pending_of(self, complaint_no: str) -> list[dict]:
        return list(self.collection.find({"complaint_no": complaint_no, "state": PENDING}))

    def listing(self, caller: Caller, tree: OrgTree, pending: bool = True) -> list[dict]:
        """``pending``: the approvals waiting that ``caller`` may decide. Otherwise also those
        decided, and those ``caller`` asked for, newest first."""
        query: dict = {"deciders": caller.unit}
        if pending:
            query["state"] = PENDING
        else:
            query = {"$or": [query, {"requested_by.sub": caller.sub}]}
        found = self.collection.find(query).sort("requested_at", DESCENDING).limit(LISTED)
        return [doc for doc in found if not pending or self._may_decide(doc, caller, Facts.of(doc["facts"]), tree)]

    def _may_decide(self, doc: dict, caller: Caller, facts: Facts, tree: OrgTree) -> list[str]:
        if caller.sub == doc["requested_by"]["sub"]:
            return []
        return self.book.held(doc["positions"], caller, facts, tree)

    def decide(self, approval_id: str, approve: bool, note: str, caller: Caller, facts: Facts, tree: OrgTree, *,
               apply: Callable[[object, dict, dict], list[str]], now: datetime, outbox) -> tuple[dict, list[str]]:
        """Approve (and apply, through ``apply(session, approval, approver)``, which returns the
        ids of the events it staged) or refuse a pending approval, in one transaction. Who may:
        a holder of one of its positions on the complaint as it stands (``facts``), other than
        the requester. The decided approval and the ids of every event staged."""
        if not str(note or "").strip():
            raise Invalid("a decision needs a note", {"note": ["is required"]})

        def work(session):
            doc = self.collection.find_one({"_id": approval_id}, session=session)
            if doc is None:
                raise NotFound(f"no approval {approval_id}")
            self.book.check("read", caller, facts, tree)  # 404 to anyone who may not read the complaint
            if caller.sub == doc["requested_by"]["sub"]:
                raise Forbidden("the person who asked may not approve or refuse their own request",
                                {"actor": ["is the requester"]})
            held = self._may_decide(doc, caller, facts, tree)
            if not held:
                needs = self.book.describe(self.book.position(name) for name in doc["positions"])
                raise Forbidden(f"deciding this {doc['action']} needs {needs}", {"positions": list(doc["positions"])})
            if doc["state"] != PENDING:
                raise Conflict(f"approval {approval_id} was {doc['state']} already", {"state": [doc["state"]]})
            decided = {"state": APPROVED if approve else REFUSED, "decided_by": approver(caller, held),
                       "decided_at": now, "note": note.strip()}
            result = self.collection.update_one({"_id": approval_id, "state": PENDING}, {"$set": decided},
                                                session=session)
            if result.matched_count != 1:
                raise Conflict(f"approval {approval_id} was decided meanwhile")
            doc.update(decided)
            staged = apply(session, doc, decided["decided_by"]) if approve else []
            announced = self._event("approval_decided", doc, now, caller.sub, decision=doc["state"],
                                    note=doc["note"], requested_by=doc["requested_by"]["sub"])
            outbox.stage(session, event_message(announced))
            return doc, [*staged, announced["event_id"]]

        return in_transaction(self.db, work)

    def _event(self, name: str, doc: dict, now: datetime, actor: str, **body) -> dict:
        return events.make_event(name, doc["complaint_no"], {
            "complaint_no": doc["complaint_no"], "at": timeutil.iso(now), "actor": actor,
            "approval_id": doc["_id"], "action": doc["action"], **body}, self.owner)
