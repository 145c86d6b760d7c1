"""Routing's domain over its database: one assignment document per complaint, the
organization and rules in force, and the events that announce every change.

Driven by ``service.py``; it never touches the broker itself: every event is staged in the
outbox within the transaction of the change it announces.

Storage (database ``<DB_PREFIX>_routing``):

- ``assignments``: ``{_id: complaint_no, version, unit, pending_to, state, updated_at}``,
  ``state`` being ``assignment.to_document``. Every change is an ``update_one`` conditional
  on the version read (optimistic concurrency); a lost race is a Conflict for a handler and
  a fresh attempt for an event.
- ``config``: the one document ``current`` holding the text of the organization and rules
  files in force and their version. A reload validates the new files, then bumps the
  version; every instance compares its version with the stored one at most every
  ``CONFIG_TTL`` seconds (one indexed read) and rebuilds when it is behind, so that a
  reload reaches all instances within a second or so, and an instance started later uses
  the same data rather than whatever files its image carries.
- ``inbox``: the events already handled (idempotency), ``outbox``: staged messages.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml
from pymongo.errors import DuplicateKeyError

from services.common import events, inbox, outbox, timeutil
from services.common.errors import Conflict, Invalid, NotFound, Stale
from services.common.orgtree import OrgTree
from services.common.outbox import event_message
from services.common.store import in_transaction, retry_on_conflict
from services.routing import organization as org_module
from services.routing import rules as rules_module
from services.routing.assignment import Assignment, AssignmentPolicy, Outcome, from_document, to_document
from services.routing.organization import Organization, OrganizationError, UnknownUnit
from services.routing.rules import RoutingError, RuleBook, RulesError

log = logging.getLogger(__name__)

PRODUCER = "routing"
ASSIGNMENTS = "assignments"
CONFIG = "config"
CURRENT = "current"
CONFIG_TTL = 1.0


# Only by _id (and the inbox's own TTL index): every query routing makes is by complaint.
INDEXES = {ASSIGNMENTS: [], CONFIG: [], **inbox.INDEXES}


@dataclass(frozen=True)
class Loaded:
    """The organization and rules in force, and the version they were stored under."""

    version: int
    organization: Organization
    rules: RuleBook
    policy: AssignmentPolicy


def build(organization_text: str, rules_text: str) -> tuple[Organization, RuleBook]:
    """Validate the two files' text; Invalid lists every problem found."""
    try:
        organization = org_module.build_organization(_yaml(organization_text, "organization"))
    except OrganizationError as e:
        raise Invalid(str(e), {"organization": list(e.problems)}) from None
    try:
        rules = rules_module.build_rules(_yaml(rules_text, "rules"), organization)
    except RulesError as e:
        raise Invalid(str(e), {"rules": list(e.problems)}) from None
    return organization, rules


def _yaml(text: str, what: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        error = OrganizationError if what == "organization" else RulesError
        raise error([f"not valid YAML: {e}"]) from None


def _read(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise Invalid(f"cannot read the {what} file: {e}", {what: [str(e)]}) from None


def announcement(organization: Organization) -> dict:
    """The body of `organization_changed`: each institution's unit codes (intake checks
    branch codes with them) and the tree (every service that decides who may act keeps it)."""
    tree = OrgTree(organization.tree_data())
    return {"institutions": tree.institutions(), "units": tree.as_data()}


def view(state: Assignment, version: int) -> dict:
    """The assignment as it stands, for RPC callers."""
    return {**to_document(state), "unit": state.accountable_unit, "version": version}


class Routing:
    def __init__(self, db, config_ttl: float = CONFIG_TTL):
        self.db = db
        self.assignments = db[ASSIGNMENTS]
        self.config = db[CONFIG]
        self.config_ttl = config_ttl
        # Start-up announcements go through the outbox collection too (the sweep relays
        # them): there is no worker yet whose outbox could carry them.
        self._startup_relay = outbox.Relay(db[outbox.COLLECTION], None, timedelta(0))
        self._loaded: Loaded | None = None
        self._checked_at = 0.0
        self._start()

    # -- the organization and rules in force ------------------------------------------

    def _start(self) -> None:
        doc = self.config.find_one({"_id": CURRENT})
        if doc is None:
            org_text = _read(org_module.DEFAULT_PATH, "organization")
            rules_text = _read(rules_module.DEFAULT_PATH, "rules")
            build(org_text, rules_text)  # the shipped files must be valid
            # Another instance may store them first: the same files.
            with suppress(DuplicateKeyError):
                self.config.insert_one(self._config_doc(1, org_text, rules_text, "shipped files"))
            doc = self.config.find_one({"_id": CURRENT})
        self._use(doc, strict=True)
        self._startup_relay.stage(None, [self._announcement(self._loaded.organization)])
        self._checked_at = time.monotonic()

    @staticmethod
    def _config_doc(version: int, org_text: str, rules_text: str, source: str) -> dict:
        return {"_id": CURRENT, "version": version, "organization": org_text,
                "rules": rules_text, "source": source, "loaded_at": timeutil.now()}

    def _use(self, doc: dict, strict: bool = False) -> None:
        try:
            organization, book = build(doc["organization"], doc["rules"])
        except Invalid:
            if strict:
                raise
            log.exception("stored organization version %s does not load; keeping version %s",
                          doc["version"], self._loaded.version)
            return
        self._loaded = Loaded(doc["version"], organization, book,
                              AssignmentPolicy(organization, book.reasons))
        log.info("routing uses organization and rules version %s (%s)", doc["version"],
                 doc.get("source"))

    def current(self, refresh: bool = False) -> Loaded:
        """What is in force, picking up a newer stored version (another instance's reload)."""
        now = time.monotonic()
        if refresh or now - self._checked_at > self.config_ttl:
            self._checked_at = now
            doc = self.config.find_one({"_id": CURRENT, "version": {"$gt": self._loaded.version}})
            if doc is not None:
                self._use(doc)
        return self._loaded

    @staticmethod
    def _announcement(organization: Organization) -> dict:
        event = events.make_event("organization_changed", None, announcement(organization), PRODUCER)
        return event_message(event)

    def reload(self, outbox, organization: str | None = None, rules: str | None = None,
               organization_text: str | None = None, rules_text: str | None = None) -> dict:
        """Validate and put in force new organization and/or rules (text, or a path on this
        host). Neither given: the shipped files. One given: the other stays as in force.
        Invalid data raises Invalid with every problem, and nothing changes."""
        loaded = self.current(refresh=True)
        stored = self.config.find_one({"_id": CURRENT})
        if organization is not None:
            organization_text = _read(organization, "organization")
        if rules is not None:
            rules_text = _read(rules, "rules")
        if organization_text is None and rules_text is None:
            organization_text = _read(org_module.DEFAULT_PATH, "organization")
            rules_text = _read(rules_module.DEFAULT_PATH, "rules")
            source = "shipped files"
        else:
            source = " and ".join(what for what, text in (("organization", organization_text),
                                                          ("rules", rules_text)) if text is not None)
        organization_text = stored["organization"] if organization_text is None else organization_text
        rules_text = stored["rules"] if rules_text is None else rules_text
        new_org, _ = build(organization_text, rules_text)
        version = stored["version"] + 1
        doc = self._config_doc(version, organization_text, rules_text, source)

        def write(session):
            result = self.config.replace_one({"_id": CURRENT, "version": stored["version"]}, doc,
                                             session=session)
            if result.matched_count != 1:
                raise Conflict("another reload was accepted meanwhile; try again")
            outbox.stage(session, self._announcement(new_org))

        in_transaction(self.db, write)
        self._use(doc, strict=True)
        log.info("reloaded routing data: version %s -> %s (%s)", loaded.version, version, source)
        return self.health()

    def health(self) -> dict:
        loaded = self.current()
        return {"status": "ok", "version": loaded.version,
                "institutions": list(loaded.organization.institutions),
                "units": len(loaded.organization.units), "rules": len(loaded.rules.rules)}

    # -- queries ----------------------------------------------------------------------

    def visible_units(self, unit: str) -> list[str]:
        try:
            return sorted(self.current().organization.subtree(unit))
        except UnknownUnit:
            raise NotFound(f"unknown unit {unit!r}") from None

    def org_units(self, visible_root: str | None) -> list[dict]:
        try:
            return self.current().organization.tree(visible_root)
        except UnknownUnit:
            raise NotFound(f"unknown unit {visible_root!r}") from None

    def _find(self, complaint_no: str, visible_units: Iterable[str] | None) -> dict:
        """The complaint's document when the caller may see it: its accountable unit, or
        the unit a transfer waits for, is among the caller's units (None: all)."""
        doc = self.assignments.find_one({"_id": complaint_no})
        if doc is None or (visible_units is not None
                           and not {doc["unit"], doc.get("pending_to")} & set(visible_units)):
            raise NotFound(f"no complaint {complaint_no}")
        return doc

    def get(self, complaint_no: str, visible_units: Iterable[str] | None = None) -> dict:
        doc = self._find(complaint_no, visible_units)
        return view(from_document(doc["state"]), doc["version"])

    # -- changes ----------------------------------------------------------------------

    def _messages(self, complaint_no: str, outcome: Outcome) -> list[dict]:
        return [event_message(events.make_event(e["type"], complaint_no, e["body"], PRODUCER))
                for e in outcome.events]

    @staticmethod
    def _fields(state: Assignment) -> dict:
        return {"state": to_document(state), "unit": state.accountable_unit,
                "pending_to": state.pending_transfer.to_unit if state.pending_transfer else None,
                "updated_at": timeutil.now()}

    def route(self, event: dict, outbox) -> None:
        """complaint_received: decide who handles it, store the assignment, announce it."""
        body = event["body"]
        complaint_no = body["complaint_no"]
        loaded = self.current()
        try:
            decision = loaded.rules.route(body)
        except RoutingError:
            # A unit added by a reload another instance accepted a moment ago?
            loaded = self.current(refresh=True)
            decision = loaded.rules.route(body)  # else the message is retried, then parked
        outcome = loaded.policy.assign(decision, complaint_no)
        messages = self._messages(complaint_no, outcome)
        doc = {"_id": complaint_no, "version": 1, **self._fields(outcome.state)}

        def write(session):
            if not inbox.first_time(self.db, session, event):
                return
            self.assignments.insert_one(doc, session=session)
            outbox.stage(session, *messages)

        in_transaction(self.db, write)

    def _save(self, doc: dict, outcome: Outcome, outbox, event: dict | None = None) -> list[str]:
        """Store the new state if nobody changed it since `doc` was read; stage its events
        and return their ids."""
        complaint_no = doc["_id"]
        messages = self._messages(complaint_no, outcome)
        fields = self._fields(outcome.state)

        def write(session):
            if event is not None and not inbox.first_time(self.db, session, event):
                return
            result = self.assignments.update_one(
                {"_id": complaint_no, "version": doc["version"]},
                {"$set": fields, "$inc": {"version": 1}}, session=session)
            if result.matched_count != 1:
                raise Stale("the assignment changed meanwhile; read it again", {"version": [str(doc["version"])]})
            outbox.stage(session, *messages)

        in_transaction(self.db, write)
        return [message["_id"] for message in messages]

    def act(self, complaint_no: str, action: str, data: dict, actor: dict, outbox) -> dict:
        """A handler's action (CONTRACTS §3), which the assignment policy checks against the
        rule book: the assignment as it stands afterwards, and the ids of the events that
        announce the change (intake's record follows them)."""
        data = data or {}
        actions = {
            "accept": lambda policy, state: policy.accept(state, actor),
            "transfer": lambda policy, state: policy.request_transfer(state, actor, data.get("to_unit"),
                                                                      data.get("reason")),
            "transfer_accept": lambda policy, state: policy.accept_transfer(state, actor),
            "transfer_reject": lambda policy, state: policy.reject_transfer(state, actor, data.get("reason")),
            "escalate": lambda policy, state: policy.escalate(state, actor, data.get("reason")),
            "misconduct": lambda policy, state: policy.flag_misconduct(state, actor, data.get("clue"),
                                                                       data.get("note") or ""),
        }
        if action not in actions:
            raise NotFound(f"no action {action!r} on an assignment")
        doc = self._find(complaint_no, None)
        outcome = actions[action](self.current().policy, from_document(doc["state"]))
        announced = self._save(doc, outcome, outbox)
        return {**view(outcome.state, doc["version"] + 1), "events": announced}

    def _follow(self, event: dict, change: Callable[[Assignment, Loaded], Outcome | None],
                outbox) -> None:
        """Apply an event's change to the assignment, once, re-reading after a lost race."""
        complaint_no = event["body"]["complaint_no"]

        def apply() -> None:
            doc = self.assignments.find_one({"_id": complaint_no})
            if doc is None:
                # Not routed yet (or not ours): retried, then parked for an operator.
                raise NotFound(f"{event['type']} for {complaint_no}, which routing has not "
                               "assigned")
            outcome = change(from_document(doc["state"]), self.current())
            if outcome is not None:
                self._save(doc, outcome, outbox, event)  # Stale: another change got there first

        retry_on_conflict(apply, f"the assignment of {complaint_no}, while {event['type']} was applied,")

    def breached(self, event: dict, outbox) -> None:
        """sla_breached: one level up, to the parent's lead department (the clock runs on)."""
        body = event["body"]

        def change(state: Assignment, loaded: Loaded) -> Outcome | None:
            unit = body.get("unit")
            org = loaded.organization
            if unit and org.has_unit(unit) and state.accountable_unit in {
                    a.code for a in org.ancestors(unit)}:
                log.info("%s: already above %s, whose clock broke", state.complaint_no, unit)
                return None
            return loaded.policy.escalate_for_breach(state, body)

        self._follow(event, change, outbox)

    def mass_complaint(self, event: dict, outbox) -> None:
        """mass_complaint_detected: up a level like a breach, flagged for the regulator report."""
        body = event["body"]
        note = f"group {body['group_id']} of {body['group_size']}" + (f": {body['note']}" if body.get("note") else "")
        self._follow(event, lambda state, loaded: loaded.policy.escalate_for_mass_complaint(state, note), outbox)

    def reopened(self, event: dict, outbox) -> None:
        """complaint_reopened: the review goes to the unit above the one that decided."""
        body = event["body"]
        self._follow(event, lambda state, loaded: loaded.policy.review(
            state, body["decided_by_unit"], body["reason"]), outbox)
