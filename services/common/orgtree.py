"""The organization's tree as every service needs it to decide who may act: each unit's
parent, level and institution (and its region, by which mediation refers a complaint).

Routing owns the organization and announces this tree with ``organization_changed`` (the
optional body field ``units``). A service that checks who may act keeps the last
announcement in its own database through :class:`AnnouncedOrganization`. Why an event and
not an RPC to routing on every action: each service decides from its own data (no service
reads another's), keeps answering while routing is down or redeploying, and the tree only
changes on a reload, which routing announces anyway.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from pymongo.errors import DuplicateKeyError

from services.common import timeutil
from services.common.errors import Unavailable

COLLECTION = "organization"
ANNOUNCED = "units"
# Seconds a service reads its stored tree from memory before looking for a newer one.
TTL = 5.0


@dataclass(frozen=True)
class TreeUnit:
    code: str
    institution: str
    level: str
    parent: str | None
    region: str | None = None  # GB/T 2260 code


class OrgTree:
    """Units and their parents; pure. ``units`` maps a code to ``{institution, level, parent,
    region}`` (the shape ``organization_changed`` carries; region optional)."""

    def __init__(self, units: Mapping[str, Mapping]):
        self._units = {code: TreeUnit(code, spec["institution"], spec["level"], spec.get("parent"),
                                      spec.get("region"))
                       for code, spec in units.items()}
        children: dict[str, list[str]] = {code: [] for code in self._units}
        for unit in self._units.values():
            if unit.parent is not None:
                children[unit.parent].append(unit.code)
        self._children = children

    def has(self, code: str | None) -> bool:
        return code in self._units

    def unit(self, code: str) -> TreeUnit:
        return self._units[code]

    def parent(self, code: str) -> str | None:
        return self._units[code].parent if code in self._units else None

    def ancestors(self, code: str) -> tuple[str, ...]:
        """The units above ``code``, nearest first, ending with the head office."""
        found = []
        parent = self.parent(code)
        while parent is not None:
            found.append(parent)
            parent = self.parent(parent)
        return tuple(found)

    def head_office(self, institution: str | None) -> str | None:
        """The head office's code is the institution's code (CONTRACTS §3)."""
        return institution if institution in self._units else None

    def subtree(self, code: str) -> frozenset[str]:
        """``code`` and every unit below it."""
        seen, todo = set(), [code]
        while todo:
            current = todo.pop()
            seen.add(current)
            todo.extend(self._children.get(current, ()))
        return frozenset(seen)

    def institutions(self) -> dict[str, list[str]]:
        """Each institution's unit codes, sorted."""
        found: dict[str, list[str]] = {}
        for unit in self._units.values():
            found.setdefault(unit.institution, []).append(unit.code)
        return {code: sorted(units) for code, units in sorted(found.items())}

    def as_data(self) -> dict[str, dict]:
        return {code: {"institution": u.institution, "level": u.level, "parent": u.parent, "region": u.region}
                for code, u in sorted(self._units.items())}


class AnnouncedOrganization:
    """The tree routing last announced, kept in a service's own database (collection
    ``organization``, one document) and read from memory for ``TTL`` seconds."""

    def __init__(self, db, ttl: float = TTL):
        self.collection = db[COLLECTION]
        self.ttl = ttl
        self._read_at = 0.0
        self._doc: dict | None = None

    def keep(self, event: dict) -> None:
        """Store an ``organization_changed`` event unless a newer one is stored already
        (two reloads' announcements may arrive in either order)."""
        body = event["body"]
        announced_at = timeutil.parse(event["occurred_at"])
        doc = {"_id": ANNOUNCED, "institutions": body["institutions"], "units": body.get("units"),
               "announced_at": announced_at, "at": timeutil.now()}
        try:
            older = {"$or": [{"announced_at": {"$lte": announced_at}}, {"announced_at": {"$exists": False}}]}
            self.collection.replace_one({"_id": ANNOUNCED, **older}, doc, upsert=True)
        except DuplicateKeyError:
            pass  # a newer announcement is stored: keep it
        self._read_at = 0.0

    def _current(self) -> dict | None:
        if time.monotonic() - self._read_at > self.ttl:
            self._doc = self.collection.find_one({"_id": ANNOUNCED})
            self._read_at = time.monotonic()
        return self._doc

    def institutions(self) -> dict[str, set[str]] | None:
        """Institution -> its unit codes, as last announced; None before any announcement."""
        doc = self._current()
        return None if doc is None else {code: set(units) for code, units in doc["institutions"].items()}

    def tree(self) -> OrgTree:
        """The tree as last announced; :class:`Unavailable` until routing announced one."""
        doc = self._current()
        if doc is None or not doc.get("units"):
            raise Unavailable("the organization is not known here yet: routing announces it when it starts")
        return OrgTree(doc["units"])
