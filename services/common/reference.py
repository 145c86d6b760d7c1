"""Reference data every service reads: business categories and root causes."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data"
KINDS = ("complaint", "suggestion", "consultation")
CHANNELS = ("phone", "letter", "visit", "web", "app", "wechat", "email", "regulator")
CAUSE_EVENTS = ("natural_disaster", "safety_accident", "public_health")


@cache
def categories(path: str | None = None) -> dict:
    with open(path or DATA / "categories.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def products() -> tuple[str, ...]:
    return tuple(categories()["products"])


def causes() -> tuple[str, ...]:
    return tuple(categories()["causes"])
