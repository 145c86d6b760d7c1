"""The complaint's lifecycle as one state machine, read from ``data/lifecycle.yaml``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from services.common.errors import Conflict

DATA = Path(__file__).parent / "data" / "lifecycle.yaml"
SAME = "same"


@dataclass(frozen=True)
class Lifecycle:
    statuses: dict
    actions: dict

    @classmethod
    def load(cls, path: Path = DATA) -> Lifecycle:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        lifecycle = cls(statuses=data["statuses"], actions=data["actions"])
        lifecycle.check()
        return lifecycle

    def check(self) -> None:
        for name, action in self.actions.items():
            unknown = [s for s in [*action["from"], action["to"]] if s != SAME and s not in self.statuses]
            if unknown:
                raise ValueError(f"lifecycle action {name!r} names unknown statuses {unknown}")

    def is_open(self, status: str) -> bool:
        return self.statuses[status]["open"]

    def allows(self, action: str, status: str) -> bool:
        return status in self.actions[action]["from"]

    def actions_from(self, status: str) -> list[str]:
        """The actions the status allows, in the file's order."""
        return [name for name, action in self.actions.items() if status in action["from"]]

    def next_status(self, action: str, status: str) -> str:
        """The status after ``action``; Conflict if the current status does not allow it."""
        if action not in self.actions:
            raise ValueError(f"unknown lifecycle action {action!r}")
        if not self.allows(action, status):
            raise Conflict(
                f"cannot {action.replace('_', ' ')} a complaint that is {status.replace('_', ' ')}",
                {"status": status, "action": action, "allowed_from": list(self.actions[action]["from"])},
            )
        target = self.actions[action]["to"]
        return status if target == SAME else target

    def open_statuses(self) -> list[str]:
        return [name for name, spec in self.statuses.items() if spec["open"]]

    def final_statuses(self) -> list[str]:
        return [name for name, spec in self.statuses.items() if not spec["open"]]
