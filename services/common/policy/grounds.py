"""The grounds on which a clock may pause (policies.yaml ``pause_grounds``): each with what
its evidence is and who approves a pause on it (positions of the rule book). Pure."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.common.access import RULE_BOOK, RuleBook
from services.common.policy.engine import DEFAULT_POLICIES_PATH, PolicyError


@dataclass(frozen=True)
class PauseGround:
    code: str
    description: str
    source: str
    evidence: str  # what the evidence of a pause on this ground is
    approval: tuple[str, ...]  # positions, any one suffices; empty: none needed
    evidence_required: bool = True  # a pause on it without evidence is refused


def pause_grounds_from_data(raw: Mapping[str, Any], book: RuleBook = RULE_BOOK) -> dict[str, PauseGround]:
    """The grounds of parsed policies.yaml data; ``PolicyError`` for a broken one."""
    grounds: dict[str, PauseGround] = {}
    for index, item in enumerate(raw.get("pause_grounds") or ()):
        where = f"pause_grounds[{index}]"
        code = item.get("code")
        if not code or code in grounds:
            raise PolicyError(f"{where}: code missing or repeated: {code!r}")
        approval = item.get("approval") or ()
        if approval == "none":
            approval = ()
        unknown = sorted(set(approval) - set(book.positions))
        if unknown:
            raise PolicyError(f"{where}: approval names positions the rule book lacks: {unknown}")
        if not str(item.get("evidence") or "").strip():
            raise PolicyError(f"{where}: say what the evidence of a pause on {code!r} is")
        grounds[code] = PauseGround(code, str(item.get("description", "")).strip(), str(item.get("source", "")),
                                    str(item["evidence"]).strip(), tuple(approval),
                                    bool(item.get("evidence_required", True)))
    return grounds


def load_pause_grounds(path: str | Path | None = None) -> dict[str, PauseGround]:
    raw = yaml.safe_load(Path(path or DEFAULT_POLICIES_PATH).read_text(encoding="utf-8")) or {}
    return pause_grounds_from_data(raw)
