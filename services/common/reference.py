"""Reference data every service reads: the contracts' closed lists, business categories and
root causes. Each list is written here once; schemas, rules and the OpenAPI document use it."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data"

# CONTRACTS.md §1: complaint.submit/1.
KINDS = ("complaint", "suggestion", "consultation")
CHANNELS = ("phone", "letter", "visit", "web", "app", "wechat", "email", "regulator")
CAUSE_EVENTS = ("natural_disaster", "safety_accident", "public_health")
# CONTRACTS.md §3: the organization, the complaint as it stands, the handlers' actions.
LEVELS = ("head_office", "tier1", "city", "county")
OFFICES = ("front", "middle", "back")
SLA_STATES = ("on_track", "warning", "breached", "met", "paused")
# The states of a clock still counting towards its limit.
RUNNING_SLA_STATES = SLA_STATES[:2]
OUTCOMES = ("upheld", "partially_upheld", "rejected")
SATISFACTION = ("satisfied", "unsatisfied", "no_response")
# CONTRACTS.md §4: a referral to mediation; the organizations report the callback statuses,
# the institution records an agreement carried out.
MEDIATION_CALLBACK_STATUSES = ("accepted", "declined", "hearing_scheduled", "agreement_reached", "failed",
                               "withdrawn")
MEDIATION_STATUSES = ("referred", *MEDIATION_CALLBACK_STATUSES, "carried_out")


@cache
def categories(path: str | None = None) -> dict:
    with open(path or DATA / "categories.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def products() -> tuple[str, ...]:
    return tuple(categories()["products"])


def causes() -> tuple[str, ...]:
    return tuple(categories()["causes"])
