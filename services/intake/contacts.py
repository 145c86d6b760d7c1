"""Whom the customer may contact about a complaint: the institution's own consumer-protection
contact (unit, department, phone), told in the acknowledgement (``data/contacts.yaml``).

Refused when missing, twice over: the file is checked when intake loads it (every entry
complete, no regulator's hotline given as an institution's contact, each unit under an
institution that has a contact), and a submission for an institution with no contact is
rejected (``institution``) rather than acknowledged without one. Intake also reports, in its
health, the institutions of the organization routing announced that have no contact.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data" / "contacts.yaml"
FIELDS = ("unit", "department", "phone")


@dataclass(frozen=True)
class Contacts:
    institutions: dict  # institution code -> contact
    units: dict  # unit code -> contact (with its institution), overriding the institution's

    @classmethod
    def load(cls, path: Path = DATA) -> Contacts:
        with open(path, encoding="utf-8") as handle:
            return cls.from_data(yaml.safe_load(handle))

    @classmethod
    def from_data(cls, data: dict) -> Contacts:
        """The contacts, or ValueError listing every problem of the data."""
        data = data or {}
        hotlines = {str(number) for number in data.get("regulator_hotlines") or ()}
        institutions = data.get("institutions") or {}
        units = data.get("units") or {}
        problems = []

        def check(where: str, contact) -> None:
            if not isinstance(contact, dict):
                problems.append(f"{where}: must be a mapping with {', '.join(FIELDS)}")
                return
            missing = [name for name in FIELDS if not str(contact.get(name) or "").strip()]
            if missing:
                problems.append(f"{where}: {', '.join(missing)} missing")
            if str(contact.get("phone")) in hotlines:
                problems.append(f"{where}: {contact['phone']} is the regulator's hotline, not the institution's own")

        for code, contact in institutions.items():
            check(f"institutions.{code}", contact)
        for code, contact in units.items():
            check(f"units.{code}", contact)
            if isinstance(contact, dict) and contact.get("institution") not in institutions:
                problems.append(f"units.{code}: institution must be one of the institutions with a contact")
        if not institutions:
            problems.append("institutions: at least one institution's contact is needed")
        if problems:
            raise ValueError("contacts: " + "; ".join(problems))
        return cls(institutions, units)

    def of(self, institution: str, unit: str | None) -> dict | None:
        """The contact told to a customer of ``unit`` (its own entry, else its institution's);
        None when the institution has none."""
        own = self.units.get(unit or "")
        contact = own if own is not None and own["institution"] == institution else self.institutions.get(institution)
        if contact is None:
            return None
        # name: what the acknowledgement's contact carried before unit and department (templates use it).
        return {**{key: contact.get(key) for key in (*FIELDS, "hours")}, "name": contact["department"]}

    def missing(self, institutions) -> list[str]:
        """Which of ``institutions`` have no contact."""
        return sorted(code for code in institutions if code not in self.institutions)
