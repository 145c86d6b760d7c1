"""Who may do what: the rule book (``data/access.yaml``) and its evaluation. Pure.

A decision takes three things: the caller (a verified token's identity), the facts of the
complaint that matter (its institution, its accountable unit, the unit a pending transfer
is offered to, the staff it names) and the organization's tree (``orgtree.OrgTree``)::

    book = load_rule_book()
    book.check("extend", Caller.of(actor), Facts.of(record), tree)   # NotFound / Forbidden
    book.roles_for("decision")                                        # the edge's early check

Each service calls ``check`` for the actions it owns, with facts from its own records or
intake's: a service never trusts that the edge checked. A caller who may not even read the
complaint is told it does not exist (404, DESIGN "Access"); one who may read it but not do
the action is refused (403) with the rule that applies.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.common.errors import Forbidden, NotFound
from services.common.orgtree import OrgTree

DATA = Path(__file__).parent / "data" / "access.yaml"
READ = "read"
# ``approval`` of an action whose positions the SLA policy data names, step by step.
BY_POLICY = "policy"
# The places this module knows how to evaluate; access.yaml describes each.
PLACES = ("own_unit", "subtree", "superior_unit", "head_office", "offered_unit", "offered_subtree", "anywhere")


class RuleBookError(ValueError):
    """The rule book's data is invalid; ``problems`` lists every fault."""

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        super().__init__("invalid rule book:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class Caller:
    """Who acts: the verified token's ``sub``, ``unit`` and ``roles``."""

    sub: str
    unit: str
    roles: frozenset[str]
    name: str | None = None

    @classmethod
    def of(cls, actor: Caller | Mapping) -> Caller:
        if isinstance(actor, Caller):
            return actor
        return cls(str(actor.get("sub")), str(actor.get("unit")), frozenset(actor.get("roles") or ()),
                   actor.get("name"))

    def as_actor(self) -> dict:
        return {"sub": self.sub, "name": self.name, "unit": self.unit, "roles": sorted(self.roles)}


@dataclass(frozen=True)
class Facts:
    """What of a complaint decides who may act on it (for a report: its unit alone)."""

    institution: str | None
    unit: str | None  # the accountable unit
    offered_unit: str | None = None  # the unit a pending transfer waits for
    respondent_staff: frozenset[str] = frozenset()
    complaint_no: str | None = None

    @classmethod
    def of(cls, facts: Facts | Mapping) -> Facts:
        """From a mapping with ``institution``, ``unit``, ``offered_unit``,
        ``respondent_staff`` and ``complaint_no`` (intake's ``access_facts``)."""
        if isinstance(facts, Facts):
            return facts
        return cls(facts.get("institution"), facts.get("unit"), facts.get("offered_unit"),
                   frozenset(facts.get("respondent_staff") or ()), facts.get("complaint_no"))

    def as_dict(self) -> dict:
        return {"complaint_no": self.complaint_no, "institution": self.institution, "unit": self.unit,
                "offered_unit": self.offered_unit, "respondent_staff": sorted(self.respondent_staff)}


@dataclass(frozen=True)
class Rule:
    roles: tuple[str, ...]
    where: tuple[str, ...]


@dataclass(frozen=True)
class ActionRules:
    name: str
    owner: str
    rules: tuple[Rule, ...]
    recusal: bool = False
    approval: str | tuple[str, ...] = ()  # positions, or BY_POLICY

    @property
    def roles(self) -> frozenset[str]:
        return frozenset().union(*(rule.roles for rule in self.rules))


@dataclass(frozen=True)
class Position:
    name: str
    roles: tuple[str, ...]
    where: tuple[str, ...]


def places(caller: Caller, facts: Facts, tree: OrgTree) -> frozenset[str]:
    """Every place the caller's unit stands in relative to the complaint."""
    found = {"anywhere"}
    if not tree.has(caller.unit):
        return frozenset(found)
    if facts.unit is not None and tree.has(facts.unit):
        above = tree.ancestors(facts.unit)
        if caller.unit == facts.unit:
            found.update(("own_unit", "subtree"))
        if caller.unit in above:
            found.update(("superior_unit", "subtree"))
    if caller.unit == tree.head_office(facts.institution):
        found.add("head_office")
    offered = facts.offered_unit
    if offered is not None and tree.has(offered):
        if caller.unit == offered:
            found.update(("offered_unit", "offered_subtree"))
        if caller.unit in tree.ancestors(offered):
            found.add("offered_subtree")
    return frozenset(found)


def _fits(rule: Rule | Position, caller: Caller, where: frozenset[str]) -> bool:
    return bool(caller.roles.intersection(rule.roles)) and any(place in where for place in rule.where)


class RuleBook:
    def __init__(self, roles: Mapping[str, str], place_texts: Mapping[str, str],
                 actions: Mapping[str, ActionRules], positions: Mapping[str, Position]):
        self.roles = dict(roles)
        self.place_texts = dict(place_texts)
        self.actions = dict(actions)
        self.positions = dict(positions)

    # -- what the edge asks -------------------------------------------------------------

    def action(self, name: str) -> ActionRules:
        try:
            return self.actions[name]
        except KeyError:
            raise NotFound(f"no action {name!r} in the rule book") from None

    def roles_for(self, action: str) -> frozenset[str]:
        """Every role that may do ``action`` somewhere (the edge's early 403)."""
        return self.action(action).roles

    def approver_roles(self) -> frozenset[str]:
        """Every role some position names: who may ever decide an approval."""
        return frozenset().union(*(position.roles for position in self.positions.values()))

    # -- what each service checks ----------------------------------------------------------

    def may(self, action: str, caller: Caller, facts: Facts, tree: OrgTree) -> bool:
        spec = self.action(action)
        if spec.recusal and caller.sub in facts.respondent_staff:
            return False
        where = places(caller, facts, tree)
        return any(_fits(rule, caller, where) for rule in spec.rules)

    def check(self, action: str, caller: Caller, facts: Facts, tree: OrgTree) -> None:
        """Nothing when ``caller`` may do ``action`` on the complaint; otherwise NotFound
        (they may not even read it: as if it did not exist) or Forbidden, saying why."""
        spec = self.action(action)
        where = places(caller, facts, tree)
        if not any(_fits(rule, caller, where) for rule in self.action(READ).rules):
            raise NotFound(f"no complaint {facts.complaint_no}")
        if spec.recusal and caller.sub in facts.respondent_staff:
            raise Forbidden(f"{caller.sub} is named in complaint {facts.complaint_no} and must recuse "
                            f"(Order 3/2020 Art. 17)", {"actor": ["named in respondent_staff"]})
        if any(_fits(rule, caller, where) for rule in spec.rules):
            return
        if "offered_subtree" in where and "subtree" not in where:
            raise Forbidden(
                f"a transfer of {facts.complaint_no} to {facts.offered_unit} is pending: {facts.unit} stays "
                f"accountable until {facts.offered_unit} accepts it; meanwhile {caller.unit} may read it and "
                f"accept or refuse the transfer", {"action": [f"{action} is for {facts.unit} and the units above it"]})
        raise Forbidden(f"{action} needs {self.describe(spec.rules)}",
                        {"roles": [f"{action} needs {self.describe(spec.rules)}"]})

    # -- approvals ------------------------------------------------------------------------

    def position(self, name: str) -> Position:
        try:
            return self.positions[name]
        except KeyError:
            raise RuleBookError([f"unknown approval position {name!r}"]) from None

    def held(self, positions: Iterable[str], caller: Caller, facts: Facts, tree: OrgTree) -> list[str]:
        """The positions among ``positions`` that ``caller`` holds for this complaint (a
        recused member of staff holds none)."""
        if caller.sub in facts.respondent_staff:
            return []
        where = places(caller, facts, tree)
        return [name for name in positions if _fits(self.position(name), caller, where)]

    def ordered(self, positions: Iterable[str]) -> list[str]:
        """``positions`` in the book's order (nearest first), each checked to exist."""
        wanted = set(positions)
        for name in wanted:
            self.position(name)
        return [name for name in self.positions if name in wanted]

    def needs(self, positions: Iterable[str]) -> list[str]:
        """The roles that may decide a step naming ``positions``."""
        return sorted(frozenset().union(*(self.position(name).roles for name in positions)))

    def of_unit(self, positions: Iterable[str], facts: Facts, tree: OrgTree) -> str | None:
        """The unit a step is addressed to: the nearest one of its positions names."""
        for name in positions:
            for place in self.position(name).where:
                unit = _unit_of(place, facts, tree)
                if unit is not None:
                    return unit
        return None

    def deciding_units(self, positions: Iterable[str], facts: Facts, tree: OrgTree) -> list[str]:
        """Every unit whose staff may hold one of ``positions`` for this complaint (what a
        pending approval is found by)."""
        units: set[str] = set()
        for name in positions:
            for place in self.position(name).where:
                units.update(_units_in(place, facts, tree))
        return sorted(units)

    # -- the README ----------------------------------------------------------------------

    def describe(self, rules: Iterable[Rule | Position]) -> str:
        return "; or ".join(
            f"{', '.join(rule.roles)} in {' or '.join(self.place_texts[p] for p in rule.where)}"
            for rule in rules)

    def table(self) -> str:
        """The README's table of who may do what (markdown)."""
        lines = ["| action | done by | who may (role in place) | recusal | approval |",
                 "|---|---|---|---|---|"]
        for spec in self.actions.values():
            if spec.approval == BY_POLICY:
                approval = "as the SLA policy names it"
            elif spec.approval:
                approval = " or ".join(spec.approval)
            else:
                approval = "none"
            lines.append(f"| `{spec.name}` | {spec.owner} | {self.describe(spec.rules)} | "
                         f"{'yes' if spec.recusal else 'no'} | {approval} |")
        lines += ["", "| approval position | held by |", "|---|---|"]
        lines += [f"| `{p.name}` | {self.describe([p])} |" for p in self.positions.values()]
        return "\n".join(lines) + "\n"


def _unit_of(place: str, facts: Facts, tree: OrgTree) -> str | None:
    if place in ("own_unit", "subtree"):
        return facts.unit
    if place == "superior_unit":
        return tree.parent(facts.unit) if facts.unit else None
    if place == "head_office":
        return tree.head_office(facts.institution)
    if place in ("offered_unit", "offered_subtree"):
        return facts.offered_unit
    return None


def _units_in(place: str, facts: Facts, tree: OrgTree) -> set[str]:
    above = set(tree.ancestors(facts.unit)) if facts.unit else set()
    offered = facts.offered_unit
    found = {
        "own_unit": {facts.unit},
        "subtree": {facts.unit} | above,
        "superior_unit": above,
        "head_office": {tree.head_office(facts.institution)},
        "offered_unit": {offered},
        "offered_subtree": ({offered} | set(tree.ancestors(offered))) if offered else set(),
        "anywhere": set(),
    }[place]
    return {unit for unit in found if unit is not None}


# -- loading ---------------------------------------------------------------------------------

def rule_book_from_data(data: Mapping) -> RuleBook:
    """Build and check the rule book; :class:`RuleBookError` lists every problem."""
    problems: list[str] = []
    roles = dict(data.get("roles") or {})
    place_texts = dict(data.get("places") or {})
    for place in set(place_texts) ^ set(PLACES):
        problems.append(f"place {place!r}: the data and services/common/access.py must name the same places")

    def rules_of(where: str, raw) -> tuple[Rule, ...]:
        found = []
        for index, rule in enumerate(raw or ()):
            unknown_roles = sorted(set(rule.get("roles") or ()) - set(roles))
            unknown_places = sorted(set(rule.get("where") or ()) - set(PLACES))
            if unknown_roles or unknown_places or not rule.get("roles") or not rule.get("where"):
                problems.append(f"{where} rule {index}: roles and places must be known and given "
                                f"(unknown roles {unknown_roles}, places {unknown_places})")
            found.append(Rule(tuple(rule.get("roles") or ()), tuple(rule.get("where") or ())))
        return tuple(found)

    positions = {}
    for name, raw in (data.get("positions") or {}).items():
        [rule] = rules_of(f"position {name}", [raw])
        positions[name] = Position(name, rule.roles, rule.where)
    actions = {}
    for name, raw in (data.get("actions") or {}).items():
        approval = raw.get("approval") or ()
        if approval != BY_POLICY:
            approval = tuple(approval)
            for position in approval:
                if position not in positions:
                    problems.append(f"action {name}: unknown approval position {position!r}")
        rules = rules_of(f"action {name}", raw.get("rules"))
        if not rules:
            problems.append(f"action {name}: no rules")
        actions[name] = ActionRules(name, str(raw.get("owner")), rules, bool(raw.get("recusal", False)), approval)
    if READ not in actions:
        problems.append(f"no {READ!r} action: every check asks first whether the caller may read")
    if problems:
        raise RuleBookError(problems)
    return RuleBook(roles, place_texts, actions, positions)


def load_rule_book(path: Path = DATA) -> RuleBook:
    with open(path, encoding="utf-8") as handle:
        return rule_book_from_data(yaml.safe_load(handle))


RULE_BOOK = load_rule_book()


if __name__ == "__main__":
    # The README's table: python -m services.common.access
    sys.stdout.write(RULE_BOOK.table())
