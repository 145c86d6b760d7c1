"""The registry of mediation organizations (CONTRACTS §4), collection ``organizations``:
``{_id: code, name, regions, url, secret, contact, retired_at, ...}``. A retired
organization takes no new referral; its open referrals keep going (deliveries, callbacks).
The secret is never shown. A referral goes to the organization covering the region of the
unit handling the complaint (the region routing announces with the tree, kept by
``services.common.orgtree``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime

import yaml
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common import timeutil
from services.common.errors import Conflict, Invalid, NotFound
from services.common.mediation import ORGANIZATION_CODE
from services.mediation import access, regions
from services.mediation.documents import load, timed
from services.mediation.schemas import OrganizationSchema

log = logging.getLogger(__name__)

ORGANIZATIONS = "organizations"

INDEXES = {
    ORGANIZATIONS: [IndexModel([("regions", ASCENDING)]), IndexModel([("retired_at", ASCENDING)])],
}


class Registry:
    def __init__(self, db, now: Callable[[], datetime] = timeutil.now):
        self.organizations = db[ORGANIZATIONS]
        self.now = now

    # -- organizations ------------------------------------------------------------------

    def put(self, code: str, data: dict, actor: dict) -> tuple[bool, dict]:
        """Register or change an organization; (created, the organization as shown)."""
        access.may_manage_registry(actor)
        if not isinstance(code, str) or ORGANIZATION_CODE.matches(code) is None:
            raise Invalid("the organization's code is invalid", {"code": [ORGANIZATION_CODE.error]})
        fields = load(OrganizationSchema(), data)
        now = self.now()
        existing = self.organizations.find_one({"_id": code})
        changes = {**fields, "regions": sorted(set(fields["regions"])), "updated_at": now,
                   "updated_by": actor.get("sub"), "retired_at": None}
        if existing is None or existing.get("secret") != fields["secret"]:
            changes["secret_set_at"] = now
        if existing is None:
            try:
                self.organizations.insert_one({"_id": code, "created_at": now, "version": 1, **changes})
                return True, self.show(code)
            except DuplicateKeyError:
                pass  # registered meanwhile by another call: this one changes it
        self.organizations.update_one({"_id": code}, {"$set": changes, "$inc": {"version": 1}})
        return False, self.show(code)

    def find(self, code: str) -> dict:
        """The stored organization, secret and all, retired or not (deliveries, signatures)."""
        doc = self.organizations.find_one({"_id": code})
        if doc is None:
            raise NotFound(f"no mediation organization {code!r}")
        return doc

    def show(self, code: str) -> dict:
        return self._view(self.find(code))

    def in_service(self) -> list[dict]:
        """The organizations in service (retired ones are shown one by one, by code)."""
        return [self._view(doc) for doc in self.organizations.find({"retired_at": None}).sort("_id", ASCENDING)]

    def retire(self, code: str, actor: dict) -> dict:
        """No new referral goes to it; its open referrals keep going."""
        access.may_manage_registry(actor)
        self.organizations.update_one({"_id": code, "retired_at": None},
                                      {"$set": {"retired_at": self.now(), "retired_by": actor.get("sub")},
                                       "$inc": {"version": 1}})
        return self.show(code)

    @staticmethod
    def _view(doc: dict) -> dict:
        """Never the secret: when it was set is enough to tell it changed."""
        shown = ("name", "regions", "url", "contact", "created_at", "updated_at", "secret_set_at", "retired_at")
        return timed({"code": doc["_id"], **{key: doc.get(key) for key in shown}})

    def load(self, path: str) -> list[str]:
        """Register the organizations of a YAML file that are not registered yet (the local
        samples); one registered already is left as an operator may have changed it. The
        file is the operator's who configured it (``MEDIATION_ORGANIZATIONS``)."""
        operator = {"sub": f"file:{path}", "roles": [access.ADMIN]}
        with open(path, encoding="utf-8") as handle:
            listed = yaml.safe_load(handle)["organizations"]
        added = []
        for item in listed:
            item = dict(item)
            code = item.pop("code")
            if self.organizations.find_one({"_id": code}, {"_id": 1}) is None:
                with suppress(DuplicateKeyError):  # another instance loads the same file
                    created, _ = self.put(code, item, operator)
                    if created:
                        added.append(code)
        if added:
            log.info("registered mediation organizations %s from %s", ", ".join(added), path)
        return added

    # -- who covers a unit ------------------------------------------------------------------

    def covering(self, region: str | None, named: str | None) -> dict:
        """The organization a referral from ``region`` goes to: ``named`` if it is in service
        and covers the region (Invalid otherwise), else the one covering it most closely
        (Conflict when none does)."""
        if named is not None:
            doc = self.organizations.find_one({"_id": named})
            if doc is None or doc.get("retired_at") is not None:
                raise Invalid(f"no mediation organization {named!r} in service",
                              {"organization": ["is not a registered organization in service"]})
            if region is not None and not any(regions.covers(r, region) for r in doc["regions"]):
                raise Invalid(f"{named} does not cover region {region}",
                              {"organization": [f"does not cover region {region} of the handling unit"]})
            return doc
        if region is None:
            raise Conflict("the handling unit's region is not known: name the organization",
                           {"organization": ["is required: the handling unit has no region on record"]})
        candidates = [dict(doc, code=doc["_id"]) for doc in self.organizations.find(
            {"regions": {"$in": regions.ancestors(region)}, "retired_at": None})]
        chosen = regions.covering(region, candidates)
        if chosen is None:
            raise Conflict(f"no mediation organization covers region {region}",
                           {"region": [f"no registered organization covers {region}"]})
        return chosen
