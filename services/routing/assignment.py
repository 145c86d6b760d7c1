"""Who is accountable for one complaint, and how that changes: transfers and escalation.

Pure: every operation takes an `Assignment` and returns an `Outcome` (the new state and the
domain events to emit, each `{"type": <catalogue name>, "body": <catalogue body>}`; the
bodies validate against `services.common.events`, and the service adds the envelope). All
the events of one outcome carry the same `at`, so that intake, which ignores a fact older
than the last it applied, applies every one of them whatever order they arrive in.

Nothing here reads or writes the SLA clock: a transfer, a rejection, an
escalation or a misconduct referral never restarts nor pauses the time limit (seed 000 §6,
seed 002 part 4(1)); the clock belongs to the sla service and runs from `received_at`.

The rules it enforces (seed 002 parts 3 and 4, DESIGN.md "Domain rules"):

- First-inquiry responsibility: the accountable unit stays accountable while a transfer is
  pending; accountability moves only when the receiving unit accepts.
- A transfer needs a reason, and the never-valid grounds ("designed by a higher
  department", "sold by an agent", "the court has ruled", ...) are refused.
- Never back and forth: a unit that passed the complaint on (by an accepted transfer, by an
  escalation, or by a transfer the receiver rejected) or that refused it can never be the
  target of a transfer again. It may get the complaint back only from below, by an upward
  move (escalation or rejection), which is how 提级处理 works.
- A rejected transfer goes up, never back to the sender: to the lowest unit strictly above
  both sender and receiver (their lowest common ancestor when that is neither of them, else
  that ancestor's parent), its consumer-protection department. The head office has nobody
  above: when the upward target would be above the head office, the head office keeps it
  and the event says so (`at_top`).
- Escalation (by hand, on an SLA breach, for a mass complaint) goes to the parent unit's
  consumer-protection department; at the head office it stays there, recorded.
- Recusal (Order 3/2020 Art. 17): nobody named in `respondent_staff` is assigned the
  complaint nor may act on it.

Who may do each action (role, place in the tree, recusal, a transfer in flight) is the rule
book's (`services.common.access`), checked on the assignment before its rules of state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import NamedTuple

from services.common import timeutil
from services.common.access import RULE_BOOK, Caller, Facts, RuleBook
from services.common.errors import Conflict, Invalid
from services.common.orgtree import OrgTree
from services.routing.organization import Organization, UnknownUnit
from services.routing.rules import Decision, ReasonPolicy

SYSTEM = "routing"  # the actor of what the rules and the clocks decide, not a person

# Escalation triggers and the catalogue's `cause` of `complaint_escalated`.
CAUSES = {
    "manual": "handler",
    "sla_breach": "sla_breach",
    "mass_complaint": "mass_complaint",
    "on_arrival": "authority",
    "major": "major",
    "transfer_rejected": "transfer_rejected",
}


# -- refusals (the shared errors: 409 for a state that does not allow it, 422 for a field) --


def refused(message: str) -> Conflict:
    """The assignment's state does not allow it (HTTP 409)."""
    return Conflict(message, {"action": [message]})


def invalid(field: str, message: str) -> Invalid:
    """A field of the request is invalid (HTTP 422)."""
    return Invalid(message, {field: [message]})


# -- values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    from_unit: str
    to_unit: str
    reason: str
    requested_by: str | None


@dataclass(frozen=True)
class Escalation:
    from_unit: str
    to_unit: str
    trigger: str  # on_arrival | manual | sla_breach | mass_complaint | transfer_rejected
    reason: str
    by: str | None
    at_top: bool = False


@dataclass(frozen=True)
class Referral:
    unit: str
    department: str
    clue: str
    note: str
    by: str | None


@dataclass(frozen=True)
class Assignment:
    institution: str
    accountable_unit: str
    department: str
    office: str
    handler: str | None
    first_responder: Mapping[str, str | None]
    status: str = "assigned"  # assigned | accepted
    pending_transfer: Transfer | None = None
    passed_on: frozenset[str] = frozenset()
    refused_by: frozenset[str] = frozenset()
    transfer_count: int = 0
    escalations: tuple[Escalation, ...] = ()
    referrals: tuple[Referral, ...] = ()
    respondent_staff: frozenset[str] = frozenset()
    priority: str = "normal"
    flags: frozenset[str] = frozenset()
    complaint_no: str | None = None

    @property
    def barred(self) -> frozenset[str]:
        """Units that may never be the target of a transfer of this complaint again."""
        return self.passed_on | self.refused_by


class Outcome(NamedTuple):
    state: Assignment
    events: list[dict]


# -- storage form (plain JSON-able data; the service keeps one document per complaint) --


def to_document(state: Assignment) -> dict:
    doc = asdict(state)
    for key in ("passed_on", "refused_by", "respondent_staff", "flags"):
        doc[key] = sorted(doc[key])
    doc["first_responder"] = dict(state.first_responder)
    doc["escalations"] = [asdict(e) for e in state.escalations]
    doc["referrals"] = [asdict(r) for r in state.referrals]
    return doc


def from_document(doc: Mapping) -> Assignment:
    d = dict(doc)
    for key in ("passed_on", "refused_by", "respondent_staff", "flags"):
        d[key] = frozenset(d.get(key) or ())
    pending = d.get("pending_transfer")
    d["pending_transfer"] = Transfer(**pending) if pending else None
    d["escalations"] = tuple(Escalation(**e) for e in d.get("escalations") or ())
    d["referrals"] = tuple(Referral(**r) for r in d.get("referrals") or ())
    d["first_responder"] = dict(d.get("first_responder") or {})
    return Assignment(**d)


def _reason_text(reason) -> tuple[str | None, str]:
    if isinstance(reason, Mapping):
        return reason.get("code"), str(reason.get("text") or reason.get("code") or "")
    return None, "" if reason is None else str(reason)


class AssignmentPolicy:
    """The transitions of an assignment, against one organization and reason policy."""

    def __init__(self, organization: Organization, reasons: ReasonPolicy,
                 clock: Callable[[], datetime] = timeutil.now, book: RuleBook = RULE_BOOK):
        self.org = organization
        self.tree = OrgTree(organization.tree_data())
        self.reasons = reasons
        self.clock = clock
        self.book = book

    # -- helpers ----------------------------------------------------------------------

    def _event(self, state: Assignment, type_: str, actor: str | None, **body) -> dict:
        """A catalogue event; `at` is stamped by `_outcome`, once for all its events."""
        return {"type": type_, "body": {"complaint_no": state.complaint_no, "at": None,
                                        "actor": actor, **body}}

    def _outcome(self, state: Assignment, events: list[dict]) -> Outcome:
        at = timeutil.iso(self.clock())
        for event in events:
            event["body"]["at"] = at
        return Outcome(state, events)

    def _assigned(self, state: Assignment, reason: str, actor: str | None, **extra) -> dict:
        """`complaint_assigned`: who holds it now, after routing or any move (the record's
        `assignment` follows this event)."""
        return self._event(state, "complaint_assigned", actor, unit=state.accountable_unit,
                           department=state.department, office=state.office,
                           handler=state.handler, reason=reason,
                           first_responder=dict(state.first_responder),
                           priority=state.priority, flags=sorted(state.flags),
                           transfers=state.transfer_count, **extra)

    def _reason(self, reason, *, refusal: bool) -> str:
        code, text = _reason_text(reason)
        if not text.strip() and not code:
            raise invalid("reason", "a reason is required")
        if refusal:
            bad = self.reasons.never_valid_match(code, text)
            if bad is not None:
                raise invalid("reason", f"never a valid ground to refuse or pass on a complaint: "
                                        f"{bad.label}")
        return text.strip() or str(code)

    @staticmethod
    def facts(state: Assignment) -> Facts:
        """What of the assignment decides who may act on it (the rule book's facts)."""
        pending = state.pending_transfer
        return Facts(state.institution, state.accountable_unit, pending.to_unit if pending else None,
                     state.respondent_staff, state.complaint_no)

    def _allow(self, action: str, state: Assignment, actor) -> Caller:
        """The caller, when the rule book lets them do `action`; else NotFound / Forbidden."""
        caller = Caller.of(actor)
        self.book.check(action, caller, self.facts(state), self.tree)
        return caller

    def _pending(self, state: Assignment, actor) -> Transfer:
        """The pending transfer an answer is about; 409 when none is (404 to an outsider)."""
        if state.pending_transfer is None:
            self._allow("read", state, actor)
            raise refused("no transfer is pending")
        return state.pending_transfer

    def _land(self, state: Assignment, unit: str) -> dict:
        """Accountability fields for the consumer-protection department of `unit` (or the
        nearest above), with a handler who is not recused."""
        dept = self.org.consumer_protection(unit)
        return {
            "accountable_unit": dept.unit,
            "department": dept.code,
            "office": dept.office,
            "handler": self.org.handler_for(dept, exclude=state.respondent_staff),
        }

    def _up(self, state: Assignment, trigger: str, reason: str, by: str | None,
            from_unit: str, to_unit: str | None, **state_changes) -> Assignment:
        """Move accountability upward to `to_unit` (None: above the head office, where the
        head office keeps it)."""
        at_top = to_unit is None
        target = to_unit or self.org.head_office(state.institution).code
        landing = self._land(state, target)
        # The unit it leaves passed it on, upward: it never gets it back by a transfer.
        moved = landing["accountable_unit"] != state.accountable_unit
        return replace(
            state,
            **landing,
            status="assigned",
            pending_transfer=None,
            passed_on=state.passed_on | ({state.accountable_unit} if moved else set()),
            escalations=state.escalations + (
                Escalation(from_unit, landing["accountable_unit"], trigger, reason, by,
                           at_top),),
            **state_changes,
        )

    def _escalated(self, state: Assignment, actor: str | None) -> dict:
        """`complaint_escalated` for the last escalation of `state`."""
        e = state.escalations[-1]
        return self._event(state, "complaint_escalated", actor, from_unit=e.from_unit,
                           to_unit=e.to_unit, reason=e.reason, cause=CAUSES[e.trigger],
                           department=state.department, office=state.office,
                           handler=state.handler, at_top=e.at_top)

    # -- transitions ------------------------------------------------------------------

    def assign(self, decision: Decision, complaint_no: str | None = None) -> Outcome:
        """The initial assignment from a routing decision. An escalation on arrival (beyond
        the first unit's authority, or a major complaint taken straight to head office) is
        announced as `complaint_escalated` before the assignment."""
        if decision.handler is not None and decision.handler in decision.respondent_staff:
            raise invalid("handler", f"{decision.handler} is named in the complaint and must recuse")
        unit = self.org.unit(decision.unit)
        first = dict(decision.first_responder or {"unit": unit.code, "staff": None})
        escalations = tuple(
            Escalation(first["unit"], unit.code, "on_arrival", r, None)
            for r in decision.escalated_on_arrival
        )
        major = "emergency_plan" in decision.flags and first["unit"] != unit.code
        if major:
            escalations += (Escalation(first["unit"], unit.code, "major",
                                       "major complaint: emergency plan at head office", None),)
        state = Assignment(
            institution=unit.institution,
            accountable_unit=unit.code,
            department=decision.department,
            office=decision.office,
            handler=decision.handler,
            first_responder=first,
            respondent_staff=frozenset(decision.respondent_staff),
            priority=decision.priority,
            flags=frozenset(decision.flags),
            escalations=escalations,
            complaint_no=complaint_no,
        )
        events = []
        if escalations:
            cause = "major" if major else "authority"
            events.append(self._event(
                state, "complaint_escalated", SYSTEM, from_unit=first["unit"],
                to_unit=unit.code, reason="; ".join(e.reason for e in escalations),
                cause=cause, department=state.department, office=state.office,
                handler=state.handler, at_top=False))
        events.append(self._assigned(
            state, "routed", SYSTEM, rule=decision.rule,
            escalated_on_arrival=list(decision.escalated_on_arrival),
            involved=[{"unit": d.unit, "department": d.code, "office": d.office}
                      for d in decision.involved]))
        return self._outcome(state, events)

    def accept(self, state: Assignment, actor) -> Outcome:
        """The accountable unit's handler takes the complaint on."""
        a = self._allow("accept", state, actor)
        if state.pending_transfer is not None:
            raise refused("a transfer is pending: the receiver accepts or rejects it")
        if state.status == "accepted":
            raise refused("already accepted")
        new = replace(state, status="accepted", handler=a.sub)
        return self._outcome(new, [self._event(new, "complaint_accepted", a.sub,
                                               unit=new.accountable_unit,
                                               department=new.department,
                                               handler=a.sub)])

    def request_transfer(self, state: Assignment, actor, to_unit: str, reason) -> Outcome:
        """Ask another unit to take it; the sender stays accountable until it accepts."""
        a = self._allow("transfer", state, actor)
        text = self._reason(reason, refusal=True)
        if state.pending_transfer is not None:
            raise refused(f"a transfer to {state.pending_transfer.to_unit} is already pending")
        try:
            target = self.org.unit(to_unit)
        except UnknownUnit as e:
            raise invalid("to_unit", str(e)) from None
        if target.institution != state.institution:
            raise invalid("to_unit", f"{to_unit} belongs to another institution")
        if to_unit == state.accountable_unit:
            raise refused(f"it is already with {to_unit}")
        if to_unit in state.passed_on:
            raise refused(f"{to_unit} already passed it on: never back and forth")
        if to_unit in state.refused_by:
            raise refused(f"{to_unit} already refused it: it goes up, not back")
        transfer = Transfer(state.accountable_unit, to_unit, text, a.sub)
        new = replace(state, pending_transfer=transfer)
        return self._outcome(new, [self._event(new, "complaint_transfer_requested", a.sub,
                                               from_unit=transfer.from_unit, to_unit=to_unit,
                                               reason=text)])

    def accept_transfer(self, state: Assignment, actor) -> Outcome:
        """The receiving unit accepts: accountability moves, and the transfer counts."""
        t = self._pending(state, actor)
        a = self._allow("transfer_accept", state, actor)
        dept = self.org.consumer_protection(t.to_unit)
        if dept.unit != t.to_unit:
            # The receiver has no lead department of its own: it handles it at its front.
            dept = self.org.department(t.to_unit, office="front") or dept
        new = replace(
            state,
            accountable_unit=t.to_unit,
            department=dept.code,
            office=dept.office,
            handler=a.sub,
            status="accepted",
            pending_transfer=None,
            passed_on=state.passed_on | {t.from_unit},
            transfer_count=state.transfer_count + 1,
        )
        transferred = self._event(new, "complaint_transferred", a.sub,
                                  from_unit=t.from_unit, to_unit=t.to_unit,
                                  transfers=new.transfer_count, reason=t.reason,
                                  requested_by=t.requested_by, department=new.department,
                                  office=new.office, handler=a.sub)
        return self._outcome(new, [transferred,
                                   self._assigned(new, "transfer_accepted", a.sub)])

    def rejection_target(self, sender: str, receiver: str) -> str | None:
        """The lowest unit strictly above both sender and receiver; None above the top."""
        lca = self.org.lowest_common_ancestor(sender, receiver)
        if lca is None:  # different institutions cannot happen: transfers stay inside one
            raise invalid("to_unit", f"{sender} and {receiver} share no unit")
        if lca.code not in (sender, receiver):
            return lca.code
        parent = self.org.parent(lca.code)
        return parent.code if parent else None

    def reject_transfer(self, state: Assignment, actor, reason) -> Outcome:
        """The receiver refuses: the complaint goes up above both, never back."""
        t = self._pending(state, actor)
        a = self._allow("transfer_reject", state, actor)
        text = self._reason(reason, refusal=True)
        target = self.rejection_target(t.from_unit, t.to_unit)
        new = self._up(state, "transfer_rejected", text, a.sub, t.from_unit, target,
                       refused_by=state.refused_by | {t.to_unit})
        rejected = self._event(new, "complaint_transfer_rejected", a.sub,
                               from_unit=t.from_unit, to_unit=t.to_unit, reason=text,
                               escalated_to=new.accountable_unit,
                               at_top=new.escalations[-1].at_top)
        return self._outcome(new, [rejected,
                                   self._assigned(new, "transfer_rejected", a.sub)])

    def _escalate(self, state: Assignment, trigger: str, reason: str, by: str | None,
                  **state_changes) -> Outcome:
        events = []
        if state.pending_transfer is not None:
            # Going up overtakes a pending sideways transfer.
            t = state.pending_transfer
            events.append(self._event(state, "complaint_transfer_cancelled", by or SYSTEM,
                                      from_unit=t.from_unit, to_unit=t.to_unit,
                                      reason=f"escalated: {reason}"))
        parent = self.org.parent(state.accountable_unit)
        new = self._up(state, trigger, reason, by, state.accountable_unit,
                       parent.code if parent else None, **state_changes)
        events += [self._escalated(new, by or SYSTEM),
                   self._assigned(new, "escalated", by or SYSTEM)]
        return self._outcome(new, events)

    def escalate(self, state: Assignment, actor, reason) -> Outcome:
        """Report it up (提级处理) to the parent unit's consumer-protection department."""
        a = self._allow("escalate", state, actor)
        text = self._reason(reason, refusal=False)
        if state.pending_transfer is not None:
            raise refused("a transfer is pending: the receiver accepts or rejects it")
        return self._escalate(state, "manual", text, a.sub)

    def escalate_for_breach(self, state: Assignment, sla_event: Mapping) -> Outcome:
        """An SLA breach takes it one level up; the clock itself is left alone."""
        what = sla_event.get("clock") or sla_event.get("policy") or "time limit"
        due = sla_event.get("due_by")
        reason = f"SLA breached: {what}" + (f" due {due}" if due else "")
        return self._escalate(state, "sla_breach", reason, None)

    def escalate_for_mass_complaint(self, state: Assignment, note: str = "") -> Outcome:
        """A mass complaint goes up and is reported to the regulator (2012 notice §15)."""
        reason = "mass complaint" + (f": {note}" if note else "")
        return self._escalate(state, "mass_complaint", reason, None,
                              flags=state.flags | {"regulator_report"})

    def review(self, state: Assignment, decided_by_unit: str, reason: str) -> Outcome:
        """The customer asked for a review (核查) of a decision: the unit above the one that
        decided reviews it, in its consumer-protection department; at the head office its
        lead department reviews it."""
        try:
            parent = self.org.parent(decided_by_unit)
        except UnknownUnit as e:
            raise invalid("decided_by_unit", str(e)) from None
        events = []
        if state.pending_transfer is not None:
            t = state.pending_transfer
            events.append(self._event(state, "complaint_transfer_cancelled", SYSTEM,
                                      from_unit=t.from_unit, to_unit=t.to_unit,
                                      reason=f"review requested: {reason}"))
        new = self._up(state, "review", reason, None, decided_by_unit,
                       parent.code if parent else None)
        events.append(self._assigned(new, "review", SYSTEM, decided_by_unit=decided_by_unit,
                                     review_reason=reason))
        return self._outcome(new, events)

    def flag_misconduct(self, state: Assignment, actor, clue: str, note: str) -> Outcome:
        """Refer clues of collusion, threats or obstruction to discipline inspection, in
        parallel: accountability does not change."""
        a = self._allow("misconduct", state, actor)
        if clue not in self.reasons.misconduct_clues:
            raise invalid("clue", f"unknown misconduct clue {clue!r} (one of "
                                  f"{', '.join(sorted(self.reasons.misconduct_clues))})")
        if not (note or "").strip():
            raise invalid("note", "a note describing the clue is required")
        dept = self.org.discipline_inspection(state.accountable_unit)
        referral = Referral(dept.unit, dept.code, clue, note.strip(), a.sub)
        new = replace(state, referrals=state.referrals + (referral,))
        return self._outcome(new, [self._event(new, "misconduct_referred", a.sub,
                                               unit=dept.unit, department=dept.code,
                                               clue=clue, note=referral.note,
                                               accountable_unit=state.accountable_unit)])
