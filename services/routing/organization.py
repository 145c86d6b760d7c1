"""The organization: institutions, their units, departments and complaint handlers.

Pure data and queries, no I/O beyond reading the YAML file. Loading validates everything
and reports every problem at once, so an operator fixes a bad file in one pass instead of
discovering its faults one reload at a time.

Hierarchy (seed 002 part 3): head office -> tier-1 branch -> city branch -> county
sub-branch / outlet. The head office's unit code is the institution's code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from services.common.access import RULE_BOOK
from services.common.reference import LEVELS, OFFICES

# The roles staff may hold are the rule book's (services/common/data/access.yaml).
ROLES = frozenset(RULE_BOOK.roles)
CONSUMER_PROTECTION = "consumer_protection"
DISCIPLINE_INSPECTION = "discipline_inspection"
# Roles that may be handed a complaint to verify and answer.
HANDLING_ROLES = frozenset({"handler", "consumer_protection"})

DEFAULT_PATH = Path(__file__).parent / "data" / "organization.yaml"

_TOP_KEYS = {"department_sets", "institutions", "units", "staff"}
_INSTITUTION_KEYS = {"code", "name", "kind", "middle_office_owners", "authority_defaults"}
_UNIT_KEYS = {
    "code", "institution", "name", "name_en", "level", "parent", "region",
    "departments", "authority",
}
_DEPARTMENT_KEYS = {"code", "name", "office", "function"}
_STAFF_KEYS = {"id", "name", "unit", "department", "roles"}
_AUTHORITY_KEYS = {"max_amount", "excluded_products"}


class OrganizationError(ValueError):
    """The organization data is invalid; `problems` lists every fault found."""

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid organization ({len(self.problems)} problems):\n{lines}")


class UnknownUnit(KeyError):
    """A unit code that is not in the organization."""

    def __str__(self) -> str:
        return f"unknown unit {self.args[0]!r}"


@dataclass(frozen=True)
class Department:
    unit: str
    code: str
    name: str
    office: str
    function: str

    def as_contract(self) -> dict:
        return {"code": self.code, "name": self.name, "office": self.office}


@dataclass(frozen=True)
class Authority:
    """What a unit may settle on its own; beyond it the matter goes up (提级处理)."""

    max_amount: Decimal | None = None
    excluded_products: frozenset[str] = frozenset()

    def exceeded_by(self, amount: Decimal | None, product: str | None) -> list[str]:
        reasons = []
        if amount is not None and self.max_amount is not None and amount > self.max_amount:
            reasons.append(f"amount {amount} above its limit {self.max_amount}")
        if product is not None and product in self.excluded_products:
            reasons.append(f"product {product} is not within its authority")
        return reasons


@dataclass(frozen=True)
class Unit:
    code: str
    institution: str
    name: str
    level: str
    parent: str | None
    region: str
    departments: tuple[Department, ...]
    authority: Authority
    name_en: str | None = None


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    unit: str
    department: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    kind: str
    product_owners: Mapping[str, str]
    cause_owners: Mapping[str, str]


class Organization:
    """Immutable view of the validated organization; build it with `load_organization`."""

    def __init__(self, institutions, units, staff):
        self._institutions: Mapping[str, Institution] = MappingProxyType(dict(institutions))
        self._units: Mapping[str, Unit] = MappingProxyType(dict(units))
        self._staff: Mapping[str, Staff] = MappingProxyType(dict(staff))
        children: dict[str, list[str]] = {code: [] for code in self._units}
        for u in self._units.values():
            if u.parent is not None:
                children[u.parent].append(u.code)
        self._children = MappingProxyType({k: tuple(v) for k, v in children.items()})

    # -- units and the hierarchy ------------------------------------------------------

    @property
    def institutions(self) -> tuple[str, ...]:
        return tuple(self._institutions)

    def institution(self, code: str) -> Institution:
        return self._institutions[code]

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self._units)

    def has_unit(self, code: str | None) -> bool:
        return code in self._units

    def unit(self, code: str) -> Unit:
        try:
            return self._units[code]
        except KeyError:
            raise UnknownUnit(code) from None

    def parent(self, code: str) -> Unit | None:
        p = self.unit(code).parent
        return None if p is None else self._units[p]

    def children(self, code: str) -> tuple[Unit, ...]:
        self.unit(code)
        return tuple(self._units[c] for c in self._children[code])

    def ancestors(self, code: str) -> tuple[Unit, ...]:
        """Units above `code`, nearest first, ending with the head office."""
        out = []
        p = self.unit(code).parent
        while p is not None:
            out.append(self._units[p])
            p = self._units[p].parent
        return tuple(out)

    def path(self, code: str) -> tuple[Unit, ...]:
        """Units from the head office down to `code`, both included."""
        return tuple(reversed(self.ancestors(code))) + (self.unit(code),)

    def subtree(self, code: str) -> frozenset[str]:
        self.unit(code)
        seen, todo = set(), [code]
        while todo:
            c = todo.pop()
            seen.add(c)
            todo.extend(self._children[c])
        return frozenset(seen)

    def is_within(self, code: str, root: str) -> bool:
        """True when `code` is `root` or below it."""
        return code == root or any(a.code == root for a in self.ancestors(code))

    def lowest_common_ancestor(self, a: str, b: str) -> Unit | None:
        """The lowest unit that has both in its subtree (may be `a` or `b` itself);
        None when they belong to different institutions."""
        above_a = {u.code for u in self.path(a)}
        for u in reversed(self.path(b)):
            if u.code in above_a:
                return u
        return None

    def head_office(self, institution: str) -> Unit:
        if institution not in self._institutions:
            raise UnknownUnit(institution)
        return self._units[institution]

    def tier1_of(self, code: str) -> Unit:
        """The tier-1 branch above (or at) `code`; the head office for the head office."""
        for u in self.path(code):
            if u.level == "tier1":
                return u
        return self.unit(code)

    # -- departments and people -------------------------------------------------------

    def department(
        self,
        unit: str,
        *,
        code: str | None = None,
        office: str | None = None,
        function: str | None = None,
        product: str | None = None,
        cause: str | None = None,
        nearest: bool = False,
    ) -> Department | None:
        """The first department of `unit` matching every criterion given.

        `product` / `cause` ask for the middle-office department owning it (from the
        institution's `middle_office_owners`). With `nearest=True` the search walks up
        the path (the unit itself first) and returns the nearest match, so an outlet
        without a discipline-inspection office finds its city branch's.
        """
        u = self.unit(unit)
        if product is not None or cause is not None:
            inst = self._institutions[u.institution]
            owner = (
                inst.product_owners.get(product) if product is not None
                else inst.cause_owners.get(cause)
            )
            if owner is None:
                return None
            office, function = "middle", owner
        for candidate in (u, *self.ancestors(unit)) if nearest else (u,):
            for d in candidate.departments:
                if (
                    (code is None or d.code == code)
                    and (office is None or d.office == office)
                    and (function is None or d.function == function)
                ):
                    return d
        return None

    def consumer_protection(self, unit: str) -> Department:
        """The nearest consumer-protection department on the path up (validated to exist)."""
        return self.department(unit, function=CONSUMER_PROTECTION, nearest=True)

    def discipline_inspection(self, unit: str) -> Department:
        """The nearest discipline-inspection department on the path up (validated)."""
        return self.department(unit, function=DISCIPLINE_INSPECTION, nearest=True)

    def staff(self, staff_id: str) -> Staff | None:
        return self._staff.get(staff_id)

    def staff_in(self, unit: str, department: str | None = None) -> tuple[Staff, ...]:
        return tuple(
            s for s in self._staff.values()
            if s.unit == unit and (department is None or s.department == department)
        )

    def handler_for(
        self,
        department: Department,
        *,
        exclude: Iterable[str] = (),
        prefer: str | None = None,
    ) -> str | None:
        """A staff id from `department` who may handle a complaint, never one in
        `exclude` (recusal, Order 3/2020 Art. 17). `prefer` (the first person who took
        the complaint) keeps it when eligible: first-inquiry responsibility."""
        excluded = set(exclude)
        eligible = [
            s.id for s in self.staff_in(department.unit, department.code)
            if s.roles & HANDLING_ROLES and s.id not in excluded
        ]
        if prefer in eligible:
            return prefer
        return eligible[0] if eligible else None

    def tree_data(self) -> dict[str, dict]:
        """Each unit's institution, level, parent and region: what `organization_changed`
        carries for the services that decide who may act (services.common.orgtree) and for
        mediation, which refers a complaint by its unit's region."""
        return {u.code: {"institution": u.institution, "level": u.level, "parent": u.parent,
                         "region": u.region or None}
                for u in self._units.values()}

    # -- the contract shape -----------------------------------------------------------

    def tree(self, visible_root: str | None = None) -> list[dict]:
        """CONTRACTS §3 `GET /api/v1/org/units`: one tree per institution, or only the
        subtree of `visible_root` (the caller's unit)."""
        roots = [visible_root] if visible_root is not None else list(self._institutions)
        return [self._node(r) for r in roots]

    def _node(self, code: str) -> dict:
        u = self.unit(code)
        return {
            "code": u.code,
            "institution": u.institution,
            "name": u.name,
            "level": u.level,
            "parent": u.parent,
            "region": u.region,
            "departments": [d.as_contract() for d in u.departments],
            "children": [self._node(c) for c in self._children[code]],
        }


# -- loading and validation ----------------------------------------------------------


def load_organization(path: str | Path = DEFAULT_PATH) -> Organization:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise OrganizationError([f"{path}: not valid YAML: {e}"]) from None
    return build_organization(data)


def build_organization(data: Any) -> Organization:
    """Validate plain data (as read from YAML) into an Organization, or raise
    OrganizationError listing every problem."""
    return _Builder(data).build()


def _unknown_keys(where: str, item: Mapping, allowed: set[str]) -> list[str]:
    extra = sorted(set(item) - allowed)
    return [f"{where}: unknown field {k!r}" for k in extra]


class _Builder:
    def __init__(self, data: Any):
        self.data = data
        self.problems: list[str] = []

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def build(self) -> Organization:
        if not isinstance(self.data, Mapping):
            raise OrganizationError(["the organization must be a mapping with `units`"])
        self.problems += _unknown_keys("organization", self.data, _TOP_KEYS)
        institutions, defaults = self._institutions(self.data.get("institutions") or [])
        units = self._units(self.data.get("units") or [], institutions, defaults)
        self._hierarchy(units, institutions)
        staff = self._staff(self.data.get("staff") or [], units)
        if self.problems:
            raise OrganizationError(self.problems)
        return Organization(institutions, units, staff)

    def _institutions(self, items):
        institutions: dict[str, Institution] = {}
        defaults: dict[str, dict] = {}
        if not items:
            self.fail("no institutions")
        for i, item in enumerate(items):
            where = f"institutions[{i}]"
            if not isinstance(item, Mapping) or not item.get("code"):
                self.fail(f"{where}: needs a code")
                continue
            code = str(item["code"])
            where = f"institution {code}"
            self.problems += _unknown_keys(where, item, _INSTITUTION_KEYS)
            if code in institutions:
                self.fail(f"{where}: duplicate institution code")
                continue
            owners = item.get("middle_office_owners") or {}
            self.problems += _unknown_keys(
                f"{where} middle_office_owners", owners, {"products", "causes"}
            )
            institutions[code] = Institution(
                code=code,
                name=str(item.get("name") or code),
                kind=str(item.get("kind") or "bank"),
                product_owners=MappingProxyType(dict(owners.get("products") or {})),
                cause_owners=MappingProxyType(dict(owners.get("causes") or {})),
            )
            level_defaults = item.get("authority_defaults") or {}
            for level in level_defaults:
                if level not in LEVELS:
                    self.fail(f"{where}: authority_defaults for unknown level {level!r}")
            defaults[code] = level_defaults
        return institutions, defaults

    def _authority(self, where: str, raw: Mapping | None, default: Mapping | None):
        merged = dict(default or {})
        merged.update(raw or {})
        self.problems += _unknown_keys(f"{where} authority", merged, _AUTHORITY_KEYS)
        max_amount = None
        if merged.get("max_amount") is not None:
            try:
                max_amount = Decimal(str(merged["max_amount"]))
                if not max_amount.is_finite() or max_amount < 0:
                    raise InvalidOperation
            except InvalidOperation:
                self.fail(f"{where}: authority max_amount {merged['max_amount']!r} "
                          "is not a non-negative decimal")
                max_amount = None
        return Authority(max_amount, frozenset(merged.get("excluded_products") or ()))

    def _departments(self, where: str, unit_code: str, items) -> tuple[Department, ...]:
        out, seen = [], set()
        for j, d in enumerate(items or []):
            if not isinstance(d, Mapping):
                self.fail(f"{where}: departments[{j}] is not a mapping")
                continue
            self.problems += _unknown_keys(f"{where} departments[{j}]", d, _DEPARTMENT_KEYS)
            code = d.get("code")
            if not code:
                self.fail(f"{where}: departments[{j}] needs a code")
                continue
            if code in seen:
                self.fail(f"{where}: duplicate department code {code!r}")
                continue
            seen.add(code)
            office = d.get("office")
            if office not in OFFICES:
                self.fail(f"{where} department {code}: office {office!r} is not one of "
                          f"{', '.join(OFFICES)}")
            function = d.get("function")
            if not function:
                self.fail(f"{where} department {code}: needs a function")
            elif function in (CONSUMER_PROTECTION, DISCIPLINE_INSPECTION) and office != "back":
                self.fail(f"{where} department {code}: {function} belongs to the back office")
            out.append(Department(unit_code, str(code), str(d.get("name") or code),
                                  str(office), str(function)))
        return tuple(out)

    def _units(self, items, institutions, defaults) -> dict[str, Unit]:
        units: dict[str, Unit] = {}
        if not items:
            self.fail("no units")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not item.get("code"):
                self.fail(f"units[{i}]: needs a code")
                continue
            code = str(item["code"])
            where = f"unit {code}"
            self.problems += _unknown_keys(where, item, _UNIT_KEYS)
            if not code.isascii() or any(c.isspace() for c in code):
                self.fail(f"{where}: code must be ASCII without spaces")
            if code in units:
                self.fail(f"{where}: duplicate unit code")
                continue
            institution = item.get("institution")
            if institution not in institutions:
                self.fail(f"{where}: unknown institution {institution!r}")
            level = item.get("level")
            if level not in LEVELS:
                self.fail(f"{where}: level {level!r} is not one of {', '.join(LEVELS)}")
            for key in ("name", "region"):
                if not item.get(key):
                    self.fail(f"{where}: needs a {key}")
            default = defaults.get(institution, {}).get(level)
            units[code] = Unit(
                code=code,
                institution=str(institution),
                name=str(item.get("name") or code),
                level=str(level),
                parent=None if item.get("parent") is None else str(item["parent"]),
                region=str(item.get("region") or ""),
                departments=self._departments(where, code, item.get("departments")),
                authority=self._authority(where, item.get("authority"), default),
                name_en=item.get("name_en"),
            )
        return units

    def _hierarchy(self, units: dict[str, Unit], institutions) -> None:
        for code, u in units.items():
            where = f"unit {code}"
            if u.level == "head_office":
                if u.parent is not None:
                    self.fail(f"{where}: a head office has no parent (found {u.parent!r})")
                if code != u.institution:
                    self.fail(f"{where}: a head office's code must be its institution's "
                              f"code {u.institution!r}")
                continue
            if u.parent is None:
                if u.level in LEVELS:
                    self.fail(f"{where}: a {u.level} unit needs a parent")
                continue
            p = units.get(u.parent)
            if p is None:
                self.fail(f"{where}: unknown parent {u.parent!r}")
                continue
            if p.institution != u.institution:
                self.fail(f"{where}: parent {p.code} belongs to another institution "
                          f"({p.institution})")
            if u.level in LEVELS and p.level in LEVELS:
                expected = LEVELS[LEVELS.index(p.level) + 1] if p.level != "county" else None
                if u.level != expected:
                    self.fail(f"{where}: level {u.level} does not follow its parent "
                              f"{p.code}'s level {p.level} (expected "
                              f"{expected or 'no children under a county unit'})")
        for code in institutions:
            if code not in units or units[code].level != "head_office":
                self.fail(f"institution {code}: no head office unit with code {code!r}")
        self._cycles(units)
        for code in sorted(units):
            path = self._path(units, code)
            if path is None:
                continue  # unknown parent, already reported
            if not any(d.function == CONSUMER_PROTECTION for c in path
                       for d in units[c].departments):
                self.fail(f"unit {code}: no consumer-protection department or contact on "
                          f"its path to the head office ({' -> '.join(reversed(path))})")
        for code in institutions:
            ho = units.get(code)
            if ho and not any(d.function == DISCIPLINE_INSPECTION for d in ho.departments):
                self.fail(f"institution {code}: the head office needs a "
                          "discipline-inspection department")
            # Owners are looked up nearest-first, so the head office must have each one.
            inst = institutions[code]
            middle = {d.function for d in ho.departments if d.office == "middle"} if ho else set()
            for kind, owners in (("product", inst.product_owners), ("cause", inst.cause_owners)):
                for key, function in owners.items():
                    if ho and function not in middle:
                        self.fail(f"institution {code}: {kind} {key} is owned by {function!r}, "
                                  "which is not a middle-office department of the head office")

    def _cycles(self, units: dict[str, Unit]) -> None:
        reported: set[frozenset] = set()
        for start in units:
            seen: list[str] = []
            c = start
            while c is not None and c in units and c not in seen:
                seen.append(c)
                c = units[c].parent
            if c is not None and c in seen:
                loop = seen[seen.index(c):]
                key = frozenset(loop)
                if key not in reported:
                    reported.add(key)
                    self.fail("cycle in the hierarchy: " + " -> ".join(loop + [c]))

    @staticmethod
    def _path(units, code) -> list[str] | None:
        path: list[str] = []
        c = code
        while c is not None:
            if c not in units or c in path:
                return None  # unknown parent or a cycle above, reported on their own
            path.append(c)
            c = units[c].parent
        return path

    def _staff(self, items, units: dict[str, Unit]) -> dict[str, Staff]:
        staff: dict[str, Staff] = {}
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not item.get("id"):
                self.fail(f"staff[{i}]: needs an id")
                continue
            sid = str(item["id"])
            where = f"staff {sid}"
            self.problems += _unknown_keys(where, item, _STAFF_KEYS)
            if sid in staff:
                self.fail(f"{where}: duplicate staff id")
                continue
            unit, dept = item.get("unit"), item.get("department")
            u = units.get(unit)
            if u is None:
                self.fail(f"{where}: unknown unit {unit!r}")
            elif not any(d.code == dept for d in u.departments):
                self.fail(f"{where}: unknown department {dept!r} in unit {unit}")
            roles = frozenset(item.get("roles") or ())
            for r in sorted(roles - ROLES):
                self.fail(f"{where}: unknown role {r!r}")
            staff[sid] = Staff(sid, str(item.get("name") or sid), str(unit), str(dept), roles)
        return staff
