"""Regions as GB/T 2260 codes, and which mediation organization covers a region.

A code is six digits ``PPCCDD``: ``PP0000`` a province (or a municipality, an autonomous
region), ``PPCC00`` a prefecture, ``PPCCDD`` a county or district. An organization's
region covers itself and every region below it, so a provincial centre covers every
county of its province; of several organizations covering a region, the one registered
for the most specific region takes it (a city's own centre before the province's).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data" / "regions.yaml"
CODE = re.compile(r"^\d{6}$")


@cache
def provinces() -> dict[str, str]:
    with open(DATA, encoding="utf-8") as handle:
        return {str(code): name for code, name in yaml.safe_load(handle)["provinces"].items()}


def problem(code) -> str | None:
    """Why ``code`` is not a GB/T 2260 region code, or None when it is one."""
    if not isinstance(code, str) or not CODE.match(code):
        return f"{code!r} is not six digits"
    if code[:2] not in provinces():
        return f"{code} names no province ({code[:2]} is not a GB/T 2260 provincial code)"
    if code[2:4] == "00" and code[4:] != "00":
        return f"{code} has a county part without a prefecture"
    return None


def ancestors(code: str) -> list[str]:
    """The region and the regions above it, the most specific first."""
    chain = [code, code[:4] + "00", code[:2] + "0000"]
    return list(dict.fromkeys(chain))


def specificity(code: str) -> int:
    """3 for a county, 2 for a prefecture, 1 for a province."""
    return 1 if code.endswith("0000") else 2 if code.endswith("00") else 3


def covers(region: str, target: str) -> bool:
    return region in ancestors(target)


def covering(target: str, organizations: Iterable[dict]) -> dict | None:
    """The organization (a dict with ``code`` and ``regions``) covering ``target`` most
    closely; None when none covers it. Ties go to the smallest code, so every instance
    chooses the same."""
    ranked = []
    for organization in organizations:
        closeness = max((specificity(r) for r in organization["regions"] if covers(r, target)), default=0)
        if closeness:
            ranked.append((-closeness, organization["code"], organization))
    return min(ranked, key=lambda item: item[:2])[2] if ranked else None
