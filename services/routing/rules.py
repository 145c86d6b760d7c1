"""Routing rules: the first matching rule decides who handles a complaint on arrival.

Rules are data (`data/rules.yaml`), validated at load against the organization so that a
typo in a target, a field or a product is refused before any complaint is routed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from services.common.reference import CHANNELS, KINDS, LEVELS, OFFICES
from services.routing.organization import (
    CONSUMER_PROTECTION,
    Department,
    Organization,
)

DEFAULT_PATH = Path(__file__).parent / "data" / "rules.yaml"

TARGETS = ("first_receiving_unit", "head_office", "tier1_of_branch", "parent_of_branch")
FLAGS = frozenset({"emergency_plan", "regulator_report", "two_way_report"})
PRIORITIES = ("first", "normal")

_TOP_KEYS = {"categories", "major", "rules", "never_valid_reasons", "misconduct_clues"}
_WHEN_KEYS = {
    "kind", "channel", "product", "institution", "branch", "branch_level",
    "branch_within", "amount", "direct", "regulator", "major",
}
_THEN_KEYS = {
    "unit", "function", "office", "priority", "flags", "involve_middle_office",
    "check_authority",
}


# The yes/no matchers: `regulator` means forwarded by a regulator (channel `regulator`).
_YES_NO = {
    "direct": lambda f: f.direct,
    "regulator": lambda f: f.channel == "regulator",
    "major": lambda f: f.major,
}


class RulesError(ValueError):
    """The rules file is invalid; `problems` lists every fault found."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid routing rules ({len(self.problems)} problems):\n{lines}")


class RoutingError(ValueError):
    """A complaint that cannot be routed (unknown institution or branch)."""


@dataclass(frozen=True)
class NeverValidReason:
    code: str
    label: str
    keywords: tuple[str, ...]

    def matches(self, code: str | None, text: str) -> bool:
        if code == self.code:
            return True
        folded = text.casefold()
        return any(k.casefold() in folded for k in self.keywords)


@dataclass(frozen=True)
class ReasonPolicy:
    """The grounds nobody may refuse on (seed 002 parts 4(1), 4(2)) and misconduct clues."""

    never_valid: tuple[NeverValidReason, ...] = ()
    misconduct_clues: frozenset[str] = frozenset()

    def never_valid_match(self, code: str | None, text: str) -> NeverValidReason | None:
        for r in self.never_valid:
            if r.matches(code, text):
                return r
        return None


@dataclass(frozen=True)
class Rule:
    name: str
    when: Mapping[str, Any]
    unit: str
    functions: tuple[str, ...]
    office: str | None = None
    priority: str = "normal"
    flags: frozenset[str] = frozenset()
    involve_middle_office: str | None = None
    check_authority: bool = True


@dataclass(frozen=True)
class Decision:
    """Who handles a complaint on arrival, and why."""

    unit: str
    department: str
    office: str
    handler: str | None
    priority: str
    flags: frozenset[str]
    rule: str
    escalated_on_arrival: tuple[str, ...] = ()
    involved: tuple[Department, ...] = ()
    first_responder: Mapping[str, str | None] = field(default_factory=dict)
    respondent_staff: frozenset[str] = frozenset()
    institution: str = ""

    def as_dict(self) -> dict:
        return {
            "unit": self.unit,
            "department": self.department,
            "office": self.office,
            "handler": self.handler,
            "priority": self.priority,
            "flags": sorted(self.flags),
            "rule": self.rule,
            "escalated_on_arrival": list(self.escalated_on_arrival),
            "involved": [{"unit": d.unit, "department": d.code, "office": d.office}
                         for d in self.involved],
            "first_responder": dict(self.first_responder),
        }


@dataclass(frozen=True)
class _Facts:
    """What the rules look at, derived once from the complaint."""

    institution: str
    branch: str  # the first receiving unit: the branch, or the head office
    kind: str | None
    channel: str | None
    product: str | None
    amount: Decimal | None
    direct: bool
    major: bool
    staff_id: str | None
    respondent_staff: frozenset[str]


class RuleBook:
    def __init__(self, organization: Organization, rules, major, reasons: ReasonPolicy,
                 products, causes):
        self.organization = organization
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.major_group_size: int = major["group_size"]
        self.major_cause_events = frozenset(major["cause_events"])
        self.reasons = reasons
        self.products = frozenset(products)
        self.causes = frozenset(causes)

    # -- facts --------------------------------------------------------------------------

    def is_major(self, complaint: Mapping) -> bool:
        group = complaint.get("group_size") or 1
        return (int(group) >= self.major_group_size
                or complaint.get("cause_event") in self.major_cause_events)

    def _facts(self, complaint: Mapping) -> _Facts:
        org = self.organization
        institution = complaint.get("institution")
        if institution not in org.institutions:
            raise RoutingError(f"unknown institution {institution!r}")
        branch = complaint.get("branch") or institution
        if not org.has_unit(branch) or org.unit(branch).institution != institution:
            raise RoutingError(f"unknown branch {branch!r} in institution {institution}")
        amount = complaint.get("amount_in_dispute")
        if amount is not None:
            try:
                amount = Decimal(str(amount))
            except InvalidOperation:
                raise RoutingError(f"amount_in_dispute {amount!r} is not a decimal") from None
        return _Facts(
            institution=institution,
            branch=branch,
            kind=complaint.get("kind"),
            channel=complaint.get("channel"),
            product=complaint.get("product"),
            amount=amount,
            direct=bool(complaint.get("direct")),
            major=self.is_major(complaint),
            staff_id=complaint.get("staff_id"),
            respondent_staff=frozenset(complaint.get("respondent_staff") or ()),
        )

    # -- matching -----------------------------------------------------------------------

    def _matches(self, when: Mapping, f: _Facts) -> bool:
        org = self.organization
        for key, want in when.items():
            if key in ("kind", "channel", "product", "institution", "branch"):
                have = getattr(f, key)
                if have not in (want if isinstance(want, list) else [want]):
                    return False
            elif key == "branch_level":
                levels = want if isinstance(want, list) else [want]
                if org.unit(f.branch).level not in levels:
                    return False
            elif key == "branch_within":
                roots = want if isinstance(want, list) else [want]
                if not any(org.is_within(f.branch, r) for r in roots):
                    return False
            elif key == "amount":
                if f.amount is None:
                    return False
                if "min" in want and f.amount < Decimal(str(want["min"])):
                    return False
                if "max" in want and f.amount > Decimal(str(want["max"])):
                    return False
            elif key in _YES_NO and _YES_NO[key](f) != want:
                return False
        return True

    def rule_for(self, complaint: Mapping) -> Rule:
        f = self._facts(complaint)
        return next(r for r in self.rules if self._matches(r.when, f))

    # -- deciding -----------------------------------------------------------------------

    def _target(self, rule: Rule, f: _Facts) -> str:
        org = self.organization
        if rule.unit == "first_receiving_unit":
            return f.branch
        if rule.unit == "head_office":
            return f.institution
        if rule.unit == "tier1_of_branch":
            return org.tier1_of(f.branch).code
        if rule.unit == "parent_of_branch":
            parent = org.parent(f.branch)
            return parent.code if parent else f.branch
        return rule.unit

    def route(self, complaint: Mapping) -> Decision:
        """Decide the accountable unit, department and handler of a new complaint."""
        org = self.organization
        f = self._facts(complaint)
        rule = next(r for r in self.rules if self._matches(r.when, f))
        unit = self._target(rule, f)
        escalations: list[str] = []
        department: Department | None = None

        # Beyond a unit's authority the matter goes up on arrival (提级处理), to the
        # parent's lead department, until a unit has the authority.
        if rule.check_authority:
            while True:
                exceeded = org.unit(unit).authority.exceeded_by(f.amount, f.product)
                parent = org.parent(unit)
                if not exceeded or parent is None:
                    break
                escalations.append(f"{unit}: {'; '.join(exceeded)}; escalated to {parent.code}")
                department = org.consumer_protection(parent.code)
                unit = department.unit

        if department is None:
            department = next(
                (d for fn in rule.functions
                 if (d := org.department(unit, function=fn, office=rule.office)) is not None),
                None,
            )
        if department is None:
            # The unit has none of the rule's departments: its lead department up the path.
            department = org.consumer_protection(unit)
            unit = department.unit

        involved: tuple[Department, ...] = ()
        if rule.involve_middle_office == "product" and f.product:
            owner = org.department(unit, product=f.product, nearest=True)
            involved = (owner,) if owner else ()

        handler = org.handler_for(department, exclude=f.respondent_staff, prefer=f.staff_id)
        return Decision(
            unit=unit,
            department=department.code,
            office=department.office,
            handler=handler,
            priority=rule.priority,
            flags=rule.flags,
            rule=rule.name,
            escalated_on_arrival=tuple(escalations),
            involved=involved,
            first_responder={"unit": f.branch, "staff": f.staff_id},
            respondent_staff=f.respondent_staff,
            institution=f.institution,
        )


# -- loading and validation ------------------------------------------------------------


def load_rules(path: str | Path = DEFAULT_PATH, organization: Organization | None = None
               ) -> RuleBook:
    if organization is None:
        raise TypeError("load_rules needs the organization to validate targets against")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RulesError([f"{path}: not valid YAML: {e}"]) from None
    return build_rules(data, organization)


def build_rules(data: Any, organization: Organization) -> RuleBook:
    """Validate plain data into a RuleBook, or raise RulesError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise RulesError(["the rules file must be a mapping with `rules`"])
    problems += [f"rules file: unknown field {k!r}" for k in sorted(set(data) - _TOP_KEYS)]
    categories = data.get("categories") or {}
    products = list(categories.get("products") or [])
    causes = list(categories.get("causes") or [])
    if not products:
        problems.append("categories: no products")

    major = data.get("major") or {}
    if not isinstance(major.get("group_size"), int) or major["group_size"] < 2:
        problems.append("major: group_size must be an integer of at least 2")
    major = {"group_size": major.get("group_size") or 20,
             "cause_events": list(major.get("cause_events") or [])}

    rules = []
    names = set()
    raw_rules = data.get("rules") or []
    if not raw_rules:
        problems.append("no rules")
    for i, raw in enumerate(raw_rules):
        rule, rule_problems = _rule(i, raw, organization, products)
        problems += rule_problems
        if rule is not None:
            if rule.name in names:
                problems.append(f"rule {rule.name}: duplicate rule name")
            names.add(rule.name)
            rules.append(rule)
    if raw_rules and (raw_rules[-1] or {}).get("when"):
        problems.append("the last rule must be a catch-all (empty `when`), so that every "
                        "complaint is routed")

    # The organization names products too: check them against the same catalogue.
    for code in organization.institutions:
        inst = organization.institution(code)
        for p in inst.product_owners:
            if p not in products:
                problems.append(f"institution {code}: middle_office_owners names unknown "
                                f"product {p!r}")
        for c in inst.cause_owners:
            if c not in causes:
                problems.append(f"institution {code}: middle_office_owners names unknown "
                                f"cause {c!r}")
    for code in organization.units:
        for p in sorted(organization.unit(code).authority.excluded_products):
            if p not in products:
                problems.append(f"unit {code}: authority excludes unknown product {p!r}")

    reasons = []
    for j, r in enumerate(data.get("never_valid_reasons") or []):
        if not isinstance(r, Mapping) or not r.get("code") or not r.get("keywords"):
            problems.append(f"never_valid_reasons[{j}]: needs a code and keywords")
            continue
        reasons.append(NeverValidReason(str(r["code"]), str(r.get("label") or r["code"]),
                                        tuple(str(k) for k in r["keywords"])))
    policy = ReasonPolicy(tuple(reasons), frozenset(data.get("misconduct_clues") or ()))

    if problems:
        raise RulesError(problems)
    return RuleBook(organization, rules, major, policy, products, causes)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _rule(i: int, raw: Any, org: Organization, products: list[str]):
    problems: list[str] = []
    if not isinstance(raw, Mapping) or not raw.get("name"):
        return None, [f"rules[{i}]: needs a name"]
    name = str(raw["name"])
    where = f"rule {name}"
    problems += [f"{where}: unknown field {k!r}"
                 for k in sorted(set(raw) - {"name", "when", "then"})]
    when = raw.get("when") or {}
    then = raw.get("then") or {}
    if not isinstance(when, Mapping) or not isinstance(then, Mapping):
        return None, problems + [f"{where}: `when` and `then` must be mappings"]
    problems += [f"{where}: unknown field when.{k}" for k in sorted(set(when) - _WHEN_KEYS)]
    problems += [f"{where}: unknown field then.{k}" for k in sorted(set(then) - _THEN_KEYS)]

    allowed = {"kind": KINDS, "channel": CHANNELS, "product": products,
               "institution": org.institutions, "branch": org.units, "branch_within": org.units,
               "branch_level": LEVELS}
    for key, values in allowed.items():
        for v in _as_list(when.get(key, [])):
            if v not in values:
                problems.append(f"{where}: when.{key} {v!r} is unknown")
    for key in ("direct", "regulator", "major"):
        if key in when and not isinstance(when[key], bool):
            problems.append(f"{where}: when.{key} must be true or false")
    if "amount" in when:
        amount = when["amount"]
        if not isinstance(amount, Mapping) or not amount or set(amount) - {"min", "max"}:
            problems.append(f"{where}: when.amount takes min and/or max")
        else:
            for k, v in amount.items():
                try:
                    Decimal(str(v))
                except InvalidOperation:
                    problems.append(f"{where}: when.amount.{k} {v!r} is not a decimal")

    target = then.get("unit")
    if target is None:
        problems.append(f"{where}: then.unit is required")
    elif target not in TARGETS and not org.has_unit(target):
        problems.append(f"{where}: unknown target {target!r} (one of {', '.join(TARGETS)} "
                        "or a unit code)")
    elif target not in TARGETS:
        # A fixed unit only makes sense for complaints of its own institution.
        inst = org.unit(target).institution
        if _as_list(when.get("institution", [])) != [inst]:
            problems.append(f"{where}: fixed target {target} needs when.institution: {inst}")
    functions = tuple(_as_list(then.get("function") or CONSUMER_PROTECTION))
    known_functions = {d.function for u in org.units for d in org.unit(u).departments}
    for fn in functions:
        if fn not in known_functions:
            problems.append(f"{where}: no department anywhere has function {fn!r}")
    office = then.get("office")
    if office is not None and office not in OFFICES:
        problems.append(f"{where}: office {office!r} is not one of {', '.join(OFFICES)}")
    priority = then.get("priority", "normal")
    if priority not in PRIORITIES:
        problems.append(f"{where}: priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    flags = frozenset(_as_list(then.get("flags", [])))
    for flag in sorted(flags - FLAGS):
        problems.append(f"{where}: unknown flag {flag!r}")
    involve = then.get("involve_middle_office")
    if involve not in (None, "product"):
        problems.append(f"{where}: involve_middle_office must be 'product'")
    check = then.get("check_authority", True)
    if not isinstance(check, bool):
        problems.append(f"{where}: check_authority must be true or false")
    rule = Rule(name=name, when=dict(when), unit=str(target), functions=functions,
                office=office, priority=priority, flags=flags, involve_middle_office=involve,
                check_authority=bool(check))
    return rule, problems
